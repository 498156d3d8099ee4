/// Why an expirable is in its state and what happens next (`expirablectl explain`): the facts the engine holds,
/// and the rule behind each time it has set. Never the value, nor the plugin's state.
public struct Explanation: Sendable, Hashable {
    /// When the next eager refresh starts and which rule set that time.
    public struct Refresh: Sendable, Hashable {
        /// Milliseconds from now.
        public let inMillis: Int64
        /// The rule, in words: `before_expiry`, `jitter` and `expiry_margin` with their figures, a retry after a
        /// failed refresh, or a rule that held it back (one call a second, pacing, ownership).
        public let rule: String
    }

    /// When pacing lets the next plugin call start after failures (SPEC §3.17), and why.
    public struct Pacing: Sendable, Hashable {
        public let consecutiveFailures: Int
        /// Milliseconds from now; 0: a call may start now.
        public let nextAttemptInMillis: Int64
        public let reason: String
    }

    public let status: ExpirableStatus
    /// The last fetches, newest first: this node's plugin calls and, in a cluster, fetches answered without one
    /// (forwarded to the owner, answered by the join, not allowed by the quorum); `CallRecord.route` tells them apart.
    public let calls: [CallRecord]
    /// The lifetime the value had when it arrived, in milliseconds; nil without a value or for one that never expires.
    public let lifetimeMillis: Int64?
    public let refresh: Refresh?
    public let pacing: Pacing?
    /// Milliseconds from now until an expired value may no longer be answered stale after a failed call
    /// (`stale_if_error` past its expiry); nil when that does not apply.
    public let staleUntilInMillis: Int64?
    /// The state in words: why it is so.
    public let why: String
    /// What happens next, in words.
    public let next: String
}

extension Engine {
    /// The explanation for `name`, or nil if it is not configured (a keyed family itself has none: its members do).
    public func explanation(_ name: String) -> Explanation? {
        guard let entry = entries(name), let status = status(name) else {
            // A valid key its keyed family does not hold: empty, as INFO and TTL report it.
            guard let status = reportedStatus(name) else { return nil }
            return Explanation(status: status, calls: [], lifetimeMillis: nil, refresh: nil, pacing: nil, staleUntilInMillis: nil,
                               why: "nothing is stored: the family holds no member for this key (never read, or dropped by max_keys, key_idle or a clear)",
                               next: "the next reader's fetch of it calls the plugin")
        }
        let now = clock.monotonicNanos
        let mayRefresh = replicator(for: entry)?.mayRefresh(entry.name) ?? true
        return entry.state.withLock { s in
            func millis(_ instant: UInt64) -> Int64 { instant == .max ? .max : Int64((instant - min(instant, now)) / 1_000_000) }
            let lifetime: UInt64? = s.value == nil || s.deadline == .max ? nil : s.deadline - min(s.deadline, s.storedAt)
            var refresh: Explanation.Refresh?
            if let due = s.comingRefresh {
                refresh = Explanation.Refresh(inMillis: millis(due), rule: refreshRule(entry, s, due: due, lifetime: lifetime ?? 0, mayRefresh: mayRefresh))
            }
            var pacing: Explanation.Pacing?
            if s.failures > 0 {
                pacing = Explanation.Pacing(consecutiveFailures: s.failures, nextAttemptInMillis: millis(s.nextAttempt),
                                            reason: pacingReason(entry, s))
            }
            var staleUntil: Int64?
            if entry.staleNanos > 0, s.value != nil, s.deadline != .max, !s.isValid(at: now) {
                let end = s.staleUntil(staleIfError: entry.staleNanos)
                if end > now { staleUntil = millis(end) }
            }
            let (why, next) = story(entry, s, status: status, refresh: refresh, pacing: pacing, staleUntil: staleUntil, now: now)
            return Explanation(status: status, calls: s.history.all, lifetimeMillis: lifetime.map { Int64($0 / 1_000_000) },
                               refresh: refresh, pacing: pacing, staleUntilInMillis: staleUntil, why: why, next: next)
        }
    }

