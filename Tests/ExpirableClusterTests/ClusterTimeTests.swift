@testable import ExpirableCluster
import ExpirableCore
import ExpirableTestSupport
import ExpirableTLS
import Logging
import Synchronization
import Testing

/// Cluster time (§4.15), forwarded fetches' deadlines (§4.13) and pauses (§4.17) without processes or sockets: the
/// arithmetic on its own, and a `Cluster` on a manual clock fed frames as its links would.
@Suite("Cluster time, deadlines and pauses, on a manual clock")
struct ClusterTimeTests {
    static let real: Int64 = 1_800_000_000_000
    static let fiveMinutes: Int64 = 5 * 60 * 1000

    @Test("one heartbeat round trip gives NTP's offset and delay")
    func sampleArithmetic() {
        // Sent at 1000 here, received by a peer 300 s ahead 5 ms later, held 10 ms, back 5 ms later.
        let sample = ClusterTime.sample(sent: 1000, peerReceived: 301_005, peerSent: 301_015, received: 1020)
        #expect(sample == ClusterTime.Sample(offset: 300_000, delay: 10))
        #expect(ClusterTime.sample(sent: 0, peerReceived: 5, peerSent: 5, received: 10) == nil, "no echo yet")
        #expect(ClusterTime.sample(sent: 1000, peerReceived: 5, peerSent: 5, received: 900) == nil, "a wall clock stepped back")
    }

    @Test("the estimate is the sample with the shortest round trip: a slow one does not move it")
    func shortestRoundTrip() {
        var time = ClusterTime()
        time.heartbeat(from: "b", wall: 10_001, echo: 10_000, hold: 0, arrivalWall: 10_002, arrival: 1)
        // A round trip of 2 s (a stalled machine) suggests an offset of -1 s; it is not believed.
        time.heartbeat(from: "b", wall: 10_500, echo: 9_500, hold: 0, arrivalWall: 12_500, arrival: 2)
        #expect(time.offset(of: "b") == 0)
        #expect(time.delay(of: "b") == 2)
    }

    static func measured(_ offsets: [String: Int64]) -> ClusterTime {
        var time = ClusterTime()
        for (peer, offset) in offsets {
            time.heartbeat(from: peer, wall: real + offset, echo: real, hold: 0, arrivalWall: real, arrival: 1)
        }
        return time
    }

    @Test("the correction is the median offset, this node counting as 0: a node 5 minutes ahead is pulled back, its peers are not")
    func median() {
        let onFastNode = Self.measured(["node-a": -Self.fiveMinutes, "node-b": -Self.fiveMinutes])
        #expect(onFastNode.correction == -Self.fiveMinutes)
        #expect(onFastNode.clusterMillis(wall: Self.real + Self.fiveMinutes) == Self.real)
        let onOthers = Self.measured(["node-b": 3, "node-c": Self.fiveMinutes])
        #expect(onOthers.correction == 3, "the middle of 0 (this node), 3 and 5 minutes")
        #expect(onOthers.deviation(of: "node-c") == Self.fiveMinutes - 3)
        // Two nodes agree on the slower clock.
        #expect(Self.measured(["node-b": Self.fiveMinutes]).correction == 0)
        #expect(Self.measured(["node-a": -Self.fiveMinutes]).correction == -Self.fiveMinutes)
        #expect(ClusterTime().correction == 0, "nothing measured: the wall clock as it is")
    }

    @Test("a pause is a jump of the monotonic clock between ticks beyond the dead time, noticed once")
    func pauseWatch() {
        var watch = PauseWatch()
        let second: UInt64 = 1_000_000_000
        #expect(watch.check(now: 1 * second, wall: 1000, threshold: .milliseconds(900), tick: true) == nil)
        #expect(watch.check(now: 1 * second + second / 2, wall: 1500, threshold: .milliseconds(900), tick: true) == nil)
        let pause = watch.check(now: 5 * second, wall: 5000, threshold: .milliseconds(900), tick: false)
        #expect(pause?.millis == 3500)
        #expect(watch.check(now: 5 * second + 1, wall: 5000, threshold: .milliseconds(900), tick: true) == nil, "noticed once")
        // A peer's request echoing a heartbeat from before the pause is stale, for a while.
        #expect(watch.isStale(echo: 1500, now: 5 * second, window: .seconds(2)))
        #expect(!watch.isStale(echo: 5000, now: 5 * second, window: .seconds(2)))
        #expect(!watch.isStale(echo: 1500, now: 8 * second, window: .seconds(2)))
    }

