import ExpirableCore
import NIOCore

/// Joining (SPEC §4.11): a node that starts knows none of its peers' values, and alone in its view it would own
/// every expirable and call plugins for values the cluster already holds. So until every peer's greeting has
/// arrived (hello, its values and clears, then a heartbeat), or `joinTimeout` has passed, no cluster-scoped
/// plugin call starts here: fetches wait for the join, eager refreshes and prefetches are put off.
extension Cluster {
    /// Whether the join has ended.
    public var hasJoined: Bool { state.withLock { $0.joined } }

    /// Runs `action` once the join has ended: at once if it has, otherwise on the thread that ends it.
    public func whenJoined(_ action: @escaping @Sendable () -> Void) {
        let now: Bool = state.withLock { s in
            if s.joined { return true }
            s.joinWaiters.append(action)
            return false
        }
        if now { action() }
    }

    /// Starts the join's clock; called by `run()` once this node listens and dials.
    func startJoin() {
        let timeout = options.joinTimeout
        let alone: Bool = state.withLock { s in
            s.joinDeadline = clock.monotonicNanos &+ UInt64(timeout.nanoseconds)
            return s.peers.isEmpty
        }
        if alone { return finishJoin() }
        _ = clock.schedule(after: timeout) { [self] in finishJoin() }
    }

    /// A heartbeat arrived from `peer`: the first after its hello ends its greeting.
    func greeted(_ peer: String) {
        let everyone: Bool = state.withLock { s in
            guard s.peers[peer]?.greeted == false else { return false }
            s.peers[peer]?.greeted = true
            return !s.joined && s.peers.values.allSatisfy(\.greeted)
        }
        if everyone { finishJoin() }
    }

    private func finishJoin() {
        let outcome: (waiters: [@Sendable () -> Void], greeted: [String], silent: [String])? = state.withLock { s in
            guard !s.joined else { return nil }
            s.joined = true
            defer { s.joinWaiters = [] }
            let records = s.peers.values.sorted { $0.peer.name < $1.peer.name }
            return (s.joinWaiters, records.filter(\.greeted).map(\.peer.name), records.filter { !$0.greeted }.map(\.peer.name))
        }
        guard let outcome else { return }
        if outcome.silent.isEmpty {
            logger.notice("joined the cluster", metadata: ["peers": "\(outcome.greeted.joined(separator: ","))"])
        } else {
            logger.warning("joined the cluster without hearing from every peer", metadata: [
                "greeted": "\(outcome.greeted.joined(separator: ","))", "silent": "\(outcome.silent.joined(separator: ","))",
                "waited_ms": "\(options.joinTimeout.milliseconds)",
            ])
        }
        for waiter in outcome.waiters { waiter() }
    }
}
