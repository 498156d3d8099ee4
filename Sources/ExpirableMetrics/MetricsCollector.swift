import ExpirableCluster
import ExpirableCore
import ExpirableServer
import Prometheus
import Synchronization

/// Where the figures come from: the engine always, the server, the cluster and the plugin host when there are.
public struct MetricsSources: Sendable {
    public var engine: Engine
    public var server: (@Sendable () -> ServerFigures)?
    public var cluster: (@Sendable ([String]) -> ClusterFigures)?
    /// An expirable's plugin facts as INFO shows them (`isolation`, `helper_pid`, `helper_restarts`).
    public var pluginInfo: (@Sendable (String) -> [(String, String)])?
    /// With `state_dir`: plugin states whose latest change is not on disk yet, and failed writes since start.
    public var states: (@Sendable () -> (unsaved: Int, failures: UInt64))?
    public var version: String
    /// `metrics_keys`: whether each member a keyed family holds gets series of its own, labelled with its key.
    public var keys = false
    /// Monotonic nanoseconds at which the daemon started, on `SystemClock`.
    public var startedAt: UInt64

    public init(engine: Engine, version: String, startedAt: UInt64 = SystemClock().monotonicNanos) {
        self.engine = engine
        self.version = version
        self.startedAt = startedAt
    }
}

/// Gathers every figure into a swift-prometheus registry at each scrape and renders the text format. The
/// parts keep their own counters (the serving path never touches the registry); a scrape sets the gauges and
/// moves each counter on by what its source counted since the last scrape. Plugin call durations go into
/// histograms as calls end. Never a value or a plugin state, nor a key of a keyed family unless `keys` is set.
public final class MetricsCollector: Sendable {
    private let registry = PrometheusCollectorRegistry()
    private let sources: MetricsSources
    /// The last count each counter series was moved to, and every series the last scrape wrote; scrapes are
    /// serialised by it.
    private let shown = Mutex<(counted: [Series: UInt64], written: Set<Series>)>(([:], []))
    private let lastScrape = Mutex<Duration>(.zero)
    /// Memory figures by process (nil: this one), read at most every `memoryInterval`.
    private let memory = Mutex<[Int32?: (at: ContinuousClock.Instant, figures: ProcessFigures?)]>([:])

    /// How old a process's memory figures may be. The kernel walks every page table of a process to count its
    /// private memory (`smaps_rollup`: 0.25–0.4 ms a process measured here, under the process's memory-map lock),
    /// so a scrape every second of a daemon with 20 helpers would spend 5–8 ms on it; memory moves slowly.
    static let memoryInterval: Duration = .seconds(10)
    private let histograms = CallHistograms()

