import ExpirableCore

/// Counts of the cluster's traffic and leases, for the metrics.
public struct ClusterCounters: Sendable, Hashable {
    /// Fetches this node forwarded to an owner, and those that failed (error, timeout, owner gone).
    public var forwardsSent: UInt64 = 0
    public var forwardFailures: UInt64 = 0
    /// Fetches peers forwarded here, served through the engine, and those dropped unanswered (deadline passed,
    /// sent before a pause ended).
    public var forwardsServed: UInt64 = 0
    public var forwardsDropped: UInt64 = 0
    /// Lease attempts of this node (`single_flight = "quorum"`): held by a majority, lost, held too late for a
    /// whole call, and calls that outlived their lease (their result dropped).
    public var leasesHeld: UInt64 = 0
    public var leasesLost: UInt64 = 0
    public var leasesTooLate: UInt64 = 0
    /// Held, but not called under: an earlier lease's call may not be over, or a newer state has not arrived.
    public var leasesWaitingForState: UInt64 = 0
    public var callsOutlivedLease: UInt64 = 0
    /// Peers' lease requests this node granted or refused.
    public var leasesGranted: UInt64 = 0
    public var leasesRefused: UInt64 = 0

    public init() {}
}

/// The cluster as the metrics show it.
public struct ClusterFigures: Sendable {
    public struct Peer: Sendable {
        public let node: String
        public let alive: Bool
        /// Seconds since the last frame from it; nil before the first.
        public let lastHeardSeconds: Double?
        /// How far its clock is ahead of this node's (negative: behind), as last measured.
        public let clockOffsetSeconds: Double?
        /// The round trip of the last heartbeat: the replication delay to expect on the link.
        public let roundTripSeconds: Double?
        /// Changes (values, clears, plugin states) waiting on the link that carries this node's changes to the
        /// peer because the peer does not read them fast enough, and how long the oldest has waited, in seconds;
        /// nil without such a link (the peer is down: its link's greeting will send everything).
        public var queuedChanges: Int? = nil
        public var replicationLagSeconds: Double? = nil
    }

    public let node: String
    public let peers: [Peer]
    /// This node's correction from its wall clock to cluster time.
    public let clockCorrectionSeconds: Double
    /// Members (this node included) whose clock is beyond `max_clock_offset`.
    public let clockOffsetErrors: Int
    public let counters: ClusterCounters
    /// Cluster-scoped names this node owns now, and those it holds a lease for.
    public let owned: Set<String>
    public let leased: Set<String>
    /// For each cluster-scoped name asked about with a quorum lease promised now, the node this node promised it
    /// to: the lease's holder as this node knows it (itself when it holds the lease).
    public var leaseHolders: [String: String] = [:]
}

extension Cluster {
    /// The figures now; `names` are the cluster-scoped expirables to report ownership of.
    public func figures(names: [String]) -> ClusterFigures {
        let members = members()
        let now = clock.monotonicNanos
        let (counters, held, links, promises) = state.withLock { s in
            // The link each peer's changes go on (as `replicate` picks it): the reverse queue during a one-way cut.
            (s.counters, Set(s.held.keys), s.peers.mapValues { $0.reverseActive ? $0.reverse : $0.sender }, s.grants.promises)
        }
        let owned = Set(names.filter { owner(of: $0) == options.node })
        var figures = ClusterFigures(
            node: options.node,
            peers: members.filter { $0.state != .this }.map { member in
                var peer = ClusterFigures.Peer(
                    node: member.node, alive: member.state == .alive,
                    lastHeardSeconds: member.lastHeardMillis.map { Double($0) / 1000 },
                    clockOffsetSeconds: member.clockOffsetMillis.map { Double($0) / 1000 },
                    roundTripSeconds: member.roundTripMillis.map { Double($0) / 1000 }
                )
                if let link = links[member.node] ?? nil {
                    let backlog = link.backlog
                    peer.queuedChanges = backlog.changes
                    peer.replicationLagSeconds = Double(backlog.oldest.nanoseconds) / 1e9
                }
                return peer
            },
            clockCorrectionSeconds: Double(members.first { $0.state == .this }?.clockOffsetMillis ?? 0) / 1000,
            clockOffsetErrors: members.filter { $0.clockError != nil }.count,
            counters: counters, owned: owned, leased: held
        )
        // Only the names asked about (plain expirables' names: a keyed member's name holds its key).
        for name in names {
            if let promise = promises[name], promise.until > now { figures.leaseHolders[name] = promise.number.node }
        }
        return figures
    }

    /// The lease line of `explain`: whether `name` takes a lease before a call, and whether this node holds one.
    func leaseInfo(_ name: String) -> (String, String) {
        let base = name.split(separator: ":", maxSplits: 1).first.map(String.init) ?? name
        guard options.quorum[base] != nil else {
            return ("lease", "none: single_flight is \"available\", so the owner calls without asking the others")
        }
        let (held, pending) = state.withLock { ($0.held[name], $0.leases[name] != nil) }
        if let held { return ("lease", "held by this node (lease \(held)) for the call under way") }
        if pending { return ("lease", "asked for: waiting for a majority of the nodes to grant it") }
        return ("lease", "single_flight = quorum: a call needs a lease granted by a majority; none held now")
    }
}
