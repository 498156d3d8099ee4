/// Finds the line of a key in TOML text for error messages. TOMLKit gives positions for syntax errors only,
/// so this scans the text: table headers set the current table, `key = ...` lines name keys under it.
/// Inline tables are not descended into: their keys report the line of the key that holds them.
struct SourceLines {
    private var lines: [String: Int] = [:]

    init(_ text: String) {
        var table: [String] = []
        for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = rawLine.drop { $0 == " " || $0 == "\t" }
            let number = index + 1
            if line.hasPrefix("[") {
                let header = line.drop { $0 == "[" }.prefix { $0 != "]" }
                table = SourceLines.keyPath(header)
                record(table, number)
            } else if let equals = line.firstIndex(of: "="), !line.hasPrefix("#") {
                record(table + SourceLines.keyPath(line[..<equals]), number)
            }
        }
    }

    private mutating func record(_ path: [String], _ line: Int) {
        let key = path.joined(separator: ".")
        if lines[key] == nil { lines[key] = line }
    }

    private static func keyPath(_ text: Substring) -> [String] {
        text.split(separator: ".").map { part in
            part.trimmingCharacters(in: " \t\"'")
        }
    }

    /// The line of `path`, or of its nearest enclosing key or table that appears in the text.
    func line(of path: [String]) -> Int? {
        var path = path
        while !path.isEmpty {
            if let line = lines[path.joined(separator: ".")] { return line }
            path.removeLast()
        }
        return nil
    }
}

extension Substring {
    fileprivate func trimmingCharacters(in set: String) -> String {
        var slice = self[...]
        while let first = slice.first, set.contains(first) { slice = slice.dropFirst() }
        while let last = slice.last, set.contains(last) { slice = slice.dropLast() }
        return String(slice)
    }
}
