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
        #expect(bad.receive(replies: 1) == "-ERR request too large: bulk string of 100000000 bytes, over the limit of 4096; closing the connection\r\n")
        #expect(bad.isClosedByPeer())
        let flood = try RawConnection(daemon.socket)
        flood.send(String(repeating: "x", count: 10_000))
        #expect(flood.receive(replies: 1).hasPrefix("-ERR request too large"))
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
        #expect(refused.hasPrefix("NOPERM CLEAR is allowed to root, the daemon's user (uid 0) and members of its group (gid 0) only"))
        #expect(try runTool("setpriv", asNobody + ["CLEARALL"]).stdout.hasPrefix("NOPERM"))
        #expect(try daemon.redis("TTL", "token") != "-2")
        #expect(daemon.log.contains("refused admin command"))
        #expect(daemon.log.contains("uid=65534"))
    }
}