    @Test("a forwarded fetch's deadline counts from its arrival, or from the start of a pause it may have waited through")
    func deadlines() {
        let second: UInt64 = 1_000_000_000
        let fresh = ForwardDeadline(millis: 3000, received: 10 * second)
        #expect(fresh.remaining(at: 12 * second) == .seconds(1))
        #expect(fresh.remaining(at: 13 * second) == nil)
        let pause = PauseWatch.Pause(from: 6 * second, noticed: 10 * second, noticedWall: 0)
        #expect(ForwardDeadline(millis: 3000, received: 10 * second, pause: pause).remaining(at: 10 * second) == nil)
        #expect(ForwardDeadline(millis: 5000, received: 10 * second, pause: pause).remaining(at: 10 * second) == .seconds(1))
    }

    // MARK: A cluster on a manual clock

    /// node-c of three, on `clock`, its engine's one expirable "token" fetched by a counting fetcher; nothing is
    /// listened on or dialed: frames are handed to `received` as its links would.
    final class Node: Sendable {
        let pki: TemporaryDirectory
        let clock: ManualClock
        let cluster: Cluster
        let engine: Engine
        let calls = Calls()

        final class Calls: Sendable {
            let count = Atomic<Int>(0)
        }

        /// `quorum`: the expirables with `single_flight = "quorum"` and their timeouts (`ClusterOptions.quorum`).
        init(wallOffset: Int64 = 0, quorum: [String: Duration] = [:]) throws {
            pki = try TemporaryDirectory("cluster-time")
            try Certificates.makeAuthority(name: "test CA", days: 1, certificatePath: pki.appending("ca.pem"), keyPath: pki.appending("ca.key"))
            try Certificates.makeNode("node-c", authorityCertificatePath: pki.appending("ca.pem"), authorityKeyPath: pki.appending("ca.key"), days: 1,
                                      certificatePath: pki.appending("node-c.pem"), keyPath: pki.appending("node-c.key"))
            let tls = try TLSContext(caPath: pki.appending("ca.pem"), certificatePath: pki.appending("node-c.pem"), keyPath: pki.appending("node-c.key"))
            clock = ManualClock(unixMillis: ClusterTimeTests.real + wallOffset)
            var options = ClusterOptions(
                node: "node-c", listenHost: "127.0.0.1", listenPort: 1,
                peers: [.init(name: "node-a", host: "127.0.0.1", port: 2), .init(name: "node-b", host: "127.0.0.1", port: 3)],
                heartbeat: .milliseconds(300), digests: [ExpirableDigest(name: "token", plugin: "counter", refresh: "lazy")]
            )
            options.quorum = quorum
            cluster = Cluster(options: options, tls: tls, logger: Logger(label: "test"), clock: clock)
            let counting = CountingFetcher(calls: calls, clock: clock)
            engine = Engine(expirables: [ExpirableDefinition(name: "token", fetcher: cluster.fetcher(for: "token", local: counting, timeout: .seconds(1)))],
                            clock: clock)
            cluster.attach(engine)
            // No links here: the peers are never alive in this node's view, and the join, which waits for that,
            // would end only at join_timeout. Ended now, as on a node that has joined its cluster.
            cluster.state.withLock { $0.joined = true }
        }

        /// Counts a call as it is made and answers it at once, on the caller's thread: no task, so a count does not
        /// wait for a thread of the cooperative pool, which a loaded machine's blocking suites may hold for seconds.
        struct CountingFetcher: Fetcher {
            let calls: Calls
            let clock: ManualClock

            func fetch(completion: @escaping @Sendable (Result<Fetched, ExpirableError>) -> Void) {
                calls.count.add(1, ordering: .relaxed)
                completion(.success(Fetched(value: Secret(Array("v".utf8)), expiry: .at(unixMillis: clock.unixMillis + 60_000))))
            }
        }

        func remove() { pki.remove() }

        /// Lets `duration` pass with the heartbeat ticking, as a node that is not paused.
        func run(for duration: Duration) {
            for _ in 0..<(duration.milliseconds / 100) {
                clock.advance(by: .milliseconds(100))
                cluster.noticePause(tick: true)
            }
        }

        /// A heartbeat from `peer`, whose wall clock reads `peerWall`, echoing this node's wall of 2 ms ago.
        func heartbeat(from peer: String, peerWall: Int64, echo: Int64? = nil) {
            cluster.received(.heartbeat(wallMillis: peerWall, echoMillis: echo ?? clock.unixMillis - 2, holdMillis: 1), from: peer)
        }

