import ExpirableTestSupport
import Foundation
import Testing

/// The daemon driven by Redis clients as they are: redis-py (RESP3, its default, and RESP2), coredis, hiredis and
/// redis-cli (-2 and -3). The client programs are in Tests/Clients and print one line per check; the Python ones
/// import what scripts/test.sh installs into .build/python-clients ($EXPIRABLE_PYTHON_CLIENTS overrides).
@Suite("Redis clients as they are, against the daemon")
struct RedisClientTests {
    static let clients = TestPaths.repository.appendingPathComponent("Tests/Clients")

    static var pythonClients: String {
        ProcessInfo.processInfo.environment["EXPIRABLE_PYTHON_CLIENTS"]
            ?? TestPaths.repository.appendingPathComponent(".build/python-clients").path
    }

    /// `token` and `other` (counters, 60 s), `forever` (never expires), `unstored` (never fetched by the clients)
    /// and `eager` (3 s, refreshed 2.5 s before expiry, so about once a second).
    static func start() throws -> DaemonProcess {
        try ServingTests.start(
            ServingTests.counter() + ServingTests.counter("other", count: "other") + ServingTests.counter("unstored", count: "unstored") + """
            [expirable.forever]
            plugin = "counter"
            [expirable.forever.params]
            prefix = "forever-"
            ttl_ms = "never"
            [expirable.eager]
            plugin = "counter"
            refresh = "eager"
            before_expiry = "2500ms"
            [expirable.eager.params]
            prefix = "e-"
            ttl_ms = 3000
            count_file = "COUNT/eager"

            """)
    }

    /// What the counters hold once a client has read them, and what a CLEAR then GET of `token` makes.
    static let expectations = [
        "--value", "token=token-1", "--value", "other=other-1", "--value", "forever=forever-1",
        "--lifetime", "token=60", "--lifetime", "other=60", "--never", "forever", "--unstored", "unstored",
        "--unknown", "nope", "--error", "nope=NOTFOUND",
    ]

    /// Runs Tests/Clients/`script` with the installed client libraries; the test fails with everything it printed
    /// unless it exits 0 after its last check.
    static func python(_ script: String, _ arguments: [String]) throws {
        guard FileManager.default.fileExists(atPath: pythonClients) else {
            throw TestSupportError("\(pythonClients) is missing: run scripts/test.sh, which installs redis-py and coredis there")
        }
        var environment = ProcessInfo.processInfo.environment
        environment["PYTHONPATH"] = [pythonClients, environment["PYTHONPATH"]].compactMap { $0 }.joined(separator: ":")
        environment["PYTHONDONTWRITEBYTECODE"] = "1"
        let result = try runTool("python3", [clients.appendingPathComponent(script).path] + arguments, seconds: 60, environment: environment)
        #expect(result.status == 0 && result.stdout.contains("checks passed"), "\(script) exited \(result.status):\n\(result.stdout)\(result.stderr)")
    }

    @Test("redis-py 8 with its defaults (HELLO 3, RESP3) and with protocol=2: reads, TTL/PTTL, MULTI/EXEC pipeline, CLIENT, SELECT 0, NOTFOUND as ResponseError, SUBSCRIBE",
          arguments: ["default", "2"])
    func redisPy(resp: String) throws {
        let daemon = try Self.start()
        defer { daemon.remove() }
        try Self.python("redis_py_check.py", ["--socket", daemon.socket] + (resp == "default" ? [] : ["--protocol", resp]) + Self.expectations
            + ["--subscribe", "token=token-2", "--trigger", "CLEAR token", "--trigger", "GET token"])
        #expect(daemon.count("calls") == 2)
        #expect(daemon.count("unstored") == 0)
    }

    @Test("coredis (RESP3 only, sends HELLO 3 and CLIENT SETNAME on connect): GET, MGET, TTL, pipelines with and without MULTI/EXEC, NOTFOUND")
    func coredis() throws {
        let daemon = try Self.start()
        defer { daemon.remove() }
        try Self.python("coredis_check.py", ["--socket", daemon.socket] + Self.expectations)
        #expect(daemon.count("calls") == 1)
    }

    @Test("hiredis from C: GET, MGET with nil, a pipelined batch of 100 with an error reply inside, a NOTFOUND error")
    func hiredis() throws {
        let daemon = try Self.start()
        defer { daemon.remove() }
        let program = daemon.directory.appending("hiredis_check")
        let compiled = try runTool("cc", ["-o", program, Self.clients.appendingPathComponent("hiredis_check.c").path, "-lhiredis"])
        try #require(compiled.status == 0, "cc … -lhiredis failed (libhiredis-dev; scripts/test.sh installs it): \(compiled.stderr)")
        let result = try runTool(program, [daemon.socket, "--value", "token=token-1", "--value", "other=other-1", "--unknown", "nope", "--error", "nope=NOTFOUND"])
        #expect(result.status == 0 && result.stdout.contains("checks passed"), "hiredis_check exited \(result.status):\n\(result.stdout)\(result.stderr)")
        #expect(daemon.count("calls") == 1)
    }

