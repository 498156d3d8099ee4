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
