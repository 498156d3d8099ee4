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
            command. Durations are written as in the configuration: 250ms, 30s, 5m, 1h; a bare number is \
            seconds for --timeout and milliseconds elsewhere. Reading commands (fetch, watch, list, status, explain, \
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
        do {
            var command = try parseAsRoot()
            if var asynchronous = command as? any AsyncParsableCommand {
                try await asynchronous.run()
            } else {
                try command.run()
            }
        } catch {
            exit(withError: error)
        }
    }
}

/// The options every command shares, accepted before or after the command.
struct Connection: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The daemon's Unix socket; $EXPIRABLE_SOCKET sets the default.", valueName: "path"))
    var socket: String = ExpirableClient.defaultSocketPath

    @Option(name: .long, help: ArgumentHelp(
        "How long to wait for the daemon's answer (for watch: for the daemon to come back after a restart): 250ms, 5s, 2m; a bare number is seconds.",
        valueName: "duration"
    ))
    var timeout: CommandLineDuration = CommandLineDuration(.seconds(35))

    var client: ExpirableClient {
        ExpirableClient(socketPath: socket, timeout: timeout.duration)
    }

    func validate() throws {
        if socket.isEmpty { throw ValidationError("--socket is empty; give the daemon's socket path, its server.socket") }
    }
}

/// A duration on the command line, read by the configuration's `DurationParser`; what a bare number counts
/// depends on the option (seconds for --timeout, which took seconds before it took durations).
struct CommandLineDuration: ExpressibleByArgument {
    let duration: Duration

    init(_ duration: Duration) { self.duration = duration }

    init?(argument: String) {
        guard let duration = DurationParser.duration(argument, bare: .seconds) else { return nil }
        self.duration = duration
    }

    var defaultValueDescription: String { "\(duration.components.seconds)s" }
}

/// Runs `body`, turning a failure into its message on stderr and the exit status of its kind.
func reporting(_ body: () async throws -> Void) async throws {
    do {
        try await body()
    } catch let error as ExpirableClientError {
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
