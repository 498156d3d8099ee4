import NIOCore

/// The words of one request, for servers: positions in the receive buffer rather than copies or slices, so
/// parsing a request and matching its words costs no allocation and one reference count.
public struct RESPCommandWords: Sendable {
    public private(set) var count = 0
    private let storage: ByteBuffer
    // Absolute (index, length) pairs of the first three words; every daemon command fits in three.
    private var inline: (Int, Int, Int, Int, Int, Int) = (0, 0, 0, 0, 0, 0)
    private var rest: [(Int, Int)] = []

    init(storage: ByteBuffer) {
        self.storage = storage
    }

    mutating func append(at index: Int, length: Int) {
        switch count {
        case 0: inline.0 = index; inline.1 = length
        case 1: inline.2 = index; inline.3 = length
        case 2: inline.4 = index; inline.5 = length
        default: rest.append((index, length))
        }
        count += 1
    }

    private func position(_ word: Int) -> (index: Int, length: Int) {
        switch word {
        case 0: (inline.0, inline.1)
        case 1: (inline.2, inline.3)
        case 2: (inline.4, inline.5)
        default: rest[word - 3]
        }
    }

    /// Calls `body` with the bytes of word `word` (0 is the command name); they must not escape it.
    public func withUnsafeBytes<R>(of word: Int, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        let (index, length) = position(word)
        return try storage.withUnsafeReadableBytes { all in
            try body(UnsafeRawBufferPointer(rebasing: all[(index - storage.readerIndex)..<(index - storage.readerIndex + length)]))
        }
    }

    /// Word `word` as a buffer (a slice: no copy).
    public subscript(word: Int) -> ByteBuffer {
        let (index, length) = position(word)
        return storage.getSlice(at: index, length: length)!
    }

    /// Word `word` as text (invalid UTF-8 repaired).
    public func string(_ word: Int) -> String {
        withUnsafeBytes(of: word) { String(decoding: $0, as: UTF8.self) }
    }

    /// Whether word `word` is `keyword` (given in upper case), ignoring ASCII case.
    public func word(_ word: Int, is keyword: StaticString) -> Bool {
        withUnsafeBytes(of: word) { bytes in
            guard bytes.count == keyword.utf8CodeUnitCount else { return false }
            for index in 0..<bytes.count where bytes[index] & 0xDF != keyword.utf8Start[index] { return false }
            return true
        }
    }
}

extension RESPParser {
    /// The next complete request at the front of `buffer`, as words, consuming its bytes; nil (consuming
    /// nothing) when more bytes are needed. A request is an array of bulk strings, or an inline line when
    /// `inlineCommands` is set. Anything else, or input over the limits, throws.
    public func nextCommand(_ buffer: inout ByteBuffer) throws(RESPError) -> RESPCommandWords? {
        guard let first = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self) else { return nil }
        var cursor = buffer
        let words: RESPCommandWords?
        if first == UInt8(ascii: "*") {
            words = try commandArray(&cursor, storage: buffer)
        } else if inlineCommands && !RESPParser.isTypeByte(first) {
            words = try inlineCommand(&cursor, storage: buffer)
        } else {
            throw .malformed("expected a command as an array of bulk strings, got byte \(first)")
        }
        guard let words else {
            if buffer.readableBytes > limits.maxValueBytes { throw .tooLarge("request over \(limits.maxValueBytes) bytes") }
            return nil
        }
        if cursor.readerIndex - buffer.readerIndex > limits.maxValueBytes {
            throw .tooLarge("request over \(limits.maxValueBytes) bytes")
        }
        buffer = cursor
        return words
    }

    private func commandArray(_ cursor: inout ByteBuffer, storage: ByteBuffer) throws(RESPError) -> RESPCommandWords? {
        cursor.moveReaderIndex(forwardBy: 1)
        guard let count = try decimalLine(&cursor) else { return nil }
        guard count >= 0 else { throw .malformed("invalid multibulk length") }
        guard count <= limits.maxArrayCount else { throw .tooLarge("array of \(count) elements, over the limit of \(limits.maxArrayCount)") }
        var words = RESPCommandWords(storage: storage)
        for _ in 0..<count {
            guard let type = cursor.readInteger(as: UInt8.self) else { return nil }
            guard type == UInt8(ascii: "$") else { throw .malformed("expected '$', got byte \(type)") }
            guard let length = try decimalLine(&cursor) else { return nil }
            guard length >= 0 else { throw .malformed("invalid bulk length") }
            guard length <= limits.maxBulkLength else { throw .tooLarge("bulk string of \(length) bytes, over the limit of \(limits.maxBulkLength)") }
            guard cursor.readableBytes >= Int(length) + 2 else { return nil }
            words.append(at: cursor.readerIndex, length: Int(length))
            cursor.moveReaderIndex(forwardBy: Int(length))
            guard cursor.readInteger(as: UInt16.self) == 0x0D0A else { throw .malformed("bulk string not followed by CRLF") }
        }
        return words
    }

    /// An inline command: one line split on spaces.
    private func inlineCommand(_ cursor: inout ByteBuffer, storage: ByteBuffer) throws(RESPError) -> RESPCommandWords? {
        let view = cursor.readableBytesView
        guard let lf = view.firstIndex(of: UInt8(ascii: "\n")) else {
            if view.count > limits.maxValueBytes { throw .tooLarge("inline command over \(limits.maxValueBytes) bytes") }
            return nil
        }
        var end = lf
        if end > view.startIndex, view[end - 1] == UInt8(ascii: "\r") { end -= 1 }
        var words = RESPCommandWords(storage: storage)
        var start = view.startIndex
        for index in view.startIndex...end where index == end || view[index] == UInt8(ascii: " ") {
            if index > start { words.append(at: start, length: index - start) }
            start = index + 1
        }
        guard words.count <= limits.maxArrayCount else { throw .tooLarge("inline command of \(words.count) words, over the limit of \(limits.maxArrayCount)") }
        cursor.moveReaderIndex(to: lf + 1)
        return words
    }
}
