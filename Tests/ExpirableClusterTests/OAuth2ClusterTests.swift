import ExpirableTestSupport
import Foundation
import Synchronization
import Testing

/// A rotating refresh token shared by three real nodes (SPEC §3.20, §4.10) against a real OAuth 2.0 authorization
/// server (Authlib, Tests/Fixtures/oauth_server.py) that revokes the whole token family when a spent refresh token
/// is presented again: whatever happens to the nodes, the cluster never uses one refresh token twice.
@Suite("Cluster: oauth2 rotating refresh token against an Authlib server", .serialized)
struct OAuth2ClusterTests {
    static let client = OAuthServer.Client("cluster-client", .post, secret: "cl+ster&secret")

    /// A directory holding the client's secret (`client.secret`) and the first refresh token of a new family
    /// (`first.rt`), each 0600, as the nodes' configurations name them.
    static func credentials(_ server: OAuthServer) throws -> TemporaryDirectory {
        let shared = try TemporaryDirectory("oauth2-cluster")
        for (file, text) in [("client.secret", client.secret), ("first.rt", try server.startRefreshTokenFamily(client: client.id))] {
            try Data((text + "\n").utf8).write(to: URL(fileURLWithPath: shared.appending(file)))
            chmod(shared.appending(file), 0o600)
        }
        return shared
    }

    /// Reader outcomes, by kind.
    struct Answers {
        var tokens = 0
        var noQuorum = 0
        var otherErrors: [String: Int] = [:]
        var distinct = Set<String>()
    }

    @Test("across kill -9 of the owner, restarts and a partition, the server sees no refresh token used twice and never revokes the family")
    func noReuse() throws {
        // Access tokens live 2 s and are refreshed eagerly 1 s before they expire: about one refresh a second.
        let server = try OAuthServer(clients: [Self.client], expiresIn: 2, lifetime: 300)
        defer { server.stop() }
        let shared = try Self.credentials(server)
        defer { shared.remove() }
        // No single_flight line: quorum is the default for a rotating refresh token in cluster scope. No state_dir:
        // the state lives in the cluster.
        let cluster = try TestCluster(expirables: { _ in
            """
            [expirable.api]
            plugin = "oauth2"
            refresh = "eager"
            before_expiry = "1s"
            timeout = "2s"
            retry_interval = "200ms"
            [expirable.api.params]
            token_url = "\(server.tokenURL)"
            grant = "refresh_token"
            client_id = "\(Self.client.id)"
            client_secret_file = "\(shared.appending("client.secret"))"
            auth = "post"
            refresh_token_file = "\(shared.appending("first.rt"))"
            """
        }, proxied: true, testPlugins: [], shippedPlugins: ["oauth2"])
        defer { cluster.remove() }
        var first = ""
        #expect(try TestCluster.eventually(seconds: 15) { first = try cluster["node-a"].redis("GET", "api"); return first.hasPrefix("at-") }, "\(first)")

        let stop = Atomic<Bool>(false)
        let answers = Mutex(Answers())
        let readers = DispatchGroup()
        for name in cluster.names {
            let socket = cluster[name].socket
            DispatchQueue.global().async(group: readers) {
                while !stop.load(ordering: .relaxed) {
                    let reply = (try? RawConnection(socket).roundTrip("*2\r\n$3\r\nGET\r\n$3\r\napi\r\n", expecting: 1)) ?? "(no connection)"
                    answers.withLock { a in
                        if reply.hasPrefix("$"), let token = reply.split(separator: "\r\n").dropFirst().first, token.hasPrefix("at-") {
                            a.tokens += 1
                            a.distinct.insert(String(token))
                        } else if reply.contains("no quorum") {
                            a.noQuorum += 1
                        } else {
                            let kind = String(reply.prefix(60))
                            a.otherErrors[kind, default: 0] += 1
                        }
                    }
                    usleep(50_000)
                }
            }
        }
        defer {
            stop.store(true, ordering: .relaxed)
            readers.wait()
        }

        // About 45 s: kill -9 the owner and restart it, cut the owner off for 4 s, kill -9 a node that does not own.
        let started = Date()
        var round = 0
        var events: [String] = []
        while Date().timeIntervalSince(started) < 45 {
            let live = cluster.names.filter { cluster[$0].process?.isRunning == true }
            let owner = (try? cluster.owner(of: "api", on: live[round % live.count])) ?? "node-a"
            switch round % 3 {
            case 0:
                events.append("kill -9 \(owner) (owner)")
                cluster[owner].kill9()
                usleep(1_500_000)
                try cluster[owner].start()
            case 1:
                events.append("partition \(owner) (owner) for 4 s")
                cluster.partition([owner])
                usleep(4_000_000)
                cluster.heal()
            default:
                let other = cluster.names.first { $0 != owner }!
                events.append("kill -9 \(other)")
                cluster[other].kill9()
                usleep(500_000)
                try cluster[other].start()
            }
            usleep(3_000_000)
            round += 1
        }
        stop.store(true, ordering: .relaxed)
        readers.wait()
        try cluster.waitUntilLinked()

        // The family still works: every node gets a token (a new one within a few seconds).
        for name in cluster.names {
            var token = ""
            #expect(try TestCluster.eventually(seconds: 10) { token = try cluster[name].redis("GET", "api"); return token.hasPrefix("at-") }, "\(name): \(token)")
        }
        let counters = try server.counters()
        let result = answers.withLock { $0 }
        let summary = "events: \(events.joined(separator: ", ")); server: \(counters); readers: \(result.tokens) tokens (\(result.distinct.count) distinct), \(result.noQuorum) no-quorum errors, others \(result.otherErrors)"
        print("OAuth2ClusterTests.noReuse: \(summary)")
        #expect(counters.reuses == 0, "the server saw a refresh token used twice: \(summary)")
        #expect(counters.revoked_families == 0, "\(summary)")
        #expect(counters.refreshes >= 20, "the token was refreshed only \(counters.refreshes) times: \(summary)")
        #expect(counters.requests == counters.refreshes, "every token request was a successful refresh: \(summary)")
        let errors = result.noQuorum + result.otherErrors.values.reduce(0, +)
        #expect(result.tokens > 3 * errors, "readers got tokens most of the time: \(summary)")
    }

