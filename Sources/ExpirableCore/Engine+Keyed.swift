import CExpirablePrefetch
import Logging
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

    /// Whether `key` may follow `NAME:`: 1 to 256 bytes of printable ASCII other than space, and not `*` alone,
    /// which names the whole family (`NAME:*`, as LIST shows it).
    public static func isValidKey(_ key: some Collection<UInt8>) -> Bool {
        !key.isEmpty && key.count <= 256 && key.allSatisfy { $0 > 0x20 && $0 < 0x7f } && !(key.count == 1 && key.first == UInt8(ascii: "*"))
    }
}

/// A keyed family: the configured expirable `NAME`, whose members `NAME:KEY` are made on first use, each with
/// its own value, single flight, expiry, eager refresh, pacing and plugin state, the key handed to the plugin.
///
/// Members live in shards (about a thousand members each, up to 64), each an open-addressing table behind its
/// own lock (`KeyTable`). A member with something pending (a call, a timer, a failure, pacing, a plugin
/// state) is a whole `Entry`; once its call is done it is made compact again: a block with its key, deadline,
/// counts and value, some 100 bytes beyond the value instead of a kilobyte, which a read answers from under the
/// shard's lock without allocating. At most `maxKeys` members are kept: past it, the least recently read of a
/// random sample of five in the new member's shard goes (an approximation of LRU, as Redis makes, so a read costs
/// no bookkeeping beyond a store; a shard of up to 16 members is scanned whole); members unread for `keyIdle` are
/// dropped by a periodic sweep.
final class Family: Sendable {
    let definition: ExpirableDefinition
    let policy: KeyedPolicy
    /// Whether members with nothing pending are made compact: not in an eager family, whose members all have
    /// a refresh timer.
    let compacts: Bool
    /// `expiry_margin` in nanoseconds.
    let marginNanos: UInt64
    private let shards: [KeyShard]
    /// Where the shards' slots and compact blocks come from, for a family of `HugePageArena.minimumKeys` or more;
    /// nil: malloc. Each shard's table holds it too, so it outlives them.
    let arena: HugePageArena?
    /// Members held, counting those being made; never more than `maxKeys` (see `reserve`).
    private let held = Atomic<Int>(0)
    private let evicted = Atomic<UInt64>(0)
    /// The counts of members no longer held, so the family's totals never go back.
    private let retired = Mutex(ExpirableCounters())
    /// The node names in compact members' versions, interned: a version costs 10 bytes a member, not 24.
    private let nodes = Mutex<[String]>([])
    /// `fetch failed` lines logged in the second that began at `since` (monotonic), and those left out.
    private let failureLines = Mutex<(since: UInt64, logged: Int, left: Int)>((0, 0, 0))
    /// The `fetch failed` lines a family logs in a second, at most (see `Engine.logFailure`).
    static let failureLinesPerSecond = 10

    init(_ definition: ExpirableDefinition, policy: KeyedPolicy) {
        self.definition = definition
        nameBytes = Array(definition.name.utf8)
        self.policy = policy
        if case .lazy = definition.refresh { compacts = true } else { compacts = false }
        marginNanos = UInt64(max(0, definition.freshness.expiryMargin.nanoseconds))
        // About a thousand members a shard, up to 64 shards: eviction samples within a shard, so a small family
        // keeps one (and is scanned whole up to 16 members).
        var count = 1
        while count < 64 && count * 1024 < policy.maxKeys { count *= 2 }
        // A large family's members and slots come from an arena of huge pages (fewer TLB misses on random keys).
        arena = policy.maxKeys >= HugePageArena.minimumKeys ? HugePageArena() : nil
        shards = (0..<count).map { [arena] _ in KeyShard(arena: arena) }
    }

    var name: String { definition.name }
    /// The name's UTF-8 bytes, compared by a read ahead (`Engine.readAhead`).
    let nameBytes: [UInt8]

    /// The shard of `key` (from the top bits of its hash) and the hash its table uses (the low 32). Hasher is
    /// seeded per process, so keys chosen to collide cannot be precomputed.
    private func locate(_ key: UnsafeRawBufferPointer) -> (KeyShard, UInt32) {
        locate(hash: Family.hash(key))
    }

    /// The hash of `key` that `locate` splits: the same for every family, so a read ahead of a batch can
    /// hand it on to the read (`ReadAhead`).
    static func hash(_ key: UnsafeRawBufferPointer) -> UInt64 {
        var hasher = Hasher()
        hasher.combine(bytes: key)
        return UInt64(UInt(bitPattern: hasher.finalize()))
    }

    private func locate(hash: UInt64) -> (KeyShard, UInt32) {
        (shards[Int(truncatingIfNeeded: hash >> 58) & (shards.count - 1)], UInt32(truncatingIfNeeded: hash))
    }

    // MARK: Reading

    /// Where a read of the key whose `Family.hash` is `hash` will go, its slot prefetched (see `Engine.readAhead`).
    func prefetch(hash: UInt64) -> KeyShard {
        let (shard, low) = locate(hash: hash)
        shard.prefetchSlot(low)
        return shard
    }

    enum Read<R> {
        /// A compact member's valid value, given to the reader's closure.
        case answered(R)
        /// A whole entry: the engine reads it as any other.
        case whole(Entry)
        case none
    }

