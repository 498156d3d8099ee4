import ArgumentParser
import ExpirableCore

/// The daemon's command line, through swift-argument-parser like `expirablectl`'s: the same help layout, the
/// same errors (exit status 64), `--version`.
struct DaemonArguments: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "expirabled",
        abstract: "Keeps short-lived values (tokens, keys, rates) fresh and serves them on a Unix socket.",
        discussion: """
            Loads the configuration and its plugins, then serves RESP on server.socket until SIGTERM or SIGINT, \
            which drain connections, remove the socket file and exit 0. A bad configuration or plugin, or another \
            daemon already serving the socket, stops it at once with a message and exit status 1; a bad command \
            line exits 64.
            """,
        version: ExpirableVersion.string
    )

    @Option(help: ArgumentHelp("The configuration file.", valueName: "path"))
    var config: String

    @Option(help: ArgumentHelp(
        "Event-loop threads serving the socket, 1 to 256. One is best for a small machine: every answer from memory takes microseconds, and fewer threads leave the cores to the programs asking.",
        valueName: "n"
    ))
    var threads = 1

    @Option(help: ArgumentHelp("Least severe log level shown.", valueName: "level"))
    var logLevel: LogLevel = .info

    @Option(help: ArgumentHelp(
        "How log lines look on stderr: text, or json (one object per line: time, level, label, message, and the metadata as string members).",
        valueName: "format"
    ))
    var logFormat: LogFormat = .text

    /// For tests of clock skew: the one clock the daemon builds (engine, cluster, plugins' `now_ms`, helpers
    /// included) reads the wall clock this far off. Hidden from `--help`: nobody runs a node off on purpose.
    @Option(help: ArgumentHelp(
        "For tests: this node's wall clock runs this many milliseconds off the machine's (ahead, or behind when negative: --wall-clock-offset=-300000), for its versions, its plugins' now_ms and its reading of their expires_at; validity is unaffected.",
        valueName: "ms", visibility: .hidden
    ))
    var wallClockOffset: Int64 = 0

    func validate() throws {
        guard (1...256).contains(threads) else { throw ValidationError("--threads \(threads) is not a number of threads from 1 to 256") }
    }

    enum LogLevel: String, CaseIterable, ExpressibleByArgument {
        case trace, debug, info, notice, warning, error, critical
    }

    enum LogFormat: String, CaseIterable, ExpressibleByArgument {
        case text, json
    }
}
