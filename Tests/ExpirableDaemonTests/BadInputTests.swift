import ExpirableTestSupport
import Foundation
import Testing

/// Bad input gets an error, costs only its own connection, and never stops the daemon serving others.
@Suite("Bad input")
struct BadInputTests {
    @Test("garbage bytes get a protocol error and the connection is closed; others are served")
    func garbage() throws {
        let daemon = try ServingTests.start(ServingTests.counter())
        defer { daemon.remove() }
        let bad = try RawConnection(daemon.socket)
        bad.send([0x2A, 0x32, 0x0D, 0x0A, 0x25, 0xFF, 0x00, 0x13, 0x0D, 0x0A])
        #expect(bad.receive(replies: 1).hasPrefix("-ERR Protocol error: "))
        #expect(bad.isClosedByPeer())
        #expect(try daemon.redis("GET", "token") == "token-1")
    }

    @Test("an oversized bulk string is refused before it is read and the connection is closed")
    func oversizedBulk() throws {
        let daemon = try ServingTests.start(ServingTests.counter(), server: "max_request_bytes = 4096")
        defer { daemon.remove() }
        let bad = try RawConnection(daemon.socket)
        bad.send("*2\r\n$3\r\nGET\r\n$100000000\r\nabc")
        #expect(bad.receive(replies: 1) == "-ERR request too large: bulk string of 100000000 bytes, over the limit of 4096 (server.max_request_bytes); closing the connection\r\n")
        #expect(bad.isClosedByPeer())
        let flood = try RawConnection(daemon.socket)
        flood.send(String(repeating: "x", count: 10_000))
        #expect(flood.receive(replies: 1).hasPrefix("-ERR request too large"))
        #expect(try daemon.redis("GET", "token") == "token-1")
    }

    @Test("requests are limited by their bytes (max_request_bytes), not by a count of names: MGET of 100 keyed members, EXISTS, SUBSCRIBE, inline MGET, ECHO of 20,000 bytes")
    func manyNames() throws {
        let daemon = try DaemonProcess(expirables: """
            [expirable.fam]
            plugin = "stateful"
            keyed = true
            [expirable.fam.params]
            mode = "clear"
            """, testPlugins: ["stateful"])
        defer { daemon.remove() }
        let names = (0..<100).map { "fam:k\($0)" }
        let values = try runTool("redis-cli", ["-s", daemon.socket, "MGET"] + names).stdout
        #expect(values == (0..<100).map { "key=k\($0) state=\n" }.joined())
        #expect(try runTool("redis-cli", ["-s", daemon.socket, "EXISTS"] + names + names).stdout == "200\n")
        let subscriber = try RawConnection(daemon.socket)
        let subscribed = subscriber.roundTrip("SUBSCRIBE " + names.joined(separator: " ") + "\r\n", expecting: 100)
        #expect(subscribed.hasSuffix("*3\r\n$9\r\nsubscribe\r\n$7\r\nfam:k99\r\n:100\r\n"), "\(subscribed.suffix(200))")
        let inline = try RawConnection(daemon.socket)
        let replies = inline.roundTrip("MGET " + names.prefix(70).joined(separator: " ") + "\r\nPING\r\n", expecting: 2)
        #expect(replies.hasPrefix("*70\r\n$13\r\nkey=k0 state=\r\n") && replies.hasSuffix("+PONG\r\n"), "\(replies.prefix(200))")
        let message = String(repeating: "m", count: 20_000)
        #expect(try daemon.redis("ECHO", message) == message)
    }

