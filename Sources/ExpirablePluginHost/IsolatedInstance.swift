import CExpirableLinux
import Dispatch
import ExpirableABI
import ExpirableConfig
import ExpirableCore
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// One expirable's plugin in a helper process (`isolation = "process"`). The daemon never runs the plugin's
/// code: it checks the path, and the helper loads and calls the plugin. Calls wait in the daemon (a
/// `CallQueue`, as inline) and go to the helper one at a time, the next only once the previous has answered,
/// from a thread of this instance's own, which blocks on the socket so the event loop never does. Each call's
/// timeout counts from when it is sent. A helper that dies, sends something that is not a frame, or outlives a
/// call's timeout (then it is killed) fails the call in flight and is started again by a later call, no sooner
/// than a backoff of 1 s doubling to 30 s while it keeps dying; until then calls get the error of its death at
/// once, the calls that waited behind the one that ended it included. `expirable_create` is held to `timeout`
/// as a call is: at start (and in check-config) a helper that has not created its instance by then is killed
/// and the expirable refused.
final class IsolatedInstance: PluginCalls, Sendable {
    let expirable: String
    let path: String
    /// The real plugin_dir `path` was resolved in: the helper checks the file against it at every start.
    private let directory: String
    let timeout: Duration
    private let params: [Configuration.Param]
    private let limits: HelperLimits
    private let logger: Logger
    private let thread: PluginThread
    private let clock: any EngineClock
    private let queue: CallQueue
    private let state = Mutex(State())
    /// Signalled once the helper is gone, the instance ended (by `destroy` or `retire`).
    private let ended = DispatchSemaphore(value: 0)

    static let firstBackoff: Duration = .seconds(1)
    static let maxBackoff: Duration = .seconds(30)

    private struct State {
        /// The helper, from its spawn until it is reaped; only the thread spawns and reaps.
        var helper: HelperProcess?
        /// Calls are numbered so a timer acts only on the call it was set for.
        var calls: UInt64 = 0
        /// The call the helper is working on (including starting the helper for it).
        var inFlight: UInt64?
        /// When the call in flight started (monotonic ns).
        var inFlightSince: UInt64 = 0
        /// The call whose timeout killed the helper.
        var timedOut: UInt64?
        /// Whether the helper is between its spawn and its answer to the start order (`expirable_create`).
        var creating = false
        /// The helper (pid) killed for not creating its instance within `timeout`.
        var killedInCreate: pid_t?
        /// How the last helper died, given to calls until `restartAt` (monotonic ns).
        var lastDeath: ExpirableError?
        var restartAt: UInt64 = 0
        var backoff = IsolatedInstance.firstBackoff
        /// Set once the instance is ended (the daemon stops, or a reload replaced or removed it): new calls get it.
        var stopped: ExpirableError?
        /// Set by `destroy` (the daemon stops): a helper killed from then on was killed by the daemon, not crashed.
        var destroying = false
        /// Helpers started after the first, for INFO.
        var restarts = -1
    }

    var info: [(String, String)] {
        let now = clock.monotonicNanos
        return state.withLock { s in
            var facts = [
                ("isolation", "process"),
                ("helper_pid", s.helper.map { String($0.pid) } ?? "none"),
                ("helper_restarts", String(max(0, s.restarts))),
                ("helper_last_death", s.lastDeath?.message ?? ""),
            ]
            // Within the backoff after a death, what happens next is the helper's, whatever the engine would do.
            if s.helper == nil, s.stopped == nil, s.lastDeath != nil, now < s.restartAt {
                let wait = (s.restartAt - now + 999_999) / 1_000_000
                facts.append(("helper_restart_in_ms", String(wait)))
                facts.append(("helper_down", "its plugin's helper is down after its last death; calls get that death's error at once until the first call in \(wait) ms starts a new one"))
            }
            return facts
        }
    }