    /// Quorum single flight keeps calls from overlapping, and the lease answers keep the next holder from calling
    /// with an older state than the last call set (SPEC §4.10, §3.20). Here the owner is cut off while the server
    /// takes 1 s over its refresh: the server rotates the token, and the new one stays on the owner's side. Once
    /// the owner's lease has run out, the majority holds a lease but must not refresh with the spent token: it
    /// answers that the previous holder may hold a newer state. When the partition heals, the owner's greeting
    /// brings the state, and with the owner cut off again, the majority refreshes from it.
    @Test("a partition that cuts off the owner during its refresh: the majority waits for its state instead of spending the old refresh token")
    func partitionDuringRefresh() throws {
        let server = try OAuthServer(clients: [Self.client], expiresIn: 60, lifetime: 120)
        defer { server.stop() }
        let shared = try Self.credentials(server)
        defer { shared.remove() }
        let cluster = try TestCluster(expirables: { _ in
            """
            [expirable.api]
            plugin = "oauth2"
            timeout = "3s"
            retry_interval = "200ms"
            [expirable.api.params]
            token_url = "\(server.tokenURL)"
            grant = "refresh_token"
            client_id = "\(Self.client.id)"
            client_secret_file = "\(shared.appending("client.secret"))"
            auth = "post"
            refresh_token_file = "\(shared.appending("first.rt"))"
            """
        }, proxied: true, testPlugins: [], shippedPlugins: ["oauth2"])
        defer { cluster.remove() }
        var first = ""
        #expect(try TestCluster.eventually(seconds: 15) { first = try cluster["node-a"].redis("GET", "api"); return first.hasPrefix("at-") }, "\(first)")
        let owner = try cluster.owner(of: "api", on: "node-a")
        try server.slow(1.0)
        #expect(try cluster[owner].redis("CLEAR", "api") == "OK")
        let arrived = try server.counters().arrived
        // On a thread of its own: a global queue's few threads can be held by other suites' blocking waits, and a
        // GET started after the cut would leave the owner without a lease and the refresh to the majority.
        let refresh = DispatchSemaphore(value: 0)
        Thread { _ = try? cluster[owner].redis("GET", "api"); refresh.signal() }.start()
        // Cut off once the server has the owner's refresh in hand (it takes 1 s over it), not after a fixed wait.
        #expect(try TestCluster.eventually(seconds: 15) { try server.counters().arrived > arrived })
        cluster.partition([owner])
        refresh.wait()
        try server.slow(0)
        let other = cluster.names.first { $0 != owner }!
        // The owner's lease (3 s × 10/9 + 3 s) runs out during these 15 s; from then on the majority is granted
        // leases, and must say why it does not call rather than call with the spent refresh token.
        var answer = ""
        var answers: [String: Int] = [:]
        _ = try TestCluster.eventually(seconds: 15) {
            answer = try cluster[other].redis("GET", "api")
            let kind = answer.hasPrefix("at-") ? "a token" : String(answer.prefix(90))
            answers[kind, default: 0] += 1
            return answer.hasPrefix("at-") || answer.contains("invalid_grant") || answer.contains("may hold a newer state")
        }
        #expect(answer.contains("FETCH api: the previous lease holder \(owner) may hold a newer state (lease "), "\(other) answered \(answers)")
        #expect(answer.hasSuffix("); waiting for it"), "\(answer)")
        #expect(try server.counters().reuses == 0, "\(answers)")
        cluster.heal()
        // The partition healed: the owner's greeting brings its state and ends its lease, and GETs are answered.
        #expect(try TestCluster.eventually(seconds: 15) { answer = try cluster[other].redis("GET", "api"); return answer.hasPrefix("at-") }, "\(answer)")
        // The owner is cut off again, holding nothing: the majority refreshes, from the state it got on healing.
        try cluster.waitUntilLinked()
        cluster.partition([owner])
        #expect(try cluster[other].redis("CLEAR", "api") == "OK")
        #expect(try TestCluster.eventually(seconds: 20) { answer = try cluster[other].redis("GET", "api"); return answer.hasPrefix("at-") }, "\(answer)")
        cluster.heal()
        let counters = try server.counters()
        #expect(counters.reuses == 0, "\(other) answered \(answers), then \(answer); server: \(counters)")
        #expect(counters.revoked_families == 0, "\(counters)")
        #expect(counters.refreshes == 3, "the first GET, the owner's refresh during the partition, and the majority's: \(counters)")
    }
}