    /// Buckets of the plugin call duration histogram.
    static let durationBuckets: [Duration] = [
        .milliseconds(1), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
        .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10), .seconds(30),
    ]

    public init(sources: MetricsSources) {
        self.sources = sources
        let registry = registry
        let histograms = histograms
        let engine = sources.engine
        sources.engine.observeCalls { name, call in
            // An expirable with an allow list is left out: a scrape has no peer credentials (SPEC §9).
            guard !engine.isRestricted(name) else { return }
            histograms.histogram(name, call.outcome, in: registry).recordNanoseconds(Int64(clamping: call.durationNanos))
        }
    }

    /// The text exposition format (version 0.0.4) of every figure now.
    public func scrape() -> [UInt8] {
        let start = ContinuousClock.now
        let keySeries = shown.withLock { shown in
            var scrape = Scrape(registry: registry, counted: shown.counted)
            let names = gather(into: &scrape)
            scrape.gauge("expirable_metrics_scrape_duration_seconds", [], lastScrape.withLock { $0 }.seconds)
            // A series the last scrape wrote and this one did not (an expirable removed by a reload, a value that
            // no longer expires, a family that is no longer keyed) leaves the exposition.
            for series in shown.written.subtracting(scrape.written) { scrape.unregister(series) }
            histograms.keep(only: names, in: registry)
            shown = (scrape.counted, scrape.written)
            return scrape.keys
        }
        var buffer: [UInt8] = []
        buffer.reserveCapacity(16 * 1024)
        registry.emit(into: &buffer)
        keySeries.emit(into: &buffer)
        lastScrape.withLock { $0 = ContinuousClock.now - start }
        return buffer
    }

    /// Writes every figure; returns the names of the expirables there are now.
    private func gather(into scrape: inout Scrape) -> Set<String> {
        let engine = sources.engine
        // Expirables with an allow list are left out: a scrape has no peer credentials, and whoever cannot read
        // a value must not learn that it exists (SPEC §9).
        let figures = engine.figures().filter { !engine.isRestricted($0.name) }
        for figure in figures {
            let name = [("expirable", figure.name)]
            for state in [ExpirableStatus.State.empty, .valid, .expired, .stale] {
                scrape.gauge("expirable_state", name + [("state", state.rawValue)], Double(figure.states[state] ?? 0))
            }
            let valid = (figure.states[.valid] ?? 0) > 0
            if let seconds = figure.expiresInSeconds {
                scrape.gauge("expirable_expires_in_seconds", name, seconds)
            } else if valid {
                // Never expires: no series (a series from before leaves the exposition).
            } else {
                scrape.gauge("expirable_expires_in_seconds", name, 0)
            }
            scrape.gauge("expirable_fetching", name, Double(figure.fetching))
            let c = figure.counters
            scrape.counter("expirable_hits_total", name, c.hits)
            scrape.counter("expirable_misses_total", name, c.misses)
            scrape.counter("expirable_plugin_calls_total", name, c.pluginCalls)
            scrape.counter("expirable_plugin_failures_total", name + [("class", "temporary")], c.failures &- c.permanentFailures)
            scrape.counter("expirable_plugin_failures_total", name + [("class", "permanent")], c.permanentFailures)
            scrape.counter("expirable_refreshes_total", name, c.refreshes)
            scrape.counter("expirable_stale_answers_total", name, c.staleAnswers)
            scrape.gauge("expirable_consecutive_failures", name, Double(figure.consecutiveFailures))
            scrape.gauge("expirable_next_attempt_seconds", name, figure.nextAttemptInSeconds ?? 0)
            if let family = figure.family {
                scrape.gauge("expirable_family_keys", name, Double(family.keys))
                scrape.gauge("expirable_family_max_keys", name, Double(family.maxKeys))
                scrape.counter("expirable_family_evictions_total", name, family.evictions)
                if sources.keys {
                    for member in engine.memberFigures(of: figure.name) { scrape.keys.add(member, of: figure.name) }
                }
            }
            if let info = sources.pluginInfo?(figure.name), info.contains(where: { $0 == ("isolation", "process") }) {
                let facts = Dictionary(info, uniquingKeysWith: { first, _ in first })
                let pid = facts["helper_pid"].flatMap { Int32($0) }
                scrape.gauge("expirable_helper_up", name, pid == nil ? 0 : 1)
                scrape.counter("expirable_helper_restarts_total", name, UInt64(facts["helper_restarts"] ?? "") ?? 0)
                scrape.gauge("expirable_helper_private_memory_bytes", name, Double(pid.flatMap { memoryFigures(of: $0) }?.privateBytes ?? 0))
            }
        }
        if let server = sources.server?() {
            scrape.gauge("expirable_server_connections", [], Double(server.connections))
            scrape.gauge("expirable_server_max_connections", [], Double(server.maxConnections))
            scrape.counter("expirable_server_connections_accepted_total", [], UInt64(server.connectionsAccepted))
            scrape.counter("expirable_server_connections_refused_total", [], UInt64(server.connectionsRefused))
            for (command, count) in server.requests {
                scrape.counter("expirable_server_requests_total", [("command", command)], count)
            }
            scrape.counter("expirable_server_output_throttles_total", [], server.outputThrottles)
            scrape.gauge("expirable_server_throttled_connections", [], Double(server.throttledConnections))
            scrape.counter("expirable_server_slow_subscribers_closed_total", [], server.slowSubscribersClosed)
        }
        if let clusterFigures = sources.cluster {
            let clustered = figures.filter { $0.scope == .cluster }.map(\.name)
            let cluster = clusterFigures(clustered)
            scrape.gauge("expirable_cluster_peers", [], Double(cluster.peers.count))
            scrape.gauge("expirable_cluster_peers_alive", [], Double(cluster.peers.filter(\.alive).count))
            for peer in cluster.peers {
                let label = [("peer", peer.node)]
                scrape.gauge("expirable_cluster_peer_up", label, peer.alive ? 1 : 0)
                if let seconds = peer.lastHeardSeconds { scrape.gauge("expirable_cluster_peer_last_heard_seconds", label, seconds) }
                if let seconds = peer.clockOffsetSeconds { scrape.gauge("expirable_cluster_peer_clock_offset_seconds", label, seconds) }
                if let seconds = peer.roundTripSeconds { scrape.gauge("expirable_cluster_peer_round_trip_seconds", label, seconds) }
                if let changes = peer.queuedChanges { scrape.gauge("expirable_cluster_peer_queued_changes", label, Double(changes)) }
                if let seconds = peer.replicationLagSeconds { scrape.gauge("expirable_cluster_peer_replication_lag_seconds", label, seconds) }
            }
            scrape.gauge("expirable_cluster_clock_correction_seconds", [], cluster.clockCorrectionSeconds)
            scrape.gauge("expirable_cluster_clock_offset_errors", [], Double(cluster.clockOffsetErrors))
            let c = cluster.counters
            scrape.counter("expirable_cluster_forwards_sent_total", [], c.forwardsSent)
            scrape.counter("expirable_cluster_forward_failures_total", [], c.forwardFailures)
            scrape.counter("expirable_cluster_forwards_served_total", [], c.forwardsServed)
            scrape.counter("expirable_cluster_forwards_dropped_total", [], c.forwardsDropped)
            scrape.counter("expirable_cluster_lease_attempts_total", [("outcome", "held")], c.leasesHeld)
            scrape.counter("expirable_cluster_lease_attempts_total", [("outcome", "lost")], c.leasesLost)
            scrape.counter("expirable_cluster_lease_attempts_total", [("outcome", "too_late")], c.leasesTooLate)
            scrape.counter("expirable_cluster_lease_attempts_total", [("outcome", "waiting_for_state")], c.leasesWaitingForState)
            scrape.counter("expirable_cluster_calls_outlived_lease_total", [], c.callsOutlivedLease)
            scrape.counter("expirable_cluster_lease_requests_total", [("answer", "granted")], c.leasesGranted)
            scrape.counter("expirable_cluster_lease_requests_total", [("answer", "refused")], c.leasesRefused)
            for name in clustered {
                // A keyed family's members are owned one by one: ownership is shown for plain expirables only.
                guard !engine.isKeyed(name) else { continue }
                scrape.gauge("expirable_owned", [("expirable", name)], cluster.owned.contains(name) ? 1 : 0)
                scrape.gauge("expirable_lease_held", [("expirable", name)], cluster.leased.contains(name) ? 1 : 0)
                if let holder = cluster.leaseHolders[name] {
                    scrape.gauge("expirable_cluster_lease_holder", [("expirable", name), ("node", holder)], 1)
                }
            }
        }
        if let states = sources.states?() {
            scrape.gauge("expirable_plugin_state_unsaved", [], Double(states.unsaved))
            scrape.counter("expirable_plugin_state_write_failures_total", [], states.failures)
        }
        if let process = memoryFigures(of: nil) {
            scrape.gauge("expirable_process_private_memory_bytes", [], Double(process.privateBytes))
            scrape.gauge("expirable_process_resident_memory_bytes", [], Double(process.residentBytes))
            if let fds = process.openDescriptors { scrape.gauge("expirable_process_open_fds", [], Double(fds)) }
        }
        let now = SystemClock().monotonicNanos
        scrape.gauge("expirable_process_uptime_seconds", [], Double(now - min(now, sources.startedAt)) / 1e9)
        scrape.gauge("expirable_build_info", [("version", sources.version)], 1)
        return Set(figures.map(\.name))
    }

    /// `ProcessFigures.read(pid:)`, at most `memoryInterval` old; figures of processes gone are forgotten.
    private func memoryFigures(of pid: Int32?) -> ProcessFigures? {
        let now = ContinuousClock.now
        return memory.withLock { memory in
            if let known = memory[pid], now - known.at < Self.memoryInterval { return known.figures }
            memory = memory.filter { now - $0.value.at < Self.memoryInterval }
            let figures = ProcessFigures.read(pid: pid)
            memory[pid] = (now, figures)
            return figures
        }
    }
}

