import ExpirableTOML
import Testing

@Suite("TOML arrays and inline tables")
struct TOMLInlineValueTests {
    @Test("arrays may mix types, nest, span lines with comments, and end with a comma")
    func arrays() throws {
        #expect(try value("[]") == .array([]))
        #expect(try value("[ 1, 2, 3 ]") == .array([.integer(1), .integer(2), .integer(3)]))
        #expect(try value("[ [ 1, 2 ], [\"a\", 'b'] ]").map(render) == #"[[1, 2], ["a", "b"]]"#)
        #expect(try value("[ 0.1, 0.2, 0.5, 1, 2, 5 ]").map(render) == "[0.1, 0.2, 0.5, 1, 2, 5]")
        #expect(try value("[1, \"a\", 1.5, [true], {x = 1}, 1979-05-27]").map(render) == #"[1, "a", 1.5, [true], {x = 1}, 1979-05-27]"#)
        let multiLine = try TOML.parse("v = [\n  1, # one\n\n  # a comment line\n  2,\r\n  3, # trailing comma\n]\nafter = 1")
        #expect(multiLine["v"] == .array([.integer(1), .integer(2), .integer(3)]))
        #expect(multiLine.line(of: "after") == 8)
    }

    @Test("inline tables hold key/values, dotted keys and nested tables, and stay one value")
    func inlineTables() throws {
        #expect(try value("{ first = \"Tom\", last = \"Preston-Werner\" }").map(render) == #"{first = "Tom", last = "Preston-Werner"}"#)
        #expect(try value("{ x = 1, y = 2 }").map(render) == "{x = 1, y = 2}")
        #expect(try value("{ type.name = \"pug\", type.age = 3 }").map(render) == #"{type = {name = "pug", age = 3}}"#)
        #expect(try value("{a={b={c=1}},d=[{e=2}]}").map(render) == "{a = {b = {c = 1}}, d = [{e = 2}]}")
        #expect(try value("{}").map(render) == "{}")
        #expect(try value("{   }")?.table?.isEmpty == true)
        #expect(try value("{ list = [1,\n 2] }").map(render) == "{list = [1, 2]}")
    }

    @Test("an array of inline tables is an ordinary array value")
    func arrayOfInlineTables() throws {
        let points = try value("[ { x = 1, y = 2, z = 3 },\n  { x = 7, y = 8, z = 9 } ]")
        #expect(points.map(render) == "[{x = 1, y = 2, z = 3}, {x = 7, y = 8, z = 9}]")
    }

    @Test("malformed arrays and inline tables are refused", arguments: [
        ("w = 1\nv = [1 2]", 2, "expected ',' or ']' after an array element, found '2'"),
        ("v = [1 2]", 1, "expected ',' or ']' after an array element, found a digit"),
        ("v = [1,,2]", 1, "expected a value (a string, number, boolean, date-time, array or inline table), found ','"),
        ("v = [,]", 1, "expected a value"),
        ("v = [1,\n2", 2, "expected ',' or ']' after an array element, found the end of the document"),
        ("v = [1 # comment ]", 1, "expected ',' or ']' after an array element, found the end of the document"),
        ("v = {a = 1,}", 1, "expected a key in the inline table, found '}' (an inline table stays on one line and has no comma after its last key)"),
        ("v = {a = 1\n}", 1, "expected ',' or '}' in the inline table, found the end of the line"),
        ("v = {\na = 1}", 1, "expected a key in the inline table, found the end of the line"),
        ("w = 1\nv = {a = 1 b = 2}", 2, "expected ',' or '}' in the inline table, found 'b'"),
        ("v = {a = 1, a = 2}", 1, "duplicate key \"a\" (first defined on line 1)"),
        ("v = {a = {b = 1}, a.c = 2}", 1, "cannot add to \"a\": it is an inline table (line 1)"),
        ("v = {a.b = 1, a = 2}", 1, "duplicate key \"a\": it is already a table"),
        ("v = {a = 1, a.b = 2}", 1, "cannot use \"a\" as a table: it is already an integer"),
        ("v = {,}", 1, "expected a key"),
        ("v = {a = 1", 1, "expected ',' or '}' in the inline table, found the end of the document"),
    ])
    func refused(toml: String, line: Int, fragment: String) throws {
        let error = try #require(syntaxError(toml))
        #expect(error.line == line)
        #expect(error.message.contains(fragment), "\(error)")
    }
}
