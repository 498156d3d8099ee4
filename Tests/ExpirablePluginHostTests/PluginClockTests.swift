import ExpirableCore
@_spi(Testing) import ExpirablePluginHost
import ExpirableTestSupport
import Foundation
import Testing

/// The plugin host measures calls' timeouts and helpers' restart backoff on the engine's clock, so both are
/// tested here by moving a ManualClock, never by waiting for them to pass; and its plugins read that clock's
/// wall time through `now_ms`, each host its own.
@Suite("Plugins on the engine's clock")
struct PluginClockTests {
    /// Polls `body` every 5 ms for at most 10 s of real time: for what another thread or process does.
    static func soon(_ body: () -> Bool) async throws -> Bool {
        for _ in 0..<2000 {
            if body() { return true }
            try await Task.sleep(for: .milliseconds(5))
        }
        return body()
    }

    static func fact(_ host: PluginHost, _ name: String, _ key: String) -> String? {
        host.info(name).first { $0.0 == key }?.1
    }

    /// How far past its host's wall clock a plugin's reading may be: none inline; a helper's clock starts where
    /// its host's stands and then runs in real time, which a ManualClock does not: at most the real time since
    /// `since`, taken before the host started its helper.
    static func slack(_ isolation: String, since: ContinuousClock.Instant) -> Int64 {
        isolation == "inline" ? 0 : (ContinuousClock.now - since).milliseconds + 1
    }

    static func expiresAt(_ fetched: Fetched) -> Int64? {
        guard case .at(let unixMillis) = fetched.expiry else { return nil }
        return unixMillis
    }

