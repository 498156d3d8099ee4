import ExpirableTestSupport
import Foundation
import Testing

/// `[[sink]]` files in a cluster: a value a peer fetched rewrites every node's file, a clear on one node renews
/// them all.
@Suite("sinks in a cluster")
struct SinkReplicationTests {
    @Test("a replica rewrites every node's sink and a clear on one node renews them all", .timeLimit(.minutes(2)))
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

        // The clear drops the value from every node's file, and each sink, a standing reader, fetches again at
        // once: every file comes to hold the cluster's one new value, with no other reader asking.
        #expect(try cluster["node-a"].redis("CLEAR", "token") == "OK")
        var files: [String?] = []
        for _ in 0..<600 {
            files = cluster.names.map { try? String(contentsOfFile: "\(shm)/\($0)", encoding: .utf8) }
            if let one = files[0], !first.contains(one), files.allSatisfy({ $0 == one }) { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        let renewed = try #require(files[0], "\(files)")
        #expect(!first.contains(renewed) && renewed.hasPrefix("token-") && files.allSatisfy { $0 == renewed }, "\(files)")
        #expect(try cluster["node-b"].redis("GET", "token") == renewed)
    }
}
