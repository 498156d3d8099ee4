/* Test plugin: a handshake with the wrong magic. */
#include "expirable.h"
void expirable_abi(expirable_abi_info *info) { info->magic = 0x12345678u; info->major = EXPIRABLE_ABI_MAJOR; info->minor = 0; }
void expirable_fetch(const expirable_call *call) { (void)call; }
