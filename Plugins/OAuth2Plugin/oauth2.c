/*
 * oauth2 — an Expirable plugin, in C with libcurl, that fetches OAuth 2.0 access tokens from a token endpoint
 * (RFC 6749): the client credentials grant (§4.4), the refresh token grant (§6) with rotation, the rotating
 * refresh token kept as the expirable's state (ABI 1.2), and token exchange (RFC 8693), a token from a file traded
 * for another. The client authenticates with its secret (basic or post, RFC 6749 §2.3.1) or with a JWT signed by
 * its private key (private_key_jwt, RFC 7523, in client_assertion.c). The params are listed in docs/plugins.md;
 * what they are checked against is below, in expirable_create.
 *
 * Secrets (the client secret, the private key, client assertions, refresh and subject tokens, access tokens) live
 * only in buffers that are wiped before they are freed, never in a message, and never in the configuration: the
 * client secret, the private key, an initial refresh token and the subject token are read from files, again at
 * each call so that a file rotated on disk is used without a restart. Each call uses its own curl handle; curl_global_init runs once per
 * process.
 */
#define _GNU_SOURCE
#include "expirable.h"
#include "internal.h"
#include "PluginKeyPath.h"

#include <curl/curl.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* Largest token endpoint answer read; past it the call fails. */
#define MAX_RESPONSE_BYTES (1024u * 1024u)
/* Longest `error` / `error_description` quoted in a message. */
#define MAX_QUOTED 300

enum grant { GRANT_CLIENT_CREDENTIALS, GRANT_REFRESH_TOKEN, GRANT_TOKEN_EXCHANGE };
enum auth { AUTH_BASIC, AUTH_POST, AUTH_PRIVATE_KEY_JWT, AUTH_NONE };

/* RFC 8693 §3: the token type of an OAuth 2.0 access token, subject_token_type's default. */
#define ACCESS_TOKEN_TYPE "urn:ietf:params:oauth:token-type:access_token"

/* One form field the plugin adds to every request: `value` may hold "{key}". `param` names its origin. */
typedef struct form_field {
    char *name;
    char *value;
    const char *param;
} form_field;

typedef struct oauth2 {
    char *token_url;
    int loopback;             /* token_url is on 127.0.0.1, [::1] or localhost: never through a proxy */
    enum grant grant;
    char *client_id;
    char *client_secret_file; /* NULL with private_key_jwt, or for a public client (refresh_token, token_exchange) */
    enum auth auth;
    /* auth = private_key_jwt: the key's file, the algorithm, the header's kid (or NULL), the assertion's aud
     * (or NULL for token_url) and its lifetime. */
    char *private_key_file;
    enum oauth2_signing_alg signing_alg;
    char *key_id;
    char *assertion_audience;
    int64_t assertion_lifetime_ms;
    form_field *fields;
    size_t field_count;
    char *refresh_token_file; /* NULL: the state is the only source of a refresh token */
    int refresh_token_file_keyed; /* it holds "{key}": each key of a family starts from its own file */
    /* grant = token_exchange: the file of the token traded, its type, and the type asked for (or NULL). */
    char *subject_token_file;
    char *subject_token_type;
    char *requested_token_type;
    char *ca_file;
    int64_t timeout_ms;       /* 0: 90% of the call's timeout */
    int value_response;       /* value = "response" */
    int64_t ttl_ms;           /* 0: none; the lifetime when the answer has no expires_in */
} oauth2;

void expirable_abi(expirable_abi_info *info) {
    info->magic = EXPIRABLE_ABI_MAGIC;
    info->major = EXPIRABLE_ABI_MAJOR;
    info->minor = EXPIRABLE_ABI_MINOR;
}

/* ---- messages ---- */

/* What every error of the call under way on this thread adds at its end (NULL: nothing): why it did not do what
 * its state would have it do. */
static __thread const char *fail_note;

static void fail(const expirable_call *call, const char *format, ...) __attribute__((format(printf, 2, 3)));
static void fail(const expirable_call *call, const char *format, ...) {
    char message[1280] = "oauth2 plugin: ";
    size_t prefix = strlen(message);
    va_list args;
    va_start(args, format);
    int n = vsnprintf(message + prefix, sizeof message - prefix, format, args);
    va_end(args);
    if (n < 0) n = 0;
    size_t len = prefix + (size_t)n;
    if (len >= sizeof message) len = sizeof message - 1;
    if (fail_note != NULL && len < sizeof message - 1) {
        int more = snprintf(message + len, sizeof message - len, "%s", fail_note);
        if (more > 0) len += (size_t)more;
        if (len >= sizeof message) len = sizeof message - 1;
    }
    call->host->set_error(call->result, message, len);
}

/* Blanks, in `text`, every copy of the `len` bytes at `secret` (at least 4 of them). */
static void redact_bytes(char *text, const char *secret, size_t len) {
    if (text == NULL || secret == NULL || len < 4) return;
    size_t length = strlen(text);
    char *at = text;
    while ((at = memmem(at, length - (size_t)(at - text), secret, len)) != NULL) {
        memset(at, '*', len);
        at += len;
    }
}

/* Blanks, in `text`, every copy of `secret` as it was sent: its bytes, and its form encoding (the form and the
 * Basic credentials percent-encode it, so "s3cr&t" went out as "s3cr%26t"): an endpoint that echoes what it was
 * sent ("Invalid refresh token: <token>", or the raw form) must not put the secret in a message or the daemon's
 * log. */
static void redact(char *text, const oauth2_buffer *secret) {
    if (text == NULL || secret->ptr == NULL) return;
    redact_bytes(text, secret->ptr, secret->len);
    oauth2_buffer encoded = {0};
    if (oauth2_buffer_append_escaped(&encoded, secret->ptr, secret->len) == 0 && encoded.len != secret->len) {
        redact_bytes(text, encoded.ptr, encoded.len);
    }
    oauth2_buffer_wipe(&encoded);
}

/* The length of the UTF-8 sequence at `p` that must not reach a terminal or a log reader: a C1 control
 * (U+0080-009F, an 8-bit CSI among them), a zero-width or direction mark or override (U+200B-200F,
 * U+202A-202E, U+2066-2069), a line or paragraph separator (U+2028-2029), a byte-order mark (U+FEFF); 0 if none. */
static size_t invisible(const unsigned char *p) {
    if (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) return 2;
    if (p[0] == 0xe2 && p[1] == 0x80 && ((p[2] >= 0x8b && p[2] <= 0x8f) || (p[2] >= 0xa8 && p[2] <= 0xae))) return 3;
    if (p[0] == 0xe2 && p[1] == 0x81 && p[2] >= 0xa6 && p[2] <= 0xa9) return 3;
    if (p[0] == 0xef && p[1] == 0xbb && p[2] == 0xbf) return 3;
    return 0;
}

/* `text` for a message: at most MAX_QUOTED bytes, every control character (C0, DEL, C1) and invisible
 * formatting character above a space. */
static void quote(char out[MAX_QUOTED + 1], const char *text) {
    size_t n = 0;
    const unsigned char *p = (const unsigned char *)text;
    while (*p != '\0' && n < MAX_QUOTED) {
        size_t skip = invisible(p);  /* reads past the end never: each test stops at a NUL, which no byte matches */
        if (skip != 0) {
            out[n++] = ' ';
            p += skip;
            continue;
        }
        out[n++] = (*p < 0x20 || *p == 0x7f) ? ' ' : (char)*p;
        p++;
    }
    out[n] = '\0';
}

/* ---- params ---- */

static int str_is(expirable_str s, const char *literal) {
    size_t n = strlen(literal);
    return s.len == n && (n == 0 || memcmp(s.ptr, literal, n) == 0);
}

/* The one value of `key`, or {NULL, 0}; repeated keys were refused before. */
static expirable_str param(const expirable_call *call, const char *key) {
    for (size_t i = 0; i < call->param_count; i++) {
        if (str_is(call->params[i].key, key)) return call->params[i].value;
    }
    return (expirable_str){NULL, 0};
}

