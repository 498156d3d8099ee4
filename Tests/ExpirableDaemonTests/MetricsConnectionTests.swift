import ExpirableTestSupport
import Foundation
import Testing

/// The metrics endpoint's connections over real TCP on loopback (SPEC §10): whatever clients do there, the
/// endpoint holds a bounded number of descriptors for a bounded time, so it can never starve the Unix socket.
@Suite("metrics connections: closed when done, bounded in time and number")
struct MetricsConnectionTests {
    /// A TCP connection to the metrics port, for requests no HTTP library would send.
    final class Connection {
        let fd: Int32

        /// Connects to `host:port`, giving up after `seconds` (a listener that stopped accepting fills its backlog).
        init(host: String, port: Int, seconds: Int = 2) throws {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { throw TestSupportError("socket: \(String(cString: strerror(errno)))") }
            var timeout = timeval(tv_sec: seconds, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = UInt16(port).bigEndian
            inet_pton(AF_INET, host, &address.sin_addr)
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard connected == 0 else {
                let reason = String(cString: strerror(errno))
                close(fd)
                throw TestSupportError("connect \(host):\(port): \(reason)")
            }
            self.fd = fd
        }

        deinit { close(fd) }

        /// Whether the peer has closed the connection by now (nothing is waited for).
        var isClosed: Bool {
            var byte: UInt8 = 0
            let n = recv(fd, &byte, 1, Int32(MSG_DONTWAIT | MSG_PEEK))
            return n == 0 || (n < 0 && errno == ECONNRESET)
        }

        func send(_ text: String) {
            let bytes = Array(text.utf8)
            _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        }

        /// Reads until the peer closes or `seconds` pass: what arrived, and whether the peer closed.
        func readUntilClosed(seconds: Double) -> (text: String, closed: Bool) {
            var timeout = timeval(tv_sec: 0, tv_usec: 200_000)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
            var data: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 65536)
            while ContinuousClock.now < deadline {
                let n = read(fd, &buffer, buffer.count)
                if n > 0 {
                    data += buffer[0..<n]
                } else if n == 0 || errno == ECONNRESET {
                    return (String(decoding: data, as: UTF8.self), true)
                }
            }
            return (String(decoding: data, as: UTF8.self), false)
        }
    }

    /// A daemon with `token` and `[metrics]` on a free port of 127.0.0.1, under `launcher`.
    static func start(launcher: [String] = []) throws -> (daemon: DaemonProcess, port: Int) {
        let port = try freePort(on: "127.0.0.1")
        let daemon = try DaemonProcess(expirables: "[metrics]\nlisten = \"127.0.0.1:\(port)\"\n\n" + ServingTests.counter(), start: false)
        let config = try String(contentsOfFile: daemon.configPath, encoding: .utf8).replacingOccurrences(of: "COUNT", with: daemon.directory.path)
        try config.write(toFile: daemon.configPath, atomically: true, encoding: .utf8)
        daemon.launcher = launcher
        do {
            try daemon.start()
            _ = try MetricsTests.scrape(URL(string: "http://127.0.0.1:\(port)/metrics")!)
        } catch {
            daemon.remove()
            throw error
        }
        return (daemon, port)
    }

    @Test("a request the HTTP parser refuses gets one 400 with Connection: close, and its connection is closed",
          arguments: ["GARBAGE\r\n\r\n", "GET /metrics\r\n\r\n"])
    func badRequestCloses(request: String) throws {
        let (daemon, port) = try Self.start()
        defer { daemon.remove() }
        let connection = try Connection(host: "127.0.0.1", port: port)
        connection.send(request)
        let (text, closed) = connection.readUntilClosed(seconds: 5)
        #expect(closed, "still open 5 s after \(text.debugDescription)")
        #expect(text.components(separatedBy: "HTTP/1.1 400 Bad Request").count - 1 == 1, "\(text.debugDescription)")
        #expect(text.lowercased().contains("connection: close"))
    }

    @Test("a request that asks to close is answered and its connection closed")
    func connectionCloseIsHonoured() throws {
        let (daemon, port) = try Self.start()
        defer { daemon.remove() }
        let connection = try Connection(host: "127.0.0.1", port: port)
        connection.send("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        let (text, closed) = connection.readUntilClosed(seconds: 5)
        #expect(text.hasPrefix("HTTP/1.1 200 OK"))
        #expect(closed)
    }

    @Test("an idle connection, a half-sent request and a kept-alive connection after its answers are closed within the request deadline (10 s)")
    func slowAndIdleConnectionsAreClosed() throws {
        let (daemon, port) = try Self.start()
        defer { daemon.remove() }
        let idle = try Connection(host: "127.0.0.1", port: port)
        let half = try Connection(host: "127.0.0.1", port: port)
        half.send("GET /metrics HTTP/1.1\r\n")
        let kept = try Connection(host: "127.0.0.1", port: port)
        // Keep-alive still serves several requests on one connection.
        kept.send("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        let started = ContinuousClock.now
        // Generous: the bound is 10 s, the machine is loaded by parallel builds.
        let keptOutcome = kept.readUntilClosed(seconds: 30)
        #expect(keptOutcome.text.components(separatedBy: "HTTP/1.1 200 OK").count - 1 == 2)
        #expect(keptOutcome.closed, "the kept-alive connection is closed once idle")
        #expect(idle.readUntilClosed(seconds: 30 - (ContinuousClock.now - started).seconds).closed, "the idle connection")
        let halfOutcome = half.readUntilClosed(seconds: 30 - (ContinuousClock.now - started).seconds)
        #expect(halfOutcome.closed, "the half-sent request: \(halfOutcome.text.debugDescription)")
        #expect(ContinuousClock.now - started > .seconds(5), "not closed at once: the bound is 10 s")
    }

    @Test("with 256 descriptors, 300 idle metrics connections leave the socket answering: past 16, a new one is closed at once")
    func connectionsAreCapped() throws {
        let (daemon, port) = try Self.start(launcher: ["prlimit", "--nofile=256:256"])
        defer { daemon.remove() }
        var held: [Connection] = []
        let started = ContinuousClock.now
        for _ in 0..<300 where ContinuousClock.now - started < .seconds(30) {
            if let connection = try? Connection(host: "127.0.0.1", port: port) { held.append(connection) }
        }
        #expect(held.count > 100, "connected \(held.count) of 300")

        // The socket answers a GET, and redis-cli is not left hanging.
        let get = try runTool("redis-cli", ["-s", daemon.socket, "GET", "token"], seconds: 10)
        #expect(get.stdout.trimmingCharacters(in: .newlines) == "token-1", "\(get.stdout) \(get.stderr)")
        #expect(!daemon.log.contains("out of file descriptors"))

        // All but at most 16 were closed by the daemon.
        var stillOpen: Int { held.filter { !$0.isClosed }.count }
        #expect(waitUntil(seconds: 10) { stillOpen <= 16 }, "\(stillOpen) metrics connections left open")

        // Once they go, the endpoint serves again.
        held.removeAll()
        #expect(throws: Never.self) { try MetricsTests.scrape(URL(string: "http://127.0.0.1:\(port)/metrics")!) }
    }
}

extension Duration {
    fileprivate var seconds: Double {
        let (s, attoseconds) = components
        return Double(s) + Double(attoseconds) / 1e18
    }
}
