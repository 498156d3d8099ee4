import ExpirableTestSupport
import Foundation
import Testing

/// SPEC §3.20 with a real daemon: a plugin's state goes from one call to the next, survives a restart through the
/// encrypted state_dir, and a state file that does not decrypt stops that expirable's calls with a clear error.
@Suite("Plugin state across calls and restarts")
struct PluginStateTests {
    /// A daemon with the `stateful` fixture (its value shows the state it received; it appends "+" to it) and
    /// a state_dir with a 0600 key.
    static func start(_ directory: TemporaryDirectory, isolation: String = "process", settings: String = "", launcher: [String] = []) throws -> DaemonProcess {
        let keyFile = directory.appending("state.key")
        if !FileManager.default.fileExists(atPath: keyFile) {
            FileManager.default.createFile(atPath: keyFile, contents: Data((0..<32).map { UInt8($0) }))
            chmod(keyFile, 0o600)
        }
        let daemon = try DaemonProcess(expirables: """
            [expirable.rt]
            plugin = "stateful"
            \(settings)
            """, server: "isolation = \"\(isolation)\"\nstate_dir = \"\(directory.appending("state"))\"\nstate_key_file = \"\(keyFile)\"",
            testPlugins: ["stateful"], start: false)
        daemon.launcher = launcher
        do {
            try daemon.start()
        } catch {
            daemon.remove()
            throw error
        }
        return daemon
    }

    /// The value of `key` in an INFO or EXPLAIN reply (`key:value` lines); nil when there is no such line.
    static func field(_ reply: String, _ key: String) -> String? {
        reply.split(whereSeparator: \.isNewline).first { $0.hasPrefix(key + ":") }
            .map { String($0.dropFirst(key.count + 1)).trimmingCharacters(in: .whitespacesAndNewlines) }
    }

    /// Whether this machine lets the tests mount a tmpfs in a mount namespace of their own (root, or
    /// CAP_SYS_ADMIN), and has nsenter to run a daemon in it.
    static let canMountTmpfs: Bool = {
        let probe = try? runTool("unshare", ["-m", "sh", "-c", "mount -t tmpfs -o size=4k tmpfs /tmp && command -v nsenter"], seconds: 10)
        return probe?.status == 0
    }()

    @Test("each call gets the state the previous one set, and a restart resumes from the saved state", arguments: ["process", "inline"])
    func resumes(isolation: String) throws {
        let directory = try TemporaryDirectory("state")
        defer { directory.remove() }
        let first = try Self.start(directory, isolation: isolation)
        #expect(try first.redis("GET", "rt") == "key= state=")
        #expect(try first.redis("CLEAR", "rt") == "OK")
        #expect(try first.redis("GET", "rt") == "key= state=s")
        #expect(try first.redis("CLEAR", "rt") == "OK")
        #expect(try first.redis("GET", "rt") == "key= state=s+")
        #expect(try first.redis("INFO", "rt").contains("plugin_state:yes"))
        first.remove()
        // The state file holds the state encrypted, readable by the daemon's user alone.
        // Beside it, only the lock that keeps a second daemon off the directory.
        let files = try FileManager.default.contentsOfDirectory(atPath: directory.appending("state")).filter { $0 != "expirabled.lock" }
        #expect(files.count == 1 && files[0].hasSuffix(".state"), "\(files)")
        let file = directory.appending("state/\(files[0])")
        #expect(!(try Data(contentsOf: URL(fileURLWithPath: file))).contains(Data("s++".utf8)))
        var st = stat()
        #expect(stat(file, &st) == 0 && st.st_mode & 0o777 == 0o600)

        let second = try Self.start(directory, isolation: isolation)
        defer { second.remove() }
        #expect(try second.redis("GET", "rt") == "key= state=s++", "the restarted daemon continued from the saved state")
        #expect(!second.log.contains("s++"), "states are never logged")
    }

    @Test("a call during which the daemon is paused (SIGSTOP) past its timeout keeps the state it set: the next call, after a restart too, starts from it", arguments: ["process", "inline"])
    func pausedCallKeepsState(isolation: String) throws {
        let directory = try TemporaryDirectory("state")
        defer { directory.remove() }
        let daemon = try Self.start(directory, isolation: isolation, settings: "timeout = \"1s\"\n[expirable.rt.params]\nsleep_ms = \"500\"")
        defer { daemon.remove() }
        let pid = try #require(daemon.process?.pid)
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var answer = ""
        DispatchQueue(label: "paused-get").async {
            answer = (try? daemon.redis("GET", "rt")) ?? "the GET failed"
            done.signal()
        }
        usleep(200_000)  // the call is under way: it got no state, and sets "s" 0.5 s after it began
        kill(pid, SIGSTOP)
        usleep(2_500_000)  // past the 1 s timeout on the daemon's clock
        kill(pid, SIGCONT)
        #expect(done.wait(timeout: .now() + 20) == .success, "the paused GET was answered")
        // In a helper the answer was in when the daemon resumed, and is the answer; inline the call was stopped
        // with the daemon, and the timeout may come first.
        #expect(answer == "key= state=" || answer.hasPrefix("TIMEOUT"), "\(answer)")
        #expect(try daemon.redis("PING") == "PONG")
        #expect(daemon.stop() == 0)
        try daemon.start()
        #expect(try daemon.redis("GET", "rt") == "key= state=s", "the state the paused call set was kept and saved, not the spent empty one used twice")
        #expect(!daemon.log.contains("crashed"), "\(daemon.log)")
    }

