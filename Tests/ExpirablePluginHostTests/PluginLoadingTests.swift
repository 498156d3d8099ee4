import ExpirableABI
import ExpirableCore
import ExpirablePluginHost
import ExpirableTestSupport
import Foundation
import Testing

@Suite("Plugin loading")
struct PluginLoadingTests {
    @Test("a C plugin compiled with nothing but cc and expirable.h is loaded and called")
    func plainCPlugin() async throws {
        let fixture = try PluginFixture()
        defer { fixture.remove() }
        try fixture.compile("counter")
        // An hour: the second fetch must find the first value valid however long a loaded suite keeps this task
        // waiting for a thread between the two.
        let (engine, host) = try fixture.engine("[expirable.token]\nplugin = \"counter\"\n[expirable.token.params]\nprefix = \"tok-\"\nttl_ms = 3600000\n")
        defer { host.shutdown() }
        let before = SystemClock().unixMillis
        let first = try await engine.fetch("token")
        let after = SystemClock().unixMillis
        #expect(first.text == "tok-1")
        guard case .at(let expiresAt) = first.expiry else {
            Issue.record("expected a finite expiry")
            return
        }
        #expect((before + 3_600_000...after + 3_600_000).contains(expiresAt))
        #expect(try await engine.fetch("token").text == "tok-1")
    }

    @Test("the minimal plugin of docs/plugin-abi.md builds with cc and answers")
    func documentedMinimalPlugin() async throws {
        let fixture = try PluginFixture()
        defer { fixture.remove() }
        try fixture.compile("hello")
        let (engine, _) = try fixture.engine("[expirable.greeting]\nplugin = \"hello\"\n")
        #expect(try await engine.fetch("greeting").text == "hello")
        let doc = try String(contentsOf: PluginFixture.repository.appendingPathComponent("docs/plugin-abi.md"), encoding: .utf8)
        let source = try String(contentsOf: PluginFixture.fixtures.appendingPathComponent("hello.c"), encoding: .utf8)
        #expect(doc.contains(source), "docs/plugin-abi.md must show Fixtures/hello.c verbatim")
    }

    @Test("params reach the plugin as key/value pairs, arrays as one pair per element")
    func paramsReachPlugin() async throws {
        let fixture = try PluginFixture()
        defer { fixture.remove() }
        try fixture.compile("echo")
        let (engine, _) = try fixture.engine("""
            [expirable.echoed]
            plugin = "echo"
            [expirable.echoed.params]
            client_id = "abc"
            argv = ["curl", "-s"]
            retries = 3
            """)
        #expect(try await engine.fetch("echoed").text == "echoed|argv=curl|argv=-s|client_id=abc|retries=3")
        #expect(try await engine.fetch("echoed").expiry == .never)
    }

    @Test("each expirable gets its own plugin instance, destroyed at shutdown")
    func instances() async throws {
        let fixture = try PluginFixture()
        defer { fixture.remove() }
        try fixture.compile("counter")
        let destroyed = fixture.path("destroyed")
        let (engine, host) = try fixture.engine("""
            [expirable.a]
            plugin = "counter"
            [expirable.a.params]
            prefix = "a"
            ttl_ms = -1
            destroy_file = "\(destroyed)"
            [expirable.b]
            plugin = "counter"
            [expirable.b.params]
            prefix = "b"
            ttl_ms = -1
            """)
        #expect(try await engine.fetch("a").text == "a1")
        #expect(try await engine.fetch("a").text == "a2")
        #expect(try await engine.fetch("b").text == "b1")
        #expect(!FileManager.default.fileExists(atPath: destroyed))
        host.shutdown()
        #expect(try String(contentsOfFile: destroyed, encoding: .utf8) == "destroyed")
    }

    static let plugin = "[expirable.x]\nplugin = \"bad\"\n"

    @Test("a plugin with the wrong magic is refused with the file and both magics")
    func badMagic() throws {
        let fixture = try PluginFixture()
        defer { fixture.remove() }
        let path = try fixture.compile("badmagic")
        try FileManager.default.moveItem(atPath: path, toPath: fixture.pluginDir.appendingPathComponent("libbad.so").path)
        let real = fixture.pluginDir.resolvingSymlinksInPath().appendingPathComponent("libbad.so").path
        #expect(try fixture.refusal(Self.plugin) == "expirable.x: plugin \(real) is not an Expirable plugin: its handshake gave magic 0x12345678, expected 0x45585052; build it against expirable.h")
    }

    @Test("a plugin for another major version is refused with the file and both versions")
    func wrongMajor() throws {
        let fixture = try PluginFixture()
        defer { fixture.remove() }
        let path = try fixture.compile("major2")
        let real = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
        #expect(try fixture.refusal("[expirable.x]\nplugin = \"major2\"\n") == "expirable.x: plugin \(real) was built for plugin ABI 2.3, but this daemon speaks ABI 1.\(EXPIRABLE_ABI_MINOR); rebuild the plugin against this daemon's expirable.h")
    }

