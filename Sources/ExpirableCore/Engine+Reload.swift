import Synchronization

/// The configured expirables at one moment: entries by name, keyed families, the byte-keyed table of the hot
/// path, the sorted names and who may read each (by ordinal, a name's place in `names`). Immutable; a reload
/// makes a new one, with a new `generation`.
final class ExpirableTable: Sendable {
    let entries: [String: Entry]
    let families: [String: Family]
    let nameTable: NameTable<Entry>
    /// Keyed families by the bytes of their names, for `NAME:KEY` read from a receive buffer.
    let familyTable: NameTable<Family>
    let names: [String]
    /// Each name's `allow` list, by ordinal; nil: anyone.
    let readers: [[AccessRule]?]
    let ordinals: [String: Int]
    /// Unique to this table in the process: a `ReadMask` made for another table is recomputed.
    let generation: UInt64

    private static let lastGeneration = Atomic<UInt64>(0)

    /// A table of `expirables`, reusing from `previous` the entry (value, timers, state, counters) or family of
    /// every name in `keeping`.
    init(_ expirables: [ExpirableDefinition], keeping: (previous: ExpirableTable, names: Set<String>)?) {
        var entries: [String: Entry] = [:]
        var families: [String: Family] = [:]
        for definition in expirables {
            precondition(entries[definition.name] == nil && families[definition.name] == nil, "duplicate expirable \(definition.name)")
            let kept = keeping.map { $0.names.contains(definition.name) } ?? false
            if let keyed = definition.keyed {
                families[definition.name] = (kept ? keeping!.previous.families[definition.name] : nil) ?? Family(definition, policy: keyed)
            } else {
                entries[definition.name] = (kept ? keeping!.previous.entries[definition.name] : nil) ?? Entry(definition)
            }
        }
        self.entries = entries
        self.families = families
        names = (Array(entries.keys) + Array(families.keys)).sorted()
        let ordinals = Dictionary(uniqueKeysWithValues: names.enumerated().map { ($0.element, $0.offset) })
        self.ordinals = ordinals
        let byName = Dictionary(expirables.map { ($0.name, $0.readers) }, uniquingKeysWith: { first, _ in first })
        readers = names.map { byName[$0] ?? nil }
        nameTable = NameTable(entries, ordinals: ordinals)
        familyTable = NameTable(families, ordinals: ordinals)
        generation = ExpirableTable.lastGeneration.add(1, ordering: .relaxed).newValue
    }
}

extension ExpirableTable {
    /// The family and the key bytes of `NAME:KEY` given as bytes (the key is not checked: a bad one is never
    /// held, so looking it up finds nothing).
    func family(utf8 name: UnsafeRawBufferPointer) -> (family: Family, key: UnsafeRawBufferPointer, ordinal: Int)? {
        guard !families.isEmpty, let colon = name.firstIndex(of: UInt8(ascii: ":")),
              let found = familyTable.lookup(UnsafeRawBufferPointer(rebasing: name[..<colon])) else { return nil }
        return (found.entry, UnsafeRawBufferPointer(rebasing: name[(colon + 1)...]), found.ordinal)
    }
}

/// Where the engine finds its current table, read on every GET without a lock: an atomic pointer to a table
/// that is never freed while a reader may hold it. A replaced table is kept for a minute after the swap (a
/// reader holds one for a few microseconds), then released.
final class TableSlot: Sendable {
    private let pointer: Atomic<UInt>
    private let retired = Mutex<[(table: ExpirableTable, at: UInt64)]>([])

    init(_ table: ExpirableTable) {
        pointer = Atomic(UInt(bitPattern: Unmanaged.passRetained(table).toOpaque()))
    }

    var current: ExpirableTable {
        Unmanaged<ExpirableTable>.fromOpaque(UnsafeRawPointer(bitPattern: pointer.load(ordering: .acquiring))!).takeUnretainedValue()
    }

    /// Runs `body` on the current table without retaining it (a replaced table lives on for a minute, and
    /// `body` is a read of microseconds): the hot path's way in, one reference count pair cheaper than `current`.
    @inline(__always)
    func withCurrent<R>(_ body: (ExpirableTable) -> R) -> R {
        Unmanaged<ExpirableTable>.fromOpaque(UnsafeRawPointer(bitPattern: pointer.load(ordering: .acquiring))!)._withUnsafeGuaranteedRef(body)
    }

    /// Makes `table` current; the old one is released a minute later (checked at each swap).
    func replace(with table: ExpirableTable, now: UInt64) {
        let new = UInt(bitPattern: Unmanaged.passRetained(table).toOpaque())
        let old = pointer.exchange(new, ordering: .acquiringAndReleasing)
        let oldTable = Unmanaged<ExpirableTable>.fromOpaque(UnsafeRawPointer(bitPattern: old)!)
        retired.withLock { r in
            r.append((oldTable.takeUnretainedValue(), now))
            oldTable.release()  // the array holds it now
            r.removeAll { now - min(now, $0.at) > 60_000_000_000 }
        }
    }

