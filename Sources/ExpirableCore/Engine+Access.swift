/// The names of one table and who may read each, for a server working out what one connection may read.
public struct ReadRules: Sendable {
    /// The table these are of; a `ReadMask` made from them is good for this table only.
    public let generation: UInt64
    /// The configured names, sorted: a name's index is its ordinal.
    public let names: [String]
    /// Each name's `allow` list, by ordinal; nil: anyone who can open the socket.
    public let readers: [[AccessRule]?]
    /// Whether each name, by ordinal, is a keyed family (whose members `NAME:KEY` share its ordinal).
    public let keyed: [Bool]

    /// Whether any name has an `allow` list.
    public var restricted: Bool { readers.contains { $0 != nil } }

    /// The allow list of `name`, or of the keyed family a member name belongs to; `.none` if not configured.
    public func rules(of name: String) -> [AccessRule]?? {
        guard let ordinal = ordinal(of: name) else { return .none }
        return .some(readers[ordinal])
    }

    /// The ordinal of `name`, or of the keyed family a member name belongs to; nil if not configured.
    public func ordinal(of name: String) -> Int? {
        // Not a dictionary: names are few and sorted, and this is off the hot path.
        if let index = index(name) { return index }
        guard let colon = name.utf8.firstIndex(of: UInt8(ascii: ":")), let family = index(String(name[..<colon])),
              keyed[family] else { return nil }
        return family
    }

    private func index(_ name: String) -> Int? {
        var low = 0, high = names.count
        while low < high {
            let middle = (low + high) / 2
            if names[middle] < name { low = middle + 1 } else { high = middle }
        }
        return low < names.count && names[low] == name ? low : nil
    }
}

/// Which names of one table one connection may read: a bit per ordinal, worked out once per connection and
/// table, so a GET costs one bit test more. A plain value (no reference count to touch on the hot path) over
/// bits that a `ReadMaskStorage` owns: valid while that storage lives, on the thread that uses it.
public struct ReadMask {
    /// The table the bits are for.
    public let generation: UInt64
    /// Every name may be read: no bit is looked at.
    public let all: Bool
    private let bits: UnsafePointer<UInt64>?

    /// A mask for no table: the first read finds it outdated.
    public static var outdated: ReadMask { ReadMask(generation: 0, all: false, bits: nil) }

    fileprivate init(generation: UInt64, all: Bool, bits: UnsafePointer<UInt64>?) {
        self.generation = generation
        self.all = all
        self.bits = bits
    }

    @inline(__always)
    public func permits(_ ordinal: Int) -> Bool {
        if all { return true }
        guard let bits else { return false }
        return bits[ordinal >> 6] & (1 << UInt64(ordinal & 63)) != 0
    }
}

/// Owns the bits of one `ReadMask`.
public final class ReadMaskStorage {
    public let mask: ReadMask
    private let words: UnsafeMutablePointer<UInt64>

    /// The mask of `rules`' table for a caller that `permits` says may read the name of each ordinal.
    public init(_ rules: ReadRules, permits: (Int) -> Bool) {
        let count = max(1, (rules.names.count + 63) / 64)
        words = UnsafeMutablePointer<UInt64>.allocate(capacity: count)
        words.initialize(repeating: 0, count: count)
        var all = true
        for ordinal in rules.names.indices {
            if permits(ordinal) {
                words[ordinal >> 6] |= 1 << UInt64(ordinal & 63)
            } else {
                all = false
            }
        }
        mask = ReadMask(generation: rules.generation, all: all, bits: UnsafePointer(words))
    }

    deinit { words.deallocate() }
}

/// A read from memory under a `ReadMask`.
public enum MaskedRead {
    /// The value was valid now, and handed to the reader.
    case answered
    /// Nothing valid in memory, or the name is not one the table's byte lookup knows (a name not configured):
    /// ask again by name.
    case absent
    /// The mask forbids the name.
    case forbidden
    /// The mask is of another table (a reload came between): make a new one from `readRules` and ask again.
    case outdated
}

extension Engine {
    /// The current table's names and allow lists.
    public var readRules: ReadRules {
        let table = tableSlot.current
        return ReadRules(generation: table.generation, names: table.names, readers: table.readers,
                         keyed: table.names.map { table.families[$0] != nil })
    }

    /// The current table's generation (see `ReadRules.generation`).
    public var tableGeneration: UInt64 { tableSlot.current.generation }

    /// Whether `name` (configured) has an `allow` list.
    public func isRestricted(_ name: String) -> Bool {
        let table = tableSlot.current
        return table.ordinals[name].map { table.readers[$0] != nil } ?? false
    }

    /// `withCachedValue(utf8:_:)` for a caller who may read only what `mask` permits: the GET hot path, one
    /// lookup and one bit test more than without rules (for `NAME:KEY`, the family's bit).
    public func withCachedValue(utf8 name: UnsafeRawBufferPointer, mask: ReadMask, _ body: (UnsafeRawBufferPointer) -> Void) -> MaskedRead {
        var none = ReadAhead()
        return withCachedValue(utf8: name, mask: mask, readAhead: &none, body)
    }

    /// The same, for a GET of a batch read ahead into `plan`: a member's key hashed ahead is not hashed again.
    public func withCachedValue(utf8 name: UnsafeRawBufferPointer, mask: ReadMask, readAhead plan: inout ReadAhead,
                                _ body: (UnsafeRawBufferPointer) -> Void) -> MaskedRead {
        tableSlot.withCurrent { table in
            guard table.generation == mask.generation else { return .outdated }
            if let found = table.nameTable.lookup(name) {
                guard mask.permits(found.ordinal) else { return .forbidden }
                guard let fetched = cachedValue(found.entry) else { return .absent }
                fetched.value.withUnsafeBytes(body)
                return .answered
            }
            guard let (family, key, ordinal) = table.family(utf8: name) else { return .absent }
            guard mask.permits(ordinal) else { return .forbidden }
            return withCachedValue(family, key: key, hash: plan.hash(for: key), body) ? .answered : .absent
        }
    }
}
