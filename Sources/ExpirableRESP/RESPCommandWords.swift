import NIOCore

/// The words of one request, for servers: positions in the receive buffer's memory rather than copies, slices
/// or references, so parsing a request and matching its words costs no allocation and no reference count.
/// A value is valid only inside the `scanCommands` call that produced it.
public struct RESPCommandWords {
    public private(set) var count = 0
    /// The receive buffer's memory.
    private let base: UnsafeRawPointer?
    /// Where the words lie: `base`, or `unquoted`'s memory for an inline command with quoted words.
    private var wordBase: UnsafeRawPointer?
    /// An inline command's words once quotes are taken off and escapes replaced: no longer bytes of the
    /// receive buffer, so kept here for as long as the words are.
    private var unquoted: UnquotedWords?
    // (offset, length) pairs of the first three words; every daemon command fits in three.
    private var inline: (Int, Int, Int, Int, Int, Int) = (0, 0, 0, 0, 0, 0)
    private var rest: [(Int, Int)] = []
    /// Where the whole request lies in the receive buffer, set once it is complete.
    fileprivate var requestStart = 0
    fileprivate var requestEnd = 0

    init(base: UnsafeRawPointer?) {
        self.base = base
        wordBase = base
    }

    /// Words made of `bytes` rather than of the receive buffer: `ranges` are positions in `bytes`.
    mutating func setUnquoted(_ bytes: [UInt8], _ ranges: [(Int, Int)]) {
        let words = UnquotedWords(bytes)
        unquoted = words
        wordBase = UnsafeRawPointer(words.storage.baseAddress)
        count = 0
        rest = []
        for (offset, length) in ranges { append(at: offset, length: length) }
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
        guard let wordBase else { return UnsafeRawBufferPointer(start: nil, count: 0) }
        return UnsafeRawBufferPointer(start: wordBase + offset, count: length)
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

/// Memory of its own for words that are not bytes of the receive buffer, freed with the last words using it.
private final class UnquotedWords {
    let storage: UnsafeMutableRawBufferPointer

    init(_ bytes: [UInt8]) {
        storage = .allocate(byteCount: max(bytes.count, 1), alignment: 1)
        storage.copyBytes(from: bytes)
    }

    deinit { storage.deallocate() }
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
        var words = RESPCommandWords(base: bytes.baseAddress)
        // A negative count is an empty request, skipped as Redis skips it.
        guard count >= 0 else { return (words, afterCount) }
        guard count <= limits.maxArrayCount else { throw .tooLarge("array of \(count) elements, over the limit of \(limits.maxArrayCount)") }
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

    /// An inline command: one line split into words as redis-server's `sdssplitargs` splits it. Words are
    /// separated by whitespace (space, tab, CR, …); `"…"` holds a word with spaces and the escapes `\n`, `\r`,
    /// `\t`, `\b`, `\a`, `\xHH` and `\` before any other byte, `'…'` one with `\'` only. A closing quote must end
    /// its word; a quote left open is a protocol error.
    private func inlineCommand(_ bytes: UnsafeRawBufferPointer, from start: Int) throws(RESPError) -> (words: RESPCommandWords, end: Int)? {
        guard let lf = bytes[start...].firstIndex(of: UInt8(ascii: "\n")) else {
            if bytes.count - start > limits.maxValueBytes { throw .tooLarge("inline command over \(limits.maxValueBytes) bytes") }
            return nil
        }
        // A line's words are bounded by its bytes: checked before it is split.
        guard lf + 1 - start <= limits.maxValueBytes else { throw .tooLarge("inline command over \(limits.maxValueBytes) bytes") }
        var words = RESPCommandWords(base: bytes.baseAddress)
        words.requestStart = start
        words.requestEnd = lf + 1
        let line = start..<lf
        if line.contains(where: { bytes[$0] == UInt8(ascii: "\"") || bytes[$0] == UInt8(ascii: "'") }) {
            let (unquoted, ranges) = try RESPParser.splitQuoted(bytes, line)
            words.setUnquoted(unquoted, ranges)
            return (words, lf + 1)
        }
        // Without quotes every word is a run of the line's bytes: no copy.
        var wordStart = start
        for index in start...lf where index == lf || RESPParser.isInlineSpace(bytes[index]) {
            if index > wordStart { words.append(at: wordStart, length: index - wordStart) }
            wordStart = index + 1
        }
        return (words, lf + 1)
    }

    /// What separates an inline command's words: C's isspace, and NUL.
    static func isInlineSpace(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: " ") || (byte >= 0x09 && byte <= 0x0D) || byte == 0
    }

    /// The words of an inline line with quotes, unquoted and unescaped into one array, and where each lies in it.
    static func splitQuoted(_ bytes: UnsafeRawBufferPointer, _ line: Range<Int>) throws(RESPError) -> ([UInt8], [(Int, Int)]) {
        let unbalanced = RESPError.malformed("unbalanced quotes in inline request")
        func hex(_ byte: UInt8) -> UInt8? {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
            default: nil
            }
        }
        func at(_ index: Int) -> UInt8? { index < line.upperBound ? bytes[index] : nil }
        var out: [UInt8] = []
        out.reserveCapacity(line.count)
        var ranges: [(Int, Int)] = []
        var index = line.lowerBound
        while true {
            while let byte = at(index), isInlineSpace(byte) { index += 1 }
            guard index < line.upperBound else { break }
            let wordStart = out.count
            var quote: UInt8?
            wordLoop: while true {
                let byte = at(index)
                if quote == UInt8(ascii: "\"") {
                    guard let byte else { throw unbalanced }
                    if byte == UInt8(ascii: "\\"), at(index + 1) == UInt8(ascii: "x"),
                       let high = at(index + 2).flatMap(hex), let low = at(index + 3).flatMap(hex) {
                        out.append(high << 4 | low)
                        index += 3
                    } else if byte == UInt8(ascii: "\\"), let escaped = at(index + 1) {
                        switch escaped {
                        case UInt8(ascii: "n"): out.append(0x0A)
                        case UInt8(ascii: "r"): out.append(0x0D)
                        case UInt8(ascii: "t"): out.append(0x09)
                        case UInt8(ascii: "b"): out.append(0x08)
                        case UInt8(ascii: "a"): out.append(0x07)
                        default: out.append(escaped)
                        }
                        index += 1
                    } else if byte == UInt8(ascii: "\"") {
                        if let next = at(index + 1), !isInlineSpace(next) { throw unbalanced }
                        index += 1
                        break wordLoop
                    } else {
                        out.append(byte)
                    }
                } else if quote == UInt8(ascii: "'") {
                    guard let byte else { throw unbalanced }
                    if byte == UInt8(ascii: "\\"), at(index + 1) == UInt8(ascii: "'") {
                        out.append(UInt8(ascii: "'"))
                        index += 1
                    } else if byte == UInt8(ascii: "'") {
                        if let next = at(index + 1), !isInlineSpace(next) { throw unbalanced }
                        index += 1
                        break wordLoop
                    } else {
                        out.append(byte)
                    }
                } else {
                    guard let byte, !isInlineSpace(byte) else { break wordLoop }
                    if byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "'") { quote = byte } else { out.append(byte) }
                }
                index += 1
            }
            ranges.append((wordStart, out.count - wordStart))
        }
        return (out, ranges)
    }
}
