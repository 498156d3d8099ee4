import ExpirableCore
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
        // The connect timeout and the TLS handshake bound stay on NIO's clock: they bound work of the socket and of
        // the TLS layer, which knows no engine clock. The redial after a failure is on the engine's clock.
        ClientBootstrap(group: group)
            .connectTimeout(.milliseconds(max(200, options.heartbeat.milliseconds * 2)))
            .channelOption(.allocator, value: allocator)
            .channelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    // A dial through a path that stalls (SPEC §4.14) must not hang there: it is retried.
                    let handshake = TimeAmount.nanoseconds(options.handshakeTimeout.nanoseconds)
                    try channel.pipeline.syncOperations.addHandlers([
                        TLSHandler(context: tls, role: .client(expectedPeer: peer.name), handshakeTimeout: handshake),
                        ClusterFrameEncoder(),
                        ByteToMessageHandler(ClusterFrameDecoder()),
                        OutboundLink(cluster: self, peer: peer.name),
                    ])
                }
            }
            .connect(host: peer.host, port: peer.port)
            .whenFailure { [self] error in
                linkFailed(peer.name, reason: LinkFailure.dialing(peer.address, error))
                redialLater(peer.name)
            }
    }

    func redialLater(_ name: String) {
        let stopping = state.withLock { s in
            s.peers[name]?.dialing = false
            return s.stopping
        }
        guard !stopping else { return }
        _ = clock.schedule(after: options.heartbeat) { [self] in dial(name) }
    }

    /// The dialed link to `name` is authenticated: greet, then use it for sending.
    func outboundReady(_ name: String, channel: any Channel, sender: LinkSender) {
        // Queued before the link is published, so the greeting comes first and hello before everything.
        for message in greeting() { sender.send(message) }
        let now = clock.monotonicNanos
        // The last error stays until the peer acknowledges a heartbeat on this link (`acknowledged`): a peer that
        // refuses the link after TLS (a `linkRefused` frame) is logged once, not at every redial.
        let brokeEarly: Bool = state.withLock { s in
            s.peers[name]?.outbound = channel
            s.peers[name]?.sender = sender
            s.peers[name]?.lastAcked = now
            s.peers[name]?.outboundAcknowledged = false
            return s.peers[name]?.brokeEarly ?? false
        }
        // A peer that refuses this node right after TLS is redialed every heartbeat: its reason is logged once
        // (`linkFailed`, `refusedByPeer`), the links that come and go only at debug until one works.
        logger.log(level: brokeEarly ? .debug : .info, "linked to peer", metadata: ["peer": "\(name)"])
        reportMembership()
    }

    func outboundLost(_ name: String, channel: any Channel) {
        let (wasCurrent, acknowledged, failing, brokeEarly): (Bool, Bool, Bool, Bool) = state.withLock { s in
            guard let record = s.peers[name], let current = record.outbound, current === channel else { return (false, false, false, false) }
            s.peers[name]?.outbound = nil
            s.peers[name]?.sender = nil
            if !record.outboundAcknowledged { s.peers[name]?.brokeEarly = true }
            return (true, record.outboundAcknowledged, record.lastError != nil, record.brokeEarly)
        }
        if wasCurrent {
            logger.log(level: !acknowledged && brokeEarly ? .debug : .info, "link to peer closed", metadata: ["peer": "\(name)"])
            // Closed before a heartbeat came back, with no reason given: what the peer most likely did.
            if !acknowledged && !failing { linkFailed(name, reason: unacknowledged(name, "\(name) closed the link"), afterHandshake: true) }
        }
        failPending(to: name, because: .linkClosed(peer: name))
        reportMembership()
        redialLater(name)
    }

    /// A peer's link to us said hello. Without a link of ours to it, it is dialed at once rather than at the
    /// next retry: a peer that (re)starts is waiting for this node's greeting to join (SPEC §4.11).
    func inboundReady(_ name: String, channel: any Channel, tls: String, incarnation: UInt64 = 0, reverse: LinkSender) {
        let (previous, dialBack): ((any Channel)?, Bool) = state.withLock { s in
            let previous = s.peers[name]?.inbound
            s.peers[name]?.inbound = channel
            s.peers[name]?.incarnation = incarnation
            s.peers[name]?.reverse = reverse
            s.peers[name]?.reverseActive = false
            s.peers[name]?.greeted = false
            s.peers[name]?.certificate = name
            s.peers[name]?.tls = tls
            s.peers[name]?.lastHeard = clock.monotonicNanos
            return (previous, s.peers[name]?.outbound == nil)
        }
        if let previous, previous !== channel { previous.close(promise: nil) }
        if dialBack { dial(name) }
        reportMembership()
    }

    /// `peer` acknowledged a heartbeat on `channel`: what this node sends on it arrives.
    func acknowledged(_ peer: String, channel: any Channel) {
        let now = clock.monotonicNanos
        let recovered: Bool = state.withLock { s in
            guard let record = s.peers[peer], let current = record.outbound, current === channel else { return false }
            s.peers[peer]?.lastAcked = now
            s.peers[peer]?.lastError = nil
            s.peers[peer]?.refusal = nil
            s.peers[peer]?.outboundAcknowledged = true
            s.peers[peer]?.brokeEarly = false
            return record.brokeEarly
        }
        if recovered { logger.info("linked to peer", metadata: ["peer": "\(peer)", "note": "the peer acknowledges this node's link again"]) }
    }

    /// A hello on a new link from `name` (its certificate verified), naming `incarnation`: the address of the
    /// link already established from another daemon with that name, if that link is open and the peer was heard
    /// on it within the dead time. Two daemons with one name would otherwise take the link from each other at
    /// every redial, and the real node would flap dead and alive with nothing saying why. A daemon that restarted
    /// has a new incarnation too, but its old link closed with the process, or has gone silent.
    func duplicateInbound(_ name: String, incarnation: UInt64, channel: any Channel) -> String? {
        let now = clock.monotonicNanos
        let established: (any Channel)? = state.withLock { s in
            guard let record = s.peers[name], let inbound = record.inbound, inbound !== channel, record.incarnation != incarnation,
                  now - min(now, record.lastHeard) < UInt64(options.deadAfter.nanoseconds) else { return nil }
            return inbound
        }
        guard let established, established.isActive else { return nil }
        return Cluster.address(of: established)
    }

    /// "host:port" of the far end of `channel`.
    static func address(of channel: any Channel) -> String {
        guard let remote = channel.remoteAddress else { return "an unknown address" }
        guard let ip = remote.ipAddress, let port = remote.port else { return "\(remote)" }
        return ip.contains(":") ? "[\(ip)]:\(port)" : "\(ip):\(port)"
    }

    /// `peer` refused the link this node dialed, and said why (a `linkRefused` frame): shown in `cluster` and
    /// logged once for each new reason, not at every redial.
    func refusedByPeer(_ peer: String, _ refusal: LinkRefusal) {
        let reason = refusal.text(node: options.node, peer: peer)
        let changed: Bool = state.withLock { s in
            defer {
                s.peers[peer]?.lastError = reason
                s.peers[peer]?.refusal = reason
            }
            return s.peers[peer]?.refusal != reason
        }
        if changed { logger.error("peer refuses this node's link", metadata: ["peer": "\(peer)", "reason": "\(reason)"]) }
    }

    func inboundLost(_ name: String, channel: any Channel) {
        state.withLock { s in
            if let current = s.peers[name]?.inbound, current === channel {
                s.peers[name]?.inbound = nil
                s.peers[name]?.reverse = nil
                s.peers[name]?.reverseActive = false
            }
        }
        reportMembership()
    }

    /// A link to `name` failed: `afterHandshake` when it had passed TLS, so the peer's stated refusal, if any,
    /// is the better reason (a dial that fails says the peer is not even reachable now).
    func linkFailed(_ name: String, reason: String, afterHandshake: Bool = false) {
        let changed: Bool? = state.withLock { s in
            // The peer said why it refuses this node: the reset or close that follows says less.
            if afterHandshake, s.peers[name]?.refusal != nil { return nil }
            s.peers[name]?.refusal = nil
            defer { s.peers[name]?.lastError = reason }
            return s.peers[name]?.lastError != reason
        }
        // Dialing a dead peer fails every heartbeat: log each new reason once.
        if changed == true {
            logger.warning("peer unreachable", metadata: ["peer": "\(name)", "reason": "\(reason)"])
        } else {
            logger.debug("peer unreachable", metadata: ["peer": "\(name)", "reason": "\(reason)"])
        }
    }

    /// Why the link this node dialed to `name` on `channel`, through TLS, failed: `reason`, and, if the peer had
    /// not acknowledged anything on it yet, what the peer most likely did (a peer of an older version, or one
    /// whose refusal did not arrive, closes without saying why).
    func failureAfterHandshake(_ name: String, channel: any Channel, _ reason: String) -> String {
        let acknowledged = state.withLock { s in
            guard let record = s.peers[name], let current = record.outbound, current === channel else { return true }
            return record.outboundAcknowledged
        }
        return acknowledged ? reason : unacknowledged(name, reason)
    }

    private func unacknowledged(_ name: String, _ reason: String) -> String {
        "\(reason) right after the TLS handshake, before acknowledging anything: \(name) may not list \(options.node) "
            + "among its peers, or refuses it for another reason (its log says why, as a refused peer connection)"
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
                failPending(to: name, because: .ownerGone(owner: name))
            }
        }
        // Duties the dead owned move here now, not when this node's refresh timers next look (SPEC §4.13).
        if changes.contains(where: { !$0.1 }) { engine?.reconsiderDeferredRefreshes() }
        // A peer that greeted before it was alive here ends the join now (`joinIfReady`).
        if changes.contains(where: { $0.1 }) { joinIfReady() }
    }
}

