import ExpirableABI
#if canImport(Glibc)
import Glibc
#endif

/// The command plugin's params, checked once in expirable_create.
struct CommandOptions {
    enum Output: String { case raw, json }

    /// The program and its arguments; with `shell`, ["/bin/sh", "-c", line].
    let argv: [String]
    /// Whether an element of `argv` (never the program, never a `shell` line) holds "{key}", replaced by the key
    /// of each call.
    let argvTakesKey: Bool
    let output: Output
    /// Lifetime of a value in milliseconds, `Int64.max` for "infinity"; nil when only JSON output gives it.
    let ttlMillis: Int64?
    let timeoutMillis: Int64
    let maxOutput: Int
    let trim: Bool
    /// The JSON key holding the value ("access_token" reads an OAuth token response as it is).
    let valueKey: String

    static let known: Set<String> = ["argv", "shell", "output", "ttl", "timeout", "max_output", "trim", "value_key"]

    init(_ call: UnsafePointer<expirable_call>) throws(CommandError) {
        let call = call.pointee
        var values: [String: [String]] = [:]
        for index in 0..<call.param_count {
            let param = call.params[index]
            let key = String(param.key)
            guard CommandOptions.known.contains(key) else {
                throw CommandError("unknown param '\(key)'; expected one of \(CommandOptions.known.sorted().joined(separator: ", "))")
            }
            values[key, default: []].append(String(param.value))
        }
        func single(_ key: String) throws(CommandError) -> String? {
            guard let list = values[key] else { return nil }
            guard list.count == 1 else { throw CommandError("param '\(key)' is given \(list.count) times; give it once") }
            return list[0]
        }
        func duration(_ key: String) throws(CommandError) -> Int64? {
            guard let text = try single(key) else { return nil }
            if key == "ttl" && text == "infinity" { return Int64.max }
            var ms: Int64 = 0
            let ok = text.withCString { call.host.pointee.parse_duration_ms($0, strlen($0), &ms) } == 0
            guard ok else { throw CommandError("param '\(key)' is \"\(text)\"; expected a duration such as \"30s\"\(key == "ttl" ? " or \"infinity\"" : "")") }
            return ms
        }

        switch (values["argv"], try single("shell")) {
        case (let argv?, nil):
            guard !argv[0].isEmpty else { throw CommandError("param 'argv' starts with an empty program name") }
            guard !argv[0].contains(Command.keyHole) else {
                throw CommandError("param 'argv': the program's name \"\(argv[0])\" holds \(Command.keyHole), which would let callers choose the program to run; name the program, and put \(Command.keyHole) in its arguments")
            }
            self.argv = argv
            argvTakesKey = argv.contains { $0.contains(Command.keyHole) }
        case (nil, let line?):
            // A key is never put into a shell line (it may hold ;$()'"): the line reads "$EXPIRABLE_KEY" instead.
            argv = ["/bin/sh", "-c", line]
            argvTakesKey = false
        case (nil, nil):
            throw CommandError("set param 'argv' (an array: program and arguments) or 'shell' (a command line for /bin/sh)")
        case (_?, _?):
            throw CommandError("params 'argv' and 'shell' exclude each other; keep one")
        }
        let outputWord = try single("output") ?? "raw"
        guard let output = Output(rawValue: outputWord) else {
            throw CommandError("param 'output' is \"\(outputWord)\"; expected \"raw\" or \"json\"")
        }
        self.output = output
        ttlMillis = try duration("ttl")
        if output == .raw && ttlMillis == nil {
            throw CommandError("param 'ttl' is missing; raw output needs it (a duration or \"infinity\"), or use output = \"json\"")
        }
        let hostTimeout = call.timeout_ms
        timeoutMillis = try duration("timeout") ?? max(1, hostTimeout - hostTimeout / 10)
        guard timeoutMillis > 0 else { throw CommandError("param 'timeout' must be above zero") }
        let maxText = try single("max_output") ?? "65536"
        guard let maxOutput = Int(maxText), maxOutput > 0, maxOutput <= Int(EXPIRABLE_MAX_VALUE_BYTES) else {
            throw CommandError("param 'max_output' is \"\(maxText)\"; expected a number of bytes from 1 to \(EXPIRABLE_MAX_VALUE_BYTES)")
        }
        self.maxOutput = maxOutput
        let trimText = try single("trim") ?? "true"
        guard trimText == "true" || trimText == "false" else {
            throw CommandError("param 'trim' is \"\(trimText)\"; expected \"true\" or \"false\"")
        }
        trim = trimText == "true"
        valueKey = try single("value_key") ?? "value"
    }
}

struct CommandError: Error {
    let message: String
    init(_ message: String) { self.message = "command plugin: " + message }
}

extension String {
    init(_ str: expirable_str) {
        self = str.ptr.map { String(decoding: UnsafeRawBufferPointer(start: $0, count: str.len), as: UTF8.self) } ?? ""
    }
}
