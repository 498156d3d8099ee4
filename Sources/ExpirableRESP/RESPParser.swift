import NIOCore

/// An incremental RESP2 parser: feed it the bytes received so far, take complete values off the front.
/// `next` reads any value (what clients do with replies); `scanCommands` reads requests (what servers do), and
/// with `inlineCommands` also accepts a line that does not start with a RESP type byte as a command split into
/// words as redis-server splits it (quotes and escapes included), for `telnet` users. Bulk strings are never
/// copied.
public struct RESPParser: Sendable {
    public let limits: RESPLimits
    public let inlineCommands: Bool

    public init(limits: RESPLimits, inlineCommands: Bool = false) {
        self.limits = limits
        self.inlineCommands = inlineCommands
    }

    /// The next complete value at the front of `buffer`, consuming its bytes; nil (consuming nothing) when more
    /// bytes are needed. Throws on malformed or oversized input.
    public func next(_ buffer: inout ByteBuffer) throws(RESPError) -> RESPValue? {
        var cursor = buffer
        let value = try parse(&cursor, depth: 0)
        guard let value else {
            if buffer.readableBytes > limits.maxValueBytes {
                throw .tooLarge("request over \(limits.maxValueBytes) bytes")
            }
            return nil
        }
        if cursor.readerIndex - buffer.readerIndex > limits.maxValueBytes {
            throw .tooLarge("request over \(limits.maxValueBytes) bytes")
        }
        buffer = cursor
        return value
    }

    static func isTypeByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: ":"), UInt8(ascii: "$"), UInt8(ascii: "*"): true
        default: false
        }
    }

    private func parse(_ cursor: inout ByteBuffer, depth: Int) throws(RESPError) -> RESPValue? {
        guard let type = cursor.readInteger(as: UInt8.self) else { return nil }
        switch type {
        case UInt8(ascii: "+"):
            return try line(&cursor).map { .simpleString(String(buffer: $0)) }
        case UInt8(ascii: "-"):
            return try line(&cursor).map { .error(String(buffer: $0)) }
        case UInt8(ascii: ":"):
            guard let text = try line(&cursor) else { return nil }
            guard let number = RESPParser.integer(text) else { throw .malformed("invalid integer") }
            return .integer(number)
        case UInt8(ascii: "$"):
            guard let text = try line(&cursor) else { return nil }
            guard let length = RESPParser.integer(text), length >= -1 else { throw .malformed("invalid bulk length") }
            if length == -1 { return .null }
            guard length <= limits.maxBulkLength else { throw .tooLarge("bulk string of \(length) bytes, over the limit of \(limits.maxBulkLength)") }
            guard cursor.readableBytes >= Int(length) + 2 else { return nil }
            let bytes = cursor.readSlice(length: Int(length))!
            guard cursor.readInteger(as: UInt16.self) == 0x0D0A else { throw .malformed("bulk string not followed by CRLF") }
            return .bulkString(bytes)
        case UInt8(ascii: "*"):
            guard let text = try line(&cursor) else { return nil }
            guard let count = RESPParser.integer(text), count >= -1 else { throw .malformed("invalid multibulk length") }
            if count == -1 { return .null }
            guard count <= limits.maxArrayCount else { throw .tooLarge("array of \(count) elements, over the limit of \(limits.maxArrayCount)") }
            guard depth < limits.maxDepth else { throw .malformed("arrays nested deeper than \(limits.maxDepth)") }
            var elements: [RESPValue] = []
            elements.reserveCapacity(Int(count))
            for _ in 0..<count {
                guard let element = try parse(&cursor, depth: depth + 1) else { return nil }
                elements.append(element)
            }
            return .array(elements)
        default:
            throw .malformed("expected '*', '$', '+', '-' or ':', got byte \(type)")
        }
    }

    /// The bytes before the next CRLF, consuming them and the CRLF; nil if no CRLF has arrived yet.
    func line(_ cursor: inout ByteBuffer) throws(RESPError) -> ByteBuffer? {
        let view = cursor.readableBytesView
        guard let cr = view.firstIndex(of: UInt8(ascii: "\r")) else {
            if view.count > limits.maxValueBytes { throw .tooLarge("line over \(limits.maxValueBytes) bytes") }
            return nil
        }
        let length = cr - view.startIndex
        guard cursor.readableBytes >= length + 2 else { return nil }
        let text = cursor.readSlice(length: length)!
        guard cursor.readInteger(as: UInt8.self) == 0x0D, cursor.readInteger(as: UInt8.self) == 0x0A else {
            throw .malformed("CR not followed by LF")
        }
        return text
    }

    /// A length line ("123\r\n", or "-1\r\n") starting at `start`: its value and where the next line starts; nil
    /// when the line is not complete yet.
    func decimalLine(_ bytes: UnsafeRawBufferPointer, from start: Int) throws(RESPError) -> (Int64, Int)? {
        var value: Int64 = 0
        var negative = false
        var index = start
        while index < bytes.count {
            let byte = bytes[index]
            let position = index - start
            if byte == UInt8(ascii: "\r") {
                guard index + 1 < bytes.count else { return nil }
                guard bytes[index + 1] == UInt8(ascii: "\n"), position > (negative ? 1 : 0) else { throw .malformed("invalid length line") }
                return (negative ? -value : value, index + 2)
            }
            if position == 0 && byte == UInt8(ascii: "-") {
                negative = true
            } else {
                guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9"), position < 18 else { throw .malformed("invalid length line") }
                value = value * 10 + Int64(byte - UInt8(ascii: "0"))
            }
            index += 1
        }
        return nil
    }

    /// A decimal integer of at most 18 digits with an optional minus sign.
    static func integer(_ buffer: ByteBuffer) -> Int64? {
        let view = buffer.readableBytesView
        guard !view.isEmpty, view.count <= 19 else { return nil }
        var negative = false
        var value: Int64 = 0
        var digits = 0
        for (offset, byte) in view.enumerated() {
            if offset == 0 && byte == UInt8(ascii: "-") {
                negative = true
                continue
            }
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            value = value * 10 + Int64(byte - UInt8(ascii: "0"))
            digits += 1
        }
        guard digits > 0 else { return nil }
        return negative ? -value : value
    }
}