    @Test("two hosts in one process each give their plugins their own clock's wall time through now_ms, during concurrent calls, in either mode",
          arguments: ["inline", "process"])
    func nowOnEachHostsClock(isolation: String) async throws {
        let fixture = try PluginFixture()
        defer { fixture.remove() }
        try fixture.compile("sleeper")
        try fixture.compile("hello")
        let started = fixture.path("started")
        let early = ManualClock(unixMillis: 1_700_000_000_000)
        let late = ManualClock(unixMillis: 2_000_000_000_000)
        let began = ContinuousClock.now
        let (earlyEngine, earlyHost) = try fixture.engine("""
            [expirable.slow]
            plugin = "sleeper"
            [expirable.slow.params]
            release_file = "\(fixture.path("release"))"
            started_file = "\(started)"
            """, isolation: isolation, clock: early)
        defer { earlyHost.shutdown() }
        let (lateEngine, lateHost) = try fixture.engine("[expirable.greeting]\nplugin = \"hello\"\n", isolation: isolation, clock: late)
        defer { lateHost.shutdown() }
        // The early host's call is under way while the late host's runs; the sleeper reads now_ms once released.
        let slow = Task { try await earlyEngine.fetch("slow") }
        #expect(try await Self.soon { FileManager.default.fileExists(atPath: started) })
        let greeting = try #require(Self.expiresAt(try await lateEngine.fetch("greeting")))
        #expect(FileManager.default.createFile(atPath: fixture.path("release"), contents: nil))
        let value = try #require(Self.expiresAt(try await slow.value))
        let hour: Int64 = 3_600_000
        #expect((late.unixMillis + hour...late.unixMillis + hour + Self.slack(isolation, since: began)).contains(greeting),
                "hello's now_ms + 1 h is \(greeting - late.unixMillis - hour) ms off its host's clock")
        #expect((early.unixMillis + 60_000...early.unixMillis + 60_000 + Self.slack(isolation, since: began)).contains(value),
                "sleeper's now_ms + 60 s is \(value - early.unixMillis - 60_000) ms off its host's clock")
    }

    @Test("a plugin's retry-after is taken, and held to an hour from now, on its host's clock, in either mode", arguments: ["inline", "process"])
    func retryAfterOnTheHostsClock(isolation: String) async throws {
        let fixture = try PluginFixture()
        defer { fixture.remove() }
        try fixture.compile("classified")
        // Years ahead of the machine's clock: an hour from the machine's "now" would cut a retry-after short.
        let clock = ManualClock(unixMillis: 2_000_000_000_000)
        let began = ContinuousClock.now
        let (engine, host) = try fixture.engine("""
            [expirable.soon]
            plugin = "classified"
            [expirable.soon.params]
            class = 1
            retry_after_s = 30
            [expirable.far]
            plugin = "classified"
            [expirable.far.params]
            class = 1
            retry_after_s = 100000000
            """, isolation: isolation, clock: clock)
        defer { host.shutdown() }
        let soon = try #require(await fetchError(engine, "soon")?.retryAfter)
        #expect((clock.unixMillis + 30_000...clock.unixMillis + 30_000 + Self.slack(isolation, since: began)).contains(soon),
                "\(soon - clock.unixMillis) ms from now")
        #expect(await fetchError(engine, "far")?.retryAfter == clock.unixMillis + 3_600_000)
    }

    @Test("a call's timeout fires when the engine's clock passes it, in either mode, and not before", arguments: ["inline", "process"])
    func timeoutOnTheClock(isolation: String) async throws {
        let fixture = try PluginFixture()
        defer { fixture.remove() }
        let real = URL(fileURLWithPath: try fixture.compile("sleeper")).resolvingSymlinksInPath().path
        let started = fixture.path("started")
        let clock = ManualClock()
        let (engine, host) = try fixture.engine("""
            [expirable.slow]
            plugin = "sleeper"
            timeout = "30s"
            [expirable.slow.params]
            release_file = "\(fixture.path("release"))"
            started_file = "\(started)"
            """, isolation: isolation, clock: clock)
        defer { host.shutdown() }
        let call = Task { await fetchError(engine, "slow") }
        #expect(try await Self.soon { FileManager.default.fileExists(atPath: started) }, "the plugin call started")
        clock.advance(by: .seconds(29))
        #expect(clock.pendingTimers == 1, "the timeout waits for its time on the clock")
        clock.advance(by: .seconds(1))
        let error = await call.value
        #expect(error?.code == .timeout)
        #expect(error?.message == "plugin \(real) for slow did not answer within 30000ms; raise timeout in [expirable.slow] if it needs longer, or check the plugin and what it calls", "\(String(describing: error))")
        #expect(clock.pendingTimers == 0)
        FileManager.default.createFile(atPath: fixture.path("release"), contents: nil)
    }

    @Test("a finished call cancels its timeout timer: nothing is left pending to hold memory", arguments: ["inline", "process"])
    func timerCancelled(isolation: String) async throws {
        let fixture = try PluginFixture()
        defer { fixture.remove() }
        try fixture.compile("counter")
        let clock = ManualClock()
        let (engine, host) = try fixture.engine("""
            [expirable.quick]
            plugin = "counter"
            """, isolation: isolation, clock: clock)
        defer { host.shutdown() }
        for n in 1...20 {
            #expect(try await engine.fetch("quick").text == "v\(n)")
            engine.clear("quick")
        }
        #expect(clock.pendingTimers == 0)
    }

    @Test("a helper killed for a timeout is restarted only after its backoff on the clock: 1 s, then 2 s while it keeps failing")
    func backoffOnTheClock() async throws {
        let fixture = try PluginFixture()
        defer { fixture.remove() }
        try fixture.compile("sleeper")
        let started = fixture.path("started")
        let release = fixture.path("release")
        let clock = ManualClock()
        // A long timeout: the helper's own kernel timer (the timeout plus 250 ms, in real time) must not fire
        // while the test moves the manual clock, however slowly a loaded machine runs it.
        let (engine, host) = try fixture.engine("""
            [expirable.slow]
            plugin = "sleeper"
            timeout = "60s"
            [expirable.slow.params]
            release_file = "\(release)"
            started_file = "\(started)"
            """, isolation: "process", clock: clock)
        defer { host.shutdown() }
        let first = try #require(Self.fact(host, "slow", "helper_pid"))
        let call = Task { await fetchError(engine, "slow") }
        #expect(try await Self.soon { FileManager.default.fileExists(atPath: started) })
        clock.advance(by: .seconds(60))
        #expect(await call.value?.code == .timeout)
        #expect(try await Self.soon { Self.fact(host, "slow", "helper_pid") == "none" }, "the hung helper \(first) was killed and reaped")
        // Within the backoff, the death is the answer at once and no helper starts, however long real time runs.
        let death = await fetchError(engine, "slow")
        #expect(death?.message.hasPrefix("plugin for slow was killed with its helper (pid \(first)) after a call outlived its timeout of 60000ms; the first call after 1s") == true, "\(String(describing: death))")
        #expect(death?.code == .timeout, "a caller in the backoff gets TIMEOUT, as the call that timed out did")
        #expect(Self.fact(host, "slow", "helper_pid") == "none")
        // A second hang after the first restart doubles the backoff.
        clock.advance(by: .seconds(1))
        try FileManager.default.removeItem(atPath: started)
        let again = Task { await fetchError(engine, "slow") }
        #expect(try await Self.soon { FileManager.default.fileExists(atPath: started) })
        let second = try #require(Self.fact(host, "slow", "helper_pid"))
        #expect(second != first && second != "none")
        clock.advance(by: .seconds(60))
        #expect(await again.value?.code == .timeout)
        #expect(try await Self.soon { Self.fact(host, "slow", "helper_pid") == "none" })
        #expect(await fetchError(engine, "slow")?.message.contains("the first call after 2s starts its helper again") == true)
        clock.advance(by: .seconds(1))
        #expect(await fetchError(engine, "slow")?.message.contains("after 2s") == true, "1 s of the 2 s backoff is not enough")
        // Released and past the backoff, a third helper answers and INFO counts two restarts.
        FileManager.default.createFile(atPath: release, contents: nil)
        clock.advance(by: .seconds(1))
        #expect(try await engine.fetch("slow").text == "max_concurrent=1")
        #expect(Self.fact(host, "slow", "helper_restarts") == "2")
    }
}
