import NIOCore

/// Fired inbound once the handshake has succeeded and the peer's certificate names an acceptable node.
public struct TLSPeerVerified: Sendable, Hashable {
    /// The node the peer's certificate names.
    public let node: String
    /// The negotiated protocol, such as "TLSv1.3".
    public let protocolVersion: String

    public init(node: String, protocolVersion: String) {
        self.node = node
        self.protocolVersion = protocolVersion
    }
}

/// Which side of the handshake this is, and whom the peer's certificate must name.
public enum TLSRole: Sendable {
    /// We dialed `expectedPeer`: its certificate must name it (CN or a DNS subjectAltName).
    case client(expectedPeer: String)
    /// We accepted: the certificate must name exactly one of `allowedPeers`, which becomes the peer's identity.
    /// A client whose certificate the CA verified but that names none of them is sent `refusal` (plaintext, such
    /// as a frame saying why) before the connection is closed, so it can show why it was refused.
    case server(allowedPeers: Set<String>, refusal: ByteBuffer? = nil)
}

/// TLS on a NIO channel through OpenSSL memory BIOs, as a small state machine:
/// `idle → handshaking → active → closing → closed`. Plaintext written before the handshake completes is held
/// until it does. Any failure (handshake, certificate, identity, record) is fired as a `TLSError` and closes
/// the channel; nothing is ever sent in the clear.
public final class TLSHandler: ChannelDuplexHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer
    public typealias OutboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    private enum State {
        case idle, handshaking, active, closing, closed
    }

    private var state = State.idle
    private let connection: TLSConnection
    private let role: TLSRole
    private let handshakeTimeout: TimeAmount?
    private var pendingWrites: [(ByteBuffer, EventLoopPromise<Void>?)] = []
    private var handshakeDeadline: Scheduled<Void>?

    /// `handshakeTimeout` bounds the handshake from the moment the channel is active; nil leaves the bound to a
    /// handler further on that knows more (the cluster bounds TLS and its hello frame together).
    public init(context: TLSContext, role: TLSRole, handshakeTimeout: TimeAmount? = .seconds(10)) throws(TLSError) {
        if case .server = role {
            connection = try TLSConnection(context: context, isServer: true)
        } else {
            connection = try TLSConnection(context: context, isServer: false)
        }
        self.role = role
        self.handshakeTimeout = handshakeTimeout
    }

    public func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { start(context: context) }
    }

    public func channelActive(context: ChannelHandlerContext) {
        start(context: context)
        context.fireChannelActive()
    }

    public func channelInactive(context: ChannelHandlerContext) {
        state = .closed
        handshakeDeadline?.cancel()
        failPendingWrites(TLSError("the connection closed"))
        context.fireChannelInactive()
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        connection.receive(unwrapInboundIn(data))
        switch state {
        case .handshaking: advanceHandshake(context: context)
        case .active, .closing: readPlaintext(context: context)
        case .idle, .closed: break
        }
    }

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let plaintext = unwrapOutboundIn(data)
        switch state {
        case .idle, .handshaking:
            pendingWrites.append((plaintext, promise))
        case .active:
            if let error = connection.write(plaintext) {
                promise?.fail(error)
                fail(context: context, error)
                return
            }
            sendOutput(context: context, promise: promise, flush: false)
        case .closing, .closed:
            promise?.fail(TLSError("the TLS session is closed"))
        }
    }

    public func flush(context: ChannelHandlerContext) {
        if state == .active { context.flush() }
    }

    public func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        if state == .active {
            state = .closing
            connection.shutdown()
            sendOutput(context: context, promise: nil, flush: true)
        }
        state = .closed
        context.close(mode: mode, promise: promise)
    }

    // MARK: Handshake

    private func start(context: ChannelHandlerContext) {
        guard state == .idle else { return }
        state = .handshaking
        if let handshakeTimeout {
            let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            handshakeDeadline = context.eventLoop.scheduleTask(in: handshakeTimeout) {
                let (handler, context) = loopBound.value
                guard handler.state == .handshaking else { return }
                handler.fail(context: context, TLSError("no TLS handshake within \(handshakeTimeout.nanoseconds / 1_000_000) ms"))
            }
        }
        advanceHandshake(context: context)
    }

    private func advanceHandshake(context: ChannelHandlerContext) {
        switch connection.handshake() {
        case .wantsInput:
            sendOutput(context: context, promise: nil, flush: true)
        case .failed(let error):
            sendOutput(context: context, promise: nil, flush: true)  // the alert, so the peer learns why
            fail(context: context, error)
        case .done:
            handshakeDeadline?.cancel()
            sendOutput(context: context, promise: nil, flush: true)
            let names = connection.peerNames()
            let identity: String
            switch role {
            case .client(let expected):
                guard names.contains(expected) else {
                    return fail(context: context, TLSError("the certificate of the peer dialed as \(expected) names \(names.isEmpty ? "nothing" : names.joined(separator: ", ")), not \(expected)"))
                }
                identity = expected
            case .server(let allowed, let refusal):
                let matches = Set(names).intersection(allowed)
                guard matches.count == 1, let node = matches.first else {
                    // Sent inside the session just made: the client verified this node, so it can trust the words.
                    if let refusal, connection.write(refusal) == nil { sendOutput(context: context, promise: nil, flush: true) }
                    return fail(context: context, TLSError("the client certificate names \(names.isEmpty ? "nothing" : names.joined(separator: ", ")), \(matches.isEmpty ? "none" : "more than one") of which is a configured peer"))
                }
                identity = node
            }
            state = .active
            context.fireUserInboundEventTriggered(TLSPeerVerified(node: identity, protocolVersion: connection.protocolVersion))
            let writes = pendingWrites
            pendingWrites = []
            for (plaintext, promise) in writes { write(context: context, data: wrapOutboundOut(plaintext), promise: promise) }
            context.flush()
            readPlaintext(context: context)
        }
    }

    // MARK: Records

    private func readPlaintext(context: ChannelHandlerContext) {
        var delivered = false
        loop: while state == .active || state == .closing {
            switch connection.read(allocator: context.channel.allocator) {
            case .data(let plaintext):
                delivered = true
                context.fireChannelRead(wrapInboundOut(plaintext))
            case .wantsInput:
                break loop
            case .closed:
                context.close(promise: nil)
                break loop
            case .failed(let error):
                fail(context: context, error)
                break loop
            }
        }
        if delivered { context.fireChannelReadComplete() }
        sendOutput(context: context, promise: nil, flush: true)
    }

    private func sendOutput(context: ChannelHandlerContext, promise: EventLoopPromise<Void>?, flush: Bool) {
        if let ciphertext = connection.takeOutput(allocator: context.channel.allocator) {
            context.write(wrapOutboundOut(ciphertext), promise: promise)
        } else {
            promise?.succeed()
        }
        if flush { context.flush() }
    }

    private func fail(context: ChannelHandlerContext, _ error: TLSError) {
        guard state != .closed else { return }
        state = .closed
        handshakeDeadline?.cancel()
        failPendingWrites(error)
        context.fireErrorCaught(error)
        context.close(promise: nil)
    }

    private func failPendingWrites(_ error: TLSError) {
        let writes = pendingWrites
        pendingWrites = []
        for (_, promise) in writes { promise?.fail(error) }
    }
}
