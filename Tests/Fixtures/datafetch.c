/* Test plugin: a correct handshake, but expirable_fetch is data, not a function. Calling it would crash the
 * daemon; loading it must be refused. */
#include "expirable.h"

void expirable_abi(expirable_abi_info *info) {
    info->magic = EXPIRABLE_ABI_MAGIC;
    info->major = EXPIRABLE_ABI_MAJOR;
    info->minor = EXPIRABLE_ABI_MINOR;
}

/* Exported under the entry point's name; the header declares that name as a function, hence the asm label. */
__attribute__((visibility("default"))) const char not_code[] __asm__("expirable_fetch") = "not code";
