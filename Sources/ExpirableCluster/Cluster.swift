import ExpirableCore
import ExpirableTLS
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// This node's part in the cluster (SPEC §4). It dials every peer over mutual TLS and sends on that link
/// (hello, heartbeats, values, clears, forwarded fetches and their answers), and accepts every peer's link to
/// receive. A peer linked both ways and heard from within `deadAfter` is alive. Each cluster-scoped expirable is
/// owned by one live node (rendezvous hashing): the owner alone calls the plugin, others forward fetches to it,
/// and every change travels to all peers with a version, the newest winning. Knows nothing of RESP.
public final class Cluster: Service, Replicator, Sendable {
    let options: ClusterOptions
    let tls: TLSContext
    let logger: Logger
    let group: any EventLoopGroup
    /// The engine's clock, passed in (the cluster has none of its own): liveness and deadlines on its monotonic
    /// time, versions on its wall clock corrected to cluster time, every timer of the cluster on its `schedule`
    /// (heartbeat, redials, forwarded fetches, leases, the join, and the handshake and mid-frame deadlines of the
    /// links). A test gives each node its own (`ManualClock`, with its own wall time).
    let clock: any EngineClock
    private let engineBox = Mutex<Engine?>(nil)
    let state: Mutex<ClusterState>
    /// Apart from `state`: taken on every accept, which must not wait behind the peers' bookkeeping.
    let admission = Mutex(Admission())
    /// Refused connections counted for the log (`Cluster+Refusals.swift`).
    let refusals = Mutex(Refusals())
    /// `options.digests` by name.
    let digestsByName: [String: ExpirableDigest]
    /// Drawn when the daemon starts, sent in every hello: a peer tells a second daemon with this node's name
    /// from this one redialing.
    let incarnation = UInt64.random(in: 1...UInt64.max)

    /// Every buffer of a peer link comes from it (TLS plaintext, frames being read and written). Values cross
    /// the links in plain bytes inside TLS; the daemon passes an allocator that zeroes memory as it frees it.
    let allocator: ByteBufferAllocator

