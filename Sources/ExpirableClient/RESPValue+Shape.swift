import ExpirableRESP

extension RESPValue {
    /// The reply's type and size, never its bytes: what an error about a reply of an unexpected form may say, as a
    /// bulk string there may well be a value (a secret).
    var shape: String {
        switch self {
        case .simpleString(let text): "a simple string of \(text.utf8.count) bytes"
        case .error(let text): "an error reply of \(text.utf8.count) bytes"
        case .integer: "an integer"
        case .bulkString(let bytes): "a bulk string of \(bytes.readableBytes) bytes"
        case .null: "a null"
        case .array(let elements) where elements.isEmpty: "an empty array"
        case .array(let elements):
            "an array of \(elements.count) (\(elements.prefix(4).map(\.shape).joined(separator: ", "))\(elements.count > 4 ? ", …" : ""))"
        }
    }
}
