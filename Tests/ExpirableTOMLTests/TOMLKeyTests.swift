import ExpirableTOML
import Testing

@Suite("TOML keys")
struct TOMLKeyTests {
    @Test("bare, quoted and literal keys, dotted with whitespace around the dots")
    func kinds() throws {
        let table = try TOML.parse("""
            bare_key-1 = 1
            "quoted key" = 2
            'literal "key"' = 3
            "ʎǝʞ" = 4
            "\\u00e9" = 5
            site . "google.com" . 'www' = 6
            """)
        #expect(render(table) == #"{bare_key-1 = 1, "quoted key" = 2, "literal \"key\"" = 3, "ʎǝʞ" = 4, "é" = 5, site = {"google.com" = {www = 6}}}"#)
    }

    @Test("an empty quoted key is a key like any other")
    func emptyKey() throws {
        #expect(render(try TOML.parse(#""" = 1"#)) == #"{"" = 1}"#)
        #expect(render(try TOML.parse("a.'' = 1")) == #"{a = {"" = 1}}"#)
        #expect(render(try TOML.parse("[\"\"]\nx = 1")) == #"{"" = {x = 1}}"#)
    }

    @Test("keys that look like numbers or booleans are bare keys, and a dot in them splits them")
    func numericKeys() throws {
        #expect(render(try TOML.parse("1234 = 1\ntrue = 2\ninf = 3\n3.14159 = \"pi\"")) == #"{1234 = 1, true = 2, inf = 3, 3 = {14159 = "pi"}}"#)
    }

    @Test("a quoted key with a dot is one key, apart from the dotted key with the same text")
    func quotedDot() throws {
        #expect(render(try TOML.parse("\"a.b\" = 1\na.b = 2")) == #"{"a.b" = 1, a = {b = 2}}"#)
    }

    @Test("dotted keys build nested tables and may add to them on later lines")
    func dotted() throws {
        let table = try TOML.parse("""
            name = "Orange"
            physical.color = "orange"
            physical.shape = "round"
            site."google.com" = true
            """)
        #expect(render(table) == #"{name = "Orange", physical = {color = "orange", shape = "round"}, site = {"google.com" = true}}"#)
    }

    @Test("malformed keys and key/value lines are refused", arguments: [
        // On the first line, before any line read as TOML, the key's text is not quoted (the file may be a token).
        ("plugin x", 1, "expected '=' after the key that starts at column 1, found a letter; its text is not shown"),
        ("plugin", 1, "expected '=' after the key that starts at column 1, found the end of the document"),
        ("[t]\nplugin x", 2, "expected '=' after the key \"plugin\", found 'x'"),
        ("a = 1\nplugin", 2, "expected '=' after the key \"plugin\", found the end of the document"),
        ("= 1", 1, "expected a key (letters, digits, '_', '-' or a quoted string), found '='"),
        ("a = ", 1, "expected a value (a string, number, boolean, date-time, array or inline table), found the end of the document"),
        ("a =\nb = 1", 1, "expected a value"),
        ("x = 1\na = 1 b = 2", 2, "expected the end of the line after the value of \"a\", found 'b'"),
        ("a = 1 b = 2", 1, "expected the end of the line after the value of \"a\", found a letter"),
        ("a = 1\nb = \"x\" \"y\"", 2, "expected the end of the line after the value of \"b\""),
        ("a..b = 1", 1, "expected a key"),
        ("a. = 1", 1, "expected a key"),
        (".a = 1", 1, "expected a key"),
        ("a b = 1", 1, "expected '=' after the key that starts at column 1, found a letter"),
        ("x = 1\na b = 1", 2, "expected '=' after the key \"a\", found 'b'"),
        ("x = 1\nключ = 1", 2, "expected a key (letters, digits, '_', '-' or a quoted string), found 'к'"),
        ("ключ = 1", 1, "expected a key (letters, digits, '_', '-' or a quoted string), found a non-ASCII character"),
        ("\"\"\"a\"\"\" = 1", 1, "a multi-line string cannot be a key"),
        ("'''a''' = 1", 1, "a multi-line string cannot be a key"),
        ("\"a\nb\" = 1", 1, "expected the closing '\"'"),
        ("a = command", 1, "expected a value, found a bare word of 7 characters; a string must be in quotes; its text is not shown"),
        ("x = 1\na = command", 2, "expected a value, found 'command'; a string must be in quotes, as in \"command\""),
        ("a = tru", 1, "a string must be in quotes"),
        ("a = True", 1, "a string must be in quotes"),
        ("a = 1\n\"a b\".c = 1\n\"a b\".c = 2", 3, #"duplicate key "a b".c (first defined on line 2)"#),
        ("a = 1\na = 2", 2, "duplicate key \"a\" (first defined on line 1)"),
        ("'a' = 1\n\"a\" = 2", 2, "duplicate key \"a\" (first defined on line 1)"),
        ("a.b = 1\na.b = 2", 2, "duplicate key \"a.b\" (first defined on line 1)"),
        ("a.b = 1\na = 2", 2, "duplicate key \"a\": it is already a table (first on line 1)"),
        ("a = \"x\"\na.b = 1", 2, "cannot use \"a\" as a table: it is already a string (line 1)"),
        ("a = 1\na.b.c = 1", 2, "cannot use \"a\" as a table: it is already an integer (line 1)"),
        ("a.b = false\na.b.c = 1", 2, "cannot use \"a.b\" as a table: it is already a boolean (line 1)"),
    ])
    func refused(toml: String, line: Int, fragment: String) throws {
        let error = try #require(syntaxError(toml))
        #expect(error.line == line)
        #expect(error.message.contains(fragment), "\(error)")
    }

    @Test("the error for a missing '=' points just after the key, and says so in its description")
    func position() throws {
        let error = try #require(syntaxError("[expirable.token]\nplugin x"))
        #expect(error == TOMLSyntaxError(line: 2, column: 8, message: "expected '=' after the key \"plugin\", found 'x'"))
        #expect(error.description == "line 2, column 8: expected '=' after the key \"plugin\", found 'x'")
    }

    @Test("a file that is not TOML at all (a token given to --config by mistake): the error gives the line and column, not the text")
    func tokenFileNotQuoted() throws {
        for (text, fragment) in [
            ("ghp_S3CRETt0ken1234567890\n", "expected '=' after the key that starts at column 1, found the end of the line"),
            ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl\n", "expected '=' after the key that starts at column 1, found the end of the line"),
            ("API_TOKEN=s3cretvalue\n", "expected a value, found a bare word of 11 characters"),
            ("API_TOKEN=12345abcdef\n", "invalid number of 11 characters: unexpected a letter"),
            // A character after the first word is named by its kind, not quoted: it begins the next word.
            ("S3CRETWORD S3CRET2\n", "expected '=' after the key that starts at column 1, found a letter; its text is not shown"),
            ("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n", "expected '=' after the key that starts at column 1, found a letter"),
            ("API_TOKEN=2024-01-0S3CRET\n", "invalid date-time of 15 characters: expected 2 digits for the day, found a letter"),
        ] {
            let error = try #require(syntaxError(text))
            #expect(error.line == 1)
            #expect(error.message.contains(fragment), "\(error)")
            #expect(error.message.contains("is this the configuration file?"), "\(error)")
            for secret in ["S3CRET", "eyJzdWIiOiJ4In0", "s3cretvalue", "12345abcdef", "'S'", "'P'", "PRIVATE", "2024"] {
                #expect(!error.message.contains(secret), "\(error)")
            }
        }
    }
}
