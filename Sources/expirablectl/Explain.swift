import ArgumentParser
import ExpirableClient
import Foundation

struct Explain: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Explain in words why a value is in its state and what happens next. Never prints the value.",
        discussion: """
            Shows the last plugin calls (start, duration, outcome, what started them), the next refresh and the rule \
            that set it (before_expiry, jitter, expiry_margin), pacing after failures (the next attempt and why), the \
            stale window, the owner and lease in a cluster, where the plugin runs, and who may read the value. In a \
            cluster, fetches this node's plugin did not make are listed among them, marked: forwarded to the owner \
            (whose explain shows its call), answered by a peer's value while joining or after a pause, or not called (no quorum). \
            With --json prints one object: the daemon's fields, numbers as numbers, "calls" (this node's plugin \
            calls) and "flights" (the fetches answered without one) as arrays.

            A keyed family (listed as NAME:*) is explained as a whole by `explain NAME` or `explain NAME:*`: its \
            settings, the keys it holds and its plugin (with --json: "keyed": true, "keys", "max_keys", \
            "key_idle_ms", "evictions"); each member by `explain NAME:KEY`.
            """
    )

    @Argument(help: "The expirable's name (a keyed family as NAME or NAME:*, one of its members as NAME:KEY).") var name: String
    @Flag(help: "Print the explanation as JSON.") var json = false
    @OptionGroup var connection: Connection

    func run() async throws {
        try await reporting {
            let lines = try await Explain.lines(name, connection.client)
            if json {
                try JSONOutput.print(Explain.object(lines))
            } else {
                printOut(Explain.words(lines))
            }
        }
    }

    /// EXPLAIN for `name`; `NAME:*`, as LIST shows a keyed family, explains the family.
    static func lines(_ name: String, _ client: ExpirableClient) async throws(ExpirableClientError) -> [(key: String, value: String)] {
        if let family = Status.family(name), let lines = try? await client.explain(family), lines.contains(where: { $0.key == "keyed" && $0.value == "yes" }) {
            return lines
        }
        return try await client.explain(name)
    }

    /// A `call` line (this node's plugin) or a `flight` line (a fetch answered without it: `route` and, for
    /// one forwarded, `node`).
    struct Call {
        let startedAtMillis: Int64
        let durationMillis: Double
        let outcome: String
        let trigger: String
        let error: String?
        let route: String
        let node: String?

        init?(_ key: String, _ line: String) {
            guard key == "call" || key == "flight" else { return nil }
            let fields = line.split(separator: " ")
            guard fields.count == (key == "call" ? 5 : 6), let start = Int64(fields[0]), let duration = Double(fields[1]) else { return nil }
            startedAtMillis = start
            durationMillis = duration
            outcome = String(fields[2])
            trigger = String(fields[3])
            error = fields[4] == "-" ? nil : String(fields[4])
            if key == "call" {
                (route, node) = ("plugin", nil)
            } else if fields[5].hasPrefix("forwarded:") {
                (route, node) = ("forwarded", String(fields[5].dropFirst("forwarded:".count)))
            } else {
                (route, node) = (String(fields[5]), nil)
            }
        }

        /// How the fetch was answered, after "started by …", for one this node's plugin did not make.
        var how: String {
            switch route {
            case "plugin": ""
            case "forwarded": ", forwarded to \(node ?? "the owner")"
            case "joined": ", answered by a peer's value while joining or after a pause (no call)"
            case "not_called": ", not called here (quorum single flight)"
            default: ", \(route)"
            }
        }
    }

    /// The fields as JSON: integers where the daemon sent digits, null for "none", calls as objects.
    static func object(_ lines: [(key: String, value: String)]) -> [String: Any] {
        var object: [String: Any] = [:]
        var fields: [String: String] = [:]
        var calls: [[String: Any]] = []
        var flights: [[String: Any]] = []
        for (key, value) in lines {
            if let call = Call(key, value) {
                var fields: [String: Any] = [
                    "started_at_ms": call.startedAtMillis, "duration_ms": call.durationMillis, "outcome": call.outcome,
                    "trigger": call.trigger, "error": call.error.map { $0 as Any } ?? NSNull(),
                ]
                if key == "call" {
                    calls.append(fields)
                } else {
                    fields["route"] = call.route
                    fields["node"] = call.node.map { $0 as Any } ?? NSNull()
                    flights.append(fields)
                }
            } else if key == "call" || key == "flight" {
                continue
            } else if object[key] == nil {
                fields[key] = value
            }
        }
        // Each key of one type, as in status --json: numbers as numbers, yes/no as booleans, none as null; a
        // `_ms` field a number or null ("never", "none"); jitter as jitter_ms or jitter_percent; sentences and
        // names as the strings they are.
        var typed = JSONOutput.typed(fields.filter { !Explain.textKeys.contains($0.key) })
        for key in Explain.textKeys { if let value = fields[key] { typed[key] = value } }
        for (key, value) in typed where key.hasSuffix("_ms") && !(value is Int64 || value is Double) { typed[key] = NSNull() }
        if let jitter = fields["jitter"] {
            typed["jitter"] = nil
            if jitter.hasSuffix("%") { typed["jitter_percent"] = Double(jitter.dropLast()) ?? NSNull() } else { typed["jitter_ms"] = Int64(jitter) ?? NSNull() }
        }
        for (key, value) in typed { object[key] = value }
        // A family is named as list and status --json name it, whether asked as NAME or NAME:*.
        if fields["keyed"] == "yes", let name = fields["name"] { object["name"] = name + ":*" }
        object["calls"] = calls
        object["flights"] = flights
        return object
    }

    /// EXPLAIN fields that are sentences or names, kept as strings whatever they look like.
    static let textKeys: Set<String> = JSONOutput.textKeys.union(["why", "next", "refresh_rule", "pacing", "readers", "admins", "lease", "helper_last_death", "state_error", "call_stuck", "helper_down"])

    /// The explanation as a person reads it.
    static func words(_ lines: [(key: String, value: String)]) -> String {
        let fields = Dictionary(lines.filter { $0.key != "call" && $0.key != "flight" }, uniquingKeysWith: { first, _ in first })
        func field(_ key: String) -> String? { fields[key].flatMap { $0.isEmpty || $0 == "none" ? nil : $0 } }
        if fields["keyed"] == "yes" { return family(fields, field) }
        var out = ["\(fields["name"] ?? "?") is \(fields["state"] ?? "?"): \(fields["why"] ?? "")."]
        if let next = field("next") { out.append("Next: \(next).") }
        out.append("")
        let calls = lines.compactMap { Call($0.key, $0.value) }
        if calls.isEmpty {
            out.append("Last calls: none yet.")
        } else {
            out.append("Last calls, newest first:")
            for call in calls {
                let start = Date(timeIntervalSince1970: Double(call.startedAtMillis) / 1000).ISO8601Format(Date.ISO8601FormatStyle(includingFractionalSeconds: true))
                out.append("  \(start)  \(String(format: "%.1f", call.durationMillis)) ms  \(call.outcome)\(call.error.map { " (\($0))" } ?? "")  started by \(call.trigger.replacingOccurrences(of: "_", with: " "))\(call.how)")
            }
        }
        if let error = field("last_error") { out.append("Last error (\(fields["last_error_class"] ?? "temporary")): \(error)") }
        if let error = field("state_error") { out.append("Plugin state not persisted: \(error).") }
        out.append("")
        var refresh = "Refresh: \(fields["refresh"] ?? "?")"
        if let due = field("next_refresh_in_ms") { refresh += ", next in \(due) ms: \(fields["refresh_rule"] ?? "")" }
        out.append(refresh + ".")
        if let failures = field("consecutive_failures"), failures != "0" {
            out.append("Pacing: \(failures) consecutive failure\(failures == "1" ? "" : "s"); next attempt in \(fields["next_attempt_in_ms"] ?? "?") ms: \(fields["pacing"] ?? "").")
        } else {
            out.append("Pacing: none (the last call did not fail).")
        }
        let staleIfError = fields["stale_if_error_ms"] ?? "0"
        if staleIfError == "0" {
            out.append("Stale window: none (stale_if_error is off): an expired value is never answered.")
        } else if let left = field("stale_until_in_ms") {
            out.append("Stale window: stale_if_error \(staleIfError) ms past expiry; \(left) ms of it left.")
        } else {
            out.append("Stale window: stale_if_error \(staleIfError) ms past expiry, if a refetch fails.")
        }
        var owner = "Owner: \(fields["owner"] ?? "this node")"
        if let replica = field("replica") { owner += " (replica: \(replica))" }
        out.append(owner + ".")
        if let lease = field("lease") { out.append("Lease: \(lease).") }
        out += plugin(fields, field) + access(field)
        return out.joined(separator: "\n")
    }

    /// A keyed family as a person reads it: what it is, what it holds, how to explain a member.
    private static func family(_ fields: [String: String], _ field: (String) -> String?) -> String {
        var out = ["\(fields["name"] ?? "?") is \(fields["why"] ?? "a keyed family")."]
        if let next = field("next") { out.append("Next: \(next).") }
        out.append("")
        out.append("Scope: \(fields["scope"] ?? "?"); refresh: \(fields["refresh"] ?? "?"), for each member on its own.")
        return (out + plugin(fields, field) + access(field)).joined(separator: "\n")
    }

    private static func plugin(_ fields: [String: String], _ field: (String) -> String?) -> [String] {
        if fields["isolation"] == "process" {
            let pid = field("helper_pid").map { "pid \($0)" } ?? "down"
            let restart = field("helper_restart_in_ms").map { "; the next starts in \($0) ms at the earliest" } ?? ""
            var plugin = "Plugin: in a helper process (\(pid), \(fields["helper_restarts"] ?? "0") restarts\(restart))"
            if let death = field("helper_last_death") { plugin += "; last death: \(death)" }
            return [plugin + "."]
        } else if let isolation = field("isolation") {
            let running = field("call_running_ms").map { "; a call has been running for \($0) ms" } ?? ""
            return ["Plugin: \(isolation), in the daemon's process\(running)."]
        }
        return []
    }

    private static func access(_ field: (String) -> String?) -> [String] {
        var out: [String] = []
        if let readers = field("readers") { out.append("Who may read it: \(readers).") }
        if let admins = field("admins") { out.append("Who may clear it: \(admins).") }
        return out
    }
}
