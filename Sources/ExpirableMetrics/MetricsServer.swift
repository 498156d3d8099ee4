import ExpirableCore
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Serves `GET /metrics` over HTTP/1.1 (NIO's codec) on an event loop of its own, so scrapes never run on the
/// loops that serve the socket. Anything else gets 404 (another path) or 405 (another method). Whatever its
/// clients do, the endpoint holds at most `maxConnections` connections, each for a bounded time, so it can never
/// take the descriptors the socket needs.
public final class MetricsServer: Service, Sendable {
    /// The most connections served at once; past it a new one is closed as soon as it is accepted.
    public static let defaultMaxConnections = 16
    /// How long a connection has to send a whole request, from its opening or from the previous answer: past it
    /// the connection is closed, whether the request is half sent or the connection idle.
    public static let defaultRequestTimeout: TimeAmount = .seconds(10)

    private let host: String
    private let port: Int
    private let collector: MetricsCollector
    private let logger: Logger
    private let maxConnections: Int
    private let requestTimeout: TimeAmount
    private let group: MultiThreadedEventLoopGroup
    /// Called with the bound address once listening (the port, when 0 was asked for).
    private let onListening: (@Sendable (SocketAddress) -> Void)?

    public init(host: String, port: Int, collector: MetricsCollector, logger: Logger,
                maxConnections: Int = MetricsServer.defaultMaxConnections, requestTimeout: TimeAmount = MetricsServer.defaultRequestTimeout,
                onListening: (@Sendable (SocketAddress) -> Void)? = nil) {
        self.host = host
        self.port = port
        self.collector = collector
        self.logger = logger
        self.maxConnections = maxConnections
        self.requestTimeout = requestTimeout
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        self.onListening = onListening
    }

    /// The listening channel once `bind()` has made it.
    private let bound = Mutex<(any Channel)?>(nil)

    /// Listens, without serving yet: a daemon binds its endpoint before it says it is ready, so a port taken is
    /// an error at start, before any READY=1. `run()` binds if this was not called.
    public func bind() async throws {
        if bound.withLock({ $0 }) != nil { return }
        let channel = try await listen()
        bound.withLock { $0 = channel }
    }

    private func listen() async throws -> any Channel {
        let collector = collector
        let logger = logger
        let maxConnections = maxConnections
        let requestTimeout = requestTimeout
        let channel: any Channel
        do {
            channel = try await ServerBootstrap(group: group)
                .serverChannelOption(.backlog, value: 64)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .serverChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        // Out of descriptors, accept fails: wait a second rather than retry at once.
                        try channel.pipeline.syncOperations.addHandler(AcceptBackoffHandler())
                        try channel.pipeline.syncOperations.addHandler(MetricsConnectionLimit(limit: maxConnections, logger: logger))
                    }
                }
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                        try channel.pipeline.syncOperations.addHandler(MetricsHandler(collector: collector, requestTimeout: requestTimeout))
                    }
                }
                .bind(host: host, port: port).get()
        } catch {
            try? await group.shutdownGracefully()
            throw MetricsError("[metrics] listen: cannot listen on \(host):\(port): \(MetricsServer.reason(error)); choose a free port or another address")
        }
        return channel
    }

    /// An error of binding in words: the system's for an IOError ("Address already in use"), not NIO's call.
    static func reason(_ error: any Error) -> String {
        if let io = error as? IOError { return String(cString: strerror(io.errnoCode)) }
        return "\(error)"
    }

    public func run() async throws {
        try await bind()
        guard let channel = bound.withLock({ $0 }) else { return }
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

/// On the listening channel, before NIO's accept handler: counts the connections open and closes a new one
/// beyond `limit` before anything is read from it. Confined to the endpoint's one event loop.
final class MetricsConnectionLimit: ChannelInboundHandler {
    typealias InboundIn = any Channel
    typealias InboundOut = any Channel

    /// How often refusals are logged at most: a flood of connections must not become a flood of log lines.
    static let warningInterval: TimeAmount = .seconds(60)

    private let limit: Int
    private let logger: Logger
    private var open = 0
    private var lastWarning: NIODeadline?

    init(limit: Int, logger: Logger) {
        self.limit = limit
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let connection = unwrapInboundIn(data)
        guard open < limit else {
            connection.close(promise: nil)
            let now = NIODeadline.now()
            if lastWarning.map({ now - $0 >= Self.warningInterval }) ?? true {
                lastWarning = now
                logger.warning("metrics connection refused: \(limit) are open, the most served at once; a scraper should not hold more", metadata: ["limit": "\(limit)"])
            }
            return
        }
        open += 1
        let limiter = NIOLoopBound(self, eventLoop: context.eventLoop)
        connection.closeFuture.hop(to: context.eventLoop).whenComplete { _ in limiter.value.open -= 1 }
        context.fireChannelRead(data)
    }
}

/// One HTTP connection: answers each request once its end has arrived. A request must arrive whole within
/// `requestTimeout` of the connection's opening or of the previous answer, or the connection is closed (a
/// half-sent request, an idle keep-alive connection, a client that reads no answers); a request the codec
/// refuses closes it after the 400 `HTTPServerProtocolErrorHandler` sends.
final class MetricsHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let collector: MetricsCollector
    private let requestTimeout: TimeAmount
    private var request: HTTPRequestHead?
    private var deadline: Scheduled<Void>?

    init(collector: MetricsCollector, requestTimeout: TimeAmount) {
        self.collector = collector
        self.requestTimeout = requestTimeout
    }

    func channelActive(context: ChannelHandlerContext) {
        awaitRequest(context: context)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A request the codec cannot parse has been answered 400 with Connection: close; any other error (a
        // reset) leaves nothing to answer either.
        context.close(promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head): request = head
        case .body: break
        case .end:
            guard let head = request else { return }
            request = nil
            deadline?.cancel()
            respond(to: head, context: context)
            awaitRequest(context: context)
        }
    }

    /// Closes the connection unless a whole request arrives within `requestTimeout`.
    private func awaitRequest(context: ChannelHandlerContext) {
        deadline?.cancel()
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        deadline = context.eventLoop.scheduleTask(in: requestTimeout) { loopBound.value.close(promise: nil) }
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
