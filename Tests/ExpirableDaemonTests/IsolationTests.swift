import ExpirableTestSupport
import Foundation
import Testing

/// `isolation = "process"` against a real daemon: plugins that crash, abort, exit, hang or break the protocol
/// cost their own callers an error, never the daemon or another expirable.
@Suite("Plugin isolation in helper processes")
struct IsolationTests {
    /// A daemon in process mode with `bad` (the crasher fixture, `params` added) and `good` (a counter).
    static func start(_ bad: String, timeout: String = "30s", arguments: [String] = []) throws -> DaemonProcess {
        try ServingTests.start("""
            [expirable.bad]
            plugin = "crasher"
            timeout = "\(timeout)"
            # These tests are about the helper's own restart backoff, not the engine's pacing (§3.17).
            retry_interval = "10ms"
            [expirable.bad.params]
            \(bad)
            \(ServingTests.counter("good"))
            """, server: "isolation = \"process\"", testPlugins: ["counter", "crasher"], arguments: arguments)
    }

    /// The pid of the daemon's helper for `expirable`, found by its command line.
    static func helper(of daemon: DaemonProcess, for expirable: String) -> pid_t? {
        guard let daemonPid = daemon.process?.pid else { return nil }
        let wanted = "expirabled\0--plugin-helper\0\(daemonPid)\0\(expirable)\0"
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { pid_t($0) }.first { pid in
            (try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/cmdline"))).map { String(decoding: $0, as: UTF8.self) } == wanted
        }
    }

    /// Calls `body` every 50 ms until it is true, for at most `seconds`; whether it became true.
    static func eventually(seconds: Double = 5, _ body: () throws -> Bool) rethrows -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if try body() { return true }
            usleep(50_000)
        }
        return try body()
    }

    /// Sends `GET name` on a connection of its own (no process to start on the way) and returns that connection
    /// once the call is under way in `helper`: the daemon says it is fetching, and the helper has armed the kernel
    /// timer it sets when a call starts (listed in /proc/PID/timers; where this process may not read that, 100 ms
    /// more for the call's frame to reach the helper). The reply is read from the connection, within 30 s.
    static func getUnderWay(_ daemon: DaemonProcess, _ name: String, helper: pid_t) throws -> RawConnection {
        let connection = try RawConnection(daemon.socket)
        connection.setReceiveTimeout(seconds: 30)
        let probe = try RawConnection(daemon.socket)
        connection.send("*2\r\n$3\r\nGET\r\n$\(name.utf8.count)\r\n\(name)\r\n")
        try #require(eventually(seconds: 10) { probe.roundTripCommand("INFO", name).contains("fetching:yes") }, "the daemon started the call")
        let timerArmed = { (try? String(contentsOfFile: "/proc/\(helper)/timers", encoding: .utf8)).map { $0.contains("ID:") } }
        guard timerArmed() != nil else {
            usleep(100_000)
            return connection
        }
        try #require(eventually(seconds: 10) { timerArmed() == true }, "helper \(helper) armed its call's timer")
        return connection
    }

    static let crashes: [(mode: String, error: String)] = [
        ("segv", "FETCH plugin for bad crashed (SIGSEGV)"),
        ("abort", "FETCH plugin for bad crashed (SIGABRT)"),
        ("exit", "FETCH plugin for bad exited with status 3"),
    ]

    @Test("a plugin that crashes, aborts or exits costs its caller a FETCH error naming how, within a second; the daemon serves on", arguments: crashes)
    func crash(mode: String, error: String) throws {
        let daemon = try Self.start("mode = \"\(mode)\"")
        defer { daemon.remove() }
        let first = try #require(Self.helper(of: daemon, for: "bad"), "the helper runs from the start")
        // Timed on a connection already open: the daemon's answer, not a redis-cli's start.
        let connection = try RawConnection(daemon.socket)
        let (answer, took) = connection.timedRoundTripCommand("GET", "bad")
        #expect(answer.hasPrefix(error), "\(answer)")
        #expect(took < 1)
        // Within the backoff (1 s from the death) the last death is the answer at once, without a new helper:
        // asked at once, so that a loaded machine cannot take this test past the backoff first.
        let (repeated, again) = connection.timedRoundTripCommand("GET", "bad")
        #expect(repeated.hasPrefix(error), "\(repeated)")
        #expect(again < 0.5)
        #expect(connection.roundTripCommand("INFO", "bad").contains("helper_restarts:0"), "no new helper")
        // explain says the helper is down and when a call may start one, not that a call may start now.
        let words = try daemon.ctl("explain", "bad").stdout
        #expect(words.contains("Next: its plugin's helper is down after its last death; calls get that death's error at once until the first call in "), "\(words)")
        #expect(!words.contains("may start now"), "\(words)")
        #expect(words.contains("Plugin: in a helper process (down, 0 restarts; the next starts in "), "\(words)")
        #expect(try daemon.redis("GET", "good") == "good-1")
        #expect(Self.eventually(seconds: 10) { kill(first, 0) != 0 }, "the dead helper was reaped")
        #expect(try daemon.redis("PING") == "PONG")
    }

    @Test("a hung plugin's call gets TIMEOUT and its helper is killed; the next call after the backoff starts a new one")
    func hang() throws {
        let daemon = try Self.start("mode_file = \"COUNT/mode\"", timeout: "300ms")
        defer { daemon.remove() }
        try "hang".write(toFile: daemon.directory.appending("mode"), atomically: true, encoding: .utf8)
        let first = try #require(Self.helper(of: daemon, for: "bad"))
        // Timed on a connection already open: the daemon's answer, not a redis-cli's start.
        let (answer, took) = try RawConnection(daemon.socket).timedRoundTripCommand("GET", "bad")
        #expect(answer.hasPrefix("TIMEOUT plugin"), "\(answer)")
        #expect(answer.contains("did not answer within 300ms"))
        #expect(took < 1.5)
        #expect(Self.eventually(seconds: 10) { kill(first, 0) != 0 }, "the hung helper \(first) was killed and reaped")
        #expect(try daemon.redis("GET", "good") == "good-1")
        try FileManager.default.removeItem(atPath: daemon.directory.appending("mode"))
        var value = ""
        #expect(try Self.eventually { value = try daemon.redis("GET", "bad"); return value.hasPrefix("pid-") })
        #expect(value == "pid-\(Self.helper(of: daemon, for: "bad") ?? 0)", "a new helper answers")
        #expect(value != "pid-\(first)")
        // INFO says where the plugin runs, the new helper's pid, one restart, and how the last one ended.
        let info = try daemon.redis("INFO", "bad")
        #expect(info.contains("isolation:process"))
        #expect(info.contains("helper_pid:\(value.dropFirst("pid-".count))"), "\(info)")
        #expect(info.contains("helper_restarts:1"), "\(info)")
        #expect(info.contains("helper_last_death:plugin for bad was killed with its helper (pid \(first)) after a call outlived its timeout"), "\(info)")
    }

    @Test("a value stored before the plugin starts crashing stays served; once it stops, a restarted helper refreshes it")
    func storedValueSurvives() throws {
        let daemon = try ServingTests.start("""
            [expirable.bad]
            plugin = "crasher"
            refresh = "eager"
            before_expiry = "2500ms"
            [expirable.bad.params]
            ttl_ms = 4000
            mode_file = "COUNT/mode"
            """, server: "isolation = \"process\"", testPlugins: ["crasher"])
        defer { daemon.remove() }
        let stored = try daemon.redis("GET", "bad")
        let first = try #require(Self.helper(of: daemon, for: "bad"))
        #expect(stored == "pid-\(first)")
        try "segv".write(toFile: daemon.directory.appending("mode"), atomically: true, encoding: .utf8)
        // The eager refresh (due 1.5 s after the fetch) kills the helper; GET keeps the stored value meanwhile.
        #expect(Self.eventually { daemon.log.contains("plugin helper died") })
        #expect(try daemon.redis("GET", "bad") == stored)
        try FileManager.default.removeItem(atPath: daemon.directory.appending("mode"))
        var value = stored
        #expect(try Self.eventually(seconds: 8) { value = try daemon.redis("GET", "bad"); return value != stored })
        #expect(value.hasPrefix("pid-") && value != "pid-\(first)", "\(value): refreshed by a restarted helper")
    }

    @Test("a helper that writes bytes that are no frame is killed and its caller gets a FETCH error; the daemon serves on")
    func garbage() throws {
        let daemon = try Self.start("mode = \"garbage\"")
        defer { daemon.remove() }
        let first = try #require(Self.helper(of: daemon, for: "bad"))
        let answer = try daemon.redis("GET", "bad")
        #expect(answer.hasPrefix("FETCH plugin for bad sent its daemon a frame of 4294967295 bytes"), "\(answer)")
        #expect(Self.eventually(seconds: 10) { kill(first, 0) != 0 })
        #expect(try daemon.redis("GET", "good") == "good-1")
    }

    @Test("a frame that is not the answer to the call in flight is never taken for it: the helper is killed, the caller gets a FETCH error, the log says why")
    func strayFrame() throws {
        let daemon = try Self.start("mode = \"stray\"")
        defer { daemon.remove() }
        let first = try #require(Self.helper(of: daemon, for: "bad"))
        let answer = try daemon.redis("GET", "bad")
        #expect(answer.hasPrefix("FETCH plugin for bad sent its daemon an answer that carries another call's id"), "\(answer)")
        #expect(!answer.contains("STRAY"))
        #expect(Self.eventually(seconds: 10) { kill(first, 0) != 0 })
        #expect(daemon.log.contains("plugin helper killed: what it sent is not the frame due"), "\(daemon.log)")
        // The daemon killed it: its death is logged as that, not as a crash of the plugin's.
        #expect(Self.eventually(seconds: 10) { daemon.log.contains("killed by the daemon for what it sent") }, "\(daemon.log)")
        #expect(!daemon.log.contains("crashed (SIGKILL)"), "\(daemon.log)")
        #expect(try daemon.redis("GET", "good") == "good-1")
    }

    static let programEndings: [(isolation: String, ending: String)] = [
        ("process", "timeout"), ("process", "SIGTERM"), ("process", "SIGKILL"), ("inline", "SIGTERM"), ("inline", "SIGKILL"),
    ]

    @Test("the command plugin's program, and what it started, end with its call: when the helper is killed for a timeout, when the daemon stops, when it is killed", arguments: programEndings)
    func commandProgramEndsWithItsCall(isolation: String, ending: String) throws {
        let daemon = try DaemonProcess(expirables: """
            [expirable.h]
            plugin = "command"
            timeout = "\(ending == "timeout" ? "2s" : "60s")"
            [expirable.h.params]
            shell = 'sleep 300 & echo $! > DIR/child.pid; echo $$ > DIR/program.pid; wait'
            ttl = "60s"
            timeout = "55s"
            """, server: "isolation = \"\(isolation)\"", testPlugins: [])
        defer { daemon.remove() }
        let connection = try RawConnection(daemon.socket)
        connection.setReceiveTimeout(seconds: 60)
        connection.send("*2\r\n$3\r\nGET\r\n$1\r\nh\r\n")
        var pids: [pid_t] = []
        let started = Self.eventually(seconds: 30) {
            pids = ["program.pid", "child.pid"].compactMap { file in
                (try? String(contentsOfFile: daemon.directory.appending(file), encoding: .utf8)).flatMap { pid_t($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
            }
            return pids.count == 2
        }
        // Whatever this test finds, the two it started do not outlive it.
        defer { for pid in pids where Self.running(pid) { kill(pid, SIGKILL) } }
        try #require(started, "the program started and wrote its pids")
        switch ending {
        case "timeout":
            #expect(connection.receive(replies: 1).hasPrefix("-TIMEOUT "))
        case "SIGTERM":
            daemon.stop()
        default:
            daemon.kill9()
        }
        #expect(Self.eventually(seconds: 30) { !pids.contains(where: Self.running) }, "still running: \(pids.filter(Self.running))")
    }

    @Test("a program the command plugin runs holds no descriptor but 0, 1 and 2: it cannot write forged answers to the helper's socket nor read other keys' calls")
    func commandProgramHoldsNoSocket() throws {
        // The forged frame is one the daemon took, before call ids, as a value for whichever call was in flight.
        let daemon = try DaemonProcess(expirables: #"""
            [expirable.f]
            plugin = "command"
            keyed = true
            timeout = "10s"
            [expirable.f.params]
            shell = 'if [ "$EXPIRABLE_KEY" = evil ]; then printf "\\000\\000\\000\\020\\005\\000\\000\\002\\000\\000\\000\\000\\000\\000FORGED" >&3; fi 2>/dev/null; echo "token-for-$EXPIRABLE_KEY"'
            ttl = "60s"
            [expirable.fds]
            plugin = "command"
            [expirable.fds.params]
            shell = 'ls /proc/$$/fd'
            ttl = "60s"
            """#, server: "isolation = \"process\"", testPlugins: [])
        defer { daemon.remove() }
        let descriptors = try daemon.redis("GET", "fds")
        #expect(descriptors.split(separator: "\n") == ["0", "1", "2"], "\(descriptors)")
        #expect(try daemon.redis("GET", "f:alice") == "token-for-alice")
        #expect(try daemon.redis("GET", "f:evil") == "token-for-evil")
        #expect(try daemon.redis("GET", "f:bob") == "token-for-bob")
        #expect(try daemon.redis("GET", "f:carol") == "token-for-carol")
    }

    @Test("inline, every descriptor of the daemon is close-on-exec (client connections, its event loops', one it inherited), and the command plugin's program holds none of them")
    func inlineDescriptorsCloseOnExec() throws {
        let daemon = try DaemonProcess(expirables: """
            [expirable.fds]
            plugin = "command"
            [expirable.fds.params]
            shell = 'ls /proc/$$/fd'
            ttl = "60s"
            """, server: "isolation = \"inline\"", testPlugins: [], start: false)
        defer { daemon.remove() }
        // Whoever starts the daemon may leave it a descriptor without close-on-exec: 7, here.
        daemon.launcher = ["/bin/sh", "-c", "exec 7</dev/null; exec \"$@\"", "sh"]
        try daemon.start()
        // Another client's connection, open while the program runs.
        let idle = try RawConnection(daemon.socket)
        #expect(idle.roundTrip("*1\r\n$4\r\nPING\r\n", expecting: 1) == "+PONG\r\n")
        let descriptors = try daemon.redis("GET", "fds")
        #expect(descriptors.split(separator: "\n") == ["0", "1", "2"], "\(descriptors)")
        // The daemon is not dumpable: only root reads its descriptors (CI runs as root).
        guard geteuid() == 0 else { return }
        let pid = try #require(daemon.process?.pid)
        let open = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").compactMap(Int.init).filter { $0 > 2 }
        #expect(open.contains(7), "\(open)")
        #expect(open.count > 4, "the listening socket, a connection, event loops: \(open)")
        let inheritable = open.filter { fd in
            // A descriptor closed meanwhile has no fdinfo: nothing to inherit.
            guard let info = try? String(contentsOfFile: "/proc/\(pid)/fdinfo/\(fd)", encoding: .utf8) else { return false }
            let flags = info.split(separator: "\n").first { $0.hasPrefix("flags:") }
                .flatMap { Int($0.dropFirst("flags:".count).trimmingCharacters(in: .whitespaces), radix: 8) } ?? 0
            return flags & Int(O_CLOEXEC) == 0
        }.map { fd in "\(fd) -> \((try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\(fd)")) ?? "?")" }
        #expect(inheritable.isEmpty, "inherited by a program an inline plugin runs: \(inheritable)")
    }

    @Test("a helper restarted after a crash checks the plugin file again: one made writable by others, or a link out of plugin_dir, swapped in since is refused with the start's words")
    func restartChecksPluginFile() throws {
        let daemon = try DaemonProcess(expirables: """
            [expirable.s]
            plugin = "swap"
            retry_interval = "10ms"
            [expirable.s.params]
            mode = "ok"
            """, server: "isolation = \"process\"", testPlugins: [], start: false)
        defer { daemon.remove() }
        let plugin = try compileTestPlugin("crasher", into: daemon.pluginDir, as: "swap")
        let outside = daemon.directory.appending("outside")
        try FileManager.default.createDirectory(atPath: outside, withIntermediateDirectories: true)
        chmod(outside, 0o755)
        let foreign = try compileTestPlugin("crasher", into: outside, as: "swap")
        try daemon.start()
        let real = (directory: URL(fileURLWithPath: daemon.pluginDir).resolvingSymlinksInPath().path,
                    plugin: URL(fileURLWithPath: plugin).resolvingSymlinksInPath().path,
                    foreign: URL(fileURLWithPath: foreign).resolvingSymlinksInPath().path)
        let first = try #require(Self.helper(of: daemon, for: "s"))
        #expect(try daemon.redis("GET", "s") == "pid-\(first)")
        // Replaced by a copy anyone may write, then the helper dies.
        let staged = daemon.pluginDir + "/staged.tmp"
        try FileManager.default.copyItem(atPath: plugin, toPath: staged)
        chmod(staged, 0o777)
        #expect(rename(staged, plugin) == 0)
        kill(first, SIGKILL)
        var answer = ""
        #expect(try Self.eventually(seconds: 10) {
            _ = try daemon.redis("CLEAR", "s")
            answer = try daemon.redis("GET", "s")
            return !answer.hasPrefix("FETCH plugin for s crashed")
        })
        #expect(answer == "FETCH expirable.s: plugin \(real.plugin) is writable by others; chmod o-w \(real.plugin)", "\(answer)")
        // Replaced by a link to a file outside plugin_dir.
        #expect(unlink(plugin) == 0)
        #expect(symlink(foreign, plugin) == 0)
        #expect(try Self.eventually(seconds: 15) { answer = try daemon.redis("GET", "s"); return !answer.contains("writable by others") })
        #expect(answer == "FETCH expirable.s: plugin \(real.plugin) resolves to \(real.foreign), outside plugin_dir \(real.directory); copy the file into plugin_dir instead of linking to it", "\(answer)")
        #expect(Self.helper(of: daemon, for: "s") == nil, "no helper holds the refused file")
    }

    @Test("a plugin that refuses its params in its helper stops the daemon at start with the plugin's words")
    func refusalAtStart() throws {
        let daemon = try DaemonProcess(expirables: """
            [expirable.broken]
            plugin = "command"
            """, server: "isolation = \"process\"", start: false)
        defer { daemon.remove() }
        let process = try daemon.launch()
        #expect(process.wait() == 1)
        #expect(daemon.log.contains("expirable.broken:"), "\(daemon.log)")
    }

    @Test("a helper holds only its socket, has a clean environment, no new privileges, and is not dumpable")
    func hygiene() throws {
        let daemon = try Self.start("mode = \"ok\"")
        defer { daemon.remove() }
        let pid = try #require(Self.helper(of: daemon, for: "good"))
        let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        #expect(status.contains("NoNewPrivs:\t1"), "\(status)")
        // What follows needs the right to trace the helper, which only root has over a process that is not
        // dumpable (CI runs as root).
        guard geteuid() == 0 else { return }
        let descriptors = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").compactMap(Int.init).sorted()
        #expect(descriptors == [0, 1, 2, 3], "descriptors: \(descriptors)")
        // Its socket is close-on-exec: no program its plugin runs (popen, system, the command plugin) gets it.
        let fdinfo = try String(contentsOfFile: "/proc/\(pid)/fdinfo/3", encoding: .utf8)
        let flags = try #require(fdinfo.split(separator: "\n").first { $0.hasPrefix("flags:") }.flatMap { Int($0.dropFirst("flags:".count).trimmingCharacters(in: .whitespaces), radix: 8) })
        #expect(flags & Int(O_CLOEXEC) != 0, "\(fdinfo)")
        let environment = try String(decoding: Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/environ")), as: UTF8.self)
            .split(separator: "\0").map(String.init).sorted()
        #expect(environment == ["PATH=/usr/local/bin:/usr/bin:/bin", "SWIFT_BACKTRACE=enable=no"])
    }

    @Test("a hung call is killed by its helper's own timer even while the daemon is stopped (SIGSTOP)")
    func helperTimerWhileDaemonStopped() throws {
        let daemon = try Self.start("mode = \"hang\"", timeout: "500ms")
        defer { daemon.remove() }
        let helper = try #require(Self.helper(of: daemon, for: "bad"))
        let daemonPid = try #require(daemon.process?.pid)
        let asking = try Self.getUnderWay(daemon, "bad", helper: helper)
        kill(daemonPid, SIGSTOP)
        // The daemon cannot kill the helper now; the helper's kernel timer does, 500 ms + 250 ms after the call
        // (10 s allowed: a hung helper the timer did not end runs on however long this waits).
        let gone = Self.eventually(seconds: 10) { !Self.running(helper) }
        kill(daemonPid, SIGCONT)
        #expect(gone, "helper \(helper) still ran its hung call while the daemon was stopped")
        let answer = RawConnection.redisCliText(asking.receive(replies: 1))
        #expect(answer.hasPrefix("TIMEOUT") || answer.hasPrefix("FETCH plugin for bad"), "\(answer)")
        #expect(try daemon.redis("GET", "good") == "good-1")
    }

    @Test("after a pause (SIGSTOP) past a call's timeout, a later caller is not told the plugin crashed: a new helper answers", arguments: [500, 2000])
    func laterCallerAfterPause(sleepMillis: Int) throws {
        let daemon = try ServingTests.start("""
            [expirable.slow]
            plugin = "sleeper"
            timeout = "1s"
            retry_interval = "10ms"
            [expirable.slow.params]
            sleep_ms = \(sleepMillis)
            """, server: "isolation = \"process\"", testPlugins: ["sleeper"])
        defer { daemon.remove() }
        let daemonPid = try #require(daemon.process?.pid)
        let helper = try #require(Self.helper(of: daemon, for: "slow"), "the helper runs from the start")
        let asking = try Self.getUnderWay(daemon, "slow", helper: helper)
        asking.setReceiveTimeout(seconds: 20)
        kill(daemonPid, SIGSTOP)
        usleep(3_000_000)  // the helper answers (500 ms) or its own timer kills it (1 s + 250 ms) meanwhile
        kill(daemonPid, SIGCONT)
        let answer = RawConnection.redisCliText(asking.receive(replies: 1))
        #expect(!answer.isEmpty, "answered within 20 s of the pause's end")
        #expect(!answer.contains("crashed"), "\(answer)")
        let timedOut = { (reply: String) in reply.hasPrefix("TIMEOUT plugin ") && reply.hasSuffix("libsleeper.so for slow did not answer within 1000ms; raise timeout in [expirable.slow] if it needs longer, or check the plugin and what it calls") }
        #expect(answer == "max_concurrent=1" || timedOut(answer), "\(answer)")
        // Past the restart backoff (1 s) a later caller gets a value from a new (or the same) helper, or, from a
        // plugin that always outlives its timeout, that timeout. Past it: INFO shows a running helper, or none
        // and no helper_down (a helper killed for the timeout, or by its own timer, and its backoff over); 10 s
        // allowed for that.
        let probe = try RawConnection(daemon.socket)
        let pastBackoff = Self.eventually(seconds: 10) {
            let info = probe.roundTripCommand("INFO", "slow")
            let pid = info.split(whereSeparator: \.isNewline).first { $0.hasPrefix("helper_pid:") }.map { String($0.dropFirst("helper_pid:".count)) }
            return !info.contains("helper_down:") && (pid == "none" || pid.flatMap { pid_t($0) }.map(Self.running) == true)
        }
        #expect(pastBackoff, "\(probe.roundTripCommand("INFO", "slow"))")
        let later = try daemon.redis("GET", "slow")
        #expect(sleepMillis < 1000 ? later == "max_concurrent=1" : timedOut(later), "\(later)")
        #expect(!daemon.log.contains("crashed"), "\(daemon.log)")
    }

    /// Whether `pid` is a running process: listed in /proc and not a zombie waiting for its parent's wait.
    static func running(_ pid: pid_t) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return false }
        return !stat[stat.index(close, offsetBy: 2)...].hasPrefix("Z")
    }

    /// The private memory of `pid` in kB: anonymous and private file pages, from smaps_rollup.
    static func privateKB(_ pid: pid_t) -> Int {
        let text = (try? String(contentsOfFile: "/proc/\(pid)/smaps_rollup", encoding: .utf8)) ?? ""
        return text.split(separator: "\n").filter { $0.hasPrefix("Private_") }
            .compactMap { Int($0.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") }.reduce(0, +)
    }

    @Test("a plugin that allocates without bound stops at max_memory in its helper; the daemon's memory does not move")
    func memoryLimit() throws {
        let daemon = try ServingTests.start("""
            [expirable.bad]
            plugin = "crasher"
            max_memory = "64MiB"
            [expirable.bad.params]
            mode = "hog"
            \(ServingTests.counter("good"))
            """, server: "isolation = \"process\"", testPlugins: ["counter", "crasher"])
        defer { daemon.remove() }
        let daemonPid = try #require(daemon.process?.pid)
        #expect(try daemon.redis("GET", "good") == "good-1")
        let before = Self.privateKB(daemonPid)
        let answer = try daemon.redis("GET", "bad")
        // The plugin sees malloc fail (it reports how far it got) or dies of it; either way its callers get a
        // FETCH error, and what it got is under the limit.
        #expect(answer.hasPrefix("FETCH "), "\(answer)")
        if let got = answer.split(separator: " ").dropLast().last.flatMap({ Int($0) }), answer.hasSuffix("MiB") {
            #expect(got < 64, "\(answer)")
        }
        #expect(try daemon.redis("GET", "good") == "good-1")
        #expect(try daemon.redis("GET", "bad").hasPrefix("FETCH "))
        #expect(Self.privateKB(daemonPid) - before < 8 * 1024, "the daemon's private memory grew from \(before) kB to \(Self.privateKB(daemonPid)) kB")
        #expect(try daemon.redis("PING") == "PONG")
    }

    @Test("a plugin that spins past max_cpu in one call is stopped by SIGXCPU, long before its timeout; the daemon serves on")
    func cpuLimit() throws {
        let daemon = try ServingTests.start("""
            [expirable.bad]
            plugin = "crasher"
            max_cpu = "1s"
            timeout = "20s"
            [expirable.bad.params]
            mode = "spin"
            \(ServingTests.counter("good"))
            """, server: "isolation = \"process\"", testPlugins: ["counter", "crasher"])
        defer { daemon.remove() }
        let helper = try #require(Self.helper(of: daemon, for: "bad"), "the helper runs from the start")
        let probe = try RawConnection(daemon.socket)
        let started = Date()
        let spinning = try Self.getUnderWay(daemon, "bad", helper: helper)
        // While the plugin burns its helper's CPU, the daemon answers other expirables at once: timed on a
        // connection already open, so that only the daemon's answer is measured, not a redis-cli's start.
        usleep(300_000)
        let (good, took) = probe.timedRoundTripCommand("GET", "good")
        #expect(good == "good-1")
        #expect(took < 0.5, "GET good took \(took) s while the plugin spun")
        let answer = RawConnection.redisCliText(spinning.receive(replies: 1))
        #expect(answer.hasPrefix("FETCH plugin for bad used more than its max_cpu of 1s of CPU in one call"), "\(answer)")
        #expect(answer.contains("(SIGXCPU)"))
        #expect(Date().timeIntervalSince(started) < 10, "stopped by the CPU limit, not by the 20 s timeout")
        #expect(try daemon.redis("GET", "good") == "good-1")
        #expect(daemon.count("calls") == 1, "good's value was served from memory throughout")
    }

    @Test("as root with plugin_user, a plugin cannot lift its max_cpu: the hard RLIMIT_CPU is set too, and raised by the daemon between calls only")
    func cpuLimitHard() throws {
        guard geteuid() == 0 else { return }  // plugin_user needs root; CI runs as root
        let daemon = try ServingTests.start("""
            [expirable.bad]
            plugin = "crasher"
            max_cpu = "1s"
            timeout = "20s"
            retry_interval = "10ms"
            [expirable.bad.params]
            mode_file = "COUNT/mode"
            """, server: "isolation = \"process\"\nplugin_user = \"nobody\"", testPlugins: ["crasher"])
        defer { daemon.remove() }
        // The helper, as nobody, must be able to read the plugins and the mode file: open the test directories.
        var path = daemon.pluginDir
        while path.count > 1 {
            chmod(path, 0o755)
            path = (path as NSString).deletingLastPathComponent
            if path == "/tmp" || path == "/" { break }
        }
        let helper = try #require(Self.helper(of: daemon, for: "bad"))
        #expect(try daemon.redis("GET", "bad") == "pid-\(helper)")
        let limits = try String(contentsOfFile: "/proc/\(helper)/limits", encoding: .utf8)
        let cpu = try #require(limits.split(separator: "\n").first { $0.hasPrefix("Max cpu time") })
        #expect(!cpu.contains("unlimited"), "between calls, a background thread is bounded too: \(cpu)")
        try "evadecpu".write(toFile: daemon.directory.appending("mode"), atomically: true, encoding: .utf8)
        chmod(daemon.directory.appending("mode"), 0o644)
        _ = try daemon.redis("CLEAR", "bad")
        let started = Date()
        let answer = try daemon.redis("GET", "bad")
        #expect(answer.hasPrefix("FETCH plugin for bad used more than its max_cpu of 1s of CPU in one call"), "\(answer)")
        #expect(Date().timeIntervalSince(started) < 10, "stopped by the CPU limit, not by the 20 s timeout")
    }

    @Test("a plugin that prints to stdout and stderr: stdout goes nowhere, stderr to the daemon's log, the answer is intact")
    func printing() throws {
        let daemon = try Self.start("mode = \"print\"")
        defer { daemon.remove() }
        let helper = try #require(Self.helper(of: daemon, for: "bad"))
        #expect(try daemon.redis("GET", "bad") == "pid-\(helper)")
        #expect(Self.eventually { daemon.log.contains("crasher says hello on stderr") }, "stderr is the daemon's log")
        #expect(!daemon.log.contains("crasher stdout line"), "stdout is /dev/null")
        #expect(try daemon.redis("GET", "good") == "good-1")
        // Each line is a record of the daemon's, naming the expirable and the helper, escaped: never raw.
        #expect(Self.eventually { daemon.log.contains("xxxxxxxx") })
        let hello = try #require(daemon.log.split(separator: "\n").first { $0.contains("crasher says hello on stderr") })
        #expect(hello.contains(" expirable.plugins: expirable=bad pid=\(helper) stream=stderr ["), "\(hello)")
        #expect(hello.hasSuffix("] crasher says hello on stderr"), "\(hello)")
        let forged = try #require(daemon.log.split(separator: "\n").first { $0.contains("forged by crasher in text") })
        #expect(forged.contains(" expirable.plugins: expirable=bad "), "\(forged)")
        #expect(forged.hasSuffix("forged by crasher in text\\r\\x1b[2Kbell\\x07"), "\(forged)")
        #expect(!daemon.log.contains("\u{1B}") && !daemon.log.contains("\r"), "control characters are escaped")
    }

    @Test("with --log-format json a plugin's stderr stays JSON: a record per line naming the expirable, none that passes for the daemon's, a long line cut")
    func printingJSON() throws {
        let daemon = try Self.start("mode = \"print\"", arguments: ["--log-format", "json"])
        defer { daemon.remove() }
        let helper = try #require(Self.helper(of: daemon, for: "bad"))
        #expect(try daemon.redis("GET", "bad") == "pid-\(helper)")
        #expect(Self.eventually { daemon.log.contains("xxxxxxxx") })
        daemon.stop()
        var records: [[String: Any]] = []
        for line in daemon.log.split(separator: "\n") {
            guard let record = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
                Issue.record("not a JSON record: \(line.prefix(200))")
                continue
            }
            records.append(record)
        }
        let printed = records.filter { $0["label"] as? String == "expirable.plugins" && $0["stream"] as? String == "stderr" }
        #expect(printed.allSatisfy { $0["expirable"] as? String == "bad" && $0["pid"] as? String == "\(helper)" }, "\(printed)")
        let messages = printed.compactMap { $0["message"] as? String }
        #expect(messages.contains("crasher says hello on stderr"), "\(messages)")
        #expect(messages.contains { $0.hasPrefix("{\"time\"") && $0.hasSuffix("\"message\":\"forged by crasher\"}") }, "\(messages)")
        #expect(!records.contains { $0["label"] as? String == "expirable.server" && "\($0["message"] ?? "")".contains("forged") })
        let long = printed.filter { ($0["message"] as? String)?.hasPrefix("xxxx") == true }
        #expect(long.count == 1, "the rest of a cut line is dropped, not logged as more lines")
        #expect((long.first?["message"] as? String)?.utf8.count == 4096)
        #expect(long.first?["cut"] as? String == "after 4096 bytes", "\(long.first ?? [:])")
    }

    @Test("a plugin that forks a child and then crashes: the crash is seen at once though the child holds the socket, and the child is killed")
    func forkThenCrash() throws {
        let daemon = try Self.start("mode = \"forksegv\"\npid_file = \"COUNT/child\"")
        defer { daemon.remove() }
        // Timed on a connection already open: the daemon's answer, not a redis-cli's start.
        let (answer, took) = try RawConnection(daemon.socket).timedRoundTripCommand("GET", "bad")
        #expect(answer.hasPrefix("FETCH plugin for bad crashed (SIGSEGV)"), "\(answer)")
        #expect(took < 1)
        let child = try #require(pid_t(String(contentsOfFile: daemon.directory.appending("child"), encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)))
        #expect(Self.eventually(seconds: 10) { !Self.running(child) }, "the plugin's child \(child) was killed with its helper's group")
        #expect(try daemon.redis("GET", "good") == "good-1")
    }

    @Test("a child a plugin forked that outlives its call is killed when the daemon stops")
    func forkedChildEndsWithTheDaemon() throws {
        let daemon = try Self.start("mode = \"fork\"\npid_file = \"COUNT/child\"")
        defer { daemon.remove() }
        let helper = try #require(Self.helper(of: daemon, for: "bad"))
        #expect(try daemon.redis("GET", "bad") == "pid-\(helper)")
        let child = try #require(pid_t(String(contentsOfFile: daemon.directory.appending("child"), encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)))
        #expect(Self.running(child))
        #expect(daemon.stop() == 0)
        #expect(Self.eventually(seconds: 3) { !Self.running(child) }, "the plugin's child \(child) outlived the daemon")
        #expect(!Self.running(helper))
    }

    @Test("a helper whose plugin closes its socket ends; its caller gets a FETCH error at once and the next helper serves")
    func closedSocket() throws {
        let daemon = try Self.start("mode_file = \"COUNT/mode\"")
        defer { daemon.remove() }
        try "close".write(toFile: daemon.directory.appending("mode"), atomically: true, encoding: .utf8)
        let first = try #require(Self.helper(of: daemon, for: "bad"))
        // Timed on a connection already open: the daemon's answer, not a redis-cli's start.
        let (answer, took) = try RawConnection(daemon.socket).timedRoundTripCommand("GET", "bad")
        #expect(answer.hasPrefix("FETCH plugin for bad closed or replaced descriptor 3, its helper's socket to the daemon, so its helper (pid \(first)) ended"), "\(answer)")
        #expect(took < 1)
        #expect(try daemon.redis("GET", "good") == "good-1")
        try FileManager.default.removeItem(atPath: daemon.directory.appending("mode"))
        var value = ""
        #expect(try Self.eventually { value = try daemon.redis("GET", "bad"); return value.hasPrefix("pid-") })
        #expect(value != "pid-\(first)")
    }

    @Test("as root, helpers run as plugin_user with no supplementary groups, and still die with the daemon")
    func pluginUser() throws {
        guard geteuid() == 0 else { return }  // switching users needs root; CI runs as root
        let daemon = try Self.start("mode = \"ok\"")
        defer { daemon.remove() }
        _ = daemon.stop()
        let config = try String(contentsOfFile: daemon.configPath, encoding: .utf8)
            .replacingOccurrences(of: "[server]\n", with: "[server]\nplugin_user = \"nobody\"\n")
        try config.write(toFile: daemon.configPath, atomically: true, encoding: .utf8)
        // The helper, as nobody, must be able to read the plugins: open the test directories to others.
        var path = daemon.pluginDir
        while path.count > 1 {
            chmod(path, 0o755)
            path = (path as NSString).deletingLastPathComponent
            if path == "/tmp" || path == "/" { break }
        }
        try daemon.start()
        let helper = try #require(Self.helper(of: daemon, for: "bad"))
        #expect(try daemon.redis("GET", "bad") == "pid-\(helper)")
        let status = try String(contentsOfFile: "/proc/\(helper)/status", encoding: .utf8)
        let nobody = try #require(getpwnam("nobody")).pointee
        #expect(status.contains("Uid:\t\(nobody.pw_uid)\t\(nobody.pw_uid)\t\(nobody.pw_uid)\t\(nobody.pw_uid)\n"), "\(status)")
        #expect(status.contains("Gid:\t\(nobody.pw_gid)\t\(nobody.pw_gid)\t\(nobody.pw_gid)\t\(nobody.pw_gid)\n"), "\(status)")
        let groups = status.split(separator: "\n").first { $0.hasPrefix("Groups:") }?.dropFirst("Groups:".count)
        #expect(groups?.trimmingCharacters(in: .whitespaces) == "", "supplementary groups: \(groups ?? "?")")
        #expect(status.contains("NoNewPrivs:\t1"))
        // The switch cleared the death signal; the helper armed it again.
        daemon.kill9()
        #expect(Self.eventually(seconds: 2) { !Self.running(helper) }, "helper \(helper) outlived its daemon")
    }
}