    /// The hot path: a compact member with a valid value calls `body` with its bytes, expiry and deadline under the
    /// shard's lock (they must not escape it) and counts the hit; a whole entry is handed back.
    /// `hash`, when given, is `Family.hash(key)`, computed ahead.
    func read<R>(_ key: UnsafeRawBufferPointer, hash known: UInt64? = nil, now: UInt64, leastLeft: UInt64 = 0,
                 _ body: (UnsafeRawBufferPointer, Expiry, UInt64) -> R) -> Read<R> {
        let (shard, hash) = locate(hash: known ?? Family.hash(key))
        return shard.withTable { t in
            guard let index = t.find(key, hash: hash), let member = t.member(at: index) else { return .none }
            switch member {
            case .whole(let entry):
                return .whole(entry)
            case .compact(let block):
                let h = block.header
                let freshUntil = self.freshUntil(h.pointee)
                guard h.pointee.hasValue, now < freshUntil, freshUntil == .max || freshUntil - now >= leastLeft else { return .none }
                h.pointee.lastUsed = now
                h.pointee.hits &+= 1
                return .answered(body(block.value, Family.expiry(h.pointee), h.pointee.deadline))
            }
        }
    }

    /// `key`'s entry for reading: the whole one, or a detached copy of a compact member (what changes on the
    /// copy is lost), with the member's `lastUsed`.
    func member(_ key: String) -> Entry? {
        Array(key.utf8).withUnsafeBytes { key in
            let (shard, hash) = locate(key)
            return shard.withTable { t -> Entry? in
                guard let index = t.find(key, hash: hash), let member = t.member(at: index) else { return nil }
                switch member {
                case .whole(let entry): return entry
                case .compact(let block):
                    let copy = makeEntry(key)
                    copy.state.withLock { s in
                        restore(block, into: &s)
                        s.detached = true
                    }
                    copy.lastUsed.store(block.header.pointee.lastUsed, ordering: .relaxed)
                    return copy
                }
            }
        }
    }

    // MARK: Whole entries

    /// The whole entry for `key`: the one held, a compact member made whole again, or a new member (which may
    /// evict others first: they are returned, for the engine to retire).
    func member(creating key: String, now: UInt64) -> (entry: Entry, evicted: [Entry]) {
        let bytes = Array(key.utf8)
        return bytes.withUnsafeBytes { key in
            let (shard, hash) = locate(key)
            if let entry = shard.withTable({ t in makeWhole(&t, key, hash: hash) }) { return (entry, []) }
            // A new member: room first (under other shards' locks), then in, unless another caller put it in
            // meanwhile.
            let evicted = reserve(preferring: shard)
            let (entry, raced) = shard.withTable { t -> (Entry, Bool) in
                if let entry = makeWhole(&t, key, hash: hash) { return (entry, true) }
                let entry = makeEntry(key)
                entry.lastUsed.store(now, ordering: .relaxed)
                t.insert(.whole(entry), hash: hash)
                return (entry, false)
            }
            if raced { held.subtract(1, ordering: .relaxed) }
            return (entry, evicted)
        }
    }

    private func makeWhole(_ t: inout KeyTable, _ key: UnsafeRawBufferPointer, hash: UInt32) -> Entry? {
        guard let index = t.find(key, hash: hash), let member = t.member(at: index) else { return nil }
        switch member {
        case .whole(let entry):
            return entry
        case .compact(let block):
            let entry = makeEntry(key)
            entry.state.withLock { restore(block, into: &$0) }
            entry.lastUsed.store(block.header.pointee.lastUsed, ordering: .relaxed)
            t.replace(at: index, with: .whole(entry))
            return entry
        }
    }

    private func makeEntry(_ key: UnsafeRawBufferPointer) -> Entry {
        let key = String(decoding: key, as: UTF8.self)
        let full = ExpirableDefinition(name: name + ":" + key, scope: definition.scope, refresh: definition.refresh,
                                       freshness: definition.freshness, fetcher: KeyedFetcher(base: definition.fetcher, key: key))
        let entry = Entry(full, family: self, key: Array(key.utf8))
        // The member's fetcher wraps the family's: whether the family's reports its plugin calls itself decides.
        if definition.fetcher is any ForwardingFetcher { entry.state.withLock { $0.fetcherCountsCalls = true } }
        return entry
    }

    /// Counts a plugin call for `key` made by a `ForwardingFetcher` (see `Engine.countPluginCall`).
    func countPluginCall(_ key: String) {
        Array(key.utf8).withUnsafeBytes { key in
            let (shard, hash) = locate(key)
            shard.withTable { t in
                switch t.find(key, hash: hash).flatMap({ t.member(at: $0) }) {
                case .compact(let block)?: block.header.pointee.pluginCalls &+= 1
                case .whole(let entry)?: entry.state.withLock { $0.counters.pluginCalls &+= 1 }
                case nil: break
                }
            }
        }
    }

    /// Makes `entry` compact again if nothing is pending on it and its counts fit; it is then detached, so a
    /// caller still holding it looks the key up again. Takes the shard's lock, then the entry's.
    func makeCompact(_ entry: Entry) {
        guard compacts else { return }
        entry.memberKey.withUnsafeBytes { key in
            let (shard, hash) = locate(key)
            shard.withTable { t in
                guard let index = t.find(key, hash: hash), case .whole(let current)? = t.member(at: index), current === entry else { return }
                let block: CompactBlock? = entry.state.withLock { s in
                    guard Family.isSettled(s), let header = header(of: s, lastUsed: entry.lastUsed.load(ordering: .relaxed)) else { return nil }
                    let block = s.value.map { v in v.value.withUnsafeBytes { t.makeBlock(header, key: key, value: $0) } }
                        ?? t.makeBlock(header, key: key, value: nil)
                    s.detached = true
                    s.value = nil
                    return block
                }
                if let block { t.replace(at: index, with: .compact(block)) }
            }
        }
    }

