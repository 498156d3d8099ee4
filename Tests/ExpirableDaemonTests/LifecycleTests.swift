import ExpirableTestSupport
import Foundation
import Testing

@Suite("Daemon lifecycle")
struct LifecycleTests {
    @Test("SIGTERM and SIGINT drain, exit 0 and remove the socket file", arguments: [SIGTERM, SIGINT])
    func stopSignal(signal: Int32) throws {
        let daemon = try ServingTests.start(ServingTests.counter())
        defer { daemon.remove() }
        #expect(try daemon.redis("GET", "token") == "token-1")
        #expect(daemon.stop(signal: signal) == 0)
        #expect(!FileManager.default.fileExists(atPath: daemon.socket))
        #expect(daemon.log.contains("stopped"))
    }

    @Test("SIGTERM answers the requests a connection already sent behind one waiting on a plugin before it closes")
    func drainAnswersPipelinedRequests() throws {
        let daemon = try ServingTests.start(ServingTests.counter() + "[expirable.slow]\nplugin = \"sleeper\"\ntimeout = \"10s\"\n[expirable.slow.params]\nsleep_ms = 1000\n", testPlugins: ["counter", "sleeper"])
        defer { daemon.remove() }
        #expect(try daemon.redis("GET", "token") == "token-1")
        let client = try RawConnection(daemon.socket)
        client.send("GET slow\r\nGET token\r\nPING\r\n")
        // The daemon has read the three requests once the plugin call for the first is under way.
        #expect(waitUntil(seconds: 10) { (try? daemon.redis("INFO", "slow").contains("fetching:yes")) == true })
        let pid = try #require(daemon.process?.pid)
        kill(pid, SIGTERM)
        #expect(client.receive(replies: 3) == "$16\r\nmax_concurrent=1\r\n$7\r\ntoken-1\r\n+PONG\r\n")
        #expect(client.isClosedByPeer())
        #expect(daemon.stop() == 0)
    }

    @Test("with NOTIFY_SOCKET a reload is told as RELOADING=1 (with MONOTONIC_USEC) then READY=1, a refused one too, and SIGTERM as STOPPING=1")
    func notifiesReloadAndStop() throws {
        let daemon = try DaemonProcess(expirables: "[expirable.a]\nplugin = \"counter\"\n", start: false)
        defer { daemon.remove() }
        let listener = try DatagramListener(daemon.directory.appending("notify.sock"))
        daemon.environment = ["NOTIFY_SOCKET": listener.path]
        try daemon.start()
        /// The datagrams up to and including the first that has `field` as a line (at most 15 s for each).
        func until(_ field: String) -> [String] {
            var messages: [String] = []
            while !messages.contains(where: { $0.split(separator: "\n").contains(Substring(field)) }) {
                guard let message = listener.receive(timeoutSeconds: 15) else { break }
                messages.append(message)
            }
            return messages
        }
        #expect(until("READY=1").last?.contains("READY=1") == true, "no READY=1 at start: \(daemon.log.suffix(800))")
        let pid = try #require(daemon.process?.pid)

        kill(pid, SIGHUP)
        let reloading = until("RELOADING=1")
        #expect(reloading.last?.contains("RELOADING=1") == true, "\(reloading)")
        let usec = reloading.last?.split(separator: "\n").first { $0.hasPrefix("MONOTONIC_USEC=") }.flatMap { UInt64($0.dropFirst("MONOTONIC_USEC=".count)) }
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        #expect(usec.map { $0 > 0 && $0 <= UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec / 1000) } == true, "\(reloading)")
        let reloaded = until("READY=1")
        #expect(reloaded.last?.contains("READY=1") == true, "READY=1 once the reload is applied: \(reloaded)")

        // A refused reload (a file that does not parse) is told the same way: the daemon serves on as before.
        try (String(contentsOfFile: daemon.configPath, encoding: .utf8) + "\n[[[\n").write(toFile: daemon.configPath, atomically: true, encoding: .utf8)
        #expect(try daemon.redis("RELOAD").hasPrefix("ERR reload refused"))
        #expect(until("RELOADING=1").last?.contains("RELOADING=1") == true)
        let refused = until("READY=1")
        #expect(refused.last?.contains("READY=1") == true && refused.last?.contains("refused") == true, "\(refused)")

        kill(pid, SIGTERM)
        let stopping = until("STOPPING=1")
        #expect(stopping.last?.contains("STOPPING=1") == true, "no STOPPING=1 on SIGTERM: \(stopping)")
        #expect(daemon.stop() == 0)
    }

