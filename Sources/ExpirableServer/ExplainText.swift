import ExpirableCore

/// The text of EXPLAIN replies: `key:value` lines, facts and the sentences that tie them together, never a value.
/// Each `call` line is one past call of this node's plugin: `STARTED_AT_MS DURATION_MS OUTCOME TRIGGER ERROR_WORD`.
/// Each `flight` line is a fetch answered without one, in a cluster: the same fields, then how it was answered,
/// `forwarded:NODE` (the owner was asked), `joined` (by the value a peer sent during the join) or `not_called`
/// (quorum single flight did not allow a call). Both kinds in one list, newest first. A keyed family's reply says
/// `keyed:yes` and gives its settings and counts instead: its members explain themselves as NAME:KEY.
enum ExplainText {
    static func expirable(_ name: String, state: ServerState) -> String? {
        if let family = state.engine.familyInfo(name) { return keyedFamily(name, family, state: state) }
        guard let explanation = state.engine.explanation(name) else { return nil }
        let status = explanation.status
        let plugin = state.options.pluginInfo?(name) ?? []
        // An inline call stuck past its timeout, or a helper down after a death, decides what happens next,
        // whatever the engine would do.
        let stuck = plugin.first { $0.0 == "call_stuck" || $0.0 == "helper_down" }?.1
        var lines: [(String, String)] = [
            ("name", status.name),
            ("state", status.state.rawValue),
            ("why", explanation.why),
            ("next", stuck ?? explanation.next),
            ("scope", status.scope.rawValue),
            ("refresh", "\(status.refresh)"),
            ("fetching", status.fetching ? "yes" : "no"),
            ("expires_in_ms", status.expiresInMillis.map(String.init) ?? (status.expiry == .never ? "never" : "none")),
            ("lifetime_ms", explanation.lifetimeMillis.map(String.init) ?? "none"),
            ("next_refresh_in_ms", explanation.refresh.map { String($0.inMillis) } ?? "none"),
            ("refresh_rule", explanation.refresh?.rule ?? "none"),
            ("expiry_margin_ms", String(status.freshness.expiryMargin.milliseconds)),
            ("jitter", "\(status.freshness.jitter)"),
            ("consecutive_failures", String(status.consecutiveFailures)),
            ("next_attempt_in_ms", explanation.pacing.map { String($0.nextAttemptInMillis) } ?? "none"),
            ("pacing", explanation.pacing?.reason ?? "none"),
            ("stale_if_error_ms", String(status.freshness.staleIfError.milliseconds)),
            ("stale_until_in_ms", explanation.staleUntilInMillis.map(String.init) ?? "none"),
            ("last_error", status.lastError ?? ""),
            ("last_error_class", status.lastErrorClass?.rawValue ?? ""),
        ]
        for call in explanation.calls {
            let duration = Double(call.durationNanos / 1_000) / 1000
            let fields = "\(call.startedAtMillis) \(duration) \(call.outcome.rawValue) \(call.trigger.rawValue) \(call.errorCode?.rawValue ?? "-")"
            switch call.route {
            case .plugin: lines.append(("call", fields))
            case .forwarded(let owner): lines.append(("flight", fields + " forwarded:\(owner)"))
            case .joined: lines.append(("flight", fields + " joined"))
            case .notCalled: lines.append(("flight", fields + " not_called"))
            }
        }
        lines += plugin
        lines += state.options.stateInfo?(name) ?? []
        lines += state.options.expirableInfo?(name) ?? [("owner", state.options.nodeName)]
        return text(lines + access(name, state: state))
    }

    /// A keyed family has no value, calls or refresh of its own: each member has them, and explains them as
    /// NAME:KEY. What the family has is its settings, the members it holds and its plugin.
    private static func keyedFamily(_ name: String, _ family: (keys: Int, maxKeys: Int, keyIdle: Duration, evictions: UInt64, refresh: RefreshPolicy),
                                    state: ServerState) -> String {
        let held = "\(family.keys) key\(family.keys == 1 ? "" : "s") held (max_keys \(family.maxKeys)), \(family.evictions) evicted"
        let lines: [(String, String)] = [
            ("name", name),
            ("keyed", "yes"),
            ("why", "a keyed family: one value per key, addressed as \(name):KEY, each fetched, kept and refreshed on its own; \(held); the least recently read goes first beyond max_keys, and a key unread for \(family.keyIdle.milliseconds) ms (key_idle) is dropped"),
            ("next", "`expirablectl explain \(name):KEY` (EXPLAIN \(name):KEY) explains one member: its last calls, refresh and pacing"),
            ("scope", state.engine.scope(of: name)?.rawValue ?? ""),
            ("refresh", "\(family.refresh)"),
            ("keys", String(family.keys)),
            ("max_keys", String(family.maxKeys)),
            ("key_idle_ms", String(family.keyIdle.milliseconds)),
            ("evictions", String(family.evictions)),
        ]
        return text(lines + (state.options.pluginInfo?(name) ?? []) + access(name, state: state))
    }

    /// Who may read `name` and who may clear it.
    private static func access(_ name: String, state: ServerState) -> [(String, String)] {
        var lines: [(String, String)] = []
        // Who may read (SPEC §9): the allow list, else whoever the socket's mode lets in.
        if case .some(.some(let allowed)) = state.engine.readRules.rules(of: name) {
            lines.append(("readers", allowed.map(\.spelled).joined(separator: ", ")))
        } else {
            lines.append(("readers", "anyone who can open the socket \(state.options.socketPath) (mode 0\(String(state.options.socketMode, radix: 8)))"))
        }
        if let admins = state.options.admins {
            lines.append(("admins", (["root"] + admins.map(\.spelled)).joined(separator: ", ")))
        } else {
            lines.append(("admins", "root, the daemon's user (uid \(state.daemonUID)) and its group (gid \(state.daemonGID))"))
        }
        return lines
    }

    private static func text(_ lines: [(String, String)]) -> String {
        lines.map { "\($0.0):\(oneLine($0.1))" }.joined(separator: "\r\n") + "\r\n"
    }

    private static func oneLine(_ text: String) -> String {
        String(text.map { $0 == "\r" || $0 == "\n" ? " " : $0 })
    }
}
