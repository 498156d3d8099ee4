import ExpirableTestSupport
import Foundation
import Testing

/// The daemon end to end, driven by the real redis-cli.
@Suite("Serving over RESP (redis-cli)")
struct ServingTests {
    static func counter(_ name: String = "token", ttlMillis: Int = 60_000, count: String = "calls") -> String {
        "[expirable.\(name)]\nplugin = \"counter\"\n[expirable.\(name).params]\nprefix = \"\(name)-\"\nttl_ms = \(ttlMillis)\ncount_file = \"COUNT/\(count)\"\n"
    }

    static func start(_ expirables: String, server: String = "", testPlugins: [String] = ["counter"], arguments: [String] = []) throws -> DaemonProcess {
        // The count files live in the daemon's own directory, known only once it exists.
        let daemon = try DaemonProcess(expirables: "", server: server, testPlugins: testPlugins, arguments: arguments, start: false)
        let config = try String(contentsOfFile: daemon.configPath, encoding: .utf8) + expirables.replacingOccurrences(of: "COUNT", with: daemon.directory.path)
        try config.write(toFile: daemon.configPath, atomically: true, encoding: .utf8)
        try daemon.start()
        return daemon
    }

    @Test("GET answers from memory after the first fetch: one plugin call")
    func cachedAnswer() throws {
        let daemon = try Self.start(Self.counter())
        defer { daemon.remove() }
        #expect(try daemon.redis("GET", "token") == "token-1")
        #expect(try daemon.redis("GET", "token") == "token-1")
        #expect(try daemon.redis("FETCH", "token").hasPrefix("token-1\n"))
        #expect(daemon.count("calls") == 1)
        let ttl = try #require(Int(try daemon.redis("TTL", "token")))
        #expect(ttl > 50 && ttl <= 60, "TTL is in seconds, as Redis users read it")
        let pttl = try #require(Int(try daemon.redis("PTTL", "token")))
        #expect(pttl > 50_000 && pttl <= 60_000, "PTTL is in milliseconds")
    }

    @Test("a failed fetch is answered with FETCH and its message, not kept: the next GET calls the plugin again")
    func failureNotKept() throws {
        let daemon = try Self.start("""
            [expirable.broken]
            plugin = "command"
            [expirable.broken.params]
            shell = "echo called >> COUNT/calls; echo 'upstream said 503' >&2; exit 1"
            ttl = "1m"
            """)
        defer { daemon.remove() }
        #expect(try daemon.redis("GET", "broken") == "FETCH command plugin: /bin/sh exited with status 1: upstream said 503")
        #expect(try daemon.redis("GET", "broken").hasPrefix("FETCH"))
        #expect(daemon.lines("calls") == 2)
        #expect(try daemon.redis("TTL", "broken") == "-2")
    }

    @Test("an eager value is refreshed in the background while GET keeps answering")
    func eagerRefresh() throws {
        let daemon = try Self.start("[expirable.eager]\nplugin = \"counter\"\nrefresh = \"eager\"\nbefore_expiry = \"2500ms\"\n[expirable.eager.params]\nprefix = \"e-\"\nttl_ms = 3000\ncount_file = \"COUNT/calls\"\n")
        defer { daemon.remove() }
        #expect(try daemon.redis("GET", "eager") == "e-1")
        // Refresh is due 0.5 s after the fetch, held to one per second: wait for the event, bounded.
        var answers: Set<String> = []
        for _ in 0..<100 where daemon.count("calls") < 3 {
            answers.insert(try daemon.redis("GET", "eager"))
            usleep(50_000)
        }
        #expect(daemon.count("calls") >= 3)
        #expect(answers.isSubset(of: ["e-1", "e-2", "e-3"]))
        #expect(try daemon.redis("INFO", "eager").contains("refreshes:"))
    }

    @Test("CLEAR drops the value (the next GET calls the plugin); CLEARALL clears every expirable")
    func clear() throws {
        let daemon = try Self.start(Self.counter() + Self.counter("other", count: "other"))
        defer { daemon.remove() }
        #expect(try daemon.redis("GET", "token") == "token-1")
        #expect(try daemon.redis("CLEAR", "token") == "OK")
        #expect(try daemon.redis("TTL", "token") == "-2")
        #expect(try daemon.redis("GET", "token") == "token-2")
        #expect(try daemon.redis("GET", "other") == "other-1")
        #expect(try daemon.redis("CLEARALL") == "OK")
        #expect(try daemon.redis("GET", "token") == "token-3")
        #expect(try daemon.redis("GET", "other") == "other-2")
        // Admin actions are logged with the peer's credentials.
        #expect(daemon.log.contains("peer=pid="))
        #expect(daemon.log.contains("uid=0"))
    }

