import ExpirableTestSupport
import Foundation
import Testing

/// SPEC §10's per-peer figures on /metrics of a real 2-node cluster: liveness, replication lag (the changes
/// waiting on the link to each peer and how long the oldest has waited), and which node holds a quorum lease.
@Suite("Cluster: per-peer metrics", .serialized)
struct ClusterMetricsTests {
    /// The samples of `metric` in `text` (the exposition), as their label text and value.
    static func samples(_ metric: String, in text: String) -> [(labels: String, value: Double)] {
        text.split(separator: "\n").compactMap { line in
            guard line.hasPrefix(metric + "{") || line.hasPrefix(metric + " "), let space = line.lastIndex(of: " ") else { return nil }
            return (String(line[..<space].dropFirst(metric.count)), Double(line[line.index(after: space)...]) ?? .nan)
        }
    }

    @Test("node-a's /metrics: the link to node-b has no change waiting (lag 0); while a quorum call runs, the lease holder is named; no value or key appears")
    func replicationLagAndLeaseHolder() throws {
        let port = try freePort(on: "127.0.0.1")
        let directory = try TemporaryDirectory("cluster-metrics")
        defer { directory.remove() }
        let cluster = try TestCluster(2, expirables: { name in
            (name == "node-a" ? "[metrics]\nlisten = \"127.0.0.1:\(port)\"\n\n" : "") + """
                [expirable.slow]
                plugin = "sleeper"
                single_flight = "quorum"
                timeout = "3s"
                [expirable.slow.params]
                sleep_ms = 2000

                """
        }, testPlugins: ["sleeper"])
        defer { cluster.remove() }
        func scrape() -> String { (try? loopbackHTTP(port: port, "GET", "/metrics").body) ?? "" }
        func eventually(_ seconds: Double = 30, _ body: () -> Bool) -> Bool {
            let deadline = Date().addingTimeInterval(seconds)
            while Date() < deadline {
                if body() { return true }
                usleep(100_000)
            }
            return body()
        }

        #expect(eventually { Self.samples("expirable_cluster_peer_up", in: scrape()).first?.value == 1 }, "node-b alive: \(scrape())")
        let text = scrape()
        #expect(Self.samples("expirable_cluster_peer_queued_changes", in: text).map(\.labels) == ["{peer=\"node-b\"}"], "\(text)")
        #expect(Self.samples("expirable_cluster_peer_queued_changes", in: text).first?.value == 0)
        #expect(Self.samples("expirable_cluster_peer_replication_lag_seconds", in: text).first?.value == 0, "\(text)")
        #expect(Self.samples("expirable_cluster_lease_holder", in: text).isEmpty, "no lease promised yet: \(text)")

        // A quorum call of 2 s: the lease is held, by the owner, for its call. A node grants no lease for the
        // longest lease after it starts, so the fetch is tried again while it answers no quorum.
        let a = cluster["node-a"]
        let out = directory.appending("fetch.out")
        var holders: [(labels: String, value: Double)] = []
        var fetched: Int32 = -1
        let deadline = Date().addingTimeInterval(60)
        while holders.isEmpty && Date() < deadline {
            let fetch = try Spawned([try TestPaths.product("expirablectl").path, "--socket", a.socket, "--timeout", "30s", "fetch", "slow"],
                                    stdout: .file(out), stderr: .file(out))
            defer { if fetch.isRunning { kill(fetch.pid, SIGKILL); fetch.wait() } }
            while fetch.isRunning && holders.isEmpty {
                holders = Self.samples("expirable_cluster_lease_holder", in: scrape())
                usleep(50_000)
            }
            fetched = fetch.wait()
            if holders.isEmpty { usleep(500_000) }
        }
        #expect(fetched == 0, "\((try? String(contentsOfFile: out, encoding: .utf8)) ?? "")")
        let owned = Self.samples("expirable_owned", in: scrape()).first { $0.labels == "{expirable=\"slow\"}" }?.value
        let owner = owned == 1 ? "node-a" : "node-b"
        #expect(holders.count == 1, "a lease holder while the call ran: \(holders)")
        #expect(holders.first?.value == 1)
        #expect(holders.first.map { $0.labels.contains("expirable=\"slow\"") && $0.labels.contains("node=\"\(owner)\"") } == true, "\(holders)")
        // The call over, the lease is released: no holder; the value went to node-b and nothing waits.
        #expect(eventually { Self.samples("expirable_cluster_lease_holder", in: scrape()).isEmpty }, "\(scrape())")
        #expect(eventually { Self.samples("expirable_cluster_peer_queued_changes", in: scrape()).first?.value == 0 })
        #expect(!scrape().contains("max_concurrent="), "no value on /metrics")
    }
}
