import ExpirableClient

/// expirablectl's exit statuses, one per kind of error, after sysexits(3) where it has one, so that a script
/// can tell "try again later" from "fix the name" from "fix the permissions".
enum ExitStatus: Int32, CaseIterable {
    case ok = 0
    /// FETCH: the plugin failed to fetch the value (its message follows).
    case fetchFailed = 1
    /// EX_USAGE: a bad command line (unknown option, missing argument, bad duration).
    case usage = 64
    /// EX_DATAERR: the daemon refused the request (ERR), such as a reload of a configuration it cannot apply; or
    /// a value is not in the form an adapter needs (credential-process without STS JSON, a newline in a token,
    /// a value that is not UTF-8 text for --json or an adapter, a newline in a value `watch` prints as NAME VALUE).
    case refused = 65
    /// EX_NOINPUT: no expirable of that name is configured (NOTFOUND).
    case notFound = 66
    /// EX_UNAVAILABLE: the daemon cannot be reached: no socket, a stale one, not a socket, a broken connection.
    case unavailable = 69
    /// EX_CANTCREAT: `cert` could not write a certificate or key.
    case cannotCreate = 73
    /// EX_IOERR: what was to be printed could not be written to stdout (a full disk, a closed stdout). A pipe
    /// whose reader has gone (`watch NAME | head -1`) is not an error: expirablectl ends as filters do, by SIGPIPE.
    case outputError = 74
    /// EX_TEMPFAIL: a timeout: the plugin's (TIMEOUT) or the daemon's answer (--timeout), or a request the
    /// stopping daemon could not answer within its drain time (TRYAGAIN); try again.
    case timeout = 75
    /// EX_PROTOCOL: the daemon answered something this expirablectl does not understand.
    case protocolError = 76
    /// EX_NOPERM: permission denied: on the socket, or by the daemon (NOPERM: CLEAR needs root, its user or group).
    case noPermission = 77
    /// EX_CONFIG: `check-config` refused the configuration.
    case badConfiguration = 78

    /// The status for a client error.
    init(_ code: ExpirableClientError.Code) {
        switch code {
        case .fetch: self = .fetchFailed
        case .notFound: self = .notFound
        case .timeout, .callTimeout, .tryAgain: self = .timeout
        case .noPermission: self = .noPermission
        case .badRequest: self = .refused
        case .unavailable: self = .unavailable
        case .unexpectedReply: self = .protocolError
        // expirablectl cancels no call it waits for; were one cancelled, trying again is what to do.
        case .cancelled: self = .timeout
        }
    }

    /// What the status means, for `--help` and the README.
    var meaning: String {
        switch self {
        case .ok: "success"
        case .fetchFailed: "the plugin failed to fetch the value (FETCH)"
        case .usage: "bad command line: unknown option, missing argument, bad duration"
        case .refused: "the daemon refused the request (ERR), such as a reload; or a value is not in the form an adapter, --json or watch needs"
        case .notFound: "no expirable of that name (NOTFOUND)"
        case .unavailable: "the daemon cannot be reached: no socket, stale socket, not a socket"
        case .cannotCreate: "cert could not write a file"
        case .outputError: "stdout could not be written (full disk, closed stdout); a closed pipe ends it by SIGPIPE (141) instead"
        case .timeout: "timed out: the plugin (TIMEOUT) or the daemon (--timeout), or the daemon stopped before it answered (TRYAGAIN); try again"
        case .protocolError: "the daemon's answer was not understood"
        case .noPermission: "permission denied: on the socket, or by the daemon (NOPERM)"
        case .badConfiguration: "check-config refused the configuration"
        }
    }

    /// The table of statuses, one per line.
    static var table: String {
        allCases.map { status in
            let code = String(status.rawValue)
            return String(repeating: " ", count: 3 - code.count) + code + "  " + status.meaning
        }.joined(separator: "\n")
    }
}
