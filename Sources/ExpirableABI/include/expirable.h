/*
 * expirable.h — the Expirable fetcher plugin ABI, version 1.3.
 *
 * This is the only file a plugin needs. A plugin is a shared object that the daemon loads with
 * dlopen(RTLD_NOW | RTLD_LOCAL) from its plugin_dir and never unloads. It exports function symbols only
 * (no data):
 *
 *   expirable_abi        required  the version handshake; the host calls it first and nothing else if it fails
 *   expirable_fetch      required  fetch one value
 *   expirable_create     optional  make per-expirable state (an HTTP client, a refresh token, ...)
 *   expirable_destroy    optional  free that state; required when expirable_create is exported
 *
 * Memory rule: nobody frees memory the other side allocated. Strings the host gives a plugin are {ptr, len}
 * views (not NUL-terminated) owned by the host and valid only during the call that received them. A plugin
 * hands a value or an error to the host through host->set_value / host->set_error; the host copies the bytes
 * before returning, so the plugin may free or reuse its buffer right after.
 *
 * Thread contract:
 *   - Each configured expirable gets its own instance (its own expirable_create call).
 *   - The host never runs two calls on the same instance at once: at most one expirable_fetch is outstanding
 *     per instance, and create/destroy never overlap a fetch of that instance. A keyed family has one
 *     instance for all its keys, so fetches for different keys wait in the daemon, in arrival order, and each
 *     starts when the one before it has returned (with isolation = "process" the daemon sends a helper the next
 *     call only once the previous one has answered).
 *   - Calls for different instances may run concurrently on different threads, so state shared between
 *     instances (globals) must be thread-safe.
 *   - Every call for an instance (expirable_create, each expirable_fetch, expirable_destroy) runs on that
 *     instance's own thread, named "plugin:NAME", which lives as long as the instance; never on the daemon's
 *     I/O threads, so a plugin may block. With isolation = "process" (the default) that thread is in a helper
 *     process that holds this one instance; with isolation = "inline" it is in the daemon.
 *   - A call's timeout (call->timeout_ms) counts from the call's start, not from when it was asked for. If a
 *     call outlives it, its callers get a TIMEOUT error at once. In a helper, the helper is then killed (with
 *     its process group) and a new one created later, so the call never returns. Inline, the call is left to
 *     finish (its late result is discarded) and no new call is made on that instance until it has returned:
 *     new fetches get a TIMEOUT error at once. A fetch that waits a whole timeout behind other calls without
 *     starting gets a TIMEOUT error saying so, and the plugin never sees it.
 *   - In a helper, expirable_create is held to the same timeout (past it the helper is killed and the
 *     expirable refused); inline nothing can stop it, since it runs in the daemon: it must not block.
 *
 * Versioning: the major number changes when an existing structure or function changes; the minor number when
 * something is appended. Every structure starts with a `size` field holding sizeof() as known by whoever
 * filled it in; structures only ever grow at the end, so a reader checks `size` before touching a field that
 * a later minor version appended.
 */
#ifndef EXPIRABLE_H
#define EXPIRABLE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** "EXPR": identifies an Expirable plugin. */
#define EXPIRABLE_ABI_MAGIC 0x45585052u
#define EXPIRABLE_ABI_MAJOR 1u
#define EXPIRABLE_ABI_MINOR 3u

/** `expires_at_ms` value meaning "never expires": kept until cleared, never refreshed. */
#define EXPIRABLE_NEVER_EXPIRES INT64_MAX

/** Default upper bound on a value's size; the host refuses larger values with an error. */
#define EXPIRABLE_MAX_VALUE_BYTES (1024u * 1024u)

/** Upper bound on a plugin's state (ABI 1.2, set_state); the host refuses larger states with an error. */
#define EXPIRABLE_MAX_STATE_BYTES (64u * 1024u)

/** Error classes for host->classify_error (ABI 1.1). */
/** An outage, an overload, a timeout: trying again may help. The class of every unclassified error. */
#define EXPIRABLE_ERROR_TEMPORARY 0
/** The configuration or the grant is broken (a revoked client, `invalid_grant`): no eager retry until the value
 *  is cleared or the configuration changes; callers still get a new call each retry_interval. */
#define EXPIRABLE_ERROR_PERMANENT 1
/** ABI 1.3: the plugin gave up on its own deadline (a program it ran, a request it sent, did not finish within
 *  the time it allows itself, which is below call->timeout_ms): the host answers TIMEOUT, as when the call itself
 *  overruns, rather than FETCH. Temporary. */
#define EXPIRABLE_ERROR_TIMEOUT 2

/** A byte string view: `len` bytes at `ptr`, not NUL-terminated. Owned by whoever passed it. */
typedef struct expirable_str {
    const char *ptr;
    size_t len;
} expirable_str;

/**
 * One configuration parameter from the expirable's TOML `params` table. Arrays of strings arrive as the same
 * key repeated once per element, in order. Owned by the host; valid during the call that received it.
 */
typedef struct expirable_param {
    expirable_str key;
    expirable_str value;
} expirable_param;

/** Filled in by the plugin in expirable_abi(). */
typedef struct expirable_abi_info {
    /** Set by the host to sizeof(expirable_abi_info) as it knows it; the plugin writes no byte past it. */
    uint32_t size;
    /** The plugin writes EXPIRABLE_ABI_MAGIC. */
    uint32_t magic;
    /** The plugin writes EXPIRABLE_ABI_MAJOR / EXPIRABLE_ABI_MINOR as it was compiled with them. */
    uint32_t major;
    uint32_t minor;
} expirable_abi_info;

/** Opaque, host-owned record of one call's outcome. Only ever passed back to the host's functions. */
typedef struct expirable_result expirable_result;