    /// Whether nothing but the value and its counts is left on a member.
    private static func isSettled(_ s: Entry.State) -> Bool {
        let c = s.counters
        return s.flight == nil && s.nextWaiters.isEmpty && s.refreshTimer == nil && s.refreshDue == nil && !s.refreshDeferred
            && s.failures == 0 && s.nextAttempt == 0 && !s.permanentFailure && s.lastFailure == nil && s.lastError == nil
            && s.pluginState == nil && s.stateError == nil && s.stateVersion == nil && !s.detached
            && c.failures == 0 && c.permanentFailures == 0 && c.refreshes == 0 && c.staleAnswers == 0
            && c.misses <= UInt32.max && c.pluginCalls <= UInt32.max && (s.history.newest?.outcome ?? .success) == .success
            && !(s.value?.isStale ?? false)
    }

    /// The compact header of a settled member; nil when its version's node (or its last call's owner) cannot be
    /// interned.
    private func header(of s: Entry.State, lastUsed: UInt64) -> CompactHeader? {
        var h = CompactHeader()
        if let value = s.value {
            h.deadline = s.deadline
            if case .at(let ms) = value.expiry { h.expiryMillis = ms }
        }
        h.storedAt = s.storedAt
        h.lastUsed = lastUsed
        if let call = s.history.newest, let start = s.lastCallStart {
            h.hasLastCall = true
            h.lastCallStart = start
            h.lastCallMillis = call.startedAtMillis
            h.lastCallNanos = call.durationNanos
            h.lastCallTrigger = Family.code(of: call.trigger)
            h.lastCallRoute = Family.code(of: call.route)
            if case .forwarded(let owner) = call.route {
                guard let node = intern(owner) else { return nil }
                h.lastCallPeer = node
            }
        }
        h.hits = s.counters.hits
        h.misses = UInt32(s.counters.misses)
        h.pluginCalls = UInt32(s.counters.pluginCalls)
        if let version = s.version {
            guard let node = intern(version.node) else { return nil }
            h.versionTime = version.time
            h.versionNode = node
        }
        return h
    }

    /// A compact member's state, into a new entry's.
    private func restore(_ block: CompactBlock, into s: inout Entry.State) {
        let h = block.header.pointee
        if h.hasValue {
            s.value = Family.fetched(block.value, expiry: Family.expiry(h), deadline: h.deadline)
            s.deadline = h.deadline
            s.freshUntil = freshUntil(h)
        }
        s.storedAt = h.storedAt
        if h.hasLastCall {
            let trigger = Family.trigger(h.lastCallTrigger)
            s.lastCallStart = h.lastCallStart
            s.callTrigger = trigger
            s.history.record(CallRecord(startedAtMillis: h.lastCallMillis, durationNanos: h.lastCallNanos, outcome: .success, trigger: trigger,
                                        route: route(h)), keepOlder: false)
        }
        s.counters.hits = h.hits
        s.counters.misses = UInt64(h.misses)
        s.counters.pluginCalls = UInt64(h.pluginCalls)
        s.version = version(h)
    }

    /// A compact member's value as callers get it: copied into a `Secret`, with its deadline on this node.
    static func fetched(_ bytes: UnsafeRawBufferPointer, expiry: Expiry, deadline: UInt64) -> Fetched {
        var fetched = Fetched(value: Secret(copying: bytes), expiry: expiry)
        fetched.deadline = deadline
        return fetched
    }

    private func freshUntil(_ h: CompactHeader) -> UInt64 {
        h.deadline == .max ? .max : h.deadline - min(h.deadline, marginNanos)
    }

    private static func expiry(_ h: CompactHeader) -> Expiry {
        h.deadline == .max ? .never : .at(unixMillis: h.expiryMillis)
    }

    private func version(_ h: CompactHeader) -> Version? {
        guard h.versionNode > 0 else { return nil }
        return Version(time: h.versionTime, node: nodes.withLock { $0[Int(h.versionNode) - 1] })
    }

    private func route(_ h: CompactHeader) -> CallRecord.Route {
        switch h.lastCallRoute {
        case 1 where h.lastCallPeer > 0: .forwarded(to: nodes.withLock { $0[Int(h.lastCallPeer) - 1] })
        case 2: .joined
        case 3: .notCalled
        default: .plugin
        }
    }

    private func intern(_ node: String) -> UInt16? {
        nodes.withLock { n in
            if let index = n.firstIndex(of: node) { return UInt16(index + 1) }
            guard n.count < Int(UInt16.max) else { return nil }
            n.append(node)
            return UInt16(n.count)
        }
    }

    private static func code(of trigger: CallRecord.Trigger) -> UInt8 {
        switch trigger {
        case .reader: 0
        case .refresh: 1
        case .paced: 2
        case .afterClear: 3
        case .prefetch: 4
        }
    }

    private static func code(of route: CallRecord.Route) -> UInt8 {
        switch route {
        case .plugin: 0
        case .forwarded: 1
        case .joined: 2
        case .notCalled: 3
        }
    }

