/// Pacing of failed calls (SPEC §3.17, §3.18): failures are never kept, but after one the next call for that
/// expirable starts no sooner than `retry_interval` (doubling up to `retry_backoff`) after the failed one
/// started, or than the plugin's retry-after, and callers arriving meanwhile wait for that call together.
extension Engine {
    /// Records a failed call: when the next may start, and whether eager refresh retries. Caller holds the lock.
    func failed(_ entry: Entry, _ s: inout Entry.State, error: ExpirableError, generation: UInt64, now: UInt64, wall: Int64) {
        // A call that started before a clear paces nothing: the clear was the operator's "try again now" (SPEC
        // §3.10), and that call's own callers have had its error.
        guard generation == s.generation else { return }
        s.failures += 1
        s.lastFailure = error
        let started = s.lastCallStart ?? now
        let permanent = error.errorClass == .permanent
        // A permanent failure is not backed off: callers still get a new call each retry_interval.
        let delay = permanent ? entry.freshness.retryInterval : entry.freshness.retryDelay(afterFailures: s.failures)
        var next = started &+ UInt64(max(0, delay.nanoseconds))
        if let retryAfter = error.retryAfter, retryAfter > wall {
            let (nanos, overflow) = (retryAfter - wall).multipliedReportingOverflow(by: 1_000_000)
            next = max(next, overflow ? .max : now.addingReportingOverflow(UInt64(nanos)).partialValue)
        }
        s.nextAttempt = max(s.nextAttempt, next)
        if permanent {
            s.permanentFailure = true
            s.cancelRefresh()
        } else if s.isValid(at: now) {
            scheduleRetry(entry, &s, now: now)
        }
    }

    /// Parks `waiters` on a call that starts at `at` (monotonic). Caller holds the lock; there is no flight.
    func schedulePacedCall(_ entry: Entry, _ s: inout Entry.State, waiters: [Entry.Completion], at: UInt64, now: UInt64) {
        var flight = Entry.Flight(waiters: waiters, generation: s.generation)
        let generation = s.generation
        let timer = clock.schedule(after: .nanoseconds(Int64(clamping: at - min(at, now)))) { [self] in
            pacedCallDue(entry, generation: generation)
        }
        flight.scheduled = (at, timer)
        s.flight = flight
    }

    private func pacedCallDue(_ entry: Entry, generation: UInt64) {
        let now = clock.monotonicNanos
        let start: UInt64? = entry.state.withLock { s in
            guard s.flight?.scheduled != nil, s.flight?.generation == generation else { return nil }
            return startScheduledCall(&s, now: now)
        }
        if let start { call(entry, generation: start) }
    }

    /// Starts the paced call waiting in `s` now, in the current generation (a clear lifts pacing, and a paced
    /// call's callers should not wait on after it). Returns its generation, for `call` once the lock is
    /// released; nil when no call was waiting. Caller holds the lock.
    func startScheduledCall(_ s: inout Entry.State, now: UInt64) -> UInt64? {
        guard let scheduled = s.flight?.scheduled else { return nil }
        scheduled.timer.cancel()
        s.flight!.scheduled = nil
        s.flight!.generation = s.generation
        startingCall(&s, now: now, trigger: .paced)
        return s.generation
    }

    /// The callers of a paced call that has not started, taken off it: a value arrived from elsewhere (a
    /// peer) and answers them instead. Caller holds the lock.
    func takeScheduledWaiters(_ s: inout Entry.State) -> [Entry.Completion] {
        guard let scheduled = s.flight?.scheduled else { return [] }
        scheduled.timer.cancel()
        let waiters = s.flight!.waiters
        s.flight = nil
        return waiters
    }
}
