import ExpirableTestSupport
import Foundation
import Testing

/// INFO `plugin_calls` (and the metric made from it) and explain's calls are this node's plugin calls only: a GET
/// that a non-owner forwards to the owner, or that a joining node answers with the value its peers sent, calls no
/// plugin there.
@Suite("Cluster: plugin calls counted where they are made")
struct PluginCallCountTests {
    /// A fresh cluster where a non-owner's GET was forwarded to the owner, and the other non-owner, restarted,
    /// was asked before its peers' links were up (the join answers it, or the value is there by then).
    struct Scenario {
        let cluster: TestCluster
        let owner: String
        let forwarded: String
        let restarted: String
    }

    static func forwardedAndJoined() throws -> Scenario {
        // As in MembershipTests' restart test: the join time is long enough for a loaded machine's redials.
        let cluster = try TestCluster(expirables: counters(), proxied: true, clusterLines: "join_timeout = \"6s\"")
        do {
            return try forwardedAndJoined(cluster)
        } catch {
            cluster.remove()
            throw error
        }
    }

    private static func forwardedAndJoined(_ cluster: TestCluster) throws -> Scenario {
        let owner = try cluster.owner(on: "node-a")
        let others = cluster.names.filter { $0 != owner }
        // Forwarded: the owner's plugin makes the call.
        let value = try cluster[others[0]].redis("GET", "token")
        #expect(value.hasPrefix(owner), "\(value)")
        #expect(try TestCluster.eventually { try cluster.names.allSatisfy { try cluster[$0].redis("TTL", "token") != "-2" } })
        // Answered by the join: the other non-owner restarts and is asked before its peers' links are up.
        let restarted = others[1]
        #expect(cluster[restarted].stop() == 0)
        let inbound = cluster.names.filter { $0 != restarted }.map { cluster.proxies["\($0)>\(restarted)"]! }
        for proxy in inbound { proxy.block() }
        try cluster[restarted].start(poll: 2_000)
        // On a thread of its own: a DispatchQueue.global() timer can be held past the join time by blocking work
        // in the global pool, and then the node would rightly stop waiting and call.
        Thread { usleep(100_000); for proxy in inbound { proxy.unblock() } }.start()
        #expect(try cluster[restarted].redis("GET", "token") == value)
        return Scenario(cluster: cluster, owner: owner, forwarded: others[0], restarted: restarted)
    }

    @Test("plugin_calls on every node equals the calls its plugin made: a GET forwarded to the owner and a GET answered by the join count none")
    func countedWhereMade() throws {
        let scenario = try Self.forwardedAndJoined()
        let cluster = scenario.cluster
        defer { cluster.remove() }
        let others = [scenario.forwarded, scenario.restarted]
        #expect(cluster.calls() == [scenario.owner: 1].merging(others.map { ($0, 0) }) { $1 }, "calls per node: \(cluster.calls())")
        for name in cluster.names {
            let counted = try Self.info(cluster[name], "token")["plugin_calls"]
            #expect(counted == "\(cluster[name].count("calls"))", "\(name) counts \(counted ?? "nothing") plugin calls; its plugin made \(cluster[name].count("calls"))")
        }
    }

    @Test("explain lists as calls only those of the node's own plugin: a GET forwarded to the owner shows as forwarded to it, a GET the join answered as no call")
    func explainedWhereMade() throws {
        let scenario = try Self.forwardedAndJoined()
        let cluster = scenario.cluster
        defer { cluster.remove() }
        for name in cluster.names {
            let lines = try cluster[name].redis("EXPLAIN", "token").split(whereSeparator: \.isNewline).map(String.init)
            let calls = lines.filter { $0.hasPrefix("call:") }
            #expect(calls.count == cluster[name].count("calls"), "\(name) explains \(calls.count) plugin calls; its plugin made \(cluster[name].count("calls")): \(lines)")
            let flights = lines.filter { $0.hasPrefix("flight:") }
            switch name {
            case scenario.owner:
                #expect(flights.isEmpty, "\(lines)")
            case scenario.forwarded:
                #expect(flights.count == 1 && flights.first?.hasSuffix(" success reader - forwarded:\(scenario.owner)") == true, "\(lines)")
            default:
                // The join answered the GET (or the value had arrived before it was asked: then there was no fetch).
                #expect(flights.allSatisfy { $0.hasSuffix(" success reader - joined") }, "\(lines)")
            }
        }
        let words = try cluster[scenario.forwarded].ctl("explain", "token")
        #expect(words.stdout.contains("started by reader, forwarded to \(scenario.owner)"), "\(words.stdout)\(words.stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(try cluster[scenario.forwarded].ctl("explain", "token", "--json").stdout.utf8)) as? [String: Any])
        #expect((json["calls"] as? [Any])?.isEmpty == true, "\(json)")
        let flights = try #require(json["flights"] as? [[String: Any]], "\(json)")
        #expect(flights.count == 1 && flights.first?["route"] as? String == "forwarded" && flights.first?["node"] as? String == scenario.owner, "\(flights)")
    }

    static func info(_ node: DaemonProcess, _ name: String) throws -> [String: String] {
        var fields: [String: String] = [:]
        for line in try node.redis("INFO", name).split(whereSeparator: \.isNewline) {
            guard let colon = line.firstIndex(of: ":") else { continue }
            fields[String(line[..<colon])] = String(line[line.index(after: colon)...])
        }
        return fields
    }
}