    private static func trigger(_ code: UInt8) -> CallRecord.Trigger {
        switch code {
        case 1: .refresh
        case 2: .paced
        case 3: .afterClear
        case 4: .prefetch
        default: .reader
        }
    }

    // MARK: Compact changes

    enum Change {
        /// Done on the compact member; `stored`: a value was stored.
        case applied(stored: Bool)
        /// The member has something newer.
        case stale
        /// The member is a whole entry: the engine changes it as any other.
        case whole(Entry)
        case missing
    }

    /// Clears a compact member. Without a version it is taken out of the family (its counts go to the family's
    /// totals). Under `version` (a cluster's clear) it stays, valueless with that version, so that a value a peer
    /// made before the clear and sends after it loses to it.
    func clear(_ key: String, version: Version?) -> Change {
        guard let version else { return remove(key) }
        return change(key) { h in
            if let node = intern(version.node) {
                h.versionTime = version.time
                h.versionNode = node
            }
            return nil
        }
    }

    /// Takes a compact member out of the family.
    private func remove(_ key: String) -> Change {
        let bytes = Array(key.utf8)
        return bytes.withUnsafeBytes { key in
            let (shard, hash) = locate(key)
            return shard.withTable { t in
                guard let index = t.find(key, hash: hash), let member = t.member(at: index) else { return .missing }
                if case .whole(let entry) = member { return .whole(entry) }
                _ = take(&t, at: index)
                return .applied(stored: false)
            }
        }
    }

    /// Takes a cleared whole member out of the family when nothing is left on it to keep: no call under way or
    /// waiting for one, no plugin state (SPEC §3.20: a rotating refresh token outlives a clear), no version (a
    /// cluster's clear, kept as `clear(_:version:)` keeps it). Takes the shard's lock, then the entry's; the
    /// member is detached, so a caller still holding it looks the key up again. Returns whether it was taken.
    func removeCleared(_ entry: Entry) -> Bool {
        entry.memberKey.withUnsafeBytes { key in
            let (shard, hash) = locate(key)
            return shard.withTable { t in
                guard let index = t.find(key, hash: hash), case .whole(let current)? = t.member(at: index), current === entry else { return false }
                let bare = entry.state.withLock { s in
                    guard s.value == nil, s.flight == nil, s.nextWaiters.isEmpty, s.pluginState == nil, s.stateError == nil,
                          s.stateVersion == nil, s.version == nil, !s.detached else { return false }
                    s.detached = true
                    return true
                }
                if bare { _ = take(&t, at: index) }
                return bare
            }
        }
    }

    /// A peer's clear, applied to a compact member unless it has a newer version.
    func applyClear(_ key: String, version: Version) -> Change {
        change(key) { h in
            guard isNewer(version, than: h), let node = intern(version.node) else { return .stale }
            h.versionTime = version.time
            h.versionNode = node
            return nil
        }
    }

    /// A peer's value, stored in a compact member (made if missing) unless it has a newer version; an expired
    /// one clears. Returns the whole entries evicted to make room.
    func applyReplica(_ key: String, value: Secret, expiry: Expiry, deadline: UInt64, version: Version, now: UInt64) -> (Change, evicted: [Entry]) {
        guard let node = intern(version.node) else { return (.stale, []) }
        let live = deadline > now
        func stored(_ h: inout CompactHeader) -> Change? {
            guard isNewer(version, than: h) else { return .stale }
            h.versionTime = version.time
            h.versionNode = node
            if live {
                h.deadline = deadline
                if case .at(let ms) = expiry { h.expiryMillis = ms }
                h.storedAt = now
            }
            return nil
        }
        let bytes = Array(key.utf8)
        return bytes.withUnsafeBytes { key in
            let (shard, hash) = locate(key)
            var evicted: [Entry] = []
            var reserved = false
            while true {
                let change = shard.withTable { t -> Change? in
                    guard let index = t.find(key, hash: hash), let member = t.member(at: index) else {
                        guard reserved else { return nil }
                        var h = CompactHeader()
                        h.lastUsed = now
                        _ = stored(&h)
                        let block = value.withUnsafeBytes { t.makeBlock(h, key: key, value: live ? $0 : nil) }
                        t.insert(.compact(block), hash: hash)
                        reserved = false
                        return .applied(stored: live)
                    }
                    guard case .compact(let block) = member else {
                        if case .whole(let entry) = member { return .whole(entry) }
                        return .missing
                    }
                    var h = block.header.pointee
                    if let refused = stored(&h) { return refused }
                    let replacement = value.withUnsafeBytes { t.makeBlock(h, key: key, value: live ? $0 : nil) }
                    t.replace(at: index, with: .compact(replacement))
                    return .applied(stored: live)
                }
                if let change {
                    if reserved { held.subtract(1, ordering: .relaxed) }
                    return (change, evicted)
                }
                evicted += reserve(preferring: shard)
                reserved = true
            }
        }
    }

    /// Runs `body` on a compact member's header; a nil answer makes the member valueless with that header.
    private func change(_ key: String, _ body: (inout CompactHeader) -> Change?) -> Change {
        let bytes = Array(key.utf8)
        return bytes.withUnsafeBytes { key in
            let (shard, hash) = locate(key)
            return shard.withTable { t in
                guard let index = t.find(key, hash: hash), let member = t.member(at: index) else { return .missing }
                switch member {
                case .whole(let entry):
                    return .whole(entry)
                case .compact(let block):
                    var h = block.header.pointee
                    if let refused = body(&h) { return refused }
                    h.deadline = 0
                    let emptied = t.makeBlock(h, key: key, value: nil)
                    t.replace(at: index, with: .compact(emptied))
                    return .applied(stored: false)
                }
            }
        }
    }

