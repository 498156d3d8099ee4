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

    /// Whether trying again may help (SPEC §3.18).
    public enum Class: String, Sendable, Hashable {
        /// The default: an outage, an overload, a timeout. Callers get a new call each `retry_interval`
        /// (with backoff), and a failed eager refresh is retried while the value lasts.
        case temporary
        /// The configuration or the grant is broken (a revoked client, `invalid_grant`): no eager retry until
        /// the value is cleared or fetched again, or a reload changes the expirable's configuration; callers still
        /// get a new call each `retry_interval`.
        case permanent
    }

    public let code: Code
    public let message: String
    /// Temporary unless the plugin said otherwise.
    public let errorClass: Class
    /// No call for this expirable before this Unix time in milliseconds: a plugin's `Retry-After`, or the
    /// next paced attempt when the engine answers a caller that would not wait for it. Nil: no such time.
    ///
    /// A wall-clock time, because it crosses process boundaries (plugins, peers, clients); the engine turns
    /// it into a monotonic deadline once, on arrival, as it does with `expires_at`.
    public let retryAfter: Int64?

    private init(code: Code, message: String, errorClass: Class = .temporary, retryAfter: Int64? = nil) {
        self.code = code
        self.message = message
        self.errorClass = errorClass
        self.retryAfter = retryAfter
    }

    /// A fetch of a name that is not configured. The name is the caller's, so its control characters are
    /// escaped as the log escapes them (`TextLogHandler.escaped`): a client that shows the error shows text.
    public static func notFound(_ name: String) -> ExpirableError {
        .init(code: .notFound, message: "no expirable named '\(TextLogHandler.escaped(name))' is configured; `expirablectl list` shows the names")
    }

    /// A name that is configured but cannot be fetched as given (a keyed family without a key, a bad key).
    public static func notFound(explaining message: String) -> ExpirableError {
        .init(code: .notFound, message: message)
    }

    /// A plugin failure; `message` is the plugin's own words or the host's description of a malformed result,
    /// `errorClass` and `retryAfter` (Unix milliseconds) what the plugin said about trying again.
    public static func fetch(_ message: String, class errorClass: Class = .temporary, retryAfter: Int64? = nil) -> ExpirableError {
        .init(code: .fetch, message: message, errorClass: errorClass, retryAfter: retryAfter)
    }

    /// A plugin call that outlived its timeout, or (ABI 1.3) one whose plugin gave up on its own deadline,
    /// with what the plugin said about trying again.
    public static func timeout(_ message: String, retryAfter: Int64? = nil) -> ExpirableError {
        .init(code: .timeout, message: message, retryAfter: retryAfter)
    }

    /// This error as answered to a caller who will not wait for the next attempt, `inMillis` from now at
    /// `unixMillis`: the message says when, and `retryAfter` carries it.
    /// An error that already says when (a forwarded fetch's, told by the owner) says it once: the new time
    /// replaces the old.
    func withNextAttempt(inMillis: Int64, unixMillis: Int64) -> ExpirableError {
        let seconds = "\(inMillis / 1000).\(String(repeating: "0", count: 3 - String(inMillis % 1000).count))\(inMillis % 1000)"
        return .init(code: code, message: "\(Self.withoutNextAttempt(message)) (next attempt in \(seconds)s, at \(unixMillis) Unix ms)",
                     errorClass: errorClass, retryAfter: unixMillis)
    }

    /// `message` without the next-attempt time `withNextAttempt` put at its end. An error forwarded by a cluster
    /// peer arrives with the owner's time in its words (frozen when the owner answered); the asking node, pacing
    /// its own callers with it (§4.12), states its own time instead of adding a second, older one.
    static func withoutNextAttempt(_ message: String) -> String {
        let marker = " (next attempt in "
        guard message.hasSuffix(" Unix ms)") else { return message }
        var last: Range<String.Index>?
        var from = message.startIndex
        while let found = message[from...].firstRange(of: marker) {
            last = found
            from = found.upperBound
        }
        guard let start = last else { return message }
        let inside = message[start.upperBound...].dropLast(" Unix ms)".count)
        guard let comma = inside.firstRange(of: "s, at "), inside[..<comma.lowerBound].allSatisfy({ $0.isNumber || $0 == "." }),
              inside[comma.upperBound...].allSatisfy({ $0.isNumber || $0 == "-" }) else { return message }
        return String(message[..<start.lowerBound])
    }

    public var description: String { "\(code.rawValue) \(message)" }
}
