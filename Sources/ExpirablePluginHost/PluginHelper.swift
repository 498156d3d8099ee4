import CExpirableLinux
import ExpirableABI
import ExpirableConfig
import ExpirableCore
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The plugin helper: `expirabled` started again by `HelperProcess` to hold one plugin instance, so that
/// whatever the plugin does to its process (crash, abort, exit, scribble on memory) happens to this process
/// and not to the daemon. It loads the plugin with the daemon's checks and calls it exactly as the daemon does
/// inline (a `PluginInstance`), taking orders and giving results as `HelperFrame`s on descriptor 3.
public enum PluginHelper {
    /// The hidden first argument that makes `expirabled` a helper: `expirabled --plugin-helper PARENT NAME`.
    /// NAME is there for `ps`, so a helper can be told from its siblings.
    public static let flag = "--plugin-helper"

    /// How long after a call's timeout a helper kills itself if the daemon has not: long enough that the daemon,
    /// when it is running, reports the TIMEOUT first.
    static let killGrace: Duration = .milliseconds(250)

    /// The descriptor of the helper's end of the socket pair.
    static let socket: Int32 = 3

    /// The helper's exit status when its plugin closed descriptor 3 or put another file there (EX_IOERR): the
    /// daemon says so rather than "exited with status 0".
    static let socketLostStatus: Int32 = 74

    /// Whether descriptor 3 is no longer the socket `original` (its device and inode) identified.
    private static func socketLost(_ original: stat) -> Bool {
        var now = stat()
        guard fstat(socket, &now) == 0 else { return true }
        return now.st_dev != original.st_dev || now.st_ino != original.st_ino
    }

