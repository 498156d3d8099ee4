/* The floor under a cluster node's private memory: a C program that does only what a node's TLS setup does
 * (OpenSSL's initialization, one TLS context, a node certificate, its key and the cluster's CA), then prints the
 * private memory (Private_Clean + Private_Dirty of /proc/self/smaps) of its libcrypto and libssl mappings.
 *     cc floor.c -o floor -lssl -lcrypto && ./floor CERT KEY CA
 * Run alone on an idle machine, as Benchmarks/idle-memory.sh does: pages another process maps are not private. */
#include <openssl/ssl.h>
#include <stdio.h>
#include <string.h>

static long private_kb(const char *library) {
    FILE *smaps = fopen("/proc/self/smaps", "r");
    char line[512];
    long total = 0, kb;
    unsigned long start, end;
    int inside = 0;
    if (!smaps) return -1;
    while (fgets(line, sizeof line, smaps)) {
        if (sscanf(line, "%lx-%lx ", &start, &end) == 2) inside = strstr(line, library) != NULL;  /* a mapping */
        else if (inside && (sscanf(line, "Private_Clean: %ld", &kb) == 1 || sscanf(line, "Private_Dirty: %ld", &kb) == 1))
            total += kb;
    }
    fclose(smaps);
    return total;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s CERT KEY CA\n", argv[0]);
        return 64;
    }
    OPENSSL_init_ssl(0, NULL);
    SSL_CTX *context = SSL_CTX_new(TLS_method());
    if (!context || SSL_CTX_use_certificate_chain_file(context, argv[1]) != 1
        || SSL_CTX_use_PrivateKey_file(context, argv[2], SSL_FILETYPE_PEM) != 1
        || SSL_CTX_load_verify_locations(context, argv[3], NULL) != 1) {
        fprintf(stderr, "%s: cannot set up a TLS context from %s, %s, %s\n", argv[0], argv[1], argv[2], argv[3]);
        return 1;
    }
    SSL *connection = SSL_new(context);
    printf("OpenSSL alone, a TLS context with a node certificate: libcrypto %ld kB, libssl %ld kB private\n",
           private_kb("libcrypto.so"), private_kb("libssl.so"));
    SSL_free(connection);
    SSL_CTX_free(context);
    return 0;
}
