import ExpirableCore

/// How this node takes part in the cluster: who it is, where it listens, its peers, and the timing of
/// heartbeats. The daemon fills it from `[cluster]`.
public struct ClusterOptions: Sendable {
    public struct Peer: Sendable, Hashable {
        public let name: String
        public let host: String
        public let port: Int
        public init(name: String, host: String, port: Int) {
            self.name = name
            self.host = host
            self.port = port
        }
        public var address: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
    }

    public var node: String
    public var listenHost: String
    public var listenPort: Int
    public var peers: [Peer]
    /// How often a heartbeat goes to every peer.
    public var heartbeat: Duration
    /// A peer not heard from for this long is dead; its duties move to the live nodes.
    public var deadAfter: Duration
    /// An accepted connection must finish its TLS handshake and send a valid hello within this long, or it is
    /// closed. Default: 4 heartbeats, at least 2 s (a loaded peer's handshake is not cut short) and at most 5 s
    /// (a stranger does not hold a place of `unauthenticatedLimit` for long).
    public var handshakeTimeout: Duration
    /// How many accepted connections may be short of a valid hello at once; more are closed on accept, so
    /// strangers on the cluster port cannot use up the descriptors local clients need. Default: 4 per peer,
    /// at least 16 (see docs/cluster.md, "Unauthenticated connections").
    public var unauthenticatedLimit: Int
    /// How long a node that starts waits for its peers' greetings before a miss on a cluster-scoped value may
    /// call a plugin (SPEC §4.11). Default: the dead time plus a heartbeat (4 heartbeats, 2 s by default): a
    /// live peer dials within a heartbeat, and one silent that long would count as dead anyway.
    public var joinTimeout: Duration
    /// How long a forwarded fetch waits at the owner for a paced call (§3.17, §3.18) before it is answered with
    /// the last error and the time of the next attempt: the daemon's `request_timeout`, a local caller's patience,
    /// so the callers of the asking node are answered as the owner's own are (nil: the forward's deadline).
    public var forwardPatience: Duration?
    /// This node's cluster-scoped expirables, for comparing configurations with peers.
    public var digests: [ExpirableDigest]
    /// On graceful shutdown, how long plugin calls serving fetches forwarded by peers may go on before the links
    /// close: as long as the server lets its own callers' calls finish (its `drainTimeout`).
    public var drainTimeout: Duration = .seconds(5)
    /// A member whose clock is further than this from cluster time is reported as an error (§4.15).
    public var maxClockOffset: Duration = .milliseconds(500)
    /// The expirables with `single_flight = "quorum"` (SPEC §4.10) and their plugin call timeouts.
    public var quorum: [String: Duration] = [:]
    /// Quorum expirables whose plugin the configuration knows to keep a state (oauth2 with a refresh token): a
    /// lease holder that went away during a call is waited for even when no node knows a state yet, since that
    /// call may have set the first one. Others are waited for only once a state is known (§3.20).
    public var keepsState: Set<String> = []

    public init(node: String, listenHost: String, listenPort: Int, peers: [Peer], heartbeat: Duration = .milliseconds(500),
                deadAfter: Duration? = nil, handshakeTimeout: Duration? = nil, unauthenticatedLimit: Int? = nil,
                joinTimeout: Duration? = nil, digests: [ExpirableDigest]) {
        self.node = node
        self.listenHost = listenHost
        self.listenPort = listenPort
        self.peers = peers
        self.heartbeat = heartbeat
        self.deadAfter = deadAfter ?? heartbeat * 3
        self.handshakeTimeout = handshakeTimeout ?? min(max(heartbeat * 4, .seconds(2)), .seconds(5))
        self.unauthenticatedLimit = unauthenticatedLimit ?? max(16, 4 * peers.count)
        self.joinTimeout = joinTimeout ?? self.deadAfter + heartbeat
        self.digests = digests
    }
}

/// A cluster-scoped expirable configured differently on a peer: the name, kept apart from the text, so that
/// CLUSTER can leave out names the caller may not see (SPEC §9: who cannot read a value cannot learn it exists).
public struct ConfigDisagreement: Sendable, Hashable {
    /// The expirable (a keyed family's own name) the difference is about.
    public let name: String
    /// The difference, the name first, as CLUSTER shows it and the log says it.
    public let text: String
}

/// One member as `expirablectl cluster` shows it.
public struct MemberStatus: Sendable, Hashable {
    public enum State: String, Sendable {
        /// This node.
        case this
        /// Linked both ways and heard from recently.
        case alive
        /// Not (yet) linked both ways, or silent for longer than `deadAfter`.
        case dead
    }

    public let node: String
    public let state: State
    public let address: String
    /// The name the peer's certificate was verified for, once linked.
    public let certificate: String?
    /// Milliseconds since the last frame from the peer.
    public let lastHeardMillis: Int64?
    /// The TLS version of the inbound link.
    public let tls: String?
    /// Cluster-scoped expirables configured differently on that peer.
    public let disagreements: [ConfigDisagreement]
    /// Why the last attempt to reach the peer failed.
    public let lastError: String?
    /// Messages waiting on the link to the peer for it to read (SPEC §4.16); nil without a link.
    public var queued: Int? = nil
    /// For a peer, how far its clock is ahead of this node's (negative: behind), in ms, as last measured; for
    /// this node, the correction from its wall clock to cluster time. Nil before a heartbeat's round trip.
    public var clockOffsetMillis: Int64? = nil
    /// The round trip of the heartbeat that measured `clockOffsetMillis`, in ms.
    public var roundTripMillis: Int64? = nil
    /// Set when the member's clock is further than `max_clock_offset` from cluster time.
    public var clockError: String? = nil
}
