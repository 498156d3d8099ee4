import ExpirableTestSupport
import Foundation
import Synchronization
import Testing

/// Reload (SPEC §10): SIGHUP and RELOAD read the configuration again, all or nothing, keeping what did not change.
@Suite("Configuration reload")
struct ReloadTests {
    static func counter(_ name: String, prefix: String? = nil, count: String? = nil) -> String {
        "[expirable.\(name)]\nplugin = \"counter\"\n[expirable.\(name).params]\nprefix = \"\(prefix ?? name + "-")\"\ncount_file = \"COUNT/\(count ?? name)\"\n"
    }

    /// Rewrites the daemon's configuration: its [server] part as written at start, then `expirables`.
    static func rewrite(_ daemon: DaemonProcess, server: String = "", _ expirables: String) throws {
        let text = try String(contentsOfFile: daemon.configPath, encoding: .utf8)
        let head = text.components(separatedBy: "\n[expirable.").first ?? text
        try (head.replacingOccurrences(of: "[server]\n", with: "[server]\n" + server) + "\n" + expirables.replacingOccurrences(of: "COUNT", with: daemon.directory.path))
            .write(toFile: daemon.configPath, atomically: true, encoding: .utf8)
    }

    @Test("a daemon started with a relative --config reloads it after an inline plugin changed the working directory")
    func relativeConfigAfterChdir() throws {
        let daemon = try DaemonProcess(expirables: """
            [expirable.wanderer]
            plugin = "crasher"
            [expirable.wanderer.params]
            mode = "chdir"
            """, server: "isolation = \"inline\"", testPlugins: ["crasher"], start: false)
        defer { daemon.remove() }
        // From the configuration's directory, as `expirabled --config expirable.toml`.
        daemon.launcher = ["/bin/sh", "-c", "cd \"$(dirname \"$3\")\" && program=$1 && shift 3 && exec \"$program\" --config expirable.toml \"$@\"", "sh"]
        try daemon.start()
        let real = URL(fileURLWithPath: daemon.configPath).resolvingSymlinksInPath().path
        #expect(try daemon.redis("RELOAD").hasPrefix("reloaded \(real)"))
        #expect(try daemon.redis("GET", "wanderer").hasPrefix("pid-"))
        let answer = try daemon.redis("RELOAD")
        #expect(answer.hasPrefix("reloaded \(real)"), "\(answer)")
    }

    @Test("RELOAD runs off the event loop: while it waits for an added plugin's expirable_create, other clients are answered; RELOAD answers once it is done")
    func reloadCommandKeepsServing() throws {
        let daemon = try ServingTests.start(Self.counter("kept"))
        defer { daemon.remove() }
        #expect(try daemon.redis("GET", "kept") == "kept-1")
        let wait = daemon.directory.appending("create-wait")
        try Self.rewrite(daemon, Self.counter("kept") + "[expirable.slow]\nplugin = \"counter\"\ntimeout = \"30s\"\n[expirable.slow.params]\ncreate_wait_file = \"\(wait)\"\n")
        let reloading = try RawConnection(daemon.socket)
        reloading.setReceiveTimeout(seconds: 30)
        reloading.send("RELOAD\r\n")
        defer { _ = FileManager.default.createFile(atPath: wait, contents: nil) }
        #expect(IsolationTests.eventually(seconds: 10) { FileManager.default.fileExists(atPath: wait + ".started") }, "\(daemon.log.suffix(800))")
        // The reload waits for the new plugin's expirable_create; the daemon's one event loop answers meanwhile.
        let other = try RawConnection(daemon.socket)
        #expect(other.roundTrip("GET kept\r\nPING\r\n", expecting: 2) == "$6\r\nkept-1\r\n+PONG\r\n")
        #expect(!daemon.log.contains("configuration reloaded"), "the reload was still waiting")
        _ = FileManager.default.createFile(atPath: wait, contents: nil)
        let reply = reloading.receive(replies: 1)
        #expect(reply.contains("added: slow; changed: none; removed: none; unchanged: kept"), "\(reply)")
        #expect(try daemon.redis("GET", "slow") == "v1")
        #expect(reloading.roundTrip("PING\r\n", expecting: 1) == "+PONG\r\n", "the connection goes on after RELOAD")
    }

