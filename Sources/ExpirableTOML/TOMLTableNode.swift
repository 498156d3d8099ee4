/// A table while the document is being read. It is a class so that the parser can hold on to the table that the
/// latest header opened while adding keys to it, and it remembers how it came to be, because TOML's rules on what
/// may still define or extend a table depend on that.
final class TOMLTableNode {
    /// How the table came into existence.
    enum Origin {
        /// Only named on the way to another table, as `a` by `[a.b]`: a later `[a]` may still define it.
        case implied
        /// Defined by its own header `[a]` or `[[a]]` on that line: no other header may define it again, and dotted
        /// keys from a parent's section may not add to it.
        case header(line: Int)
        /// Defined by dotted keys such as `a.b = 1` (or inside an inline table) on that line: no header may define
        /// it, though a header may add sub-tables to it.
        case dotted(line: Int)
    }

    /// What a key holds.
    enum Entry {
        /// A scalar, a static array or an inline table: complete, so nothing may be added to it later.
        case value(TOMLValue)
        case table(TOMLTableNode)
        case arrayOfTables(TOMLArrayOfTables)
    }

    struct Slot {
        let key: String
        let entry: Entry
        /// The line where the key was first written, reported by `TOMLTable.line(of:)`.
        let line: Int
    }

    var origin: Origin
    /// How many tables and arrays enclose this one, checked against `TOMLParser.maximumDepth`.
    let depth: Int
    private var slots: [Slot] = []
    private var positions: [String: Int] = [:]

    init(depth: Int, origin: Origin) {
        self.depth = depth
        self.origin = origin
    }

    subscript(key: String) -> Slot? {
        positions[key].map { slots[$0] }
    }

    /// Adds a key the table does not have yet; the parser checks for duplicates first to report them well.
    func add(_ key: String, _ entry: Entry, line: Int) {
        positions[key] = slots.count
        slots.append(Slot(key: key, entry: entry, line: line))
    }

    /// The finished, immutable table. The recursion is as deep as the document's nesting, which the parser bounds.
    func finish() -> TOMLTable {
        var table = TOMLTable()
        for slot in slots {
            switch slot.entry {
            case .value(let value):
                table.append(slot.key, value, line: slot.line)
            case .table(let node):
                table.append(slot.key, .table(node.finish()), line: slot.line)
            case .arrayOfTables(let array):
                table.append(slot.key, .array(array.tables.map { .table($0.finish()) }), line: slot.line)
            }
        }
        return table
    }
}

/// The elements of an array of tables, shared by reference so that appending an element for each `[[a]]` header
/// does not copy the elements before it.
final class TOMLArrayOfTables {
    private(set) var tables: [TOMLTableNode]

    init(first: TOMLTableNode) {
        tables = [first]
    }

    /// The element that headers such as `[a.b]` after `[[a]]` add to: TOML gives sub-tables to the most recent one.
    var last: TOMLTableNode { tables[tables.count - 1] }

    func append(_ table: TOMLTableNode) {
        tables.append(table)
    }
}
