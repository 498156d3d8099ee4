import Foundation
import Synchronization

/// A child process started with posix_spawn and reaped with waitpid. (Foundation's `Process` was seen to hang
/// in `waitUntilExit` when many run at once.) Every descriptor the parent opens is close-on-exec from the
/// start, so a child never holds another child's pipe open.
public final class Spawned: @unchecked Sendable {
    public let pid: pid_t
    private let status = Mutex<Int32?>(nil)

    /// Starts `arguments[0]` (looked up in PATH) with stdin from the descriptor `stdin` (/dev/null when nil) and
    /// stdout/stderr on `stdout`/`stderr` (descriptors, or a file path opened for appending), or inherited when nil.
    public init(_ arguments: [String], stdin: Int32? = nil, stdout: Output? = nil, stderr: Output? = nil, environment: [String: String]? = nil) throws {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if let stdin {
            posix_spawn_file_actions_adddup2(&actions, stdin, 0)
        } else {
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        }
        for (fd, output) in [(Int32(1), stdout), (Int32(2), stderr)] {
            switch output {
            case .descriptor(let source)?: posix_spawn_file_actions_adddup2(&actions, source, fd)
            case .file(let path)?: posix_spawn_file_actions_addopen(&actions, fd, path, O_WRONLY | O_CREAT | O_APPEND, 0o644)
            case nil: break
            }
        }
        // Nothing else reaches the child, whatever the flags of descriptors other tests open meanwhile: a
        // client socket a child inherits stays open after the test closes it, so the server never sees it go.
        _ = Spawned.addCloseFrom?(&actions, 3)
        let cArguments: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { for argument in cArguments { free(argument) } }
        let cEnvironment: [UnsafeMutablePointer<CChar>?]? = environment.map { $0.map { strdup("\($0.key)=\($0.value)") } + [nil] }
        defer { for entry in cEnvironment ?? [] { free(entry) } }
        // The test runner blocks some signals (SIGTERM among them) on its threads, and a spawned child inherits
        // the mask: `kill -TERM` and `timeout` would then never reach it. Children start with no signal blocked
        // and every signal at its default action.
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var none = sigset_t()
        sigemptyset(&none)
        var all = sigset_t()
        sigfillset(&all)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        var pid: pid_t = 0
        let result = cArguments.withUnsafeBufferPointer { argv in
            if let cEnvironment {
                return cEnvironment.withUnsafeBufferPointer { envp in
                    posix_spawnp(&pid, arguments[0], &actions, &attributes, UnsafeMutablePointer(mutating: argv.baseAddress!), UnsafeMutablePointer(mutating: envp.baseAddress!))
                }
            }
            return posix_spawnp(&pid, arguments[0], &actions, &attributes, UnsafeMutablePointer(mutating: argv.baseAddress!), environ)
        }
        guard result == 0 else { throw TestSupportError("cannot run \(arguments[0]): \(String(cString: strerror(result)))") }
        self.pid = pid
    }

    /// glibc's `posix_spawn_file_actions_addclosefrom_np` (2.34 and later), which Swift's Glibc module does not
    /// export; looked up once.
    private static let addCloseFrom: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32)? = {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np") else { return nil }
        return unsafeBitCast(symbol, to: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32).self)
    }()

    public enum Output {
        case descriptor(Int32)
        case file(String)
    }

    /// Whether the child has not exited yet (reaps it if it has).
    public var isRunning: Bool { reap(blocking: false) == nil }

    /// Waits for the child to exit; its exit code, or 128 + the signal that killed it.
    @discardableResult
    public func wait() -> Int32 { reap(blocking: true)! }

    /// The exit code once the child has exited.
    public var exitStatus: Int32? { reap(blocking: false) }

    private func reap(blocking: Bool) -> Int32? {
        status.withLock { status in
            if let status { return status }
            var raw: Int32 = 0
            while true {
                let result = waitpid(pid, &raw, blocking ? 0 : WNOHANG)
                if result == 0 { return nil }
                if result < 0 && errno == EINTR { continue }
                if result < 0 { status = -1; return -1 }
                status = raw & 0x7f == 0 ? (raw >> 8) & 0xff : 128 + (raw & 0x7f)
                return status
            }
        }
    }
}

/// A pair of connected sockets whose descriptors are close-on-exec from birth.
func closeOnExecPair() throws -> (read: Int32, write: Int32) {
    var fds: [Int32] = [-1, -1]
    guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0 else {
        throw TestSupportError("socketpair: \(String(cString: strerror(errno)))")
    }
    return (fds[0], fds[1])
}
