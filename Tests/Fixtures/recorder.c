/* Test plugin: records each call's start and end in a shared log, one line each written with a single
 * O_APPEND write: "start|end <CLOCK_MONOTONIC ns> <pid> <parent pid>", sleeping sleep_ms in between, then
 * answers "rec-<pid>-<n>" valid for ttl_ms. A call killed in its sleep leaves a start without an end.
 * params: log (the file), sleep_ms (default 100), ttl_ms (default 300). */
#include "expirable.h"
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct recorder { long calls; long sleep_ms; long long ttl_ms; char log[512]; } recorder;

void expirable_abi(expirable_abi_info *info) {
    info->magic = EXPIRABLE_ABI_MAGIC;
    info->major = EXPIRABLE_ABI_MAJOR;
    info->minor = EXPIRABLE_ABI_MINOR;
}

static void copy(char *dst, size_t cap, expirable_str s) {
    size_t n = s.len < cap - 1 ? s.len : cap - 1;
    memcpy(dst, s.ptr, n);
    dst[n] = 0;
}

void *expirable_create(const expirable_call *call) {
    recorder *r = calloc(1, sizeof *r);
    r->sleep_ms = 100;
    r->ttl_ms = 300;
    for (size_t i = 0; i < call->param_count; i++) {
        expirable_str k = call->params[i].key, v = call->params[i].value;
        char buf[64];
        if (k.len == 3 && memcmp(k.ptr, "log", 3) == 0) copy(r->log, sizeof r->log, v);
        if (k.len == 8 && memcmp(k.ptr, "sleep_ms", 8) == 0) { copy(buf, sizeof buf, v); r->sleep_ms = atol(buf); }
        if (k.len == 6 && memcmp(k.ptr, "ttl_ms", 6) == 0) { copy(buf, sizeof buf, v); r->ttl_ms = atoll(buf); }
    }
    return r;
}

void expirable_destroy(void *instance) {
    free(instance);
}

static void note(const recorder *r, const char *what) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    char line[128];
    int n = snprintf(line, sizeof line, "%s %lld %ld %ld\n", what, (long long)now.tv_sec * 1000000000LL + now.tv_nsec, (long)getpid(), (long)getppid());
    int fd = open(r->log, O_WRONLY | O_APPEND | O_CREAT, 0644);
    if (fd >= 0) {
        if (write(fd, line, (size_t)n) < 0) { /* nothing to do */ }
        close(fd);
    }
}

void expirable_fetch(const expirable_call *call) {
    recorder *r = call->instance;
    r->calls++;
    note(r, "start");
    struct timespec pause = { r->sleep_ms / 1000, (r->sleep_ms % 1000) * 1000000L };
    nanosleep(&pause, NULL);
    note(r, "end");
    char value[64];
    int n = snprintf(value, sizeof value, "rec-%ld-%ld", (long)getpid(), r->calls);
    call->host->set_value(call->result, value, (size_t)n, call->host->now_ms() + r->ttl_ms);
}
