/* Probes for Benchmarks/cluster.sh, in C so that polling costs the nodes little and times are taken next to the
 * socket calls. Every wait is bounded; a probe that runs out of time says so and exits 1.
 *
 *   probe serve SOCKET NAME TIMEOUT_MS
 *       for a node just started: connects until the socket accepts, sends GET NAME and waits for the answer
 *       (again after an error reply); prints the wall-clock time (µs since the epoch, comparable with bash's
 *       EPOCHREALTIME) of the first accepted connection and of the first value, and the value.
 *   probe miss SOCKET NAME COUNT
 *       COUNT times: CLEAR NAME, 5 ms for the clear to settle, then GET NAME, timed; prints p50, p90 and max (µs)
 *       and the number of error replies (with the first).
 *   probe takeover NAME KILL_BELOW_MS SIGNAL OWNER_PID OWNER_SOCKET TIMEOUT_MS SURVIVOR_SOCKET...
 *       polls PTTL NAME on the owner until it falls from above KILL_BELOW_MS to below it, sends SIGNAL to
 *       OWNER_PID, then polls PTTL on the survivors every millisecond until each holds a new value (its PTTL
 *       jumps up); prints the owner's PTTL at the kill, the time from the kill until the first and the last
 *       survivor held the new value, the least validity a survivor had left just before it, and whether any
 *       survivor answered -2 (nothing valid: the value lapsed) in between. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static double mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static long long wall_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void pause_us(long us) {
    struct timespec ts = { .tv_sec = us / 1000000, .tv_nsec = (us % 1000000) * 1000 };
    nanosleep(&ts, NULL);
}

/* A connected Unix socket, or -1. */
static int dial(const char *path) {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    strncpy(a.sun_path, path, sizeof a.sun_path - 1);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0) return fd;
    if (fd >= 0) close(fd);
    return -1;
}

static int must_dial(const char *path) {
    int fd = dial(path);
    if (fd < 0) { fprintf(stderr, "probe: connect %s: %s\n", path, strerror(errno)); exit(1); }
    return fd;
}

/* Sends one inline command and reads one whole reply (a line, or a bulk string) into buf, NUL-terminated.
 * Returns the reply's length, or -1 if the connection failed or closed. */
static long command(int fd, const char *cmd, char *buf, size_t cap) {
    char line[512];
    int n = snprintf(line, sizeof line, "%s\r\n", cmd);
    if (write(fd, line, (size_t)n) != n) return -1;
    size_t got = 0;
    for (;;) {
        ssize_t r = read(fd, buf + got, cap - 1 - got);
        if (r <= 0) return -1;
        got += (size_t)r;
        buf[got] = 0;
        char *end = memmem(buf, got, "\r\n", 2);
        if (!end) { if (got == cap - 1) return -1; continue; }
        if (buf[0] != '$') return (long)got;
        long len = atol(buf + 1);
        if (len < 0 || (size_t)(end - buf) + 2 + (size_t)len + 2 <= got) return (long)got;
        if (got == cap - 1) return -1;
    }
}

static long long pttl(int fd, const char *name) {
    char cmd[300], reply[128];
    snprintf(cmd, sizeof cmd, "PTTL %s", name);
    if (command(fd, cmd, reply, sizeof reply) < 0 || reply[0] != ':') {
        fprintf(stderr, "probe: PTTL %s answered %s\n", name, reply);
        exit(1);
    }
    return atoll(reply + 1);
}

static int serve(const char *path, const char *name, double timeout_ms) {
    double deadline = mono_ms() + timeout_ms;
    long long connected = 0;
    char cmd[300], reply[4096];
    snprintf(cmd, sizeof cmd, "GET %s", name);
    while (mono_ms() < deadline) {
        int fd = dial(path);
        if (fd < 0) { pause_us(200); continue; }
        if (!connected) connected = wall_us();
        long n = command(fd, cmd, reply, sizeof reply);
        close(fd);
        if (n > 0 && reply[0] == '$' && reply[1] != '-') {
            long long answered = wall_us();
            char *value = strstr(reply, "\r\n") + 2;
            value[strcspn(value, "\r")] = 0;
            printf("connected_us=%lld answered_us=%lld value=%s\n", connected, answered, value);
            return 0;
        }
        pause_us(1000);
    }
    fprintf(stderr, "probe: %s did not answer GET %s within %.0f ms\n", path, name, timeout_ms);
    return 1;
}

