import ExpirableABI
import ExpirableConfig
import ExpirableCore
import Logging
import Synchronization

/// One expirable's use of a plugin: its params in C form, the state from `expirable_create`, and the calls.
/// Each call runs on the instance's own thread (`PluginThread`), never on the caller's: inline, that is a thread
/// of the daemon; in a helper, a thread of the helper. Calls run one at a time: one that arrives while another
/// runs (another key of a keyed family) waits in a `CallQueue`. Inline, if a call outlives `timeout` (measured
/// on the injected clock, from the call's start) its callers get a TIMEOUT error at once, and until it returns
/// every new fetch gets a TIMEOUT error too, so a hung plugin holds one thread and no more. In a helper the
/// daemon queues and times the calls (and kills the helper), so the instance sets no timer: a timer would start
/// Dispatch's threads, whose stacks cost the helper 25 MB of its `max_memory` (VmData measured).
/// `expirable_create` is not bounded inline: it runs in the daemon, where nothing can stop it.
final class PluginInstance: PluginCalls, Sendable {
    let expirable: String
    let library: PluginLibrary
    let timeout: Duration
    /// Whether this instance answers TIMEOUT itself when a call outlives `timeout`.
    private let timesCalls: Bool
    private let logger: Logger
    private let clock: any EngineClock
    /// `clock` as the instance's thread holds it during calls, for the plugin's `now_ms`.
    private let callClock: HostFunctions.Clock
    private let arguments: CallArguments
    private let thread: PluginThread
    private let queue: CallQueue
    /// Set by the first of `destroy` and `retire`: the instance is ended once.
    private let ending = Atomic<Bool>(false)

    /// Starts the thread the calls run on and calls `expirable_create`, if the plugin has it, on that thread; a
    /// refusal becomes an error naming the expirable.
    init(
        expirable: String, params: [Configuration.Param], library: PluginLibrary, timeout: Duration,
        timesCalls: Bool = true, clock: any EngineClock, logger: Logger
    ) throws(PluginError) {
        guard let thread = PluginThread(name: "plugin:\(expirable)") else {
            throw PluginError("expirable.\(expirable): cannot start a thread for its plugin calls (the system is out of threads)")
        }
        self.expirable = expirable
        self.library = library
        self.timeout = timeout
        self.timesCalls = timesCalls
        self.logger = logger
        self.clock = clock
        let callClock = HostFunctions.Clock(clock)
        self.callClock = callClock
        self.thread = thread
        queue = CallQueue(expirable: expirable, plugin: library.path, timeout: timeout, clock: clock, timesWaits: timesCalls, refusesBehindOverdueCall: timesCalls)
        let storage = CallArguments(name: expirable, params: params, timeout: timeout)
        guard let create = library.create else {
            arguments = storage
            return
        }
        let result = CallResult(clock: clock)
        let made = thread.runAndWait {
            var call = storage.call(result: result)
            return HostFunctions.calling(on: callClock) { withExtendedLifetime(result) { create(&call) } }.map { Int(bitPattern: $0) }
        }
        if case .failure(let error) = result.outcome(plugin: library.path), result.reported {
            if let made {
                thread.runAndWait { HostFunctions.calling(on: callClock) { library.destroy?(UnsafeMutableRawPointer(bitPattern: made)) } }
            }
            thread.stop()
            throw PluginError("expirable.\(expirable): plugin \(library.path) refused its params: \(error.message)")
        }
        arguments = storage.with(instance: made.flatMap(UnsafeMutableRawPointer.init(bitPattern:)))
    }

    /// Calls `expirable_destroy` on the instance's thread and ends the thread, unless a call is still running
    /// (then both are left alone: the plugin's state is in use).
    func destroy() {
        guard !ending.exchange(true, ordering: .relaxed) else { return }
        guard queue.close(.fetch("plugin for \(expirable) is not running: the daemon is stopping")) else { return }
        if let destroy = library.destroy, let instance = arguments.instance {
            let address = Int(bitPattern: instance)
            thread.runAndWait { [callClock] in HostFunctions.calling(on: callClock) { destroy(UnsafeMutableRawPointer(bitPattern: address)) } }
        }
        thread.stop()
    }

