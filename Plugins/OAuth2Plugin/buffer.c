/* Growable buffers for secrets: grown by copying into fresh memory and wiping the old, never by realloc, so no
 * copy of a token or a client secret is left behind in freed memory. */
#define _GNU_SOURCE
#include "internal.h"

#include <stdlib.h>
#include <string.h>

static int reserve(oauth2_buffer *b, size_t extra, size_t limit) {
    if (extra > SIZE_MAX / 2 - b->len) return -1;
    size_t needed = b->len + extra + 1; /* and the terminating NUL */
    if (limit != 0 && b->len + extra > limit) return -1;
    if (needed <= b->cap) return 0;
    size_t cap = b->cap < 256 ? 256 : b->cap;
    while (cap < needed) cap *= 2;
    char *bigger = malloc(cap);
    if (bigger == NULL) return -1;
    if (b->ptr != NULL) {
        memcpy(bigger, b->ptr, b->len);
        explicit_bzero(b->ptr, b->cap);
        free(b->ptr);
    }
    b->ptr = bigger;
    b->cap = cap;
    return 0;
}

int oauth2_buffer_append(oauth2_buffer *b, const void *p, size_t n, size_t limit) {
    if (reserve(b, n, limit) != 0) return -1;
    if (n != 0) memcpy(b->ptr + b->len, p, n);
    b->len += n;
    b->ptr[b->len] = '\0';
    return 0;
}

int oauth2_buffer_append_str(oauth2_buffer *b, const char *s) {
    return oauth2_buffer_append(b, s, strlen(s), 0);
}

int oauth2_buffer_append_escaped(oauth2_buffer *b, const char *p, size_t n) {
    static const char hex[] = "0123456789ABCDEF";
    if (n > SIZE_MAX / 4 || reserve(b, n * 3, 0) != 0) return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~') {
            b->ptr[b->len++] = (char)c;
        } else {
            b->ptr[b->len++] = '%';
            b->ptr[b->len++] = hex[c >> 4];
            b->ptr[b->len++] = hex[c & 15];
        }
    }
    b->ptr[b->len] = '\0';
    return 0;
}

static int append_base64(oauth2_buffer *b, const unsigned char *p, size_t n, const char alphabet[64], int pad) {
    if (n > SIZE_MAX / 2 || reserve(b, (n + 2) / 3 * 4, 0) != 0) return -1;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t chunk = (uint32_t)p[i] << 16;
        if (i + 1 < n) chunk |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < n) chunk |= p[i + 2];
        b->ptr[b->len++] = alphabet[(chunk >> 18) & 63];
        b->ptr[b->len++] = alphabet[(chunk >> 12) & 63];
        if (i + 1 < n) {
            b->ptr[b->len++] = alphabet[(chunk >> 6) & 63];
        } else if (pad) {
            b->ptr[b->len++] = '=';
        }
        if (i + 2 < n) {
            b->ptr[b->len++] = alphabet[chunk & 63];
        } else if (pad) {
            b->ptr[b->len++] = '=';
        }
    }
    b->ptr[b->len] = '\0';
    return 0;
}

int oauth2_buffer_append_base64(oauth2_buffer *b, const unsigned char *p, size_t n) {
    return append_base64(b, p, n, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", 1);
}

int oauth2_buffer_append_base64url(oauth2_buffer *b, const unsigned char *p, size_t n) {
    return append_base64(b, p, n, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", 0);
}

void oauth2_buffer_wipe(oauth2_buffer *b) {
    if (b->ptr != NULL) {
        explicit_bzero(b->ptr, b->cap);
        free(b->ptr);
    }
    b->ptr = NULL;
    b->len = 0;
    b->cap = 0;
}
