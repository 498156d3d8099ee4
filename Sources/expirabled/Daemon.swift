import ArgumentParser
import ExpirableConfig
import ExpirableCore
import ExpirablePluginHost
import ExpirableServer
import Logging
import NIOPosix
import ServiceLifecycle
#if canImport(Glibc)
import Glibc
#endif

@main
struct Daemon: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "expirabled",
        abstract: "Keeps short-lived values (tokens, keys, rates) fresh and serves them on a Unix socket.",
        discussion: """
            Loads the configuration and its plugins, then serves RESP2 on server.socket until SIGTERM or SIGINT, \
            which drain connections, remove the socket file and exit 0. A bad configuration or plugin, or another \
            daemon already serving the socket, stops it at once with a message and exit status 1.
            """
    )

    @Option(name: .long, help: "The configuration file.")
    var config: String

    @Option(name: .long, help: "Event-loop threads serving the socket. One is best for a small machine: every answer from memory takes microseconds, and fewer threads leave the cores to the programs asking.")
    var threads: Int = 1

    @Option(name: .long, help: "Least severe log level shown: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    func run() async throws {
        guard let level = Logger.Level(rawValue: logLevel) else {
            throw ValidationError("--log-level \(logLevel) is not one of trace, debug, info, notice, warning, error, critical")
        }
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "expirabled")
        raiseFileLimit()
        forbidCoreDumps()

        let configuration: Configuration
        let plugins: PluginHost
        do {
            configuration = try Configuration.load(path: config)
            plugins = try PluginHost(configuration: configuration, logger: Logger(label: "expirable.plugins"))
        } catch {
            Daemon.fail("\(error)")
        }
        let engine = Engine(expirables: plugins.definitions, logger: Logger(label: "expirable.engine"))
        let server = ExpirableServer(
            engine: engine,
            options: ServerOptions(
                socketPath: configuration.server.socket,
                socketMode: configuration.server.socketMode,
                maxConnections: configuration.server.maxConnections,
                maxRequestBytes: configuration.server.maxRequestBytes,
                nodeName: configuration.cluster?.node ?? "local"
            ),
            logger: Logger(label: "expirable.server"),
            group: MultiThreadedEventLoopGroup(numberOfThreads: max(1, threads))
        )
        let group = ServiceGroup(configuration: .init(
            services: [.init(service: server, successTerminationBehavior: .gracefullyShutdownGroup, failureTerminationBehavior: .gracefullyShutdownGroup)],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger
        ))
        do {
            try await group.run()
        } catch {
            engine.shutdown()
            plugins.shutdown()
            Daemon.fail("\(error)")
        }
        engine.shutdown()
        plugins.shutdown()
    }

    static func fail(_ message: String) -> Never {
        var text = "expirabled: \(message)\n"
        text.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
        Glibc.exit(1)
    }

    /// Values are never written to disk, so neither is a core file holding them.
    private func forbidCoreDumps() {
        var none = rlimit(rlim_cur: 0, rlim_max: 0)
        setrlimit(Int32(RLIMIT_CORE.rawValue), &none)
    }

    /// Lets the daemon hold as many connections as the hard limit on open files allows.
    private func raiseFileLimit() {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
        limit.rlim_cur = limit.rlim_max
        setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    }
}
