import ExpirableTOML

/// Parses `v = <literal>` and returns `v`, so that a value test reads as the literal it checks.
func value(_ literal: String) throws(TOMLSyntaxError) -> TOMLValue? {
    try TOML.parse("v = \(literal)")["v"]
}

/// The error `text` is refused with, or nil when it parses.
func syntaxError(_ text: String) -> TOMLSyntaxError? {
    do {
        _ = try TOML.parse(text)
        return nil
    } catch {
        return error
    }
}

/// A table written back in TOML-like form with keys in document order, so that one string states the exact
/// structure, types and order: `1` is an integer, `1.0` a float, `"1"` a string, and a date-time is bare.
func render(_ table: TOMLTable) -> String {
    let entries = table.keys.map { key in
        let name = !key.isEmpty && key.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == "-") } ? key : key.debugDescription
        return "\(name) = \(table[key].map(render) ?? "missing")"
    }
    return "{" + entries.joined(separator: ", ") + "}"
}

func render(_ value: TOMLValue) -> String {
    switch value {
    case .string(let string): string.debugDescription
    case .integer(let integer): "\(integer)"
    case .float(let float): "\(float)"
    case .boolean(let boolean): "\(boolean)"
    case .dateTime(let text): text
    case .array(let elements): "[" + elements.map(render).joined(separator: ", ") + "]"
    case .table(let table): render(table)
    }
}
