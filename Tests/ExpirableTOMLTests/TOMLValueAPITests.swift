import ExpirableTOML
import Testing

@Suite("TOML value and table API")
struct TOMLValueAPITests {
    static let document = """
        s = "text"
        i = 5
        f = 1.5
        b = true
        d = 1979-05-27
        a = [1]
        t = { k = 1 }
        """

    @Test("each accessor returns its own type only, and typeName names the type for messages")
    func accessors() throws {
        let table = try TOML.parse(Self.document)
        let values = table.keys.compactMap { table[$0] }
        #expect(values.map(\.typeName) == ["string", "integer", "float", "boolean", "date-time", "array", "table"])
        #expect(values.map { $0.string != nil } == [true, false, false, false, false, false, false])
        #expect(values.map { $0.integer != nil } == [false, true, false, false, false, false, false])
        #expect(values.map { $0.float != nil } == [false, false, true, false, false, false, false])
        #expect(values.map { $0.boolean != nil } == [false, false, false, true, false, false, false])
        #expect(values.map { $0.dateTime != nil } == [false, false, false, false, true, false, false])
        #expect(values.map { $0.array != nil } == [false, false, false, false, false, true, false])
        #expect(values.map { $0.table != nil } == [false, false, false, false, false, false, true])
        #expect(table["s"]?.string == "text")
        #expect(table["i"]?.integer == 5)
        #expect(table["f"]?.float == 1.5)
        #expect(table["b"]?.boolean == true)
        #expect(table["d"]?.dateTime == "1979-05-27")
        #expect(table["a"]?.array == [.integer(1)])
        #expect(table["t"]?.table?["k"] == .integer(1))
        #expect(table.count == 7)
        #expect(!table.isEmpty)
        #expect(table["missing"] == nil)
    }

    @Test("tables are equal when their keys and values are, whatever their order and lines")
    func tableEquality() throws {
        #expect(try TOML.parse("a = 1\nb = 2") == TOML.parse("\n\nb = 2\na = 1"))
        #expect(try TOML.parse("[t]\nx = 1") == TOML.parse("t = { x = 1 }"))
        #expect(try TOML.parse("a = 1") != TOML.parse("a = 1.0"))
        #expect(try TOML.parse("a = 1") != TOML.parse("a = 1\nb = 2"))
        #expect(try TOML.parse("a = [1, 2]") != TOML.parse("a = [2, 1]"))
    }

    @Test("NaN equals NaN, so a document holding nan equals itself")
    func nanEquality() throws {
        #expect(try TOML.parse("a = nan") == TOML.parse("a = nan"))
        #expect(TOMLValue.float(.nan) == .float(-.nan))
        #expect(TOMLValue.float(.nan) != .float(0))
    }
}