    private func isNewer(_ version: Version, than h: CompactHeader) -> Bool {
        self.version(h).map { version > $0 } ?? true
    }

    // MARK: Room and idleness

    /// Counts one more member, evicting first while the family is full. Past `maxKeys` only when nothing can
    /// be evicted (every other member is being made at this moment).
    private func reserve(preferring shard: KeyShard) -> [Entry] {
        var evicted: [Entry] = []
        while true {
            let current = held.load(ordering: .relaxed)
            if current < policy.maxKeys {
                if held.compareExchange(expected: current, desired: current + 1, ordering: .relaxed).exchanged { return evicted }
                continue
            }
            guard let out = evictOne(preferring: shard) else {
                held.add(1, ordering: .relaxed)
                return evicted
            }
            if let entry = out { evicted.append(entry) }
        }
    }

    /// Evicts back down to `maxKeys` once the calls that took the family past it (`reserve` lets it pass while
    /// every member is busy) are over: called as each call ends, so a family does not stay past its limit until
    /// its next new key. `near`: the member whose call ended, whose shard is sampled first. Returns the whole
    /// entries taken, for the engine to retire.
    func trim(near member: Entry) -> [Entry] {
        guard held.load(ordering: .relaxed) > policy.maxKeys else { return [] }
        let shard = member.memberKey.withUnsafeBytes { locate($0).0 }
        var evicted: [Entry] = []
        while held.load(ordering: .relaxed) > policy.maxKeys, let out = evictOne(preferring: shard) {
            if let entry = out { evicted.append(entry) }
        }
        return evicted
    }

    /// Takes out the least recently read of a sample (of all, up to 16 members). Returns nil when there was
    /// nothing to take, `.some(nil)` for a compact member (freed here), the entry for a whole one.
    ///
    /// A member with a call in flight is never taken: a reader of its key would make a new member whose call
    /// starts from the state the one in flight was given (a refresh token used twice: the identity provider
    /// revokes its family). A member holding a plugin state is taken only when the sample has none without
    /// one: without `state_dir` its state goes with it. Takes the shard's lock, then entries'.
    private func evictOne(preferring preferred: KeyShard) -> Entry?? {
        let start = shards.firstIndex { $0 === preferred } ?? 0
        for step in 0..<shards.count {
            let shard = shards[(start + step) % shards.count]
            let out: Entry?? = shard.withTable { t in
                guard t.count > 0 else { return nil }
                var random = SystemRandomNumberGenerator()
                var oldest: (index: Int, used: UInt64)?
                var oldestWithState: (index: Int, used: UInt64)?
                func consider(_ index: Int) {
                    let member = t.member(at: index)
                    guard let used = lastUsed(member) else { return }
                    if case .whole(let entry)? = member {
                        let (busy, stateful) = entry.state.withLock { s in
                            (s.flight != nil || !s.nextWaiters.isEmpty, s.pluginState != nil)
                        }
                        if busy { return }
                        if stateful {
                            if oldestWithState.map({ used < $0.used }) ?? true { oldestWithState = (index, used) }
                            return
                        }
                    }
                    if oldest.map({ used < $0.used }) ?? true { oldest = (index, used) }
                }
                if t.count <= 16 {
                    for index in 0..<t.capacity { consider(index) }
                } else {
                    var sampled = 0
                    while sampled < 5 {
                        let index = Int.random(in: 0..<t.capacity, using: &random)
                        if t.member(at: index) != nil {
                            consider(index)
                            sampled += 1
                        }
                    }
                }
                // Its call may have started since it was considered: then nothing is taken here.
                guard let chosen = oldest ?? oldestWithState, Family.claim(t.member(at: chosen.index)) else { return nil }
                return .some(take(&t, at: chosen.index))
            }
            if let out {
                evicted.add(1, ordering: .relaxed)
                return out
            }
        }
        return nil
    }

    /// Claims `member` for taking out unless it has a call in flight or callers waiting for one (never evicted
    /// nor swept): a whole entry is detached under its own lock in the same step as the check, so a caller who
    /// looked it up before and is about to start its call sees `detached` and looks again, and one who started
    /// its call first keeps it in the table. (Checked and detached apart, a call could start between the two on
    /// an entry no longer in the table, and the next reader of its key would start a second one.) A compact
    /// member has no call: it is made whole under the shard's lock, which the caller holds.
    private static func claim(_ member: KeyTable.Member?) -> Bool {
        guard case .whole(let entry)? = member else { return true }
        return entry.state.withLock { s in
            if s.flight != nil || !s.nextWaiters.isEmpty { return false }
            s.detached = true
            return true
        }
    }

    private func lastUsed(_ member: KeyTable.Member?) -> UInt64? {
        switch member {
        case nil: nil
        case .compact(let block)?: block.header.pointee.lastUsed
        case .whole(let entry)?: entry.lastUsed.load(ordering: .relaxed)
        }
    }

