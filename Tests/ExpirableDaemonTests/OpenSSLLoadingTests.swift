import ExpirableTestSupport
import Foundation
import Testing

/// OpenSSL is loaded on first use (Sources/CExpirableOpenSSL): a daemon maps it only for what needs it (a
/// [cluster], a state_dir, an executable-digest access rule), and one that cannot load it says why in words.
@Suite("OpenSSL, loaded only when needed")
struct OpenSSLLoadingTests {
    /// The OpenSSL libraries in /proc/PID/maps.
    static func openSSLMappings(_ pid: Int32) throws -> [String] {
        let maps = try String(contentsOfFile: "/proc/\(pid)/maps", encoding: .utf8)
        return Array(Set(maps.split(separator: "\n").compactMap { line -> String? in
            guard let path = line.split(separator: " ", omittingEmptySubsequences: true).last,
                  path.contains("libssl.so") || path.contains("libcrypto.so") else { return nil }
            return String(path)
        })).sorted()
    }

    static func children(of pid: Int32) throws -> [Int32] {
        try runTool("pgrep", ["-P", "\(pid)"]).stdout.split(separator: "\n").compactMap { Int32($0) }
    }

    @Test("a daemon without [cluster] or state_dir maps no OpenSSL, nor do its plugin helpers; with a state_dir it does")
    func mappedOnlyWhenNeeded() throws {
        let plain = try ServingTests.start(ServingTests.counter())
        defer { plain.remove() }
        #expect(try plain.redis("GET", "token") == "token-1")
        let pid = try #require(plain.process?.pid)
        #expect(try Self.openSSLMappings(pid) == [])
        let helpers = try Self.children(of: pid)
        #expect(!helpers.isEmpty, "the counter plugin runs in a helper process by default")
        for helper in helpers { #expect(try Self.openSSLMappings(helper) == [], "helper \(helper)") }

        // The same daemon with a state_dir encrypts with AES-256-GCM: OpenSSL is mapped, and the state works.
        let stateful = try DaemonProcess(
            expirables: ServingTests.counter().replacingOccurrences(of: "COUNT", with: "DIR"),
            server: "state_dir = \"DIR/state\"\nstate_key_file = \"DIR/state.key\"", start: false)
        defer { stateful.remove() }
        let key = stateful.directory.appending("state.key")
        try Data((0..<32).map { UInt8($0 * 11 % 253) }).write(to: URL(fileURLWithPath: key))
        chmod(key, 0o600)
        try stateful.start()
        #expect(try stateful.redis("GET", "token") == "token-1")
        let mapped = try Self.openSSLMappings(try #require(stateful.process?.pid))
        #expect(mapped.contains { $0.contains("libcrypto.so.3") } && mapped.contains { $0.contains("libssl.so.3") }, "\(mapped)")
    }

    /// A libssl.so.3 that has none of OpenSSL's functions, found first through LD_LIBRARY_PATH: what a machine
    /// with a broken or foreign OpenSSL looks like to the daemon.
    @Test("an OpenSSL without the functions it needs: a [cluster] daemon, one with a state_dir or with an executable-digest rule, refuses to start and names the missing function; a daemon without them serves, and refuses a reload that adds such a rule")
    func unusableOpenSSL() throws {
        let directory = try TemporaryDirectory("expirable-openssl")
        defer { directory.remove() }
        let source = directory.appending("empty.c")
        try "int expirable_not_openssl = 1;\n".write(toFile: source, atomically: true, encoding: .utf8)
        let built = try runTool("cc", ["-shared", "-fPIC", "-Wl,-soname,libssl.so.3", source, "-o", directory.appending("libssl.so.3")])
        try #require(built.status == 0, "\(built)")
        let environment = ProcessInfo.processInfo.environment.merging(["LD_LIBRARY_PATH": directory.path]) { $1 }

        let expirable = "[expirable.x]\nplugin = \"command\"\nscope = \"local\"\n[expirable.x.params]\nshell = \"echo x\"\nttl = \"1m\"\n"
        let port = try freePort(on: "127.0.0.1")
        let cluster = "[cluster]\nnode = \"node-a\"\nlisten = \"127.0.0.1:\(port)\"\npeers = { node-b = \"127.0.0.2:7400\" }\nca = \"DIR/ca.pem\"\ncert = \"DIR/node-a.pem\"\nkey = \"DIR/node-a.key\"\n"
        let node = try DaemonProcess(expirables: expirable, cluster: cluster, testPlugins: [], start: false)
        defer { node.remove() }
        // Real certificates, made with the real OpenSSL: the refusal below is about the library, not the files.
        for arguments in [["cert", "ca", "--dir", node.directory.path], ["cert", "node", "node-a", "--dir", node.directory.path]] {
            let made = try runTool(TestPaths.product("expirablectl").path, arguments)
            try #require(made.status == 0, "\(made)")
        }
        let refused = try runTool(TestPaths.product("expirabled").path, ["--config", node.configPath], environment: environment)
        #expect(refused.status == 1, "\(refused)")
        #expect(refused.stderr.contains("the OpenSSL found as libssl.so.3 has no function"), "\(refused.stderr)")
        #expect(refused.stderr.contains("Expirable needs OpenSSL 3.0 or later"), "\(refused.stderr)")
        // expirablectl check-config refuses what the daemon refuses.
        let checked = try runTool(TestPaths.product("expirablectl").path, ["check-config", node.configPath], environment: environment)
        #expect(checked.status == 78 && checked.stderr.contains("the OpenSSL found as libssl.so.3 has no function"), "\(checked)")
        #expect(!refused.stderr.contains("Aborted") && !refused.stderr.contains("Fatal error"), "\(refused.stderr)")
        // With the system's OpenSSL the same node starts (and is stopped by its PID).
        node.environment = [:]
        try node.start()
        #expect(try node.redis("GET", "x") == "x")

        // An access rule that pins an executable's SHA-256 needs OpenSSL too: refused at start, naming its line.
        let pinned = try DaemonProcess(
            expirables: "[expirable.p]\nplugin = \"command\"\nallow = [\"exe:/bin/sh sha256:\(String(repeating: "ab", count: 32))\"]\n[expirable.p.params]\nshell = \"echo p\"\nttl = \"1m\"\n",
            testPlugins: [], start: false)
        defer { pinned.remove() }
        let refusedRule = try runTool(TestPaths.product("expirabled").path, ["--config", pinned.configPath], environment: environment)
        let lines = try String(contentsOfFile: pinned.configPath, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false)
        let allowLine = try #require(lines.firstIndex { $0.hasPrefix("allow = ") }) + 1
        #expect(refusedRule.status == 1, "\(refusedRule)")
        #expect(refusedRule.stderr.contains("\(pinned.configPath):\(allowLine)"), "\(refusedRule.stderr)")
        #expect(refusedRule.stderr.contains("an exe rule with sha256 needs OpenSSL: the OpenSSL found as libssl.so.3 has no function"), "\(refusedRule.stderr)")
        let checkedRule = try runTool(TestPaths.product("expirablectl").path, ["check-config", pinned.configPath], environment: environment)
        #expect(checkedRule.status == 78, "\(checkedRule)")
        #expect(checkedRule.stderr.contains("\(pinned.configPath):\(allowLine): an exe rule with sha256 needs OpenSSL"), "\(checkedRule.stderr)")

        // A state_dir needs it for AES-256-GCM: refused at start and by check-config, naming state_dir's line.
        let stateful = try DaemonProcess(expirables: expirable, server: "state_dir = \"DIR/state\"\nstate_key_file = \"DIR/state.key\"",
                                         testPlugins: [], start: false)
        defer { stateful.remove() }
        let key = stateful.directory.appending("state.key")
        try Data((0..<32).map { UInt8($0 * 5 % 241) }).write(to: URL(fileURLWithPath: key))
        chmod(key, 0o600)
        let stateLine = try #require(String(contentsOfFile: stateful.configPath, encoding: .utf8)
            .split(separator: "\n", omittingEmptySubsequences: false).firstIndex { $0.hasPrefix("state_dir = ") }) + 1
        let stateMessage = "\(stateful.configPath):\(stateLine): [server] state_dir: plugin states are encrypted with OpenSSL: the OpenSSL found as libssl.so.3 has no function"
        let refusedState = try runTool(TestPaths.product("expirabled").path, ["--config", stateful.configPath], environment: environment)
        #expect(refusedState.status == 1 && refusedState.stderr.contains(stateMessage), "\(refusedState)")
        let checkedState = try runTool(TestPaths.product("expirablectl").path, ["check-config", stateful.configPath], environment: environment)
        #expect(checkedState.status == 78 && checkedState.stderr.contains(stateMessage), "\(checkedState)")

        // A daemon that needs no TLS never opens libssl.so.3, so the broken one does not matter to it.
        let plain = try ServingTests.start(ServingTests.counter())
        defer { plain.remove() }
        plain.environment = ["LD_LIBRARY_PATH": directory.path]
        #expect(plain.stop() == 0)
        try plain.start()
        #expect(try plain.redis("GET", "token") == "token-1")
        // A reload that brings a digest rule is refused whole, as the start would be; the daemon keeps serving.
        let config = try String(contentsOfFile: plain.configPath, encoding: .utf8)
        try (config + "[expirable.p]\nplugin = \"counter\"\nallow = [\"exe:/bin/sh sha256:\(String(repeating: "ab", count: 32))\"]\n")
            .write(toFile: plain.configPath, atomically: true, encoding: .utf8)
        let reload = try plain.redis("RELOAD")
        #expect(reload.hasPrefix("ERR reload refused, nothing changed: \(plain.configPath):"), "\(reload)")
        #expect(reload.contains("an exe rule with sha256 needs OpenSSL: the OpenSSL found as libssl.so.3 has no function"), "\(reload)")
        #expect(try plain.redis("GET", "p").hasPrefix("NOTFOUND"))
        #expect(try plain.redis("GET", "token") == "token-1")
    }
}