    @Test("refusals name the file and what to do", arguments: [
        ("nofetch", "does not export expirable_fetch; every plugin must (docs/plugin-abi.md)"),
        ("noabi", "does not export expirable_abi, so it is not an Expirable plugin; build it against expirable.h (docs/plugin-abi.md)"),
        ("nodestroy", "exports expirable_create without expirable_destroy; export both or neither"),
        ("datafetch", "exports expirable_fetch as data, not as a function; the plugin ABI's entry points must be functions (docs/plugin-abi.md)"),
    ])
    func refusedSymbols(name: String, reason: String) throws {
        let fixture = try PluginFixture()
        defer { fixture.remove() }
        let real = URL(fileURLWithPath: try fixture.compile(name)).resolvingSymlinksInPath().path
        #expect(try fixture.refusal("[expirable.x]\nplugin = \"\(name)\"\n") == "expirable.x: plugin \(real) \(reason)")
    }

    @Test("a plugin whose create refuses its params stops the load with the plugin's message")
    func createRefuses() throws {
        let fixture = try PluginFixture()
        defer { fixture.remove() }
        let real = URL(fileURLWithPath: try fixture.compile("refuse")).resolvingSymlinksInPath().path
        #expect(try fixture.refusal("[expirable.x]\nplugin = \"refuse\"\n") == "expirable.x: plugin \(real) refused its params: param 'token_url' is missing")
    }

    @Test("a missing plugin is refused with the names tried and the directory")
    func missing() throws {
        let fixture = try PluginFixture()
        defer { fixture.remove() }
        let dir = fixture.pluginDir.resolvingSymlinksInPath().path
        #expect(try fixture.refusal("[expirable.x]\nplugin = \"oauth2\"\n") == "expirable.x: plugin \"oauth2\" not found: none of liboauth2.so, oauth2.so, oauth2 is in plugin_dir \(dir); install the plugin there or fix the plugin name")
    }

    @Test("a file that is not a shared object is refused with dlopen's reason")
    func notSharedObject() throws {
        let fixture = try PluginFixture()
        defer { fixture.remove() }
        let path = fixture.pluginDir.appendingPathComponent("libtext.so").path
        try "not an ELF file".write(toFile: path, atomically: true, encoding: .utf8)
        let message = try #require(try fixture.refusal("[expirable.x]\nplugin = \"text\"\n"))
        #expect(message.hasPrefix("expirable.x: plugin \(URL(fileURLWithPath: path).resolvingSymlinksInPath().path) cannot be loaded: "))
        #expect(message.hasSuffix("; is it a shared object built for this machine?"))
    }

    @Test("a plugin_dir writable by group is refused with the chmod that fixes it")
    func groupWritableDir() throws {
        let fixture = try PluginFixture()
        defer { fixture.remove() }
        try fixture.compile("counter")
        chmod(fixture.pluginDir.path, 0o775)
        let dir = fixture.pluginDir.resolvingSymlinksInPath().path
        #expect(try fixture.refusal("[expirable.x]\nplugin = \"counter\"\n") == "server.plugin_dir \(dir) is writable by group; chmod g-w \(dir)", "about [server] plugin_dir, not about expirable.x")
    }

    @Test("a plugin file writable by others is refused with the chmod that fixes it")
    func worldWritableFile() throws {
        let fixture = try PluginFixture()
        defer { fixture.remove() }
        let real = URL(fileURLWithPath: try fixture.compile("counter")).resolvingSymlinksInPath().path
        chmod(real, 0o757)
        #expect(try fixture.refusal("[expirable.x]\nplugin = \"counter\"\n") == "expirable.x: plugin \(real) is writable by others; chmod o-w \(real)")
    }

    @Test("a plugin owned by another user is refused")
    func foreignOwner() throws {
        let fixture = try PluginFixture()
        defer { fixture.remove() }
        let real = URL(fileURLWithPath: try fixture.compile("counter")).resolvingSymlinksInPath().path
        try #require(geteuid() == 0, "changing a file's owner needs root")
        chown(real, 54321, 54321)
        #expect(try fixture.refusal("[expirable.x]\nplugin = \"counter\"\n") == "expirable.x: plugin \(real) is owned by uid 54321, not by root or the daemon's user (uid 0); chown root \(real)")
    }

    @Test("a symlink from plugin_dir to a file outside it is refused")
    func symlinkOutside() throws {
        let fixture = try PluginFixture()
        defer { fixture.remove() }
        let inside = try fixture.compile("counter")
        let outside = fixture.path("libcounter.so")
        try FileManager.default.moveItem(atPath: inside, toPath: outside)
        try FileManager.default.createSymbolicLink(atPath: inside, withDestinationPath: outside)
        let dir = fixture.pluginDir.resolvingSymlinksInPath().path
        let realOutside = URL(fileURLWithPath: outside).resolvingSymlinksInPath().path
        #expect(try fixture.refusal("[expirable.x]\nplugin = \"counter\"\n") == "expirable.x: plugin \(dir)/libcounter.so resolves to \(realOutside), outside plugin_dir \(dir); copy the file into plugin_dir instead of linking to it")
    }

    @Test("expirable.h's opening comment names the version its macros define")
    func headerNamesItsVersion() throws {
        let header = try String(contentsOfFile: TestPaths.header + "/expirable.h", encoding: .utf8)
        let opening = header.split(separator: "\n")[1]
        #expect(opening.hasSuffix("ABI, version \(EXPIRABLE_ABI_MAJOR).\(EXPIRABLE_ABI_MINOR)."), "\(opening)")
    }
}
