import ExpirableCore
import Synchronization
import Testing

/// A fetcher that records each call's key and state and answers "KEY#N" (N counting calls per key), setting the
/// state to "state-of-KEY-N" unless told not to; calls are completed at once.
final class KeyRecordingFetcher: Fetcher {
    let calls = Mutex<[(key: String?, state: String?)]>([])
    let clock: ManualClock
    let lifetime: Int64
    let setsState: Bool

    init(clock: ManualClock, lifetime: Int64 = 60_000, setsState: Bool = true) {
        self.clock = clock
        self.lifetime = lifetime
        self.setsState = setsState
    }

    func fetch(_ request: FetchRequest, completion: @escaping @Sendable (FetchOutcome) -> Void) {
        let n = calls.withLock { c in
            c.append((request.key, request.state.map { String(decoding: $0.bytes, as: UTF8.self) }))
            return c.filter { $0.key == request.key }.count
        }
        let key = request.key ?? "-"
        completion(FetchOutcome(
            result: .success(Fetched(value: Secret("\(key)#\(n)"), expiry: .at(unixMillis: clock.unixMillis + lifetime))),
            state: setsState ? .set(Secret("state-of-\(key)-\(n)")) : .keep
        ))
    }
}

/// Answers every key at once, but holds the calls of `held` keys until `release`; keys starting with "s" get a
/// plugin state, the others none.
final class HoldingFetcher: Fetcher {
    let calls = Mutex<[(key: String, state: String?)]>([])
    let waiting = Mutex<[@Sendable () -> Void]>([])
    let held: Set<String>
    let clock: ManualClock

    init(holding held: Set<String>, clock: ManualClock) {
        self.held = held
        self.clock = clock
    }

    func fetch(_ request: FetchRequest, completion: @escaping @Sendable (FetchOutcome) -> Void) {
        let key = request.key ?? "-"
        let n = calls.withLock { c in
            c.append((key, request.state.map { String(decoding: $0.bytes, as: UTF8.self) }))
            return c.filter { $0.key == key }.count
        }
        let outcome = FetchOutcome(result: .success(Fetched(value: Secret("\(key)#\(n)"), expiry: .at(unixMillis: clock.unixMillis + 60_000))),
                                   state: key.hasPrefix("s") ? .set(Secret("state-of-\(key)-\(n)")) : .keep)
        if held.contains(key) { waiting.withLock { $0.append { completion(outcome) } } } else { completion(outcome) }
    }

    func release() {
        for answer in waiting.withLock({ w in defer { w.removeAll() }; return w }) { answer() }
    }
}

