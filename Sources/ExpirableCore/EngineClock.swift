import Dispatch
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Something that can be cancelled, such as a scheduled timer.
public protocol Cancellable: Sendable {
    /// Stops the action if it has not started; harmless if it has run or was cancelled.
    func cancel()
}

/// The engine's view of time. Validity is judged on `monotonicNanos` (wall-clock jumps do not expire or revive
/// values); `unixMillis` is read only to turn a plugin's `expires_at` into a monotonic deadline on arrival.
public protocol EngineClock: Sendable {
    /// Nanoseconds on a clock that never goes backwards.
    var monotonicNanos: UInt64 { get }
    /// The wall clock, Unix milliseconds.
    var unixMillis: Int64 { get }
    /// Runs `action` once, `delay` from now, on some thread, unless cancelled first.
    func schedule(after delay: Duration, _ action: @escaping @Sendable () -> Void) -> any Cancellable
}

/// The real clocks: CLOCK_MONOTONIC, CLOCK_REALTIME and Dispatch timers.
public struct SystemClock: EngineClock {
    private let wallOffsetMillis: Int64

    /// How far this clock's wall time runs from the machine's: zero, except for a test's node whose clock is off
    /// (`expirabled --wall-clock-offset`). Validity never depends on it; versions and plugins' `now_ms` do.
    /// Monotonic time and timers are unaffected.
    public var wallOffset: Duration { .milliseconds(wallOffsetMillis) }

    /// The machine's clocks, the wall clock shifted by `wallOffset` (whole milliseconds).
    public init(wallOffset: Duration = .zero) {
        wallOffsetMillis = wallOffset.milliseconds
    }

    public var monotonicNanos: UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }

    public var unixMillis: Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000 + wallOffsetMillis
    }

    /// One Dispatch timer source per action. A source is released as soon as it is cancelled: an
    /// `asyncAfter` work item, cancelled or not, stays queued until its deadline, and a plugin call's timeout
    /// (30 s by default) set for every call kept 100,000 calls' worth of closures alive (115 MB measured).
    public func schedule(after delay: Duration, _ action: @escaping @Sendable () -> Void) -> any Cancellable {
        let timer = DispatchSource.makeTimerSource(queue: DispatchQueue.global())
        let nanos = max(0, delay.nanoseconds)
        timer.schedule(deadline: .now() + .nanoseconds(Int(clamping: nanos)), leeway: .milliseconds(1))
        // The handler holds the source (an unreferenced source is freed and never fires); cancelling, here or
        // by the caller, releases the handler and with it the source.
        timer.setEventHandler {
            timer.cancel()
            action()
        }
        timer.activate()
        return SourceCancellable(timer: timer)
    }

    private struct SourceCancellable: Cancellable, @unchecked Sendable {
        // @unchecked: DispatchSourceTimer is thread-safe but not marked Sendable.
        let timer: any DispatchSourceTimer
        func cancel() { timer.cancel() }
    }
}

/// A clock that moves only when told to, so tests see expiry and eager refresh without sleeping.
/// `advance(by:)` runs the timers that fall due, in order, on the calling thread.
public final class ManualClock: EngineClock {
    private struct Timer {
        let due: UInt64
        let action: @Sendable () -> Void
    }

    private struct State {
        var now: UInt64 = 1_000_000_000
        var unixOffsetMillis: Int64 = 1_700_000_000_000
        var nextID = 0
        var timers: [Int: Timer] = [:]
    }

    private let state = Mutex(State())

    /// Starts at an arbitrary monotonic time; the wall clock starts at `unixMillis`.
    public init(unixMillis: Int64 = 1_700_000_000_000) {
        state.withLock { $0.unixOffsetMillis = unixMillis - Int64($0.now / 1_000_000) }
    }

    public var monotonicNanos: UInt64 { state.withLock { $0.now } }

    public var unixMillis: Int64 { state.withLock { $0.unixOffsetMillis + Int64($0.now / 1_000_000) } }

    /// Timers scheduled and neither run nor cancelled.
    public var pendingTimers: Int { state.withLock { $0.timers.count } }

    /// When the earliest pending timer falls due, as a delay from now.
    public var nextTimerDelay: Duration? {
        state.withLock { s in s.timers.values.map(\.due).min().map { .nanoseconds(Int64($0 - min($0, s.now))) } }
    }

    /// Moves the wall clock alone, as an administrator or NTP would; monotonic time is unaffected.
    public func shiftWallClock(by delta: Duration) {
        state.withLock { $0.unixOffsetMillis += delta.milliseconds }
    }

    public func schedule(after delay: Duration, _ action: @escaping @Sendable () -> Void) -> any Cancellable {
        let id = state.withLock { s in
            let id = s.nextID
            s.nextID += 1
            s.timers[id] = Timer(due: s.now &+ UInt64(max(0, delay.nanoseconds)), action: action)
            return id
        }
        return Handle(clock: self, id: id)
    }

    /// Moves time forward by `delta`, running every timer that falls due on the way, earliest first.
    public func advance(by delta: Duration) {
        let target = state.withLock { $0.now &+ UInt64(max(0, delta.nanoseconds)) }
        while true {
            let next: Timer? = state.withLock { s in
                guard let (id, timer) = s.timers.filter({ $0.value.due <= target }).min(by: { $0.value.due < $1.value.due })
                else { return nil }
                s.timers[id] = nil
                s.now = max(s.now, timer.due)
                return timer
            }
            guard let next else { break }
            next.action()
        }
        state.withLock { $0.now = target }
    }

    fileprivate func cancel(_ id: Int) {
        _ = state.withLock { $0.timers.removeValue(forKey: id) }
    }

    private struct Handle: Cancellable {
        let clock: ManualClock
        let id: Int
        func cancel() { clock.cancel(id) }
    }
}

extension Duration {
    /// The whole duration in nanoseconds, saturating.
    public var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        let (whole, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return seconds < 0 ? .min : .max }
        return whole.addingReportingOverflow(attoseconds / 1_000_000_000).overflow ? .max : whole + attoseconds / 1_000_000_000
    }

    /// The whole duration in milliseconds.
    public var milliseconds: Int64 { nanoseconds / 1_000_000 }
}
