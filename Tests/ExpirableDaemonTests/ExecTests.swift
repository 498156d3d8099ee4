import ExpirableTestSupport
import Foundation
import Testing

/// `expirablectl exec`: a real child script that records its environment and the signals it gets, across
/// eager rotations (the counter plugin refreshes about once a second), in both modes.
@Suite("exec: values in a command's environment, restarted or signalled on rotation")
struct ExecTests {
    /// Appends "start PID TOKEN" when it starts, "hup PID TOKEN" on SIGHUP, "term PID" on SIGTERM (then exits 0),
    /// where TOKEN is its environment's $TOKEN. The traps come first: a signal sent once "start" is logged finds
    /// them in place (before, a SIGTERM right after "start" could end the shell with status 143).
    static let child = """
        #!/bin/sh
        log=$1
        trap 'echo "hup $$ $TOKEN" >> "$log"' HUP
        trap 'echo "term $$" >> "$log"; exit 0' TERM
        echo "start $$ $TOKEN" >> "$log"
        while :; do sleep 0.05; done

        """

    static func start() throws -> DaemonProcess {
        let daemon = try ServingTests.start("""
            [expirable.token]
            plugin = "counter"
            refresh = "eager"
            before_expiry = "2500ms"
            [expirable.token.params]
            prefix = "token-"
            ttl_ms = 3000
            [expirable.plain]
            plugin = "counter"
            [expirable.plain.params]
            prefix = "plain-"
            """)
        try installChild(in: daemon)
        return daemon
    }

    /// `child` as `child.sh` in the daemon's directory, executable.
    static func installChild(in daemon: DaemonProcess) throws {
        try child.write(toFile: daemon.directory.appending("child.sh"), atomically: true, encoding: .utf8)
        chmod(daemon.directory.appending("child.sh"), 0o755)
    }

    static func exec(_ daemon: DaemonProcess, _ options: [String], log: String) throws -> RunningTool {
        try RunningTool([try TestPaths.product("expirablectl").path, "--socket", daemon.socket, "exec"] + options
            + ["--", daemon.directory.appending("child.sh"), log])
    }

