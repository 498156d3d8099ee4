// Client-side benchmarks against a running expirabled (Benchmarks/run.sh starts one):
//   ClientBenchmark rtt SOCKET NAME ROUNDS        sequential ExpirableClient.fetch round trips: mean, p50, p99 (µs)
//   ClientBenchmark burst SOCKET NAME CALLERS     CLEAR, then CALLERS clients (one connection each) GET at once:
//                                                 plugin calls made and time until every caller has its answer
//   ClientBenchmark hold SOCKET CONNECTIONS       opens CONNECTIONS connections, prints "ready", holds them until
//                                                 stdin closes
//   ClientBenchmark replication OWNER PEER... NAME ROUNDS
//                                                 per round: CLEAR on the owner (and wait until the peers hold
//                                                 nothing), then GET on the owner, which fetches a new value; time
//                                                 from sending that GET until every peer holds the value (polled
//                                                 with TTL, which never fetches): p50, p99, max (ms); a peer that
//                                                 takes over 10 s ends the run with an error
import ExpirableClient
import ExpirableCore
import Foundation

@main
struct ClientBenchmark {
    static func main() async throws {
        let args = CommandLine.arguments
        guard args.count >= 4 else {
            print("usage: ClientBenchmark rtt SOCKET NAME ROUNDS | burst SOCKET NAME CALLERS | hold SOCKET CONNECTIONS | replication OWNER PEER... NAME ROUNDS")
            exit(2)
        }
        switch args[1] {
        case "rtt": try await rtt(socket: args[2], name: args[3], rounds: Int(args[4]) ?? 100_000)
        case "burst": try await burst(socket: args[2], name: args[3], callers: Int(args[4]) ?? 1000)
        case "hold": try await hold(socket: args[2], connections: Int(args[3]) ?? 1000)
        case "replication" where args.count >= 6:
            try await replication(owner: args[2], peers: Array(args[3..<(args.count - 2)]), name: args[args.count - 2], rounds: Int(args[args.count - 1]) ?? 200)
        default: print("unknown mode \(args[1])"); exit(2)
        }
    }

    static func rtt(socket: String, name: String, rounds: Int) async throws {
        let client = ExpirableClient(socketPath: socket)
        for _ in 0..<max(1, rounds / 10) { _ = try await client.fetch(name) }
        var samples = [UInt64](repeating: 0, count: rounds)
        let clock = SystemClock()
        let start = clock.monotonicNanos
        for i in 0..<rounds {
            let t0 = clock.monotonicNanos
            _ = try await client.fetch(name)
            samples[i] = clock.monotonicNanos - t0
        }
        let total = Double(clock.monotonicNanos - start) / 1e3 / Double(rounds)
        samples.sort()
        print(String(format: "mean_us=%.2f p50_us=%.2f p99_us=%.2f", total, Double(samples[rounds / 2]) / 1e3, Double(samples[rounds * 99 / 100]) / 1e3))
    }

    static func burst(socket: String, name: String, callers: Int) async throws {
        let admin = ExpirableClient(socketPath: socket)
        let clients = (0..<callers).map { _ in ExpirableClient(socketPath: socket) }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for client in clients { group.addTask { try await client.ping() } }
            try await group.waitForAll()
        }
        let callsBefore = Int(try await admin.info(name)["plugin_calls"] ?? "") ?? -1
        try await admin.clear(name)
        let clock = SystemClock()
        let start = clock.monotonicNanos
        let values = try await withThrowingTaskGroup(of: String.self) { group in
            for client in clients { group.addTask { try await client.value(name) } }
            return try await group.reduce(into: Set<String>()) { $0.insert($1) }
        }
        let elapsed = Double(clock.monotonicNanos - start) / 1e6
        let calls = (Int(try await admin.info(name)["plugin_calls"] ?? "") ?? -1) - callsBefore
        print(String(format: "callers=%d plugin_calls=%d distinct_values=%d all_answered_ms=%.2f", callers, calls, values.count, elapsed))
    }

    static func replication(owner: String, peers: [String], name: String, rounds: Int) async throws {
        let ownerClient = ExpirableClient(socketPath: owner)
        let peerClients = peers.map { ExpirableClient(socketPath: $0) }
        let clock = SystemClock()
        var samples: [Double] = []
        // Polls `peer` until `done` says yes; a peer that never gets there stops the benchmark instead of hanging it.
        func poll(_ peer: ExpirableClient, _ index: Int, until done: (ExpirableClient.TimeToLive) -> Bool, _ what: String) async throws {
            let deadline = clock.monotonicNanos + 10_000_000_000
            while !done(try await peer.timeToLive(name)) {
                guard clock.monotonicNanos < deadline else {
                    print("replication: \(peers[index]) did not \(what) \(name) within 10 s")
                    exit(1)
                }
            }
        }
        for _ in 0..<rounds {
            try await ownerClient.clear(name)
            for (i, peer) in peerClients.enumerated() { try await poll(peer, i, until: { $0 == .notStored }, "drop") }
            let start = clock.monotonicNanos
            _ = try await ownerClient.value(name)
            for (i, peer) in peerClients.enumerated() { try await poll(peer, i, until: { $0 != .notStored }, "receive") }
            samples.append(Double(clock.monotonicNanos - start) / 1e6)
        }
        samples.sort()
        print(String(format: "rounds=%d p50_ms=%.3f p99_ms=%.3f max_ms=%.3f", rounds, samples[rounds / 2], samples[rounds * 99 / 100], samples[rounds - 1]))
    }

    static func hold(socket: String, connections: Int) async throws {
        let clients = (0..<connections).map { _ in ExpirableClient(socketPath: socket) }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for client in clients { group.addTask { try await client.ping() } }
            try await group.waitForAll()
        }
        FileHandle.standardOutput.write(Data("ready\n".utf8))
        while readLine() != nil {}
        withExtendedLifetime(clients) {}
    }
}
