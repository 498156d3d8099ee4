import ExpirableTestSupport
import Foundation
import Testing

/// INFO `plugin_calls` (and the metric made from it) counts this node's plugin calls only: a GET that a non-owner
/// forwards to the owner, or that a joining node answers with the value its peers sent, calls no plugin there.
@Suite("Cluster: plugin calls counted where they are made")
struct PluginCallCountTests {
    @Test("plugin_calls on every node equals the calls its plugin made: a GET forwarded to the owner and a GET answered by the join count none")
    func countedWhereMade() throws {
        // As in MembershipTests' restart test: the join time is long enough for a loaded machine's redials.
        let cluster = try TestCluster(expirables: counters(), proxied: true, clusterLines: "join_timeout = \"6s\"")
        defer { cluster.remove() }
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
        DispatchQueue.global().asyncAfter(deadline: .now() + 0.1) { for proxy in inbound { proxy.unblock() } }
        #expect(try cluster[restarted].redis("GET", "token") == value)
        #expect(cluster.calls() == [owner: 1].merging(others.map { ($0, 0) }) { $1 }, "calls per node: \(cluster.calls())")
        for name in cluster.names {
            let counted = try Self.info(cluster[name], "token")["plugin_calls"]
            #expect(counted == "\(cluster[name].count("calls"))", "\(name) counts \(counted ?? "nothing") plugin calls; its plugin made \(cluster[name].count("calls"))")
        }
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