    /// The log's lines once `done` holds for them, waiting up to 30 s.
    static func lines(_ path: String, until done: ([[String]]) -> Bool) async throws -> [[String]] {
        for _ in 0..<600 {
            let lines = ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n").map { $0.split(separator: " ").map(String.init) }
            if done(lines) { return lines }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw TestSupportError("\(path) never got there: \((try? String(contentsOfFile: path, encoding: .utf8)) ?? "")")
    }

    @Test("on a rotation the command is stopped with SIGTERM and started again with the new value", .timeLimit(.minutes(2)))
    func restartsWithNewValues() async throws {
        let daemon = try Self.start()
        defer { daemon.remove() }
        let log = daemon.directory.appending("restart.log")
        let exec = try Self.exec(daemon, ["--env", "TOKEN=token", "--env", "OTHER=plain"], log: log)
        let lines = try await Self.lines(log) { $0.filter { $0.first == "start" }.count >= 3 }
        let starts = lines.filter { $0[0] == "start" }
        // Every run had the value current when it started, each newer than the last, and each was stopped by
        // SIGTERM before the next one started.
        let numbers = starts.map { Int($0[2].dropFirst("token-".count)) ?? 0 }
        #expect(numbers == numbers.sorted() && Set(numbers).count == numbers.count, "\(starts)")
        for (index, line) in lines.enumerated() where line[0] == "start" && index > 0 {
            #expect(lines[index - 1] == ["term", starts[starts.firstIndex(of: line)! - 1][1]], "\(lines)")
        }
        #expect(!lines.contains { $0[0] == "hup" })
        // SIGTERM to expirablectl reaches the command, which exits 0: so does expirablectl, and nothing restarts.
        let (status, stderr) = exec.stop(signal: SIGTERM)
        #expect(status == 0, "\(stderr)")
        #expect(stderr.contains("a value rotated; restarted"))
        let after = try await Self.lines(log) { _ in true }
        #expect(after.last?[0] == "term")
    }

    @Test("with --on-rotate signal:HUP the command keeps running and gets SIGHUP on each rotation", .timeLimit(.minutes(2)))
    func signalsOnRotation() async throws {
        let daemon = try Self.start()
        defer { daemon.remove() }
        let log = daemon.directory.appending("signal.log")
        let exec = try Self.exec(daemon, ["--env", "TOKEN=token", "--on-rotate", "signal:HUP"], log: log)
        let lines = try await Self.lines(log) { $0.filter { $0.first == "hup" }.count >= 2 }
        let starts = lines.filter { $0[0] == "start" }
        #expect(starts.count == 1, "one run only: \(lines)")
        // The environment of a running process cannot change: the signal tells it to look elsewhere.
        #expect(lines.filter { $0[0] == "hup" }.allSatisfy { $0[1] == starts[0][1] && $0[2] == starts[0][2] }, "\(lines)")
        let (status, _) = exec.stop(signal: SIGTERM)
        #expect(status == 0)
    }

    @Test("a command that exits on its own gives expirablectl its status; 127 if it cannot be run")
    func exitStatus() throws {
        let daemon = try Self.start()
        defer { daemon.remove() }
        let ctl = try TestPaths.product("expirablectl").path
        let seven = try runTool(ctl, ["--socket", daemon.socket, "exec", "--env", "P=plain", "--", "sh", "-c", "test \"$P\" = plain-1 && exit 7"])
        #expect(seven.status == 7, "\(seven.stderr)")
        let killed = try runTool(ctl, ["--socket", daemon.socket, "exec", "--env", "P=plain", "--", "sh", "-c", "kill -USR1 $$"])
        #expect(killed.status == 128 + SIGUSR1)
        let missing = try runTool(ctl, ["--socket", daemon.socket, "exec", "--env", "P=plain", "--", daemon.directory.appending("no-such-program")])
        #expect(missing.status == 127)
        #expect(missing.stderr.contains("cannot run"))
        let unknown = try runTool(ctl, ["--socket", daemon.socket, "exec", "--env", "P=nope", "--", "true"])
        #expect(unknown.status == 66)
        let usage = try runTool(ctl, ["--socket", daemon.socket, "exec", "--env", "P=plain"])
        #expect(usage.status == 64)
    }

    @Test("a command that ignores SIGTERM is killed after --grace, and the restart goes on", .timeLimit(.minutes(2)))
    func graceThenKill() async throws {
        let daemon = try Self.start()
        defer { daemon.remove() }
        let log = daemon.directory.appending("stubborn.log")
        let stubborn = daemon.directory.appending("stubborn.sh")
        try "#!/bin/sh\necho \"start $$ $TOKEN\" >> \"$1\"\ntrap '' TERM\nwhile :; do sleep 0.05; done\n".write(toFile: stubborn, atomically: true, encoding: .utf8)
        chmod(stubborn, 0o755)
        let exec = try RunningTool([try TestPaths.product("expirablectl").path, "--socket", daemon.socket, "exec", "--env", "TOKEN=token",
                                    "--grace", "200ms", "--", stubborn, log])
        let lines = try await Self.lines(log) { $0.count >= 2 }
        #expect(lines[0][2] != lines[1][2])
        // The first run was SIGKILLed after the grace; the current one is killed here, which ends exec with it.
        #expect(kill(pid_t(lines[0][1])!, 0) != 0)
        let current = try await Self.lines(log) { _ in true }.last.flatMap { pid_t($0[1]) }
        if let current { kill(current, SIGKILL) }
        let (status, stderr) = exec.finish(within: 10)
        #expect(status == 128 + SIGKILL)
        #expect(stderr.contains("did not exit within") && stderr.contains("sending SIGKILL"), "\(stderr)")
    }

    @Test("a command that ignores a passed-on SIGTERM is killed after --grace, and exec ends with it", .timeLimit(.minutes(2)))
    func graceAfterSIGTERM() async throws {
        let daemon = try Self.start()
        defer { daemon.remove() }
        let log = daemon.directory.appending("deaf.log")
        let stubborn = daemon.directory.appending("deaf.sh")
        try "#!/bin/sh\ntrap '' TERM\necho \"start $$ $TOKEN\" >> \"$1\"\nwhile :; do sleep 0.05; done\n".write(toFile: stubborn, atomically: true, encoding: .utf8)
        chmod(stubborn, 0o755)
        let exec = try RunningTool([try TestPaths.product("expirablectl").path, "--socket", daemon.socket, "exec", "--env", "TOKEN=plain",
                                    "--grace", "300ms", "--", stubborn, log])
        let lines = try await Self.lines(log) { !$0.isEmpty }
        let child = try #require(pid_t(lines[0][1]))
        let (status, stderr) = exec.stop(signal: SIGTERM)
        #expect(status == 128 + SIGKILL, "\(stderr)")
        #expect(stderr.contains("did not exit within") && stderr.contains("of SIGTERM; sending SIGKILL"), "\(stderr)")
        #expect(kill(child, 0) != 0, "the command outlived exec")
    }

    @Test("a restart stops what the command started too: signals go to its process group", .timeLimit(.minutes(2)))
    func restartStopsTheGroup() async throws {
        let daemon = try Self.start()
        defer { daemon.remove() }
        let log = daemon.directory.appending("group.log")
        let parent = daemon.directory.appending("parent.sh")
        // The shell starts a long sleep and waits; SIGTERM ends the shell, and the sleep only if it gets it too.
        try "#!/bin/sh\nsleep 300 &\necho \"start $$ $!\" >> \"$1\"\nwait\n".write(toFile: parent, atomically: true, encoding: .utf8)
        chmod(parent, 0o755)
        let exec = try RunningTool([try TestPaths.product("expirablectl").path, "--socket", daemon.socket, "exec", "--env", "TOKEN=token", "--", parent, log])
        let lines = try await Self.lines(log) { $0.count >= 2 }
        func alive(_ pid: String) -> Bool {
            // A zombie waiting for its reaper counts as gone.
            ((try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)).map { !$0.contains(") Z ") }) ?? false
        }
        #expect(!alive(lines[0][1]) && !alive(lines[0][2]), "the first run's shell and its sleep are gone: \(lines)")
        exec.stop(signal: SIGTERM)
        let last = try #require(try await Self.lines(log) { _ in true }.last)
        for _ in 0..<100 where alive(last[2]) { try await Task.sleep(for: .milliseconds(20)) }
        #expect(!alive(last[2]), "SIGTERM passed on reaches the last run's sleep too")
    }

