import NIOCore

/// The words of one request, for servers: positions in the receive buffer's memory rather than copies, slices
/// or references, so parsing a request and matching its words costs no allocation and no reference count.
/// A value is valid only inside the `scanCommands` call that produced it.
public struct RESPCommandWords {
    public private(set) var count = 0
    private let base: UnsafeRawPointer?
    // (offset, length) pairs of the first three words; every daemon command fits in three.
    private var inline: (Int, Int, Int, Int, Int, Int) = (0, 0, 0, 0, 0, 0)
    private var rest: [(Int, Int)] = []
    /// Where the whole request lies in the receive buffer, set once it is complete.
    fileprivate var requestStart = 0
    fileprivate var requestEnd = 0

    init(base: UnsafeRawPointer?) {
        self.base = base
    }

    /// The bytes of the whole request as it arrived (its framing included), for a server that keeps a request
    /// to run later, such as a command queued inside MULTI.
    public var requestBytes: UnsafeRawBufferPointer {
        guard let base else { return UnsafeRawBufferPointer(start: nil, count: 0) }
        return UnsafeRawBufferPointer(start: base + requestStart, count: requestEnd - requestStart)
    }

    mutating func append(at offset: Int, length: Int) {
        switch count {
        case 0: inline.0 = offset; inline.1 = length
        case 1: inline.2 = offset; inline.3 = length
        case 2: inline.4 = offset; inline.5 = length
        default: rest.append((offset, length))
        }
        count += 1
    }

    /// The bytes of word `word` (0 is the command name); they must not outlive the `scanCommands` body.
    public func bytes(_ word: Int) -> UnsafeRawBufferPointer {
        let (offset, length): (Int, Int) = switch word {
        case 0: (inline.0, inline.1)
        case 1: (inline.2, inline.3)
        case 2: (inline.4, inline.5)
        default: rest[word - 3]
        }
        guard let base else { return UnsafeRawBufferPointer(start: nil, count: 0) }
        return UnsafeRawBufferPointer(start: base + offset, count: length)
    }

    /// Word `word` as text (invalid UTF-8 repaired).
    public func string(_ word: Int) -> String {
        String(decoding: bytes(word), as: UTF8.self)
    }

    /// Whether word `word` is `keyword` (given in upper case), ignoring ASCII case.
    public func word(_ word: Int, is keyword: StaticString) -> Bool {
        let bytes = bytes(word)
        guard bytes.count == keyword.utf8CodeUnitCount else { return false }
        for index in 0..<bytes.count {
            let byte = bytes[index]
            let expected = keyword.utf8Start[index]
            // Letters match in either case; anything else ('-', digits) exactly.
            if byte != expected && !(expected >= 0x41 && expected <= 0x5A && byte == expected | 0x20) { return false }
        }
        return true
    }
}

extension RESPParser {
    /// Calls `body` with each complete request at the front of `buffer`, in order, until `body` returns false
    /// or only part of a request is left, then consumes the bytes of the requests given to `body`. A request is
    /// an array of bulk strings, or an inline line when `inlineCommands` is set; an empty one is consumed without
    /// calling `body`. Anything else, or input over the limits, throws (after the requests before it were given
    /// to `body`).
    public func scanCommands(_ buffer: inout ByteBuffer, _ body: (RESPCommandWords) -> Bool) throws(RESPError) {
        let scanned: Result<Int, RESPError> = buffer.withUnsafeReadableBytes { bytes in
            var offset = 0
            while offset < bytes.count {
                let request: (words: RESPCommandWords, end: Int)?
                do throws(RESPError) {
                    request = try scanCommand(bytes, from: offset)
                } catch {
                    return .failure(error)
                }
                guard let request else {
                    if bytes.count - offset > limits.maxValueBytes {
                        return .failure(.tooLarge("request over \(limits.maxValueBytes) bytes"))
                    }
                    break
                }
                if request.end - offset > limits.maxValueBytes {
                    return .failure(.tooLarge("request over \(limits.maxValueBytes) bytes"))
                }
                offset = request.end
                // An empty request (an empty line, `*0`) is skipped unanswered, as Redis does: `redis-cli --pipe`
                // ends with an empty line.
                if request.words.count == 0 { continue }
                if !body(request.words) { break }
            }
            return .success(offset)
        }
        switch scanned {
        case .success(let consumed): buffer.moveReaderIndex(forwardBy: consumed)
        case .failure(let error): throw error
        }
    }

