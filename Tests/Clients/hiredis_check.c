/* hiredis (Debian's libhiredis-dev) against a Redis-protocol server on a Unix socket.
 *
 *   cc -o hiredis_check hiredis_check.c -lhiredis
 *   hiredis_check SOCKET [--value NAME=VALUE]... [--unknown NAME] [--error NAME=PREFIX]
 *
 * GET of every NAME; MGET with the unknown name (nil); a pipelined batch of 100 GETs with the error GET in its
 * middle, replies read back in order; a lone error reply. Prints one line per check and exits 1 at the first
 * failure with what was expected and what came back. */
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#define MAX_VALUES 16
#define BATCH 100

static int checks;

static void passed(const char *what, const char *got) {
    checks++;
    printf("ok   hiredis: %s: %s\n", what, got);
    fflush(stdout);
}

static void fail(const char *what, const char *expected, const char *got) {
    printf("FAIL hiredis: %s: expected %s, got %s\n", what, expected, got);
    fflush(stdout);
    exit(1);
}

/* What a reply is, for messages: the string, "(nil)", "(error) …" or "(type N)". */
static const char *describe(const redisReply *reply, char *buffer, size_t size) {
    if (reply == NULL) return "no reply (connection error)";
    switch (reply->type) {
    case REDIS_REPLY_STRING: case REDIS_REPLY_STATUS: snprintf(buffer, size, "\"%s\"", reply->str); break;
    case REDIS_REPLY_ERROR: snprintf(buffer, size, "(error) %s", reply->str); break;
    case REDIS_REPLY_NIL: snprintf(buffer, size, "(nil)"); break;
    case REDIS_REPLY_INTEGER: snprintf(buffer, size, "(integer) %lld", reply->integer); break;
    default: snprintf(buffer, size, "(reply type %d)", reply->type); break;
    }
    return buffer;
}

static void expect_string(const char *what, const redisReply *reply, const char *value) {
    char got[512], expected[512];
    snprintf(expected, sizeof expected, "\"%s\"", value);
    describe(reply, got, sizeof got);
    if (reply == NULL || reply->type != REDIS_REPLY_STRING || strcmp(reply->str, value) != 0) fail(what, expected, got);
    passed(what, got);
}

static void expect_error(const char *what, const redisReply *reply, const char *prefix) {
    char got[512], expected[512];
    snprintf(expected, sizeof expected, "(error) %s…", prefix);
    describe(reply, got, sizeof got);
    if (reply == NULL || reply->type != REDIS_REPLY_ERROR || strncmp(reply->str, prefix, strlen(prefix)) != 0) fail(what, expected, got);
    passed(what, got);
}

/* Splits "NAME=VALUE" in place. */
static void split(char *pair, char **name, char **value) {
    char *equals = strchr(pair, '=');
    if (equals == NULL) { fprintf(stderr, "expected NAME=VALUE, got %s\n", pair); exit(2); }
    *equals = 0;
    *name = pair;
    *value = equals + 1;
}

int main(int argc, char **argv) {
    char *names[MAX_VALUES], *values[MAX_VALUES], *unknown = NULL, *error_name = NULL, *error_prefix = NULL;
    int count = 0;
    if (argc < 2) { fprintf(stderr, "usage: %s SOCKET [--value NAME=VALUE]... [--unknown NAME] [--error NAME=PREFIX]\n", argv[0]); return 2; }
    for (int i = 2; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--value") == 0 && count < MAX_VALUES) { split(argv[i + 1], &names[count], &values[count]); count++; }
        else if (strcmp(argv[i], "--unknown") == 0) unknown = argv[i + 1];
        else if (strcmp(argv[i], "--error") == 0) split(argv[i + 1], &error_name, &error_prefix);
        else { fprintf(stderr, "unknown option %s\n", argv[i]); return 2; }
    }

    struct timeval timeout = { 10, 0 };
    redisContext *context = redisConnectUnixWithTimeout(argv[1], timeout);
    if (context == NULL || context->err) fail("connect", argv[1], context ? context->errstr : "no memory");
    redisSetTimeout(context, timeout);
    passed("connect", argv[1]);

    redisReply *reply;
    char what[256];
    for (int i = 0; i < count; i++) {
        snprintf(what, sizeof what, "GET %s", names[i]);
        reply = redisCommand(context, "GET %s", names[i]);
        expect_string(what, reply, values[i]);
        freeReplyObject(reply);
    }

    if (unknown != NULL && count > 0) {
        snprintf(what, sizeof what, "MGET %s %s", names[0], unknown);
        reply = redisCommand(context, "MGET %s %s", names[0], unknown);
        char got[512];
        describe(reply, got, sizeof got);
        if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2) fail(what, "an array of 2", got);
        expect_string(what, reply->element[0], values[0]);
        describe(reply->element[1], got, sizeof got);
        if (reply->element[1]->type != REDIS_REPLY_NIL) fail(what, "(nil) for the unknown name", got);
        passed(what, got);
        freeReplyObject(reply);
    }

    if (count > 0) {
        /* One write of BATCH commands, then BATCH replies in order; the error sits in the middle. */
        for (int i = 0; i < BATCH; i++) {
            if (error_name != NULL && i == BATCH / 2) redisAppendCommand(context, "GET %s", error_name);
            else redisAppendCommand(context, "GET %s", names[i % count]);
        }
        for (int i = 0; i < BATCH; i++) {
            if (redisGetReply(context, (void **)&reply) != REDIS_OK) fail("pipelined batch", "a reply", context->errstr);
            if (error_name != NULL && i == BATCH / 2) {
                snprintf(what, sizeof what, "pipelined GET %d of %d, %s (error in the batch)", i + 1, BATCH, error_name);
                expect_error(what, reply, error_prefix);
            } else {
                char got[512];
                if (reply->type != REDIS_REPLY_STRING || strcmp(reply->str, values[i % count]) != 0) {
                    snprintf(what, sizeof what, "pipelined GET %d of %d, %s", i + 1, BATCH, names[i % count]);
                    fail(what, values[i % count], describe(reply, got, sizeof got));
                }
            }
            freeReplyObject(reply);
        }
        snprintf(what, sizeof what, "pipelined batch of %d GETs", BATCH);
        passed(what, "all replies in order");
    }

    if (error_name != NULL) {
        snprintf(what, sizeof what, "GET %s", error_name);
        reply = redisCommand(context, "GET %s", error_name);
        expect_error(what, reply, error_prefix);
        freeReplyObject(reply);
        if (count > 0) {
            reply = redisCommand(context, "GET %s", names[0]);
            snprintf(what, sizeof what, "GET %s after the error (connection still usable)", names[0]);
            expect_string(what, reply, values[0]);
            freeReplyObject(reply);
        }
    }

    redisFree(context);
    printf("hiredis: all %d checks passed\n", checks);
    return 0;
}
