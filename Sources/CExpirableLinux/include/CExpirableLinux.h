#ifndef CEXPIRABLE_LINUX_H
#define CEXPIRABLE_LINUX_H

#include <stdint.h>

/* Asks the scheduler for a short time slice for the calling thread (SCHED_OTHER, sched_attr.sched_runtime, Linux
 * 6.12 and later with EEVDF). A thread with a short slice is run sooner when it wakes on a busy machine, and gives
 * the CPU back sooner. Older kernels ignore the value. Returns 0, or an errno value; nothing else changes. */
int CExpirableLinux_setTimeSlice(uint64_t nanoseconds);

/* The slice asked for the daemon's latency-bound threads (event loops, plugin calls): the kernel's shortest. */
#define CEXPIRABLE_LINUX_SHORT_SLICE_NS 100000ULL

#endif