/// SPEC §3.19: a keyed family, NAME:KEY, on the injected clock.
@Suite("Keyed families (SPEC §3.19)")
struct KeyedTests {
    static func engine(_ fetcher: any Fetcher, clock: ManualClock, maxKeys: Int = 100, keyIdle: Duration = .seconds(3600),
                       refresh: RefreshPolicy = .lazy, scope: Scope = .local) -> Engine {
        Engine(expirables: [ExpirableDefinition(name: "fam", scope: scope, refresh: refresh,
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

    @Test("19. the key_idle sweep never drops a member whose call is in flight: a second reader shares that call")
    func keyIdleSparesFlights() async throws {
        let clock = ManualClock()
        let fetcher = HoldingFetcher(holding: ["s-slow"], clock: clock)
        let engine = Self.engine(fetcher, clock: clock, keyIdle: .seconds(4))
        let first = Task { try await engine.fetch("fam:s-slow") }
        for _ in 0..<30_000 where fetcher.waiting.withLock({ $0.isEmpty }) { try await Task.sleep(for: .milliseconds(1)) }
        #expect(!fetcher.waiting.withLock { $0.isEmpty }, "the first call never started")
        // Well past key_idle, with the sweep (every second) run several times, while the call is still running.
        for _ in 0..<10 { clock.advance(by: .seconds(1)) }
        #expect(engine.status("fam:s-slow")?.fetching == true, "the member in flight was swept")
        let second = Task { try await engine.fetch("fam:s-slow") }
        try await Task.sleep(for: .milliseconds(50))
        fetcher.release()
        let answers = [string(try await first.value), string(try await second.value)]
        #expect(answers == ["s-slow#1", "s-slow#1"], "the second reader did not share the first call")
        #expect(fetcher.calls.withLock { $0.filter { $0.key == "s-slow" }.count } == 1, "a second call of s-slow started while its first was in flight")
        // Once the call is done and the key stays unread, the sweep drops it as before.
        for _ in 0..<10 { clock.advance(by: .seconds(1)) }
        #expect(engine.status("fam:s-slow") == nil, "unread for key_idle after its call: dropped")
    }

    @Test("19. reads of a batch read ahead answer each key its own value, in the order read ahead or any other")
    func readAhead() async throws {
        let clock = ManualClock()
        let engine = Self.engine(KeyRecordingFetcher(clock: clock, setsState: false), clock: clock)
        for key in ["a", "b", "c"] { _ = try await engine.fetch("fam:\(key)") }
        let storage = ReadMaskStorage(engine.readRules) { _ in true }
        let mask = storage.mask
        func read(_ name: String, _ plan: inout ReadAhead) -> String? {
            var seen: String?
            let outcome = Array(name.utf8).withUnsafeBytes { bytes in
                engine.withCachedValue(utf8: bytes, mask: mask, readAhead: &plan) { seen = String(decoding: $0, as: UTF8.self) }
            }
            if case .answered = outcome { return seen }
            return nil
        }
        var plan = ReadAhead()
        for name in ["fam:a", "fam:b", "plain", "other:x", "fam:", "fam:c", "fam:a"] {
            Array(name.utf8).withUnsafeBytes { engine.readAhead(utf8: $0, into: &plan) }
        }
        #expect(plan.count == 4, "only members of a configured family are read ahead")
        engine.readAhead(&plan)
        // Out of order first: each read hashes its own key when it is not the next one read ahead.
        #expect(read("fam:b", &plan) == "b#1")
        #expect(read("fam:a", &plan) == "a#1")
        #expect(read("fam:b", &plan) == "b#1")
        #expect(read("fam:c", &plan) == "c#1")
        #expect(read("fam:a", &plan) == "a#1")
        #expect(read("fam:d", &plan) == nil && read("fam:a", &plan) == "a#1", "past the plan, reads go on as without it")
        plan.reset()
        #expect(plan.count == 0 && read("fam:c", &plan) == "c#1")
    }

    @Test("19. max_keys never evicts a member whose call is in flight (its state would be given to a second call), and evicts one holding a plugin state only when the sample has none without")
    func evictionSparesFlightsAndStates() async throws {
        let clock = ManualClock()
        let fetcher = HoldingFetcher(holding: ["s-busy"], clock: clock)
        let engine = Self.engine(fetcher, clock: clock, maxKeys: 2)
        // s-busy's first call answers with a state; its second is held in flight.
        let first = Task { try await engine.fetch("fam:s-busy") }
        while fetcher.waiting.withLock({ $0.isEmpty }) { try await Task.sleep(for: .milliseconds(1)) }
        for key in ["p1", "p2", "p3"] { _ = try await engine.fetch("fam:\(key)") }
        #expect(engine.status("fam:s-busy")?.fetching == true, "the member in flight was evicted")
        let second = Task { try await engine.fetch("fam:s-busy") }
        try await Task.sleep(for: .milliseconds(50))
        fetcher.release()
        _ = try? await first.value
        _ = try? await second.value
        #expect(fetcher.calls.withLock { $0.filter { $0.key == "s-busy" }.count } == 1, "a second call of s-busy started while its first was in flight")

        // Members holding a state are kept while members without one can go, however long unread.
        let other = HoldingFetcher(holding: [], clock: clock)
        let stateful = Self.engine(other, clock: clock, maxKeys: 2)
        _ = try await stateful.fetch("fam:s1")
        clock.advance(by: .seconds(1))
        _ = try await stateful.fetch("fam:p1")
        clock.advance(by: .seconds(1))
        _ = try await stateful.fetch("fam:p2")
        #expect(stateful.cachedValue("fam:s1") != nil, "the member with a state went before one without")
        #expect(stateful.cachedValue("fam:p1") == nil && stateful.cachedValue("fam:p2") != nil)
    }

    @Test("19. a family pushed past max_keys by calls in flight (none could be evicted) is brought back to max_keys as they end")
    func overshootTrimmed() async throws {
        let clock = ManualClock()
        let keys = ["n1", "n2", "n3", "n4", "n5"]
        let fetcher = HoldingFetcher(holding: Set(keys), clock: clock)
        let engine = Self.engine(fetcher, clock: clock, maxKeys: 2)
        let reads = keys.map { key in Task { try await engine.fetch("fam:\(key)") } }
        for _ in 0..<30_000 where fetcher.waiting.withLock({ $0.count }) < keys.count { try await Task.sleep(for: .milliseconds(1)) }
        #expect(fetcher.waiting.withLock { $0.count } == keys.count, "the calls never all started")
        #expect(keys.allSatisfy { engine.status("fam:\($0)")?.fetching == true }, "a member in flight was evicted")
        fetcher.release()
        for read in reads { _ = try await read.value }
        #expect(engine.familyInfo("fam")?.keys == 2, "the family stayed past max_keys (2): \(String(describing: engine.familyInfo("fam")?.keys)) keys")
        #expect(keys.filter { engine.status("fam:\($0)") != nil }.count == 2)
        #expect(engine.familyInfo("fam")?.evictions == 3)
    }

    @Test("19. a reload that keeps a family (key_idle changed) keeps its evictions and the counts of members gone")
    func reloadKeepsFamilyCounts() async throws {
        let clock = ManualClock()
        let fetcher = KeyRecordingFetcher(clock: clock, setsState: false)
        let engine = Self.engine(fetcher, clock: clock, maxKeys: 2)
        for key in ["a", "b", "c", "d"] { _ = try await engine.fetch("fam:\(key)") }
        let before = try #require(engine.familyInfo("fam"))
        #expect(before.evictions == 2)
        let callsBefore = try #require(engine.figures().first).counters.pluginCalls
        _ = engine.reload([ExpirableDefinition(name: "fam", keyed: KeyedPolicy(maxKeys: 2, keyIdle: .seconds(60)), fetcher: fetcher)],
                          unchanged: [], keepingValues: ["fam"])
        #expect(engine.familyInfo("fam")?.evictions == 2, "evictions went back to \(String(describing: engine.familyInfo("fam")?.evictions))")
        #expect(try #require(engine.figures().first).counters.pluginCalls == callsBefore, "the calls of evicted members are still counted")
        _ = try await engine.fetch("fam:e")
        #expect(engine.familyInfo("fam")?.evictions == 3)
    }

    @Test("19. a reload that lowers max_keys keeps the most recently read keys; a reload keeps each key's key_idle clock")
    func reloadKeepsRecency() async throws {
        let clock = ManualClock()
        let fetcher = KeyRecordingFetcher(clock: clock, lifetime: 3_600_000, setsState: false)
        let engine = Self.engine(fetcher, clock: clock, maxKeys: 5, keyIdle: .seconds(60))
        for key in ["q1", "q2", "q3", "q4", "q5"] {
            _ = try await engine.fetch("fam:\(key)")
            clock.advance(by: .seconds(1))
        }
        #expect(engine.cachedValue("fam:q1") != nil)
        clock.advance(by: .seconds(1))
        _ = engine.reload([ExpirableDefinition(name: "fam", keyed: KeyedPolicy(maxKeys: 2, keyIdle: .seconds(60)), fetcher: fetcher)],
                          unchanged: [], keepingValues: ["fam"])
        let kept = ["q1", "q2", "q3", "q4", "q5"].filter { engine.status("fam:\($0)") != nil }
        #expect(kept == ["q1", "q5"], "the two most recently read keys are q1 and q5; kept: \(kept)")

        // A key unread for 50 s of its 60 s key_idle when the family is reloaded goes 10 s later, not 60 s.
        _ = engine.clear("fam")
        _ = try await engine.fetch("fam:idle")
        _ = try await engine.fetch("fam:read")
        clock.advance(by: .seconds(50))
        _ = engine.cachedValue("fam:read")
        _ = engine.reload([ExpirableDefinition(name: "fam", keyed: KeyedPolicy(maxKeys: 3, keyIdle: .seconds(60)), fetcher: fetcher)],
                          unchanged: [], keepingValues: ["fam"])
        #expect(engine.status("fam:idle") != nil)
        for _ in 0..<30 { clock.advance(by: .seconds(1)) }
        #expect(engine.status("fam:idle") == nil, "unread for 80 s (key_idle 60 s), a reload between: still held")
        #expect(engine.status("fam:read") != nil, "read 30 s ago: kept")
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

    @Test("19. failed calls of distinct keys log at most ten lines a second a family; the rest are counted in one line")
    func failureLinesLimited() async throws {
        let clock = ManualClock()
        let logs = LogBox()
        let engine = Engine(expirables: [ExpirableDefinition(name: "fam", keyed: KeyedPolicy(), fetcher: FailingKeyFetcher())], clock: clock,
                            logger: logs.logger)
        func failed() -> [String] { logs.lines.withLock { $0.filter { $0.contains("fetch failed") } } }
        for i in 0..<100 { _ = try? await engine.fetch("fam:k\(i)") }
        #expect(failed().count == 10, "\(failed().count) lines for 100 failed keys")
        #expect(failed().allSatisfy { $0.contains("no value for k") })
        for _ in 0..<2 { clock.advance(by: .seconds(1)) }
        let summary = logs.lines.withLock { $0.filter { $0.contains("not logged") } }
        #expect(summary.count == 1 && summary.first?.contains("90") == true && summary.first?.contains("fam") == true, "\(summary)")
        _ = try? await engine.fetch("fam:later")
        #expect(failed().count == 11, "a failure in a later second is logged again")
    }

    // Members with nothing pending are kept compact (a block with the key, deadline, counts and value) and made
    // whole again for a call; these tests hold them to everything a whole member does.

    @Test("19. a compact member answers from memory, counts its hits and calls, expires, and is called again once")
    func compactMember() async throws {
        let clock = ManualClock()
        let fetcher = KeyRecordingFetcher(clock: clock, lifetime: 10_000, setsState: false)
        let engine = Self.engine(fetcher, clock: clock)
        #expect(string(try await engine.fetch("fam:a")) == "a#1")
        for _ in 0..<3 { #expect(string(engine.cachedValue("fam:a")) == "a#1") }
        var seen: [UInt8] = []
        #expect(Array("fam:a".utf8).withUnsafeBytes { name in engine.withCachedValue(utf8: name) { seen = Array($0) } })
        #expect(String(decoding: seen, as: UTF8.self) == "a#1")
        #expect(string(try await engine.fetch("fam:a")) == "a#1", "a fetch of a valid member calls nothing")
        let status = try #require(engine.status("fam:a"))
        #expect(status.state == .valid && status.expiresInMillis == 10_000 && !status.fetching)
        #expect(status.counters.hits == 5 && status.counters.misses == 1 && status.counters.pluginCalls == 1)
        #expect(engine.explanation("fam:a")?.calls.count == 1, "its last call is kept for explain")
        #expect(engine.timeToLive("fam:a") == .millis(10_000))
        clock.advance(by: .seconds(10))
        #expect(engine.cachedValue("fam:a") == nil && engine.status("fam:a")?.state == .expired)
        #expect(string(try await engine.fetch("fam:a")) == "a#2")
        #expect(fetcher.calls.withLock { $0.count } == 2)
        #expect(engine.status("fam:a")?.counters.pluginCalls == 2 && engine.status("fam:a")?.counters.hits == 5)
        let figures = try #require(engine.figures().first)
        #expect(figures.family?.keys == 1 && figures.states == [.valid: 1] && figures.counters.pluginCalls == 2)
    }

    @Test("19. concurrent fetches of an expired compact member share one call")
    func compactSingleFlight() async throws {
        let clock = ManualClock()
        let controlled = ControlledFetcher()
        let engine = Self.engine(controlled, clock: clock)
        engine.fetch("fam:a") { _ in }
        controlled.complete(value("A1", expiresIn: 1_000, clock: clock))
        #expect(string(engine.cachedValue("fam:a")) == "A1")
        clock.advance(by: .seconds(2))
        let answers = Answers()
        for _ in 0..<10 { engine.fetch("fam:a") { answers.record($0) } }
        #expect(controlled.calls == 2)
        controlled.complete(value("A2", expiresIn: 60_000, clock: clock))
        #expect(answers.all.compactMap { try? $0.get() }.compactMap(string) == Array(repeating: "A2", count: 10))
        #expect(string(engine.cachedValue("fam:a")) == "A2")
        #expect(engine.status("fam:a")?.counters.misses == 11)
    }

    @Test("19. FETCH with MINTTL on a compact member with less left makes one new call")
    func compactMinimumValidity() async throws {
        let clock = ManualClock()
        let fetcher = KeyRecordingFetcher(clock: clock, lifetime: 10_000, setsState: false)
        let engine = Self.engine(fetcher, clock: clock)
        _ = try await engine.fetch("fam:a")
        clock.advance(by: .seconds(8))
        #expect(string(try await engine.fetch("fam:a", minimumValidity: .seconds(1))) == "a#1")
        #expect(string(try await engine.fetch("fam:a", minimumValidity: .seconds(5))) == "a#2")
        #expect(fetcher.calls.withLock { $0.count } == 2)
    }

    @Test("19. max_keys holds over many compact members; the family's counts outlive the evicted ones")
    func compactEviction() async throws {
        let clock = ManualClock()
        let fetcher = KeyRecordingFetcher(clock: clock, setsState: false)
        let engine = Self.engine(fetcher, clock: clock, maxKeys: 100)
        for i in 0..<300 {
            _ = try await engine.fetch("fam:k\(i)")
            clock.advance(by: .milliseconds(1))
        }
        #expect(engine.familyInfo("fam")?.keys == 100)
        #expect(engine.familyInfo("fam")?.evictions == 200)
        #expect((0..<300).filter { engine.status("fam:k\($0)") != nil }.count == 100)
        #expect(engine.figures().first?.counters.pluginCalls == 300)
        // Sampled LRU: the newest keys mostly survive, the oldest mostly go.
        #expect((250..<300).filter { engine.status("fam:k\($0)") != nil }.count > (0..<50).filter { engine.status("fam:k\($0)") != nil }.count)
    }

    @Test("19. key_idle drops compact members unread for that long; those read stay, and all are found after removals")
    func compactIdle() async throws {
        let clock = ManualClock()
        let fetcher = KeyRecordingFetcher(clock: clock, lifetime: 3_600_000, setsState: false)
        let engine = Self.engine(fetcher, clock: clock, maxKeys: 5_000, keyIdle: .seconds(60))
        for i in 0..<2_000 { _ = try await engine.fetch("fam:k\(i)") }
        for _ in 0..<3 {
            clock.advance(by: .seconds(30))
            for i in stride(from: 0, to: 2_000, by: 2) { #expect(engine.cachedValue("fam:k\(i)") != nil) }
        }
        #expect(engine.familyInfo("fam")?.keys == 1_000)
        #expect((0..<2_000).allSatisfy { (engine.status("fam:k\($0)") != nil) == ($0 % 2 == 0) })
        #expect(fetcher.calls.withLock { $0.count } == 2_000)
    }

    @Test("19. CLEAR of a compact member drops it from the family, its counts kept in the family's; the next fetch calls")
    func compactClear() async throws {
        let clock = ManualClock()
        let fetcher = KeyRecordingFetcher(clock: clock, setsState: false)
        let engine = Self.engine(fetcher, clock: clock)
        _ = try await engine.fetch("fam:a")
        _ = engine.cachedValue("fam:a")
        #expect(engine.clear("fam:a"))
        #expect(engine.cachedValue("fam:a") == nil)
        #expect(engine.status("fam:a") == nil && engine.reportedStatus("fam:a")?.state == .empty)
        #expect(engine.timeToLive("fam:a") == .notStored)
        #expect(engine.familyInfo("fam")?.keys == 0)
        #expect(engine.figures().first?.counters.hits == 1, "the member's counts stay in the family's")
        #expect(string(try await engine.fetch("fam:a")) == "a#2")
        #expect(engine.clear("fam:nobody"), "a valid key of a family clears, held or not")
    }

    @Test("19. in a cluster, each key of a family is replicated with its own version, compact or whole")
    func compactReplication() async throws {
        let clock = ManualClock()
        let fetcher = KeyRecordingFetcher(clock: clock, setsState: false)
        let engine = Self.engine(fetcher, clock: clock, scope: .cluster)
        let replicator = RecordingReplicator()
        engine.attach(replicator)
        let clears = Mutex<[String]>([])
        engine.observeClears { name in clears.withLock { $0.append(name) } }
        _ = try await engine.fetch("fam:mine")
        #expect(replicator.stored.withLock { $0 } == ["fam:mine"])
        let peer = Version(time: 1_000, node: "peer")
        #expect(engine.applyReplica("fam:theirs", value: Secret("T1"), remainingMillis: 60_000, version: peer))
        #expect(string(engine.cachedValue("fam:theirs")) == "T1")
        #expect(!engine.applyReplica("fam:theirs", value: Secret("old"), remainingMillis: 60_000, version: Version(time: 999, node: "peer")))
        #expect(engine.version(of: "fam:theirs") == peer)
        #expect(engine.applyClear("fam:theirs", version: Version(time: 1_001, node: "peer")))
        #expect(engine.cachedValue("fam:theirs") == nil)
        #expect(!engine.applyReplica("fam:theirs", value: Secret("late"), remainingMillis: 60_000, version: peer), "older than the clear")
        #expect(engine.applyReplica("fam:theirs", value: Secret("T2"), remainingMillis: 60_000, version: Version(time: 1_002, node: "peer")))
        #expect(engine.familyInfo("fam")?.keys == 2)
        let replicas = engine.replicas().sorted { $0.name < $1.name }
        #expect(replicas.map(\.name) == ["fam:mine", "fam:theirs"])
        #expect(replicas.last?.value.map { String(decoding: $0.bytes, as: UTF8.self) } == "T2")
        #expect(replicas.first?.version == engine.version(of: "fam:mine"))
        #expect(engine.clear("fam:mine"))
        #expect(replicator.cleared.withLock { $0 } == ["fam:mine"])
        #expect(engine.familyInfo("fam")?.keys == 1, "a member cleared under a version stays, valueless, with it: not a key held")
        #expect(engine.version(of: "fam:mine") != nil)
        #expect(!engine.applyReplica("fam:mine", value: Secret("late"), remainingMillis: 60_000, version: Version(time: 1, node: "peer")),
                "a peer's value older than the local clear")
        #expect(clears.withLock { $0 } == ["fam:theirs", "fam:mine"], "a peer's clear and a local one, both told")
        #expect(fetcher.calls.withLock { $0.count } == 1, "the peer's key called no plugin here")
    }
}

/// Fails every call with a message naming the key.
struct FailingKeyFetcher: Fetcher {
    func fetch(_ request: FetchRequest, completion: @escaping @Sendable (FetchOutcome) -> Void) {
        completion(FetchOutcome(result: .failure(.fetch("no value for \(request.key ?? "-")"))))
    }
}

/// Records what the engine tells the cluster; versions count up on node "here".
final class RecordingReplicator: Replicator {
    let stored = Mutex<[String]>([])
    let cleared = Mutex<[String]>([])
    private let time = Atomic<Int64>(2_000)

    func nextVersion() -> Version { Version(time: time.add(1, ordering: .relaxed).newValue, node: "here") }
    func stored(_ name: String, _ fetched: Fetched, remainingMillis: Int64?, version: Version) { stored.withLock { $0.append(name) } }
    func cleared(_ name: String, version: Version) { cleared.withLock { $0.append(name) } }
    func mayRefresh(_ name: String) -> Bool { true }
}
