import Synchronization

/// Counters kept per expirable, shown by INFO and `expirablectl status`.
public struct ExpirableCounters: Sendable, Hashable {
    /// Fetches answered from memory.
    public var hits: UInt64 = 0
    /// Fetches that found no valid value and waited for a plugin call.
    public var misses: UInt64 = 0
    /// Plugin calls started, by callers or by eager refresh.
    public var pluginCalls: UInt64 = 0
    /// Plugin calls that failed.
    public var failures: UInt64 = 0
    /// Eager refreshes started.
    public var refreshes: UInt64 = 0
}

/// One configured expirable and everything the engine knows about it. All mutable state is behind one lock,
/// held only for bookkeeping: plugin calls, completions and timers run outside it.
final class Entry: Sendable {
    typealias Completion = @Sendable (Result<Fetched, ExpirableError>) -> Void

    /// A plugin call under way and the callers waiting for it.
    struct Flight {
        var waiters: [Completion]
        /// The clear-generation the call started in; a result from an older generation is not stored.
        let generation: UInt64
    }

    struct State {
        var value: Fetched?
        /// Monotonic nanoseconds at which `value` stops being valid; `UInt64.max` for never.
        var deadline: UInt64 = 0
        var flight: Flight?
        /// Callers that arrived after a clear while a call from before the clear was still running: they get
        /// a call of their own as soon as that one returns (never two calls at once on one expirable).
        var nextWaiters: [Completion] = []
        /// Bumped by clear, so results and timers from before a clear are not applied after it.
        var generation: UInt64 = 0
        var refreshTimer: (any Cancellable)?
        /// Identifies the current refresh timer; a timer that fires after being replaced finds a newer serial.
        var timerSerial: UInt64 = 0
        /// Consecutive failed eager refreshes of the current value, for backoff.
        var refreshFailures = 0
        /// Monotonic nanoseconds at which the last plugin call started, for the one-per-second rule.
        var lastCallStart: UInt64?
        var lastError: String?
        var counters = ExpirableCounters()
        /// The version of the current value or of the last clear (cluster scope with a replicator only).
        var version: Version?

        func isValid(at now: UInt64) -> Bool { value != nil && now < deadline }

        mutating func cancelRefresh() {
            refreshTimer?.cancel()
            refreshTimer = nil
            timerSerial &+= 1
        }
    }

    let name: String
    let scope: Scope
    let refresh: RefreshPolicy
    let fetcher: any Fetcher
    let state = Mutex(State())

    init(_ definition: ExpirableDefinition) {
        name = definition.name
        scope = definition.scope
        refresh = definition.refresh
        fetcher = definition.fetcher
    }
}

/// What the engine needs to know about one expirable.
public struct ExpirableDefinition: Sendable {
    public let name: String
    public let scope: Scope
    public let refresh: RefreshPolicy
    public let fetcher: any Fetcher

    public init(name: String, scope: Scope = .cluster, refresh: RefreshPolicy = .lazy, fetcher: any Fetcher) {
        self.name = name
        self.scope = scope
        self.refresh = refresh
        self.fetcher = fetcher
    }
}
