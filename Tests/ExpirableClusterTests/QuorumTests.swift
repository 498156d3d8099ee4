@testable import ExpirableCluster
import ExpirableTestSupport
import Foundation
import NIOCore
import Synchronization
import Testing

/// `single_flight = "quorum"` (SPEC §4.10) with real nodes: a call needs a lease from a majority of the configured
/// nodes, so the cluster never runs two at once, whatever happens to nodes and links.
@Suite("Cluster: quorum single flight", .serialized)
struct QuorumTests {
    static func recorder(_ log: String, ttlMillis: Int = 600_000, sleepMillis: Int = 100) -> (String) -> String {
        { _ in
            """
            [expirable.token]
            plugin = "recorder"
            single_flight = "quorum"
            timeout = "2s"
            retry_interval = "200ms"
            [expirable.token.params]
            log = "\(log)"
            ttl_ms = \(ttlMillis)
            sleep_ms = \(sleepMillis)
            """
        }
    }

    /// One plugin call as the recorder logged it: CLOCK_MONOTONIC ns, and the daemon whose helper made it.
    struct Call {
        let start: Int64
        var end: Int64?
        let pid: Int
        let daemon: Int
    }

    static func calls(in log: String) -> [Call] {
        let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        var open: [Int: Call] = [:]
        var calls: [Call] = []
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard fields.count == 4, let time = Int64(fields[1]), let pid = Int(fields[2]), let parent = Int(fields[3]) else { continue }
            if fields[0] == "start" {
                if let unfinished = open[pid] { calls.append(unfinished) }
                open[pid] = Call(start: time, end: nil, pid: pid, daemon: parent)
            } else if var call = open.removeValue(forKey: pid) {
                call.end = time
                calls.append(call)
            }
        }
        return calls + open.values
    }

    static func monotonicNanos() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec)
    }

    @Test("a minority side serves what it holds and answers a miss with no quorum; the majority side keeps calling")
    func minority() throws {
        let shared = try TemporaryDirectory("quorum")
        defer { shared.remove() }
        let log = shared.appending("calls.log")
        let cluster = try TestCluster(expirables: Self.recorder(log), proxied: true, testPlugins: ["recorder"])
        defer { cluster.remove() }
        // Freshly started nodes grant no lease for the longest lease (they cannot tell a start from a restart).
        var first = ""
        #expect(try TestCluster.eventually { first = try cluster["node-a"].redis("GET", "token"); return first.hasPrefix("rec-") }, "\(first)")
        #expect(try TestCluster.eventually { try cluster.names.allSatisfy { try cluster[$0].redis("GET", "token") == first } })

        cluster.partition(["node-c"])
        #expect(TestCluster.eventually { cluster.live("node-c") == ["node-c"] && cluster.live("node-a") == ["node-a", "node-b"] })
        #expect(try cluster["node-c"].redis("GET", "token") == first, "a minority serves what it holds")
        #expect(try cluster["node-c"].redis("CLEAR", "token") == "OK")
        let refused = try cluster["node-c"].redis("GET", "token")
        #expect(refused.hasPrefix("FETCH no quorum for token: a plugin call needs a lease granted by 2 of the 3 configured nodes, and 1 granted it"), "\(refused)")
        #expect(refused.contains("node-a, node-b: dead in this node's view"), "the minority does not wait for the nodes it sees dead: \(refused)")
        let explained = try cluster["node-c"].redis("EXPLAIN", "token")
        #expect(explained.range(of: #"flight:[0-9]+ [0-9.]+ temporary reader FETCH not_called"#, options: .regularExpression) != nil,
                "explain shows the refused GET as a fetch without a call: \(explained)")

        #expect(try cluster["node-a"].redis("CLEAR", "token") == "OK")
        let second = try cluster["node-a"].redis("GET", "token")
        #expect(second.hasPrefix("rec-") && second != first, "the majority side calls: \(second)")
        #expect(try TestCluster.eventually { try cluster["node-b"].redis("GET", "token") == second })
        #expect(Self.calls(in: log).count == 2)

        cluster.heal()
        try cluster.waitUntilLinked()
        #expect(try TestCluster.eventually { try cluster["node-c"].redis("GET", "token") == second }, "healed, the minority gets the value")
    }

    @Test("with both peers dead in its view, a node answers a miss with no quorum at once, not after the wait for answers")
    func noQuorumAtOnceWhenPeersAreDead() throws {
        let shared = try TemporaryDirectory("quorum")
        defer { shared.remove() }
        let log = shared.appending("calls.log")
        let cluster = try TestCluster(expirables: Self.recorder(log), testPlugins: ["recorder"])
        defer { cluster.remove() }
        cluster["node-b"].kill9()
        cluster["node-c"].kill9()
        #expect(TestCluster.eventually { cluster.live("node-a") == ["node-a"] })
        // Timed over a connection opened first: the span holds node-a's answer only, no redis-cli start-up.
        let connection = try RawConnection(cluster["node-a"].socket)
        let started = Date()
        let refused = connection.roundTripCommand("GET", "token")
        let elapsed = Date().timeIntervalSince(started)
        #expect(refused.hasPrefix("FETCH no quorum for token: a plugin call needs a lease granted by 2 of the 3 configured nodes"), "\(refused)")
        #expect(refused.contains("node-b, node-c: dead in this node's view"), "\(refused)")
        // The wait for answers is max(4 × heartbeat, 1 s), 1.2 s here; nothing is waited for, so it takes milliseconds.
        #expect(elapsed < 0.6, "the error took \(Int(elapsed * 1000)) ms")
        #expect(Self.calls(in: log).isEmpty)
    }

    @Test("the owner restarted while the others took leases: its first fetch learns the newer lease number from the refusals and asks again, not 'no quorum'")
    func restartedOwnerCatchesUpOnLeaseNumbers() throws {
        let shared = try TemporaryDirectory("quorum")
        defer { shared.remove() }
        let log = shared.appending("calls.log")
        let cluster = try TestCluster(expirables: Self.recorder(log), testPlugins: ["recorder"])
        defer { cluster.remove() }
        var first = ""
        #expect(try TestCluster.eventually(seconds: 15) { first = try cluster["node-a"].redis("GET", "token"); return first.hasPrefix("rec-") }, "\(first)")
        let owner = try cluster.owner(on: "node-a")
        let others = cluster.names.filter { $0 != owner }
        cluster[owner].kill9()
        #expect(TestCluster.eventually { cluster.live(others[0]) == Set(others) })
        // The other two take leases with higher and higher numbers while the owner is away.
        for round in 0..<4 {
            #expect(try cluster[others[0]].redis("CLEAR", "token") == "OK")
            // The last node started may still be in its quiet time (it grants no lease for the longest one).
            var value = ""
            #expect(try TestCluster.eventually(seconds: 10) { value = try cluster[others[round % 2]].redis("GET", "token"); return value.hasPrefix("rec-") },
                    "the majority calls: \(value)")
        }
        try cluster[owner].start()
        try cluster.waitUntilLinked()
        #expect(try cluster.owner(on: owner) == owner)
        #expect(try cluster[owner].redis("CLEAR", "token") == "OK")
        // Its lease numbers start again from 1: the others refuse them as not newer, and name their newest.
        let value = try cluster[owner].redis("GET", "token")
        #expect(value.hasPrefix("rec-"), "the first fetch on a healthy cluster gets a value: \(value)")
        #expect(try cluster[others[1]].redis("GET", "token") == value)
    }

    @Test("the holder killed during a call of a plugin that keeps no state: once its lease ran out, the live majority calls again instead of waiting for it")
    func statelessHolderDeadDoesNotStopTheMajority() throws {
        let shared = try TemporaryDirectory("quorum")
        defer { shared.remove() }
        let log = shared.appending("calls.log")
        let cluster = try TestCluster(expirables: Self.recorder(log, sleepMillis: 1500), testPlugins: ["recorder"])
        defer { cluster.remove() }
        var first = ""
        #expect(try TestCluster.eventually(seconds: 20) { first = try cluster["node-a"].redis("GET", "token"); return first.hasPrefix("rec-") }, "\(first)")
        let owner = try cluster.owner(on: "node-a")
        let others = cluster.names.filter { $0 != owner }
        #expect(try cluster[others[0]].redis("CLEAR", "token") == "OK")
        let before = Self.calls(in: log).count
        let asker = DispatchGroup()
        DispatchQueue.global().async(group: asker) { _ = try? cluster[others[0]].redis("GET", "token") }
        // The owner's call has started: kill it in the middle.
        #expect(TestCluster.eventually(seconds: 10) { Self.calls(in: log).count > before })
        cluster[owner].kill9()
        _ = asker.wait(timeout: .now() + 15)
        #expect(TestCluster.eventually { cluster.live(others[0]) == Set(others) && cluster.live(others[1]) == Set(others) })
        // "No quorum" while the dead holder's lease lasts (5.2 s for a 2 s timeout); then a value, with no state to wait for.
        var value = ""
        #expect(try TestCluster.eventually(seconds: 30) { value = try cluster[others[1]].redis("GET", "token"); return value.hasPrefix("rec-") },
                "the majority calls once the lease ran out: \(value)")
        #expect(try cluster[others[0]].redis("GET", "token") == value)
    }

    @Test("a lease request with round 2^64-1 from a holder of a peer's certificate is refused as malformed and logged; it does not wedge the leases of the cluster")
    func absurdLeaseRoundRefused() throws {
        let shared = try TemporaryDirectory("quorum")
        defer { shared.remove() }
        let log = shared.appending("calls.log")
        let cluster = try TestCluster(expirables: Self.recorder(log), testPlugins: ["recorder"])
        defer { cluster.remove() }
        var first = ""
        #expect(try TestCluster.eventually(seconds: 15) { first = try cluster["node-a"].redis("GET", "token"); return first.hasPrefix("rec-") }, "\(first)")
        // node-b is down; someone with its certificate says hello as node-b and asks node-a and node-c for a lease
        // numbered 2^64-1 (a buggy or forged peer).
        cluster["node-b"].kill9()
        #expect(TestCluster.eventually { cluster.live("node-a") == ["node-a", "node-c"] && cluster.live("node-c") == ["node-a", "node-c"] })
        var bytes = ByteBuffer()
        ClusterFrame.encode(.hello(node: "node-b", protocolVersion: ClusterMessage.protocolVersion, expirables: []), into: &bytes)
        ClusterFrame.encode(.leaseRequest(name: "token", number: LeaseNumber(round: UInt64.max, node: "node-b"), durationMillis: 1, stateVersion: nil), into: &bytes)
        let payload = shared.appending("forged")
        try Data(bytes.readableBytesView).write(to: URL(fileURLWithPath: payload))
        for node in ["node-a", "node-c"] {
            let config = try String(contentsOfFile: cluster[node].configPath, encoding: .utf8)
            let listen = try #require(config.split(separator: "\n").first { $0.hasPrefix("listen = ") }).dropFirst("listen = \"".count).dropLast()
            let script = "(cat \(payload); sleep 1) | timeout 5 openssl s_client -quiet -connect \(listen) -cert \(cluster.pki.appending("node-b.pem")) "
                + "-key \(cluster.pki.appending("node-b.key")) -CAfile \(cluster.pki.appending("ca.pem"))"
            _ = try runTool("sh", ["-c", script], seconds: 15)
            #expect(TestCluster.eventually { cluster[node].log.contains("lease number 18446744073709551615@node-b is beyond the largest round") },
                    "\(node) logs the refusal: \(cluster[node].log.split(separator: "\n").suffix(5))")
        }
        try cluster["node-b"].start()
        try cluster.waitUntilLinked()
        for node in cluster.names {
            #expect(try cluster[node].redis("CLEAR", "token") == "OK")
            let value = try cluster[node].redis("GET", "token")
            #expect(value.hasPrefix("rec-"), "\(node) still fetches under a lease: \(value)")
        }
    }

    @Test("INFO of an expirable without quorum names the setting's value: single_flight is \"available\"")
    func leaseLineNamesTheSetting() throws {
        let cluster = try TestCluster(2, expirables: counters())
        defer { cluster.remove() }
        let info = try cluster["node-a"].redis("INFO", "token")
        #expect(info.contains("lease:none: single_flight is \"available\", so the owner calls without asking the others"), "\(info)")
    }

    @Test("across a minute of kill -9, SIGSTOP/SIGCONT, restarts, partitions and one-way cuts, no two plugin calls ever overlap")
    func churn() async throws {
        let shared = try TemporaryDirectory("quorum")
        defer { shared.remove() }
        let log = shared.appending("calls.log")
        // Values live 300 ms and readers ask every 50 ms: the cluster calls the plugin about three times a second.
        // The test sleeps with Task.sleep, not usleep, so its minute does not hold a thread of the cooperative pool
        // that the suite's async tests need.
        let cluster = try TestCluster(expirables: Self.recorder(log, ttlMillis: 300), proxied: true, testPlugins: ["recorder"])
        defer { cluster.remove() }
        let stop = Atomic<Bool>(false)
        let answers = Mutex<(values: Int, errors: Int)>((0, 0))
        let readers = DispatchGroup()
        for name in cluster.names {
            let socket = cluster[name].socket
            DispatchQueue.global().async(group: readers) {
                for _ in 0..<5000 where !stop.load(ordering: .relaxed) {
                    let reply = (try? RawConnection(socket).roundTrip("*2\r\n$3\r\nGET\r\n$5\r\ntoken\r\n", expecting: 1)) ?? ""
                    answers.withLock { reply.hasPrefix("$") ? ($0.values += 1) : ($0.errors += 1) }
                    usleep(50_000)
                }
            }
        }
        // Daemon pid → when it was killed (CLOCK_MONOTONIC ns): its helper dies with it.
        var killed: [Int: Int64] = [:]
        let deadline = Date().addingTimeInterval(62)
        var round = 0
        while Date() < deadline {
            let victim = cluster.names[round % cluster.names.count]
            let node = cluster[victim]
            switch round % 4 {
            case 0:
                if let pid = node.process?.pid {
                    killed[Int(pid)] = Self.monotonicNanos()
                    node.kill9()
                }
                try await Task.sleep(for: .microseconds(500_000))
                try node.start()
            case 1:
                if let pid = node.process?.pid {
                    kill(pid, SIGSTOP)
                    try await Task.sleep(for: .microseconds(2_500_000))
                    kill(pid, SIGCONT)
                }
            case 2:
                cluster.partition([victim])
                try await Task.sleep(for: .microseconds(3_000_000))
                cluster.heal()
            default:
                let other = cluster.names[(round + 1) % cluster.names.count]
                cluster.cut(from: victim, to: other)
                try await Task.sleep(for: .microseconds(3_000_000))
                cluster.heal()
            }
            try await Task.sleep(for: .microseconds(1_000_000))
            round += 1
        }
        stop.store(true, ordering: .relaxed)
        readers.wait()

        // A call without an end was killed: with its daemon (kill -9) or by its helper's timer, at the latest
        // its timeout (2 s) plus the 250 ms grace after it began.
        let calls = Self.calls(in: log).map { call -> (start: Int64, end: Int64, call: Call) in
            var end = call.end ?? call.start + 2_250_000_000
            if call.end == nil, let death = killed[call.daemon], death >= call.start { end = min(end, death) }
            return (call.start, end, call)
        }.sorted { $0.start < $1.start }
        var latest: (end: Int64, call: Call)?
        var overlaps: [String] = []
        for interval in calls {
            if let latest, interval.start < latest.end {
                overlaps.append("call by pid \(interval.call.pid) (daemon \(interval.call.daemon)) began \((latest.end - interval.start) / 1_000_000) ms before the call by pid \(latest.call.pid) (daemon \(latest.call.daemon)) ended")
            }
            if latest.map({ interval.end > $0.end }) ?? true { latest = (interval.end, interval.call) }
        }
        #expect(overlaps.isEmpty, "\(overlaps.count) overlapping calls of \(calls.count): \(overlaps.prefix(5))")
        let (values, errors) = answers.withLock { $0 }
        #expect(calls.count >= 30, "only \(calls.count) calls in a minute; readers got \(values) values and \(errors) errors")
        #expect(values > errors, "readers got \(values) values and \(errors) errors")
    }
}
