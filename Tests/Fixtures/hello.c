/* hello.c — the complete minimal Expirable plugin shown in docs/plugin-abi.md.
 * Build: cc -shared -fPIC -I/path/to/include hello.c -o libhello.so */
#include "expirable.h"

void expirable_abi(expirable_abi_info *info) {
    info->magic = EXPIRABLE_ABI_MAGIC;
    info->major = EXPIRABLE_ABI_MAJOR;
    info->minor = EXPIRABLE_ABI_MINOR;
}

void expirable_fetch(const expirable_call *call) {
    static const char value[] = "hello";
    int64_t one_hour = 60 * 60 * 1000;
    call->host->set_value(call->result, value, sizeof value - 1, call->host->now_ms() + one_hour);
}
