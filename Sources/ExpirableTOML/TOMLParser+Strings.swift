/// The four kinds of strings: basic `"…"` with escapes, literal `'…'` without, and their multi-line forms.
extension TOMLParser {
    /// Reads a string value of any kind; the scanner is at its first quote, `"` or `'`.
    mutating func parseString(quote: UInt8) throws(TOMLSyntaxError) -> String {
        if scanner.peek(1) == quote, scanner.peek(2) == quote {
            return try parseMultiLineString(quote: quote)
        }
        return try parseSingleLineString(quote: quote)
    }

    /// Reads a quoted key, which TOML allows only in the single-line forms; the scanner is at its quote.
    mutating func parseQuotedKey(quote: UInt8) throws(TOMLSyntaxError) -> String {
        guard scanner.peek(1) != quote || scanner.peek(2) != quote else {
            throw scanner.error("a multi-line string cannot be a key; use \"…\" or '…'")
        }
        return try parseSingleLineString(quote: quote)
    }

    private mutating func parseSingleLineString(quote: UInt8) throws(TOMLSyntaxError) -> String {
        let isBasic = quote == UInt8(ascii: "\"")
        let open = scanner.mark
        scanner.advance()
        var buffer: [UInt8] = []
        while true {
            guard let byte = scanner.current, !scanner.isAtNewline else {
                let closing = isBasic ? "'\"'" : "\"'\""
                throw scanner.error("expected the closing \(closing) of the string opened at column \(scanner.column(of: open)), found \(scanner.found())")
            }
            if byte == quote {
                scanner.advance()
                return String(decoding: buffer, as: UTF8.self)
            }
            if isBasic, byte == UInt8(ascii: "\\") {
                try readEscape(into: &buffer)
            } else {
                try append(byte, to: &buffer, isBasic: isBasic)
            }
        }
    }

    /// Reads `"""…"""` or `'''…'''`. A newline right after the opening quotes is dropped, CRLF becomes LF, and up to
    /// two quotes may sit right before the closing three (`""""` ends the text with one `"`).
    private mutating func parseMultiLineString(quote: UInt8) throws(TOMLSyntaxError) -> String {
        let isBasic = quote == UInt8(ascii: "\"")
        let delimiter = isBasic ? "\"\"\"" : "'''"
        let openLine = scanner.line
        scanner.advance(3)
        _ = scanner.takeNewline()
        var buffer: [UInt8] = []
        while true {
            guard let byte = scanner.current else {
                throw scanner.error("expected the closing \(delimiter) of the multi-line string opened on line \(openLine), found the end of the document")
            }
            if byte == quote {
                var count = 1
                while scanner.peek(count) == quote {
                    count += 1
                }
                if count > 5 {
                    throw scanner.error("found \(count) quotes in a row; a multi-line string may end with at most two quotes before its closing \(delimiter)")
                }
                buffer.append(contentsOf: repeatElement(quote, count: count < 3 ? count : count - 3))
                scanner.advance(count)
                if count >= 3 { return String(decoding: buffer, as: UTF8.self) }
            } else if scanner.takeNewline() {
                buffer.append(UInt8(ascii: "\n"))
            } else if isBasic, byte == UInt8(ascii: "\\") {
                if !skipLineEndingBackslash() {
                    try readEscape(into: &buffer)
                }
            } else {
                try append(byte, to: &buffer, isBasic: isBasic)
            }
        }
    }

    /// A backslash that ends a line (trailing spaces allowed) joins the lines: it and all whitespace and newlines
    /// up to the next other character are dropped. Returns false, moving nothing, for any other backslash.
    private mutating func skipLineEndingBackslash() -> Bool {
        var offset = 1
        while scanner.peek(offset) == UInt8(ascii: " ") || scanner.peek(offset) == UInt8(ascii: "\t") {
            offset += 1
        }
        guard scanner.peek(offset) == UInt8(ascii: "\n")
            || (scanner.peek(offset) == UInt8(ascii: "\r") && scanner.peek(offset + 1) == UInt8(ascii: "\n"))
        else { return false }
        scanner.advance(offset)
        repeat {
            scanner.skipWhitespace()
        } while scanner.takeNewline()
        return true
    }

    private mutating func append(_ byte: UInt8, to buffer: inout [UInt8], isBasic: Bool) throws(TOMLSyntaxError) {
        guard !TOMLScanner.isForbiddenControl(byte) else {
            let rule = isBasic ? "must be escaped in a string" : "is not allowed in a literal string"
            throw scanner.error("\(scanner.found()) \(rule)")
        }
        buffer.append(byte)
        scanner.advance()
    }

    /// Reads one escape sequence; the scanner is at the backslash.
    private mutating func readEscape(into buffer: inout [UInt8]) throws(TOMLSyntaxError) {
        let backslash = scanner.mark
        let simple: UInt8?
        switch scanner.peek(1) {
        case UInt8(ascii: "b"): simple = 0x08
        case UInt8(ascii: "t"): simple = UInt8(ascii: "\t")
        case UInt8(ascii: "n"): simple = UInt8(ascii: "\n")
        case UInt8(ascii: "f"): simple = 0x0C
        case UInt8(ascii: "r"): simple = UInt8(ascii: "\r")
        case UInt8(ascii: "\""): simple = UInt8(ascii: "\"")
        case UInt8(ascii: "\\"): simple = UInt8(ascii: "\\")
        case UInt8(ascii: "u"), UInt8(ascii: "U"): simple = nil
        default:
            throw scanner.error("invalid escape: found \(scanner.found(at: backslash.index + 1)) after '\\'; TOML 1.0 knows \\b \\t \\n \\f \\r \\\" \\\\ \\uXXXX and \\UXXXXXXXX", at: backslash)
        }
        if let simple {
            buffer.append(simple)
            scanner.advance(2)
            return
        }
        let digits = scanner.peek(1) == UInt8(ascii: "u") ? 4 : 8
        scanner.advance(2)
        var value: UInt32 = 0
        for _ in 0..<digits {
            guard let byte = scanner.current, let digit = TOMLParser.digitValue(byte, radix: 16) else {
                throw scanner.error("expected \(digits) hexadecimal digits in the escape \\\(digits == 4 ? "u" : "U"), found \(scanner.found())")
            }
            value = value * 16 + UInt32(digit)
            scanner.advance()
        }
        guard let scalar = Unicode.Scalar(value) else {
            let hex = String(value, radix: 16, uppercase: true)
            throw scanner.error("the escape for U+\(hex) is not a Unicode scalar value (surrogates D800-DFFF and values above 10FFFF are not allowed)", at: backslash)
        }
        UTF8.encode(scalar) { buffer.append($0) }
    }
}