/// The plugin call duration histograms, one per expirable and outcome, made on first use.
private final class CallHistograms: Sendable {
    private let table = Mutex<[String: DurationHistogram]>([:])

    func histogram(_ name: String, _ outcome: CallRecord.Outcome, in registry: PrometheusCollectorRegistry) -> DurationHistogram {
        table.withLock { h in
            let key = name + "\u{0}" + outcome.rawValue
            if let existing = h[key] { return existing }
            let made = registry.makeDurationHistogram(
                name: "expirable_plugin_call_duration_seconds", labels: [("expirable", name), ("outcome", outcome.rawValue)],
                buckets: MetricsCollector.durationBuckets, help: MetricNames.help["expirable_plugin_call_duration_seconds"]!)
            h[key] = made
            return made
        }
    }

    /// Drops the histograms of expirables that are gone.
    func keep(only names: Set<String>, in registry: PrometheusCollectorRegistry) {
        table.withLock { h in
            for (key, histogram) in h where !names.contains(String(key.prefix { $0 != "\u{0}" })) {
                registry.unregisterDurationHistogram(histogram)
                h.removeValue(forKey: key)
            }
        }
    }
}

/// One series: a gauge or a counter, by name and labels.
struct Series: Hashable, Sendable {
    enum Kind: Hashable, Sendable { case gauge, counter }
    let kind: Kind
    let name: String
    let labels: [String]  // name, value, name, value…

