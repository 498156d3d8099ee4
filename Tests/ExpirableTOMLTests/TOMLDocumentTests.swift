import ExpirableTOML
import Testing

@Suite("TOML documents")
struct TOMLDocumentTests {
    @Test("empty documents, and documents of only whitespace and comments, are empty tables", arguments: [
        "", "\n", "\r\n", "   \t ", "# only a comment", "# one\n\n   # two\r\n", "\u{FEFF}",
    ])
    func empty(text: String) throws {
        let table = try TOML.parse(text)
        #expect(table.isEmpty)
        #expect(table.count == 0)
    }

    @Test("comments may follow values and headers, and the last line needs no newline")
    func comments() throws {
        let table = try TOML.parse("# This is a full-line comment\nkey = \"value\"  # This is a comment at the end of a line\nanother = \"# This is not a comment\"\n[t] # a table\ntab = 1\t# tab before\t the comment")
        #expect(render(table) == ##"{key = "value", another = "# This is not a comment", t = {tab = 1}}"##)
    }

    @Test("CRLF and LF line endings may be mixed")
    func lineEndings() throws {
        let table = try TOML.parse("a = 1\r\nb = 2\n\r\n[c]\r\nd = 3")
        #expect(render(table) == "{a = 1, b = 2, c = {d = 3}}")
        #expect(table["c"]?.table?.line(of: "d") == 5)
    }

    @Test("a byte order mark at the start is skipped, and columns on the first line do not count it")
    func byteOrderMark() throws {
        #expect(render(try TOML.parse("\u{FEFF}a = 1")) == "{a = 1}")
        #expect(syntaxError("\u{FEFF}a x")?.column == 3)
        #expect(syntaxError("a = 1\n\u{FEFF}b = 2")?.message.contains("found '\u{FEFF}'") == true)
    }

    @Test("control characters are refused in comments and between tokens, and a lone CR is no newline", arguments: [
        ("# bell \u{7} here", 1, 8, "the control character U+0007 is not allowed in a comment"),
        ("a = 1 # del \u{7F}", 1, 13, "the control character U+007F is not allowed in a comment"),
        ("a = 1\n# cr \r here", 2, 6, "the control character U+000D is not allowed in a comment"),
        ("a = 1\rb = 2", 1, 6, "expected the end of the line after the value of \"a\", found the control character U+000D"),
        ("\u{C}a = 1", 1, 1, "expected a key (letters, digits, '_', '-' or a quoted string), found the control character U+000C"),
        ("a = \u{0}", 1, 5, "expected a value (a string, number, boolean, date-time, array or inline table), found the control character U+0000"),
    ])
    func controlCharacters(toml: String, line: Int, column: Int, fragment: String) throws {
        let error = try #require(syntaxError(toml))
        #expect(error.line == line)
        #expect(error.column == column)
        #expect(error.message.contains(fragment), "\(error)")
    }

    @Test("columns count Unicode scalars, not bytes")
    func columnsInScalars() throws {
        // After a line that reads as TOML, so that the character found is quoted.
        let error = try #require(syntaxError("w = 1\na = \"é😀\" x"))
        #expect(error.column == 10)
        #expect(error.message == "expected the end of the line after the value of \"a\", found 'x'")
    }

    @Test("every key knows the line it was first written on, including tables implied by headers and dotted keys")
    func lines() throws {
        let table = try TOML.parse("""
            # config
            top = 1
            [server]
            socket = "/run/x.sock"
            text = \"\"\"
            one
            two\"\"\"
            mode = "0660"

            [expirable.token]
            plugin = "oauth2"
            params.retries = 3
            [[peers]]
            name = "a"
            [[peers]]
            name = "b"
            inline = { k = 1, l.m = 2 }
            [x.y]
            [x]
            """)
        #expect(table.line(of: "top") == 2)
        #expect(table.line(of: "server") == 3)
        #expect(table.line(of: "missing") == nil)
        let server = try #require(table["server"]?.table)
        #expect(server.line(of: "socket") == 4)
        #expect(server.line(of: "text") == 5)
        #expect(server.line(of: "mode") == 8)
        #expect(table.line(of: "expirable") == 10)
        let token = try #require(table["expirable"]?.table?["token"]?.table)
        #expect(table["expirable"]?.table?.line(of: "token") == 10)
        #expect(token.line(of: "plugin") == 11)
        #expect(token.line(of: "params") == 12)
        #expect(token["params"]?.table?.line(of: "retries") == 12)
        #expect(table.line(of: "peers") == 13)
        let elements = try #require(table["peers"]?.array)
        let peers = elements.compactMap(\.table)
        #expect(peers.map { $0.line(of: "name") } == [14, 16])
        #expect(peers[1].line(of: "inline") == 17)
        #expect(peers[1]["inline"]?.table?.line(of: "l") == 17)
        #expect(table.line(of: "x") == 18)
        #expect(table["x"]?.table?.line(of: "y") == 18)
    }

