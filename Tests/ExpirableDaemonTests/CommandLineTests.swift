import ExpirableTestSupport
import Foundation
import Testing

/// The command-line convention of both binaries, on real processes: global options anywhere, durations,
/// --json, --version, one exit status per kind of error, and connection errors that name the cause.
@Suite("expirablectl and expirabled: one command-line convention")
struct CommandLineTests {
    static var ctl: String { get throws { try TestPaths.product("expirablectl").path } }

    /// An expirable whose plugin call takes 3 s and is allowed 10: a --timeout shorter than that ends in CALLTIMEOUT.
    static let patient = """
        [expirable.patient]
        plugin = "command"
        scope = "local"
        timeout = "10s"
        [expirable.patient.params]
        shell = "sleep 3; echo late"
        ttl = "1m"

        """

    @Test("--socket and --timeout are accepted before or after the command; --timeout takes a duration")
    func globalOptionsAnywhere() throws {
        let daemon = try ServingTests.start(ServingTests.counter())
        defer { daemon.remove() }
        for arguments in [
            ["--socket", daemon.socket, "list"],
            ["list", "--socket", daemon.socket],
            ["--timeout", "5s", "list", "--socket", daemon.socket],
            ["--socket", daemon.socket, "--timeout", "250ms", "list"],
            ["list", "--timeout=5000", "--socket=\(daemon.socket)"],
        ] {
            let result = try runTool(Self.ctl, arguments)
            #expect(result.status == 0, "\(arguments): \(result.stderr)")
            #expect(result.stdout == "token\n", "\(arguments)")
        }
        let bad = try runTool(Self.ctl, ["--timeout", "soon", "list", "--socket", daemon.socket])
        #expect(bad.status == 64)
        #expect(bad.stderr.hasPrefix("Error: The value 'soon' is invalid for '--timeout <duration>'"), "\(bad.stderr)")
    }

    @Test("a bare number in --timeout counts milliseconds, as every duration does (SPEC §2): 300 is 0.3 s, not 300 s")
    func bareTimeoutIsMilliseconds() throws {
        let daemon = try ServingTests.start(ServingTests.counter() + Self.patient)
        defer { daemon.remove() }
        // Read as seconds, the call would wait for the plugin's 3 s and print "late".
        let bare = try daemon.ctl("fetch", "patient", "--timeout", "300")
        #expect(bare.status == 75, "\(bare.stdout) \(bare.stderr)")
        #expect(bare.stderr.hasPrefix("expirablectl: CALLTIMEOUT the daemon did not answer within 0.3 seconds"), "\(bare.stderr)")
        let help = try runTool(Self.ctl, ["fetch", "--help"])
        #expect(help.stdout.contains("a bare number is milliseconds"), "\(help.stdout)")
        #expect(!help.stdout.contains("a bare number is seconds"), "\(help.stdout)")
    }

    @Test("--version prints the same version from both binaries, the one INFO reports")
    func version() throws {
        let daemon = try ServingTests.start(ServingTests.counter())
        defer { daemon.remove() }
        let ctl = try runTool(Self.ctl, ["--version"])
        let expirabled = try runTool(TestPaths.product("expirabled").path, ["--version"])
        #expect(ctl.status == 0 && expirabled.status == 0)
        #expect(!ctl.stdout.isEmpty)
        #expect(ctl.stdout == expirabled.stdout)
        let info = try daemon.redis("INFO", "server")
        #expect(info.contains("version:\(ctl.stdout.trimmingCharacters(in: .newlines))"), "\(info)")
    }