    @Test("SIGHUP applies added, changed and removed expirables; an unchanged one keeps its value, its helper and makes no call")
    func hangup() throws {
        let daemon = try ServingTests.start(Self.counter("kept") + Self.counter("changed") + Self.counter("removed"))
        defer { daemon.remove() }
        #expect(try daemon.redis("GET", "kept") == "kept-1")
        #expect(try daemon.redis("GET", "changed") == "changed-1")
        let keptHelper = try #require(IsolationTests.helper(of: daemon, for: "kept"))
        let socketBefore = try FileManager.default.attributesOfItem(atPath: daemon.socket)[.systemFileNumber] as? Int
        try Self.rewrite(daemon, Self.counter("kept") + Self.counter("changed", prefix: "new-", count: "changed2") + Self.counter("added"))
        kill(try #require(daemon.process?.pid), SIGHUP)
        #expect(IsolationTests.eventually { daemon.log.contains("configuration reloaded") }, "\(daemon.log.suffix(800))")
        #expect(daemon.answers(), "SIGHUP did not stop the daemon")
        #expect(try FileManager.default.attributesOfItem(atPath: daemon.socket)[.systemFileNumber] as? Int == socketBefore, "the socket stayed")
        #expect(try daemon.redis("GET", "kept") == "kept-1", "kept its value")
        #expect(daemon.count("kept") == 1, "no call for the unchanged expirable")
        #expect(IsolationTests.helper(of: daemon, for: "kept") == keptHelper, "and its helper")
        #expect(try daemon.redis("GET", "changed") == "new-1", "changed: a new instance with the new params")
        #expect(try daemon.redis("GET", "added") == "added-1")
        #expect(try daemon.redis("GET", "removed").hasPrefix("NOTFOUND"))
        #expect(try daemon.redis("LIST") == "added\nchanged\nkept")
    }

    /// A command expirable that appends a line to COUNT/NAME at each call and answers a value unique to the call.
    static func command(_ name: String, settings: String = "", tag: String? = nil, ttl: String = "1h") -> String {
        "[expirable.\(name)]\nplugin = \"command\"\n\(settings)[expirable.\(name).params]\n"
            + "shell = \"echo called >> COUNT/\(name); date +\(tag ?? name)-%s%N\"\nttl = \"\(ttl)\"\n"
    }

    @Test("a changed timeout, stale_if_error or prefetch keeps the value, with no call; changed params call again")
    func settingsKeepValue() throws {
        let daemon = try ServingTests.start(Self.command("a") + Self.command("b") + Self.command("c") + Self.command("d"))
        defer { daemon.remove() }
        let before = try ["a", "b", "c", "d"].map { try daemon.redis("GET", $0) }
        #expect(before.allSatisfy { $0.contains("-") }, "\(before)")
        let helpers = ["a", "b"].map { IsolationTests.helper(of: daemon, for: $0) }
        try Self.rewrite(daemon, Self.command("a", settings: "timeout = \"7s\"\n") + Self.command("b", settings: "stale_if_error = \"1m\"\n")
            + Self.command("c", settings: "prefetch = true\n") + Self.command("d", tag: "new"))
        let answer = try daemon.redis("RELOAD")
        #expect(answer.contains("changed: a (value kept), b (value kept), c (value kept), d (new plugin instance, starts empty); removed: none"), "\(answer)")
        #expect(daemon.log.contains("configuration reloaded"))
        for (index, name) in ["a", "b", "c"].enumerated() {
            #expect(try daemon.redis("GET", name) == before[index], "\(name) kept its value")
            #expect(daemon.lines(name) == 1, "no new call for \(name)")
        }
        #expect(IsolationTests.helper(of: daemon, for: "b") == helpers[1], "b kept its plugin instance and helper")
        #expect(IsolationTests.helper(of: daemon, for: "a") != helpers[0], "a's timeout is given to a new instance")
        #expect(try daemon.redis("GET", "d").hasPrefix("new-"), "d's params changed: a call with them")
        #expect(daemon.lines("d") == 2)
        #expect(try daemon.redis("GET", "a") == before[0], "and the value stays")
    }

    @Test("a kept value's next call runs under the new timeout")
    func newTimeoutApplies() throws {
        // Every call after the first takes 5 s.
        let slow = "[expirable.slow.params]\nshell = \"echo called >> COUNT/slow; [ $(wc -l < COUNT/slow) -gt 1 ] && sleep 5; echo slow-v\"\nttl = \"1h\"\n"
        let daemon = try ServingTests.start("[expirable.slow]\nplugin = \"command\"\ntimeout = \"20s\"\n" + slow)
        defer { daemon.remove() }
        #expect(try daemon.redis("GET", "slow") == "slow-v")
        try Self.rewrite(daemon, "[expirable.slow]\nplugin = \"command\"\ntimeout = \"1s\"\n" + slow)
        #expect(try daemon.redis("RELOAD").contains("changed: slow (value kept)"))
        #expect(try daemon.redis("GET", "slow") == "slow-v")
        #expect(try daemon.redis("CLEAR", "slow") == "OK")
        let answer = try daemon.redis("GET", "slow")
        // The command plugin kills its child 100 ms before the call's timeout (it was 19.9 s before the reload).
        #expect(answer.contains("/bin/sh did not finish within 900ms"), "\(answer)")
    }

    /// A command expirable whose every call appends a line to COUNT/NAME, then takes 2 s and answers `tag`.
    static func slowCommand(_ name: String, settings: String = "", tag: String = "v") -> String {
        "[expirable.\(name)]\nplugin = \"command\"\n\(settings)[expirable.\(name).params]\n"
            + "shell = \"echo called >> COUNT/\(name); sleep 2; echo \(tag)\"\nttl = \"1h\"\n"
    }

    /// Starts `GET name` on another thread, and returns once its plugin call has started (COUNT/NAME has a
    /// line), with a function that waits for the answer.
    static func getInFlight(_ daemon: DaemonProcess, _ name: String) throws -> () -> String {
        let answer = Mutex<String?>(nil)
        let done = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            let reply = (try? daemon.redis("GET", name)) ?? "redis-cli failed"
            answer.withLock { $0 = reply }
            done.signal()
        }
        try #require(IsolationTests.eventually { daemon.lines(name) == 1 }, "the call for \(name) started")
        return {
            _ = done.wait(timeout: .now() + 30)
            return answer.withLock { $0 } ?? "no answer within 30 s"
        }
    }

