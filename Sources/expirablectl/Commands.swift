import ArgumentParser
import ExpirableClient
import ExpirableConfig
import ExpirableCore
import Foundation

struct Fetch: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print a value (fetching it through its plugin if it is not valid in memory).",
        discussion: """
            Prints the value and a newline. With --json prints {"name", "value", "expires_at_ms", "expires_in_ms", "stale"}, \
            expires_at_ms the value's own expiry, expires_in_ms the time until it stops being handed out (its expiry less \
            expiry_margin, as PTTL), the expiry fields null for a value that never expires; a value that is not UTF-8 text, which JSON cannot \
            carry, is refused with status 65 (without --json its bytes are printed as they are). A stale value (answered past its expiry because its \
            refetch failed, with stale_if_error) is printed with a warning on stderr.
            """
    )

    @Argument(help: "The expirable's name.") var name: String
    @Flag(help: "Print the value with its expiry as JSON.") var json = false
    @Option(name: .customLong("min-ttl"), parsing: .unconditional, help: ArgumentHelp("Refetch the value if less than this is left (\"30s\", \"5m\", or milliseconds).", valueName: "duration"))
    var minTTL: String?
    @OptionGroup var connection: Connection

    func validate() throws {
        if let minTTL, DurationParser.duration(minTTL) == nil {
            throw ValidationError("--min-ttl expects \(DurationParser.expected), got \"\(minTTL)\"")
        }
    }

    func run() async throws {
        try await reporting {
            let client = connection.client
            let fetched = try await client.fetch(name, minimumValidity: minTTL.flatMap { DurationParser.duration($0) })
            if fetched.isStale { printError("expirablectl: warning: \(name) is stale: its refetch failed and it is past its expiry (stale_if_error)") }
            guard json else {
                printOut(fetched.bytes + [UInt8(ascii: "\n")])
                return
            }
            let value = try ValueText.of(fetched.bytes, name: name, carrier: "JSON")
            var object: [String: Any] = ["name": name, "value": value, "expires_at_ms": NSNull(), "expires_in_ms": NSNull(), "stale": fetched.isStale]
            if case .at(let ms) = fetched.expiry {
                object["expires_at_ms"] = ms
                // Counted down to expires_at less the expirable's expiry_margin, as PTTL and INFO's expires_in_ms:
                // the value counts as expired then for every purpose (SPEC §3.13). FETCH gives the raw expiry, INFO
                // the margin (none from a daemon that has no margins).
                let margin = try await client.info(name)["expiry_margin_ms"].flatMap { Int64($0) } ?? 0
                object["expires_in_ms"] = max(0, ms - margin - Int64(Date().timeIntervalSince1970 * 1000))
            }
            try JSONOutput.print(object)
        }
    }
}

struct Reload: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make the daemon read its configuration file again (as SIGHUP does).",
        discussion: "All or nothing: an expirable whose definition did not change keeps its value, refresh, plugin state and helper; a changed one whose plugin and params are the same keeps its value and plugin state (a new helper if its timeout, isolation or limits changed); one with another plugin or other params starts empty with a new plugin instance, keeping its plugin state; added ones start empty; removed ones stop. Changes that need a restart (the socket, admins, state_dir, the cluster) refuse the reload, naming them. Prints what was applied and, for each changed name, what became of its value. Allowed to root and [server] admins (by default the daemon's user and its group)."
    )

    @OptionGroup var connection: Connection

    func run() async throws {
        try await reporting {
            printOut(try await connection.client.reload())
        }
    }
}

struct Clear: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Drop a stored value (or all of them); the next fetch calls the plugin.",
        discussion: "A keyed family is cleared whole as NAME or as NAME:*, as list shows it; one member as NAME:KEY. Allowed to root, the daemon's user and its group; the daemon logs who cleared what."
    )

    @Argument(help: "The expirable's name (a keyed family as NAME or NAME:*, one member as NAME:KEY).") var name: String?
    @Flag(help: "Clear every expirable.") var all = false
    @OptionGroup var connection: Connection

    func validate() throws {
        if all == (name != nil) { throw ValidationError("give either a NAME or --all") }
    }

    func run() async throws {
        try await reporting {
            if let name {
                let client = connection.client
                try await client.clear(await Status.addressed(name, client))
                printOut("cleared \(name)")
            } else {
                try await connection.client.clearAll()
                printOut("cleared all")
            }
        }
    }
}

