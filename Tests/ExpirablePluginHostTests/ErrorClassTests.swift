import ExpirableABI
import ExpirableCore
@_spi(Testing) import ExpirablePluginHost
import ExpirableTestSupport
import Foundation
import Testing

/// ABI 1.1 (SPEC §3.18, §5): a plugin classifies its error and may name a retry-after; 1.0 plugins keep working.
@Suite("Plugin error classes (ABI 1.1)")
struct ErrorClassTests {
    static let modes = ["inline", "process"]

    static func expirable(_ name: String, plugin: String = "classified", _ params: String = "") -> String {
        "[expirable.\(name)]\nplugin = \"\(plugin)\"\n[expirable.\(name).params]\n\(params)\n"
    }

    @Test("a permanent error with a retry-after reaches the engine with both, in either mode", arguments: modes)
    func classified(isolation: String) async throws {
        let fixture = try PluginFixture()
        defer { fixture.remove() }
        try fixture.compile("classified")
        let (engine, host) = try fixture.engine(Self.expirable("x", "class = 1\nretry_after_s = 30"), isolation: isolation)
        defer { host.shutdown() }
        let before = SystemClock().unixMillis
        let error = try #require(await fetchError(engine, "x"))
        #expect(error.code == .fetch)
        // The retry-after's time is told to the caller too (SPEC §3.18).
        #expect(error.message.hasPrefix("classified failure (next attempt in "), "\(error.message)")
        #expect(error.errorClass == .permanent)
        let retryAfter = try #require(error.retryAfter)
        #expect(retryAfter >= before + 29_000 && retryAfter <= SystemClock().unixMillis + 30_000, "\(retryAfter - before) ms")
        #expect(engine.status("x")?.lastErrorClass == .permanent)
    }

    @Test("an error classified EXPIRABLE_ERROR_TIMEOUT (ABI 1.3: the plugin gave up on its own deadline) is a TIMEOUT with the plugin's message, in either mode", arguments: modes)
    func timeoutClass(isolation: String) async throws {
        let fixture = try PluginFixture()
        defer { fixture.remove() }
        try fixture.compile("classified")
        let (engine, host) = try fixture.engine(Self.expirable("x", "class = 2"), isolation: isolation)
        defer { host.shutdown() }
        let error = try #require(await fetchError(engine, "x"))
        #expect(error.code == .timeout)
        #expect(error.message == "classified failure")
        #expect(error.errorClass == .temporary)
    }

    @Test("a retry-after is held to one hour from now", arguments: modes)
    func retryAfterBounded(isolation: String) async throws {
        let fixture = try PluginFixture()
        defer { fixture.remove() }
        try fixture.compile("classified")
        let (engine, host) = try fixture.engine(Self.expirable("x", "class = 0\nretry_after_s = 100000000"), isolation: isolation)
        defer { host.shutdown() }
        let before = SystemClock().unixMillis
        let error = try #require(await fetchError(engine, "x"))
        let after = SystemClock().unixMillis
        #expect(error.errorClass == .temporary)
        let retryAfter = try #require(error.retryAfter)
        #expect(retryAfter >= before + 3_600_000 && retryAfter <= after + 3_600_000, "clamped to an hour after the call")
    }

    @Test("an unknown class, or a second classification, is a malformed result naming the plugin", arguments: modes)
    func malformed(isolation: String) async throws {
        let fixture = try PluginFixture()
        defer { fixture.remove() }
        let real = URL(fileURLWithPath: try fixture.compile("classified")).resolvingSymlinksInPath().path
        let (engine, host) = try fixture.engine(
            Self.expirable("unknown", "class = 7") + Self.expirable("twice", "class = 1\ntwice = true"), isolation: isolation
        )
        defer { host.shutdown() }
        #expect(await fetchError(engine, "unknown")?.message == "plugin \(real) classified its error as 7; expected EXPIRABLE_ERROR_TEMPORARY (0), EXPIRABLE_ERROR_PERMANENT (1) or EXPIRABLE_ERROR_TIMEOUT (2)")
        #expect(await fetchError(engine, "twice")?.message == "plugin \(real) classified its error 2 times; call classify_error at most once")
    }

    @Test("an error nobody classified is temporary with no retry-after", arguments: modes)
    func unclassified(isolation: String) async throws {
        let fixture = try PluginFixture()
        defer { fixture.remove() }
        try fixture.compile("classified")
        let (engine, host) = try fixture.engine(Self.expirable("x"), isolation: isolation)
        defer { host.shutdown() }
        let error = try #require(await fetchError(engine, "x"))
        #expect(error.errorClass == .temporary)
        #expect(error.retryAfter == nil)
    }

    @Test("a 1.0 plugin built against the 1.0 header still loads and runs, in either mode", arguments: modes)
    func abi10(isolation: String) async throws {
        let fixture = try PluginFixture()
        defer { fixture.remove() }
        let old = TestPaths.fixtures.appendingPathComponent("abi-1.0").path
        try compileTestPlugin("counter", into: fixture.pluginDir.path, as: "counter10", headerDirectory: old)
        try compileTestPlugin("failing", into: fixture.pluginDir.path, as: "failing10", headerDirectory: old)
        let (engine, host) = try fixture.engine(
            Self.expirable("good", plugin: "counter10") + Self.expirable("bad", plugin: "failing10", "message = \"old failure\""),
            isolation: isolation
        )
        defer { host.shutdown() }
        #expect(try await engine.fetch("good").text == "v1")
        let error = try #require(await fetchError(engine, "bad"))
        #expect(error.message == "old failure")
        #expect(error.errorClass == .temporary)
    }

    @Test("a plugin built for a newer minor version than the host's is refused, naming both versions")
    func newerMinor() throws {
        let fixture = try PluginFixture()
        defer { fixture.remove() }
        let real = URL(fileURLWithPath: try fixture.compile("newminor")).resolvingSymlinksInPath().path
        let refusal = try #require(try fixture.refusal(Self.expirable("x", plugin: "newminor")))
        let minor = EXPIRABLE_ABI_MINOR
        #expect(refusal.contains("plugin \(real) was built for plugin ABI 1.\(minor + 1), newer than this daemon's ABI 1.\(minor)"), "\(refusal)")
    }
}
