/// What the cluster does to the engine: apply values and clears from peers, and read the state to send a
/// peer that (re)joins. Only cluster-scoped expirables take part; the newest version always wins.
extension Engine {
    /// Stores a value a peer fetched, valid for `remainingMillis` from now (nil: never expires), unless this
    /// node already has a newer version (a newer value, or a newer clear). Returns whether it was applied.
    @discardableResult
    public func applyReplica(_ name: String, value: Secret, remainingMillis: Int64?, version: Version) -> Bool {
        let now = clock.monotonicNanos
        let fetched = Fetched(value: value, remainingMillis: remainingMillis, version: version, unixMillisNow: clock.unixMillis)
        let deadline = Engine.deadline(of: fetched, now: now, wall: clock.unixMillis)
        var member: Entry?
        if entryTable[name] == nil, let (family, key) = familyAndKey(name), family.compacts {
            // A keyed member with nothing pending takes the value compact, and a new one is made compact.
            guard family.definition.scope == .cluster else { return false }
            let (change, evicted) = family.applyReplica(key, value: value, expiry: fetched.expiry, deadline: deadline, version: version, now: now)
            for entry in evicted { retire(entry, reason: "evicted: the family holds max_keys (\(family.policy.maxKeys)) keys") }
            switch change {
            case .stale, .missing: return false
            case .applied(let stored):
                if stored { announceNewValue(name, fetched) }
                return true
            case .whole(let entry): member = entry
            }
        }
        guard let entry = member ?? entry(creating: name), entry.scope == .cluster else { return false }
        let (applied, stored, waiters, resumed, detached): (Bool, Bool, [Entry.Completion], UInt64?, Bool) = entry.state.withLock { s in
            if s.detached { return (false, false, [], nil, true) }
            guard s.version.map({ version > $0 }) ?? true else { return (false, false, [], nil, false) }
            s.version = version
            guard deadline > now else {
                Engine.drop(&s)
                return (true, false, [], startScheduledCall(&s, now: now), false)
            }
            store(fetched, deadline: deadline, in: entry, &s, now: now)
            // Callers parked on a paced call get the peer's value instead, if it is valid here.
            return (true, true, s.isValid(at: now) ? takeScheduledWaiters(&s) : [], nil, false)
        }
        // Made compact or evicted since it was looked up: apply it to what is there now.
        if detached { return applyReplica(name, value: value, remainingMillis: remainingMillis, version: version) }
        if let resumed { call(entry, generation: resumed) }
        if stored { announceNewValue(name, fetched) }
        for waiter in waiters { waiter(.success(fetched)) }
        return applied
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
                let remaining: Int64? = s.deadline == .max ? nil : Int64((s.deadline - now) / 1_000_000)
                return ReplicaState(name: name, value: value.value, remainingMillis: remaining, version: version)
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
