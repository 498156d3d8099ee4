import ExpirableCore
@_spi(Testing) import ExpirablePluginHost
import ExpirableTestSupport
import Foundation
import Testing

/// The plugin host measures calls' timeouts and helpers' restart backoff on the engine's clock, so both are
/// tested here by moving a ManualClock, never by waiting for them to pass.
@Suite("Plugin timeouts on the engine's clock")
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
        #expect(error?.message == "plugin \(real) for slow did not answer within 30000ms", "\(String(describing: error))")
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
