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
        ("errnull", "passed a NULL message pointer with a non-zero length to set_error"),
        ("errempty", "reported an error without a message (set_error with an empty one); it must say what failed"),
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
        let release = fixture.path("release")
        let (engine, _) = try fixture.engine("""
            [expirable.slow]
            plugin = "sleeper"
            timeout = "100ms"
            [expirable.slow.params]
            release_file = "\(release)"
            [expirable.fast]
            plugin = "echo"
            """)
        #expect(await fetchError(engine, "slow") == .timeout("plugin \(real) for slow did not answer within 100ms; raise timeout in [expirable.slow] if it needs longer, or check the plugin and what it calls"))
        // The call is still blocked: new fetches fail at once instead of starting a second call.
        for _ in 0..<5 {
            let error = await fetchError(engine, "slow")
            #expect(error?.code == .timeout)
            #expect(error?.message.contains("is still running a call started") == true)
        }
        #expect(engine.status("slow")?.counters.pluginCalls == 6)
        // Other expirables are served meanwhile.
        #expect(try await engine.fetch("fast").text == "fast")
        // Released, the hung call returns (its late result is dropped); the next fetch makes a new call, which
        // finds the release file at once, and the plugin never saw two calls at once.
        #expect(FileManager.default.createFile(atPath: release, contents: nil))
        var answer: String?
        for _ in 0..<200 where answer == nil {
            answer = try? await engine.fetch("slow").text
            if answer == nil { try await Task.sleep(for: .milliseconds(20)) }
        }
        #expect(answer == "max_concurrent=1")
    }

    @Test("an expirable's calls all run on one thread of its own, named after it")
    func callThread() async throws {
        let fixture = try PluginFixture()
        defer { fixture.remove() }
        try fixture.compile("whoami")
        let (engine, _) = try fixture.engine("[expirable.who]\nplugin = \"whoami\"\n[expirable.other]\nplugin = \"whoami\"\n")
        let first = try await engine.fetch("who").text
        engine.clear("who")
        let second = try await engine.fetch("who").text
        let other = try await engine.fetch("other").text
        #expect(first.hasSuffix(" comm=plugin:who"))
        #expect(first == second, "a second call ran on another thread")
        #expect(other.hasSuffix(" comm=plugin:other"))
        #expect(other.prefix { $0 != " " } != first.prefix { $0 != " " }, "two expirables shared a thread")
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