    public init(options: ClusterOptions, tls: TLSContext, logger: Logger, clock: any EngineClock,
                allocator: ByteBufferAllocator = ByteBufferAllocator(), group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) {
        self.options = options
        digestsByName = Dictionary(options.digests.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        self.allocator = allocator
        self.clock = clock
        self.tls = tls
        self.logger = logger
        self.group = group
        let longestLease = options.quorum.values.map { Cluster.leaseDuration(forTimeout: $0) }.max() ?? .zero
        state = Mutex(ClusterState(peers: options.peers, grants: LeaseGrants(startedAt: clock.monotonicNanos, longestLease: longestLease)))
        for warning in tls.warnings { logger.warning("\(warning)") }
    }

    /// Joins `engine` to the cluster: the engine reports cluster-scoped changes here, and values and clears
    /// from peers go into it. Call once, before `run()`.
    public func attach(_ engine: Engine) {
        engineBox.withLock { $0 = engine }
        engine.attach(self)
    }

    var engine: Engine? { engineBox.withLock { $0 } }

    /// Wraps `local` (this node's plugin) so that a fetch goes to the expirable's owner when that is another
    /// node, waiting at most `timeout` for its answer.
    public func fetcher(for name: String, local: any Fetcher, timeout: Duration) -> any Fetcher {
        ClusterFetcher(name: name, local: local, cluster: self, timeout: timeout)
    }

    // MARK: Membership

    /// The live nodes, this one included, sorted.
    public func liveNodes() -> [String] {
        let now = clock.monotonicNanos
        return ([options.node] + state.withLock { s in s.peers.values.filter { $0.isAlive(now: now, deadAfter: options.deadAfter) }.map(\.peer.name) }).sorted()
    }

    /// The live node that owns `name`: among the live nodes whose hello lists its expirable (for a keyed
    /// family's member NAME:KEY, the family) as cluster-scoped and, like here, keyed or plain (SPEC §4). A node
    /// without it could only answer a forwarded fetch with "no such expirable": during a rolling restart that
    /// adds one, the nodes that have it own it among themselves.
    public func owner(of name: String) -> String {
        Ownership.owner(of: name, among: owners(for: name)) ?? options.node
    }

    /// The live nodes, this one included, that may own `name` (`owner(of:)`), sorted.
    func owners(for name: String) -> [String] {
        guard let mine = digest(covering: name) else { return liveNodes() }
        let now = clock.monotonicNanos
        return ([options.node] + state.withLock { s in
            s.peers.values.filter { $0.isAlive(now: now, deadAfter: options.deadAfter) && $0.digests[mine.name]?.keyed == mine.keyed }.map(\.peer.name)
        }).sorted()
    }

    /// This node's digest of `name`'s expirable: `name` itself, or the keyed family NAME of a member NAME:KEY.
    func digest(covering name: String) -> ExpirableDigest? {
        if let digest = digestsByName[name] { return digest }
        var index = name.startIndex
        while let colon = name[index...].firstIndex(of: ":") {
            if let digest = digestsByName[String(name[..<colon])], digest.keyed { return digest }
            index = name.index(after: colon)
        }
        return nil
    }

    /// Whether this node owns `name` now.
    public func owns(_ name: String) -> Bool { owner(of: name) == options.node }

    /// Every member's state, this node first.
    public func members() -> [MemberStatus] {
        let now = clock.monotonicNanos
        let (peers, time) = state.withLock { s in (s.peers.values.sorted { $0.peer.name < $1.peer.name }, s.time) }
        var this = MemberStatus(node: options.node, state: .this, address: "\(options.listenHost):\(options.listenPort)", certificate: nil,
                                lastHeardMillis: nil, tls: nil, disagreements: [], lastError: nil)
        this.clockOffsetMillis = time.correction
        this.clockError = clockProblem(of: options.node, in: time)
        return [this]
            + peers.map { record in
                var member = MemberStatus(
                    node: record.peer.name,
                    state: record.isAlive(now: now, deadAfter: options.deadAfter) ? .alive : .dead,
                    address: record.peer.address,
                    certificate: record.certificate,
                    lastHeardMillis: record.lastHeard == 0 ? nil : Int64((now - min(now, record.lastHeard)) / 1_000_000),  // heard after `now` was read: 0
                    tls: record.tls,
                    disagreements: record.disagreements,
                    lastError: record.lastError,
                    queued: record.sender?.queueLength
                )
                member.clockOffsetMillis = time.offset(of: record.peer.name)
                member.roundTripMillis = time.delay(of: record.peer.name)
                member.clockError = clockProblem(of: record.peer.name, in: time)
                return member
            }
    }

    // MARK: Replicator

    /// Stamped with cluster time: this node's wall clock corrected by the median offset to its peers (§4.15).
    public func nextVersion() -> Version {
        let wall = clock.unixMillis
        return Version(time: state.withLock { $0.hlc.next(wall: $0.time.clusterMillis(wall: wall)) }, node: options.node)
    }

    public func stored(_ name: String, _ fetched: Fetched, remainingMillis: Int64?, version: Version) {
        let lease = state.withLock { $0.held[name] }
        replicate(.value(name: name, version: version, remainingMillis: remainingMillis, value: fetched.value, lease: lease))
    }

    public func stateChanged(_ name: String, _ state: Secret?, version: Version) {
        let family = name.split(separator: ":", maxSplits: 1).first.map(String.init) ?? name
        let (lease, firstUnderAvailable) = self.state.withLock { s in
            (s.held[name], state != nil && options.quorum[family] == nil && s.statefulWarned.insert(family).inserted)
        }
        if firstUnderAvailable {
            // The configuration cannot tell that a plugin keeps state (only the oauth2 plugin's refresh_token grant
            // is known to): say so the first time one does, since two nodes calling at once with one state (a
            // rotating refresh token) can revoke it (SPEC §4.10). Once per expirable, not per call.
            logger.warning("plugin keeps a state under single_flight = \"available\": during a membership change or a partition two nodes may call it with the same state (for a rotating refresh token, the provider may revoke it); set single_flight = \"quorum\" on this expirable unless its calls may overlap (logged once per expirable)",
                           metadata: ["expirable": "\(family)"])
        }
        replicate(.state(name: name, version: version, state: state, lease: lease))
    }

    public func cleared(_ name: String, version: Version) {
        replicate(.clear(name: name, version: version))
    }

    /// Not while rejoining after a pause (§4.17): the engine looks again a second later, by when the view of
    /// the peers is fresh and the next owner's value, if it refreshed meanwhile, has arrived.
    public func mayRefresh(_ name: String) -> Bool {
        hasJoined && !rejoining() && owner(of: name) == options.node
    }

    /// Keyed members with eager refresh read on this node: each that another node owns is fetched from its owner,
    /// the answer dropped. The owner answers from memory and counts it as a read (a hit), so its `key_idle` runs
    /// from the last read on any node and its eager refresh goes on while any node reads the key (one fetch a
    /// member a sweep, a quarter of `key_idle`, only for members read here meanwhile). The existing `fetch` frame:
    /// peers need nothing new. A member its owner dropped meanwhile is fetched there again, as the next read
    /// here would have had it fetched, before the copy here expires.
    public func readHere(_ names: [String]) {
        guard hasJoined, !rejoining() else { return }
        for name in names {
            let owner = owner(of: name)
            guard owner != options.node, !servingForwards(of: name) else { continue }
            forward(name, to: owner, timeout: .seconds(30)) { _ in }
        }
    }

    /// Until its owner would count as dead if it fell silent now (or until the join ends), so an eager refresh
    /// the owner does not make moves to the next owner as soon as the owner is found dead (SPEC §4.13).
    public func refreshRecheckDelay(_ name: String) -> Duration {
        let now = clock.monotonicNanos
        let owner = owner(of: name)
        let due: UInt64? = state.withLock { s in
            guard s.joined else { return s.joinDeadline }
            guard let record = s.peers[owner] else { return nil }
            return min(record.lastHeard, record.lastAcked) &+ UInt64(options.deadAfter.nanoseconds)
        }
        let wait = due.map { Int64(min($0 &- min($0, now), UInt64(Int64.max))) } ?? 0
        return min(max(.nanoseconds(wait) + .milliseconds(5), .milliseconds(10)), Engine.minimumRefreshInterval)
    }

    /// The dead time plus a heartbeat: an eager refresh is started at least this long before expiry when the
    /// value's lifetime allows, so the next owner can still make it if the owner dies when it falls due.
    public var takeoverLead: Duration { options.deadAfter + options.heartbeat }

    // MARK: Sending

    func broadcast(_ message: ClusterMessage) {
        let links = state.withLock { s in s.peers.values.compactMap(\.sender) }
        for link in links { link.send(message) }
    }

    /// Sends a change (value, clear, state) to every peer: on the link this node dialed, or, to a peer that link
    /// does not reach while the peer's own link to this node works, back on that one (SPEC §4.14).
    func replicate(_ message: ClusterMessage) {
        let links = state.withLock { s in s.peers.values.compactMap { $0.reverseActive ? $0.reverse : $0.sender } }
        for link in links { link.send(message) }
    }

    /// Every cluster-scoped value, clear and plugin state this node holds, with versions: what a peer needs to
    /// catch up.
    func everyChange() -> [ClusterMessage] {
        var messages: [ClusterMessage] = []
        for replica in engine?.replicas() ?? [] {
            if let value = replica.value {
                messages.append(.value(name: replica.name, version: replica.version, remainingMillis: replica.remainingMillis, value: value, lease: nil))
            } else {
                messages.append(.clear(name: replica.name, version: replica.version))
            }
        }
        for replica in engine?.replicaStates() ?? [] {
            messages.append(.state(name: replica.name, version: replica.version, state: replica.state, lease: nil))
        }
        return messages
    }

    /// Sends `message` on the link to `node`; false if there is none.
    @discardableResult
    func send(_ message: ClusterMessage, to node: String) -> Bool {
        guard let link = state.withLock({ $0.peers[node]?.sender }) else { return false }
        link.send(message)
        return true
    }

    /// What this node says first on a new link: hello, then every cluster-scoped value and clear it holds,
    /// so a node that (re)starts learns the cluster's state without calling any plugin, then a heartbeat,
    /// which tells the peer the greeting is complete (it ends the peer's wait to join, SPEC §4.11).
    func greeting() -> [ClusterMessage] {
        var messages: [ClusterMessage] = [.hello(node: options.node, protocolVersion: ClusterMessage.protocolVersion, incarnation: incarnation, expirables: options.digests)]
        messages += everyChange()
        // After the states: which of this node's leases are not over (the peer takes the others for over).
        messages += leasesUnderWay()
        // Last: the greeting is complete (it ends the peer's join). No clocks: nothing to echo yet.
        messages.append(.heartbeat(wallMillis: clock.unixMillis, echoMillis: 0, holdMillis: 0))
        return messages
    }
}

/// Everything about the peers that changes, behind the cluster's lock.
struct ClusterState {
    struct PeerRecord {
        let peer: ClusterOptions.Peer
        /// The link this node dialed, once its hello is sent.
        var outbound: (any Channel)?
        /// Its queue (SPEC §4.16).
        var sender: LinkSender?
        /// Monotonic time the peer last acknowledged a heartbeat on `outbound` (or `outbound` came up): the
        /// evidence that what this node sends arrives, which frames heard from the peer do not give (§4.14).
        var lastAcked: UInt64 = 0
        /// The peer's greeting has arrived on `inbound` (the heartbeat after its values).
        var greeted = false
        /// The link the peer dialed, once its hello arrived, and the incarnation that hello named.
        var inbound: (any Channel)?
        var incarnation: UInt64 = 0
        /// A queue on `inbound`, for changes while `outbound` does not deliver (SPEC §4.14).
        var reverse: LinkSender?
        /// Changes go on `reverse`, which has been sent everything this node holds.
        var reverseActive = false
        /// Monotonic time of the last frame from the peer.
        var lastHeard: UInt64 = 0
        var certificate: String?
        var tls: String?
        var disagreements: [ConfigDisagreement] = []
        /// The peer's cluster-scoped expirables, from its last hello: it may own only those (`owner(of:)`).
        var digests: [String: ExpirableDigest] = [:]
        var lastError: String?
        /// The peer acknowledged a heartbeat on `outbound`: the link works (not only its TLS handshake).
        var outboundAcknowledged = false
        /// Why the peer said it refuses this node's link (a `linkRefused` frame), until a link to it works: the
        /// connection errors that follow such a refusal do not replace it.
        var refusal: String?
        /// The last link this node dialed to the peer closed before the peer acknowledged anything: the links
        /// that come and go after it (a redial every heartbeat) are logged at debug until one works.
        var brokeEarly = false
        /// Whether the last membership report said alive, to log changes once.
        var reportedAlive = false
        /// A dial is under way or scheduled.
        var dialing = false