    /// Starts the helper, which loads the plugin at `path` (resolved and checked by the caller in `directory`,
    /// and checked again by every helper before it loads it) and creates
    /// its instance; a refusal or a death of the helper is thrown, naming the expirable.
    init(
        expirable: String, path: String, directory: String, params: [Configuration.Param], timeout: Duration,
        limits: HelperLimits, clock: any EngineClock, logger: Logger
    ) throws(PluginError) {
        self.expirable = expirable
        self.path = path
        self.directory = directory
        self.params = params
        self.timeout = timeout
        self.limits = limits
        self.clock = clock
        self.logger = logger
        queue = CallQueue(expirable: expirable, plugin: path, timeout: timeout, clock: clock, timesWaits: true, refusesBehindOverdueCall: false)
        guard let thread = PluginThread(name: "helper:\(expirable)") else {
            throw PluginError("expirable.\(expirable): cannot start a thread for its plugin helper (the system is out of threads)")
        }
        self.thread = thread
        // Spawned from the instance's own thread, as every restart is: Linux sends a helper its parent-death
        // signal when the *thread* that spawned it ends, and the caller's thread (a pool thread of the daemon's
        // start-up task) may end long before the daemon does.
        let launched = thread.runAndWait { [self] in Result { () throws(PluginError) in try launch(first: true) } }
        do {
            let helper = try launched.get()
            logger.info("plugin helper started", metadata: ["expirable": "\(expirable)", "pid": "\(helper.pid)"])
        } catch {
            thread.stop()
            throw error
        }
    }

    func fetch(completion: @escaping @Sendable (Result<Fetched, ExpirableError>) -> Void) {
        fetch(.plain) { completion($0.result) }
    }

    func fetch(_ request: FetchRequest, completion: @escaping @Sendable (FetchOutcome) -> Void) {
        let now = clock.monotonicNanos
        let refusal: ExpirableError? = state.withLock { s in
            if let stopped = s.stopped { return stopped }
            if s.helper == nil, let death = s.lastDeath, now < s.restartAt { return death }
            return nil
        }
        if let refusal {
            completion(FetchOutcome(result: .failure(refusal)))
            return
        }
        let answer = Once(completion)
        queue.enqueue(startBy: request.startBy, start: { [self] in
            thread.run { [self] in
                call(answer, request)
                queue.finished()
            }
        }, refuse: { _ = answer.fire(FetchOutcome(result: .failure($0))) })
    }

    /// Closes the helper's socket, so it destroys its instance and exits; kills it if a call is still under
    /// way or it takes over a second. Waits at most two seconds. An instance a reload retired and whose call
    /// is still under way has that call cut short here: the daemon is stopping.
    func destroy() {
        let stopping = ExpirableError.fetch("plugin for \(expirable) is not running: the daemon is stopping")
        _ = queue.close(stopping)
        let retired = state.withLock { s in
            defer { s.stopped = s.stopped ?? stopping }
            s.destroying = true
            if s.inFlight != nil, let helper = s.helper { helper.killGroup() }
            return s.stopped != nil
        }
        if !retired { end(then: nil) }
        _ = ended.wait(timeout: .now() + .seconds(2))
    }

    /// Ends the instance once a reload has replaced or removed it, without cutting short the call under way
    /// (README, Reload: it answers its callers and its value is stored as usual): calls waiting behind it, and
    /// any call from now on, get `reason`; the call under way runs to its end or its timeout (which kills the
    /// helper, as ever); then the helper's socket is closed, so it destroys its instance and exits. Returns at
    /// once; `ended` runs when the helper is gone.
    func retire(_ reason: ExpirableError, ended: @escaping @Sendable () -> Void) {
        _ = queue.close(reason)
        let first = state.withLock { s in
            defer { s.stopped = s.stopped ?? reason }
            return s.stopped == nil
        }
        guard first else { return ended() }
        end(then: ended)
    }

