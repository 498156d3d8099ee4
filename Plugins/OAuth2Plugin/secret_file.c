/* Secrets come from files, never from the configuration: a client secret, an initial refresh token. */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int oauth2_open_regular_file(const char *param, const char *path, struct stat *st, char *error, size_t error_size) {
    /* O_NONBLOCK: a FIFO (or a device) would block open() until a writer comes, which at start is forever; the
     * flag does nothing to a regular file's reads. O_NOFOLLOW is not used: a secret behind a symlink (a systemd
     * credential, a Kubernetes secret volume) is usual; the file checked is the one opened, after fstat. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        snprintf(error, error_size, "param '%s': cannot open %s: %s", param, path, strerror(errno));
        return -1;
    }
    if (fstat(fd, st) != 0) {
        snprintf(error, error_size, "param '%s': cannot stat %s: %s", param, path, strerror(errno));
        close(fd);
        return -1;
    }
    if (!S_ISREG(st->st_mode)) {
        snprintf(error, error_size, "param '%s': %s is not a regular file", param, path);
        close(fd);
        return -1;
    }
    return fd;
}

int oauth2_read_secret_file(const char *param, const char *path, oauth2_buffer *out, char *error, size_t error_size) {
    struct stat st;
    int fd = oauth2_open_regular_file(param, path, &st, error, error_size);
    if (fd < 0) return -1;
    if (st.st_mode & (S_IRWXO | S_IWGRP)) {
        snprintf(error, error_size, "param '%s': %s is %s by %s (mode %04o); chmod %s %s", param, path,
                 (st.st_mode & S_IRWXO) ? "accessible" : "writable", (st.st_mode & S_IRWXO) ? "others" : "its group",
                 (unsigned)(st.st_mode & 07777), (st.st_mode & S_IRWXO) ? "o-rwx" : "g-w", path);
        close(fd);
        return -1;
    }
    oauth2_buffer_wipe(out);
    char chunk[4096];
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            snprintf(error, error_size, "param '%s': cannot read %s: %s", param, path, strerror(errno));
            break;
        }
        if (n == 0) {
            close(fd);
            explicit_bzero(chunk, sizeof chunk);
            if (out->len > 0 && out->ptr[out->len - 1] == '\n') {
                out->len--;
                if (out->len > 0 && out->ptr[out->len - 1] == '\r') out->len--;
            }
            if (out->len == 0) {
                snprintf(error, error_size, "param '%s': %s is empty", param, path);
                oauth2_buffer_wipe(out);
                return -1;
            }
            out->ptr[out->len] = '\0';
            return 0;
        }
        if (oauth2_buffer_append(out, chunk, (size_t)n, OAUTH2_MAX_SECRET_FILE) != 0) {
            snprintf(error, error_size, "param '%s': %s is larger than %d bytes, or memory ran out", param, path, OAUTH2_MAX_SECRET_FILE);
            break;
        }
    }
    close(fd);
    explicit_bzero(chunk, sizeof chunk);
    oauth2_buffer_wipe(out);
    return -1;
}