static char *copy(expirable_str s) {
    return strndup(s.ptr != NULL ? s.ptr : "", s.len);
}

static void destroy(oauth2 *o) {
    if (o == NULL) return;
    free(o->token_url);
    free(o->client_id);
    free(o->client_secret_file);
    free(o->private_key_file);
    free(o->key_id);
    free(o->assertion_audience);
    for (size_t i = 0; i < o->field_count; i++) {
        free(o->fields[i].name);
        free(o->fields[i].value);
    }
    free(o->fields);
    free(o->refresh_token_file);
    free(o->subject_token_file);
    free(o->subject_token_type);
    free(o->requested_token_type);
    free(o->ca_file);
    free(o);
}

static int add_field(oauth2 *o, const char *name, size_t name_len, const char *value, size_t value_len, const char *origin) {
    form_field *grown = realloc(o->fields, (o->field_count + 1) * sizeof *grown);
    if (grown == NULL) return -1;
    o->fields = grown;
    form_field *f = &o->fields[o->field_count];
    f->name = strndup(name, name_len);
    f->value = strndup(value, value_len);
    f->param = origin;
    if (f->name == NULL || f->value == NULL) {
        free(f->name);
        free(f->value);
        return -1;
    }
    o->field_count++;
    return 0;
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_ready = CURLE_FAILED_INIT;

static void init_curl(void) {
    curl_ready = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static const char *const known_params[] = {
    "assertion_audience", "assertion_lifetime", "audience", "auth", "ca_file", "client_id", "client_secret_file", "form", "grant",
    "key_id", "private_key_file", "refresh_token_file", "requested_token_type", "resource", "scope", "signing_alg", "subject_token_file",
    "subject_token_type", "timeout", "token_url", "ttl", "value",
};
static const char *const repeatable_params[] = {"audience", "form", "resource", "scope"};
/* Params naming a file: absolute paths only, since the plugin does not know the configuration file's directory and
 * the daemon's working directory is nothing the configuration controls. */
static const char *const path_params[] = {"ca_file", "client_secret_file", "private_key_file", "refresh_token_file", "subject_token_file"};
/* Form fields the plugin writes itself, or that carry a secret and so never come from the configuration. */
static const char *const reserved_fields[] = {
    "grant_type", "client_id", "client_secret", "refresh_token", "scope", "audience", "resource",
    "password", "assertion", "client_assertion", "client_assertion_type", "code", "code_verifier", "subject_token", "actor_token",
    "subject_token_type", "requested_token_type", "actor_token_type",
};

static int is_one_of(expirable_str s, const char *const *list, size_t count) {
    for (size_t i = 0; i < count; i++) {
        if (str_is(s, list[i])) return 1;
    }
    return 0;
}

#define COUNT(array) (sizeof(array) / sizeof *(array))

/* Whether `url` is acceptable as token_url (and whether it is on loopback); when not, the reason in `why`. */
static int check_url(const char *url, int *loopback, char *why, size_t why_size) {
    CURLU *u = curl_url();
    if (u == NULL) {
        snprintf(why, why_size, "out of memory");
        return -1;
    }
    int ok = -1;
    char *scheme = NULL, *host = NULL, *user = NULL, *password = NULL;
    CURLUcode parsed = curl_url_set(u, CURLUPART_URL, url, 0);
    if (parsed == CURLUE_BAD_PORT_NUMBER) {
        snprintf(why, why_size, "is \"%s\", whose port is not a number from 1 to 65535", url);
        goto out;
    }
    if (parsed != CURLUE_OK) {
        snprintf(why, why_size, "is \"%s\", which curl cannot parse as a URL (%s); write it without spaces, such as \"https://idp.example/oauth2/token\"",
                 url, curl_url_strerror(parsed));
        goto out;
    }
    if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK || curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
        snprintf(why, why_size, "is \"%s\"; expected an https:// URL", url);
        goto out;
    }
    if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK || curl_url_get(u, CURLUPART_PASSWORD, &password, 0) == CURLUE_OK) {
        snprintf(why, why_size, "carries a user name or password; put the client secret in the file named by client_secret_file");
        goto out;
    }
    *loopback = strcmp(host, "127.0.0.1") == 0 || strcmp(host, "[::1]") == 0 || strcasecmp(host, "localhost") == 0;
    if (strcasecmp(scheme, "https") == 0 || (strcasecmp(scheme, "http") == 0 && *loopback)) {
        ok = 0; /* plain http only where nothing crosses a network */
    } else if (strcasecmp(scheme, "http") == 0) {
        snprintf(why, why_size, "is \"%s\": plain http would send the client secret and tokens unencrypted; use https:// "
                 "(http:// is accepted for 127.0.0.1, [::1] and localhost only)", url);
    } else {
        snprintf(why, why_size, "is \"%s\"; expected an https:// URL", url);
    }
out:
    curl_free(scheme);
    curl_free(host);
    curl_free(user);
    curl_free(password);
    curl_url_cleanup(u);
    return ok;
}

