import ExpirableCore
@_spi(Testing) import ExpirablePluginHost
import ExpirableTestSupport
import Foundation
import Synchronization
import Testing

/// ABI 1.2 at the plugin host (SPEC §3.19–20, §5): a call receives its key and the previous state, and gives a
/// new state back, inline and across a helper's socket alike.
@Suite("Plugin keys and state (ABI 1.2)")
struct StateTests {
    static let modes = ["inline", "process"]

    /// One call of `name`'s fetcher with `request`, waited for.
    static func call(_ host: PluginHost, _ name: String, _ request: FetchRequest) async throws -> FetchOutcome {
        let fetcher = try #require(host.definitions.first { $0.name == name }?.fetcher)
        return await withCheckedContinuation { continuation in
            fetcher.fetch(request) { continuation.resume(returning: $0) }
        }
    }

    static func text(_ change: StateChange) -> String {
        switch change {
        case .keep: "keep"
        case .clear: "clear"
        case .set(let secret): "set " + String(decoding: secret.bytes, as: UTF8.self)
        }
    }

    static func expirable(_ name: String, mode: String = "") -> String {
        "[expirable.\(name)]\nplugin = \"stateful\"\n[expirable.\(name).params]\nmode = \"\(mode)\"\n"
    }

    @Test("the key and the previous state reach the plugin, and its new state comes back", arguments: modes)
    func roundTrip(isolation: String) async throws {
        let fixture = try PluginFixture()
        defer { fixture.remove() }
        try fixture.compile("stateful")
        let (_, host) = try fixture.engine(Self.expirable("x"), isolation: isolation)
        defer { host.shutdown() }
        let first = try await Self.call(host, "x", FetchRequest())
        #expect(try first.result.get().text == "key= state=")
        #expect(Self.text(first.state) == "set s")
        let second = try await Self.call(host, "x", FetchRequest(key: "tenant-7", state: Secret("rt-41")))
        #expect(try second.result.get().text == "key=tenant-7 state=rt-41")
        #expect(Self.text(second.state) == "set rt-41+")
    }

    @Test("a state set with an error still comes back; an empty one clears it", arguments: modes)
    func stateWithError(isolation: String) async throws {
        let fixture = try PluginFixture()
        defer { fixture.remove() }
        try fixture.compile("stateful")
        let (_, host) = try fixture.engine(Self.expirable("failing", mode: "error") + Self.expirable("clearing", mode: "clear"), isolation: isolation)
        defer { host.shutdown() }
        let failed = try await Self.call(host, "failing", FetchRequest(state: Secret("rt-1")))
        #expect(throws: ExpirableError.self) { try failed.result.get() }
        #expect(Self.text(failed.state) == "set rt-1+", "the identity provider consumed rt-1: its successor is kept")
        let cleared = try await Self.call(host, "clearing", FetchRequest(state: Secret("rt-1")))
        #expect(Self.text(cleared.state) == "clear")
    }

    @Test("inline, a call that outlives its timeout keeps the state it set though its callers got TIMEOUT: the next call starts from it")
    func lateStateKept() async throws {
        let fixture = try PluginFixture()
        defer { fixture.remove() }
        try fixture.compile("stateful")
        let clock = ManualClock()
        let (engine, host) = try fixture.engine("""
            [expirable.rt]
            plugin = "stateful"
            timeout = "5s"
            retry_interval = "10ms"
            [expirable.rt.params]
            sleep_ms = "1000"
            """, clock: clock)
        defer { host.shutdown() }
        let first = Task { await fetchError(engine, "rt") }
        // The call is under way once its timeout timer is set; the clock then passes it while the plugin sleeps.
        #expect(try await PluginClockTests.soon { clock.pendingTimers == 1 })
        clock.advance(by: .seconds(5))
        let error = await first.value
        // Until the late call returns, fetches get TIMEOUT at once; then one starts from the state it set.
        var answer = ""
        for _ in 0..<400 where answer.isEmpty {
            clock.advance(by: .seconds(1))
            if let value = try? await engine.fetch("rt") { answer = value.text } else { try await Task.sleep(for: .milliseconds(25)) }
        }
        #expect(answer == "key= state=s", "first call: \(String(describing: error))")
    }

    @Test("a state over the limit, or set twice, is a malformed result that leaves the state as it was", arguments: modes)
    func malformedState(isolation: String) async throws {
        let fixture = try PluginFixture()
        defer { fixture.remove() }
        let real = URL(fileURLWithPath: try fixture.compile("stateful")).resolvingSymlinksInPath().path
        let (_, host) = try fixture.engine(Self.expirable("big", mode: "oversized") + Self.expirable("twice", mode: "twice"), isolation: isolation)
        defer { host.shutdown() }
        let big = try await Self.call(host, "big", FetchRequest(state: Secret("rt-1")))
        #expect(big.result.failureMessage == "plugin \(real) set a state of 65537 bytes, over the limit of 65536")
        #expect(Self.text(big.state) == "keep")
        let twice = try await Self.call(host, "twice", FetchRequest(state: Secret("rt-1")))
        #expect(twice.result.failureMessage == "plugin \(real) set its state 2 times; call set_state at most once per call")
        #expect(Self.text(twice.state) == "keep")
    }
}

extension Result where Failure == ExpirableError {
    var failureMessage: String? {
        if case .failure(let error) = self { return error.message }
        return nil
    }
}
