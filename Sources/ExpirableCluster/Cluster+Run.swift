import ExpirableTLS
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle

extension Cluster {
    /// Listens for peers, dials them, sends heartbeats and watches liveness until graceful shutdown.
    public func run() async throws {
        let allowed = Set(options.peers.map(\.name))
        let tls = self.tls
        let listener: any Channel
        do {
            listener = try await ServerBootstrap(group: group)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelInitializer { [self] channel in
                    channel.eventLoop.makeCompletedFuture {
                        // Over the budget, the bootstrap closes the connection when this throws, before any TLS
                        // state is made for it or it is registered for reading.
                        guard admitUnauthenticated() else {
                            throw ClusterError("over the budget of \(options.unauthenticatedLimit) unauthenticated connections")
                        }
                        do {
                            // The link bounds the TLS handshake and hello together, so TLS gets no timeout of its own.
                            try channel.pipeline.syncOperations.addHandlers([
                                TLSHandler(context: tls, role: .server(allowedPeers: allowed), handshakeTimeout: nil),
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
        let heartbeat = group.next().scheduleRepeatedTask(initialDelay: .nanoseconds(options.heartbeat.nanoseconds), delay: .nanoseconds(options.heartbeat.nanoseconds)) { [self] _ in
            tick()
        }
        await withGracefulShutdownHandler {
            try? await listener.closeFuture.get()
        } onGracefulShutdown: { [self] in
            heartbeat.cancel()
            let links: [any Channel] = state.withLock { s in
                s.stopping = true
                return s.peers.values.flatMap { [$0.outbound, $0.inbound].compactMap { $0 } }
            }
            listener.close(promise: nil)
            for link in links { link.close(promise: nil) }
        }
        logger.notice("cluster stopped", metadata: ["node": "\(options.node)"])
    }

    /// Every heartbeat: tell each peer this node is alive, and notice peers that fell silent.
    private func tick() {
        noticePause(tick: true)
        sendHeartbeats()
        reportRefusals()
        let now = clock.monotonicNanos
        // A silent peer's links may still look open (a partition that drops packets): close them, so the link is
        // dialed afresh once the peer can be reached again. The peer counts as dead after `deadAfter`; the links
        // are torn down only after twice that, so a node slowed down for a moment is not made to redo its TLS
        // handshakes, which would slow it down further.
        let silent: [(String, [any Channel])] = state.withLock { s in
            s.peers.values.compactMap { record in
                guard record.outbound != nil, record.inbound != nil || record.lastHeard != 0,
                      now - min(now, record.lastHeard) >= 2 * UInt64(options.deadAfter.nanoseconds) else { return nil }
                return (record.peer.name, [record.outbound, record.inbound].compactMap { $0 })
            }
        }
        reportMembership()
        for (_, links) in silent {
            for link in links { link.close(promise: nil) }
        }
    }
}

/// Why the cluster could not start.
public struct ClusterError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