static int same(expirable_str a, expirable_str b) {
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

static int has_nul(expirable_str s) {
    return s.len != 0 && memchr(s.ptr, '\0', s.len) != NULL;
}

/* auth = basic | post, or none for a public client: the client secret's file, checked here and read again at each
 * call. 0; -1 when refused (reported); -2 when out of memory. */
static int configure_secret(const expirable_call *call, oauth2 *o, expirable_str auth) {
    static const char *const jwt_params[] = {"assertion_audience", "assertion_lifetime", "key_id", "private_key_file", "signing_alg"};
    for (size_t i = 0; i < COUNT(jwt_params); i++) {
        if (param(call, jwt_params[i]).ptr != NULL) {
            fail(call, "param '%s' is for auth = \"private_key_jwt\"; set auth = \"private_key_jwt\" to sign with private_key_file, or remove it",
                 jwt_params[i]);
            return -1;
        }
    }
    char why[768];
    expirable_str secret_file = param(call, "client_secret_file");
    if (secret_file.len != 0) {
        if ((o->client_secret_file = copy(secret_file)) == NULL) return -2;
        oauth2_buffer secret = {0};
        int rc = oauth2_read_secret_file("client_secret_file", o->client_secret_file, &secret, why, sizeof why);
        oauth2_buffer_wipe(&secret);
        if (rc != 0) {
            fail(call, "%s", why);
            return -1;
        }
    } else if (o->grant == GRANT_CLIENT_CREDENTIALS) {
        fail(call, "param 'client_secret_file' is missing; the client credentials grant needs the client secret, in a file only the daemon can read "
             "(chmod 600), or auth = \"private_key_jwt\" with the client's private key in private_key_file");
        return -1;
    }
    if (auth.ptr != NULL && o->client_secret_file == NULL) {
        fail(call, "param 'auth' says how to send the client secret, and there is none; set client_secret_file, or remove auth for a public client");
        return -1;
    }
    if (o->client_secret_file == NULL) {
        o->auth = AUTH_NONE;
    } else if (auth.ptr == NULL || str_is(auth, "basic")) {
        o->auth = AUTH_BASIC;
    } else if (str_is(auth, "post")) {
        o->auth = AUTH_POST;
    } else {
        fail(call, "param 'auth' is \"%.*s\"; expected \"basic\" (client_secret_basic, the default), \"post\" (client_secret_post) or "
             "\"private_key_jwt\" (a JWT signed with the key in private_key_file)", (int)auth.len, auth.ptr);
        return -1;
    }
    return 0;
}

/* Longest assertion_lifetime: a captured assertion is a credential until it expires, for a server that does not
 * remember jti values. */
#define MAX_ASSERTION_LIFETIME_MS (3600 * 1000)

/* auth = private_key_jwt (RFC 7523 §2.2): the key is read and checked here, and again at each call. 0; -1 when
 * refused (reported); -2 when out of memory. */
static int configure_private_key_jwt(const expirable_call *call, oauth2 *o) {
    if (param(call, "client_secret_file").ptr != NULL) {
        fail(call, "param 'client_secret_file' is set with auth = \"private_key_jwt\", which signs with the key in private_key_file and sends no "
             "secret; remove client_secret_file, or auth for client_secret_basic");
        return -1;
    }
    expirable_str file = param(call, "private_key_file");
    if (file.len == 0) {
        fail(call, "param 'private_key_file' is missing; auth = \"private_key_jwt\" signs each request with the client's private key "
             "(PEM, RSA or EC P-256), in a file only the daemon can read (chmod 600)");
        return -1;
    }
    if ((o->private_key_file = copy(file)) == NULL) return -2;
    char why[768];
    enum oauth2_signing_alg implied = 0;
    oauth2_signing_key *key = oauth2_signing_key_read(o->private_key_file, &implied, why, sizeof why);
    if (key == NULL) {
        fail(call, "%s", why);
        return -1;
    }
    oauth2_signing_key_free(key);

    expirable_str alg = param(call, "signing_alg");
    o->signing_alg = alg.ptr == NULL ? implied : oauth2_signing_alg_named(alg.ptr, alg.len);
    if (o->signing_alg == 0) {
        fail(call, "param 'signing_alg' is \"%.*s\"; expected \"RS256\" (an RSA key) or \"ES256\" (an EC key on P-256)", (int)alg.len, alg.ptr);
        return -1;
    }
    if (o->signing_alg != implied) {
        fail(call, "param 'signing_alg' is \"%s\", and %s is %s key, which signs %s; set signing_alg = \"%s\", or name a key for %s in private_key_file",
             oauth2_signing_alg_name(o->signing_alg), o->private_key_file, implied == OAUTH2_ALG_RS256 ? "an RSA" : "an EC P-256",
             oauth2_signing_alg_name(implied), oauth2_signing_alg_name(implied), oauth2_signing_alg_name(o->signing_alg));
        return -1;
    }

    expirable_str kid = param(call, "key_id");
    if (kid.ptr != NULL) {
        if (kid.len == 0) {
            fail(call, "param 'key_id' is empty; set it to the key's identifier registered at the identity provider (the JWT header's kid), or remove it");
            return -1;
        }
        if ((o->key_id = copy(kid)) == NULL) return -2;
    }
    expirable_str audience = param(call, "assertion_audience");
    if (audience.ptr != NULL) {
        if (audience.len == 0) {
            fail(call, "param 'assertion_audience' is empty; set it to what the identity provider expects as the assertion's aud "
                 "(its token endpoint, the default, or its issuer), or remove it");
            return -1;
        }
        if ((o->assertion_audience = copy(audience)) == NULL) return -2;
    }
    expirable_str lifetime = param(call, "assertion_lifetime");
    o->assertion_lifetime_ms = 60 * 1000;
    if (lifetime.ptr != NULL && (call->host->parse_duration_ms(lifetime.ptr, lifetime.len, &o->assertion_lifetime_ms) != 0
                                 || o->assertion_lifetime_ms < 1000 || o->assertion_lifetime_ms > MAX_ASSERTION_LIFETIME_MS)) {
        fail(call, "param 'assertion_lifetime' is \"%.*s\"; expected a duration from \"1s\" to \"1h\" (the default is \"60s\"): how long each "
             "client assertion is valid", (int)lifetime.len, lifetime.ptr);
        return -1;
    }
    o->auth = AUTH_PRIVATE_KEY_JWT;
    return 0;
}

/* grant = token_exchange (RFC 8693 §2.1): the subject token's file, checked here and read again at each call, and
 * the token types; the params are refused with other grants. 0; -1 when refused (reported); -2 when out of memory. */
static int configure_token_exchange(const expirable_call *call, oauth2 *o) {
    static const char *const exchange_params[] = {"requested_token_type", "subject_token_file", "subject_token_type"};
    if (o->grant != GRANT_TOKEN_EXCHANGE) {
        for (size_t i = 0; i < COUNT(exchange_params); i++) {
            if (param(call, exchange_params[i]).ptr != NULL) {
                fail(call, "param '%s' needs grant = \"token_exchange\"; remove it, or set grant", exchange_params[i]);
                return -1;
            }
        }
        return 0;
    }
    expirable_str file = param(call, "subject_token_file");
    if (file.len == 0) {
        fail(call, "param 'subject_token_file' is missing; grant = \"token_exchange\" trades the token in that file (RFC 8693 subject_token) "
             "for another, so it needs the file, readable only by the daemon (chmod 600)");
        return -1;
    }
    if ((o->subject_token_file = copy(file)) == NULL) return -2;
    char why[768];
    oauth2_buffer token = {0};
    int rc = oauth2_read_secret_file("subject_token_file", o->subject_token_file, &token, why, sizeof why);
    oauth2_buffer_wipe(&token);
    if (rc != 0) {
        fail(call, "%s", why);
        return -1;
    }
    for (size_t i = 0; i < 2; i++) {
        const char *name = i == 0 ? "subject_token_type" : "requested_token_type";
        expirable_str type = param(call, name);
        if (type.ptr != NULL && type.len == 0) {
            fail(call, "param '%s' is empty; set it to a token type URI such as \"%s\", or remove it", name, ACCESS_TOKEN_TYPE);
            return -1;
        }
        char **slot = i == 0 ? &o->subject_token_type : &o->requested_token_type;
        if (type.ptr != NULL && (*slot = copy(type)) == NULL) return -2;
    }
    if (o->subject_token_type == NULL && (o->subject_token_type = strdup(ACCESS_TOKEN_TYPE)) == NULL) return -2;
    return 0;
}

void *expirable_create(const expirable_call *call) {
    pthread_once(&curl_once, init_curl);
    if (curl_ready != CURLE_OK) {
        fail(call, "curl_global_init failed: %s", curl_easy_strerror(curl_ready));
        return NULL;
    }
    char why[768];
    for (size_t i = 0; i < call->param_count; i++) {
        expirable_str key = call->params[i].key;
        if (str_is(key, "client_secret") || str_is(key, "refresh_token") || str_is(key, "private_key") || str_is(key, "subject_token")) {
            fail(call, "param '%.*s' would put a secret in the configuration; write it to a file only the daemon can read (chmod 600) and set %.*s_file to its path",
                 (int)key.len, key.ptr, (int)key.len, key.ptr);
            return NULL;
        }
        if (!is_one_of(key, known_params, COUNT(known_params))) {
            fail(call, "unknown param '%.*s'; expected one of assertion_audience, assertion_lifetime, audience, auth, ca_file, client_id, "
                 "client_secret_file, form, grant, key_id, private_key_file, refresh_token_file, requested_token_type, resource, scope, "
                 "signing_alg, subject_token_file, subject_token_type, timeout, token_url, ttl, value", (int)key.len, key.ptr);
            return NULL;
        }
        if (has_nul(call->params[i].value)) {
            fail(call, "param '%.*s' contains a NUL byte", (int)key.len, key.ptr);
            return NULL;
        }
        if (is_one_of(key, path_params, COUNT(path_params))) {
            expirable_str path = call->params[i].value;
            if (path.len == 0) {
                fail(call, "param '%.*s' is empty; set it to a file's absolute path, or remove it", (int)key.len, key.ptr);
                return NULL;
            }
            if (!str_is(key, "refresh_token_file") && memmem(path.ptr, path.len, "{key}", 5) != NULL) {
                fail(call, "param '%.*s' is \"%.*s\", with {key}, which only refresh_token_file replaces (each key's first refresh token); name the "
                     "one file every key uses", (int)key.len, key.ptr, (int)path.len, path.ptr);
                return NULL;
            }
            if (path.ptr[0] != '/') {
                fail(call, "param '%.*s' is \"%.*s\", a relative path, which would depend on the daemon's working directory; write its "
                     "absolute path (the plugin does not know where the configuration file is)", (int)key.len, key.ptr, (int)path.len, path.ptr);
                return NULL;
            }
        }
        /* Params arrive sorted by key, an array as its key repeated. */
        if (i > 0 && same(call->params[i - 1].key, key) && !is_one_of(key, repeatable_params, COUNT(repeatable_params))) {
            fail(call, "param '%.*s' is given more than once; expected one value", (int)key.len, key.ptr);
            return NULL;
        }
    }

    oauth2 *o = calloc(1, sizeof *o);
    if (o == NULL) goto out_of_memory;

    expirable_str url = param(call, "token_url");
    if (url.len == 0) {
        fail(call, "param 'token_url' is missing; set it to the token endpoint, such as \"https://idp.example/oauth2/token\"");
        goto refuse;
    }
    if ((o->token_url = copy(url)) == NULL) goto out_of_memory;
    if (check_url(o->token_url, &o->loopback, why, sizeof why) != 0) {
        fail(call, "param 'token_url' %s", why);
        goto refuse;
    }

    expirable_str grant = param(call, "grant");
    if (grant.ptr == NULL || str_is(grant, "client_credentials")) {
        o->grant = GRANT_CLIENT_CREDENTIALS;
    } else if (str_is(grant, "refresh_token")) {
        o->grant = GRANT_REFRESH_TOKEN;
    } else if (str_is(grant, "token_exchange")) {
        o->grant = GRANT_TOKEN_EXCHANGE;
    } else {
        fail(call, "param 'grant' is \"%.*s\"; expected \"client_credentials\", \"refresh_token\" or \"token_exchange\"", (int)grant.len, grant.ptr);
        goto refuse;
    }

    expirable_str client_id = param(call, "client_id");
    if (client_id.len == 0) {
        fail(call, "param 'client_id' is missing; set it to the client's identifier at the identity provider");
        goto refuse;
    }
    if ((o->client_id = copy(client_id)) == NULL) goto out_of_memory;

    expirable_str auth = param(call, "auth");
    int configured = str_is(auth, "private_key_jwt") ? configure_private_key_jwt(call, o) : configure_secret(call, o, auth);
    if (configured == -2) goto out_of_memory;
    if (configured != 0) goto refuse;

    /* scope: one value, or an array joined with spaces (RFC 6749 §3.3). */
    oauth2_buffer scope = {0};
    for (size_t i = 0; i < call->param_count; i++) {
        if (!str_is(call->params[i].key, "scope")) continue;
        expirable_str v = call->params[i].value;
        if (v.len == 0 || (scope.len != 0 && oauth2_buffer_append(&scope, " ", 1, 0) != 0) || oauth2_buffer_append(&scope, v.ptr, v.len, 0) != 0) {
            oauth2_buffer_wipe(&scope);
            if (v.len == 0) {
                fail(call, "param 'scope' has an empty value; remove it or name the scopes");
                goto refuse;
            }
            goto out_of_memory;
        }
    }
    if (scope.len != 0) {
        int rc = add_field(o, "scope", 5, scope.ptr, scope.len, "scope");
        oauth2_buffer_wipe(&scope);
        if (rc != 0) goto out_of_memory;
    }
    for (size_t i = 0; i < call->param_count; i++) {
        expirable_str key = call->params[i].key, v = call->params[i].value;
        if (str_is(key, "audience") || str_is(key, "resource")) {
            const char *name = str_is(key, "audience") ? "audience" : "resource";
            if (v.len == 0) {
                fail(call, "param '%s' has an empty value; remove it or set it", name);
                goto refuse;
            }
            if (add_field(o, name, strlen(name), v.ptr, v.len, name) != 0) goto out_of_memory;
        } else if (str_is(key, "form")) {
            const char *equals = memchr(v.ptr, '=', v.len);
            if (equals == NULL || equals == v.ptr) {
                fail(call, "param 'form' has \"%.*s\"; expected \"NAME=VALUE\", such as form = [\"tenant=contoso\"]", (int)v.len, v.ptr);
                goto refuse;
            }
            expirable_str name = {v.ptr, (size_t)(equals - v.ptr)};
            /* Only values are expanded: a key that names a field could set one the plugin sets itself. */
            if (memmem(name.ptr, name.len, "{key}", 5) != NULL) {
                fail(call, "param 'form' has \"%.*s\", with {key} in the field's name; {key} is replaced in values only: write the name itself, "
                     "such as form = [\"tenant={key}\"]", (int)v.len, v.ptr);
                goto refuse;
            }
            if (is_one_of(name, reserved_fields, COUNT(reserved_fields))) {
                fail(call, "param 'form' sets '%.*s', which the plugin sets itself or which would put a secret in the configuration; "
                     "use the params scope, audience, resource, client_secret_file or refresh_token_file", (int)name.len, name.ptr);
                goto refuse;
            }
            if (add_field(o, name.ptr, name.len, equals + 1, v.len - name.len - 1, "form") != 0) goto out_of_memory;
        }
    }

    expirable_str refresh_file = param(call, "refresh_token_file");
    if (refresh_file.len != 0) {
        if (o->grant != GRANT_REFRESH_TOKEN) {
            fail(call, "param 'refresh_token_file' needs grant = \"refresh_token\"; the %s grant uses no refresh token",
                 o->grant == GRANT_TOKEN_EXCHANGE ? "token exchange" : "client credentials");
            goto refuse;
        }
        if ((o->refresh_token_file = copy(refresh_file)) == NULL) goto out_of_memory;
        /* With {key}, each key of a keyed family starts from its own file, read at its first call (there is no key
         * here); without it, one file is the start of the expirable's one state. */
        o->refresh_token_file_keyed = strstr(o->refresh_token_file, "{key}") != NULL;
        if (o->refresh_token_file_keyed && expirable_path_has_dot_component(o->refresh_token_file)) {
            fail(call, "param 'refresh_token_file' is \"%s\", with {key} and a \".\" or \"..\" component; write the path without them, "
                 "so that a key cannot name a file outside its directory", o->refresh_token_file);
            goto refuse;
        }
        if (!o->refresh_token_file_keyed) {
            oauth2_buffer token = {0};
            int rc = oauth2_read_secret_file("refresh_token_file", o->refresh_token_file, &token, why, sizeof why);
            oauth2_buffer_wipe(&token);
            if (rc != 0) {
                fail(call, "%s", why);
                goto refuse;
            }
        }
    }

    int configured_exchange = configure_token_exchange(call, o);
    if (configured_exchange == -2) goto out_of_memory;
    if (configured_exchange != 0) goto refuse;

    expirable_str ca = param(call, "ca_file");
    if (ca.len != 0) {
        if ((o->ca_file = copy(ca)) == NULL) goto out_of_memory;
        if (oauth2_check_ca_file(o->ca_file, why, sizeof why) != 0) {
            fail(call, "%s", why);
            goto refuse;
        }
    }

    expirable_str timeout = param(call, "timeout");
    if (timeout.ptr != NULL) {
        if (call->host->parse_duration_ms(timeout.ptr, timeout.len, &o->timeout_ms) != 0 || o->timeout_ms <= 0) {
            fail(call, "param 'timeout' is \"%.*s\"; expected a duration above zero such as \"5s\"", (int)timeout.len, timeout.ptr);
            goto refuse;
        }
        if (call->timeout_ms > 0 && o->timeout_ms >= call->timeout_ms) {
            fail(call, "param 'timeout' (%lld ms) must be below the expirable's timeout (%lld ms), so that the plugin reports its own error "
                 "before the call is cut off; lower it or raise the expirable's timeout", (long long)o->timeout_ms, (long long)call->timeout_ms);
            goto refuse;
        }
    }

    expirable_str value = param(call, "value");
    if (value.ptr == NULL || str_is(value, "access_token")) {
        o->value_response = 0;
    } else if (str_is(value, "response")) {
        o->value_response = 1;
    } else {
        fail(call, "param 'value' is \"%.*s\"; expected \"access_token\" (the default) or \"response\" (the whole JSON answer)", (int)value.len, value.ptr);
        goto refuse;
    }

    expirable_str ttl = param(call, "ttl");
    if (ttl.ptr != NULL && (call->host->parse_duration_ms(ttl.ptr, ttl.len, &o->ttl_ms) != 0 || o->ttl_ms <= 0)) {
        fail(call, "param 'ttl' is \"%.*s\"; expected a duration above zero such as \"1h\", the tokens' lifetime when the answer has no expires_in",
             (int)ttl.len, ttl.ptr);
        goto refuse;
    }
    return o;

out_of_memory:
    fail(call, "out of memory");
refuse:
    destroy(o);
    return NULL;
}

void expirable_destroy(void *instance) {
    destroy(instance);
}

/* ---- one request ---- */

typedef struct answer {
    oauth2_buffer body;
    int too_large;
    int retry_after_number; /* a Retry-After of digits, not all zeros: curl reads 0 for one that overflows it */
} answer;

/* Notes a Retry-After that is a number of seconds (RFC 9110 §10.2.3) above zero, however long. */
static size_t on_header(char *data, size_t size, size_t count, void *user) {
    answer *a = user;
    size_t n = size * count;
    static const char name[] = "retry-after:";
    if (n < sizeof name - 1 || strncasecmp(data, name, sizeof name - 1) != 0) return n;
    const char *p = data + sizeof name - 1, *end = data + n;
    while (p < end && (*p == ' ' || *p == '\t')) p++;
    int digits = 0, nonzero = 0;
    for (; p < end && *p >= '0' && *p <= '9'; p++, digits = 1) nonzero |= *p != '0';
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) p++;
    a->retry_after_number = digits && nonzero && p == end;
    return n;
}

