/* Test plugin: returns a malformed result chosen by param "mode": both, none, negative, huge, nullptr. */
#include "expirable.h"
#include <stdlib.h>
#include <string.h>

void expirable_abi(expirable_abi_info *info) {
    info->magic = EXPIRABLE_ABI_MAGIC;
    info->major = EXPIRABLE_ABI_MAJOR;
    info->minor = EXPIRABLE_ABI_MINOR;
}

static int mode_is(const expirable_call *call, const char *mode) {
    for (size_t i = 0; i < call->param_count; i++) {
        expirable_param p = call->params[i];
        if (p.key.len == 4 && memcmp(p.key.ptr, "mode", 4) == 0) return p.value.len == strlen(mode) && memcmp(p.value.ptr, mode, p.value.len) == 0;
    }
    return 0;
}

void expirable_fetch(const expirable_call *call) {
    const expirable_host *h = call->host;
    if (mode_is(call, "both")) {
        h->set_value(call->result, "v", 1, h->now_ms() + 1000);
        h->set_error(call->result, "and an error", 12);
    } else if (mode_is(call, "negative")) {
        h->set_value(call->result, "v", 1, -5);
    } else if (mode_is(call, "huge")) {
        size_t n = EXPIRABLE_MAX_VALUE_BYTES + 1;
        char *big = calloc(1, n);
        h->set_value(call->result, big, n, h->now_ms() + 1000);
        free(big);
    } else if (mode_is(call, "nullptr")) {
        h->set_value(call->result, NULL, 5, h->now_ms() + 1000);
    }
    /* "none": returns without reporting anything */
}
