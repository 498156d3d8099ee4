import ExpirableCore
import ExpirableTLS
import Logging
import NIOCore
import NIOPosix

extension Cluster {
    /// Listens for peers, dials them, sends heartbeats and watches liveness until graceful shutdown.
    public func run() async throws {
        let allowed = Set(options.peers.map(\.name))
        // What a node whose certificate is valid but names none of the peers is told before its link is closed.
        var notAPeer = ByteBuffer()
        ClusterFrame.encode(.linkRefused(.notAPeer), into: &notAPeer)
        let tls = self.tls
        let listener: any Channel
        do {
            listener = try await ServerBootstrap(group: group)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelOption(.allocator, value: allocator)
                .childChannelInitializer { [self] channel in
                    channel.eventLoop.makeCompletedFuture {
                        // Over the budget, the bootstrap closes the connection when this throws, before any TLS
                        // state is made for it or it is registered for reading.
                        guard admitUnauthenticated() else {
                            throw PeerError.unauthenticatedOverBudget(limit: options.unauthenticatedLimit)
                        }
                        do {
                            // The link bounds the TLS handshake and hello together, so TLS gets no timeout of its own.
                            // A frame begun must be complete within the dead time (the decoder closes the link).
                            try channel.pipeline.syncOperations.addHandlers([
                                TLSHandler(context: tls, role: .server(allowedPeers: allowed, refusal: notAPeer), handshakeTimeout: nil),
                                ClusterFrameEncoder(),
                                ByteToMessageHandler(ClusterFrameDecoder(stall: (options.deadAfter, clock))),
                                InboundLink(cluster: self),
                            ])
                        } catch {
                            releaseUnauthenticated()
                            throw error
                        }
                    }
                }
                .bind(host: options.listenHost, port: options.listenPort).get()
        } catch {
            throw ClusterError("cannot listen for peers on \(options.listenHost):\(options.listenPort): \(error)")
        }
        logger.notice("cluster listening", metadata: [
            "node": "\(options.node)", "listen": "\(options.listenHost):\(options.listenPort)",
            "peers": "\(options.peers.map(\.name).joined(separator: ","))",
        ])
        for peer in options.peers { dial(peer.name) }
        // Pauses are measured from here: one before the first tick is one too.
        noticePause(tick: true)
        startJoin()
        scheduleHeartbeat()
        await withGracefulShutdownHandler {
            try? await listener.closeFuture.get()
        } onGracefulShutdown: { [self] in
            // First, so that when the listener's close ends the wait above, draining is already known.
            stopAfterForwards(until: clock.monotonicNanos &+ UInt64(options.drainTimeout.nanoseconds))
            listener.close(promise: nil)
        }
        // The service ends (and the daemon then stops its plugins) only once the forwards' calls are over.
        while state.withLock({ $0.drainingForwards && !$0.stopping }) { try? await Task.sleep(for: .milliseconds(20)) }
        logger.notice("cluster stopped", metadata: ["node": "\(options.node)"])
    }

    /// The next heartbeat tick, a heartbeat from now on the engine's clock. Each tick schedules the next once it
    /// is done, so ticks never overlap and a slow one delays the next rather than crowding it.
    func scheduleHeartbeat() {
        let timer = clock.schedule(after: options.heartbeat) { [self] in
            guard !state.withLock({ $0.stopping }) else { return }
            tick()
            scheduleHeartbeat()
        }
        let stopped: Bool = state.withLock { s in
            guard !s.stopping else { return true }
            s.heartbeatTimer = timer
            return false
        }
        if stopped { timer.cancel() }
    }

    /// Graceful shutdown: plugin calls serving fetches peers forwarded here are let finish, as the server lets
    /// its own callers' calls finish, and their answers go out before the links close; otherwise the asking node
    /// would ask the next owner and the provider would see a second call (its first result, perhaps a rotated
    /// token, thrown away). Bounded by `deadline` (the drain timeout); links stay up meanwhile, so forwards that
    /// arrive are served too. Checked every 20 ms, then a moment for the last answers to be written.
    func stopAfterForwards(until deadline: UInt64) {
        let (serving, draining) = state.withLock { s in
            let serving = s.forwardsIn.values.reduce(0, +)
            defer { if serving > 0 { s.drainingForwards = true } }
            return (serving, s.drainingForwards)
        }
        guard serving > 0, clock.monotonicNanos < deadline else {
            if serving > 0 {
                logger.warning("stopping with forwarded fetches still under way: their plugin calls outlived the drain", metadata: ["fetches": "\(serving)"])
            }
            guard draining && serving == 0 else { return stop() }
            _ = clock.schedule(after: .milliseconds(100)) { [self] in stop() }
            return
        }
        if !draining {
            logger.notice("stopping: finishing the plugin calls of fetches forwarded by peers", metadata: ["fetches": "\(serving)"])
        }
        _ = clock.schedule(after: .milliseconds(20)) { [self] in stopAfterForwards(until: deadline) }
    }

