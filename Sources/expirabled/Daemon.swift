import CExpirableCloseOnExec
import CExpirableEarlySignals
import CExpirableLinux
import ExpirableCluster
import ExpirableConfig
import ExpirableCore
import ExpirableMetrics
import ExpirablePluginHost
import ExpirableServer
import ExpirableState
import ExpirableTLS
import Logging
import NIOPosix
#if canImport(Glibc)
import Glibc
#endif

@main
struct Daemon {
    let arguments: DaemonArguments

    static func main() async {
        if CommandLine.arguments.count > 1 && CommandLine.arguments[1] == PluginHelper.flag {
            PluginHelper.run(Array(CommandLine.arguments.dropFirst(2)))
        }
        // Descriptors whoever started the daemon left open (a shell's, a supervisor's) stay open, but no program
        // an inline plugin runs gets them; those the daemon makes from now on are close-on-exec from birth.
        _ = CExpirableCloseOnExec_mark_from(3)
        // Before anything slow (the configuration, the plugins' helpers): a SIGHUP from now on never kills.
        Reloader.noteHangupsUntilReady()
        let arguments = DaemonArguments.parseOrExit(Array(CommandLine.arguments.dropFirst()))
        await Daemon(arguments: arguments).run()
    }

    func run() async {
        let level = Logger.Level(rawValue: arguments.logLevel.rawValue) ?? .info
        switch arguments.logFormat {
        case .text:
            LoggingSystem.bootstrap { label in TextLogHandler(label: label, level: level) }
        case .json:
            LoggingSystem.bootstrap { label in JSONLogHandler(label: label, level: level) }
        }
        let logger = Logger(label: "expirabled")
        let notifier = SystemdNotifier.fromEnvironment()
        raiseFileLimit()
        forbidCoreDumps()

        let configuration: Configuration
        let plugins: PluginHost
        // One clock for everything that reads time: the engine (validity, refresh), the plugin host (timeouts,
        // helper backoff, plugins' now_ms, in helpers too), the cluster, the sinks and readiness.
        let clock = SystemClock(wallOffset: .milliseconds(arguments.wallClockOffset))
        do {
            configuration = try Configuration.load(path: arguments.config)
            if let problem = ExpirableServer.socketPathProblem(configuration.server.socket) {
                throw configuration.refusal(["server", "socket"], problem)
            }
            if let refusal = configuration.unassignedListenAddress() { throw refusal }
            plugins = try PluginHost(configuration: configuration, clock: clock, logger: Logger(label: "expirable.plugins"))
        } catch {
            fail("\(error)")
        }
        var cluster: Cluster?
        if let settings = configuration.cluster {
            do {
                let tls = try TLSContext(node: settings.node, caPath: settings.ca, certificatePath: settings.cert, keyPath: settings.key)
                // Peer links on NIO's shared group (a thread per core), apart from the loops serving the socket. One
                // thread of their own saved about 50 kB of an idle node's memory but made a miss 0.2 ms slower and
                // 8-node replication's p99 twice as long (Benchmarks/cluster.sh, docs/benchmarks.md).
                cluster = Cluster(options: Daemon.clusterOptions(settings, configuration), tls: tls, logger: Logger(label: "expirable.cluster"), clock: clock,
                                  allocator: WipingAllocator.shared)
            } catch let error as TLSError {
                fail("\(configuration.refusal(["cluster"] + (error.key.map { [$0] } ?? []), error.message))")
            } catch {
                fail("\(error)")
            }
        }
        let definitions = Daemon.definitions(plugins.definitions, configuration, cluster)
        let engine = Engine(expirables: definitions, clock: clock, logger: Logger(label: "expirable.engine"))
        var stateFiles: StateFiles?
        if let directory = configuration.server.stateDir {
            do {
                let store = try StateStore(directory: directory, keyFile: configuration.server.stateKeyFile)
                // Before any state is read: a second daemon on the directory would spend the first's refresh tokens.
                try store.lock()
                let files = StateFiles(store: store, clock: clock, logger: Logger(label: "expirable.state"))
                engine.keepStates(with: files, initial: StateFiles.load(store, names: engine.names, logger: logger))
                stateFiles = files
            } catch {
                let key = error.aboutKey && configuration.server.stateKeyFile != nil ? "state_key_file" : "state_dir"
                fail("\(configuration.refusal(["server", key], "[server] \(key): \(error.message)"))")
            }
        }
        // An exe rule with a digest hashes the caller's executable through OpenSSL, which nothing links: loaded
        // now, so that a machine without it is told at start rather than finding its callers refused.
        if let refusal = configuration.digestRuleRefusal(openSSLProblem: TLSError.openSSLProblem) { fail("\(refusal)") }
        cluster?.attach(engine)
        var options = ServerOptions(
            socketPath: configuration.server.socket,
            socketMode: configuration.server.socketMode,
            maxConnections: configuration.server.maxConnections ?? Daemon.connectionsTheFileLimitAllows(),
            maxRequestBytes: configuration.server.maxRequestBytes,
            maxOutputBytes: configuration.server.maxOutputBytes,
            idleTimeout: configuration.server.idleTimeout,
            requestTimeout: configuration.server.requestTimeout,
            nodeName: configuration.cluster?.node ?? "local"
        )
        options.pluginInfo = { plugins.info($0) }
        if let stateFiles { options.stateInfo = { stateFiles.info($0) } }
        options.admins = configuration.server.admins
        // In a cluster, prefetch waits for the join and cluster-scoped values are prefetched by their owners
        // only (SPEC §4.11): the others receive them.
        let readiness = Readiness(
            notifier: notifier, engine: engine, cluster: cluster, clock: clock,
            prefetchTimeouts: configuration.expirables.filter(\.freshness.prefetch).map(\.timeout), logger: logger
        )
        let reloader = Reloader(path: Daemon.absolute(arguments.config), configuration: configuration, plugins: plugins, engine: engine, cluster: cluster,
                                logger: logger, notifier: notifier, ready: { readiness.hasAnnounced })
        options.reload = { reloader.reload() }
        reloader.reloadOnHangup()
        options.onListening = { readiness.listening() }
        if let cluster {
            options.expirableInfo = { cluster.info($0) }
            options.clusterInfo = { cluster.describe(visible: $0) }
            options.serverInfo = { cluster.timeInfo() }
        }
        let server = ExpirableServer(
            engine: engine,
            options: options,
            logger: Logger(label: "expirable.server"),
            group: MultiThreadedEventLoopGroup(numberOfThreads: arguments.threads)
        )
        var parts: [any Service] = cluster.map { [$0] } ?? []
        if !configuration.sinks.isEmpty {
            // Before the server in the group, so shut down after it: the files go once nobody is served.
            parts.append(Sinks(configuration, engine: engine, clock: clock, logger: Logger(label: "expirable.sinks")))
        }
        if let metrics = configuration.metrics {
            let endpoint = Daemon.metricsServer(metrics, engine: engine, server: server, cluster: cluster, plugins: plugins, stateFiles: stateFiles, logger: logger)
            // Bound before anything serves or says it is ready: a port taken fails the start, not a daemon
            // that has already told its supervisor READY=1.
            do {
                try await endpoint.bind()
            } catch {
                engine.shutdown()
                stateFiles?.stop()
                plugins.shutdown()
                fail("\(configuration.refusal(["metrics", "listen"], "metrics.listen: " + String("\(error)".trimmingPrefix("[metrics] listen: "))))")
            }
            parts.append(endpoint)
        }
        // SIGTERM or SIGINT, or any part ending, shuts them all down, the server first (it drains its connections)
        // and the cluster last.
        let group = ServiceGroup(services: parts + [server], gracefulShutdownSignals: [SIGTERM, SIGINT], logger: logger, pendingSignal: {
            // SIGTERM or SIGINT while the daemon started (its plugins created): noted, never fatal, acted on now.
            let number = CExpirableEarlySignals_early_stop()
            guard number != 0 else { return nil }
            logger.notice("\(number == SIGINT ? "SIGINT" : "SIGTERM") received while starting; stopping now that the daemon has started")
            return number
        }) { reason in
            reloader.stop()
            // sd_notify(3): the unit shows "deactivating" while the connections drain, not "active".
            if let problem = notifier.notify(["STOPPING=1", "STATUS=stopping (\(reason)): draining connections"]) {
                logger.error("sd_notify failed", metadata: ["error": "\(problem)"])
            }
        }
        do {
            try await group.run()
        } catch {
            engine.shutdown()
            stateFiles?.stop()
            plugins.shutdown()
            fail("\(error)")
        }
        engine.shutdown()
        stateFiles?.stop()
        plugins.shutdown()
    }