    @Test("an unknown name is a NOTFOUND error naming it; bad commands are ERR")
    func unknownName() throws {
        let daemon = try Self.start(Self.counter())
        defer { daemon.remove() }
        #expect(try daemon.redis("GET", "nope") == "NOTFOUND no expirable named 'nope' is configured; `expirablectl list` shows the names")
        #expect(try daemon.redis("CLEAR", "nope").hasPrefix("NOTFOUND"))
        #expect(try daemon.redis("INFO", "nope").hasPrefix("NOTFOUND"))
        #expect(try daemon.redis("GET") == "ERR wrong number of arguments for 'GET'; expected GET name")
        #expect(try daemon.redis("ECHO") == "ERR wrong number of arguments for 'ECHO'; expected ECHO message")
        // The right number of arguments with an unknown option word: the word is what is wrong, not the count.
        #expect(try daemon.redis("FETCH", "token", "BOGUS", "5") == "ERR syntax error: unknown option 'BOGUS' for 'FETCH'; expected FETCH name [MINTTL ms]")
        #expect(try daemon.redis("FETCH", "token", "MINTTL", "5", "extra") == "ERR wrong number of arguments for 'FETCH'; expected FETCH name [MINTTL ms]")
        #expect(try daemon.redis("FETCH", "token", "MINTTL") == "ERR wrong number of arguments for 'FETCH'; expected FETCH name [MINTTL ms]")
        #expect(try daemon.redis("SET", "a", "b").hasPrefix("ERR unknown command 'SET'"))
        #expect(try daemon.redis("PING") == "PONG")
        #expect(try daemon.redis("LIST") == "token")
        #expect(daemon.count("calls") == 0)
    }

    @Test("redis-benchmark gets the settings it asks for (CONFIG GET save, appendonly) and warns of nothing, RESP2 and RESP3", arguments: [[], ["-3"]])
    func redisBenchmark(flags: [String]) throws {
        let daemon = try Self.start(Self.counter())
        defer { daemon.remove() }
        let result = try runTool("redis-benchmark", ["-s", daemon.socket, "-n", "20", "-c", "1"] + flags + ["GET", "token"], seconds: 60)
        #expect(result.status == 0, "\(result.stderr)")
        #expect(!(result.stdout + result.stderr).contains("Could not fetch server CONFIG"), "\(result.stdout)\(result.stderr)")
    }

