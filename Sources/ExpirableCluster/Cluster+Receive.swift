import ExpirableCore
import NIOCore

extension Cluster {
    /// Handles one message from `peer`'s link.
    func received(_ message: ClusterMessage, from peer: String) {
        // Frames read just after a pause may have waited in the socket through it: notice it before acting.
        noticePause()
        state.withLock { $0.peers[peer]?.lastHeard = clock.monotonicNanos }
        switch message {
        case .hello(_, _, _, let digests):
            compare(digests, from: peer)
            leaseGreetingBegan(from: peer)
        case .heartbeat(let wall, let echo, let hold):
            receivedHeartbeat(from: peer, wall: wall, echo: echo, hold: hold)
            greeted(peer)
            leaseGreetingEnded(from: peer)
        case .value, .clear, .state:
            applyChange(message, from: peer)
        case .fetch(let id, let name, let deadline, let echo):
            answerForward(id: id, name: name, deadlineMillis: deadline, echo: echo, for: peer)
        case .fetched(let id, let version, let remaining, let value, let stale):
            let fetched = arriving(value, remainingMillis: remaining, version: version)
            complete(id, .success(stale ? fetched.markedStale() : fetched))
        case .leaseRequest(let name, let number, let duration, let stateVersion):
            leaseRequested(name, number: number, durationMillis: duration, stateVersion: stateVersion, by: peer)
        case .leaseAnswer(let name, let number, let refusal, let newest, let unfinished, let stateVersion):
            leaseAnswer(name, number: number, refusal: refusal, newest: newest, unfinished: unfinished, stateVersion: stateVersion, from: peer)
        case .leaseUnderWay(let name, let number):
            leaseUnderWay(name, number: number, from: peer)
        case .leaseRelease(let name, let number):
            leaseReleased(name, number: number)
        case .linkRefused:
            break  // only ever sent on a link the refusing node accepted, which is one this node dialed
        case .fetchFailed(let id, let code, let message, let permanent, let retryAfter):
            let error: ExpirableError = code == ExpirableError.Code.timeout.rawValue
                ? .timeout(message)
                : .fetch(message, class: permanent ? .permanent : .temporary, retryAfter: retryAfter.map { clock.unixMillis + $0 })
            complete(id, .failure(error))
        }
    }

    /// A change `peer` sent back on the link this node dialed, because its own link to this node does not deliver
    /// (SPEC §4.14). Applied as if it had come the usual way, but it is no evidence that the peer's link delivers:
    /// liveness is not touched.
    func receivedReverse(_ message: ClusterMessage, from peer: String) {
        noticePause()
        applyChange(message, from: peer)
    }

    /// A value, clear or plugin state from `peer`, whichever link it came on.
    private func applyChange(_ message: ClusterMessage, from peer: String) {
        switch message {
        case .value(let name, let version, let remaining, let value, let lease):
            let fetched = arriving(value, remainingMillis: remaining, version: version)
            guard !fenced(name, lease: lease) else {
                logger.warning("refused a value fetched under a superseded lease", metadata: ["expirable": "\(name)", "lease": "\(lease!)", "from": "\(peer)"])
                return
            }
            engine?.applyReplica(name, fetched)
        case .clear(let name, let version):
            observe(version)
            engine?.applyClear(name, version: version)
        case .state(let name, let version, let state, let lease):
            observe(version)
            // Never fenced, unlike a value: a call whose lease was superseded (a holder cut off or paused) may
            // still have spent the old state, and the state it got is then the only one that works. The newest
            // version wins; a call is never made before the states of the leases before it are in (Lease.swift).
            if let lease { self.state.withLock { $0.grants.observe(name, number: lease) } }
            engine?.applyReplicaState(name, state: state, version: version)
        case .leaseRelease(let name, let number):
            // Sent back around a one-way cut after its state (Cluster+Quorum `release`).
            leaseReleased(name, number: number)
        default:
            break
        }
    }

    /// A value from a peer, by replication or as the answer to a forwarded fetch: its version moves this node's
    /// hybrid clock, and its validity becomes a deadline on this node's monotonic clock now, once. The engine
    /// takes it by one route (`Engine.applyReplica`, or the flight of the forwarded fetch).
    private func arriving(_ value: Secret, remainingMillis: Int64?, version: Version) -> Fetched {
        observe(version)
        return Fetched(value: value, remainingMillis: remainingMillis, version: version, receivedOn: clock)
    }

    private func observe(_ version: Version) {
        state.withLock { $0.hlc.observe(version.time) }
    }