        func isAlive(now: UInt64, deadAfter: Duration) -> Bool {
            outbound != nil && inbound != nil && now - min(now, lastHeard) < UInt64(deadAfter.nanoseconds)
                && now - min(now, lastAcked) < UInt64(deadAfter.nanoseconds)
        }
    }

    struct PendingFetch {
        let peer: String
        let completion: @Sendable (ForwardOutcome) -> Void
        var timeout: (any Cancellable)?
    }

    var peers: [String: PeerRecord]
    var hlc = HybridClock()
    var nextRequestID: UInt64 = 1
    var pending: [UInt64: PendingFetch] = [:]
    /// Fetches peers forwarded here that are under way, by name: while there are any, this node fetches
    /// `name` itself even if its view names another owner (a forward is never forwarded again).
    var forwardsIn: [String: Int] = [:]
    var stopping = false
    /// Graceful shutdown is waiting for plugin calls that serve forwarded fetches (`stopAfterForwards`).
    var drainingForwards = false
    /// The next heartbeat tick (`scheduleHeartbeat`), cancelled on stop.
    var heartbeatTimer: (any Cancellable)?
    /// Whether the join has ended (SPEC §4.11): every peer's greeting arrived and every peer is alive, or
    /// `joinTimeout` passed.
    var joined = false
    /// When the join ends at the latest (monotonic), once `run()` started it.
    var joinDeadline: UInt64?
    var joinWaiters: [@Sendable () -> Void] = []
    /// Peer clock offsets and this node's correction to cluster time (§4.15).
    var time = ClusterTime()
    /// Pauses of this process (§4.17).
    var pauses = PauseWatch()
    /// Members whose clock is reported beyond `maxClockOffset` (this node's name for its own correction).
    var clockErrors: Set<String> = []

