import CExpirableLinux
import ExpirableCore
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A running plugin helper seen from the daemon: its pid (not reaped yet), the daemon's end of its socket, and
/// a pidfd that polls readable when it exits. The helper leads a process group of its own, which the plugin's
/// children join unless they leave it: killing the group kills them too.
struct HelperProcess {
    /// What runs as a helper: this very executable, unless a test runner (which cannot be a helper) names
    /// `expirabled` through `PluginHost.useHelperExecutable`.
    static let executable = Mutex("/proc/self/exe")

    let pid: pid_t
    let socket: Int32
    /// -1 when the kernel has no pidfd_open (before Linux 5.3); the helper's death is then seen only when its
    /// socket closes.
    let pidfd: Int32

    /// `fd`, or a close-on-exec copy of it above 3 (closing `fd`; -1 if none could be made): the child's
    /// descriptors 0–3 are made from these by dup2, which must find each source where no earlier dup2 wrote, and
    /// dup2 onto itself would keep close-on-exec set.
    private static func aboveThree(_ fd: Int32) -> Int32 {
        guard fd <= 3 else { return fd }
        let moved = fcntl(fd, F_DUPFD_CLOEXEC, 4)
        close(fd)
        return moved
    }

    /// Starts `expirabled` again (through /proc/self/exe, so an upgraded binary on disk is not mixed with
    /// this one) as the helper for `expirable`. The child gets its end of a socket pair as descriptor 3 and
    /// nothing else of the daemon's: stdin and stdout on /dev/null, stderr a pipe whose lines `logger` logs as
    /// records of the daemon's (`HelperOutput`), every other descriptor closed, a clean environment, default
    /// signal handling, a process group of its own (a Ctrl-C meant for the daemon does not reach it; it dies with
    /// the daemon through its death signal instead).
    static func spawn(expirable: String, logger: Logger) throws(PluginError) -> HelperProcess {
        var pair: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0 else {
            throw PluginError("expirable.\(expirable): cannot make a socket pair for its plugin helper: \(String(cString: strerror(errno))); raise the limit on open files")
        }
        let child = aboveThree(pair[1])
        defer { if child >= 0 { close(child) } }
        guard child >= 0 else {
            close(pair[0])
            throw PluginError("expirable.\(expirable): cannot place its plugin helper's socket: \(String(cString: strerror(errno)))")
        }
        var output: [Int32] = [-1, -1]
        // pipe2 is not in Glibc's Swift module: both ends are made close-on-exec at once instead, before the
        // spawn below, which is the only exec here (other helpers' spawns close every descriptor above 3).
        guard pipe(&output) == 0, fcntl(output[0], F_SETFD, FD_CLOEXEC) == 0, fcntl(output[1], F_SETFD, FD_CLOEXEC) == 0 else {
            close(pair[0])
            throw PluginError("expirable.\(expirable): cannot make a pipe for its plugin helper's stderr: \(String(cString: strerror(errno))); raise the limit on open files")
        }
        let errors = aboveThree(output[1])
        defer { if errors >= 0 { close(errors) } }
        guard errors >= 0 else {
            close(pair[0])
            close(output[0])
            throw PluginError("expirable.\(expirable): cannot place its plugin helper's stderr: \(String(cString: strerror(errno)))")
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, errors, 2)
        posix_spawn_file_actions_adddup2(&actions, child, PluginHelper.socket)
        CExpirableLinux_spawn_close_from(&actions, PluginHelper.socket + 1)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var none = sigset_t()
        sigemptyset(&none)
        var all = sigset_t()
        sigfillset(&all)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP))
        let arguments = ["expirabled", PluginHelper.flag, "\(getpid())", expirable]
        // The Swift runtime's crash backtracer would spend seconds symbolicating a plugin's crash before the
        // helper dies (measured: an abort reported after 2.3 s instead of milliseconds), and print the
        // helper's memory layout to the daemon's log: the helper dies at once instead.
        let environment = ["PATH=/usr/local/bin:/usr/bin:/bin", "SWIFT_BACKTRACE=enable=no"]
        let cArguments: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        let cEnvironment: [UnsafeMutablePointer<CChar>?] = environment.map { strdup($0) } + [nil]
        defer { for p in cArguments + cEnvironment { free(p) } }
        var pid: pid_t = 0
        let executable = HelperProcess.executable.withLock { $0 }
        let result = posix_spawn(&pid, executable, &actions, &attributes, cArguments, cEnvironment)
        guard result == 0 else {
            close(pair[0])
            close(output[0])
            throw PluginError("expirable.\(expirable): cannot start its plugin helper (\(executable)): \(String(cString: strerror(result)))")
        }
        HelperOutput.follow(output[0], expirable: expirable, pid: pid, logger: logger)
        let pidfd = CExpirableLinux_pidfd_open(pid)
        if pidfd >= 0 { _ = fcntl(pidfd, F_SETFD, FD_CLOEXEC) }
        return HelperProcess(pid: pid, socket: pair[0], pidfd: pidfd)
    }

    /// The next frame from the helper. A helper that dies is seen at once even if its socket stays open, as it
    /// does when a child the plugin forked holds a copy: that is a close.
    func receive() throws(HelperFrame.Failure) -> HelperFrame {
        try HelperFrame.receive(from: socket, watching: pidfd)
    }

    /// SIGKILL to the helper and every process of its group (the plugin's children). While the helper is not
    /// reaped its pid cannot be reused, so the group is still its own.
    func killGroup() {
        kill(-pid, SIGKILL)
        kill(pid, SIGKILL)
    }

    /// Waits for the helper to end and describes how it did: "crashed (SIGSEGV)", "exited with status 3".
    /// A helper that closed its socket but is still running gets `grace` to finish, then SIGKILL.
    func reap(grace: Duration) -> String {
        reapWithUsage(grace: grace).how
    }

    /// `reap`, with the CPU seconds (user and system, whole) the helper used in its life.
    func reapWithUsage(grace: Duration) -> (how: String, cpuSeconds: Int) {
        var usage = rusage()
        let how = reap(grace: grace, usage: &usage)
        return (how, usage.ru_utime.tv_sec + usage.ru_stime.tv_sec)
    }

    private func reap(grace: Duration, usage: inout rusage) -> String {
        var status: Int32 = 0
        defer {
            close(socket)
            if pidfd >= 0 { close(pidfd) }
        }
        if pidfd >= 0 {
            var exited = pollfd(fd: pidfd, events: Int16(POLLIN), revents: 0)
            if poll(&exited, 1, Int32(clamping: grace.milliseconds)) != 1 { kill(pid, SIGKILL) }
            // The helper is dead or dying and not reaped: its group is still its own, so its children go too.
            kill(-pid, SIGKILL)
            while wait4(pid, &status, 0, &usage) < 0 {
                guard errno == EINTR else { return "vanished (\(String(cString: strerror(errno))))" }
            }
            return HelperProcess.describe(status)
        }
        var waited: Duration = .zero
        while true {
            let result = wait4(pid, &status, WNOHANG, &usage)
            if result == pid { break }
            if result < 0 && errno == EINTR { continue }
            if result < 0 { return "vanished (\(String(cString: strerror(errno))))" }
            if waited >= grace {
                kill(pid, SIGKILL)
                while wait4(pid, &status, 0, &usage) < 0 && errno == EINTR {}
                break
            }
            usleep(1000)
            waited += .milliseconds(1)
        }
        return HelperProcess.describe(status)
    }

    /// A wait status in words: "crashed (SIGSEGV)", "exited with status 3".
    private static func describe(_ status: Int32) -> String {
        let signal = status & 0x7f
        if signal == 0 { return "exited with status \((status >> 8) & 0xff)" }
        let name = CExpirableLinux_signal_abbreviation(signal).map { "SIG" + String(cString: $0) } ?? "signal \(signal)"
        return "crashed (\(name))"
    }
}
