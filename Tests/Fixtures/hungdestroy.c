/* Test plugin whose expirable_destroy never returns (it sleeps 600 s) with param hang = "true"; otherwise destroy
 * writes "destroyed" to the file named by param destroyed_file (if any) and returns. Fetch answers "v". */
#include "expirable.h"
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct hung { int hang; char file[512]; } hung;

void expirable_abi(expirable_abi_info *info) { info->magic = EXPIRABLE_ABI_MAGIC; info->major = EXPIRABLE_ABI_MAJOR; info->minor = 0; }

void *expirable_create(const expirable_call *call) {
    hung *h = calloc(1, sizeof *h);
    for (size_t i = 0; i < call->param_count; i++) {
        expirable_str k = call->params[i].key, v = call->params[i].value;
        if (k.len == 4 && memcmp(k.ptr, "hang", 4) == 0) h->hang = v.len == 4 && memcmp(v.ptr, "true", 4) == 0;
        if (k.len == 14 && memcmp(k.ptr, "destroyed_file", 14) == 0 && v.len < sizeof h->file) memcpy(h->file, v.ptr, v.len);
    }
    return h;
}

void expirable_fetch(const expirable_call *call) { call->host->set_value(call->result, "v", 1, EXPIRABLE_NEVER_EXPIRES); }

void expirable_destroy(void *instance) {
    hung *h = instance;
    if (h->hang) {
        for (int i = 0; i < 600; i++) sleep(1);
    } else if (h->file[0]) {
        int fd = open(h->file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd >= 0) { (void)!write(fd, "destroyed", 9); close(fd); }
    }
    free(h);
}
