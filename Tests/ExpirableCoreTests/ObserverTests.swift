import ExpirableCore
import Synchronization
import Testing

/// The engine's observers, which the server's subscriptions and the daemon's sinks both use.
@Suite("Engine observers: new values and clears")
struct ObserverTests {
    @Test("every observer of new values gets each value: a fetch and a peer's replica")
    func severalValueObservers() {
        let h = Harness()
        let seen = Mutex<[String]>([])
        h.engine.observeNewValues { name, fetched in seen.withLock { $0.append("a \(name) \(string(fetched)!)") } }
        h.engine.observeNewValues { name, fetched in seen.withLock { $0.append("b \(name) \(string(fetched)!)") } }
        _ = h.startFetch()
        h.fetcher.complete(value("v1", expiresIn: 60_000, clock: h.clock))
        h.engine.applyReplica("token", value: Secret("v2"), remainingMillis: 60_000, version: Version(time: .max / 2, node: "b"))
        #expect(seen.withLock { $0 } == ["a token v1", "b token v1", "a token v2", "b token v2"])
    }

    @Test("clears are observed: CLEAR, CLEARALL once per name, and a peer's clear that applies")
    func clearsObserved() {
        let h = Harness(extra: ["other"])
        let cleared = Mutex<[String]>([])
        h.engine.observeClears { name in cleared.withLock { $0.append(name) } }
        h.engine.clear("token")
        h.engine.clearAll()
        #expect(h.engine.applyClear("token", version: Version(time: .max / 2, node: "b")))
        // An older clear than what this node holds does not apply, so it is not announced.
        #expect(!h.engine.applyClear("token", version: Version(time: 1, node: "b")))
        #expect(cleared.withLock { $0 } == ["token", "other", "token", "token"])
    }
}
