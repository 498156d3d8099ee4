/*
 * file — an Expirable plugin, in C, that serves the contents of a file.
 *
 * params:
 *   path      required  the file to read (read afresh on every fetch); in a keyed family, each "{key}" in it is
 *                       replaced by the call's key, which must stay within one path component (no "/", and no
 *                       "." or ".." component made of it), so a key cannot name a file outside the path's directory
 *   ttl       required  how long a value read from it stays valid: a duration ("30s", "5m") or "infinity"
 *   trim      optional  "true" (default) drops one trailing "\n" or "\r\n"; "false" keeps the bytes as they are
 *   max_size  optional  largest file accepted, in bytes (default and ceiling: EXPIRABLE_MAX_VALUE_BYTES)
 */
#define _GNU_SOURCE
#include "expirable.h"
#include "PluginKeyPath.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct file_state {
    char *path;
    int keyed; /* path holds "{key}" */
    int64_t ttl_ms; /* EXPIRABLE_NEVER_EXPIRES for "infinity" */
    int trim;
    size_t max_size;
} file_state;

void expirable_abi(expirable_abi_info *info) {
    info->magic = EXPIRABLE_ABI_MAGIC;
    info->major = EXPIRABLE_ABI_MAJOR;
    info->minor = EXPIRABLE_ABI_MINOR;
}

static void fail(const expirable_call *call, const char *format, ...) __attribute__((format(printf, 2, 3)));
static void fail(const expirable_call *call, const char *format, ...) {
    char message[512];
    va_list args;
    va_start(args, format);
    int n = vsnprintf(message, sizeof message, format, args);
    va_end(args);
    if (n < 0) n = 0;
    if ((size_t)n >= sizeof message) n = sizeof message - 1;
    call->host->set_error(call->result, message, (size_t)n);
}

static int str_is(expirable_str s, const char *literal) {
    size_t n = strlen(literal);
    return s.len == n && memcmp(s.ptr, literal, n) == 0;
}

/* The last value given for `key`, or {NULL, 0}. */
static expirable_str param(const expirable_call *call, const char *key) {
    expirable_str found = {NULL, 0};
    for (size_t i = 0; i < call->param_count; i++) {
        if (str_is(call->params[i].key, key)) found = call->params[i].value;
    }
    return found;
}

void *expirable_create(const expirable_call *call) {
    static const char *known[] = {"path", "ttl", "trim", "max_size"};
    for (size_t i = 0; i < call->param_count; i++) {
        int ok = 0;
        for (size_t k = 0; k < sizeof known / sizeof *known; k++) ok |= str_is(call->params[i].key, known[k]);
        if (!ok) {
            fail(call, "file plugin: unknown param '%.*s'; expected path, ttl, trim or max_size",
                 (int)call->params[i].key.len, call->params[i].key.ptr);
            return NULL;
        }
    }
    expirable_str path = param(call, "path");
    if (path.ptr == NULL || path.len == 0) {
        fail(call, "file plugin: param 'path' is missing; set it to the file to serve");
        return NULL;
    }
    expirable_str ttl = param(call, "ttl");
    int64_t ttl_ms;
    if (ttl.ptr == NULL) {
        fail(call, "file plugin: param 'ttl' is missing; set a duration such as \"5m\" or \"infinity\"");
        return NULL;
    } else if (str_is(ttl, "infinity")) {
        ttl_ms = EXPIRABLE_NEVER_EXPIRES;
    } else if (call->host->parse_duration_ms(ttl.ptr, ttl.len, &ttl_ms) != 0) {
        fail(call, "file plugin: param 'ttl' is \"%.*s\"; expected a duration such as \"5m\" or \"infinity\"",
             (int)ttl.len, ttl.ptr);
        return NULL;
    }
    expirable_str trim = param(call, "trim");
    if (trim.ptr != NULL && !str_is(trim, "true") && !str_is(trim, "false")) {
        fail(call, "file plugin: param 'trim' is \"%.*s\"; expected \"true\" or \"false\"", (int)trim.len, trim.ptr);
        return NULL;
    }
    size_t max_size = EXPIRABLE_MAX_VALUE_BYTES;
    expirable_str max = param(call, "max_size");
    if (max.ptr != NULL) {
        char digits[32] = {0};
        char *end = NULL;
        if (max.len == 0 || max.len >= sizeof digits) goto bad_max;
        memcpy(digits, max.ptr, max.len);
        unsigned long long parsed = strtoull(digits, &end, 10);
        if (*end != '\0' || parsed == 0 || parsed > EXPIRABLE_MAX_VALUE_BYTES) goto bad_max;
        max_size = (size_t)parsed;
    }

    file_state *state = calloc(1, sizeof *state);
    if (state == NULL || (state->path = strndup(path.ptr, path.len)) == NULL) {
        free(state);
        fail(call, "file plugin: out of memory");
        return NULL;
    }
    state->keyed = strstr(state->path, "{key}") != NULL;
    if (state->keyed && expirable_path_has_dot_component(state->path)) {
        fail(call, "file plugin: param 'path' is \"%s\", with {key} and a \".\" or \"..\" component; write the path without them, "
             "so that a key cannot name a file outside its directory", state->path);
        free(state->path);
        free(state);
        return NULL;
    }
    state->ttl_ms = ttl_ms;
    state->trim = trim.ptr == NULL || str_is(trim, "true");
    state->max_size = max_size;
    return state;

bad_max:
    fail(call, "file plugin: param 'max_size' is \"%.*s\"; expected a number of bytes from 1 to %u",
         (int)max.len, max.ptr, EXPIRABLE_MAX_VALUE_BYTES);
    return NULL;
}

