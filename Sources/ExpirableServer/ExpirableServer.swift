import ExpirableCore
import Logging
import NIOCore
import NIOExtras
import NIOPosix
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Serves the engine over RESP2 on a Unix socket (SPEC §6) until graceful shutdown, then stops accepting,
/// lets owed replies go out (up to `drainTimeout`), closes every connection and removes the socket file.
public final class ExpirableServer: Service, Sendable {
    /// The daemon's version, shown by INFO.
    public static let version = ExpirableVersion.string

    let state: ServerState
    private let group: any EventLoopGroup

    /// What would stop a server from listening at `path` (the path too long, its directory missing and not
    /// creatable, or not writable, another kind of file in the way), in words naming server.socket; nil when
    /// nothing would. A daemon already answering there is not reported. Creates nothing.
    public static func socketPathProblem(_ path: String, checkingAccess: Bool = true) -> String? {
        SocketFile.problem(path, checkingAccess: checkingAccess)
    }

    /// The nearest existing directory of the socket `path` if this process's user may not write it, else nil.
    public static func socketDirectoryNotWritable(_ path: String) -> String? {
        SocketFile.unwritableDirectory(path)
    }

    public init(engine: Engine, options: ServerOptions, logger: Logger, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) {
        let state = ServerState(engine: engine, options: options, logger: logger)
        self.state = state
        self.group = group
        // New values reach their subscribers; the engine has one observer, and it is the server.
        engine.observeNewValues { name, fetched in state.subscriptions.publish(name, fetched) }
        // A name a reload removed ends its subscriptions, as a restart would: SUBSCRIBE would now refuse it.
        engine.observeReloads { [weak engine] _ in
            guard let engine else { return }
            state.subscriptions.end { engine.scope(of: $0) == nil || engine.isKeyed($0) }
        }
    }

    public func run() async throws {
        let path = state.options.socketPath
        let logger = state.logger
        if try SocketFile.claim(path) {
            logger.notice("replaced a stale socket file", metadata: ["socket": "\(path)"])
        }
        let quiesce = ServerQuiescingHelper(group: group)
        let state = self.state
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let acceptPause = AcceptPauseHandler(state: state, logger: logger)
                    let eventLoop = channel.eventLoop
                    let loopBound = NIOLoopBound(acceptPause, eventLoop: eventLoop)
                    state.descriptorFreed.withLock { $0 = DescriptorFreedHook { eventLoop.execute { loopBound.value.descriptorFreed() } } }
                    try channel.pipeline.syncOperations.addHandler(acceptPause)
                    try channel.pipeline.syncOperations.addHandler(quiesce.makeServerChannelHandler(channel: channel))
                }
            }
            .childChannelOption(.maxMessagesPerRead, value: 1)
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelOption(.writeBufferWaterMark, value: .init(low: state.options.maxOutputBytes / 2, high: state.options.maxOutputBytes))
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if state.descriptorShortage.load(ordering: .relaxed) {
                        channel.closeFuture.whenComplete { _ in state.connectionClosed() }
                        try channel.pipeline.syncOperations.addHandler(RefusingHandler("ERR out of file descriptors; try again shortly"))
                    } else if state.admit() {
                        channel.closeFuture.whenComplete { _ in state.release() }
                        try channel.pipeline.syncOperations.addHandler(ConnectionHandler(state: state))
                    } else {
                        state.logger.warning("connection refused: max_connections reached", metadata: ["max_connections": "\(state.options.maxConnections)"])
                        try channel.pipeline.syncOperations.addHandler(RefusingHandler("ERR max number of clients reached"))
                    }
                }
            }

        // The socket file gets the configured mode: created owner-only, then opened up with chmod. A Unix socket's
        // connect fails at once (EAGAIN) when the backlog is full, so a burst of callers connecting together needs
        // room; the kernel caps it at net.core.somaxconn (4096 by default).
        let previousMask = umask(0o177)
        let listening: Int32
        do throws(ServerError) {
            listening = try SocketFile.listen(path, backlog: 4096)
        } catch {
            umask(previousMask)
            throw error
        }
        umask(previousMask)
        // Recorded at once: at exit the file is removed only if it is still this one.
        let boundFile = SocketFile.identity(path)
        let channel: any Channel
        do {
            channel = try await bootstrap.withBoundSocket(listening).get()
        } catch {
            close(listening)
            SocketFile.remove(path, ifStill: boundFile)
            throw ServerError("cannot listen on \(path): \(error)")
        }
        // NIO listens again on a socket it is handed, with its default backlog of 128 whatever the options say:
        // set ours back, or a burst of more than 128 callers connecting at once gets EAGAIN.
        _ = Glibc.listen(listening, 4096)
        guard chmod(path, mode_t(state.options.socketMode)) == 0 else {
            let reason = String(cString: strerror(errno))
            try? await channel.close()
            SocketFile.remove(path, ifStill: boundFile)
            throw ServerError("cannot set mode \(String(state.options.socketMode, radix: 8)) on \(path): \(reason)")
        }
        logger.notice("serving", metadata: [
            "socket": "\(path)", "mode": "0\(String(state.options.socketMode, radix: 8))",
            "expirables": "\(state.engine.names.count)",
        ])
        state.options.onListening?()

        let drained = group.next().makePromise(of: Void.self)
        let shuttingDown = Mutex(false)
        await withGracefulShutdownHandler {
            try? await channel.closeFuture.get()
        } onGracefulShutdown: {
            shuttingDown.withLock { $0 = true }
            logger.notice("stopping: draining connections")
            quiesce.initiateShutdown(promise: drained)
        }
        if shuttingDown.withLock({ $0 }) {
            try? await drained.futureResult.get()
        } else {
            drained.succeed()
        }
        if !SocketFile.remove(path, ifStill: boundFile) {
            logger.notice("socket file left in place: it is no longer the one this daemon created", metadata: ["socket": "\(path)"])
        }
        logger.notice("stopped", metadata: ["socket": "\(path)"])
    }
}
