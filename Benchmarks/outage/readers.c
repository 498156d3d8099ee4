/* Readers during an outage: READERS threads, one Unix-socket connection each, loop "FETCH NAME" for SECONDS and
 * sort the answers by kind: fresh, stale (FETCH's third element) or error. A request sent before the end is
 * waited for (a paced call may hold it up to a second). Prints one line of counts, the longest wait for an
 * answer, and the first error's message.
 * Usage: readers SOCKET NAME READERS SECONDS */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static const char *path, *name;
static double end_ms;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static long fresh, stale, errors, other;
static double longest_ms;
static char first_error[512];

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* The length of the RESP element at buf[0..n), or 0 while incomplete: a line (simple string, error, integer),
 * a bulk string, or an array of those. */
static size_t element(const char *buf, size_t n) {
    const char *eol = memmem(buf, n, "\r\n", 2);
    if (!eol) return 0;
    size_t head = (size_t)(eol - buf) + 2;
    if (buf[0] == '$') {
        long len = atol(buf + 1);
        if (len < 0) return head;
        return head + (size_t)len + 2 <= n ? head + (size_t)len + 2 : 0;
    }
    if (buf[0] == '*') {
        size_t at = head;
        for (long i = atol(buf + 1); i > 0; i--) {
            size_t one = element(buf + at, n - at);
            if (!one) return 0;
            at += one;
        }
        return at;
    }
    return head;
}

static void *reader(void *unused) {
    (void)unused;
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    strncpy(a.sun_path, path, sizeof a.sun_path - 1);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) { perror("connect"); exit(1); }
    char request[512], buf[4096];
    int rl = snprintf(request, sizeof request, "FETCH %s\r\n", name);
    long f = 0, s = 0, e = 0, o = 0;
    double longest = 0;
    while (now_ms() < end_ms) {
        double sent = now_ms();
        if (write(fd, request, rl) != rl) { perror("write"); exit(1); }
        size_t got = 0, len = 0;
        while (!(len = element(buf, got))) {
            ssize_t r = read(fd, buf + got, sizeof buf - 1 - got);
            if (r <= 0) { fprintf(stderr, "connection closed by the daemon\n"); exit(1); }
            got += (size_t)r;
        }
        buf[len] = 0;
        if (now_ms() - sent > longest) longest = now_ms() - sent;
        if (buf[0] == '-') {
            e++;
            pthread_mutex_lock(&lock);
            if (!first_error[0]) snprintf(first_error, sizeof first_error, "%.*s", (int)strcspn(buf + 1, "\r"), buf + 1);
            pthread_mutex_unlock(&lock);
        } else if (buf[0] == '*' && len >= 7 && memcmp(buf + len - 7, "fresh\r\n", 7) == 0) {
            f++;
        } else if (buf[0] == '*' && len >= 7 && memcmp(buf + len - 7, "stale\r\n", 7) == 0) {
            s++;
        } else {
            o++;
        }
    }
    close(fd);
    pthread_mutex_lock(&lock);
    fresh += f, stale += s, errors += e, other += o;
    if (longest > longest_ms) longest_ms = longest;
    pthread_mutex_unlock(&lock);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 5) { fprintf(stderr, "usage: readers SOCKET NAME READERS SECONDS\n"); return 2; }
    path = argv[1], name = argv[2];
    int readers = atoi(argv[3]);
    end_ms = now_ms() + atof(argv[4]) * 1e3;
    pthread_t *threads = calloc((size_t)readers, sizeof *threads);
    for (int i = 0; i < readers; i++) pthread_create(&threads[i], NULL, reader, NULL);
    for (int i = 0; i < readers; i++) pthread_join(threads[i], NULL);
    printf("answers=%ld fresh=%ld stale=%ld error=%ld other=%ld longest_wait_ms=%.0f\n",
           fresh + stale + errors + other, fresh, stale, errors, other, longest_ms);
    printf("first_error=%s\n", first_error[0] ? first_error : "(none)");
    return 0;
}
