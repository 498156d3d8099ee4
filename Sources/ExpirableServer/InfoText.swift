import ExpirableCore

/// The text of INFO replies in Redis's form: a `# Section` line, then `key:value` lines, one fact each, never a
/// value. Clients such as coredis read only the fields that follow a section line.
enum InfoText {
    static func expirable(_ name: String, state: ServerState) -> String? {
        if let family = state.engine.familyInfo(name) {
            // A keyed family: its settings, counts and plugin; each member answers INFO NAME:KEY.
            return ([
                "# Expirable", "name:\(name)", "keyed:yes", "scope:\(state.engine.scope(of: name)?.rawValue ?? "")", "refresh:\(family.refresh)",
                "keys:\(family.keys)", "max_keys:\(family.maxKeys)", "key_idle_ms:\(family.keyIdle.milliseconds)",
                "evictions:\(family.evictions)",
            ] + (state.options.pluginInfo?(name) ?? []).map { "\($0.0):\($0.1)" }).joined(separator: "\r\n") + "\r\n"
        }
        guard let status = state.engine.reportedStatus(name) else { return nil }
        var lines = [
            "# Expirable",
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
        lines.append("next_refresh_in_ms:\(status.nextRefreshInMillis.map(String.init) ?? "none")")
        let freshness = status.freshness
        lines.append("expiry_margin_ms:\(freshness.expiryMargin.milliseconds)")
        lines.append("jitter:\(freshness.jitter)")
        lines.append("prefetch:\(freshness.prefetch ? "yes" : "no")")
        lines.append("stale_if_error_ms:\(freshness.staleIfError.milliseconds)")
        lines.append("retry_interval_ms:\(freshness.retryInterval.milliseconds)")
        lines.append("retry_backoff_ms:\(freshness.retryBackoff.map { String($0.milliseconds) } ?? "off")")
        lines.append("consecutive_failures:\(status.consecutiveFailures)")
        lines.append("next_attempt_in_ms:\(status.nextAttemptInMillis.map(String.init) ?? "none")")
        lines.append("last_error:\(status.lastError ?? "")")
        lines.append("last_error_class:\(status.lastErrorClass?.rawValue ?? "")")
        lines.append("hits:\(status.counters.hits)")
        lines.append("misses:\(status.counters.misses)")
        lines.append("plugin_calls:\(status.counters.pluginCalls)")
        lines.append("failures:\(status.counters.failures)")
        lines.append("refreshes:\(status.counters.refreshes)")
        lines.append("stale_answers:\(status.counters.staleAnswers)")
        lines.append("plugin_state:\(state.engine.hasPluginState(name) ? "yes" : "no")")
        lines += (state.options.stateInfo?(name) ?? []).map { "\($0.0):\($0.1)" }
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

    /// The server's INFO for a caller who sees `names` (SPEC §9: counts of what it may read only).
    static func server(state: ServerState, names: [String]) -> String {
        let uptime = (SystemClock().monotonicNanos - state.startedAt) / 1_000_000_000
        return ([
            "# Server",
            "daemon:expirabled",
            "version:\(ExpirableServer.version)",
            "uptime_s:\(uptime)",
            "socket:\(state.options.socketPath)",
            "node:\(state.options.nodeName)",
            "expirables:\(names.count)",
            "stale_answers:\(names.reduce(UInt64(0)) { $0 &+ (state.engine.status($1)?.counters.staleAnswers ?? 0) })",
            "connections:\(state.connections.load(ordering: .relaxed))",
            "connections_accepted:\(state.connectionsAccepted.load(ordering: .relaxed))",
            "connections_refused:\(state.connectionsRefused.load(ordering: .relaxed))",
            "max_connections:\(state.options.maxConnections)",
        ] + (state.options.serverInfo?() ?? []).map { "\($0.0):\($0.1)" }).joined(separator: "\r\n") + "\r\n"
    }
}