static int compare(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int miss(const char *path, const char *name, int count) {
    int fd = must_dial(path);
    double *samples = calloc((size_t)count, sizeof *samples);
    char get[300], clear[300], reply[4096], first_error[256] = "";
    snprintf(get, sizeof get, "GET %s", name);
    snprintf(clear, sizeof clear, "CLEAR %s", name);
    int errors = 0;
    for (int i = 0; i < count; i++) {
        if (command(fd, clear, reply, sizeof reply) < 0) { fprintf(stderr, "probe: CLEAR failed\n"); return 1; }
        pause_us(5000);
        double start = mono_ms();
        if (command(fd, get, reply, sizeof reply) < 0) { fprintf(stderr, "probe: GET failed\n"); return 1; }
        samples[i] = (mono_ms() - start) * 1e3;
        if (reply[0] != '$' || reply[1] == '-') {
            if (errors++ == 0) { snprintf(first_error, sizeof first_error, "%.200s", reply); first_error[strcspn(first_error, "\r")] = 0; }
        }
    }
    qsort(samples, (size_t)count, sizeof *samples, compare);
    printf("p50_us=%.0f p90_us=%.0f max_us=%.0f errors=%d%s%s\n", samples[count / 2], samples[count * 9 / 10],
           samples[count - 1], errors, errors ? " first_error=" : "", first_error);
    return 0;
}

static int takeover(char **argv, int survivors) {
    const char *name = argv[0];
    long long kill_below = atoll(argv[1]);
    int sig = atoi(argv[2]);
    pid_t owner_pid = (pid_t)atoi(argv[3]);
    int owner = must_dial(argv[4]);
    double timeout_ms = atof(argv[5]);
    int fds[16];
    long long last[16];
    double got_new[16];
    if (survivors > 16) survivors = 16;
    for (int i = 0; i < survivors; i++) { fds[i] = must_dial(argv[6 + i]); got_new[i] = -1; }

    /* Wait for the owner's value to cross KILL_BELOW_MS, so the kill lands just before the refresh is due. */
    double deadline = mono_ms() + timeout_ms;
    int seen_above = 0;
    long long at_kill;
    for (;;) {
        if (mono_ms() > deadline) { fprintf(stderr, "probe: %s's PTTL never crossed %lld ms\n", name, kill_below); return 1; }
        at_kill = pttl(owner, name);
        if (at_kill > kill_below) seen_above = 1;
        else if (seen_above && at_kill > 0) break;
        pause_us(1000);
    }
    for (int i = 0; i < survivors; i++) last[i] = pttl(fds[i], name);
    if (kill(owner_pid, sig) != 0) { perror("probe: kill"); return 1; }
    double killed = mono_ms();
    deadline = killed + timeout_ms;
    double first_lapse = -1;
    long long least_left = -1;
    int pending = survivors;
    while (pending > 0 && mono_ms() < deadline) {
        for (int i = 0; i < survivors; i++) {
            if (got_new[i] >= 0) continue;
            long long now = pttl(fds[i], name);
            if (now == -2 && first_lapse < 0) first_lapse = mono_ms() - killed;
            if (now > 0 && now > last[i] + 300) {
                got_new[i] = mono_ms() - killed;
                if (least_left < 0 || last[i] < least_left) least_left = last[i];
                pending--;
            }
            if (now > 0 || now == -2) last[i] = now;
        }
        pause_us(1000);
    }
    double first = -1, all = -1;
    for (int i = 0; i < survivors; i++) {
        if (got_new[i] >= 0 && (first < 0 || got_new[i] < first)) first = got_new[i];
        if (got_new[i] > all) all = got_new[i];
    }
    printf("pttl_at_kill_ms=%lld first_new_ms=%.1f all_new_ms=%.1f least_left_ms=%lld lapsed=%s",
           at_kill, first, pending ? -1.0 : all, least_left, first_lapse >= 0 ? "yes" : "no");
    if (first_lapse >= 0) printf(" first_lapse_ms=%.1f", first_lapse);
    printf("%s\n", pending ? " timed_out=yes" : "");
    return pending ? 1 : 0;
}

int main(int argc, char **argv) {
    if (argc == 5 && strcmp(argv[1], "serve") == 0) return serve(argv[2], argv[3], atof(argv[4]));
    if (argc == 5 && strcmp(argv[1], "miss") == 0) return miss(argv[2], argv[3], atoi(argv[4]));
    if (argc >= 9 && strcmp(argv[1], "takeover") == 0) return takeover(argv + 2, argc - 8);
    fprintf(stderr, "usage: probe serve SOCKET NAME TIMEOUT_MS | miss SOCKET NAME COUNT |\n"
                    "       takeover NAME KILL_BELOW_MS SIGNAL OWNER_PID OWNER_SOCKET TIMEOUT_MS SURVIVOR_SOCKET...\n");
    return 2;
}
