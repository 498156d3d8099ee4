import Logging
import NIOCore
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// On the listening socket: what to do when `accept` fails for want of descriptors (EMFILE, ENFILE).
///
/// NIO keeps the socket's read interest while a read it asked for has not accepted anything, so a failing
/// `accept` would be retried at full CPU for as long as the shortage lasts. The usual remedy is a reserve
/// descriptor: on the first failure it is closed, the next `accept` succeeds, and that client is answered
/// `-ERR out of file descriptors` and closed at once (`shortage` tells the child initializer). With a
/// connection accepted, NIO drops the read interest, and accepting stays paused, logged once, until a connection
/// closes (the reserve is then taken back) or a second has passed.
final class AcceptPauseHandler: ChannelDuplexHandler {
    typealias InboundIn = any Channel
    typealias OutboundIn = any Channel

    private let logger: Logger
    private let shortage: ServerState
    private let retry: TimeAmount
    private var reserve: Int32 = -1
    private var paused = false
    /// Set at the first failed accept of a shortage, cleared by the next connection admitted.
    private var warned = false
    /// When the shortage was last logged: descriptors that come and go must not turn into a line each time.
    private var lastWarning: NIODeadline?
    private var announced = false
    static let warningInterval: TimeAmount = .seconds(10)
    private var retryTask: Scheduled<Void>?
    private var context: ChannelHandlerContext?

    init(state: ServerState, logger: Logger, retry: TimeAmount = .seconds(1)) {
        self.shortage = state
        self.logger = logger
        self.retry = retry
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        takeReserve()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        retryTask?.cancel()
        if reserve >= 0 { Glibc.close(reserve) }
        reserve = -1
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if warned && !shortage.descriptorShortage.load(ordering: .relaxed) {
            warned = false
            if announced { logger.notice("accepting again: descriptors are free") }
            announced = false
        }
        context.fireChannelRead(data)
    }

    /// While paused NIO's reads are held back; `resume` asks for one.
    func read(context: ChannelHandlerContext) {
        if !paused { context.read() }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let error = error as? IOError, [EMFILE, ENFILE, ENOBUFS, ENOMEM].contains(error.errnoCode) else {
            context.fireErrorCaught(error)
            return
        }
        if !warned {
            warned = true
            let now = NIODeadline.now()
            if lastWarning.map({ now - $0 >= AcceptPauseHandler.warningInterval }) ?? true {
                lastWarning = now
                announced = true
                logger.error("out of file descriptors: new clients are refused until a connection closes", metadata: [
                    "error": "\(error)", "hint": "raise LimitNOFILE (ulimit -n) or lower max_connections",
                ])
            }
        }
        if reserve >= 0 {
            shortage.descriptorShortage.store(true, ordering: .relaxed)
            Glibc.close(reserve)
            reserve = -1
        }
        guard !paused else { return }
        paused = true
        scheduleRetry(context: context)
    }

    /// A connection closed: take the reserve back and accept again. On the listening channel's event loop.
    func descriptorFreed() {
        takeReserve()
        if paused { resume() }
    }

    private func scheduleRetry(context: ChannelHandlerContext) {
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        retryTask = context.eventLoop.scheduleTask(in: retry) { loopBound.value.resume() }
    }

    private func takeReserve() {
        if reserve < 0 { reserve = open("/dev/null", O_RDONLY | O_CLOEXEC) }
        if reserve >= 0 { shortage.descriptorShortage.store(false, ordering: .relaxed) }
    }

    private func resume() {
        retryTask?.cancel()
        retryTask = nil
        takeReserve()
        guard paused, let context else { return }
        // Without the reserve back, a failing accept could not be answered and would be retried at full CPU:
        // stay paused and look again later.
        guard reserve >= 0 else { return scheduleRetry(context: context) }
        paused = false
        // A read whether or not NIO asked for one while paused: one already pending is not harmed, and one
        // that was never asked for would leave accepting stopped for good.
        context.read()
    }
}
