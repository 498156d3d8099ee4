/// One TOML value. Date-times are kept as their validated source text because the daemon has no use for
/// calendar arithmetic, and turning them into a type would bring Foundation back.
public enum TOMLValue: Sendable {
    /// A string, with its escapes resolved and CRLF line endings of multi-line strings turned into LF.
    case string(String)
    /// A 64-bit signed integer, whatever its notation in the source (decimal, hexadecimal, octal or binary).
    case integer(Int64)
    /// A binary64 float, including infinities and NaN.
    case float(Double)
    /// `true` or `false`.
    case boolean(Bool)
    /// An offset date-time, local date-time, local date or local time, exactly as written in the source.
    case dateTime(String)
    /// An array; TOML 1.0 allows its elements to be of different types.
    case array([TOMLValue])
    /// A table, whether from a header, dotted keys, an inline table or an element of an array of tables.
    case table(TOMLTable)

    /// The string, if this value is one. No accessor converts between types, so a loader that wants a string
    /// can refuse `port = 80` instead of quietly reading "80".
    public var string: String? { if case .string(let value) = self { value } else { nil } }
    /// The integer, if this value is one; `1.0` gives nil, because a float in an integer setting is a mistake to report.
    public var integer: Int64? { if case .integer(let value) = self { value } else { nil } }
    /// The float, if this value is one; `1` gives nil, so a loader that accepts both must ask for both.
    public var float: Double? { if case .float(let value) = self { value } else { nil } }
    /// The boolean, if this value is one; TOML has no truthy strings or numbers, and neither does this.
    public var boolean: Bool? { if case .boolean(let value) = self { value } else { nil } }
    /// The source text of the date-time, if this value is one, for a loader to hand to whatever calendar it uses.
    public var dateTime: String? { if case .dateTime(let value) = self { value } else { nil } }
    /// The elements, if this value is an array; `[[a]]` sections come back here too, as an array of tables.
    public var array: [TOMLValue]? { if case .array(let value) = self { value } else { nil } }
    /// The table, if this value is one, however it was written: header, dotted keys or inline.
    public var table: TOMLTable? { if case .table(let value) = self { value } else { nil } }

    /// The TOML name of the value's type, for messages such as `expected a string, got integer 5`.
    public var typeName: String {
        switch self {
        case .string: "string"
        case .integer: "integer"
        case .float: "float"
        case .boolean: "boolean"
        case .dateTime: "date-time"
        case .array: "array"
        case .table: "table"
        }
    }
}

extension TOMLValue: Equatable {
    /// Compares like the synthesized equality, except that NaN equals NaN: otherwise a document holding `nan`
    /// would not equal itself, and comparing a parsed configuration with its previous version would always
    /// report a change.
    public static func == (lhs: TOMLValue, rhs: TOMLValue) -> Bool {
        switch (lhs, rhs) {
        case let (.string(l), .string(r)): l == r
        case let (.integer(l), .integer(r)): l == r
        case let (.float(l), .float(r)): l == r || (l.isNaN && r.isNaN)
        case let (.boolean(l), .boolean(r)): l == r
        case let (.dateTime(l), .dateTime(r)): l == r
        case let (.array(l), .array(r)): l == r
        case let (.table(l), .table(r)): l == r
        default: false
        }
    }
}
