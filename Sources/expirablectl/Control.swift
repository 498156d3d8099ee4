import ArgumentParser
import ExpirableConfig
import ExpirableCore
import ExpirablePluginHost
import ExpirableClient
import Foundation
#if canImport(Glibc)
import Glibc
#endif

@main
struct Control: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "expirablectl",
        abstract: "Administer a running expirabled: read, watch, clear and inspect its values.",
        discussion: """
            Every command talks to the daemon's Unix socket. The global options --socket (default \
            $EXPIRABLE_SOCKET, else /run/expirable/expirable.sock) and --timeout go before or after the \
            command. Durations are written as in the configuration: 250ms, 30s, 5m, 1h, or a bare number of \
            milliseconds. Reading commands (fetch, watch, list, status, explain, \
            cluster, ping) print JSON with --json; a value that is not UTF-8 text, which JSON cannot carry, is \
            refused with status 65 there and by the adapters, and printed as its bytes by fetch without --json. Errors go to stderr, and the exit status says what kind of error it was:

            \(ExitStatus.table)
            """,
        version: ExpirableVersion.string,
        subcommands: [
            Fetch.self, Watch.self, Clear.self, Reload.self, List.self, Status.self, Explain.self, Ping.self, ClusterStatus.self, Cert.self, CheckConfig.self,
            CredentialProcess.self, ExecCredential.self, GitCredential.self, DockerCredential.self, Exec.self,
        ]
    )

    /// Parsed here so that the options are accepted before the command as well as after it; each command that
    /// talks to the daemon declares the same group and receives these values.
    @OptionGroup(title: "Global options") var connection: Connection

    /// `check-config` loads every plugin in a helper (inline ones too), which it starts from its own binary
    /// (/proc/self/exe): this one, started again in the hidden helper mode.
    static func main() async {
        if CommandLine.arguments.count > 1 && CommandLine.arguments[1] == PluginHelper.flag {
            PluginHelper.run(Array(CommandLine.arguments.dropFirst(2)))
        }
        StandardOutput.prepare()
        // argument-parser's `help NAME` prints the general help and succeeds for a NAME that is no command.
        let arguments = Array(CommandLine.arguments.dropFirst())
        if arguments.count > 1, arguments[0] == "help", !arguments[1].hasPrefix("-"),
           !configuration.subcommands.contains(where: { $0._commandName == arguments[1] }) {
            printError("Error: no command '\(arguments[1])'; `expirablectl --help` lists the commands")
            Glibc.exit(ExitStatus.usage.rawValue)
        }
        do {
            var command = try parseAsRoot()
            if var asynchronous = command as? any AsyncParsableCommand {
                try await asynchronous.run()
            } else {
                try command.run()
            }
        } catch {
            // --help, --version and `help COMMAND` end in an error that means success, which argument-parser
            // prints with print() and exits 0 whether or not the text could be written. Printed as every other
            // output is, a text that cannot be written exits 74 with the reason (`expirablectl --version > f`).
            if exitCode(for: error) == .success {
                let text = fullMessage(for: error)
                if !text.isEmpty { StandardOutput.write(Array((text + "\n").utf8)) }
                Glibc.exit(0)
            }
            exit(withError: error)
        }
    }
}

