/// Cluster time (SPEC §4.15): this node's wall clock corrected by the median of its peers' clock offsets, so a
/// node whose clock is minutes ahead stamps versions with about the time its peers would, and neither wins
/// concurrent changes nor undoes a later clear. Offsets are measured from heartbeats as NTP does: each heartbeat
/// carries the sender's wall clock, the wall time of the last heartbeat it received from the receiver (the
/// echo) and how long it held that one, so the receiver sees one round trip per heartbeat. Offsets are kept when
/// a peer goes away (a partition), so each side goes on stamping with the correction it had.
struct ClusterTime {
    /// One round trip's estimate of a peer's clock: `offset` ms ahead of this node's (negative: behind), from a
    /// round trip of `delay` ms. The shorter the round trip, the smaller the possible error (at most delay / 2).
    struct Sample: Equatable {
        let offset: Int64
        let delay: Int64
    }

    struct Peer {
        /// The latest samples, oldest first; the estimate is the one with the shortest round trip.
        var samples: [Sample] = []
        /// The sender's wall time in the last heartbeat from this peer, and when it arrived (monotonic ns):
        /// echoed in this node's next heartbeat to it.
        var lastWall: Int64?
        var lastArrival: UInt64 = 0
        /// The latest of this node's wall times the peer echoed: what it had heard from this node.
        var echoed: Int64 = 0

        var estimate: Sample? { samples.min { $0.delay < $1.delay } }
    }

    /// How many samples each peer's estimate is chosen from: a few seconds of heartbeats, so one slow round
    /// trip (a loaded machine, a paused process) does not move the estimate, and a clock that is stepped is
    /// followed within a few seconds.
    static let window = 8

    private(set) var peers: [String: Peer] = [:]

    /// Records a heartbeat from `peer` carrying its wall clock `wall`, the echo of this node's heartbeat `echo`
    /// (0: none yet) and how long the peer held that echo (`hold`, ms). `arrivalWall` and `arrival` are this
    /// node's wall (ms) and monotonic (ns) clocks at arrival. A round trip longer than `maxDelay` ms is not a
    /// sample: heartbeats that waited in the socket while this node was paused would fill the window with
    /// estimates off by up to half the pause.
    mutating func heartbeat(from peer: String, wall: Int64, echo: Int64, hold: Int64, arrivalWall: Int64, arrival: UInt64, maxDelay: Int64 = .max) {
        var record = peers[peer] ?? Peer()
        record.lastWall = wall
        record.lastArrival = arrival
        record.echoed = max(record.echoed, echo)
        if let sample = ClusterTime.sample(sent: echo, peerReceived: wall - hold, peerSent: wall, received: arrivalWall), sample.delay <= maxDelay {
            record.samples.append(sample)
            if record.samples.count > ClusterTime.window { record.samples.removeFirst(record.samples.count - ClusterTime.window) }
        }
        peers[peer] = record
    }

    /// NTP's offset and delay from the four times of one round trip: `sent` and `received` on this node's wall
    /// clock, `peerReceived` and `peerSent` on the peer's. Nil without an echo, or when the times cannot be one
    /// round trip (a wall clock stepped in between).
    static func sample(sent: Int64, peerReceived: Int64, peerSent: Int64, received: Int64) -> Sample? {
        guard sent > 0 else { return nil }
        let delay = (received - sent) - (peerSent - peerReceived)
        // Rounding to milliseconds on both sides can make a loopback round trip come out a millisecond short.
        guard delay >= -2, peerSent >= peerReceived else { return nil }
        return Sample(offset: ((peerReceived - sent) + (peerSent - received)) / 2, delay: max(0, delay))
    }

    /// What this node's next heartbeat to `peer` echoes: the peer's last wall time and how long ago (ms) it
    /// arrived. (0, 0) before the peer's first heartbeat.
    func echo(for peer: String, now: UInt64) -> (echo: Int64, hold: Int64) {
        guard let record = peers[peer], let wall = record.lastWall else { return (0, 0) }
        return (wall, Int64((now - min(now, record.lastArrival)) / 1_000_000))
    }

