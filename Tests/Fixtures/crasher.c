/* Test plugin for process isolation: misbehaves as its mode says, else answers "pid-<its process id>", so a
 * restarted helper is visible in the value.
 * params: mode ("segv" writes through NULL, "abort" calls abort(), "exit" calls _exit(3), "hang" sleeps forever,
 * "garbage" writes bytes that are no frame to descriptor 3, the helper's socket, "hog" allocates and touches
 * memory 1 MiB at a time until malloc fails (then reports how much it got), "spin" burns CPU forever, "print"
 * writes to stdout and stderr (a greeting, a line dressed as a record of the daemon's, a line with terminal
 * escapes, a line of 20,000 "x" and an unfinished last line) then answers, "fork" starts a child that sleeps 60 s holding every descriptor and
 * writes its pid to pid_file then answers, "forksegv" does the same then writes through NULL, "close" closes
 * descriptor 3 then answers, "stray" writes a well-formed value frame of its own ("STRAY") to descriptor 3, as a
 * program holding the socket could, then answers, "evadecpu" lifts its RLIMIT_CPU to unlimited (soft and hard) and
 * then spins, "chdir" changes the process's working directory to / then answers; anything else answers),
 * mode_file (optional: read at each call, its first word is the mode; absent: "ok"), ttl_ms (default 60000). */
#include "expirable.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <unistd.h>

typedef struct crasher { char mode[16]; char mode_file[512]; char pid_file[512]; long long ttl_ms; } crasher;

void expirable_abi(expirable_abi_info *info) {
    info->magic = EXPIRABLE_ABI_MAGIC;
    info->major = EXPIRABLE_ABI_MAJOR;
    info->minor = EXPIRABLE_ABI_MINOR;
}

static void copy(char *dst, size_t cap, expirable_str s) {
    size_t n = s.len < cap - 1 ? s.len : cap - 1;
    memcpy(dst, s.ptr, n);
    dst[n] = 0;
}

void *expirable_create(const expirable_call *call) {
    crasher *c = calloc(1, sizeof *c);
    strcpy(c->mode, "ok");
    c->ttl_ms = 60000;
    for (size_t i = 0; i < call->param_count; i++) {
        expirable_str k = call->params[i].key, v = call->params[i].value;
        char buf[64];
        if (k.len == 4 && memcmp(k.ptr, "mode", 4) == 0) copy(c->mode, sizeof c->mode, v);
        if (k.len == 9 && memcmp(k.ptr, "mode_file", 9) == 0) copy(c->mode_file, sizeof c->mode_file, v);
        if (k.len == 8 && memcmp(k.ptr, "pid_file", 8) == 0) copy(c->pid_file, sizeof c->pid_file, v);
        if (k.len == 6 && memcmp(k.ptr, "ttl_ms", 6) == 0) { copy(buf, sizeof buf, v); c->ttl_ms = atoll(buf); }
    }
    return c;
}

void expirable_destroy(void *instance) {
    free(instance);
}

void expirable_fetch(const expirable_call *call) {
    crasher *c = call->instance;
    char mode[16];
    strcpy(mode, c->mode);
    if (c->mode_file[0]) {
        FILE *f = fopen(c->mode_file, "r");
        if (!f || fscanf(f, "%15s", mode) != 1) strcpy(mode, "ok");
        if (f) fclose(f);
    }
    if (strcmp(mode, "segv") == 0) *(volatile int *)NULL = 1;
    if (strcmp(mode, "abort") == 0) abort();
    if (strcmp(mode, "exit") == 0) _exit(3);
    if (strcmp(mode, "hang") == 0) for (;;) pause();
    if (strcmp(mode, "garbage") == 0) {
        static const char junk[] = "\xff\xff\xff\xffnot a frame";
        if (write(3, junk, sizeof junk - 1) < 0) abort();
        for (;;) pause();
    }
    if (strcmp(mode, "hog") == 0) {
        long mib = 0;
        for (;;) {
            char *block = malloc(1 << 20);
            if (!block) break;
            memset(block, 1, 1 << 20);  /* touched: resident, not just reserved */
            mib++;
        }
        char message[64];
        int n = snprintf(message, sizeof message, "out of memory after %ld MiB", mib);
        call->host->set_error(call->result, message, (size_t)n);
        return;
    }
    if (strcmp(mode, "evadecpu") == 0) {
        struct rlimit unlimited = {RLIM_INFINITY, RLIM_INFINITY};
        if (setrlimit(RLIMIT_CPU, &unlimited) != 0) {
            struct rlimit soft;
            if (getrlimit(RLIMIT_CPU, &soft) == 0) { soft.rlim_cur = soft.rlim_max; setrlimit(RLIMIT_CPU, &soft); }
        }
        for (volatile unsigned long i = 0;; i++) {}
    }
    if (strcmp(mode, "spin") == 0) for (volatile unsigned long i = 0;; i++) {}
    if (strcmp(mode, "print") == 0) {
        for (int i = 0; i < 1000; i++) printf("crasher stdout line %d: this must not reach any client\n", i);
        fflush(stdout);
        fprintf(stderr, "crasher says hello on stderr\n");
        fprintf(stderr, "{\"time\":\"2026-01-01T00:00:00.000Z\",\"level\":\"notice\",\"label\":\"expirable.server\",\"message\":\"forged by crasher\"}\n");
        fprintf(stderr, "2026-01-01T00:00:00+0000 notice expirable.server: [ExpirableServer] forged by crasher in text\r\x1b[2Kbell\a\n");
        for (int i = 0; i < 20000; i++) fputc('x', stderr);
        fprintf(stderr, "\ncrasher's last words without a newline");
        fflush(stderr);
    }
    if (strcmp(mode, "fork") == 0 || strcmp(mode, "forksegv") == 0) {
        pid_t child = fork();
        if (child == 0) { sleep(60); _exit(0); }
        if (c->pid_file[0]) {
            FILE *f = fopen(c->pid_file, "w");
            if (f) { fprintf(f, "%ld\n", (long)child); fclose(f); }
        }
        if (strcmp(mode, "forksegv") == 0) *(volatile int *)NULL = 1;
    }
    if (strcmp(mode, "stray") == 0) {
        /* Length 15, kind 5 (value), 8 bytes that are a far expiry (or an id), a state byte "keep", "STRAY". */
        static const char frame[] = "\0\0\0\x0f\x05\0\0\0\x7f\xff\xff\xff\xff\0STRAY";
        if (write(3, frame, sizeof frame - 1) < 0) abort();
    }
    if (strcmp(mode, "close") == 0) close(3);
    if (strcmp(mode, "chdir") == 0 && chdir("/") != 0) abort();
    char value[64];
    int n = snprintf(value, sizeof value, "pid-%ld", (long)getpid());
    call->host->set_value(call->result, value, (size_t)n, call->host->now_ms() + c->ttl_ms);
}