    deinit {
        Unmanaged<ExpirableTable>.fromOpaque(UnsafeRawPointer(bitPattern: pointer.load(ordering: .relaxed))!).release()
    }
}

/// What a reload did, name by name.
public struct ReloadReport: Sendable, Hashable {
    public var added: [String] = []
    /// Every changed name; those in `keptValues` kept their value, the others start empty.
    public var changed: [String] = []
    public var removed: [String] = []
    public var unchanged: [String] = []
    /// The changed names whose plugin and params did not change: their value, plugin state, pacing and counters
    /// were kept, with the new settings applied to them.
    public var keptValues: Set<String> = []
    /// The changed names that start empty with a new plugin instance but kept their plugin state (SPEC §3.20).
    public var keptStates: Set<String> = []

    public init() {}

    /// The changed names that start empty, with a new plugin instance.
    public var startingEmpty: [String] { changed.filter { !keptValues.contains($0) } }

    public var description: String {
        func list(_ names: [String]) -> String { names.isEmpty ? "none" : names.joined(separator: ", ") }
        let changes = changed.map {
            $0 + (keptValues.contains($0) ? " (value kept)"
                : keptStates.contains($0) ? " (new plugin instance, starts empty; plugin state kept)" : " (new plugin instance, starts empty)")
        }
        return "added: \(list(added)); changed: \(list(changes)); removed: \(list(removed)); unchanged: \(list(unchanged))"
    }
}

extension Engine {
    /// Replaces the configured expirables with `expirables` at once (SPEC §10, reload). The entries of names in
    /// `unchanged` are kept as they are, with their values, timers, pacing, state and counters. A name in
    /// `keepingValues` (its plugin and params are as before, other settings changed) gets a new entry with the
    /// new settings, into which its value, plugin state, pacing, counters and any call under way move (a keyed
    /// family's members likewise); the new settings then judge the value: `expiry_margin` its freshness, an
    /// eager refresh is scheduled for it, a lazy one's timer stops. Every other name gets a new, empty entry
    /// (its plugin fetches anew) with the plugin state its old entry held, or for an added name the one the state
    /// keeper saved, and the entries of removed or changed names stop their refresh. A call already
    /// under way on a replaced entry still answers its callers; callers parked on a paced call of a removed name
    /// are told it was removed, those of a name that starts empty fetch from its new entry.
    public func reload(_ expirables: [ExpirableDefinition], unchanged: Set<String>, keepingValues: Set<String> = []) -> ReloadReport {
        let previous = tableSlot.current
        let next = ExpirableTable(expirables, keeping: (previous, unchanged))
        var report = ReloadReport()
        for name in next.names {
            if !previous.names.contains(name) {
                report.added.append(name)
            } else if unchanged.contains(name) {
                report.unchanged.append(name)
            } else {
                report.changed.append(name)
            }
        }
        report.removed = previous.names.filter { !next.names.contains($0) }
        let now = clock.monotonicNanos
        // Moved before the new table is published, so no reader can start a call on an empty new entry; a reader
        // of the old table meanwhile follows the old entry's successor.
        for name in report.changed where keepingValues.contains(name) {
            if let old = previous.entries[name], let new = next.entries[name] {
                move(old, to: new, now: now)
                report.keptValues.insert(name)
            } else if let old = previous.families[name], let new = next.families[name] {
                move(old, to: new, now: now)
                report.keptValues.insert(name)
            }
        }
        // A plugin's state (a rotated refresh token) is the identity provider's, not the instance's: a changed
        // name that starts empty goes on with the state its old entry held, and an added one (back after a reload
        // removed it) reads its saved state, as at start. Calling with the state the file or params began with
        // would present a spent refresh token, and the identity provider revokes the whole family. Set before the
        // table is published, so no call starts without it. (A keyed family's members read theirs when made.)
        let keeper = stateKeeperBox.withLock { $0 }
        for name in report.startingEmpty + report.added {
            guard let new = next.entries[name] else { continue }
            let old = previous.entries[name]?.state.withLock { s in (state: s.pluginState, version: s.stateVersion) }
            if let state = old?.state {
                new.state.withLock { s in
                    s.pluginState = state
                    s.stateVersion = old?.version
                }
                report.keptStates.insert(name)
            } else if let loaded = keeper?.load(name) {
                new.state.withLock { s in
                    switch loaded {
                    case .success(let state): s.pluginState = state
                    case .failure(let error): s.stateError = error
                    }
                    s.stateVersion = old?.version
                }
                if report.changed.contains(name), case .success = loaded { report.keptStates.insert(name) }
            }
        }
        tableSlot.replace(with: next, now: now)
        // A call under way on a dropped entry still answers its callers (and stores its value there, unused);
        // callers parked on a paced call are answered now: a removed name's with the reason, a replaced one's
        // by its new entry, which has no pacing yet.
        var parked: [(name: String, removed: Bool, waiters: [Entry.Completion])] = []
        for name in report.removed + report.startingEmpty {
            let family = previous.families[name]
            let entries = previous.entries[name].map { [$0] } ?? family?.wholeMembers ?? []
            for entry in entries {
                let waiters = entry.state.withLock { s in
                    s.cancelRefresh()
                    s.droppedByReload = true
                    return takeScheduledWaiters(&s)
                }
                let member = entry.family == nil ? name : name + ":" + String(decoding: entry.memberKey, as: UTF8.self)
                if !waiters.isEmpty { parked.append((member, report.removed.contains(name), waiters)) }
            }
            // Read after the entries stopped, so a family's members made compact meanwhile are counted once.
            var counted = family?.retiredCounters ?? ExpirableCounters()
            if let family { counted.add(family.compactFigures(now: now).counters) }
            dropped.drop(name, entries: entries, counted: counted, evictions: family?.evictions ?? 0)
        }
        for (name, removed, waiters) in parked {
            for waiter in waiters {
                if removed {
                    waiter(.failure(.notFound(explaining: "\(name) was removed by a reload of the configuration while this fetch waited for its paced plugin call; `expirablectl list` shows the names")))
                } else {
                    fetch(name, completion: waiter)
                }
            }
        }
        for name in report.added + report.changed {
            if let family = next.families[name] { sweepIdleMembers(family) }
        }
        announceReload(report)
        return report
    }

