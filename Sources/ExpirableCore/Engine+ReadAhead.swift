#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The keyed GETs of a pipelined batch, read ahead before it runs (`Engine.readAhead`): for each, the key's
/// hash and its shard, whose slot was prefetched, and a copy of the key. The batch's reads then take their hash
/// from here (`hash(for:)`) instead of hashing each key a second time.
public struct ReadAhead {
    fileprivate struct Read {
        /// Held through `families`.
        var shard: Unmanaged<KeyShard>
        var hash: UInt64
        var keyStart: Int
        var keyCount: Int
    }

    /// The families of the reads, held while the plan points into their shards (almost always one).
    fileprivate var families: [Family] = []
    fileprivate var reads: [Read] = []
    /// The reads' keys, back to back. They are copied: the receive buffer may move before the batch runs.
    fileprivate var keys: [UInt8] = []
    /// The first read not yet matched by a GET of the batch.
    fileprivate var next = 0

    public init() {}

    /// How many reads are gathered.
    public var count: Int { reads.count }

    /// Forgets the batch, keeping the storage.
    public mutating func reset() {
        families.removeAll(keepingCapacity: true)
        reads.removeAll(keepingCapacity: true)
        keys.removeAll(keepingCapacity: true)
        next = 0
    }

    /// The hash of `key` if the next read gathered is of `key` (the batch's GETs run in the order they were
    /// read ahead), moving past it; nil otherwise. A hash depends on the key alone, never on the family.
    mutating func hash(for key: UnsafeRawBufferPointer) -> UInt64? {
        guard next < reads.count, let address = key.baseAddress else { return nil }
        let read = reads[next]
        guard read.keyCount == key.count,
              keys.withUnsafeBytes({ memcmp($0.baseAddress! + read.keyStart, address, key.count) == 0 }) else { return nil }
        next += 1
        return read.hash
    }
}

extension Engine {
    /// Whether a keyed family is configured: only their reads gain from reading ahead.
    public var hasKeyedFamilies: Bool { !families.isEmpty }

    /// Gathers a GET of `name` about to be answered: for `NAME:KEY` its key is hashed and the slot it lands on
    /// starts coming in from memory now. A random key out of a million misses the cache twice (the slot, then
    /// the member's block), about as long as the rest of a pipelined GET here; prefetched a batch at a time,
    /// the misses of a batch overlap instead of adding up.
    public func readAhead(utf8 name: UnsafeRawBufferPointer, into plan: inout ReadAhead) {
        guard let base = name.baseAddress, let colonAddress = memchr(base, Int32(UInt8(ascii: ":")), name.count) else { return }
        let colon = UnsafeRawPointer(colonAddress) - base
        let prefix = UnsafeRawBufferPointer(start: base, count: colon)
        let family: Family
        if let last = plan.families.last, last.nameBytes.count == colon,
           last.nameBytes.withUnsafeBytes({ memcmp($0.baseAddress!, base, colon) == 0 }) {
            family = last  // the batch's family again: no lookup, no reference counted
        } else {
            guard let found = tableSlot.withCurrent({ $0.familyTable.lookup(prefix)?.entry }) else { return }
            plan.families.append(found)
            family = found
        }
        let key = UnsafeRawBufferPointer(start: base + colon + 1, count: name.count - colon - 1)
        guard !key.isEmpty else { return }
        let hash = Family.hash(key)
        let shard = family.prefetch(hash: hash)
        plan.reads.append(ReadAhead.Read(shard: Unmanaged.passUnretained(shard), hash: hash, keyStart: plan.keys.count, keyCount: key.count))
        plan.keys.append(contentsOf: key)
    }

    /// Prefetches the blocks of the reads gathered in `plan` (their slots have come in meanwhile). The plan is
    /// kept for the batch's reads (`withCachedValue(utf8:mask:readAhead:_:)`).
    public func readAhead(_ plan: inout ReadAhead) {
        for read in plan.reads[plan.next...] { read.shard.takeUnretainedValue().prefetchBlock(UInt32(truncatingIfNeeded: read.hash)) }
    }
}
