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

private func report(_ call: UnsafePointer<expirable_call>, error message: String) {
    var message = message
    message.withUTF8 { bytes in
        bytes.withMemoryRebound(to: CChar.self) {
            call.pointee.host.pointee.set_error(call.pointee.result, $0.baseAddress, $0.count)
        }
    }
}

/// One expirable's command.
final class Command {
    let options: CommandOptions

    init(_ options: CommandOptions) {
        self.options = options
    }

    func fetch(_ call: UnsafePointer<expirable_call>) {
        let host = call.pointee.host.pointee
        switch ChildProcess.run(options.argv, timeoutMillis: options.timeoutMillis, maxOutput: options.maxOutput) {
        case .failedToStart(let reason):
            report(call, error: "command plugin: \(reason)")
        case .timedOut:
            report(call, error: "command plugin: \(options.argv[0]) did not finish within \(options.timeoutMillis)ms and was killed")
        case .outputTooLarge:
            report(call, error: "command plugin: \(options.argv[0]) printed more than max_output (\(options.maxOutput) bytes) and was killed")
        case .signalled(let signal, let stderr):
            report(call, error: "command plugin: \(options.argv[0]) was killed by signal \(signal)\(Command.tail(stderr))")
        case .exited(let status, var stdout, let stderr):
            defer { stdout.withUnsafeMutableBytes { if let base = $0.baseAddress { explicit_bzero(base, $0.count) } } }
            guard status == 0 else {
                report(call, error: "command plugin: \(options.argv[0]) exited with status \(status)\(Command.tail(stderr))")
                return
            }
            do {
                var (value, expiresAt) = try parse(stdout, now: host.now_ms())
                defer { value.withUnsafeMutableBytes { if let base = $0.baseAddress { explicit_bzero(base, $0.count) } } }
                value.withUnsafeBufferPointer { bytes in
                    bytes.withMemoryRebound(to: CChar.self) { host.set_value(call.pointee.result, $0.baseAddress, $0.count, expiresAt) }
                }
            } catch {
                report(call, error: error.message)
            }
        }
    }

    /// The value and its expiry from the program's output.
    func parse(_ stdout: [UInt8], now: Int64) throws(CommandError) -> ([UInt8], Int64) {
        switch options.output {
        case .raw:
            var value = stdout
            if options.trim, value.last == UInt8(ascii: "\n") {
                value.removeLast()
                if value.last == UInt8(ascii: "\r") { value.removeLast() }
            }
            return (value, expiry(ttl: options.ttlMillis!, now: now))
        case .json:
            let object: [String: JSONMember]
            do {
                object = try parseJSONObject(stdout)
            } catch {
                throw CommandError("output is not a JSON object; print {\"\(options.valueKey)\": \"...\", \"expires_in\": seconds}")
            }
            guard case .string(let value) = object[options.valueKey] else {
                throw CommandError("JSON output has no string \"\(options.valueKey)\"")
            }
            if let expiresAt = object["expires_at"] {
                guard case .number(let number, let exact) = expiresAt, let ms = exact ?? Int64(exactly: number.rounded(.towardZero)) else {
                    throw CommandError("JSON \"expires_at\" must be a number of Unix milliseconds")
                }
                return (Array(value.utf8), ms)
            }
            if let expiresIn = object["expires_in"] {
                guard case .number(let seconds, _) = expiresIn, seconds.isFinite, seconds < 1e12 else {
                    throw CommandError("JSON \"expires_in\" must be a number of seconds")
                }
                return (Array(value.utf8), now + Int64(seconds * 1000))
            }
            guard let ttl = options.ttlMillis else {
                throw CommandError("JSON output has neither \"expires_in\" nor \"expires_at\", and no 'ttl' param is set")
            }
            return (Array(value.utf8), expiry(ttl: ttl, now: now))
        }
    }

    private func expiry(ttl: Int64, now: Int64) -> Int64 {
        ttl == Int64.max ? Int64.max : now + ttl  // Int64.max is EXPIRABLE_NEVER_EXPIRES
    }

    /// The end of stderr, for an error message.
    private static func tail(_ stderr: [UInt8]) -> String {
        let text = String(decoding: stderr, as: UTF8.self).drop { $0.isWhitespace }
        guard let last = text.lastIndex(where: { !$0.isWhitespace }) else { return "" }
        return ": " + String(text[...last].suffix(500))
    }
}
