@testable import ExpirableCluster
import ExpirableTestSupport
import NIOCore
import NIOPosix
import Testing

@Suite("Cluster link failures in words")
struct LinkFailureTests {
    @Test("a refused connection says that nothing listens there, not NIO's error dump")
    func refused() async throws {
        // A port that was just free: bound by nobody once this channel is closed.
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(host: "127.0.0.1", port: 0).get()
        let port = try #require(server.localAddress?.port)
        try await server.close()
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
