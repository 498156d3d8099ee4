import ExpirableCore

extension Cluster {
    /// INFO lines for `name`: its owner among the live nodes, and for cluster-scoped values the version held
    /// and which node made it (`replica:origin` when this node fetched or cleared it, `replica:copy` otherwise).
    public func info(_ name: String) -> [(String, String)] {
        guard let engine, engine.scope(of: name) == .cluster else { return [("owner", options.node), ("replica", "local scope")] }
        var lines = [("owner", owner(of: name))]
        if let version = engine.version(of: name) {
            lines.append(("version", "\(version)"))
            lines.append(("replica", version.node == options.node ? "origin" : "copy from \(version.node)"))
        } else {
            lines.append(("replica", "none"))
        }
        lines.append(leaseInfo(name))
        return lines
    }

    /// One line per member for the CLUSTER command, tab-separated `key:value` fields: node, state, address,
    /// certificate, last heard, TLS version, clock offset (for this node, its correction to cluster time) and the
    /// round trip that measured it, a clock beyond `max_clock_offset`, messages queued on the link to it (SPEC
    /// §4.16), configuration differences and the last
    /// link error. Differences name expirables, so only those `visible` lets the caller learn of are shown
    /// (SPEC §9: who cannot read a value cannot learn that it exists).
    public func describe(visible: (String) -> Bool = { _ in true }) -> String {
        members().map { member in
            var fields = [
                "node:\(member.node)",
                "state:\(member.state.rawValue)",
                "address:\(member.address)",
                "certificate:\(member.certificate ?? "-")",
                "last_heard_ms:\(member.lastHeardMillis.map(String.init) ?? "-")",
                "tls:\(member.tls ?? "-")",
                "clock_offset_ms:\(member.clockOffsetMillis.map(String.init) ?? "-")",
                "rtt_ms:\(member.roundTripMillis.map(String.init) ?? "-")",
            ]
            if let problem = member.clockError { fields.append("clock_error:\(problem)") }
            if let queued = member.queued { fields.append("queue:\(queued)") }
            let disagreements = member.disagreements.filter { visible($0.name) }
            if !disagreements.isEmpty { fields.append("config:\(disagreements.map(\.text).joined(separator: "; "))") }
            if let error = member.lastError, member.state != .alive { fields.append("error:\(error)") }
            return fields.map { String($0.map { $0 == "\t" || $0 == "\r" || $0 == "\n" ? " " : $0 }) }.joined(separator: "\t")
        }.joined(separator: "\r\n") + "\r\n"
    }
}