/**
 * Functions the host offers a plugin. The table is owned by the host and valid during the call that received
 * it; its function pointers stay valid for the life of the process. All of them are thread-safe.
 */
typedef struct expirable_host {
    uint32_t size;
    uint32_t reserved;

    /**
     * Report success: `len` bytes at `ptr` (copied before returning; may be empty, then `ptr` may be NULL),
     * valid until `expires_at_ms` (Unix time in milliseconds) or EXPIRABLE_NEVER_EXPIRES. Call it, or
     * set_error, exactly once per expirable_fetch; anything else is a malformed result that the host answers
     * with an error. A negative expiry or a value over EXPIRABLE_MAX_VALUE_BYTES is an error too.
     */
    void (*set_value)(expirable_result *result, const char *ptr, size_t len, int64_t expires_at_ms);

    /** Report failure with a message for the callers and the logs (copied; never put a secret in it). */
    void (*set_error)(expirable_result *result, const char *ptr, size_t len);

    /**
     * Parse a duration the way the daemon's configuration does ("250ms", "30s", "5m", "1h", or a plain
     * integer of milliseconds) into `*out_ms`. Returns 0 on success, -1 if the text is not a duration.
     */
    int (*parse_duration_ms)(const char *ptr, size_t len, int64_t *out_ms);

    /** The current Unix time in milliseconds, as the host reads it. */
    int64_t (*now_ms)(void);

    /* ---- ABI 1.1 ---- */

    /**
     * Classify the error this call reports with set_error (before or after it; at most once): `error_class`
     * EXPIRABLE_ERROR_TEMPORARY, EXPIRABLE_ERROR_PERMANENT or (ABI 1.3) EXPIRABLE_ERROR_TIMEOUT, and `retry_after_ms`, a Unix time in milliseconds
     * before which the host makes no call for this expirable (an HTTP 429/503 `Retry-After`), or 0 for none.
     * The host holds a retry-after to at most one hour from now. An unknown class or a negative time is a
     * malformed result; with set_value the classification is ignored. Without this call an error is temporary
     * with no retry-after, as every error of a 1.0 plugin is.
     */
    void (*classify_error)(expirable_result *result, int error_class, int64_t retry_after_ms);

    /* ---- ABI 1.2 ---- */

    /**
     * Set the state the next call for this expirable (this key) receives in call->state: a rotating refresh
     * token, a cursor. `len` bytes at `ptr`, copied before returning; `len` 0 clears the state. Call it at most
     * once per call, with set_value or with set_error (a refresh token the identity provider consumed is
     * replaced even if the call then failed). Without it the state stays as it was. The host keeps the state
     * like a value: never logged, wiped when dropped, never sent to callers; in a cluster it travels with the
     * value to the node that makes the next call. At most EXPIRABLE_MAX_STATE_BYTES.
     */
    void (*set_state)(expirable_result *result, const char *ptr, size_t len);
} expirable_host;

/**
 * Whether the host table has `member` (appended in a later minor version). A plugin built for minor N is only
 * loaded by hosts of minor N or later, so members of its own minor are always there; the check is for plugins
 * that want to use a newer member when present and still declare an older minor.
 */
#define EXPIRABLE_HOST_HAS(host, member) \
    ((host)->size >= offsetof(expirable_host, member) + sizeof((host)->member))

/** Arguments of expirable_create and expirable_fetch. Owned by the host; valid during the call. */
typedef struct expirable_call {
    uint32_t size;
    uint32_t reserved;
    /** The host's functions. */
    const expirable_host *host;
    /** Where set_value / set_error record the outcome. */
    expirable_result *result;
    /** The expirable's name from the configuration (`[expirable.NAME]`). */
    expirable_str name;
    /** The expirable's params, `param_count` of them. */
    const expirable_param *params;
    size_t param_count;
    /** What expirable_create returned for this expirable (NULL without expirable_create, and in create). */
    void *instance;
    /** The host's limit on this call in milliseconds; a plugin with its own deadlines should stay below it. */
    int64_t timeout_ms;

    /* ---- ABI 1.2 (a plugin of minor 2 or later may read these; the host always fills them) ---- */

    /** For `keyed = true` expirables, the key this call is for (`NAME:KEY`, 1–256 printable non-space ASCII
     *  bytes); {NULL, 0} otherwise and in expirable_create. Owned by the host; valid during the call. */
    expirable_str key;
    /** The state the previous call for this expirable (this key) set with set_state, or the initial state from
     *  the configuration; {NULL, 0} when there is none. Owned by the host; valid during the call. */
    expirable_str state;
} expirable_call;

/**
 * Required. Fill in `info` (see expirable_abi_info). Called once, first, before any other symbol is looked up;
 * must not fail or block. The host refuses the plugin if the magic or the major version differs from its own,
 * or if the plugin's minor version is newer than the host's (it may call host functions the host lacks).
 */
void expirable_abi(expirable_abi_info *info);

/**
 * Required. Fetch the value: call call->host->set_value or call->host->set_error exactly once, then return.
 * May block (it runs on its own thread) but should respect call->timeout_ms.
 */
void expirable_fetch(const expirable_call *call);

/**
 * Optional. Prepare state for one expirable, checking its params. Return the state (any pointer; NULL is
 * allowed and then reaches fetch as NULL). To refuse the configuration, call call->host->set_error with the
 * reason: the daemon then refuses to start, showing that message. call->instance is NULL here.
 */
void *expirable_create(const expirable_call *call);

/**
 * Optional (required with expirable_create). Free what expirable_create made. Called at most once. Should return
 * promptly: a stopping daemon waits at most 5 s for it, then exits without it.
 */
void expirable_destroy(void *instance);

#ifdef __cplusplus
}
#endif

#endif /* EXPIRABLE_H */
