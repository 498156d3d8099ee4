// Measures the engine's read path for a valid value, in process, on 1 and 2 threads, against a bare
// Mutex-protected dictionary lookup (the least a thread-safe cache can do). Run in release:
//   swift run -c release EngineBenchmark [operations-per-thread]
import Dispatch
import Foundation
import ExpirableCore
import Synchronization

@main
struct EngineBenchmark {
    static func main() async throws {
        let operations = CommandLine.arguments.dropFirst().first.flatMap { Int($0) } ?? 5_000_000
        let names = (0..<16).map { "token_\($0)" }
        let engine = Engine(expirables: names.map { name in
            ExpirableDefinition(name: name, fetcher: ClosureFetcher {
                .success(Fetched(value: Secret("value-of-\(name)-0123456789abcdef"), expiry: .never))
            })
        })
        for name in names { _ = try await engine.fetch(name) }
        let baseline = Mutex<[String: Secret]>(Dictionary(uniqueKeysWithValues: names.map { ($0, Secret("value-of-\($0)-0123456789abcdef")) }))

        print("Expirable engine read path: fetch of a valid value, \(operations) operations per thread")
        print("peer: a Mutex<[String: Secret]> lookup (no validity check, no counters)")
        print("threads  engine.cachedValue ops/s  engine.fetch(callback) ops/s  mutex-dictionary ops/s  cachedValue/peer")
        for threads in [1, 2] {
            let cached = measure(threads: threads, operations: operations) { i in
                engine.cachedValue(names[i & 15]) != nil
            }
            let callback = measure(threads: threads, operations: operations) { i in
                let hit = Mutex(false)
                engine.fetch(names[i & 15]) { result in hit.withLock { $0 = (try? result.get()) != nil } }
                return hit.withLock { $0 }
            }
            let peer = measure(threads: threads, operations: operations) { i in
                baseline.withLock { $0[names[i & 15]] } != nil
            }
            print(String(format: "%7d  %24.0f  %28.0f  %22.0f  %15.2fx", threads, cached, callback, peer, cached / peer))
        }
        try await maskedReads()
    }

    /// The hot path with access rules (SPEC §9): a read of a name the caller may read, through the `ReadMask` of
    /// a table where half the names have an `allow` list (so the name's bit is tested), against the same read in
    /// a table without rules (the mask allows everything), and the read without a mask (what the server called
    /// before access rules). Batches alternate; the fastest batch of each is kept, which a machine busy with other
    /// work disturbs least.
    static func maskedReads() async throws {
        let names = (0..<16).map { "token_\($0)" }
        func engine(restricted: Bool) async throws -> (Engine, ReadMaskStorage) {
            let engine = Engine(expirables: names.enumerated().map { index, name in
                var definition = ExpirableDefinition(name: name, fetcher: ClosureFetcher {
                    .success(Fetched(value: Secret("value-of-\(name)-0123456789abcdef"), expiry: .never))
                })
                if restricted && index % 2 == 1 { definition.readers = [AccessRule(.uid(4242), spelled: "uid:4242")] }
                return definition
            })
            for name in names { _ = try await engine.fetch(name) }
            let rules = engine.readRules
            return (engine, ReadMaskStorage(rules) { rules.readers[$0] == nil })
        }
        let (open, openMask) = try await engine(restricted: false)
        let (restricted, restrictedMask) = try await engine(restricted: true)
        precondition(openMask.mask.all && !restrictedMask.mask.all)
        let readable = names.indices.filter { $0 % 2 == 0 }.map { Array(names[$0].utf8) }
        let batch = 200_000
        var best = (unmasked: Double.infinity, open: Double.infinity, restricted: Double.infinity)
        let clock = SystemClock()
        func time(_ read: (UnsafeRawBufferPointer) -> Bool) -> Double {
            let start = clock.monotonicNanos
            var hits = 0
            for i in 0..<batch where readable[i & 7].withUnsafeBytes(read) { hits += 1 }
            precondition(hits == batch, "a read missed or was refused")
            return Double(clock.monotonicNanos - start) / Double(batch)
        }
        for _ in 0..<100 {
            var length = 0
            best.unmasked = min(best.unmasked, time { open.withCachedValue(utf8: $0) { length = $0.count } })
            best.open = min(best.open, time { if case .answered = open.withCachedValue(utf8: $0, mask: openMask.mask, { length = $0.count }) { true } else { false } })
            best.restricted = min(best.restricted, time { if case .answered = restricted.withCachedValue(utf8: $0, mask: restrictedMask.mask, { length = $0.count }) { true } else { false } })
            precondition(length > 0)
        }
        print("read of a permitted name from a receive buffer, 1 thread, best of 100 batches of \(batch)")
        print(String(format: "no rules %.1f ns, with rules (bit tested) %.1f ns: with/without throughput %.3fx (no mask at all: %.1f ns)",
                     best.open, best.restricted, best.open / best.restricted, best.unmasked))
        withExtendedLifetime((openMask, restrictedMask)) {}
    }

    /// Runs `body` `operations` times on each of `threads` threads at once; returns total operations per second.
    static func measure(threads: Int, operations: Int, _ body: @escaping @Sendable (Int) -> Bool) -> Double {
        let clock = SystemClock()
        let misses = Atomic<Int>(0)
        let start = clock.monotonicNanos
        DispatchQueue.concurrentPerform(iterations: threads) { _ in
            var local = 0
            for i in 0..<operations where !body(i) { local += 1 }
            misses.add(local, ordering: .relaxed)
        }
        let seconds = Double(clock.monotonicNanos - start) / 1e9
        precondition(misses.load(ordering: .relaxed) == 0, "a read missed: the benchmark is not measuring hits")
        return Double(threads * operations) / seconds
    }
}
