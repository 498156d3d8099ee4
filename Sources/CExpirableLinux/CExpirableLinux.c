#define _GNU_SOURCE
#include "CExpirableLinux.h"

#include <errno.h>
#include <sched.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

/* struct sched_attr from linux/sched/types.h, which glibc 2.36 does not declare. */
struct cexpirable_sched_attr {
    uint32_t size;
    uint32_t sched_policy;
    uint64_t sched_flags;
    int32_t sched_nice;
    uint32_t sched_priority;
    uint64_t sched_runtime;
    uint64_t sched_deadline;
    uint64_t sched_period;
};

int CExpirableLinux_setTimeSlice(uint64_t nanoseconds) {
    struct cexpirable_sched_attr current;
    memset(&current, 0, sizeof current);
    if (syscall(SYS_sched_getattr, 0, &current, sizeof current, 0) != 0) return errno;
    if (current.sched_policy != SCHED_OTHER) return 0; /* someone chose a policy for us; leave it */
    struct cexpirable_sched_attr attr = current;
    attr.size = sizeof attr;
    attr.sched_flags = 0;
    attr.sched_runtime = nanoseconds;
    return syscall(SYS_sched_setattr, 0, &attr, 0) == 0 ? 0 : errno;
}
