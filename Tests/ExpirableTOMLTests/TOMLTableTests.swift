import ExpirableTOML
import Testing

@Suite("TOML tables and arrays of tables")
struct TOMLTableTests {
    @Test("headers open tables, keys go into the latest one, and key order is document order")
    func headers() throws {
        let table = try TOML.parse("""
            top = 0
            [table-1]
            key1 = "some string"
            key2 = 123

            [table-2]
            key1 = "another string"
            key2 = 456
            [ dog . "tater.man" ] # whitespace and a comment are allowed
            type.name = "pug"
            """)
        #expect(render(table) == #"{top = 0, table-1 = {key1 = "some string", key2 = 123}, table-2 = {key1 = "another string", key2 = 456}, dog = {"tater.man" = {type = {name = "pug"}}}}"#)
        #expect(table.keys == ["top", "table-1", "table-2", "dog"])
    }

    @Test("a super-table may be defined after its sub-tables, once")
    func superTableAfter() throws {
        let table = try TOML.parse("[x.y.z.w]\na = 1\n[x]\nb = 2\n[x.y]\nc = 3")
        #expect(render(table) == "{x = {y = {z = {w = {a = 1}}, c = 3}, b = 2}}")
    }

    @Test("an empty table header defines an empty table")
    func emptyTable() throws {
        let table = try TOML.parse("[a]\n[b.c]")
        #expect(render(table) == "{a = {}, b = {c = {}}}")
        #expect(table["a"]?.table?.isEmpty == true)
    }

    @Test("dotted keys under a header create sub-tables, and a header may add sub-tables to those")
    func dottedThenSubTable() throws {
        let table = try TOML.parse("""
            [fruit]
            apple.color = "red"
            apple.taste.sweet = true

            [fruit.apple.texture]
            smooth = true
            """)
        #expect(render(table) == #"{fruit = {apple = {color = "red", taste = {sweet = true}, texture = {smooth = true}}}}"#)
    }

    @Test("dotted keys may go through a table that a longer header only implied")
    func dottedThroughImplied() throws {
        let table = try TOML.parse("[a.b.c]\nz = 1\n[a]\nb.d = 2")
        #expect(render(table) == "{a = {b = {c = {z = 1}, d = 2}}}")
    }

    @Test("each [[header]] appends a table, and sub-tables belong to the latest element")
    func arraysOfTables() throws {
        let table = try TOML.parse("""
            [[fruits]]
            name = "apple"

            [fruits.physical]  # subtable
            color = "red"
            shape = "round"

            [[fruits.varieties]]  # nested array of tables
            name = "red delicious"

            [[fruits.varieties]]
            name = "granny smith"


            [[fruits]]
            name = "banana"

            [[fruits.varieties]]
            name = "plantain"
            """)
        #expect(render(table) == #"{fruits = [{name = "apple", physical = {color = "red", shape = "round"}, varieties = [{name = "red delicious"}, {name = "granny smith"}]}, {name = "banana", varieties = [{name = "plantain"}]}]}"#)
    }

    @Test("an empty [[header]] adds an empty element, and an implied parent may be defined later")
    func arraysOfTablesEdges() throws {
        #expect(render(try TOML.parse("[[products]]\nname = \"Hammer\"\n[[products]]\n[[products]]\ncolor = \"gray\""))
            == #"{products = [{name = "Hammer"}, {}, {color = "gray"}]}"#)
        #expect(render(try TOML.parse("[[a.b]]\nx = 1\n[a]\ny = 2\n[[a.b]]\nx = 3")) == "{a = {b = [{x = 1}, {x = 3}], y = 2}}")
        #expect(render(try TOML.parse("[[a]]\n[a.b]\nx = 1\n[[a]]\n[a.b]\nx = 2")) == "{a = [{b = {x = 1}}, {b = {x = 2}}]}")
        #expect(render(try TOML.parse("[[ a . b ]]")) == "{a = {b = [{}]}}")
    }

