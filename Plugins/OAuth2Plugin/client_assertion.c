/*
 * private_key_jwt client authentication (RFC 7523 §2.2, §3; OpenID Connect Core §9): a JWT naming the client as
 * issuer and subject and the authorization server as audience, signed with the client's private key through
 * OpenSSL's EVP interface, sent as `client_assertion`. A fresh random jti makes each assertion single-use at a
 * server that remembers them.
 */
#define _GNU_SOURCE
#include "internal.h"

#include <openssl/bio.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* RFC 7518 §3.3: "A key of size 2048 bits or larger MUST be used with these algorithms." */
#define MIN_RSA_BITS 2048
/* An ES256 signature in JOSE form: R and S, each 32 bytes big-endian (RFC 7518 §3.4). */
#define ES256_COORDINATE 32

enum oauth2_signing_alg oauth2_signing_alg_named(const char *name, size_t len) {
    if (len == 5 && memcmp(name, "RS256", 5) == 0) return OAUTH2_ALG_RS256;
    if (len == 5 && memcmp(name, "ES256", 5) == 0) return OAUTH2_ALG_ES256;
    return 0;
}

const char *oauth2_signing_alg_name(enum oauth2_signing_alg alg) {
    return alg == OAUTH2_ALG_ES256 ? "ES256" : "RS256";
}

/* The reason OpenSSL gave last (never key material), and an empty error queue for the next caller of this thread. */
static const char *openssl_reason(char *text, size_t size) {
    unsigned long code = ERR_peek_last_error();
    const char *reason = code != 0 ? ERR_reason_error_string(code) : NULL;
    snprintf(text, size, "%s", reason != NULL ? reason : "unknown error");
    ERR_clear_error();
    return text;
}

/* The passphrase callback: the plugin takes no passphrase, so an encrypted key is refused, and said to be. */
static int no_passphrase(char *buf, int size, int rwflag, void *user) {
    (void)buf;
    (void)size;
    (void)rwflag;
    *(int *)user = 1;
    return -1;
}

oauth2_signing_key *oauth2_signing_key_read(const char *path, enum oauth2_signing_alg *implied, char *error, size_t error_size) {
    oauth2_buffer pem = {0};
    if (oauth2_read_secret_file("private_key_file", path, &pem, error, error_size) != 0) return NULL;
    EVP_PKEY *key = NULL;
    int encrypted = 0;
    BIO *bio = BIO_new_mem_buf(pem.ptr, (int)pem.len);
    if (bio == NULL) {
        snprintf(error, error_size, "param 'private_key_file': out of memory");
        goto out;
    }
    key = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, &encrypted);
    BIO_free(bio);
    if (key == NULL) {
        if (encrypted) {
            ERR_clear_error();
            snprintf(error, error_size, "param 'private_key_file': %s is encrypted with a passphrase, which the plugin cannot ask for; "
                     "write it decrypted to a file only the daemon can read (umask 077; openssl pkey -in %s -out DECRYPTED) and name that one", path, path);
        } else {
            ERR_clear_error();
            snprintf(error, error_size, "param 'private_key_file': %s holds no PEM private key (a public key or a certificate is not one); expected "
                     "\"-----BEGIN PRIVATE KEY-----\" as `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256` writes", path);
        }
        goto out;
    }
    int type = EVP_PKEY_get_base_id(key);
    if (type == EVP_PKEY_RSA) {
        int bits = EVP_PKEY_get_bits(key);
        if (bits < MIN_RSA_BITS) {
            snprintf(error, error_size, "param 'private_key_file': %s is an RSA key of %d bits; RS256 needs %d bits or more (RFC 7518 §3.3)",
                     path, bits, MIN_RSA_BITS);
            goto refuse;
        }
        *implied = OAUTH2_ALG_RS256;
    } else if (type == EVP_PKEY_EC) {
        char group[64] = "";
        size_t group_len = 0;
        if (EVP_PKEY_get_group_name(key, group, sizeof group, &group_len) != 1) ERR_clear_error();
        if (strcmp(group, "prime256v1") != 0 && strcasecmp(group, "P-256") != 0) {
            snprintf(error, error_size, "param 'private_key_file': %s is an EC key on curve %s; ES256 needs P-256 (prime256v1)",
                     path, group[0] != '\0' ? group : "(unknown)");
            goto refuse;
        }
        *implied = OAUTH2_ALG_ES256;
    } else {
        snprintf(error, error_size, "param 'private_key_file': %s is a key of type %s; expected an RSA key (RS256) or an EC key on P-256 (ES256)",
                 path, OBJ_nid2sn(type) != NULL ? OBJ_nid2sn(type) : "non-RSA, non-EC");
        goto refuse;
    }
    goto out;

refuse:
    EVP_PKEY_free(key);
    key = NULL;
out:
    oauth2_buffer_wipe(&pem);
    return (oauth2_signing_key *)key;
}

void oauth2_signing_key_free(oauth2_signing_key *key) {
    EVP_PKEY_free((EVP_PKEY *)key);
}

/* `s` as the inside of a JSON string (RFC 8259 §7). */
static int append_json_string(oauth2_buffer *b, const char *s) {
    static const char hex[] = "0123456789abcdef";
    if (oauth2_buffer_append(b, "\"", 1, 0) != 0) return -1;
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        char escaped[6] = {'\\', 'u', '0', '0', hex[*p >> 4], hex[*p & 15]};
        int rc;
        if (*p == '"' || *p == '\\') {
            char two[2] = {'\\', (char)*p};
            rc = oauth2_buffer_append(b, two, 2, 0);
        } else if (*p < 0x20) {
            rc = oauth2_buffer_append(b, escaped, 6, 0);
        } else {
            rc = oauth2_buffer_append(b, p, 1, 0);
        }
        if (rc != 0) return -1;
    }
    return oauth2_buffer_append(b, "\"", 1, 0);
}

