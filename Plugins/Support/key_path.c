#include "PluginKeyPath.h"

#include <stdlib.h>
#include <string.h>

int expirable_path_has_dot_component(const char *path) {
    for (const char *p = path; *p != '\0';) {
        const char *end = strchr(p, '/');
        size_t n = end != NULL ? (size_t)(end - p) : strlen(p);
        if ((n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.')) return 1;
        if (end == NULL) break;
        p = end + 1;
    }
    return 0;
}

char *expirable_path_with_key(const char *path, expirable_str key, int *refused) {
    *refused = 0;
    if (memchr(key.ptr, '/', key.len) != NULL) {
        *refused = 1;
        return NULL;
    }
    size_t holes = 0;
    for (const char *p = strstr(path, "{key}"); p != NULL; p = strstr(p + 5, "{key}")) holes++;
    char *out = malloc(strlen(path) + holes * key.len + 1);
    if (out == NULL) return NULL;
    char *o = out;
    for (const char *p = path;;) {
        const char *hole = strstr(p, "{key}");
        size_t n = hole != NULL ? (size_t)(hole - p) : strlen(p);
        memcpy(o, p, n);
        o += n;
        if (hole == NULL) break;
        memcpy(o, key.ptr, key.len);
        o += key.len;
        p = hole + 5;
    }
    *o = '\0';
    if (expirable_path_has_dot_component(out)) {
        free(out);
        *refused = 1;
        return NULL;
    }
    return out;
}
