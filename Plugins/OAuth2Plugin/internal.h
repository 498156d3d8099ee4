/* Declarations shared by the oauth2 plugin's files; nothing here is exported from the shared object. */
#ifndef OAUTH2_INTERNAL_H
#define OAUTH2_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#define OAUTH2_HIDDEN __attribute__((visibility("hidden")))

/* ---- buffer.c ---- */

/* A growable byte buffer that may hold a secret: every byte it ever held is wiped before its memory is freed or
 * moved. Always NUL-terminated past `len` once anything was appended. */
typedef struct oauth2_buffer {
    char *ptr;
    size_t len;
    size_t cap;
} oauth2_buffer;

/* Appends `n` bytes; 0, or -1 when out of memory or past `limit` bytes in all (0: no limit). */
OAUTH2_HIDDEN int oauth2_buffer_append(oauth2_buffer *b, const void *p, size_t n, size_t limit);
OAUTH2_HIDDEN int oauth2_buffer_append_str(oauth2_buffer *b, const char *s);
/* Appends `n` bytes percent-encoded: every byte but A-Z a-z 0-9 - . _ ~ becomes %XX (RFC 3986), which is also a
 * valid application/x-www-form-urlencoded encoding and survives both kinds of decoder. */
OAUTH2_HIDDEN int oauth2_buffer_append_escaped(oauth2_buffer *b, const char *p, size_t n);
/* Appends the base64 (RFC 4648, padded) of `n` bytes. */
OAUTH2_HIDDEN int oauth2_buffer_append_base64(oauth2_buffer *b, const unsigned char *p, size_t n);
/* Wipes and frees; the buffer is empty and reusable afterwards. */
OAUTH2_HIDDEN void oauth2_buffer_wipe(oauth2_buffer *b);

/* ---- secret_file.c ---- */

/* Largest secret file accepted (a client secret, a refresh token). */
#define OAUTH2_MAX_SECRET_FILE 16384

/* Reads the secret in `path` (named by param `param` in messages) into `out`, dropping one trailing "\n" or
 * "\r\n". Refuses a file that is missing, unreadable, not a regular file, accessible by others, writable by its
 * group, empty or over OAUTH2_MAX_SECRET_FILE bytes. Returns 0, or -1 with the reason in `error`. */
OAUTH2_HIDDEN int oauth2_read_secret_file(const char *param, const char *path, oauth2_buffer *out, char *error, size_t error_size);

/* ---- token_response.c ---- */

/* What the plugin reads of a token endpoint's JSON answer (RFC 6749 §5.1, §5.2). Strings are decoded, malloc'd
 * and NUL-terminated; the tokens are wiped when freed. */
typedef struct oauth2_token_response {
    char *access_token;
    size_t access_token_len;
    char *refresh_token;
    size_t refresh_token_len;
    /* expires_in as a number, or a string of digits (as some providers send it); has_expires_in 0 when absent,
     * -1 when present but neither. */
    int has_expires_in;
    double expires_in;
    char *error;             /* the `error` code */
    char *error_description; /* `error_description` */
    /* The bytes to cut from the body to leave it without its refresh_token member: [cut_start, cut_end). */
    size_t cut_start;
    size_t cut_end;
} oauth2_token_response;

/* Parses `body` as one JSON object (RFC 8259) and fills `out`. Returns 0; -1 if it is not one JSON object (or a
 * member the plugin reads appears twice); -2 when out of memory. `out` must be freed either way. */
OAUTH2_HIDDEN int oauth2_token_response_parse(const char *body, size_t len, oauth2_token_response *out);
OAUTH2_HIDDEN void oauth2_token_response_free(oauth2_token_response *r);

#endif
