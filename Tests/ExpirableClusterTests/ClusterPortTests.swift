@testable import ExpirableCluster
import ExpirableTestSupport
import Foundation
import Testing

/// What the cluster port owes the rest of the daemon: strangers connecting to it must not use up the process's
/// descriptors or hold a connection forever, and neither may a peer that stops halfway.
@Suite("The cluster port")
struct ClusterPortTests {
    @Test("300 connections that never start TLS are refused beyond a small budget, and local GETs keep working with 200 descriptors")
    func unauthenticatedFlood() throws {
        let cluster = try TestCluster(2, expirables: counters())
        defer { cluster.remove() }
        let node = cluster["node-a"]
        // The local value is fetched before the flood, so the GETs below are served from memory and need no descriptor
        // for the plugin's count file.
        let value = try node.redis("GET", "mine")
        #expect(value.hasPrefix("local-node-a-"))
        // The daemon raised its soft limit to the hard one at start; lower both, so 300 connections would exhaust it.
        let pid = try #require(node.process).pid
        let limited = try runTool("prlimit", ["--pid", "\(pid)", "--nofile=200:200"])
        try #require(limited.status == 0, "prlimit failed: \(limited.stderr)")

        let (host, port) = try PeerSecurityTests.listenAddress(cluster)
        let strangers = try TCPConnections(host: host, port: UInt16(port)!, count: 300)
        defer { strangers.close() }

        // While the strangers hold their connections, local GETs keep answering at once (bounded: 3 s or 1000 GETs).
        let window = Date().addingTimeInterval(3)
        var answered = 0
        while Date() < window, answered < 1000 {
            let reply = getWithin(seconds: 2, socket: node.socket, name: "mine")
            try #require(reply == "$\(value.utf8.count)\r\n\(value)\r\n", "GET number \(answered + 1) got \(reply.map { "\($0.debugDescription)" } ?? "no answer within 2 s") with 300 strangers on the cluster port")
            answered += 1
        }
        #expect(TestCluster.eventually { node.log.contains("refused unauthenticated cluster connections") }, "\(node.log.suffix(2000))")
        let refusals = node.log.split(separator: "\n").filter { $0.contains("refused unauthenticated cluster connections") }
        #expect(refusals.count <= 2, "one line per burst, never one per connection: \(refusals)")
        // The budget's connections are closed at the handshake deadline, each logged once, at debug.
        #expect(TestCluster.eventually { node.log.contains("closed an unauthenticated cluster connection: no TLS handshake within") })
        // The real peer is still linked.
        #expect(cluster.live("node-a") == Set(cluster.names))
    }

    @Test("a peer whose certificate is valid but that never says hello is closed at the handshake deadline")
    func verifiedButSilent() throws {
        let cluster = try TestCluster(2, expirables: counters())
        defer { cluster.remove() }
        let (host, port) = try PeerSecurityTests.listenAddress(cluster)
        let client = try TLSClient(host: host, port: port, as: "node-b", pki: cluster.pki)
        defer { client.stop() }
        // The deadline is a few heartbeats (2 s at the tests' 300 ms); 10 s is far beyond it.
        #expect(TestCluster.eventually(seconds: 10) { !client.isRunning }, "the connection is still open; node-a's log ends: \(cluster["node-a"].log.suffix(1500))")
        #expect(cluster["node-a"].log.contains("closed a cluster connection verified as node-b: no hello within"), "\(cluster["node-a"].log.suffix(1500))")
        #expect(cluster.live("node-a") == Set(cluster.names))
    }

    @Test("a linked peer that stalls in the middle of a frame is dropped after the dead time")
    func stalledMidFrame() throws {
        let cluster = try TestCluster(2, expirables: counters())
        defer { cluster.remove() }
        // node-b goes away, and a client with its certificate takes its place: with no link of node-a's own to
        // node-b, nothing else would ever close that one.
        cluster["node-b"].stop()
        let (host, port) = try PeerSecurityTests.listenAddress(cluster)
        let client = try TLSClient(host: host, port: port, as: "node-b", pki: cluster.pki)
        defer { client.stop() }
        // hello (node-b, this protocol version, token as node-a configures it), then 1 byte of a 16-byte frame.
        var hello: [UInt8] = [0x01] + shortString("node-b") + bigEndian(ClusterMessage.protocolVersion) + bigEndian(UInt64(1)) + [0x00, 0x00, 0x00, 0x01]
        hello += shortString("token") + shortString("counter") + shortString("lazy") + shortString("available") + [0x00]
        client.send(bigEndian(UInt32(hello.count)) + hello + bigEndian(UInt32(16)) + [0x03])
        // The dead time is 3 heartbeats (900 ms); 10 s is far beyond it.
        #expect(TestCluster.eventually(seconds: 10) { !client.isRunning }, "the link is still open; node-a's log ends: \(cluster["node-a"].log.suffix(1500))")
        let log = cluster["node-a"].log
        #expect(log.contains("peer stalled in the middle of a frame; closing that link"), "s_client said: \(client.output)\nnode-a's log ends: \(log.suffix(1500))")
        #expect(!log.contains("no hello within"), "hello was accepted, so only the stall can have closed the link")
        // One event, one line: the close that follows the stall is not reported again as a truncated frame.
        #expect(!log.contains("into a frame"), "\(log.split(separator: "\n").filter { $0.contains("peer=node-b") && !$0.contains(" debug ") })")
    }