    @Test("a second daemon on a state_dir another daemon uses refuses to start, naming the directory and the other daemon's PID; the first serves on")
    func sharedStateDirectoryRefused() throws {
        let directory = try TemporaryDirectory("state")
        defer { directory.remove() }
        let first = try Self.start(directory)
        defer { first.remove() }
        #expect(try first.redis("GET", "rt") == "key= state=")
        // Another configuration (its own socket) on the same state_dir and key.
        let second = try DaemonProcess(expirables: "[expirable.rt]\nplugin = \"stateful\"\n",
            server: "state_dir = \"\(directory.appending("state"))\"\nstate_key_file = \"\(directory.appending("state.key"))\"",
            testPlugins: ["stateful"], start: false)
        defer { second.remove() }
        let process = try second.launch()
        defer {
            if process.isRunning {
                kill(process.pid, SIGKILL)
                _ = process.wait()
            }
        }
        #expect(IsolationTests.eventually(seconds: 30) { !process.isRunning }, "the second daemon still runs: \(second.log.suffix(800))")
        #expect(process.exitStatus == 1)
        let pid = try #require(first.process?.pid)
        #expect(second.log.contains("state_dir \(directory.appending("state")) is in use by another expirabled (pid \(pid)"), "\(second.log.suffix(800))")
        #expect(!second.answers())
        #expect(try first.redis("CLEAR", "rt") == "OK")
        #expect(try first.redis("GET", "rt") == "key= state=s", "the first daemon goes on with its state")
    }

    @Test("a state file that does not decrypt stops its expirable's calls with an error naming the file")
    func undecryptable() throws {
        let directory = try TemporaryDirectory("state")
        defer { directory.remove() }
        let first = try Self.start(directory)
        #expect(try first.redis("GET", "rt") == "key= state=")
        first.remove()
        let name = try #require(try FileManager.default.contentsOfDirectory(atPath: directory.appending("state")).first { $0.hasSuffix(".state") })
        let file = directory.appending("state/\(name)")
        var bytes = try Data(contentsOf: URL(fileURLWithPath: file))
        bytes[bytes.count - 1] ^= 0xff
        try bytes.write(to: URL(fileURLWithPath: file))
        let second = try Self.start(directory)
        defer { second.remove() }
        let answer = try second.redis("GET", "rt")
        #expect(answer.hasPrefix("FETCH rt: its saved plugin state cannot be used: \(file) does not decrypt with the configured state key"), "\(answer)")
        #expect(second.log.contains("a plugin state file cannot be used"))
        // The plugin was not called: the refusal is not counted or timed as a call, and explain says so.
        let info = try second.redis("INFO", "rt")
        #expect(info.contains("plugin_calls:0"), "\(info)")
        let explained = try second.redis("EXPLAIN", "rt")
        #expect(explained.contains("without a plugin call"), "\(explained)")
        #expect(!explained.split(whereSeparator: \.isNewline).contains { $0.hasPrefix("call:") }, "\(explained)")
        #expect(try second.redis("PING") == "PONG")
    }

