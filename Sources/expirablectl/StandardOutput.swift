#if canImport(Glibc)
import Glibc
#endif

/// Where expirablectl prints: descriptor 1, written without buffering, and every write checked. A value that
/// could not be printed must not end in success (`fetch token > /run/app/token || alert`).
///
/// - The reader of a pipe went away (`watch NAME | head -1`): expirablectl ends as Unix filters do, killed by
///   SIGPIPE (status 141 in a shell), silently. SwiftNIO ignores SIGPIPE for its sockets, so the write fails
///   with EPIPE instead; the signal is raised again with its default action.
/// - Any other failure (a full disk, /dev/full, a closed stdout): its reason on stderr and status 74 (EX_IOERR).
enum StandardOutput {
    /// Descriptor 1 was closed when expirablectl started; /dev/null holds its place (see `prepare`).
    nonisolated(unsafe) private static var closedAtStart = false

    /// Run first: a standard descriptor closed at start (`expirablectl fetch x >&-`) would be reused by the
    /// first file or socket opened, and a value printed there would go to the daemon's socket. /dev/null takes
    /// its place (as OpenSSH's sanitise_stdfd does), close-on-exec, so `exec`'s command finds it closed as it
    /// was; a closed stdout is then reported at the first print.
    static func prepare() {
        for fd in Int32(0)...2 where fcntl(fd, F_GETFD) == -1 && errno == EBADF {
            let null = open("/dev/null", O_RDWR)
            guard null >= 0 else { continue }
            if null != fd {
                dup2(null, fd)
                close(null)
            }
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            if fd == 1 { closedAtStart = true }
        }
    }

    /// Writes all of `bytes`, or ends expirablectl as the type's documentation says.
    static func write(_ bytes: [UInt8]) {
        if closedAtStart { fail("standard output is closed") }
        bytes.withUnsafeBufferPointer { buffer in
            var offset = 0
            while offset < buffer.count {
                let n = Glibc.write(1, buffer.baseAddress! + offset, buffer.count - offset)
                if n > 0 {
                    offset += n
                    continue
                }
                let error = n < 0 ? errno : EIO
                switch error {
                case EINTR: continue
                case EAGAIN:
                    // A non-blocking stdout inherited from the shell: wait until it takes more.
                    var fds = [pollfd(fd: 1, events: Int16(POLLOUT), revents: 0)]
                    _ = poll(&fds, 1, -1)
                case EPIPE: diedOfSIGPIPE()
                default: fail(String(cString: strerror(error)))
                }
            }
        }
    }

    /// Whether stdout is a pipe or socket whose reader has gone: poll reports POLLERR (a pipe) or POLLHUP (a
    /// socket) without anything being written, as `tail -f` checks. A file or terminal never reports either.
    static var readerIsGone: Bool {
        var fds = [pollfd(fd: 1, events: 0, revents: 0)]
        guard poll(&fds, 1, 0) > 0 else { return false }
        return fds[0].revents & Int16(POLLERR | POLLHUP) != 0
    }

    /// Ends expirablectl as SIGPIPE would have, had SwiftNIO not ignored it.
    static func diedOfSIGPIPE() -> Never {
        signal(SIGPIPE, SIG_DFL)
        var pipeSignal = sigset_t()
        sigemptyset(&pipeSignal)
        sigaddset(&pipeSignal, SIGPIPE)
        pthread_sigmask(SIG_UNBLOCK, &pipeSignal, nil)
        raise(SIGPIPE)
        _exit(128 + SIGPIPE)
    }

    private static func fail(_ reason: String) -> Never {
        printError("expirablectl: cannot write to standard output: \(reason); nothing more is printed (status \(ExitStatus.outputError.rawValue))")
        exit(ExitStatus.outputError.rawValue)
    }
}
