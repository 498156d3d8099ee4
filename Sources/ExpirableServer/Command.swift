import ExpirableCore
import ExpirableRESP

/// A request, checked for its name and arity. Its arguments stay in the request's words (positions in the
/// receive buffer) until needed, so answering a GET from memory makes no String.
enum Command: Equatable {
    /// PING, echoing word 1 if there is one.
    case ping(echo: Bool)
    /// The name is word 1 for these.
    case get, fetch, ttl, pttl, clear, type
    case clearAll
    /// Re-reads the configuration file (SPEC §10): admin only.
    case reload
    case list
    /// INFO, about the expirables (or Redis sections) named from word 1 on if there are any.
    case info(named: Bool)
    case quit
    /// The cluster's members, one line each.
    case cluster
    /// CONFIG GET parameter…: redis-benchmark and some clients ask for server settings first.
    case configGet
    /// Names from word 1 on.
    case mget, exists, subscribe, unsubscribe
    case hello, client, select, echo, reset, auth, dbsize, command
    case multi, exec, discard
    /// Why `name` (word 1) is in its state and what happens next.
    case explain

    /// The command `words` spell, or the error reply to send. `words` is not empty (`scanCommands` skips empty
    /// requests).
    static func parse(_ words: RESPCommandWords) -> Result<Command, ReplyError> {
        let arguments = words.count - 1
        func named(_ command: Command, _ spelled: String) -> Result<Command, ReplyError> {
            arguments == 1 ? .success(command) : arity(spelled, "\(spelled) name")
        }
        func names(_ command: Command, _ spelled: String, least: Int = 1) -> Result<Command, ReplyError> {
            arguments >= least ? .success(command) : arity(spelled, "\(spelled) name [name ...]")
        }
        func none(_ command: Command, _ spelled: String) -> Result<Command, ReplyError> {
            arguments == 0 ? .success(command) : arity(spelled, spelled)
        }
        // The hot commands first.
        if words.word(0, is: "GET") { return named(.get, "GET") }
        if words.word(0, is: "FETCH") {
            guard arguments == 1 || arguments == 3 else { return arity("FETCH", "FETCH name [MINTTL ms]") }
            // The right count with another word where MINTTL belongs: the word is what is wrong, as Redis says of an
            // unknown option ("syntax error"), not the count.
            guard arguments == 1 || words.word(2, is: "MINTTL") else {
                return .failure(.init("ERR syntax error: unknown option '\(TextLogHandler.escaped(String(words.string(2).prefix(32))))' for 'FETCH'; expected FETCH name [MINTTL ms]"))
            }
            return .success(.fetch)
        }
        if words.word(0, is: "MGET") { return names(.mget, "MGET") }
        if words.word(0, is: "TTL") { return named(.ttl, "TTL") }
        if words.word(0, is: "PTTL") { return named(.pttl, "PTTL") }
        if words.word(0, is: "PING") { return arguments <= 1 ? .success(.ping(echo: arguments == 1)) : arity("PING", "PING [message]") }
        if words.word(0, is: "CLEAR") { return named(.clear, "CLEAR") }
        if words.word(0, is: "CLEARALL") { return none(.clearAll, "CLEARALL") }
        if words.word(0, is: "RELOAD") { return none(.reload, "RELOAD") }
        if words.word(0, is: "LIST") { return none(.list, "LIST") }
        if words.word(0, is: "INFO") { return .success(.info(named: arguments >= 1)) }
        if words.word(0, is: "EXPLAIN") { return named(.explain, "EXPLAIN") }
        if words.word(0, is: "EXISTS") { return names(.exists, "EXISTS") }
        if words.word(0, is: "TYPE") { return named(.type, "TYPE") }
        if words.word(0, is: "DBSIZE") { return none(.dbsize, "DBSIZE") }
        if words.word(0, is: "SUBSCRIBE") { return names(.subscribe, "SUBSCRIBE") }
        if words.word(0, is: "UNSUBSCRIBE") { return .success(.unsubscribe) }
        if words.word(0, is: "HELLO") { return .success(.hello) }
        if words.word(0, is: "CLIENT") { return arguments >= 1 ? .success(.client) : arity("CLIENT", "CLIENT SETNAME|GETNAME|SETINFO|ID|INFO ...") }
        if words.word(0, is: "SELECT") { return named(.select, "SELECT") }
        if words.word(0, is: "ECHO") { return arguments == 1 ? .success(.echo) : arity("ECHO", "ECHO message") }
        if words.word(0, is: "MULTI") { return none(.multi, "MULTI") }
        if words.word(0, is: "EXEC") { return none(.exec, "EXEC") }
        if words.word(0, is: "DISCARD") { return none(.discard, "DISCARD") }
        if words.word(0, is: "RESET") { return none(.reset, "RESET") }
        if words.word(0, is: "QUIT") { return .success(.quit) }
        if words.word(0, is: "COMMAND") { return .success(.command) }
        if words.word(0, is: "AUTH") { return .success(.auth) }
        if words.word(0, is: "CLUSTER") { return none(.cluster, "CLUSTER") }
        if words.word(0, is: "CONFIG") {
            guard arguments >= 1, words.word(1, is: "GET") else { return .failure(.init("ERR expirabled answers CONFIG GET only")) }
            return arguments >= 2 ? .success(.configGet) : arity("CONFIG GET", "CONFIG GET parameter [parameter ...]")
        }
        // Short and ASCII, as Redis's: the commands are one COMMAND LIST away.
        return .failure(.init("ERR unknown command '\(String(words.string(0).prefix(64)))'; COMMAND LIST names the commands expirabled answers"))
    }