    /// How long the call under way has run, in ms; nil when none is.
    var runningCallMillis: Int64? {
        guard let since = queue.runningSince else { return nil }
        let now = clock.monotonicNanos
        return Int64((now - min(since, now)) / 1_000_000)
    }

    /// Ends the instance a reload replaced or removed: waiting calls, and any from now on, get `reason`; the
    /// call under way returns to its callers, then `expirable_destroy` runs on the instance's thread and the
    /// thread ends (never, if that call never returns). Returns at once; `ended` runs when it is done.
    func retire(_ reason: ExpirableError, ended: @escaping @Sendable () -> Void) {
        guard !ending.exchange(true, ordering: .relaxed) else { return ended() }
        _ = queue.close(reason)
        let instance = arguments.instance.map { Int(bitPattern: $0) }
        thread.run { [library, callClock] in
            if let destroy = library.destroy, let instance {
                HostFunctions.calling(on: callClock) { destroy(UnsafeMutableRawPointer(bitPattern: instance)) }
            }
            ended()
        }
        thread.stop()
    }

    func fetch(completion: @escaping @Sendable (Result<Fetched, ExpirableError>) -> Void) {
        fetch(.plain) { completion($0.result) }
    }

    func fetch(_ request: FetchRequest, completion: @escaping @Sendable (FetchOutcome) -> Void) {
        let answer = Once(completion)
        queue.enqueue(startBy: request.startBy, start: { [self] in call(request, answer) }, refuse: { _ = answer.fire(FetchOutcome(result: .failure($0))) })
    }

    /// One call, its turn come: timed from now, run on the thread, and the next call let in when it returns.
    private func call(_ request: FetchRequest, _ answer: Once<FetchOutcome>) {
        let timer = !timesCalls ? nil : clock.schedule(after: timeout) { [self] in
            if answer.fire(FetchOutcome(result: .failure(.pluginTimeout(plugin: library.path, expirable: expirable, timeout: timeout)))) {
                logger.warning("plugin call timed out", metadata: ["expirable": "\(expirable)", "timeout_ms": "\(timeout.milliseconds)"])
            }
        }
        thread.run { [self] in
            let result = CallResult(clock: clock)
            var key = Array((request.key ?? "").utf8)
            defer { HelperFrame.wipe(&key) }
            key.withUnsafeBytes { keyBytes in
                CallArguments.withBytes(of: request.state) { stateBytes in
                    var call = arguments.call(result: result, key: keyBytes, state: stateBytes)
                    HostFunctions.calling(on: callClock) { withExtendedLifetime(result) { library.fetch(&call) } }
                }
            }
            timer?.cancel()
            let outcome = result.fetchOutcome(plugin: library.path)
            // A call that outlived its timeout (its callers got TIMEOUT; the daemon may have been paused while it
            // ran) keeps the state it set before the next call is let in, which starts from it.
            let late = answer.fired
            if late { keepLate(outcome, request) }
            // The next call is let in first, as a job after this one: a caller that fetches again as soon as it
            // has its answer queues behind nothing that is over.
            queue.finished()
            if !late, !answer.fire(outcome) { keepLate(outcome, request) }
        }
    }

    /// A result whose callers were answered TIMEOUT already: its value is dropped, its state kept.
    private func keepLate(_ outcome: FetchOutcome, _ request: FetchRequest) {
        let kept = request.keepLate(outcome.state)
        logger.info(kept ? "late plugin result discarded after timeout; the plugin state it set is kept" : "late plugin result discarded after timeout",
                    metadata: ["expirable": "\(expirable)"])
    }
}

/// Calls a completion at most once, whichever of the call and its timeout comes first.
final class Once<Value: Sendable>: Sendable {
    private let completion: Mutex<(@Sendable (Value) -> Void)?>