    @Test("a SIGHUP during the shutdown drain reloads nothing: no expirable added, no plugin called, and the log says it was ignored")
    func hangupDuringDrain() throws {
        let slow = "[expirable.slow]\nplugin = \"counter\"\ntimeout = \"20s\"\n[expirable.slow.params]\nsleep_ms = 3000\n"
        let daemon = try ServingTests.start(slow)
        defer { daemon.remove() }
        let client = try RawConnection(daemon.socket)
        client.setReceiveTimeout(seconds: 30)
        client.send("GET slow\r\n")
        #expect(waitUntil(seconds: 10) { (try? daemon.redis("INFO", "slow").contains("fetching:yes")) == true })
        try ReloadTests.rewrite(daemon, slow + "[expirable.new]\nplugin = \"counter\"\nprefetch = true\n[expirable.new.params]\ncount_file = \"COUNT/new\"\n")
        let pid = try #require(daemon.process?.pid)
        kill(pid, SIGTERM)
        #expect(IsolationTests.eventually(seconds: 10) { daemon.log.contains("stopping: draining connections") }, "\(daemon.log.suffix(800))")
        kill(pid, SIGHUP)
        #expect(client.receive(replies: 1) == "$2\r\nv1\r\n", "the drain answers the call under way")
        #expect(daemon.stop() == 0)
        let log = daemon.log
        #expect(!log.contains("configuration reloaded") && log.contains("reload ignored: the daemon is stopping"), "\(log.suffix(1500))")
        #expect(daemon.count("new") == 0, "no plugin call for an expirable added while stopping")
    }

    /// A daemon launched with `slow`, whose plugin's create waits for the file `wait`, and its process, returned
    /// once that create has begun (`wait.started`): the plugin is being created in its helper, so the daemon has
    /// parsed its configuration and is still starting. The caller removes the daemon and kills the process.
    static func launchedWhileStarting() throws -> (daemon: DaemonProcess, process: Spawned, wait: String) {
        let daemon = try DaemonProcess(expirables: "", start: false)
        let wait = daemon.directory.appending("create-wait")
        do {
            try (String(contentsOfFile: daemon.configPath, encoding: .utf8)
                + "[expirable.slow]\nplugin = \"counter\"\ntimeout = \"30s\"\n[expirable.slow.params]\ncreate_wait_file = \"\(wait)\"\n")
                .write(toFile: daemon.configPath, atomically: true, encoding: .utf8)
            let process = try daemon.launch()
            #expect(IsolationTests.eventually(seconds: 10) { FileManager.default.fileExists(atPath: wait + ".started") })
            return (daemon, process, wait)
        } catch {
            daemon.remove()
            throw error
        }
    }

    @Test("a SIGHUP while the daemon starts (its plugins being created) neither kills it nor is lost: it reloads once ready")
    func hangupDuringStart() throws {
        let (daemon, process, wait) = try Self.launchedWhileStarting()
        defer { daemon.remove() }
        defer {
            if process.isRunning {
                kill(process.pid, SIGKILL)
                _ = process.wait()
            }
        }
        kill(process.pid, SIGHUP)
        #expect(!IsolationTests.eventually(seconds: 0.5) { !process.isRunning }, "SIGHUP killed the starting daemon: \(process.exitStatus.map(String.init) ?? "")")
        _ = FileManager.default.createFile(atPath: wait, contents: nil)
        #expect(IsolationTests.eventually(seconds: 10) { daemon.answers() }, "\(daemon.log.suffix(1000))")
        #expect(IsolationTests.eventually(seconds: 5) { daemon.log.contains("configuration reloaded") }, "the SIGHUP reloads once ready: \(daemon.log.suffix(1000))")
        #expect(try daemon.redis("GET", "slow") == "v1")
        kill(process.pid, SIGTERM)
        _ = process.wait()
        #expect(process.exitStatus == 0)
    }