    @Test("a restart, and exec's end, stop what the command started even if it ignores SIGTERM: the group gets SIGKILL after --grace", .timeLimit(.minutes(2)))
    func restartKillsTheGroup() async throws {
        let daemon = try Self.start()
        defer { daemon.remove() }
        let log = daemon.directory.appending("orphans.log")
        let parent = daemon.directory.appending("orphans.sh")
        // The shell exits 3 on SIGTERM and starts a sleep that ignores it (and holds none of the test's pipes):
        // the sleep, in its group, would live on with the old value in its environment.
        try "#!/bin/sh\ntrap 'exit 3' TERM\n( trap '' TERM; exec sleep 300 ) >/dev/null 2>&1 &\necho \"start $$ $!\" >> \"$1\"\nwhile :; do sleep 0.05; done\n"
            .write(toFile: parent, atomically: true, encoding: .utf8)
        chmod(parent, 0o755)
        var sleeps: [pid_t] = []
        defer { for pid in sleeps { kill(pid, SIGKILL) } }
        func alive(_ pid: pid_t) -> Bool {
            // A zombie waiting for its reaper counts as gone.
            ((try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)).map { !$0.contains(") Z ") }) ?? false
        }
        let exec = try RunningTool([try TestPaths.product("expirablectl").path, "--socket", daemon.socket, "exec", "--env", "TOKEN=token",
                                    "--grace", "300ms", "--", parent, log])
        let lines = try await Self.lines(log) { $0.count >= 3 }
        sleeps = lines.compactMap { pid_t($0[2]) }
        for pid in sleeps.prefix(2) {
            for _ in 0..<600 where alive(pid) { try await Task.sleep(for: .milliseconds(50)) }
            #expect(!alive(pid), "a restarted run's sleep, which ignores SIGTERM, outlived the restart: \(lines)")
        }
        // A run that has only just started may get the SIGTERM before its trap is set (143).
        let (status, stderr) = exec.stop(signal: SIGTERM)
        #expect(status == 3 || status == 128 + SIGTERM, "\(stderr)")
        sleeps = (try await Self.lines(log) { _ in true }).compactMap { pid_t($0[2]) }
        let last = try #require(sleeps.last)
        #expect(!alive(last), "exec ended and left the last run's sleep running")