/* An ECDSA signature in DER (what OpenSSL writes) turned into R || S, each left-padded to 32 bytes (what JOSE
 * expects). */
static int ecdsa_der_to_jose(const unsigned char *der, size_t der_len, unsigned char out[2 * ES256_COORDINATE]) {
    const unsigned char *p = der;
    ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &p, (long)der_len);
    if (sig == NULL) return -1;
    const BIGNUM *r = NULL, *s = NULL;
    ECDSA_SIG_get0(sig, &r, &s);
    int ok = BN_bn2binpad(r, out, ES256_COORDINATE) == ES256_COORDINATE
        && BN_bn2binpad(s, out + ES256_COORDINATE, ES256_COORDINATE) == ES256_COORDINATE;
    ECDSA_SIG_free(sig);
    return ok ? 0 : -1;
}

int oauth2_client_assertion(oauth2_signing_key *key, enum oauth2_signing_alg alg, const oauth2_assertion_claims *claims,
                            oauth2_buffer *out, char *error, size_t error_size) {
    oauth2_buffer header = {0}, payload = {0}, input = {0};
    unsigned char random[16], signature[2048], jose[2 * ES256_COORDINATE];
    char reason[160], number[96];
    size_t signature_len = sizeof signature;
    EVP_MD_CTX *md = NULL;
    int rc = -1;

    if (RAND_bytes(random, sizeof random) != 1) {
        snprintf(error, error_size, "cannot draw a random jti: %s", openssl_reason(reason, sizeof reason));
        goto done;
    }
    int64_t iat = claims->now_ms / 1000;
    int64_t lifetime = claims->lifetime_ms / 1000 > 0 ? claims->lifetime_ms / 1000 : 1;

    if (oauth2_buffer_append_str(&header, "{\"alg\":\"") != 0 || oauth2_buffer_append_str(&header, oauth2_signing_alg_name(alg)) != 0
        || oauth2_buffer_append_str(&header, "\",\"typ\":\"JWT\"") != 0) goto out_of_memory;
    if (claims->key_id != NULL && (oauth2_buffer_append_str(&header, ",\"kid\":") != 0 || append_json_string(&header, claims->key_id) != 0))
        goto out_of_memory;
    if (oauth2_buffer_append_str(&header, "}") != 0) goto out_of_memory;

    if (oauth2_buffer_append_str(&payload, "{\"iss\":") != 0 || append_json_string(&payload, claims->client_id) != 0
        || oauth2_buffer_append_str(&payload, ",\"sub\":") != 0 || append_json_string(&payload, claims->client_id) != 0
        || oauth2_buffer_append_str(&payload, ",\"aud\":") != 0 || append_json_string(&payload, claims->audience) != 0
        || oauth2_buffer_append_str(&payload, ",\"jti\":\"") != 0 || oauth2_buffer_append_base64url(&payload, random, sizeof random) != 0)
        goto out_of_memory;
    snprintf(number, sizeof number, "\",\"iat\":%lld,\"nbf\":%lld,\"exp\":%lld}", (long long)iat, (long long)iat, (long long)(iat + lifetime));
    if (oauth2_buffer_append_str(&payload, number) != 0) goto out_of_memory;

    if (oauth2_buffer_append_base64url(&input, (const unsigned char *)header.ptr, header.len) != 0 || oauth2_buffer_append(&input, ".", 1, 0) != 0
        || oauth2_buffer_append_base64url(&input, (const unsigned char *)payload.ptr, payload.len) != 0) goto out_of_memory;

    /* Both algorithms hash with SHA-256; RSA signs with PKCS #1 v1.5 padding, OpenSSL's default (RFC 7518 §3.3). */
    md = EVP_MD_CTX_new();
    if (md == NULL) goto out_of_memory;
    size_t needed = 0;
    if (EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, (EVP_PKEY *)key) != 1
        || EVP_DigestSign(md, NULL, &needed, (const unsigned char *)input.ptr, input.len) != 1 || needed > sizeof signature
        || EVP_DigestSign(md, signature, &signature_len, (const unsigned char *)input.ptr, input.len) != 1) {
        snprintf(error, error_size, "cannot sign the client assertion with %s: %s", oauth2_signing_alg_name(alg), openssl_reason(reason, sizeof reason));
        goto done;
    }
    const unsigned char *sig = signature;
    if (alg == OAUTH2_ALG_ES256) {
        if (ecdsa_der_to_jose(signature, signature_len, jose) != 0) {
            snprintf(error, error_size, "cannot convert the ES256 signature to its JOSE form: %s", openssl_reason(reason, sizeof reason));
            goto done;
        }
        sig = jose;
        signature_len = sizeof jose;
    }
    if (oauth2_buffer_append(out, input.ptr, input.len, 0) != 0 || oauth2_buffer_append(out, ".", 1, 0) != 0
        || oauth2_buffer_append_base64url(out, sig, signature_len) != 0) goto out_of_memory;
    rc = 0;
    goto done;

out_of_memory:
    snprintf(error, error_size, "out of memory");
done:
    EVP_MD_CTX_free(md);
    explicit_bzero(random, sizeof random);
    explicit_bzero(signature, sizeof signature);
    explicit_bzero(jose, sizeof jose);
    oauth2_buffer_wipe(&input);
    oauth2_buffer_wipe(&payload);
    oauth2_buffer_wipe(&header);
    return rc;
}