    @Test("a request still waiting when the drain time ends is told to try again (TRYAGAIN, expirablectl exit 75), and the helper's kill is logged as the stop, not a crash")
    func drainCutsAWaitingRequest() throws {
        let daemon = try ServingTests.start("[expirable.slow]\nplugin = \"sleeper\"\ntimeout = \"30s\"\n[expirable.slow.params]\nsleep_ms = 20000\n", testPlugins: ["sleeper"])
        defer { daemon.remove() }
        let fetch = try Spawned([try TestPaths.product("expirablectl").path, "--socket", daemon.socket, "--timeout", "60s", "fetch", "slow"],
                                stdout: .file(daemon.directory.appending("fetch.out")), stderr: .file(daemon.directory.appending("fetch.out")))
        defer { if fetch.isRunning { kill(fetch.pid, SIGKILL); fetch.wait() } }
        #expect(waitUntil(seconds: 30) { (try? daemon.redis("INFO", "slow").contains("fetching:yes")) == true })
        #expect(daemon.stop() == 0, "\(daemon.log)")
        fetch.wait()
        let output = (try? String(contentsOfFile: daemon.directory.appending("fetch.out"), encoding: .utf8)) ?? ""
        #expect(fetch.exitStatus == 75, "\(output)")
        #expect(output == "expirablectl: TRYAGAIN the daemon is stopping and did not answer within its drain time (5000 ms); send the request again once it is back\n", "\(output)")
        #expect(!daemon.log.contains("crashed"), "\(daemon.log)")
        #expect(!daemon.log.contains("starts its helper again"), "\(daemon.log)")
        #expect(daemon.log.contains("plugin helper stopped with the daemon"), "\(daemon.log)")
    }

    @Test("SIGTERM or SIGINT while the daemon starts (its plugins being created) does not kill it silently: it stops cleanly once started, exit 0, saying why", arguments: [SIGTERM, SIGINT])
    func stopDuringStart(signal: Int32) throws {
        let (daemon, process, wait) = try Self.launchedWhileStarting()
        defer { daemon.remove() }
        defer {
            if process.isRunning {
                kill(process.pid, SIGKILL)
                _ = process.wait()
            }
        }
        kill(process.pid, signal)
        #expect(!IsolationTests.eventually(seconds: 0.5) { !process.isRunning }, "the signal killed the starting daemon: \(process.exitStatus.map(String.init) ?? "")")
        _ = FileManager.default.createFile(atPath: wait, contents: nil)
        #expect(IsolationTests.eventually(seconds: 20) { !process.isRunning }, "\(daemon.log.suffix(1000))")
        #expect(process.exitStatus == 0)
        let name = signal == SIGINT ? "SIGINT" : "SIGTERM"
        #expect(daemon.log.contains("\(name) received while starting; stopping"), "\(daemon.log.suffix(1000))")
        #expect(daemon.log.contains("stopped"))
        #expect(!FileManager.default.fileExists(atPath: daemon.socket))
    }

    @Test("the socket file gets socket_mode")
    func socketMode() throws {
        let daemon = try ServingTests.start(ServingTests.counter(), server: "socket_mode = \"0600\"")
        defer { daemon.remove() }
        let attributes = try FileManager.default.attributesOfItem(atPath: daemon.socket)
        #expect((attributes[.posixPermissions] as? Int) == 0o600)
    }

    @Test("a stale socket file is replaced")
    func staleSocket() throws {
        let daemon = try DaemonProcess(expirables: ServingTests.counter().replacingOccurrences(of: "COUNT", with: "/tmp"), start: false)
        defer { daemon.remove() }
        // A socket file whose daemon is gone: bound, never listened on, closed.
        try bindAndClose(daemon.socket)
        #expect(FileManager.default.fileExists(atPath: daemon.socket))
        try daemon.start()
        #expect(try daemon.redis("PING") == "PONG")
        #expect(daemon.log.contains("replaced a stale socket file"))
    }

    @Test("a second daemon on a live socket exits 1 with a clear error and leaves the first serving")
    func liveDaemonDetected() throws {
        let daemon = try ServingTests.start(ServingTests.counter())
        defer { daemon.remove() }
        let second = try runTool(TestPaths.product("expirabled").path, ["--config", daemon.configPath])
        #expect(second.status == 1)
        #expect(second.stderr.contains("expirabled: another daemon is already serving \(daemon.socket) (a connection to it succeeded); stop it first or choose another server.socket"))
        #expect(try daemon.redis("GET", "token") == "token-1")
    }

