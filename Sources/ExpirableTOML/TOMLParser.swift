/// One part of a dotted key, with where it was written so that errors about it point at it.
struct TOMLKeyPart {
    let name: String
    let mark: TOMLMark
}

/// Reads one document into a tree of `TOMLTableNode`s. This file holds the document's lines, keys, arrays and inline
/// tables; strings, numbers, date-times and the rules of table headers are in the extensions beside it.
struct TOMLParser {
    /// Deeper nesting is refused so that hostile input cannot overflow the stack, neither here (values are read
    /// recursively) nor later in the recursive equality and destruction of the result.
    static let maximumDepth = 64

    var scanner: TOMLScanner
    /// No key names the root, so its origin is never consulted.
    let root = TOMLTableNode(depth: 0, origin: .header(line: 1))
    /// The table that the latest header opened, where the following `key = value` lines go.
    var current: TOMLTableNode
    /// Whether errors may quote the document's words (a key with no '=', a bare value, a malformed number): only
    /// once a line of it has read as TOML (a table header or a whole `key = value`). Before that the file may not
    /// be TOML at all (a token file given to --config by mistake), and its first word may be a secret, which the
    /// error would carry to a terminal or the journal. Such errors give the word's length and position instead,
    /// and name a character found by its kind (the scanner's `found`).
    var quotesWords: Bool {
        get { scanner.quotesWords }
        set { scanner.quotesWords = newValue }
    }

    init(_ bytes: [UInt8]) {
        scanner = TOMLScanner(bytes)
        current = root
    }

    mutating func parseDocument() throws(TOMLSyntaxError) -> TOMLTable {
        scanner.skipByteOrderMark()
        while true {
            scanner.skipWhitespace()
            guard let byte = scanner.current else { return root.finish() }
            if scanner.takeNewline() { continue }
            if byte == UInt8(ascii: "#") {
                try scanner.skipComment()
            } else if byte == UInt8(ascii: "[") {
                try parseTableHeader()
                quotesWords = true
            } else {
                let key = try parseKeyValue(into: current)
                try scanner.expectEndOfLine(after: "the value of \(TOMLParser.phrase(key))")
                quotesWords = true
            }
        }
    }

    /// Reads `key = value` into `table` and returns the key for messages about what follows it.
    @discardableResult
    mutating func parseKeyValue(into table: TOMLTableNode) throws(TOMLSyntaxError) -> [TOMLKeyPart] {
        let key = try parseKey()
        scanner.skipWhitespace()
        guard scanner.take(UInt8(ascii: "=")) else {
            guard quotesWords else {
                throw scanner.error("expected '=' after the key that starts at column \(scanner.column(of: key[0].mark)), found \(scanner.found())" + TOMLParser.unquotedNote)
            }
            throw scanner.error("expected '=' after the key \(TOMLParser.phrase(key)), found \(scanner.found())")
        }
        scanner.skipWhitespace()
        let target = try tableForNewKey(key, in: table)
        let value = try parseValue(depth: target.depth + 1)
        let last = key[key.count - 1]
        target.add(last.name, .value(value), line: last.mark.line)
        return key
    }

    /// Ends an error that left out the document's word (`quotesWords`), saying why.
    static let unquotedNote = "; its text is not shown, since no line before it reads as TOML: is this the configuration file? (a file given by mistake may hold a secret)"

    // MARK: Keys

    /// Reads a key of one or more parts separated by dots, with optional whitespace around each dot.
    mutating func parseKey() throws(TOMLSyntaxError) -> [TOMLKeyPart] {
        var parts = [try parseSimpleKey()]
        while true {
            scanner.skipWhitespace()
            guard scanner.take(UInt8(ascii: ".")) else { return parts }
            scanner.skipWhitespace()
            parts.append(try parseSimpleKey())
        }
    }

    private mutating func parseSimpleKey() throws(TOMLSyntaxError) -> TOMLKeyPart {
        let mark = scanner.mark
        switch scanner.current {
        case let quote? where quote == UInt8(ascii: "\"") || quote == UInt8(ascii: "'"):
            return TOMLKeyPart(name: try parseQuotedKey(quote: quote), mark: mark)
        case let byte? where TOMLParser.isBareKeyByte(byte):
            while let byte = scanner.current, TOMLParser.isBareKeyByte(byte) {
                scanner.advance()
            }
            return TOMLKeyPart(name: String(decoding: scanner.bytes[mark.index..<scanner.index], as: UTF8.self), mark: mark)
        default:
            throw scanner.error("expected a key (letters, digits, '_', '-' or a quoted string), found \(scanner.found())")
        }
    }

