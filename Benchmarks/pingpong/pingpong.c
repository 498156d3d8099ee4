/* The peer for ExpirableClient's round trip: a bare C Unix-socket ping-pong with the same bytes as a FETCH.
 * A forked server answers each request with a fixed reply; the client sends, reads the whole reply, repeats.
 * Usage: pingpong SOCKET_PATH ROUND_TRIPS REQUEST_BYTES REPLY_BYTES   → prints mean microseconds per round trip. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int read_exactly(int fd, char *buf, size_t n) {
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r <= 0) return -1;
        got += (size_t)r;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 5) { fprintf(stderr, "usage: pingpong SOCKET ROUND_TRIPS REQUEST_BYTES REPLY_BYTES\n"); return 2; }
    const char *path = argv[1];
    long rounds = atol(argv[2]);
    size_t request = (size_t)atol(argv[3]), reply = (size_t)atol(argv[4]);
    char *buf = calloc(1, request > reply ? request : reply);
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    strncpy(addr.sun_path, path, sizeof addr.sun_path - 1);
    unlink(path);
    int listener = socket(AF_UNIX, SOCK_STREAM, 0);
    if (bind(listener, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(listener, 1) != 0) { perror("bind"); return 1; }
    pid_t child = fork();
    if (child == 0) {
        int fd = accept(listener, NULL, NULL);
        while (read_exactly(fd, buf, request) == 0) {
            if (write(fd, buf, reply) != (ssize_t)reply) break;
        }
        _exit(0);
    }
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) { perror("connect"); return 1; }
    struct timespec start, end;
    for (long i = 0; i < rounds / 10; i++) { write(fd, buf, request); read_exactly(fd, buf, reply); } /* warm up */
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (long i = 0; i < rounds; i++) {
        if (write(fd, buf, request) != (ssize_t)request || read_exactly(fd, buf, reply) != 0) { perror("round trip"); return 1; }
    }
    clock_gettime(CLOCK_MONOTONIC, &end);
    close(fd);
    waitpid(child, NULL, 0);
    unlink(path);
    double us = ((end.tv_sec - start.tv_sec) * 1e9 + (end.tv_nsec - start.tv_nsec)) / 1e3 / (double)rounds;
    printf("%.2f\n", us);
    return 0;
}
