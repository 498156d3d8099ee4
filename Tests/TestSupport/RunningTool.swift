import Foundation

/// A program left running while a test reads its output line by line (`expirablectl watch`, say). `stop()`
/// signals it and collects the rest; `deinit` kills it if the test did not.
public final class RunningTool {
    public let process: Spawned
    private let out: Int32
    private let err: Int32
    private var pending: [UInt8] = []
    private var stderrBytes: [UInt8] = []

    /// Starts `arguments[0]` with stdout and stderr on pipes, in `environment` (this process's when nil).
    public init(_ arguments: [String], environment: [String: String]? = nil) throws {
        let out = try closeOnExecPair()
        let err = try closeOnExecPair()
        do {
            process = try Spawned(arguments, stdout: .descriptor(out.write), stderr: .descriptor(err.write), environment: environment)
        } catch {
            for fd in [out.read, out.write, err.read, err.write] { close(fd) }
            throw error
        }
        close(out.write)
        close(err.write)
        self.out = out.read
        self.err = err.read
    }

    deinit {
        if process.isRunning {
            kill(process.pid, SIGKILL)
            process.wait()
        }
        close(out)
        close(err)
    }

    /// The next line the program prints on stdout (without its newline), or nil if none comes within
    /// `seconds` or stdout closes first.
    public func nextLine(within seconds: Double) -> String? {
        let deadline = Date().addingTimeInterval(seconds)
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            if let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                defer { pending.removeSubrange(...newline) }
                return String(decoding: pending[..<newline], as: UTF8.self)
            }
            let left = deadline.timeIntervalSinceNow
            guard left > 0 else { return nil }
            var fds = [pollfd(fd: out, events: Int16(POLLIN), revents: 0)]
            let ready = poll(&fds, 1, Int32(left * 1000) + 1)
            if ready < 0 && errno == EINTR { continue }
            guard ready > 0 else { return nil }
            let n = read(out, &buffer, buffer.count)
            guard n > 0 else { return nil }
            pending += buffer[0..<n]
        }
    }

    /// Waits (at most `seconds`, then kills it) for the program to exit on its own; its status and stderr.
    public func finish(within seconds: Double) -> (status: Int32, stderr: String) {
        let deadline = Date().addingTimeInterval(seconds)
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            var fds = [pollfd(fd: err, events: Int16(POLLIN), revents: 0)]
            let left = deadline.timeIntervalSinceNow
            if left <= 0 {
                kill(process.pid, SIGKILL)
                break
            }
            if poll(&fds, 1, Int32(left * 1000) + 1) > 0 {
                let n = read(err, &buffer, buffer.count)
                if n <= 0 { break }
                stderrBytes += buffer[0..<n]
            }
        }
        return (process.wait(), String(decoding: stderrBytes, as: UTF8.self))
    }

    /// Sends `signal` and waits for the program to exit; its status and stderr.
    @discardableResult
    public func stop(signal: Int32 = SIGINT) -> (status: Int32, stderr: String) {
        kill(process.pid, signal)
        return finish(within: 10)
    }
}
