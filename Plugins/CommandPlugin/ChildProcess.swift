import CExpirableLinux
#if canImport(Glibc)
import Glibc
#endif

/// Runs a program without a shell, stdin from /dev/null, no descriptor but 0, 1 and 2, with the daemon's environment and the call's key in
/// EXPIRABLE_KEY, capturing stdout (up to a cap) and stderr, and killing its whole process group when it overruns
/// its deadline or its output cap, or when the process that runs the plugin ends (CExpirableLinux_spawn_guarded).
struct ChildProcess {
    /// The variable that holds the key of a keyed family's member; never set (nor inherited) for other calls.
    static let keyVariable = "EXPIRABLE_KEY"

    enum Outcome {
        /// `stdout` may hold the value: it is zeroed when dropped.
        case exited(status: Int32, stdout: SecretBuffer, stderr: [UInt8])
        case signalled(Int32, stderr: [UInt8])
        case timedOut
        case outputTooLarge
        case failedToStart(String)
    }

    static func run(_ argv: [String], key: String?, timeoutMillis: Int64, maxOutput: Int) -> Outcome {
        var outPipe: [Int32] = [-1, -1]
        var errPipe: [Int32] = [-1, -1]
        guard makePipe(&outPipe) else { return .failedToStart(String(cString: strerror(errno))) }
        guard makePipe(&errPipe) else {
            close(outPipe[0]); close(outPipe[1])
            return .failedToStart(String(cString: strerror(errno)))
        }
        var cArgs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        defer { for arg in cArgs { free(arg) } }
        // The daemon's environment as it is, but for its own EXPIRABLE_KEY, if any: only a keyed call sets one.
        let keyEntry = key.flatMap { strdup("\(keyVariable)=\($0)") }
        defer { free(keyEntry) }
        var cEnvironment: [UnsafeMutablePointer<CChar>?] = []
        var entry = environ
        while let variable = entry.pointee {
            if strncmp(variable, "\(keyVariable)=", keyVariable.utf8.count + 1) != 0 { cEnvironment.append(variable) }
            entry += 1
        }
        if let keyEntry { cEnvironment.append(keyEntry) }
        cEnvironment.append(nil)
        // Its own process group, so a timeout can kill what the program started as well, led by a guard that
        // kills that group when this thread's process ends (a helper killed for a timeout, a daemon stopped or
        // killed with SIGKILL): the daemon kills a helper's group, which the program's is not.
        var pid: pid_t = 0
        let spawned = CExpirableLinux_spawn_guarded(&pid, argv[0], &cArgs, &cEnvironment, outPipe[1], errPipe[1])
        close(outPipe[1])
        close(errPipe[1])
        defer { close(outPipe[0]); close(errPipe[0]) }
        guard spawned == 0 else { return .failedToStart("cannot run \(argv[0]): \(String(cString: strerror(spawned)))") }

        let stdout = SecretBuffer(capacity: min(maxOutput + 1, 16384))
        var stderr: [UInt8] = []
        let deadline = monotonicMillis() + timeoutMillis
        var open = [outPipe[0], errPipe[0]]
        // Each read lands here first, so it is zeroed too, whatever way the loop ends.
        var buffer = [UInt8](repeating: 0, count: 16384)
        defer { buffer.withUnsafeMutableBytes { explicit_bzero($0.baseAddress!, $0.count) } }
        while !open.isEmpty {
            let remaining = deadline - monotonicMillis()
            if remaining <= 0 { return kill(pid, .timedOut) }
            var fds = open.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            let ready = poll(&fds, nfds_t(fds.count), Int32(min(remaining, 1000)))
            if ready < 0 && errno == EINTR { continue }
            for entry in fds where entry.revents != 0 {
                let n = read(entry.fd, &buffer, buffer.count)
                if n <= 0 {
                    open.removeAll { $0 == entry.fd }
                } else if entry.fd == outPipe[0] {
                    buffer.withUnsafeBytes { stdout.append(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
                    if stdout.count > maxOutput { return kill(pid, .outputTooLarge) }
                } else if stderr.count < 4096 {
                    stderr += buffer[0..<min(n, 4096 - stderr.count)]
                }
            }
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        if status & 0x7f == 0 { return .exited(status: (status >> 8) & 0xff, stdout: stdout, stderr: stderr) }
        return .signalled(status & 0x7f, stderr: stderr)
    }

    /// A connected pair of descriptors that are close-on-exec from birth. Setting FD_CLOEXEC after pipe() would
    /// leave a window in which a program spawned by a concurrent call (another expirable's fetch) inherits this
    /// one's write end, and this call would then not see end-of-file until that program exits.
    private static func makePipe(_ fds: inout [Int32]) -> Bool {
        socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0
    }

    private static func kill(_ pid: pid_t, _ outcome: Outcome) -> Outcome {
        Glibc.kill(-pid, SIGKILL)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        return outcome
    }

    private static func monotonicMillis() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }
}