    @Test("expirabled --version and --help that cannot be written (/dev/full) exit 74 with the reason, not 0 with nothing printed")
    func daemonVersionToFullDisk() throws {
        let expirabled = try TestPaths.product("expirabled").path
        for flag in ["--version", "--help"] {
            let result = try runTool("/bin/sh", ["-c", #""$0" "$1" > /dev/full"#, expirabled, flag])
            #expect(result.status == 74, "\(flag): \(result)")
            #expect(result.stderr == "expirabled: cannot write to standard output: No space left on device\n", "\(flag): \(result.stderr)")
        }
    }

    @Test("expirablectl --version, --help and help COMMAND that cannot be written (/dev/full) exit 74 with the reason, as its other output does; written, they exit 0")
    func controlHelpToFullDisk() throws {
        for arguments in [["--version"], ["--help"], ["help", "fetch"], ["fetch", "--help"]] {
            let result = try runTool("/bin/sh", ["-c", #"p="$0"; "$p" "$@" > /dev/full"#, try Self.ctl] + arguments)
            #expect(result.status == 74, "\(arguments): \(result)")
            #expect(result.stderr == "expirablectl: cannot write to standard output: No space left on device; nothing more is printed (status 74)\n", "\(arguments): \(result.stderr)")
            let written = try runTool(Self.ctl, arguments)
            #expect(written.status == 0 && !written.stdout.isEmpty && written.stderr.isEmpty, "\(arguments): \(written)")
        }
    }

    @Test("every reading command prints JSON with --json: fetch, list, status, cluster, explain, ping")
    func json() throws {
        let daemon = try ServingTests.start(ServingTests.counter())
        defer { daemon.remove() }
        func parsed(_ arguments: String...) throws -> Any {
            let result = try runTool(Self.ctl, arguments + ["--socket", daemon.socket])
            #expect(result.status == 0, "\(arguments): \(result.stderr)")
            #expect(result.stdout.hasSuffix("}\n") || result.stdout.hasSuffix("]\n"))
            #expect(result.stdout.filter { $0 == "\n" }.count == 1, "one line: \(result.stdout)")
            return try JSONSerialization.jsonObject(with: Data(result.stdout.utf8))
        }
        let fetched = try #require(try parsed("fetch", "token", "--json") as? [String: Any])
        #expect(fetched["value"] as? String == "token-1")
        #expect(try parsed("list", "--json") as? [String] == ["token"])
        let status = try #require(try parsed("status", "--json") as? [[String: Any]])
        #expect(status.count == 1)
        #expect(status.first?["name"] as? String == "token")
        #expect(status.first?["state"] as? String == "valid")
        #expect((status.first?["expires_in_ms"] as? Int ?? 0) > 50_000)
        #expect(status.first?["fetching"] as? Bool == false)
        #expect(status.first?["plugin_calls"] as? Int == 1)
        let members = try #require(try parsed("cluster", "--json") as? [[String: Any]])
        #expect(members.count == 1, "\(members)")
        #expect(members.first?["node"] as? String == "local")
        let explained = try #require(try parsed("explain", "token", "--json") as? [String: Any])
        #expect(explained["name"] as? String == "token")
        let pong = try #require(try parsed("ping", "--json") as? [String: Any])
        #expect(pong["pong"] as? Bool == true)
        #expect(((pong["round_trip_ms"] as? NSNumber)?.doubleValue).map { $0 >= 0 } == true, "\(pong)")
    }

    @Test("status --json gives every key one type whatever the configuration: shares and durations under their own keys, off absent")
    func statusJSONTypes() throws {
        let daemon = try ServingTests.start(
            ServingTests.counter("share", count: "share").replacingOccurrences(
                of: "plugin = \"counter\"\n", with: "plugin = \"counter\"\nrefresh = \"eager\"\nbefore_expiry = \"20%\"\njitter = \"10%\"\nretry_backoff = \"30s\"\n")
            + ServingTests.counter("fixed", count: "fixed").replacingOccurrences(
                of: "plugin = \"counter\"\n", with: "plugin = \"counter\"\nrefresh = \"eager\"\nbefore_expiry = \"5s\"\njitter = \"2s\"\n")
            + ServingTests.counter("plain", count: "plain"))
        defer { daemon.remove() }
        let result = try daemon.ctl("status", "--json")
        #expect(result.status == 0, "\(result.stderr)")
        let objects = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [[String: Any]])
        let byName = Dictionary(uniqueKeysWithValues: objects.map { ($0["name"] as? String ?? "?", $0) })
        let share = try #require(byName["share"]), fixed = try #require(byName["fixed"]), plain = try #require(byName["plain"])
        #expect((share["before_expiry_percent"] as? NSNumber)?.doubleValue == 20 && share["before_expiry_ms"] == nil, "\(share)")
        #expect(fixed["before_expiry_ms"] as? Int == 5000 && fixed["before_expiry_percent"] == nil, "\(fixed)")
        #expect((share["jitter_percent"] as? NSNumber)?.doubleValue == 10 && share["jitter_ms"] == nil, "\(share)")
        #expect(fixed["jitter_ms"] as? Int == 2000 && fixed["jitter_percent"] == nil, "\(fixed)")
        #expect(plain["jitter_ms"] as? Int == 0, "\(plain)")
        #expect(share["retry_backoff_ms"] as? Int == 30000, "\(share)")
        #expect(fixed["retry_backoff_ms"] == nil && plain["retry_backoff_ms"] == nil, "off is absent: \(fixed)")
        // Across the objects every key has one JSON type (null aside), as Python's json reads them: a program can
        // rely on it. Keys in milliseconds or percent are numbers.
        let script = """
            import json, sys
            types = {}
            for o in json.loads(sys.argv[1]):
                for k, v in o.items():
                    if v is not None: types.setdefault(k, set()).add("number" if type(v) in (int, float) else type(v).__name__)
            bad = {k: sorted(t) for k, t in types.items() if len(t) > 1 or ((k.endswith("_ms") or k.endswith("_percent")) and t != {"number"})}
            print(json.dumps(bad, sort_keys=True)); print(" ".join(sorted(types)))
            """
        let checked = try runTool("python3", ["-c", script, result.stdout])
        let report = checked.stdout.split(separator: "\n").map(String.init)
        #expect(report.first == "{}", "keys with more than one type, or not numbers: \(checked.stdout) \(checked.stderr)")
        let keys = Set((report.dropFirst().first ?? "").split(separator: " ").map(String.init))
        #expect(!keys.contains("jitter") && !keys.contains("before_expiry"), "\(keys.sorted())")
    }

    @Test("check-config asks the file's own server.socket whether a daemon runs there, and says reload applies the file")
    func checkConfigAsksTheFilesSocket() throws {
        let daemon = try ServingTests.start(ServingTests.counter())
        defer { daemon.remove() }
        // --socket names a path where nothing runs: the file's socket is what counts.
        let elsewhere = daemon.directory.appending("elsewhere.sock")
        let running = try runTool(Self.ctl, ["check-config", daemon.configPath, "--socket", elsewhere])
        #expect(running.status == 0, "\(running.stderr)")
        #expect(running.stdout.contains("a daemon is running on \(daemon.socket) (this file's server.socket)"), "\(running.stdout)")
        #expect(running.stdout.contains("expirablectl --socket \(daemon.socket) reload"), "\(running.stdout)")
        #expect(running.stdout.contains("restart"), "keys only a restart applies are named: \(running.stdout)")
        #expect(!running.stdout.contains("restart it to apply"), "\(running.stdout)")
        // Another file whose socket has no daemon: nothing is said, though --socket names a running daemon.
        let other = daemon.directory.appending("other.toml")
        let text = try String(contentsOfFile: daemon.configPath, encoding: .utf8).replacingOccurrences(of: "socket = \"\(daemon.socket)\"", with: "socket = \"\(elsewhere)\"")
        try text.write(toFile: other, atomically: true, encoding: .utf8)
        let idle = try daemon.ctl("check-config", other)
        #expect(idle.status == 0, "\(idle.stderr)")
        #expect(!idle.stdout.contains("a daemon is running"), "\(idle.stdout)")
    }

    @Test("exit statuses: 66 not found, 1 fetch failed, 75 timeouts, 64 usage, 73 cert cannot write")
    func exitStatusPerKind() throws {
        let daemon = try ServingTests.start(ServingTests.counter() + """
            [expirable.broken]
            plugin = "command"
            scope = "local"
            [expirable.broken.params]
            shell = "exit 4"
            ttl = "1m"
            [expirable.slow]
            plugin = "counter"
            scope = "local"
            timeout = "200ms"
            [expirable.slow.params]
            sleep_ms = 2000

            """ + Self.patient)
        defer { daemon.remove() }
        let notFound = try daemon.ctl("fetch", "nope")
        #expect(notFound.status == 66)
        let fetchFailed = try daemon.ctl("fetch", "broken")
        #expect(fetchFailed.status == 1)
        #expect(fetchFailed.stderr.hasPrefix("expirablectl: FETCH "), "\(fetchFailed.stderr)")
        let pluginTimeout = try daemon.ctl("fetch", "slow")
        #expect(pluginTimeout.status == 75)
        #expect(pluginTimeout.stderr.hasPrefix("expirablectl: TIMEOUT "), "\(pluginTimeout.stderr)")
        let callTimeout = try daemon.ctl("fetch", "patient", "--timeout", "300ms")
        #expect(callTimeout.status == 75)
        #expect(callTimeout.stderr.hasPrefix("expirablectl: CALLTIMEOUT the daemon did not answer within"), "\(callTimeout.stderr)")
        #expect(try daemon.ctl("fetch").status == 64)
        #expect(try daemon.ctl("status", "--no-such-option").status == 64)
        let cert = try runTool(Self.ctl, ["cert", "ca", "--dir", daemon.directory.appending("missing/dir")])
        #expect(cert.status == 73)
        #expect(cert.stderr.hasPrefix("expirablectl: cannot create"), "\(cert.stderr)")
        #expect(try runTool(Self.ctl, ["cert", "ca", "--socket", daemon.socket, "--dir", daemon.directory.path]).status == 0)
    }

    @Test("a command the command plugin kills at its deadline is a TIMEOUT (75, try again), not a FETCH failure")
    func commandPluginTimeout() throws {
        let daemon = try ServingTests.start("""
            [expirable.slow]
            plugin = "command"
            scope = "local"
            timeout = "1s"
            [expirable.slow.params]
            shell = "sleep 5; echo late"
            ttl = "1m"

            """)
        defer { daemon.remove() }
        let result = try daemon.ctl("fetch", "slow")
        #expect(result.status == 75, "\(result.stderr)")
        #expect(result.stderr == "expirablectl: TIMEOUT command plugin: /bin/sh did not finish within 900ms and was killed\n")
    }

    @Test("expirablectl ends on SIGINT, SIGTERM and SIGHUP as any command-line tool does (130, 143, 129): a running watch, and a fetch waiting on a slow plugin")
    func endsOnSignals() throws {
        let signals: [(name: String, number: Int32)] = [("int", SIGINT), ("term", SIGTERM), ("hup", SIGHUP)]
        let daemon = try ServingTests.start(ServingTests.counter() + signals.map { signal in
            "[expirable.slow_\(signal.name)]\nplugin = \"sleeper\"\nscope = \"local\"\ntimeout = \"30s\"\n"
                + "[expirable.slow_\(signal.name).params]\nsleep_ms = 20000\nstarted_file = \"COUNT/\(signal.name).started\"\n"
        }.joined(), testPlugins: ["counter", "sleeper"])
        defer { daemon.remove() }
        for signal in signals {
            let watch = try RunningTool([try Self.ctl, "watch", "token", "--socket", daemon.socket])
            #expect(try WatchTests.firstLine(of: watch, rotating: daemon)?.hasPrefix("token-") == true, "subscribed")
            let watched = watch.stop(signal: signal.number)
            #expect(watched.status == 128 + signal.number, "watch after SIG\(signal.name.uppercased()): \(watched.status) \(watched.stderr)")

            let fetch = try RunningTool([try Self.ctl, "--socket", daemon.socket, "--timeout", "60s", "fetch", "slow_\(signal.name)"])
            let started = daemon.directory.appending("\(signal.name).started")
            #expect(IsolationTests.eventually(seconds: 30) { FileManager.default.fileExists(atPath: started) }, "the plugin call began")
            let fetched = fetch.stop(signal: signal.number)
            #expect(fetched.status == 128 + signal.number, "fetch after SIG\(signal.name.uppercased()): \(fetched.status) \(fetched.stderr)")
        }
        #expect(daemon.answers(), "the daemon is not disturbed")
    }

    @Test("connection errors name the cause: no socket, a stale socket file, not a socket; each exits 69")
    func connectionErrors() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let missing = directory.appending("none.sock")
        let none = try runTool(Self.ctl, ["ping", "--socket", missing])
        #expect(none.status == 69)
        #expect(none.stderr == "expirablectl: UNAVAILABLE no socket \(missing): is expirabled running, and is that its server.socket?\n")

        // A socket file nobody listens on: what a daemon killed with SIGKILL leaves behind.
        let stale = directory.appending("stale.sock")
        try bindAndClose(stale)
        let refused = try runTool(Self.ctl, ["--socket", stale, "status"])
        #expect(refused.status == 69)
        #expect(refused.stderr == "expirablectl: UNAVAILABLE no daemon is listening on \(stale): a stale socket file left by a daemon that stopped; start expirabled (it replaces the file)\n")

        let file = try runTool(Self.ctl, ["ping", "--socket", "/etc/hostname"])
        #expect(file.status == 69)
        #expect(file.stderr == "expirablectl: UNAVAILABLE /etc/hostname is not a socket but a file; give the daemon's socket, server.socket in its configuration\n")
        #expect(!file.stderr.contains("refused"))
    }

    @Test("a socket path longer than the client connects to (103 bytes) is refused with the real limit, exit 69")
    func socketPathTooLong() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.path + "/" + String(repeating: "q", count: 104 - directory.path.utf8.count - 6) + ".sock"
        #expect(path.utf8.count == 104)
        let result = try runTool(Self.ctl, ["ping", "--socket", path])
        #expect(result.status == 69)
        #expect(result.stderr == "expirablectl: UNAVAILABLE the socket path \(path) is 104 bytes long; this client connects to Unix socket paths of at most 103 bytes; use a shorter server.socket\n", "\(result.stderr)")
    }

    static let canDropPrivileges = getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv")

    @Test("as a user outside the socket's group: permission denied, with the fix, exit 77", .enabled(if: canDropPrivileges, "needs root and setpriv"))
    func permissionDeniedOnTheSocket() throws {
        let daemon = try ServingTests.start(ServingTests.counter())
        defer { daemon.remove() }
        let result = try runTool("/usr/bin/setpriv", ["--reuid=nobody", "--regid=nogroup", "--clear-groups", Self.ctl, "ping", "--socket", daemon.socket])
        #expect(result.status == 77)
        #expect(result.stderr == "expirablectl: NOPERM permission denied on \(daemon.socket): you are not in the group that owns it (ls -l \(daemon.socket)), or run as that user\n")
        #expect(!result.stderr.contains("is expirabled running"))
        #expect(!result.stderr.contains(")\n") || result.stderr.hasSuffix("that user\n"))
    }

    @Test("permission denied names the real cause: a directory on the way the user cannot enter, a socket only its owner may open", .enabled(if: canDropPrivileges, "needs root and setpriv"))
    func permissionDeniedCauses() throws {
        let daemon = try ServingTests.start(ServingTests.counter(), server: "socket_mode = \"0666\"\n")
        defer { daemon.remove() }
        let nobody = ["/usr/bin/setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", try Self.ctl, "ping", "--socket", daemon.socket]
        chmod(daemon.directory.path, 0o700)
        let directory = try runTool(nobody[0], Array(nobody.dropFirst()))
        chmod(daemon.directory.path, 0o755)
        #expect(directory.status == 77)
        #expect(directory.stderr == "expirablectl: NOPERM permission denied on \(daemon.socket): you may not enter the directory \(daemon.directory.path) (ls -ld \(daemon.directory.path): search permission, x, is missing); ask for it, or run as a user who has it\n")
        let owner = try ServingTests.start(ServingTests.counter(), server: "socket_mode = \"0600\"\n")
        defer { owner.remove() }
        let own = try runTool(nobody[0], Array(nobody.dropFirst().dropLast()) + [owner.socket])
        #expect(own.status == 77)
        #expect(own.stderr == "expirablectl: NOPERM permission denied on \(owner.socket): only its owner may connect (mode 0600; ls -l \(owner.socket)); run as that user, or widen server.socket_mode\n")
    }

    @Test("messages that name what the user gave and the fix: an empty $EXPIRABLE_SOCKET, check-config's path, --timeout out of range, negative durations, CALLTIMEOUT, help for no such command")
    func messagesNameTheCause() throws {
        let daemon = try ServingTests.start(Self.patient)
        defer { daemon.remove() }
        let empty = try runTool(Self.ctl, ["ping"], environment: ProcessInfo.processInfo.environment.merging(["EXPIRABLE_SOCKET": ""]) { $1 })
        #expect(empty.status == 64)
        #expect(empty.stderr.contains("$EXPIRABLE_SOCKET is set but empty"), "\(empty.stderr)")
        #expect(!empty.stderr.contains("--socket is empty"), "\(empty.stderr)")
        let check = try runTool(Self.ctl, ["check-config", "/nonexistent.toml"])
        #expect(check.status == 78)
        #expect(check.stderr == "expirablectl: /nonexistent.toml: cannot read the configuration (no such file); check the path\n", "\(check.stderr)")
        for value in ["-1", "0", "0ms", "99999999999999"] {
            let result = try runTool(Self.ctl, ["ping", "--socket", daemon.socket, "--timeout", value])
            #expect(result.status == 64, "--timeout \(value): \(result.stderr)")
            #expect(result.stderr.contains("'\(value)' is invalid for '--timeout <duration>': expected a duration from 1ms to 7 days"), "\(result.stderr)")
        }
        let minTTL = try runTool(Self.ctl, ["fetch", "patient", "--socket", daemon.socket, "--min-ttl", "-5"])
        #expect(minTTL.status == 64)
        #expect(minTTL.stderr.contains("--min-ttl expects"), "\(minTTL.stderr)")
        let calltimeout = try daemon.ctl("fetch", "patient", "--timeout", "300ms")
        #expect(calltimeout.status == 75)
        #expect(calltimeout.stderr == "expirablectl: CALLTIMEOUT the daemon did not answer within 0.3 seconds on \(daemon.socket); if it is busy (a slow plugin call), raise --timeout\n", "\(calltimeout.stderr)")
        let help = try runTool(Self.ctl, ["help", "nosuch"])
        #expect(help.status == 64)
        #expect(help.stderr.contains("no command 'nosuch'"), "\(help.stderr)")
        #expect(try runTool(Self.ctl, ["help", "fetch"]).status == 0)
        #expect(try runTool(Self.ctl, ["help", "cert", "node"]).status == 0)
    }

    @Test("a param a plugin refuses is reported at the param's own line, by check-config and by reload, not at its [params] table")
    func paramRefusalLine() throws {
        let good = "[expirable.a]\nplugin = \"command\"\nscope = \"local\"\n[expirable.a.params]\nshell = \"echo a\"\nttl = \"1m\"\n"
        let daemon = try ServingTests.start(good)
        defer { daemon.remove() }
        let text = try String(contentsOfFile: daemon.configPath, encoding: .utf8)
        try (text + "extra = 5\n").write(toFile: daemon.configPath, atomically: true, encoding: .utf8)
        let lines = try String(contentsOfFile: daemon.configPath, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false)
        let line = try #require(lines.firstIndex(of: "extra = 5")) + 1
        let check = try runTool(Self.ctl, ["check-config", daemon.configPath])
        #expect(check.status == 78)
        #expect(check.stderr.hasPrefix("expirablectl: \(daemon.configPath):\(line): expirable.a: plugin "), "\(check.stderr)")
        #expect(check.stderr.contains("unknown param 'extra'"), "\(check.stderr)")
        let reload = try daemon.ctl("reload")
        #expect(reload.status == 65)
        #expect(reload.stderr.contains("\(daemon.configPath):\(line): expirable.a: plugin "), "\(reload.stderr)")
    }

    @Test("help reload says what the daemon does: a changed expirable with the same plugin and params keeps its value, and [server] admins may reload")
    func helpReload() throws {
        let help = try runTool(Self.ctl, ["help", "reload"])
        #expect(help.status == 0)
        // ArgumentParser wraps the text at the terminal's width: compared as one line.
        let text = help.stdout.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        #expect(!text.contains("changed ones start empty"), "\(text)")
        #expect(text.contains("a changed one whose plugin and params are the same keeps its value"), "\(text)")
        #expect(text.contains("[server] admins"), "\(text)")
    }

    @Test("--help shows the defaults the README gives: exec --grace 10s, --timeout 35s; expirabled --help lists --wall-clock-offset")
    func helpShowsDefaults() throws {
        let exec = try runTool(Self.ctl, ["help", "exec"])
        let text = exec.stdout.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        #expect(text.contains("before SIGKILL, 0 to 7 days. (default: 10s)"), "\(text)")
        #expect(text.contains("from 1ms to 7 days. (default: 35s)"), "\(text)")
        let daemon = try runTool(TestPaths.product("expirabled").path, ["--help"])
        #expect(daemon.stdout.contains("--wall-clock-offset <ms>"), "\(daemon.stdout)")
        #expect(daemon.stdout.contains("[--wall-clock-offset <ms>]"), "in the usage line: \(daemon.stdout)")
    }

    @Test("a user who may connect but not clear gets NOPERM from the daemon, exit 77", .enabled(if: canDropPrivileges, "needs root and setpriv"))
    func noPermissionFromTheDaemon() throws {
        let daemon = try ServingTests.start(ServingTests.counter(), server: "socket_mode = \"0666\"\n")
        defer { daemon.remove() }
        let nobody = ["/usr/bin/setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", try Self.ctl]
        let read = try runTool(nobody[0], Array(nobody.dropFirst()) + ["list", "--socket", daemon.socket])
        #expect(read.status == 0, "\(read.stderr)")
        let clear = try runTool(nobody[0], Array(nobody.dropFirst()) + ["clear", "token", "--socket", daemon.socket])
        #expect(clear.status == 77)
        #expect(clear.stderr.hasPrefix("expirablectl: NOPERM "), "\(clear.stderr)")
    }

    @Test("expirabled --log-format json: every line of a run is one JSON object with time, level, label, message and string metadata")
    func jsonLogs() throws {
        let daemon = try DaemonProcess(expirables: """
            [expirable.token]
            plugin = "counter"
            [expirable.token.params]
            prefix = "token-"
            [expirable.noisy]
            plugin = "command"
            scope = "local"
            [expirable.noisy.params]
            shell = "printf 'bad\\\\001 \\\\033[31m \\\\\\"quoted\\\\\\"\\\\n' >&2; exit 3"
            ttl = "1m"

            """, arguments: ["--log-format", "json"])
        defer { daemon.remove() }
        #expect(try daemon.redis("GET", "token").hasPrefix("token-"))
        _ = try daemon.redis("GET", "noisy")
        _ = try daemon.redis("GET", "nope")
        #expect(try daemon.ctl("clear", "--all").status == 0)
        #expect(daemon.stop() == 0)

        let log = daemon.log
        let lines = log.split(separator: "\n", omittingEmptySubsequences: false).dropLast()
        #expect(lines.count >= 4, "\(log)")
        #expect(log.hasSuffix("\n"))
        for line in lines {
            let object = try #require(try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "not a JSON object: \(line)")
            for key in ["time", "level", "label", "message"] { #expect(object[key] is String, "\(key) in \(line)") }
            #expect(object.values.allSatisfy { $0 is String }, "\(line)")
            let time = object["time"] as? String ?? ""
            #expect(time.range(of: #"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$"#, options: .regularExpression) != nil, "\(time)")
            #expect(!line.unicodeScalars.contains { $0.value < 0x20 }, "a raw control character in \(line)")
        }
        #expect(log.contains("\"message\":\"serving\""))
        #expect(!log.contains("token-1"), "a value in the log")
        // The strictest parser at hand agrees.
        let python = try runTool("python3", ["-c", "import json,sys\nfor line in open(sys.argv[1]): assert isinstance(json.loads(line), dict)", daemon.logPath])
        #expect(python.status == 0, "\(python.stderr)")
    }

    @Test("expirabled --log-format json: a configuration that stops the daemon is reported as a JSON line too")
    func jsonStartFailure() throws {
        let daemon = try DaemonProcess(expirables: "[expirable.x]\nplugin = \"missing\"\n", start: false)
        defer { daemon.remove() }
        let result = try runTool(TestPaths.product("expirabled").path, ["--config", daemon.configPath, "--log-format", "json"])
        #expect(result.status == 1)
        let lines = result.stderr.split(separator: "\n")
        for line in lines { #expect((try? JSONSerialization.jsonObject(with: Data(line.utf8))) is [String: Any], "\(line)") }
        let object = try #require(try JSONSerialization.jsonObject(with: Data((lines.last ?? "").utf8)) as? [String: Any], "\(result.stderr)")
        #expect(object["level"] as? String == "critical")
        #expect((object["message"] as? String ?? "").contains("plugin \"missing\" not found"))
    }
}