    @Test("a FIFO where a state file goes: that expirable reports it and the daemon serves, instead of hanging at start")
    func fifoStateFile() throws {
        let directory = try TemporaryDirectory("state")
        defer { directory.remove() }
        let state = directory.appending("state")
        try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: true)
        chmod(state, 0o700)
        // "rt" hex-encoded.
        let file = state + "/7274.state"
        #expect(mkfifo(file, 0o600) == 0)
        let daemon = try Self.start(directory)
        defer { daemon.remove() }
        let answer = try daemon.redis("GET", "rt")
        #expect(answer == "FETCH rt: its saved plugin state cannot be used: \(file) is a FIFO, not a regular file: it cannot be a state file; remove it and restart the daemon", "\(answer)")
        #expect(daemon.log.contains("a plugin state file cannot be used"))
        #expect(try daemon.redis("PING") == "PONG")
    }

    @Test("a state write that fails on a full state_dir is retried and shown until it succeeds, and tried again at a clean stop: a restart resumes from the latest state",
          .enabled(if: PluginStateTests.canMountTmpfs, "needs `unshare -m` and `mount -t tmpfs` (root or CAP_SYS_ADMIN) and nsenter"))
    func fullStateDirectory() throws {
        let directory = try TemporaryDirectory("state")
        defer { directory.remove() }
        let state = directory.appending("state")
        try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: true)
        // A 64 kB tmpfs on state_dir, in a mount namespace of the test's own that `sleep` holds; the daemons run in it.
        let holder = try Spawned(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=64k,mode=0700 tmpfs \"$0\" && exec sleep 300", state])
        defer {
            kill(holder.pid, SIGKILL)
            _ = holder.wait()
        }
        let mounted = Date().addingTimeInterval(10)
        while !((try? String(contentsOfFile: "/proc/\(holder.pid)/mountinfo", encoding: .utf8))?.contains(" \(state) ") ?? false) {
            guard Date() < mounted, holder.isRunning else { Issue.record("the tmpfs was not mounted on \(state)"); return }
            usleep(20_000)
        }
        let namespace = ["nsenter", "-t", "\(holder.pid)", "-m"]
        func inNamespace(_ command: String...) throws -> ToolResult { try runTool(namespace[0], Array(namespace.dropFirst()) + command, seconds: 10) }
        func stateError(_ daemon: DaemonProcess) throws -> String? { Self.field(try daemon.redis("INFO", "rt"), "state_error") }

        let daemon = try Self.start(directory, launcher: namespace)
        defer { daemon.remove() }
        #expect(try daemon.redis("GET", "rt") == "key= state=")
        #expect(try stateError(daemon) == "", "written")

        // The disk fills; the next state ("s+") cannot be written.
        _ = try inNamespace("dd", "if=/dev/zero", "of=\(state)/fill", "bs=4096")
        #expect(try daemon.redis("CLEAR", "rt") == "OK")
        #expect(try daemon.redis("GET", "rt") == "key= state=s")
        let failing = try stateError(daemon) ?? "(no state_error line)"
        #expect(failing.contains("No space left on device") && failing.contains("a restart now would resume from the older state"), "\(failing)")
        let explained = try daemon.redis("EXPLAIN", "rt")
        #expect(Self.field(explained, "state_error")?.contains("No space left on device") == true, "\(explained)")
        let words = try daemon.ctl("explain", "rt").stdout
        #expect(words.contains("Plugin state not persisted: cannot write ") && words.contains("No space left on device"), "\(words)")
        #expect(daemon.log.contains("cannot persist a plugin state"))
        // Still full after the first retry (1 s): still shown.
        usleep(1_500_000)
        #expect(try stateError(daemon)?.contains("No space left on device") == true)

        // Space comes back: a retry writes the state and the error clears.
        _ = try inNamespace("rm", "-f", "\(state)/fill")
        let cleared = Date().addingTimeInterval(20)
        while try stateError(daemon) != "" && Date() < cleared { usleep(100_000) }
        #expect(try stateError(daemon) == "", "the retry wrote the state")
        #expect(daemon.log.contains("is persisted now"))

        // Full again for the next state ("s++"); space comes back just before a clean stop.
        _ = try inNamespace("dd", "if=/dev/zero", "of=\(state)/fill", "bs=4096")
        #expect(try daemon.redis("CLEAR", "rt") == "OK")
        #expect(try daemon.redis("GET", "rt") == "key= state=s+")
        #expect(try stateError(daemon)?.contains("No space left on device") == true)
        _ = try inNamespace("rm", "-f", "\(state)/fill")
        #expect(daemon.stop() == 0)
        #expect(!daemon.log.contains("stopping with a plugin state that could not be persisted"))

        try daemon.start()
        #expect(try daemon.redis("GET", "rt") == "key= state=s++", "the restarted daemon continued from the latest state, not a spent one")
        #expect(!daemon.log.contains("s++"), "states are never logged")
    }

    @Test("a directory in the way of a state write (any user, no mounts needed): shown until it is removed, then the retry writes the latest state")
    func writeInTheWay() throws {
        let directory = try TemporaryDirectory("state")
        defer { directory.remove() }
        let daemon = try Self.start(directory)
        defer { daemon.remove() }
        #expect(try daemon.redis("GET", "rt") == "key= state=")
        let pid = try #require(daemon.process?.pid)
        // The temporary file the daemon writes "rt"'s next state to, before renaming it over 7274.state.
        let obstacle = directory.appending("state/7274.state.tmp-\(pid)")
        try FileManager.default.createDirectory(atPath: obstacle, withIntermediateDirectories: false)
        #expect(try daemon.redis("CLEAR", "rt") == "OK")
        #expect(try daemon.redis("GET", "rt") == "key= state=s")
        let failing = Self.field(try daemon.redis("INFO", "rt"), "state_error") ?? "(no state_error line)"
        #expect(failing.hasPrefix("cannot write \(obstacle): it exists and is a directory, not a temporary state file; remove it (not persisted after "), "\(failing)")
        try FileManager.default.removeItem(atPath: obstacle)
        let cleared = Date().addingTimeInterval(20)
        while Self.field(try daemon.redis("INFO", "rt"), "state_error") != "" && Date() < cleared { usleep(100_000) }
        #expect(Self.field(try daemon.redis("INFO", "rt"), "state_error") == "", "the retry wrote the state")
        #expect(daemon.stop() == 0)
        try daemon.start()
        #expect(try daemon.redis("GET", "rt") == "key= state=s+", "the restarted daemon continued from the latest state")
    }
}
