/* Test plugin: built for a future major version of the ABI. */
#include "expirable.h"
void expirable_abi(expirable_abi_info *info) { info->magic = EXPIRABLE_ABI_MAGIC; info->major = 2; info->minor = 3; }
void expirable_fetch(const expirable_call *call) { (void)call; }
