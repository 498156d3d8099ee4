import ExpirableTestSupport
import Foundation
import Testing

/// Clients that do what no well-behaved client does, against a real daemon: none of them may grow its memory
/// without bound, spin it, hold its slots forever or lose replies it owes.
@Suite("Misbehaving clients")
struct MisbehavingClientTests {
    /// A daemon serving `big`, a 64 KiB value from a file, plus `extra` tables and `server` lines.
    static func bigValueDaemon(server: String = "", extra: String = "", launcher: [String] = []) throws -> DaemonProcess {
        let daemon = try DaemonProcess(expirables: """
            [expirable.big]
            plugin = "file"
            [expirable.big.params]
            path = "DIR/big.txt"
            ttl = "10m"
            \(extra)
            """, server: server, testPlugins: ["counter", "sleeper"], shippedPlugins: ["file"], start: false)
        try String(repeating: "v", count: 64 * 1024).write(toFile: daemon.directory.appending("big.txt"), atomically: true, encoding: .utf8)
        daemon.launcher = launcher
        do {
            try daemon.start()
        } catch {
            daemon.remove()
            throw error
        }
        return daemon
    }

    @Test("a client that pipelines 100,000 GETs of a 64 KiB value and never reads grows memory by less than 64 MB; others are still served")
    func unreadRepliesAreBounded() throws {
        let daemon = try Self.bigValueDaemon()
        defer { daemon.remove() }
        let pid = try #require(daemon.process?.pid)
        #expect(try daemon.redis("GET", "big").count == 64 * 1024)
        let before = try #require(ProcessFigures.residentKB(pid))

        let flood = try RawConnection(daemon.socket)
        let sent = flood.sendWithoutBlocking(repeating: Array("*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n".utf8), times: 100_000, within: .seconds(3))
        #expect(sent > 1_000, "the daemon read some of the requests")
        let during = try #require(ProcessFigures.residentKB(pid))
        #expect(during - before < 64 * 1024, "resident memory grew from \(before) KB to \(during) KB")

        // Another client is answered while the flood sits unread.
        let other = try RawConnection(daemon.socket)
        let started = ContinuousClock.now
        #expect(other.roundTrip("PING\r\n", expecting: 1) == "+PONG\r\n")
        #expect(ContinuousClock.now - started < .seconds(2))
        // The flooding client still gets its replies, in order, as it reads.
        let first = flood.receive(replies: 3)
        #expect(first.hasPrefix("$65536\r\nvvvv"))
    }

