/// Table headers and dotted keys, and TOML's rules on which tables they may define or extend: a table is defined
/// once (by a header, by dotted keys or as an inline table), an inline table or a static array is never extended,
/// and `[[a]]` appends only to an array that `[[a]]` started.
extension TOMLParser {
    /// Reads `[a.b]` or `[[a.b]]` and makes the table it names the one that following keys go into.
    mutating func parseTableHeader() throws(TOMLSyntaxError) {
        scanner.advance()
        let isArray = scanner.take(UInt8(ascii: "["))
        scanner.skipWhitespace()
        let path = try parseKey()
        scanner.skipWhitespace()
        let header = isArray ? "[[\(TOMLParser.display(path))]]" : "[\(TOMLParser.display(path))]"
        guard scanner.take(UInt8(ascii: "]")), !isArray || scanner.take(UInt8(ascii: "]")) else {
            throw scanner.error("expected '\(isArray ? "]]" : "]")' to close the header \(header), found \(scanner.found())")
        }
        current = isArray ? try appendTable(path) : try defineTable(path)
        try scanner.expectEndOfLine(after: "the header \(header)")
    }

    /// Finds the table that the last part of `key` goes into, creating the tables its other parts name, and
    /// refuses the key if that table already has it. Used for `a.b.c = 1` in a section and in inline tables.
    func tableForNewKey(_ key: [TOMLKeyPart], in section: TOMLTableNode) throws(TOMLSyntaxError) -> TOMLTableNode {
        var table = section
        for (offset, part) in key.dropLast().enumerated() {
            guard let slot = table[part.name] else {
                table = try addTable(part, to: table, origin: .dotted(line: part.mark.line))
                continue
            }
            let name = TOMLParser.phrase(Array(key[...offset]))
            switch slot.entry {
            case .table(let child):
                switch child.origin {
                case .implied:
                    child.origin = .dotted(line: part.mark.line)
                case .dotted:
                    break
                case .header(let line):
                    throw scanner.error("cannot add to the table \(name) with dotted keys: it was defined by its header on line \(line); add the key under that header", at: part.mark)
                }
                table = child
            case .arrayOfTables:
                throw scanner.error("cannot add to \(name) with dotted keys: it is an array of tables (line \(slot.line))", at: part.mark)
            case .value(let value):
                throw scanner.error(TOMLParser.notATable(name, value, line: slot.line), at: part.mark)
            }
        }
        let last = key[key.count - 1]
        if let slot = table[last.name] {
            let name = TOMLParser.phrase(key)
            switch slot.entry {
            case .value:
                throw scanner.error("duplicate key \(name) (first defined on line \(slot.line))", at: last.mark)
            case .table:
                throw scanner.error("duplicate key \(name): it is already a table (first on line \(slot.line))", at: last.mark)
            case .arrayOfTables:
                throw scanner.error("duplicate key \(name): it is already an array of tables (first on line \(slot.line))", at: last.mark)
            }
        }
        return table
    }

    /// `[a.b]`: defines the table, which may already exist only as implied by an earlier `[a.b.c]`.
    private func defineTable(_ path: [TOMLKeyPart]) throws(TOMLSyntaxError) -> TOMLTableNode {
        let parent = try parentTable(of: path)
        let last = path[path.count - 1]
        let line = last.mark.line
        guard let slot = parent[last.name] else {
            return try addTable(last, to: parent, origin: .header(line: line))
        }
        let header = "[\(TOMLParser.display(path))]"
        switch slot.entry {
        case .table(let table):
            switch table.origin {
            case .implied:
                table.origin = .header(line: line)
                return table
            case .header(let first):
                throw scanner.error("table \(header) is defined twice (first on line \(first))", at: last.mark)
            case .dotted(let first):
                throw scanner.error("table \(header) was already defined by dotted keys on line \(first); a header cannot define it again", at: last.mark)
            }
        case .arrayOfTables:
            throw scanner.error("\(header) is already an array of tables (first [[\(TOMLParser.display(path))]] on line \(slot.line)); use [[…]] to add an element", at: last.mark)
        case .value(let value):
            throw scanner.error(TOMLParser.notATable(TOMLParser.phrase(path), value, line: slot.line), at: last.mark)
        }
    }

    /// `[[a.b]]`: adds an element to the array of tables, starting it if needed.
    private func appendTable(_ path: [TOMLKeyPart]) throws(TOMLSyntaxError) -> TOMLTableNode {
        let parent = try parentTable(of: path)
        let last = path[path.count - 1]
        try checkDepth(parent.depth + 2, at: last.mark)
        let element = TOMLTableNode(depth: parent.depth + 2, origin: .header(line: last.mark.line))
        guard let slot = parent[last.name] else {
            parent.add(last.name, .arrayOfTables(TOMLArrayOfTables(first: element)), line: last.mark.line)
            return element
        }
        let name = TOMLParser.phrase(path)
        switch slot.entry {
        case .arrayOfTables(let array):
            array.append(element)
            return element
        case .table:
            throw scanner.error("cannot start an array of tables [[\(TOMLParser.display(path))]]: \(name) is already a table (first on line \(slot.line))", at: last.mark)
        case .value(.array):
            throw scanner.error("cannot append to \(name) with [[…]]: it is a static array (line \(slot.line)), and only arrays started by [[…]] can be extended", at: last.mark)
        case .value(let value):
            throw scanner.error(TOMLParser.notATable(name, value, line: slot.line), at: last.mark)
        }
    }

    /// Walks a header's path except its last part, creating implied tables, and entering the latest element of
    /// each array of tables on the way, as TOML prescribes.
    private func parentTable(of path: [TOMLKeyPart]) throws(TOMLSyntaxError) -> TOMLTableNode {
        var table = root
        for (offset, part) in path.dropLast().enumerated() {
            guard let slot = table[part.name] else {
                table = try addTable(part, to: table, origin: .implied)
                continue
            }
            switch slot.entry {
            case .table(let child):
                table = child
            case .arrayOfTables(let array):
                table = array.last
            case .value(let value):
                throw scanner.error(TOMLParser.notATable(TOMLParser.phrase(Array(path[...offset])), value, line: slot.line), at: part.mark)
            }
        }
        return table
    }

    private func addTable(_ part: TOMLKeyPart, to parent: TOMLTableNode, origin: TOMLTableNode.Origin) throws(TOMLSyntaxError) -> TOMLTableNode {
        try checkDepth(parent.depth + 1, at: part.mark)
        let table = TOMLTableNode(depth: parent.depth + 1, origin: origin)
        parent.add(part.name, .table(table), line: part.mark.line)
        return table
    }

    /// Why a key that holds a value cannot be used as a table, naming inline tables and static arrays, which TOML
    /// users most often try to extend.
    private static func notATable(_ name: String, _ value: TOMLValue, line: Int) -> String {
        switch value {
        case .table:
            "cannot add to \(name): it is an inline table (line \(line)), which is complete as written"
        case .array:
            "cannot add to \(name): it is a static array (line \(line)), not a table"
        default:
            "cannot use \(name) as a table: it is already \(article(value.typeName)) \(value.typeName) (line \(line))"
        }
    }
}
