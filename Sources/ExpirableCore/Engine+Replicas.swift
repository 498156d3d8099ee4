/// What the cluster does to the engine: apply values and clears from peers, and read the state to send a
/// peer that (re)joins. Only cluster-scoped expirables take part; the newest version always wins.
///
/// A value made on another node enters an entry by one route, `admitReplica`, whether it came by replication
/// (`applyReplica`) or as the owner's answer to a forwarded fetch (the flight's completion); and validity crosses
/// between nodes by one pair of conversions: `remainingMillis(until:now:)` on the way out (replication, the
/// greeting, answers to forwarded fetches), `deadline(remainingMillis:now:)` on arrival.
extension Engine {
    /// What became of a value from a peer.
    enum ReplicaAdmission {
        /// Stored: its version was newer than the entry's.
        case stored
        /// Its version was newer, but it arrived with no validity left: the older value is dropped.
        case expired
        /// The entry holds a newer version (a newer value, or a newer clear): nothing changed.
        case superseded
    }

    /// The one way a value made on another node enters an entry. Applied only if its version is newer than the
    /// entry's; valid until the deadline it was given on arrival (`Fetched.init(value:remainingMillis:version:receivedOn:)`).
    /// Caller holds the entry's lock.
    func admitReplica(_ fetched: Fetched, into entry: Entry, _ s: inout Entry.State, now: UInt64) -> ReplicaAdmission {
        guard let version = fetched.replicaVersion, s.version.map({ version > $0 }) ?? true else { return .superseded }
        s.version = version
        let deadline = Engine.deadline(of: fetched, now: now, wall: clock.unixMillis)
        guard deadline > now else {
            Engine.drop(&s)
            return .expired
        }
        store(fetched, deadline: deadline, in: entry, &s, now: now)
        return .stored
    }

    /// What a value travels with: its validity left, in milliseconds, measured on this node's monotonic clock
    /// (nil: never expires).
    static func remainingMillis(until deadline: UInt64, now: UInt64) -> Int64? {
        deadline == .max ? nil : Int64((deadline - min(deadline, now)) / 1_000_000)
    }

    /// The deadline, on this node's monotonic clock, of a value arriving at `now` with `remainingMillis` left.
    static func deadline(remainingMillis: Int64?, now: UInt64) -> UInt64 {
        guard let remaining = remainingMillis else { return .max }
        guard remaining > 0 else { return 0 }
        let sum = now.addingReportingOverflow(UInt64(remaining) &* 1_000_000)
        return sum.overflow ? .max - 1 : min(sum.partialValue, .max - 1)
    }

    /// Stores a value a peer fetched (made with `Fetched.init(value:remainingMillis:version:receivedOn:)`), unless
    /// this node already has a newer version (a newer value, or a newer clear). Callers parked on a paced call get
    /// it if it is valid here. Returns whether it was applied.
    @discardableResult
    public func applyReplica(_ name: String, _ replica: Fetched) -> Bool {
        guard let version = replica.replicaVersion else { return false }
        let now = clock.monotonicNanos
        var member: Entry?
        if entryTable[name] == nil, let (family, key) = familyAndKey(name), family.compacts {
            // A keyed member with nothing pending takes the value compact, and a new one is made compact.
            guard family.definition.scope == .cluster else { return false }
            let deadline = Engine.deadline(of: replica, now: now, wall: clock.unixMillis)
            let (change, evicted) = family.applyReplica(key, value: replica.value, expiry: replica.expiry, deadline: deadline, version: version, now: now)
            for entry in evicted { retire(entry, reason: "evicted: the family holds max_keys (\(family.policy.maxKeys)) keys") }
            switch change {
            case .stale, .missing: return false
            case .applied(let stored):
                if stored { announceNewValue(name, replica) }
                return true
            case .whole(let entry): member = entry
            }
        }
        guard let entry = member ?? entry(creating: name), entry.scope == .cluster else { return false }
        let (admission, waiters, resumed, detached): (ReplicaAdmission, [Entry.Completion], UInt64?, Bool) = entry.state.withLock { s in
            if s.detached { return (.superseded, [], nil, true) }
            switch admitReplica(replica, into: entry, &s, now: now) {
            case .superseded: return (.superseded, [], nil, false)
            case .expired: return (.expired, [], startScheduledCall(&s, now: now), false)
            case .stored: return (.stored, s.isValid(at: now) ? takeScheduledWaiters(&s) : [], nil, false)
            }
        }
        // Made compact or evicted since it was looked up: apply it to what is there now.
        if detached { return applyReplica(name, replica) }
        if let resumed { call(entry, generation: resumed) }
        if admission == .stored { announceNewValue(name, replica) }
        for waiter in waiters { waiter(.success(replica)) }
        return admission != .superseded
    }

