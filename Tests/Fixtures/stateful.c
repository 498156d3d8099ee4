/* Test plugin (ABI 1.2): answers "key=<key> state=<state>" (empty when absent) and sets the state to the
 * previous one with "+" appended ("" becomes "s"). params: mode ("error": set_error "refused with state" and still
 * set the state; "oversized": a state over EXPIRABLE_MAX_STATE_BYTES; "twice": set_state twice; "clear": an
 * empty state); sleep_ms (sleep that long first, then set the state and answer). */
#include "expirable.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void expirable_abi(expirable_abi_info *info) {
    info->magic = EXPIRABLE_ABI_MAGIC;
    info->major = EXPIRABLE_ABI_MAJOR;
    info->minor = EXPIRABLE_ABI_MINOR;
}

void expirable_fetch(const expirable_call *call) {
    char mode[32] = "";
    char sleep_ms[16] = "";
    for (size_t i = 0; i < call->param_count; i++) {
        if (call->params[i].key.len == 4 && memcmp(call->params[i].key.ptr, "mode", 4) == 0) {
            size_t n = call->params[i].value.len < sizeof mode - 1 ? call->params[i].value.len : sizeof mode - 1;
            memcpy(mode, call->params[i].value.ptr, n);
        }
        if (call->params[i].key.len == 8 && memcmp(call->params[i].key.ptr, "sleep_ms", 8) == 0) {
            size_t n = call->params[i].value.len < sizeof sleep_ms - 1 ? call->params[i].value.len : sizeof sleep_ms - 1;
            memcpy(sleep_ms, call->params[i].value.ptr, n);
        }
    }
    if (sleep_ms[0]) usleep((useconds_t)atoi(sleep_ms) * 1000);
    char next[512];
    size_t n = call->state.len < sizeof next - 2 ? call->state.len : sizeof next - 2;
    if (n) memcpy(next, call->state.ptr, n);
    if (n == 0) next[n++] = 's'; else next[n++] = '+';
    if (strcmp(mode, "oversized") == 0) {
        size_t big = EXPIRABLE_MAX_STATE_BYTES + 1;
        char *huge = calloc(1, big);
        call->host->set_state(call->result, huge, big);
        free(huge);
    } else if (strcmp(mode, "clear") == 0) {
        call->host->set_state(call->result, NULL, 0);
    } else {
        call->host->set_state(call->result, next, n);
        if (strcmp(mode, "twice") == 0) call->host->set_state(call->result, next, n);
    }
    if (strcmp(mode, "error") == 0) {
        call->host->set_error(call->result, "refused with state", 18);
        return;
    }
    char value[1200];
    int len = snprintf(value, sizeof value, "key=%.*s state=%.*s", (int)call->key.len, call->key.ptr ? call->key.ptr : "",
                       (int)call->state.len, call->state.ptr ? call->state.ptr : "");
    call->host->set_value(call->result, value, (size_t)len, call->host->now_ms() + 60000);
}
