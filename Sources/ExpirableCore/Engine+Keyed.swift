import Synchronization

/// `keyed = true` (SPEC §3.19): how many keys a family keeps and for how long an unread one stays.
public struct KeyedPolicy: Sendable, Hashable {
    public static let defaultMaxKeys = 10_000
    public static let defaultKeyIdle: Duration = .seconds(3600)

    public var maxKeys: Int
    public var keyIdle: Duration

    public init(maxKeys: Int = KeyedPolicy.defaultMaxKeys, keyIdle: Duration = KeyedPolicy.defaultKeyIdle) {
        self.maxKeys = maxKeys
        self.keyIdle = keyIdle
    }

    /// Whether `key` may follow `NAME:`: 1 to 256 bytes of printable ASCII other than space.
    public static func isValidKey(_ key: some Collection<UInt8>) -> Bool {
        !key.isEmpty && key.count <= 256 && key.allSatisfy { $0 > 0x20 && $0 < 0x7f }
    }
}

/// A keyed family: the configured expirable `NAME`, whose members `NAME:KEY` are made on first use, each an
/// entry of its own (its own value, single flight, expiry, eager refresh, pacing and plugin state), with the
/// family's definition and the key handed to the plugin. At most `maxKeys` members are kept: past it, the least
/// recently read of a random sample of five goes (an approximation of LRU, as Redis makes, so a read costs no
/// bookkeeping beyond one relaxed store; a family of up to 16 members is scanned whole); members unread for `keyIdle` are dropped by a periodic sweep.
final class Family: Sendable {
    let definition: ExpirableDefinition
    let policy: KeyedPolicy
    private struct Members {
        var byKey: [String: (entry: Entry, index: Int)] = [:]
        var order: [String] = []
        var random = SystemRandomNumberGenerator()
        var evicted: UInt64 = 0
        /// The counts of members no longer held, so the family's totals never go back.
        var retired = ExpirableCounters()
    }
    private let members = Mutex(Members())

    init(_ definition: ExpirableDefinition, policy: KeyedPolicy) {
        self.definition = definition
        self.policy = policy
    }

    var name: String { definition.name }

    func member(_ key: String) -> Entry? {
        members.withLock { $0.byKey[key]?.entry }
    }

    /// The member for `key`, made if missing; and the member evicted to make room, if any.
    func member(creating key: String, now: UInt64) -> (entry: Entry, evicted: Entry?) {
        members.withLock { m in
            if let existing = m.byKey[key] { return (existing.entry, nil) }
            var evicted: Entry?
            if m.order.count >= policy.maxKeys, !m.order.isEmpty {
                var oldest: (key: String, used: UInt64)?
                // A small family is scanned whole (exact LRU); a large one sampled.
                let candidates = m.order.count <= 16 ? m.order : (0..<5).map { _ in m.order[Int.random(in: 0..<m.order.count, using: &m.random)] }
                for candidate in candidates {
                    let used = m.byKey[candidate]!.entry.lastUsed.load(ordering: .relaxed)
                    if oldest.map({ used < $0.used }) ?? true { oldest = (candidate, used) }
                }
                if let oldest { evicted = Family.remove(oldest.key, from: &m) }
                m.evicted &+= 1
            }
            let full = ExpirableDefinition(name: name + ":" + key, scope: definition.scope, refresh: definition.refresh,
                                           freshness: definition.freshness, fetcher: KeyedFetcher(base: definition.fetcher, key: key))
            let entry = Entry(full, family: self)
            entry.lastUsed.store(now, ordering: .relaxed)
            m.byKey[key] = (entry, m.order.count)
            m.order.append(key)
            return (entry, evicted)
        }
    }

    /// Members unread since `before` (monotonic), taken out of the family.
    func removeIdle(before: UInt64) -> [Entry] {
        members.withLock { m in
            let idle = m.order.filter { m.byKey[$0]!.entry.lastUsed.load(ordering: .relaxed) < before }
            return idle.compactMap { Family.remove($0, from: &m) }
        }
    }