    private static func arity(_ name: String, _ form: String) -> Result<Command, ReplyError> {
        .failure(.init("ERR wrong number of arguments for '\(name)'; expected \(form)"))
    }

    /// The names requests are counted under in the metrics; `metricSlot` indexes it.
    static let metricNames = [
        "get", "fetch", "mget", "ttl", "pttl", "exists", "type", "dbsize", "clear", "clearall", "list", "info", "explain",
        "subscribe", "unsubscribe", "cluster", "ping", "echo", "hello", "client", "select", "reset", "quit", "multi", "exec",
        "discard", "command", "auth", "config", "reload", "unknown",
    ]

    /// This command's place in `metricNames`.
    var metricSlot: Int {
        switch self {
        case .get: 0
        case .fetch: 1
        case .mget: 2
        case .ttl: 3
        case .pttl: 4
        case .exists: 5
        case .type: 6
        case .dbsize: 7
        case .clear: 8
        case .clearAll: 9
        case .list: 10
        case .info: 11
        case .explain: 12
        case .subscribe: 13
        case .unsubscribe: 14
        case .cluster: 15
        case .ping: 16
        case .echo: 17
        case .hello: 18
        case .client: 19
        case .select: 20
        case .reset: 21
        case .quit: 22
        case .multi: 23
        case .exec: 24
        case .discard: 25
        case .command: 26
        case .auth: 27
        case .configGet: 28
        case .reload: 29
        }
    }

    /// The slot of requests that were not a command (unknown, wrong arity).
    static let unknownMetricSlot = 30

    /// Whether a RESP2 connection in subscribed mode may send it (as in Redis).
    var allowedWhileSubscribed: Bool {
        switch self {
        case .subscribe, .unsubscribe, .ping, .quit, .reset: true
        default: false
        }
    }

    /// Whether MULTI queues it; the others are refused inside a transaction, which then fails at EXEC (EXEC,
    /// DISCARD, MULTI, RESET and QUIT are never queued: they act at once).
    var queueable: Bool {
        switch self {
        case .subscribe, .unsubscribe, .hello, .auth: false
        default: true
        }
    }
}

/// An error reply: the first word is the kind (ERR, NOTFOUND, FETCH, TIMEOUT, NOPERM).
struct ReplyError: Error {
    let text: String
    init(_ text: String) { self.text = text }
}
