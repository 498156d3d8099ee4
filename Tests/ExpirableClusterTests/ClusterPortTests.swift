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
        var hello: [UInt8] = [0x01] + shortString("node-b") + bigEndian(ClusterMessage.protocolVersion) + [0x00, 0x00, 0x00, 0x01]
        hello += shortString("token") + shortString("counter") + shortString("lazy")
        client.send(bigEndian(UInt32(hello.count)) + hello + bigEndian(UInt32(16)) + [0x03])
        // The dead time is 3 heartbeats (900 ms); 10 s is far beyond it.
        #expect(TestCluster.eventually(seconds: 10) { !client.isRunning }, "the link is still open; node-a's log ends: \(cluster["node-a"].log.suffix(1500))")
        let log = cluster["node-a"].log
        #expect(log.contains("peer stalled in the middle of a frame; closing that link"), "s_client said: \(client.output)\nnode-a's log ends: \(log.suffix(1500))")
        #expect(!log.contains("no hello within"), "hello was accepted, so only the stall can have closed the link")
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
