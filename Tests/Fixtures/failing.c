/* Test plugin: always fails with the message in param "message". */
#include "expirable.h"
#include <string.h>

void expirable_abi(expirable_abi_info *info) {
    info->magic = EXPIRABLE_ABI_MAGIC;
    info->major = EXPIRABLE_ABI_MAJOR;
    info->minor = EXPIRABLE_ABI_MINOR;
}

void expirable_fetch(const expirable_call *call) {
    for (size_t i = 0; i < call->param_count; i++) {
        if (call->params[i].key.len == 7 && memcmp(call->params[i].key.ptr, "message", 7) == 0) {
            call->host->set_error(call->result, call->params[i].value.ptr, call->params[i].value.len);
            return;
        }
    }
    call->host->set_error(call->result, "failing on purpose", 18);
}