static size_t on_body(char *data, size_t size, size_t count, void *user) {
    answer *a = user;
    size_t n = size * count;
    if (oauth2_buffer_append(&a->body, data, n, MAX_RESPONSE_BYTES) != 0) {
        a->too_large = a->body.len + n > MAX_RESPONSE_BYTES;
        return 0; /* curl stops with CURLE_WRITE_ERROR */
    }
    return n;
}

/* `value` with every "{key}" replaced by the call's key, appended percent-encoded. 0; -1 if it has "{key}" and the
 * call has none; -2 when out of memory. */
static int append_expanded(oauth2_buffer *body, const char *value, expirable_str key) {
    oauth2_buffer expanded = {0};
    int rc = 0;
    const char *p = value;
    if (oauth2_buffer_append(&expanded, "", 0, 0) != 0) return -2;
    for (;;) {
        const char *hole = strstr(p, "{key}");
        size_t n = hole != NULL ? (size_t)(hole - p) : strlen(p);
        if (oauth2_buffer_append(&expanded, p, n, 0) != 0) { rc = -2; break; }
        if (hole == NULL) break;
        if (key.len == 0) { rc = -1; break; }
        if (oauth2_buffer_append(&expanded, key.ptr, key.len, 0) != 0) { rc = -2; break; }
        p = hole + 5;
    }
    if (rc == 0 && oauth2_buffer_append_escaped(body, expanded.ptr, expanded.len) != 0) rc = -2;
    oauth2_buffer_wipe(&expanded);
    return rc;
}

