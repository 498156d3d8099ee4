import ExpirableCore
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix

/// Serves `GET /metrics` over HTTP/1.1 (NIO's codec) on an event loop of its own, so scrapes never run on the
/// loops that serve the socket. Anything else gets 404 (another path) or 405 (another method).
public final class MetricsServer: Service, Sendable {
    private let host: String
    private let port: Int
    private let collector: MetricsCollector
    private let logger: Logger
    private let group: MultiThreadedEventLoopGroup
    /// Called with the bound address once listening (the port, when 0 was asked for).
    private let onListening: (@Sendable (SocketAddress) -> Void)?

    public init(host: String, port: Int, collector: MetricsCollector, logger: Logger, onListening: (@Sendable (SocketAddress) -> Void)? = nil) {
        self.host = host
        self.port = port
        self.collector = collector
        self.logger = logger
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        self.onListening = onListening
    }

    public func run() async throws {
        let collector = collector
        let channel: any Channel
        do {
            channel = try await ServerBootstrap(group: group)
                .serverChannelOption(.backlog, value: 64)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                        try channel.pipeline.syncOperations.addHandler(MetricsHandler(collector: collector))
                    }
                }
                .bind(host: host, port: port).get()
        } catch {
            try? await group.shutdownGracefully()
            throw MetricsError("[metrics] listen: cannot listen on \(host):\(port): \(error); choose a free port or another address")
        }
        let address = channel.localAddress
        logger.notice("metrics listening", metadata: ["address": "\(address.map { "\($0)" } ?? "\(host):\(port)")", "path": "/metrics"])
        if let address { onListening?(address) }
        await withGracefulShutdownHandler {
            try? await channel.closeFuture.get()
        } onGracefulShutdown: {
            channel.close(promise: nil)
        }
        try? await group.shutdownGracefully()
    }
}

/// Why the metrics endpoint could not start.
public struct MetricsError: Error, Sendable, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// One HTTP connection: answers each request once its end has arrived.
final class MetricsHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let collector: MetricsCollector
    private var request: HTTPRequestHead?

    init(collector: MetricsCollector) {
        self.collector = collector
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head): request = head
        case .body: break
        case .end:
            guard let head = request else { return }
            request = nil
            respond(to: head, context: context)
        }
    }

    private func respond(to head: HTTPRequestHead, context: ChannelHandlerContext) {
        let path = head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? head.uri
        var status = HTTPResponseStatus.ok
        var body: [UInt8]
        var type = "text/plain; version=0.0.4; charset=utf-8"
        if path != "/metrics" {
            status = .notFound
            body = Array("not found: the metrics are at /metrics\n".utf8)
            type = "text/plain; charset=utf-8"
        } else if head.method != .GET && head.method != .HEAD {
            status = .methodNotAllowed
            body = Array("only GET /metrics\n".utf8)
            type = "text/plain; charset=utf-8"
        } else {
            body = collector.scrape()
        }
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: type)
        headers.add(name: "Content-Length", value: String(body.count))
        if status == .methodNotAllowed { headers.add(name: "Allow", value: "GET, HEAD") }
        let keepAlive = head.isKeepAlive
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))), promise: nil)
        if head.method != .HEAD {
            var buffer = context.channel.allocator.buffer(capacity: body.count)
            buffer.writeBytes(body)
            context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        }
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !keepAlive {
            let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
            done.whenComplete { _ in loopBound.value.close(promise: nil) }
        }
    }
}
