import ExpirableABI
import ExpirableCore
import Synchronization

/// What one plugin call reported through set_value / set_error. The plugin sees it as an opaque
/// `expirable_result *`; the host turns it into a fetch result after the call returns, refusing anything
/// malformed with an error that says what the plugin did wrong.
final class CallResult: Sendable {
    private struct State {
        var value: Fetched?
        var error: String?
        var problems: [String] = []
        var reports = 0
        var errorClass: ExpirableError.Class = .temporary
        /// Classified EXPIRABLE_ERROR_TIMEOUT: the error is a TIMEOUT.
        var timedOut = false
        var retryAfter: Int64?
        var classified = 0
        var state: StateChange = .keep
        var stateCalls = 0
    }

    private let state = Mutex(State())
    let maxValueBytes: Int
    /// The host's clock, for "now" in a retry-after's bound.
    private let clock: any EngineClock

    init(clock: any EngineClock, maxValueBytes: Int = Int(EXPIRABLE_MAX_VALUE_BYTES)) {
        self.clock = clock
        self.maxValueBytes = maxValueBytes
    }

    /// A length as the plugin passed it (`size_t`): a negative Int is a huge size_t, most likely a C `ssize_t`
    /// error code such as a failed read()'s -1, and is said so.
    static func length(_ count: Int) -> String {
        count < 0 ? "\(UInt(bitPattern: count)) (\(count) as a signed number: an error code such as a failed read()'s, not a length)" : "\(count)"
    }

    func setValue(_ pointer: UnsafeRawPointer?, count: Int, expiresAt: Int64) {
        state.withLock { s in
            s.reports += 1
            if count < 0 || count > maxValueBytes {
                s.problems.append("returned a value of \(CallResult.length(count)) bytes, over the limit of \(maxValueBytes)")
            } else if pointer == nil && count > 0 {
                s.problems.append("passed a NULL value pointer with a non-zero length")
            } else if expiresAt < 0 {
                s.problems.append("returned a negative expires_at (\(expiresAt)); expected Unix milliseconds or EXPIRABLE_NEVER_EXPIRES")
            } else {
                let expiry: Expiry = expiresAt == Int64.max ? .never : .at(unixMillis: expiresAt)
                s.value = Fetched(value: Secret(copying: UnsafeRawBufferPointer(start: pointer, count: count)), expiry: expiry)
            }
        }
    }

    func setError(_ pointer: UnsafeRawPointer?, count: Int) {
        guard count >= 0 else {
            state.withLock { s in
                s.reports += 1
                s.problems.append("passed set_error a message length of \(CallResult.length(count))")
            }
            return
        }
        let message = pointer.map { CallResult.printable(UnsafeRawBufferPointer(start: $0, count: count)) } ?? ""
        state.withLock { s in
            s.reports += 1
            if pointer == nil && count > 0 {
                s.problems.append("passed a NULL message pointer with a non-zero length to set_error")
            } else if message.allSatisfy({ $0 == " " }) {
                s.problems.append("reported an error without a message (set_error with an empty one); it must say what failed")
            } else {
                s.error = message
            }
        }
    }

    /// The plugin's word on the error it reports (ABI 1.1): its class and a Unix-ms retry-after (0: none),
    /// held to at most `maxRetryAfter` from now on the host's clock.
    func classify(_ errorClass: Int32, retryAfter: Int64) {
        let now = clock.unixMillis
        state.withLock { s in
            s.classified += 1
            switch errorClass {
            case Int32(EXPIRABLE_ERROR_TEMPORARY): s.errorClass = .temporary
            case Int32(EXPIRABLE_ERROR_PERMANENT): s.errorClass = .permanent
            case Int32(EXPIRABLE_ERROR_TIMEOUT): s.timedOut = true
            default:
                s.problems.append("classified its error as \(errorClass); expected EXPIRABLE_ERROR_TEMPORARY (0), EXPIRABLE_ERROR_PERMANENT (1) or EXPIRABLE_ERROR_TIMEOUT (2)")
            }
            if retryAfter < 0 {
                s.problems.append("gave a negative retry_after_ms (\(retryAfter)); expected Unix milliseconds, or 0 for none")
            } else if retryAfter > 0 {
                s.retryAfter = min(retryAfter, now + CallResult.maxRetryAfter.milliseconds)
            }
        }
    }

    /// The plugin's new state (ABI 1.2): empty clears it.
    func setState(_ pointer: UnsafeRawPointer?, count: Int) {
        state.withLock { s in
            s.stateCalls += 1
            guard count >= 0, count <= Int(EXPIRABLE_MAX_STATE_BYTES) else {
                s.problems.append("set a state of \(CallResult.length(count)) bytes, over the limit of \(EXPIRABLE_MAX_STATE_BYTES)")
                return
            }
            guard pointer != nil || count == 0 else {
                s.problems.append("passed a NULL state pointer with a non-zero length")
                return
            }
            s.state = count == 0 ? .clear : .set(Secret(copying: UnsafeRawBufferPointer(start: pointer, count: count)))
        }
    }

    /// The outcome with the state change. A state set validly, once, stands even when the result is an error:
    /// the identity provider may have consumed the old one.
    func fetchOutcome(plugin: String) -> FetchOutcome {
        let result = outcome(plugin: plugin)
        return state.withLock { s in
            if s.stateCalls > 1 {
                return FetchOutcome(result: .failure(.fetch("plugin \(plugin) set its state \(s.stateCalls) times; call set_state at most once per call")))
            }
            return FetchOutcome(result: result, state: s.state)
        }
    }

    /// The furthest a plugin's retry-after may hold calls back: past it, a typo or a hostile plugin would keep
    /// an expirable from ever being fetched again until someone clears it.
    static let maxRetryAfter: Duration = .seconds(3600)

    /// Whether the plugin called set_value or set_error at all.
    var reported: Bool { state.withLock { $0.reports > 0 } }

    /// The outcome, once the plugin call has returned. `plugin` names it in messages about malformed results.
    func outcome(plugin: String) -> Result<Fetched, ExpirableError> {
        state.withLock { s in
            if s.classified > 1 {
                return .failure(.fetch("plugin \(plugin) classified its error \(s.classified) times; call classify_error at most once"))
            }
            if s.reports > 1 {
                return .failure(.fetch("plugin \(plugin) reported \(s.reports) results (a value and an error, or several of either); it must call set_value or set_error exactly once"))
            }
            if let problem = s.problems.first { return .failure(.fetch("plugin \(plugin) \(problem)")) }
            if let error = s.error, s.timedOut { return .failure(.timeout(error, retryAfter: s.retryAfter)) }
            if let error = s.error { return .failure(.fetch(error, class: s.errorClass, retryAfter: s.retryAfter)) }
            if let value = s.value { return .success(value) }
            return .failure(.fetch("plugin \(plugin) returned neither a value nor an error; it must call set_value or set_error"))
        }
    }

    /// The plugin's error message made safe for a log line or a RESP error: at most 1,000 bytes of valid UTF-8,
    /// control characters (C0, DEL, C1) and invisible ones (direction overrides, zero-width marks, line separators)
    /// replaced by spaces, so that no message hides or reorders text on a caller's terminal.
    static func printable(_ bytes: UnsafeRawBufferPointer) -> String {
        let text = String(decoding: bytes.prefix(1000), as: UTF8.self)
        return String(String.UnicodeScalarView(text.unicodeScalars.map { $0.isControlOrInvisible ? " " : $0 }))
    }
}
