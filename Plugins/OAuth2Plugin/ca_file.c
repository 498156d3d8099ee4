/* ca_file: the CAs that may sign the token endpoint's certificate. curl loads the file itself at each request, and
 * would only then find that it holds no certificate (or block on a FIFO): the plugin checks it first. */
#define _GNU_SOURCE
#include "internal.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int oauth2_check_ca_file_mode(const char *path, const struct stat *st, char *error, size_t error_size) {
    if ((st->st_mode & (S_IWGRP | S_IWOTH)) == 0) return 0;
    snprintf(error, error_size, "param 'ca_file': %s is writable by %s (mode %04o), and whoever can write it chooses the servers trusted with "
             "the client's credentials; chmod go-w %s", path, (st->st_mode & S_IWOTH) ? "others" : "its group", (unsigned)(st->st_mode & 07777), path);
    return -1;
}

int oauth2_check_ca_file(const char *path, char *error, size_t error_size) {
    struct stat st;
    int fd = oauth2_open_regular_file("ca_file", path, &st, error, error_size);
    if (fd < 0) return -1;
    if (oauth2_check_ca_file_mode(path, &st, error, error_size) != 0) {
        close(fd);
        return -1;
    }
    oauth2_buffer pem = {0};
    char chunk[16384];
    int rc = -1;
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            snprintf(error, error_size, "param 'ca_file': cannot read %s: %s", path, strerror(errno));
            goto out;
        }
        if (n == 0) break;
        if (oauth2_buffer_append(&pem, chunk, (size_t)n, OAUTH2_MAX_CA_FILE) != 0) {
            snprintf(error, error_size, "param 'ca_file': %s is larger than %d bytes, or memory ran out", path, OAUTH2_MAX_CA_FILE);
            goto out;
        }
    }
    BIO *bio = pem.len != 0 ? BIO_new_mem_buf(pem.ptr, (int)pem.len) : NULL;
    X509 *certificate = bio != NULL ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    ERR_clear_error();
    if (certificate == NULL) {
        snprintf(error, error_size, "param 'ca_file': %s holds no PEM certificate; expected the CA certificates that may sign the endpoint's, "
                 "each from \"-----BEGIN CERTIFICATE-----\"", path);
        goto out;
    }
    X509_free(certificate);
    rc = 0;
out:
    close(fd);
    oauth2_buffer_wipe(&pem);
    return rc;
}
