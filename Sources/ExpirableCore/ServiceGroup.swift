import Dispatch
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Runs services concurrently until one of the trapped signals arrives, `triggerGracefulShutdown()` is called, or
/// a service returns or throws; then shuts the others down gracefully in the reverse of their order, each asked
/// only once the one after it has returned: the first given is the last to stop, so the others can lean on it.
public final class ServiceGroup: Sendable {
    private let services: [any Service]
    private let signals: [Int32]
    private let logger: Logger
    private let requests: AsyncStream<Reason>
    private let requester: AsyncStream<Reason>.Continuation
    private let started = Atomic(false)
    private let onShutdown: (@Sendable (String) -> Void)?
    private let pendingSignal: (@Sendable () -> Int32?)?

    private enum Reason: Sendable {
        case signal(Int32)
        case triggered
    }

    private enum Event: Sendable {
        case finished(Int)
        case threw(Int, any Error)
        case shutdownRequested(Reason)
        /// The task running the group was cancelled.
        case requestsEnded
    }

    /// A group of `services` that shuts down gracefully on any of `signals`, whose default action is replaced by
    /// `SIG_IGN` from `run()` on: a second signal during the shutdown changes nothing. `onShutdown` is told, with
    /// the reason in words, once the shutdown begins, before any service is asked to stop. `pendingSignal` is
    /// asked once the signals are trapped for one of them that came before (noted by a handler of the caller's):
    /// the group then shuts down as soon as it starts.
    public init(services: [any Service], gracefulShutdownSignals signals: [Int32] = [SIGTERM, SIGINT], logger: Logger,
                pendingSignal: (@Sendable () -> Int32?)? = nil, onShutdown: (@Sendable (String) -> Void)? = nil) {
        self.pendingSignal = pendingSignal
        self.services = services
        self.signals = signals
        self.logger = logger
        self.onShutdown = onShutdown
        (requests, requester) = AsyncStream.makeStream(of: Reason.self)
    }

    /// Asks the group to shut down gracefully, as a signal would; before `run()`, it shuts down as soon as it starts.
    public func triggerGracefulShutdown() {
        requester.yield(.triggered)
    }

    /// Runs the services until all have returned, and rethrows the first error one threw. Call it once.
    public func run() async throws {
        precondition(!started.exchange(true, ordering: .relaxed), "a ServiceGroup runs once")
        let sources = trapSignals()
        defer { for source in sources { source.cancel() } }
        // Asked after the trap: a signal before it was noted by the caller's handler, one after reaches the trap.
        if let pending = pendingSignal?() { requester.yield(.signal(pending)) }
        let shutdowns = services.map { _ in GracefulShutdown() }
        let failure: (any Error)? = await withTaskGroup(of: Event.self) { group in
            for (index, service) in services.enumerated() {
                group.addTask {
                    await GracefulShutdown.$current.withValue(shutdowns[index]) {
                        do {
                            try await service.run()
                            return .finished(index)
                        } catch {
                            return .threw(index, error)
                        }
                    }
                }
            }
            let requests = self.requests
            group.addTask {
                for await reason in requests { return .shutdownRequested(reason) }
                return .requestsEnded
            }
            var running = Set(services.indices)
            var failure: (any Error)?
            var reason = "the task was cancelled"
            // A second request or signal is not read: the shutdown under way goes on as it was.
            running: while let event = await group.next() {
                switch event {
                case .finished(let index), .threw(let index, _):
                    running.remove(index)
                    if case .threw(_, let error) = event { failure = error }
                    logger.debug("service ended; shutting down the others", metadata: [
                        "service": "\(name(index))", "error": "\(failure.map { "\($0)" } ?? "none")",
                    ])
                    reason = "\(name(index)) ended"
                    break running
                case .shutdownRequested(let requested):
                    reason = describe(requested)
                    logger.debug("shutting down", metadata: ["reason": "\(reason)"])
                    break running
                case .requestsEnded:
                    break running
                }
            }
            onShutdown?(reason)
            for index in services.indices.reversed() where running.contains(index) {
                logger.debug("shutting down service", metadata: ["service": "\(name(index))"])
                shutdowns[index].request()
                while running.contains(index), let event = await group.next() {
                    switch event {
                    case .finished(let ended):
                        running.remove(ended)
                    case .threw(let ended, let error):
                        running.remove(ended)
                        logger.debug("service threw while shutting down", metadata: ["service": "\(name(ended))", "error": "\(error)"])
                        if failure == nil { failure = error }
                    case .shutdownRequested, .requestsEnded:
                        break
                    }
                }
            }
            group.cancelAll()
            return failure
        }
        if let failure { throw failure }
    }

    /// Signals arrive on a Dispatch source, not a handler: the signal itself is ignored, so one that comes while
    /// the group shuts down (or after) cannot end the process before the services have.
    private func trapSignals() -> [any DispatchSourceSignal] {
        signals.map { number in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            let requester = self.requester
            source.setEventHandler { requester.yield(.signal(number)) }
            source.activate()
            return source
        }
    }

    private func name(_ index: Int) -> String {
        String(describing: type(of: services[index]))
    }

    private func describe(_ reason: Reason) -> String {
        switch reason {
        case .triggered: return "requested"
        case .signal(SIGTERM): return "SIGTERM"
        case .signal(SIGINT): return "SIGINT"
        case .signal(let number): return "signal \(number)"
        }
    }
}