    /// The engine's definitions from the plugin host's: each expirable's freshness policy, and in a cluster its
    /// fetcher wrapped by the cluster's (the owner calls, others forward).
    static func definitions(_ plugged: [ExpirableDefinition], _ configuration: Configuration, _ cluster: Cluster?) -> [ExpirableDefinition] {
        let byName = Dictionary(uniqueKeysWithValues: configuration.expirables.map { ($0.name, $0) })
        return plugged.map { definition in
            guard let expirable = byName[definition.name] else { return definition }
            // Prefetch of cluster-scoped values waits for the join and is left to their owners (Readiness).
            var result = definition.with(freshness: expirable.freshness)
            result.readers = configuration.readers[definition.name]
            if let cluster, expirable.scope == .cluster {
                result = result.with(fetcher: cluster.fetcher(for: definition.name, local: definition.fetcher, timeout: expirable.timeout))
            }
            return result
        }
    }

    static func clusterOptions(_ settings: Configuration.Cluster, _ configuration: Configuration) -> ClusterOptions {
        var options = ClusterOptions(
            node: settings.node,
            listenHost: settings.listen.host,
            listenPort: settings.listen.port,
            peers: settings.peers.map { ClusterOptions.Peer(name: $0.name, host: $0.endpoint.host, port: $0.endpoint.port) },
            heartbeat: settings.heartbeat,
            joinTimeout: settings.joinTimeout,
            digests: configuration.expirables.filter { $0.scope == .cluster }.map { expirable in
                let refresh: String
                switch expirable.refresh {
                case .lazy: refresh = "lazy"
                case .eager(let before): refresh = "eager:\(before)"
                }
                // Nodes that disagree on any of these are reported; the owner of a name is chosen among the nodes
                // that have it, keyed or plain as here.
                return ExpirableDigest(name: expirable.name, plugin: expirable.plugin, refresh: refresh,
                                       singleFlight: expirable.singleFlight == .quorum ? "quorum" : "available", keyed: expirable.keyed != nil)
            }
        )
        options.forwardPatience = configuration.server.requestTimeout
        options.maxClockOffset = settings.maxClockOffset
        options.quorum = Dictionary(uniqueKeysWithValues: configuration.expirables
            .filter { $0.scope == .cluster && $0.singleFlight == .quorum }.map { ($0.name, $0.timeout) })
        options.keepsState = Set(configuration.expirables.filter { $0.scope == .cluster && $0.keepsState }.map(\.name))
        return options
    }

