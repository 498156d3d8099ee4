/* Test plugin (ABI 1.1): fails with message "classified failure", classified by its params.
 * params: class (an integer passed as is to classify_error; absent: classify_error is not called),
 * retry_after_s (seconds from now for retry_after_ms; default 0: none), twice ("true": classify twice). */
#include "expirable.h"
#include <stdlib.h>
#include <string.h>

void expirable_abi(expirable_abi_info *info) {
    info->magic = EXPIRABLE_ABI_MAGIC;
    info->major = EXPIRABLE_ABI_MAJOR;
    info->minor = EXPIRABLE_ABI_MINOR;
}

static int param(const expirable_call *call, const char *key, char *out, size_t cap) {
    for (size_t i = 0; i < call->param_count; i++) {
        if (call->params[i].key.len == strlen(key) && memcmp(call->params[i].key.ptr, key, strlen(key)) == 0) {
            size_t n = call->params[i].value.len < cap - 1 ? call->params[i].value.len : cap - 1;
            memcpy(out, call->params[i].value.ptr, n);
            out[n] = 0;
            return 1;
        }
    }
    return 0;
}

void expirable_fetch(const expirable_call *call) {
    char text[64];
    call->host->set_error(call->result, "classified failure", 18);
    if (!EXPIRABLE_HOST_HAS(call->host, classify_error) || !param(call, "class", text, sizeof text)) return;
    int error_class = atoi(text);
    long long retry_after = 0;
    if (param(call, "retry_after_s", text, sizeof text)) retry_after = call->host->now_ms() + atoll(text) * 1000;
    call->host->classify_error(call->result, error_class, retry_after);
    if (param(call, "twice", text, sizeof text)) call->host->classify_error(call->result, error_class, retry_after);
}
