/// Reads of keyed names about to be answered, gathered so their cache misses overlap (`Engine.readAhead`).
public struct ReadAhead {
    fileprivate var reads: [(shard: KeyShard, hash: UInt32)] = []

    public init() {}

    /// How many reads are gathered.
    public var count: Int { reads.count }
}

extension Engine {
    /// Whether a keyed family is configured: only their reads gain from reading ahead.
    public var hasKeyedFamilies: Bool { !families.isEmpty }

    /// Gathers a GET of `name` about to be answered: for `NAME:KEY` its key is hashed and the slot it lands on
    /// starts coming in from memory now. A random key out of a million misses the cache twice (the slot, then
    /// the member's block), about as long as the rest of a pipelined GET here; prefetched a batch at a time,
    /// the misses of a batch overlap instead of adding up.
    public func readAhead(utf8 name: UnsafeRawBufferPointer, into plan: inout ReadAhead) {
        guard let (family, key, _) = tableSlot.current.family(utf8: name) else { return }
        plan.reads.append(family.prefetch(key))
    }

    /// Prefetches the blocks of the reads gathered in `plan` (their slots have come in meanwhile), and empties it.
    public func readAhead(_ plan: inout ReadAhead) {
        for read in plan.reads { read.shard.prefetchBlock(read.hash) }
        plan.reads.removeAll(keepingCapacity: true)
    }
}