    /// After the call under way (the thread runs one job at a time): closes the helper's socket and reaps it,
    /// killing it after a second; then stops the thread.
    private func end(then done: (@Sendable () -> Void)?) {
        thread.run { [self] in
            if let helper = state.withLock({ $0.helper }) {
                shutdown(helper.socket, Int32(SHUT_WR))
                _ = helper.reap(grace: .seconds(1))
                state.withLock { $0.helper = nil }
            }
            ended.signal()
            done?()
        }
        thread.stop()
    }

    private func timeoutError() -> ExpirableError {
        .pluginTimeout(plugin: path, expirable: expirable, timeout: timeout)
    }

    /// One call, on the thread, its turn come: timed from now, starts the helper if it is down, sends the
    /// order, reads the result.
    private func call(_ delivered: Once<FetchOutcome>, _ request: FetchRequest) {
        let (running, number) = state.withLock { s -> (HelperProcess?, UInt64) in
            s.calls += 1
            s.inFlight = s.calls
            s.inFlightSince = clock.monotonicNanos
            return (s.helper, s.calls)
        }
        var helper = running
        defer { state.withLock { $0.inFlight = nil } }
        // The timeout timer is cancelled before the answer goes out, so nothing of a finished call stays pending.
        let timerBox = TimerSlot()
        let answer = Once<FetchOutcome> { outcome in
            timerBox.timer.withLock { $0?.cancel(); $0 = nil }
            _ = delivered.fire(outcome)
        }
        let timer = clock.schedule(after: timeout) { [self] in overdue(number, answer, timerBox, recheck: true) }
        timerBox.timer.withLock { $0 = timer }
        if answer.fired { timer.cancel() }
        if helper == nil {
            if let death = state.withLock({ s in clock.monotonicNanos < s.restartAt ? s.lastDeath : nil }) {
                _ = answer.fire(FetchOutcome(result: .failure(death)))
                return
            }
            do {
                helper = try launch(first: false)
                logger.notice("plugin helper restarted", metadata: ["expirable": "\(expirable)", "pid": "\(helper!.pid)"])
            } catch {
                // launch() recorded how the helper ended, in the words calls get.
                _ = answer.fire(FetchOutcome(result: .failure(state.withLock { $0.lastDeath } ?? .fetch(error.message))))
                return
            }
        }
        guard let helper else { return }
        let outcome: FetchOutcome
        do throws(HelperFrame.Failure) {
            // A random id, not the call's number: a stray frame (written to the socket by anything else the
            // helper's plugin started) cannot guess it, so it is never taken for this call's answer.
            let id = UInt64.random(in: 1...UInt64.max)
            var order = HelperFrame(kind: .fetch)
            order.append(id)
            order.append(timeout.milliseconds)
            order.append(request.key != nil)
            if let key = request.key { order.append(key) }
            order.append(request.state != nil)
            request.state?.withUnsafeBytes { order.append(bytes: $0) }
            defer { HelperFrame.wipe(&order.payload) }
            // The helper lowers its hard CPU limit for each call, which only the daemon can raise again.
            if raisesCPULimit { _ = CExpirableLinux_unlimit_cpu(helper.pid) }
            guard order.send(on: helper.socket) else { throw .closed }
            var reply = try helper.receive()
            // The reply's payload holds the value (the Secret made from it is a copy): zeroed before it is freed.
            defer { HelperFrame.wipe(&reply.payload) }
            outcome = try result(of: reply, call: id)
        } catch {
            let death = died(helper, number: number, because: .frame(error))
            // Killed for this call's timeout: its callers get the timeout, as when the timer answers them.
            let killed = state.withLock { $0.timedOut == number }
            _ = answer.fire(FetchOutcome(result: .failure(killed ? timeoutError() : death)))
            return
        }
        let killed = state.withLock { s in
            s.backoff = IsolatedInstance.firstBackoff
            return s.timedOut == number
        }
        if killed {
            // The answer came in as the timeout killed its helper: reaped now, so the next call starts a new one
            // at once instead of finding this one dead (and calling that a crash).
            _ = helper.reap(grace: .milliseconds(200))
            state.withLock { $0.helper = nil }
        }
        if !answer.fire(outcome) {
            let kept = request.keepLate(outcome.state)
            logger.info(kept ? "late plugin result discarded after timeout; the plugin state it set is kept" : "late plugin result discarded after timeout",
                        metadata: ["expirable": "\(expirable)"])
        }
    }

