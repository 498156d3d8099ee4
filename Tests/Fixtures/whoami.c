/* Test plugin: answers "tid=<kernel thread id> comm=<thread name>" for the thread its call runs on. */
#define _GNU_SOURCE
#include "expirable.h"
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

void expirable_abi(expirable_abi_info *info) {
    info->magic = EXPIRABLE_ABI_MAGIC;
    info->major = EXPIRABLE_ABI_MAJOR;
    info->minor = EXPIRABLE_ABI_MINOR;
}

void expirable_fetch(const expirable_call *call) {
    char comm[32] = {0};
    int fd = open("/proc/thread-self/comm", O_RDONLY);
    if (fd >= 0) {
        ssize_t n = read(fd, comm, sizeof comm - 1);
        if (n > 0 && comm[n - 1] == '\n') comm[n - 1] = 0;
        close(fd);
    }
    char out[96];
    int n = snprintf(out, sizeof out, "tid=%d comm=%s", gettid(), comm);
    call->host->set_value(call->result, out, (size_t)n, call->host->now_ms() + 60000);
}