    /// Takes the member at `index` out of its table: a compact one is freed (its counts kept for the family's
    /// totals), a whole one returned.
    private func take(_ t: inout KeyTable, at index: Int) -> Entry? {
        var whole: Entry?
        switch t.member(at: index) {
        case .compact(let block)?:
            let h = block.header.pointee
            var counts = ExpirableCounters()
            counts.hits = h.hits
            counts.misses = UInt64(h.misses)
            counts.pluginCalls = UInt64(h.pluginCalls)
            retired.withLock { $0.add(counts) }
        case .whole(let entry)?:
            whole = entry
        case nil:
            break
        }
        t.remove(at: index)
        held.subtract(1, ordering: .relaxed)
        return whole
    }

    /// Members unread since `before` (monotonic) taken out: compact ones freed, whole ones returned.
    ///
    /// A member with a call in flight (or callers waiting for the next one) stays, however long unread, as
    /// `evictOne` spares it: a reader of its key would make a new member and a second call, from the state the
    /// one in flight was given. A later sweep takes it once the call is over, if it is still unread (the call's
    /// end is no read: an eager refresh of an unread key does not keep it).
    func removeIdle(before: UInt64) -> [Entry] {
        var whole: [Entry] = []
        for shard in shards {
            shard.withTable { t in
                var index = 0
                // A removal shifts later members back into `index`: it is looked at again.
                while index < t.capacity {
                    let member = t.member(at: index)
                    if let used = lastUsed(member), used < before, Family.claim(member) {
                        if let entry = take(&t, at: index) { whole.append(entry) }
                    } else {
                        index += 1
                    }
                }
            }
        }
        return whole
    }

    // MARK: Failure lines

    /// Whether a failed call's line may be logged at `now`; for the first line left out in its second, when that
    /// second ends, for the engine to log how many were left out then (`takeFailuresNotLogged`).
    func admitFailureLine(now: UInt64) -> (log: Bool, summaryDue: UInt64?) {
        failureLines.withLock { f in
            if f.left == 0 && now &- f.since >= 1_000_000_000 { f = (now, 0, 0) }
            if f.logged < Family.failureLinesPerSecond {
                f.logged += 1
                return (true, nil)
            }
            f.left += 1
            return (false, f.left == 1 ? f.since &+ 1_000_000_000 : nil)
        }
    }

    /// The failure lines left out since their second began; a new second begins at `now`.
    func takeFailuresNotLogged(now: UInt64) -> Int {
        failureLines.withLock { f in
            defer { f = (now, 0, 0) }
            return f.left
        }
    }

    // MARK: Listing and counts

    /// The names of the whole members read since the last call (`Entry.readLately`), which it resets.
    func takeReadMembers() -> [String] {
        wholeMembers.compactMap { $0.readLately.exchange(false, ordering: .relaxed) ? $0.name : nil }
    }

    /// Every member's key, the least recently read first.
    var keysByLastUse: [String] {
        var keys: [(key: String, used: UInt64)] = []
        forEachMember { member in
            switch member {
            case .compact(let block): keys.append((String(decoding: block.key, as: UTF8.self), block.header.pointee.lastUsed))
            case .whole(let entry): keys.append((String(decoding: entry.memberKey, as: UTF8.self), entry.lastUsed.load(ordering: .relaxed)))
            }
        }
        return keys.sorted { $0.used < $1.used }.map(\.key)
    }

    /// Every member's key.
    var keys: [String] {
        var keys: [String] = []
        forEachMember { member in
            switch member {
            case .compact(let block): keys.append(String(decoding: block.key, as: UTF8.self))
            case .whole(let entry): keys.append(String(decoding: entry.memberKey, as: UTF8.self))
            }
        }
        return keys
    }

    /// The members that are whole entries.
    var wholeMembers: [Entry] {
        var entries: [Entry] = []
        forEachMember { if case .whole(let entry) = $0 { entries.append(entry) } }
        return entries
    }

    /// What the compact members add to the family's figures: their states, counts and soonest expiry.
    func compactFigures(now: UInt64) -> (states: [ExpirableStatus.State: Int], counters: ExpirableCounters, soonestMillis: Int64?) {
        var valid = 0, expired = 0, empty = 0
        var counters = ExpirableCounters()
        var soonest: UInt64?
        forEachMember { member in
            guard case .compact(let block) = member else { return }
            let h = block.header.pointee
            counters.hits &+= h.hits
            counters.misses &+= UInt64(h.misses)
            counters.pluginCalls &+= UInt64(h.pluginCalls)
            let freshUntil = self.freshUntil(h)
            if !h.hasValue {
                empty += 1
            } else if now < freshUntil {
                valid += 1
                if freshUntil != .max { soonest = min(soonest ?? freshUntil, freshUntil) }
            } else {
                expired += 1
            }
        }
        var states: [ExpirableStatus.State: Int] = [:]
        for (state, n) in [(ExpirableStatus.State.valid, valid), (.expired, expired), (.empty, empty)] where n > 0 { states[state] = n }
        return (states, counters, soonest.map { Int64(($0 - min($0, now)) / 1_000_000) })
    }

