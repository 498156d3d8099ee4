import Synchronization

/// Counters kept per expirable, shown by INFO and `expirablectl status`.
public struct ExpirableCounters: Sendable, Hashable {
    public init() {}

    /// Adds `other`'s counts to these (a keyed family's members summed).
    public mutating func add(_ other: ExpirableCounters) {
        hits &+= other.hits
        misses &+= other.misses
        pluginCalls &+= other.pluginCalls
        failures &+= other.failures
        permanentFailures &+= other.permanentFailures
        refreshes &+= other.refreshes
        staleAnswers &+= other.staleAnswers
    }

    /// Fetches answered from memory.
    public var hits: UInt64 = 0
    /// Fetches that found no valid value and waited for a plugin call.
    public var misses: UInt64 = 0
    /// Plugin calls started, by callers or by eager refresh.
    public var pluginCalls: UInt64 = 0
    /// Plugin calls that failed.
    public var failures: UInt64 = 0
    /// Of `failures`, those of class permanent; the rest were temporary.
    public var permanentFailures: UInt64 = 0
    /// Eager refreshes started.
    public var refreshes: UInt64 = 0
    /// Answers of an expired value, marked stale, in place of an error (`stale_if_error`).
    public var staleAnswers: UInt64 = 0
}

/// One configured expirable and everything the engine knows about it. All mutable state is behind one lock,
/// held only for bookkeeping: plugin calls, completions and timers run outside it.
final class Entry: Sendable {
    typealias Completion = @Sendable (Result<Fetched, ExpirableError>) -> Void

    /// A plugin call under way, or one paced to start later (SPEC §3.17), and the callers waiting for it.
    struct Flight {
        var waiters: [Completion]
        /// The clear-generation the call started in; a result from an older generation is not stored.
        var generation: UInt64
        /// Nil once the call has started; until then, when it starts (monotonic) and the timer that starts it.
        var scheduled: (at: UInt64, timer: any Cancellable)?

        init(waiters: [Completion], generation: UInt64) {
            self.waiters = waiters
            self.generation = generation
        }
    }

    struct State {
        var value: Fetched?
        /// Monotonic nanoseconds at which `value` reaches its `expires_at`; `UInt64.max` for never.
        var deadline: UInt64 = 0
        /// Monotonic nanoseconds at which `value` stops being handed out: `deadline` less `expiry_margin`.
        var freshUntil: UInt64 = 0
        /// Monotonic nanoseconds at which `value` arrived, for its lifetime.
        var storedAt: UInt64 = 0
        /// When the pending eager refresh is due (monotonic), if one is scheduled.
        var refreshDue: UInt64?
        /// The refresh fell due while another node owned it: if the owner never makes it, this node does,
        /// even after the value has expired (SPEC §4.13).
        var refreshDeferred = false
        var flight: Flight?
        /// Callers that arrived after a clear while a call from before the clear was still running: they get
        /// a call of their own as soon as that one returns (never two calls at once on one expirable).
        var nextWaiters: [Completion] = []
        /// Bumped by clear, so results and timers from before a clear are not applied after it.
        var generation: UInt64 = 0
        var refreshTimer: (any Cancellable)?
        /// Identifies the current refresh timer; a timer that fires after being replaced finds a newer serial.
        var timerSerial: UInt64 = 0
        /// Consecutive failed plugin calls, for pacing and backoff; a success resets it.
        var failures = 0
        /// No plugin call starts before this (monotonic): paced after a failure, or a plugin's retry-after.
        var nextAttempt: UInt64 = 0
        /// The last call failed with a permanent error: no eager retry until a success, a clear or a reload that
        /// changes the expirable's configuration.
        var permanentFailure = false
        /// The last call's error while `failures > 0`, for callers who will not wait for the next attempt.
        var lastFailure: ExpirableError?
        /// Monotonic nanoseconds at which the last plugin call started, for the one-per-second rule and pacing.
        var lastCallStart: UInt64?
        var lastError: String?
        var counters = ExpirableCounters()
        /// What started the call under way (or the last one), for its record.
        var callTrigger = CallRecord.Trigger.reader
        /// The last calls, for `explain`.
        var history = CallHistory()
        /// The fetcher reports its plugin calls itself (`ForwardingFetcher`): `startingCall` does not count them.
        var fetcherCountsCalls = false
        /// The version of the current value or of the last clear (cluster scope with a replicator only).
        var version: Version?
        /// The plugin's state (SPEC §3.20): given to every call, replaced by what a call sets. A clear of the
        /// value keeps it (a refresh token outlives the access tokens it buys).
        var pluginState: Secret?
        /// Why the state could not be read at start (a state file that does not decrypt): every call fails
        /// with it until the operator fixes or removes the file, rather than calling without the state.
        var stateError: ExpirableError?
        /// The version of the last state change seen, for replicated states: the newest wins, like values.
        var stateVersion: Version?
        /// Set when a keyed family let go of this entry (made compact, evicted, idle): a caller that found it
        /// before looks its key up again rather than start a call nobody else would share.
        var detached = false
        /// Set when a reload moved this entry's value, state and call under way to a new entry for the same plugin
        /// and params (SPEC §10): whoever still holds this one goes on with that one.
        var successor: Entry?
        /// Set when a reload removed this entry, or replaced it with an empty one: a call still under way ends
        /// here, and no refresh is scheduled any more.
        var droppedByReload = false

