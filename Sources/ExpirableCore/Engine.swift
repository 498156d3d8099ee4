import Logging
import Synchronization

/// The store: answers fetches from memory while a value is valid and otherwise calls the expirable's fetcher,
/// sharing one call between concurrent callers (single flight). Successes are kept until they expire, failures
/// never. Knows nothing of sockets, plugins or peers.
public final class Engine: Sendable {
    let clock: any EngineClock
    let logger: Logger
    let jitter: JitterSource
    /// The cluster, once attached; the keyed families' idle sweeps hold it too (see `Engine.sweep`).
    let replicatorSlot = ReplicatorSlot()
    private let observerBox = Mutex<[NewValueObserver]>([])
    private let clearObserverBox = Mutex<[ClearObserver]>([])
    private let reloadObserverBox = Mutex<[ReloadObserver]>([])
    private let callObserverBox = Mutex<CallObserver?>(nil)
    let stateKeeperBox = Mutex<(any StateKeeper)?>(nil)
    /// The configured expirables: replaced whole by a reload, read without a lock (see `ExpirableTable`).
    let tableSlot: TableSlot
    /// Turned off when the engine goes, which ends the keyed families' idle sweeps.
    let sweeping = SweepSwitch()
    /// What the entries reloads dropped had counted, by name, for the metrics' counters.
    let dropped = DroppedCounts()
    private var table: ExpirableTable { tableSlot.current }
    var entryTable: [String: Entry] { table.entries }
    /// Keyed families by name (SPEC §3.19); their members are made on first use.
    var families: [String: Family] { table.families }
    /// The configured names, sorted.
    public var names: [String] { table.names }

    /// The least a plugin's value must have left to live when it arrives to be stored: one with less (an
    /// `expires_at` in the past, an `expires_in` of a millisecond) is answered to its call's callers only (SPEC
    /// §3.6), and the next call is paced as after a failure (§3.9, §3.17).
    static let minimumUsableLifetime: UInt64 = 10_000_000

    /// Why a value with less than `minimumUsableLifetime` left was refused, naming what the plugin returned. With
    /// an `expiry_margin` (`margin` nanoseconds), what is left before the margin is what was too little.
    static func unusableLifetime(_ name: String, fetched: Fetched, deadline: UInt64, margin: UInt64, now: UInt64, wall: Int64) -> String {
        let fix = "check the clock of the plugin's host and of its issuer, or have the issuer grant longer lifetimes"
        if deadline <= now, case .at(let unixMillis) = fetched.expiry {
            return "\(name): the plugin's value expired \(wall - min(wall, unixMillis)) ms before it arrived (expires_at \(unixMillis) Unix ms), so it was not stored and the next call waits retry_interval; \(fix)"
        }
        let left = (deadline - min(deadline, now)) / 1_000_000
        let tooLittle = "too little to keep (under \(minimumUsableLifetime / 1_000_000) ms), so it was not stored and the next call waits retry_interval"
        guard margin > 0 else { return "\(name): the plugin's value has \(left) ms left, \(tooLittle); \(fix)" }
        let freshUntil = deadline - min(deadline, margin)
        let usable = (freshUntil - min(freshUntil, now)) / 1_000_000
        return "\(name): the plugin's value has \(left) ms left, \(usable) ms of it before expiry_margin (\(margin / 1_000_000) ms): \(tooLittle); lower expiry_margin or have the issuer grant longer lifetimes"
    }

    /// The shortest interval between two plugin calls started by eager refresh for one expirable.
    public static let minimumRefreshInterval: Duration = .seconds(1)
    /// The longest wait between retries of a failing eager refresh.
    public static let maximumRefreshBackoff: Duration = .seconds(30)

    /// - Parameter jitter: draws each eager refresh's jitter; uniform by default.
    public init(expirables: [ExpirableDefinition], clock: any EngineClock = SystemClock(), logger: Logger = Logger(label: "expirable.engine"),
                jitter: @escaping JitterSource = { UInt64.random(in: 0...$0) }) {
        let table = ExpirableTable(expirables, keeping: nil)
        self.tableSlot = TableSlot(table)
        self.clock = clock
        self.logger = logger
        self.jitter = jitter
        for family in table.families.values { sweepIdleMembers(family) }
    }

