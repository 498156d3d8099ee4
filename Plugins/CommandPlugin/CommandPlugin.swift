// command — an Expirable plugin, in Swift, whose value is what a program prints. See docs/plugins.md.
import ExpirableABI
import Glibc

@_cdecl("expirable_abi")
public func expirableAbi(_ info: UnsafeMutablePointer<expirable_abi_info>?) {
    guard let info else { return }
    info.pointee.magic = EXPIRABLE_ABI_MAGIC
    info.pointee.major = EXPIRABLE_ABI_MAJOR
    info.pointee.minor = EXPIRABLE_ABI_MINOR
}

@_cdecl("expirable_create")
public func expirableCreate(_ call: UnsafePointer<expirable_call>?) -> UnsafeMutableRawPointer? {
    guard let call else { return nil }
    do {
        let options = try CommandOptions(call)
        return Unmanaged.passRetained(Command(options)).toOpaque()
    } catch {
        report(call, error: error.message)
        return nil
    }
}

@_cdecl("expirable_destroy")
public func expirableDestroy(_ instance: UnsafeMutableRawPointer?) {
    guard let instance else { return }
    Unmanaged<Command>.fromOpaque(instance).release()
}

@_cdecl("expirable_fetch")
public func expirableFetch(_ call: UnsafePointer<expirable_call>?) {
    guard let call else { return }
    guard let instance = call.pointee.instance else {
        report(call, error: "command plugin: no instance; the host did not call expirable_create")
        return
    }
    Unmanaged<Command>.fromOpaque(instance).takeUnretainedValue().fetch(call)
}

/// Reports an error, classified (ABI 1.1) when it is permanent or names a retry-after (Unix ms), or (ABI 1.3)
/// when it is the plugin's own deadline: a TIMEOUT for the callers, as when the call overruns.
private func report(_ call: UnsafePointer<expirable_call>, error message: String, permanent: Bool = false, retryAfter: Int64 = 0, timedOut: Bool = false) {
    var message = message
    let host = call.pointee.host.pointee
    message.withUTF8 { bytes in
        bytes.withMemoryRebound(to: CChar.self) { host.set_error(call.pointee.result, $0.baseAddress, $0.count) }
    }
    if timedOut {
        host.classify_error(call.pointee.result, EXPIRABLE_ERROR_TIMEOUT, 0)
    } else if permanent || retryAfter > 0 {
        host.classify_error(call.pointee.result, permanent ? EXPIRABLE_ERROR_PERMANENT : EXPIRABLE_ERROR_TEMPORARY, retryAfter)
    }
}

/// The program's own word on a failure: an `error` in its JSON output.
struct ReportedError: Error {
    let message: String
    let permanent: Bool
    /// Unix ms, 0 for none.
    let retryAfter: Int64
}

/// One expirable's command.
final class Command {
    let options: CommandOptions

    init(_ options: CommandOptions) {
        self.options = options
    }

    /// What each `{key}` in an element of `argv` becomes.
    static let keyHole = "{key}"

    func fetch(_ call: UnsafePointer<expirable_call>) {
        let host = call.pointee.host.pointee
        // The key of a keyed family's member (1 to 256 bytes of printable ASCII without space, checked by the
        // host), nil for a plain expirable.
        let key = call.pointee.key.len > 0 ? String(call.pointee.key) : nil
        var argv = options.argv
        if options.argvTakesKey {
            guard let key else {
                report(call, error: "command plugin: param 'argv' uses \(Command.keyHole), and this call has no key; set keyed = true on the expirable and fetch NAME:KEY", permanent: true)
                return
            }
            // Each element stays one argument whatever the key holds: no shell reads it.
            argv = argv.map { $0.replacing(Command.keyHole, with: key) }
        }
        switch ChildProcess.run(argv, key: key, timeoutMillis: options.timeoutMillis, maxOutput: options.maxOutput) {
        case .failedToStart(let reason):
            report(call, error: "command plugin: \(reason)")
        case .timedOut:
            report(call, error: "command plugin: \(options.argv[0]) did not finish within \(options.timeoutMillis)ms and was killed", timedOut: true)
        case .outputTooLarge:
            report(call, error: "command plugin: \(options.argv[0]) printed more than max_output (\(options.maxOutput) bytes) and was killed")
        case .signalled(let signal, let stderr):
            report(call, error: "command plugin: \(options.argv[0]) was killed by signal \(signal)\(Command.tail(stderr))")
        case .exited(let status, let stdout, let stderr):
            // The output and every copy of the value made from it are SecretBuffers, zeroed when dropped.
            let object = options.output == .json ? stdout.withUnsafeBytes { try? parseJSONObject($0, secretKey: options.valueKey) } : nil
            if let object, let reported = Command.reportedError(object, program: options.argv[0], status: status, stderr: stderr, now: host.now_ms()) {
                report(call, error: reported.message, permanent: reported.permanent, retryAfter: reported.retryAfter)
                return
            }
            guard status == 0 else {
                let hint = Command.tail(stderr).isEmpty && options.argv[0].hasSuffix("curl")
                    ? " and printed nothing on stderr; run curl with -sS --fail-with-body (not -sf) to see why" : ""
                report(call, error: "command plugin: \(options.argv[0]) exited with status \(status)\(Command.tail(stderr))\(hint)",
                       permanent: Command.permanentStatuses.contains(status))
                return
            }
            do {
                let (value, expiresAt) = try parse(stdout, object: object, now: host.now_ms())
                value.withUnsafeBytes { bytes in
                    host.set_value(call.pointee.result, bytes.baseAddress?.assumingMemoryBound(to: CChar.self), bytes.count, expiresAt)
                }
            } catch {
                report(call, error: error.message)
            }
        }
    }

