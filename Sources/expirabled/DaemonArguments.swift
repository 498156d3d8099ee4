import ExpirableCore
#if canImport(Glibc)
import Glibc
#endif

/// The daemon's command line: the same help layout and errors (exit status 64) as `expirablectl`'s, which uses
/// swift-argument-parser. The daemon parses its own few options: the parser's code and the Foundation library it
/// loads would stay resident in every idle daemon for a command line read once (0.4-0.5 MB of private memory
/// measured, SPEC §8).
struct DaemonArguments {
    var config = ""
    var threads = 1
    var logLevel: LogLevel = .info
    var logFormat: LogFormat = .text
    /// This node's wall clock runs this many milliseconds off the system's (negative: behind): how a test gives
    /// one node of a cluster its own clock (clock skew). The daemon builds its one clock with it, for the engine,
    /// the cluster and the plugins' `now_ms`, in helpers too; validity is unaffected. In the help, marked for
    /// tests, since the README documents it.
    var wallClockOffset: Int64 = 0

    enum LogLevel: String, CaseIterable {
        case trace, debug, info, notice, warning, error, critical
    }

    enum LogFormat: String, CaseIterable {
        case text, json
    }

    /// What the command line asks for instead of a daemon: help or the version (exit 0), or a usage error (64).
    enum Exit: Error, Equatable {
        case help
        case version
        /// What is wrong, and the option it concerns, whose help follows the message.
        case usage(String, option: String? = nil)
    }

    /// An option: its name, the placeholder of its value, and its help.
    private struct Option {
        let name: String
        let value: String
        let help: String
        var label: String { "--\(name) <\(value)>" }
        var helpLine: String? { "\(label)  \(help)" }
    }

    private static let options = [
        Option(name: "config", value: "path", help: "The configuration file."),
        Option(name: "threads", value: "n", help: "Event-loop threads serving the socket, 1 to 256. One is best for a small machine: every answer from memory takes microseconds, and fewer threads leave the cores to the programs asking."),
        Option(name: "log-level", value: "level", help: "Least severe log level shown."),
        Option(name: "log-format", value: "format", help: "How log lines look on stderr: text, or json (one object per line: time, level, label, message, and the metadata as string members)."),
        Option(name: "wall-clock-offset", value: "ms", help: "For tests: this node's wall clock runs this many milliseconds off the system's (negative: behind); validity is unaffected."),
    ]

    static let usage = "USAGE: expirabled --config <path> [--threads <n>] [--log-level <level>] [--log-format <format>] [--wall-clock-offset <ms>]"

    static let help = """
        OVERVIEW: Keeps short-lived values (tokens, keys, rates) fresh and serves them
        on a Unix socket.

        Loads the configuration and its plugins, then serves RESP on server.socket
        until SIGTERM or SIGINT, which drain connections, remove the socket file and
        exit 0. A bad configuration or plugin, or another daemon already serving the
        socket, stops it at once with a message and exit status 1; a bad command line
        exits 64.

        \(usage)

        OPTIONS:
          --config <path>         The configuration file.
          --threads <n>           Event-loop threads serving the socket, 1 to 256. One
                                  is best for a small machine: every answer from memory
                                  takes microseconds, and fewer threads leave the cores
                                  to the programs asking. (default: 1)
          --log-level <level>     Least severe log level shown. (values: trace, debug,
                                  info, notice, warning, error, critical; default: info)
          --log-format <format>   How log lines look on stderr: text, or json (one
                                  object per line: time, level, label, message, and the
                                  metadata as string members). (values: text, json;
                                  default: text)
          --wall-clock-offset <ms>
                                  For tests: this node's wall clock runs this many
                                  milliseconds off the system's (negative: behind);
                                  validity is unaffected. (default: 0)
          --version               Show the version.
          -h, --help              Show help information.


        """

