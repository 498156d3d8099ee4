import ExpirableTestSupport
import ExpirableTLS
import Foundation
import NIOCore
import NIOPosix
import Synchronization
import Testing

/// Real TLS between real sockets on 127.0.0.1, with certificates made by `Certificates`.
@Suite("Mutual TLS")
struct TLSTests {
    /// A CA with certificates for node-a and node-b, and what the tests need beyond them.
    final class PKI: Sendable {
        let directory: TemporaryDirectory
        init() throws {
            directory = try TemporaryDirectory("expirable-tls")
            try Certificates.makeAuthority(name: "test CA", days: 30, certificatePath: path("ca.pem"), keyPath: path("ca.key"))
            for name in ["node-a", "node-b"] { try node(name) }
        }
        func path(_ name: String) -> String { directory.appending(name) }
        func node(_ name: String, ca: String = "ca", notBeforeDays: Int = 0, days: Int = 30, as file: String? = nil) throws {
            try Certificates.makeNode(name, authorityCertificatePath: path("\(ca).pem"), authorityKeyPath: path("\(ca).key"), days: days,
                                      notBeforeDays: notBeforeDays, certificatePath: path("\(file ?? name).pem"), keyPath: path("\(file ?? name).key"))
        }
        func context(_ file: String, ca: String = "ca") throws -> TLSContext {
            try TLSContext(caPath: path("\(ca).pem"), certificatePath: path("\(file).pem"), keyPath: path("\(file).key"))
        }
    }

    /// Records what a handler chain saw: the verified peer, plaintext received, errors.
    final class Recorder: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        let peer = Mutex<TLSPeerVerified?>(nil)
        let received = Mutex<String>("")
        let errors = Mutex<[String]>([])
        let echo: Bool
        init(echo: Bool) { self.echo = echo }