    /// The Prometheus endpoint of `[metrics]`, on an event loop of its own.
    static func metricsServer(_ settings: Configuration.Metrics, engine: Engine, server: ExpirableServer, cluster: Cluster?,
                              plugins: PluginHost, stateFiles: StateFiles?, logger: Logger) -> MetricsServer {
        var sources = MetricsSources(engine: engine, version: ExpirableServer.version)
        sources.server = { server.figures() }
        sources.pluginInfo = { plugins.info($0) }
        if let stateFiles { sources.states = { stateFiles.figures() } }
        if let cluster { sources.cluster = { cluster.figures(names: $0) } }
        sources.keys = settings.keys
        if !settings.isLoopback {
            // Any address works, as a user expects; the endpoint has no authentication, so say what it shows.
            let shown = settings.keys ? "the keys of keyed families (metrics_keys = true), never a value" : "never a value or a key"
            logger.warning("[metrics] listen is not a loopback address: anyone who can reach it reads the names of the expirables, their states, timings and counters (\(shown)); firewall it or listen on 127.0.0.1", metadata: ["listen": "\(settings.listen)"])
        }
        return MetricsServer(host: settings.listen.host, port: settings.listen.port, collector: MetricsCollector(sources: sources),
                             logger: Logger(label: "expirable.metrics"))
    }

    /// Reports why the daemon cannot start, as a log record in the chosen format, and exits 1.
    func fail(_ message: String) -> Never {
        var text = arguments.logFormat == .json
            ? JSONLogHandler.record(time: JSONLogHandler.now(), level: .critical, label: "expirabled", message: message, metadata: [:])
            : "expirabled: \(message)\n"
        text.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
        Glibc.exit(1)
    }

    /// `path` made absolute against the working directory at start: an inline plugin may change the daemon's
    /// working directory (chdir), and RELOAD must still find the file --config named.
    static func absolute(_ path: String) -> String {
        guard !path.hasPrefix("/"), let cwd = getcwd(nil, 0) else { return path }
        defer { free(cwd) }
        return String(cString: cwd) + "/" + path
    }

    /// Values are never written to disk, so neither is a core file holding them; and no process of the daemon's
    /// user may read them from its memory (ptrace, /proc/PID/mem): the daemon is not dumpable.
    private func forbidCoreDumps() {
        var none = rlimit(rlim_cur: 0, rlim_max: 0)
        setrlimit(Int32(RLIMIT_CORE.rawValue), &none)
        _ = CExpirableLinux_set_not_dumpable()
    }

    /// Descriptors kept back from clients for plugins (their pipes and processes), cluster links and files.
    static let reservedDescriptors = 128

    /// The default `max_connections`: the limit on open files (raised to its hard limit at start) less a
    /// reserve, so the daemon refuses clients with an error before it runs out of descriptors.
    static func connectionsTheFileLimitAllows() -> Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur != rlim_t.max else { return 1_000_000 }
        return max(16, min(1_000_000, Int(limit.rlim_cur) - reservedDescriptors))
    }

    /// Lets the daemon hold as many connections as the hard limit on open files allows.
    private func raiseFileLimit() {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
        limit.rlim_cur = limit.rlim_max
        setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    }
}