    /// Call `number` has run its `timeout`. A reply that is in already (the daemon was paused while the helper
    /// answered, and this timer came due with it on resume) is the answer: the thread reads it at once, and this
    /// looks again once after a moment. Otherwise the helper is killed, and the thread answers TIMEOUT when it
    /// sees it go, or the answer the helper had sent just before (with its state: the plugin may have spent the
    /// old one), never lost. This timer answers TIMEOUT itself while no helper is up for the call (one being
    /// started), or if the thread has not answered a second after the kill.
    private func overdue(_ number: UInt64, _ answer: Once<FetchOutcome>, _ timerBox: TimerSlot, recheck: Bool) {
        enum Step { case over, reply, killed, answer }
        let step: Step = state.withLock { s in
            guard s.inFlight == number, !answer.fired else { return .over }
            guard let helper = s.helper else { return .answer }
            var waiting = pollfd(fd: helper.socket, events: Int16(POLLIN), revents: 0)
            if recheck, !s.creating, poll(&waiting, 1, 0) == 1 { return .reply }
            s.timedOut = number
            if s.creating { s.killedInCreate = helper.pid }
            helper.killGroup()
            return s.creating ? .answer : .killed
        }
        let then: (Duration, @Sendable () -> Void)
        switch step {
        case .over:
            return
        case .reply:
            then = (min(timeout, .seconds(1)), { [self] in overdue(number, answer, timerBox, recheck: false) })
        case .killed:
            logger.warning("plugin call timed out; its helper is killed", metadata: ["expirable": "\(expirable)", "timeout_ms": "\(timeout.milliseconds)"])
            then = (.seconds(1), { [self] in _ = answer.fire(FetchOutcome(result: .failure(timeoutError()))) })
        case .answer:
            if answer.fire(FetchOutcome(result: .failure(timeoutError()))) {
                logger.warning("plugin call timed out; its helper is killed", metadata: ["expirable": "\(expirable)", "timeout_ms": "\(timeout.milliseconds)"])
            }
            return
        }
        let next = clock.schedule(after: then.0, then.1)
        timerBox.timer.withLock { $0 = next }
        if answer.fired { next.cancel() }
    }

