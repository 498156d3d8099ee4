import ExpirableCore
import Synchronization
import Testing

/// A fetcher that records each call's key and state and answers "KEY#N" (N counting calls per key), setting the
/// state to "state-of-KEY-N"; calls are completed at once.
final class KeyRecordingFetcher: Fetcher {
    let calls = Mutex<[(key: String?, state: String?)]>([])
    let clock: ManualClock
    let lifetime: Int64

    init(clock: ManualClock, lifetime: Int64 = 60_000) {
        self.clock = clock
        self.lifetime = lifetime
    }

    func fetch(_ request: FetchRequest, completion: @escaping @Sendable (FetchOutcome) -> Void) {
        let n = calls.withLock { c in
            c.append((request.key, request.state.map { String(decoding: $0.bytes, as: UTF8.self) }))
            return c.filter { $0.key == request.key }.count
        }
        let key = request.key ?? "-"
        completion(FetchOutcome(
            result: .success(Fetched(value: Secret("\(key)#\(n)"), expiry: .at(unixMillis: clock.unixMillis + lifetime))),
            state: .set(Secret("state-of-\(key)-\(n)"))
        ))
    }
}

/// SPEC §3.19: a keyed family, NAME:KEY, on the injected clock.
@Suite("Keyed families (SPEC §3.19)")
struct KeyedTests {
    static func engine(_ fetcher: any Fetcher, clock: ManualClock, maxKeys: Int = 100, keyIdle: Duration = .seconds(3600),
                       refresh: RefreshPolicy = .lazy) -> Engine {
        Engine(expirables: [ExpirableDefinition(name: "fam", scope: .local, refresh: refresh,
                                                keyed: KeyedPolicy(maxKeys: maxKeys, keyIdle: keyIdle), fetcher: fetcher)], clock: clock)
    }

    @Test("19. each key is its own value: the key reaches the plugin, values are kept and answered per key, and so is the state")
    func perKey() async throws {
        let clock = ManualClock()
        let fetcher = KeyRecordingFetcher(clock: clock)
        let engine = Self.engine(fetcher, clock: clock)
        #expect(string(try await engine.fetch("fam:a")) == "a#1")
        #expect(string(try await engine.fetch("fam:b")) == "b#1")
        #expect(string(try await engine.fetch("fam:a")) == "a#1", "answered from memory")
        #expect(string(engine.cachedValue("fam:b")) == "b#1")
        #expect(fetcher.calls.withLock { $0.count } == 2)
        engine.clear("fam:a")
        #expect(string(try await engine.fetch("fam:a")) == "a#2")
        let calls = fetcher.calls.withLock { $0 }
        #expect(calls.map(\.key) == ["a", "b", "a"])
        #expect(calls.last?.state == "state-of-a-1", "a's second call got a's state, not b's")
        #expect(engine.names == ["fam"])
        #expect(engine.isKeyed("fam"))
    }

    @Test("19. concurrent fetches of one key share one call; another key gets its own")
    func singleFlightPerKey() async throws {
        let clock = ManualClock()
        let controlled = ControlledFetcher()
        let engine = Self.engine(controlled, clock: clock)
        let answers = Mutex<[String]>([])
        for _ in 0..<10 { engine.fetch("fam:a") { r in answers.withLock { $0.append((try? r.get()).flatMap(string) ?? "error") } } }
        engine.fetch("fam:b") { r in answers.withLock { $0.append((try? r.get()).flatMap(string) ?? "error") } }
        #expect(controlled.calls == 2)
        controlled.complete(value("A", expiresIn: 60_000, clock: clock))
        controlled.complete(value("B", expiresIn: 60_000, clock: clock))
        #expect(answers.withLock { $0.sorted() } == Array(repeating: "A", count: 10) + ["B"])
    }

    @Test("19. a family without a key, or with a bad key, is a NOTFOUND error that says how to address it")
    func addressing() async {
        let clock = ManualClock()
        let engine = Self.engine(KeyRecordingFetcher(clock: clock), clock: clock)
        await #expect(throws: ExpirableError.notFound(explaining: "fam is a keyed family: ask for one of its values as fam:KEY")) { try await engine.fetch("fam") }
        for bad in ["fam:", "fam:a b", "fam:" + String(repeating: "k", count: 257), "fam:\u{7f}"] {
            await #expect(throws: ExpirableError.self) { try await engine.fetch(bad) }
        }
        #expect(engine.cachedValue("fam:nothing-yet") == nil)
        #expect(engine.status("fam:nothing-yet") == nil, "reading makes no member")
        #expect(engine.scope(of: "fam:anything") == .local)
    }

    @Test("19. at most max_keys members are kept: the least recently read one goes first")
    func maxKeys() async throws {
        let clock = ManualClock()
        let fetcher = KeyRecordingFetcher(clock: clock)
        let engine = Self.engine(fetcher, clock: clock, maxKeys: 3)
        for key in ["a", "b", "c"] {
            _ = try await engine.fetch("fam:\(key)")
            clock.advance(by: .seconds(1))
        }
        #expect(engine.cachedValue("fam:a") != nil)  // a is now the most recently read
        clock.advance(by: .seconds(1))
        _ = try await engine.fetch("fam:d")
        #expect(engine.familyInfo("fam")?.keys == 3)
        #expect(engine.familyInfo("fam")?.evictions == 1)
        #expect(engine.status("fam:b") == nil, "b was the least recently read")
        #expect(engine.cachedValue("fam:a") != nil && engine.cachedValue("fam:c") != nil && engine.cachedValue("fam:d") != nil)
    }

    @Test("19. a key unread for key_idle is dropped with its eager refresh")
    func keyIdle() async throws {
        let clock = ManualClock()
        let fetcher = KeyRecordingFetcher(clock: clock, lifetime: 20_000)
        let engine = Self.engine(fetcher, clock: clock, keyIdle: .seconds(60), refresh: .eager(beforeExpiry: .seconds(5)))
        _ = try await engine.fetch("fam:idle")
        _ = try await engine.fetch("fam:busy")
        for _ in 0..<8 {
            clock.advance(by: .seconds(10))
            _ = engine.cachedValue("fam:busy")
        }
        #expect(engine.status("fam:idle") == nil, "unread for over a minute: dropped")
        #expect(engine.status("fam:busy") != nil)
        let refreshesOfIdle = fetcher.calls.withLock { $0.filter { $0.key == "idle" }.count }
        clock.advance(by: .seconds(60))
        #expect(fetcher.calls.withLock { $0.filter { $0.key == "idle" }.count } == refreshesOfIdle, "its refresh stopped with it")
    }

    @Test("19. CLEAR NAME:KEY clears one key; CLEAR NAME clears the whole family")
    func clearing() async throws {
        let clock = ManualClock()
        let engine = Self.engine(KeyRecordingFetcher(clock: clock), clock: clock)
        _ = try await engine.fetch("fam:a")
        _ = try await engine.fetch("fam:b")
        #expect(engine.clear("fam:a"))
        #expect(engine.cachedValue("fam:a") == nil && engine.cachedValue("fam:b") != nil)
        #expect(engine.clear("fam"))
        #expect(engine.cachedValue("fam:b") == nil)
    }
}
