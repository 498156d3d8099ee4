import ExpirableCore
import ExpirablePluginHost
import Foundation
import Testing

@Suite("Plugin calls")
struct PluginCallTests {
    @Test("a plugin's error reaches the caller as FETCH with its message, and is not kept")
    func pluginError() async throws {
        let fixture = try PluginFixture()
        defer { fixture.remove() }
        try fixture.compile("failing")
        let (engine, _) = try fixture.engine("[expirable.x]\nplugin = \"failing\"\n[expirable.x.params]\nmessage = \"token endpoint said 401\"\n")
        #expect(await fetchError(engine, "x") == .fetch("token endpoint said 401"))
        #expect(await fetchError(engine, "x") == .fetch("token endpoint said 401"))
        #expect(engine.status("x")?.counters.pluginCalls == 2)
    }

    @Test("malformed results are clear errors", arguments: [
        ("both", "reported 2 results (a value and an error, or several of either); it must call set_value or set_error exactly once"),
        ("none", "returned neither a value nor an error; it must call set_value or set_error"),
        ("negative", "returned a negative expires_at (-5); expected Unix milliseconds or EXPIRABLE_NEVER_EXPIRES"),
        ("huge", "returned a value of 1048577 bytes, over the limit of 1048576"),
        ("nullptr", "passed a NULL value pointer with a non-zero length"),
    ])
    func malformed(mode: String, reason: String) async throws {
        let fixture = try PluginFixture()
        defer { fixture.remove() }
        let real = URL(fileURLWithPath: try fixture.compile("malformed")).resolvingSymlinksInPath().path
        let (engine, _) = try fixture.engine("[expirable.x]\nplugin = \"malformed\"\n[expirable.x.params]\nmode = \"\(mode)\"\n")
        #expect(await fetchError(engine, "x") == .fetch("plugin \(real) \(reason)"))
        #expect(engine.status("x")?.state == .empty)
    }

    @Test("a hung plugin yields TIMEOUT, holds at most one call, and the daemon carries on")
    func hungPlugin() async throws {
        let fixture = try PluginFixture()
        defer { fixture.remove() }
        let real = URL(fileURLWithPath: try fixture.compile("sleeper")).resolvingSymlinksInPath().path
        try fixture.compile("echo")
        let (engine, _) = try fixture.engine("""
            [expirable.slow]
            plugin = "sleeper"
            timeout = "100ms"
            [expirable.slow.params]
            sleep_ms = 1500
            [expirable.fast]
            plugin = "echo"
            """)
        #expect(await fetchError(engine, "slow") == .timeout("plugin \(real) for slow did not answer within 100ms"))
        // The call is still running: new fetches fail at once instead of starting a second call.
        for _ in 0..<5 {
            let error = await fetchError(engine, "slow")
            #expect(error?.code == .timeout)
            #expect(error?.message.contains("is still running a call started") == true)
        }
        // Other expirables are served meanwhile.
        #expect(try await engine.fetch("fast").text == "fast")
        // Once the hung call returns, the next fetch makes a new call (its result comes too late for the
        // 100 ms timeout), and the plugin never saw two calls at once.
        var spins = 0
        while engine.status("slow")?.lastError?.contains("still running") == true || spins == 0 {
            try await Task.sleep(for: .milliseconds(100))
            _ = await fetchError(engine, "slow")
            spins += 1
            if spins > 100 { break }
        }
        #expect(spins < 100)
        #expect(engine.status("slow")?.counters.pluginCalls ?? 0 >= 2)
    }

    @Test("the sleeper plugin reports no concurrent calls on one instance when callers pile up")
    func noConcurrentCalls() async throws {
        let fixture = try PluginFixture()
        defer { fixture.remove() }
        try fixture.compile("sleeper")
        let (engine, _) = try fixture.engine("[expirable.slow]\nplugin = \"sleeper\"\ntimeout = \"5s\"\n[expirable.slow.params]\nsleep_ms = 200\n")
        let results = await withTaskGroup(of: String?.self) { group in
            for _ in 0..<50 { group.addTask { try? await engine.fetch("slow").text } }
            return await group.reduce(into: [String?]()) { $0.append($1) }
        }
        #expect(results.allSatisfy { $0 == "max_concurrent=1" })
        #expect(engine.status("slow")?.counters.pluginCalls == 1)
    }
}
