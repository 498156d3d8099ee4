import ExpirableTestSupport
import Foundation
import Testing

/// A non-owner forwards a miss to the owner (SPEC §4); what the owner answers must arrive as it is: a stale value
/// marked stale (§3.16), an error with its class and retry-after (§3.18), so the asking node paces (§4.12).
@Suite("Cluster: an owner's stale answers and classified errors reach the node that forwarded")
struct ForwardedFailureTests {
    static func flaky(_ name: String, _ shared: TemporaryDirectory, _ settings: String = "") -> String {
        """
        [expirable.\(name)]
        plugin = "flaky"
        \(settings)
        [expirable.\(name).params]
        prefix = "\(name)-"
        ttl_ms = 1500
        mode_file = "\(shared.appending("\(name).mode"))"
        count_file = "\(shared.appending("\(name).calls"))"

        """
    }

    static func calls(_ shared: TemporaryDirectory, _ name: String) -> Int {
        Int((try? String(contentsOfFile: shared.appending("\(name).calls"), encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "") ?? 0
    }

    @Test("§3.16 across a forward: the owner's stale answer arrives marked stale, and the asking node does not store it")
    func staleForwarded() throws {
        let shared = try TemporaryDirectory("flaky")
        defer { shared.remove() }
        let cluster = try TestCluster(2, expirables: { _ in Self.flaky("token", shared, "stale_if_error = \"30s\"") }, testPlugins: ["flaky"])
        defer { cluster.remove() }
        let owner = try cluster.owner(of: "token", on: "node-a")
        let asker = try #require(cluster.names.first { $0 != owner })
        #expect(try cluster[asker].redis("GET", "token") == "token-1")
        try "fail".write(toFile: shared.appending("token.mode"), atomically: true, encoding: .utf8)
        usleep(1_800_000)  // past the 1.5 s lifetime
        let reply = try cluster[asker].redis("FETCH", "token").split(separator: "\n").map(String.init)
        #expect(reply.first == "token-1", "\(reply)")
        #expect(reply.last == "stale", "\(reply)")
        #expect(Self.calls(shared, "token") == 2, "one refetch, by the owner")
        let info = try cluster[asker].redis("INFO", "token")
        #expect(info.contains("stale_answers:1"), "\(info)")
        #expect(!info.contains("state:valid"), "a stale answer is not stored as valid: \(info)")
    }

    @Test("§3.18 across a forward: the owner's retry-after and permanent class reach the asking node, which paces without asking again")
    func classifiedForwarded() throws {
        let shared = try TemporaryDirectory("flaky")
        defer { shared.remove() }
        try "fail 30".write(toFile: shared.appending("busy.mode"), atomically: true, encoding: .utf8)
        try "permanent".write(toFile: shared.appending("revoked.mode"), atomically: true, encoding: .utf8)
        let cluster = try TestCluster(2, expirables: { _ in Self.flaky("busy", shared) + Self.flaky("revoked", shared) }, testPlugins: ["flaky"])
        defer { cluster.remove() }
        let owner = try cluster.owner(of: "busy", on: "node-a")
        let asker = try #require(cluster.names.first { $0 != owner })
        // The caller whose call brought the retry-after is told when, too (§3.18).
        let first = try cluster[asker].redis("GET", "busy")
        #expect(first.hasPrefix("FETCH upstream down (next attempt in "), "\(first)")
        #expect(Self.calls(shared, "busy") == 1)
        // The retry-after (30 s) is beyond a caller's patience (request_timeout, 10 s): the error at once, with
        // the time of the next attempt, and no second call anywhere.
        // Timed over a connection opened first: the span holds the asking node's answer only, no redis-cli start-up.
        let connection = try RawConnection(cluster[asker].socket)
        let started = Date()
        let again = connection.roundTripCommand("GET", "busy")
        let elapsed = Date().timeIntervalSince(started)
        #expect(again.hasPrefix("FETCH upstream down (next attempt in 2"), "\(again)")
        #expect(elapsed < 1, "the error took \(Int(elapsed * 1000)) ms")
        #expect(Self.calls(shared, "busy") == 1)

        let revokedOwner = try cluster.owner(of: "revoked", on: "node-a")
        let revokedAsker = try #require(cluster.names.first { $0 != revokedOwner })
        #expect(try cluster[revokedAsker].redis("GET", "revoked") == "FETCH grant revoked")
        let info = try cluster[revokedAsker].redis("INFO", "revoked")
        #expect(info.contains("last_error_class:permanent"), "\(info)")
    }

    @Test("§3.18 across a forward: a retry-after shorter than the callers' wait but beyond request_timeout is answered at once on the asking node too, with one next-attempt time")
    func retryAfterAnsweredAtOnceOnTheAskingNode() throws {
        let shared = try TemporaryDirectory("flaky")
        defer { shared.remove() }
        // 15 s: beyond request_timeout (10 s), within what a forwarded fetch may wait (timeout 30 s + 2 s).
        try "fail 15".write(toFile: shared.appending("busy.mode"), atomically: true, encoding: .utf8)
        let cluster = try TestCluster(2, expirables: { _ in Self.flaky("busy", shared) }, testPlugins: ["flaky"])
        defer { cluster.remove() }
        let owner = try cluster.owner(of: "busy", on: "node-a")
        let asker = try #require(cluster.names.first { $0 != owner })
        #expect(try cluster[owner].redis("GET", "busy").hasPrefix("FETCH upstream down"))
        #expect(Self.calls(shared, "busy") == 1)
        for round in 1...2 {
            let started = Date()
            let answer = try cluster[asker].redis("GET", "busy")
            let took = Date().timeIntervalSince(started)
            #expect(answer.hasPrefix("FETCH upstream down (next attempt in 1"), "round \(round): \(answer)")
            #expect(answer.components(separatedBy: "next attempt").count == 2, "one next-attempt time, round \(round): \(answer)")
            // Not the 15 s of the retry-after.
            #expect(took < 5, "round \(round) took \(took) s")
        }
        #expect(Self.calls(shared, "busy") == 1)
    }
}