    var all: [Entry] { members.withLock { m in m.order.map { m.byKey[$0]!.entry } } }
    var count: Int { members.withLock { $0.order.count } }
    var evictions: UInt64 { members.withLock { $0.evicted } }

    func keepCounts(of member: Entry) {
        let counts = member.state.withLock { $0.counters }
        members.withLock { $0.retired.add(counts) }
    }

    var retiredCounters: ExpirableCounters { members.withLock { $0.retired } }

    private static func remove(_ key: String, from m: inout Members) -> Entry? {
        guard let (entry, index) = m.byKey.removeValue(forKey: key) else { return nil }
        let last = m.order.removeLast()
        if index < m.order.count {
            m.order[index] = last
            m.byKey[last]!.index = index
        }
        return entry
    }
}

/// A member's fetcher: the family's, with the key added to every request.
struct KeyedFetcher: Fetcher {
    let base: any Fetcher
    let key: String

    func fetch(_ request: FetchRequest, completion: @escaping @Sendable (FetchOutcome) -> Void) {
        var keyed = request
        keyed.key = key
        base.fetch(keyed, completion: completion)
    }
}

extension Engine {
    /// The family `name` belongs to and its key, when `name` is `FAMILY:KEY` with a valid key.
    func familyAndKey(_ name: String) -> (Family, String)? {
        guard let colon = name.utf8.firstIndex(of: UInt8(ascii: ":")) else { return nil }
        let prefix = String(name[..<colon])
        let key = String(name[name.index(after: colon)...])
        guard let family = families[prefix], KeyedPolicy.isValidKey(key.utf8) else { return nil }
        return (family, key)
    }

    /// `name`'s entry, making a keyed family's member on first use (for fetches and for values from peers;
    /// reads that find nothing make nothing). A member made past `max_keys` evicts another.
    func entry(creating name: String) -> Entry? {
        if let entry = entries(name) { return entry }
        guard let (family, key) = familyAndKey(name) else { return nil }
        let now = clock.monotonicNanos
        let (entry, evicted) = family.member(creating: key, now: now)
        if let evicted { retire(evicted, reason: "evicted: the family holds max_keys (\(family.policy.maxKeys)) keys") }
        if entry.state.withLock({ $0.pluginState == nil && $0.stateError == nil }), let loaded = stateKeeperBox.withLock({ $0 })?.load(entry.name) {
            entry.state.withLock { s in
                switch loaded {
                case .success(let state): s.pluginState = state
                case .failure(let error): s.stateError = error
                }
            }
        }
        return entry
    }

    /// A member taken out of its family: its refresh stops; a call under way still answers its callers.
    func retire(_ entry: Entry, reason: String) {
        entry.state.withLock { $0.cancelRefresh() }
        entry.family?.keepCounts(of: entry)
        logger.debug("keyed member dropped", metadata: ["expirable": "\(entry.name)", "reason": "\(reason)"])
    }

    /// Starts each family's idle sweep: every quarter of `key_idle` (at least a second), members unread for
    /// `key_idle` are dropped with their refresh.
    func sweepIdleMembers(_ family: Family) {
        let every = max(family.policy.keyIdle / 4, .seconds(1))
        _ = clock.schedule(after: every) { [weak self] in
            // A family a reload removed or replaced sweeps no more.
            guard let self, self.families[family.name] === family else { return }
            let now = self.clock.monotonicNanos
            let idle = UInt64(max(0, family.policy.keyIdle.nanoseconds))
            for entry in family.removeIdle(before: now - min(now, idle)) {
                self.retire(entry, reason: "unread for key_idle (\(family.policy.keyIdle))")
            }
            self.sweepIdleMembers(family)
        }
    }

    /// A keyed family's counts for INFO: members held, the limit, evictions so far.
    public func familyInfo(_ name: String) -> (keys: Int, maxKeys: Int, keyIdle: Duration, evictions: UInt64)? {
        guard let family = families[name] else { return nil }
        return (family.count, family.policy.maxKeys, family.policy.keyIdle, family.evictions)
    }

    /// Whether `name` is a keyed family.
    public func isKeyed(_ name: String) -> Bool { families[name] != nil }
}