    /// Quorum single flight: what this node promised, its attempts waiting for answers, and the leases it holds
    /// for a call under way (the value that call stores is sent with that lease).
    struct PendingLease {
        var attempt: LeaseAttempt
        let local: any Fetcher
        let request: FetchRequest
        let timeout: Duration
        /// 1 for a caller's first attempt, then 2… after refusals as not newer; `firstSentAt` is the first's.
        let ordinal: Int
        let firstSentAt: UInt64
        let completion: @Sendable (FetchOutcome) -> Void
    }
    var grants: LeaseGrants
    var leases: [String: PendingLease] = [:]
    var held: [String: LeaseNumber] = [:]
    /// Expirables (families) under "available" whose plugin set a state, already warned about (once each).
    var statefulWarned: Set<String> = []
    /// This node's leases whose attempt or call is not over (until their release), for its greetings.
    var underWay: [String: LeaseNumber] = [:]
    /// Per peer whose greeting is arriving: the leases it named as under way so far.
    var leaseGreetings: [String: Set<LeaseNumber>] = [:]
    /// Counts for the metrics.
    var counters = ClusterCounters()

    init(peers: [ClusterOptions.Peer], grants: LeaseGrants) {
        self.peers = Dictionary(uniqueKeysWithValues: peers.map { ($0.name, PeerRecord(peer: $0)) })
        self.grants = grants
    }
}
