/// When a value stops being valid: a Unix time in milliseconds, or never.
public enum Expiry: Sendable, Hashable, CustomStringConvertible {
    /// Kept until cleared and never refreshed.
    case never
    /// Valid until this Unix time in milliseconds.
    case at(unixMillis: Int64)

    public var description: String {
        switch self {
        case .never: "never"
        case .at(let ms): "\(ms)"
        }
    }
}

/// Where a value lives: replicated to every node of the cluster, or kept on this node only.
public enum Scope: String, Sendable, Hashable, CaseIterable {
    case cluster
    case local
}

/// When a value is fetched again.
public enum RefreshPolicy: Sendable, Hashable, CustomStringConvertible {
    /// Only on the first fetch after it expired.
    case lazy
    /// In the background, this long (or this share of its lifetime) before it expires.
    case eager(beforeExpiry: Lead)

    public var description: String {
        switch self {
        case .lazy: "lazy"
        case .eager: "eager"
        }
    }
}

/// A value together with its expiry, as answered to callers.
public struct Fetched: Sendable {
    /// The value's bytes. Never log them.
    public let value: Secret
    /// When the value expires.
    public let expiry: Expiry
    /// Set when a peer supplied the value: its version.
    let replicaVersion: Version?
    /// The value's deadline on this node's monotonic clock, once known: made on arrival from the remaining
    /// validity a peer sent (the sender's wall clock is never trusted), or when the engine stored the value.
    /// `UInt64.max`: never expires.
    var deadline: UInt64?
    /// Whether the engine answered this value past its expiry because the call that should have replaced it
    /// failed (`stale_if_error`, SPEC §3.16).
    public private(set) var isStale = false

    public init(value: Secret, expiry: Expiry) {
        self.value = value
        self.expiry = expiry
        replicaVersion = nil
    }

    /// A value received from a peer: valid for `remainingMillis` from now on this node (nil: never expires), its
    /// deadline fixed on `clock`'s monotonic time now (`expiry` is only what callers are told).
    public init(value: Secret, remainingMillis: Int64?, version: Version, receivedOn clock: any EngineClock) {
        self.value = value
        expiry = remainingMillis.map { .at(unixMillis: clock.unixMillis + $0) } ?? .never
        replicaVersion = version
        deadline = Engine.deadline(remainingMillis: remainingMillis, now: clock.monotonicNanos)
    }

    /// The same value, marked stale.
    public func markedStale() -> Fetched {
        var copy = self
        copy.isStale = true
        return copy
    }
}
