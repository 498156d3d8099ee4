/* The daemon's side of the 1,000-caller burst, without a client library in the way: opens CALLERS Unix-socket
 * connections and one more; then, ROUNDS times, CLEARs NAME on the extra one, sends "GET NAME" on every
 * connection and waits (epoll) until each has a whole reply. Prints, per round, the time from the first GET
 * sent to the last reply read, from the first GET to the first reply, and to send all GETs.
 * Usage: burst SOCKET NAME CALLERS [ROUNDS] */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int dial(const char *path) {
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    strncpy(a.sun_path, path, sizeof a.sun_path - 1);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) { perror("connect"); exit(1); }
    return fd;
}

/* A whole RESP reply in buf[0..n): a simple line, or a bulk string with its payload. */
static int complete(const char *buf, size_t n) {
    const char *end = memmem(buf, n, "\r\n", 2);
    if (!end) return 0;
    if (buf[0] != '$') return 1;
    long len = atol(buf + 1);
    return len < 0 || (size_t)(end - buf) + 2 + (size_t)len + 2 <= n;
}

int main(int argc, char **argv) {
    if (argc != 4 && argc != 5) { fprintf(stderr, "usage: burst SOCKET NAME CALLERS [ROUNDS]\n"); return 2; }
    int callers = atoi(argv[3]);
    int rounds = argc == 5 ? atoi(argv[4]) : 1;
    int *fds = calloc(callers, sizeof *fds);
    size_t *got = calloc(callers, sizeof *got);
    char (*bufs)[256] = calloc(callers, sizeof *bufs);
    char request[512], clear[512], reply[256];
    int rl = snprintf(request, sizeof request, "GET %s\r\n", argv[2]);
    int cl = snprintf(clear, sizeof clear, "CLEAR %s\r\n", argv[2]);
    for (int i = 0; i < callers; i++) fds[i] = dial(argv[1]);
    int admin = dial(argv[1]);
    int ep = epoll_create1(0);
    struct epoll_event events[256];
    /* Level-triggered and never removed: a connection is reported only while a reply is unread. */
    for (int i = 0; i < callers; i++) {
        struct epoll_event ev = { .events = EPOLLIN, .data.u32 = (unsigned)i };
        epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev);
    }
    for (int round = 0; round < rounds; round++) {
        if (write(admin, clear, cl) != cl || read(admin, reply, sizeof reply) <= 0) { perror("clear"); return 1; }
        memset(got, 0, callers * sizeof *got);
        double start = now_ms(), first = 0;
        for (int i = 0; i < callers; i++)
            if (write(fds[i], request, rl) != rl) { perror("write"); return 1; }
        double sent = now_ms();
        int done = 0;
        while (done < callers) {
            int n = epoll_wait(ep, events, 256, 10000);
            if (n <= 0) { fprintf(stderr, "timed out with %d of %d answered\n", done, callers); return 1; }
            for (int k = 0; k < n; k++) {
                int i = (int)events[k].data.u32;
                ssize_t r = read(fds[i], bufs[i] + got[i], sizeof bufs[i] - got[i]);
                if (r <= 0) { fprintf(stderr, "connection %d closed\n", i); return 1; }
                got[i] += (size_t)r;
                if (complete(bufs[i], got[i]) && done++ == 0) first = now_ms();
            }
        }
        double end = now_ms();
        printf("callers=%d all_answered_ms=%.2f first_answer_ms=%.2f sending_ms=%.2f\n", callers, end - start, first - start, sent - start);
    }
    return 0;
}
