import Logging

/// Connections accepted on the cluster port that have not yet proven to be a peer (TLS handshake and hello).
/// Anyone who can reach the port can open them, and each costs a descriptor the process shares with its local
/// clients; so they are counted, and those over `ClusterOptions.unauthenticatedLimit` are closed on accept.
struct Admission {
    /// Accepted connections not yet past hello.
    var unauthenticated = 0
    /// Connections closed on accept since the last report.
    var refused = 0
    /// Monotonic time of the last report; nil: none yet.
    var lastReport: UInt64?
}

extension Cluster {
    /// At most one line this often about refused connections, however many there were: a flood must not turn
    /// into a flood of log lines.
    static let refusalReportInterval: UInt64 = 10_000_000_000

    /// Takes a place for a connection just accepted; false when all `unauthenticatedLimit` places are taken,
    /// and then the connection must be closed.
    func admitUnauthenticated() -> Bool {
        admission.withLock { a in
            guard a.unauthenticated < options.unauthenticatedLimit else {
                a.refused += 1
                return false
            }
            a.unauthenticated += 1
            return true
        }
    }

    /// Gives back the place of a connection that said hello or closed.
    func releaseUnauthenticated() {
        admission.withLock { a in
            // A miscount must not stop the daemon; at worst, for a while, the budget is one place larger.
            assert(a.unauthenticated > 0, "a cluster connection gave back a place it did not hold")
            a.unauthenticated = max(0, a.unauthenticated - 1)
        }
    }

    /// Every heartbeat: logs the connections refused since the last report, unless one was made within
    /// `refusalReportInterval`. So a burst is one line, with its count, a heartbeat after it began.
    func reportRefusals() {
        let now = clock.monotonicNanos
        let refused: Int? = admission.withLock { a in
            guard a.refused > 0 else { return nil }
            if let last = a.lastReport, now - min(now, last) < Cluster.refusalReportInterval { return nil }
            defer {
                a.refused = 0
                a.lastReport = now
            }
            return a.refused
        }
        guard let refused else { return }
        logger.warning("refused unauthenticated cluster connections", metadata: [
            "refused": "\(refused)",
            "listen": "\(options.listenHost):\(options.listenPort)",
            "reason": "\(options.unauthenticatedLimit) connections were already in their TLS handshake or waiting for hello, each for at most \(options.handshakeTimeout.milliseconds) ms; more were closed on accept",
            "hint": "peers retry every heartbeat; if nothing but peers should reach this port, firewall it to them",
        ])
    }
}