    /// Remembers `peer`'s cluster-scoped expirables (they decide which nodes may own a name) and reports those
    /// configured differently here and there, both sides named: plugin, refresh, single_flight, keyed, and the
    /// expirables only one of the two has as cluster-scoped.
    private func compare(_ theirs: [ExpirableDigest], from peer: String) {
        let mine = digestsByName
        let theirsByName = Dictionary(theirs.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        var disagreements: [ConfigDisagreement] = []
        for name in Set(mine.keys).union(theirsByName.keys).sorted() {
            switch (mine[name], theirsByName[name]) {
            case (let here?, let there?):
                let differences = [
                    ("plugin", here.plugin, there.plugin), ("refresh", here.refresh, there.refresh),
                    ("single_flight", here.singleFlight, there.singleFlight), ("keyed", "\(here.keyed)", "\(there.keyed)"),
                ].filter { $0.1 != $0.2 }
                guard !differences.isEmpty else { continue }
                let text = "\(name): here \(differences.map { "\($0.0)=\($0.1)" }.joined(separator: ", ")); on \(peer) \(differences.map { "\($0.0)=\($0.2)" }.joined(separator: ", "))"
                disagreements.append(ConfigDisagreement(name: name, text: text + (here.keyed != there.keyed ? " (keyed and plain are owned apart, each among the nodes that define it so)" : "")))
            case (.some, nil):
                disagreements.append(ConfigDisagreement(name: name, text: "\(name): here cluster-scoped; on \(peer) not configured as cluster-scoped (owned among the nodes that have it)"))
            case (nil, .some):
                disagreements.append(ConfigDisagreement(name: name, text: "\(name): here not configured as cluster-scoped; on \(peer) cluster-scoped"))
            case (nil, nil):
                break
            }
        }
        state.withLock { s in
            s.peers[peer]?.disagreements = disagreements
            s.peers[peer]?.digests = theirsByName
        }
        for disagreement in disagreements {
            logger.error("peer configuration disagrees", metadata: ["peer": "\(peer)", "difference": "\(disagreement.text)"])
        }
    }

    // MARK: Forwarded fetches

    /// Sends a fetch of `name` to its owner `owner`; `completion` gets the owner's answer or an error if it
    /// does not answer within `timeout`, or `.ownerLost` if it cannot be asked or goes away first.
    func forward(_ name: String, to owner: String, timeout: Duration, completion: @escaping @Sendable (ForwardOutcome) -> Void) {
        let id: UInt64 = state.withLock { s in
            let id = s.nextRequestID
            s.nextRequestID += 1
            s.counters.forwardsSent &+= 1
            s.pending[id] = ClusterState.PendingFetch(peer: owner, completion: completion, timeout: nil)
            return id
        }
        let scheduled = clock.schedule(after: timeout) { [self] in
            complete(id, .failure(.timeout(PeerError.ownerSilent(owner: owner, name: name, millis: timeout.milliseconds).description)))
        }
        let echo: Int64 = state.withLock { s in
            s.pending[id]?.timeout = scheduled
            return s.time.peers[owner]?.lastWall ?? 0
        }
        if !send(.fetch(id: id, name: name, deadlineMillis: timeout.milliseconds, echoMillis: echo), to: owner) {
            complete(id, .ownerLost(.ownerUnreachable(owner: owner, name: name)))
        }
    }

    func complete(_ id: UInt64, _ result: Result<Fetched, ExpirableError>) {
        complete(id, .answered(result))
    }

    private func complete(_ id: UInt64, _ outcome: ForwardOutcome) {
        let pending: ClusterState.PendingFetch? = state.withLock { s in
            let pending = s.pending.removeValue(forKey: id)
            if pending != nil {
                if case .answered(.success) = outcome {} else { s.counters.forwardFailures &+= 1 }
            }
            return pending
        }
        guard let pending else { return }
        pending.timeout?.cancel()
        pending.completion(outcome)
    }

    /// The fetches forwarded to `peer` will not be answered: they go to the next owner (`ClusterFetcher`).
    func failPending(to peer: String, because reason: PeerError) {
        let ids = state.withLock { s in s.pending.filter { $0.value.peer == peer }.map(\.key) }
        for id in ids { complete(id, .ownerLost(reason)) }
    }

    /// A peer asks this node, the owner in its view, to fetch `name`: the engine's single flight serves it, unless
    /// the asking node has given up on it (its deadline passed, or it was sent before the peer heard from this node
    /// after a pause, when the peer had taken this node for dead and gone to the next owner). Those are answered
    /// with an error at once, without a plugin call: a caller still waiting learns why, and no call is made twice.
    private func answerForward(id: UInt64, name: String, deadlineMillis: Int64, echo: Int64, for peer: String) {
        guard let engine, engine.scope(of: name) == .cluster else {
            send(.fetchFailed(id: id, code: ExpirableError.Code.notFound.rawValue, message: "\(options.node) has no cluster-scoped expirable named '\(name)'", permanent: false, retryAfterMillis: nil), to: peer)
            return
        }
        let now = clock.monotonicNanos
        let (pause, stale) = state.withLock { s in (s.pauses.last, s.pauses.isStale(echo: echo, now: now, window: rejoinWindow)) }
        // Read within a heartbeat of noticing a pause, the request may have waited in the socket since it began.
        let queued = pause.flatMap { now - min(now, $0.noticed) < UInt64(options.heartbeat.nanoseconds) ? $0 : nil }
        let deadline = ForwardDeadline(millis: deadlineMillis, received: now, pause: queued)
        let dropped: PeerError?
        if deadline.remaining(at: now) == nil {
            dropped = .deadlinePassed(node: options.node, peer: peer, name: name, deadlineMillis: deadlineMillis, pauseMillis: queued?.millis)
        } else if stale, let pause {
            dropped = .sentBeforeRejoin(node: options.node, peer: peer, name: name, pauseMillis: pause.millis)
        } else {
            dropped = nil
        }
        if let dropped {
            state.withLock { $0.counters.forwardsDropped &+= 1 }
            logger.info("dropped a forwarded fetch without calling the plugin", metadata: ["expirable": "\(name)", "peer": "\(peer)", "reason": "\(dropped)"])
            send(.fetchFailed(id: id, code: ExpirableError.Code.timeout.rawValue, message: dropped.description, permanent: false, retryAfterMillis: nil), to: peer)
            return
        }
        state.withLock { s in
            s.forwardsIn[name, default: 0] += 1
            s.counters.forwardsServed &+= 1
        }
        // A paced call starting after the deadline, or later than a local caller would wait for it (a plugin's
        // retry-after beyond request_timeout), is not waited for: the last error is answered at once, with the
        // time of the next attempt, which the asking node's callers then get at once too (§3.18, §4.12).
        let patience = deadline.remaining(at: now).map { left in options.forwardPatience.map { min(left, $0) } ?? left }
        engine.fetchForPeer(name, patience: patience) { [self] result in
            state.withLock { s in
                s.forwardsIn[name, default: 1] -= 1
                if s.forwardsIn[name] == 0 { s.forwardsIn[name] = nil }
            }
            switch result {
            case .success(let answer):
                send(.fetched(id: id, version: answer.version ?? nextVersion(), remainingMillis: answer.remainingMillis, value: answer.value, stale: answer.isStale), to: peer)
            case .failure(let error):
                let retryAfter = error.retryAfter.map { max(0, $0 - clock.unixMillis) }
                send(.fetchFailed(id: id, code: error.code.rawValue, message: error.message, permanent: error.errorClass == .permanent, retryAfterMillis: retryAfter), to: peer)
            }
        }
    }

    /// Whether fetches of `name` forwarded by peers are under way here.
    func servingForwards(of name: String) -> Bool {
        state.withLock { ($0.forwardsIn[name] ?? 0) > 0 }
    }
}

/// A cluster-scoped expirable's fetcher: the owner calls its own plugin; any other node asks the owner. Nothing
/// starts before the join has ended (SPEC §4.11), and a fetch whose owner goes away goes to the next owner
/// within the same time (§4.13).
struct ClusterFetcher: ForwardingFetcher {
    let name: String
    let local: any Fetcher
    let cluster: Cluster
    let timeout: Duration