    /// The estimated offset of `peer`'s clock from this node's, in ms (positive: ahead); nil before a round trip.
    func offset(of peer: String) -> Int64? { peers[peer]?.estimate?.offset }

    /// The round trip of the sample behind `offset(of:)`, in ms.
    func delay(of peer: String) -> Int64? { peers[peer]?.estimate?.delay }

    /// The median of the offsets to every peer measured so far and to this node itself (0): what is added to
    /// this node's wall clock to read cluster time. With an even count the lower middle is taken, so two nodes
    /// agree on the slower clock (a clock that is behind cannot win a concurrent change: the hybrid clock still
    /// orders whatever a node has seen).
    var correction: Int64 {
        let offsets = ([0] + peers.values.compactMap { $0.estimate?.offset }).sorted()
        return offsets[(offsets.count - 1) / 2]
    }

    /// `wall` (this node's wall clock, ms) read as cluster time.
    func clusterMillis(wall: Int64) -> Int64 { wall + correction }

    /// How far `peer`'s clock is from cluster time, in ms (positive: ahead); nil before a round trip.
    func deviation(of peer: String) -> Int64? { offset(of: peer).map { $0 - correction } }
}

/// A pause of the whole process (SIGSTOP, a long stall): noticed as a jump of the monotonic clock between
/// heartbeat ticks longer than the dead time, by when the peers have taken this node for dead and moved its
/// duties (SPEC §4.17). Every entry point that could act on what was due during the pause asks first.
struct PauseWatch {
    /// When the last tick ran (monotonic ns); 0 before the first.
    private(set) var lastTick: UInt64 = 0
    /// The last pause noticed.
    private(set) var last: Pause?

    struct Pause: Equatable {
        /// Monotonic ns: the last tick before the pause, and when it was noticed.
        let from: UInt64
        let noticed: UInt64
        /// This node's wall clock (ms) when it was noticed: heartbeats sent from then on carry at least this
        /// time, so a peer's echo at or above it shows the peer has heard from this node since.
        let noticedWall: Int64
        var millis: Int64 { Int64((noticed - from) / 1_000_000) }
    }

    /// Called on every tick and before acting on anything a peer or a timer asks: returns the pause if the time
    /// since the last tick shows one just now. `tick` moves the last tick to `now`.
    mutating func check(now: UInt64, wall: Int64, threshold: Duration, tick: Bool) -> Pause? {
        defer { if tick { lastTick = now } }
        guard lastTick != 0, now - min(now, lastTick) > UInt64(max(0, threshold.nanoseconds)) else { return nil }
        let pause = Pause(from: lastTick, noticed: now, noticedWall: wall)
        last = pause
        // Noticed once: from here on the pause is over, whether or not the tick has run.
        lastTick = now
        return pause
    }

    /// Whether a peer's forwarded fetch was sent before that peer heard from this node after its last pause:
    /// `echo` is the wall time of this node's latest heartbeat the peer had received when it sent the fetch.
    /// Such a fetch was given up by the peer when it took this node for dead (and handed to the next owner), so
    /// serving it would be a second call. Only within `window` of the pause: later, anything is recent.
    func isStale(echo: Int64, now: UInt64, window: Duration) -> Bool {
        guard let last, now - min(now, last.noticed) < UInt64(max(0, window.nanoseconds)) else { return false }
        return echo < last.noticedWall
    }
}

/// A forwarded fetch's deadline (SPEC §4.13): the asking node waits `deadlineMillis` for the answer, counted
/// from when the owner reads the request. A request read just after a pause may have waited in the socket since
/// the pause began, so it is counted from then.
struct ForwardDeadline: Equatable {
    /// Monotonic ns on the owner.
    let at: UInt64

    init(millis: Int64, received: UInt64, pause: PauseWatch.Pause? = nil) {
        let start = pause.map { min($0.from, received) } ?? received
        at = start &+ UInt64(max(0, millis)) &* 1_000_000
    }

    /// Time left at `now`, or nil when the deadline has passed.
    func remaining(at now: UInt64) -> Duration? {
        guard at > now else { return nil }
        return .nanoseconds(Int64(at - now))
    }
}
