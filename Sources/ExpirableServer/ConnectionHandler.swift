import ExpirableCore
import ExpirableRESP
import Logging
import NIOCore
import NIOExtras
import NIOPosix
#if canImport(Glibc)
import Glibc
#endif

/// One client connection's I/O: reads pipelined requests, hands each to the `CommandExecutor`, and writes
/// the replies in order. A GET or FETCH of a valid value is answered inline on the event loop. The connection
/// is in one `Phase` at a time; no client can make the daemon buffer without bound:
/// - a request waiting on the engine holds the requests behind it, read up to `maxRequestBytes`;
/// - unsent replies past `maxOutputBytes` stop both answering and reading until the client has read half, also
///   in the middle of a reply of one element per name (`LongReply`: MGET, COMMAND INFO/DOCS);
/// - a half-sent request is given `requestTimeout`, an idle connection `idleTimeout`;
/// - a refused request's error is readable: what follows it is dropped for at most `discardTime`, not let pile up;
/// - a client that shuts down its writing side gets every reply owed before the connection closes.
final class ConnectionHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// What the connection is doing.
    enum Phase: Equatable {
        /// Requests are answered as they arrive.
        case serving
        /// A reply waits on the engine (a plugin call); later requests wait behind it.
        case waiting
        /// Unsent replies passed `maxOutputBytes`: nothing is answered or read until the client reads.
        case throttled
        /// A request was refused (too large, or not RESP): the error is written and the writing side shut down;
        /// what the client still sends is read and dropped until it closes its side or `discardTime` passes.
        /// Closing at once, with the rest of its request unread, would fail the client's writes (EPIPE, or a
        /// reset) before it reads the error.
        case discarding
        /// Closing (once the replies owed are out) or closed: nothing more is read or answered.
        case closed
    }

    struct State {
        var phase = Phase.serving
        /// The client shut down its writing side: once every request read is answered, close.
        var inputClosed = false
        /// The daemon is stopping: nothing more is read; once every request read is answered, close (after at
        /// most `drainTimeout`, what is still owed gets an error).
        var quiescing = false
        /// NIO asked for a read while reading was held back.
        var readPending = false
        /// Requests of an EXEC still to run; their replies are elements of its array.
        var transactionLeft = 0
        /// Reads since the last tick, and ticks in a row without one: the clock of the idle timeout.
        var reads = 0
        var quietTicks = 0
        /// When the last read left a request half sent; nil when none is. The clock is read only then, so
        /// answering whole requests takes no clock reading.
        var halfSentSince: NIODeadline?
        /// A pipelined batch of keyed GETs is being read ahead: it runs from the event loop's task queue, after
        /// the other connections' reads of this wake-up, and later reads wait for it.
        var deferred = false
        /// Discarding: the refusal is out and the writing side shut down.
        var refusalSent = false
        /// Throttled in the middle of a long reply: the rest of it, written before anything else once the client
        /// reads. Pushes wait behind it, as they wait behind a transaction's array.
        var unfinished: LongReply?
    }

    private let options: ServerOptions
    private let logger: Logger
    private let parser: RESPParser
    private let executor: CommandExecutor
    // Touched for every request. The handler runs on one event loop, and no access to one of these overlaps
    // another access to it (the executor gets `session` and `outbound` as inout and touches neither through the
    // handler), so Swift's run-time exclusivity checks are switched off for them. Measured with
    // `redis-benchmark -c 50 -P 16`, server and client pinned to their own cores: p99 0.42-0.47 ms without the
    // checks, 0.53-0.63 ms with them (Benchmarks/serving-ab.sh gives the unpinned figures in docs/benchmarks.md).
    @exclusivity(unchecked) private var session: Session
    @exclusivity(unchecked) private var state = State()
    @exclusivity(unchecked) private var inbound: ByteBuffer?
    @exclusivity(unchecked) private var outbound: ByteBuffer?
    /// New values for subscriptions that arrive while a transaction's array is half written.
    private var deferredPushes: ByteBuffer?
    private var ticker: RepeatedTask?
    /// Fires `requestTimeout` after a request was first left half sent, and again at the deadline of the last
    /// read while one still is.
    private var requestTimer: Scheduled<Void>?
    private let subscriberBox: SubscriberBox
    /// Replies are handed to the channel in pieces of this size, so back-pressure is noticed inside one read.
    private let flushBytes: Int
    /// How long what a client sends after a refused request is dropped before the connection closes.
    static let discardTime: TimeAmount = .seconds(1)

    init(state serverState: ServerState) {
        options = serverState.options
        logger = serverState.logger
        parser = RESPParser(limits: .requests(maxBytes: options.maxRequestBytes), inlineCommands: true)
        let id = serverState.nextClientID()
        session = Session(id: id)
        let box = SubscriberBox()
        subscriberBox = box
        executor = CommandExecutor(state: serverState, subscriber: Subscriber(id: id, deliver: { box.deliver($0, $1) }, ended: { box.ended($0) }))
        flushBytes = max(4096, min(64 * 1024, options.maxOutputBytes / 4))
    }

    /// The subscriber's way back to its handler. `eventLoop` is set once, when the handler is added and before
    /// the connection can subscribe (so before any publisher reads it); `handler` and `context` are used only on
    /// that loop and cleared when the channel goes inactive. (Not a weak reference: that would move the
    /// handler's reference count to a side table and slow every retain of it on the serving path.)
    private final class SubscriberBox: @unchecked Sendable {
        var eventLoop: (any EventLoop)?
        var handler: ConnectionHandler?
        var context: ChannelHandlerContext?

        func deliver(_ name: String, _ fetched: Fetched) {
            eventLoop?.execute { [self] in
                guard let handler, let context else { return }
                handler.push(name, fetched, context: context)
            }
        }

        func ended(_ name: String) {
            eventLoop?.execute { [self] in
                guard let handler, let context else { return }
                handler.subscriptionEnded(name, context: context)
            }
        }
    }

    // MARK: Channel events

    func handlerAdded(context: ChannelHandlerContext) {
        subscriberBox.eventLoop = context.eventLoop
        subscriberBox.context = context
        subscriberBox.handler = self
    }

    func channelActive(context: ChannelHandlerContext) {
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        PeerCredentials.of(context.channel).whenSuccess { loopBound.value.executor.peer = $0 }
        startTicker(context: context)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        if state.phase == .throttled { executor.state.throttledConnections.subtract(1, ordering: .relaxed) }
        outbound = nil  // zeroed as it is freed (WipingAllocator)
        state.unfinished = nil
        state.phase = .closed
        ticker?.cancel()
        ticker = nil
        requestTimer?.cancel()
        requestTimer = nil
        executor.connectionClosed(&session)
        subscriberBox.handler = nil
        subscriberBox.context = nil
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard state.phase != .closed, state.phase != .discarding else { return }
        state.reads &+= 1
        inbound.accumulate(unwrapInboundIn(data))
        guard state.phase == .serving, !state.deferred else { return }
        if executor.state.engine.hasKeyedFamilies, let buffer = inbound, worthReadingAhead(buffer) {
            readAheadThenProcess(buffer, context: context)
        } else {
            process(context: context, readAhead: false)  // just found not worth it
        }
    }

    /// More than one request's worth, naming a keyed family's member (requests have no other ':'): a pipelined
    /// batch whose keyed GETs are read ahead. A batch without one costs a memchr.
    private func worthReadingAhead(_ buffer: ByteBuffer) -> Bool {
        buffer.readableBytes > 64 && executor.state.engine.hasKeyedFamilies
            && buffer.withUnsafeReadableBytes({ memchr($0.baseAddress!, Int32(UInt8(ascii: ":")), $0.count) != nil })
    }

    /// A random key out of a million misses the cache twice, on its slot and then on its block, each about half
    /// a microsecond here, as long as a pipelined GET takes. The batch's slots start coming in now; the batch
    /// joins this event loop's read-ahead round, which runs once the other connections ready in this wake-up have
    /// been read, and there the misses of one batch overlap with the work of the one before it.
    private func readAheadThenProcess(_ buffer: ByteBuffer, context: ChannelHandlerContext) {
        executor.readAheadSlots(buffer)
        state.deferred = true
        ReadAheadRound.current.join(self, context)
    }

    /// Called by the read-ahead round: the slots of this batch have come in; its blocks start coming in.
    fileprivate func readAheadBlocks() {
        executor.readAheadBlocks()
    }

    /// Called by the read-ahead round: the batch read ahead runs (and whatever was read behind it meanwhile).
    fileprivate func runReadAhead(context: ChannelHandlerContext) {
        state.deferred = false
        guard state.phase == .serving else { return }
        process(context: context, readAhead: false)
        sendReplies(context: context)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        sendReplies(context: context)
        context.fireChannelReadComplete()
    }

    func read(context: ChannelHandlerContext) {
        if mayRead {
            context.read()
        } else {
            state.readPending = true
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable && state.phase == .throttled {
            executor.state.throttledConnections.subtract(1, ordering: .relaxed)
            state.phase = .serving
            if let unfinished = state.unfinished {
                state.unfinished = nil
                if writeLong(unfinished, context: context) { longReplyDone(context: context) }
            } else {
                resume(context: context)
            }
        }
        context.fireChannelWritabilityChanged()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent {
            state.quiescing = true
            // A batch read and waiting for its read-ahead round is answered, as it would have been when read.
            if state.deferred { runReadAhead(context: context) }
            switch state.phase {
            case .waiting, .throttled:
                // Requests read behind the one waiting on a plugin, or behind replies the client has not read yet,
                // are owed: answered as the plugin answers and the client reads, for at most drainTimeout.
                let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
                context.eventLoop.scheduleTask(in: .nanoseconds(options.drainTimeout.nanoseconds)) {
                    loopBound.value.0.drainTimeUp(context: loopBound.value.1)
                }
            case .serving, .discarding, .closed:
                close(context: context)
            }
        } else if case ChannelEvent.inputClosed = event {
            state.inputClosed = true
            if state.phase == .discarding && state.refusalSent { closeNow(context: context) }
            finishIfDone(context: context)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        logger.debug("connection error", metadata: ["error": "\(error)"])
        if state.phase == .throttled { executor.state.throttledConnections.subtract(1, ordering: .relaxed) }
        state.phase = .closed
        context.close(promise: nil)
    }

    // MARK: Requests

    /// While a request waits on the engine, later requests are read and kept, up to the request size limit;
    /// pausing on every wait would cost two epoll_ctl calls per waiting connection. While throttled, or
    /// closing, or once the daemon is stopping, nothing is read.
    private var mayRead: Bool {
        if state.quiescing && state.phase != .discarding { return false }
        return switch state.phase {
        case .serving: true
        case .waiting: (inbound?.readableBytes ?? 0) < options.maxRequestBytes
        case .discarding: true
        case .throttled, .closed: false
        }
    }

    /// Answers the requests received so far, in order, until one has to wait or the replies back up.
    private func process(context: ChannelHandlerContext, readAhead: Bool = true) {
        var readAhead = readAhead
        while state.phase == .serving, var buffer = inbound, buffer.readableBytes > 0 {
            inbound = nil
            var transaction: (requests: ByteBuffer, count: Int)?
            if readAhead && worthReadingAhead(buffer) { executor.readAhead(buffer) }
            readAhead = true
            do {
                try parser.scanCommands(&buffer) { words in
                    if outbound == nil { outbound = WipingAllocator.shared.buffer(capacity: 4096) }
                    let outcome: CommandExecutor.Outcome
                    switch Command.parse(words) {
                    case .success(let command): outcome = executor.execute(command, words, &session, into: &outbound!)
                    case .failure(let error):
                        executor.refuse(error, &session, into: &outbound!)
                        outcome = .answered
                    }
                    let inTransaction = state.transactionLeft > 0
                    var complete = true
                    switch outcome {
                    case .answered: break
                    case .closeAfterReply: close(context: context)
                    case .await(let pending): wait(for: pending, context: context)
                    case .long(let reply): complete = writeLong(reply, context: context)
                    case .runTransaction(let requests, let count):
                        transaction = (requests, count)
                        return false
                    }
                    // A long reply left unfinished counts when it is complete (`longReplyDone`).
                    if inTransaction && state.phase != .waiting && complete { transactionStepDone() }
                    if (outbound?.readableBytes ?? 0) >= flushBytes { flushAndCheckOutput(context: context) }
                    return state.phase == .serving
                }
            } catch {
                refuse(context: context, error)
                return
            }
            if buffer.readableBytes > 0 {
                if buffer.readerIndex > 4096 { buffer.discardReadBytes() }
                inbound = buffer
            }
            guard let transaction else { break }
            // The queued requests run next, ahead of what was read after EXEC.
            state.transactionLeft = transaction.count
            var requests = transaction.requests
            if var rest = inbound { requests.writeBuffer(&rest) }
            inbound = requests
        }
        executor.readAheadDone()
        if state.phase == .serving && (inbound?.readableBytes ?? 0) > 0 {
            halfSent(context: context)
        } else {
            state.halfSentSince = nil
        }
        finishIfDone(context: context)
    }

    private func wait(for pending: PendingReply, context: ChannelHandlerContext) {
        state.phase = .waiting
        // Replies so far go out now; a connection that waits holds no reply buffer (a burst of callers waiting
        // on one plugin call would hold 4 KiB each).
        sendReplies(context: context)
        if outbound?.readableBytes == 0 { outbound = nil }
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let eventLoop = context.eventLoop
        pending.start(executor.state.engine) {
            eventLoop.execute {
                let (handler, context) = loopBound.value
                handler.answer(pending, context: context)
            }
        }
    }

    /// The engine answered the request that was waiting: reply, then go on with the ones behind it.
    private func answer(_ pending: PendingReply, context: ChannelHandlerContext) {
        guard state.phase == .waiting else { return }
        state.phase = .serving
        if writeLong(pending.reply(session.version), context: context) { longReplyDone(context: context) }
    }

    /// Writes `reply` in pieces of `flushBytes`, handing each to the channel: true once it is complete; false
    /// when the client stopped reading in the middle (the connection is throttled and keeps the rest in
    /// `state.unfinished`, or it closed).
    private func writeLong(_ reply: LongReply, context: ChannelHandlerContext) -> Bool {
        var reply = reply
        while true {
            if outbound == nil { outbound = WipingAllocator.shared.buffer(capacity: 4096) }
            if reply.write(to: &outbound!, limit: flushBytes) { return true }
            flushAndCheckOutput(context: context)
            guard state.phase == .serving else {
                if state.phase == .throttled { state.unfinished = reply }
                return false
            }
        }
    }

    /// A reply waited for, or written in pieces across a throttle, is complete: a transaction counts it as one
    /// of its array's elements (nothing else ran meanwhile), pushes held behind it go out, and the requests
    /// behind it are answered.
    private func longReplyDone(context: ChannelHandlerContext) {
        if state.transactionLeft > 0 {
            transactionStepDone()
        } else if let pushes = deferredPushes {
            deferredPushes = nil
            outbound.accumulate(pushes)
        }
        if (outbound?.readableBytes ?? 0) >= flushBytes { flushAndCheckOutput(context: context) }
        resume(context: context)
    }

    /// Goes on after a wait or a throttle: the requests kept, then reading again if NIO asked.
    private func resume(context: ChannelHandlerContext) {
        process(context: context)
        sendReplies(context: context)
        if state.readPending && mayRead {
            state.readPending = false
            context.read()
        }
    }

    /// After the client's writing side closed, or once the daemon is stopping: once nothing is owed, close
    /// (what is left in `inbound` is a request that will never be completed).
    private func finishIfDone(context: ChannelHandlerContext) {
        // A batch waiting for its read-ahead round is still owed: the round's `process` comes back here.
        guard state.inputClosed || state.quiescing, state.phase == .serving, state.transactionLeft == 0, !state.deferred,
              state.unfinished == nil else { return }
        close(context: context)
    }

    /// The daemon is stopping and `drainTimeout` has passed: every request still owed (one waiting on a plugin,
    /// those read behind it) gets an error saying so, then the connection closes. A client that has not read
    /// its replies for all that time is closed at once.
    private func drainTimeUp(context: ChannelHandlerContext) {
        switch state.phase {
        case .closed, .discarding:
            return
        case .throttled:
            executor.state.throttledConnections.subtract(1, ordering: .relaxed)
            state.phase = .closed
            state.unfinished = nil
            context.close(promise: nil)
        case .waiting, .serving:
            // TRYAGAIN (Redis's word for "retry later"), not ERR: nothing was wrong with the request, and a script
            // that retries on a temporary failure (expirablectl's 75) must not take it for a refusal (65).
            let error = "TRYAGAIN the daemon is stopping and did not answer within its drain time (\(options.drainTimeout.milliseconds) ms); send the request again once it is back"
            if outbound == nil { outbound = WipingAllocator.shared.buffer(capacity: 256) }
            if state.phase == .waiting { outbound!.writeRESPError(error) }
            if var requests = inbound {
                inbound = nil
                // A request cut short, or not RESP, is not owed: the ones before it are.
                try? parser.scanCommands(&requests) { _ in
                    outbound!.writeRESPError(error)
                    return true
                }
            }
            state.phase = .serving
            close(context: context)
        }
    }

    // MARK: Replies

    private func sendReplies(context: ChannelHandlerContext) {
        guard let out = outbound, out.readableBytes > 0, state.phase != .closed else { return }
        outbound = nil
        write(consume out, context: context)
    }

    /// Hands `out` to the channel. Its memory is zeroed when the channel lets it go (WipingAllocator).
    private func write(_ out: consuming ByteBuffer, context: ChannelHandlerContext, then: (@Sendable () -> Void)? = nil) {
        let promise = then.map { then in
            let promise = context.eventLoop.makePromise(of: Void.self)
            promise.futureResult.whenComplete { _ in then() }
            return promise
        }
        context.writeAndFlush(wrapOutboundOut(out), promise: promise)
    }

    /// Hands the replies so far to the channel; past the high-water mark (`maxOutputBytes`) the connection is
    /// throttled until NIO reports it writable again (at half of it).
    private func flushAndCheckOutput(context: ChannelHandlerContext) {
        sendReplies(context: context)
        if !context.channel.isWritable && state.phase == .serving {
            state.phase = .throttled
            executor.state.outputThrottles.add(1, ordering: .relaxed)
            executor.state.throttledConnections.add(1, ordering: .relaxed)
        }
    }

    /// A new value for a subscription: pushed at once (after a transaction's array or a long reply, if one is
    /// half written). A subscriber that lets `maxOutputBytes` of pushes pile up is disconnected, as Redis does.
    private func push(_ name: String, _ fetched: Fetched, context: ChannelHandlerContext) {
        guard state.phase != .closed, session.subscriptions.contains(name), executor.mayReceive(name) else { return }
        var out = WipingAllocator.shared.buffer(capacity: 64 + fetched.value.count + name.utf8.count)
        out.writeRESPPushHeader(3, session.version)
        out.writeRESPBulk("message")
        out.writeRESPBulk(name)
        fetched.value.withUnsafeBytes { out.writeRESPBulk($0) }
        guard state.transactionLeft == 0 && state.unfinished == nil else {
            deferredPushes.accumulate(out)
            if state.unfinished != nil && (deferredPushes?.readableBytes ?? 0) > options.maxOutputBytes { closeSlowSubscriber(context: context) }
            return
        }
        sendReplies(context: context)
        write(consume out, context: context)
        if !context.channel.isWritable { closeSlowSubscriber(context: context) }
    }

    /// A subscriber that does not read its messages: disconnected, with a warning.
    private func closeSlowSubscriber(context: ChannelHandlerContext) {
        logger.warning("subscriber closed: it does not read its messages", metadata: [
            "client": "\(session.id)", "max_output_bytes": "\(options.maxOutputBytes)",
            "peer": "\(executor.peer.map(\.description) ?? "unknown")",
        ])
        executor.state.slowSubscribersClosed.add(1, ordering: .relaxed)
        if state.phase == .throttled { executor.state.throttledConnections.subtract(1, ordering: .relaxed) }
        state.phase = .closed
        context.close(promise: nil)
    }

    /// The daemon ended a subscription (a reload removed its name): the client gets Redis's `unsubscribe`
    /// message for it, in order with the pushes (after a transaction's array, if one is half written).
    private func subscriptionEnded(_ name: String, context: ChannelHandlerContext) {
        guard state.phase != .closed else { return }
        var out = context.channel.allocator.buffer(capacity: 64 + name.utf8.count)
        guard executor.endSubscription(name, &session, into: &out) else { return }
        guard state.transactionLeft == 0 else {
            deferredPushes.accumulate(out)
            return
        }
        sendReplies(context: context)
        write(consume out, context: context)
    }

    /// One of a transaction's requests is answered; after the last, the pushes held back go out.
    private func transactionStepDone() {
        state.transactionLeft -= 1
        guard state.transactionLeft == 0, let pushes = deferredPushes else { return }
        deferredPushes = nil
        outbound.accumulate(pushes)
    }

    private func refuse(context: ChannelHandlerContext, _ error: RESPError) {
        let text = error.kind == .tooLarge
            ? "ERR request too large: \(error.message) (server.max_request_bytes); closing the connection"
            : "ERR Protocol error: \(error.message); closing the connection"
        logger.info("bad request, connection closed", metadata: ["reason": "\(error.message)", "peer": "\(executor.peer.map(\.description) ?? "unknown")"])
        if outbound == nil { outbound = WipingAllocator.shared.buffer(capacity: 256) }
        outbound!.writeRESPError(text)
        discardThenClose(context: context)
    }

    /// Sends the replies written so far (the refusal last), shuts down the writing side once they are out, and
    /// drops what still arrives until the client closes its side, or for at most `discardTime`; then closes.
    private func discardThenClose(context: ChannelHandlerContext) {
        guard state.phase == .serving else { return close(context: context) }
        let out = outbound ?? WipingAllocator.shared.buffer(capacity: 0)
        outbound = nil
        inbound = nil
        state.phase = .discarding
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        write(consume out, context: context) {
            let (handler, context) = loopBound.value
            guard handler.state.phase == .discarding else { return }
            handler.state.refusalSent = true
            if handler.state.inputClosed { return handler.closeNow(context: context) }
            // A channel that cannot shut down only its output is closed whole.
            context.close(mode: .output).whenFailure { _ in loopBound.value.0.closeNow(context: loopBound.value.1) }
        }
        context.eventLoop.scheduleTask(in: ConnectionHandler.discardTime) { loopBound.value.0.closeNow(context: loopBound.value.1) }
        if state.readPending {
            state.readPending = false
            context.read()
        }
    }

    /// Closes a connection that is discarding (its replies are out, or the client has had `discardTime`).
    private func closeNow(context: ChannelHandlerContext) {
        guard state.phase == .discarding else { return }
        state.phase = .closed
        context.close(promise: nil)
    }

    /// Closes once the replies written so far are out (bounded by the ticker: a client that never reads them
    /// is closed after `requestTimeout`).
    private func close(context: ChannelHandlerContext) {
        guard state.phase != .closed else { return }
        let out = outbound ?? WipingAllocator.shared.buffer(capacity: 0)
        outbound = nil
        state.unfinished = nil
        if state.phase == .throttled { executor.state.throttledConnections.subtract(1, ordering: .relaxed) }
        state.phase = .closed
        state.quietTicks = 0
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        write(consume out, context: context) { loopBound.value.close(promise: nil) }
    }

    // MARK: Timeouts

    /// The requests read so far end in one half sent: it has `requestTimeout` from now to be completed.
    private func halfSent(context: ChannelHandlerContext) {
        let now = context.eventLoop.now
        state.halfSentSince = now
        if requestTimer == nil { scheduleRequestTimer(at: now + .nanoseconds(options.requestTimeout.nanoseconds), context: context) }
    }

    private func scheduleRequestTimer(at deadline: NIODeadline, context: ChannelHandlerContext) {
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        requestTimer = context.eventLoop.scheduleTask(deadline: deadline) {
            let (handler, context) = loopBound.value
            handler.requestTimer = nil
            handler.checkHalfSent(context: context)
        }
    }

    /// A half-sent request's deadline: the connection is closed with an error if no read came since, or the
    /// timer is set again for the deadline of the last read.
    private func checkHalfSent(context: ChannelHandlerContext) {
        guard state.phase == .serving, (inbound?.readableBytes ?? 0) > 0, let since = state.halfSentSince else { return }
        let deadline = since + .nanoseconds(options.requestTimeout.nanoseconds)
        guard context.eventLoop.now >= deadline else { return scheduleRequestTimer(at: deadline, context: context) }
        logger.info("half-sent request timed out, connection closed", metadata: [
            "after_ms": "\(options.requestTimeout.milliseconds)", "peer": "\(executor.peer.map(\.description) ?? "unknown")",
        ])
        if outbound == nil { outbound = WipingAllocator.shared.buffer(capacity: 128) }
        outbound!.writeRESPError("ERR request incomplete after \(options.requestTimeout.milliseconds) ms (request_timeout); closing the connection")
        close(context: context)
    }

    /// One timer per connection ticks at half the shorter timeout; reads in between reset the count.
    private func startTicker(context: ChannelHandlerContext) {
        let idle = options.idleTimeout > .zero ? options.idleTimeout : options.requestTimeout
        let tick = max(min(idle, options.requestTimeout) / 2, .milliseconds(10))
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        ticker = context.eventLoop.scheduleRepeatedTask(initialDelay: .nanoseconds(tick.nanoseconds), delay: .nanoseconds(tick.nanoseconds)) { _ in
            let (handler, context) = loopBound.value
            handler.tick(tick, context: context)
        }
    }

    private func tick(_ interval: Duration, context: ChannelHandlerContext) {
        if state.reads > 0 {
            state.reads = 0
            state.quietTicks = 0
            return
        }
        state.quietTicks += 1
        let quiet = interval * state.quietTicks
        switch state.phase {
        case .closed:
            // Replies owed at close that the client never reads.
            if quiet >= options.requestTimeout { context.close(promise: nil) }
        case .serving where (inbound?.readableBytes ?? 0) > 0:
            break  // a half-sent request has its own timer
        case .serving, .throttled:
            guard options.idleTimeout > .zero, quiet >= options.idleTimeout, session.subscriptions.isEmpty else { return }
            logger.debug("idle connection closed", metadata: ["after_ms": "\(quiet.milliseconds)", "client": "\(session.id)"])
            close(context: context)
        case .waiting, .discarding:
            break
        }
    }
}

/// Answers a connection that cannot be served (over max_connections, or no descriptor to spare) and closes it.
final class RefusingHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let message: String

    init(_ message: String) { self.message = message }

    func channelActive(context: ChannelHandlerContext) {
        var out = WipingAllocator.shared.buffer(capacity: 64)
        out.writeRESPError(message)
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.writeAndFlush(wrapOutboundOut(out)).whenComplete { _ in loopBound.value.close(promise: nil) }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {}
}

/// Pipelined batches of keyed GETs waiting on one event loop for their members to come in from memory. A batch
/// joins when read, with its slots already prefetched; once the loop has read every connection ready in this
/// wake-up, one task runs the round: the blocks of the next batch are prefetched before each batch runs, so each
/// batch's misses are hidden behind the work of the one before it (software pipelining across connections).
/// One per event-loop thread; touched on that thread only.
private final class ReadAheadRound {
    private var waiting: [(handler: ConnectionHandler, context: ChannelHandlerContext)] = []
    /// The round being run; swapped with `waiting`, so that neither array is reallocated round after round.
    private var running: [(handler: ConnectionHandler, context: ChannelHandlerContext)] = []
    private var scheduled = false

    // Each thread sees only its own round.
    nonisolated(unsafe) private static let perThread = ThreadSpecificVariable<ReadAheadRound>()

    /// This thread's round.
    static var current: ReadAheadRound {
        if let round = perThread.currentValue { return round }
        let round = ReadAheadRound()
        perThread.currentValue = round
        return round
    }

    func join(_ handler: ConnectionHandler, _ context: ChannelHandlerContext) {
        waiting.append((handler, context))
        guard !scheduled else { return }
        scheduled = true
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        context.eventLoop.execute { loopBound.value.run() }
    }

    private func run() {
        swap(&running, &waiting)
        scheduled = false
        if let first = running.first { first.handler.readAheadBlocks() }
        for index in running.indices {
            if index + 1 < running.count { running[index + 1].handler.readAheadBlocks() }
            running[index].handler.runReadAhead(context: running[index].context)
        }
        running.removeAll(keepingCapacity: true)
    }
}
