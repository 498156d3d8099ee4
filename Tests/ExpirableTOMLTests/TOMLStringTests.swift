import ExpirableTOML
import Testing

@Suite("TOML strings")
struct TOMLStringTests {
    @Test("basic strings resolve every escape of TOML 1.0", arguments: [
        (#""a\tb\nc""#, "a\tb\nc"),
        (#""\"quoted\" and \\ backslash""#, "\"quoted\" and \\ backslash"),
        (#""\b\f\r""#, "\u{8}\u{C}\r"),
        (#""\u00E9\u00e9 \U0001F600""#, "éé 😀"),
        (#""\u0000""#, "\u{0}"),
        ("\"tab\tinside\"", "tab\tinside"),
        ("\"Ünïcödé 日本\"", "Ünïcödé 日本"),
        ("\"\"", ""),
    ])
    func basic(literal: String, expected: String) throws {
        #expect(try value(literal) == .string(expected))
    }

    @Test("literal strings keep backslashes and quotes as written", arguments: [
        (#"'C:\Users\nodejs\templates'"#, #"C:\Users\nodejs\templates"#),
        (#"'<\i\c*\s*>'"#, #"<\i\c*\s*>"#),
        (#"'Tom "Dubs" Preston-Werner'"#, #"Tom "Dubs" Preston-Werner"#),
        ("''", ""),
    ])
    func literal(literal: String, expected: String) throws {
        #expect(try value(literal) == .string(expected))
    }

    @Test("multi-line basic strings drop the first newline, keep the others and resolve escapes")
    func multiLineBasic() throws {
        #expect(try value("\"\"\"\nRoses are red\nViolets are blue\"\"\"") == .string("Roses are red\nViolets are blue"))
        #expect(try value("\"\"\"one\\ttwo\"\"\"") == .string("one\ttwo"))
        #expect(try value("\"\"\"\"\"\"") == .string(""))
    }

    @Test("a backslash at the end of a line joins it to the next non-blank text")
    func lineEndingBackslash() throws {
        let text = "v = \"\"\"\nThe quick brown \\\n\n\n  fox jumps over \\   \n    the lazy dog.\"\"\""
        #expect(try TOML.parse(text)["v"] == .string("The quick brown fox jumps over the lazy dog."))
        #expect(try value("\"\"\"\\\n  text\\\n  \"\"\"") == .string("text"))
    }

    @Test("multi-line strings turn CRLF into LF and count their lines for the keys after them")
    func crlf() throws {
        let table = try TOML.parse("v = \"\"\"\r\na\r\nb\"\"\"\r\nw = '''x\r\ny'''\r\nafter = 1\r\n")
        #expect(table["v"] == .string("a\nb"))
        #expect(table["w"] == .string("x\ny"))
        #expect(table.line(of: "after") == 6)
    }

    @Test("up to two quotes may sit inside or right before the closing delimiter", arguments: [
        ("\"\"\"a\"\"b\"\"\"", "a\"\"b"),
        ("\"\"\"x\"\"\"\"", "x\""),
        ("\"\"\"x\"\"\"\"\"", "x\"\""),
        ("\"\"\"\"quoted\"\"\"\"", "\"quoted\""),
        ("''''one quote''''", "'one quote'"),
        ("'''x'''''", "x''"),
    ])
    func quotesNearTheEnd(literal: String, expected: String) throws {
        #expect(try value(literal) == .string(expected))
    }

    @Test("multi-line literal strings keep everything but the first newline")
    func multiLineLiteral() throws {
        #expect(try value("'''\nThe first newline is\ntrimmed in raw strings.\n   All other whitespace\n   is preserved.\n'''")
            == .string("The first newline is\ntrimmed in raw strings.\n   All other whitespace\n   is preserved.\n"))
        #expect(try value(#"'''I [dw]on't need \d{2} apples'''"#) == .string(#"I [dw]on't need \d{2} apples"#))
    }

    @Test("malformed strings are refused at the offending character", arguments: [
        ("v = \"abc", 1, "expected the closing '\"' of the string opened at column 5, found the end of the document"),
        ("v = \"abc\nw = 1", 1, "found the end of the line"),
        ("v = 'abc\nw = 1", 1, "expected the closing \"'\""),
        ("w = 1\n" + #"v = "\x41""#, 2, "invalid escape: found 'x' after '\\'"),
        (#"v = "\x41""#, 1, "invalid escape: found a letter after '\\'"),
        (#"v = "\e""#, 1, "invalid escape"),
        (#"v = "a\ b""#, 1, "invalid escape: found ' '"),
        (#"v = "\uD800""#, 1, "U+D800 is not a Unicode scalar value"),
        (#"v = "\U00110000""#, 1, "U+110000 is not a Unicode scalar value"),
        (#"v = "\u12""#, 1, "expected 4 hexadecimal digits in the escape \\u"),
        ("v = \"a\u{1}b\"", 1, "the control character U+0001 must be escaped in a string"),
        ("v = 'a\u{7F}b'", 1, "the control character U+007F is not allowed in a literal string"),
        ("v = \"\"\"\na\rb\"\"\"", 2, "the control character U+000D must be escaped"),
        ("v = \"\"\"\nabc", 2, "expected the closing \"\"\" of the multi-line string opened on line 1"),
        ("v = '''\nabc\n", 3, "expected the closing ''' of the multi-line string opened on line 1"),
        ("v = \"\"\"a\"\"\"\"\"\"", 1, "found 6 quotes in a row"),
        (#"v = """a\ b""""#, 1, "invalid escape"),
        ("v = \"\"\"ok\"\"\" \"\"", 1, "expected the end of the line after the value of \"v\", found '\"'"),
    ])
    func refused(toml: String, line: Int, fragment: String) throws {
        let error = try #require(syntaxError(toml))
        #expect(error.line == line)
        #expect(error.message.contains(fragment), "\(error)")
    }

    @Test("an unknown escape is reported at its backslash")
    func escapePosition() throws {
        let error = try #require(syntaxError(#"v = "ab\qc""#))
        #expect(error.column == 8)
    }
}
