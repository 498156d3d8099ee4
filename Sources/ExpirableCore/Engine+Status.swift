import Synchronization

/// What an expirable looks like right now, for TTL, INFO and `expirablectl status`. Never holds the value.
public struct ExpirableStatus: Sendable, Hashable {
    /// The stored value's condition.
    public enum State: String, Sendable, Hashable {
        /// Nothing stored (never fetched, cleared, or the last fetch failed).
        case empty
        /// A value is stored and valid.
        case valid
        /// A value was stored and has expired; the next fetch calls the plugin.
        case expired
        /// A value has expired and the call that should have replaced it failed: it is answered, marked
        /// stale, until `stale_if_error` past its expiry or the next success (SPEC §3.16).
        case stale
    }

    public let name: String
    public let scope: Scope
    public let refresh: RefreshPolicy
    public let freshness: FreshnessPolicy
    public let state: State
    /// Whether a plugin call is under way.
    public let fetching: Bool
    /// The stored value's expiry, if a value is stored.
    public let expiry: Expiry?
    /// Milliseconds until the value stops being handed out, `expiry_margin` before its expiry (0 once it
    /// has); nil when nothing is stored or it never expires.
    public let expiresInMillis: Int64?
    /// Milliseconds until the next eager refresh, if one is scheduled.
    public let nextRefreshInMillis: Int64?
    /// Milliseconds until pacing allows the next plugin call (0: now), after a failure (§3.17).
    public let nextAttemptInMillis: Int64?
    /// Consecutive failed calls; a success resets it.
    public let consecutiveFailures: Int
    /// The class of the last failure, while the last call failed.
    public let lastErrorClass: ExpirableError.Class?
    /// The last plugin failure, cleared by the next success.
    public let lastError: String?
    public let counters: ExpirableCounters
}

/// The answer to TTL.
public enum TimeToLive: Sendable, Hashable {
    /// Nothing valid is stored.
    case notStored
    /// Stored until cleared.
    case never
    /// Milliseconds until expiry.
    case millis(Int64)
}

extension Engine {
    /// The status of `name`, or nil if it is not configured or is a keyed family's member not held.
    public func status(_ name: String) -> ExpirableStatus? {
        guard let entry = entries(name) else { return nil }
        let now = clock.monotonicNanos
        return entry.state.withLock { s in
            let state: ExpirableStatus.State
            if s.value == nil {
                state = .empty
            } else if s.isValid(at: now) {
                state = .valid
            } else {
                state = s.isStaleServable(at: now, staleIfError: entry.staleNanos) ? .stale : .expired
            }
            func millis(until instant: UInt64) -> Int64 { Int64((instant - min(instant, now)) / 1_000_000) }
            return ExpirableStatus(
                name: entry.name, scope: entry.scope, refresh: entry.refresh, freshness: entry.freshness, state: state,
                fetching: s.flight != nil && s.flight?.scheduled == nil, expiry: s.value?.expiry,
                expiresInMillis: s.value == nil || s.freshUntil == .max ? nil : millis(until: s.freshUntil),
                nextRefreshInMillis: s.comingRefresh.map(millis(until:)),
                nextAttemptInMillis: s.failures > 0 ? millis(until: s.nextAttempt) : nil,
                consecutiveFailures: s.failures, lastErrorClass: s.failures > 0 ? s.lastFailure?.errorClass : nil,
                lastError: s.lastError, counters: s.counters
            )
        }
    }

    /// The status of `name` as callers are told it (TTL, INFO): a valid key of a keyed family that is not held
    /// (never read, cleared, evicted, or unread for `key_idle`) is `empty`, as its member would be; every
    /// value is held per key (SPEC §3.19). Nil if `name` is not configured.
    public func reportedStatus(_ name: String) -> ExpirableStatus? {
        if let status = status(name) { return status }
        guard !families.isEmpty, let (family, _) = familyAndKey(name) else { return nil }
        let definition = family.definition
        return ExpirableStatus(
            name: name, scope: definition.scope, refresh: definition.refresh, freshness: definition.freshness, state: .empty,
            fetching: false, expiry: nil, expiresInMillis: nil, nextRefreshInMillis: nil, nextAttemptInMillis: nil,
            consecutiveFailures: 0, lastErrorClass: nil, lastError: nil, counters: ExpirableCounters()
        )
    }

    /// Time left on `name`'s stored value (`notStored` for a keyed family's member not held), or nil if `name` is
    /// not configured.
    public func timeToLive(_ name: String) -> TimeToLive? {
        guard let status = reportedStatus(name) else { return nil }
        guard status.state == .valid else { return .notStored }
        return status.expiresInMillis.map { .millis($0) } ?? .never
    }
}

extension Engine {
    /// The expirables fetched when the daemon starts (`prefetch`), sorted.
    public var prefetchNames: [String] { names.filter { entries($0)?.freshness.prefetch == true } }

    /// Fetches every `prefetch` expirable (SPEC §3.15) and calls `done` once each has answered, successfully
    /// or not, with the names that failed. `done` runs at once when there is nothing to prefetch.
    public func prefetch(only: Set<String>? = nil, done: @escaping @Sendable (_ failed: [String]) -> Void) {
        let names = prefetchNames.filter { only?.contains($0) ?? true }
        guard !names.isEmpty else { return done([]) }
        let outcome = Mutex((left: names.count, failed: [String]()))
        for name in names {
            fetch(name, trigger: .prefetch) { [logger] result in
                if case .failure(let error) = result {
                    logger.warning("prefetch failed", metadata: ["expirable": "\(name)", "error": "\(error)"])
                }
                let finished: [String]? = outcome.withLock { o in
                    if case .failure = result { o.failed.append(name) }
                    o.left -= 1
                    return o.left == 0 ? o.failed.sorted() : nil
                }
                if let finished { done(finished) }
            }
        }
    }
}
