import ExpirableCluster
import ExpirableCore
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// systemd's readiness protocol (`Type=notify`, sd_notify(3)) without libsystemd: one datagram of
/// `KEY=value` lines to the Unix socket named by `$NOTIFY_SOCKET` (a path, or an abstract name when it starts
/// with `@`).
struct SystemdNotifier: Sendable {
    /// Where to send, read once at start; nil when the daemon does not run under a supervisor that asked.
    let socketPath: String?

    /// Reads `$NOTIFY_SOCKET` and unsets it, so plugins and the programs they run cannot speak for the daemon.
    static func fromEnvironment() -> SystemdNotifier {
        guard let raw = getenv("NOTIFY_SOCKET") else { return SystemdNotifier(socketPath: nil) }
        let path = String(cString: raw)
        unsetenv("NOTIFY_SOCKET")
        return SystemdNotifier(socketPath: path.isEmpty ? nil : path)
    }

    /// Sends `fields` (`READY=1`, `STATUS=…`) as one datagram. Returns an error text, or nil when sent (or
    /// when there is no socket to send to).
    @discardableResult
    func notify(_ fields: [String]) -> String? {
        guard let socketPath else { return nil }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var name = Array(socketPath.utf8)
        let abstract = name.first == UInt8(ascii: "@")
        if abstract { name[0] = 0 }
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard name.count < capacity else { return "NOTIFY_SOCKET \(socketPath) is longer than a Unix socket path may be" }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: name)
            if name.count < raw.count { raw[name.count] = 0 }
        }
        let pathOffset = MemoryLayout<sockaddr_un>.offset(of: \.sun_path) ?? 2
        // An abstract name is exactly its bytes; a path carries its terminating NUL.
        let length = socklen_t(pathOffset + name.count + (abstract ? 0 : 1))
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return "cannot make a socket for NOTIFY_SOCKET: \(String(cString: strerror(errno)))" }
        defer { close(fd) }
        let message = Array(fields.joined(separator: "\n").utf8)
        let sent = message.withUnsafeBytes { bytes in
            withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL), $0, length) }
            }
        }
        guard sent == message.count else { return "cannot notify \(socketPath): \(String(cString: strerror(errno)))" }
        return nil
    }
}

/// Tells the supervisor the daemon is ready (SPEC §3.15) once it listens, has joined its cluster (§4.11), and
/// every `prefetch` expirable has answered, successfully or not, or once `bound` has passed since the join,
/// whichever is first. A cluster-scoped value is prefetched by its owner only; the others receive it.
final class Readiness: Sendable {
    /// The longest the daemon waits for prefetches before it says it is ready anyway: their longest plugin
    /// `timeout`, at most this (systemd's default start timeout is 90 s).
    static let maximumWait: Duration = .seconds(30)

    private let notifier: SystemdNotifier
    private let engine: Engine
    private let bound: Duration
    private let logger: Logger
    private let cluster: Cluster?
    /// The daemon's clock, for the bound's timer.
    private let clock: any EngineClock
    private let announced = Mutex(false)
    private let timer = Mutex<(any Cancellable)?>(nil)

    init(notifier: SystemdNotifier, engine: Engine, cluster: Cluster?, clock: any EngineClock, prefetchTimeouts: [Duration], logger: Logger) {
        self.notifier = notifier
        self.engine = engine
        self.cluster = cluster
        self.clock = clock
        bound = min(prefetchTimeouts.max() ?? .zero, Readiness.maximumWait)
        self.logger = logger
    }

    /// Whether READY=1 has been sent (or would have been, without a supervisor): from then on a reload is told
    /// as RELOADING=1 … READY=1.
    var hasAnnounced: Bool { announced.withLock { $0 } }

    /// The server listens: join, prefetch, and announce readiness when that is done or the bound passes.
    func listening() {
        guard let cluster else { return prefetch(engine.prefetchNames) }
        notifier.notify(["STATUS=joining the cluster"])
        cluster.whenJoined { [self] in
            prefetch(engine.prefetchNames.filter { engine.scope(of: $0) != .cluster || cluster.owns($0) })
        }
    }

    private func prefetch(_ names: [String]) {
        if !names.isEmpty {
            notifier.notify(["STATUS=prefetching \(names.count) value\(names.count == 1 ? "" : "s")"])
            let scheduled = clock.schedule(after: bound) { [self] in
                announce(status: "ready; prefetch still running after \(bound.milliseconds) ms", timedOut: true)
            }
            timer.withLock { $0 = scheduled }
        }
        engine.prefetch(only: Set(names)) { [self] failed in
            let ok = names.count - failed.count
            let status = names.isEmpty ? "ready"
                : "ready; prefetched \(ok) of \(names.count)" + (failed.isEmpty ? "" : " (failed: \(failed.joined(separator: ", ")))")
            announce(status: status, timedOut: false)
        }
    }

    private func announce(status: String, timedOut: Bool) {
        let first = announced.withLock { done in defer { done = true }; return !done }
        guard first else { return }
        timer.withLock { $0?.cancel(); $0 = nil }
        if timedOut {
            logger.warning("ready before every prefetch answered", metadata: ["wait_ms": "\(bound.milliseconds)"])
        } else {
            logger.notice("ready", metadata: ["status": "\(status)"])
        }
        if let problem = notifier.notify(["READY=1", "STATUS=\(status)"]) {
            logger.error("sd_notify failed", metadata: ["error": "\(problem)"])
        }
    }
}
