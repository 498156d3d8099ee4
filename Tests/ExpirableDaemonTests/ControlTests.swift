import ExpirableTestSupport
import Foundation
import Testing

@Suite("expirablectl against a real daemon")
struct ControlTests {
    @Test("fetch prints the value; --json adds the expiry")
    func fetch() throws {
        let daemon = try ServingTests.start(ServingTests.counter())
        defer { daemon.remove() }
        let plain = try daemon.ctl("fetch", "token")
        #expect(plain.status == 0)
        #expect(plain.stdout == "token-1\n")
        let json = try daemon.ctl("fetch", "token", "--json")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
        #expect(object["name"] as? String == "token")
        #expect(object["value"] as? String == "token-1")
        #expect((object["expires_in_ms"] as? Int ?? 0) > 50_000)
    }

    @Test("status shows a table with name, scope, refresh, state, expiry and last error")
    func status() throws {
        let daemon = try ServingTests.start(ServingTests.counter() + "[expirable.broken]\nplugin = \"command\"\nscope = \"local\"\n[expirable.broken.params]\nshell = \"exit 4\"\nttl = \"1m\"\n")
        defer { daemon.remove() }
        _ = try daemon.redis("GET", "token")
        _ = try daemon.redis("GET", "broken")
        let status = try daemon.ctl("status")
        #expect(status.status == 0)
        let lines = status.stdout.split(separator: "\n").map(String.init)
        #expect(lines.count == 3)
        #expect(lines[0].hasPrefix("NAME    SCOPE    REFRESH  STATE  EXPIRES IN  OWNER  REPLICA  PLUGIN"))
        // PLUGIN: each runs in a helper process (the default), shown by its pid.
        #expect(lines[1].range(of: #"^broken  local    lazy     empty  -           local  -        pid [0-9]+ +FETCH command plugin: /bin/sh exited with status 4"#, options: .regularExpression) != nil, "\(lines[1])")
        #expect(lines[2].range(of: #"^token   cluster  lazy     valid  [0-9]+s +local  -        pid [0-9]+ *$"#, options: .regularExpression) != nil, "\(lines[2])")
    }

    @Test("list, ping, clear NAME and clear --all")
    func administration() throws {
        let daemon = try ServingTests.start(ServingTests.counter())
        defer { daemon.remove() }
        #expect(try daemon.ctl("list").stdout == "token\n")
        #expect(try daemon.ctl("ping").stdout.hasPrefix("PONG"))
        _ = try daemon.redis("GET", "token")
        #expect(try daemon.ctl("clear", "token").stdout == "cleared token\n")
        #expect(try daemon.redis("TTL", "token") == "-2")
        #expect(try daemon.ctl("clear", "--all").stdout == "cleared all\n")
    }

    @Test("errors go to stderr with the exit status of their kind")
    func errors() throws {
        let daemon = try ServingTests.start(ServingTests.counter())
        defer { daemon.remove() }
        let notFound = try daemon.ctl("fetch", "nope")
        #expect(notFound.status == 66)
        #expect(notFound.stdout.isEmpty)
        #expect(notFound.stderr == "expirablectl: NOTFOUND no expirable named 'nope' is configured; `expirablectl list` shows the names\n")
        let noDaemon = try runTool(TestPaths.product("expirablectl").path, ["ping", "--socket", daemon.directory.appending("none.sock")])
        #expect(noDaemon.status == 69)
        #expect(noDaemon.stderr.hasPrefix("expirablectl: UNAVAILABLE no socket \(daemon.directory.appending("none.sock"))"))
        let usage = try daemon.ctl("clear")
        #expect(usage.status == 64)
        #expect(usage.stderr.contains("give either a NAME or --all"))
    }

    @Test("check-config validates a file and loads its plugins without serving")
    func checkConfig() throws {
        let daemon = try DaemonProcess(expirables: "[expirable.ok]\nplugin = \"counter\"\n", start: false)
        defer { daemon.remove() }
        let good = try daemon.ctl("check-config", daemon.configPath)
        #expect(good.status == 0)
        #expect(good.stdout == "\(daemon.configPath): ok: 1 expirable (ok), plugins loaded from \(daemon.pluginDir)\n")
        #expect(!FileManager.default.fileExists(atPath: daemon.socket))
        let broken = try String(contentsOfFile: daemon.configPath, encoding: .utf8).replacingOccurrences(of: "plugin = \"counter\"", with: "plugin = \"missing\"")
        try broken.write(toFile: daemon.configPath, atomically: true, encoding: .utf8)
        let bad = try daemon.ctl("check-config", daemon.configPath)
        #expect(bad.status == 78)
        let line = try #require(broken.split(separator: "\n", omittingEmptySubsequences: false).firstIndex { $0 == "plugin = \"missing\"" }) + 1
        #expect(bad.stderr.hasPrefix("expirablectl: \(daemon.configPath):\(line): expirable.ok: plugin \"missing\" not found"), "\(bad.stderr)")
    }

