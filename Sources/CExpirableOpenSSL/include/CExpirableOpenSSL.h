/* The system OpenSSL (OpenSSL 3) for Swift, loaded only when a daemon first needs it.
 *
 * Swift does not import OpenSSL's function-like macros, so the ones Expirable needs are wrapped here as static
 * inline functions, prefixed CExpirableSSL_.
 *
 * Nothing links libssl or libcrypto: openssl.c defines each OpenSSL function Expirable calls, hidden inside the
 * binary, as a forwarder that loads libssl.so.3 (and with it libcrypto.so.3) on first use. A daemon without a
 * [cluster] table, a state_dir or an executable-digest access rule never maps OpenSSL, which keeps its relocated
 * data (about 0.4 MB of private memory per process) out of the daemon and out of every plugin helper. */
#ifndef CEXPIRABLE_OPENSSL_H
#define CEXPIRABLE_OPENSSL_H

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

/* Loads OpenSSL if it is not loaded yet. NULL when it is usable; otherwise what failed, in words, for an error
 * message (the library that could not be opened, or a function it lacks). Safe from any thread; the first call
 * does the work. A forwarder called while OpenSSL cannot be loaded ends the process with that message, so callers
 * ask here first where they can report an error instead. */
const char *CExpirableOpenSSL_load(void);

static inline long CExpirableSSL_CTX_set_min_proto_version(SSL_CTX *ctx, int version) {
    return SSL_CTX_set_min_proto_version(ctx, version);
}

static inline int CExpirableSSL_TLS1_2_VERSION(void) { return TLS1_2_VERSION; }

/* No compression, no renegotiation, no session tickets: peers are few and connections long-lived. */
static inline uint64_t CExpirableSSL_CTX_set_hardening_options(SSL_CTX *ctx) {
    return SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_TICKET);
}

static inline long CExpirableSSL_CTX_set_mode_partial_writes(SSL_CTX *ctx) {
    return SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
}

/* The intermediates loaded with the context's certificate (SSL_CTX_use_certificate_chain_file), to verify it as
 * a peer will; *chain is owned by the context. */
static inline long CExpirableSSL_CTX_get0_chain_certs(SSL_CTX *ctx, STACK_OF(X509) **chain) {
    return SSL_CTX_get0_chain_certs(ctx, chain);
}

static inline long CExpirableBIO_get_mem_data(BIO *bio, char **data) { return BIO_get_mem_data(bio, data); }

static inline void CExpirableOPENSSL_free(void *pointer) { OPENSSL_free(pointer); }

static inline int CExpirable_sk_GENERAL_NAME_num(const GENERAL_NAMES *names) { return sk_GENERAL_NAME_num(names); }

static inline const GENERAL_NAME *CExpirable_sk_GENERAL_NAME_value(const GENERAL_NAMES *names, int index) {
    return sk_GENERAL_NAME_value(names, index);
}

/* The DNS name in a GENERAL_NAME, or NULL if it holds something else. */
static inline const unsigned char *CExpirable_GENERAL_NAME_dns(const GENERAL_NAME *name, int *length) {
    if (name->type != GEN_DNS) return NULL;
    *length = ASN1_STRING_length(name->d.dNSName);
    return ASN1_STRING_get0_data(name->d.dNSName);
}

static inline void CExpirableX509V3_set_ctx_nodb(X509V3_CTX *ctx) { X509V3_set_ctx_nodb(ctx); }

#endif
