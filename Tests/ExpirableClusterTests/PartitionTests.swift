import ExpirableTestSupport
import Foundation
import Synchronization
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
        // Ten readers a node, on threads of their own, each with its own connection: as async tasks they could be
        // held for seconds by test threads busy with blocking suites (a loaded full-suite run saw node-a's readers
        // span two lifetimes: two calls).
        let sockets = cluster.names.map { cluster[$0].socket }
        let gathered = Mutex<[Int: Set<String>]>([:])
        let readersStarted = Date()
        // (concurrentPerform would run only as many at once as there are cores, two here: its readers could span
        // seconds.)
        let done = DispatchGroup()
        let threads = (0..<sockets.count * 10).map { reader in
            done.enter()
            return Thread {
                defer { done.leave() }
                let index = reader / 10
                let answer: String
                do {
                    let reply = try RawConnection(sockets[index]).roundTrip(RawConnection.command("GET", "token"), expecting: 1)
                    // A bulk string, "$N\r\nVALUE\r\n"; anything else (an error) is kept whole, to be seen below.
                    answer = reply.hasPrefix("$") ? (reply.components(separatedBy: "\r\n").dropFirst().first ?? reply) : reply
                } catch {
                    answer = "no connection: \(error)"
                }
                gathered.withLock { _ = $0[index, default: []].insert(answer) }
            }
        }
        threads.forEach { $0.start() }
        #expect(done.wait(timeout: .now() + 60) == .success, "the readers did not all answer within 60 s")
        let answers = gathered.withLock { $0 }
        #expect(cluster.totalCalls() == 3, "calls per node: \(cluster.calls()); answers: \(answers)")
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
        // No call for the heal itself. The newest value (fetched after the readers started) lasts 3 s: a GET above
        // that finds it expired rightly calls, once per lifetime gone by. One such call is allowed as before; when
        // the relink and the GETs run on a loaded machine past two lifetimes, one more for each.
        let lifetimes = Int(Date().timeIntervalSince(readersStarted) / 3)
        #expect(cluster.totalCalls() <= 3 + max(1, lifetimes), "calls per node: \(cluster.calls()); \(lifetimes) lifetimes since the readers")
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
