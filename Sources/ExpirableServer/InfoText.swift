import ExpirableCore

/// The text of INFO replies: `key:value` lines, one fact each, never a value.
enum InfoText {
    static func expirable(_ name: String, state: ServerState) -> String? {
        guard let status = state.engine.status(name) else { return nil }
        var lines = [
            "name:\(status.name)",
            "state:\(status.state.rawValue)",
            "scope:\(status.scope.rawValue)",
            "refresh:\(status.refresh)",
        ]
        if case .eager(let before) = status.refresh {
            switch before {
            case .duration(let duration): lines.append("before_expiry_ms:\(duration.milliseconds)")
            case .share: lines.append("before_expiry:\(before)")
            }
        }
        switch status.expiry {
        case nil: lines.append("expires_at_ms:none")
        case .never?: lines.append("expires_at_ms:never")
        case .at(let ms)?: lines.append("expires_at_ms:\(ms)")
        }
        lines.append("expires_in_ms:\(status.expiresInMillis.map(String.init) ?? (status.expiry == .never ? "never" : "none"))")
        lines.append("fetching:\(status.fetching ? "yes" : "no")")
        lines.append("last_error:\(status.lastError ?? "")")
        lines.append("hits:\(status.counters.hits)")
        lines.append("misses:\(status.counters.misses)")
        lines.append("plugin_calls:\(status.counters.pluginCalls)")
        lines.append("failures:\(status.counters.failures)")
        lines.append("refreshes:\(status.counters.refreshes)")
        if let plugin = state.options.pluginInfo?(name) {
            lines += plugin.map { "\($0.0):\($0.1)" }
        }
        if let extra = state.options.expirableInfo?(name) {
            lines += extra.map { "\($0.0):\($0.1)" }
        } else {
            lines.append("owner:\(state.options.nodeName)")
        }
        return lines.joined(separator: "\r\n") + "\r\n"
    }

    static func server(state: ServerState) -> String {
        let uptime = (SystemClock().monotonicNanos - state.startedAt) / 1_000_000_000
        return [
            "daemon:expirabled",
            "version:\(ExpirableServer.version)",
            "uptime_s:\(uptime)",
            "socket:\(state.options.socketPath)",
            "node:\(state.options.nodeName)",
            "expirables:\(state.engine.names.count)",
            "connections:\(state.connections.load(ordering: .relaxed))",
            "connections_accepted:\(state.connectionsAccepted.load(ordering: .relaxed))",
            "connections_refused:\(state.connectionsRefused.load(ordering: .relaxed))",
            "max_connections:\(state.options.maxConnections)",
        ].joined(separator: "\r\n") + "\r\n"
    }
}