    func fetch(completion: @escaping @Sendable (Result<Fetched, ExpirableError>) -> Void) {
        fetch(.plain) { completion($0.result) }
    }

    /// The plugin's state goes to a local call; a forwarded fetch is answered by the owner's engine with its
    /// own (replicated) state, and the owner replicates what its call did to it, so nothing changes here.
    func fetch(_ request: FetchRequest, completion: @escaping @Sendable (FetchOutcome) -> Void) {
        // A keyed family's member is owned, forwarded and leased under its full name, NAME:KEY.
        let full = request.key.map { name + ":" + $0 } ?? name
        let deadline = cluster.clock.monotonicNanos &+ UInt64((timeout + .seconds(2)).nanoseconds)
        let before = cluster.engine?.version(of: full)
        cluster.whenJoined { [self] in
            // The cluster's value arrived while this node was joining: answered without a call.
            if let value = arrived(full, since: before) { return completion(FetchOutcome(result: .success(value), route: .joined)) }
            // After a pause, who owns the expirable is decided once the peers are heard from again (§4.17), and the
            // value is looked at again: the next owner may have fetched it during the pause, and it came in with
            // the peers' news (a GET that waited in this node's socket through the pause is answered with it).
            cluster.afterRejoin { [self] in
                if let value = arrived(full, since: before) { return completion(FetchOutcome(result: .success(value), route: .joined)) }
                let stamped = stampedAcrossPauses(full, completion)
                cluster.route(full, family: name, local: local, request: request, timeout: timeout, deadline: deadline, completion: stamped)
            }
        }
    }

    /// `name`'s valid value, if a value or clear came in since the fetch began (its version is no longer `before`).
    private func arrived(_ name: String, since before: Version?) -> Fetched? {
        guard let engine = cluster.engine, engine.version(of: name) != before else { return nil }
        return engine.cachedValue(name)
    }

    /// `completion`, through `Cluster.acrossPauses` unless quorum leases already drop a result whose lease ran out
    /// during the call.
    private func stampedAcrossPauses(_ name: String, _ completion: @escaping @Sendable (FetchOutcome) -> Void) -> @Sendable (FetchOutcome) -> Void {
        cluster.options.quorum[self.name] == nil ? cluster.acrossPauses(name, completion) : completion
    }
}
