/// A TOML table: keys in document order, their values, and the line each key was first written on, so that a
/// configuration loader can name the line of a value it refuses without scanning the text again.
public struct TOMLTable: Sendable {
    /// The keys in the order they were first written in the document (the order of a `for` loop over a config).
    public private(set) var keys: [String] = []
    private var values: [String: TOMLValue] = [:]
    private var lines: [String: Int] = [:]

    /// An empty table (what an absent table means to a loader); the parser fills tables it creates.
    public init() {}

    /// Adds a key the table does not have yet; the parser has already refused duplicates with a better message.
    mutating func append(_ key: String, _ value: TOMLValue, line: Int) {
        keys.append(key)
        values[key] = value
        lines[key] = line
    }

    /// The value of `key`, or nil when the table does not have it.
    public subscript(key: String) -> TOMLValue? { values[key] }

    /// The 1-based line where `key` first appears: its `key = value` line, the header that defined it, or, for a
    /// table only implied by a dotted key or a longer header such as `[a.b.c]`, the line of that first mention.
    public func line(of key: String) -> Int? { lines[key] }

    /// Whether the table has no keys, as for `peers = {}`.
    public var isEmpty: Bool { keys.isEmpty }

    /// The number of keys.
    public var count: Int { keys.count }
}

extension TOMLTable: Equatable {
    /// Tables are equal when they hold the same keys with equal values. TOML tables are unordered, and the
    /// lines are where the text happened to put them, so neither key order nor lines take part.
    public static func == (lhs: TOMLTable, rhs: TOMLTable) -> Bool { lhs.values == rhs.values }
}
