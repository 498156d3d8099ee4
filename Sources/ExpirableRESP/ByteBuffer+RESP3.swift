import NIOCore

/// The protocol a connection speaks: RESP2 until the client says `HELLO 3`.
public enum RESPVersion: Int, Sendable, Hashable {
    case resp2 = 2
    case resp3 = 3
}

/// The replies whose form differs between RESP2 and RESP3. In RESP2 a map is a flat array of keys and values,
/// a push is an array, a set is an array and null is the null bulk string.
extension ByteBuffer {
    /// Appends null: `$-1` in RESP2, `_` in RESP3.
    public mutating func writeRESPNull(_ version: RESPVersion) {
        switch version {
        case .resp2: writeStaticString("$-1\r\n")
        case .resp3: writeStaticString("_\r\n")
        }
    }

    /// Appends the header of a map of `count` pairs; the keys and values follow, alternating.
    public mutating func writeRESPMapHeader(_ count: Int, _ version: RESPVersion) {
        switch version {
        case .resp2: writeRESPArrayHeader(count * 2)
        case .resp3: writeRESPAggregateHeader(UInt8(ascii: "%"), count)
        }
    }

    /// Appends the header of an out-of-band push of `count` elements (pub/sub messages).
    public mutating func writeRESPPushHeader(_ count: Int, _ version: RESPVersion) {
        switch version {
        case .resp2: writeRESPArrayHeader(count)
        case .resp3: writeRESPAggregateHeader(UInt8(ascii: ">"), count)
        }
    }

    /// Appends the header of a set of `count` elements.
    public mutating func writeRESPSetHeader(_ count: Int, _ version: RESPVersion) {
        switch version {
        case .resp2: writeRESPArrayHeader(count)
        case .resp3: writeRESPAggregateHeader(UInt8(ascii: "~"), count)
        }
    }

    /// Appends `text` as a bulk string.
    public mutating func writeRESPBulk(_ text: String) {
        var text = text
        text.withUTF8 { writeRESPBulk(UnsafeRawBufferPointer($0)) }
    }

    /// Appends `+text`; `text` must hold no CR or LF.
    public mutating func writeRESPSimple(_ text: StaticString) {
        writeInteger(UInt8(ascii: "+"))
        writeStaticString(text)
        writeInteger(UInt16(0x0D0A))
    }

    private mutating func writeRESPAggregateHeader(_ type: UInt8, _ count: Int) {
        writeInteger(type)
        writeString(String(count))
        writeInteger(UInt16(0x0D0A))
    }
}
