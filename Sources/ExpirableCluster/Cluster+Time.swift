import ExpirableCore
import NIOCore

/// Cluster time (§4.15) and pauses (§4.17): heartbeats that measure the peers' clocks, the offsets reported, and
/// what a node resumed after a pause holds back until its view of the peers is fresh again.
extension Cluster {
    // MARK: Heartbeats and offsets

    /// A heartbeat to every linked peer, each echoing the peer's last wall time so it can measure the round trip.
    func sendHeartbeats() {
        let now = clock.monotonicNanos
        let wall = clock.unixMillis
        let links: [(LinkSender, Int64, Int64)] = state.withLock { s in
            s.peers.values.compactMap { record in
                guard let link = record.sender else { return nil }
                let (echo, hold) = s.time.echo(for: record.peer.name, now: now)
                return (link, echo, hold)
            }
        }
        for (link, echo, hold) in links { link.send(.heartbeat(wallMillis: wall, echoMillis: echo, holdMillis: hold)) }
    }

    func receivedHeartbeat(from peer: String, wall: Int64, echo: Int64, hold: Int64) {
        let arrival = clock.monotonicNanos
        let arrivalWall = clock.unixMillis
        state.withLock { s in
            // Read within a heartbeat of a pause, it may have waited in the socket: its round trip is no measure.
            let queued = s.pauses.last.map { arrival - min(arrival, $0.noticed) < UInt64(options.heartbeat.nanoseconds) } ?? false
            s.time.heartbeat(from: peer, wall: wall, echo: echo, hold: hold, arrivalWall: arrivalWall, arrival: arrival,
                             maxDelay: queued ? -1 : options.deadAfter.milliseconds)
        }
        reportClockOffsets()
    }

    /// Why `member`'s clock (this node's correction, for this node) is reported, or nil while within
    /// `max_clock_offset` of cluster time.
    func clockProblem(of member: String, in time: ClusterTime) -> String? {
        let limit = options.maxClockOffset.milliseconds
        if member == options.node {
            let off = -time.correction
            guard abs(off) > limit else { return nil }
            return "this node's clock is \(abs(off)) ms \(off > 0 ? "ahead of" : "behind") cluster time, beyond max_clock_offset (\(limit) ms); versions are stamped with cluster time, but fix its time synchronization (NTP)"
        }
        guard let off = time.deviation(of: member), abs(off) > limit else { return nil }
        return "clock \(abs(off)) ms \(off > 0 ? "ahead of" : "behind") cluster time, beyond max_clock_offset (\(limit) ms); fix that node's time synchronization (NTP)"
    }

    /// Logs each member whose clock went beyond `max_clock_offset` (an error) or came back within it.
    func reportClockOffsets() {
        let (time, reported) = state.withLock { ($0.time, $0.clockErrors) }
        var problems: [String: String] = [:]
        for member in [options.node] + time.peers.keys.sorted() {
            if let problem = clockProblem(of: member, in: time) { problems[member] = problem }
        }
        guard Set(problems.keys) != reported else { return }
        let changed: Set<String> = state.withLock { s in
            let changed = s.clockErrors.symmetricDifference(problems.keys)
            s.clockErrors = Set(problems.keys)
            return changed
        }
        for member in changed.sorted() {
            if let problem = problems[member] {
                logger.error("clock offset beyond max_clock_offset", metadata: ["node": "\(member)", "problem": "\(problem)"])
            } else {
                logger.notice("clock offset back within max_clock_offset", metadata: ["node": "\(member)"])
            }
        }
    }

    /// Server INFO lines: the correction to cluster time, each peer's measured offset, and how many members are
    /// beyond `max_clock_offset`.
    public func timeInfo() -> [(String, String)] {
        let time = state.withLock { $0.time }
        let offsets = options.peers.map(\.name).sorted().map { "\($0)=\(time.offset(of: $0).map(String.init) ?? "none")" }
        let errors = ([options.node] + options.peers.map(\.name)).filter { clockProblem(of: $0, in: time) != nil }
        return [
            ("cluster_time_correction_ms", "\(time.correction)"),
            ("clock_offset_ms", offsets.joined(separator: ",")),
            ("clock_offset_errors", "\(errors.count)"),
        ]
    }

