import ExpirableCore
import NIOCore

/// Quorum single flight (SPEC §4.10) on the wire: a node about to call the plugin of a quorum expirable first
/// asks every configured node, itself included, for a lease (Lease.swift has the rules and why they are safe),
/// calls only once a majority granted it and only while it lasts on its own monotonic clock, sends the value it
/// stores with the lease number (receivers that saw a newer lease refuse it), and releases the lease when the
/// call is over. Without a majority the call is not made: the caller gets an error saying the node has no quorum.
/// Nor is it made when the answers tell of an earlier lease whose call may not be over, or of a newer plugin state
/// than this node's: the call would start from a state an earlier call may have spent (a rotated refresh token).
extension Cluster {
    /// Which expirables take a lease before a call, and the lease each asks for: long enough to hold the whole
    /// call (its `timeout`) after the margin the holder keeps, plus a moment for the answers to arrive.
    static func leaseDuration(forTimeout timeout: Duration) -> Duration {
        timeout * 10 / 9 + .seconds(3)
    }

    /// How long to wait for a majority's answers before giving up: a few heartbeats, at least 1 s.
    var leaseAnswerWait: Duration { max(options.heartbeat * 4, .seconds(1)) }

    /// How many attempts one caller's fetch makes when its lease numbers are refused as not newer (the node
    /// restarted, or was away while others took leases): the refusals name the newest number, so the next
    /// attempt is past it. Only within `leaseAnswerWait` of the first: a caller waits no longer than for one.
    static let leaseAttemptsPerFetch = 3

    /// Calls `local` for `name` under a lease, or fails its caller without calling when no majority grants one.
    /// `attempt` and `firstSentAt` are for the attempts after a refusal as not newer (`retryable`).
    func callUnderLease(_ name: String, local: any Fetcher, request: FetchRequest, timeout: Duration, attempt ordinal: Int = 1,
                        firstSentAt: UInt64? = nil, completion: @escaping @Sendable (FetchOutcome) -> Void) {
        let duration = Cluster.leaseDuration(forTimeout: timeout)
        let now = clock.monotonicNanos
        let voters = options.peers.count + 1
        let stateVersion = engine?.replicaState(name)?.version
        let number: LeaseNumber = state.withLock { s in
            let number = s.grants.propose(name, node: options.node)
            var attempt = LeaseAttempt(name: name, number: number, sentAt: now, duration: duration, voters: voters)
            // Peers dead in this node's view are not waited for: if the others cannot make a majority, the caller
            // hears so at once rather than after `leaseAnswerWait`.
            for (peer, record) in s.peers where !record.isAlive(now: now, deadAfter: options.deadAfter) { attempt.deadInView(peer) }
            switch s.grants.request(name, number: number, duration: duration, now: now) {
            case .granted: attempt.grant(from: options.node)
            case .refused(let refusal): attempt.refusal(from: options.node, refusal)
            }
            attempt.learn(from: options.node, unfinished: s.grants.unfinished(name, besides: number), stateVersion: stateVersion)
            s.leases[name] = ClusterState.PendingLease(attempt: attempt, local: local, request: request, timeout: timeout, ordinal: ordinal,
                                                       firstSentAt: firstSentAt ?? now, completion: completion)
            s.underWay[name] = number
            return number
        }
        broadcast(.leaseRequest(name: name, number: number, durationMillis: duration.milliseconds, stateVersion: stateVersion))
        _ = clock.schedule(after: leaseAnswerWait) { [self] in leaseAnswered(name, number: number, timedOut: true) }
        leaseAnswered(name, number: number, timedOut: false)  // a one-node cluster is its own majority
    }

    /// A peer asks for a lease: answered from this node's promises, with the newest other lease whose call may
    /// not be over and this node's state version. A newer state than the peer's is sent first, on the same link,
    /// so it arrives before the answer.
    func leaseRequested(_ name: String, number: LeaseNumber, durationMillis: Int64, stateVersion theirs: Version?, by peer: String) {
        let now = clock.monotonicNanos
        let mine = engine?.replicaState(name)
        if let mine, let version = mine.version, theirs.map({ $0 < version }) ?? true {
            send(.state(name: name, version: version, state: mine.state, lease: nil), to: peer)
        }
        let (answer, newest, unfinished) = state.withLock { s in
            let answer = s.grants.request(name, number: number, duration: .milliseconds(durationMillis), now: now)
            if case .granted = answer { s.counters.leasesGranted &+= 1 } else { s.counters.leasesRefused &+= 1 }
            return (answer, s.grants.newest[name], s.grants.unfinished(name, besides: number))
        }
        let refusal: LeaseRefusal? = if case .refused(let refusal) = answer { refusal } else { nil }
        send(.leaseAnswer(name: name, number: number, refusal: refusal, newest: newest, unfinished: unfinished, stateVersion: mine?.version), to: peer)
    }

