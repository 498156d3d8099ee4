import ExpirableCore
import Synchronization

/// The line of calls for one plugin instance. The ABI's thread contract says the host never runs two calls on
/// one instance at once, and a keyed family's keys all share one instance (SPEC §3.19), so calls for different
/// keys wait here, in the daemon, in arrival order, and each starts when the one before it has finished. A
/// call's own `timeout` counts from its start, not from its arrival. A call that has waited `timeout` without
/// starting is answered TIMEOUT (saying it waited, how long, behind how many) and leaves the line without
/// ever running: a caller waits at most about twice the timeout, and a plugin that hangs cannot pile up calls.
final class CallQueue: Sendable {
    private struct Waiting {
        let number: UInt64
        let arrived: UInt64
        let start: @Sendable () -> Void
        let refuse: @Sendable (ExpirableError) -> Void
        var timer: (any Cancellable)?
    }

    private struct State {
        /// When the call under way started (monotonic ns), if one is.
        var runningSince: UInt64?
        var waiting: [Waiting] = []
        var numbered: UInt64 = 0
        /// Set by `close`: new calls get this error.
        var closed: ExpirableError?
    }

    private let expirable: String
    private let plugin: String
    private let timeout: Duration
    private let clock: any EngineClock
    /// Whether waits are bounded by a timer (not in a helper, whose daemon sends one call at a time and
    /// which must not start Dispatch's threads: see `PluginInstance`).
    private let timesWaits: Bool
    /// Whether a call arriving while the call under way has outlived `timeout` is refused at once (inline:
    /// that call is hung in the daemon and nothing can end it).
    private let refusesBehindOverdueCall: Bool
    private let state = Mutex(State())

    init(expirable: String, plugin: String, timeout: Duration, clock: any EngineClock, timesWaits: Bool, refusesBehindOverdueCall: Bool) {
        self.expirable = expirable
        self.plugin = plugin
        self.timeout = timeout
        self.clock = clock
        self.timesWaits = timesWaits
        self.refusesBehindOverdueCall = refusesBehindOverdueCall
    }

    /// When the call under way started (monotonic ns), if one is.
    var runningSince: UInt64? { state.withLock { $0.runningSince } }

    /// Calls `start` now if no call is under way, otherwise once the calls before it have finished; or calls
    /// `refuse` with why it will not start. `start` must lead to exactly one `finished()`. `startBy`, if given,
    /// is a monotonic time after which the call must not start (a lease that could no longer hold it).
    func enqueue(startBy: UInt64? = nil, start: @escaping @Sendable () -> Void, refuse: @escaping @Sendable (ExpirableError) -> Void) {
        let now = clock.monotonicNanos
        enum Decision { case start, refuse(ExpirableError), wait(UInt64) }
        let decision: Decision = state.withLock { s in
            if let closed = s.closed { return .refuse(closed) }
            guard let since = s.runningSince else {
                s.runningSince = now
                return .start
            }
            if refusesBehindOverdueCall, now - since >= UInt64(timeout.nanoseconds) {
                let seconds = (now - since) / 1_000_000_000
                return .refuse(.timeout("plugin \(plugin) for \(expirable) is still running a call started \(seconds)s ago; no new call until it returns"))
            }
            s.numbered += 1
            s.waiting.append(Waiting(number: s.numbered, arrived: now, start: start, refuse: refuse))
            return .wait(s.numbered)
        }
        switch decision {
        case .start:
            start()
        case .refuse(let error):
            refuse(error)
        case .wait(let number):
            guard timesWaits else { return }
            // A lease that ends the wait sooner than the timeout does is what the caller is told of.
            let lease = startBy.map { $0 < now + UInt64(timeout.nanoseconds) } ?? false
            let wait = lease ? .nanoseconds(Int64(startBy! > now ? startBy! - now : 0)) : timeout
            let timer = clock.schedule(after: wait) { [self] in giveUp(number, lease: lease) }
            let started = state.withLock { s -> Bool in
                guard let index = s.waiting.firstIndex(where: { $0.number == number }) else { return true }
                s.waiting[index].timer = timer
                return false
            }
            if started { timer.cancel() }
        }
    }

    /// The call under way has finished: the next waiting call, if any, starts (on the caller's thread).
    func finished() {
        let next: Waiting? = state.withLock { s in
            guard s.closed == nil, !s.waiting.isEmpty else {
                s.runningSince = nil
                return nil
            }
            s.runningSince = clock.monotonicNanos
            return s.waiting.removeFirst()
        }
        guard let next else { return }
        next.timer?.cancel()
        next.start()
    }

    /// Refuses every call from now on with `error`, and the waiting ones too; returns whether no call is under way.
    func close(_ error: ExpirableError) -> Bool {
        let (idle, dropped) = state.withLock { s -> (Bool, [Waiting]) in
            s.closed = error
            defer { s.waiting = [] }
            return (s.runningSince == nil, s.waiting)
        }
        for call in dropped {
            call.timer?.cancel()
            call.refuse(error)
        }
        return idle
    }

    /// A waiting call's time is up: it leaves the line unstarted and its caller gets TIMEOUT.
    private func giveUp(_ number: UInt64, lease: Bool) {
        let now = clock.monotonicNanos
        let gone: (Waiting, Int)? = state.withLock { s in
            guard let index = s.waiting.firstIndex(where: { $0.number == number }) else { return nil }
            // The call under way counts as ahead too.
            return (s.waiting.remove(at: index), index + 1)
        }
        guard let (call, ahead) = gone else { return }
        let waited = (now - call.arrived) / 1_000_000
        let behind = "waited \(waited)ms behind \(ahead) other call\(ahead == 1 ? "" : "s") of its plugin instance without starting"
        let why = "the instance runs one call at a time, for every key of a keyed family"
        if lease {
            call.refuse(.fetch("plugin \(plugin) for \(expirable): this call \(behind), until its quorum lease could no longer hold a whole call, so it was dropped (\(why))"))
        } else {
            call.refuse(.timeout("plugin \(plugin) for \(expirable): this call \(behind), as long as its timeout of \(timeout.milliseconds)ms, so it was dropped (\(why)); raise timeout or make the plugin answer sooner"))
        }
    }
}
