/* Test plugin: sleeps param "sleep_ms" milliseconds (or, with param "release_file", until that file exists, for
 * at most 10 min), then answers "max_concurrent=<n>": the most calls it ever saw running at once in this process.
 * With param "started_file", it creates that file as each call starts. */
#include "expirable.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int running, most;

void expirable_abi(expirable_abi_info *info) {
    info->magic = EXPIRABLE_ABI_MAGIC;
    info->major = EXPIRABLE_ABI_MAJOR;
    info->minor = EXPIRABLE_ABI_MINOR;
}

void expirable_fetch(const expirable_call *call) {
    long ms = 1000;
    char release[512] = {0};
    for (size_t i = 0; i < call->param_count; i++) {
        if (call->params[i].key.len == 12 && memcmp(call->params[i].key.ptr, "release_file", 12) == 0) {
            size_t n = call->params[i].value.len < sizeof release - 1 ? call->params[i].value.len : sizeof release - 1;
            memcpy(release, call->params[i].value.ptr, n);
        }
        if (call->params[i].key.len == 8 && memcmp(call->params[i].key.ptr, "sleep_ms", 8) == 0) {
            char buf[32] = {0};
            memcpy(buf, call->params[i].value.ptr, call->params[i].value.len < 31 ? call->params[i].value.len : 31);
            ms = atol(buf);
        }
    }
    for (size_t i = 0; i < call->param_count; i++) {
        if (call->params[i].key.len == 12 && memcmp(call->params[i].key.ptr, "started_file", 12) == 0) {
            char path[512] = {0};
            memcpy(path, call->params[i].value.ptr, call->params[i].value.len < 511 ? call->params[i].value.len : 511);
            FILE *f = fopen(path, "w");
            if (f) fclose(f);
        }
    }
    int now = __atomic_add_fetch(&running, 1, __ATOMIC_SEQ_CST);
    int seen = __atomic_load_n(&most, __ATOMIC_SEQ_CST);
    while (now > seen && !__atomic_compare_exchange_n(&most, &seen, now, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {}
    if (release[0]) {
        struct timespec tick = { 0, 10 * 1000000L };
        for (int waited = 0; waited < 60000 && access(release, F_OK) != 0; waited++) nanosleep(&tick, NULL);
    } else {
        struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
        nanosleep(&ts, NULL);
    }
    __atomic_sub_fetch(&running, 1, __ATOMIC_SEQ_CST);
    char out[64];
    int n = snprintf(out, sizeof out, "max_concurrent=%d", __atomic_load_n(&most, __ATOMIC_SEQ_CST));
    call->host->set_value(call->result, out, (size_t)n, call->host->now_ms() + 60000);
}