    /// A peer answered this node's request: granted it (`refusal` nil) or refused it.
    func leaseAnswer(_ name: String, number: LeaseNumber, refusal: LeaseRefusal?, newest: LeaseNumber?,
                     unfinished: LeaseNumber?, stateVersion: Version?, from peer: String) {
        state.withLock { s in
            if let newest { s.grants.observe(name, number: newest) }
            if case .notNewer(let seen)? = refusal { s.grants.observe(name, number: seen) }
            guard s.leases[name]?.attempt.number == number else { return }
            if let refusal { s.leases[name]!.attempt.refusal(from: peer, refusal) } else { s.leases[name]!.attempt.grant(from: peer) }
            s.leases[name]!.attempt.learn(from: peer, unfinished: unfinished, stateVersion: stateVersion)
        }
        leaseAnswered(name, number: number, timedOut: false)
    }

    func leaseReleased(_ name: String, number: LeaseNumber) {
        state.withLock { $0.grants.release(name, number: number) }
    }

    /// A peer's greeting names a lease of its own whose attempt or call is not over.
    func leaseUnderWay(_ name: String, number: LeaseNumber, from peer: String) {
        state.withLock { s in
            s.grants.underWay(name, number: number)
            s.leaseGreetings[peer]?.insert(number)
        }
    }

    /// A peer's greeting began (its hello): the leases it names as under way are collected until it ends.
    func leaseGreetingBegan(from peer: String) {
        state.withLock { $0.leaseGreetings[peer] = [] }
    }

    /// A peer's greeting ended (the heartbeat after it): its leases that it did not name as under way are over.
    /// Their states came with the greeting; if the peer restarted during such a call, the state the call got is
    /// lost with it, and the next call starts from the newest state there is (docs/cluster.md).
    func leaseGreetingEnded(from peer: String) {
        let over: [(name: String, number: LeaseNumber)] = state.withLock { s in
            guard let underWay = s.leaseGreetings.removeValue(forKey: peer) else { return [] }
            return s.grants.greeted(by: peer, underWay: underWay)
        }
        for (name, number) in over {
            logger.warning("a lease ended without its release: the holder restarted, or its link broke before the release; continuing from the newest plugin state known", metadata: [
                "expirable": "\(name)", "lease": "\(number)", "holder": "\(peer)",
            ])
        }
    }

    /// This node's leases whose attempt or call is not over, for its greeting (after its states).
    func leasesUnderWay() -> [ClusterMessage] {
        state.withLock { s in s.underWay.sorted { $0.key < $1.key }.map { .leaseUnderWay(name: $0.key, number: $0.value) } }
    }

