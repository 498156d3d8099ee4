/* Test plugin: counts its calls per instance and answers "<prefix><n>".
 * params: prefix (default "v"), ttl_ms (default 60000; "never" for EXPIRABLE_NEVER_EXPIRES; may be negative
 * for a value already expired), count_file (optional: the call count is written there after each call),
 * destroy_file (optional: "destroyed" is written there by expirable_destroy), sleep_ms (optional: how long
 * each call takes), value_bytes (optional: the value is padded with 'x' to that many bytes, at most 4 MiB),
 * create_wait_file (optional: expirable_create writes "<path>.started", then waits, at most 20 s, until the file
 * exists). */
#include "expirable.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct counter { long calls; long sleep_ms; long value_bytes; char prefix[64]; long long ttl_ms; int never; char count_file[512]; char destroy_file[512]; } counter;

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
    counter *c = calloc(1, sizeof *c);
    strcpy(c->prefix, "v");
    c->ttl_ms = 60000;
    for (size_t i = 0; i < call->param_count; i++) {
        expirable_str k = call->params[i].key, v = call->params[i].value;
        char buf[64];
        if (k.len == 6 && memcmp(k.ptr, "prefix", 6) == 0) copy(c->prefix, sizeof c->prefix, v);
        if (k.len == 6 && memcmp(k.ptr, "ttl_ms", 6) == 0) {
            copy(buf, sizeof buf, v);
            if (strcmp(buf, "never") == 0) c->never = 1; else c->ttl_ms = atoll(buf);
        }
        if (k.len == 8 && memcmp(k.ptr, "sleep_ms", 8) == 0) { copy(buf, sizeof buf, v); c->sleep_ms = atol(buf); }
        if (k.len == 11 && memcmp(k.ptr, "value_bytes", 11) == 0) { copy(buf, sizeof buf, v); c->value_bytes = atol(buf); }
        if (k.len == 10 && memcmp(k.ptr, "count_file", 10) == 0) copy(c->count_file, sizeof c->count_file, v);
        if (k.len == 12 && memcmp(k.ptr, "destroy_file", 12) == 0) copy(c->destroy_file, sizeof c->destroy_file, v);
        if (k.len == 16 && memcmp(k.ptr, "create_wait_file", 16) == 0) {
            char wait[512], started[520];
            copy(wait, sizeof wait, v);
            snprintf(started, sizeof started, "%s.started", wait);
            FILE *f = fopen(started, "w");
            if (f) fclose(f);
            struct timespec tick = { 0, 10000000L };
            for (int waited = 0; waited < 2000 && access(wait, F_OK) != 0; waited++) nanosleep(&tick, NULL);
        }
    }
    return c;
}

void expirable_destroy(void *instance) {
    counter *c = instance;
    if (c->destroy_file[0]) {
        FILE *f = fopen(c->destroy_file, "w");
        if (f) { fputs("destroyed", f); fclose(f); }
    }
    free(c);
}

void expirable_fetch(const expirable_call *call) {
    counter *c = call->instance;
    c->calls++;
    if (c->sleep_ms > 0) {
        struct timespec ts = { c->sleep_ms / 1000, (c->sleep_ms % 1000) * 1000000L };
        nanosleep(&ts, NULL);
    }
    if (c->count_file[0]) {
        FILE *f = fopen(c->count_file, "w");
        if (f) { fprintf(f, "%ld", c->calls); fclose(f); }
    }
    char value[128];
    int n = snprintf(value, sizeof value, "%s%ld", c->prefix, c->calls);
    int64_t expires = c->never ? EXPIRABLE_NEVER_EXPIRES : call->host->now_ms() + c->ttl_ms;
    size_t size = c->value_bytes > n && c->value_bytes <= 4L << 20 ? (size_t)c->value_bytes : (size_t)n;
    char *padded = size > (size_t)n ? malloc(size) : NULL;
    if (padded) {
        memcpy(padded, value, (size_t)n);
        memset(padded + n, 'x', size - (size_t)n);
        call->host->set_value(call->result, padded, size, expires);
        free(padded);
    } else {
        call->host->set_value(call->result, value, (size_t)n, expires);
    }
}
