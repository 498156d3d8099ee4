#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "CExpirableCloseOnExec.h"

/* Declared here rather than through <sys/socket.h> and <sys/epoll.h>, whose prototypes (a transparent union for
 * the address) these definitions need not match exactly. */
struct sockaddr;

#define HIDDEN __attribute__((visibility("hidden")))

#ifndef SOCK_CLOEXEC
#define SOCK_CLOEXEC O_CLOEXEC
#endif
#ifndef EPOLL_CLOEXEC
#define EPOLL_CLOEXEC O_CLOEXEC
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

HIDDEN int accept4(int fd, struct sockaddr *address, unsigned int *length, int flags) {
    return (int)syscall(SYS_accept4, fd, address, length, flags | SOCK_CLOEXEC);
}

HIDDEN int accept(int fd, struct sockaddr *address, unsigned int *length) {
    return (int)syscall(SYS_accept4, fd, address, length, SOCK_CLOEXEC);
}

HIDDEN int socket(int domain, int type, int protocol) {
    return (int)syscall(SYS_socket, domain, type | SOCK_CLOEXEC, protocol);
}

HIDDEN int epoll_create(int size) {
    (void)size;
    return (int)syscall(SYS_epoll_create1, EPOLL_CLOEXEC);
}

int CExpirableCloseOnExec_mark_from(int from) {
#ifdef SYS_close_range
    if (syscall(SYS_close_range, (unsigned int)from, ~0U, CLOSE_RANGE_CLOEXEC) == 0) return 0;
#endif
    /* Before Linux 5.11: one by one. */
    DIR *directory = opendir("/proc/self/fd");
    if (directory == NULL) return errno;
    int own = dirfd(directory);
    struct dirent *entry;
    while ((entry = readdir(directory)) != NULL) {
        char *end;
        long fd = strtol(entry->d_name, &end, 10);
        if (*end != 0 || end == entry->d_name || fd < from || fd == own) continue;
        int flags = fcntl((int)fd, F_GETFD);
        if (flags >= 0) fcntl((int)fd, F_SETFD, flags | FD_CLOEXEC);
    }
    closedir(directory);
    return 0;
}
