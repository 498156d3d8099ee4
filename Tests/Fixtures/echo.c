/* Test plugin without create/destroy: answers "name|key=value|key=value..." so params can be checked. */
#include "expirable.h"
#include <string.h>

void expirable_abi(expirable_abi_info *info) {
    info->magic = EXPIRABLE_ABI_MAGIC;
    info->major = EXPIRABLE_ABI_MAJOR;
    info->minor = EXPIRABLE_ABI_MINOR;
}

void expirable_fetch(const expirable_call *call) {
    char out[4096];
    size_t n = 0;
#define PUT(p, l) do { if (n + (l) < sizeof out) { memcpy(out + n, (p), (l)); n += (l); } } while (0)
    PUT(call->name.ptr, call->name.len);
    for (size_t i = 0; i < call->param_count; i++) {
        PUT("|", 1);
        PUT(call->params[i].key.ptr, call->params[i].key.len);
        PUT("=", 1);
        PUT(call->params[i].value.ptr, call->params[i].value.len);
    }
    call->host->set_value(call->result, out, n, EXPIRABLE_NEVER_EXPIRES);
}
