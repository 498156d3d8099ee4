import CExpirableEarlySignals
import Dispatch
import ExpirableCluster
import ExpirableConfig
import ExpirableCore
import ExpirablePluginHost
import ExpirableServer
import ExpirableTLS
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Reload (SPEC §10; `kill -HUP`, `expirablectl reload`, the RELOAD command): the configuration file is read
/// again and applied all or nothing. Expirables whose definition did not change keep their values, timers,
/// pacing, plugin state and plugin instance (helper); changed ones whose plugin and params did not change keep
/// their value, plugin state and pacing under their new settings (and their instance unless it is made
/// differently); added ones, and changed ones with another plugin or params, start empty with a new instance
/// (the changed ones with their plugin state, the added ones with the state saved in state_dir); removed ones stop. What cannot change without a restart (the socket and its limits, plugin_dir, state_dir,
/// `[metrics]`, the cluster, the cluster-scoped expirables of a cluster) refuses the whole reload, naming it. The answer and the log say
/// what was applied. SIGHUP never stops the daemon.
final class Reloader: Sendable {
    private let path: String
    private let plugins: PluginHost
    private let engine: Engine
    private let cluster: Cluster?
    private let logger: Logger
    /// systemd (`Type=notify`) is told RELOADING=1 and READY=1 around each reload once `ready` says the daemon
    /// has announced READY=1 at start (one before that, for a SIGHUP while starting, is part of the start).
    private let notifier: SystemdNotifier
    private let ready: @Sendable () -> Bool
    /// The configuration applied last; reloads run one at a time under this lock.
    private let current: Mutex<Configuration>
    /// Set when the daemon begins to stop: a reload then would start helpers and make plugin calls (a refresh
    /// token rotated) for a daemon about to exit, whose values are dropped.
    private let stopping = Atomic<Bool>(false)

    init(path: String, configuration: Configuration, plugins: PluginHost, engine: Engine, cluster: Cluster?, logger: Logger,
         notifier: SystemdNotifier = SystemdNotifier(socketPath: nil), ready: @escaping @Sendable () -> Bool = { false }) {
        self.path = path
        self.notifier = notifier
        self.ready = ready
        self.plugins = plugins
        self.engine = engine
        self.cluster = cluster
        self.logger = logger
        current = Mutex(configuration)
    }

    /// Whether a SIGHUP came before `reloadOnHangup`, while the daemon was starting.
    private static let hangupWhileStarting = Atomic<Bool>(false)

    /// Makes a SIGHUP, from now until `reloadOnHangup`, only noted (SIGHUP's default is to end the process): the
    /// daemon reloads once for it when ready, since the file may have changed after it was read. Called first
    /// thing in `main`. Helpers get every signal's default back when spawned.
    static func noteHangupsUntilReady() {
        signal(SIGHUP) { _ in Reloader.hangupWhileStarting.store(true, ordering: .relaxed) }
        // One that came before, while the runtime started, was noted by the executable's constructor.
        if CExpirableEarlySignals_take_early_hangup() != 0 { hangupWhileStarting.store(true, ordering: .relaxed) }
    }

    /// Reloads on every SIGHUP (instead of dying of it, the signal's default), and once now for a SIGHUP that came
    /// while the daemon was starting.
    func reloadOnHangup() {
        signal(SIGHUP, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: SIGHUP, queue: .global())
        // The handler holds the source, so it lives as long as the daemon does.
        source.setEventHandler { [self] in
            _ = source
            _ = reload()  // logged either way
        }
        source.activate()
        if Reloader.hangupWhileStarting.exchange(false, ordering: .relaxed) {
            logger.notice("SIGHUP received while starting; reloading now")
            DispatchQueue.global().async { [self] in _ = reload() }
        }
    }

    /// No reload from now on (the daemon is stopping); one under way ends as it would.
    func stop() {
        stopping.store(true, ordering: .relaxed)
    }

