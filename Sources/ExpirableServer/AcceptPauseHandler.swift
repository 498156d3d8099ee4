import Logging
import NIOCore
#if canImport(Glibc)
import Glibc
#endif

/// On the listening socket: when `accept` fails for want of descriptors (EMFILE, ENFILE, ENOBUFS, ENOMEM),
/// stop accepting instead of retrying in a loop (the socket stays readable, so NIO would spin at full CPU),
/// log once, and resume when a connection closes or after `retry`, whichever comes first. Clients wait in
/// the listen backlog meanwhile, unharmed.
final class AcceptPauseHandler: ChannelDuplexHandler {
    typealias InboundIn = any Channel
    typealias OutboundIn = any Channel

    private let logger: Logger
    private let retry: TimeAmount
    private var paused = false
    /// Said once per shortage: set at the first failed accept, cleared by the next successful one.
    private var warned = false
    private var readPending = false
    private var retryTask: Scheduled<Void>?
    private var context: ChannelHandlerContext?

    init(logger: Logger, retry: TimeAmount = .seconds(1)) {
        self.logger = logger
        self.retry = retry
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) {
        retryTask?.cancel()
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if warned {
            warned = false
            logger.notice("accepting again: a descriptor is free")
        }
        context.fireChannelRead(data)
    }

    func read(context: ChannelHandlerContext) {
        if paused {
            readPending = true
        } else {
            context.read()
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let error = error as? IOError, [EMFILE, ENFILE, ENOBUFS, ENOMEM].contains(error.errnoCode) else {
            context.fireErrorCaught(error)
            return
        }
        guard !paused else { return }
        paused = true
        if !warned {
            warned = true
            logger.error("out of file descriptors: accepting paused until a connection closes", metadata: [
                "error": "\(error)", "hint": "raise LimitNOFILE (ulimit -n) or lower max_connections",
            ])
        }
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        retryTask = context.eventLoop.scheduleTask(in: retry) { loopBound.value.resume() }
    }

    /// A descriptor may be free again: accept what waits. On the listening channel's event loop.
    func descriptorFreed() {
        if paused { resume() }
    }

    private func resume() {
        retryTask?.cancel()
        retryTask = nil
        guard paused, let context else { return }
        paused = false
        if readPending {
            readPending = false
            context.read()
        }
    }
}
