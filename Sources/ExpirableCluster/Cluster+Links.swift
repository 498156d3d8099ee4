import ExpirableTLS
import Logging
import NIOCore
import NIOPosix

extension Cluster {
    /// Dials `peer` (unless a dial is under way or the link is up); on failure, tries again a heartbeat later.
    func dial(_ name: String) {
        let peer: ClusterOptions.Peer? = state.withLock { s in
            guard !s.stopping, var record = s.peers[name], !record.dialing, record.outbound == nil else { return nil }
            record.dialing = true
            s.peers[name] = record
            return record.peer
        }
        guard let peer else { return }
        let tls = self.tls
        ClientBootstrap(group: group)
            .connectTimeout(.milliseconds(max(200, options.heartbeat.milliseconds * 2)))
            .channelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(TLSHandler(context: tls, role: .client(expectedPeer: peer.name)))
                    try channel.pipeline.syncOperations.addHandler(OutboundLink(cluster: self, peer: peer.name))
                }
            }
            .connect(host: peer.host, port: peer.port)
            .whenFailure { [self] error in
                linkFailed(peer.name, reason: "cannot connect to \(peer.address): \(error)")
                redialLater(peer.name)
            }
    }

    func redialLater(_ name: String) {
        let stopping = state.withLock { s in
            s.peers[name]?.dialing = false
            return s.stopping
        }
        guard !stopping else { return }
        group.next().scheduleTask(in: .nanoseconds(options.heartbeat.nanoseconds)) { [self] in dial(name) }
    }

    /// The dialed link to `name` is authenticated: greet, then use it for sending.
    func outboundReady(_ name: String, channel: any Channel) {
        for message in greeting() { send(message, on: channel) }
        state.withLock { s in
            s.peers[name]?.outbound = channel
            s.peers[name]?.lastError = nil
        }
        logger.info("linked to peer", metadata: ["peer": "\(name)"])
        reportMembership()
    }

    func outboundLost(_ name: String, channel: any Channel) {
        let wasCurrent: Bool = state.withLock { s in
            guard let current = s.peers[name]?.outbound, current === channel else { return false }
            s.peers[name]?.outbound = nil
            return true
        }
        if wasCurrent { logger.info("link to peer closed", metadata: ["peer": "\(name)"]) }
        failPending(to: name, because: "the link to \(name) closed before it answered")
        reportMembership()
        redialLater(name)
    }

    /// A peer's link to us said hello.
    func inboundReady(_ name: String, channel: any Channel, tls: String) {
        let previous: (any Channel)? = state.withLock { s in
            let previous = s.peers[name]?.inbound
            s.peers[name]?.inbound = channel
            s.peers[name]?.certificate = name
            s.peers[name]?.tls = tls
            s.peers[name]?.lastHeard = clock.monotonicNanos
            return previous
        }
        if let previous, previous !== channel { previous.close(promise: nil) }
        reportMembership()
    }

    func inboundLost(_ name: String, channel: any Channel) {
        state.withLock { s in
            if let current = s.peers[name]?.inbound, current === channel { s.peers[name]?.inbound = nil }
        }
        reportMembership()
    }

    func linkFailed(_ name: String, reason: String) {
        let changed: Bool = state.withLock { s in
            defer { s.peers[name]?.lastError = reason }
            return s.peers[name]?.lastError != reason
        }
        // Dialing a dead peer fails every heartbeat: log each new reason once.
        if changed { logger.warning("peer unreachable", metadata: ["peer": "\(name)", "reason": "\(reason)"]) }
    }

    /// Logs peers that became alive or dead since the last report; fails forwarded fetches to the dead.
    func reportMembership() {
        let now = clock.monotonicNanos
        let changes: [(String, Bool)] = state.withLock { s in
            var changes: [(String, Bool)] = []
            for (name, record) in s.peers {
                let alive = record.isAlive(now: now, deadAfter: options.deadAfter)
                if alive != record.reportedAlive {
                    s.peers[name]?.reportedAlive = alive
                    changes.append((name, alive))
                }
            }
            return changes
        }
        for (name, alive) in changes {
            if alive {
                logger.notice("peer alive", metadata: ["peer": "\(name)", "live": "\(liveNodes().joined(separator: ","))"])
            } else {
                logger.warning("peer dead", metadata: ["peer": "\(name)", "live": "\(liveNodes().joined(separator: ","))"])
                failPending(to: name, because: "\(name), the owner, went away before it answered; try again")
            }
        }
    }
}

/// The link this node dialed: after TLS, it greets and carries this node's messages. Nothing is expected back.
final class OutboundLink: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private let cluster: Cluster
    private let peer: String
    private var ready = false

    init(cluster: Cluster, peer: String) {
        self.cluster = cluster
        self.peer = peer
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is TLSPeerVerified {
            ready = true
            cluster.outboundReady(peer, channel: context.channel)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {}

    func channelInactive(context: ChannelHandlerContext) {
        if ready {
            cluster.outboundLost(peer, channel: context.channel)
        } else {
            cluster.redialLater(peer)
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        cluster.linkFailed(peer, reason: "\(error)")
        context.close(promise: nil)
    }
}

/// A link a peer dialed: after TLS has established who it is, frames are decoded and handed to the cluster.
/// The first must be hello. A malformed frame closes this link only.
final class InboundLink: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private let cluster: Cluster
    private var peer: String?
    private var tlsVersion = ""
    private var greeted = false
    private var buffer: ByteBuffer?

    init(cluster: Cluster) {
        self.cluster = cluster
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let verified = event as? TLSPeerVerified {
            peer = verified.node
            tlsVersion = verified.protocolVersion
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let peer else { return }
        var incoming = unwrapInboundIn(data)
        if buffer == nil { buffer = incoming } else { buffer!.writeBuffer(&incoming) }
        do {
            while var pending = buffer, let message = try ClusterFrame.decode(&pending) {
                buffer = pending.readableBytes == 0 ? nil : pending
                if !greeted {
                    guard case .hello(let node, let version, _) = message else {
                        throw ClusterFrameError("the first frame is not hello")
                    }
                    guard node == peer else { throw ClusterFrameError("hello says \(node), but the certificate was verified for \(peer)") }
                    guard version == ClusterMessage.protocolVersion else {
                        throw ClusterFrameError("cluster protocol \(version), this node speaks \(ClusterMessage.protocolVersion)")
                    }
                    greeted = true
                    cluster.inboundReady(peer, channel: context.channel, tls: tlsVersion)
                }
                cluster.received(message, from: peer)
            }
            if let pending = buffer, pending.readerIndex > 65536 { buffer!.discardReadBytes() }
        } catch {
            cluster.logger.warning("malformed frame from peer; closing that link", metadata: ["peer": "\(peer)", "reason": "\(error)"])
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let peer, greeted { cluster.inboundLost(peer, channel: context.channel) }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        let remote = context.channel.remoteAddress.map { "\($0)" } ?? "unknown"
        cluster.logger.warning("refused peer connection", metadata: ["from": "\(remote)", "peer": "\(peer ?? "unverified")", "reason": "\(error)"])
        context.close(promise: nil)
    }
}
