/// A position in the source. Taking one costs three integers, so the parser takes one for every key and value;
/// the column is only counted when an error needs it.
struct TOMLMark {
    let index: Int
    let line: Int
    let lineStart: Int

    /// The position `offset` bytes further on the same line: tokens never span lines, so an error found inside a
    /// number or a date-time can point at the offending character rather than at the token's start.
    func advanced(by offset: Int) -> TOMLMark {
        TOMLMark(index: index + offset, line: line, lineStart: lineStart)
    }
}

/// Reading at the level of bytes: whitespace, comments, newlines and line counting, and errors that say what was
/// found. Every structural character of TOML is ASCII, so working on UTF-8 bytes never splits a character that
/// matters; the grammar itself is in `TOMLParser`.
struct TOMLScanner {
    let bytes: [UInt8]
    private(set) var index = 0
    private(set) var line = 1
    private(set) var lineStart = 0
    /// Whether `found` may quote the document's letters and digits: `TOMLParser.quotesWords`, kept here so that
    /// every error that says what it found (a key with no '=', a number, a date-time, an escape) obeys it.
    var quotesWords = false

    init(_ bytes: [UInt8]) {
        self.bytes = bytes
    }

    var mark: TOMLMark { TOMLMark(index: index, line: line, lineStart: lineStart) }

    var current: UInt8? { peek(0) }

    func peek(_ offset: Int) -> UInt8? {
        index + offset < bytes.count ? bytes[index + offset] : nil
    }

    /// Moves past `count` bytes that the caller has checked are not a line feed, so the line count stays right.
    mutating func advance(_ count: Int = 1) {
        index += count
    }

    mutating func take(_ byte: UInt8) -> Bool {
        guard current == byte else { return false }
        index += 1
        return true
    }

    /// Consumes an LF or a CRLF. A CR alone is not a newline in TOML, so it is left for the caller to refuse.
    mutating func takeNewline() -> Bool {
        if current == UInt8(ascii: "\r"), peek(1) == UInt8(ascii: "\n") {
            index += 1
        }
        guard current == UInt8(ascii: "\n") else { return false }
        index += 1
        line += 1
        lineStart = index
        return true
    }

    var isAtNewline: Bool {
        current == UInt8(ascii: "\n") || (current == UInt8(ascii: "\r") && peek(1) == UInt8(ascii: "\n"))
    }

    /// Editors on Windows may start a UTF-8 file with U+FEFF; it is not part of the document, and starting line 1
    /// after it keeps the columns of that line right.
    mutating func skipByteOrderMark() {
        guard bytes.starts(with: [0xEF, 0xBB, 0xBF]) else { return }
        index = 3
        lineStart = 3
    }

    mutating func skipWhitespace() {
        while current == UInt8(ascii: " ") || current == UInt8(ascii: "\t") {
            index += 1
        }
    }

    /// Skips a comment up to, not including, its newline; the scanner is at `#`.
    mutating func skipComment() throws(TOMLSyntaxError) {
        while let byte = current, !isAtNewline {
            if TOMLScanner.isForbiddenControl(byte) {
                throw error("\(found()) is not allowed in a comment")
            }
            index += 1
        }
    }

    /// Skips whitespace, comments and newlines, as allowed between the elements of an array.
    mutating func skipBlankLines() throws(TOMLSyntaxError) {
        while true {
            skipWhitespace()
            if current == UInt8(ascii: "#") {
                try skipComment()
            }
            guard takeNewline() else { return }
        }
    }

    /// Requires that only whitespace and a comment remain on the line, then moves to the next line.
    mutating func expectEndOfLine(after what: String) throws(TOMLSyntaxError) {
        skipWhitespace()
        if current == UInt8(ascii: "#") {
            try skipComment()
        }
        guard current == nil || takeNewline() else {
            throw error("expected the end of the line after \(what), found \(found())")
        }
    }

    /// An error at `mark`, or at the current position.
    func error(_ message: String, at mark: TOMLMark? = nil) -> TOMLSyntaxError {
        let mark = mark ?? self.mark
        return TOMLSyntaxError(line: mark.line, column: column(of: mark), message: message)
    }

    /// The 1-based column of `mark` in Unicode scalars: the bytes that start a scalar before it on its line, plus one.
    func column(of mark: TOMLMark) -> Int {
        bytes[mark.lineStart..<mark.index].reduce(1) { count, byte in
            TOMLScanner.isContinuation(byte) ? count : count + 1
        }
    }

    /// Names the character at `index` (by default the current one) for a message, so that an invisible control
    /// character or a missing newline is spelled out rather than printed raw. Until `quotesWords`, a letter, a
    /// digit or a non-ASCII character is named by its kind only: it may be the first character of a secret's
    /// second word (`TOKEN SECRET`, a PEM key's `PRIVATE`). ASCII punctuation is still shown: it is what TOML's
    /// errors are about (a stray '=' or bracket), not what a secret's worth is in.
    func found(at index: Int? = nil) -> String {
        let index = index ?? self.index
        guard index < bytes.count else { return "the end of the document" }
        let byte = bytes[index]
        if byte == UInt8(ascii: "\n") || (byte == UInt8(ascii: "\r") && index + 1 < bytes.count && bytes[index + 1] == UInt8(ascii: "\n")) {
            return "the end of the line"
        }
        if TOMLScanner.isForbiddenControl(byte) {
            let hex = String(byte, radix: 16, uppercase: true)
            return "the control character U+" + String(repeating: "0", count: 4 - hex.count) + hex
        }
        if !quotesWords {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"): return "a letter"
            case UInt8(ascii: "0")...UInt8(ascii: "9"): return "a digit"
            case 0x80...: return "a non-ASCII character"
            default: break
            }
        }
        var end = index + 1
        while end < bytes.count, TOMLScanner.isContinuation(bytes[end]) {
            end += 1
        }
        return "'" + String(decoding: bytes[index..<end], as: UTF8.self) + "'"
    }

    /// Control characters other than tab, which TOML refuses in comments and strings (a newline ends both first).
    static func isForbiddenControl(_ byte: UInt8) -> Bool {
        (byte < 0x20 && byte != UInt8(ascii: "\t")) || byte == 0x7F
    }

    private static func isContinuation(_ byte: UInt8) -> Bool {
        byte & 0xC0 == 0x80
    }
}
