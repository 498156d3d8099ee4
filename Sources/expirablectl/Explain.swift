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
            (whose explain shows its call), answered by a peer's value while joining, or not called (no quorum). \
            With --json prints one object: the daemon's fields, numbers as numbers, "calls" (this node's plugin \
            calls) and "flights" (the fetches answered without one) as arrays.
            """
    )

    @Argument(help: "The expirable's name (a keyed family's member as NAME:KEY).") var name: String
    @Flag(help: "Print the explanation as JSON.") var json = false
    @OptionGroup var connection: Connection

    func run() async throws {
        try await reporting {
            let lines = try await connection.client.explain(name)
            if json {
                try JSONOutput.print(Explain.object(lines))
            } else {
                printOut(Explain.words(lines))
            }
        }
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
            case "joined": ", answered by a peer's value while joining (no call)"
            case "not_called": ", not called here (quorum single flight)"
            default: ", \(route)"
            }
        }
    }

    /// The fields as JSON: integers where the daemon sent digits, null for "none", calls as objects.
    static func object(_ lines: [(key: String, value: String)]) -> [String: Any] {
        var object: [String: Any] = [:]
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
            } else if value == "none" {
                object[key] = NSNull()
            } else if key.hasSuffix("_ms") || key == "consecutive_failures", let number = Int64(value) {
                object[key] = number
            } else {
                object[key] = value
            }
        }
        object["calls"] = calls
        object["flights"] = flights
        return object
    }

    /// The explanation as a person reads it.
    static func words(_ lines: [(key: String, value: String)]) -> String {
        let fields = Dictionary(lines.filter { $0.key != "call" && $0.key != "flight" }, uniquingKeysWith: { first, _ in first })
        func field(_ key: String) -> String? { fields[key].flatMap { $0.isEmpty || $0 == "none" ? nil : $0 } }
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
        if fields["isolation"] == "process" {
            let pid = field("helper_pid").map { "pid \($0)" } ?? "down"
            var plugin = "Plugin: in a helper process (\(pid), \(fields["helper_restarts"] ?? "0") restarts)"
            if let death = field("helper_last_death") { plugin += "; last death: \(death)" }
            out.append(plugin + ".")
        } else if let isolation = field("isolation") {
            out.append("Plugin: \(isolation), in the daemon's process.")
        }
        if let readers = field("readers") { out.append("Who may read it: \(readers).") }
        if let admins = field("admins") { out.append("Who may clear it: \(admins).") }
        return out.joined(separator: "\n")
    }
}
