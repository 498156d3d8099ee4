import NIOCore
#if canImport(Glibc)
import Glibc
#endif

/// Why a client call failed. `code` mirrors the daemon's error words, plus the client's own failures.
public struct ExpirableClientError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The kinds of failure.
    public enum Code: String, Sendable, Hashable {
        /// `NOTFOUND`: no expirable of that name is configured.
        case notFound = "NOTFOUND"
        /// `FETCH`: the plugin failed; the message is its own.
        case fetch = "FETCH"
        /// `TIMEOUT`: the plugin did not answer within the expirable's timeout.
        case timeout = "TIMEOUT"
        /// `NOPERM`: this process's user may not do that (CLEAR, CLEARALL), or may not connect to the socket at all.
        case noPermission = "NOPERM"
        /// `ERR`: the daemon refused the request itself.
        case badRequest = "ERR"
        /// `TRYAGAIN`: the daemon could not answer now, though nothing was wrong with the request (it stopped
        /// before the answer was ready: its drain time ended); send it again once the daemon is back.
        case tryAgain = "TRYAGAIN"
        /// The daemon could not be reached, or the connection broke before it answered.
        case unavailable = "UNAVAILABLE"
        /// The daemon did not answer within the client's per-call timeout.
        case callTimeout = "CALLTIMEOUT"
        /// The daemon's reply did not have the expected form.
        case unexpectedReply = "UNEXPECTED"
        /// The calling task was cancelled: the call ended at once, without its answer. (The library's errors are
        /// typed, so this stands where untyped code throws `CancellationError`.)
        case cancelled = "CANCELLED"
    }

    /// What kind of failure.
    public let code: Code
    /// What happened, in words; for daemon errors, the text after the error word.
    public let message: String

    /// Makes an error; for tests and wrappers.
    public init(code: Code, message: String) {
        self.code = code
        self.message = message
    }

    /// The error a daemon error reply (`-WORD message`) stands for.
    init(reply: String) {
        let word = reply.prefix { $0 != " " }
        let rest = reply.dropFirst(word.count).drop { $0 == " " }
        if let code = Code(rawValue: String(word)), ![Code.unavailable, .callTimeout, .unexpectedReply, .cancelled].contains(code) {
            self.init(code: code, message: String(rest))
        } else {
            self.init(code: .badRequest, message: reply)
        }
    }

    public var description: String { "\(code.rawValue) \(message)" }
}

extension ExpirableClientError {
    /// The calling task was cancelled.
    static let cancelled = ExpirableClientError(code: .cancelled, message: "the calling task was cancelled; the call was given up without its answer")

    /// Why connecting to the socket at `path` failed, naming the cause and the fix: a permission problem is
    /// `.noPermission` (retrying cannot help), every other failure `.unavailable`.
    /// Why connecting to `path` (whose `stat`, when it could be read) was denied, with the fix: a directory on
    /// the way this user may not enter, a socket only its owner may open, or else its group.
    private static func permissionCause(_ path: String, _ status: stat?) -> String {
        let parts = path.split(separator: "/", omittingEmptySubsequences: false).dropLast()
        var directory = ""
        for (index, part) in parts.enumerated() {
            directory += (index == 0 ? "" : "/") + part
            let checked = directory.isEmpty ? "/" : directory
            if access(checked, X_OK) != 0 && errno == EACCES {
                return "you may not enter the directory \(checked) (ls -ld \(checked): search permission, x, is missing); ask for it, or run as a user who has it"
            }
        }
        if let status, status.st_mode & 0o077 == 0, status.st_uid != geteuid() {
            return "only its owner may connect (mode 0\(String(status.st_mode & 0o777, radix: 8)); ls -l \(path)); run as that user, or widen server.socket_mode"
        }
        return "you are not in the group that owns it (ls -l \(path)), or run as that user"
    }

    static func cannotConnect(to path: String, _ error: any Error) -> ExpirableClientError {
        if case .unixDomainSocketPathTooLong = error as? SocketAddressError {
            // NIO's limit (SocketAddress(unixDomainSocketPath:)), below the 107 bytes a sockaddr_un holds; the
            // daemon refuses to serve a longer server.socket for that reason.
            return ExpirableClientError(code: .unavailable, message: "the socket path \(path) is \(path.utf8.count) bytes long; this client connects to Unix socket paths of at most 103 bytes; use a shorter server.socket")
        }
        guard let errnoCode = (error as? IOError)?.errnoCode else {
            return ExpirableClientError(code: .unavailable, message: "cannot connect to \(path): \(error)")
        }
        var status = stat()
        let exists = stat(path, &status) == 0
        if exists && (status.st_mode & S_IFMT) != S_IFSOCK {
            let what = (status.st_mode & S_IFMT) == S_IFDIR ? "a directory" : "a file"
            return ExpirableClientError(code: .unavailable, message: "\(path) is not a socket but \(what); give the daemon's socket, server.socket in its configuration")
        }
        switch errnoCode {
        case EACCES, EPERM:
            return ExpirableClientError(code: .noPermission, message: "permission denied on \(path): \(permissionCause(path, exists ? status : nil))")
        case ENOENT:
            return ExpirableClientError(code: .unavailable, message: "no socket \(path): is expirabled running, and is that its server.socket?")
        case ECONNREFUSED:
            return ExpirableClientError(code: .unavailable, message: "no daemon is listening on \(path): a stale socket file left by a daemon that stopped; start expirabled (it replaces the file)")
        case ENOTDIR:
            return ExpirableClientError(code: .unavailable, message: "no socket \(path): a part of the path is not a directory")
        default:
            return ExpirableClientError(code: .unavailable, message: "cannot connect to \(path): \(String(cString: strerror(errnoCode)))")
        }
    }
}