    /// Moves what `old` holds into `new`, not yet published, and leaves `old` empty, detached and pointing at
    /// `new`: a call under way on `old` completes into `new` and answers its callers from there.
    private func move(_ old: Entry, to new: Entry, now: UInt64) {
        old.state.withLock { s in
            guard s.successor == nil else { return }
            let moved = s
            s.cancelRefresh()
            s.flight?.scheduled?.timer.cancel()
            s.flight = nil
            s.nextWaiters = []
            s.value = nil
            s.deadline = 0
            s.freshUntil = 0
            s.detached = true
            s.successor = new
            new.state.withLock { adopt(moved, into: new, &$0, now: now) }
        }
    }

    /// Moves a keyed family's members into `new`, not yet published: whole members as entries are moved,
    /// compact ones by their value and counts, each with when it was last read, so `key_idle` goes on from there.
    /// `new` applies its own `max_keys`: the least recently read go in first, so a lower limit drops them, as
    /// it would on reads (each member's read time is set before the next one comes in and evicts).
    private func move(_ old: Family, to new: Family, now: UInt64) {
        new.inheritCounts(from: old)
        for key in old.keysByLastUse {
            // The whole member, or a detached copy of a compact one.
            guard let member = old.member(key) else { continue }
            let (entry, evicted) = new.member(creating: key, now: now)
            for gone in evicted { retire(gone, reason: "evicted: the family holds max_keys (\(new.policy.maxKeys)) keys") }
            // A copy holds no call: clearing its flight keeps a raced, detached whole member's callers answered once.
            let copy: Entry.State? = member.state.withLock { s in
                guard s.detached else { return nil }
                var copy = s
                copy.flight = nil
                copy.nextWaiters = []
                return copy
            }
            if let copy {
                entry.state.withLock { adopt(copy, into: entry, &$0, now: now) }
            } else {
                move(member, to: entry, now: now)
            }
            entry.lastUsed.store(member.lastUsed.load(ordering: .relaxed), ordering: .relaxed)
            new.makeCompact(entry)
        }
    }

    /// Puts `moved`, an entry's state under its old settings, into `s`, the state of `entry`, which has the new
    /// ones. Caller holds `entry`'s lock.
    private func adopt(_ moved: Entry.State, into entry: Entry, _ s: inout Entry.State, now: UInt64) {
        let countsCalls = s.fetcherCountsCalls
        s = moved
        s.fetcherCountsCalls = countsCalls
        s.detached = false
        s.successor = nil
        // The old entry's timers are cancelled: the refresh is scheduled again below, a paced call here.
        s.refreshTimer = nil
        s.refreshDue = nil
        s.refreshDeferred = false
        // A permanent error stops eager retries until a clear or a change of configuration (SPEC §3.18): this is
        // such a change, perhaps the fix. Pacing stays, so the retry waits retry_interval after the failed call.
        s.permanentFailure = false
        if let scheduled = s.flight?.scheduled {
            let waiters = s.flight!.waiters
            s.flight = nil
            schedulePacedCall(entry, &s, waiters: waiters, at: scheduled.at, now: now)
        }
        guard s.value != nil else { return }
        s.freshUntil = s.deadline == .max ? .max : s.deadline - min(s.deadline, entry.marginNanos)
        if s.flight == nil, !s.permanentFailure, s.isValid(at: now), s.deadline != .max {
            scheduleEagerRefresh(entry, &s, lifetime: s.deadline - min(s.deadline, s.storedAt), now: now)
        }
    }
}