    @Test("redis-cli -2 and -3: GET, TTL in seconds, PTTL in ms, HELLO 2 and 3, SELECT 0 (other dbs refused), NOTFOUND",
          arguments: ["-2", "-3"])
    func redisCli(resp: String) throws {
        let daemon = try Self.start()
        defer { daemon.remove() }
        func redis(_ arguments: String...) throws -> String {
            let result = try runTool("redis-cli", [resp, "-s", daemon.socket] + arguments)
            return (result.stdout + result.stderr).trimmingCharacters(in: .newlines)
        }
        let get = try redis("GET", "token")
        #expect(get == "token-1")
        let ttl = try redis("TTL", "token")
        #expect(Int(ttl).map { (55...60).contains($0) } == true, "TTL token = \(ttl), expected 55...60 (seconds) after a 60 s fetch")
        let pttl = try redis("PTTL", "token")
        #expect(Int(pttl).map { (55_000...60_000).contains($0) } == true, "PTTL token = \(pttl), expected 55000...60000 (ms)")
        let unstored = try redis("TTL", "unstored")
        #expect(unstored == "-2")
        let forever = try redis("GET", "forever")
        #expect(forever == "forever-1")
        let foreverTTL = try redis("TTL", "forever")
        #expect(foreverTTL == "-1")
        // Without a terminal redis-cli prints a map as "key value" lines and an array as one element a line.
        let hello3 = try redis("HELLO", "3")
        #expect(hello3.split(separator: "\n").contains("proto 3"), "HELLO 3: \(hello3)")
        let hello2 = try redis("HELLO", "2")
        let lines = hello2.split(separator: "\n")
        #expect(lines.firstIndex(of: "proto").map { $0 + 1 < lines.count ? lines[$0 + 1] : "" } == "2", "HELLO 2: \(hello2)")
        let select0 = try redis("SELECT", "0")
        #expect(select0 == "OK")
        let select1 = try redis("SELECT", "1")
        #expect(select1.hasPrefix("ERR"), "SELECT 1: \(select1)")
        let unknown = try redis("GET", "nope")
        #expect(unknown.hasPrefix("NOTFOUND"), "GET nope: \(unknown)")
        #expect(daemon.count("calls") == 1)
    }

    @Test("redis-cli -2 and -3 SUBSCRIBE shows the new value made by CLEAR then GET, as a pub/sub message",
          arguments: ["-2", "-3"])
    func redisCliSubscribe(resp: String) throws {
        let daemon = try Self.start()
        defer { daemon.remove() }
        #expect(try daemon.redis("GET", "token") == "token-1")
        let subscriber = try Subscriber(daemon, resp, "token")
        defer { subscriber.stop() }
        try #require(subscriber.waitFor(["subscribe", "token", "1"]), "no subscribe confirmation: \(subscriber.output)")
        #expect(try daemon.redis("CLEAR", "token") == "OK")
        #expect(try daemon.redis("GET", "token") == "token-2")
        #expect(subscriber.waitFor(["message", "token", "token-2"]), "no message with token-2: \(subscriber.output)")
    }

    @Test("redis-cli SUBSCRIBE shows an eager expirable's background refreshes as they happen")
    func redisCliSubscribeEager() throws {
        let daemon = try Self.start()
        defer { daemon.remove() }
        let subscriber = try Subscriber(daemon, "-3", "eager")
        defer { subscriber.stop() }
        try #require(subscriber.waitFor(["subscribe", "eager", "1"]), "no subscribe confirmation: \(subscriber.output)")
        #expect(try daemon.redis("GET", "eager") == "e-1")
        // A refresh is due 0.5 s after each fetch, at most one a second: e-2 and e-3 within a few seconds.
        #expect(subscriber.waitFor(["message", "eager", "e-2"]), "no message with e-2: \(subscriber.output)")
        #expect(subscriber.waitFor(["message", "eager", "e-3"]), "no message with e-3: \(subscriber.output)")
    }
}

/// `redis-cli PROTOCOL -s SOCKET SUBSCRIBE NAME` writing to a file in the daemon's directory, under coreutils
/// `timeout` so that it ends within 60 s even if the test does not get to `stop()`, which kills it by PID.
final class Subscriber {
    let process: Spawned
    let outputPath: String

    init(_ daemon: DaemonProcess, _ protocolFlag: String, _ name: String) throws {
        outputPath = daemon.directory.appending("subscribe-\(name)\(protocolFlag).out")
        process = try Spawned(["/usr/bin/timeout", "60", "redis-cli", protocolFlag, "-s", daemon.socket, "SUBSCRIBE", name],
                              stdout: .file(outputPath), stderr: .file(outputPath))
    }

    var output: String { (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "" }

    /// Whether `lines` appear one after the other in the output within `seconds`. (Without a terminal redis-cli
    /// prints each element of a pub/sub message on a line of its own.)
    func waitFor(_ lines: [String], seconds: Double = 10) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            let printed = output.split(separator: "\n").map(String.init)
            if printed.count >= lines.count, (0...(printed.count - lines.count)).contains(where: { Array(printed[$0..<$0 + lines.count]) == lines }) {
                return true
            }
            if !process.isRunning { return false }
            usleep(50_000)
        }
        return false
    }

    func stop() {
        if process.isRunning { kill(process.pid, SIGTERM) }
        process.wait()
    }
}