    /// Each member one by one, for `metrics_keys`: a compact member's key, state, counts and milliseconds left
    /// (nil: nothing stored, or it never expires), read under its shard's lock; the whole entries, to be read by
    /// the caller.
    func members(now: UInt64) -> (compact: [(key: String, state: ExpirableStatus.State, counters: ExpirableCounters, leftMillis: Int64?)], whole: [Entry]) {
        var compact: [(key: String, state: ExpirableStatus.State, counters: ExpirableCounters, leftMillis: Int64?)] = []
        var whole: [Entry] = []
        forEachMember { member in
            switch member {
            case .whole(let entry):
                whole.append(entry)
            case .compact(let block):
                let h = block.header.pointee
                var counters = ExpirableCounters()
                counters.hits = h.hits
                counters.misses = UInt64(h.misses)
                counters.pluginCalls = UInt64(h.pluginCalls)
                let freshUntil = self.freshUntil(h)
                let state: ExpirableStatus.State = !h.hasValue ? .empty : now < freshUntil ? .valid : .expired
                let left = h.hasValue && freshUntil != .max ? Int64((freshUntil - min(freshUntil, now)) / 1_000_000) : nil
                compact.append((String(decoding: block.key, as: UTF8.self), state, counters, left))
            }
        }
        return (compact, whole)
    }

    /// The compact members' replicable states (those with a version), for a peer that (re)joins.
    func compactReplicas(now: UInt64) -> [ReplicaState] {
        let names = nodes.withLock { $0 }
        var replicas: [ReplicaState] = []
        forEachMember { member in
            guard case .compact(let block) = member else { return }
            let h = block.header.pointee
            guard h.versionNode > 0 else { return }
            let version = Version(time: h.versionTime, node: names[Int(h.versionNode) - 1])
            let name = self.name + ":" + String(decoding: block.key, as: UTF8.self)
            if h.hasValue, now < freshUntil(h) {
                let remaining: Int64? = h.deadline == .max ? nil : Int64((h.deadline - now) / 1_000_000)
                replicas.append(ReplicaState(name: name, value: Secret(copying: block.value), remainingMillis: remaining, version: version))
            } else {
                replicas.append(ReplicaState(name: name, value: nil, remainingMillis: nil, version: version))
            }
        }
        return replicas
    }

    private func forEachMember(_ body: (KeyTable.Member) -> Void) {
        for shard in shards {
            shard.withTable { t in
                for index in 0..<t.capacity {
                    if let member = t.member(at: index) { body(member) }
                }
            }
        }
    }

    var count: Int { held.load(ordering: .relaxed) }

    /// The members that hold a value (valid, expired or stale): the keys INFO, EXPLAIN and status say the family
    /// holds. Members with none are left out: the ones a clear keeps for their plugin state or a cluster clear's
    /// version, and keys whose first fetch failed. Reads every member (INFO, not the read path).
    var keysHeld: Int {
        var held = 0
        forEachMember { member in
            switch member {
            case .compact(let block): if block.header.pointee.hasValue { held += 1 }
            case .whole(let entry): if entry.state.withLock({ $0.value != nil }) { held += 1 }
            }
        }
        return held
    }
    var evictions: UInt64 { evicted.load(ordering: .relaxed) }

    /// A family a reload replaces hands on what it counted of members no longer held, and its evictions, so
    /// the family's totals (INFO, metrics counters) never go back.
    func inheritCounts(from old: Family) {
        evicted.add(old.evictions, ordering: .relaxed)
        let counts = old.retiredCounters
        retired.withLock { $0.add(counts) }
    }

    func keepCounts(of member: Entry) {
        let counts = member.state.withLock { $0.counters }
        retired.withLock { $0.add(counts) }
    }

    var retiredCounters: ExpirableCounters { retired.withLock { $0 } }
}

/// One lock's worth of a family's members: the table is touched only in `withTable`, under the lock (hence
/// unchecked: neither the checker nor exclusivity checks need to see more). The answer is carried out through a
/// local rather than as the `Mutex`'s result, which must be `sending` and so could not be made from the block's
/// bytes a reader's closure is given.
final class KeyShard: @unchecked Sendable {
    private let lock = Mutex(())
    @exclusivity(unchecked) private var table: KeyTable
    /// Where the table's slots are and their mask, published after every change for `prefetchSlot`, which
    /// reads them without the lock: a stale pair only makes the hint touch a line for nothing.
    private let slotsAddress = Atomic<UInt>(0)
    private let slotsMask = Atomic<Int>(0)

    init(arena: HugePageArena?) {
        table = KeyTable(arena: arena)
        publish()
    }

    func withTable<R>(_ body: (inout KeyTable) -> R) -> R {
        var result: R?
        lock.withLock { _ in
            result = body(&table)
            if UInt(bitPattern: table.slots) != slotsAddress.load(ordering: .relaxed) { publish() }
        }
        return result!
    }

    private func publish() {
        slotsAddress.store(UInt(bitPattern: table.slots), ordering: .relaxed)
        slotsMask.store(table.capacity - 1, ordering: .relaxed)
    }

    /// Starts bringing in the slot `hash` starts probing at; no lock, never waits.
    func prefetchSlot(_ hash: UInt32) {
        let offset = UInt(Int(hash) & slotsMask.load(ordering: .relaxed)) &* UInt(MemoryLayout<KeyTable.Slot>.stride)
        CExpirablePrefetch_read(UnsafeRawPointer(bitPattern: slotsAddress.load(ordering: .relaxed) &+ offset))
    }

    /// Starts bringing in the block a read of `hash` will most likely touch (its slot should be in by now).
    func prefetchBlock(_ hash: UInt32) {
        withTable { t in
            guard let block = t.likelyBlock(hash: hash) else { return }
            // Header, key and value: 96 + 14 + 64 bytes for a 64-byte value behind a short key, which span four
            // lines as often as three (malloc aligns a block to 16 bytes, not 64).
            let firstLine = UnsafeMutableRawPointer(bitPattern: UInt(bitPattern: block) & ~63)!
            for line in 0..<4 { CExpirablePrefetch_read(firstLine + line * 64) }
        }
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
        if let entry = entryTable[name] { return entry }
        guard let (family, key) = familyAndKey(name) else { return nil }
        let now = clock.monotonicNanos
        let (entry, evicted) = family.member(creating: key, now: now)
        for member in evicted { retire(member, reason: "evicted: the family holds max_keys (\(family.policy.maxKeys)) keys") }
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
        Engine.retireMember(entry, reason: reason, logger: logger)
    }