    /// `applyReplica(_:_:)` for a value valid `remainingMillis` from now on this node's clock.
    @discardableResult
    public func applyReplica(_ name: String, value: Secret, remainingMillis: Int64?, version: Version) -> Bool {
        applyReplica(name, Fetched(value: value, remainingMillis: remainingMillis, version: version, receivedOn: clock))
    }

    /// Answers a fetch a peer forwarded to this node: the engine's single flight as for a local caller, then the
    /// value with what it travels with: the version this node holds for it (nil: none, the value was not stored)
    /// and its validity left.
    public func fetchForPeer(_ name: String, patience: Duration?, completion: @escaping @Sendable (Result<ReplicaAnswer, ExpirableError>) -> Void) {
        fetch(name, patience: patience) { [self] result in
            completion(result.map { fetched in
                let now = clock.monotonicNanos
                let version = entries(name)?.state.withLock { $0.version }
                let remaining = Engine.remainingMillis(until: Engine.deadline(of: fetched, now: now, wall: clock.unixMillis), now: now)
                return ReplicaAnswer(value: fetched.value, version: version, remainingMillis: remaining, isStale: fetched.isStale)
            })
        }
    }

    /// Applies a clear made on a peer, unless this node has something newer. Returns whether it was applied.
    @discardableResult
    public func applyClear(_ name: String, version: Version) -> Bool {
        var member: Entry?
        if entryTable[name] == nil, let (family, key) = familyAndKey(name) {
            guard family.definition.scope == .cluster else { return false }
            switch family.applyClear(key, version: version) {
            case .stale, .missing: return false
            case .applied:
                announceClear(name)
                logger.info("cleared by a peer", metadata: ["expirable": "\(name)", "version": "\(version)"])
                return true
            case .whole(let entry): member = entry
            }
        }
        guard let entry = member ?? entryTable[name], entry.scope == .cluster else { return false }
        let (applied, resumed, detached): (Bool, UInt64?, Bool) = entry.state.withLock { s in
            if s.detached { return (false, nil, true) }
            guard s.version.map({ version > $0 }) ?? true else { return (false, nil, false) }
            Engine.drop(&s)
            s.version = version
            return (true, startScheduledCall(&s, now: clock.monotonicNanos), false)
        }
        if detached { return applyClear(name, version: version) }
        if let resumed { call(entry, generation: resumed) }
        if applied { announceClear(name) }
        if applied { logger.info("cleared by a peer", metadata: ["expirable": "\(name)", "version": "\(version)"]) }
        return applied
    }

    /// The state of every cluster-scoped expirable that has a version: valid values and clears.
    public func replicas() -> [ReplicaState] {
        let now = clock.monotonicNanos
        let compact = families.values.filter { $0.definition.scope == .cluster }.flatMap { $0.compactReplicas(now: now) }
        return compact + allEntries.compactMap { entry in
            let name = entry.name
            guard entry.scope == .cluster else { return nil }
            return entry.state.withLock { s -> ReplicaState? in
                guard let version = s.version else { return nil }
                guard s.isValid(at: now), let value = s.value else {
                    return ReplicaState(name: name, value: nil, remainingMillis: nil, version: version)
                }
                return ReplicaState(name: name, value: value.value, remainingMillis: Engine.remainingMillis(until: s.deadline, now: now), version: version)
            }
        }
    }

    /// The scope of `name`, or nil if it is not configured.
    public func scope(of name: String) -> Scope? {
        if let family = families[name] { return family.definition.scope }
        if let entry = entries(name) { return entry.scope }
        return familyAndKey(name).map { $0.0.definition.scope }
    }

    /// The version of `name`'s current value or last clear, if it has one.
    public func version(of name: String) -> Version? { entries(name)?.state.withLock { $0.version } }
}
