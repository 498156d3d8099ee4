#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What a keyed family keeps of a member with nothing pending (no call, timer, failure, pacing or plugin state):
/// one allocation holding this header, the key's bytes and the value's bytes, wiped when freed. A member that
/// needs more becomes a whole `Entry` again (`Family.member(creating:now:)`) and comes back here once its call
/// is done. Every field is read and written under its shard's lock.
struct CompactHeader {
    /// Monotonic nanoseconds at which the value reaches its `expires_at`; `UInt64.max` for never.
    var deadline: UInt64 = 0
    /// The value's `expires_at` (Unix milliseconds), for FETCH and INFO; unused when `deadline` is `.max`.
    var expiryMillis: Int64 = 0
    var storedAt: UInt64 = 0
    /// Monotonic nanoseconds at which the last plugin call started (valid with `hasLastCall`).
    var lastCallStart: UInt64 = 0
    /// When the member was last read (monotonic), for eviction and `key_idle`.
    var lastUsed: UInt64 = 0
    /// The last call, for `explain`: its wall-clock start and duration (valid with `hasLastCall`).
    var lastCallMillis: Int64 = 0
    var lastCallNanos: UInt64 = 0
    var hits: UInt64 = 0
    var misses: UInt32 = 0
    var pluginCalls: UInt32 = 0
    /// The version of the value or of the last clear: a time and the family's index of the node plus one (0: none).
    var versionTime: Int64 = 0
    var versionNode: UInt16 = 0
    var keyCount: UInt16 = 0
    var valueCount: UInt32 = 0
    var hasValue = false
    var hasLastCall = false
    var lastCallTrigger: UInt8 = 0
    /// Where the last call's answer came from (`Family.code(of:)` of its route) and, for one forwarded, the
    /// family's index of the owner plus one. In the header's padding: the header is no larger.
    var lastCallRoute: UInt8 = 0
    var lastCallPeer: UInt16 = 0
}

/// A compact member's allocation: `CompactHeader`, then the key, then the value. Owned by one `KeyTable`
/// and used under its shard's lock (unchecked: a pointer).
struct CompactBlock: @unchecked Sendable {
    let base: UnsafeMutableRawPointer

    static let headerSize = (MemoryLayout<CompactHeader>.size + 7) & ~7

    /// A new block holding `header` (its counts are set here), `key` and `value` (none: an empty member), from
    /// `arena` if given (a large family's), else from malloc.
    static func make(_ header: CompactHeader, key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer?, arena: HugePageArena?) -> CompactBlock {
        let valueCount = value?.count ?? 0
        let byteCount = headerSize + key.count + valueCount
        let base = arena?.allocate(byteCount: byteCount) ?? UnsafeMutableRawPointer.allocate(byteCount: byteCount, alignment: 8)
        var header = header
        header.keyCount = UInt16(key.count)
        header.valueCount = UInt32(valueCount)
        header.hasValue = value != nil
        base.initializeMemory(as: CompactHeader.self, repeating: header, count: 1)
        if let from = key.baseAddress, key.count > 0 { (base + headerSize).copyMemory(from: from, byteCount: key.count) }
        if let value, let from = value.baseAddress, value.count > 0 { (base + headerSize + key.count).copyMemory(from: from, byteCount: value.count) }
        return CompactBlock(base: base)
    }

    var header: UnsafeMutablePointer<CompactHeader> { base.assumingMemoryBound(to: CompactHeader.self) }

    var key: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: base + CompactBlock.headerSize, count: Int(header.pointee.keyCount))
    }

    var value: UnsafeRawBufferPointer {
        let h = header.pointee
        return UnsafeRawBufferPointer(start: base + CompactBlock.headerSize + Int(h.keyCount), count: Int(h.valueCount))
    }

    /// Wipes the key and the value, then frees the block (to `arena`, if it came from there).
    func free(arena: HugePageArena?) {
        let h = header.pointee
        let byteCount = CompactBlock.headerSize + Int(h.keyCount) + Int(h.valueCount)
        Secret.wipe(UnsafeMutableRawBufferPointer(start: base, count: byteCount))
        if let arena { arena.deallocate(base, byteCount: byteCount) } else { base.deallocate() }
    }
}

/// One shard of a keyed family's members: an open-addressing table (linear probing, deletion by backward
/// shift) of 16-byte slots, each pointing to a compact block or to a whole `Entry` (held retained). Lives in a
/// `Mutex`; frees its blocks (wiped) and releases its entries when it goes.
struct KeyTable: ~Copyable {
    struct Slot {
        /// The low 32 bits of the key's hash: its home slot, and a first comparison.
        var hash: UInt32
        var kind: Kind
        var pointer: UnsafeMutableRawPointer?
    }

    enum Kind: UInt32 {
        case empty, compact, whole
    }

    /// What a slot holds.
    enum Member {
        case compact(CompactBlock)
        case whole(Entry)
    }

    private(set) var slots: UnsafeMutablePointer<Slot>
    private(set) var capacity: Int
    private(set) var count = 0
    /// Where the slots and the compact blocks come from: a large family's arena (shared by its shards), or malloc.
    let arena: HugePageArena?

    init(arena: HugePageArena? = nil) {
        self.arena = arena
        capacity = 8
        slots = KeyTable.allocateSlots(capacity, arena: arena)
    }

    deinit {
        for index in 0..<capacity { KeyTable.dispose(slots[index], arena: arena) }
        KeyTable.deallocateSlots(slots, capacity, arena: arena)
    }

