/// The daemon's command line. Parsed by hand: the daemon has four options, and the argument-parser library
/// would load Foundation into every daemon, about 3 MB of resident memory for nothing.
struct DaemonArguments: Equatable {
    var config: String
    var threads = 1
    var logLevel = "info"
    var wallClockOffset: Int64 = 0

    static let usage = """
        USAGE: expirabled --config <path> [--threads <n>] [--log-level <level>]

        Keeps short-lived values (tokens, keys, rates) fresh and serves them on a Unix socket.

        Loads the configuration and its plugins, then serves RESP2 on server.socket until SIGTERM or SIGINT, which
        drain connections, remove the socket file and exit 0. A bad configuration or plugin, or another daemon
        already serving the socket, stops it at once with a message and exit status 1.

        OPTIONS:
          --config <path>        The configuration file.
          --threads <n>          Event-loop threads serving the socket (default: 1). One is best for a small machine:
                                 every answer from memory takes microseconds, and fewer threads leave the cores to
                                 the programs asking.
          --log-level <level>    Least severe log level shown: trace, debug, info, notice, warning, error, critical
                                 (default: info).
          -h, --help             Show this help.

        """

    /// What the command line asks for: to run, or to show the help.
    enum Request: Equatable {
        case run(DaemonArguments)
        case help
    }

    /// Parses `arguments` (without the program name); a bad one is thrown as a `UsageError` naming it.
    static func parse(_ arguments: [String]) throws(UsageError) -> Request {
        var config: String?
        var parsed = DaemonArguments(config: "")
        var rest = arguments[...]
        while let argument = rest.popFirst() {
            if argument == "-h" || argument == "--help" { return .help }
            var name = argument
            var inline: String?
            if argument.hasPrefix("--"), let equals = argument.firstIndex(of: "=") {
                name = String(argument[..<equals])
                inline = String(argument[argument.index(after: equals)...])
            }
            func value() throws(UsageError) -> String {
                if let inline { return inline }
                guard let next = rest.popFirst() else { throw UsageError("\(name) needs a value") }
                return next
            }
            switch name {
            case "--config":
                config = try value()
            case "--threads":
                let text = try value()
                guard let n = Int(text), (1...256).contains(n) else {
                    throw UsageError("--threads \(text) is not a number of threads from 1 to 256")
                }
                parsed.threads = n
            case "--log-level":
                let text = try value()
                guard logLevels.contains(text) else {
                    throw UsageError("--log-level \(text) is not one of \(logLevels.joined(separator: ", "))")
                }
                parsed.logLevel = text
            case "--wall-clock-offset":  // hidden: shifts the wall clock for tests of clock skew
                let text = try value()
                guard let ms = Int64(text) else { throw UsageError("--wall-clock-offset \(text) is not a number of milliseconds") }
                parsed.wallClockOffset = ms
            default:
                throw UsageError("unknown argument '\(argument)'")
            }
        }
        guard let config, !config.isEmpty else { throw UsageError("missing --config <path>") }
        parsed.config = config
        return .run(parsed)
    }

    static let logLevels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]
}

/// A command line the daemon cannot run with.
struct UsageError: Error {
    let message: String
    init(_ message: String) { self.message = message }
}
