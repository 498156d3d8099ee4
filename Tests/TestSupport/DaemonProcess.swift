import ExpirableClient
import Foundation

/// A real `expirabled` started on a socket in a temporary directory, with test plugins compiled into its
/// plugin_dir. `stop()` sends SIGTERM to its PID and waits; `remove()` also deletes the directory.
public final class DaemonProcess: @unchecked Sendable {
    public let directory: TemporaryDirectory
    public let socket: String
    public let configPath: String
    public let logPath: String
    public let pluginDir: String
    public private(set) var process: Spawned?

    /// Extra command-line arguments for `expirabled`.
    public var arguments: [String] = []
    /// A program that runs before `expirabled` and execs it (same PID), such as `["prlimit", "--nofile=64"]`.
    public var launcher: [String] = []
    /// Variables added to the daemon's environment (such as `NOTIFY_SOCKET`).
    public var environment: [String: String] = [:]

    /// Writes a configuration with `expirables` (TOML tables), `server` (extra [server] lines) and `cluster` (a
    /// whole [cluster] table, or nothing), compiles the test plugins named, copies the shipped ones, and starts
    /// the daemon, waiting until it answers. "DIR" in the tables stands for the daemon's directory.
    public init(expirables: String, server: String = "", cluster: String = "", testPlugins: [String] = ["counter"],
                shippedPlugins: [String] = ["command"], arguments: [String] = [], start: Bool = true) throws {
        directory = try TemporaryDirectory("expd")
        self.arguments = arguments
        socket = directory.appending("s.sock")
        configPath = directory.appending("expirable.toml")
        logPath = directory.appending("daemon.log")
        pluginDir = directory.appending("plugins")
        try FileManager.default.createDirectory(atPath: pluginDir, withIntermediateDirectories: true)
        chmod(pluginDir, 0o755)
        for name in testPlugins { try compileTestPlugin(name, into: pluginDir) }
        for name in shippedPlugins { try installShippedPlugin(name, into: pluginDir) }
        let config = "[server]\nsocket = \"\(socket)\"\nplugin_dir = \"\(pluginDir)\"\n\(server)\n\n\(cluster)\n\n\(expirables)\n"
        try config.replacingOccurrences(of: "DIR", with: directory.path).write(toFile: configPath, atomically: true, encoding: .utf8)
        if start {
            do {
                try self.start()
            } catch {
                remove()
                throw error
            }
        }
    }

