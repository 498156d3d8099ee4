import ExpirableCore
import Synchronization
import Testing

/// SPEC §10: a reload that changes an expirable's settings but not its plugin or params keeps its value, and the
/// new settings apply to it from then on.
@Suite("Reload keeping values")
struct ReloadKeepingValuesTests {
    static func definition(_ harness: Harness, refresh: RefreshPolicy = .lazy, freshness: FreshnessPolicy = FreshnessPolicy()) -> ExpirableDefinition {
        ExpirableDefinition(name: "token", refresh: refresh, freshness: freshness, fetcher: harness.fetcher)
    }

    @Test("a call under way when its value is kept answers its callers, and its value is stored under the new settings")
    func callUnderWayMoves() throws {
        let h = Harness()
        let first = h.startFetch()
        #expect(h.fetcher.outstanding == 1)
        let report = h.engine.reload([Self.definition(h, freshness: FreshnessPolicy(staleIfError: .seconds(60)))], unchanged: [], keepingValues: ["token"])
        #expect(report.keptValues == ["token"] && report.changed == ["token"])
        // A caller arriving after the reload shares the call started before it.
        let second = h.startFetch()
        #expect(h.fetcher.calls == 1)
        h.fetcher.complete(value("v1", expiresIn: 60_000, clock: h.clock))
        #expect(string(first.fetched) == "v1")
        #expect(string(second.fetched) == "v1")
        #expect(string(h.engine.cachedValue("token")) == "v1", "stored in the new entry")
        #expect(h.fetcher.calls == 1)
    }

    @Test("the new expiry_margin judges the kept value")
    func marginJudgesKeptValue() throws {
        let h = Harness()
        _ = h.startFetch()
        h.fetcher.complete(value("v1", expiresIn: 30_000, clock: h.clock))
        _ = h.engine.reload([Self.definition(h, freshness: FreshnessPolicy(expiryMargin: .seconds(10)))], unchanged: [], keepingValues: ["token"])
        #expect(string(h.engine.cachedValue("token")) == "v1", "30 s left, 10 s margin: still valid")
        h.clock.advance(by: .seconds(21))
        #expect(h.engine.cachedValue("token") == nil, "9 s left is within the margin")
        #expect(h.fetcher.calls == 1)
    }

    @Test("lazy to eager schedules a refresh of the kept value; eager to lazy stops it")
    func refreshPolicyChanges() throws {
        let h = Harness()
        _ = h.startFetch()
        h.fetcher.complete(value("v1", expiresIn: 60_000, clock: h.clock))
        _ = h.engine.reload([Self.definition(h, refresh: .eager(beforeExpiry: .seconds(20)))], unchanged: [], keepingValues: ["token"])
        h.clock.advance(by: .seconds(39))
        #expect(h.fetcher.calls == 1)
        h.clock.advance(by: .seconds(2))
        #expect(h.fetcher.calls == 2, "refreshed 20 s before expiry")
        h.fetcher.complete(value("v2", expiresIn: 60_000, clock: h.clock))
        #expect(string(h.engine.cachedValue("token")) == "v2")
        _ = h.engine.reload([Self.definition(h)], unchanged: [], keepingValues: ["token"])
        h.clock.advance(by: .seconds(59))
        #expect(h.fetcher.calls == 2, "no refresh once lazy")
        #expect(string(h.engine.cachedValue("token")) == "v2")
    }

    @Test("18. a changed configuration lifts a permanent failure's stop on eager retries: the kept value is refreshed again")
    func permanentFailureLiftedByChange() throws {
        let eager = RefreshPolicy.eager(beforeExpiry: .seconds(20))
        let h = Harness(refresh: eager)
        _ = h.startFetch()
        h.fetcher.complete(value("v1", expiresIn: 30_000, clock: h.clock))
        h.clock.advance(by: .seconds(10))
        #expect(h.fetcher.calls == 2, "the eager refresh")
        h.fetcher.complete(.failure(.fetch("invalid_grant", class: .permanent)))
        #expect(h.clock.pendingTimers == 0, "a permanent error stops eager retries")
        let report = h.engine.reload([Self.definition(h, refresh: eager, freshness: FreshnessPolicy(retryInterval: .seconds(2)))], unchanged: [],
                                     keepingValues: ["token"])
        #expect(report.keptValues == ["token"])
        #expect(h.engine.status("token")?.nextRefreshInMillis != nil, "a refresh is scheduled under the new configuration")
        h.clock.advance(by: .seconds(5))
        #expect(h.fetcher.calls == 3, "the new configuration is tried in the background while the value lasts")
        try #require(h.fetcher.outstanding == 1)
        h.fetcher.complete(value("v2", expiresIn: 30_000, clock: h.clock))
        #expect(string(h.engine.cachedValue("token")) == "v2")
    }

