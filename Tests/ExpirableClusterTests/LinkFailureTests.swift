@testable import ExpirableCluster
import ExpirableTestSupport
import NIOCore
import NIOPosix
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("Cluster link failures in words")
struct LinkFailureTests {
    @Test("a refused connection says that nothing listens there, not NIO's error dump")
    func refused() async throws {
        // A port bound but not listening: connects to it are refused, and no other test can take it meanwhile
        // (a port closed and left free could be bound again by a busy suite).
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 } }
        try #require(bound, "cannot bind a loopback port")
        let port = Int(UInt16(bigEndian: address.sin_port))
        do {
            _ = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton).connect(host: "127.0.0.1", port: port).get()
            Issue.record("connected to a closed port")
        } catch {
            let words = LinkFailure.dialing("127.0.0.1:\(port)", error)
            #expect(words == "127.0.0.1:\(port) refused the connection: no expirabled listens there (stopped, or its cluster.listen is another port)")
        }
    }

    @Test("a connect timeout, a reset and a closed link are said in words")
    func otherFailures() {
        #expect(LinkFailure.dialing("10.0.0.9:7400", ChannelError.connectTimeout(.milliseconds(600)))
            == "no answer from 10.0.0.9:7400 within 600ms: the host is down, or a firewall drops the connection")
        #expect(LinkFailure.link(IOError(errnoCode: ECONNRESET, reason: "read(descriptor:pointer:size:)")) == "the peer reset the connection")
        #expect(LinkFailure.link(ChannelError.eof) == "the link closed")
    }

    @Test("expirablectl cluster notes a stopped peer's failure in words")
    func stoppedPeerInTheTable() throws {
        let cluster = try TestCluster(expirables: counters())
        defer { cluster.remove() }
        cluster["node-c"].stop()
        var table = ""
        #expect(try TestCluster.eventually {
            table = try cluster["node-a"].ctl("cluster").stdout
            return table.contains("refused the connection: no expirabled listens there")
        }, "\(table)")
        #expect(!table.contains("NIOConnectionError") && !table.contains("errno"), "\(table)")
    }
}