    private static func allocateSlots(_ capacity: Int, arena: HugePageArena?) -> UnsafeMutablePointer<Slot> {
        let slots: UnsafeMutablePointer<Slot>
        if let arena {
            slots = arena.allocate(byteCount: capacity * MemoryLayout<Slot>.stride).bindMemory(to: Slot.self, capacity: capacity)
        } else {
            slots = .allocate(capacity: capacity)
        }
        slots.initialize(repeating: Slot(hash: 0, kind: .empty, pointer: nil), count: capacity)
        return slots
    }

    private static func deallocateSlots(_ slots: UnsafeMutablePointer<Slot>, _ capacity: Int, arena: HugePageArena?) {
        if let arena { arena.deallocate(UnsafeMutableRawPointer(slots), byteCount: capacity * MemoryLayout<Slot>.stride) } else { slots.deallocate() }
    }

    /// A new compact block from this table's memory (see `CompactBlock.make`).
    func makeBlock(_ header: CompactHeader, key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer?) -> CompactBlock {
        CompactBlock.make(header, key: key, value: value, arena: arena)
    }

    private static func dispose(_ slot: Slot, arena: HugePageArena?) {
        switch slot.kind {
        case .empty: break
        case .compact: CompactBlock(base: slot.pointer!).free(arena: arena)
        case .whole: Unmanaged<Entry>.fromOpaque(slot.pointer!).release()
        }
    }

    func member(at index: Int) -> Member? {
        let slot = slots[index]
        switch slot.kind {
        case .empty: return nil
        case .compact: return .compact(CompactBlock(base: slot.pointer!))
        case .whole: return .whole(Unmanaged<Entry>.fromOpaque(slot.pointer!).takeUnretainedValue())
        }
    }

    /// The slot of `key`, if present.
    func find(_ key: UnsafeRawBufferPointer, hash: UInt32) -> Int? {
        let mask = capacity - 1
        var index = Int(hash) & mask
        while true {
            let slot = slots[index]
            if slot.kind == .empty { return nil }
            if slot.hash == hash && KeyTable.key(of: slot, equals: key) { return index }
            index = (index + 1) & mask
        }
    }

    /// The block of the first compact member on `hash`'s probe path whose hash matches, without comparing keys
    /// (that would read the block): what a read of that hash will most likely touch, for prefetching.
    func likelyBlock(hash: UInt32) -> UnsafeMutableRawPointer? {
        let mask = capacity - 1
        var index = Int(hash) & mask
        while slots[index].kind != .empty {
            if slots[index].hash == hash { return slots[index].kind == .compact ? slots[index].pointer : nil }
            index = (index + 1) & mask
        }
        return nil
    }

    private static func key(of slot: Slot, equals key: UnsafeRawBufferPointer) -> Bool {
        switch slot.kind {
        case .compact:
            let stored = CompactBlock(base: slot.pointer!).key
            return stored.count == key.count && (key.count == 0 || memcmp(stored.baseAddress!, key.baseAddress!, key.count) == 0)
        default:
            return Unmanaged<Entry>.fromOpaque(slot.pointer!).takeUnretainedValue().memberKey.withUnsafeBytes { $0.elementsEqual(key) }
        }
    }

    /// Adds a member whose key is not present.
    mutating func insert(_ member: Member, hash: UInt32) {
        if (count + 1) * 4 > capacity * 3 { grow() }
        place(KeyTable.slot(member, hash: hash))
        count += 1
    }

    /// Puts `member` in slot `index` in place of what was there (the same key), disposing of that.
    mutating func replace(at index: Int, with member: Member) {
        let old = slots[index]
        slots[index] = KeyTable.slot(member, hash: old.hash)
        KeyTable.dispose(old, arena: arena)
    }

    /// Takes the member out of slot `index`, disposing of it (an entry is released: the caller holds its own).
    mutating func remove(at index: Int) {
        KeyTable.dispose(slots[index], arena: arena)
        let mask = capacity - 1
        var hole = index
        var next = (hole + 1) & mask
        while slots[next].kind != .empty {
            let home = Int(slots[next].hash) & mask
            // Moves back every slot whose home is not in (hole, next]: it would be unreachable past the hole.
            if (next > hole && (home <= hole || home > next)) || (next < hole && home <= hole && home > next) {
                slots[hole] = slots[next]
                hole = next
            }
            next = (next + 1) & mask
        }
        slots[hole] = Slot(hash: 0, kind: .empty, pointer: nil)
        count -= 1
    }

    private static func slot(_ member: Member, hash: UInt32) -> Slot {
        switch member {
        case .compact(let block): return Slot(hash: hash, kind: .compact, pointer: block.base)
        case .whole(let entry): return Slot(hash: hash, kind: .whole, pointer: Unmanaged.passRetained(entry).toOpaque())
        }
    }

    private mutating func place(_ slot: Slot) {
        let mask = capacity - 1
        var index = Int(slot.hash) & mask
        while slots[index].kind != .empty { index = (index + 1) & mask }
        slots[index] = slot
    }

    private mutating func grow() {
        let old = slots, oldCapacity = capacity
        capacity *= 2
        slots = KeyTable.allocateSlots(capacity, arena: arena)
        for index in 0..<oldCapacity where old[index].kind != .empty { place(old[index]) }
        KeyTable.deallocateSlots(old, oldCapacity, arena: arena)
    }
}
