import ExpirableRESP
import NIOCore

/// What `COMMAND`, `COMMAND COUNT|LIST|INFO|DOCS` describe: every command the daemon answers, in the form
/// Redis 7 gives, so `redis-cli` shows hints and `help` for them and client libraries can look commands up.
enum CommandTable {
    struct Argument {
        let name: String
        let type: String
        /// The keyword written before the argument's value (`MINTTL ms`), or that is the whole argument
        /// (type `pure-token`).
        let token: String?
        /// What redis-cli's hint shows for the value (the name when nil).
        let displayText: String?
        let optional: Bool
        let multiple: Bool
        init(_ name: String, _ type: String = "string", token: String? = nil, display: String? = nil, optional: Bool = false, multiple: Bool = false) {
            self.name = name
            self.type = type
            self.token = token
            self.displayText = display
            self.optional = optional
            self.multiple = multiple
        }
    }

    struct Entry {
        let name: String
        /// Redis's arity: the exact number of words (command included), or at least -arity when negative.
        let arity: Int
        let flags: [String]
        let group: String
        let summary: String
        let arguments: [Argument]
        /// Position of the first and last name argument and the step between them (0 when none).
        var keys: (first: Int, last: Int, step: Int) = (0, 0, 0)
    }

    static let entries: [Entry] = [
        Entry(name: "get", arity: 2, flags: ["readonly", "fast"], group: "string",
              summary: "The value of an expirable: from memory while valid, else from one plugin call shared by all callers.",
              arguments: [Argument("name", "key")], keys: (1, 1, 1)),
        Entry(name: "fetch", arity: -2, flags: ["readonly", "fast"], group: "string",
              summary: "The value of an expirable, its expiry in Unix milliseconds (-1: never) and \"fresh\" or \"stale\"; with MINTTL, refetched when less than ms is left.",
              arguments: [Argument("name", "key"), Argument("ms", "integer", token: "MINTTL", optional: true)], keys: (1, 1, 1)),
        Entry(name: "mget", arity: -2, flags: ["readonly", "fast"], group: "string",
              summary: "The values of several expirables; nil for names not configured.",
              arguments: [Argument("name", "key", multiple: true)], keys: (1, -1, 1)),
        Entry(name: "ttl", arity: 2, flags: ["readonly", "fast"], group: "generic",
              summary: "Seconds until the stored value expires; -1 never, -2 nothing stored.",
              arguments: [Argument("name", "key")], keys: (1, 1, 1)),
        Entry(name: "pttl", arity: 2, flags: ["readonly", "fast"], group: "generic",
              summary: "Milliseconds until the stored value expires; -1 never, -2 nothing stored.",
              arguments: [Argument("name", "key")], keys: (1, 1, 1)),
        Entry(name: "exists", arity: -2, flags: ["readonly", "fast"], group: "generic",
              summary: "How many of the names hold a valid value now (no plugin call).",
              arguments: [Argument("name", "key", multiple: true)], keys: (1, -1, 1)),
        Entry(name: "type", arity: 2, flags: ["readonly", "fast"], group: "generic",
              summary: "string for a configured expirable, none otherwise.",
              arguments: [Argument("name", "key")], keys: (1, 1, 1)),
        Entry(name: "dbsize", arity: 1, flags: ["readonly", "fast"], group: "server",
              summary: "How many expirables hold a valid value now.", arguments: []),
        Entry(name: "clear", arity: 2, flags: ["write"], group: "generic",
              summary: "Drops an expirable's value and its refresh; the next GET calls the plugin.",
              arguments: [Argument("name", "key")], keys: (1, 1, 1)),
        Entry(name: "clearall", arity: 1, flags: ["write"], group: "generic",
              summary: "Drops every expirable's value.", arguments: []),
        Entry(name: "reload", arity: 1, flags: ["admin", "noscript"], group: "server",
              summary: "Re-reads the configuration file and applies what changed, as SIGHUP does; answers what was added, removed and changed. Admins only.",
              arguments: []),
        Entry(name: "list", arity: 1, flags: ["readonly"], group: "generic",
              summary: "The configured names.", arguments: []),
        Entry(name: "info", arity: -1, flags: ["readonly"], group: "server",
              summary: "key:value lines about the daemon, or about expirables (never their values).",
              arguments: [Argument("name", optional: true, multiple: true)]),
        Entry(name: "explain", arity: 2, flags: ["readonly"], group: "server",
              summary: "key:value lines on why an expirable is in its state and what happens next: last calls, next refresh and its rule, pacing, owner (never its value).",
              arguments: [Argument("name", "key")], keys: (1, 1, 1)),
        Entry(name: "subscribe", arity: -2, flags: ["pubsub", "noscript"], group: "pubsub",
              summary: "Pushes every new value of the named expirables until UNSUBSCRIBE.",
              arguments: [Argument("name", multiple: true)]),
        Entry(name: "unsubscribe", arity: -1, flags: ["pubsub", "noscript"], group: "pubsub",
              summary: "Stops the pushes of the named expirables, or of all.",
              arguments: [Argument("name", optional: true, multiple: true)]),
        Entry(name: "cluster", arity: 1, flags: ["readonly"], group: "cluster",
              summary: "The cluster's members, one line each.", arguments: []),
        Entry(name: "ping", arity: -1, flags: ["fast"], group: "connection",
              summary: "PONG, or the message.", arguments: [Argument("message", optional: true)]),
        Entry(name: "echo", arity: 2, flags: ["fast"], group: "connection",
              summary: "The message.", arguments: [Argument("message")]),
        Entry(name: "hello", arity: -1, flags: ["fast", "no-auth"], group: "connection",
              summary: "Chooses RESP2 or RESP3 and describes the server.",
              arguments: [Argument("protover", "integer", optional: true), Argument("clientname", optional: true)]),
        Entry(name: "client", arity: -2, flags: [], group: "connection",
              summary: "SETNAME, GETNAME, SETINFO, ID or INFO of this connection.",
              arguments: [Argument("subcommand"), Argument("argument", optional: true, multiple: true)]),
        Entry(name: "auth", arity: -2, flags: ["fast", "no-auth", "noscript"], group: "connection",
              summary: "Refused: expirabled has no passwords. Who may connect is the socket's mode; who may clear, the caller's user and group.",
              arguments: [Argument("username", optional: true), Argument("password")]),
        Entry(name: "select", arity: 2, flags: ["fast"], group: "connection",
              summary: "Database 0 is the only one.", arguments: [Argument("index", "integer")]),
        Entry(name: "reset", arity: 1, flags: ["fast", "no-auth"], group: "connection",
              summary: "Back to a new connection's state: RESP2, no name, no subscriptions, no transaction.", arguments: []),
        Entry(name: "quit", arity: -1, flags: ["fast", "no-auth"], group: "connection",
              summary: "Closes the connection.", arguments: []),
        Entry(name: "multi", arity: 1, flags: ["fast"], group: "transactions",
              summary: "Queues the commands that follow until EXEC.", arguments: []),
        Entry(name: "exec", arity: 1, flags: [], group: "transactions",
              summary: "Runs the queued commands and answers them in one array.", arguments: []),
        Entry(name: "discard", arity: 1, flags: ["fast"], group: "transactions",
              summary: "Drops the queued commands.", arguments: []),
        Entry(name: "config", arity: -3, flags: ["admin", "noscript", "loading", "stale"], group: "server",
              summary: "CONFIG GET parameter ...: save and appendonly, answered as a Redis that persists nothing (redis-benchmark asks); no other Redis setting exists.",
              arguments: [Argument("get", "pure-token", token: "GET"), Argument("parameter", multiple: true)]),
        Entry(name: "command", arity: -1, flags: [], group: "server",
              summary: "Describes the commands: COUNT, LIST, INFO [name ...], DOCS [name ...].",
              arguments: [Argument("subcommand", optional: true)]),
    ]