    init(_ completion: @escaping @Sendable (Value) -> Void) {
        self.completion = Mutex(completion)
    }

    /// Whether a result was delivered already.
    var fired: Bool { completion.withLock { $0 == nil } }

    /// Delivers `value` if nothing was delivered yet; returns whether it did.
    func fire(_ value: Value) -> Bool {
        guard let completion = self.completion.withLock({ c in defer { c = nil }; return c }) else { return false }
        completion(value)
        return true
    }
}

/// The name and params as `{ptr, len}` pairs in C memory that lives as long as the instance, and the plugin's
/// instance pointer: everything a call's `expirable_call` points to.
private final class CallArguments: @unchecked Sendable {
    // @unchecked: raw pointers are not Sendable, but nothing here is written after init (the memory they
    // point to included), and the plugin receives it as `const`.
    let name: expirable_str
    let params: UnsafeMutablePointer<expirable_param>
    let paramCount: Int
    let timeoutMillis: Int64
    let instance: UnsafeMutableRawPointer?
    private let blocks: [UnsafeMutableRawPointer]
    private let owner: CallArguments?

    init(name: String, params: [Configuration.Param], timeout: Duration) {
        var blocks: [UnsafeMutableRawPointer] = []
        func copy(_ text: String) -> expirable_str {
            let bytes = Array(text.utf8)
            let block = UnsafeMutableRawPointer.allocate(byteCount: max(bytes.count, 1), alignment: 1)
            block.copyMemory(from: bytes, byteCount: bytes.count)
            blocks.append(block)
            return expirable_str(ptr: block.assumingMemoryBound(to: CChar.self), len: bytes.count)
        }
        self.name = copy(name)
        self.params = .allocate(capacity: max(params.count, 1))
        for (index, param) in params.enumerated() {
            (self.params + index).initialize(to: expirable_param(key: copy(param.key), value: copy(param.value)))
        }
        self.paramCount = params.count
        self.timeoutMillis = timeout.milliseconds
        self.blocks = blocks
        self.instance = nil
        self.owner = nil
    }

    /// The same memory, with the instance `expirable_create` made; `self` keeps owning the memory.
    private init(sharing other: CallArguments, instance: UnsafeMutableRawPointer?) {
        name = other.name
        params = other.params
        paramCount = other.paramCount
        timeoutMillis = other.timeoutMillis
        blocks = []
        self.instance = instance
        owner = other
    }

    func with(instance: UnsafeMutableRawPointer?) -> CallArguments {
        CallArguments(sharing: self, instance: instance)
    }

    /// Calls `body` with `secret`'s bytes, or an empty buffer for none.
    static func withBytes<R>(of secret: Secret?, _ body: (UnsafeRawBufferPointer) -> R) -> R {
        guard let secret else { return body(UnsafeRawBufferPointer(start: nil, count: 0)) }
        return secret.withUnsafeBytes(body)
    }

    /// An `expirable_call` for one call that reports into `result` (kept alive by the caller during the call),
    /// with the key and state of ABI 1.2 pointing into buffers valid during the call (empty: none).
    func call(result: CallResult, key: UnsafeRawBufferPointer = .init(start: nil, count: 0), state: UnsafeRawBufferPointer = .init(start: nil, count: 0)) -> expirable_call {
        var call = expirable_call()
        call.size = UInt32(MemoryLayout<expirable_call>.size)
        call.host = HostFunctions.table
        call.name = name
        call.params = UnsafePointer(params)
        call.param_count = paramCount
        call.timeout_ms = timeoutMillis
        call.instance = instance
        call.result = HostFunctions.opaque(result)
        call.key = expirable_str(ptr: key.isEmpty ? nil : key.baseAddress!.assumingMemoryBound(to: CChar.self), len: key.count)
        call.state = expirable_str(ptr: state.isEmpty ? nil : state.baseAddress!.assumingMemoryBound(to: CChar.self), len: state.count)
        return call
    }

    deinit {
        guard owner == nil else { return }
        for block in blocks { block.deallocate() }
        params.deallocate()
    }
}
