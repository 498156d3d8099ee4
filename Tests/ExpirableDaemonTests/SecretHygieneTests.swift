import ExpirableClient
import ExpirableTestSupport
import Foundation
import Testing

/// SPEC §9 and issue 13 item 5: a daemon that keeps its secrets, measured on real processes.
@Suite("A daemon that keeps its secrets")
struct SecretHygieneTests {
    /// A command whose every value is new (`mem` and 24 random hex digits), appended to DIR/values as printed.
    static func command(output: String) -> String {
        let value = "v=mem$(od -An -N12 -tx1 /dev/urandom | tr -d ' \\n'); echo \"$v\" >> DIR/values; "
        switch output {
        case "json": return value + "printf '{\"value\":\"%s\",\"expires_in\":3600}' \"$v\""
        case "big": return value + "printf '%s%03000d' \"$v\" 0"  // 3 KB: two replies outgrow a 4 KiB buffer
        default: return value + "echo \"$v\""
        }
    }

    @Test("after CLEARALL no copy of a command plugin value or of a replaced eager value is left in the daemon's or its helpers' memory")
    func memoryScanAfterClearAll() throws {
        let expirables = """
            [expirable.helper]
            plugin = "command"
            [expirable.helper.params]
            shell = '''\(Self.command(output: "json"))'''
            output = "json"

            [expirable.inline]
            plugin = "command"
            isolation = "inline"
            [expirable.inline.params]
            shell = '''\(Self.command(output: "json"))'''
            output = "json"

            [expirable.big]
            plugin = "command"
            [expirable.big.params]
            shell = '''\(Self.command(output: "big"))'''
            ttl = "1h"

            [expirable.eager]
            plugin = "command"
            refresh = "eager"
            before_expiry = "300ms"
            [expirable.eager.params]
            shell = '''\(Self.command(output: "raw"))'''
            ttl = "600ms"

            """
        let daemon = try DaemonProcess(expirables: expirables, testPlugins: [])
        defer { daemon.remove() }
        let pid = try #require(daemon.process?.pid)
        // A subscriber, so replaced values also go through the fan-out and its pushes.
        let subscriber = try RawConnection(daemon.socket)
        #expect(subscriber.roundTrip("SUBSCRIBE eager\r\n", expecting: 1).contains("subscribe"))
        // Each lazy value is read, cleared and fetched anew three times; the eager one is read as it rotates.
        for _ in 0..<3 {
            for name in ["helper", "inline", "big"] {
                #expect(try daemon.redis("GET", name).hasPrefix("mem"))
                #expect(try daemon.redis("FETCH", name).contains("mem"))
                // 300 GETs in one write: the replies outgrow their first buffer, which then grows (realloc).
                let pipelined = try RawConnection(daemon.socket)
                #expect(pipelined.roundTrip(String(repeating: "GET \(name)\r\n", count: 300), expecting: 300).contains("mem"))
                #expect(try daemon.redis("CLEAR", name) == "OK")
            }
        }
        let deadline = Date().addingTimeInterval(15)
        while Self.values(daemon).filter({ $0.count == 27 }).count < 20, Date() < deadline {
            _ = try daemon.redis("GET", "eager")
            usleep(100_000)
        }
        // The scan finds what is there: each value held now is in the daemon's memory (its Secret).
        let held = try ["helper", "inline", "eager", "big"].map { Array(try daemon.redis("GET", $0).utf8.prefix(27)) }
        #expect(try MemoryScan.count(held, in: pid).allSatisfy { $0 >= 1 })
        #expect(try daemon.redis("CLEARALL") == "OK")
        // Replies still on their way to the subscriber are written (and wiped) by now.
        usleep(300_000)
        let values = Self.values(daemon).filter { $0.count == 27 }
        #expect(values.count >= 20, "the eager value rotated \(values.count) times")
        let patterns = values.map { Array($0.utf8) }
        let inDaemon = try MemoryScan.count(patterns, in: pid)
        var inHelpers = Array(repeating: 0, count: patterns.count)
        for helper in MemoryScan.children(of: pid) {
            for (index, n) in try MemoryScan.count(patterns, in: helper).enumerated() { inHelpers[index] += n }
        }
        let daemonCopies = inDaemon.reduce(0, +)
        let helperCopies = inHelpers.reduce(0, +)
        print("memory scan after CLEARALL: \(values.count) values; \(daemonCopies) copies in the daemon (\(inDaemon.filter { $0 > 0 }.count) values), \(helperCopies) in its helpers")
        #expect(daemonCopies == 0, "copies per value in the daemon: \(inDaemon)")
        #expect(helperCopies == 0, "copies per value in the helpers: \(inHelpers)")
        _ = subscriber
    }

    static func values(_ daemon: DaemonProcess) -> [String] {
        ((try? String(contentsOfFile: daemon.directory.appending("values"), encoding: .utf8)) ?? "")
            .split(separator: "\n").map(String.init)
    }

