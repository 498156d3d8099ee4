import ExpirableCore
import NIOCore

/// Joining (SPEC §4.11): a node that starts knows none of its peers' values, and alone in its view it would own
/// every expirable and call plugins for values the cluster already holds. So until every peer's greeting has
/// arrived (hello, its values and clears, then a heartbeat) and every peer is alive in this node's view (its own
/// link to the peer up too: ownership is decided over the live nodes), or `joinTimeout` has passed, no
/// cluster-scoped plugin call starts here: fetches wait for the join, eager refreshes and prefetches are put off.
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
        let first: Bool = state.withLock { s in
            guard s.peers[peer]?.greeted == false else { return false }
            s.peers[peer]?.greeted = true
            return true
        }
        if first { joinIfReady() }
    }

    /// Ends the join once every peer has greeted this node and is alive in its view; called when a peer greets
    /// and when one becomes alive. A greeting arrives on the link the peer dialed, while this node's own link to
    /// it may not be up yet (its dial refused because the peer was not listening yet, or still in its handshake):
    /// ending the join then would leave this node owning, alone in its view, values the peer owns, and both would
    /// call the plugin (SPEC §4.2, §4.3), which is what the join is for.
    func joinIfReady() {
        let now = clock.monotonicNanos
        let ready: Bool = state.withLock { s in
            !s.joined && s.peers.values.allSatisfy { $0.greeted && $0.isAlive(now: now, deadAfter: options.deadAfter) }
        }
        if ready { finishJoin() }
    }

    private func finishJoin() {
        let now = clock.monotonicNanos
        let outcome: (waiters: [@Sendable () -> Void], greeted: [String], silent: [String])? = state.withLock { s in
            guard !s.joined else { return nil }
            s.joined = true
            defer { s.joinWaiters = [] }
            let records = s.peers.values.sorted { $0.peer.name < $1.peer.name }
            // Silent: not greeted, or greeted but not alive here (this node's link to it never came up).
            let heard = records.filter { $0.greeted && $0.isAlive(now: now, deadAfter: options.deadAfter) }.map(\.peer.name)
            return (s.joinWaiters, heard, records.map(\.peer.name).filter { !heard.contains($0) })
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
