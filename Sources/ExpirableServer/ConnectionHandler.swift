import ExpirableCore
import ExpirableRESP
import Logging
import NIOCore
import NIOExtras

/// One client connection: parses pipelined RESP requests and answers them in order. A GET or FETCH of a valid
/// value is answered inline on the event loop; a miss waits for the engine, and requests behind it wait their
/// turn (kept unparsed, up to the request size limit). Malformed or oversized input gets an error and the
/// connection is closed.
final class ConnectionHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    // The handler lives on one event loop and no method reaches a property while another access to it is under
    // way, so Swift's run-time exclusivity checks (about 5 % of the event loop's time under pipelined GETs) are
    // switched off for these properties.
    private let state: ServerState
    private let parser: RESPParser
    @exclusivity(unchecked) private var inbound: ByteBuffer?
    @exclusivity(unchecked) private var outbound: ByteBuffer?
    /// A reply is owed for a request that waits on a plugin; later requests wait behind it.
    @exclusivity(unchecked) private var waiting = false
    @exclusivity(unchecked) private var readPending = false
    @exclusivity(unchecked) private var quiescing = false
    @exclusivity(unchecked) private var closed = false
    @exclusivity(unchecked) private var peer: PeerCredentials?

    init(state: ServerState) {
        self.state = state
        var limits = RESPLimits.requests
        limits.maxValueBytes = state.options.maxRequestBytes
        limits.maxBulkLength = min(limits.maxBulkLength, state.options.maxRequestBytes)
        parser = RESPParser(limits: limits, inlineCommands: true)
    }

    func channelActive(context: ChannelHandlerContext) {
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        PeerCredentials.of(context.channel).whenSuccess { loopBound.value.peer = $0 }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closed else { return }
        inbound.accumulate(unwrapInboundIn(data))
        process(context: context)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        sendReplies(context: context)
        context.fireChannelReadComplete()
    }

    func read(context: ChannelHandlerContext) {
        // While a request waits on a plugin, later requests are read and kept, not answered, up to the request
        // size limit; past it, reading pauses. Pausing on every wait would cost two epoll_ctl calls per waiting
        // connection, a fifth of the time to answer a burst of callers.
        if waiting && inboundFull {
            readPending = true
        } else {
            context.read()
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard event is ChannelShouldQuiesceEvent else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        quiescing = true
        if !waiting {
            close(context: context)
        } else {
            let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            context.eventLoop.scheduleTask(in: TimeAmount.nanoseconds(state.options.drainTimeout.nanoseconds)) {
                loopBound.value.0.close(context: loopBound.value.1)
            }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        state.logger.debug("connection error", metadata: ["error": "\(error)"])
        close(context: context)
    }

    // MARK: Requests

    /// Whether the requests kept behind a waiting one reach the request size limit, so reading pauses.
    private var inboundFull: Bool { (inbound?.readableBytes ?? 0) >= state.options.maxRequestBytes }

    private func process(context: ChannelHandlerContext) {
        guard var buffer = inbound, !waiting, !closed else { return }
        inbound = nil
        do {
            try parser.scanCommands(&buffer) { request in
                switch Command.parse(request) {
                case .success(let command): handle(command, request, context: context)
                case .failure(let error): reply(context) { $0.writeRESPError(error.text) }
                }
                return !waiting && !closed
            }
        } catch {
            refuse(context: context, error)
            return
        }
        guard !closed, buffer.readableBytes > 0 else { return }
        if buffer.readerIndex > 4096 { buffer.discardReadBytes() }
        inbound = buffer
    }

    private func handle(_ command: Command, _ words: RESPCommandWords, context: ChannelHandlerContext) {
        let engine = state.engine
        switch command {
        case .get:
            if let fetched = engine.cachedValue(utf8: words.bytes(1)) {
                reply(context) { out in fetched.value.withUnsafeBytes { out.writeRESPBulk($0) } }
            } else {
                answerAfterFetch(words.string(1), context: context) { out, fetched in fetched.value.withUnsafeBytes { out.writeRESPBulk($0) } }
            }
        case .fetch:
            if let fetched = engine.cachedValue(utf8: words.bytes(1)) {
                reply(context) { ConnectionHandler.writeFetched(fetched, to: &$0) }
            } else {
                answerAfterFetch(words.string(1), context: context) { out, fetched in ConnectionHandler.writeFetched(fetched, to: &out) }
            }
        case .ttl:
            let name = words.string(1)
            switch engine.timeToLive(name) {
            case nil: reply(context) { $0.writeRESPError(ExpirableError.notFound(name).description) }
            case .notStored: reply(context) { $0.writeRESPInteger(-2) }
            case .never: reply(context) { $0.writeRESPInteger(-1) }
            case .millis(let ms): reply(context) { $0.writeRESPInteger(ms) }
            }
        case .clear:
            let name = words.string(1)
            guard state.mayAdminister(peer) else { return noPermission(context, "CLEAR") }
            guard engine.clear(name) else {
                return reply(context) { $0.writeRESPError(ExpirableError.notFound(name).description) }
            }
            state.logger.notice("clear", metadata: ["expirable": "\(name)", "peer": "\(peer.map(\.description) ?? "unknown")"])
            reply(context) { $0.writeRESP(.simpleString("OK")) }
        case .clearAll:
            guard state.mayAdminister(peer) else { return noPermission(context, "CLEARALL") }
            engine.clearAll()
            state.logger.notice("clear all", metadata: ["peer": "\(peer.map(\.description) ?? "unknown")"])
            reply(context) { $0.writeRESP(.simpleString("OK")) }
        case .list:
            reply(context) { out in
                out.writeRESPArrayHeader(engine.names.count)
                for name in engine.names { out.writeRESP(.bulk(name)) }
            }
        case .info(let named):
            if named {
                let name = words.string(1)
                guard let text = InfoText.expirable(name, state: state) else {
                    return reply(context) { $0.writeRESPError(ExpirableError.notFound(name).description) }
                }
                reply(context) { $0.writeRESP(.bulk(text)) }
            } else {
                reply(context) { $0.writeRESP(.bulk(InfoText.server(state: state))) }
            }
        case .ping(let echo):
            reply(context) { out in
                if echo { out.writeRESPBulk(words.bytes(1)) } else { out.writeRESP(.simpleString("PONG")) }
            }
        case .configGet:
            reply(context) { $0.writeRESPArrayHeader(0) }
        case .cluster:
            let text = state.options.clusterInfo?() ?? "node:\(state.options.nodeName)\tstate:this\taddress:-\tcertificate:-\tlast_heard_ms:-\ttls:-\tconfig:no [cluster] configured\r\n"
            reply(context) { $0.writeRESP(.bulk(text)) }
        case .quit:
            reply(context) { $0.writeRESP(.simpleString("OK")) }
            close(context: context)
        }
    }

    private static func writeFetched(_ fetched: Fetched, to out: inout ByteBuffer) {
        out.writeRESPArrayHeader(2)
        fetched.value.withUnsafeBytes { out.writeRESPBulk($0) }
        switch fetched.expiry {
        case .never: out.writeRESPInteger(-1)
        case .at(let ms): out.writeRESPInteger(ms)
        }
    }

    /// Waits for the engine (a plugin call or a call under way); requests behind this one wait too.
    private func answerAfterFetch(_ name: String, context: ChannelHandlerContext, write: @escaping (inout ByteBuffer, Fetched) -> Void) {
        waiting = true
        let loopBound = NIOLoopBound((self, context, write), eventLoop: context.eventLoop)
        let eventLoop = context.eventLoop
        state.engine.fetch(name) { result in
            eventLoop.execute {
                let (handler, context, write) = loopBound.value
                handler.resume(context: context, result: result, write: write)
            }
        }
    }

    private func resume(context: ChannelHandlerContext, result: Result<Fetched, ExpirableError>, write: (inout ByteBuffer, Fetched) -> Void) {
        waiting = false
        guard !closed else { return }
        switch result {
        case .success(let fetched): reply(context) { write(&$0, fetched) }
        case .failure(let error): reply(context) { $0.writeRESPError(error.description) }
        }
        if quiescing {
            sendReplies(context: context)
            close(context: context)
            return
        }
        process(context: context)
        sendReplies(context: context)
        if readPending && !(waiting && inboundFull) {
            readPending = false
            context.read()
        }
    }

    // MARK: Replies

    private func reply(_ context: ChannelHandlerContext, _ write: (inout ByteBuffer) -> Void) {
        if outbound == nil { outbound = context.channel.allocator.buffer(capacity: 4096) }
        write(&outbound!)
    }

    private func sendReplies(context: ChannelHandlerContext) {
        guard let out = outbound, out.readableBytes > 0, !closed else { return }
        outbound = nil
        context.writeAndFlush(wrapOutboundOut(out), promise: nil)
    }

    private func noPermission(_ context: ChannelHandlerContext, _ command: String) {
        state.logger.warning("refused admin command", metadata: ["command": "\(command)", "peer": "\(peer.map(\.description) ?? "unknown")"])
        reply(context) { $0.writeRESPError("NOPERM \(command) is allowed to root, the daemon's user (uid \(state.daemonUID)) and its group (gid \(state.daemonGID)) only") }
    }

    private func refuse(context: ChannelHandlerContext, _ error: RESPError) {
        let text = error.kind == .tooLarge
            ? "ERR request too large: \(error.message); closing the connection"
            : "ERR Protocol error: \(error.message); closing the connection"
        state.logger.info("bad request, connection closed", metadata: ["reason": "\(error.message)", "peer": "\(peer.map(\.description) ?? "unknown")"])
        reply(context) { $0.writeRESPError(text) }
        sendReplies(context: context)
        close(context: context)
    }

    private func close(context: ChannelHandlerContext) {
        guard !closed else { return }
        sendReplies(context: context)
        closed = true
        context.close(promise: nil)
    }
}

/// Answers a connection over the limit and closes it.
final class RefusingHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    func channelActive(context: ChannelHandlerContext) {
        var out = context.channel.allocator.buffer(capacity: 64)
        out.writeRESPError("ERR max number of clients reached")
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.writeAndFlush(wrapOutboundOut(out)).whenComplete { _ in loopBound.value.close(promise: nil) }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {}
}
