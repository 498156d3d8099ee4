/* OpenSSL loaded on first use: a hidden forwarder for each OpenSSL function Expirable calls (see the header).
 * The list is every OpenSSL symbol the daemon, the CLI and the tests call; a new call to a function not listed
 * fails to link ("undefined reference"), and the fix is a line here with the prototype from the OpenSSL header. */
#include "CExpirableOpenSSL.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#define CEXPIRABLE_OPENSSL_FUNCTIONS(VALUE, VOID) \
    VALUE(ASN1_TIME_to_tm, int, (const ASN1_TIME *a0, struct tm *a1), (a0, a1)) \
    VALUE(ASN1_STRING_get0_data, const unsigned char *, (const ASN1_STRING *a0), (a0)) \
    VALUE(ASN1_STRING_length, int, (const ASN1_STRING *a0), (a0)) \
    VALUE(BIO_ctrl_pending, size_t, (BIO *a0), (a0)) \
    VALUE(BIO_free, int, (BIO *a0), (a0)) \
    VALUE(BIO_new, BIO *, (const BIO_METHOD *a0), (a0)) \
    VALUE(BIO_new_fd, BIO *, (int a0, int a1), (a0, a1)) \
    VALUE(BIO_new_file, BIO *, (const char *a0, const char *a1), (a0, a1)) \
    VALUE(BIO_read, int, (BIO *a0, void *a1, int a2), (a0, a1, a2)) \
    VALUE(BIO_s_mem, const BIO_METHOD *, (void), ()) \
    VALUE(BIO_write, int, (BIO *a0, const void *a1, int a2), (a0, a1, a2)) \
    VALUE(BN_bin2bn, BIGNUM *, (const unsigned char *a0, int a1, BIGNUM *a2), (a0, a1, a2)) \
    VOID(BN_free, void, (BIGNUM *a0), (a0)) \
    VALUE(BN_to_ASN1_INTEGER, ASN1_INTEGER *, (const BIGNUM *a0, ASN1_INTEGER *a1), (a0, a1)) \
    VOID(ERR_clear_error, void, (void), ()) \
    VOID(ERR_error_string_n, void, (unsigned long a0, char *a1, size_t a2), (a0, a1, a2)) \
    VALUE(ERR_get_error, unsigned long, (void), ()) \
    VALUE(EVP_CIPHER_CTX_ctrl, int, (EVP_CIPHER_CTX *a0, int a1, int a2, void *a3), (a0, a1, a2, a3)) \
    VOID(EVP_CIPHER_CTX_free, void, (EVP_CIPHER_CTX *a0), (a0)) \
    VALUE(EVP_CIPHER_CTX_new, EVP_CIPHER_CTX *, (void), ()) \
    VALUE(EVP_DecryptFinal_ex, int, (EVP_CIPHER_CTX *a0, unsigned char *a1, int *a2), (a0, a1, a2)) \
    VALUE(EVP_DecryptInit_ex, int, (EVP_CIPHER_CTX *a0, const EVP_CIPHER *a1, ENGINE *a2, const unsigned char *a3, const unsigned char *a4), (a0, a1, a2, a3, a4)) \
    VALUE(EVP_DecryptUpdate, int, (EVP_CIPHER_CTX *a0, unsigned char *a1, int *a2, const unsigned char *a3, int a4), (a0, a1, a2, a3, a4)) \
    VALUE(EVP_DigestFinal_ex, int, (EVP_MD_CTX *a0, unsigned char *a1, unsigned int *a2), (a0, a1, a2)) \
    VALUE(EVP_DigestInit_ex, int, (EVP_MD_CTX *a0, const EVP_MD *a1, ENGINE *a2), (a0, a1, a2)) \
    VALUE(EVP_DigestUpdate, int, (EVP_MD_CTX *a0, const void *a1, size_t a2), (a0, a1, a2)) \
    VALUE(EVP_EncryptFinal_ex, int, (EVP_CIPHER_CTX *a0, unsigned char *a1, int *a2), (a0, a1, a2)) \
    VALUE(EVP_EncryptInit_ex, int, (EVP_CIPHER_CTX *a0, const EVP_CIPHER *a1, ENGINE *a2, const unsigned char *a3, const unsigned char *a4), (a0, a1, a2, a3, a4)) \
    VALUE(EVP_EncryptUpdate, int, (EVP_CIPHER_CTX *a0, unsigned char *a1, int *a2, const unsigned char *a3, int a4), (a0, a1, a2, a3, a4)) \
    VOID(EVP_MD_CTX_free, void, (EVP_MD_CTX *a0), (a0)) \
    VALUE(EVP_MD_CTX_new, EVP_MD_CTX *, (void), ()) \
    VOID(EVP_PKEY_CTX_free, void, (EVP_PKEY_CTX *a0), (a0)) \
    VALUE(EVP_PKEY_CTX_new_id, EVP_PKEY_CTX *, (int a0, ENGINE *a1), (a0, a1)) \
    VALUE(EVP_PKEY_CTX_set_ec_paramgen_curve_nid, int, (EVP_PKEY_CTX *a0, int a1), (a0, a1)) \
    VOID(EVP_PKEY_free, void, (EVP_PKEY *a0), (a0)) \
    VALUE(EVP_PKEY_keygen, int, (EVP_PKEY_CTX *a0, EVP_PKEY **a1), (a0, a1)) \
    VALUE(EVP_PKEY_keygen_init, int, (EVP_PKEY_CTX *a0), (a0)) \
    VALUE(EVP_aes_256_gcm, const EVP_CIPHER *, (void), ()) \
    VALUE(EVP_sha256, const EVP_MD *, (void), ()) \
    VOID(GENERAL_NAMES_free, void, (GENERAL_NAMES *a0), (a0)) \
    VALUE(OPENSSL_sk_num, int, (const OPENSSL_STACK *a0), (a0)) \
    VALUE(OPENSSL_sk_value, void *, (const OPENSSL_STACK *a0, int a1), (a0, a1)) \
    VALUE(PEM_read_bio_PrivateKey, EVP_PKEY *, (BIO *a0, EVP_PKEY **a1, pem_password_cb *a2, void *a3), (a0, a1, a2, a3)) \
    VALUE(PEM_read_bio_X509, X509 *, (BIO *a0, X509 **a1, pem_password_cb *a2, void *a3), (a0, a1, a2, a3)) \
    VALUE(PEM_write_bio_PrivateKey, int, (BIO *a0, const EVP_PKEY *a1, const EVP_CIPHER *a2, const unsigned char *a3, int a4, pem_password_cb *a5, void *a6), (a0, a1, a2, a3, a4, a5, a6)) \
    VALUE(PEM_write_bio_X509, int, (BIO *a0, const X509 *a1), (a0, a1)) \
    VALUE(RAND_bytes, int, (unsigned char *a0, int a1), (a0, a1)) \
    VALUE(SSL_CTX_check_private_key, int, (const SSL_CTX *a0), (a0)) \
    VALUE(SSL_CTX_ctrl, long, (SSL_CTX *a0, int a1, long a2, void *a3), (a0, a1, a2, a3)) \
    VOID(SSL_CTX_free, void, (SSL_CTX *a0), (a0)) \
    VALUE(SSL_CTX_get0_certificate, X509 *, (const SSL_CTX *a0), (a0)) \
    VALUE(SSL_CTX_get_cert_store, X509_STORE *, (const SSL_CTX *a0), (a0)) \
    VALUE(SSL_CTX_load_verify_locations, int, (SSL_CTX *a0, const char *a1, const char *a2), (a0, a1, a2)) \
    VALUE(SSL_CTX_new, SSL_CTX *, (const SSL_METHOD *a0), (a0)) \
    VALUE(SSL_CTX_set_options, uint64_t, (SSL_CTX *a0, uint64_t a1), (a0, a1)) \
    VOID(SSL_CTX_set_verify, void, (SSL_CTX *a0, int a1, SSL_verify_cb a2), (a0, a1, a2)) \
    VALUE(SSL_CTX_use_PrivateKey_file, int, (SSL_CTX *a0, const char *a1, int a2), (a0, a1, a2)) \
    VALUE(SSL_CTX_use_certificate_chain_file, int, (SSL_CTX *a0, const char *a1), (a0, a1)) \
    VALUE(SSL_do_handshake, int, (SSL *a0), (a0)) \
    VOID(SSL_free, void, (SSL *a0), (a0)) \
    VALUE(SSL_get1_peer_certificate, X509 *, (const SSL *a0), (a0)) \
    VALUE(SSL_get_error, int, (const SSL *a0, int a1), (a0, a1)) \
    VALUE(SSL_get_verify_result, long, (const SSL *a0), (a0)) \
    VALUE(SSL_get_version, const char *, (const SSL *a0), (a0)) \
    VALUE(SSL_new, SSL *, (SSL_CTX *a0), (a0)) \
    VALUE(SSL_read, int, (SSL *a0, void *a1, int a2), (a0, a1, a2)) \
    VOID(SSL_set_accept_state, void, (SSL *a0), (a0)) \
    VOID(SSL_set_bio, void, (SSL *a0, BIO *a1, BIO *a2), (a0, a1, a2)) \
    VOID(SSL_set_connect_state, void, (SSL *a0), (a0)) \
    VALUE(SSL_shutdown, int, (SSL *a0), (a0)) \
    VALUE(SSL_write, int, (SSL *a0, const void *a1, int a2), (a0, a1, a2)) \
    VALUE(TLS_method, const SSL_METHOD *, (void), ()) \
    VALUE(X509V3_EXT_conf_nid, X509_EXTENSION *, (struct lhash_st_CONF_VALUE *a0, X509V3_CTX *a1, int a2, const char *a3), (a0, a1, a2, a3)) \
    VOID(X509V3_set_ctx, void, (X509V3_CTX *a0, X509 *a1, X509 *a2, X509_REQ *a3, X509_CRL *a4, int a5), (a0, a1, a2, a3, a4, a5)) \
    VOID(X509_EXTENSION_free, void, (X509_EXTENSION *a0), (a0)) \
    VALUE(X509_NAME_add_entry_by_txt, int, (X509_NAME *a0, const char *a1, int a2, const unsigned char *a3, int a4, int a5, int a6), (a0, a1, a2, a3, a4, a5, a6)) \
    VALUE(X509_NAME_get_text_by_NID, int, (const X509_NAME *a0, int a1, char *a2, int a3), (a0, a1, a2, a3)) \
    VOID(X509_STORE_CTX_free, void, (X509_STORE_CTX *a0), (a0)) \
    VALUE(X509_STORE_CTX_get_current_cert, X509 *, (const X509_STORE_CTX *a0), (a0)) \
    VALUE(X509_STORE_CTX_get_error, int, (const X509_STORE_CTX *a0), (a0)) \
    VALUE(X509_STORE_CTX_get_error_depth, int, (const X509_STORE_CTX *a0), (a0)) \
    VALUE(X509_STORE_CTX_init, int, (X509_STORE_CTX *a0, X509_STORE *a1, X509 *a2, STACK_OF(X509) *a3), (a0, a1, a2, a3)) \
    VALUE(X509_STORE_CTX_new, X509_STORE_CTX *, (void), ()) \
    VALUE(X509_add_ext, int, (X509 *a0, X509_EXTENSION *a1, int a2), (a0, a1, a2)) \
    VOID(X509_free, void, (X509 *a0), (a0)) \
    VALUE(X509_get_ext_d2i, void *, (const X509 *a0, int a1, int *a2, int *a3), (a0, a1, a2, a3)) \
    VALUE(X509_get_serialNumber, ASN1_INTEGER *, (X509 *a0), (a0)) \
    VALUE(X509_get_subject_name, X509_NAME *, (const X509 *a0), (a0)) \
    VALUE(X509_getm_notAfter, ASN1_TIME *, (const X509 *a0), (a0)) \
    VALUE(X509_getm_notBefore, ASN1_TIME *, (const X509 *a0), (a0)) \
    VALUE(X509_gmtime_adj, ASN1_TIME *, (ASN1_TIME *a0, long a1), (a0, a1)) \
    VALUE(X509_new, X509 *, (void), ()) \
    VALUE(X509_set_issuer_name, int, (X509 *a0, const X509_NAME *a1), (a0, a1)) \
    VALUE(X509_set_pubkey, int, (X509 *a0, EVP_PKEY *a1), (a0, a1)) \
    VALUE(X509_set_version, int, (X509 *a0, long a1), (a0, a1)) \
    VALUE(X509_sign, int, (X509 *a0, EVP_PKEY *a1, const EVP_MD *a2), (a0, a1, a2)) \
    VALUE(X509_verify_cert, int, (X509_STORE_CTX *a0), (a0)) \
    VALUE(X509_verify_cert_error_string, const char *, (long a0), (a0))