    @Test("tables may not be defined twice, nor values, inline tables or static arrays extended", arguments: [
        ("[a]\n[a]", 2, "table [a] is defined twice (first on line 1)"),
        ("[server]\nsocket = \"a\"\n\nsocket = \"b\"", 4, "duplicate key \"socket\" (first defined on line 2)"),
        ("[a.b]\n[a]\n[a]", 3, "table [a] is defined twice (first on line 2)"),
        ("[a]\nb.c = 1\n[a.b]", 3, "table [a.b] was already defined by dotted keys on line 2; a header cannot define it again"),
        ("a.b = 1\n[a]", 2, "table [a] was already defined by dotted keys on line 1"),
        ("[fruit]\napple.color = \"red\"\napple.taste.sweet = true\n[fruit.apple.taste]", 4, "table [fruit.apple.taste] was already defined by dotted keys on line 3"),
        ("[a.b.c]\n[a]\nb.d = 1\n[a.b]", 4, "table [a.b] was already defined by dotted keys on line 3"),
        ("[a.b]\n[a]\nb.c = 1", 3, "cannot add to the table \"b\" with dotted keys: it was defined by its header on line 1"),
        ("[a.b.c]\n[a]\nb = 1", 3, "duplicate key \"b\": it is already a table (first on line 1)"),
        ("a = [1]\n[[a]]", 2, "cannot append to \"a\" with [[…]]: it is a static array (line 1)"),
        ("a = [{b = 1}]\n[[a]]", 2, "it is a static array"),
        ("a = []\n[a.b]", 2, "cannot add to \"a\": it is a static array (line 1), not a table"),
        ("a = {b = 1}\n[a.c]", 2, "cannot add to \"a\": it is an inline table (line 1), which is complete as written"),
        ("a = {}\na.b = 1", 2, "cannot add to \"a\": it is an inline table (line 1)"),
        ("a = {}\n[a]", 2, "cannot add to \"a\": it is an inline table (line 1)"),
        ("a = 1\n[a.b]", 2, "cannot use \"a\" as a table: it is already an integer (line 1)"),
        ("a = 1\n[a]", 2, "cannot use \"a\" as a table: it is already an integer (line 1)"),
        ("a = 1\n[[a]]", 2, "cannot use \"a\" as a table: it is already an integer (line 1)"),
        ("[[a]]\n[a]", 2, "[a] is already an array of tables (first [[a]] on line 1)"),
        ("[a]\n[[a]]", 2, "cannot start an array of tables [[a]]: \"a\" is already a table (first on line 1)"),
        ("[[albums.songs]]\nname = \"Glory Days\"\n[[albums]]", 3, "\"albums\" is already a table"),
        ("[[a.b]]\n[a]\nb.c = 1", 3, "cannot add to \"b\" with dotted keys: it is an array of tables (line 1)"),
        ("[[a]]\nb = 1\n[a.b]", 3, "cannot use \"a.b\" as a table: it is already an integer (line 2)"),
        ("[[a]]\n[a.b]\n[a.b]", 3, "table [a.b] is defined twice (first on line 2)"),
        ("[[a]]\nx.y = 1\n[a.x]", 3, "table [a.x] was already defined by dotted keys on line 2"),
        ("a.b = 1\n[[a]]", 2, "\"a\" is already a table"),
        ("[[a]]\n[[a]]\n[a]", 3, "is already an array of tables"),
    ])
    func refused(toml: String, line: Int, fragment: String) throws {
        let error = try #require(syntaxError(toml))
        #expect(error.line == line)
        #expect(error.message.contains(fragment), "\(error)")
    }

    @Test("malformed headers are refused", arguments: [
        ("[a", "expected ']' to close the header [a], found the end of the document"),
        ("[a\nb = 1", "expected ']' to close the header [a], found the end of the line"),
        ("[[a]", "expected ']]' to close the header [[a]]"),
        ("[[a] ]", "expected ']]' to close the header [[a]], found ' '"),
        ("[ [a] ]", "expected a key (letters, digits, '_', '-' or a quoted string), found '['"),
        ("[]", "expected a key"),
        ("[a.]", "expected a key"),
        // The first line: no line before it reads as TOML, so a letter found is named by its kind.
        ("[a] b = 1", "expected the end of the line after the header [a], found a letter"),
        ("[a b]", "expected ']' to close the header [a], found a letter"),
        ("[\"a\" = 1]", "expected ']' to close the header [a]"),
    ])
    func malformedHeaders(toml: String, fragment: String) throws {
        let error = try #require(syntaxError(toml))
        #expect(error.line == 1)
        #expect(error.message.contains(fragment), "\(error)")
    }
}