static int append_field(oauth2_buffer *body, const char *name, const char *value, size_t value_len) {
    if (body->len != 0 && oauth2_buffer_append(body, "&", 1, 0) != 0) return -1;
    if (oauth2_buffer_append_str(body, name) != 0 || oauth2_buffer_append(body, "=", 1, 0) != 0) return -1;
    return oauth2_buffer_append_escaped(body, value, value_len);
}

static int is_permanent_code(const char *code) {
    static const char *const permanent[] = {
        "invalid_request", "invalid_client", "invalid_grant", "unauthorized_client", "unsupported_grant_type", "invalid_scope",
        "invalid_target", /* RFC 8707: a resource the server does not know */
    };
    for (size_t i = 0; i < COUNT(permanent); i++) {
        if (strcmp(code, permanent[i]) == 0) return 1;
    }
    return 0;
}

static void wipe_headers(struct curl_slist *headers) {
    for (struct curl_slist *h = headers; h != NULL; h = h->next) explicit_bzero(h->data, strlen(h->data));
    curl_slist_free_all(headers);
}

/* The first refresh token of a call without state, from refresh_token_file: the key's own file when its path has
 * {key}. A keyed call on a path without {key} is refused, not sent: every key would start from the same token, and
 * the second to use it would be a reuse, for which the identity provider revokes the whole token family (the
 * first key's too). 0; -1 when refused (reported); -2 when out of memory. */
static int read_refresh_token_file(const expirable_call *call, const oauth2 *o, oauth2_buffer *refresh) {
    char why[768];
    if (!o->refresh_token_file_keyed) {
        if (call->key.len != 0) {
            fail(call, "param 'refresh_token_file' %s is shared by every key of the family, and a refresh token used by two keys is a reuse "
                 "that revokes its whole family; write {key} in its path (such as /etc/expirable/refresh_tokens/{key}) and put each key's "
                 "first refresh token in its own file", o->refresh_token_file);
            return -1;
        }
        if (oauth2_read_secret_file("refresh_token_file", o->refresh_token_file, refresh, why, sizeof why) != 0) {
            fail(call, "%s", why);
            return -1;
        }
        return 0;
    }
    expirable_str key = call->key;
    if (key.len == 0) {
        fail(call, "param 'refresh_token_file' uses {key}, and this call has no key; set keyed = true on the expirable and fetch NAME:KEY");
        return -1;
    }
    /* The path itself has no "." or ".." component (checked at create): only the key can make one. */
    int refused;
    char *path = expirable_path_with_key(o->refresh_token_file, key, &refused);
    if (path == NULL && !refused) return -2;
    int rc = 0;
    if (refused) {
        fail(call, "the key \"%.*s\" cannot be used in param 'refresh_token_file' %s: a key may not hold \"/\" nor make a \".\" or \"..\" "
             "component of it", (int)key.len, key.ptr, o->refresh_token_file);
        rc = -1;
    } else if (oauth2_read_secret_file("refresh_token_file", path, refresh, why, sizeof why) != 0) {
        fail(call, "%s", why);
        rc = -1;
    }
    free(path);
    return rc;
}

/* The length of the longest prefix of `p` (`len` bytes) that is well-formed UTF-8 (RFC 3629: no overlong form, no
 * surrogate, nothing above U+10FFFF); `len` when it all is. */
static size_t utf8_prefix(const unsigned char *p, size_t len) {
    size_t i = 0;
    while (i < len) {
        unsigned char c = p[i];
        size_t n;
        unsigned least;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            n = 1, least = 0x80;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2, least = 0x800;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3, least = 0x10000;
        } else {
            return i;
        }
        if (len - i <= n) return i;
        unsigned cp = c & (0x3fu >> n);
        for (size_t k = 1; k <= n; k++) {
            if ((p[i + k] & 0xc0) != 0x80) return i;
            cp = cp << 6 | (p[i + k] & 0x3fu);
        }
        if (cp < least || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
        i += n + 1;
    }
    return len;
}

/* The state of grant = refresh_token: the refresh token bound to the token_url and client_id it was issued for,
 * STATE_MAGIC, token_url, NUL, client_id, NUL, then the token. A state saved for another endpoint (the
 * configuration changed since, across a restart or a reload that kept the state) is never sent to this one: it
 * would hand one identity provider's live token, with the client's credentials, to another. token_url and
 * client_id hold no NUL (refused at create); the earlier format, the bare token, starts with none. */
#define STATE_MAGIC "\0expirable-oauth2-state-1\0"
#define STATE_MAGIC_LEN (sizeof STATE_MAGIC - 1)

/* The bytes a state takes beside its token. */
static size_t state_overhead(const oauth2 *o) {
    return STATE_MAGIC_LEN + strlen(o->token_url) + 1 + strlen(o->client_id) + 1;
}

/* Sets the state to `token` (`len` bytes) bound to this expirable's token_url and client_id. 0; -2 when out of
 * memory. */