struct List: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the configured names, one per line (--json: an array of them).")
    @Flag(help: "Print the names as a JSON array.") var json = false
    @OptionGroup var connection: Connection

    func run() async throws {
        try await reporting {
            let names = try await connection.client.list()
            if json {
                try JSONOutput.print(names)
            } else {
                for name in names { printOut(name) }
            }
        }
    }
}

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print a table of every expirable: scope, refresh, state, time to expiry, owner, replica state, last error. Never values.",
        discussion: """
            STATE is empty, valid, expired or stale (past its expiry, answered because its refetch failed: \
            stale_if_error), with +fetching while a plugin call runs. OWNER is the node that fetches the value (this \
            node without a cluster). REPLICA says where the value held here came from: origin (this node fetched or \
            cleared it), copy from NODE, none, or local scope.

            A keyed family is one row, named NAME:* as list shows it, with its scope, refresh, the keys it holds \
            (STATE) and its plugin; `explain NAME:KEY` or `expirablectl fetch NAME:KEY` reach a member.

            With --json prints an array with one object per expirable: every field of the daemon's INFO NAME \
            (name, state, scope, refresh, expires_in_ms, fetching, owner, last_error, hits, ...), numbers as \
            numbers, yes/no as booleans, none as null, each key of one type: a field in milliseconds (KEY_ms) is a \
            number or null (nothing stored, never expires, none), before_expiry and jitter are \
            before_expiry_ms or before_expiry_percent and jitter_ms or jitter_percent, and retry_backoff_ms is \
            absent when retry_backoff is off. A keyed family's object has name NAME:*, "keyed": true, scope, \
            refresh, "keys" (held), "max_keys", "key_idle_ms", "evictions" and its plugin's fields.
            """
    )
    @Flag(help: "Print every expirable's fields as a JSON array.") var json = false
    @OptionGroup var connection: Connection

    func run() async throws {
        try await reporting {
            let client = connection.client
            if json {
                var expirables: [[String: Any]] = []
                for name in try await client.list() {
                    var object = JSONOutput.status(try await Status.info(name, client))
                    object["name"] = name
                    expirables.append(object)
                }
                try JSONOutput.print(expirables)
                return
            }
            var rows = [["NAME", "SCOPE", "REFRESH", "STATE", "EXPIRES IN", "OWNER", "REPLICA", "PLUGIN", "LAST ERROR"]]
            for name in try await client.list() {
                let info = try await Status.info(name, client)
                if info["keyed"] == "yes" {
                    // Owner and expiry are each member's own.
                    let keys = Int(info["keys"] ?? "") ?? 0
                    rows.append([
                        name, info["scope"] ?? "?", info["refresh"] ?? "?", "keyed, \(keys) key\(keys == 1 ? "" : "s")",
                        "-", "-", "-", Status.plugin(info), "",
                    ])
                    continue
                }
                rows.append([
                    name, info["scope"] ?? "?", info["refresh"] ?? "?",
                    (info["state"] ?? "?") + (info["fetching"] == "yes" ? "+fetching" : ""),
                    Status.expiresIn(info["expires_in_ms"]), info["owner"] ?? "?", info["replica"] ?? "-", Status.plugin(info),
                    info["last_error"] ?? "",
                ])
            }
            printTable(rows)
        }
    }

    /// The family's name in `listed` when it is a keyed family as LIST shows it, `NAME:*`.
    static func family(_ listed: String) -> String? {
        listed.hasSuffix(":*") && listed.count > 2 ? String(listed.dropLast(2)) : nil
    }

    /// The name the daemon knows `listed` by: NAME for a keyed family given as NAME:*, as LIST shows it (no
    /// expirable's own name holds ':' or '*'); otherwise `listed` itself.
    static func addressed(_ listed: String, _ client: ExpirableClient) async -> String {
        if let family = family(listed), let info = try? await client.info(family), info["keyed"] == "yes" { return family }
        return listed
    }

    /// INFO for a name as LIST gives it: a keyed family, listed as NAME:*, answers INFO NAME.
    static func info(_ listed: String, _ client: ExpirableClient) async throws(ExpirableClientError) -> [String: String] {
        if let family = family(listed), let info = try? await client.info(family), info["keyed"] == "yes" {
            return info
        }
        return try await client.info(listed)
    }

    /// Where the plugin runs: `inline`, or its helper's pid (`down` between a death and the restart) and restarts.
    static func plugin(_ info: [String: String]) -> String {
        guard info["isolation"] == "process" else { return info["isolation"] ?? "-" }
        let pid = info["helper_pid"].flatMap { $0 == "none" ? nil : "pid \($0)" } ?? "down"
        let restarts = Int(info["helper_restarts"] ?? "") ?? 0
        return restarts == 0 ? pid : "\(pid), \(restarts) restart\(restarts == 1 ? "" : "s")"
    }

    static func expiresIn(_ field: String?) -> String {
        guard let field, let ms = Int64(field) else { return field == "never" ? "never" : "-" }
        if ms < 1000 { return "\(ms)ms" }
        let seconds = ms / 1000
        if seconds < 120 { return "\(seconds)s" }
        if seconds < 7200 { return "\(seconds / 60)m\(seconds % 60)s" }
        return "\(seconds / 3600)h\(seconds % 3600 / 60)m"
    }
}

struct Ping: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check that the daemon answers; prints PONG and the round trip.",
        discussion: "With --json prints {\"pong\": true, \"round_trip_ms\": 0.123}, the round trip in milliseconds to the microsecond."
    )
    @Flag(help: "Print the answer and the round trip as JSON.") var json = false
    @OptionGroup var connection: Connection

    func run() async throws {
        try await reporting {
            let client = connection.client
            let start = ContinuousClock.now
            try await client.ping()
            let elapsed = ContinuousClock.now - start
            if json {
                try JSONOutput.print(["pong": true, "round_trip_ms": (elapsed / .microseconds(1)).rounded() / 1000])
                return
            }
            printOut("PONG \(elapsed.formatted(.units(allowed: [.milliseconds, .microseconds], width: .narrow)))")
        }
    }
}
