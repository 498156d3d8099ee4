/* Test plugin: declares a minor ABI version one past the host's, so the host must refuse it. */
#include "expirable.h"

void expirable_abi(expirable_abi_info *info) {
    info->magic = EXPIRABLE_ABI_MAGIC;
    info->major = EXPIRABLE_ABI_MAJOR;
    info->minor = EXPIRABLE_ABI_MINOR + 1;
}

void expirable_fetch(const expirable_call *call) {
    call->host->set_error(call->result, "never called", 12);
}
