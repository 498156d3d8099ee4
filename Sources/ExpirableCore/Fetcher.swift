/// Gets a fresh value for one expirable. The engine makes at most one call per expirable (per key) at a time and
/// calls it from any thread; `completion` must be called exactly once, from any thread.
///
/// A fetcher implements at least one of the two methods: `fetch(completion:)` for a plain value, or
/// `fetch(_:completion:)` to receive a keyed family's key and a plugin's state (SPEC §3.19–20) and give a new
/// state back. Each has a default made from the other.
public protocol Fetcher: Sendable {
    func fetch(completion: @escaping @Sendable (Result<Fetched, ExpirableError>) -> Void)
    func fetch(_ request: FetchRequest, completion: @escaping @Sendable (FetchOutcome) -> Void)
}

extension Fetcher {
    /// A fetcher that knows nothing of keys and states: the request's are ignored and the state is kept.
    public func fetch(_ request: FetchRequest, completion: @escaping @Sendable (FetchOutcome) -> Void) {
        fetch { completion(FetchOutcome(result: $0, state: .keep)) }
    }

    public func fetch(completion: @escaping @Sendable (Result<Fetched, ExpirableError>) -> Void) {
        fetch(.plain) { completion($0.result) }
    }
}

/// A fetcher that may answer without calling this node's plugin: the cluster's, which forwards a fetch to the
/// expirable's owner or answers it with the value that arrived from a peer while the node was joining. The engine
/// does not count its calls as plugin calls (INFO `plugin_calls`); it reports those its node's plugin makes
/// through `Engine.countPluginCall(_:)`, and says where each answer came from in its outcome's `route`.
public protocol ForwardingFetcher: Fetcher {}

/// What one call is for: the key of a keyed family (nil for a plain expirable) and the state the previous call
/// left (nil for none).
public struct FetchRequest: Sendable {
    public var key: String?
    public var state: Secret?
    /// A time on the engine's monotonic clock (ns) after which the call must not start, if it has to wait for
    /// the instance's call under way: a quorum lease (SPEC §4.10) that could no longer hold a whole call.
    public var startBy: UInt64?
    /// Where what a call did to the state goes when its result comes too late to be the answer (its caller was
    /// answered TIMEOUT meanwhile): the plugin may have spent the old state (a rotated refresh token), so the new
    /// one is kept all the same. Nil: no one keeps it.
    public var lateState: (@Sendable (StateChange) -> Void)?

    public init(key: String? = nil, state: Secret? = nil, startBy: UInt64? = nil, lateState: (@Sendable (StateChange) -> Void)? = nil) {
        self.key = key
        self.state = state
        self.startBy = startBy
        self.lateState = lateState
    }

    /// Hands a late result's state change to `lateState`; true when there was one to keep.
    @discardableResult
    public func keepLate(_ change: StateChange) -> Bool {
        if case .keep = change { return false }
        lateState?(change)
        return true
    }

    /// No key, no state.
    public static let plain = FetchRequest()
}

/// What a call did to the plugin's state (ABI 1.2 `set_state`).
public enum StateChange: Sendable {
    /// Not touched: the next call gets the same state.
    case keep
    /// Replaced: the next call gets this.
    case set(Secret)
    /// Emptied: the next call gets none.
    case clear
}

/// A call's result and what it did to the state; a state may change with a value or with an error (a refresh
/// token the identity provider consumed is replaced even if the call then failed). `route` says where the result
/// came from: this node's plugin unless a `ForwardingFetcher` answered otherwise (explain shows it).
public struct FetchOutcome: Sendable {
    public var result: Result<Fetched, ExpirableError>
    public var state: StateChange
    public var route: CallRecord.Route

    public init(result: Result<Fetched, ExpirableError>, state: StateChange = .keep, route: CallRecord.Route = .plugin) {
        self.result = result
        self.state = state
        self.route = route
    }
}

/// A fetcher made from an async closure, for tests and for programs embedding the engine.
public struct ClosureFetcher: Fetcher {
    private let body: @Sendable () async -> Result<Fetched, ExpirableError>

    public init(_ body: @escaping @Sendable () async -> Result<Fetched, ExpirableError>) {
        self.body = body
    }

    public func fetch(completion: @escaping @Sendable (Result<Fetched, ExpirableError>) -> Void) {
        Task { completion(await body()) }
    }
}

/// Where plugin states go besides memory (SPEC §3.20): the daemon's encrypted `state_dir`.
public protocol StateKeeper: Sendable {
    /// `name`'s state changed to `state` (nil: cleared). Called outside the engine's locks, once per change.
    func stateChanged(_ name: String, _ state: Secret?)
    /// The saved state of `name`, for a keyed family's member made after start: nil when there is none, an
    /// error when the saved one cannot be used.
    func load(_ name: String) -> Result<Secret, ExpirableError>?
}

extension StateKeeper {
    public func load(_ name: String) -> Result<Secret, ExpirableError>? { nil }
}