/// The options every command shares, accepted before or after the command.
struct Connection: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The daemon's Unix socket; $EXPIRABLE_SOCKET sets the default.", valueName: "path"))
    var socket: String = ExpirableClient.defaultSocketPath

    /// Written into the help by hand: ArgumentParser shows no default for an option read with `transform`.
    static let defaultTimeout = CommandLineDuration(.seconds(35))
    @Option(name: .long, parsing: .unconditional, help: ArgumentHelp(
        "How long to wait for the daemon's answer (for watch: for the daemon to come back after a restart): 250ms, 5s, 2m; a bare number is milliseconds; from 1ms to 7 days. (default: \(Connection.defaultTimeout.defaultValueDescription))",
        valueName: "duration"
    ), transform: { try CommandLineDuration.parse($0, allowing: .milliseconds(1)...CommandLineDuration.longest) })
    var timeout: CommandLineDuration = Connection.defaultTimeout

    /// The socket of the last client made, for messages that name it (CALLTIMEOUT).
    nonisolated(unsafe) static var socketInUse: String?

    var client: ExpirableClient {
        Connection.socketInUse = socket
        return ExpirableClient(socketPath: socket, timeout: timeout.duration)
    }

    func validate() throws {
        guard socket.isEmpty else { return }
        if let variable = getenv("EXPIRABLE_SOCKET"), variable.pointee == 0 {
            throw ValidationError("$EXPIRABLE_SOCKET is set but empty; unset it, set it to the daemon's socket (its server.socket), or give --socket")
        }
        throw ValidationError("--socket is empty; give the daemon's socket path, its server.socket")
    }
}

/// A duration on the command line, read by the configuration's `DurationParser` as the daemon reads one (SPEC §2):
/// a bare number is milliseconds, for every option alike, so `--timeout 300` is the 300 ms a script written from
/// the configuration's syntax means.
struct CommandLineDuration: ExpressibleByArgument {
    let duration: Duration

    init(_ duration: Duration) { self.duration = duration }

    init?(argument: String) {
        guard let duration = DurationParser.duration(argument) else { return nil }
        self.duration = duration
    }

    var defaultValueDescription: String { "\(duration.components.seconds)s" }

    /// The longest duration an option takes: beyond it a typo (a number of milliseconds given as seconds)
    /// rather than a wish.
    static let longest = Duration.seconds(7 * 86_400)

    /// `argument` read as `init(argument:)` reads it, refused with the range and the form when it is not one
    /// or is outside `range` (an option's transform: argument-parser shows the reason after the value).
    static func parse(_ argument: String, allowing range: ClosedRange<Duration>) throws -> CommandLineDuration {
        guard let parsed = CommandLineDuration(argument: argument), range.contains(parsed.duration) else {
            let low = range.lowerBound == .zero ? "0" : "1ms"
            throw ValidationError("expected a duration from \(low) to 7 days such as \"250ms\", \"5s\", \"2m\", or a bare number of milliseconds")
        }
        return parsed
    }
}

/// Runs `body`, turning a failure into its message on stderr and the exit status of its kind.
func reporting(_ body: () async throws -> Void) async throws {
    do {
        try await body()
    } catch let error as ExpirableClientError {
        if error.code == .callTimeout, let socket = Connection.socketInUse {
            printError("expirablectl: \(error) on \(socket); if it is busy (a slow plugin call), raise --timeout")
            throw ExitCode(ExitStatus(error.code).rawValue)
        }
        printError("expirablectl: \(error)")
        throw ExitCode(ExitStatus(error.code).rawValue)
    } catch let error as AdapterError {
        printError("expirablectl: \(error)")
        throw ExitCode(ExitStatus.refused.rawValue)
    }
}

func printError(_ text: String) {
    var line = text + "\n"
    line.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}

/// Prints `bytes` on stdout; a failed write ends expirablectl (`StandardOutput`).
func printOut(_ bytes: [UInt8]) {
    StandardOutput.write(bytes)
}

func printOut(_ text: String) {
    printOut(Array((text + "\n").utf8))
}

/// Prints `rows` as columns padded to their widest cell; the first row is the header.
func printTable(_ rows: [[String]]) {
    let widths = (0..<rows[0].count).map { column in rows.map { $0[column].count }.max() ?? 0 }
    for row in rows {
        let cells = row.enumerated().map { column, cell in
            column == row.count - 1 ? cell : cell.padding(toLength: widths[column], withPad: " ", startingAt: 0)
        }
        printOut(cells.joined(separator: "  ").trimmingCharacters(in: .whitespaces))
    }
}