    @Test("a reload that replaces a helper's instance lets the call under way finish: its callers get the value, stored if kept")
    func callUnderWayOutlivesItsInstance() throws {
        let daemon = try ServingTests.start(Self.slowCommand("timed") + Self.slowCommand("params") + Self.slowCommand("gone"))
        defer { daemon.remove() }
        let timed = try Self.getInFlight(daemon, "timed")
        let params = try Self.getInFlight(daemon, "params")
        let gone = try Self.getInFlight(daemon, "gone")
        try Self.rewrite(daemon, Self.slowCommand("timed", settings: "timeout = \"20s\"\n") + Self.slowCommand("params", tag: "new"))
        let reload = try daemon.redis("RELOAD")
        #expect(reload.contains("changed: params (new plugin instance, starts empty), timed (value kept); removed: gone"), "\(reload)")
        #expect(timed() == "v", "the call under way answers its caller")
        #expect(params() == "v", "the old params' call answers its caller")
        #expect(gone() == "v", "a removed expirable's call answers its caller")
        #expect(try daemon.redis("GET", "timed") == "v", "and the kept value is stored")
        #expect(daemon.lines("timed") == 1, "no second call")
        #expect(try daemon.redis("GET", "params") == "new", "params changed: a call with the new ones")
        #expect(!daemon.log.contains("plugin helper died"), "\(daemon.log.suffix(1500))")
        #expect(try daemon.redis("INFO", "timed").contains("failures:0"))
        #expect(IsolationTests.eventually { IsolationTests.helper(of: daemon, for: "gone") == nil }, "the removed one's helper exits once its call is over")
    }