        func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
            if let verified = event as? TLSPeerVerified { peer.withLock { $0 = verified } }
        }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let bytes = unwrapInboundIn(data)
            received.withLock { $0 += String(buffer: bytes) }
            if echo { context.writeAndFlush(data, promise: nil) }
        }
        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            errors.withLock { $0.append("\(error)") }
        }
    }

    /// A TLS server on 127.0.0.1 accepting `allowed` peers; returns its channel and recorder.
    static func server(_ context: TLSContext, allowed: Set<String>) async throws -> (any Channel, Recorder) {
        let recorder = Recorder(echo: true)
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(TLSHandler(context: context, role: .server(allowedPeers: allowed), handshakeTimeout: .seconds(2)))
                    try channel.pipeline.syncOperations.addHandler(recorder)
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        return (channel, recorder)
    }

    static func client(_ context: TLSContext, expecting peer: String, port: Int) async throws -> (any Channel, Recorder) {
        let recorder = Recorder(echo: false)
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(TLSHandler(context: context, role: .client(expectedPeer: peer)))
                    try channel.pipeline.syncOperations.addHandler(recorder)
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
        return (channel, recorder)
    }

    /// The port a server channel listens on (its address is cached right after the bind; under load, a moment
    /// after the bind's future completes).
    static func port(of server: any Channel) async throws -> Int {
        for _ in 0..<100 {
            if let port = server.localAddress?.port { return port }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw TestSupportError("the test server has no local port")
    }

    /// A plain TCP connection to the test server, retried for up to a second while the machine is busy.
    static func connect(port: Int) async throws -> any Channel {
        for _ in 0..<50 {
            if let channel = try? await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton).connect(host: "127.0.0.1", port: port).get() {
                return channel
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        return try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton).connect(host: "127.0.0.1", port: port).get()
    }

    /// Waits (at most 5 s) for `condition`.
    static func eventually(_ condition: () -> Bool) async throws {
        for _ in 0..<250 where !condition() { try await Task.sleep(for: .milliseconds(20)) }
    }

    @Test("peers with certificates from the cluster CA authenticate each other over TLS 1.3 and exchange data")
    func mutualAuthentication() async throws {
        let pki = try PKI()
        defer { pki.directory.remove() }
        let (server, serverSide) = try await Self.server(pki.context("node-a"), allowed: ["node-b"])
        defer { server.close(promise: nil) }
        let (client, clientSide) = try await Self.client(pki.context("node-b"), expecting: "node-a", port: try Self.port(of: server))
        defer { client.close(promise: nil) }
        // Written before the handshake completes: held, then sent encrypted.
        try await client.writeAndFlush(ByteBuffer(string: "hello from node-b")).get()
        try await Self.eventually { clientSide.received.withLock { $0 } == "hello from node-b" }
        #expect(clientSide.received.withLock { $0 } == "hello from node-b")
        #expect(serverSide.received.withLock { $0 } == "hello from node-b")
        #expect(clientSide.peer.withLock { $0 } == TLSPeerVerified(node: "node-a", protocolVersion: "TLSv1.3"))
        #expect(serverSide.peer.withLock { $0?.node } == "node-b")
    }

    @Test("a certificate from another CA is refused, and the reason is reported")
    func otherAuthority() async throws {
        let pki = try PKI()
        defer { pki.directory.remove() }
        try Certificates.makeAuthority(name: "rogue CA", days: 30, certificatePath: pki.path("rogue.pem"), keyPath: pki.path("rogue.key"))
        try pki.node("node-b", ca: "rogue", as: "rogue-b")
        let (server, serverSide) = try await Self.server(pki.context("node-a"), allowed: ["node-b"])
        defer { server.close(promise: nil) }
        // The client trusts the cluster CA, but presents a certificate for node-b signed by another CA.
        let (client, clientSide) = try await Self.client(pki.context("rogue-b", ca: "ca"), expecting: "node-a", port: try Self.port(of: server))
        client.writeAndFlush(ByteBuffer(string: "secret"), promise: nil)
        try await client.closeFuture.get()
        try await Self.eventually { !serverSide.errors.withLock { $0 }.isEmpty }
        let error = serverSide.errors.withLock { $0 }.first ?? ""
        #expect(error.contains("certificate verification: unable to get local issuer certificate"), "\(error)")
        #expect(serverSide.received.withLock { $0 }.isEmpty)
        #expect(serverSide.peer.withLock { $0 } == nil)
        // In TLS 1.3 the client finishes before the server has checked its certificate; the server's refusal
        // then closes the connection (awaited above) and nothing the client sent is delivered.
        #expect(clientSide.received.withLock { $0 }.isEmpty)
    }

    @Test("a certificate naming another node is refused on both sides")
    func wrongName() async throws {
        let pki = try PKI()
        defer { pki.directory.remove() }
        try pki.node("node-x")
        // The server presents node-x's certificate while the client dialed node-a.
        let (server, _) = try await Self.server(pki.context("node-x"), allowed: ["node-b"])
        defer { server.close(promise: nil) }
        let (client, clientSide) = try await Self.client(pki.context("node-b"), expecting: "node-a", port: try Self.port(of: server))
        try await client.closeFuture.get()
        #expect(clientSide.errors.withLock { $0 } == ["the certificate of the peer dialed as node-a names node-x, not node-a"])
        // A client whose certificate names no configured peer.
        let (server2, serverSide2) = try await Self.server(pki.context("node-a"), allowed: ["node-b"])
        defer { server2.close(promise: nil) }
        let (client2, _) = try await Self.client(pki.context("node-x"), expecting: "node-a", port: try Self.port(of: server2))
        client2.writeAndFlush(ByteBuffer(string: "hi"), promise: nil)
        try await Self.eventually { !serverSide2.errors.withLock { $0 }.isEmpty }
        #expect(serverSide2.errors.withLock { $0 } == ["the client certificate names node-x, none of which is a configured peer"])
        #expect(serverSide2.received.withLock { $0 }.isEmpty)
    }

    @Test("an expired certificate is refused")
    func expired() async throws {
        let pki = try PKI()
        defer { pki.directory.remove() }
        try pki.node("node-b", notBeforeDays: -10, days: 5, as: "expired-b")
        let (server, serverSide) = try await Self.server(pki.context("node-a"), allowed: ["node-b"])
        defer { server.close(promise: nil) }
        let (client, _) = try await Self.client(pki.context("expired-b"), expecting: "node-a", port: try Self.port(of: server))
        try await client.closeFuture.get()
        try await Self.eventually { !serverSide.errors.withLock { $0 }.isEmpty }
        #expect(serverSide.errors.withLock { $0 }.first?.contains("certificate verification: certificate has expired") == true)
    }

    @Test("a plaintext client and garbage bytes are refused without a handshake")
    func plaintext() async throws {
        let pki = try PKI()
        defer { pki.directory.remove() }
        let (server, serverSide) = try await Self.server(pki.context("node-a"), allowed: ["node-b"])
        defer { server.close(promise: nil) }
        let port = try await Self.port(of: server)
        for payload in ["PING\r\n", String(repeating: "\u{7}garbage", count: 100)] {
            let raw = try await Self.connect(port: port)
            // The server may close before all of it is written: that is the refusal this test wants.
            try? await raw.writeAndFlush(ByteBuffer(string: payload)).get()
            try await raw.closeFuture.get()
        }
        try await Self.eventually { serverSide.errors.withLock { $0 }.count == 2 }
        #expect(serverSide.errors.withLock { $0 }.count == 2)
        // Refused either by the handshake failing on the bytes, or (on a loaded machine) by its deadline.
        let errors = serverSide.errors.withLock { $0 }
        #expect(errors.allSatisfy { $0.hasPrefix("TLS handshake failed") || $0.hasPrefix("no TLS handshake within") }, "\(errors)")
        #expect(serverSide.received.withLock { $0 }.isEmpty)
    }

    @Test("certificates name the node in the CN and a DNS subjectAltName; keys are written 0600")
    func certificateFiles() throws {
        let pki = try PKI()
        defer { pki.directory.remove() }
        // The name is in both places, and listed once.
        let fields = try runTool("openssl", ["x509", "-noout", "-subject", "-ext", "subjectAltName", "-in", pki.path("node-a.pem")]).stdout
        #expect(fields.contains("CN = node-a") && fields.contains("DNS:node-a"), "\(fields)")
        #expect(try Certificates.names(inCertificateAt: pki.path("node-a.pem")) == ["node-a"])
        let keyMode = try FileManager.default.attributesOfItem(atPath: pki.path("node-a.key"))[.posixPermissions] as? Int
        #expect(keyMode == 0o600)
        #expect(try FileManager.default.attributesOfItem(atPath: pki.path("ca.key"))[.posixPermissions] as? Int == 0o600)
        #expect(throws: TLSError.self) { try pki.node("node-a") }
        let result = try runTool("openssl", ["verify", "-CAfile", pki.path("ca.pem"), pki.path("node-a.pem")])
        #expect(result.stdout.hasSuffix(": OK\n"))
    }

    @Test("§4.15: certificates are valid from an hour before they are made, so a node whose clock is minutes behind accepts them")
    func validFromAnHourBefore() throws {
        let pki = try PKI()
        defer { pki.directory.remove() }
        let now = Int(Date().timeIntervalSince1970)
        // As a node whose clock is 5 and 55 minutes behind sees them: both the CA and the node certificate are valid.
        for behind in [5 * 60, 55 * 60] {
            let result = try runTool("openssl", ["verify", "-attime", "\(now - behind)", "-CAfile", pki.path("ca.pem"), pki.path("node-a.pem")])
            #expect(result.stdout.hasSuffix(": OK\n"), "\(behind / 60) minutes behind: \(result.stdout) \(result.stderr)")
        }
        let tooEarly = try runTool("openssl", ["verify", "-attime", "\(now - 65 * 60)", "-CAfile", pki.path("ca.pem"), pki.path("node-a.pem")])
        #expect(tooEarly.stderr.contains("not yet valid") || tooEarly.stdout.contains("not yet valid"), "\(tooEarly.stdout) \(tooEarly.stderr)")
    }
}
