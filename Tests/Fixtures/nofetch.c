/* Test plugin: a handshake but no expirable_fetch. */
#include "expirable.h"
void expirable_abi(expirable_abi_info *info) { info->magic = EXPIRABLE_ABI_MAGIC; info->major = EXPIRABLE_ABI_MAJOR; info->minor = 0; }
