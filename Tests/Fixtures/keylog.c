/* Test plugin for calls that queue: each call appends "start KEY <CLOCK_MONOTONIC ns> <pid>" to the log file
 * as it starts and "end KEY <ns> <pid>" as it ends (one O_APPEND write each), sleeping sleep_ms in between,
 * then answers "KEY-<pid>" valid for a minute. With param create_open, expirable_create first opens that path
 * for reading: a FIFO nobody writes to blocks it, as a client_secret_file that is a FIFO would.
 * params: log (the file), sleep_ms (default 300), create_open (optional). */
#include "expirable.h"
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct keylog { long sleep_ms; char log[512]; } keylog;

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
    keylog *k = calloc(1, sizeof *k);
    k->sleep_ms = 300;
    for (size_t i = 0; i < call->param_count; i++) {
        expirable_str key = call->params[i].key, v = call->params[i].value;
        char buf[512];
        if (key.len == 3 && memcmp(key.ptr, "log", 3) == 0) copy(k->log, sizeof k->log, v);
        if (key.len == 8 && memcmp(key.ptr, "sleep_ms", 8) == 0) { copy(buf, sizeof buf, v); k->sleep_ms = atol(buf); }
        if (key.len == 11 && memcmp(key.ptr, "create_open", 11) == 0) {
            copy(buf, sizeof buf, v);
            int fd = open(buf, O_RDONLY);
            if (fd >= 0) close(fd);
        }
    }
    return k;
}

void expirable_destroy(void *instance) {
    free(instance);
}

static void note(const keylog *k, const char *what, expirable_str key) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    char line[256];
    int n = snprintf(line, sizeof line, "%s %.*s %lld %ld\n", what, (int)(key.len < 64 ? key.len : 64), key.ptr ? key.ptr : "",
                     (long long)now.tv_sec * 1000000000LL + now.tv_nsec, (long)getpid());
    int fd = open(k->log, O_WRONLY | O_APPEND | O_CREAT, 0644);
    if (fd >= 0) {
        if (write(fd, line, (size_t)n) < 0) { /* nothing to do */ }
        close(fd);
    }
}

void expirable_fetch(const expirable_call *call) {
    keylog *k = call->instance;
    expirable_str key = call->size >= offsetof(expirable_call, key) + sizeof(expirable_str) ? call->key : (expirable_str){ 0 };
    note(k, "start", key);
    struct timespec pause = { k->sleep_ms / 1000, (k->sleep_ms % 1000) * 1000000L };
    nanosleep(&pause, NULL);
    note(k, "end", key);
    char value[128];
    int n = snprintf(value, sizeof value, "%.*s-%ld", (int)(key.len < 64 ? key.len : 64), key.ptr ? key.ptr : "", (long)getpid());
    call->host->set_value(call->result, value, (size_t)n, call->host->now_ms() + 60000);
}
