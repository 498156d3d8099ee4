import ExpirableConfig
import ExpirableCore
import ExpirablePluginHost
import Foundation
import Testing

@Suite("Shipped plugins")
struct ShippedPluginTests {
    // MARK: file (C)

    @Test("file serves a file's contents with a ttl, dropping one trailing newline")
    func fileServes() async throws {
        let fixture = try PluginFixture()
        defer { fixture.remove() }
        try fixture.install(shipped: "file")
        let secret = fixture.path("secret")
        try "api-key-123\n".write(toFile: secret, atomically: true, encoding: .utf8)
        let (engine, host) = try fixture.engine("[expirable.key]\nplugin = \"file\"\n[expirable.key.params]\npath = \"\(secret)\"\nttl = \"5m\"\n")
        defer { host.shutdown() }
        let before = SystemClock().unixMillis
        let fetched = try await engine.fetch("key")
        let after = SystemClock().unixMillis
        #expect(fetched.text == "api-key-123")
        guard case .at(let at) = fetched.expiry else {
            Issue.record("expected a finite expiry")
            return
        }
        #expect((before + 300_000...after + 300_000).contains(at))
    }

    @Test("file: infinity, trim = false, and a missing file is a FETCH error naming it")
    func fileOptions() async throws {
        let fixture = try PluginFixture()
        defer { fixture.remove() }
        try fixture.install(shipped: "file")
        let secret = fixture.path("secret")
        try "raw\n".write(toFile: secret, atomically: true, encoding: .utf8)
        let (engine, _) = try fixture.engine("""
            [expirable.raw]
            plugin = "file"
            [expirable.raw.params]
            path = "\(secret)"
            ttl = "infinity"
            trim = "false"
            [expirable.gone]
            plugin = "file"
            [expirable.gone.params]
            path = "\(fixture.path("nope"))"
            ttl = "1s"
            """)
        let raw = try await engine.fetch("raw")
        #expect(raw.text == "raw\n")
        #expect(raw.expiry == .never)
        #expect(await fetchError(engine, "gone") == .fetch("file plugin: cannot open \(fixture.path("nope")): No such file or directory"))
    }

    @Test("file refuses bad params when the daemon starts", arguments: [
        ("ttl = \"1s\"", "file plugin: param 'path' is missing; set it to the file to serve"),
        ("path = \"/etc/hostname\"", "file plugin: param 'ttl' is missing; set a duration such as \"5m\" or \"infinity\""),
        ("path = \"/etc/hostname\"\nttl = \"soon\"", "file plugin: param 'ttl' is \"soon\"; expected a duration such as \"5m\" or \"infinity\""),
        ("path = \"/etc/hostname\"\nttl = \"1s\"\nmode = \"x\"", "file plugin: unknown param 'mode'; expected path, ttl, trim or max_size"),
    ])
    func fileRefuses(params: String, reason: String) throws {
        let fixture = try PluginFixture()
        defer { fixture.remove() }
        try fixture.install(shipped: "file")
        let message = try fixture.refusal("[expirable.k]\nplugin = \"file\"\n[expirable.k.params]\n\(params)\n")
        #expect(message?.hasSuffix("refused its params: \(reason)") == true)
    }

    // MARK: command (Swift)

    @Test("command runs argv without a shell; the value is its stdout")
    func commandRaw() async throws {
        let fixture = try PluginFixture()
        defer { fixture.remove() }
        try fixture.install(shipped: "command")
        let (engine, host) = try fixture.engine("""
            [expirable.greeting]
            plugin = "command"
            [expirable.greeting.params]
            argv = ["printf", "%s-%s\\n", "hello", "$HOME;"]
            ttl = "30s"
            """)
        defer { host.shutdown() }
        #expect(try await engine.fetch("greeting").text == "hello-$HOME;")
    }