enum {
#define INDEX(name, ...) index_##name,
    CEXPIRABLE_OPENSSL_FUNCTIONS(INDEX, INDEX)
#undef INDEX
    function_count
};

static const char *const names[function_count] = {
#define NAME(name, ...) #name,
    CEXPIRABLE_OPENSSL_FUNCTIONS(NAME, NAME)
#undef NAME
};

static void *functions[function_count];
static const char *load_error;
static char load_error_text[512];
static pthread_once_t load_once = PTHREAD_ONCE_INIT;

static void load(void) {
    /* libssl.so.3 needs libcrypto.so.3, so one dlopen maps both, and dlsym on its handle finds either's symbols.
     * RTLD_LOCAL: the symbols stay out of the global scope plugins resolve against; a plugin that links OpenSSL
     * itself (oauth2 through libcurl) gets the same library, loaded once. Never dlclosed. */
    void *library = dlopen("libssl.so.3", RTLD_NOW | RTLD_LOCAL);
    if (library == NULL) {
        const char *reason = dlerror();
        snprintf(load_error_text, sizeof load_error_text,
                 "OpenSSL 3 could not be loaded (%s); install it (Debian and Ubuntu: apt-get install libssl3)",
                 reason != NULL ? reason : "libssl.so.3 not found");
        load_error = load_error_text;
        return;
    }
    for (int i = 0; i < function_count; i++) {
        functions[i] = dlsym(library, names[i]);
        if (functions[i] == NULL) {
            snprintf(load_error_text, sizeof load_error_text,
                     "the OpenSSL found as libssl.so.3 has no function %s; Expirable needs OpenSSL 3.0 or later",
                     names[i]);
            load_error = load_error_text;
            return;
        }
    }
}

const char *CExpirableOpenSSL_load(void) {
    pthread_once(&load_once, load);
    return load_error;
}

static void *function(int index) {
    const char *error = CExpirableOpenSSL_load();
    if (error != NULL) {
        fprintf(stderr, "expirable: %s\n", error);
        abort();
    }
    return functions[index];
}

#define FORWARD_VALUE(name, result, parameters, arguments) \
    __attribute__((visibility("hidden"))) result name parameters { \
        return ((result (*) parameters)function(index_##name)) arguments; \
    }
#define FORWARD_VOID(name, result, parameters, arguments) \
    __attribute__((visibility("hidden"))) void name parameters { ((void (*) parameters)function(index_##name)) arguments; }
CEXPIRABLE_OPENSSL_FUNCTIONS(FORWARD_VALUE, FORWARD_VOID)