    // MARK: Pauses

    /// Notices a pause of this process since the last tick; `tick` is true on the heartbeat tick itself. Once a
    /// pause is noticed, a heartbeat goes out at once, so the peers hear that this node is back before any answer
    /// it sends (and echo a time from after the pause in what they send next).
    @discardableResult
    func noticePause(tick: Bool = false) -> PauseWatch.Pause? {
        let now = clock.monotonicNanos
        let wall = clock.unixMillis
        guard let pause = state.withLock({ $0.pauses.check(now: now, wall: wall, threshold: options.deadAfter, tick: tick) }) else { return nil }
        logger.warning("this node was paused; holding calls due meanwhile until its peers are heard from again", metadata: [
            "paused_ms": "\(pause.millis)",
        ])
        if !tick { sendHeartbeats() }
        return pause
    }

    /// How long after a pause this node may still be reading what its peers sent during it, and waits to hear
    /// from them again before acting on its view: twice the dead time, enough to redial links the peers closed.
    var rejoinWindow: Duration { options.deadAfter * 2 }

    /// Whether this node was paused lately and has not yet heard from every peer since (a heartbeat echoing
    /// one of its own sent after the pause): until then its view of who is alive and who owns what is stale.
    func rejoining() -> Bool {
        noticePause()
        let now = clock.monotonicNanos
        return state.withLock { s in
            guard let pause = s.pauses.last, now - min(now, pause.noticed) < UInt64(rejoinWindow.nanoseconds) else { return false }
            return s.peers.keys.contains { (s.time.peers[$0]?.echoed ?? 0) < pause.noticedWall }
        }
    }

    /// `completion` for a fetch of `name` that starts now, which may call this node's plugin (SPEC §4.7, §4.17). A
    /// plugin's value is given its version when it is stored, and a version is never older than one this node
    /// has seen. If this node is paused during the call while its helper goes on and answers, the peers take it
    /// for dead and the next owner may fetch a newer value meanwhile; stamped on resume, the late result would
    /// still be the newest and replace that value on every node. So the result of a call that a pause came in
    /// the middle of takes a version of when the call began: it is stored, here and on the peers, only where
    /// nothing newer arrived, and this node's callers get the newer value if one did.
    func acrossPauses(_ name: String, _ completion: @escaping @Sendable (FetchOutcome) -> Void) -> @Sendable (FetchOutcome) -> Void {
        let startedAt = clock.monotonicNanos
        let began = nextVersion()
        return { [self] outcome in
            // The helper's answer may be the first thing read after the pause: notice it before looking.
            noticePause()
            let straddled = state.withLock { s in s.pauses.last.map { $0.noticed > startedAt } ?? false }
            guard straddled, outcome.route == .plugin, case .success(let fetched) = outcome.result, !fetched.isStale else { return completion(outcome) }
            let remaining: Int64? = switch fetched.expiry {
            case .never: nil
            case .at(let unixMillis): unixMillis - clock.unixMillis
            }
            var late = outcome
            let newer = engine.flatMap { engine in engine.version(of: name).flatMap { $0 > began ? engine.cachedValue(name) : nil } }
            late.result = .success(newer ?? Fetched(value: fetched.value, remainingMillis: remaining, version: began, receivedOn: clock))
            logger.info("a plugin call ran across a pause of this node; its value takes the version of when the call began", metadata: [
                "expirable": "\(name)", "version": "\(began)", "newer": "\(newer != nil)",
            ])
            completion(late)
            // Stored here (nothing newer had arrived): sent on, as the engine sends only values it stamped itself.
            if newer == nil, engine?.version(of: name) == began, case .success(let stamped) = late.result {
                stored(name, stamped, remainingMillis: remaining, version: began)
            }
        }
    }

    /// Runs `body` now, or, while rejoining after a pause, once this node has heard from its peers again (at most
    /// the rejoin window later), so a call that was due during the pause is decided on a fresh view.
    func afterRejoin(_ body: @escaping @Sendable () -> Void) {
        guard rejoining() else { return body() }
        _ = clock.schedule(after: options.heartbeat / 4) { [self] in afterRejoin(body) }
    }
}