    /// A result frame for call `id` as a fetch result; anything else (another kind, an answer carrying another
    /// id) is the helper's failure.
    private func result(of frame: HelperFrame, call id: UInt64) throws(HelperFrame.Failure) -> FetchOutcome {
        var fields = HelperFrame.Reader(frame)
        if frame.kind == .value || frame.kind == .error {
            guard try fields.uint64() == id else { throw .malformed("an answer that carries another call's id (not the call in flight)") }
        }
        switch frame.kind {
        case .value:
            let expiresAt = try fields.int64()
            let state = try fields.state()
            var bytes = Array(fields.rest())
            defer { HelperFrame.wipe(&bytes) }
            guard bytes.count <= Int(EXPIRABLE_MAX_VALUE_BYTES) else {
                throw .malformed("a value of \(bytes.count) bytes, over the limit of \(EXPIRABLE_MAX_VALUE_BYTES)")
            }
            guard expiresAt >= 0 else { throw .malformed("a negative expiry (\(expiresAt))") }
            let expiry: Expiry = expiresAt == Int64.max ? .never : .at(unixMillis: expiresAt)
            return FetchOutcome(result: .success(Fetched(value: bytes.withUnsafeBytes { Secret(copying: $0) }, expiry: expiry)), state: state)
        case .error:
            // The helper sends the ABI's classes: 0 temporary, 1 permanent, 2 a timeout (TIMEOUT, temporary).
            let errorClass: ExpirableError.Class
            let wireClass = try fields.uint32()
            switch wireClass {
            case 0, 2: errorClass = .temporary
            case 1: errorClass = .permanent
            case let other: throw .malformed("an error of class \(other)")
            }
            let retryAfter = try fields.int64()
            // The helper held it to an hour already; a hostile one is held here too.
            let latest = clock.unixMillis + CallResult.maxRetryAfter.milliseconds
            guard retryAfter >= 0 else { throw .malformed("a negative retry-after (\(retryAfter))") }
            let state = try fields.state()
            let message = fields.rest().withUnsafeBytes { CallResult.printable($0) }
            let held = retryAfter == 0 ? nil : min(retryAfter, latest)
            if wireClass == 2 { return FetchOutcome(result: .failure(.timeout(message, retryAfter: held)), state: state) }
            return FetchOutcome(result: .failure(.fetch(message, class: errorClass, retryAfter: held)), state: state)
        default:
            throw .malformed("a frame of kind \(frame.kind) where a fetch result belongs")
        }
    }

    /// The wall-clock offset of the helper's `SystemClock`, so its plugin's `now_ms` reads what an inline
    /// one would: a `SystemClock`'s own offset; for any other clock (a test's `ManualClock`), its distance from
    /// the machine's wall clock now, so the helper's wall clock starts where the host's stands.
    private var helperWallOffset: Duration {
        if let clock = clock as? SystemClock { return clock.wallOffset }
        return .milliseconds(clock.unixMillis - SystemClock().unixMillis)
    }

    /// Spawns a helper, gives it the plugin and params, and waits until it has created its instance, at most
    /// `timeout`: a plugin's `expirable_create` may block (a secret file that is a FIFO), and a daemon's start or
    /// a check-config must not hang on it. Past that the helper is killed. Throws a refusal or death naming the
    /// expirable, for the daemon's start.
    /// The `first` helper's failure refuses the expirable (the daemon does not start, check-config refuses), so
    /// its words promise no restart.
    private func launch(first: Bool) throws(PluginError) -> HelperProcess {
        let start = startFrame()
        // Frame length: the kind byte and the payload.
        guard start.payload.count + 1 <= HelperFrame.maxLength else {
            throw PluginError("expirable.\(expirable): its params take \(start.payload.count) bytes, over the \(HelperFrame.maxLength) a plugin helper accepts at start; shorten them (a large value belongs in a file the plugin reads)")
        }
        let helper = try HelperProcess.spawn(expirable: expirable, logger: logger)
        state.withLock { s in
            s.helper = helper
            s.creating = true
            s.restarts += 1
        }
        let bound = clock.schedule(after: timeout) { [self] in
            state.withLock { s in
                guard s.creating, s.helper?.pid == helper.pid else { return }
                s.killedInCreate = helper.pid
                helper.killGroup()
            }
        }
        defer {
            bound.cancel()
            state.withLock { $0.creating = false }
        }
        let reply: HelperFrame
        do throws(HelperFrame.Failure) {
            guard start.send(on: helper.socket) else { throw .closed }
            reply = try helper.receive()
        } catch {
            throw PluginError("expirable.\(expirable): \(died(helper, number: nil, because: .frame(error), loading: true, final: first).message)")
        }
        switch reply.kind {
        case .ready:
            return helper
        case .refused:
            var fields = HelperFrame.Reader(reply)
            let message = fields.rest().withUnsafeBytes { CallResult.printable($0) }
            throw PluginError(died(helper, number: nil, because: .refused(message), loading: true, final: first).message)
        default:
            let death = died(helper, number: nil, because: .frame(.malformed("a frame of kind \(reply.kind) where ready or refused belongs")), loading: true, final: first)
            throw PluginError("expirable.\(expirable): \(death.message)")
        }
    }

