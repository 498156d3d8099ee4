/* Test plugin: expirable_create without expirable_destroy. */
#include "expirable.h"
void expirable_abi(expirable_abi_info *info) { info->magic = EXPIRABLE_ABI_MAGIC; info->major = EXPIRABLE_ABI_MAJOR; info->minor = 0; }
void *expirable_create(const expirable_call *call) { (void)call; return 0; }
void expirable_fetch(const expirable_call *call) { (void)call; }
