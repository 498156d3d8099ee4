import ExpirableTLS
import Logging

/// Connections on the cluster port refused at TLS or at hello, counted so that however many there are, the log
/// stays a few lines. Anyone who can reach the port can make a handshake fail (no certificate, another CA,
/// plaintext, an HTTP request, garbage), as fast as they can connect: those refusals are counted by reason and
/// reported at most once per `refusalReportInterval` for each reason, with their count. A refusal after TLS
/// verified a peer's certificate (a connection reset, a hello that names another node or speaks another
/// protocol) comes from a holder of the cluster CA's certificate, rare and attributable, so the first is logged
/// at once; but a peer set up wrong redials every heartbeat for ever, so after that line its refusals are
/// counted and reported at most once per `peerRefusalReportInterval`. Every refusal is logged at debug.
struct Refusals {
    /// The refusals of one reason before a certificate was verified.
    struct Unverified {
        /// Refused since the reason's last line.
        var count = 0
        /// Monotonic time of the first of them.
        var first: UInt64 = 0
        /// The addresses they came from, the first few.
        var hosts: [String] = []
        var moreHosts = false
        /// Monotonic time of the reason's last line; nil: none yet.
        var lastLine: UInt64?
    }

    /// The refusals of one verified peer.
    struct Verified {
        /// Refused since the peer's last line, and the reason of the latest.
        var count = 0
        var first: UInt64 = 0
        var reason = ""
        /// Monotonic time of the peer's last line.
        var lastLine: UInt64
    }

    /// By reason. Reasons come from OpenSSL and the system, a few dozen at most, but beyond `reasonLimit` they
    /// are counted together, so no sender can grow this.
    var unverified: [String: Unverified] = [:]
    /// By the node the certificate was verified for: configured peers only.
    var verified: [String: Verified] = [:]

    static let reasonLimit = 16
    static let hostsNamed = 4
    static let otherReasons = "other reasons (see the debug lines)"
}

extension Cluster {
    // Connections refused before a certificate was verified: at most one line per reason per
    // `refusalReportInterval` (Cluster+Admission.swift), as for the connections over the budget.

    /// At most one line per peer this often about its refused connections, after the first.
    static let peerRefusalReportInterval: UInt64 = 60_000_000_000

    /// The words for why a connection was refused: TLS's own message, or what the network said.
    static func refusalReason(_ error: any Error) -> String {
        if let tls = error as? TLSError { return tls.message }
        return LinkFailure.link(error)
    }

    /// A connection from `host` failed before TLS verified a certificate: logged at debug, counted for the next
    /// report.
    func refusedUnverified(from host: String, reason: String) {
        logger.debug("refused peer connection", metadata: ["from": "\(host)", "peer": "unverified", "reason": "\(reason)"])
        let now = clock.monotonicNanos
        refusals.withLock { r in
            let key = r.unverified[reason] != nil || r.unverified.count < Refusals.reasonLimit ? reason : Refusals.otherReasons
            var tally = r.unverified[key] ?? Refusals.Unverified()
            if tally.count == 0 { tally.first = now }
            tally.count += 1
            if !tally.hosts.contains(host) {
                if tally.hosts.count < Refusals.hostsNamed { tally.hosts.append(host) } else { tally.moreHosts = true }
            }
            r.unverified[key] = tally
        }
    }

    /// A connection from `peer`, whose certificate TLS verified, was refused or failed: the first in a while is
    /// logged at once, the others at debug and counted for the next report.
    func refusedVerified(_ peer: String, from host: String, reason: String) {
        let now = clock.monotonicNanos
        let first: Bool = refusals.withLock { r in
            if var tally = r.verified[peer], tally.count > 0 || now - min(now, tally.lastLine) < Cluster.peerRefusalReportInterval {
                if tally.count == 0 { tally.first = now }
                tally.count += 1
                tally.reason = reason
                r.verified[peer] = tally
                return false
            }
            r.verified[peer] = Refusals.Verified(lastLine: now)
            return true
        }
        let metadata: Logger.Metadata = ["from": "\(host)", "peer": "\(peer)", "reason": "\(reason)"]
        if first {
            logger.warning("refused peer connection", metadata: metadata)
        } else {
            logger.debug("refused peer connection", metadata: metadata)
        }
    }

    /// Every heartbeat: one line per reason, and per peer, whose refusals since its last line are due.
    func reportConnectionRefusals() {
        let now = clock.monotonicNanos
        let (unverified, verified) = refusals.withLock { r in
            var unverified: [(String, Refusals.Unverified)] = []
            for (reason, tally) in r.unverified {
                let due = tally.lastLine.map { now - min(now, $0) >= Cluster.refusalReportInterval } ?? true
                guard due else { continue }
                if tally.count > 0 {
                    unverified.append((reason, tally))
                    r.unverified[reason] = Refusals.Unverified(lastLine: now)
                } else {
                    r.unverified[reason] = nil  // quiet for a whole interval: the next one is reported at once
                }
            }
            var verified: [(String, Refusals.Verified)] = []
            for (peer, tally) in r.verified where now - min(now, tally.lastLine) >= Cluster.peerRefusalReportInterval {
                if tally.count > 0 {
                    verified.append((peer, tally))
                    r.verified[peer]?.count = 0
                    r.verified[peer]?.lastLine = now
                } else {
                    r.verified[peer] = nil  // quiet for a whole interval: the next one is logged at once
                }
            }
            return (unverified.sorted { $0.0 < $1.0 }, verified.sorted { $0.0 < $1.0 })
        }
        for (reason, tally) in unverified {
            logger.warning("refused peer connections", metadata: [
                "refused": "\(tally.count)",
                "over_ms": "\((now - min(now, tally.first)) / 1_000_000)",
                "from": "\(tally.hosts.joined(separator: ","))\(tally.moreHosts ? " and others" : "")",
                "reason": "\(reason)",
                "note": "no certificate was verified; each refusal is logged at debug, their count once every \(Cluster.refusalReportInterval / 1_000_000_000) s at most",
            ])
        }
        for (peer, tally) in verified {
            logger.warning("refused peer connections", metadata: [
                "refused": "\(tally.count)",
                "over_ms": "\((now - min(now, tally.first)) / 1_000_000)",
                "peer": "\(peer)",
                "reason": "\(tally.reason)",
                "note": "the latest reason; each refusal is logged at debug, their count once a minute at most",
            ])
        }
    }
}
