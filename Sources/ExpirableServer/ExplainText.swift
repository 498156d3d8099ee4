import ExpirableCore

/// The text of EXPLAIN replies: `key:value` lines, facts and the sentences that tie them together, never a value.
/// Each `call` line is one past call of this node's plugin: `STARTED_AT_MS DURATION_MS OUTCOME TRIGGER ERROR_WORD`.
/// Each `flight` line is a fetch answered without one, in a cluster: the same fields, then how it was answered,
/// `forwarded:NODE` (the owner was asked), `joined` (by the value a peer sent during the join) or `not_called`
/// (quorum single flight did not allow a call). Both kinds in one list, newest first.
enum ExplainText {
    static func expirable(_ name: String, state: ServerState) -> String? {
        guard let explanation = state.engine.explanation(name) else { return nil }
        let status = explanation.status
        var lines: [(String, String)] = [
            ("name", status.name),
            ("state", status.state.rawValue),
            ("why", explanation.why),
            ("next", explanation.next),
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
        lines += state.options.pluginInfo?(name) ?? []
        lines += state.options.expirableInfo?(name) ?? [("owner", state.options.nodeName)]
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
        return lines.map { "\($0.0):\(oneLine($0.1))" }.joined(separator: "\r\n") + "\r\n"
    }

    private static func oneLine(_ text: String) -> String {
        String(text.map { $0 == "\r" || $0 == "\n" ? " " : $0 })
    }
}