    @Test("handshakes without a certificate, and HTTP requests, from anyone: a line per reason with the count, not one per connection; each at debug")
    func unauthenticatedRefusalsCounted() throws {
        let cluster = try TestCluster(2, expirables: counters())
        defer { cluster.remove() }
        let node = cluster["node-a"]
        let (host, port) = try PeerSecurityTests.listenAddress(cluster)
        // One after another, as fast as a shell loop goes: 60 TLS clients without a certificate, then 30 HTTP requests.
        let noCertificate = try runTool("sh", ["-c", "for i in $(seq 60); do openssl s_client -connect \(host):\(port) </dev/null >/dev/null 2>&1; done; true"], seconds: 60)
        #expect(noCertificate.status == 0, "\(noCertificate.stderr)")
        let http = try runTool("bash", ["-c", "for i in $(seq 30); do timeout 2 bash -c 'exec 3<>/dev/tcp/\(host)/\(port); printf \"GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n\" >&3; cat <&3 >/dev/null'; done; true"], seconds: 90)
        #expect(http.status == 0, "\(http.stderr)")

        func lines(_ reason: String, level: String) -> [Substring] {
            node.log.split(separator: "\n").filter { $0.contains(" \(level) ") && $0.contains("refused peer connection") && $0.contains(reason) }
        }
        /// The counts the warning lines about `reason` report, added up.
        func reported(_ reason: String) -> Int {
            lines(reason, level: "warning").reduce(0) { sum, line in
                guard let field = line.split(separator: " ").first(where: { $0.hasPrefix("refused=") }) else { return sum + 1 }
                return sum + (Int(field.dropFirst("refused=".count)) ?? 1)
            }
        }
        for reason in ["peer did not return a certificate", "http request"] {
            // Each refusal at debug; their count at warning, at most once every 10 s (a line is due within 10 s; the wait allows a loaded machine 30 s).
            let each = lines(reason, level: "debug").count
            #expect(each >= 10, "\(reason): \(each) debug lines; node-a's log ends: \(node.log.suffix(2000))")
            #expect(TestCluster.eventually(seconds: 30) { reported(reason) >= each }, "\(reason): \(each) refused, the warnings count \(reported(reason))")
            let warnings = lines(reason, level: "warning")
            // At most one line every 10 s: consecutive lines are 10 s apart (9 in the log's whole seconds). How
            // many lines that makes depends on how long the loops took, which on a loaded machine is over 20 s.
            let times = warnings.compactMap { ISO8601DateFormatter().date(from: String($0.prefix(while: { $0 != " " }))) }
            #expect(times.count == warnings.count, "every line starts with its time: \(warnings.prefix(3))")
            let gaps = zip(times.dropFirst(), times).map { $0.timeIntervalSince($1) }
            #expect(gaps.allSatisfy { $0 >= 9 }, "\(reason): \(warnings.count) warning lines for \(each) refusals, \(gaps) s apart: \(warnings.prefix(4))")
            #expect(warnings.allSatisfy { $0.contains("from=127.0.0.1") }, "\(warnings)")
        }
        #expect(cluster.live("node-a") == Set(cluster.names), "the real peer is still linked")
    }

