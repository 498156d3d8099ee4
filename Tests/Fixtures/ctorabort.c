/* Test plugin: aborts in a constructor, so merely loading it (dlopen) kills the process that loads it. */
#include "expirable.h"
#include <stdlib.h>
__attribute__((constructor)) static void boom(void) { abort(); }
void expirable_abi(expirable_abi_info *info) { info->magic = EXPIRABLE_ABI_MAGIC; info->major = EXPIRABLE_ABI_MAJOR; info->minor = 0; }
void expirable_fetch(const expirable_call *call) { call->host->set_value(call->result, "n", 1, EXPIRABLE_NEVER_EXPIRES); }