        func isValid(at now: UInt64) -> Bool { value != nil && now < freshUntil }

        /// When the pending eager refresh will run (monotonic): `refreshDue`, unless it falls at or after the
        /// value's expiry, when it will not run (a refresh held by the one-call-a-second rule or by pacing past a
        /// short lifetime; the next read calls the plugin instead). A deferred one (another node's duty) may still.
        var comingRefresh: UInt64? {
            guard let due = refreshDue, refreshDeferred || due < freshUntil else { return nil }
            return due
        }

        /// Whether `value` may be answered stale now: it is no longer valid, the call that should have
        /// replaced it failed, and it is less than `staleIfError` past its expiry.
        func isStaleServable(at now: UInt64, staleIfError: UInt64) -> Bool {
            guard staleIfError > 0, value != nil, failures > 0, !isValid(at: now), deadline != .max else { return false }
            return now < staleUntil(staleIfError: staleIfError)
        }

        /// When the `stale_if_error` window ends (monotonic): `staleIfError` after the value stopped being valid,
        /// at `freshUntil`. The margin counts for every purpose (SPEC §3.13), so a stale answer never lasts
        /// margin + bound.
        func staleUntil(staleIfError: UInt64) -> UInt64 {
            freshUntil &+ min(staleIfError, .max - freshUntil)
        }

        mutating func cancelRefresh() {
            refreshTimer?.cancel()
            refreshTimer = nil
            refreshDue = nil
            timerSerial &+= 1
        }
    }

    let name: String
    let scope: Scope
    let refresh: RefreshPolicy
    let freshness: FreshnessPolicy
    let fetcher: any Fetcher
    let state = Mutex(State())
    /// A keyed family's member: the family, and when it was last read (monotonic), for eviction. Nil otherwise.
    let family: Family?
    let lastUsed = Atomic<UInt64>(0)
    /// A keyed family's member: read since its family's last idle sweep (`Family.takeReadMembers`).
    let readLately = Atomic<Bool>(false)
    /// A keyed family's member: its key's bytes, for the family's table. Empty otherwise.
    let memberKey: [UInt8]
    /// `freshness.expiryMargin` and `staleIfError` in nanoseconds, read under the lock.
    let marginNanos: UInt64
    let staleNanos: UInt64

    /// A keyed family's member was read (or waited for) at `now`: for eviction and `key_idle`, and, in a
    /// cluster, for its owner's `key_idle` (`Replicator.readHere`).
    func read(at now: UInt64) {
        lastUsed.store(now, ordering: .relaxed)
        readLately.store(true, ordering: .relaxed)
    }

    init(_ definition: ExpirableDefinition, family: Family? = nil, key: [UInt8] = []) {
        self.family = family
        memberKey = key
        name = definition.name
        scope = definition.scope
        refresh = definition.refresh
        freshness = definition.freshness
        fetcher = definition.fetcher
        marginNanos = UInt64(max(0, definition.freshness.expiryMargin.nanoseconds))
        staleNanos = UInt64(max(0, definition.freshness.staleIfError.nanoseconds))
        if definition.fetcher is any ForwardingFetcher { state.withLock { $0.fetcherCountsCalls = true } }
    }
}

/// What the engine needs to know about one expirable.
public struct ExpirableDefinition: Sendable {
    public let name: String
    public let scope: Scope
    public let refresh: RefreshPolicy
    public let freshness: FreshnessPolicy
    public let fetcher: any Fetcher
    /// Set for a keyed family (SPEC §3.19): `NAME:KEY` addresses its members.
    public let keyed: KeyedPolicy?
    /// Who may read it (its `allow` list, SPEC §9); nil: anyone who can open the socket. Not part of what the
    /// engine keeps an entry for across a reload: a changed list keeps the value.
    public var readers: [AccessRule]? = nil

    public init(name: String, scope: Scope = .cluster, refresh: RefreshPolicy = .lazy, freshness: FreshnessPolicy = FreshnessPolicy(),
                keyed: KeyedPolicy? = nil, fetcher: any Fetcher) {
        self.name = name
        self.scope = scope
        self.refresh = refresh
        self.freshness = freshness
        self.keyed = keyed
        self.fetcher = fetcher
    }

    /// The same definition with another fetcher (the cluster wraps the plugin's), freshness policy or keying.
    public func with(fetcher: (any Fetcher)? = nil, freshness: FreshnessPolicy? = nil, keyed: KeyedPolicy?? = nil) -> ExpirableDefinition {
        var copy = ExpirableDefinition(name: name, scope: scope, refresh: refresh, freshness: freshness ?? self.freshness, keyed: keyed ?? self.keyed,
                                       fetcher: fetcher ?? self.fetcher)
        copy.readers = readers
        return copy
    }
}