    /// Acts on the attempt for `number` once its outcome is known (or its wait is over): makes the call while
    /// the lease lasts, or fails the caller.
    private func leaseAnswered(_ name: String, number: LeaseNumber, timedOut: Bool) {
        let now = clock.monotonicNanos
        let decided: (ClusterState.PendingLease, LeaseAttempt.Outcome)? = state.withLock { s -> (ClusterState.PendingLease, LeaseAttempt.Outcome)? in
            guard let pending = s.leases[name], pending.attempt.number == number else { return nil }
            guard let outcome = pending.attempt.outcome ?? (timedOut ? .lost(pending.attempt.refused) : nil) else { return nil }
            s.leases[name] = nil
            if case .held = outcome {
                s.held[name] = number
                s.counters.leasesHeld &+= 1
            } else {
                s.counters.leasesLost &+= 1
            }
            return (pending, outcome)
        }
        guard let (pending, outcome) = decided else { return }
        switch outcome {
        case .lost(let reasons):
            release(name, number)
            if retryable(pending, reasons: reasons, now: now) {
                // The refusals named a newer number (now observed): the next proposal is past it.
                logger.info("lease refused as not newer than one the others saw; asking again with a newer number", metadata: [
                    "expirable": "\(name)", "lease": "\(number)", "attempt": "\(pending.ordinal + 1)",
                ])
                return callUnderLease(name, local: pending.local, request: pending.request, timeout: pending.timeout, attempt: pending.ordinal + 1,
                                      firstSentAt: pending.firstSentAt, completion: pending.completion)
            }
            pending.completion(FetchOutcome(result: .failure(.fetch(noQuorum(name, pending.attempt, refusals: reasons).description)), route: .notCalled))
        case .held(let until):
            // The call must end (its timeout kills a helper) before the lease does, on this node's clock.
            guard until > now, until - now >= UInt64(pending.timeout.nanoseconds) else {
                state.withLock { $0.counters.leasesTooLate &+= 1 }
                release(name, number)
                pending.completion(FetchOutcome(result: .failure(.fetch(PeerError.leaseTooLate(name: name, lease: number, timeoutMillis: pending.timeout.milliseconds).description)),
                                                route: .notCalled))
                return
            }
            // The state to call with is read now: one a granter sent before its answer is here.
            let current = engine?.replicaState(name)
            // A plugin not known to keep a state, with none here, in no answer: nothing to wait for (stateHazard).
            let family = name.split(separator: ":", maxSplits: 1).first.map(String.init) ?? name
            let keepsState = options.keepsState.contains(family) || current?.state != nil || (current?.version ?? nil) != nil
            if let hazard = pending.attempt.stateHazard(state: current?.version ?? nil, keepsState: keepsState) {
                state.withLock { $0.counters.leasesWaitingForState &+= 1 }
                logger.info("not calling under a held lease: the plugin state may be stale", metadata: ["expirable": "\(name)", "lease": "\(number)", "reason": "\(hazard)"])
                release(name, number)
                pending.completion(FetchOutcome(result: .failure(.fetch("\(name): \(hazard)")), route: .notCalled))
                return
            }
            var request = pending.request
            if let current { request.state = current.state }
            // Waiting behind another key's call of the same instance must not take the call past its lease.
            request.startBy = until - UInt64(pending.timeout.nanoseconds)
            engine?.countPluginCall(name)
            pending.local.fetch(request) { [self] outcome in
                let late = clock.monotonicNanos >= until
                if late {
                    state.withLock { s in
                        s.held[name] = nil
                        s.counters.callsOutlivedLease &+= 1
                    }
                }
                // The engine stores and sends the value (and the state) inside this completion, tagged with
                // `held[name]`. A late call's state change is kept all the same: its old state was consumed.
                pending.completion(late
                    ? FetchOutcome(result: .failure(.fetch(PeerError.callOutlivedLease(name: name, lease: number).description)), state: outcome.state)
                    : outcome)
                release(name, number)
            }
        }
    }

    /// Whether a lost attempt is worth another at once: some nodes refused its number only as not newer than one
    /// they saw, and with them, the grants and the nodes alive in this node's view that have not answered yet, a
    /// majority is possible, so a newer number can win; attempts and time are left.
    private func retryable(_ pending: ClusterState.PendingLease, reasons: [String: LeaseRefusal], now: UInt64) -> Bool {
        guard pending.ordinal < Cluster.leaseAttemptsPerFetch,
              now - min(now, pending.firstSentAt) < UInt64(leaseAnswerWait.nanoseconds) else { return false }
        let attempt = pending.attempt
        let notNewer = reasons.values.filter { if case .notNewer = $0 { true } else { false } }.count
        let all = [options.node] + options.peers.map(\.name)
        let waiting = all.filter { !attempt.granted.contains($0) && reasons[$0] == nil && !attempt.dead.contains($0) }.count
        return notNewer > 0 && attempt.granted.count + notNewer + waiting >= LeaseAttempt.majority(of: attempt.voters)
    }

    private func release(_ name: String, _ number: LeaseNumber) {
        state.withLock { s in
            if s.held[name] == number { s.held[name] = nil }
            if s.underWay[name] == number { s.underWay[name] = nil }
            s.grants.release(name, number: number)
        }
        // By the route its state took (replicate): around a one-way cut too, so the release never overtakes it.
        replicate(.leaseRelease(name: name, number: number))
    }

    /// Why `attempt` on `name` was lost: who refused (`refusals`, the attempt's own or the ones it had when it
    /// timed out), who was dead in this node's view, and who did not answer. The caller gets its description as
    /// a FETCH error.
    func noQuorum(_ name: String, _ attempt: LeaseAttempt, refusals: [String: LeaseRefusal]) -> PeerError {
        let all = [options.node] + options.peers.map(\.name)
        let unanswered = all.filter { !attempt.granted.contains($0) && refusals[$0] == nil }
        return .noQuorum(name: name, lease: attempt.number, needed: LeaseAttempt.majority(of: attempt.voters), voters: attempt.voters,
                         granted: attempt.granted.count, refusals: refusals, dead: unanswered.filter { attempt.dead.contains($0) }.sorted(),
                         silent: unanswered.filter { !attempt.dead.contains($0) }.sorted())
    }

    /// Whether a value under `lease` from a peer must be refused, having seen a newer lease; records it otherwise.
    func fenced(_ name: String, lease: LeaseNumber?) -> Bool {
        guard let lease else { return false }
        return state.withLock { s in
            if s.grants.isSuperseded(name, number: lease) { return true }
            s.grants.observe(name, number: lease)
            return false
        }
    }
}
