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
    }

    public let name: String
    public let scope: Scope
    public let refresh: RefreshPolicy
    public let state: State
    /// Whether a plugin call is under way.
    public let fetching: Bool
    /// The stored value's expiry, if a value is stored.
    public let expiry: Expiry?
    /// Milliseconds until the value expires (0 once expired); nil when nothing is stored or it never expires.
    public let expiresInMillis: Int64?
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
    /// The status of `name`, or nil if it is not configured.
    public func status(_ name: String) -> ExpirableStatus? {
        guard let entry = entries(name) else { return nil }
        let now = clock.monotonicNanos
        return entry.state.withLock { s in
            let state: ExpirableStatus.State = s.value == nil ? .empty : (s.isValid(at: now) ? .valid : .expired)
            let expiresIn: Int64? = s.value == nil || s.deadline == .max ? nil : Int64((s.deadline - min(s.deadline, now)) / 1_000_000)
            return ExpirableStatus(
                name: entry.name, scope: entry.scope, refresh: entry.refresh, state: state,
                fetching: s.flight != nil, expiry: s.value?.expiry, expiresInMillis: expiresIn,
                lastError: s.lastError, counters: s.counters
            )
        }
    }

    /// Time left on `name`'s stored value, or nil if `name` is not configured.
    public func timeToLive(_ name: String) -> TimeToLive? {
        guard let status = status(name) else { return nil }
        guard status.state == .valid else { return .notStored }
        return status.expiresInMillis.map { .millis($0) } ?? .never
    }
}
