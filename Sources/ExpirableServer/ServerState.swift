import ExpirableCore
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// What every connection of one server shares: the engine, the options, counters, and who may administer.
final class ServerState: Sendable {
    let engine: Engine
    let options: ServerOptions
    let logger: Logger
    let startedAt = SystemClock().monotonicNanos
    let connections = Atomic<Int>(0)
    let connectionsAccepted = Atomic<Int>(0)
    let connectionsRefused = Atomic<Int>(0)
    private let lastClientID = Atomic<Int64>(0)
    /// Requests by command, for the metrics.
    let requestCounts = RequestCountRegistry()
    /// Output back-pressure (`max_output_bytes`): throttles so far, connections throttled now, subscribers
    /// disconnected for not reading.
    let outputThrottles = Atomic<UInt64>(0)
    let throttledConnections = Atomic<Int>(0)
    let slowSubscribersClosed = Atomic<UInt64>(0)
    /// Who listens to which expirable's new values.
    let subscriptions = Subscriptions()
    /// Set while the listening socket's reserve descriptor is spent: new connections are refused at once.
    let descriptorShortage = Atomic<Bool>(false)
    /// Called whenever a connection closes, so an accept loop paused for want of descriptors resumes at once.
    let descriptorFreed = Mutex<DescriptorFreedHook?>(nil)
    let daemonUID = geteuid()
    let daemonGID = getegid()

    init(engine: Engine, options: ServerOptions, logger: Logger) {
        self.engine = engine
        self.options = options
        self.logger = logger
    }

    /// Reserves a connection slot; false when `maxConnections` are open.
    func admit() -> Bool {
        while true {
            let current = connections.load(ordering: .relaxed)
            guard current < options.maxConnections else {
                connectionsRefused.add(1, ordering: .relaxed)
                return false
            }
            if connections.compareExchange(expected: current, desired: current + 1, ordering: .relaxed).exchanged {
                connectionsAccepted.add(1, ordering: .relaxed)
                return true
            }
        }
    }

    func release() {
        connections.subtract(1, ordering: .relaxed)
        connectionClosed()
    }

    /// A connection has closed, admitted or refused: its descriptor is free again.
    func connectionClosed() {
        descriptorFreed.withLock { $0 }?.call()
    }

    /// A number for a new connection, unique in this daemon.
    func nextClientID() -> Int64 {
        lastClientID.add(1, ordering: .relaxed).newValue
    }

    /// What a new connection may do (SPEC §9), until its peer is known.
    func newAccess() -> ConnectionAccess {
        ConnectionAccess(engine: engine, admins: options.admins, daemonUID: daemonUID, daemonGID: daemonGID, logger: logger)
    }
}

/// What `ServerState.descriptorFreed` calls, in a struct rather than as a bare closure in the `Mutex`: a function
/// value read out of a generic container through `withLock { $0 }` comes back wrapped in one more pair of
/// reabstraction thunks each time (Swift 6.3), so every closed connection made the next close slower, without
/// bound, and a deep enough chain overflows the stack (as it did for the engine's `NewValueObserver`).
struct DescriptorFreedHook: Sendable {
    let call: @Sendable () -> Void
}