    @Test("a reload that does not keep the value starts empty")
    func notKeptStartsEmpty() throws {
        let h = Harness()
        _ = h.startFetch()
        h.fetcher.complete(value("v1", expiresIn: 60_000, clock: h.clock))
        let report = h.engine.reload([Self.definition(h, freshness: FreshnessPolicy(staleIfError: .seconds(60)))], unchanged: [])
        #expect(report.keptValues.isEmpty && report.startingEmpty == ["token"])
        #expect(h.engine.cachedValue("token") == nil)
    }
}

/// A fetcher that records the plugin state each call was given and holds its calls until the test completes them,
/// each setting the state it is told to.
final class StateHoldingFetcher: Fetcher {
    let states = Mutex<[String?]>([])
    private let pending = Mutex<[@Sendable (FetchOutcome) -> Void]>([])
    let clock: ManualClock

    init(clock: ManualClock) { self.clock = clock }

    func fetch(_ request: FetchRequest, completion: @escaping @Sendable (FetchOutcome) -> Void) {
        states.withLock { $0.append(request.state.map { String(decoding: $0.bytes, as: UTF8.self) }) }
        pending.withLock { $0.append(completion) }
    }

    /// Completes the oldest held call with a value and the new state `state`.
    func complete(setting state: String) {
        let completion = pending.withLock { $0.removeFirst() }
        completion(FetchOutcome(result: value("v-\(state)", expiresIn: 60_000, clock: clock), state: .set(Secret(state))))
    }
}

/// SPEC §3.20 across a reload: the plugin's state (a rotated refresh token) belongs to the identity provider, not to
/// the plugin instance a reload replaces.
@Suite("Reload keeping plugin states")
struct ReloadKeepingStatesTests {
    @Test("a changed expirable that starts empty keeps its plugin state, and a call under way on the old entry hands its new state on")
    func stateCarriedOver() throws {
        let clock = ManualClock()
        let old = StateHoldingFetcher(clock: clock)
        let engine = Engine(expirables: [ExpirableDefinition(name: "token", fetcher: old)], clock: clock)
        engine.fetch("token") { _ in }
        old.complete(setting: "s1")
        #expect(engine.clear("token"))
        engine.fetch("token") { _ in }
        #expect(old.states.withLock { $0 } == [nil, "s1"])

        // New params: a new fetcher (instance), an empty entry; the call under way on the old one rotates after.
        let new = StateHoldingFetcher(clock: clock)
        let report = engine.reload([ExpirableDefinition(name: "token", fetcher: new)], unchanged: [])
        #expect(report.startingEmpty == ["token"] && report.keptStates == ["token"])
        #expect(report.description.contains("token (new plugin instance, starts empty; plugin state kept)"), "\(report.description)")
        #expect(engine.hasPluginState("token"))
        old.complete(setting: "s2")
        engine.fetch("token") { _ in }
        #expect(new.states.withLock { $0 } == ["s2"], "the new instance's first call has the state the last call set")
        new.complete(setting: "s3")

        // Removed, then added back: without a state keeper (no state_dir) it starts without a state.
        _ = engine.reload([], unchanged: [])
        let again = StateHoldingFetcher(clock: clock)
        let added = engine.reload([ExpirableDefinition(name: "token", fetcher: again)], unchanged: [])
        #expect(added.added == ["token"] && added.keptStates.isEmpty)
        #expect(!engine.hasPluginState("token"))
    }
}