    @Test("check-config refuses a plugin whose expirable_fetch is data, and a plugin name with a NUL, before any call")
    func checkConfigRefusesUnsafePlugins() throws {
        let daemon = try DaemonProcess(expirables: "[expirable.bad]\nplugin = \"datafetch\"\n", testPlugins: ["datafetch"], start: false)
        defer { daemon.remove() }
        let data = try daemon.ctl("check-config", daemon.configPath)
        #expect(data.status == 78)
        #expect(data.stderr.contains("exports expirable_fetch as data, not as a function"), "stderr: \(data.stderr)")
        // What the daemon itself does with it: refuses to start, rather than crashing at the first GET.
        #expect(throws: (any Error).self) { try daemon.start() }
        #expect(daemon.log.contains("exports expirable_fetch as data, not as a function"))

        let withNUL = try String(contentsOfFile: daemon.configPath, encoding: .utf8)
            .replacingOccurrences(of: "plugin = \"datafetch\"", with: "plugin = \"datafetch\\u0000junk\"")
        try withNUL.write(toFile: daemon.configPath, atomically: true, encoding: .utf8)
        let nul = try daemon.ctl("check-config", daemon.configPath)
        #expect(nul.status == 78)
        #expect(nul.stderr.contains("without \"/\" or control characters, got \"datafetch\\0junk\""), "stderr: \(nul.stderr)")
    }

    @Test("check-config loads plugins in a helper whatever the isolation: one that aborts in its constructor is a clean refusal, not a crash",
          arguments: ["inline", "process"])
    func checkConfigSurvivesAbortingPlugin(isolation: String) throws {
        let daemon = try DaemonProcess(expirables: "[expirable.x]\nplugin = \"ctorabort\"\n", server: "isolation = \"\(isolation)\"",
                                       testPlugins: ["ctorabort"], start: false)
        defer { daemon.remove() }
        let check = try daemon.ctl("check-config", daemon.configPath)
        #expect(check.status == 78, "stderr: \(check.stderr)")
        let lines = check.stderr.split(separator: "\n")
        #expect(lines.count == 1, "stderr: \(check.stderr)")
        #expect(check.stderr.hasPrefix("expirablectl: \(daemon.configPath):"), "stderr: \(check.stderr)")
        #expect(check.stderr.contains(": expirable.x: plugin for x crashed (SIGABRT) in its helper"), "stderr: \(check.stderr)")
        #expect(check.stderr.contains("while it loaded the plugin or created its instance (its constructors, expirable_abi or expirable_create)"), "stderr: \(check.stderr)")
        #expect(!check.stderr.contains("starts its helper again"), "check-config refuses: no restart follows")
        guard isolation == "process" else { return }
        #expect(throws: (any Error).self) { try daemon.start() }
        #expect(daemon.log.contains("crashed (SIGABRT) in its helper"), "\(daemon.log)")
        #expect(!daemon.log.contains("starts its helper again"), "the daemon refuses to start: no restart follows: \(daemon.log)")
        #expect(!daemon.log.contains("plugin helper died"), "the refusal alone is logged: \(daemon.log)")
    }
}

/// A keyed family (SPEC §3.19) through expirablectl: LIST shows it as NAME:*, which status and explain must
/// take as the family, not as a member.
@Suite("expirablectl with a keyed family")
struct ControlKeyedFamilyTests {
    static func start() throws -> DaemonProcess {
        try ServingTests.start(ServingTests.counter() + "[expirable.fam]\nplugin = \"command\"\nkeyed = true\nmax_keys = 50\n[expirable.fam.params]\nshell = \"echo fam\"\nttl = \"1m\"\n")
    }

