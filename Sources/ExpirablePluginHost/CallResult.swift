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

    func setValue(_ bytes: UnsafeRawBufferPointer?, expiresAt: Int64) {
        state.withLock { s in
            s.reports += 1
            if bytes == nil {
                s.problems.append("passed a NULL value pointer with a non-zero length")
            } else if let bytes, bytes.count > maxValueBytes {
                s.problems.append("returned a value of \(bytes.count) bytes, over the limit of \(maxValueBytes)")
            } else if expiresAt < 0 {
                s.problems.append("returned a negative expires_at (\(expiresAt)); expected Unix milliseconds or EXPIRABLE_NEVER_EXPIRES")
            } else {
                let expiry: Expiry = expiresAt == Int64.max ? .never : .at(unixMillis: expiresAt)
                s.value = Fetched(value: Secret(copying: bytes ?? UnsafeRawBufferPointer(start: nil, count: 0)), expiry: expiry)
            }
        }
    }

    func setError(_ bytes: UnsafeRawBufferPointer?) {
        let message = bytes.map { CallResult.printable($0) } ?? ""
        state.withLock { s in
            s.reports += 1
            s.error = message.isEmpty ? "(the plugin gave no message)" : message
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
    func setState(_ bytes: UnsafeRawBufferPointer?) {
        state.withLock { s in
            s.stateCalls += 1
            guard let bytes else {
                s.problems.append("passed a NULL state pointer with a non-zero length")
                return
            }
            guard bytes.count <= Int(EXPIRABLE_MAX_STATE_BYTES) else {
                s.problems.append("set a state of \(bytes.count) bytes, over the limit of \(EXPIRABLE_MAX_STATE_BYTES)")
                return
            }
            s.state = bytes.isEmpty ? .clear : .set(Secret(copying: bytes))
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
    /// control characters replaced by spaces.
    static func printable(_ bytes: UnsafeRawBufferPointer) -> String {
        let text = String(decoding: bytes.prefix(1000), as: UTF8.self)
        return String(String.UnicodeScalarView(text.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7f ? " " : $0 }))
    }
}
