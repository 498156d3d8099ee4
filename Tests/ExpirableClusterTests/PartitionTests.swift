import ExpirableTestSupport
import Foundation
import Testing

@Suite("Cluster partitions")
struct PartitionTests {
    @Test("7. in a partition each side serves and fetches (one call per side); healed, all converge on the newest value")
    func partitionAndHeal() async throws {
        // A lifetime long enough that a side's ten readers, started together, all fall within one even on a loaded
        // machine (in a clean-clone CI run with 1.5 s, node-a's readers spanned two lifetimes: two calls).
        let cluster = try TestCluster(expirables: counters(ttlMillis: 3000), proxied: true)
        defer { cluster.remove() }
        let first = try cluster["node-a"].redis("GET", "token")
        #expect(try TestCluster.eventually { try cluster.names.allSatisfy { try cluster[$0].redis("GET", "token") == first } })
        #expect(cluster.totalCalls() == 1)

        cluster.partition(["node-a"])
        #expect(TestCluster.eventually { cluster.live("node-a") == ["node-a"] && cluster.live("node-b") == ["node-b", "node-c"] })
        // Both sides keep serving what they hold while it lasts; then each side fetches anew, once.
        usleep(3_100_000)
        let clients = cluster.names.map { cluster[$0].client }
        let answers = try await withThrowingTaskGroup(of: (Int, String).self) { group in
            for (index, client) in clients.enumerated() {
                for _ in 0..<10 { group.addTask { (index, try await client.value("token")) } }
            }
            return try await group.reduce(into: [Int: Set<String>]()) { $0[$1.0, default: []].insert($1.1) }
        }
        #expect(cluster.totalCalls() == 3, "calls per node: \(cluster.calls())")
        #expect(answers[0]?.count == 1)
        #expect(answers[1] == answers[2])
        #expect(answers[0] != answers[1])

        cluster.heal()
        try cluster.waitUntilLinked()
        // After healing every node serves the same value: the newest of the two.
        #expect(try TestCluster.eventually {
            let values = try Set(cluster.names.map { try cluster[$0].redis("GET", "token") })
            return values.count == 1
        })
        #expect(cluster.totalCalls() <= 4, "calls per node: \(cluster.calls())")
    }

    @Test("4. a node cut off during a clear does not bring the cleared value back when it returns")
    func awayDuringClear() throws {
        let cluster = try TestCluster(expirables: counters(ttlMillis: 600_000), proxied: true)
        defer { cluster.remove() }
        let value = try cluster["node-b"].redis("GET", "token")
        #expect(try TestCluster.eventually { try cluster["node-a"].redis("GET", "token") == value })
        cluster.partition(["node-a"])
        #expect(TestCluster.eventually { cluster.live("node-b") == ["node-b", "node-c"] })
        #expect(try cluster["node-b"].redis("CLEAR", "token") == "OK")
        #expect(try cluster["node-a"].redis("TTL", "token") != "-2")
        cluster.heal()
        try cluster.waitUntilLinked()
        #expect(try TestCluster.eventually { try cluster.names.allSatisfy { try cluster[$0].redis("TTL", "token") == "-2" } })
        #expect(cluster.totalCalls() == 1)
    }
}
