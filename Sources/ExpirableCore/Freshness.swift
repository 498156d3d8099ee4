/// A span measured against a value's lifetime (its `expires_at` less the moment it was fetched): a fixed
/// duration, or a share of the lifetime. `before_expiry` and `jitter` are leads (SPEC §3.9, §3.14).
public enum Lead: Sendable, Hashable, CustomStringConvertible {
    /// This long, whatever the lifetime.
    case duration(Duration)
    /// This share of the lifetime, in basis points (2000 is 20 %).
    case share(basisPoints: Int)

    /// No lead at all.
    public static let zero = Lead.duration(.zero)

    /// Shorthand for `.duration(.seconds(seconds))`.
    public static func seconds(_ seconds: Int64) -> Lead { .duration(.seconds(seconds)) }

    /// Shorthand for `.duration(.milliseconds(milliseconds))`.
    public static func milliseconds(_ milliseconds: Int64) -> Lead { .duration(.milliseconds(milliseconds)) }

    /// The lead in nanoseconds for a value whose lifetime is `lifetime` nanoseconds.
    public func nanoseconds(ofLifetime lifetime: UInt64) -> UInt64 {
        switch self {
        case .duration(let duration):
            return UInt64(max(0, duration.nanoseconds))
        case .share(let basisPoints):
            let points = UInt64(min(max(basisPoints, 0), 10_000))
            // Split to keep lifetimes of centuries from overflowing.
            return lifetime / 10_000 * points + lifetime % 10_000 * points / 10_000
        }
    }

    /// Whether this lead is nothing, whatever the lifetime.
    public var isZero: Bool { self == .duration(.zero) || self == .share(basisPoints: 0) }

    /// `"30000"` (milliseconds) or `"20%"`, as the configuration writes it.
    public var description: String {
        switch self {
        case .duration(let duration):
            return "\(duration.milliseconds)"
        case .share(let basisPoints):
            let whole = basisPoints / 100, fraction = basisPoints % 100
            return fraction == 0 ? "\(whole)%" : "\(whole).\(fraction < 10 ? "0" : "")\(fraction)%"
        }
    }
}

/// How an expirable's value is kept fresh beyond its refresh policy (SPEC §3 items 13–18): when it stops
/// being handed out, how refreshes spread, whether it is fetched at start, whether an expired value may stand
/// in for an error, and how failed calls are paced.
public struct FreshnessPolicy: Sendable, Hashable {
    /// The default `retry_interval`.
    public static let defaultRetryInterval: Duration = .seconds(1)

    /// A value counts as expired this long before its `expires_at`, for answering, TTL, refresh and
    /// replication (§3.13).
    public var expiryMargin: Duration
    /// An eager refresh starts a random lead of up to this much earlier than `before_expiry` asks, drawn
    /// afresh for each refresh (§3.14).
    public var jitter: Lead
    /// Whether the daemon fetches the value when it starts (§3.15).
    public var prefetch: Bool
    /// How long past its expiry a value may be answered, marked stale, when the call that should replace it
    /// fails (§3.16). Zero: never.
    public var staleIfError: Duration
    /// The shortest time from the start of a failed call to the start of the next one (§3.17).
    public var retryInterval: Duration
    /// When set, the interval doubles with each consecutive failure up to this bound (§3.17).
    public var retryBackoff: Duration?

    public init(expiryMargin: Duration = .zero, jitter: Lead = .zero, prefetch: Bool = false, staleIfError: Duration = .zero,
                retryInterval: Duration = FreshnessPolicy.defaultRetryInterval, retryBackoff: Duration? = nil) {
        self.expiryMargin = expiryMargin
        self.jitter = jitter
        self.prefetch = prefetch
        self.staleIfError = staleIfError
        self.retryInterval = retryInterval
        self.retryBackoff = retryBackoff
    }

    /// The pause after `failures` consecutive failed calls, counted from the start of the last one.
    func retryDelay(afterFailures failures: Int) -> Duration {
        guard let bound = retryBackoff, failures > 1 else { return retryInterval }
        let exponent = min(failures - 1, 30)
        let doubled = retryInterval * (1 << exponent)
        return min(doubled, max(bound, retryInterval))
    }
}

/// Draws the jitter of one eager refresh: a uniformly random number of nanoseconds in `0...bound`. Injected
/// into the engine so tests can check the spread.
public typealias JitterSource = @Sendable (_ bound: UInt64) -> UInt64