    @Test("a request over max_request_bytes gets its error, readable by a client still writing, then the connection closes")
    func tooLargeIsReadable() throws {
        let daemon = try ServingTests.start(ServingTests.counter(), server: "max_request_bytes = 4096")
        defer { daemon.remove() }
        let big = daemon.directory.appending("big")
        try String(repeating: "x", count: 1_000_000).write(toFile: big, atomically: true, encoding: .utf8)
        // redis-cli writes the whole megabyte before it reads: a close with it unread failed its writes (SIGPIPE).
        let cli = try runTool("sh", ["-c", "redis-cli -s '\(daemon.socket)' -x ECHO < '\(big)'"])
        #expect(cli.status == 0 && cli.stdout.trimmingCharacters(in: .newlines) == "ERR request too large: bulk string of 1000000 bytes, over the limit of 4096 (server.max_request_bytes); closing the connection",
                "\(cli.status) \(cli.stdout.prefix(200)) \(cli.stderr.prefix(200))")
        let raw = try RawConnection(daemon.socket)
        raw.send("*2\r\n$4\r\nECHO\r\n$20000\r\n" + String(repeating: "y", count: 20_000) + "\r\n")
        #expect(raw.receive(replies: 1) == "-ERR request too large: bulk string of 20000 bytes, over the limit of 4096 (server.max_request_bytes); closing the connection\r\n")
        #expect(raw.isClosedByPeer())
        #expect(try daemon.redis("GET", "token") == "token-1")
    }

    @Test("a half-written request followed by a disconnect leaves the daemon serving")
    func halfWritten() throws {
        let daemon = try ServingTests.start(ServingTests.counter())
        defer { daemon.remove() }
        for _ in 0..<20 {
            let half = try RawConnection(daemon.socket)
            half.send("*2\r\n$3\r\nGET\r\n$5\r\ntok")
        }
        #expect(try daemon.redis("GET", "token") == "token-1")
        #expect(try daemon.redis("INFO").contains("connections:"))
    }

    @Test("connections over max_connections are refused with an error; the daemon carries on")
    func tooManyConnections() throws {
        let daemon = try ServingTests.start(ServingTests.counter(), server: "max_connections = 2")
        defer { daemon.remove() }
        // Earlier connections (the readiness probe) are released once the daemon sees them close.
        for _ in 0..<100 where !(try daemon.redis("INFO").contains("connections:1\n")) { usleep(20_000) }
        let first = try RawConnection(daemon.socket)
        let second = try RawConnection(daemon.socket)
        #expect(first.roundTrip("PING\r\n", expecting: 1) == "+PONG\r\n")
        #expect(second.roundTrip("PING\r\n", expecting: 1) == "+PONG\r\n")
        let third = try RawConnection(daemon.socket)
        #expect(third.receive(replies: 1) == "-ERR max number of clients reached\r\n")
        #expect(third.isClosedByPeer())
        _ = consume first
        var answered = false
        for _ in 0..<100 where !answered {
            answered = (try? RawConnection(daemon.socket).roundTrip("PING\r\n", expecting: 1)) == "+PONG\r\n"
            if !answered { usleep(20_000) }
        }
        #expect(answered)
        #expect(second.roundTrip("GET token\r\n", expecting: 1) == "$7\r\ntoken-1\r\n")
    }

    @Test("CLEAR from a user outside the daemon's user and group is NOPERM; GET is allowed")
    func noPermission() throws {
        let daemon = try ServingTests.start(ServingTests.counter(), server: "socket_mode = \"0666\"")
        defer { daemon.remove() }
        let asNobody = ["--reuid=65534", "--regid=65534", "--clear-groups", "redis-cli", "-s", daemon.socket]
        #expect(try runTool("setpriv", asNobody + ["GET", "token"]).stdout == "token-1\n")
        let refused = try runTool("setpriv", asNobody + ["CLEAR", "token"]).stdout
        #expect(refused.hasPrefix("NOPERM cannot CLEAR token: CLEAR is allowed to root, the daemon's user (uid 0) and members of its group (gid 0) only"))
        #expect(try runTool("setpriv", asNobody + ["CLEARALL"]).stdout.hasPrefix("NOPERM"))
        #expect(try daemon.redis("TTL", "token") != "-2")
        #expect(daemon.log.contains("refused admin command"))
        #expect(daemon.log.contains("uid=65534"))
    }
}
