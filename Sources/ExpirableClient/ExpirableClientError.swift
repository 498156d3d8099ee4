/// Why a client call failed. `code` mirrors the daemon's error words, plus the client's own failures.
public struct ExpirableClientError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The kinds of failure.
    public enum Code: String, Sendable, Hashable {
        /// `NOTFOUND`: no expirable of that name is configured.
        case notFound = "NOTFOUND"
        /// `FETCH`: the plugin failed; the message is its own.
        case fetch = "FETCH"
        /// `TIMEOUT`: the plugin did not answer within the expirable's timeout.
        case timeout = "TIMEOUT"
        /// `NOPERM`: this process's user may not do that (CLEAR, CLEARALL).
        case noPermission = "NOPERM"
        /// `ERR`: the daemon refused the request itself.
        case badRequest = "ERR"
        /// The daemon could not be reached, or the connection broke before it answered.
        case unavailable = "UNAVAILABLE"
        /// The daemon did not answer within the client's per-call timeout.
        case callTimeout = "CALLTIMEOUT"
        /// The daemon's reply did not have the expected form.
        case unexpectedReply = "UNEXPECTED"
    }

    /// What kind of failure.
    public let code: Code
    /// What happened, in words; for daemon errors, the text after the error word.
    public let message: String

    /// Makes an error; for tests and wrappers.
    public init(code: Code, message: String) {
        self.code = code
        self.message = message
    }

    /// The error a daemon error reply (`-WORD message`) stands for.
    init(reply: String) {
        let word = reply.prefix { $0 != " " }
        let rest = reply.dropFirst(word.count).drop { $0 == " " }
        if let code = Code(rawValue: String(word)), ![Code.unavailable, .callTimeout, .unexpectedReply].contains(code) {
            self.init(code: code, message: String(rest))
        } else {
            self.init(code: .badRequest, message: reply)
        }
    }

    public var description: String { "\(code.rawValue) \(message)" }
}
