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
/* Appends the base64url (RFC 4648 §5) of `n` bytes without padding, as JOSE (RFC 7515 §2) writes it. */
OAUTH2_HIDDEN int oauth2_buffer_append_base64url(oauth2_buffer *b, const unsigned char *p, size_t n);
/* Wipes and frees; the buffer is empty and reusable afterwards. */
OAUTH2_HIDDEN void oauth2_buffer_wipe(oauth2_buffer *b);

/* ---- secret_file.c ---- */

/* Largest secret file accepted (a client secret, a refresh token). */
#define OAUTH2_MAX_SECRET_FILE 16384

struct stat;

/* Opens `path` (named by param `param` in messages) for reading without blocking, so that a FIFO or a device
 * cannot hang the caller, and fstats it into `st`. Returns the descriptor of a regular file (a symlink to one is
 * followed), or -1 with the reason in `error`: cannot open, or "PATH is not a regular file". */
OAUTH2_HIDDEN int oauth2_open_regular_file(const char *param, const char *path, struct stat *st, char *error, size_t error_size);

/* Reads the secret in `path` (named by param `param` in messages) into `out`, dropping one trailing "\n" or
 * "\r\n". Refuses a file that is missing, unreadable, not a regular file, accessible by others, writable by its
 * group, empty or over OAUTH2_MAX_SECRET_FILE bytes. Returns 0, or -1 with the reason in `error`. */
OAUTH2_HIDDEN int oauth2_read_secret_file(const char *param, const char *path, oauth2_buffer *out, char *error, size_t error_size);

/* ---- ca_file.c ---- */

/* Largest ca_file accepted (a system bundle is about 200 KiB). */
#define OAUTH2_MAX_CA_FILE (4 * 1024 * 1024)

/* Whether `path` (param ca_file) is a regular file, readable, not writable by its group or others, of at most
 * OAUTH2_MAX_CA_FILE bytes, holding at least one PEM certificate. Returns 0, or -1 with the reason in `error`. */
OAUTH2_HIDDEN int oauth2_check_ca_file(const char *path, char *error, size_t error_size);
/* Whether ca_file `path`, of status `st`, is writable by its owner alone: whoever can add a CA to it can
 * impersonate the token endpoint and receive the client secret or the refresh token, as whoever can read a secret
 * file has it. Returns 0, or -1 with the reason in `error`. */
OAUTH2_HIDDEN int oauth2_check_ca_file_mode(const char *path, const struct stat *st, char *error, size_t error_size);

/* ---- client_assertion.c ---- */

/* The JWS algorithms private_key_jwt signs with (RFC 7518 §3.3, §3.4). */
enum oauth2_signing_alg { OAUTH2_ALG_RS256 = 1, OAUTH2_ALG_ES256 };

/* The algorithm named `name` (`len` bytes), or 0. */
OAUTH2_HIDDEN enum oauth2_signing_alg oauth2_signing_alg_named(const char *name, size_t len);
OAUTH2_HIDDEN const char *oauth2_signing_alg_name(enum oauth2_signing_alg alg);

/* An RSA or EC private key, parsed (an OpenSSL EVP_PKEY); freed with oauth2_signing_key_free. */
typedef struct oauth2_signing_key oauth2_signing_key;

/* Reads the private key in `path` (param private_key_file) with the checks of oauth2_read_secret_file, parses it
 * (PEM, unencrypted: PKCS#8, PKCS#1 or SEC 1) and sets `*implied` to the algorithm its type implies: RS256 for an
 * RSA key of 2048 bits or more, ES256 for an EC key on P-256. Returns the key, or NULL with the reason in `error`
 * (a key of any other type or size is refused). The file's bytes are wiped before it returns. */
OAUTH2_HIDDEN oauth2_signing_key *oauth2_signing_key_read(const char *path, enum oauth2_signing_alg *implied, char *error, size_t error_size);
OAUTH2_HIDDEN void oauth2_signing_key_free(oauth2_signing_key *key);

/* What a client assertion (RFC 7523 §3) says, besides its random jti. */
typedef struct oauth2_assertion_claims {
    const char *client_id;   /* iss and sub */
    const char *audience;    /* aud */
    const char *key_id;      /* the header's kid; NULL for none */
    int64_t now_ms;          /* iat and nbf, in seconds */
    int64_t lifetime_ms;     /* exp = iat + this, in whole seconds, at least one */
} oauth2_assertion_claims;

/* Appends the compact JWS of a client assertion with `claims` signed by `key` with `alg`, and a fresh 128-bit
 * jti. Returns 0, or -1 with the reason in `error` (no key material in it). */
OAUTH2_HIDDEN int oauth2_client_assertion(oauth2_signing_key *key, enum oauth2_signing_alg alg, const oauth2_assertion_claims *claims,
                                          oauth2_buffer *out, char *error, size_t error_size);

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
    /* With -3 from the parse: the name of the member that appears twice. */
    const char *duplicate;
} oauth2_token_response;

/* Parses `body` as one JSON object (RFC 8259) and fills `out`. Returns 0; -1 if it is not one JSON object; -2 when
 * out of memory; -3 when a member the plugin reads appears twice (`duplicate` names it: which one the endpoint
 * means is unknown). `out` must be freed either way. */
OAUTH2_HIDDEN int oauth2_token_response_parse(const char *body, size_t len, oauth2_token_response *out);
OAUTH2_HIDDEN void oauth2_token_response_free(oauth2_token_response *r);

#endif
