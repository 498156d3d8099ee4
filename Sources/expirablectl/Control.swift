import ArgumentParser
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
        discussion: "Every command talks to the daemon's Unix socket (--socket, default $EXPIRABLE_SOCKET or /run/expirable/expirable.sock) and exits non-zero with the error on stderr when anything fails.",
        subcommands: [Fetch.self, Watch.self, Clear.self, Reload.self, List.self, Status.self, Explain.self, Ping.self, ClusterStatus.self, Cert.self, CheckConfig.self]
    )

    /// `check-config` loads plugins as the daemon does, so with `isolation = "process"` it starts helpers from
    /// its own binary (/proc/self/exe): this one, started again in the hidden helper mode.
    static func main() async {
        if CommandLine.arguments.count > 1 && CommandLine.arguments[1] == PluginHelper.flag {
            PluginHelper.run(Array(CommandLine.arguments.dropFirst(2)))
        }
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

/// The options every command shares.
struct Connection: ParsableArguments {
    @Option(name: .long, help: "The daemon's Unix socket.")
    var socket: String = ExpirableClient.defaultSocketPath

    @Option(name: .long, help: "Seconds to wait for the daemon's answer (for watch: for the daemon to come back after a restart).")
    var timeout: Double = 35

    var client: ExpirableClient {
        ExpirableClient(socketPath: socket, timeout: .milliseconds(Int64(timeout * 1000)))
    }
}

/// Runs `body`, turning any failure into a message on stderr and exit status 1.
func reporting(_ body: () async throws -> Void) async throws {
    do {
        try await body()
    } catch let error as ExpirableClientError {
        printError("expirablectl: \(error)")
        throw ExitCode(1)
    }
}

func printError(_ text: String) {
    var line = text + "\n"
    line.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}

func printOut(_ bytes: [UInt8]) {
    bytes.withUnsafeBufferPointer { buffer in
        var offset = 0
        while offset < buffer.count {
            let n = write(1, buffer.baseAddress! + offset, buffer.count - offset)
            if n <= 0 { break }
            offset += n
        }
    }
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