    @Test("one MGET of 1,000 names of a 64 KiB value, never read, grows memory by less than 24 MB (a 64 MB reply); it arrives as the client reads")
    func unreadMGETIsBounded() throws {
        let daemon = try Self.bigValueDaemon()
        defer { daemon.remove() }
        let pid = try #require(daemon.process?.pid)
        #expect(try daemon.redis("GET", "big").count == 64 * 1024)
        let before = try #require(ProcessFigures.residentKB(pid))

        let client = try RawConnection(daemon.socket)
        client.send("MGET" + String(repeating: " big", count: 1_000) + "\r\n")
        // The daemon writes what the socket takes, then stops; give it time to do all it would do.
        usleep(1_500_000)
        let during = try #require(ProcessFigures.residentKB(pid))
        #expect(during - before < 24 * 1024, "resident memory grew from \(before) KB to \(during) KB")
        var head = [UInt8](repeating: 0, count: 64)
        var got = 0
        while got < head.count {
            let n = head[got...].withUnsafeMutableBytes { read(client.fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            got += n
        }
        #expect(String(decoding: head, as: UTF8.self).hasPrefix("*1000\r\n$65536\r\nvvvv"))
    }

    @Test("out of file descriptors, the daemon does not spin: it refuses new clients with an error, logs once, and serves again once descriptors free up")
    func outOfDescriptorsDoesNotSpin() throws {
        // max_connections above what 64 descriptors allow, so accept itself fails with EMFILE.
        let daemon = try Self.bigValueDaemon(server: "max_connections = 1000", launcher: ["prlimit", "--nofile=64:64"])
        defer { daemon.remove() }
        let pid = try #require(daemon.process?.pid)
        var holders: [RawConnection] = []
        for _ in 0..<90 { holders.append(try RawConnection(daemon.socket)) }
        #expect(waitUntil(seconds: 5) { daemon.log.contains("out of file descriptors") })
        // The last clients could not be given a descriptor of their own: they are told so, not left hanging.
        #expect(holders.last!.receive(replies: 1) == "-ERR out of file descriptors; try again shortly\r\n")
        // And while the shortage lasts the daemon sleeps: its CPU time over two seconds.
        let cpuBefore = try #require(ProcessFigures.cpuTicks(pid))
        usleep(2_000_000)
        let cpuAfter = try #require(ProcessFigures.cpuTicks(pid))
        let ticksPerSecond = Int(sysconf(Int32(_SC_CLK_TCK)))
        #expect(cpuAfter - cpuBefore < ticksPerSecond / 5, "used \(cpuAfter - cpuBefore) ticks of \(2 * ticksPerSecond) in two seconds while out of descriptors")
        #expect(daemon.log.components(separatedBy: "out of file descriptors:").count - 1 == 1, "logged once")

        // Once the holders are gone (the daemon sees their closes in its own time), a new client is served.
        holders.removeAll()
        let served = waitUntil(seconds: 10) {
            guard let probe = try? RawConnection(daemon.socket) else { return false }
            probe.setReceiveTimeout(seconds: 1)
            return probe.roundTrip("PING\r\n", expecting: 1) == "+PONG\r\n"
        }
        #expect(served, "log: \(daemon.log.suffix(3000))")
        #expect(waitUntil(seconds: 5) { daemon.log.contains("accepting again") })
    }

    @Test("a client that sends a GET and shuts down its writing side gets the reply, even when it waits on a plugin")
    func halfCloseGetsItsReplies() throws {
        let daemon = try Self.bigValueDaemon(extra: """
            [expirable.slow]
            plugin = "sleeper"
            [expirable.slow.params]
            sleep_ms = "200"
            """)
        defer { daemon.remove() }
        for round in 0..<5 {
            let connection = try RawConnection(daemon.socket)
            if round > 0 { #expect(try daemon.redis("CLEAR", "slow") == "OK") }
            connection.send("GET slow\r\nPING\r\n")
            shutdown(connection.fd, Int32(SHUT_WR))
            let reply = connection.receiveAll()
            #expect(reply == "$16\r\nmax_concurrent=1\r\n+PONG\r\n", "round \(round)")
        }
    }

    @Test("an idle connection is closed after idle_timeout; a subscriber is not")
    func idleConnectionsAreClosed() throws {
        let daemon = try Self.bigValueDaemon(server: "idle_timeout = \"300ms\"")
        defer { daemon.remove() }
        let idle = try RawConnection(daemon.socket)
        let subscriber = try RawConnection(daemon.socket)
        #expect(subscriber.roundTrip("SUBSCRIBE big\r\n", expecting: 1).contains("subscribe"))
        let started = ContinuousClock.now
        #expect(idle.isClosedByPeer())
        #expect(ContinuousClock.now - started < .seconds(5))
        usleep(400_000)
        #expect(subscriber.roundTrip("PING\r\n", expecting: 1).contains("pong"), "the subscriber outlived idle_timeout")
    }

    @Test("a half-sent request gets an error after request_timeout and its connection is closed")
    func halfSentRequestTimesOut() throws {
        let daemon = try Self.bigValueDaemon(server: "request_timeout = \"300ms\"")
        defer { daemon.remove() }
        let connection = try RawConnection(daemon.socket)
        connection.send("*2\r\n$3\r\nGET\r\n$3\r\nbi")
        let reply = connection.receiveAll()
        #expect(reply.hasPrefix("-ERR request incomplete after 300 ms (request_timeout)"), "got \(reply)")
    }

    @Test("a subscriber that does not read is disconnected once max_output_bytes of messages pile up")
    func slowSubscriberIsDropped() throws {
        let daemon = try Self.bigValueDaemon(server: "max_output_bytes = 65536")
        defer { daemon.remove() }
        let subscriber = try RawConnection(daemon.socket)
        #expect(subscriber.roundTrip("SUBSCRIBE big\r\n", expecting: 1).contains("subscribe"))
        // Each CLEAR + GET stores the value anew, which pushes 64 KiB to the subscriber; it never reads.
        let writer = try RawConnection(daemon.socket)
        var pushed = 0
        for _ in 0..<200 where !daemon.log.contains("subscriber closed") {
            _ = writer.roundTrip("CLEAR big\r\nGET big\r\n", expecting: 2)
            pushed += 1
        }
        #expect(daemon.log.contains("subscriber closed: it does not read its messages"), "after \(pushed) values")
        #expect(subscriber.isClosedByPeer())
        #expect(try daemon.redis("GET", "big").count == 64 * 1024)
    }
}

/// Figures of a process read from /proc.
enum ProcessFigures {
    /// VmRSS in KB.
    static func residentKB(_ pid: Int32) -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") }
        return line.flatMap { Int($0.split(separator: " ", omittingEmptySubsequences: true)[1]) }
    }

    /// User plus system CPU time in clock ticks.
    static func cpuTicks(_ pid: Int32) -> Int? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // After the command name: state is field 3, utime field 14, stime field 15.
        guard fields.count > 13, let user = Int(fields[11]), let system = Int(fields[12]) else { return nil }
        return user + system
    }
}

/// Polls `condition` every 20 ms for at most `seconds`.
func waitUntil(seconds: Double, _ condition: () -> Bool) -> Bool {
    let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
    while ContinuousClock.now < deadline {
        if condition() { return true }
        usleep(20_000)
    }
    return condition()
}

extension RawConnection {
    /// Writes `chunk` up to `times` times without blocking, for at most `within`; stops once the daemon has
    /// not taken a byte for half a second. Returns how many whole chunks went out.
    func sendWithoutBlocking(repeating chunk: [UInt8], times: Int, within: Duration) -> Int {
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
        defer { _ = fcntl(fd, F_SETFL, flags) }
        let batch = Array([[UInt8]](repeating: chunk, count: 1000).joined())
        let deadline = ContinuousClock.now + within
        var sentBytes = 0
        var lastProgress = ContinuousClock.now
        while sentBytes < chunk.count * times, ContinuousClock.now < deadline, ContinuousClock.now - lastProgress < .milliseconds(500) {
            let offset = sentBytes % batch.count
            let n = batch[offset...].withUnsafeBytes { write(fd, $0.baseAddress, min($0.count, chunk.count * times - sentBytes)) }
            if n > 0 {
                sentBytes += n
                lastProgress = ContinuousClock.now
            } else {
                usleep(5_000)
            }
        }
        return sentBytes / chunk.count
    }

    /// Everything the peer sends until it closes (or 10 s pass).
    func receiveAll() -> String {
        var data: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(fd, &buffer, buffer.count)
            if n <= 0 { break }
            data += buffer[0..<n]
        }
        return String(decoding: data, as: UTF8.self)
    }
}