    @Test("a second daemon that may not connect to a live daemon's socket (EACCES) refuses to start and leaves that socket in place",
          .enabled(if: CommandLineTests.canDropPrivileges, "needs root and setpriv"))
    func liveDaemonOfAnotherUser() throws {
        let daemon = try ServingTests.start(ServingTests.counter(), server: "socket_mode = \"0600\"")
        defer { daemon.remove() }
        let before = try #require(try FileManager.default.attributesOfItem(atPath: daemon.socket)[.systemFileNumber] as? Int)
        // A directory both users may write (as a shared runtime directory), so that nothing else stops the second:
        // sticky, as /tmp is, since plugin_dir is inside it and may be in no directory others could rename it from.
        chmod(daemon.directory.path, 0o1777)
        // As nobody, connect() to root's 0600 socket fails with EACCES: that is not a stale file.
        let second = try runTool("/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups",
                                             TestPaths.product("expirabled").path, "--config", daemon.configPath], seconds: 20)
        #expect(second.status == 1, "\(second.stderr)")
        #expect(second.stderr.contains("server.socket \(daemon.socket) exists and a connection to it failed with Permission denied, so a daemon may still be serving there"), "\(second.stderr)")
        #expect(!second.stderr.contains("replaced a stale socket file"))
        let after = try #require(try FileManager.default.attributesOfItem(atPath: daemon.socket)[.systemFileNumber] as? Int)
        #expect(after == before, "the live daemon's socket file was replaced")
        #expect(try daemon.redis("GET", "token") == "token-1")
    }

    @Test("the command line: --help prints the usage, --version the version; a bad option exits 64 naming it", arguments: [
        (["--help"], 0, "OVERVIEW: Keeps short-lived values"),
        (["--version"], 0, "0."),
        ([], 64, "Error: Missing expected argument '--config <path>'"),
        (["--config"], 64, "Error: Missing value for '--config <path>'"),
        (["--config=/x", "--threads", "0"], 64, "Error: --threads 0 is not a number of threads from 1 to 256"),
        (["--config", "/x", "--log-level", "loud"], 64, "Error: The value 'loud' is invalid for '--log-level <level>'. Please provide one of the following:"),
        (["--config", "/x", "--log-format", "xml"], 64, "Error: The value 'xml' is invalid for '--log-format <format>'"),
        (["--config", "/x", "--verbose"], 64, "Error: Unknown option '--verbose'"),
    ])
    func commandLine(arguments: [String], status: Int32, message: String) throws {
        let result = try runTool(TestPaths.product("expirabled").path, arguments)
        #expect(result.status == status)
        #expect((status == 0 ? result.stdout : result.stderr).hasPrefix(message), "\(result.stderr)")
    }

    @Test("a bad configuration stops the daemon at start with the file, line and key")
    func badConfiguration() throws {
        let daemon = try DaemonProcess(expirables: "[expirable.x]\nplugin = \"counter\"\ntimeout = \"soon\"\n", start: false)
        defer { daemon.remove() }
        let result = try runTool(TestPaths.product("expirabled").path, ["--config", daemon.configPath])
        #expect(result.status == 1)
        let config = try String(contentsOfFile: daemon.configPath, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false)
        let line = try #require(config.firstIndex { $0.hasPrefix("timeout = \"soon\"") }) + 1
        #expect(result.stderr.contains("expirabled: \(daemon.configPath):\(line): expirable.x.timeout: expected a duration"))
        #expect(!FileManager.default.fileExists(atPath: daemon.socket))
    }

    @Test("SIGTERM stops an inline daemon whose plugin's expirable_destroy never returns: exit 0 within the bound, naming it; other destroys still run")
    func hungDestroy() throws {
        let daemon = try DaemonProcess(expirables: """
            [expirable.hung]
            plugin = "hungdestroy"
            [expirable.hung.params]
            hang = "true"
            [expirable.tidy]
            plugin = "hungdestroy"
            [expirable.tidy.params]
            destroyed_file = "DIR/destroyed"
            """, server: "isolation = \"inline\"", testPlugins: ["hungdestroy"])
        defer { daemon.remove() }
        #expect(try daemon.redis("GET", "hung") == "v")
        // stop() waits 10 s for the exit, then kills with SIGKILL and gives nil.
        #expect(daemon.stop() == 0, "\(daemon.log)")
        #expect(!FileManager.default.fileExists(atPath: daemon.socket))
        let warning = daemon.log.split(separator: "\n").first { $0.contains("expirable_destroy did not return") }
        #expect(warning?.contains("hung") == true, "\(daemon.log)")
        #expect(warning?.contains("tidy") == false)
        #expect((try? String(contentsOfFile: daemon.directory.appending("destroyed"), encoding: .utf8)) == "destroyed")
    }
}