    /// Runs the helper with the arguments after `flag`, and exits when the daemon closes the socket.
    public static func run(_ arguments: [String]) -> Never {
        guard let parent = arguments.first.flatMap({ pid_t($0) }), CExpirableLinux_become_helper(parent) == 0 else {
            // Started by hand, or the daemon died before the death signal was armed: nobody to serve.
            exit(70)  // EX_SOFTWARE
        }
        // posix_spawn's dup2 placed the socket here without close-on-exec: set it again, so no program the
        // plugin runs (the `command` plugin's, popen, system) holds the channel that carries other calls' keys,
        // states and answers.
        guard fcntl(socket, F_SETFD, FD_CLOEXEC) == 0 else { exit(70) }
        var original = stat()
        guard fstat(socket, &original) == 0 else { exit(70) }
        signal(SIGPIPE, SIG_IGN)  // as in the daemon: a plugin writing to a closed pipe gets EPIPE
        // Stderr is a pipe the daemon reads, logging each line as a record of its own in its format
        // (`HelperOutput`): the helper writes text whatever that format is.
        LoggingSystem.bootstrap { label in TextLogHandler(label: label, level: .info) }
        let logger = Logger(label: "expirable.plugin-helper")
        let writer = Writer(original)
        let instance: PluginInstance
        var maxCPUSeconds: Int64 = 0
        var hardCPU = false
        do throws(HelperFrame.Failure) {
            let start = try HelperFrame.receive(from: socket)
            guard start.kind == .start else { exit(65) }  // EX_DATAERR: the daemon speaks another protocol
            var fields = HelperFrame.Reader(start)
            let path = try fields.string()
            let directory = try fields.string()
            let name = try fields.string()
            let timeout = Duration.milliseconds(try fields.int64())
            let maxMemory = try fields.int64()
            maxCPUSeconds = try fields.int64()
            hardCPU = try fields.flag()
            let uid = try fields.int64()
            let gid = try fields.int64()
            let wallOffset = Duration.milliseconds(try fields.int64())
            var params: [Configuration.Param] = []
            for _ in 0..<(try fields.uint32()) {
                params.append(Configuration.Param(key: try fields.string(), value: try fields.string()))
            }
            do throws(PluginError) {
                // Checked here, at every start of a helper, a restart after a crash included, and as the daemon's
                // user (the owner the checks allow), not only when the daemon read its configuration.
                let real = try PluginPath.recheck(path, in: directory)
                try confine(maxMemory: maxMemory, uid: uid, gid: gid, parent: parent)
                let library: PluginLibrary
                do throws(PluginError) {
                    library = try PluginLibrary.open(real)
                } catch where uid >= 0 || gid >= 0 {
                    throw PluginError("\(error.message) (its helper runs as uid \(getuid()), gid \(getgid()) from plugin_user/plugin_group: the plugin file and plugin_dir must be readable by them)")
                }
                instance = try PluginInstance(
                    expirable: name, params: params, library: library, timeout: timeout, timesCalls: false,
                    clock: SystemClock(wallOffset: wallOffset), logger: logger
                )
                var ready = HelperFrame(kind: .ready)
                ready.append(library.version.major)
                ready.append(library.version.minor)
                writer.send(ready)
            } catch {
                // A refusal by create() names the expirable already; one by the loader does not.
                let prefix = "expirable.\(name): "
                var refused = HelperFrame(kind: .refused)
                refused.payload = Array((error.message.hasPrefix(prefix) ? error.message : prefix + error.message).utf8)
                writer.send(refused)
                exit(0)
            }
        } catch {
            exit(65)
        }
        while true {
            let frame: HelperFrame
            do throws(HelperFrame.Failure) {
                frame = try HelperFrame.receive(from: socket)
            } catch {
                // Its socket closed or replaced under it (a plugin that closes or dup2s over descriptor 3, while a
                // call runs): it ends as when its answer cannot be sent, whichever of the two it meets first.
                if socketLost(original) { exit(socketLostStatus) }
                guard case .closed = error else { exit(65) }
                instance.destroy()
                exit(0)
            }
            guard frame.kind == .fetch else { exit(65) }
            // With `hardCPU` the hard limit too, so the plugin cannot lift it; the daemon raised it for this call.
            if maxCPUSeconds > 0 { _ = CExpirableLinux_limit_cpu_from_now(maxCPUSeconds, hardCPU ? 1 : 0) }
            // The daemon kills a helper whose call outlives its timeout; should the daemon be stopped (SIGSTOP, a
            // long stall) it cannot, so the kernel does it, a little later: no call runs on unbounded. A quorum
            // lease (SPEC §4.10) counts on this.
            var order = HelperFrame.Reader(frame)
            var request = FetchRequest()
            let id: UInt64
            do throws(HelperFrame.Failure) {
                id = try order.uint64()
                let timeout = try order.int64()
                if timeout > 0 { _ = CExpirableLinux_kill_self_after(timeout + PluginHelper.killGrace.milliseconds) }
                if try order.flag() { request.key = try order.string() }
                if try order.flag() { request.state = try order.secret(limit: Int(EXPIRABLE_MAX_STATE_BYTES)) }
            } catch {
                exit(65)
            }
            instance.fetch(request) { outcome in
                _ = CExpirableLinux_kill_self_after(0)
                var reply: HelperFrame
                switch outcome.result {
                case .success(let fetched):
                    reply = HelperFrame(kind: .value)
                    reply.append(id)
                    switch fetched.expiry {
                    case .never: reply.append(Int64.max)
                    case .at(let unixMillis): reply.append(unixMillis)
                    }
                    reply.appendState(outcome.state)
                    fetched.value.withUnsafeBytes { reply.payload.append(contentsOf: $0) }
                case .failure(let error):
                    reply = HelperFrame(kind: .error)
                    reply.append(id)
                    reply.append(UInt32(error.code == .timeout ? EXPIRABLE_ERROR_TIMEOUT : error.errorClass == .permanent ? EXPIRABLE_ERROR_PERMANENT : EXPIRABLE_ERROR_TEMPORARY))
                    reply.append(error.retryAfter ?? 0)
                    reply.appendState(outcome.state)
                    reply.payload += Array(error.message.utf8)
                }
                writer.send(reply)
                HelperFrame.wipe(&reply.payload)
            }
        }
    }

    /// Applies the limits and the user the daemon sent, before the plugin is loaded: its constructors and
    /// `expirable_create` already run confined.
    private static func confine(maxMemory: Int64, uid: Int64, gid: Int64, parent: pid_t) throws(PluginError) {
        if maxMemory > 0, CExpirableLinux_limit_data(maxMemory) != 0 {
            throw PluginError("its helper cannot set max_memory (RLIMIT_DATA): \(String(cString: strerror(errno)))")
        }
        guard uid >= 0 || gid >= 0 else { return }
        var step: UnsafePointer<CChar>?
        let failure = CExpirableLinux_switch_user(uid, gid, parent, &step)
        if failure == ESRCH, step.map({ String(cString: $0) }) == "getppid" { exit(70) }  // the daemon is gone
        guard failure == 0 else {
            let call = step.map { String(cString: $0) } ?? "?"
            throw PluginError("its helper cannot switch to plugin_user/plugin_group (uid \(uid), gid \(gid)): \(call) failed: \(String(cString: strerror(failure)))")
        }
    }

    /// Frames go out from the main thread (ready, refused) and the plugin's thread (results): one at a time.
    private final class Writer: Sendable {
        private let lock = Mutex(())
        private let original: stat

        init(_ original: stat) { self.original = original }

        func send(_ frame: HelperFrame) {
            guard lock.withLock({ _ in frame.send(on: PluginHelper.socket) }) else {
                if PluginHelper.socketLost(original) { exit(PluginHelper.socketLostStatus) }
                // A daemon that stopped listening has died or is killing this helper: nothing left to do.
                exit(0)
            }
        }
    }
}