    /// The request starting at `offset`, and where it ends; nil when more bytes are needed.
    private func scanCommand(_ bytes: UnsafeRawBufferPointer, from offset: Int) throws(RESPError) -> (words: RESPCommandWords, end: Int)? {
        let first = bytes[offset]
        if first == UInt8(ascii: "*") {
            return try commandArray(bytes, from: offset + 1)
        } else if inlineCommands && !RESPParser.isTypeByte(first) {
            return try inlineCommand(bytes, from: offset)
        }
        throw .malformed("expected a command as an array of bulk strings, got byte \(first)")
    }

    private func commandArray(_ bytes: UnsafeRawBufferPointer, from start: Int) throws(RESPError) -> (words: RESPCommandWords, end: Int)? {
        guard let (count, afterCount) = try decimalLine(bytes, from: start) else { return nil }
        guard count >= 0 else { throw .malformed("invalid multibulk length") }
        guard count <= limits.maxArrayCount else { throw .tooLarge("array of \(count) elements, over the limit of \(limits.maxArrayCount)") }
        var words = RESPCommandWords(base: bytes.baseAddress)
        words.requestStart = start - 1
        var cursor = afterCount
        for _ in 0..<count {
            guard cursor < bytes.count else { return nil }
            let type = bytes[cursor]
            guard type == UInt8(ascii: "$") else { throw .malformed("expected '$', got byte \(type)") }
            guard let (length, afterLength) = try decimalLine(bytes, from: cursor + 1) else { return nil }
            guard length >= 0 else { throw .malformed("invalid bulk length") }
            guard length <= limits.maxBulkLength else { throw .tooLarge("bulk string of \(length) bytes, over the limit of \(limits.maxBulkLength)") }
            guard bytes.count - afterLength >= Int(length) + 2 else { return nil }
            words.append(at: afterLength, length: Int(length))
            cursor = afterLength + Int(length)
            guard bytes[cursor] == 0x0D, bytes[cursor + 1] == 0x0A else { throw .malformed("bulk string not followed by CRLF") }
            cursor += 2
        }
        words.requestEnd = cursor
        return (words, cursor)
    }

    /// An inline command: one line split on spaces.
    private func inlineCommand(_ bytes: UnsafeRawBufferPointer, from start: Int) throws(RESPError) -> (words: RESPCommandWords, end: Int)? {
        guard let lf = bytes[start...].firstIndex(of: UInt8(ascii: "\n")) else {
            if bytes.count - start > limits.maxValueBytes { throw .tooLarge("inline command over \(limits.maxValueBytes) bytes") }
            return nil
        }
        // A line's words are bounded by its bytes: checked before it is split.
        guard lf + 1 - start <= limits.maxValueBytes else { throw .tooLarge("inline command over \(limits.maxValueBytes) bytes") }
        var end = lf
        if end > start, bytes[end - 1] == UInt8(ascii: "\r") { end -= 1 }
        var words = RESPCommandWords(base: bytes.baseAddress)
        words.requestStart = start
        words.requestEnd = lf + 1
        var wordStart = start
        for index in start...end where index == end || bytes[index] == UInt8(ascii: " ") {
            if index > wordStart { words.append(at: wordStart, length: index - wordStart) }
            wordStart = index + 1
        }
        return (words, lf + 1)
    }
}
