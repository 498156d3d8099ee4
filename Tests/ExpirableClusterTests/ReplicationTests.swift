import ExpirableClient
import ExpirableTestSupport
import Foundation
import Testing

/// SPEC §4 with real nodes on 127.0.0.x over mutual TLS.
@Suite("Cluster")
struct ReplicationTests {
    @Test("1. a value fetched on one node is served by the others from memory, without a plugin call")
    func servedEverywhere() throws {
        let cluster = try TestCluster(expirables: counters())
        defer { cluster.remove() }
        let value = try cluster["node-b"].redis("GET", "token")
        #expect(cluster.totalCalls() == 1)
        #expect(try TestCluster.eventually { try cluster.names.allSatisfy { try cluster[$0].redis("TTL", "token") != "-2" } })
        for name in cluster.names { #expect(try cluster[name].redis("GET", "token") == value) }
        #expect(cluster.totalCalls() == 1)
        let info = try cluster["node-c"].redis("INFO", "token")
        #expect(info.contains("owner:"))
        #expect(info.contains("replica:"))
    }

    @Test("2. concurrent fetches of an expired value on every node make one plugin call cluster-wide")
    func oneCallClusterWide() async throws {
        let cluster = try TestCluster(expirables: counters(sleepMillis: 300))
        defer { cluster.remove() }
        let clients = cluster.names.map { cluster[$0].client }
        let answers = try await withThrowingTaskGroup(of: String.self) { group in
            for client in clients {
                for _ in 0..<20 { group.addTask { try await client.value("token") } }
            }
            return try await group.reduce(into: [String]()) { $0.append($1) }
        }
        #expect(answers.count == 60)
        #expect(Set(answers).count == 1)
        #expect(cluster.totalCalls() == 1)
    }

    @Test("3. an eager value is refreshed by its owner only")
    func eagerOnOwnerOnly() throws {
        let cluster = try TestCluster(expirables: counters(ttlMillis: 3000, refresh: "refresh = \"eager\"\nbefore_expiry = \"2500ms\""))
        defer { cluster.remove() }
        _ = try cluster["node-a"].redis("GET", "token")
        let owner = try cluster.owner(on: "node-a")
        #expect(try TestCluster.eventually(seconds: 15) { cluster.totalCalls() >= 4 })
        let calls = cluster.calls()
        #expect(calls[String(owner)]! == cluster.totalCalls(), "calls per node: \(calls), owner \(owner)")
        for name in cluster.names { #expect(try cluster[name].redis("GET", "token").hasPrefix("\(owner)-")) }
    }

    @Test("4. clear and clear-all reach every node")
    func clearEverywhere() throws {
        let cluster = try TestCluster(expirables: counters())
        defer { cluster.remove() }
        _ = try cluster["node-a"].redis("GET", "token")
        #expect(try TestCluster.eventually { try cluster.names.allSatisfy { try cluster[$0].redis("TTL", "token") != "-2" } })
        #expect(try cluster["node-c"].redis("CLEAR", "token") == "OK")
        #expect(try TestCluster.eventually { try cluster.names.allSatisfy { try cluster[$0].redis("TTL", "token") == "-2" } })
        _ = try cluster["node-b"].redis("GET", "token")
        #expect(try TestCluster.eventually { try cluster.names.allSatisfy { try cluster[$0].redis("TTL", "token") != "-2" } })
        #expect(try cluster["node-a"].redis("CLEARALL") == "OK")
        #expect(try TestCluster.eventually { try cluster.names.allSatisfy { try cluster[$0].redis("TTL", "token") == "-2" } })
        #expect(cluster.totalCalls() == 2)
    }

    @Test("4. a node that was down during a clear does not bring the value back")
    func downDuringClear() throws {
        let cluster = try TestCluster(expirables: counters())
        defer { cluster.remove() }
        _ = try cluster["node-a"].redis("GET", "token")
        #expect(try TestCluster.eventually { try cluster["node-c"].redis("TTL", "token") != "-2" })
        #expect(cluster["node-c"].stop() == 0)
        #expect(try cluster["node-a"].redis("CLEAR", "token") == "OK")
        try cluster["node-c"].start()
        try cluster.waitUntilLinked()
        for name in cluster.names { #expect(try cluster[name].redis("TTL", "token") == "-2") }
    }

    @Test("5. a restarted node receives the valid values from its peers without plugin calls")
    func restartedNodeCatchesUp() throws {
        let cluster = try TestCluster(expirables: counters())
        defer { cluster.remove() }
        let value = try cluster["node-a"].redis("GET", "token")
        #expect(try TestCluster.eventually { try cluster["node-b"].redis("TTL", "token") != "-2" })
        #expect(cluster["node-b"].stop() == 0)
        try cluster["node-b"].start()
        try cluster.waitUntilLinked()
        #expect(try TestCluster.eventually { try cluster["node-b"].redis("TTL", "token") != "-2" })
        #expect(try cluster["node-b"].redis("GET", "token") == value)
        #expect(cluster.totalCalls() == 1)
    }

    @Test("6. kill -9 of the owner: the others keep serving, and ownership and eager refresh move within a few heartbeats")
    func ownerDies() throws {
        let cluster = try TestCluster(expirables: counters(ttlMillis: 3000, refresh: "refresh = \"eager\"\nbefore_expiry = \"2500ms\""))
        defer { cluster.remove() }
        _ = try cluster["node-a"].redis("GET", "token")
        let owner = try cluster.owner(on: "node-a")
        let others = cluster.names.filter { $0 != owner }
        #expect(try TestCluster.eventually { try others.allSatisfy { try cluster[$0].redis("TTL", "token") != "-2" } })
        let started = Date()
        cluster[owner].kill9()
        // The survivors see the owner die within a few heartbeats (300 ms each) and keep answering.
        #expect(TestCluster.eventually { others.allSatisfy { cluster.live($0) == Set(others) } })
        #expect(Date().timeIntervalSince(started) < 3)
        for name in others { #expect(try cluster[name].redis("GET", "token").hasPrefix("node-")) }
        let newOwner = try cluster.owner(on: others[0])
        #expect(newOwner != owner)
        #expect(others.contains(newOwner))
        // The eager refresh duty moved: the new owner's plugin is called, and its values reach the other survivor.
        #expect(try TestCluster.eventually(seconds: 10) { cluster[newOwner].count("calls") >= 1 })
        let survivor = others.first { $0 != newOwner }!
        #expect(try TestCluster.eventually(seconds: 10) { try cluster[survivor].redis("GET", "token").hasPrefix("\(newOwner)-") })
        #expect(cluster[survivor].count("calls") == 0)
    }

    @Test("8. local-scoped values never leave their node")
    func localStaysLocal() throws {
        let cluster = try TestCluster(expirables: counters())
        defer { cluster.remove() }
        for name in cluster.names { #expect(try cluster[name].redis("GET", "mine") == "local-\(name)-1") }
        usleep(300_000)
        for name in cluster.names {
            #expect(try cluster[name].redis("GET", "mine") == "local-\(name)-1")
            #expect(cluster[name].count("local") == 1)
            #expect(try cluster[name].redis("INFO", "mine").contains("replica:local scope"))
        }
    }

    @Test("9. a node whose wall clock is minutes off judges validity the same as its peers")
    func clockSkew() throws {
        let skewed = ["--wall-clock-offset", "\(5 * 60 * 1000)"]
        let cluster = try TestCluster(expirables: counters(ttlMillis: 60_000), arguments: ["node-c": skewed])
        defer { cluster.remove() }
        _ = try cluster["node-a"].redis("GET", "token")
        #expect(try TestCluster.eventually { try cluster["node-c"].redis("TTL", "token") != "-2" })
        // The same remaining validity everywhere (a value's expiry travels as time left, not as a wall time).
        for name in cluster.names {
            let ttl = try #require(Int(try cluster[name].redis("PTTL", "token")))
            #expect(ttl > 50_000 && ttl <= 60_000, "\(name): PTTL \(ttl)")
        }
        #expect(cluster.totalCalls() == 1)
        // And a value the skewed node's plugin fetched is valid for its real lifetime on the others.
        #expect(try cluster["node-c"].redis("CLEAR", "token") == "OK")
        _ = try cluster["node-c"].redis("GET", "token")
        #expect(try TestCluster.eventually { try cluster.names.allSatisfy { try cluster[$0].redis("TTL", "token") != "-2" } })
        for name in cluster.names {
            let ttl = try #require(Int(try cluster[name].redis("PTTL", "token")))
            #expect(ttl > 50_000 && ttl <= 60_000, "\(name): PTTL \(ttl)")
        }
    }
}

@Suite("Cluster visibility")
struct ClusterVisibilityTests {
    @Test("10. a keyed member read only on a node that does not own it stays at its owner past key_idle: its eager refresh goes on and the reader never misses")
    func keyedReadElsewhere() throws {
        let cluster = try TestCluster(expirables: { node in
            """
            [expirable.ce]
            plugin = "counter"
            keyed = true
            refresh = "eager"
            before_expiry = "3s"
            key_idle = "4s"
            [expirable.ce.params]
            prefix = "\(node)-"
            ttl_ms = 6000
            count_file = "DIR/calls"
            """
        })
        defer { cluster.remove() }
        func field(_ info: String, _ name: String) -> String? {
            info.split(whereSeparator: \.isNewline).first { $0.hasPrefix(name + ":") }.map { String($0.dropFirst(name.count + 1)) }
        }
        let name = try #require(try (0..<50).map { "ce:k\($0)" }.first { try cluster.owner(of: $0, on: "node-a") != "node-a" })
        let owner = try cluster.owner(of: name, on: "node-a")
        #expect(try cluster["node-a"].redis("GET", name).hasPrefix("\(owner)-"))
        // Read on node-a every half second for about 20 s: five times key_idle, three lifetimes.
        var missed: [String] = []
        for step in 0..<40 {
            _ = try cluster["node-a"].redis("GET", name)
            let misses = field(try cluster["node-a"].redis("INFO", name), "misses") ?? "?"
            if misses != "1" { missed.append("step \(step): misses \(misses), owner \(field(try cluster[owner].redis("INFO", name), "state") ?? "?")") }
            usleep(500_000)
        }
        #expect(missed.isEmpty, "node-a missed: \(missed.prefix(3))")
        let atOwner = try cluster[owner].redis("INFO", name)
        #expect(field(atOwner, "state") == "valid", "\(atOwner)")
        #expect(Int(field(atOwner, "refreshes") ?? "") ?? 0 >= 4, "the owner's eager refresh stopped: \(atOwner)")
    }

    @Test("expirablectl status shows each cluster-scoped value's owner and replica state; cluster lists the members")
    func statusAndMembers() throws {
        let cluster = try TestCluster(expirables: counters())
        defer { cluster.remove() }
        _ = try cluster["node-a"].redis("GET", "token")
        let owner = try cluster.owner(on: "node-a")
        let other = cluster.names.first { $0 != owner }!
        #expect(try TestCluster.eventually { try cluster[other].redis("TTL", "token") != "-2" })
        let status = try cluster[other].ctl("status").stdout.split(separator: "\n")
        #expect(status.contains { $0.hasPrefix("token ") && $0.contains(" \(owner)  copy from \(owner)") }, "\(status)")
        #expect(status.contains { $0.hasPrefix("mine ") && $0.contains("local scope") }, "\(status)")
        let ownerStatus = try cluster[owner].ctl("status").stdout
        #expect(ownerStatus.contains(" \(owner)  origin"))
        let members = try cluster["node-a"].ctl("cluster").stdout.split(separator: "\n")
        #expect(members.count == 4)
        #expect(members[1].hasPrefix("node-a  this   127.0.0.2:"))
        for (line, name) in zip(members.dropFirst(2), ["node-b", "node-c"]) {
            #expect(line.range(of: "^\(name)  alive  127\\.0\\.0\\.[34]:[0-9]+ +\(name) +[0-9]+ms ago +TLSv1\\.3", options: .regularExpression) != nil, "\(line)")
        }
    }
    @Test("expirablectl cluster --json with a peer down: numbers are numbers, unknown ones null, one type per key")
    func membersAsJSON() throws {
        let cluster = try TestCluster(expirables: counters())
        defer { cluster.remove() }
        _ = cluster["node-c"].stop()
        #expect(TestCluster.eventually { cluster.live("node-a") == ["node-a", "node-b"] })
        let result = try cluster["node-a"].ctl("cluster", "--json")
        #expect(result.status == 0, "\(result.stderr)")
        let members = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [[String: Any]])
        let byNode = Dictionary(uniqueKeysWithValues: members.map { ($0["node"] as? String ?? "?", $0) })
        let this = try #require(byNode["node-a"]), alive = try #require(byNode["node-b"]), dead = try #require(byNode["node-c"])
        #expect(this["state"] as? String == "this" && alive["state"] as? String == "alive" && dead["state"] as? String == "dead", "\(members)")
        // Unknown or not applicable: null, never "-".
        #expect(this["last_heard_ms"] is NSNull && this["certificate"] is NSNull && this["tls"] is NSNull && this["rtt_ms"] is NSNull, "\(this)")
        #expect(alive["last_heard_ms"] is Int, "\(alive)")
        #expect(alive["certificate"] as? String == "node-b" && alive["tls"] as? String == "TLSv1.3", "\(alive)")
        #expect(!result.stdout.contains("\"-\""), "\(result.stdout)")
        // Across the members every key has one JSON type (null aside), as Python's json reads them; `_ms` keys are numbers.
        let script = """
            import json, sys
            types = {}
            for o in json.loads(sys.argv[1]):
                for k, v in o.items():
                    if v is not None: types.setdefault(k, set()).add("number" if type(v) in (int, float) else type(v).__name__)
            print(json.dumps({k: sorted(t) for k, t in types.items() if len(t) > 1 or (k.endswith("_ms") and t != {"number"})}, sort_keys=True))
            """
        let checked = try runTool("python3", ["-c", script, result.stdout])
        #expect(checked.stdout == "{}\n", "keys with more than one type, or not numbers: \(checked.stdout) \(checked.stderr)")
    }
}