/// The link this node dialed: after TLS, it greets and carries this node's messages through a `LinkSender`.
/// What comes back is the peer's echo of each heartbeat, which shows that what is sent here arrives, and, from a
/// peer whose own link to this node does not deliver, its changes (values, clears, states; SPEC §4.14).
final class OutboundLink: ChannelInboundHandler {
    typealias InboundIn = ClusterMessage

    private let cluster: Cluster
    private let peer: String
    private var sender: LinkSender?

    init(cluster: Cluster, peer: String) {
        self.cluster = cluster
        self.peer = peer
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is TLSPeerVerified {
            let sender = LinkSender(channel: context.channel, clock: cluster.clock)
            self.sender = sender
            cluster.outboundReady(peer, channel: context.channel, sender: sender)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { sender?.drain() }
        context.fireChannelWritabilityChanged()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard sender != nil else { return }
        let message = unwrapInboundIn(data)
        switch message {
        case .heartbeat:
            cluster.acknowledged(peer, channel: context.channel)
        case .value, .clear, .state, .leaseRelease:
            cluster.receivedReverse(message, from: peer)
        case .linkRefused(let refusal):
            cluster.refusedByPeer(peer, refusal)  // the peer closes the link next
        default:
            errorCaught(context: context, error: PeerError.unexpectedFrame(kind: message.kind, link: "a link this node dialed"))
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if sender != nil {
            cluster.outboundLost(peer, channel: context.channel)
        } else {
            cluster.redialLater(peer)
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let error = error as? PeerError, error.isProtocolViolation {
            cluster.logger.warning("malformed frame from peer; closing that link", metadata: ["peer": "\(peer)", "reason": "\(error)"])
        } else if error is ByteToMessageDecoderError {
            return  // bytes after a frame error, on a link already closing
        }
        let reason = LinkFailure.link(error)
        if sender == nil {
            cluster.linkFailed(peer, reason: reason)
        } else {
            cluster.linkFailed(peer, reason: cluster.failureAfterHandshake(peer, channel: context.channel, reason), afterHandshake: true)
        }
        context.close(promise: nil)
    }
}

/// A link a peer dialed. Until TLS has established who the peer is and its hello has arrived, the connection
/// holds a place of the cluster's unauthenticated budget (taken on accept) and must get there within
/// `handshakeTimeout`. Once linked, frames are handed to the cluster (the decoder before this handler closes a
/// link whose peer stalls in the middle of a frame); the same connection carries back the echo of each
/// heartbeat and, while this node's own link to the peer does not deliver, this node's changes. A malformed
/// frame closes this link only.
final class InboundLink: ChannelInboundHandler {
    typealias InboundIn = ClusterMessage
    typealias OutboundOut = ClusterMessage

    private enum State {
        /// Accepted, TLS handshake under way. Holds a place of the budget.
        case handshaking
        /// TLS verified the certificate for `peer`; its hello has not arrived. Holds a place of the budget.
        case verified(peer: String, tls: String)
        /// hello arrived: the peer's link, its frames go to the cluster.
        case linked(peer: String, reverse: LinkSender)
        /// Closed or removed; the place, if one was held, is given back.
        case closed
    }

    private let cluster: Cluster
    private var state = State.handshaking
    /// Closes the connection unless it is linked in time; on the cluster's clock (the engine's).
    private var handshakeDeadline: (any Cancellable)?

    init(cluster: Cluster) {
        self.cluster = cluster
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { startHandshakeDeadline(context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        startHandshakeDeadline(context: context)
        context.fireChannelActive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        finish()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let verified = event as? TLSPeerVerified, case .handshaking = state {
            state = .verified(peer: verified.node, tls: verified.protocolVersion)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable, case .linked(_, let reverse) = state { reverse.drain() }
        context.fireChannelWritabilityChanged()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let message = unwrapInboundIn(data)
        let peer: String
        switch state {
        case .linked(let linked, _):
            peer = linked
        case .verified(let verified, let tls):
            let incarnation: UInt64
            do {
                incarnation = try checkHello(message, peer: verified)
            } catch {
                return errorCaught(context: context, error: error)
            }
            if let established = cluster.duplicateInbound(verified, incarnation: incarnation, channel: context.channel) {
                // The established link is kept; the newcomer is told why before it is closed.
                context.writeAndFlush(wrapOutboundOut(.linkRefused(.duplicateNode(established: established))), promise: nil)
                let error = PeerError.duplicateNode(node: verified, from: Cluster.address(of: context.channel), established: established)
                cluster.refusedVerified(verified, from: context.channel.remoteAddress?.ipAddress ?? "unknown", reason: "\(error)")
                context.close(promise: nil)
                return
            }
            let reverse = LinkSender(channel: context.channel, clock: cluster.clock)
            state = .linked(peer: verified, reverse: reverse)
            handshakeDeadline?.cancel()
            handshakeDeadline = nil
            cluster.releaseUnauthenticated()
            cluster.inboundReady(verified, channel: context.channel, tls: tls, incarnation: incarnation, reverse: reverse)
            peer = verified
        case .handshaking, .closed:
            return
        }
        if case .heartbeat = message {
            // Echoed, so the peer knows its link to this node delivers (SPEC §4.14).
            context.writeAndFlush(wrapOutboundOut(message), promise: nil)
        }
        cluster.received(message, from: peer)
    }

    /// The hello's incarnation, once it confirms the certificate and speaks this node's protocol.
    private func checkHello(_ message: ClusterMessage, peer: String) throws(PeerError) -> UInt64 {
        guard case .hello(let node, let version, let incarnation, _) = message else { throw .notHello }
        guard node == peer else { throw .wrongNode(claimed: node, verified: peer) }
        guard version == ClusterMessage.protocolVersion else { throw .badVersion(theirs: version, ours: ClusterMessage.protocolVersion) }
        return incarnation
    }

    func channelInactive(context: ChannelHandlerContext) {
        if case .linked(let peer, _) = state { cluster.inboundLost(peer, channel: context.channel) }
        finish()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        let peer: String?
        switch state {
        case .verified(let verified, _), .linked(let verified, _): peer = verified
        case .handshaking, .closed: peer = nil
        }
        let host = context.channel.remoteAddress?.ipAddress ?? "unknown"
        switch error {
        case let error as PeerError where error.isProtocolViolation:
            cluster.logger.warning("malformed frame from peer; closing that link", metadata: ["peer": "\(peer ?? "unverified")", "reason": "\(error)"])
        case let error as PeerError where error.isRefusal:
            // Only after TLS verified the certificate: the hello that must confirm it does not.
            cluster.refusedVerified(peer ?? "unverified", from: host, reason: "\(error)")
        case let error as PeerError:
            if case .stalledMidFrame = error {
                cluster.logger.warning("peer stalled in the middle of a frame; closing that link", metadata: ["peer": "\(peer ?? "unverified")", "reason": "\(error)"])
            } else {
                cluster.logger.warning("closing a peer's link", metadata: ["peer": "\(peer ?? "unverified")", "reason": "\(error)"])
            }
        case is ByteToMessageDecoderError:
            return  // bytes after a frame error, on a link already closing
        default:
            // Before a certificate is verified, anyone who can reach the port can cause this as often as they like.
            if let peer {
                cluster.refusedVerified(peer, from: host, reason: Cluster.refusalReason(error))
            } else {
                cluster.refusedUnverified(from: host, reason: Cluster.refusalReason(error))
            }
        }
        context.close(promise: nil)
    }

    // MARK: Deadlines

    private func startHandshakeDeadline(context: ChannelHandlerContext) {
        guard case .handshaking = state, handshakeDeadline == nil else { return }
        let timeout = cluster.options.handshakeTimeout
        let eventLoop = context.eventLoop
        let loopBound = NIOLoopBound((self, context), eventLoop: eventLoop)
        // The clock may run this on any thread: the handler and its channel are touched on their event loop only.
        handshakeDeadline = cluster.clock.schedule(after: timeout) {
            eventLoop.execute {
                let (link, context) = loopBound.value
                link.handshakeDeadlinePassed(context: context, timeout: timeout)
            }
        }
    }

    private func handshakeDeadlinePassed(context: ChannelHandlerContext, timeout: Duration) {
        // Linked or closed while the deadline hopped to the event loop: nothing to do.
        let verified: String?
        switch state {
        case .handshaking: verified = nil
        case .verified(let peer, _): verified = peer
        case .linked, .closed: return
        }
        let remote = context.channel.remoteAddress.map { "\($0)" } ?? "unknown"
        let error = PeerError.handshakeTimeout(millis: timeout.milliseconds, verified: verified)
        if verified == nil {
            // Anyone who can reach the port can cause this, so it is not worth more than debug; refusals over the
            // budget are what an operator sees.
            cluster.logger.debug("closed an unauthenticated cluster connection: \(error)", metadata: ["from": "\(remote)"])
        } else {
            // Only a holder of a certificate from the cluster's CA gets here: a peer that is broken or too old.
            cluster.logger.info("closed a cluster connection \(error)", metadata: ["from": "\(remote)"])
        }
        context.close(promise: nil)
    }

    /// Cancels the deadline and gives back the place of a connection that closed before its hello.
    private func finish() {
        handshakeDeadline?.cancel()
        handshakeDeadline = nil
        switch state {
        case .handshaking, .verified: cluster.releaseUnauthenticated()
        case .linked, .closed: break
        }
        state = .closed
    }
}
