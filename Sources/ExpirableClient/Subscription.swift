import ExpirableRESP
import NIOCore
import NIOPosix
import Synchronization

/// The state behind one ``ValueUpdates``: its connection, the updates not yet taken, the consumer waiting for
/// one, and the reconnection after the connection breaks. Connections and reconnections run on the event loop,
/// so updates keep arriving while the consumer is busy; the consumer's task only takes them.
final class Subscription: Sendable {
    let names: [String]
    private let socketPath: String
    private let timeout: Duration
    private let group: any EventLoopGroup
    private let watched: Set<String>
    private let state = Mutex(State())

    private struct State {
        var buffer = UpdateBuffer()
        var waiter: CheckedContinuation<Result<ValueUpdate?, ExpirableClientError>, Never>?
        var channel: (any Channel)?
        /// A connection sending SUBSCRIBE, not yet confirmed.
        var subscribing: (any Channel)?
        var retry: Scheduled<Void>?
        var ending: Ending?
        /// While reconnecting: when the connection broke, and how many attempts have failed since.
        var brokenAt: NIODeadline?
        var attempts = 0
    }

    private enum Ending {
        /// The consumer went away (task cancelled, sequence dropped): nothing more is handed out.
        case cancelled
        /// The subscription cannot go on; the consumer gets this error once the buffered updates are taken.
        case failed(ExpirableClientError)
        /// The error was handed out; the sequence is over.
        case finished
    }

    /// The first reconnection waits this long, each next one twice as long, up to `maximumBackoff`.
    static let firstBackoff = Duration.milliseconds(50)
    static let maximumBackoff = Duration.seconds(2)

    init(names: [String], socketPath: String, timeout: Duration, group: any EventLoopGroup) {
        self.names = names
        self.socketPath = socketPath
        self.timeout = timeout
        self.group = group
        watched = Set(names)
    }

    deinit {
        state.withLock { state in
            state.retry?.cancel()
            state.channel?.close(promise: nil)
        }
    }

    /// Connects and subscribes, returning once the daemon confirmed every name. A cancelled task ends it at once
    /// with `.cancelled`, closing the connection.
    func start() async throws(ExpirableClientError) {
        guard !Task.isCancelled else {
            cancel()
            throw .cancelled
        }
        let subscribed = subscribe()
        let outcome = subscribed.eventLoop.makePromise(of: Void.self)
        subscribed.whenComplete { [weak self] result in
            switch result {
            case .success(let channel):
                if let self { adopt(channel) } else { channel.close(promise: nil) }
                outcome.succeed()
            case .failure(let error):
                outcome.fail(error)
            }
        }
        do {
            try await withTaskCancellationHandler {
                try await outcome.futureResult.get()
            } onCancel: {
                // Failed first: closing the connection fails the subscription with `.unavailable`.
                outcome.fail(ExpirableClientError.cancelled)
                cancel()
            }
        } catch let error as ExpirableClientError {
            // Cancelled while the connection was being made: the cancellation's own failure is queued on the
            // event loop, and closing the new connection can fail the subscription there first, in the same
            // turn (.unavailable, "closed before SUBSCRIBE was sent"). A cancelled caller is told .cancelled.
            if Task.isCancelled { throw .cancelled }
            throw error
        } catch {
            if Task.isCancelled { throw .cancelled }
            throw ExpirableClientError.cannotConnect(to: socketPath, error)
        }
    }

    // MARK: The consumer's side

    /// The next update, waiting for one; nil once cancelled or finished.
    func next(isolation actor: isolated (any Actor)?) async throws(ExpirableClientError) -> ValueUpdate? {
        if Task.isCancelled {
            cancel()
            return nil
        }
        let result = await withTaskCancellationHandler {
            await withCheckedContinuation(isolation: actor) { (waiter: CheckedContinuation<Result<ValueUpdate?, ExpirableClientError>, Never>) in
                let now: Result<ValueUpdate?, ExpirableClientError>? = state.withLock { state in
                    if let update = state.buffer.popFirst() { return .success(update) }
                    switch state.ending {
                    case .cancelled?, .finished?:
                        return .success(nil)
                    case .failed(let error)?:
                        state.ending = .finished
                        return .failure(error)
                    case nil:
                        precondition(state.waiter == nil, "ValueUpdates has one consumer; iterate it from one task only")
                        state.waiter = waiter
                        return nil
                    }
                }
                if let now { waiter.resume(returning: now) }
            }
        } onCancel: {
            cancel()
        }
        return try result.get()
    }

    /// Ends the subscription for good: closes the connection, stops reconnecting, drops what is buffered.
    func cancel() {
        end(.cancelled)
    }

    // MARK: The connection's side

    private func deliver(_ update: ValueUpdate) {
        guard watched.contains(update.name) else { return }
        let waiter = state.withLock { state -> CheckedContinuation<Result<ValueUpdate?, ExpirableClientError>, Never>? in
            guard state.ending == nil else { return nil }
            guard let waiter = state.waiter else {
                state.buffer.append(update)
                return nil
            }
            state.waiter = nil
            return waiter
        }
        waiter?.resume(returning: .success(update))
    }