    /// Starts the daemon and waits (at most 10 s) until its socket answers PING, asking every `poll` µs.
    public func start(poll: UInt32 = 50_000) throws {
        let process = try launch()
        self.process = process
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            if let status = process.exitStatus { throw TestSupportError("expirabled exited with \(status): \(log)") }
            if answers() { return }
            usleep(poll)
        }
        kill9()
        throw TestSupportError("expirabled did not answer on \(socket) within 10 s: \(log)")
    }

    /// Starts another daemon on the same configuration and returns it without waiting.
    public func launch() throws -> Spawned {
        try Spawned(launcher + [try TestPaths.product("expirabled").path, "--config", configPath, "--log-level", "debug"] + arguments,
                    stdout: .file(logPath), stderr: .file(logPath),
                    environment: environment.isEmpty ? nil : ProcessInfo.processInfo.environment.merging(environment) { $1 })
    }

    /// Kills the daemon with SIGKILL and waits for it.
    public func kill9() {
        guard let process, process.isRunning else { return }
        kill(process.pid, SIGKILL)
        process.wait()
    }

    /// Whether something answers PING on the socket.
    public func answers() -> Bool {
        (try? RawConnection(socket).roundTrip("*1\r\n$4\r\nPING\r\n", expecting: 1)) == "+PONG\r\n"
    }

    /// `signal` (SIGTERM by default) to the daemon's PID, then waits up to 10 s (SIGKILL after that). Returns
    /// the exit status.
    @discardableResult
    public func stop(signal: Int32 = SIGTERM) -> Int32? {
        guard let process else { return nil }
        guard process.isRunning else { return process.exitStatus }
        kill(process.pid, signal)
        for _ in 0..<200 where process.isRunning { usleep(50_000) }
        if process.isRunning {
            kill(process.pid, SIGKILL)
            process.wait()
            return nil
        }
        return process.exitStatus
    }

    public func remove() {
        stop()
        directory.remove()
    }

    public var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// How many times a counting plugin wrote that it was called.
    public func count(_ file: String) -> Int {
        Int((try? String(contentsOfFile: directory.appending(file), encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "") ?? 0
    }

    /// Lines in a file the command plugin appends to, one per call.
    public func lines(_ file: String) -> Int {
        ((try? String(contentsOfFile: directory.appending(file), encoding: .utf8)) ?? "").split(separator: "\n").count
    }

    public func redis(_ arguments: String...) throws -> String {
        let result = try runTool("redis-cli", ["-s", socket] + arguments)
        return result.stdout.trimmingCharacters(in: .newlines)
    }

    public func ctl(_ arguments: String...) throws -> ToolResult {
        try runTool(TestPaths.product("expirablectl").path, arguments + ["--socket", socket])
    }

    public var client: ExpirableClient { ExpirableClient(socketPath: socket, timeout: .seconds(10)) }
}

/// A plain Unix-socket connection for sending exact bytes.
public final class RawConnection {
    public let fd: Int32

    public init(_ path: String) throws {
        // The descriptor becomes the object's only once connected: a throwing init after every property is set
        // still runs deinit, which would close it a second time, and by then the number may be another
        // thread's socket.
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        let result = withUnixAddress(path) { connect(fd, $0, $1) }
        guard result == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw TestSupportError("connect \(path): \(reason)")
        }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        self.fd = fd
    }

    deinit { close(fd) }

    /// Gives up on a read after `seconds` (10 by default).
    public func setReceiveTimeout(seconds: Int) {
        var timeout = timeval(tv_sec: seconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    public func send(_ text: String) {
        send(Array(text.utf8))
    }

    public func send(_ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n <= 0 { return }
            offset += n
        }
    }

    /// Reads until `replies` complete top-level RESP replies have arrived (or the peer closes, or 10 s pass).
    public func receive(replies: Int) -> String {
        var data: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while RawConnection.countReplies(data) < replies {
            let n = read(fd, &buffer, buffer.count)
            if n <= 0 { break }
            data += buffer[0..<n]
        }
        return String(decoding: data, as: UTF8.self)
    }

    public func roundTrip(_ text: String, expecting replies: Int) -> String {
        send(text)
        return receive(replies: replies)
    }

    /// Whether the peer has closed the connection (a read returns end of file within 10 s).
    public func isClosedByPeer() -> Bool {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = read(fd, &buffer, buffer.count)
            if n == 0 { return true }
            if n < 0 { return errno == ECONNRESET }
        }
    }

    /// Counts complete replies in simple RESP (no nested arrays beyond one level).
    static func countReplies(_ bytes: [UInt8]) -> Int {
        var index = 0
        var count = 0
        func line() -> String? {
            guard let end = bytes[index...].firstIndex(of: 0x0A) else { return nil }
            let text = String(decoding: bytes[index..<end], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            index = end + 1
            return text
        }
        func value() -> Bool {
            guard index < bytes.count, let header = line() else { return false }
            switch header.first {
            case "$":
                let length = Int(header.dropFirst()) ?? -1
                if length < 0 { return true }
                guard bytes.count >= index + length + 2 else { return false }
                index += length + 2
                return true
            case "*":
                let n = Int(header.dropFirst()) ?? 0
                for _ in 0..<max(0, n) where !value() { return false }
                return true
            default:
                return true
            }
        }
        while index < bytes.count, value() { count += 1 }
        return count
    }
}