    @Test("RESET and QUIT inside MULTI run at once, as in Redis: RESET drops the transaction, QUIT answers +OK and closes")
    func resetAndQuitInTransaction() throws {
        let daemon = try Self.start(Self.counter())
        defer { daemon.remove() }
        let reset = try RawConnection(daemon.socket)
        #expect(reset.roundTrip("MULTI\r\nGET token\r\nRESET\r\nEXEC\r\nPING\r\n", expecting: 5)
                == "+OK\r\n+QUEUED\r\n+RESET\r\n-ERR EXEC without MULTI\r\n+PONG\r\n")
        let quit = try RawConnection(daemon.socket)
        #expect(quit.roundTrip("MULTI\r\nGET token\r\nQUIT\r\n", expecting: 3) == "+OK\r\n+QUEUED\r\n+OK\r\n")
        #expect(quit.isClosedByPeer())
        #expect(daemon.count("calls") == 0, "the queued GET never ran")
    }

    @Test("an empty line and an empty array (*0) are skipped unanswered, as Redis does: redis-cli --pipe reports no error")
    func emptyRequests() throws {
        let daemon = try Self.start(Self.counter())
        defer { daemon.remove() }
        let raw = try RawConnection(daemon.socket)
        #expect(raw.roundTrip("\r\n\n*0\r\n   \r\nPING\r\n", expecting: 1) == "+PONG\r\n")
        #expect(raw.roundTrip("MULTI\r\n\r\n*0\r\nEXEC\r\n", expecting: 2) == "+OK\r\n*0\r\n", "nothing queued, the transaction not failed")
        let requests = daemon.directory.appending("requests")
        try "*2\r\n$3\r\nGET\r\n$5\r\ntoken\r\nPING\r\n".write(toFile: requests, atomically: true, encoding: .utf8)
        let piped = try runTool("sh", ["-c", "redis-cli -s '\(daemon.socket)' --pipe < '\(requests)'"])
        #expect(piped.status == 0 && piped.stdout.contains("errors: 0, replies: 2"), "\(piped.stdout) \(piped.stderr)")
    }

    @Test("INFO shows state, scope, refresh, expiry, counters and owner; never the value")
    func info() throws {
        let daemon = try Self.start(Self.counter())
        defer { daemon.remove() }
        _ = try daemon.redis("GET", "token")
        let info = try daemon.redis("INFO", "token")
        for field in ["state:valid", "scope:cluster", "refresh:lazy", "plugin_calls:1", "misses:1", "owner:local", "last_error:"] {
            #expect(info.contains(field), "\(field) missing from \(info)")
        }
        #expect(!info.contains("token-1"))
        #expect(try daemon.redis("INFO").contains("expirables:1"))
    }

    @Test("pipelined requests are answered in order, including behind a request that waits for a plugin")
    func pipelining() throws {
        let daemon = try Self.start(Self.counter() + "[expirable.slow]\nplugin = \"sleeper\"\n[expirable.slow.params]\nsleep_ms = 300\n", testPlugins: ["counter", "sleeper"])
        defer { daemon.remove() }
        let connection = try RawConnection(daemon.socket)
        var request = "*2\r\n$3\r\nGET\r\n$4\r\nslow\r\n"
        for i in 0..<100 { request += i % 2 == 0 ? "*2\r\n$3\r\nGET\r\n$5\r\ntoken\r\n" : "PING\r\n" }
        let reply = connection.roundTrip(request, expecting: 101)
        var expected = "$16\r\nmax_concurrent=1\r\n"
        for i in 0..<100 { expected += i % 2 == 0 ? "$7\r\ntoken-1\r\n" : "+PONG\r\n" }
        #expect(reply == expected)
        #expect(daemon.count("calls") == 1)
    }

    @Test("requests piled behind a waiting one, several times max_request_bytes, are all answered in order")
    func pipeliningPastTheLimit() throws {
        let daemon = try Self.start("[expirable.slow]\nplugin = \"sleeper\"\n[expirable.slow.params]\nsleep_ms = 300\n",
                                    server: "max_request_bytes = 1024", testPlugins: ["sleeper"])
        defer { daemon.remove() }
        let connection = try RawConnection(daemon.socket)
        let pings = 1000  // 6,000 bytes behind the waiting GET, several times the limit
        let reply = connection.roundTrip("GET slow\r\n" + String(repeating: "PING\r\n", count: pings), expecting: pings + 1)
        #expect(reply == "$16\r\nmax_concurrent=1\r\n" + String(repeating: "+PONG\r\n", count: pings))
    }

    @Test("values never reach the daemon's log")
    func valuesNotLogged() throws {
        let daemon = try Self.start(Self.counter(ttlMillis: 1))
        defer { daemon.remove() }
        for _ in 0..<5 { _ = try daemon.redis("GET", "token") }
        _ = try daemon.redis("FETCH", "token")
        _ = try daemon.redis("CLEAR", "token")
        daemon.stop()
        #expect(daemon.log.contains("clear"))
        #expect(!daemon.log.contains("token-"))
    }
}

/// A burst of callers connecting at once, as when a fleet of processes starts together.
@Suite("Connection bursts")
struct ConnectionBurstTests {
    @Test("300 connects while the daemon is not accepting all wait in the backlog; none is refused with EAGAIN")
    func backlog() throws {
        let daemon = try ServingTests.start(ServingTests.counter())
        defer { daemon.remove() }
        let pid = try #require(daemon.process?.pid)
        kill(pid, SIGSTOP)
        var sockets: [Int32] = []
        var refused = 0
        for _ in 0..<300 {
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { break }
            sockets.append(fd)
            let result = withUnixAddress(daemon.socket) { connect(fd, $0, $1) }
            if result != 0 && errno == EAGAIN { refused += 1 }
        }
        kill(pid, SIGCONT)
        for fd in sockets { close(fd) }
        #expect(sockets.count == 300)
        #expect(refused == 0, "\(refused) of 300 connects were refused: the listen backlog is too short")
        #expect(try daemon.redis("GET", "token") == "token-1")
    }
}
