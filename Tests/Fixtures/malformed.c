/* Test plugin: returns a malformed result chosen by param "mode" (or, keyed, by the key): both, none, negative,
 * huge, nullptr, errnull (set_error with NULL and a length), errempty (set_error with ""); or passes (size_t)-1, a failed read()'s -1, as the length to set_value ("sizemax"), set_error
 * ("errmax"), set_state ("statemax", then a value), parse_duration_ms ("durmax", then a value saying what it
 * returned). */
#include "expirable.h"
#include <stdlib.h>
#include <string.h>

void expirable_abi(expirable_abi_info *info) {
    info->magic = EXPIRABLE_ABI_MAGIC;
    info->major = EXPIRABLE_ABI_MAJOR;
    info->minor = EXPIRABLE_ABI_MINOR;
}

static int mode_is(const expirable_call *call, const char *mode) {
    if (call->key.len > 0) return call->key.len == strlen(mode) && memcmp(call->key.ptr, mode, call->key.len) == 0;
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
    } else if (mode_is(call, "errnull")) {
        h->set_error(call->result, NULL, 5);
    } else if (mode_is(call, "errempty")) {
        h->set_error(call->result, "", 0);
    } else if (mode_is(call, "sizemax")) {
        h->set_value(call->result, "x", (size_t)-1, h->now_ms() + 1000);
    } else if (mode_is(call, "errmax")) {
        h->set_error(call->result, "x", (size_t)-1);
    } else if (mode_is(call, "statemax")) {
        h->set_state(call->result, "x", (size_t)-1);
        h->set_value(call->result, "v", 1, h->now_ms() + 1000);
    } else if (mode_is(call, "durmax")) {
        int64_t ms = 0;
        int rc = h->parse_duration_ms("5s", (size_t)-1, &ms);
        h->set_value(call->result, rc == 0 ? "parsed" : "refused", rc == 0 ? 6 : 7, h->now_ms() + 1000);
    }
    /* "none": returns without reporting anything */
}
