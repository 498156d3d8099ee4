import Synchronization

/// One configured expirable's figures for the metrics: a plain expirable's own, or a keyed family's summed over
/// its members (one series per family, whatever its number of keys), or one member's (`memberFigures`, named
/// `NAME:KEY`). Never a value or a plugin state.
public struct ExpirableFigures: Sendable {
    public let name: String
    public let scope: Scope
    /// Set for a keyed family: keys holding a value (members kept without one, for a plugin state or a cluster
    /// clear's version, are not counted), the limit, evictions so far.
    public let family: (keys: Int, maxKeys: Int, evictions: UInt64)?
    /// How many entries are in each state: 1 for a plain expirable's state, the members' spread for a family.
    public let states: [ExpirableStatus.State: Int]
    /// Seconds until the value (for a family, the soonest of its members') stops being handed out; nil when
    /// nothing valid is stored or it never expires.
    public let expiresInSeconds: Double?
    /// Consecutive failed calls (for a family, the most of any member).
    public let consecutiveFailures: Int
    /// Seconds until pacing allows the next call (for a family, the longest wait); nil when not paced.
    public let nextAttemptInSeconds: Double?
    /// Whether a plugin call is under way (for a family, how many).
    public let fetching: Int
    public let counters: ExpirableCounters
}

extension Engine {
    /// Every configured expirable's figures, in name order. Their counters count from the daemon's start, for
    /// the name: what entries that reloads dropped (removed, or replaced by an empty one) had counted included,
    /// so a counter shown from them never goes back (INFO's counts are the current entry's).
    public func figures() -> [ExpirableFigures] {
        names.compactMap { name in
            let before = dropped.total(name)
            if let family = families[name] { return figures(of: family, before: before) }
            guard let status = status(name) else { return nil }
            var counters = before.counters
            counters.add(status.counters)
            return ExpirableFigures(
                name: name, scope: status.scope, family: nil, states: [status.state: 1],
                expiresInSeconds: status.expiresInMillis.map { Double($0) / 1000 },
                consecutiveFailures: status.consecutiveFailures,
                nextAttemptInSeconds: status.nextAttemptInMillis.map { Double($0) / 1000 },
                fetching: status.fetching ? 1 : 0, counters: counters
            )
        }
    }

    private func figures(of family: Family, before: (counters: ExpirableCounters, evictions: UInt64)) -> ExpirableFigures {
        var states: [ExpirableStatus.State: Int] = [:]
        var counters = before.counters
        counters.add(family.retiredCounters)
        var soonest: Int64?
        var failures = 0
        var wait: Int64?
        var fetching = 0
        let compact = family.compactFigures(now: clock.monotonicNanos)
        states.merge(compact.states, uniquingKeysWith: +)
        counters.add(compact.counters)
        soonest = compact.soonestMillis
        for member in family.wholeMembers {
            guard let status = status(member.name) else { continue }
            states[status.state, default: 0] += 1
            counters.add(status.counters)
            if status.state == .valid, let left = status.expiresInMillis { soonest = min(soonest ?? left, left) }
            failures = max(failures, status.consecutiveFailures)
            if let next = status.nextAttemptInMillis { wait = max(wait ?? next, next) }
            if status.fetching { fetching += 1 }
        }
        return ExpirableFigures(
            name: family.name, scope: family.definition.scope, family: (states.values.reduce(0, +) - (states[.empty] ?? 0), family.policy.maxKeys, family.evictions &+ before.evictions),
            states: states, expiresInSeconds: soonest.map { Double($0) / 1000 }, consecutiveFailures: failures,
            nextAttemptInSeconds: wait.map { Double($0) / 1000 }, fetching: fetching, counters: counters
        )
    }
}

/// One member of a keyed family with its own figures, for `metrics_keys` (SPEC §10). Never a value.
public struct MemberFigures: Sendable {
    /// The member's key, as in `NAME:KEY`.
    public let key: String
    /// The member's figures, named `NAME:KEY`.
    public let figures: ExpirableFigures
}

extension Engine {
    /// The figures of each member the keyed family `name` holds (at most its max_keys), in no set order; none
    /// when `name` is not a keyed family.
    public func memberFigures(of name: String) -> [MemberFigures] {
        guard let family = families[name] else { return [] }
        let (compact, whole) = family.members(now: clock.monotonicNanos)
        var members = compact.map { member in
            MemberFigures(key: member.key, figures: ExpirableFigures(
                name: name + ":" + member.key, scope: family.definition.scope, family: nil, states: [member.state: 1],
                expiresInSeconds: member.leftMillis.map { Double($0) / 1000 }, consecutiveFailures: 0,
                nextAttemptInSeconds: nil, fetching: 0, counters: member.counters
            ))
        }
        for entry in whole {
            // Looked up again by name, outside the shard's lock: gone meanwhile (evicted, cleared), it is left out.
            guard let status = status(entry.name) else { continue }
            members.append(MemberFigures(key: String(decoding: entry.memberKey, as: UTF8.self), figures: ExpirableFigures(
                name: entry.name, scope: status.scope, family: nil, states: [status.state: 1],
                expiresInSeconds: status.expiresInMillis.map { Double($0) / 1000 },
                consecutiveFailures: status.consecutiveFailures,
                nextAttemptInSeconds: status.nextAttemptInMillis.map { Double($0) / 1000 },
                fetching: status.fetching ? 1 : 0, counters: status.counters
            )))
        }
        return members
    }
}

/// What the entries reloads dropped (an expirable removed, or replaced by an empty entry with a new plugin
/// instance) had counted, by name, kept for the daemon's life: the metrics' counters of a name go on from there
/// (Prometheus counters never go down in a process), whether the name stays or comes back. An entry whose call
/// was under way when it was dropped still counts that call's end: it is read again until it has none. A few
/// words a name ever configured.
final class DroppedCounts: Sendable {
    private struct Dropped {
        var counters = ExpirableCounters()
        var evictions: UInt64 = 0
        var draining: [Entry] = []
    }

    private let byName = Mutex<[String: Dropped]>([:])

    /// Adds what `entries` (no longer in use) counted, and `counted` and `evictions` (a family's own), to `name`'s.
    func drop(_ name: String, entries: [Entry], counted: ExpirableCounters, evictions: UInt64) {
        byName.withLock { all in
            var dropped = all[name] ?? Dropped()
            dropped.counters.add(counted)
            dropped.evictions &+= evictions
            dropped.draining += entries
            DroppedCounts.fold(&dropped)
            all[name] = dropped
        }
    }

    /// Everything `name`'s dropped entries counted.
    func total(_ name: String) -> (counters: ExpirableCounters, evictions: UInt64) {
        byName.withLock { all in
            guard var dropped = all[name] else { return (ExpirableCounters(), 0) }
            if !dropped.draining.isEmpty {
                DroppedCounts.fold(&dropped)
                all[name] = dropped
            }
            return (dropped.counters, dropped.evictions)
        }
    }

    /// Moves what each draining entry counted into the totals (its counts are zeroed, so each event counts
    /// once), and lets go of those whose call has ended.
    private static func fold(_ dropped: inout Dropped) {
        dropped.draining.removeAll { entry in
            let (counted, busy) = entry.state.withLock { s in
                defer { s.counters = ExpirableCounters() }
                return (s.counters, s.flight != nil || !s.nextWaiters.isEmpty)
            }
            dropped.counters.add(counted)
            return !busy
        }
    }
}
