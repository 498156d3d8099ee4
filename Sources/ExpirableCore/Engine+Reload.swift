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
    public var changed: [String] = []
    public var removed: [String] = []
    public var unchanged: [String] = []

    public init() {}

    public var description: String {
        func list(_ names: [String]) -> String { names.isEmpty ? "none" : names.joined(separator: ", ") }
        return "added: \(list(added)); changed: \(list(changed)); removed: \(list(removed)); unchanged: \(list(unchanged))"
    }
}

extension Engine {
    /// Replaces the configured expirables with `expirables` at once (SPEC §10, reload). The entries of names in
    /// `unchanged` are kept as they are, with their values, timers, pacing, state and counters; every other name
    /// gets a new entry (its plugin fetches anew), and the entries of removed or changed names stop their
    /// refresh. A call already under way on a replaced entry still answers its callers.
    public func reload(_ expirables: [ExpirableDefinition], unchanged: Set<String>) -> ReloadReport {
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
        tableSlot.replace(with: next, now: clock.monotonicNanos)
        for name in report.removed + report.changed {
            for entry in previous.entries[name].map({ [$0] }) ?? previous.families[name]?.wholeMembers ?? [] {
                entry.state.withLock { $0.cancelRefresh() }
            }
        }
        for name in report.added + report.changed {
            if let family = next.families[name] { sweepIdleMembers(family) }
        }
        return report
    }
}