static int set_bound_state(const expirable_call *call, const oauth2 *o, const char *token, size_t len) {
    oauth2_buffer state = {0};
    int rc = oauth2_buffer_append(&state, STATE_MAGIC, STATE_MAGIC_LEN, 0) != 0 || oauth2_buffer_append(&state, o->token_url, strlen(o->token_url) + 1, 0) != 0
             || oauth2_buffer_append(&state, o->client_id, strlen(o->client_id) + 1, 0) != 0 || oauth2_buffer_append(&state, token, len, 0) != 0
             ? -2 : 0;
    if (rc == 0) call->host->set_state(call->result, state.ptr, state.len);
    oauth2_buffer_wipe(&state);
    return rc;
}

/* Reads the call's state (not empty). 1: bound to this token_url and client_id, its token in `*token`; 0: the
 * earlier format, the whole state the token; -1: bound to another endpoint or client, `*issuer_url` and
 * `*issuer_client` (NUL-terminated, in the state) name them, or are "?" in a state that cannot be read. */
static int read_state(const oauth2 *o, expirable_str state, expirable_str *token, const char **issuer_url, const char **issuer_client) {
    if (state.len < STATE_MAGIC_LEN || memcmp(state.ptr, STATE_MAGIC, STATE_MAGIC_LEN) != 0) {
        *token = state;
        return 0;
    }
    const char *url = state.ptr + STATE_MAGIC_LEN, *end = state.ptr + state.len;
    const char *url_end = memchr(url, '\0', (size_t)(end - url));
    const char *client = url_end != NULL ? url_end + 1 : NULL;
    const char *client_end = client != NULL ? memchr(client, '\0', (size_t)(end - client)) : NULL;
    if (client_end == NULL || client_end + 1 == end) {
        *issuer_url = "?";
        *issuer_client = "?";
        return -1;
    }
    if (strcmp(url, o->token_url) != 0 || strcmp(client, o->client_id) != 0) {
        *issuer_url = url;
        *issuer_client = client;
        return -1;
    }
    *token = (expirable_str){client_end + 1, (size_t)(end - client_end - 1)};
    return 1;
}

