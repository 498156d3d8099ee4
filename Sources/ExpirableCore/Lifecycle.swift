import Synchronization

/// A long-running part of the daemon (the server, the cluster, the sinks, the metrics endpoint), run by a
/// `ServiceGroup` until it is asked to shut down gracefully.
public protocol Service: Sendable {
    /// Runs until the service is done or, asked to shut down gracefully, has finished what it had begun.
    func run() async throws
}

/// Runs `operation`, and `handler` once if the service running it is asked to shut down gracefully meanwhile, or
/// at once, before `operation`, if it already was. Outside a `ServiceGroup`, only runs `operation`.
public func withGracefulShutdownHandler<T>(
    isolation: isolated (any Actor)? = #isolation,
    operation: () async throws -> T,
    onGracefulShutdown handler: @Sendable @escaping () -> Void
) async rethrows -> T {
    guard let shutdown = GracefulShutdown.current else { return try await operation() }
    let id = shutdown.register(handler)
    defer { if let id { shutdown.remove(id) } }
    return try await operation()
}

/// Returns once the service running the caller is asked to shut down gracefully (at once if it already was).
/// Throws `CancellationError` if the task is cancelled first; outside a `ServiceGroup`, waits for that.
public func gracefulShutdown() async throws {
    let outcome = Outcome()
    try await withTaskCancellationHandler {
        try await withGracefulShutdownHandler {
            try await outcome.wait()
        } onGracefulShutdown: {
            outcome.settle(.success(()))
        }
    } onCancel: {
        outcome.settle(.failure(CancellationError()))
    }
}

/// One service's request to shut down gracefully: the handlers its task registered, each run once.
final class GracefulShutdown: Sendable {
    /// The request of the service the current task runs for, set by its `ServiceGroup`.
    @TaskLocal static var current: GracefulShutdown?

    private struct State {
        var requested = false
        var nextID: UInt64 = 0
        var handlers: [(id: UInt64, handler: @Sendable () -> Void)] = []
    }

    private let state = Mutex(State())

    /// Keeps `handler` until `request()`, and returns its id; runs it now and returns nil if that was called.
    func register(_ handler: @escaping @Sendable () -> Void) -> UInt64? {
        let id: UInt64? = state.withLock { state in
            guard !state.requested else { return nil }
            defer { state.nextID += 1 }
            state.handlers.append((state.nextID, handler))
            return state.nextID
        }
        if id == nil { handler() }
        return id
    }

    func remove(_ id: UInt64) {
        state.withLock { $0.handlers.removeAll { $0.id == id } }
    }

    /// Runs every registered handler, in the order they were registered, the first time it is called. Outside the
    /// lock: a handler may register another, or close a channel whose callbacks do.
    func request() {
        let handlers: [@Sendable () -> Void] = state.withLock { state in
            guard !state.requested else { return [] }
            state.requested = true
            defer { state.handlers = [] }
            return state.handlers.map(\.handler)
        }
        for handler in handlers { handler() }
    }
}

/// The first of a graceful shutdown and a cancellation, for a caller of `gracefulShutdown()`: either may come
/// before the caller waits.
private final class Outcome: Sendable {
    private struct State {
        var continuation: CheckedContinuation<Void, any Error>?
        var result: Result<Void, any Error>?
    }

    private let state = Mutex(State())

    func settle(_ result: Result<Void, any Error>) {
        let continuation: CheckedContinuation<Void, any Error>? = state.withLock { state in
            guard state.result == nil else { return nil }
            state.result = result
            defer { state.continuation = nil }
            return state.continuation
        }
        continuation?.resume(with: result)
    }

    func wait() async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let result: Result<Void, any Error>? = state.withLock { state in
                if state.result == nil { state.continuation = continuation }
                return state.result
            }
            if let result { continuation.resume(with: result) }
        }
    }
}
