@testable import ExpirableCluster
import ExpirableCore
import ExpirableTLS
import NIOCore
import NIOEmbedded
import Synchronization
import Testing

/// Links without processes or sockets: a `LinkSender` on an `EmbeddedChannel`, and a `Cluster` on the engine's
/// `ManualClock` (`ClusterTimeTests.Node`) whose links are `EmbeddedChannel`s. Every timer of the cluster is on
/// that clock (heartbeat, redials, lease answers, handshake deadlines): advancing it runs them, and a link
/// handler's timer then waits on the channel's event loop, which `settle` runs.
@Suite("Cluster links in memory, on a manual clock")
struct InMemoryLinkTests {
    static func version(_ time: Int64, _ node: String = "node-a") -> Version { Version(time: time, node: node) }

    /// Moves `node`'s clock by `delta`, then runs what its timers handed to `channel`'s event loop.
    static func settle(_ node: ClusterTimeTests.Node, after delta: Duration, _ channel: EmbeddedChannel) {
        node.clock.advance(by: delta)
        channel.embeddedEventLoop.run()
    }

    /// A connection accepted from a peer, as the listener sets it up: a place of the unauthenticated budget taken,
    /// an `InboundLink`, and active (its handshake deadline running).
    static func accepted(by node: ClusterTimeTests.Node) throws -> EmbeddedChannel {
        #expect(node.cluster.admitUnauthenticated())
        let channel = EmbeddedChannel(handler: InboundLink(cluster: node.cluster))
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 7400)).wait()
        return channel
    }

    static func unauthenticated(_ node: ClusterTimeTests.Node) -> Int {
        node.cluster.admission.withLock { $0.unauthenticated }
    }

    static func written(_ channel: EmbeddedChannel) throws -> [ClusterMessage] {
        channel.embeddedEventLoop.run()
        var messages: [ClusterMessage] = []
        while let message = try channel.readOutbound(as: ClusterMessage.self) { messages.append(message) }
        return messages
    }

    @Test("§4.16: while the channel is not writable, changes to one name collapse to the newest, heartbeats to one; forwarded fetches are all kept")
    func queueCollapse() throws {
        let channel = EmbeddedChannel()
        channel.isWritable = false
        let sender = LinkSender(channel: channel, clock: ManualClock())
        sender.send(.value(name: "a", version: Self.version(1), remainingMillis: 1000, value: Secret("1"), lease: nil))
        sender.send(.clear(name: "a", version: Self.version(2)))
        sender.send(.value(name: "a", version: Self.version(3), remainingMillis: 1000, value: Secret("3"), lease: nil))
        // Older than the change waiting: does not replace it.
        sender.send(.value(name: "a", version: Self.version(2, "node-b"), remainingMillis: 1000, value: Secret("late"), lease: nil))
        sender.send(.heartbeat(wallMillis: 1, echoMillis: 0, holdMillis: 0))
        sender.send(.heartbeat(wallMillis: 2, echoMillis: 0, holdMillis: 0))
        sender.send(.clear(name: "b", version: Self.version(4)))
        sender.send(.fetch(id: 1, name: "c", deadlineMillis: 1000, echoMillis: 0))
        sender.send(.fetch(id: 2, name: "c", deadlineMillis: 1000, echoMillis: 0))
        #expect(try Self.written(channel).isEmpty)
        #expect(sender.queueLength == 5)
        channel.isWritable = true
        sender.drain()
        #expect(try Self.written(channel) == [
            .value(name: "a", version: Self.version(3), remainingMillis: 1000, value: Secret("3"), lease: nil),
            .heartbeat(wallMillis: 2, echoMillis: 0, holdMillis: 0),
            .clear(name: "b", version: Self.version(4)),
            .fetch(id: 1, name: "c", deadlineMillis: 1000, echoMillis: 0),
            .fetch(id: 2, name: "c", deadlineMillis: 1000, echoMillis: 0),
        ])
        #expect(sender.queueLength == 0)
    }

    @Test("§10 replication lag: the changes waiting on a link and how long the oldest has waited; a newer change to a waiting name keeps its age")
    func backlog() throws {
        let channel = EmbeddedChannel()
        channel.isWritable = false
        let clock = ManualClock()
        let sender = LinkSender(channel: channel, clock: clock)
        #expect(sender.backlog.changes == 0 && sender.backlog.oldest == .zero)
        sender.send(.value(name: "a", version: Self.version(1), remainingMillis: 1000, value: Secret("1"), lease: nil))
        clock.advance(by: .seconds(2))
        sender.send(.value(name: "a", version: Self.version(2), remainingMillis: 1000, value: Secret("2"), lease: nil))
        sender.send(.clear(name: "b", version: Self.version(3)))
        sender.send(.heartbeat(wallMillis: 1, echoMillis: 0, holdMillis: 0))
        clock.advance(by: .seconds(1))
        #expect(sender.backlog.changes == 2, "a and b; the heartbeat is no change")
        #expect(sender.backlog.oldest == .seconds(3), "a has waited since its first change")
        channel.isWritable = true
        sender.drain()
        #expect(sender.backlog.changes == 0 && sender.backlog.oldest == .zero)
    }

    @Test("§4.14: while node-c's link to node-a goes unechoed and node-a's link to node-c delivers, changes go back on node-a's link, starting with everything held")
    func changesGoAroundAOneWayCut() throws {
        let node = try ClusterTimeTests.Node()
        defer { node.remove() }
        let outbound = EmbeddedChannel(), inbound = EmbeddedChannel()
        node.cluster.outboundReady("node-a", channel: outbound, sender: LinkSender(channel: outbound, clock: node.clock))
        node.cluster.inboundReady("node-a", channel: inbound, tls: "TLSv1.3", reverse: LinkSender(channel: inbound, clock: node.clock))
        node.engine.applyReplica("token", value: Secret("from-b"), remainingMillis: 60_000, version: Self.version(ClusterTimeTests.real, "node-b"))
        _ = try Self.written(outbound)  // the greeting
        // node-a keeps sending heartbeats; none of node-c's is echoed.
        for _ in 0..<10 {
            node.run(for: .milliseconds(100))
            node.heartbeat(from: "node-a", peerWall: node.clock.unixMillis)
        }
        node.cluster.routeChangesAroundCuts(now: node.clock.monotonicNanos)
        let resync = try Self.written(inbound)
        #expect(resync.count == 1, "\(resync)")
        guard case .value(let name, _, let remaining, let value, _) = resync.first else { return }
        #expect(name == "token" && value == Secret("from-b") && remaining == 59_000)
        // A change made during the cut goes the way that works.
        node.engine.clear("token")
        #expect(try Self.written(inbound).map(\.kind) == ["clear"])
        #expect(try Self.written(outbound).filter { $0.kind != "heartbeat" }.isEmpty)
        // node-a echoes again: changes go on node-c's own link.
        node.cluster.acknowledged("node-a", channel: outbound)
        node.cluster.routeChangesAroundCuts(now: node.clock.monotonicNanos)
        node.engine.clear("token")
        #expect(try Self.written(outbound).map(\.kind) == ["clear"])
        #expect(try Self.written(inbound).isEmpty)
    }

    @Test("§4.14: a lease release sent back on the link this node dialed (behind its state, around a one-way cut) ends the lease, and the link stays")
    func releaseComesBackAroundACut() throws {
        let node = try ClusterTimeTests.Node()
        defer { node.remove() }
        let outbound = EmbeddedChannel(handler: OutboundLink(cluster: node.cluster, peer: "node-a"))
        try outbound.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 7400)).wait()
        outbound.pipeline.fireUserInboundEventTriggered(TLSPeerVerified(node: "node-a", protocolVersion: "TLSv1.3"))
        let number = LeaseNumber(round: 7, node: "node-a")
        node.cluster.leaseUnderWay("token", number: number, from: "node-a")
        let asker = LeaseNumber(round: 8, node: "node-c")
        #expect(node.cluster.state.withLock { $0.grants.unfinished("token", besides: asker) } == number)
        try outbound.writeInbound(ClusterMessage.leaseRelease(name: "token", number: number))
        #expect(outbound.isActive, "the link stays")
        #expect(node.cluster.state.withLock { $0.grants.unfinished("token", besides: asker) } == nil, "the lease is over")
        _ = try? outbound.finish()
    }

    @Test("§4.10: without a majority the caller's FETCH error names each node that refused and why (a refusal arrives as a coded frame) and those that did not answer; nothing is called")
    func noQuorumNamesRefusals() throws {
        let node = try ClusterTimeTests.Node(quorum: ["token": .seconds(1)])
        defer { node.remove() }
        let outcome = Mutex<FetchOutcome?>(nil)
        let called = Atomic<Bool>(false)
        let local = ClosureFetcher {
            called.store(true, ordering: .relaxed)
            return .failure(.fetch("the plugin was called"))
        }
        // node-a and node-b are alive in node-c's view (linked both ways, just heard from), so their answers are
        // waited for.
        let links = [EmbeddedChannel(), EmbeddedChannel()]
        node.cluster.state.withLock { s in
            for (peer, link) in zip(["node-a", "node-b"], links) {
                s.peers[peer]?.outbound = link
                s.peers[peer]?.inbound = link
                s.peers[peer]?.lastHeard = node.clock.monotonicNanos
                s.peers[peer]?.lastAcked = node.clock.monotonicNanos
            }
        }
        #expect(node.cluster.liveNodes() == ["node-a", "node-b", "node-c"])
        // node-c has just started: its own grants refuse (it waits out the longest lease, 1 s × 10/9 + 3 s).
        node.cluster.callUnderLease("token", local: local, request: .plain, timeout: .seconds(1)) { answer in outcome.withLock { $0 = answer } }
        let number = try #require(node.cluster.state.withLock { $0.leases["token"]?.attempt.number })
        var frame = ByteBuffer()
        ClusterFrame.encode(.leaseAnswer(name: "token", number: number, refusal: .promised(LeaseNumber(round: 3, node: "node-b"), remaining: .milliseconds(1200)),
                                         newest: nil, unfinished: nil, stateVersion: nil), into: &frame)
        node.cluster.received(try #require(try ClusterFrame.decode(&frame)), from: "node-a")
        guard case .failure(let error)? = outcome.withLock({ $0?.result }) else {
            Issue.record("no failure: \(String(describing: outcome.withLock { $0?.result }))")
            return
        }
        #expect(error.code == .fetch)
        #expect(error.message == "no quorum for token: a plugin call needs a lease granted by 2 of the 3 configured nodes, and 0 granted it "
            + "(node-a: it promised lease 3@node-b for 1200 ms more; node-c: it started less than the longest lease ago and grants none for 4112 ms; "
            + "no answer from node-b); values already held are still served")
        #expect(outcome.withLock { $0?.route } == .notCalled)
        let pluginCalled = called.load(ordering: .relaxed)
        #expect(!pluginCalled)
    }

    @Test("a peer of protocol 7 (lease refusals as sentences) is refused at hello, with both versions named")
    func olderProtocolRefused() throws {
        let node = try ClusterTimeTests.Node()
        defer { node.remove() }
        #expect(ClusterMessage.protocolVersion == 9)
        #expect(node.cluster.admitUnauthenticated(), "as the accept does")
        let inbound = EmbeddedChannel(handler: InboundLink(cluster: node.cluster))
        try inbound.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 7400)).wait()
        inbound.pipeline.fireUserInboundEventTriggered(TLSPeerVerified(node: "node-a", protocolVersion: "TLSv1.3"))
        try inbound.writeInbound(ClusterMessage.hello(node: "node-a", protocolVersion: 7, expirables: []))
        #expect(!inbound.isActive, "the link is closed")
        #expect(node.cluster.state.withLock { $0.peers["node-a"]?.inbound == nil })
        #expect(PeerError.badVersion(theirs: 7, ours: ClusterMessage.protocolVersion).description == "cluster protocol 7, this node speaks 9")
        _ = try? inbound.finish()
    }

    @Test("members() while a heartbeat lands after it read the clock: a peer heard 'in the future' is heard 0 ms ago (it trapped on the subtraction, killing a node that was asked for its status)")
    func heardAfterTheClockWasRead() throws {
        let node = try ClusterTimeTests.Node()
        defer { node.remove() }
        node.heartbeat(from: "node-a", peerWall: node.clock.unixMillis)
        node.cluster.state.withLock { $0.peers["node-a"]!.lastHeard = node.clock.monotonicNanos + 5_000_000 }
        let member = node.cluster.members().first { $0.node == "node-a" }
        #expect(member?.lastHeardMillis == 0)
    }

    @Test("ownership follows liveness on the manual clock: a peer linked both ways, heard and echoed is alive; silent for the dead time it is not, and only its names move")
    func ownershipFollowsLiveness() throws {
        let node = try ClusterTimeTests.Node()
        defer { node.remove() }
        var links: [String: EmbeddedChannel] = [:]
        for peer in ["node-a", "node-b"] {
            let outbound = EmbeddedChannel(), inbound = EmbeddedChannel()
            links[peer] = outbound
            node.cluster.outboundReady(peer, channel: outbound, sender: LinkSender(channel: outbound, clock: node.clock))
            node.cluster.inboundReady(peer, channel: inbound, tls: "TLSv1.3", reverse: LinkSender(channel: inbound, clock: node.clock))
        }
        #expect(node.cluster.liveNodes() == ["node-a", "node-b", "node-c"])
        let names = (0..<64).map { "t\($0)" }
        let before = Dictionary(uniqueKeysWithValues: names.map { ($0, node.cluster.owner(of: $0)) })
        #expect(Set(before.values) == ["node-a", "node-b", "node-c"])
        // node-b keeps talking and echoing; node-a falls silent.
        for _ in 0..<10 {
            node.run(for: .milliseconds(100))
            node.heartbeat(from: "node-b", peerWall: node.clock.unixMillis)
            node.cluster.acknowledged("node-b", channel: links["node-b"]!)
        }
        #expect(node.cluster.liveNodes() == ["node-b", "node-c"])
        for name in names {
            let after = node.cluster.owner(of: name)
            if before[name] == "node-a" {
                #expect(after == Ownership.owner(of: name, among: ["node-b", "node-c"]))
            } else {
                #expect(after == before[name], "\(name) moved from \(before[name]!) to \(after) though its owner is alive")
            }
        }
    }

    @Test("§4.13: a fetch forwarded to an owner that never answers fails at the asker's time, on the injected clock")
    func forwardTimesOutOnTheInjectedClock() throws {
        let node = try ClusterTimeTests.Node()
        defer { node.remove() }
        let outbound = EmbeddedChannel()
        node.cluster.outboundReady("node-a", channel: outbound, sender: LinkSender(channel: outbound, clock: node.clock))
        _ = try Self.written(outbound)
        let outcome = Mutex<ForwardOutcome?>(nil)
        node.cluster.forward("token", to: "node-a", timeout: .seconds(2)) { answer in outcome.withLock { $0 = answer } }
        #expect(try Self.written(outbound).map(\.kind) == ["fetch"])
        node.clock.advance(by: .milliseconds(1999))
        #expect(outcome.withLock { $0 } == nil)
        node.clock.advance(by: .milliseconds(1))
        guard case .answered(.failure(let error)) = outcome.withLock({ $0 }) else {
            Issue.record("no timeout: \(String(describing: outcome.withLock { $0 }))")
            return
        }
        #expect(error == .timeout("node-a, the owner of token, did not answer within 2000ms"))
    }

    @Test("a replicated value's validity is fixed on arrival on this node's monotonic clock, and an older version never replaces a newer one")
    func replicaRoute() throws {
        let node = try ClusterTimeTests.Node()
        defer { node.remove() }
        node.cluster.received(.value(name: "token", version: Self.version(ClusterTimeTests.real + 10), remainingMillis: 1000, value: Secret("new"), lease: nil), from: "node-a")
        node.cluster.received(.value(name: "token", version: Self.version(ClusterTimeTests.real, "node-b"), remainingMillis: 60_000, value: Secret("old"), lease: nil), from: "node-b")
        #expect(node.engine.cachedValue("token")?.value == Secret("new"))
        // The wall clock jumps an hour back: validity does not move.
        node.clock.shiftWallClock(by: .seconds(-3600))
        node.run(for: .milliseconds(400))
        #expect(node.engine.replicas().first?.remainingMillis == 600)
        node.run(for: .milliseconds(600))
        #expect(node.engine.cachedValue("token") == nil)
        #expect(node.engine.version(of: "token") == Self.version(ClusterTimeTests.real + 10))
    }

    // MARK: Timers on the engine's clock

    @Test("a connection that never finishes its TLS handshake is closed, and its place given back, exactly when the engine's clock passes the handshake deadline")
    func handshakeDeadlineOnTheInjectedClock() throws {
        let node = try ClusterTimeTests.Node()
        defer { node.remove() }
        let timeout = node.cluster.options.handshakeTimeout
        let channel = try Self.accepted(by: node)
        #expect(Self.unauthenticated(node) == 1)
        Self.settle(node, after: timeout - .milliseconds(1), channel)
        #expect(channel.isActive, "closed before its deadline")
        Self.settle(node, after: .milliseconds(1), channel)
        #expect(!channel.isActive)
        #expect(Self.unauthenticated(node) == 0)
        #expect(node.clock.pendingTimers == 0)
    }

    @Test("a peer verified by TLS that never says hello is closed when the engine's clock passes the handshake deadline; one that says hello in time is kept")
    func helloDeadlineOnTheInjectedClock() throws {
        let node = try ClusterTimeTests.Node()
        defer { node.remove() }
        let timeout = node.cluster.options.handshakeTimeout
        // A link of this node's own to node-a, so its hello does not make this node dial it.
        let outbound = EmbeddedChannel()
        node.cluster.outboundReady("node-a", channel: outbound, sender: LinkSender(channel: outbound, clock: node.clock))
        let silent = try Self.accepted(by: node), greeting = try Self.accepted(by: node)
        for channel in [silent, greeting] {
            channel.pipeline.fireUserInboundEventTriggered(TLSPeerVerified(node: "node-a", protocolVersion: "TLSv1.3"))
        }
        Self.settle(node, after: timeout / 2, greeting)
        try greeting.writeInbound(ClusterMessage.hello(node: "node-a", protocolVersion: ClusterMessage.protocolVersion, expirables: node.cluster.options.digests))
        #expect(Self.unauthenticated(node) == 1, "hello gives back the place")
        Self.settle(node, after: timeout / 2 - .milliseconds(1), silent)
        #expect(silent.isActive)
        Self.settle(node, after: .milliseconds(1), silent)
        #expect(!silent.isActive)
        #expect(Self.unauthenticated(node) == 0)
        Self.settle(node, after: timeout * 2, greeting)
        #expect(greeting.isActive, "a linked peer's deadline is cancelled")
        _ = try? greeting.finish()
    }

    @Test("heartbeats go out each time the engine's clock passes a heartbeat, and none after stop")
    func heartbeatsOnTheInjectedClock() throws {
        let node = try ClusterTimeTests.Node()
        defer { node.remove() }
        let heartbeat = node.cluster.options.heartbeat
        let outbound = EmbeddedChannel()
        node.cluster.outboundReady("node-a", channel: outbound, sender: LinkSender(channel: outbound, clock: node.clock))
        _ = try Self.written(outbound)  // the greeting
        node.cluster.scheduleHeartbeat()
        node.clock.advance(by: heartbeat - .milliseconds(1))
        #expect(try Self.written(outbound).isEmpty)
        node.clock.advance(by: .milliseconds(1))
        #expect(try Self.written(outbound).map(\.kind) == ["heartbeat"])
        for _ in 0..<5 {
            node.cluster.acknowledged("node-a", channel: outbound)  // echoed: the link is kept
            node.clock.advance(by: heartbeat)
            #expect(try Self.written(outbound).map(\.kind) == ["heartbeat"])
        }
        #expect(node.clock.pendingTimers == 1, "one tick scheduled at a time")
        node.cluster.stop()
        #expect(node.clock.pendingTimers == 0)
        node.clock.advance(by: heartbeat * 10)
        #expect(try Self.written(outbound).isEmpty)
    }

    @Test("a peer silent for the dead time is found dead by the tick on the engine's clock: the fetch forwarded to it goes to the next owner and the link it stopped echoing on is closed")
    func livenessOnTheInjectedClock() throws {
        let node = try ClusterTimeTests.Node()
        defer { node.remove() }
        let deadAfter = node.cluster.options.deadAfter
        let outbound = EmbeddedChannel(), inbound = EmbeddedChannel()
        try outbound.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 7400)).wait()
        node.cluster.outboundReady("node-a", channel: outbound, sender: LinkSender(channel: outbound, clock: node.clock))
        node.cluster.inboundReady("node-a", channel: inbound, tls: "TLSv1.3", reverse: LinkSender(channel: inbound, clock: node.clock))
        #expect(node.cluster.liveNodes() == ["node-a", "node-c"])
        let outcome = Mutex<ForwardOutcome?>(nil)
        node.cluster.forward("token", to: "node-a", timeout: .seconds(30)) { answer in outcome.withLock { $0 = answer } }
        node.cluster.scheduleHeartbeat()
        node.clock.advance(by: deadAfter - .milliseconds(1))
        #expect(outcome.withLock { $0 } == nil)
        #expect(outbound.isActive)
        node.clock.advance(by: .milliseconds(1))
        guard case .ownerLost(.ownerGone(let owner)) = outcome.withLock({ $0 }) else {
            Issue.record("the forward did not fail over: \(String(describing: outcome.withLock { $0 }))")
            return
        }
        #expect(owner == "node-a")
        #expect(node.cluster.liveNodes() == ["node-c"])
        #expect(!outbound.isActive, "the unechoed link is dropped")
        node.cluster.stop()
    }

    @Test("a failed dial is tried again when the engine's clock passes a heartbeat, not before")
    func redialOnTheInjectedClock() async throws {
        let node = try ClusterTimeTests.Node()
        defer { node.remove() }
        let heartbeat = node.cluster.options.heartbeat
        let dialing = { node.cluster.state.withLock { $0.peers["node-a"]!.dialing } }
        // node-a's address, 127.0.0.1:2, refuses the connection.
        node.cluster.dial("node-a")
        #expect(await node.timerScheduled(), "no redial scheduled on the engine's clock")
        #expect(node.clock.nextTimerDelay == heartbeat)
        #expect(!dialing())
        #expect(node.cluster.state.withLock { $0.peers["node-a"]!.lastError }?.contains("refused") == true)
        node.clock.advance(by: heartbeat - .milliseconds(1))
        #expect(!dialing())
        node.clock.advance(by: .milliseconds(1))
        #expect(dialing(), "dialing again")
        #expect(await node.timerScheduled(), "and again a heartbeat after the second failure")
        node.cluster.stop()
        node.clock.advance(by: heartbeat)
        #expect(!dialing(), "no dial after stop")
    }

    @Test("§4.10: a lease no peer answers is given up when the engine's clock passes the answer wait, and the caller gets the no-quorum error without a call")
    func leaseAnswerWaitOnTheInjectedClock() throws {
        let node = try ClusterTimeTests.Node()
        defer { node.remove() }
        let outbound = EmbeddedChannel()
        node.cluster.outboundReady("node-a", channel: outbound, sender: LinkSender(channel: outbound, clock: node.clock))
        _ = try Self.written(outbound)  // the greeting
        // node-a is alive (linked both ways, just heard from), node-b is not: node-a and this node could make a
        // majority, so node-a's answer is waited for.
        node.cluster.state.withLock { s in
            s.peers["node-a"]?.inbound = outbound
            s.peers["node-a"]?.lastHeard = node.clock.monotonicNanos
        }
        #expect(node.cluster.liveNodes() == ["node-a", "node-c"])
        let outcome = Mutex<FetchOutcome?>(nil)
        let local = ClosureFetcher {
            Issue.record("called without a lease")
            return .failure(.fetch("called"))
        }
        node.cluster.callUnderLease("token", local: local, request: .plain, timeout: .seconds(1)) { result in outcome.withLock { $0 = result } }
        #expect(try Self.written(outbound).map(\.kind) == ["lease-request"])
        node.clock.advance(by: node.cluster.leaseAnswerWait - .milliseconds(1))
        #expect(outcome.withLock { $0 } == nil)
        node.clock.advance(by: .milliseconds(1))
        guard case .failure(let error)? = outcome.withLock({ $0?.result }) else {
            Issue.record("the caller got no error: \(String(describing: outcome.withLock { $0?.result }))")
            return
        }
        #expect(error.message.hasPrefix("no quorum for token: a plugin call needs a lease granted by 2 of the 3 configured nodes, and 1 granted it"), "\(error)")
        #expect(error.message.contains("(node-b: dead in this node's view; no answer from node-a)"), "\(error)")
    }

    @Test("§4.10: with the peers alive in its view too few for a majority, a lease is given up at once, without waiting for answers")
    func leaseGivenUpAtOnceWithoutAMajorityAlive() throws {
        let node = try ClusterTimeTests.Node()
        defer { node.remove() }
        let outcome = Mutex<FetchOutcome?>(nil)
        let local = ClosureFetcher {
            Issue.record("called without a lease")
            return .failure(.fetch("called"))
        }
        node.cluster.callUnderLease("token", local: local, request: .plain, timeout: .seconds(1)) { result in outcome.withLock { $0 = result } }
        guard case .failure(let error)? = outcome.withLock({ $0?.result }) else {
            Issue.record("the caller got no error before any time passed: \(String(describing: outcome.withLock { $0?.result }))")
            return
        }
        #expect(error.message == "no quorum for token: a plugin call needs a lease granted by 2 of the 3 configured nodes, and 1 granted it "
            + "(node-a, node-b: dead in this node's view); values already held are still served", "\(error)")
        #expect(node.cluster.state.withLock { $0.leases["token"] == nil && $0.underWay["token"] == nil }, "nothing left under way")
    }
}