    @Test("a verified peer that says hello as another node, or in another protocol version, is refused, not a malformed frame; redialing, it is logged once, then counted")
    func helloRefused() throws {
        let cluster = try TestCluster(2, expirables: counters())
        defer { cluster.remove() }
        let (host, port) = try PeerSecurityTests.listenAddress(cluster)
        func hello(node: String, version: UInt16) -> [UInt8] {
            // This protocol's hello has the daemon's incarnation next; another version's is refused by its number.
            let incarnation = version == ClusterMessage.protocolVersion ? bigEndian(UInt64(1)) : []
            let frame: [UInt8] = [0x01] + shortString(node) + bigEndian(version) + incarnation + [0x00, 0x00, 0x00, 0x00]
            return bigEndian(UInt32(frame.count)) + frame
        }
        // A node with node-b's certificate, set up wrong, dials again and again.
        let attempts = [hello(node: "node-x", version: ClusterMessage.protocolVersion)] + Array(repeating: hello(node: "node-b", version: 7), count: 15)
        for bytes in attempts {
            let client = try TLSClient(host: host, port: port, as: "node-b", pki: cluster.pki)
            defer { client.stop() }
            client.send(bytes)
            #expect(TestCluster.eventually(seconds: 10) { !client.isRunning }, "the connection is still open; node-a's log ends: \(cluster["node-a"].log.suffix(1500))")
        }
        let log = cluster["node-a"].log.split(separator: "\n")
        #expect(!log.contains { $0.contains("malformed frame") }, "\(log.filter { $0.contains("malformed frame") })")
        let refusals = log.filter { $0.contains("refused peer connection") && $0.contains("peer=node-b") }
        #expect(refusals.contains { $0.contains(" warning ") && $0.contains("reason=hello says node-x, but the certificate was verified for node-b") }, "\(refusals)")
        #expect(refusals.filter { $0.contains("reason=cluster protocol 7, this node speaks \(ClusterMessage.protocolVersion)") }.count == 15, "each at debug at least: \(refusals)")
        #expect(refusals.filter { $0.contains(" warning ") }.count == 1, "one line, then at most one a minute: \(refusals)")
        #expect(cluster.live("node-a") == Set(cluster.names), "the real node-b is still linked")
    }
}

private func shortString(_ text: String) -> [UInt8] {
    bigEndian(UInt16(text.utf8.count)) + Array(text.utf8)
}

private func bigEndian<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
    withUnsafeBytes(of: value.bigEndian) { Array($0) }
}

/// GET `name` on the daemon's Unix socket; the whole reply, or nil if none arrived within `seconds`.
private func getWithin(seconds: Int, socket path: String, name: String) -> String? {
    guard let connection = try? RawConnection(path) else { return nil }
    var timeout = timeval(tv_sec: seconds, tv_usec: 0)
    setsockopt(connection.fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    let reply = connection.roundTrip("*2\r\n$3\r\nGET\r\n$\(name.utf8.count)\r\n\(name)\r\n", expecting: 1)
    return reply.isEmpty ? nil : reply
}

/// `count` plain TCP connections to `host`:`port` that never send a byte: non-blocking connects, so the ones the
/// listener's backlog cannot take yet do not hold up the test. `close()` closes them all.
private final class TCPConnections {
    private var fds: [Int32] = []

    init(host: String, port: UInt16, count: Int) throws {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        guard inet_pton(AF_INET, host, &address.sin_addr) == 1 else { throw TestSupportError("\(host) is not an IPv4 address") }
        for _ in 0..<count {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else {
                close()
                throw TestSupportError("socket: \(String(cString: strerror(errno)))")
            }
            fds.append(fd)
            let result = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard result == 0 || errno == EINPROGRESS else {
                close()
                throw TestSupportError("connect \(host):\(port): \(String(cString: strerror(errno)))")
            }
        }
    }

    func close() {
        for fd in fds { Glibc.close(fd) }
        fds = []
    }
}

/// `openssl s_client` with `name`'s certificate from `pki`, its stdin a socket the test writes to and keeps open,
/// so the client says exactly what it is told and then waits. `stop()` ends it by PID.
private final class TLSClient {
    private let process: Spawned
    private var input: Int32
    private let logPath: String

    init(host: String, port: String, as name: String, pki: TemporaryDirectory) throws {
        logPath = pki.appending("s_client-\(UUID().uuidString.prefix(8)).log")
        var fds: [Int32] = [-1, -1]
        // A socket rather than a pipe: writing to it after the client is gone fails instead of raising SIGPIPE.
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0 else {
            throw TestSupportError("socketpair: \(String(cString: strerror(errno)))")
        }
        do {
            process = try Spawned(["openssl", "s_client", "-quiet", "-connect", "\(host):\(port)", "-cert", pki.appending("\(name).pem"),
                                   "-key", pki.appending("\(name).key"), "-CAfile", pki.appending("ca.pem"), "-verify_return_error"],
                                  stdin: fds[0], stdout: .file(logPath), stderr: .file(logPath))
        } catch {
            Glibc.close(fds[0])
            Glibc.close(fds[1])
            throw error
        }
        Glibc.close(fds[0])
        input = fds[1]
    }

    var isRunning: Bool { process.isRunning }

    /// What the client printed, for failure messages.
    var output: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    func send(_ bytes: [UInt8]) {
        _ = bytes.withUnsafeBytes { Glibc.send(input, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    func stop() {
        // SIGKILL: the child inherits the test runner's signal mask, in which SIGTERM is blocked.
        if process.isRunning { kill(process.pid, SIGKILL) }
        process.wait()
        if input >= 0 { Glibc.close(input) }
        input = -1
    }
}