    @Test("input over 1 MiB is refused before parsing")
    func sizeLimit() throws {
        #expect(try TOML.parse("#" + String(repeating: " ", count: (1 << 20) - 1)).isEmpty)
        let error = try #require(syntaxError("#" + String(repeating: " ", count: 1 << 20)))
        #expect(error == TOMLSyntaxError(line: 1, column: 1, message: "the document is 1048577 bytes; at most 1048576 (1 MiB) are accepted"))
    }

    /// A nesting case named by its shape, because the inputs themselves run to hundreds of kilobytes.
    struct Nesting: Sendable, CustomTestStringConvertible {
        let testDescription: String
        let toml: String
        /// Where the error is reported, or nil when the document is valid.
        let column: Int?

        init(_ name: String, _ toml: String, refusedAt column: Int? = nil) {
            testDescription = name
            self.toml = toml
            self.column = column
        }
    }

    @Test("nesting up to 64 levels is read and deeper nesting is refused, without exhausting the stack", arguments: [
        Nesting("64 arrays", "v = " + String(repeating: "[", count: 64) + String(repeating: "]", count: 64)),
        Nesting("65 arrays", "v = " + String(repeating: "[", count: 65) + String(repeating: "]", count: 65), refusedAt: 69),
        Nesting("400 000 open arrays", "v = " + String(repeating: "[", count: 400_000), refusedAt: 69),
        Nesting("64 inline tables", "v = " + String(repeating: "{a = ", count: 64) + "1" + String(repeating: "}", count: 64)),
        Nesting("65 inline tables", "v = " + String(repeating: "{a = ", count: 65) + "1" + String(repeating: "}", count: 65), refusedAt: 325),
        Nesting("200 000 open inline tables", "v = " + String(repeating: "{a = ", count: 200_000), refusedAt: 325),
        Nesting("63 dotted tables holding an array", String(repeating: "a.", count: 63) + "a = []"),
        Nesting("64 dotted tables holding an integer", String(repeating: "a.", count: 64) + "a = 1"),
        Nesting("64 dotted tables holding an array", String(repeating: "a.", count: 64) + "a = []", refusedAt: 133),
        Nesting("65 dotted tables", String(repeating: "a.", count: 65) + "a = 1", refusedAt: 129),
        Nesting("300 000 dotted tables", String(repeating: "a.", count: 300_000) + "a = 1", refusedAt: 129),
        Nesting("a header 300 000 tables deep", "[" + String(repeating: "a.", count: 300_000) + "a]", refusedAt: 130),
        Nesting("an array of tables at depth 64", "[[" + String(repeating: "a.", count: 62) + "a]]"),
        Nesting("an array of tables at depth 65", "[[" + String(repeating: "a.", count: 63) + "a]]", refusedAt: 129),
    ])
    func depthLimit(nesting: Nesting) throws {
        guard let column = nesting.column else {
            _ = try TOML.parse(nesting.toml)
            return
        }
        let error = try #require(syntaxError(nesting.toml))
        #expect(error == TOMLSyntaxError(line: 1, column: column, message: "tables and arrays are nested more than 64 levels deep"))
    }

    @Test("the example from the TOML home page reads as documented")
    func homePageExample() throws {
        let table = try TOML.parse("""
            # This is a TOML document

            title = "TOML Example"

            [owner]
            name = "Tom Preston-Werner"
            dob = 1979-05-27T07:32:00-08:00

            [database]
            enabled = true
            ports = [ 8000, 8001, 8002 ]
            data = [ ["delta", "phi"], [3.14] ]
            temp_targets = { cpu = 79.5, case = 72.0 }

            [servers]

            [servers.alpha]
            ip = "10.0.0.1"
            role = "frontend"

            [servers.beta]
            ip = "10.0.0.2"
            role = "backend"
            """)
        #expect(render(table) == #"{title = "TOML Example", owner = {name = "Tom Preston-Werner", dob = 1979-05-27T07:32:00-08:00}, database = {enabled = true, ports = [8000, 8001, 8002], data = [["delta", "phi"], [3.14]], temp_targets = {cpu = 79.5, case = 72.0}}, servers = {alpha = {ip = "10.0.0.1", role = "frontend"}, beta = {ip = "10.0.0.2", role = "backend"}}}"#)
    }
}
