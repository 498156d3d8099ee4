/* The floor for the 1,000-caller burst on this machine: a bare epoll server in C that does only what the burst
 * needs of a daemon. It answers "CLEAR ..." with +OK and "INFO ..." with an empty bulk; it holds every other
 * request (the GETs) and, 100 ms after the first GET of a round, writes the same 23-byte reply to each of them.
 * No plugin, no thread, no parsing beyond the first byte.   Usage: floor SOCKET */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: floor SOCKET\n"); return 2; }
    int listener = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un address = { .sun_family = AF_UNIX };
    strncpy(address.sun_path, argv[1], sizeof address.sun_path - 1);
    unlink(argv[1]);
    if (bind(listener, (struct sockaddr *)&address, sizeof address) != 0 || listen(listener, 4096) != 0) {
        perror("listen");
        return 1;
    }
    int ep = epoll_create1(0);
    struct epoll_event ev = { .events = EPOLLIN, .data.fd = listener };
    epoll_ctl(ep, EPOLL_CTL_ADD, listener, &ev);
    /* A timerfd fires at the deadline to the nanosecond; epoll_wait's millisecond timeout would round it. */
    int timer = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
    struct epoll_event tev = { .events = EPOLLIN, .data.fd = timer };
    epoll_ctl(ep, EPOLL_CTL_ADD, timer, &tev);
    static int waiting[65536];
    int held = 0;
    struct epoll_event events[256];
    char buf[4096];
    static const char reply[] = "$16\r\nmax_concurrent=1\r\n";
    for (;;) {
        int n = epoll_wait(ep, events, 256, -1);
        for (int k = 0; k < n; k++) {
            int fd = events[k].data.fd;
            if (fd == timer) {
                unsigned long long expirations;
                (void)!read(timer, &expirations, sizeof expirations);
                for (int i = 0; i < held; i++) (void)!write(waiting[i], reply, sizeof reply - 1);
                held = 0;
                continue;
            }
            if (fd == listener) {
                int c = accept(listener, NULL, NULL);
                struct epoll_event e = { .events = EPOLLIN, .data.fd = c };
                if (c >= 0) epoll_ctl(ep, EPOLL_CTL_ADD, c, &e);
                continue;
            }
            ssize_t r = read(fd, buf, sizeof buf);
            if (r <= 0) { close(fd); continue; }
            if (buf[0] == 'C') { (void)!write(fd, "+OK\r\n", 5); continue; }
            if (buf[0] == 'I') { (void)!write(fd, "$0\r\n\r\n", 6); continue; }
            if (!held) {
                struct itimerspec at = { .it_value = { .tv_sec = 0, .tv_nsec = 100000000L } };
                timerfd_settime(timer, 0, &at, NULL);
            }
            if (held < 65536) waiting[held++] = fd;
        }
    }
}