    /// Reads `arguments` (without the program's name): `--name value` or `--name=value`, each option at most
    /// once; the last of a repeated option wins, as with swift-argument-parser.
    static func parse(_ arguments: [String]) throws(Exit) -> DaemonArguments {
        var parsed = DaemonArguments()
        var sawConfig = false
        var index = 0
        while index < arguments.count {
            let word = arguments[index]
            index += 1
            if word == "-h" || word == "--help" { throw .help }
            if word == "--version" { throw .version }
            guard word.hasPrefix("--"), word.count > 2 else {
                throw .usage(word.hasPrefix("-") ? "Unknown option '\(word)'" : "Unexpected argument '\(word)'")
            }
            var name = String(word.dropFirst(2))
            var value: String?
            if let equals = name.firstIndex(of: "=") {
                value = String(name[name.index(after: equals)...])
                name = String(name[..<equals])
            }
            guard let option = options.first(where: { $0.name == name }) else { throw .usage("Unknown option '--\(name)'") }
            if value == nil {
                guard index < arguments.count, !arguments[index].hasPrefix("--") else {
                    throw .usage("Missing value for '\(option.label)'", option: option.helpLine)
                }
                value = arguments[index]
                index += 1
            }
            let text = value!
            switch name {
            case "config":
                parsed.config = text
                sawConfig = true
            case "threads":
                guard let threads = Int(text) else { throw invalid(text, option) }
                parsed.threads = threads
            case "log-level":
                guard let level = LogLevel(rawValue: text) else { throw invalid(text, option, choices: LogLevel.allCases.map(\.rawValue)) }
                parsed.logLevel = level
            case "log-format":
                guard let format = LogFormat(rawValue: text) else { throw invalid(text, option, choices: LogFormat.allCases.map(\.rawValue)) }
                parsed.logFormat = format
            default:
                guard let offset = Int64(text) else { throw invalid(text, option) }
                parsed.wallClockOffset = offset
            }
        }
        guard sawConfig else { throw .usage("Missing expected argument '--config <path>'") }
        guard (1...256).contains(parsed.threads) else {
            throw .usage("--threads \(parsed.threads) is not a number of threads from 1 to 256")
        }
        return parsed
    }

    private static func invalid(_ value: String, _ option: Option, choices: [String] = []) -> Exit {
        let message = "The value '\(value)' is invalid for '\(option.label)'"
        switch choices.count {
        case 0: return .usage(message, option: option.helpLine)
        case 2: return .usage(message + ". Please provide one of '\(choices[0])' and '\(choices[1])'.", option: option.helpLine)
        default:
            return .usage(message + ". Please provide one of the following:\n" + choices.map { "  - \($0)" }.joined(separator: "\n"),
                          option: option.helpLine)
        }
    }

    /// Writes `text` on stdout and exits 0; a write that fails (a full disk, /dev/full, a closed stdout) is said
    /// on stderr and exits 74 (EX_IOERR), as expirablectl's output does: `v=$(expirabled --version) || fail` must
    /// not succeed with nothing printed.
    private static func printAndExit(_ text: String) -> Never {
        var text = text
        let failure: Int32? = text.withUTF8 { buffer in
            var offset = 0
            while offset < buffer.count {
                let written = write(1, buffer.baseAddress! + offset, buffer.count - offset)
                if written > 0 {
                    offset += written
                } else if written < 0 && errno == EINTR {
                    continue
                } else {
                    return written < 0 ? errno : EIO
                }
            }
            return nil
        }
        guard let failure else { exit(0) }
        var message = "expirabled: cannot write to standard output: \(String(cString: strerror(failure)))\n"
        message.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
        exit(74)
    }

    /// Parses the process's command line; help and the version are printed and exit 0, a usage error goes to
    /// stderr with the usage and exits 64 (EX_USAGE).
    static func parseOrExit(_ arguments: [String]) -> DaemonArguments {
        do {
            return try parse(arguments)
        } catch {
            switch error {
            case .help:
                printAndExit(help)
            case .version:
                printAndExit(ExpirableVersion.string + "\n")
            case .usage(let message, let option):
                // As swift-argument-parser does: with no argument at all, the whole help follows the error.
                var text = "Error: \(message)\n" + (arguments.isEmpty ? "\n" + help
                    : (option.map { "Help:  \($0)\n" } ?? "") + "Usage: \(usage.dropFirst("USAGE: ".count))\n  See 'expirabled --help' for more information.\n")
                text.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
                exit(64)
            }
        }
    }
}