    @Test("command reads JSON output: value_key, expires_in seconds and expires_at milliseconds")
    func commandJSON() async throws {
        let fixture = try PluginFixture()
        defer { fixture.remove() }
        try fixture.install(shipped: "command")
        let (engine, _) = try fixture.engine("""
            [expirable.oauth]
            plugin = "command"
            [expirable.oauth.params]
            argv = ["echo", "{\\"access_token\\": \\"at-1\\", \\"expires_in\\": 3600, \\"token_type\\": \\"bearer\\"}"]
            output = "json"
            value_key = "access_token"
            [expirable.at]
            plugin = "command"
            [expirable.at.params]
            argv = ["echo", "{\\"value\\": \\"v\\", \\"expires_at\\": 4102444800000}"]
            output = "json"
            """)
        let before = SystemClock().unixMillis
        let oauth = try await engine.fetch("oauth")
        let after = SystemClock().unixMillis
        #expect(oauth.text == "at-1")
        guard case .at(let at) = oauth.expiry else {
            Issue.record("expected a finite expiry")
            return
        }
        #expect((before + 3_600_000...after + 3_600_000).contains(at))
        #expect(try await engine.fetch("at").expiry == .at(unixMillis: 4_102_444_800_000))
    }

    @Test("command's JSON reader: escapes, nested members, numbers, and refusals of what is not one JSON object", arguments: [
        (#"{"meta": {"a": [1, {"b": null}], "c": true}, "value": "q\"\\\/\u00e9\ud83d\ude00\t", "expires_at": 4102444800000}"#, "ok q\"\\/é😀\t"),
        (" \n{ \"expires_at\" : 4.1024448e12 ,\"value\":\"\" }\n", "ok "),
        (#"{"value": "v", "expires_at": 4102444800000} trailing"#, "error output is not a JSON object"),
        (#"["value", "v"]"#, "error output is not a JSON object"),
        (#"{"value": "v", "expires_at": 01}"#, "error output is not a JSON object"),
        (#"{"value": "\ud800", "expires_at": 1}"#, "error output is not a JSON object"),
        (#"{"value": "v", "expires_at": "soon"}"#, "error JSON \"expires_at\" must be a number of Unix milliseconds"),
        (#"{"value": "v", "expires_in": true}"#, "error JSON \"expires_in\" must be a number of seconds"),
        (#"{"value": 5, "expires_in": 60}"#, "error JSON output has no string \"value\""),
        ("{\"a\": " + String(repeating: "[", count: 100) + String(repeating: "]", count: 100) + "}", "error output is not a JSON object"),
        ("{\"value\": \"v\", \"expires_at\": 4102444800000, \"a\": " + String(repeating: "[", count: 60) + String(repeating: "]", count: 60) + "}", "ok v"),
    ])
    func commandJSONReader(output: String, expected: String) async throws {
        let fixture = try PluginFixture()
        defer { fixture.remove() }
        try fixture.install(shipped: "command")
        let file = fixture.root.appendingPathComponent("out.json").path
        try Data(output.utf8).write(to: URL(fileURLWithPath: file))
        let (engine, _) = try fixture.engine("""
            [expirable.json]
            plugin = "command"
            [expirable.json.params]
            argv = ["cat", "\(file)"]
            output = "json"
            """)
        do {
            let fetched = try await engine.fetch("json")
            #expect("ok " + fetched.text == expected)
            #expect(fetched.expiry == .at(unixMillis: 4_102_444_800_000))
        } catch {
            #expect(error == .fetch("command plugin: " + expected.dropFirst("error ".count) + (expected.contains("not a JSON object") ? "; print {\"value\": \"...\", \"expires_in\": seconds}" : "")))
        }
    }

    @Test("command failures: non-zero exit with stderr, its own timeout, output cap, bad JSON, shell only when set")
    func commandFailures() async throws {
        let fixture = try PluginFixture()
        defer { fixture.remove() }
        try fixture.install(shipped: "command")
        let (engine, _) = try fixture.engine("""
            [expirable.exit]
            plugin = "command"
            [expirable.exit.params]
            shell = "echo 'invalid_client' >&2; exit 3"
            ttl = "1m"
            [expirable.slow]
            plugin = "command"
            [expirable.slow.params]
            argv = ["sleep", "30"]
            ttl = "1m"
            timeout = "200ms"
            [expirable.chatty]
            plugin = "command"
            [expirable.chatty.params]
            argv = ["head", "-c", "5000", "/dev/zero"]
            ttl = "1m"
            max_output = 1000
            [expirable.json]
            plugin = "command"
            [expirable.json.params]
            argv = ["echo", "not json"]
            output = "json"
            [expirable.missing]
            plugin = "command"
            [expirable.missing.params]
            argv = ["/nonexistent/tool"]
            ttl = "1m"
            """)
        #expect(await fetchError(engine, "exit") == .fetch("command plugin: /bin/sh exited with status 3: invalid_client"))
        #expect(await fetchError(engine, "slow") == .timeout("command plugin: sleep did not finish within 200ms and was killed"), "its own deadline is a TIMEOUT (ABI 1.3)")
        #expect(await fetchError(engine, "chatty") == .fetch("command plugin: head printed more than max_output (1000 bytes) and was killed"))
        #expect(await fetchError(engine, "json") == .fetch("command plugin: output is not a JSON object; print {\"value\": \"...\", \"expires_in\": seconds}"))
        #expect(await fetchError(engine, "missing") == .fetch("command plugin: cannot run /nonexistent/tool: No such file or directory"))
    }

    @Test("command classifies failures: an OAuth error response, error_class and retry_after, sysexits statuses, a hint for silent curl")
    func commandErrorClasses() async throws {
        let fixture = try PluginFixture()
        defer { fixture.remove() }
        try fixture.install(shipped: "command")
        // TOML literal strings keep the shell lines as written.
        func json(_ name: String, _ line: String) -> String {
            "[expirable.\(name)]\nplugin = \"command\"\n[expirable.\(name).params]\nshell = '''\(line)'''\noutput = \"json\"\nvalue_key = \"access_token\"\n"
        }
        func raw(_ name: String, _ line: String) -> String {
            "[expirable.\(name)]\nplugin = \"command\"\n[expirable.\(name).params]\nshell = '''\(line)'''\nttl = \"1m\"\n"
        }
        let (engine, _) = try fixture.engine(
            json("grant", #"echo '{"error": "invalid_grant", "error_description": "refresh token revoked", "refresh_token": "SECRET-RT"}'; exit 22"#)
            + json("busy", #"echo '{"error": "slow_down", "retry_after": 20}'"#)
            + json("own", #"echo '{"error": "quota", "error_class": "permanent"}'"#)
            + raw("tempfail", "exit 75") + raw("config", "echo bad config >&2; exit 78") + raw("noperm", "exit 77")
            + "[expirable.curl]\nplugin = \"command\"\n[expirable.curl.params]\nargv = [\"\(fixture.path("curl"))\"]\nttl = \"1m\"\n"
        )
        // A stand-in for `curl -sf`: fails silently.
        try "#!/bin/sh\nexit 22\n".write(toFile: fixture.path("curl"), atomically: true, encoding: .utf8)
        chmod(fixture.path("curl"), 0o755)

        let grant = try #require(await fetchError(engine, "grant"))
        #expect(grant.message == "command plugin: /bin/sh reported error \"invalid_grant\": refresh token revoked (exit status 22)")
        #expect(grant.errorClass == .permanent, "invalid_grant cannot be fixed by retrying")
        #expect(!grant.message.contains("SECRET-RT"), "only error and error_description reach the message")
        let now = SystemClock().unixMillis
        let busy = try #require(await fetchError(engine, "busy"))
        let answered = SystemClock().unixMillis
        // The retry-after's time is told to the caller too (SPEC §3.18).
        #expect(busy.message.hasPrefix("command plugin: /bin/sh reported error \"slow_down\"; retry after 20s (next attempt in "), "\(busy.message)")
        #expect(busy.errorClass == .temporary)
        // The plugin reads its clock during the call, between now and the answer.
        #expect((now + 20_000 - 1_000...answered + 20_000 + 1_000).contains(busy.retryAfter ?? 0), "\(String(describing: busy.retryAfter))")
        #expect(await fetchError(engine, "own")?.errorClass == .permanent)
        #expect(await fetchError(engine, "tempfail") == .fetch("command plugin: /bin/sh exited with status 75"))
        #expect(await fetchError(engine, "config") == .fetch("command plugin: /bin/sh exited with status 78: bad config", class: .permanent))
        #expect(await fetchError(engine, "noperm")?.errorClass == .permanent)
        #expect(await fetchError(engine, "curl") == .fetch("command plugin: \(fixture.path("curl")) exited with status 22 and printed nothing on stderr; run curl with -sS --fail-with-body (not -sf) to see why"))
    }

    @Test("command refuses bad params when the daemon starts", arguments: [
        ("ttl = \"1s\"", "command plugin: set param 'argv' (an array: program and arguments) or 'shell' (a command line for /bin/sh)"),
        ("argv = [\"date\"]", "command plugin: param 'ttl' is missing; raw output needs it (a duration or \"infinity\"), or use output = \"json\""),
        ("argv = [\"date\"]\nshell = \"date\"\nttl = \"1s\"", "command plugin: params 'argv' and 'shell' exclude each other; keep one"),
        ("argv = [\"date\"]\nttl = \"1s\"\noutput = \"xml\"", "command plugin: param 'output' is \"xml\"; expected \"raw\" or \"json\""),
        ("argv = [\"date\"]\nttl = \"1s\"\nenv = \"X=1\"", "command plugin: unknown param 'env'; expected one of argv, max_output, output, shell, timeout, trim, ttl, value_key"),
    ])
    func commandRefuses(params: String, reason: String) throws {
        let fixture = try PluginFixture()
        defer { fixture.remove() }
        try fixture.install(shipped: "command")
        let message = try fixture.refusal("[expirable.k]\nplugin = \"command\"\n[expirable.k.params]\n\(params)\n")
        #expect(message?.hasSuffix("refused its params: \(reason)") == true, "\(message ?? "loaded")")
    }
}

@Suite("Example configuration")
struct ExampleConfigurationTests {
    @Test("etc/expirable.toml is valid, its plugins load, and its expirables answer without credentials")
    func exampleWorks() async throws {
        let path = PluginFixture.repository.appendingPathComponent("etc/expirable.toml").path
        // In this test process the plugins run inline: a helper is this process's own binary started again, and
        // the test runner is not expirabled (the daemon tests run the same file with helpers).
        let text = try String(contentsOfFile: path, encoding: .utf8).replacingOccurrences(of: "[server]\n", with: "[server]\nisolation = \"inline\"\n")
        let configuration = try Configuration.parse(text, file: path)
        #expect(configuration.expirables.map(\.name) == ["clock_token", "hostname", "rotating_key"])
        let host = try PluginHost(configuration: configuration)
        defer { host.shutdown() }
        let engine = Engine(expirables: host.definitions)
        #expect(try await engine.fetch("clock_token").text.hasPrefix("token-"))
        #expect(try await engine.fetch("rotating_key").text.hasPrefix("key-"))
        #expect(try await engine.fetch("hostname").expiry == .never)
        engine.shutdown()
    }
}

@Suite("Command plugin concurrency")
struct CommandConcurrencyTests {
    @Test("concurrent command fetches of different expirables do not hold each other's output open")
    func noInheritedPipes() async throws {
        let fixture = try PluginFixture()
        defer { fixture.remove() }
        try fixture.install(shipped: "command")
        // Commands that print after half a second run while others, which wait for a file the test creates
        // at the end, are spawned. Had a quick command's output pipe leaked into a waiting child, that quick
        // fetch could not finish before the test releases the waiting ones.
        let release = fixture.path("release")
        var config = ""
        for i in 0..<4 {
            config += "[expirable.waiting\(i)]\nplugin = \"command\"\ntimeout = \"40s\"\n[expirable.waiting\(i).params]\nshell = \"while [ ! -e \(release) ]; do sleep 0.05; done; echo w\"\nttl = \"1m\"\n"
        }
        for i in 0..<8 {
            config += "[expirable.quick\(i)]\nplugin = \"command\"\n[expirable.quick\(i).params]\nshell = \"sleep 0.5; echo q\(i)\"\nttl = \"1m\"\n"
        }
        let (engine, host) = try fixture.engine(config)
        defer { host.shutdown() }
        let quick = (0..<8).map { i in Task { try await engine.fetch("quick\(i)").text } }
        while (0..<8).contains(where: { engine.status("quick\($0)")?.fetching != true }) { try await Task.sleep(for: .milliseconds(5)) }
        let waiting = (0..<4).map { i in Task { try await engine.fetch("waiting\(i)").text } }
        // The quick ones finish on their own (bounded generously; they need about half a second).
        var spins = 0
        while (0..<8).contains(where: { engine.status("quick\($0)")?.state != .valid }) && spins < 1000 {
            try await Task.sleep(for: .milliseconds(20))
            spins += 1
        }
        #expect((0..<8).allSatisfy { engine.status("quick\($0)")?.state == .valid }, "quick fetches were held open by the waiting commands")
        #expect(FileManager.default.createFile(atPath: release, contents: nil))
        for (i, task) in quick.enumerated() { #expect(try await task.value == "q\(i)") }
        for task in waiting { #expect(try await task.value == "w") }
    }
}