    /// Which rule set the refresh due at `due`: the value's refresh point (`before_expiry` and `jitter` before the
    /// margin-adjusted expiry), or what held it later.
    private func refreshRule(_ entry: Entry, _ s: Entry.State, due: UInt64, lifetime: UInt64, mayRefresh: Bool) -> String {
        guard case .eager(let before) = entry.refresh else { return "none" }
        let margin = entry.freshness.expiryMargin.milliseconds
        let lead = before.nanoseconds(ofLifetime: lifetime)
        let spread = entry.freshness.jitter.nanoseconds(ofLifetime: lifetime)
        let point = s.freshUntil - min(s.freshUntil, lead)
        let beforeText: String
        switch before {
        case .duration(let duration): beforeText = "before_expiry \(duration.milliseconds) ms"
        case .share: beforeText = "before_expiry \(before) of the \(lifetime / 1_000_000) ms lifetime (\(lead / 1_000_000) ms)"
        }
        let marginText = margin > 0 ? " and expiry_margin \(margin) ms" : ""
        if s.failures > 0 {
            return "retry of a failed refresh after \(s.failures) failure\(s.failures == 1 ? "" : "s"): retry_interval \(entry.freshness.retryInterval.milliseconds) ms doubling up to \((entry.freshness.retryBackoff ?? Engine.maximumRefreshBackoff).milliseconds) ms, while the value lasts"
        }
        if due <= point, point - due <= spread {
            let drawn = (point - due) / 1_000_000
            let jitterText = spread > 0 ? " and a jitter of \(drawn) ms (drawn from 0 to \(spread / 1_000_000) ms)" : ""
            return "\(beforeText)\(jitterText) before the expiry\(marginText)"
        }
        let earliest = (s.lastCallStart ?? 0) &+ UInt64(Engine.minimumRefreshInterval.nanoseconds)
        if !mayRefresh || due == earliest && due > point {
            return mayRefresh
                ? "\(beforeText) before the expiry\(marginText), held back by the rule of at most one call a second"
                : "another node owns this value and refreshes it; this node looks again each second in case the owner goes"
        }
        return "\(beforeText) before the expiry\(marginText), held back by pacing after failures"
    }

    /// Why no call may start before `nextAttempt`.
    private func pacingReason(_ entry: Entry, _ s: Entry.State) -> String {
        let freshness = entry.freshness
        var reason: String
        if s.permanentFailure || s.lastFailure?.errorClass == .permanent {
            reason = "the last failure was permanent: no eager retry until a success or a clear; readers get a new call each retry_interval (\(freshness.retryInterval.milliseconds) ms)"
        } else if let bound = freshness.retryBackoff {
            let delay = freshness.retryDelay(afterFailures: s.failures)
            reason = "retry_interval \(freshness.retryInterval.milliseconds) ms doubled per consecutive failure up to retry_backoff \(bound.milliseconds) ms: \(delay.milliseconds) ms after the start of the last call"
        } else {
            reason = "retry_interval \(freshness.retryInterval.milliseconds) ms after the start of the last call"
        }
        if s.lastFailure?.retryAfter != nil { reason += "; the plugin asked to be called no sooner (retry-after), which may push it later" }
        return reason
    }

    private func story(_ entry: Entry, _ s: Entry.State, status: ExpirableStatus, refresh: Explanation.Refresh?,
                       pacing: Explanation.Pacing?, staleUntil: Int64?, now: UInt64) -> (String, String) {
        let lastCall = s.history.newest
        let failedText = status.lastError.map { ": \($0)" } ?? ""
        var why: String
        switch status.state {
        case .empty:
            if s.failures > 0 {
                let failed: String
                switch lastCall?.route {
                case .forwarded(let owner)?: failed = "the last fetch, forwarded to \(owner), failed"
                case .notCalled?: failed = "the last fetch failed without a plugin call here"
                default: failed = "the last plugin call failed"
                }
                why = "nothing is stored: \(failed) (\(status.lastErrorClass?.rawValue ?? "temporary"))\(failedText)"
            } else if lastCall == nil {
                why = "nothing is stored: no reader has asked for it yet" + (entry.freshness.prefetch ? " (prefetch is on, so the daemon asks at start)" : "")
            } else {
                why = "nothing is stored: it was cleared (or its value was dropped) since the last call"
            }
        case .valid:
            why = "a value is stored and valid" + (status.expiresInMillis.map { ", handed out for \($0) ms more" } ?? ", and never expires")
        case .expired:
            why = "the stored value has expired (expiry_margin \(entry.freshness.expiryMargin.milliseconds) ms before its expires_at): the next reader's fetch calls the plugin"
        case .stale:
            why = "the stored value has expired and the call to replace it failed\(failedText); it is answered, marked stale, for \(staleUntil ?? 0) ms more (stale_if_error \(entry.freshness.staleIfError.milliseconds) ms past its expiry)"
        }
        var next: [String] = []
        if status.fetching { next.append("a plugin call is under way; every reader waits for it") }
        if let refresh {
            next.append("eager refresh in \(refresh.inMillis) ms: \(refresh.rule)")
        } else if case .eager = entry.refresh, status.state == .valid, s.deadline != .max {
            if s.permanentFailure {
                next.append("no eager refresh: the last failure was permanent")
            } else if s.refreshDue != nil {
                next.append("no eager refresh before it expires: the earliest one allowed (at most one call a second, and pacing after failures) falls after its expiry, so the first read after it expires calls the plugin")
            } else {
                next.append("no eager refresh is scheduled")
            }
        } else if case .lazy = entry.refresh, status.state == .valid {
            next.append("refresh is lazy: the first read after it expires calls the plugin")
        }
        if let pacing {
            next.append(pacing.nextAttemptInMillis > 0
                ? "the next plugin call may start in \(pacing.nextAttemptInMillis) ms (\(pacing.reason))"
                : "a plugin call may start now; the next reader starts one (\(pacing.reason))")
        } else if status.state != .valid && !status.fetching {
            next.append("the next reader's fetch calls the plugin")
        }
        return (why, next.joined(separator: "; "))
    }
}