    /// Whether each call's hard RLIMIT_CPU is set as well as the soft one, so that the plugin cannot lift it:
    /// only when the daemon can raise it again before the next call (root: CAP_SYS_RESOURCE). A daemon that is
    /// not root runs its helpers as its own user, and their plugins can do worse than lift a limit.
    private var raisesCPULimit: Bool { limits.maxCPUSeconds != nil && geteuid() == 0 }

    /// The frame that starts a helper: the plugin, the expirable, its limits and its params.
    private func startFrame() -> HelperFrame {
        var start = HelperFrame(kind: .start)
        start.append(path)
        start.append(directory)
        start.append(expirable)
        start.append(timeout.milliseconds)
        start.append(Int64(limits.maxMemory ?? 0))
        start.append(Int64(limits.maxCPUSeconds ?? 0))
        start.append(raisesCPULimit)
        start.append(limits.uid.map(Int64.init) ?? -1)
        start.append(limits.gid.map(Int64.init) ?? -1)
        start.append(helperWallOffset.milliseconds)
        start.append(UInt32(params.count))
        for param in params {
            start.append(param.key)
            start.append(param.value)
        }
        return start
    }

    /// What ended a helper (a timeout's kill shows as a close: `timedOut` tells it apart).
    private enum Ending {
        /// Its socket closed, broke, or carried something that is not the frame due (then it is killed).
        case frame(HelperFrame.Failure)
        /// It could not load the plugin, or the plugin refused its params (the message names the expirable); it
        /// exits by itself.
        case refused(String)
    }

