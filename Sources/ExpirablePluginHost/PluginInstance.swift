import Dispatch
import ExpirableABI
import ExpirableConfig
import ExpirableCore
import Logging
import Synchronization

/// One expirable's use of a plugin: its params in C form, the state from `expirable_create`, and the calls.
/// Each call runs on a thread of its own, never on the caller's; if it outlives `timeout` its callers get a
/// TIMEOUT error at once, and until it returns every new fetch gets a TIMEOUT error too, so a hung plugin
/// holds one thread and no more.
final class PluginInstance: PluginCalls, @unchecked Sendable {
    // @unchecked: `arguments` and the C memory it points into are written once in init and then only read;
    // `instance` and `thread` are written once by create(). Everything that changes later is behind `busySince`.
    let expirable: String
    let library: PluginLibrary
    let timeout: Duration
    private let logger: Logger
    private var arguments = expirable_call()
    private let storage: ParamStorage
    private var instance: UnsafeMutableRawPointer?
    private var thread: PluginThread?
    /// Monotonic start time of the call under way, if any.
    private let busySince = Mutex<UInt64?>(nil)
    private let clock = SystemClock()

    init(expirable: String, params: [Configuration.Param], library: PluginLibrary, timeout: Duration, logger: Logger) {
        self.expirable = expirable
        self.library = library
        self.timeout = timeout
        self.logger = logger
        storage = ParamStorage(name: expirable, params: params)
        arguments.size = UInt32(MemoryLayout<expirable_call>.size)
        arguments.host = HostFunctions.table
        arguments.name = storage.name
        arguments.params = UnsafePointer(storage.params)
        arguments.param_count = params.count
        arguments.timeout_ms = timeout.milliseconds
    }

    /// Starts the thread the calls run on and calls `expirable_create`, if the plugin has it; a refusal becomes
    /// an error naming the expirable.
    func create() throws(PluginError) {
        guard let thread = PluginThread(name: "plugin:\(expirable)") else {
            throw PluginError("expirable.\(expirable): cannot start a thread for its plugin calls (the system is out of threads)")
        }
        self.thread = thread
        guard let create = library.create else { return }
        let result = CallResult()
        var call = arguments
        call.result = HostFunctions.opaque(result)
        let made = withExtendedLifetime(result) { create(&call) }
        if case .failure(let error) = result.outcome(plugin: library.path), result.reported {
            if let made { library.destroy?(made) }
            throw PluginError("expirable.\(expirable): plugin \(library.path) refused its params: \(error.message)")
        }
        instance = made
        arguments.instance = made
    }

    /// Calls `expirable_destroy` and ends the thread, unless a call is still running (then both are left alone).
    func destroy() {
        let idle = busySince.withLock { s -> Bool in
            guard s == nil else { return false }
            s = .max
            return true
        }
        guard idle else { return }
        thread?.stop()
        if let destroy = library.destroy, let instance { destroy(instance) }
    }

    func fetch(completion: @escaping @Sendable (Result<Fetched, ExpirableError>) -> Void) {
        let now = clock.monotonicNanos
        let previous: UInt64? = busySince.withLock { s in
            if let started = s { return started }
            s = now
            return nil
        }
        if let previous {
            let seconds = previous == .max ? 0 : (now - previous) / 1_000_000_000
            completion(.failure(.timeout("plugin \(library.path) for \(expirable) is still running a call started \(seconds)s ago; no new call until it returns")))
            return
        }
        let answer = Once(completion)
        let result = CallResult()
        guard let thread else {
            busySince.withLock { $0 = nil }
            completion(.failure(.fetch("plugin \(library.path) for \(expirable) was not started; the daemon did not call create()")))
            return
        }
        thread.run { [self] in
            var call = arguments
            call.result = HostFunctions.opaque(result)
            withExtendedLifetime(result) { library.fetch(&call) }
            busySince.withLock { $0 = nil }
            if !answer.fire(result.outcome(plugin: library.path)) {
                logger.info("late plugin result discarded after timeout", metadata: ["expirable": "\(expirable)"])
            }
        }
        DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(Int(clamping: timeout.milliseconds))) { [self] in
            if answer.fire(.failure(.timeout("plugin \(library.path) for \(expirable) did not answer within \(timeout.milliseconds)ms"))) {
                logger.warning("plugin call timed out", metadata: ["expirable": "\(expirable)", "timeout_ms": "\(timeout.milliseconds)"])
            }
        }
    }
}

/// Calls a completion at most once, whichever of the call and its timeout comes first.
final class Once: Sendable {
    private let completion: Mutex<(@Sendable (Result<Fetched, ExpirableError>) -> Void)?>

    init(_ completion: @escaping @Sendable (Result<Fetched, ExpirableError>) -> Void) {
        self.completion = Mutex(completion)
    }

    /// Whether a result was delivered already.
    var fired: Bool { completion.withLock { $0 == nil } }

    /// Delivers `result` if nothing was delivered yet; returns whether it did.
    func fire(_ result: Result<Fetched, ExpirableError>) -> Bool {
        guard let completion = self.completion.withLock({ c in defer { c = nil }; return c }) else { return false }
        completion(result)
        return true
    }
}

/// The params and name as `{ptr, len}` pairs in memory that lives as long as the instance.
private final class ParamStorage {
    let name: expirable_str
    let params: UnsafeMutablePointer<expirable_param>
    private var blocks: [UnsafeMutableRawPointer] = []

    init(name: String, params: [Configuration.Param]) {
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
        self.blocks = blocks
    }

    deinit {
        for block in blocks { block.deallocate() }
        params.deallocate()
    }
}