        // A command that exits on its own: what it left in its group is stopped before exec exits with its status.
        let pidFile = daemon.directory.appending("left.pid")
        let quick = try runTool(try TestPaths.product("expirablectl").path, ["--socket", daemon.socket, "exec", "--env", "P=plain", "--grace", "300ms",
                                "--", "sh", "-c", "( trap '' TERM; exec sleep 300 ) >/dev/null 2>&1 & echo $! > \(pidFile); exit 5"])
        let left = try #require(pid_t((try String(contentsOfFile: pidFile, encoding: .utf8)).trimmingCharacters(in: .whitespacesAndNewlines)))
        sleeps.append(left)
        #expect(quick.status == 5, "\(quick.stderr)")
        #expect(!alive(left), "the command exited and exec left its sleep running")
    }

    @Test("the command gets none of expirablectl's own descriptors (its daemon connections, its event loops); those expirablectl was given pass on")
    func noDescriptorsLeak() throws {
        let daemon = try Self.start()
        defer { daemon.remove() }
        let ctl = try TestPaths.product("expirablectl").path
        // Descriptor 5 is given to expirablectl, as a supervisor passes one on; the command lists what it holds.
        let script = #"exec 5</dev/null; exec "$1" --socket "$2" exec --env P=plain -- sh -c 'for fd in /proc/$$/fd/*; do echo "${fd##*/} $(readlink "$fd")"; done'"#
        let result = try runTool("/bin/sh", ["-c", script, "sh", ctl, daemon.socket])
        #expect(result.status == 0, "\(result.stderr)")
        let held = result.stdout.split(separator: "\n").map(String.init)
        #expect(held.contains("5 /dev/null"), "\(held)")
        // 0, 1 and 2 are the test's (sockets here); 3 is the shell's own pipe for $(readlink).
        let others = held.filter { Int($0.prefix { $0 != " " }).map { $0 > 2 } ?? true }
        #expect(!others.contains { $0.contains("socket:") || $0.contains("anon_inode:") }, "the command holds expirablectl's descriptors: \(held)")
    }

    /// A daemon serving `lazy` (the file COUNT/lazy, ttl 1.5 s, lazy: no one refreshes it but a reader) and `long`
    /// (COUNT/long, ttl 1 h), both through the command plugin, with the child script in place.
    static func startLazy() throws -> DaemonProcess {
        let daemon = try ServingTests.start("""
            [expirable.lazy]
            plugin = "command"
            [expirable.lazy.params]
            argv = ["cat", "COUNT/lazy"]
            ttl = "1500ms"
            [expirable.long]
            plugin = "command"
            [expirable.long.params]
            argv = ["cat", "COUNT/long"]
            ttl = "1h"
            """, testPlugins: [])
        try installChild(in: daemon)
        return daemon
    }

    @Test("a lazy value is fetched again when it expires and the command restarted with it; a new value that cannot be passed on leaves the command running", .timeLimit(.minutes(2)))
    func lazyValues() async throws {
        let daemon = try Self.startLazy()
        defer { daemon.remove() }
        try "one".write(toFile: daemon.directory.appending("lazy"), atomically: true, encoding: .utf8)
        let log = daemon.directory.appending("lazy.log")
        let exec = try Self.exec(daemon, ["--env", "TOKEN=lazy"], log: log)
        _ = try await Self.lines(log) { $0.contains { $0 == ["start", $0[1], "one"] } }
        // Nobody else reads it: only exec can see that it expired and fetch it again.
        try "two".write(toFile: daemon.directory.appending("lazy"), atomically: true, encoding: .utf8)
        var lines = try await Self.lines(log) { $0.contains { $0.count == 3 && $0[0] == "start" && $0[2] == "two" } }
        // A value an environment variable cannot carry (a NUL byte): the command keeps running with "two".
        try Data("bad\u{0}x".utf8).write(to: URL(fileURLWithPath: daemon.directory.appending("lazy")))
        try await Task.sleep(for: .seconds(4))
        let during = try await Self.lines(log) { _ in true }
        #expect(during == lines, "the command was stopped for a value it could not be given: \(during)")
        try "three".write(toFile: daemon.directory.appending("lazy"), atomically: true, encoding: .utf8)
        lines = try await Self.lines(log) { $0.contains { $0.count == 3 && $0[0] == "start" && $0[2] == "three" } }
        let (status, stderr) = exec.stop(signal: SIGTERM)
        #expect(status == 0, "\(stderr)")
        #expect(stderr.contains("a new value of lazy cannot be passed on, so \(daemon.directory.appending("child.sh")) keeps the one it has: the value of lazy holds a NUL byte"), "\(stderr)")
    }

    @Test("a value stored while the daemon restarted, back within --timeout, reaches the command", .timeLimit(.minutes(2)))
    func shortRestart() async throws {
        let daemon = try Self.startLazy()
        defer { daemon.remove() }
        try "long-1".write(toFile: daemon.directory.appending("long"), atomically: true, encoding: .utf8)
        let log = daemon.directory.appending("long.log")
        let exec = try Self.exec(daemon, ["--env", "TOKEN=long"], log: log)
        _ = try await Self.lines(log) { $0.contains { $0.count == 3 && $0[2] == "long-1" } }
        #expect(daemon.stop() == 0)
        try "long-2".write(toFile: daemon.directory.appending("long"), atomically: true, encoding: .utf8)
        try daemon.start()
        // The new daemon fetches long-2 when asked; exec must ask (its updates missed nothing it could hear).
        let lines = try await Self.lines(log) { $0.contains { $0.count == 3 && $0[0] == "start" && $0[2] == "long-2" } }
        #expect(lines.filter { $0[0] == "start" }.count == 2, "\(lines)")
        let (status, stderr) = exec.stop(signal: SIGTERM)
        #expect(status == 0, "\(stderr)")
    }

    @Test("the command inherits expirablectl's environment byte for byte, not only UTF-8")
    func rawEnvironment() throws {
        let daemon = try Self.startLazy()
        defer { daemon.remove() }
        try "v".write(toFile: daemon.directory.appending("long"), atomically: true, encoding: .utf8)
        let out = daemon.directory.appending("xbad")
        // The shell sets XBAD to the bytes a, 0xFF, b for expirablectl; the command writes them back.
        let script = "XBAD=$(printf 'a\\377b'); export XBAD; exec \(try TestPaths.product("expirablectl").path) --socket \(daemon.socket) exec --env TOKEN=long -- sh -c 'printf %s \"$XBAD\" > \(out)'"
        let run = try runTool("/bin/sh", ["-c", script])
        #expect(run.status == 0, "\(run.stderr)")
        let written = try Data(contentsOf: URL(fileURLWithPath: out))
        #expect(Array(written) == [0x61, 0xFF, 0x62], "\(Array(written))")
    }

    @Test("after the daemon was away past --timeout, exec subscribes again and applies the values it finds", .timeLimit(.minutes(2)))
    func subscribesAgain() async throws {
        let daemon = try Self.start()
        defer { daemon.remove() }
        let log = daemon.directory.appending("again.log")
        // expirablectl's stderr goes to a file, so that the test can wait for what it says while it runs; the shell
        // execs it, so the pid signalled is expirablectl's.
        let stderrFile = daemon.directory.appending("exec.stderr")
        let exec = try RunningTool(["/bin/sh", "-c", "exec \"$@\" 2>'\(stderrFile)'", "sh",
                                    try TestPaths.product("expirablectl").path, "--socket", daemon.socket, "--timeout", "1s", "exec",
                                    "--env", "TOKEN=token", "--", daemon.directory.appending("child.sh"), log])
        let stderrText = { (try? String(contentsOfFile: stderrFile, encoding: .utf8)) ?? "" }
        _ = try await Self.lines(log) { $0.contains { $0[0] == "start" } }
        #expect(daemon.stop() == 0)
        // Away for longer than --timeout: the subscription ends, the command keeps running meanwhile.
        try await Task.sleep(for: .seconds(2))
        let during = try await Self.lines(log) { _ in true }
        #expect(during.last?[0] == "start", "the command runs on while the daemon is away: \(during)")
        try daemon.start()
        // Any run started from now on has a value of the new daemon: the old one is gone.
        let lines = try await Self.lines(log) { $0.count >= during.count + 2 }
        #expect(lines[during.count...].map { $0[0] }.prefix(2) == ["term", "start"], "\(lines)")
        // Fetching every 5 s may bring the new value first; the updates are subscribed again within 5 s too,
        // once the daemon answers: waited for until expirablectl says so (30 s allowed, for a loaded machine).
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline && !stderrText().contains("subscribed again") { try await Task.sleep(for: .milliseconds(50)) }
        let (status, _) = exec.stop(signal: SIGTERM)
        let stderr = stderrText()
        #expect(status == 0)
        #expect(stderr.contains("lost the daemon's updates"), "\(stderr)")
        #expect(stderr.contains("subscribed again"), "\(stderr)")
    }
}