    static func entry(named name: String) -> Entry? {
        let lower = name.lowercased()
        return entries.first { $0.name == lower }
    }

    /// One entry of `COMMAND` / `COMMAND INFO`, the ten fields of Redis 7.
    static func writeInfo(_ entry: Entry, to out: inout ByteBuffer, _ version: RESPVersion) {
        out.writeRESPArrayHeader(10)
        out.writeRESPBulk(entry.name)
        out.writeRESPInteger(Int64(entry.arity))
        out.writeRESPSetHeader(entry.flags.count, version)
        for flag in entry.flags { out.writeRESP(.simpleString(flag)) }
        out.writeRESPInteger(Int64(entry.keys.first))
        out.writeRESPInteger(Int64(entry.keys.last))
        out.writeRESPInteger(Int64(entry.keys.step))
        out.writeRESPSetHeader(0, version)  // ACL categories
        out.writeRESPSetHeader(0, version)  // tips
        out.writeRESPArrayHeader(0)  // key specifications
        out.writeRESPArrayHeader(0)  // subcommands
    }

    /// One entry of `COMMAND DOCS`: a map of summary, since, group and arguments.
    static func writeDocs(_ entry: Entry, to out: inout ByteBuffer, _ version: RESPVersion) {
        out.writeRESPBulk(entry.name)
        out.writeRESPMapHeader(4, version)
        out.writeRESPBulk("summary")
        out.writeRESPBulk(entry.summary)
        out.writeRESPBulk("since")
        out.writeRESPBulk("1.0.0")
        out.writeRESPBulk("group")
        out.writeRESPBulk(entry.group)
        out.writeRESPBulk("arguments")
        out.writeRESPArrayHeader(entry.arguments.count)
        for argument in entry.arguments {
            let flags = (argument.optional ? ["optional"] : []) + (argument.multiple ? ["multiple"] : [])
            // As Redis gives them: a pure token has no display text, only its token.
            let pureToken = argument.type == "pure-token"
            out.writeRESPMapHeader(2 + (pureToken ? 0 : 1) + (argument.token == nil ? 0 : 1) + (flags.isEmpty ? 0 : 1), version)
            out.writeRESPBulk("name")
            out.writeRESPBulk(argument.name)
            out.writeRESPBulk("type")
            out.writeRESPBulk(argument.type)
            if !pureToken {
                out.writeRESPBulk("display_text")
                out.writeRESPBulk(argument.displayText ?? argument.name)
            }
            if let token = argument.token {
                out.writeRESPBulk("token")
                out.writeRESPBulk(token)
            }
            if !flags.isEmpty {
                out.writeRESPBulk("flags")
                out.writeRESPSetHeader(flags.count, version)
                for flag in flags { out.writeRESP(.simpleString(flag)) }
            }
        }
    }
}
