import NIOCore

/// One RESP2 value, as sent by Redis clients and servers.
public enum RESPValue: Sendable, Hashable {
    /// `+text`
    case simpleString(String)
    /// `-WORD text`: the first word is the kind of error.
    case error(String)
    /// `:123`
    case integer(Int64)
    /// `$n` followed by n bytes.
    case bulkString(ByteBuffer)
    /// `$-1` (or `*-1`): no value.
    case null
    /// `*n` followed by n values.
    case array([RESPValue])

    /// A bulk string holding `text`'s UTF-8 bytes.
    public static func bulk(_ text: String) -> RESPValue {
        .bulkString(ByteBuffer(string: text))
    }

    /// The text of a simple or bulk string (bulk bytes decoded as UTF-8), nil for other values.
    public var string: String? {
        switch self {
        case .simpleString(let s): s
        case .bulkString(let b): String(buffer: b)
        default: nil
        }
    }
}

/// The bounds a parser enforces, so no peer can make it buffer without limit.
public struct RESPLimits: Sendable, Hashable {
    /// The largest bulk string accepted.
    public var maxBulkLength: Int
    /// The most elements in one array.
    public var maxArrayCount: Int
    /// The most bytes one value (a whole request, with its framing) may take.
    public var maxValueBytes: Int
    /// How deeply arrays may nest.
    public var maxDepth: Int

    /// Requests to the daemon of at most `maxBytes` each, framing included (`max_request_bytes`): one bulk string
    /// may take them all, and an array may have as many elements as fit, so its count is checked against the
    /// bytes alone. The smallest element, `$0\r\n\r\n`, takes 6 bytes: a larger count cannot fit and is refused at
    /// the array's header, before anything is buffered for it.
    public static func requests(maxBytes: Int) -> RESPLimits {
        RESPLimits(maxBulkLength: maxBytes, maxArrayCount: maxBytes / 6, maxValueBytes: maxBytes, maxDepth: 1)
    }
    /// Requests at the daemon's default `max_request_bytes`, 64 KiB.
    public static let requests = RESPLimits.requests(maxBytes: 64 * 1024)
    /// Replies from the daemon: values up to 1 MiB, lists of names.
    public static let replies = RESPLimits(maxBulkLength: 1024 * 1024 + 1024, maxArrayCount: 1_000_000, maxValueBytes: 64 * 1024 * 1024, maxDepth: 4)

    public init(maxBulkLength: Int, maxArrayCount: Int, maxValueBytes: Int, maxDepth: Int) {
        self.maxBulkLength = maxBulkLength
        self.maxArrayCount = maxArrayCount
        self.maxValueBytes = maxValueBytes
        self.maxDepth = maxDepth
    }
}

/// Input a parser refuses. After one, the stream cannot be resynchronised: close the connection.
public struct RESPError: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Kind: Sendable, Hashable {
        /// Not RESP.
        case malformed
        /// Well-formed but over a limit.
        case tooLarge
    }

    public let kind: Kind
    public let message: String

    public static func malformed(_ message: String) -> RESPError { .init(kind: .malformed, message: message) }
    public static func tooLarge(_ message: String) -> RESPError { .init(kind: .tooLarge, message: message) }

    public var description: String { message }
}