    static func retireMember(_ entry: Entry, reason: String, logger: Logger) {
        let hadState = entry.state.withLock { s in
            s.cancelRefresh()
            s.detached = true
            return s.pluginState != nil
        }
        entry.family?.keepCounts(of: entry)
        if hadState && reason.hasPrefix("evicted") {
            // Worth a line, as max_keys pressure is not what the operator planned: with state_dir the key's next
            // call reads its state back from the file; without it, the key starts over (for oauth2, from
            // refresh_token_file). A drop for key_idle is what was configured, and may come by the thousand.
            logger.notice("keyed member dropped with its plugin state; without state_dir its next call starts without it", metadata: ["expirable": "\(entry.name)", "reason": "\(reason)"])
        } else {
            logger.debug("keyed member dropped", metadata: ["expirable": "\(entry.name)", "reason": "\(reason)"])
        }
    }

    /// Starts each family's idle sweep: every quarter of `key_idle` (at least a second), members unread for
    /// `key_idle` are dropped with their refresh.
    func sweepIdleMembers(_ family: Family) {
        Engine.sweep(family, in: tableSlot, while: sweeping, replicator: replicatorSlot, clock: clock, logger: logger)
    }

    /// The sweep's timer holds what it needs but not the engine: neither strongly (it runs as long as the
    /// family, and would keep an engine alive) nor weakly (a weak reference gives the engine a side table, and
    /// every retain of it, one or more per request, then takes the slow path: 4-5 % of a pipelined keyed GET's
    /// time measured with `perf`). The engine turns `running` off when it goes.
    ///
    /// In a cluster, a family with eager refresh also tells the cluster which members were read here since the
    /// last sweep (`Replicator.readHere`): only their owner refreshes them, and it drops a member unread there for
    /// `key_idle`, so reads served here from a copy must count at the owner, or the refresh stops while they go on.
    private static func sweep(_ family: Family, in tables: TableSlot, while running: SweepSwitch, replicator: ReplicatorSlot, clock: any EngineClock,
                              logger: Logger) {
        let every = max(family.policy.keyIdle / 4, .seconds(1))
        _ = clock.schedule(after: every) {
            // A family a reload removed or replaced sweeps no more.
            guard running.on, tables.current.families[family.name] === family else { return }
            let now = clock.monotonicNanos
            let idle = UInt64(max(0, family.policy.keyIdle.nanoseconds))
            for entry in family.removeIdle(before: now - min(now, idle)) {
                retireMember(entry, reason: "unread for key_idle (\(family.policy.keyIdle))", logger: logger)
            }
            if case .eager = family.definition.refresh, family.definition.scope == .cluster, let replicator = replicator.current {
                let read = family.takeReadMembers()
                if !read.isEmpty { replicator.readHere(read) }
            }
            sweep(family, in: tables, while: running, replicator: replicator, clock: clock, logger: logger)
        }
    }

    /// A keyed family's settings and counts for INFO and EXPLAIN: keys holding a value, the limit, evictions so far.
    public func familyInfo(_ name: String) -> (keys: Int, maxKeys: Int, keyIdle: Duration, evictions: UInt64, refresh: RefreshPolicy)? {
        guard let family = families[name] else { return nil }
        return (family.keysHeld, family.policy.maxKeys, family.policy.keyIdle, family.evictions, family.definition.refresh)
    }

    /// Whether `name` is a keyed family.
    public func isKeyed(_ name: String) -> Bool { families[name] != nil }

    /// The NOTFOUND error for `name`, which names no value: a keyed family's name alone, and a member whose key
    /// is not valid, are told how to ask. The name is shown escaped (`TextLogHandler.escaped`): an invalid key
    /// may hold any byte, and the error goes back to a client that may print it on a terminal.
    public func notFound(_ name: String) -> ExpirableError {
        if let family = families[name] {
            return .notFound(explaining: "\(family.name) is a keyed family: ask for one of its values as \(family.name):KEY")
        }
        if let prefix = name.split(separator: ":", maxSplits: 1).first, families[String(prefix)] != nil {
            return .notFound(explaining: "\(TextLogHandler.escaped(name)) has no valid key: a key of \(prefix) is 1 to 256 printable ASCII characters, no spaces, and not * alone (\(prefix):* names the family)")
        }
        return .notFound(name)
    }
}

/// The cluster the engine is attached to (`Engine.attach`), if any: held by the engine and its idle sweeps.
final class ReplicatorSlot: Sendable {
    private let replicator = Mutex<(any Replicator)?>(nil)
    var current: (any Replicator)? { replicator.withLock { $0 } }
    func attach(_ new: any Replicator) { replicator.withLock { $0 = new } }
}

/// Whether the engine that started the keyed families' idle sweeps is still there.
final class SweepSwitch: Sendable {
    private let running = Atomic<Bool>(true)
    var on: Bool { running.load(ordering: .acquiring) }
    func turnOff() { running.store(false, ordering: .releasing) }
}