    @Test("status shows a keyed family as one row, NAME:* as LIST shows it, with its keys held")
    func statusTable() throws {
        let daemon = try Self.start()
        defer { daemon.remove() }
        _ = try daemon.redis("GET", "token")
        #expect(try daemon.redis("GET", "fam:a") == "fam")
        #expect(try daemon.redis("GET", "fam:b") == "fam")
        let status = try daemon.ctl("status")
        #expect(status.status == 0, "\(status.stderr)")
        #expect(status.stderr.isEmpty)
        let lines = status.stdout.split(separator: "\n").map(String.init)
        #expect(lines.count == 3, "\(status.stdout)")
        #expect(lines.dropFirst().first?.range(of: #"^fam:\*  cluster  lazy     keyed, 2 keys  -  +-  +-  +pid [0-9]+ *$"#, options: .regularExpression) != nil, "\(lines)")
        #expect(lines.last?.hasPrefix("token  ") == true, "\(lines)")
        // OWNER is per member in a cluster, so the family's row has none; explain NAME:KEY gives a member's.
    }

    @Test("status --json gives a keyed family one object: name NAME:*, keyed, keys held, max_keys, scope, refresh")
    func statusJSON() throws {
        let daemon = try Self.start()
        defer { daemon.remove() }
        _ = try daemon.redis("GET", "fam:a")
        _ = try daemon.redis("GET", "fam:b")
        let status = try daemon.ctl("status", "--json")
        #expect(status.status == 0, "\(status.stderr)")
        let objects = try #require(try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [[String: Any]])
        let family = try #require(objects.first { $0["name"] as? String == "fam:*" }, "\(objects)")
        #expect(family["keyed"] as? Bool == true)
        #expect(family["keys"] as? Int == 2)
        #expect(family["max_keys"] as? Int == 50)
        #expect(family["scope"] as? String == "cluster")
        #expect(family["refresh"] as? String == "lazy")
        #expect(objects.contains { $0["name"] as? String == "token" })
    }

    @Test("explain NAME of a keyed family explains the family and how to explain one member; EXPLAIN answers it")
    func explainFamily() throws {
        let daemon = try Self.start()
        defer { daemon.remove() }
        _ = try daemon.redis("GET", "fam:a")
        _ = try daemon.redis("GET", "fam:b")
        let raw = try daemon.redis("EXPLAIN", "fam")
        #expect(raw.contains("keyed:yes") && raw.contains("keys:2"), "\(raw)")
        let words = try daemon.ctl("explain", "fam")
        #expect(words.status == 0, "\(words.stderr)")
        #expect(words.stdout.hasPrefix("fam is a keyed family: one value per key, addressed as fam:KEY"), "\(words.stdout)")
        #expect(words.stdout.contains("2 keys held (max_keys 50)"), "\(words.stdout)")
        #expect(words.stdout.contains("expirablectl explain fam:KEY"), "\(words.stdout)")
        #expect(!words.stdout.contains("Last calls"), "a family makes no calls of its own: \(words.stdout)")
        let json = try daemon.ctl("explain", "fam", "--json")
        #expect(json.status == 0, "\(json.stderr)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
        #expect(object["keyed"] as? Bool == true)
        #expect(object["keys"] as? Int == 2)
        #expect(object["max_keys"] as? Int == 50)
        // A member is still explained as itself.
        #expect(try daemon.ctl("explain", "fam:a").stdout.hasPrefix("fam:a is valid"))
    }

    @Test("a keyed family is NAME:* in every command: clear 'fam:*' clears it as clear fam does, explain --json names it fam:* as status --json does")
    func familyNamedAsListed() throws {
        let daemon = try Self.start()
        defer { daemon.remove() }
        _ = try daemon.redis("GET", "fam:a")
        #expect(try daemon.ctl("list").stdout.contains("fam:*\n"))
        let cleared = try daemon.ctl("clear", "fam:*")
        #expect(cleared.status == 0, "\(cleared.stderr)")
        #expect(cleared.stdout == "cleared fam:*\n")
        #expect(try daemon.redis("INFO", "fam").contains("keys:0"), "every key dropped")
        for name in ["fam", "fam:*"] {
            let json = try daemon.ctl("explain", name, "--json")
            let object = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any], "\(json.stderr)")
            #expect(object["name"] as? String == "fam:*", "explain \(name) --json")
        }
        // A member keeps its own name.
        _ = try daemon.redis("GET", "fam:a")
        let member = try daemon.ctl("explain", "fam:a", "--json")
        #expect((try JSONSerialization.jsonObject(with: Data(member.stdout.utf8)) as? [String: Any])?["name"] as? String == "fam:a")
    }
}