    /// Stops the heartbeat and redials and closes every peer link (graceful shutdown).
    func stop() {
        let (links, heartbeat): ([any Channel], (any Cancellable)?) = state.withLock { s in
            s.stopping = true
            defer { s.heartbeatTimer = nil }
            return (s.peers.values.flatMap { [$0.outbound, $0.inbound].compactMap { $0 } }, s.heartbeatTimer)
        }
        heartbeat?.cancel()
        for link in links { link.close(promise: nil) }
    }

    /// Every heartbeat: tell each peer this node is alive, and notice peers that fell silent.
    private func tick() {
        noticePause(tick: true)
        sendHeartbeats()
        reportRefusals()
        reportConnectionRefusals()
        let now = clock.monotonicNanos
        let deadAfter = UInt64(options.deadAfter.nanoseconds)
        // Each link is judged on its own evidence (SPEC §4.14). A link this node dialed whose heartbeats the peer
        // has not echoed for the dead time is stalled (a one-way cut, a peer that stopped reading): it is closed,
        // its queue dropped, and it is dialed afresh; the greeting on the new link resends everything (§4.16).
        // A link the peer dialed that has been silent for twice the dead time is closed, so the peer dials
        // afresh once it can; a link that delivers is kept even while the other direction is cut, so the cut
        // costs no redials. (Twice: a node slowed down for a moment is not made to redo its TLS handshakes.)
        // Right after a pause of this node every echo looks late: links are not judged until a dead time later.
        let (stalled, silent): ([(String, any Channel, Int)], [any Channel]) = state.withLock { s in
            var stalled: [(String, any Channel, Int)] = []
            var silent: [any Channel] = []
            let resumed = s.pauses.last.map { now - min(now, $0.noticed) < deadAfter } ?? false
            for record in s.peers.values where !resumed {
                if let outbound = record.outbound, now - min(now, record.lastAcked) >= deadAfter {
                    stalled.append((record.peer.name, outbound, record.sender?.queueLength ?? 0))
                }
                if let inbound = record.inbound, now - min(now, record.lastHeard) >= 2 * deadAfter { silent.append(inbound) }
            }
            return (stalled, silent)
        }
        reportMembership()
        routeChangesAroundCuts(now: now)
        for (peer, link, queued) in stalled {
            logger.warning("link to peer stalled; dropping it", metadata: [
                "peer": "\(peer)", "reason": "no heartbeat acknowledged within \(options.deadAfter.milliseconds) ms", "queued": "\(queued)",
            ])
            link.close(promise: nil)
        }
        for link in silent { link.close(promise: nil) }
    }
}

extension Cluster {
    /// A peer that this node's link does not reach (not up, or not echoed for the dead time) while the peer's link
    /// to this node works gets this node's changes back on the peer's link (SPEC §4.14): first everything this
    /// node holds, since what waited on the stalled link is dropped with it, then each change as it is made. Once
    /// this node's own link delivers again (its greeting resends everything), changes go on it again.
    func routeChangesAroundCuts(now: UInt64) {
        let deadAfter = UInt64(options.deadAfter.nanoseconds)
        let resync: [(String, LinkSender)] = state.withLock { s in
            var resync: [(String, LinkSender)] = []
            for (name, record) in s.peers {
                let delivers = record.outbound != nil && now - min(now, record.lastAcked) < deadAfter
                let hears = record.reverse != nil && now - min(now, record.lastHeard) < deadAfter
                if !delivers && hears, let reverse = record.reverse {
                    if !record.reverseActive {
                        s.peers[name]?.reverseActive = true
                        resync.append((name, reverse))
                    }
                } else if record.reverseActive {
                    s.peers[name]?.reverseActive = false
                }
            }
            return resync
        }
        guard !resync.isEmpty else { return }
        let changes = everyChange()
        for (peer, link) in resync {
            logger.info("link to peer does not deliver; sending changes back on the peer's link", metadata: ["peer": "\(peer)", "changes": "\(changes.count)"])
            for message in changes { link.send(message) }
        }
    }
}

/// Why the cluster could not start.
public struct ClusterError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
