#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <link.h>
#include <signal.h>
#include <spawn.h>
#include <stddef.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include "CExpirableLinux.h"

int CExpirableLinux_symbol_is_function(const void *address) {
    Dl_info info;
    const ElfW(Sym) *symbol = NULL;
    if (dladdr1(address, &info, (void **)&symbol, RTLD_DL_SYMENT) == 0 || symbol == NULL) return -1;
    unsigned char type = ELF64_ST_TYPE(symbol->st_info);
    return type == STT_FUNC || type == STT_GNU_IFUNC;
}

int CExpirableLinux_spawn_close_from(posix_spawn_file_actions_t *actions, int from) {
    return posix_spawn_file_actions_addclosefrom_np(actions, from);
}

int CExpirableLinux_become_helper(pid_t parent) {
    /* The death signal first, then the parent check: a parent that died between fork and prctl is seen here. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) return -1;
    if (getppid() != parent) return -1;
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    /* No set-user-ID program the plugin runs (a `command` plugin's child included) gains privileges. */
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return -1;
    struct rlimit none = {0, 0};
    setrlimit(RLIMIT_CORE, &none);
    return 0;
}

int CExpirableLinux_set_not_dumpable(void) {
    return prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == 0 ? 0 : errno;
}

const char *CExpirableLinux_signal_abbreviation(int number) {
    return sigabbrev_np(number);
}

int CExpirableLinux_switch_user(long long uid, long long gid, pid_t parent, const char **step) {
    if (gid >= 0) {
        *step = "setgroups";
        if (setgroups(0, NULL) != 0) return errno;
        *step = "setresgid";
        if (setresgid((gid_t)gid, (gid_t)gid, (gid_t)gid) != 0) return errno;
    }
    if (uid >= 0) {
        *step = "setresuid";
        if (setresuid((uid_t)uid, (uid_t)uid, (uid_t)uid) != 0) return errno;
    }
    /* A change of credentials clears the parent-death signal and makes the process dumpable again (Linux's
     * commit_creds): arm both again, then check that the parent did not die in between. */
    *step = "prctl(PR_SET_PDEATHSIG)";
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) return errno;
    *step = "getppid";
    if (getppid() != parent) return ESRCH;
    *step = "prctl(PR_SET_DUMPABLE)";
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) return errno;
    return 0;
}

int CExpirableLinux_limit_data(long long bytes) {
    struct rlimit limit = {(rlim_t)bytes, (rlim_t)bytes};
    return setrlimit(RLIMIT_DATA, &limit) == 0 ? 0 : errno;
}

int CExpirableLinux_limit_cpu_from_now(long long seconds, int hard) {
    struct rusage usage;
    struct rlimit limit;
    if (getrusage(RUSAGE_SELF, &usage) != 0 || getrlimit(RLIMIT_CPU, &limit) != 0) return errno;
    rlim_t used = (rlim_t)(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec);
    limit.rlim_cur = used + (rlim_t)seconds;
    if (hard && (limit.rlim_max == RLIM_INFINITY || limit.rlim_cur + 1 <= limit.rlim_max)) limit.rlim_max = limit.rlim_cur + 1;
    if (limit.rlim_max != RLIM_INFINITY && limit.rlim_cur > limit.rlim_max) limit.rlim_cur = limit.rlim_max;
    return setrlimit(RLIMIT_CPU, &limit) == 0 ? 0 : errno;
}

int CExpirableLinux_unlimit_cpu(pid_t pid) {
    struct rlimit unlimited = {RLIM_INFINITY, RLIM_INFINITY};
    return prlimit(pid, RLIMIT_CPU, &unlimited, NULL) == 0 ? 0 : errno;
}

int CExpirableLinux_pidfd_open(pid_t pid) {
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

int CExpirableLinux_kill_self_after(long long ms) {
    static timer_t timer;
    static int made = 0;
    if (!made) {
        struct sigevent event;
        memset(&event, 0, sizeof event);
        event.sigev_notify = SIGEV_SIGNAL;
        event.sigev_signo = SIGKILL;
        if (timer_create(CLOCK_MONOTONIC, &event, &timer) != 0) return errno;
        made = 1;
    }
    struct itimerspec when;
    memset(&when, 0, sizeof when);
    if (ms > 0) {
        when.it_value.tv_sec = ms / 1000;
        when.it_value.tv_nsec = (ms % 1000) * 1000000L;
    }
    return timer_settime(timer, 0, &when, NULL) == 0 ? 0 : errno;
}

long long CExpirableLinux_filesystem_type(const char *path) {
    struct statfs info;
    if (statfs(path, &info) != 0) return -1;
    return (long long)info.f_type;
}

long long CExpirableLinux_filesystem_type_fd(int fd) {
    struct statfs info;
    if (fstatfs(fd, &info) != 0) return -1;
    return (long long)info.f_type;
}

int CExpirableLinux_o_path(void) { return O_PATH; }