    init(_ kind: Kind, _ name: String, _ labels: [(String, String)]) {
        self.kind = kind
        self.name = name
        self.labels = labels.flatMap { [$0.0, $0.1] }
    }

    var labelPairs: [(String, String)] { stride(from: 0, to: labels.count, by: 2).map { (labels[$0], labels[$0 + 1]) } }
}

/// One scrape's writes into the registry.
private struct Scrape {
    let registry: PrometheusCollectorRegistry
    var counted: [Series: UInt64]
    /// Every series this scrape wrote.
    var written: Set<Series> = []
    /// The keyed families' members' series (`metrics_keys`), written apart from the registry.
    var keys = KeySeries()

    init(registry: PrometheusCollectorRegistry, counted: [Series: UInt64]) {
        self.registry = registry
        self.counted = counted
    }

    mutating func gauge(_ name: String, _ labels: [(String, String)], _ value: Double) {
        registry.makeGauge(name: name, labels: labels, help: MetricNames.help[name] ?? "").set(to: value)
        written.insert(Series(.gauge, name, labels))
    }

    /// Takes a series out of the registry. A counter made again later starts from zero, and from the count its
    /// source had reached when it was last shown (kept in `counted`): it shows what happened since, no event twice.
    mutating func unregister(_ series: Series) {
        let help = MetricNames.help[series.name] ?? ""
        switch series.kind {
        case .gauge: registry.unregisterGauge(registry.makeGauge(name: series.name, labels: series.labelPairs, help: help))
        case .counter: registry.unregisterCounter(registry.makeCounter(name: series.name, labels: series.labelPairs, help: help))
        }
    }

    /// Moves the counter on to `total`. Sources count from the daemon's start (the engine's across reloads, see
    /// `Engine.figures`); one that still went back moves it by nothing until it passes the count shown, so the
    /// series never decreases.
    mutating func counter(_ name: String, _ labels: [(String, String)], _ total: UInt64) {
        let key = Series(.counter, name, labels)
        written.insert(key)
        let counter = registry.makeCounter(name: name, labels: labels, help: MetricNames.help[name] ?? "")
        let shown = counted[key] ?? 0
        if total > shown { counter.increment(by: Int64(clamping: total - shown)) }
        counted[key] = max(shown, total)
    }
}

extension Duration {
    var seconds: Double {
        let (s, attoseconds) = components
        return Double(s) + Double(attoseconds) / 1e18
    }
}