    func reload() -> Result<String, ServerError> {
        current.withLock { applied in
            if stopping.load(ordering: .relaxed) {
                logger.notice("reload ignored: the daemon is stopping; nothing changed", metadata: ["file": "\(path)"])
                return .failure(ServerError("the daemon is stopping; start it again to apply the file"))
            }
            // sd_notify(3): RELOADING=1 with the monotonic time it began, then READY=1 once it is applied or
            // refused, so `systemctl reload` returns when the reload is done and the unit shows it meanwhile.
            let told = ready()
            if told { tell(["RELOADING=1", "MONOTONIC_USEC=\(Reloader.monotonicMicroseconds())", "STATUS=reloading \(path)"]) }
            let result = apply(&applied)
            if told {
                switch result {
                case .success: tell(["READY=1", "STATUS=ready; configuration reloaded"])
                case .failure: tell(["READY=1", "STATUS=ready; the last reload was refused, nothing changed (see the log)"])
                }
            }
            return result
        }
    }

    private func tell(_ fields: [String]) {
        if let problem = notifier.notify(fields) { logger.error("sd_notify failed", metadata: ["error": "\(problem)"]) }
    }

    static func monotonicMicroseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec) / 1000
    }

    /// Reads the file and applies it to `applied`, all or nothing. Caller holds the lock.
    private func apply(_ applied: inout Configuration) -> Result<String, ServerError> {
        let next: Configuration
        do {
            next = try Configuration.load(path: path)
        } catch {
            return refuse("\(error)")
        }
        if let problem = Reloader.needsRestart(from: applied, to: next) { return refuse(problem) }
        // A digest rule needs OpenSSL, loaded on first use: refused now, as at start, if it cannot be loaded.
        if let refusal = next.digestRuleRefusal(openSSLProblem: TLSError.openSSLProblem) { return refuse("\(refusal)") }
        let prepared: PluginHost.Reload
        do throws(PluginError) {
            prepared = try plugins.prepareReload(next)
        } catch {
            return refuse(error.message)
        }
        let definitions = Daemon.definitions(prepared.definitions, next, cluster)
        // The plugin host keeps an expirable only when its whole configured definition is as before, which
        // is also when the engine may keep its entry; it says which changed ones keep their value.
        let report = engine.reload(definitions, unchanged: prepared.unchanged, keepingValues: prepared.keepingValues)
        prepared.commit()
        // A cluster-scoped value is prefetched by its owner only; the others receive it (SPEC §4.11).
        let fresh = Set(report.added + report.startingEmpty).filter { engine.scope(of: $0) != .cluster || cluster?.owns($0) ?? true }
        if !fresh.isEmpty { engine.prefetch(only: fresh) { _ in } }
        // An allow list is not part of what keeps an entry: a value whose readers changed is kept, and said so.
        let accessChanged = Set(applied.readers.keys).union(next.readers.keys).filter { applied.readers[$0] != next.readers[$0] }
            .filter { report.unchanged.contains($0) }.sorted()
        applied = next
        logger.notice("configuration reloaded", metadata: [
            "allow_changed": "\(accessChanged)",
            "file": "\(path)", "added": "\(report.added)", "changed": "\(report.changed)",
            "values_kept": "\(report.changed.filter(report.keptValues.contains))",
            "removed": "\(report.removed)", "unchanged": "\(report.unchanged.count)",
        ])
        return .success("reloaded \(path): \(report.description)" + (accessChanged.isEmpty ? "" : "; allow changed: \(accessChanged.joined(separator: ", "))"))
    }

    private func refuse(_ why: String) -> Result<String, ServerError> {
        logger.error("configuration reload refused; nothing changed", metadata: ["file": "\(path)", "reason": "\(why)"])
        return .failure(ServerError(why))
    }

    /// What in `next` only a restart can apply, in words; nil when the reload can go ahead.
    static func needsRestart(from old: Configuration, to next: Configuration) -> String? {
        var keys: [String] = []
        // What was added or removed is said so: "expirable.x (cluster scope) changed" for a new one misleads.
        var added: [String] = []
        var removed: [String] = []
        let a = old.server, b = next.server
        if a.socket != b.socket { keys.append("server.socket") }
        if a.socketMode != b.socketMode { keys.append("server.socket_mode") }
        if a.maxConnections != b.maxConnections { keys.append("server.max_connections") }
        if a.maxRequestBytes != b.maxRequestBytes { keys.append("server.max_request_bytes") }
        if a.maxOutputBytes != b.maxOutputBytes { keys.append("server.max_output_bytes") }
        if a.idleTimeout != b.idleTimeout { keys.append("server.idle_timeout") }
        if a.requestTimeout != b.requestTimeout { keys.append("server.request_timeout") }
        // Unchanged expirables keep the instances loaded from the old plugin_dir: applying a new one would mean
        // resolving and checking every plugin again, which a restart does.
        if a.pluginDir != b.pluginDir { keys.append("server.plugin_dir") }
        // Kept helpers run as the account they were started with: a new one would apply to some and not others.
        if a.pluginAccount != b.pluginAccount { keys.append("server.plugin_user/plugin_group") }
        if a.stateDir != b.stateDir { keys.append("server.state_dir") }
        if a.stateKeyFile != b.stateKeyFile { keys.append("server.state_key_file") }
        if a.admins != b.admins { keys.append("server.admins") }
        switch (old.cluster, next.cluster) {
        case (nil, .some): added.append("[cluster]")
        case (.some, nil): removed.append("[cluster]")
        case (let a?, let b?): keys += Self.clusterKeys(from: a, to: b, added: &added, removed: &removed)
        case (nil, nil): break
        }
        // The metrics endpoint is bound once, at start.
        if old.metrics != next.metrics { keys.append("[metrics]") }
        if old.sinks.map(\.withoutLine) != next.sinks.map(\.withoutLine) { keys.append("[[sink]]") }
        if old.cluster != nil {
            // Peers compare their cluster-scoped expirables and lease the quorum ones: all nodes change together.
            let before = Dictionary(uniqueKeysWithValues: old.expirables.filter { $0.scope == .cluster }.map { ($0.name, $0) })
            let after = Dictionary(uniqueKeysWithValues: next.expirables.filter { $0.scope == .cluster }.map { ($0.name, $0) })
            sortDifferences(before, after, label: { "expirable.\($0) (cluster scope)" }, changed: &keys, added: &added, removed: &removed)
        }
        let parts = [(keys, "changed"), (added, "added"), (removed, "removed")].filter { !$0.0.isEmpty }.map { "\($0.0.joined(separator: ", ")) \($0.1)" }
        guard !parts.isEmpty else { return nil }
        let count = keys.count + added.count + removed.count
        return "\(parts.joined(separator: ", ")), and only a restart applies \(count == 1 ? "it" : "them"); restart expirabled (every node, for the cluster) or undo the change"
    }

    /// Sorts the names whose entries differ between `before` and `after` into `added`, `removed` and `changed`, in
    /// name order, each as `label(name)`.
    private static func sortDifferences<Value: Equatable>(_ before: [String: Value], _ after: [String: Value], label: (String) -> String,
                                                          changed: inout [String], added: inout [String], removed: inout [String]) {
        for name in Set(before.keys).union(after.keys).sorted() where before[name] != after[name] {
            switch (before[name], after[name]) {
            case (nil, _): added.append(label(name))
            case (_, nil): removed.append(label(name))
            default: changed.append(label(name))
            }
        }
    }

    /// The keys of `[cluster]` that differ, each named (`cluster.heartbeat`, `cluster.peers.node-b`), so a refusal
    /// says which one to undo; peers added or removed go to `added` / `removed`.
    private static func clusterKeys(from a: Configuration.Cluster, to b: Configuration.Cluster, added: inout [String], removed: inout [String]) -> [String] {
        var keys: [String] = []
        let named = added.count + removed.count
        if a.node != b.node { keys.append("cluster.node") }
        if a.listen != b.listen { keys.append("cluster.listen") }
        let before = Dictionary(a.peers.map { ($0.name, $0.endpoint) }, uniquingKeysWith: { first, _ in first })
        let after = Dictionary(b.peers.map { ($0.name, $0.endpoint) }, uniquingKeysWith: { first, _ in first })
        sortDifferences(before, after, label: { "cluster.peers.\($0)" }, changed: &keys, added: &added, removed: &removed)
        if a.ca != b.ca { keys.append("cluster.ca") }
        if a.cert != b.cert { keys.append("cluster.cert") }
        if a.key != b.key { keys.append("cluster.key") }
        if a.heartbeat != b.heartbeat { keys.append("cluster.heartbeat") }
        if a.maxClockOffset != b.maxClockOffset { keys.append("cluster.max_clock_offset") }
        if a.joinTimeout != b.joinTimeout { keys.append("cluster.join_timeout") }
        // A field this list does not name yet still refuses the reload, as the whole table.
        if keys.isEmpty && added.count + removed.count == named && a != b { keys.append("[cluster]") }
        return keys
    }
}