void expirable_fetch(const expirable_call *call) {
    const oauth2 *o = call->instance;
    const expirable_host *host = call->host;
    oauth2_buffer secret = {0}, refresh = {0}, subject = {0}, body = {0}, credentials = {0}, authorization = {0}, assertion = {0};
    answer reply = {{0}, 0, 0};
    oauth2_token_response token;
    memset(&token, 0, sizeof token);
    struct curl_slist *headers = NULL;
    CURL *curl = NULL;
    char why[768];
    int refresh_from_state = 0;
    int state_unbound = 0;     /* the state is of the earlier format: bound once this call succeeds */
    char note[1024] = "";
    fail_note = NULL;

    if (o->client_secret_file != NULL && oauth2_read_secret_file("client_secret_file", o->client_secret_file, &secret, why, sizeof why) != 0) {
        fail(call, "%s", why);
        host->classify_error(call->result, EXPIRABLE_ERROR_PERMANENT, 0);
        goto done;
    }
    if (o->grant == GRANT_REFRESH_TOKEN) {
        expirable_str kept = {NULL, 0};
        const char *issuer_url = NULL, *issuer_client = NULL;
        int bound = call->state.len != 0 ? read_state(o, call->state, &kept, &issuer_url, &issuer_client) : -1;
        if (issuer_url != NULL) {
            snprintf(note, sizeof note, "; the refresh token in the state was issued by %s to client_id %s, and the expirable now has token_url %s and "
                     "client_id %s, so it was not sent", issuer_url, issuer_client, o->token_url, o->client_id);
        }
        if (bound >= 0) {
            refresh_from_state = 1;
            state_unbound = bound == 0;
            if (oauth2_buffer_append(&refresh, kept.ptr, kept.len, 0) != 0) goto out_of_memory;
        } else if (o->refresh_token_file == NULL) {
            if (issuer_url != NULL) {
                fail(call, "%s; param 'refresh_token_file' is not set: put a refresh token of the new endpoint in a file (chmod 600) and set "
                     "refresh_token_file to its path", note + 2);
            } else {
                fail(call, "no refresh token: the expirable has no state yet and param 'refresh_token_file' is not set");
            }
            host->classify_error(call->result, EXPIRABLE_ERROR_PERMANENT, 0);
            goto done;
        } else {
            /* Any error of this call says why it used refresh_token_file rather than the state. */
            if (issuer_url != NULL) {
                strncat(note, ", and refresh_token_file was read instead", sizeof note - strlen(note) - 1);
                fail_note = note;
            }
            int rc = read_refresh_token_file(call, o, &refresh);
            if (rc == -2) goto out_of_memory;
            if (rc != 0) {
                host->classify_error(call->result, EXPIRABLE_ERROR_PERMANENT, 0);
                goto done;
            }
        }
    }

    /* curl opens ca_file itself, blocking: a file replaced by a FIFO since the start would hang the call; one made
     * writable by others since would let them choose whom the credentials go to. */
    if (o->ca_file != NULL) {
        struct stat st;
        int fd = oauth2_open_regular_file("ca_file", o->ca_file, &st, why, sizeof why);
        if (fd >= 0 && oauth2_check_ca_file_mode(o->ca_file, &st, why, sizeof why) != 0) {
            close(fd);
            fd = -1;
        }
        if (fd < 0) {
            fail(call, "%s", why);
            host->classify_error(call->result, EXPIRABLE_ERROR_PERMANENT, 0);
            goto done;
        }
        close(fd);
    }

    if (o->grant == GRANT_TOKEN_EXCHANGE
        && oauth2_read_secret_file("subject_token_file", o->subject_token_file, &subject, why, sizeof why) != 0) {
        fail(call, "%s", why);
        host->classify_error(call->result, EXPIRABLE_ERROR_PERMANENT, 0);
        goto done;
    }

    /* The form (RFC 6749 Appendix B): grant, refresh token or subject token, client credentials for auth = post or
     * private_key_jwt, then the fields. */
    static const char *const grant_types[] = {
        [GRANT_CLIENT_CREDENTIALS] = "client_credentials",
        [GRANT_REFRESH_TOKEN] = "refresh_token",
        [GRANT_TOKEN_EXCHANGE] = "urn:ietf:params:oauth:grant-type:token-exchange",
    };
    if (append_field(&body, "grant_type", grant_types[o->grant], strlen(grant_types[o->grant])) != 0) goto out_of_memory;
    if (o->grant == GRANT_REFRESH_TOKEN && append_field(&body, "refresh_token", refresh.ptr, refresh.len) != 0) goto out_of_memory;
    if (o->grant == GRANT_TOKEN_EXCHANGE) {
        if (append_field(&body, "subject_token", subject.ptr, subject.len) != 0
            || append_field(&body, "subject_token_type", o->subject_token_type, strlen(o->subject_token_type)) != 0) goto out_of_memory;
        if (o->requested_token_type != NULL
            && append_field(&body, "requested_token_type", o->requested_token_type, strlen(o->requested_token_type)) != 0) goto out_of_memory;
    }
    if (o->auth != AUTH_BASIC && append_field(&body, "client_id", o->client_id, strlen(o->client_id)) != 0) goto out_of_memory;
    if (o->auth == AUTH_POST && append_field(&body, "client_secret", secret.ptr, secret.len) != 0) goto out_of_memory;
    if (o->auth == AUTH_PRIVATE_KEY_JWT) {
        /* RFC 7523 §2.2; a new assertion (a new jti) for every request, a retry included. */
        enum oauth2_signing_alg implied = 0;
        oauth2_signing_key *key = oauth2_signing_key_read(o->private_key_file, &implied, why, sizeof why);
        if (key != NULL && implied != o->signing_alg) {
            snprintf(why, sizeof why, "param 'private_key_file': %s is now a key for %s, and the expirable signs %s; restore the key or reload the configuration",
                     o->private_key_file, oauth2_signing_alg_name(implied), oauth2_signing_alg_name(o->signing_alg));
            oauth2_signing_key_free(key);
            key = NULL;
        }
        if (key == NULL) {
            fail(call, "%s", why);
            host->classify_error(call->result, EXPIRABLE_ERROR_PERMANENT, 0);
            goto done;
        }
        oauth2_assertion_claims claims = {
            .client_id = o->client_id,
            .audience = o->assertion_audience != NULL ? o->assertion_audience : o->token_url,
            .key_id = o->key_id,
            .now_ms = host->now_ms(),
            .lifetime_ms = o->assertion_lifetime_ms,
        };
        int signed_ok = oauth2_client_assertion(key, o->signing_alg, &claims, &assertion, why, sizeof why);
        oauth2_signing_key_free(key);
        if (signed_ok != 0) {
            fail(call, "%s", why);
            host->classify_error(call->result, EXPIRABLE_ERROR_TEMPORARY, 0);
            goto done;
        }
        if (append_field(&body, "client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer", 54) != 0
            || append_field(&body, "client_assertion", assertion.ptr, assertion.len) != 0) goto out_of_memory;
    }
    for (size_t i = 0; i < o->field_count; i++) {
        if (oauth2_buffer_append(&body, "&", 1, 0) != 0 || oauth2_buffer_append_escaped(&body, o->fields[i].name, strlen(o->fields[i].name)) != 0
            || oauth2_buffer_append(&body, "=", 1, 0) != 0) goto out_of_memory;
        int rc = append_expanded(&body, o->fields[i].value, call->key);
        if (rc == -1) {
            fail(call, "param '%s' uses {key}, and this call has no key; set keyed = true on the expirable and fetch NAME:KEY", o->fields[i].param);
            host->classify_error(call->result, EXPIRABLE_ERROR_PERMANENT, 0);
            goto done;
        }
        if (rc != 0) goto out_of_memory;
    }

    curl = curl_easy_init();
    if (curl == NULL) goto out_of_memory;
    /* client_secret_basic (RFC 6749 §2.3.1): id and secret form-encoded, then "id:secret" in base64. Built here
     * rather than with CURLOPT_USERPWD so that every copy of it can be wiped. */
    if (o->auth == AUTH_BASIC) {
        if (oauth2_buffer_append_escaped(&credentials, o->client_id, strlen(o->client_id)) != 0 || oauth2_buffer_append(&credentials, ":", 1, 0) != 0
            || oauth2_buffer_append_escaped(&credentials, secret.ptr, secret.len) != 0
            || oauth2_buffer_append_str(&authorization, "Authorization: Basic ") != 0
            || oauth2_buffer_append_base64(&authorization, (const unsigned char *)credentials.ptr, credentials.len) != 0) goto out_of_memory;
        struct curl_slist *with = curl_slist_append(headers, authorization.ptr);
        if (with == NULL) goto out_of_memory;
        headers = with;
    }
    static const char *const fixed_headers[] = {"Accept: application/json", "Content-Type: application/x-www-form-urlencoded", "Expect:"};
    for (size_t i = 0; i < COUNT(fixed_headers); i++) {
        struct curl_slist *with = curl_slist_append(headers, fixed_headers[i]);
        if (with == NULL) goto out_of_memory;
        headers = with;
    }

    int64_t timeout_ms = o->timeout_ms != 0 ? o->timeout_ms : (call->timeout_ms > 0 ? call->timeout_ms * 9 / 10 : 27000);
    if (timeout_ms < 1) timeout_ms = 1;
    char curl_error[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(curl, CURLOPT_URL, o->token_url);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
#else
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L); /* a redirect is reported, never followed with the credentials */
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(curl, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    if (o->ca_file != NULL) {
        /* ca_file's CAs alone: libcurl also searches its default CA directory (CURLOPT_CAPATH, /etc/ssl/certs on
         * Debian) unless it is unset, and a certificate from any system CA would pass. A TLS backend without CA
         * directories answers CURLE_NOT_BUILT_IN: it has none to unset. */
        CURLcode cainfo = curl_easy_setopt(curl, CURLOPT_CAINFO, o->ca_file);
        CURLcode capath = curl_easy_setopt(curl, CURLOPT_CAPATH, (char *)NULL);
        if (cainfo == CURLE_OUT_OF_MEMORY || capath == CURLE_OUT_OF_MEMORY) goto out_of_memory;
        if (cainfo != CURLE_OK || (capath != CURLE_OK && capath != CURLE_NOT_BUILT_IN)) {
            fail(call, "param 'ca_file': this libcurl cannot limit the trusted CAs to %s (%s); the request was not sent",
                 o->ca_file, curl_easy_strerror(cainfo != CURLE_OK ? cainfo : capath));
            host->classify_error(call->result, EXPIRABLE_ERROR_PERMANENT, 0);
            goto done;
        }
    }
    if (o->loopback) curl_easy_setopt(curl, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, curl_error);
    curl_easy_setopt(curl, CURLOPT_USERAGENT, "expirable-oauth2/1");
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_POST, 1L);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.ptr);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body.len);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &reply);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, &reply);
    CURLcode code = curl_easy_perform(curl);

    if (code != CURLE_OK) {
        int timed_out = !reply.too_large && code == CURLE_OPERATION_TIMEDOUT;
        if (reply.too_large) {
            fail(call, "%s answered more than %u bytes; refused", o->token_url, MAX_RESPONSE_BYTES);
        } else if (timed_out) {
            fail(call, "%s did not answer within %lld ms (%s)", o->token_url, (long long)timeout_ms,
                 o->timeout_ms != 0 ? "param timeout" : "90% of the expirable's timeout");
        } else {
            fail(call, "cannot reach %s: %s", o->token_url, curl_error[0] != '\0' ? curl_error : curl_easy_strerror(code));
        }
        /* The plugin's own deadline, kept below the call's: a TIMEOUT for callers (ABI 1.3), as the call's is. */
        host->classify_error(call->result, timed_out ? EXPIRABLE_ERROR_TIMEOUT : EXPIRABLE_ERROR_TEMPORARY, 0);
        goto done;
    }
    long status = 0;
    curl_off_t retry_after_s = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(curl, CURLINFO_RETRY_AFTER, &retry_after_s);
    /* A number of seconds too long for curl (20 digits or more) asks for longer than any: the hour below. */
    if (retry_after_s <= 0 && reply.retry_after_number) retry_after_s = 3600 + 1;

    if (status >= 300 && status < 400) {
        char *location = NULL;
        char quoted[MAX_QUOTED + 1] = "";
        if (curl_easy_getinfo(curl, CURLINFO_REDIRECT_URL, &location) == CURLE_OK && location != NULL) quote(quoted, location);
        fail(call, "%s answered HTTP %ld, a redirect%s%s; the plugin follows none (it would carry the credentials along): set token_url to the endpoint itself",
             o->token_url, status, quoted[0] != '\0' ? " to " : "", quoted);
        host->classify_error(call->result, EXPIRABLE_ERROR_PERMANENT, 0);
        goto done;
    }

    int parsed = oauth2_token_response_parse(reply.body.ptr != NULL ? reply.body.ptr : "", reply.body.len, &token);
    if (parsed == -2) goto out_of_memory;
    int success = status >= 200 && status < 300 && parsed == 0 && token.error == NULL;
    /* A rotated refresh token: the old one is spent whatever else this answer says. Other grants keep no state: a
     * refresh token they are given would only be stored, never used. */
    if (success && o->grant == GRANT_REFRESH_TOKEN && token.refresh_token != NULL && token.refresh_token_len != 0) {
        size_t room = EXPIRABLE_MAX_STATE_BYTES > state_overhead(o) ? EXPIRABLE_MAX_STATE_BYTES - state_overhead(o) : 0;
        if (token.refresh_token_len > room) {
            /* The host would refuse the whole answer, and the next call would send the spent token again. */
            host->set_state(call->result, NULL, 0);
            /* Held an hour, the longest the host holds: any call before an operator acts would send a spent
             * token, which an identity provider answers by revoking the token family. A reload keeps the hold
             * (the state is gone, not the retry-after); a clear lifts it. */
            fail(call, "%s rotated the refresh token to one of %zu bytes, over the %zu a plugin state holds beside token_url and client_id; the old one "
                 "is spent, so it was dropped and no call is made for an hour: put a new refresh token in refresh_token_file, then lift the hold "
                 "with `expirablectl clear %.*s%s%.*s` (a reload does not)",
                 o->token_url, token.refresh_token_len, room, (int)call->name.len, call->name.ptr, call->key.len != 0 ? ":" : "",
                 (int)call->key.len, call->key.ptr);
            host->classify_error(call->result, EXPIRABLE_ERROR_PERMANENT, host->now_ms() + 3600 * 1000);
            goto done;
        }
        if (set_bound_state(call, o, token.refresh_token, token.refresh_token_len) != 0) goto out_of_memory;
    } else if (success && o->grant == GRANT_REFRESH_TOKEN && state_unbound) {
        /* No rotation: the state of the earlier format is written again, bound. */
        if (set_bound_state(call, o, refresh.ptr, refresh.len) != 0) goto out_of_memory;
    }

    if (!success) {
        int temporary_status = status == 429 || status >= 500;
        int permanent = !temporary_status && parsed == 0 && token.error != NULL && is_permanent_code(token.error);
        /* At most an hour (the host holds no longer), so the milliseconds cannot overflow. */
        int clamped = retry_after_s > 3600;
        if (clamped) retry_after_s = 3600;
        int64_t retry_at = temporary_status && retry_after_s > 0 ? host->now_ms() + (int64_t)retry_after_s * 1000 : 0;
        char code_text[MAX_QUOTED + 1] = "", description[MAX_QUOTED + 1] = "", retry[96] = "", dropped[160] = "";
        const oauth2_buffer *sent[] = {&secret, &refresh, &subject, &assertion};
        for (size_t i = 0; i < sizeof sent / sizeof sent[0]; i++) {
            redact(token.error, sent[i]);
            redact(token.error_description, sent[i]);
        }
        /* The Basic header's base64 of the encoded "id:secret", which an endpoint may quote as well. */
        static const char basic_prefix[] = "Authorization: Basic ";
        if (authorization.len > sizeof basic_prefix - 1) {
            const char *basic = authorization.ptr + sizeof basic_prefix - 1;
            redact_bytes(token.error, basic, strlen(basic));
            redact_bytes(token.error_description, basic, strlen(basic));
        }
        if (parsed == 0 && token.error != NULL) quote(code_text, token.error);
        if (parsed == 0 && token.error_description != NULL) quote(description, token.error_description);
        if (retry_at != 0) snprintf(retry, sizeof retry, clamped ? "; retry after %llds (it asked for longer; an hour at most)" : "; retry after %llds", (long long)retry_after_s);
        if (o->grant == GRANT_REFRESH_TOKEN && refresh_from_state && parsed == 0 && token.error != NULL && strcmp(token.error, "invalid_grant") == 0) {
            /* The refresh token is dead; without it the next call falls back to refresh_token_file, where an
             * operator can put a new one. */
            host->set_state(call->result, NULL, 0);
            snprintf(dropped, sizeof dropped, o->refresh_token_file != NULL
                     ? "; the refresh token was dropped, so the next call reads refresh_token_file"
                     : "; the refresh token was dropped");
        }
        if (parsed == -3) {
            fail(call, "%s answered HTTP %ld with the member \"%s\" twice, so which one it means is unknown; the answer was refused", o->token_url,
                 status, token.duplicate);
        } else if (code_text[0] != '\0') {
            fail(call, "%s answered HTTP %ld with error \"%s\"%s%s%s%s", o->token_url, status, code_text, description[0] != '\0' ? ": " : "",
                 description, retry, dropped);
        } else if (status >= 200 && status < 300) {
            fail(call, "%s answered HTTP %ld with a body that is not a JSON object", o->token_url, status);
        } else {
            fail(call, "%s answered HTTP %ld without an OAuth error%s", o->token_url, status, retry);
        }
        host->classify_error(call->result, permanent ? EXPIRABLE_ERROR_PERMANENT : EXPIRABLE_ERROR_TEMPORARY, retry_at);
        goto done;
    }

    if (token.access_token == NULL || token.access_token_len == 0) {
        fail(call, "%s answered HTTP %ld without a string \"access_token\"", o->token_url, status);
        host->classify_error(call->result, EXPIRABLE_ERROR_TEMPORARY, 0);
        goto done;
    }
    int64_t now = host->now_ms();
    int64_t expires_at;
    if (token.has_expires_in == 1 && isfinite(token.expires_in) && token.expires_in >= 0) {
        double ms = token.expires_in * 1000.0;
        expires_at = ms > (double)(INT64_MAX / 2) ? INT64_MAX / 2 : now + (int64_t)ms;
    } else if (token.has_expires_in != 0) {
        fail(call, "%s answered an \"expires_in\" that is not a number of seconds", o->token_url);
        host->classify_error(call->result, EXPIRABLE_ERROR_TEMPORARY, 0);
        goto done;
    } else if (o->ttl_ms != 0) {
        expires_at = now + o->ttl_ms;
    } else {
        fail(call, "%s answered without \"expires_in\"; set param ttl to the tokens' lifetime", o->token_url);
        host->classify_error(call->result, EXPIRABLE_ERROR_PERMANENT, 0);
        goto done;
    }

    if (o->value_response) {
        /* Callers, `expirablectl fetch --json` and the adapters take a value as text: bytes that are not UTF-8
         * (which RFC 8259 §8.1 requires of JSON) are refused here, naming the endpoint, not later by each. */
        size_t valid = utf8_prefix((const unsigned char *)reply.body.ptr, reply.body.len);
        if (valid != reply.body.len) {
            fail(call, "%s answered a body that is not UTF-8 (byte 0x%02x at offset %zu); value = \"response\" hands the whole answer to callers "
                 "as text, so it was refused", o->token_url, (unsigned char)reply.body.ptr[valid], valid);
            host->classify_error(call->result, EXPIRABLE_ERROR_TEMPORARY, 0);
            goto done;
        }
        /* The whole answer but its refresh token, which is the plugin's state and never reaches callers. */
        if (token.cut_end > token.cut_start) {
            memmove(reply.body.ptr + token.cut_start, reply.body.ptr + token.cut_end, reply.body.len - token.cut_end);
            size_t removed = token.cut_end - token.cut_start;
            explicit_bzero(reply.body.ptr + reply.body.len - removed, removed);
            reply.body.len -= removed;
        }
        host->set_value(call->result, reply.body.ptr, reply.body.len, expires_at);
    } else {
        /* RFC 6749 A.12: an access token is printable ASCII. Anything else (a CR LF, a NUL, an escape) would go
         * into callers' Authorization headers as it is. */
        for (size_t i = 0; i < token.access_token_len; i++) {
            unsigned char c = (unsigned char)token.access_token[i];
            if (c < 0x20 || c > 0x7e) {
                fail(call, "%s answered an \"access_token\" holding byte 0x%02x at offset %zu; RFC 6749 allows printable ASCII only, so it was refused",
                     o->token_url, c, i);
                host->classify_error(call->result, EXPIRABLE_ERROR_TEMPORARY, 0);
                goto done;
            }
        }
        host->set_value(call->result, token.access_token, token.access_token_len, expires_at);
    }
    goto done;

out_of_memory:
    fail(call, "out of memory");
done:
    fail_note = NULL;
    explicit_bzero(note, sizeof note);
    if (curl != NULL) curl_easy_cleanup(curl);
    wipe_headers(headers);
    oauth2_token_response_free(&token);
    oauth2_buffer_wipe(&reply.body);
    oauth2_buffer_wipe(&authorization);
    oauth2_buffer_wipe(&credentials);
    oauth2_buffer_wipe(&body);
    oauth2_buffer_wipe(&assertion);
    oauth2_buffer_wipe(&subject);
    oauth2_buffer_wipe(&refresh);
    oauth2_buffer_wipe(&secret);
}