void expirable_destroy(void *instance) {
    file_state *state = instance;
    if (state == NULL) return;
    free(state->path);
    free(state);
}

/* A failure that retrying cannot fix. */
static void fail_permanently(const expirable_call *call) {
    call->host->classify_error(call->result, EXPIRABLE_ERROR_PERMANENT, 0);
}

static void fetch_path(const expirable_call *call, const file_state *state, const char *path);

void expirable_fetch(const expirable_call *call) {
    const file_state *state = call->instance;
    if (!state->keyed) {
        fetch_path(call, state, state->path);
        return;
    }
    expirable_str key = call->key;
    if (key.ptr == NULL || key.len == 0) {
        fail(call, "file plugin: param 'path' uses {key}, and this call has no key; set keyed = true on the expirable and fetch NAME:KEY");
        fail_permanently(call);
        return;
    }
    int refused;
    char *path = expirable_path_with_key(state->path, key, &refused);
    if (path == NULL && !refused) {
        fail(call, "file plugin: out of memory");
        return;
    }
    if (refused) {
        fail(call, "file plugin: the key \"%.*s\" cannot be used in path %s: a key may not hold \"/\" nor make a \".\" or \"..\" "
             "component of it", (int)key.len, key.ptr, state->path);
        fail_permanently(call);
        free(path);
        return;
    }
    fetch_path(call, state, path);
    free(path);
}

static void fetch_path(const expirable_call *call, const file_state *state, const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fail(call, "file plugin: cannot open %s: %s", path, strerror(errno));
        return;
    }
    char *buffer = malloc(state->max_size + 1);
    if (buffer == NULL) {
        close(fd);
        fail(call, "file plugin: out of memory");
        return;
    }
    size_t used = 0;
    for (;;) {
        ssize_t n = read(fd, buffer + used, state->max_size + 1 - used);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            int saved = errno;
            close(fd);
            free(buffer);
            fail(call, "file plugin: cannot read %s: %s", path, strerror(saved));
            return;
        }
        if (n == 0) break;
        used += (size_t)n;
        if (used > state->max_size) {
            close(fd);
            explicit_bzero(buffer, used);
            free(buffer);
            fail(call, "file plugin: %s is larger than max_size (%zu bytes)", path, state->max_size);
            return;
        }
    }
    close(fd);
    if (state->trim && used > 0 && buffer[used - 1] == '\n') {
        used--;
        if (used > 0 && buffer[used - 1] == '\r') used--;
    }
    int64_t expires_at = state->ttl_ms == EXPIRABLE_NEVER_EXPIRES
        ? EXPIRABLE_NEVER_EXPIRES
        : call->host->now_ms() + state->ttl_ms;
    call->host->set_value(call->result, buffer, used, expires_at);
    explicit_bzero(buffer, used);
    free(buffer);
}