    @Test("callers parked on a paced call of an expirable a reload removes are told so at once")
    func removedWhilePaced() throws {
        let failing = "[expirable.paced]\nplugin = \"command\"\nretry_interval = \"8s\"\n[expirable.paced.params]\nshell = \"echo called >> COUNT/paced; exit 1\"\nttl = \"1h\"\n"
        let daemon = try ServingTests.start(failing + Self.counter("other"))
        defer { daemon.remove() }
        #expect(try daemon.redis("GET", "paced").hasPrefix("FETCH"))
        let answer = Mutex<String?>(nil)
        let done = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            let reply = (try? daemon.redis("GET", "paced")) ?? "redis-cli failed"
            answer.withLock { $0 = reply }
            done.signal()
        }
        #expect(IsolationTests.eventually { (try? daemon.redis("INFO", "paced"))?.contains("misses:2") ?? false }, "the second GET is parked")
        try Self.rewrite(daemon, Self.counter("other"))
        #expect(try daemon.redis("RELOAD").contains("removed: paced"))
        // Well before the paced call was due (8 s after the first).
        #expect(done.wait(timeout: .now() + 4) == .success, "the parked caller was answered at once")
        let reply = answer.withLock { $0 } ?? ""
        #expect(reply.contains("paced was removed by a reload"), "\(reply)")
        #expect(!reply.contains("daemon is stopping"), "\(reply)")
        #expect(daemon.lines("paced") == 1, "no second call")
    }

    @Test("lazy to eager refreshes the kept value in the background; eager to lazy stops its refresh")
    func refreshPolicyChange() throws {
        let daemon = try ServingTests.start(Self.command("up", ttl: "6s") + Self.command("down", settings: "refresh = \"eager\"\nbefore_expiry = \"3s\"\n", ttl: "6s"))
        defer { daemon.remove() }
        let up = try daemon.redis("GET", "up")
        let down = try daemon.redis("GET", "down")
        try Self.rewrite(daemon, Self.command("up", settings: "refresh = \"eager\"\nbefore_expiry = \"3s\"\n", ttl: "6s") + Self.command("down", ttl: "6s"))
        #expect(try daemon.redis("RELOAD").contains("changed: down (value kept), up (value kept)"))
        #expect(try daemon.redis("GET", "up") == up, "the value is kept")
        #expect(try daemon.redis("GET", "down") == down, "the value is kept")
        // up's refresh falls due 3 s after its value arrived: a call nobody asked for.
        #expect(IsolationTests.eventually(seconds: 10) { daemon.lines("up") == 2 }, "up was refreshed: \(daemon.lines("up")) calls")
        #expect(try daemon.redis("GET", "up") != up, "readers get the refreshed value")
        // down's refresh would have fallen due with up's (their values arrived together): none comes.
        #expect(!IsolationTests.eventually(seconds: 1) { daemon.lines("down") > 1 }, "down was not refreshed after turning lazy")
    }

    @Test("a keyed family whose timeout changed keeps its members' values")
    func keyedKeepsValues() throws {
        let daemon = try ServingTests.start(Self.command("fam", settings: "keyed = true\n"))
        defer { daemon.remove() }
        let one = try daemon.redis("GET", "fam:one")
        let two = try daemon.redis("GET", "fam:two")
        #expect(daemon.lines("fam") == 2)
        try Self.rewrite(daemon, Self.command("fam", settings: "keyed = true\ntimeout = \"7s\"\n"))
        #expect(try daemon.redis("RELOAD").contains("changed: fam (value kept)"))
        #expect(try daemon.redis("GET", "fam:one") == one)
        #expect(try daemon.redis("GET", "fam:two") == two)
        #expect(daemon.lines("fam") == 2, "no new call for the members")
        #expect(try daemon.redis("GET", "fam:three") != one)
        #expect(daemon.lines("fam") == 3, "a new member calls, with the plugin as before")
    }

    @Test("RELOAD answers what it applied; a bad file or a refusing plugin changes nothing and says why")
    func allOrNothing() throws {
        let daemon = try ServingTests.start(Self.counter("a"))
        defer { daemon.remove() }
        #expect(try daemon.redis("GET", "a") == "a-1")
        try Self.rewrite(daemon, Self.counter("a") + Self.counter("b"))
        let applied = try daemon.ctl("reload")
        #expect(applied.status == 0, "\(applied.stderr)")
        #expect(applied.stdout.contains("added: b; changed: none; removed: none; unchanged: a"), "\(applied.stdout)")

        // A typo: refused whole, with the file and line.
        try Self.rewrite(daemon, Self.counter("a") + "[expirable.c]\nplugin = \"counter\"\ncolour = \"blue\"\n")
        let typo = try daemon.redis("RELOAD")
        #expect(typo.hasPrefix("ERR reload refused, nothing changed: \(daemon.configPath):"), "\(typo)")
        #expect(typo.contains("expirable.c.colour: unknown key"))
        // A plugin that refuses its params: the same, and the expirable added beside it is not there either.
        try Self.rewrite(daemon, Self.counter("a") + Self.counter("d") + "[expirable.broken]\nplugin = \"command\"\n")
        let refused = try daemon.redis("RELOAD")
        // Named by the line of [expirable.broken] (it has no params table): every refusal names file and line.
        let brokenLine = try #require(String(contentsOfFile: daemon.configPath, encoding: .utf8)
            .split(separator: "\n", omittingEmptySubsequences: false).firstIndex { $0 == "[expirable.broken]" }) + 1
        #expect(refused.hasPrefix("ERR reload refused, nothing changed: \(daemon.configPath):\(brokenLine): expirable.broken:"), "\(refused)")
        #expect(try daemon.redis("GET", "d").hasPrefix("NOTFOUND"))
        #expect(try daemon.redis("GET", "b") == "b-1")
        #expect(try daemon.redis("GET", "a") == "a-1")
        #expect(daemon.count("a") == 1)
        let ctl = try daemon.ctl("reload")
        #expect(ctl.status == 65 && ctl.stderr.contains("reload refused"), "\(ctl.stdout) \(ctl.stderr)")
    }

    @Test("a change only a restart applies refuses the reload, naming it")
    func needsRestart() throws {
        let daemon = try ServingTests.start(Self.counter("a"))
        defer { daemon.remove() }
        try Self.rewrite(daemon, server: "socket_mode = \"0600\"\n", Self.counter("a") + Self.counter("b"))
        let answer = try daemon.redis("RELOAD")
        #expect(answer.hasPrefix("ERR reload refused, nothing changed: server.socket_mode changed, and only a restart applies it"), "\(answer)")
        #expect(try daemon.redis("GET", "b").hasPrefix("NOTFOUND"))
    }

    @Test("a changed or removed [metrics] refuses the reload, naming it; the old port keeps serving")
    func metricsNeedsRestart() throws {
        let port = try freePort(on: "127.0.0.1")
        let other = try freePort(on: "127.0.0.1")
        let daemon = try ServingTests.start("[metrics]\nlisten = \"127.0.0.1:\(port)\"\n\n" + Self.counter("a"))
        defer { daemon.remove() }
        #expect(try daemon.redis("GET", "a") == "a-1")
        #expect(IsolationTests.eventually { (try? loopbackHTTP(port: port, "GET", "/metrics").status) == 200 })
        let text = try String(contentsOfFile: daemon.configPath, encoding: .utf8)
        let listen = "listen = \"127.0.0.1:\(port)\""
        for (change, edited) in [
            ("moved", text.replacingOccurrences(of: listen, with: "listen = \"127.0.0.1:\(other)\"")),
            ("removed", text.replacingOccurrences(of: "[metrics]\n" + listen + "\n", with: "")),
        ] {
            try #require(edited != text)
            try (edited + Self.counter("b")).write(toFile: daemon.configPath, atomically: true, encoding: .utf8)
            let answer = try daemon.redis("RELOAD")
            #expect(answer.hasPrefix("ERR reload refused, nothing changed: [metrics] changed, and only a restart applies it"), "\(change): \(answer)")
            #expect(try daemon.redis("GET", "b").hasPrefix("NOTFOUND"), "\(change): nothing else was applied")
            #expect(try loopbackHTTP(port: port, "GET", "/metrics").status == 200, "\(change): the old port still serves")
            #expect((try? loopbackHTTP(port: other, "GET", "/metrics")) == nil, "\(change): nothing listens on the new one")
        }
        #expect(daemon.log.contains("configuration reload refused"))
    }

    @Test("another plugin_dir refuses the reload, naming it; the plugins of the old one keep serving")
    func pluginDirNeedsRestart() throws {
        let daemon = try ServingTests.start(Self.counter("a"))
        defer { daemon.remove() }
        #expect(try daemon.redis("GET", "a") == "a-1")
        // The other directory's libcounter.so is another plugin, which refuses the params: a restart would fail.
        let other = daemon.directory.appending("plugins2")
        try FileManager.default.createDirectory(atPath: other, withIntermediateDirectories: true)
        chmod(other, 0o755)
        _ = try compileTestPlugin("refuse", into: other, as: "counter")
        let text = try String(contentsOfFile: daemon.configPath, encoding: .utf8)
        let edited = text.replacingOccurrences(of: "plugin_dir = \"\(daemon.pluginDir)\"", with: "plugin_dir = \"\(other)\"")
        try #require(edited != text)
        try edited.write(toFile: daemon.configPath, atomically: true, encoding: .utf8)
        let answer = try daemon.redis("RELOAD")
        #expect(answer.hasPrefix("ERR reload refused, nothing changed: server.plugin_dir changed, and only a restart applies it"), "\(answer)")
        #expect(try daemon.redis("GET", "a") == "a-1")
        #expect(daemon.count("a") == 1, "the old plugin instance answers from memory")
        let check = try daemon.ctl("check-config", daemon.configPath)
        #expect(check.status != 0, "check-config refuses the file too: \(check.stdout) \(check.stderr)")
    }

    @Test("a reload that sets plugin_user is refused as restart-only: the running helpers keep their account")
    func pluginAccountNeedsRestart() throws {
        let daemon = try ServingTests.start(Self.counter("a"))
        defer { daemon.remove() }
        #expect(try daemon.redis("GET", "a") == "a-1")
        let text = try String(contentsOfFile: daemon.configPath, encoding: .utf8)
        let edited = text.replacingOccurrences(of: "[server]\n", with: "[server]\nplugin_user = \"nobody\"\n")
        try #require(edited != text)
        try edited.write(toFile: daemon.configPath, atomically: true, encoding: .utf8)
        let answer = try daemon.redis("RELOAD")
        #expect(answer.hasPrefix("ERR reload refused, nothing changed: server.plugin_user/plugin_group changed, and only a restart applies it"), "\(answer)")
        #expect(try daemon.redis("GET", "a") == "a-1")
        #expect(daemon.count("a") == 1)
    }

    @Test("a client reading during repeated reloads gets every answer from memory, without an error or a call")
    func readsDuringReloads() throws {
        let daemon = try ServingTests.start(Self.counter("steady"))
        defer { daemon.remove() }
        #expect(try daemon.redis("GET", "steady") == "steady-1")
        let stop = Atomic<Bool>(false)
        let failures = Mutex<[String]>([])
        let reader = DispatchGroup()
        DispatchQueue.global().async(group: reader) {
            let connection = try? RawConnection(daemon.socket)
            for _ in 0..<20_000 where !stop.load(ordering: .relaxed) {
                let reply = connection?.roundTrip("*2\r\n$3\r\nGET\r\n$6\r\nsteady\r\n", expecting: 1) ?? "no connection"
                if reply != "$8\r\nsteady-1\r\n" { failures.withLock { $0.append(reply) } }
            }
        }
        for round in 0..<10 {
            try Self.rewrite(daemon, Self.counter("steady") + (round % 2 == 0 ? Self.counter("extra\(round)") : ""))
            #expect(try daemon.redis("RELOAD").hasPrefix("reloaded"))
        }
        stop.store(true, ordering: .relaxed)
        reader.wait()
        #expect(failures.withLock { $0.isEmpty }, "\(failures.withLock { $0.prefix(3) })")
        #expect(daemon.count("steady") == 1)
    }
}