    static func isBareKeyByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
             UInt8(ascii: "_"), UInt8(ascii: "-"):
            true
        default:
            false
        }
    }

    /// A key as TOML would write it, quoting the parts that cannot be bare: `a.b`, `"a b".c`, `""`.
    static func display(_ key: [TOMLKeyPart]) -> String {
        key.map { part in
            guard part.name.isEmpty || !part.name.utf8.allSatisfy(isBareKeyByte) else { return part.name }
            var quoted = "\""
            for scalar in part.name.unicodeScalars {
                switch scalar {
                case "\"": quoted += "\\\""
                case "\\": quoted += "\\\\"
                case "\u{0}"..."\u{1F}", "\u{7F}": quoted += "\\u" + String(repeating: "0", count: scalar.value < 0x10 ? 3 : 2) + String(scalar.value, radix: 16, uppercase: true)
                default: quoted.unicodeScalars.append(scalar)
                }
            }
            return quoted + "\""
        }.joined(separator: ".")
    }

    /// A key for the middle of a sentence: in double quotes when all its parts are bare (`"a.b"`), as TOML writes it
    /// otherwise (`"a b".c`), so that quotes in a message always mean something.
    static func phrase(_ key: [TOMLKeyPart]) -> String {
        let text = display(key)
        return text.hasPrefix("\"") || text.contains(".\"") ? text : "\"" + text + "\""
    }

    // MARK: Values

    /// Reads the value after `=` or in an array. `depth` is the depth the value would have as a table or array.
    mutating func parseValue(depth: Int) throws(TOMLSyntaxError) -> TOMLValue {
        switch scanner.current {
        case let quote? where quote == UInt8(ascii: "\"") || quote == UInt8(ascii: "'"):
            .string(try parseString(quote: quote))
        case UInt8(ascii: "["):
            try parseArray(depth: depth)
        case UInt8(ascii: "{"):
            try parseInlineTable(depth: depth)
        default:
            try parseBareValue()
        }
    }

    private mutating func parseArray(depth: Int) throws(TOMLSyntaxError) -> TOMLValue {
        try checkDepth(depth, at: scanner.mark)
        scanner.advance()
        var elements: [TOMLValue] = []
        while true {
            try scanner.skipBlankLines()
            if scanner.take(UInt8(ascii: "]")) { return .array(elements) }
            elements.append(try parseValue(depth: depth + 1))
            try scanner.skipBlankLines()
            if scanner.take(UInt8(ascii: "]")) { return .array(elements) }
            guard scanner.take(UInt8(ascii: ",")) else {
                throw scanner.error("expected ',' or ']' after an array element, found \(scanner.found())")
            }
        }
    }

    /// Reads `{ k = v, ... }`. Its keys follow the same rules as dotted keys in a document, and once read the table
    /// is a plain value: TOML forbids adding to an inline table afterwards.
    private mutating func parseInlineTable(depth: Int) throws(TOMLSyntaxError) -> TOMLValue {
        try checkDepth(depth, at: scanner.mark)
        let table = TOMLTableNode(depth: depth, origin: .dotted(line: scanner.line))
        scanner.advance()
        scanner.skipWhitespace()
        if scanner.take(UInt8(ascii: "}")) { return .table(table.finish()) }
        while true {
            scanner.skipWhitespace()
            if scanner.isAtNewline || scanner.current == UInt8(ascii: "}") {
                throw scanner.error("expected a key in the inline table, found \(scanner.found())" + TOMLParser.inlineRule)
            }
            try parseKeyValue(into: table)
            scanner.skipWhitespace()
            if scanner.take(UInt8(ascii: "}")) { return .table(table.finish()) }
            guard scanner.take(UInt8(ascii: ",")) else {
                throw scanner.error("expected ',' or '}' in the inline table, found \(scanner.found())" + TOMLParser.inlineRule)
            }
        }
    }

    /// TOML 1.0's two surprises about inline tables, added to their errors.
    private static let inlineRule = " (an inline table stays on one line and has no comma after its last key)"

    func checkDepth(_ depth: Int, at mark: TOMLMark) throws(TOMLSyntaxError) {
        guard depth <= TOMLParser.maximumDepth else {
            throw scanner.error("tables and arrays are nested more than \(TOMLParser.maximumDepth) levels deep", at: mark)
        }
    }

    /// Reads an unquoted value: a boolean, a number or a date-time. It is taken as one word first, so that an
    /// error can quote the whole of `1__000` or `yes` rather than the character where the grammar stopped.
    private mutating func parseBareValue() throws(TOMLSyntaxError) -> TOMLValue {
        let start = scanner.mark
        scanWord()
        // TOML lets a space replace the T of a date-time; a date followed by a space and `HH:` continues the word.
        let word = scanner.bytes[start.index..<scanner.index]
        if TOMLParser.isDate(word), scanner.current == UInt8(ascii: " "),
           let h1 = scanner.peek(1), let h2 = scanner.peek(2), TOMLParser.isDigit(h1), TOMLParser.isDigit(h2),
           scanner.peek(3) == UInt8(ascii: ":") {
            scanner.advance()
            scanWord()
        }
        return try value(ofWord: scanner.bytes[start.index..<scanner.index], at: start)
    }

    private mutating func scanWord() {
        while let byte = scanner.current, TOMLParser.isBareKeyByte(byte) || byte == UInt8(ascii: "+")
            || byte == UInt8(ascii: ".") || byte == UInt8(ascii: ":") {
            scanner.advance()
        }
    }

    private func value(ofWord word: ArraySlice<UInt8>, at start: TOMLMark) throws(TOMLSyntaxError) -> TOMLValue {
        let text = String(decoding: word, as: UTF8.self)
        switch text {
        case "":
            throw scanner.error("expected a value (a string, number, boolean, date-time, array or inline table), found \(scanner.found())")
        case "true": return .boolean(true)
        case "false": return .boolean(false)
        case "inf", "+inf": return .float(.infinity)
        case "-inf": return .float(-.infinity)
        case "nan", "+nan": return .float(.nan)
        case "-nan": return .float(-.nan)
        default:
            break
        }
        if TOMLParser.looksLikeDateTime(word) {
            return .dateTime(try validateDateTime(word, text: text, at: start))
        }
        return try parseNumber(word, text: text, at: start)
    }

    /// "a" or "an" for a word in a message, such as "an integer" or "an octal digit".
    static func article(_ word: String) -> String {
        word.first.map { "aeiou".contains($0) } == true ? "an" : "a"
    }

    static func isDigit(_ byte: UInt8) -> Bool {
        byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")
    }
}