    /// The value and its expiry from the program's output (`object`: the output parsed as JSON, nil when it is
    /// not JSON or output is raw).
    func parse(_ stdout: SecretBuffer, object: [String: JSONMember]?, now: Int64) throws(CommandError) -> (SecretBuffer, Int64) {
        switch options.output {
        case .raw:
            if options.trim, stdout.last == UInt8(ascii: "\n") {
                stdout.removeLast(1)
                if stdout.last == UInt8(ascii: "\r") { stdout.removeLast(1) }
            }
            return (stdout, expiry(ttl: options.ttlMillis!, now: now))
        case .json:
            guard let object else {
                throw CommandError("output is not a JSON object; print {\"\(options.valueKey)\": \"...\", \"expires_in\": seconds}")
            }
            guard case .secret(let value) = object[options.valueKey] else {
                throw CommandError("JSON output has no string \"\(options.valueKey)\"")
            }
            if let expiresAt = object["expires_at"] {
                guard case .number(let number, let exact) = expiresAt, let ms = exact ?? Int64(exactly: number.rounded(.towardZero)) else {
                    throw CommandError("JSON \"expires_at\" must be a number of Unix milliseconds")
                }
                return (value, ms)
            }
            if let expiresIn = object["expires_in"] {
                guard case .number(let seconds, _) = expiresIn, seconds.isFinite, seconds < 1e12 else {
                    throw CommandError("JSON \"expires_in\" must be a number of seconds")
                }
                return (value, now + Int64(seconds * 1000))
            }
            guard let ttl = options.ttlMillis else {
                throw CommandError("JSON output has neither \"expires_in\" nor \"expires_at\", and no 'ttl' param is set")
            }
            return (value, expiry(ttl: ttl, now: now))
        }
    }

    private func expiry(ttl: Int64, now: Int64) -> Int64 {
        ttl == Int64.max ? Int64.max : now + ttl  // Int64.max is EXPIRABLE_NEVER_EXPIRES
    }

    /// Exit statuses that mean "do not retry": sysexits' EX_NOPERM (77) and EX_CONFIG (78). Every other
    /// non-zero status is temporary (EX_TEMPFAIL, 75, among them).
    static let permanentStatuses: Set<Int32> = [77, 78]

    /// RFC 6749 §5.2 error codes that retrying cannot fix.
    static let permanentOAuthErrors: Set<String> = [
        "invalid_request", "invalid_client", "invalid_grant", "unauthorized_client", "unsupported_grant_type", "invalid_scope",
    ]

    /// A JSON object on stdout with a string `error` (an OAuth 2.0 error response, or a program's own report),
    /// whatever the exit status: its `error`, `error_description`, and `error_class` ("temporary" |
    /// "permanent"; else by the OAuth code or the exit status) and `retry_after` (seconds) classify it. Only
    /// those members reach the message: the rest of the output may hold secrets.
    static func reportedError(_ object: [String: JSONMember], program: String, status: Int32, stderr: [UInt8], now: Int64) -> ReportedError? {
        guard case .string(let code) = object["error"] else { return nil }
        var message = "command plugin: \(program) reported error \"\(Command.clip(code, 100))\""
        if case .string(let description) = object["error_description"] { message += ": \(Command.clip(description, 300))" }
        if status != 0 { message += " (exit status \(status))" }
        var permanent = permanentOAuthErrors.contains(code) || permanentStatuses.contains(status)
        if case .string(let word) = object["error_class"] {
            if word == "permanent" { permanent = true } else if word == "temporary" { permanent = false }
        }
        var retryAfter: Int64 = 0
        if case .number(let seconds, _) = object["retry_after"], seconds.isFinite, seconds > 0, seconds < 1e9 {
            retryAfter = now + Int64(seconds * 1000)
            message += "; retry after \(Int64(seconds.rounded(.up)))s"
        }
        return ReportedError(message: message, permanent: permanent, retryAfter: retryAfter)
    }

    private static func clip(_ text: String, _ limit: Int) -> String {
        text.count <= limit ? text : String(text.prefix(limit)) + "…"
    }

    /// The end of stderr, for an error message.
    private static func tail(_ stderr: [UInt8]) -> String {
        let text = String(decoding: stderr, as: UTF8.self).drop { $0.isWhitespace }
        guard let last = text.lastIndex(where: { !$0.isWhitespace }) else { return "" }
        return ": " + String(text[...last].suffix(500))
    }
}