    @Test("the daemon is not dumpable: a process of its own user cannot read its environment or memory")
    func notDumpable() throws {
        let daemon = try DaemonProcess(expirables: ServingTests.counter().replacingOccurrences(of: "COUNT", with: "/tmp"), start: false)
        defer { daemon.remove() }
        // The daemon runs as nobody, and so does the reader: same user, no privileges.
        chown(daemon.directory.path, 65534, 65534)
        daemon.launcher = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        try daemon.start()
        let pid = try #require(daemon.process?.pid)
        let asNobody = ["--reuid=65534", "--regid=65534", "--clear-groups"]
        let environ = try runTool("setpriv", asNobody + ["cat", "/proc/\(pid)/environ"])
        #expect(environ.status != 0, "a process of the daemon's user read its environment")
        let mem = try runTool("setpriv", asNobody + ["dd", "if=/proc/\(pid)/mem", "of=/dev/null", "bs=1", "count=1", "skip=4096"])
        #expect(mem.status != 0)
        #expect(mem.stderr.contains("Permission denied") || mem.stderr.contains("Operation not permitted"), "\(mem.stderr)")
        // A process of another user that it runs itself (a helper) is no way in either: helpers are not dumpable.
        let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        #expect(status.contains("Uid:\t65534"))
    }

    @Test("a member of the daemon's group through a supplementary group may CLEAR; without it, NOPERM")
    func supplementaryGroupAdministers() throws {
        let daemon = try ServingTests.start(ServingTests.counter(), server: "socket_mode = \"0666\"")
        defer { daemon.remove() }
        // The daemon runs as root (gid 0); the caller is nobody, with group 0 only as a supplementary group.
        let member = ["--reuid=65534", "--regid=65534", "--groups=0", "redis-cli", "-s", daemon.socket]
        let outsider = ["--reuid=65534", "--regid=65534", "--clear-groups", "redis-cli", "-s", daemon.socket]
        #expect(try daemon.redis("GET", "token") == "token-1")
        let refused = try runTool("setpriv", outsider + ["CLEAR", "token"]).stdout
        #expect(refused.hasPrefix("NOPERM cannot CLEAR token: CLEAR is allowed to root, the daemon's user (uid 0) and members of its group (gid 0) only"))
        #expect(try runTool("setpriv", member + ["CLEAR", "token"]).stdout == "OK\n")
        #expect(try daemon.redis("TTL", "token") == "-2")
        #expect(try runTool("setpriv", member + ["CLEARALL"]).stdout == "OK\n")
        #expect(daemon.log.contains("groups=0"))
    }

    @Test("FetchedValue prints as <secret, N bytes> in print, debugDescription, dump and mirrors")
    func fetchedValuePrintsNoSecret() async throws {
        let daemon = try ServingTests.start(ServingTests.counter())
        defer { daemon.remove() }
        let fetched = try await daemon.client.fetch("token")
        #expect(fetched.string == "token-1")
        #expect("\(fetched)" == "<secret, 7 bytes>")
        #expect(String(reflecting: fetched) == "<secret, 7 bytes>")
        var dumped = ""
        dump(fetched, to: &dumped)
        #expect(!dumped.contains("token-1") && !dumped.contains("116, 111"), "\(dumped)")
        #expect(Mirror(reflecting: fetched).children.map { "\($0.value)" }.allSatisfy { !$0.contains("token-1") })
    }

    @Test("a stopping daemon leaves a socket file another daemon has since created at its path")
    func socketOfAnotherDaemonStays() throws {
        let first = try ServingTests.start(ServingTests.counter())
        defer { first.remove() }
        // Someone removes the first daemon's socket file and starts a second daemon on the same path.
        #expect(unlink(first.socket) == 0)
        let second = try DaemonProcess(expirables: "", start: false)
        defer { second.remove() }
        let config = try String(contentsOfFile: first.configPath, encoding: .utf8)
            .replacingOccurrences(of: "count_file = \"\(first.directory.path)", with: "count_file = \"\(second.directory.path)")
        try config.write(toFile: second.configPath, atomically: true, encoding: .utf8)
        let secondProcess = try second.launch()
        defer { if secondProcess.isRunning { kill(secondProcess.pid, SIGTERM); _ = secondProcess.wait() } }
        var answered = false
        for _ in 0..<200 where !answered {
            answered = first.answers()
            if !answered { usleep(50_000) }
        }
        #expect(answered, "the second daemon did not start: \(second.log)")
        #expect(first.stop() == 0)
        #expect(FileManager.default.fileExists(atPath: first.socket), "the first daemon removed the second one's socket file")
        #expect(first.answers(), "the second daemon no longer answers on the path")
        #expect(first.log.contains("socket file left in place: it is no longer the one this daemon created"))
        kill(secondProcess.pid, SIGTERM)
        _ = secondProcess.wait()
        #expect(!FileManager.default.fileExists(atPath: first.socket), "the second daemon removes its own file")
    }
}
