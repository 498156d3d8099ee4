/* Test plugin (ABI 1.1): answers "<prefix><n>" (n counts calls) valid for ttl_ms, until mode_file says otherwise:
 * "fail [S]" reports "upstream down", temporary, with a retry-after S seconds from now if S is given;
 * "permanent" reports "grant revoked", permanent. The call count is written to count_file after each call.
 * params: prefix (default "v-"), ttl_ms (default 60000), mode_file, count_file. */
#include "expirable.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct flaky { long calls; long long ttl_ms; char prefix[64]; char mode_file[512]; char count_file[512]; } flaky;

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
    flaky *f = calloc(1, sizeof *f);
    strcpy(f->prefix, "v-");
    f->ttl_ms = 60000;
    for (size_t i = 0; i < call->param_count; i++) {
        expirable_str k = call->params[i].key, v = call->params[i].value;
        char buf[64];
        if (k.len == 6 && memcmp(k.ptr, "prefix", 6) == 0) copy(f->prefix, sizeof f->prefix, v);
        if (k.len == 6 && memcmp(k.ptr, "ttl_ms", 6) == 0) { copy(buf, sizeof buf, v); f->ttl_ms = atoll(buf); }
        if (k.len == 9 && memcmp(k.ptr, "mode_file", 9) == 0) copy(f->mode_file, sizeof f->mode_file, v);
        if (k.len == 10 && memcmp(k.ptr, "count_file", 10) == 0) copy(f->count_file, sizeof f->count_file, v);
    }
    return f;
}

void expirable_destroy(void *instance) {
    free(instance);
}

void expirable_fetch(const expirable_call *call) {
    flaky *f = call->instance;
    f->calls++;
    if (f->count_file[0]) {
        FILE *out = fopen(f->count_file, "w");
        if (out) { fprintf(out, "%ld\n", f->calls); fclose(out); }
    }
    char mode[32] = "ok";
    long retry_after_s = 0;
    FILE *in = f->mode_file[0] ? fopen(f->mode_file, "r") : NULL;
    if (in) {
        if (fscanf(in, "%31s %ld", mode, &retry_after_s) < 1) strcpy(mode, "ok");
        fclose(in);
    }
    if (strcmp(mode, "fail") == 0) {
        call->host->set_error(call->result, "upstream down", 13);
        call->host->classify_error(call->result, EXPIRABLE_ERROR_TEMPORARY, retry_after_s > 0 ? call->host->now_ms() + retry_after_s * 1000 : 0);
        return;
    }
    if (strcmp(mode, "permanent") == 0) {
        call->host->set_error(call->result, "grant revoked", 13);
        call->host->classify_error(call->result, EXPIRABLE_ERROR_PERMANENT, 0);
        return;
    }
    char value[128];
    int n = snprintf(value, sizeof value, "%s%ld", f->prefix, f->calls);
    call->host->set_value(call->result, value, (size_t)n, call->host->now_ms() + f->ttl_ms);
}