    /// Reaps a helper that died, was killed, or broke the protocol (then it is killed first), and sets when
    /// the next may start. The error says what happened, for the call in flight and the calls until then:
    /// `loading`, while the helper loaded the plugin and created its instance; `final`, for a first helper,
    /// whose end refuses the expirable (no restart is promised, and the refusal is the daemon's to log).
    @discardableResult
    private func died(_ helper: HelperProcess, number: UInt64?, because ending: Ending, loading: Bool = false, final: Bool = false) -> ExpirableError {
        // A helper that refused exits by itself, with status 0: the log says it refused, not how it exited.
        var refused = false
        var malformed = false
        if case .refused = ending { refused = true }
        if case .frame(.malformed(let what)) = ending {
            malformed = true
            helper.killGroup()
            logger.error("plugin helper killed: what it sent is not the frame due", metadata: ["expirable": "\(expirable)", "pid": "\(helper.pid)", "sent": "\(what)"])
        }
        let (how, cpuSeconds) = helper.reapWithUsage(grace: .milliseconds(200))
        // The daemon's own kill of a helper that sent what is not the frame due is no crash of the plugin's.
        let loggedHow = refused ? "refused to load the plugin or create its instance" : malformed ? "killed by the daemon for what it sent" : how
        let now = clock.monotonicNanos
        return state.withLock { s in
            // SIGKILL once its call had outlived its timeout: the helper's own timer (the daemon was stopped and
            // could not kill it), not a crash.
            if let number, s.inFlight == number, how == "crashed (SIGKILL)", now - min(now, s.inFlightSince) >= UInt64(timeout.nanoseconds) {
                s.timedOut = number
            }
            let wait = s.backoff
            s.backoff = min(s.backoff * 2, IsolatedInstance.maxBackoff)
            s.helper = nil
            s.restartAt = now + UInt64(wait.milliseconds) * 1_000_000
            let restart = final ? "" : "; the first call after \(wait.milliseconds / 1000)s starts its helper again"
            let during = loading ? " while it loaded the plugin or created its instance (its constructors, expirable_abi or expirable_create)" : ""
            let death: ExpirableError
            // Killed by the daemon as it stops (`destroy` kills a helper whose call is under way): the call is cut
            // short by the shutdown, not by a crash of the plugin, and no helper will start again.
            let stoppedByDaemon = s.destroying && how == "crashed (SIGKILL)" && !(number != nil && s.timedOut == number)
            if stoppedByDaemon {
                death = .fetch("plugin for \(expirable) was stopped with its helper (pid \(helper.pid)) in its call: the daemon is stopping")
                s.lastDeath = death
                logger.info("plugin helper stopped with the daemon", metadata: ["expirable": "\(expirable)", "pid": "\(helper.pid)", "how": "killed in its call, as the daemon stops"])
                return death
            }
            if s.killedInCreate == helper.pid {
                death = .fetch("plugin \(path) for \(expirable) did not finish loading and creating its instance (its constructors, expirable_abi and expirable_create) within \(timeout.milliseconds)ms (its timeout), so its helper (pid \(helper.pid)) was killed\(restart)")
            } else if let number, s.timedOut == number {
                // TIMEOUT, as the call in flight got: the callers answered with it until the helper is back
                // (a script retries on TIMEOUT, expirablectl's status 75) must not see another kind of failure.
                death = .timeout("plugin for \(expirable) was killed with its helper (pid \(helper.pid)) after a call outlived its timeout of \(timeout.milliseconds)ms\(restart)")
            } else {
                switch ending {
                case .frame(.malformed(let what)):
                    death = .fetch("plugin for \(expirable) sent its daemon \(what), so its helper (pid \(helper.pid)) was killed\(restart)")
                case .refused(let message):
                    death = .fetch(message)
                case .frame(.closed):
                    if how == "crashed (SIGXCPU)", let seconds = limits.maxCPUSeconds {
                        death = .fetch("plugin for \(expirable) used more than its max_cpu of \(seconds)s of CPU in one call, so its helper (pid \(helper.pid)) was stopped (SIGXCPU)\(restart)")
                    } else if how == "crashed (SIGKILL)", raisesCPULimit, let seconds = limits.maxCPUSeconds, cpuSeconds >= seconds {
                        // The hard limit, one second past the soft: a plugin that ignored SIGXCPU, or raised its soft
                        // limit to the hard one.
                        death = .fetch("plugin for \(expirable) used more than its max_cpu of \(seconds)s of CPU in one call, so its helper (pid \(helper.pid)) was killed at the hard limit (SIGKILL)\(restart)")
                    } else if how == "exited with status \(PluginHelper.socketLostStatus)" {
                        death = .fetch("plugin for \(expirable) closed or replaced descriptor 3, its helper's socket to the daemon, so its helper (pid \(helper.pid)) ended\(restart)")
                    } else {
                        death = .fetch("plugin for \(expirable) \(how) in its helper (pid \(helper.pid))\(during)\(restart)")
                    }
                }
            }
            s.lastDeath = death
            guard !final else { return death }
            let killed = number.map { s.timedOut == $0 } ?? false
            logger.warning("plugin helper died", metadata: ["expirable": "\(expirable)", "pid": "\(helper.pid)", "how": "\(killed ? "killed after its call's timeout" : loggedHow)",
                                                           "restart_after_ms": "\(wait.milliseconds)"])
            return death
        }
    }
}

/// The timer of a call in flight, which its answer cancels.
private final class TimerSlot: Sendable {
    let timer = Mutex<(any Cancellable)?>(nil)
}

/// What a helper is confined to before it loads its plugin.
struct HelperLimits: Sendable {
    /// RLIMIT_DATA in bytes.
    var maxMemory: Int?
    /// CPU seconds per call (RLIMIT_CPU, moved before each call).
    var maxCPUSeconds: Int?
    /// The user and group to switch to; only when the daemon runs as root (or they are its own).
    var uid: UInt32?
    var gid: UInt32?
}