    private func end(_ ending: Ending) {
        let (waiter, channel) = state.withLock { state -> (CheckedContinuation<Result<ValueUpdate?, ExpirableClientError>, Never>?, (any Channel)?) in
            guard state.ending == nil else { return (nil, nil) }
            state.ending = ending
            if case .cancelled = ending { state.buffer.removeAll() }
            state.retry?.cancel()
            state.retry = nil
            defer { state.waiter = nil; state.channel = nil; state.subscribing = nil }
            return (state.waiter, state.channel ?? state.subscribing)
        }
        channel?.close(promise: nil)
        guard let waiter else { return }
        if case .failed(let error) = ending {
            state.withLock { $0.ending = .finished }
            waiter.resume(returning: .failure(error))
        } else {
            waiter.resume(returning: .success(nil))
        }
    }

    /// Opens a connection and sends SUBSCRIBE; the future completes once every name is confirmed.
    private func subscribe() -> EventLoopFuture<any Channel> {
        let names = names
        let timeout = timeout
        return ClientBootstrap(group: group)
            .channelInitializer { [weak self] channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers(
                        ByteToMessageHandler(RESPValueDecoder(limits: .replies)), SubscriberHandler { self?.deliver($0) }
                    )
                }
            }
            .connect(unixDomainSocketPath: socketPath)
            .flatMapErrorThrowing { [socketPath] error in throw ExpirableClientError.cannotConnect(to: socketPath, error) }
            .flatMap { [weak self] channel in
                self?.subscribing(channel)
                let confirmed = channel.eventLoop.makePromise(of: Void.self)
                let deadline = channel.eventLoop.scheduleTask(in: .nanoseconds(timeout.nanoseconds)) {
                    confirmed.fail(ExpirableClientError(code: .callTimeout, message: "the daemon did not confirm the subscription within \(timeout)"))
                    channel.close(promise: nil)
                }
                channel.writeAndFlush(SubscribeRequest(names: names, confirmed: confirmed)).whenFailure { _ in
                    confirmed.fail(ExpirableClientError(code: .unavailable, message: "the connection to the daemon closed before SUBSCRIBE was sent"))
                }
                return confirmed.futureResult
                    .always { _ in deadline.cancel() }
                    .map { channel }
                    .flatMapErrorThrowing { [weak self] error in
                        self?.state.withLock { state in
                            if state.subscribing === channel { state.subscribing = nil }
                        }
                        channel.close(promise: nil)
                        throw error
                    }
            }
    }

    /// Notes `channel`, connected and about to send SUBSCRIBE, so that ending the subscription closes it; closes
    /// it if the subscription already ended.
    private func subscribing(_ channel: any Channel) {
        let ended = state.withLock { state -> Bool in
            guard state.ending == nil else { return true }
            state.subscribing = channel
            return false
        }
        if ended { channel.close(promise: nil) }
    }

    /// Makes `channel` the subscription's connection, and arranges to reconnect when it closes.
    private func adopt(_ channel: any Channel) {
        let current = state.withLock { state -> Bool in
            if state.subscribing === channel { state.subscribing = nil }
            guard state.ending == nil else { return false }
            state.channel = channel
            state.brokenAt = nil
            state.attempts = 0
            return true
        }
        guard current else {
            channel.close(promise: nil)
            return
        }
        channel.closeFuture.whenComplete { [weak self] _ in self?.connectionClosed(channel) }
    }

    private func connectionClosed(_ channel: any Channel) {
        let lost = state.withLock { state -> Bool in
            guard state.ending == nil, state.channel === channel else { return false }
            state.channel = nil
            state.brokenAt = .now()
            return true
        }
        if lost { scheduleReconnect(after: nil) }
    }

    /// Tries again after a backoff that doubles with every failure, unless the daemon has been gone for longer
    /// than `timeout`: then the subscription ends with `.unavailable`.
    private func scheduleReconnect(after failure: ExpirableClientError?) {
        let eventLoop = group.next()
        let gaveUp: ExpirableClientError? = state.withLock { state in
            guard state.ending == nil, let brokenAt = state.brokenAt else { return nil }
            if let failure, NIODeadline.now() - brokenAt >= .nanoseconds(timeout.nanoseconds) {
                return ExpirableClientError(code: .unavailable, message: "lost the connection to \(socketPath) and could not subscribe again within \(timeout): \(failure.message)")
            }
            let backoff = min(Self.firstBackoff * (1 << min(state.attempts, 16)), Self.maximumBackoff)
            state.attempts += 1
            state.retry = eventLoop.scheduleTask(in: .nanoseconds(backoff.nanoseconds)) { [weak self] in self?.reconnect() }
            return nil
        }
        if let gaveUp { end(.failed(gaveUp)) }
    }

    private func reconnect() {
        guard state.withLock({ $0.ending == nil }) else { return }
        subscribe().whenComplete { [weak self] result in
            guard let self else { return }
            switch result {
            case .success(let channel):
                adopt(channel)
            case .failure(let error as ExpirableClientError) where ![.unavailable, .callTimeout].contains(error.code):
                // The daemon answered and refused: a name is no longer configured, say. Retrying cannot help.
                end(.failed(error))
            case .failure(let error):
                scheduleReconnect(after: error as? ExpirableClientError ?? ExpirableClientError(code: .unavailable, message: "\(error)"))
            }
        }
    }
}