    deinit { sweeping.turnOff() }

    /// `name`'s entry, for reading: a configured expirable, or a keyed family's member that exists (none is
    /// made here; a compact member is copied into a detached entry, so what changes on it is lost).
    func entries(_ name: String) -> Entry? {
        if let entry = entryTable[name] { return entry }
        guard !families.isEmpty, let (family, key) = familyAndKey(name) else { return nil }
        return family.member(key)
    }

    /// Connects the engine to the cluster. Call once, before serving.
    public func attach(_ replicator: any Replicator) {
        replicatorSlot.attach(replicator)
    }

    /// Calls `observer` with every new value stored from now on: fetched here (by a caller or an eager
    /// refresh) or received from a peer. It runs on the thread that stored the value, after the entry's lock is
    /// released, and must not block. A clear stores nothing, so it calls nothing (see `observeClears`). Each call
    /// adds an observer (the server's subscriptions, the daemon's sinks); add them before serving.
    public func observeNewValues(_ observer: @escaping @Sendable (String, Fetched) -> Void) {
        observerBox.withLock { $0.append(NewValueObserver(call: observer)) }
    }

    /// Calls `observer` with the name of every value dropped by a clear from now on: `clear`, `clearAll` (once
    /// per name) or a peer's clear (`applyClear`), after the entry's lock is released; it must not block.
    public func observeClears(_ observer: @escaping @Sendable (String) -> Void) {
        clearObserverBox.withLock { $0.append(ClearObserver(call: observer)) }
    }

    /// Calls `observer` after every reload, once the new expirables are in place, with what the reload did; it
    /// must not block. (The server ends the subscriptions to names a reload removed.)
    public func observeReloads(_ observer: @escaping @Sendable (ReloadReport) -> Void) {
        reloadObserverBox.withLock { $0.append(ReloadObserver(call: observer)) }
    }

    /// Calls `observer` with every call of this node's plugin that ends from now on (not a fetch a peer answered:
    /// `CallRecord.Route`), under the configured name (a keyed family's, for its members), after the entry's lock
    /// is released; it must not block. One observer; call once.
    public func observeCalls(_ observer: @escaping @Sendable (String, CallRecord) -> Void) {
        callObserverBox.withLock { $0 = CallObserver(call: observer) }
    }

    func announceNewValue(_ name: String, _ fetched: Fetched) {
        for observer in observerBox.withLock({ $0 }) { observer.call(name, fetched) }
    }

    func announceClear(_ name: String) {
        for observer in clearObserverBox.withLock({ $0 }) { observer.call(name) }
    }

    func announceReload(_ report: ReloadReport) {
        for observer in reloadObserverBox.withLock({ $0 }) { observer.call(report) }
    }

    /// The replicator, for cluster-scoped entries only.
    func replicator(for entry: Entry) -> (any Replicator)? {
        entry.scope == .cluster ? replicatorSlot.current : nil
    }

    // MARK: Reading

    /// The value of `name` if one is stored and valid, without waiting and without calling a plugin.
    public func cachedValue(_ name: String) -> Fetched? {
        if let entry = entryTable[name] { return cachedValue(entry) }
        guard !families.isEmpty, let (family, key) = familyAndKey(name) else { return nil }
        return Array(key.utf8).withUnsafeBytes { cachedValue(family, key: $0) }
    }

    /// `cachedValue(_:)` for a name given as UTF-8 bytes, such as a slice of a receive buffer: no String made.
    /// A keyed family's compact member's value is copied into a new `Secret`; `withCachedValue` copies nothing.
    public func cachedValue(utf8 name: UnsafeRawBufferPointer) -> Fetched? {
        let table = self.table
        if let entry = table.nameTable.entry(name) { return cachedValue(entry) }
        guard let (family, key, _) = table.family(utf8: name) else { return nil }
        return cachedValue(family, key: key)
    }