        /// Waits (up to 5 s) for a timer on `clock`: work on an event loop (a dial failing) schedules one.
        func timerScheduled() async -> Bool {
            for _ in 0..<500 where clock.pendingTimers == 0 { try? await Task.sleep(for: .milliseconds(10)) }
            return clock.pendingTimers > 0
        }

        /// The calls made so far. The fetcher counts on the thread that starts a call, which is the one handing
        /// the frame in here, so the count is already known; waited for all the same, up to `seconds` (by the
        /// wall clock, however late each sleep ends), in case a call starts on another thread.
        func fetchCalls(waiting seconds: Double = 0.5) async -> Int {
            let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
            while calls.count.load(ordering: .relaxed) == 0 && ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(10)) }
            return calls.count.load(ordering: .relaxed)
        }
    }

    @Test("§4.15: a node 5 minutes ahead stamps versions with cluster time, so a clear made elsewhere a second later wins")
    func skewedNodeStampsClusterTime() throws {
        let node = try Node(wallOffset: Self.fiveMinutes)
        defer { node.remove() }
        #expect(node.cluster.nextVersion().time >= Self.real + Self.fiveMinutes, "before any heartbeat, its own clock")
        node.heartbeat(from: "node-a", peerWall: Self.real)
        node.heartbeat(from: "node-b", peerWall: Self.real)
        #expect(abs(node.cluster.timeInfo().first { $0.0 == "cluster_time_correction_ms" }.map { Int64($0.1)! }! + Self.fiveMinutes) <= 2)
        // A new hybrid clock (the one above was pushed 5 minutes ahead by the first version): as after a restart.
        node.cluster.state.withLock { $0.hlc = HybridClock() }
        let fetched = node.cluster.nextVersion()
        #expect(abs(fetched.time - Self.real) <= 2)
        let clearOnNodeA = Version(time: Self.real + 1000, node: "node-a")
        #expect(clearOnNodeA > fetched)
        // Reported as an error for this node, with its correction, in CLUSTER.
        let this = node.cluster.describe().split(separator: "\r\n").first!
        #expect(this.contains("clock_offset_ms:-2999"), "\(this)")
        #expect(this.contains("clock_error:this node's clock is 2999"), "\(this)")
        // Kept while the peers are silent (a partition): nothing is forgotten as time passes.
        node.run(for: .seconds(60))
        #expect(abs(node.cluster.nextVersion().time - (Self.real + 60_000)) <= 3)
    }

    @Test("§4.13/§4.17: after a pause, a forwarded fetch sent before the peer heard from this node again is dropped without a plugin call")
    func staleForwardDropped() async throws {
        let node = try Node()
        defer { node.remove() }
        node.cluster.noticePause(tick: true)
        let before = node.clock.unixMillis
        node.heartbeat(from: "node-a", peerWall: before, echo: before - 300)
        node.clock.advance(by: .seconds(3))  // SIGSTOP ... SIGCONT: no tick meanwhile
        // Queued during the pause: echoes a heartbeat from before it; deadline far off.
        node.cluster.received(.fetch(id: 1, name: "token", deadlineMillis: 32_000, echoMillis: before - 300), from: "node-a")
        // Queued during the pause with a deadline shorter than the pause.
        node.cluster.received(.fetch(id: 2, name: "token", deadlineMillis: 2_000, echoMillis: before), from: "node-b")
        #expect(await node.fetchCalls() == 0)
        #expect(node.cluster.rejoining())
        #expect(!node.cluster.mayRefresh("token"), "no eager refresh before the peers are heard from again")
        // Both peers hear this node again and say so: a fetch sent since is served.
        let after = node.clock.unixMillis
        node.heartbeat(from: "node-a", peerWall: after, echo: after)
        node.heartbeat(from: "node-b", peerWall: after, echo: after)
        #expect(!node.cluster.rejoining())
        node.cluster.received(.fetch(id: 3, name: "token", deadlineMillis: 32_000, echoMillis: after), from: "node-a")
        #expect(await node.fetchCalls(waiting: 20) == 1)
    }

    @Test("§4.17: the rejoin after a pause ends by itself when a peer stays silent")
    func rejoinBounded() throws {
        let node = try Node()
        defer { node.remove() }
        node.cluster.noticePause(tick: true)
        node.clock.advance(by: .seconds(5))
        #expect(node.cluster.rejoining())
        node.run(for: node.cluster.rejoinWindow)
        #expect(!node.cluster.rejoining())
    }
}
