/// Finds an entry (or a keyed family) by the UTF-8 bytes of its name without making a String: an
/// open-addressing table hashed with FNV-1a, built once. Servers look names up straight from their receive
/// buffers with it. Each target comes with its ordinal (its place in the table's sorted names), the bit a
/// connection's `ReadMask` keeps for it.
struct NameTable<Target: Sendable>: Sendable {
    private let slots: [(name: [UInt8], entry: Target, ordinal: Int)?]
    private let mask: Int

    init(_ entries: [String: Target], ordinals: [String: Int]) {
        var size = 8
        while size < entries.count * 2 { size *= 2 }
        var slots = [(name: [UInt8], entry: Target, ordinal: Int)?](repeating: nil, count: size)
        for (name, entry) in entries {
            let bytes = Array(name.utf8)
            var index = bytes.withUnsafeBytes { NameTable.hash($0) } & (size - 1)
            while slots[index] != nil { index = (index + 1) & (size - 1) }
            slots[index] = (bytes, entry, ordinals[name] ?? 0)
        }
        self.slots = slots
        mask = size - 1
    }

    func entry(_ name: UnsafeRawBufferPointer) -> Target? {
        lookup(name)?.entry
    }

    func lookup(_ name: UnsafeRawBufferPointer) -> (entry: Target, ordinal: Int)? {
        var index = NameTable.hash(name) & mask
        while let slot = slots[index] {
            if slot.name.count == name.count, slot.name.withUnsafeBytes({ $0.elementsEqual(name) }) { return (slot.entry, slot.ordinal) }
            index = (index + 1) & mask
        }
        return nil
    }

    private static func hash(_ bytes: UnsafeRawBufferPointer) -> Int {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes {
            hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3
        }
        return Int(truncatingIfNeeded: hash)
    }
}
