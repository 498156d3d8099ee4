/// Eager refresh: a timer per expirable, started when a value is stored, that fetches a new value in the
/// background while readers keep getting the current one.
extension Engine {
    /// Schedules a refresh for `target` (monotonic), but never sooner than one second after the last plugin
    /// call started, nor before pacing allows. Replaces any earlier timer. Caller holds the lock.
    func scheduleRefresh(_ entry: Entry, _ s: inout Entry.State, at target: UInt64, now: UInt64) {
        s.cancelRefresh()
        guard !s.droppedByReload else { return }
        let earliest = (s.lastCallStart ?? 0) &+ UInt64(Engine.minimumRefreshInterval.nanoseconds)
        let due = max(target, earliest, now, s.nextAttempt)
        s.refreshDue = due
        let serial = s.timerSerial
        let generation = s.generation
        s.refreshTimer = clock.schedule(after: .nanoseconds(Int64(due - now))) { [self] in
            refreshFired(entry, serial: serial, generation: generation)
        }
    }

    /// After a failed background refresh: try again with exponential backoff (from `retry_interval` up to
    /// `retry_backoff`, 30 s without it) while the current value lasts. Caller holds the lock.
    func scheduleRetry(_ entry: Entry, _ s: inout Entry.State, now: UInt64) {
        let exponent = min(max(s.failures, 1) - 1, 30)
        let base = entry.freshness.retryInterval
        let bound = max(entry.freshness.retryBackoff ?? Engine.maximumRefreshBackoff, base)
        let backoff = min(base * (1 << exponent), bound)
        let retryAt = now &+ UInt64(max(0, backoff.nanoseconds))
        guard retryAt < s.freshUntil else {
            s.cancelRefresh()
            return
        }
        scheduleRefresh(entry, &s, at: retryAt, now: now)
    }

    /// Runs at once the eager refreshes that fell due while another node owned them, now that a node died and
    /// this one may own them (SPEC §4.13).
    public func reconsiderDeferredRefreshes() {
        for entry in names.compactMap(entries) where entry.scope == .cluster {
            let due: (UInt64, UInt64)? = entry.state.withLock { s in
                s.refreshDeferred && s.refreshTimer != nil ? (s.timerSerial, s.generation) : nil
            }
            if let (serial, generation) = due { refreshFired(entry, serial: serial, generation: generation) }
        }
    }

    private func refreshFired(_ entry: Entry, serial: UInt64, generation: UInt64) {
        let now = clock.monotonicNanos
        // In a cluster only the owner refreshes. The others look again when the owner would count as dead if it
        // has fallen silent, so the duty moves to the next owner as soon as the owner is found dead, and their
        // timer is replaced when the owner's new value arrives.
        let replicator = replicator(for: entry)
        let mayRefresh = replicator?.mayRefresh(entry.name) ?? true
        let start: Bool = entry.state.withLock { s in
            guard s.timerSerial == serial, s.generation == generation else { return false }
            s.refreshTimer?.cancel()
            s.refreshTimer = nil
            // Scheduled again below if it is only put off; otherwise, none is pending (INFO, explain).
            s.refreshDue = nil
            guard s.flight == nil, s.value != nil, !s.permanentFailure else { return false }
            // An expired value is no longer refreshed in the background (the next fetch calls the plugin), unless
            // its refresh was another node's duty that fell here, less than a lifetime ago.
            let lifetime = s.deadline &- min(s.deadline, s.storedAt)
            guard s.isValid(at: now) || (s.refreshDeferred && s.deadline != .max && now < s.deadline &+ lifetime) else { return false }
            guard mayRefresh else {
                let recheck = replicator?.refreshRecheckDelay(entry.name) ?? Engine.minimumRefreshInterval
                scheduleRefresh(entry, &s, at: now &+ UInt64(max(0, recheck.nanoseconds)), now: now)
                s.refreshDeferred = true
                return false
            }
            s.flight = Entry.Flight(waiters: [], generation: generation)
            s.counters.refreshes &+= 1
            startingCall(&s, now: now, trigger: .refresh)
            return true
        }
        guard start else { return }
        logger.debug("eager refresh", metadata: ["expirable": "\(entry.name)"])
        call(entry, generation: generation)
    }
}
