/// Why a fetch gave no value. `code` is the word a program switches on (it is the protocol's error word);
/// `message` says what happened and, where it can, what to do.
public struct ExpirableError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The kinds of failure, named as on the wire.
    public enum Code: String, Sendable, Hashable {
        /// No expirable of that name is configured.
        case notFound = "NOTFOUND"
        /// The plugin failed or returned something malformed.
        case fetch = "FETCH"
        /// The plugin did not answer in time.
        case timeout = "TIMEOUT"
    }

    public let code: Code
    public let message: String

    private init(code: Code, message: String) {
        self.code = code
        self.message = message
    }

    /// A fetch of a name that is not configured.
    public static func notFound(_ name: String) -> ExpirableError {
        .init(code: .notFound, message: "no expirable named '\(name)' is configured; `expirablectl list` shows the names")
    }

    /// A plugin failure; `message` is the plugin's own words or the host's description of a malformed result.
    public static func fetch(_ message: String) -> ExpirableError {
        .init(code: .fetch, message: message)
    }

    /// A plugin call that outlived its timeout.
    public static func timeout(_ message: String) -> ExpirableError {
        .init(code: .timeout, message: message)
    }

    public var description: String { "\(code.rawValue) \(message)" }
}
