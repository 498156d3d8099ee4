import ExpirableTestSupport
import Foundation
import Testing

/// `[[sink]]` files in a cluster: a value a peer fetched rewrites every node's file, a clear on one node removes
/// them all.
@Suite("sinks in a cluster")
struct SinkReplicationTests {
    @Test("a replica rewrites every node's sink and a clear on one node removes them all", .timeLimit(.minutes(2)))
    func replicasAndClears() async throws {
        let shm = "/dev/shm/expirable-cluster-sink-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: shm, withIntermediateDirectories: false)
        chmod(shm, 0o755)  // whatever the umask: a sink's directory others may write is refused
        defer { try? FileManager.default.removeItem(atPath: shm) }
        let cluster = try TestCluster { node in
            """
            [expirable.token]
            plugin = "counter"
            [expirable.token.params]
            prefix = "token-"
            count_file = "DIR/calls"

            [[sink]]
            expirable = "token"
            path = "\(shm)/\(node)"
            """
        }
        defer { cluster.remove() }
        // Every node's sink fetched at start; the cluster made one call, whose value every file holds.
        var first: Set<String> = []
        for name in cluster.names {
            first.insert(try #require(try await fileContent("\(shm)/\(name)") { $0 != nil }))
        }
        #expect(first.count == 1 && first.first?.hasPrefix("token-") == true, "\(first)")

        #expect(try cluster["node-a"].redis("CLEAR", "token") == "OK")
        for name in cluster.names {
            #expect(try await fileContent("\(shm)/\(name)") { $0 == nil } == nil, "\(name)'s file is removed by the clear")
        }
        let fetched = try cluster["node-b"].redis("GET", "token")
        for name in cluster.names {
            #expect(try await fileContent("\(shm)/\(name)") { $0 == fetched } == fetched, "\(name)'s file holds node-b's new value")
        }
    }
}
