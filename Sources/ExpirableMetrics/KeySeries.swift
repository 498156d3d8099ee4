import ExpirableCore

/// The series of each member of the keyed families (`[metrics] metrics_keys = true`, SPEC §10), written as text
/// after the registry's. A family can hold thousands of members (max_keys), and the registry copies a metric's
/// table of series each time it adds one, so these are rendered straight from the scrape's figures, in O(members).
/// Their metrics are named apart (`expirable_key_…`) from the family's summed series, so a sum over a metric never
/// counts a member twice. Each member's counts are shown as they are: a member made again (after an eviction or
/// key_idle) starts from zero, as a restarted process's counters do.
struct KeySeries {
    /// Each metric's sample lines so far.
    private var lines: [String: [UInt8]] = [:]

    /// Writes the series of `member` of the family `family`.
    mutating func add(_ member: MemberFigures, of family: String) {
        let f = member.figures
        let labels = [("expirable", family), ("key", member.key)]
        for state in [ExpirableStatus.State.empty, .valid, .expired, .stale] {
            write("expirable_key_state", labels + [("state", state.rawValue)], "\(f.states[state] ?? 0)")
        }
        if let seconds = f.expiresInSeconds {
            write("expirable_key_expires_in_seconds", labels, "\(seconds)")
        } else if (f.states[.valid] ?? 0) == 0 {
            write("expirable_key_expires_in_seconds", labels, "0")
        }
        let c = f.counters
        write("expirable_key_hits_total", labels, "\(c.hits)")
        write("expirable_key_misses_total", labels, "\(c.misses)")
        write("expirable_key_plugin_calls_total", labels, "\(c.pluginCalls)")
        write("expirable_key_plugin_failures_total", labels + [("class", "temporary")], "\(c.failures &- c.permanentFailures)")
        write("expirable_key_plugin_failures_total", labels + [("class", "permanent")], "\(c.permanentFailures)")
        write("expirable_key_consecutive_failures", labels, "\(f.consecutiveFailures)")
    }

    private mutating func write(_ name: String, _ labels: [(String, String)], _ value: String) {
        var line = Array(name.utf8)
        line.append(UInt8(ascii: "{"))
        for (index, (label, text)) in labels.enumerated() {
            if index > 0 { line.append(UInt8(ascii: ",")) }
            line += label.utf8
            line += "=\"".utf8
            // The text format's escapes in a label value; a key is printable ASCII, so no line feed arrives.
            for byte in text.utf8 {
                switch byte {
                case UInt8(ascii: "\\"): line += "\\\\".utf8
                case UInt8(ascii: "\""): line += "\\\"".utf8
                case UInt8(ascii: "\n"): line += "\\n".utf8
                default: line.append(byte)
                }
            }
            line.append(UInt8(ascii: "\""))
        }
        line += "} ".utf8
        line += value.utf8
        line.append(UInt8(ascii: "\n"))
        lines[name, default: []] += line
    }

    /// Appends every metric written, each with its HELP and TYPE lines, in `MetricNames` order.
    func emit(into buffer: inout [UInt8]) {
        for metric in MetricNames.all {
            guard let body = lines[metric.name] else { continue }
            buffer += "# HELP \(metric.name) \(metric.help)\n# TYPE \(metric.name) \(metric.kind.rawValue)\n".utf8
            buffer += body
        }
    }
}
