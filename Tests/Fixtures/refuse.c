/* Test plugin: refuses its params in expirable_create. */
#include "expirable.h"
void expirable_abi(expirable_abi_info *info) { info->magic = EXPIRABLE_ABI_MAGIC; info->major = EXPIRABLE_ABI_MAJOR; info->minor = 0; }
void *expirable_create(const expirable_call *call) {
    call->host->set_error(call->result, "param 'token_url' is missing", 28);
    return 0;
}
void expirable_destroy(void *instance) { (void)instance; }
void expirable_fetch(const expirable_call *call) { (void)call; }