    /// Calls `body` with the bytes of `name`'s stored valid value, if there is one, and returns whether it did.
    /// This is the hot path of GET: two lookups by bytes (the name; for `NAME:KEY`, the family then the key),
    /// one short lock, no allocation. The bytes must not escape `body`, which may run under a lock and must
    /// not call the engine.
    public func withCachedValue(utf8 name: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer) -> Void) -> Bool {
        let table = self.table
        if let entry = table.nameTable.entry(name) {
            guard let fetched = cachedValue(entry) else { return false }
            fetched.value.withUnsafeBytes(body)
            return true
        }
        guard let (family, key, _) = table.family(utf8: name) else { return false }
        return withCachedValue(family, key: key, body)
    }

    /// `withCachedValue(utf8:_:)` for a keyed family's member.
    func withCachedValue(_ family: Family, key: UnsafeRawBufferPointer, hash: UInt64? = nil, _ body: (UnsafeRawBufferPointer) -> Void) -> Bool {
        switch family.read(key, hash: hash, now: clock.monotonicNanos, { bytes, _, _ in body(bytes) }) {
        case .answered: return true
        case .none: return false
        case .whole(let entry):
            guard let fetched = cachedValue(entry) else { return false }
            fetched.value.withUnsafeBytes(body)
            return true
        }
    }

    private func cachedValue(_ family: Family, key: UnsafeRawBufferPointer) -> Fetched? {
        switch family.read(key, now: clock.monotonicNanos, Family.fetched) {
        case .answered(let fetched): return fetched
        case .none: return nil
        case .whole(let entry): return cachedValue(entry)
        }
    }

    func cachedValue(_ entry: Entry) -> Fetched? {
        let now = clock.monotonicNanos
        if entry.family != nil { entry.read(at: now) }
        return entry.state.withLock { s in
            guard s.isValid(at: now) else { return nil }
            s.counters.hits &+= 1
            return s.value
        }
    }

    /// Answers `name`'s value: from memory if valid, otherwise from the one plugin call that all concurrent
    /// callers share. `completion` runs exactly once, possibly on the calling thread.
    ///
    /// - Parameters:
    ///   - minimumValidity: a valid value with less than this left is not answered: the caller shares a new
    ///     call (started at once, or paced) while plain readers keep getting the current value.
    ///   - patience: how long the caller will wait for a call to start. A caller that would wait longer for a
    ///     paced attempt (§3.17) gets the last error at once, with the time of the next attempt. Nil: any time.
    ///     A plugin's retry-after (§3.18) is never waited for: every caller until then gets the error with its time.
    ///   - trigger: what a call this fetch starts is recorded as (`explain`): a reader, or the prefetch at start.
    public func fetch(_ name: String, minimumValidity: Duration? = nil, patience: Duration? = nil, trigger: CallRecord.Trigger = .reader,
                      completion: @escaping @Sendable (Result<Fetched, ExpirableError>) -> Void) {
        let wanted = minimumValidity.map { UInt64(max(0, $0.nanoseconds)) } ?? 0
        // A compact member of a keyed family with enough validity answers without being made whole.
        if entryTable[name] == nil, !families.isEmpty, let (family, key) = familyAndKey(name), family.compacts {
            let bytes = Array(key.utf8)
            let read = bytes.withUnsafeBytes { key in
                family.read(key, now: clock.monotonicNanos, leastLeft: wanted, Family.fetched)
            }
            if case .answered(let fetched) = read { return completion(.success(fetched)) }
        }
        guard let entry = entry(creating: name) else { return completion(.failure(notFound(name))) }
        fetch(entry, name: name, wanted: wanted, minimumValidity: minimumValidity, patience: patience, trigger: trigger, completion: completion)
    }

    /// `fetch(_:minimumValidity:patience:completion:)` once `name`'s entry is found.
    private func fetch(_ entry: Entry, name: String, wanted: UInt64, minimumValidity: Duration?, patience: Duration?, trigger: CallRecord.Trigger = .reader,
                       completion: @escaping @Sendable (Result<Fetched, ExpirableError>) -> Void) {
        let now = clock.monotonicNanos
        if entry.family != nil { entry.read(at: now) }
        let wall = clock.unixMillis
        let patienceNanos = patience.map { UInt64(max(0, $0.nanoseconds)) } ?? .max
        enum Action { case answer(Result<Fetched, ExpirableError>), wait, call(UInt64), again, moved(Entry) }
        let action: Action = entry.state.withLock { s in
            // Moved by a reload since it was looked up: go on with the entry it moved to.
            if let successor = s.successor { return .moved(successor) }
            // Made compact or evicted since it was looked up: look again.
            if s.detached { return .again }
            var earliest = s.nextAttempt
            if s.isValid(at: now), let value = s.value {
                if s.freshUntil == .max || s.freshUntil - now >= wanted {
                    s.counters.hits &+= 1
                    return .answer(.success(value))
                }
                // A newer value for a caller who needs more validity: never more than one call a second.
                earliest = max(earliest, (s.lastCallStart ?? 0) &+ UInt64(Engine.minimumRefreshInterval.nanoseconds))
            }
            s.counters.misses &+= 1
            if s.flight?.scheduled == nil && s.flight != nil {
                // A call is under way: share it (or, after a clear, the one that follows it).
                if s.flight!.generation == s.generation {
                    s.flight!.waiters.append(completion)
                } else {
                    s.nextWaiters.append(completion)
                }
                return .wait
            }
            let startsAt = s.flight?.scheduled?.at ?? earliest
            if startsAt > now {
                if s.isStaleServable(at: now, staleIfError: entry.staleNanos), let value = s.value {
                    s.counters.staleAnswers &+= 1
                    return .answer(.success(value.markedStale()))
                }
                // A plugin's retry-after is not waited out: callers get the error with its time at once (SPEC
                // §3.18). Plain pacing (§3.17) is, within the caller's patience.
                let heldByPlugin = s.lastFailure?.retryAfter.map { $0 > wall } ?? false
                if startsAt - now > patienceNanos || heldByPlugin, let failure = s.lastFailure {
                    let wait = Int64((startsAt - now) / 1_000_000)
                    return .answer(.failure(failure.withNextAttempt(inMillis: wait, unixMillis: wall + wait)))
                }
            }
            if s.flight != nil {
                s.flight!.waiters.append(completion)
                return .wait
            }
            if startsAt > now {
                schedulePacedCall(entry, &s, waiters: [completion], at: startsAt, now: now)
                return .wait
            }
            s.flight = Entry.Flight(waiters: [completion], generation: s.generation)
            startingCall(&s, now: now, trigger: trigger)
            return .call(s.generation)
        }
        switch action {
        case .answer(let result): completion(result)
        case .wait: break
        case .call(let generation): call(entry, generation: generation)
        case .again: fetch(name, minimumValidity: minimumValidity, patience: patience, completion: completion)
        case .moved(let successor):
            fetch(successor, name: name, wanted: wanted, minimumValidity: minimumValidity, patience: patience, completion: completion)
        }
    }

    /// Async form of `fetch(_:minimumValidity:patience:completion:)`.
    public func fetch(_ name: String, minimumValidity: Duration? = nil, patience: Duration? = nil) async throws(ExpirableError) -> Fetched {
        let result = await withCheckedContinuation { continuation in
            fetch(name, minimumValidity: minimumValidity, patience: patience) { continuation.resume(returning: $0) }
        }
        return try result.get()
    }

    // MARK: Clearing

    /// Drops `name`'s value and stops its eager refresh; the next fetch calls the plugin. A call already under
    /// way still answers its callers, but its result is not stored. Returns false if `name` is not configured.
    @discardableResult
    public func clear(_ name: String) -> Bool {
        clear(name, logged: true)
    }

    /// `clear(_:)`; a family's members, cleared together, are logged as one line, not one a key (a family of
    /// 100,000 keys would put every key in the log).
    private func clear(_ name: String, logged: Bool) -> Bool {
        if let family = families[name] {
            let keys = family.keys
            for key in keys { clear(name + ":" + key, logged: false) }
            logger.info("cleared", metadata: ["expirable": "\(name)", "members": "\(keys.count)"])
            return true
        }
        var entry: Entry
        var version: Version?
        if let plain = entryTable[name] {
            entry = plain
            version = replicator(for: entry)?.nextVersion()
        } else {
            guard let (family, key) = familyAndKey(name) else { return false }
            let replicator = family.definition.scope == .cluster ? replicatorSlot.current : nil
            version = replicator?.nextVersion()
            switch family.clear(key, version: version) {
            case .missing, .stale: return true
            case .applied:
                if let replicator, let version { replicator.cleared(name, version: version) }
                announceClear(name)
                if logged { logger.info("cleared", metadata: ["expirable": "\(name)"]) }
                return true
            case .whole(let member): entry = member
            }
        }
        let replicator = replicator(for: entry)
        var outcome: (resumed: UInt64?, detached: Bool, successor: Entry?)
        repeat {
            outcome = entry.state.withLock { s in
                if s.detached { return (nil, true, s.successor) }
                Engine.drop(&s)
                s.version = version
                return (startScheduledCall(&s, now: clock.monotonicNanos), false, nil)
            }
            // Moved by a reload since it was looked up: clear the entry it moved to.
            if let successor = outcome.successor { entry = successor }
        } while outcome.successor != nil
        // Made compact or evicted since it was looked up: clear what is there now.
        if outcome.detached { return clear(name, logged: logged) }
        if let resumed = outcome.resumed { call(entry, generation: resumed) }
        // A family's member left with nothing to keep leaves the family, so its `keys` counts what is held.
        if let family = entry.family, family.removeCleared(entry) { retire(entry, reason: "cleared") }
        if let replicator, let version { replicator.cleared(name, version: version) }
        announceClear(name)
        if logged { logger.info("cleared", metadata: ["expirable": "\(name)"]) }
        return true
    }

    /// Forgets the value, its refresh and its pacing: a clear is the operator's "try again now".
    static func drop(_ s: inout Entry.State) {
        s.value = nil
        s.deadline = 0
        s.freshUntil = 0
        s.generation &+= 1
        s.failures = 0
        s.nextAttempt = 0
        s.permanentFailure = false
        s.lastFailure = nil
        s.cancelRefresh()
    }

    /// Clears every expirable.
    public func clearAll() {
        for name in names { clear(name) }
    }

    /// Stops every eager refresh timer; used when the daemon shuts down. Values stay readable.
    public func shutdown() {
        for entry in entryTable.values { entry.state.withLock { $0.cancelRefresh() } }
        for family in families.values {
            for entry in family.wholeMembers { entry.state.withLock { $0.cancelRefresh() } }
        }
    }

    /// Every whole entry: the configured ones and the keyed families' members that are not compact.
    var allEntries: [Entry] {
        names.flatMap { name -> [Entry] in
            if let family = families[name] { return family.wholeMembers }
            return entryTable[name].map { [$0] } ?? []
        }
    }

    // MARK: Plugin calls

    /// Bookkeeping for a call about to start; caller holds the lock.
    func startingCall(_ s: inout Entry.State, now: UInt64, trigger: CallRecord.Trigger) {
        s.lastCallStart = now
        s.callTrigger = trigger
        // A saved state that cannot be used refuses the call before the plugin (`call`): not a plugin call.
        if !s.fetcherCountsCalls && s.stateError == nil { s.counters.pluginCalls &+= 1 }
    }

    /// Counts a call of this node's plugin made by a `ForwardingFetcher` for `name` (a keyed family's member
    /// under its full name).
    public func countPluginCall(_ name: String) {
        if let entry = entryTable[name] {
            entry.state.withLock { $0.counters.pluginCalls &+= 1 }
        } else if let (family, key) = familyAndKey(name) {
            family.countPluginCall(key)
        }
    }

    /// Records the fetch that just ended in `s`'s history; caller holds the lock, before any follow-up starts.
    func recordCall(_ entry: Entry, _ s: inout Entry.State, result: Result<Fetched, ExpirableError>, route: CallRecord.Route,
                    now: UInt64, wall: Int64) -> CallRecord {
        let duration = now - min(now, s.lastCallStart ?? now)
        let outcome: CallRecord.Outcome
        var code: ExpirableError.Code?
        switch result {
        case .success: outcome = .success
        case .failure(let error):
            outcome = error.errorClass == .permanent ? .permanent : .temporary
            code = error.code
        }
        let record = CallRecord(startedAtMillis: wall - Int64(duration / 1_000_000), durationNanos: duration, outcome: outcome,
                                trigger: s.callTrigger, errorCode: code, route: route)
        s.history.record(record, keepOlder: entry.family == nil)
        return record
    }

    func call(_ entry: Entry, generation: UInt64) {
        let (state, refusal) = entry.state.withLock { ($0.pluginState, $0.stateError) }
        if let refusal {
            complete(entry, generation: generation, result: .failure(refusal), route: .notCalled)
            return
        }
        // A result that comes after its caller was answered TIMEOUT still brings the state the call set (§3.20).
        let request = FetchRequest(state: state, lateState: { [self] in applyStateChange($0, to: entry) })
        entry.fetcher.fetch(request) { [self] outcome in
            applyStateChange(outcome.state, to: entry)
            complete(entry, generation: generation, result: outcome.result, route: outcome.route)
        }
    }

    /// Keeps what a call did to the plugin's state, whatever became of its result (cleared meanwhile, failed):
    /// the identity provider may have consumed the old state. Then tells the state keeper and the cluster.
    func applyStateChange(_ change: StateChange, to entry: Entry) {
        let state: Secret?
        switch change {
        case .keep: return
        case .set(let secret): state = secret
        case .clear: state = nil
        }
        let replicator = replicator(for: entry)
        let version = replicator?.nextVersion()
        var target = entry
        // A reload may have moved the entry meanwhile: the state goes where its value went.
        while let successor = target.state.withLock({ s -> Entry? in
            if s.successor == nil {
                s.pluginState = state
                if let version { s.stateVersion = version }
            }
            return s.successor
        }) { target = successor }
        // A reload replaced the entry with an empty one meanwhile, which took the state as it was: the new
        // state goes there too, or its next call would present a spent refresh token.
        if entry.family == nil, target.state.withLock({ $0.droppedByReload }), let current = entryTable[entry.name], current !== target {
            current.state.withLock { s in
                s.pluginState = state
                if let version { s.stateVersion = version }
            }
        }
        stateKeeperBox.withLock { $0 }?.stateChanged(entry.name, state)
        if let replicator, let version { replicator.stateChanged(entry.name, state, version: version) }
    }

    private func complete(_ entry: Entry, generation: UInt64, result fetchedResult: Result<Fetched, ExpirableError>, route: CallRecord.Route) {
        let now = clock.monotonicNanos
        let wall = clock.unixMillis
        let replicator = replicator(for: entry)
        var result = fetchedResult
        // A value this node's plugin fetched gets a new version, to be sent to the peers once stored.
        var announce: (Fetched, Int64?, Version)?
        var stored = false
        var finished: CallRecord?
        var movedTo: Entry?
        /// Why a success is not stored and paces the next call: its value had (next to) no life left.
        var unusable: ExpirableError?
        let (waiters, answer, followUp): ([Entry.Completion], Result<Fetched, ExpirableError>, UInt64?) = entry.state.withLock { s in
            // A reload moved the call and its callers to a new entry for the same plugin and params.
            if let successor = s.successor {
                movedTo = successor
                return ([], result, nil)
            }
            let waiters = s.flight?.waiters ?? []
            s.flight = nil
            if case .success(let fetched) = result, fetched.isStale {
                // The owner answered its expired value, marked stale, because its refetch failed (§3.16): passed
                // on as it is, never stored, and no pacing here (the owner paces).
                s.counters.staleAnswers &+= UInt64(waiters.count)
            } else if case .success(let fetched) = result {
                let deadline = Engine.deadline(of: fetched, now: now, wall: wall)
                let freshUntil = deadline == .max ? deadline : deadline - min(deadline, entry.marginNanos)
                if entry.marginNanos > 0 && freshUntil <= now {
                    // Never hand out a value with less than the margin left (§3.13): it is a failed call.
                    let left = Int64((deadline - min(deadline, now)) / 1_000_000)
                    result = .failure(.fetch(
                        "\(entry.name): the plugin's value has \(left) ms left, less than expiry_margin (\(entry.freshness.expiryMargin.milliseconds) ms); lower expiry_margin or have the issuer grant longer lifetimes"
                    ))
                } else if freshUntil < now &+ Engine.minimumUsableLifetime {
                    // Expired on arrival, or about to be: answered to this call's callers but not stored (§3.6), and
                    // the next call paced as after a failure (§3.9, §3.17), or every reader would call at once.
                    unusable = .fetch(Engine.unusableLifetime(entry.name, fetched: fetched, deadline: deadline, margin: entry.marginNanos, now: now, wall: wall))
                } else {
                    s.lastError = nil
                    s.failures = 0
                    s.nextAttempt = 0
                    s.permanentFailure = false
                    s.lastFailure = nil
                    if generation == s.generation && deadline > now {
                        if fetched.replicaVersion != nil {
                            // The owner's answer to a forwarded fetch: in by the same route as replication.
                            stored = admitReplica(fetched, into: entry, &s, now: now) == .stored
                        } else {
                            if let replicator {
                                let version = replicator.nextVersion()
                                s.version = version
                                announce = (fetched, Engine.remainingMillis(until: deadline, now: now), version)
                            }
                            store(fetched, deadline: deadline, in: entry, &s, now: now)
                            stored = true
                        }
                    }
                }
            }
            var answer = result
            finished = recordCall(entry, &s, result: result, route: route, now: now, wall: wall)
            if let unusable {
                s.lastError = unusable.description
                failed(entry, &s, error: unusable, generation: generation, now: now, wall: wall)
            }
            if case .failure(let error) = result {
                s.lastError = error.description
                s.counters.failures &+= 1
                if error.errorClass == .permanent { s.counters.permanentFailures &+= 1 }
                failed(entry, &s, error: error, generation: generation, now: now, wall: wall)
                // A retry-after holds every call until then: this call's callers are told when, as later ones are.
                if generation == s.generation, let retryAfter = error.retryAfter, retryAfter > wall, s.nextAttempt > now {
                    let wait = Int64((s.nextAttempt - now) / 1_000_000)
                    answer = .failure(error.withNextAttempt(inMillis: wait, unixMillis: wall + wait))
                }
                if generation == s.generation, s.isStaleServable(at: now, staleIfError: entry.staleNanos), let value = s.value {
                    answer = .success(value.markedStale())
                    s.counters.staleAnswers &+= UInt64(waiters.count)
                }
            }
            guard !s.nextWaiters.isEmpty else { return (waiters, answer, nil) }
            s.flight = Entry.Flight(waiters: s.nextWaiters, generation: s.generation)
            s.nextWaiters = []
            startingCall(&s, now: now, trigger: .afterClear)
            return (waiters, answer, s.generation)
        }
        if let movedTo { return complete(movedTo, generation: generation, result: fetchedResult, route: route) }
        if let unusable {
            logger.warning("plugin value unusable; not stored, next call paced", metadata: ["expirable": "\(entry.name)", "error": "\(unusable)"])
        }
        if case .failure(let error) = result { logFailure(entry, error) }
        if let replicator, let (fetched, remaining, version) = announce {
            replicator.stored(entry.name, fetched, remainingMillis: remaining, version: version)
        }
        if stored, case .success(let fetched) = result { announceNewValue(entry.name, fetched) }
        if let finished, finished.isPluginCall, let observer = callObserverBox.withLock({ $0 }) {
            observer.call(entry.family?.name ?? entry.name, finished)
        }
        for waiter in waiters { waiter(answer) }
        if let followUp {
            call(entry, generation: followUp)
        } else if let family = entry.family {
            family.makeCompact(entry)
            for gone in family.trim(near: entry) { retire(gone, reason: "evicted: the family holds max_keys (\(family.policy.maxKeys)) keys") }
        }
    }

    /// Logs a failed call. A keyed family's members share `Family.failureLinesPerSecond` lines a second: pacing is
    /// per key, so a reader who asks for distinct keys that fail would otherwise choose how many lines (and, with
    /// each key and the plugin's words about it, what) go to the log. The lines left out are counted in one line
    /// when their second is over.
    private func logFailure(_ entry: Entry, _ error: ExpirableError) {
        let metadata: Logger.Metadata = ["expirable": "\(entry.name)", "error": "\(error)", "class": "\(error.errorClass.rawValue)"]
        guard let family = entry.family else { return logger.warning("fetch failed", metadata: metadata) }
        let now = clock.monotonicNanos
        let (logged, summaryDue) = family.admitFailureLine(now: now)
        if logged { logger.warning("fetch failed", metadata: metadata) }
        guard let summaryDue else { return }
        let (clock, logger) = (self.clock, self.logger)
        _ = clock.schedule(after: .nanoseconds(Int64(summaryDue - min(summaryDue, now)))) {
            let left = family.takeFailuresNotLogged(now: clock.monotonicNanos)
            logger.warning("more fetch failures of the family's keys, not logged one by one", metadata: [
                "expirable": "\(family.name)", "failures": "\(left)", "limit": "\(Family.failureLinesPerSecond) lines a second",
            ])
        }
    }

    func store(_ fetched: Fetched, deadline: UInt64, in entry: Entry, _ s: inout Entry.State, now: UInt64) {
        s.value = fetched
        s.value!.deadline = deadline
        s.deadline = deadline
        s.freshUntil = deadline == .max ? deadline : deadline - min(deadline, entry.marginNanos)
        s.storedAt = now
        // A value, from this node's plugin or a peer's, ends any pacing.
        s.failures = 0
        s.nextAttempt = 0
        s.permanentFailure = false
        s.lastFailure = nil
        s.cancelRefresh()
        s.refreshDeferred = false
        if deadline != .max { scheduleEagerRefresh(entry, &s, lifetime: deadline - min(deadline, now), now: now) }
    }

    /// Schedules an eager expirable's refresh of the value in `s`, of `lifetime` nanoseconds, `before_expiry`
    /// (with jitter) ahead of its `freshUntil`; nothing for a lazy one. Caller holds the lock.
    func scheduleEagerRefresh(_ entry: Entry, _ s: inout Entry.State, lifetime: UInt64, now: UInt64) {
        guard case .eager(let before) = entry.refresh else { return }
        var lead = before.nanoseconds(ofLifetime: lifetime)
        // In a cluster, early enough that the next owner can still refresh if the owner dies at that moment;
        // the one-second spacing of refreshes keeps this from refreshing short lifetimes more often.
        if let replicator = replicator(for: entry) { lead = max(lead, UInt64(max(0, replicator.takeoverLead.nanoseconds))) }
        let spread = entry.freshness.jitter.nanoseconds(ofLifetime: lifetime)
        if spread > 0 { lead = lead.addingReportingOverflow(min(jitter(spread), spread)).partialValue }
        let target = s.freshUntil - min(s.freshUntil, lead)
        scheduleRefresh(entry, &s, at: target, now: now)
    }

    /// The monotonic deadline of a value: the one it was given on arrival from a peer or when stored, or, for a
    /// plugin's value arriving now, its wall-clock expiry made monotonic.
    static func deadline(of fetched: Fetched, now: UInt64, wall: Int64) -> UInt64 {
        fetched.deadline ?? deadline(of: fetched.expiry, now: now, wall: wall)
    }

    /// Turns a wall-clock expiry into a monotonic deadline, once, when the value arrives.
    static func deadline(of expiry: Expiry, now: UInt64, wall: Int64) -> UInt64 {
        switch expiry {
        case .never:
            return .max
        case .at(let unixMillis):
            let remaining = unixMillis.subtractingReportingOverflow(wall)
            if remaining.overflow { return unixMillis < 0 ? 0 : .max - 1 }
            if remaining.partialValue <= 0 { return 0 }
            let nanos = remaining.partialValue.multipliedReportingOverflow(by: 1_000_000)
            let sum = now.addingReportingOverflow(UInt64(nanos.overflow ? Int64.max : nanos.partialValue))
            return sum.overflow ? .max - 1 : min(sum.partialValue, .max - 1)
        }
    }
}

/// The observer of new values, kept in a struct rather than as a bare closure in the `Mutex`: a function value
/// read out of a generic container through `withLock { $0 }` comes back wrapped in one more pair of
/// reabstraction thunks each time (Swift 6.3), so every announcement got slower than the last and, some 50,000
/// values later, overflowed the stack of the plugin thread that stored the value.
struct NewValueObserver: Sendable {
    let call: @Sendable (String, Fetched) -> Void
}

/// The clear observer, wrapped for the same reason as `NewValueObserver`.
struct ClearObserver: Sendable {
    let call: @Sendable (String) -> Void
}

/// The reload observer, wrapped for the same reason as `NewValueObserver`.
struct ReloadObserver: Sendable {
    let call: @Sendable (ReloadReport) -> Void
}

/// The call observer, wrapped for the same reason as `NewValueObserver`.
struct CallObserver: Sendable {
    let call: @Sendable (String, CallRecord) -> Void
}
