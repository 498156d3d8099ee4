/// Quorum single flight (SPEC §4.10): a node may call the plugin of an expirable with
/// `single_flight = "quorum"` only while it holds a lease on it that a majority of the configured nodes granted.
/// Two majorities share a node, and a node promises one lease per expirable at a time, so two leases never
/// overlap: not during membership changes, restarts, pauses or partitions. Leases are timed on each node's own
/// monotonic clock (never the wall clock): a granter keeps its promise for the whole lease from when it heard the
/// request, and the holder counts its lease from before it sent the request, less a margin for clocks that run at
/// slightly different rates, so the holder's lease always ends before any granter's promise does. A holder that
/// was paused finds its lease over on its own clock when it resumes and makes no call; a result that arrives
/// under a lease that is no longer the newest is refused (fencing).
///
/// A lease stops two calls from overlapping, not a call from starting with an older plugin state (§3.20) than an
/// earlier call set: a holder cut off after its call changed the state (a rotated refresh token) keeps the only
/// copy. So a granter also remembers the leases it granted whose holder has not yet said its call is over (the
/// release, or the holder's greeting, which comes after the states it sends), and answers with the newest such
/// lease and the version of the state it holds. A candidate whose majority knows of a lease that may not be over,
/// or of a state newer than its own, does not call: two majorities share a node, so the lease before this one is
/// always among them. docs/cluster.md has the rule and its failure cases.
///
/// This file is the protocol's logic without I/O: the grants a node gives (`LeaseGrants`) and one node's
/// attempt to hold a lease (`LeaseAttempt`). Messages and timers are the cluster's.

import ExpirableCore

/// A lease's number: rounds increase, and the proposer's name breaks ties, so numbers are unique in the cluster
/// and totally ordered.
public struct LeaseNumber: Sendable, Hashable, Comparable, CustomStringConvertible {
    public let round: UInt64
    public let node: String

    public init(round: UInt64, node: String) {
        self.round = round
        self.node = node
    }

    public static func < (lhs: LeaseNumber, rhs: LeaseNumber) -> Bool {
        (lhs.round, lhs.node) < (rhs.round, rhs.node)
    }

    public var description: String { "\(round)@\(node)" }

    /// The largest round a frame may carry (2^48): a node's rounds grow by one per attempt, so a cluster asking a
    /// thousand times a second would need thousands of years to get here, and a round past it is broken input.
    /// Far below UInt64's end, so no round ever wraps to 0 (which every node would refuse as not newer).
    public static let maxRound: UInt64 = 1 << 48
}

/// Why a node refused a lease. It crosses the wire as a code and its numbers (`ClusterFrame`), never as text; the
/// words are made where they are shown (`text(refusing:)`: the caller's no-quorum error, `PeerError.noQuorum`).
enum LeaseRefusal: Sendable, Hashable {
    /// The node started less than the longest lease ago (it cannot tell a start from a restart that forgot its
    /// promises), and grants none for `remaining` more.
    case quiet(remaining: Duration)
    /// The lease asked for is not newer than `seen`, the newest the node has seen on the expirable.
    case notNewer(seen: LeaseNumber)
    /// The node promised `lease` to another node, for `remaining` more.
    case promised(LeaseNumber, remaining: Duration)

    /// The reason in words, for a refusal of `asked`.
    func text(refusing asked: LeaseNumber) -> String {
        switch self {
        case .quiet(let remaining): "it started less than the longest lease ago and grants none for \(remaining.milliseconds) ms"
        case .notNewer(let seen): "lease \(asked) is not newer than lease \(seen)"
        case .promised(let lease, let remaining): "it promised lease \(lease) for \(remaining.milliseconds) ms more"
        }
    }
}

/// What one node has promised, per expirable. Every node, the requester included, answers requests with it.
struct LeaseGrants {
    struct Promise: Equatable {
        let number: LeaseNumber
        /// Monotonic nanoseconds on this node.
        let until: UInt64
    }

    enum Answer: Equatable {
        case granted
        case refused(LeaseRefusal)
    }

    private(set) var promises: [String: Promise] = [:]
    /// The newest lease number seen per expirable, in a request or in a result.
    private(set) var newest: [String: LeaseNumber] = [:]
    /// Leases asked of this node (granted or not; or that a holder said are under way) whose holder has not said
    /// their call is over: the plugin state such a call set may exist only on its holder.
    private(set) var unfinished: [String: Set<LeaseNumber>] = [:]
    /// A node that restarts has forgotten its promises; it promises nothing until the longest lease it could
    /// have granted before has run out (monotonic nanoseconds).
    let quietUntil: UInt64

    init(startedAt: UInt64, longestLease: Duration) {
        quietUntil = startedAt &+ UInt64(max(0, longestLease.nanoseconds))
    }

    /// A request for `number` on `name`, lasting `duration`, heard at `now`.
    mutating func request(_ name: String, number: LeaseNumber, duration: Duration, now: UInt64) -> Answer {
        // A node asks for a lease only once its previous call on `name` is over and the state it set is sent.
        finished(name, before: number)
        // Remembered even when refused here: the others may grant it, and the more nodes remember a lease whose
        // call may not be over, the fewer restarts it takes to forget it.
        unfinished[name, default: []].insert(number)
        if now < quietUntil {
            return .refused(.quiet(remaining: Self.millis(quietUntil - now)))
        }
        if let seen = newest[name], number <= seen {
            return .refused(.notNewer(seen: seen))
        }
        if let promise = promises[name], promise.until > now, promise.number.node != number.node {
            return .refused(.promised(promise.number, remaining: Self.millis(promise.until - now)))
        }
        newest[name] = number
        promises[name] = Promise(number: number, until: now &+ UInt64(max(0, duration.nanoseconds)))
        return .granted
    }

    /// The holder of `number` is done with it: the next lease may be granted at once, and its call (if any) is
    /// over, the state it set sent before this.
    mutating func release(_ name: String, number: LeaseNumber) {
        if promises[name]?.number == number { promises[name] = nil }
        finished(name, before: number, including: true)
    }

    /// The holder of `number` says its attempt or call under it is not over (its greeting after a partition or a
    /// restart of this node): remembered even if this node did not grant it, or forgot it.
    mutating func underWay(_ name: String, number: LeaseNumber) {
        finished(name, before: number)
        unfinished[name, default: []].insert(number)
        observe(name, number: number)
    }

    /// `node` greeted this node and named `underWay` as its leases still under way: any other lease of its that
    /// this node took for unfinished is over (or was lost with a restart of `node`). Returns those.
    mutating func greeted(by node: String, underWay: Set<LeaseNumber>) -> [(name: String, number: LeaseNumber)] {
        var over: [(String, LeaseNumber)] = []
        for (name, numbers) in unfinished {
            for number in numbers where number.node == node && !underWay.contains(number) { over.append((name, number)) }
        }
        for (name, number) in over { drop(name, number) }
        return over
    }

    /// Leases of `number.node` older than `number` (and `number` itself when `including`) are over.
    private mutating func finished(_ name: String, before number: LeaseNumber, including: Bool = false) {
        guard let numbers = unfinished[name] else { return }
        for other in numbers where other.node == number.node && (other < number || (including && other == number)) { drop(name, other) }
    }

    private mutating func drop(_ name: String, _ number: LeaseNumber) {
        unfinished[name]?.remove(number)
        if unfinished[name]?.isEmpty == true { unfinished[name] = nil }
    }

    /// The newest lease on `name` other than `number` whose call may not be over, for an answer to `number`.
    func unfinished(_ name: String, besides number: LeaseNumber) -> LeaseNumber? {
        unfinished[name]?.filter { $0 != number }.max()
    }

    /// A lease number seen on a result: older leases are superseded from now on.
    mutating func observe(_ name: String, number: LeaseNumber) {
        if newest[name].map({ $0 < number }) ?? true { newest[name] = number }
    }

    /// Whether a result made under `number` must be refused: a newer lease was seen for `name`.
    func isSuperseded(_ name: String, number: LeaseNumber) -> Bool {
        newest[name].map { number < $0 } ?? false
    }

    /// The rounds this node asked for, per expirable: a request its own grants refused does not raise `newest`.
    private(set) var proposed: [String: UInt64] = [:]

    /// The round for this node's next request on `name`: past every number seen and every one it asked for.
    func nextRound(_ name: String) -> UInt64 {
        // Saturating: rounds from peers are at most `LeaseNumber.maxRound`, so this never reaches UInt64's end.
        let round = max(newest[name]?.round ?? 0, proposed[name] ?? 0)
        return round < UInt64.max ? round + 1 : round
    }

    /// The number for this node's next request on `name`. Never one it asked for before: a late grant of an
    /// earlier attempt under the same number would count for the new one, though its granter has since been
    /// released from it and may have promised the lease to another node.
    mutating func propose(_ name: String, node: String) -> LeaseNumber {
        let round = nextRound(name)
        proposed[name] = round
        return LeaseNumber(round: round, node: node)
    }

    /// Whole milliseconds, rounded up: what a refusal carries on the wire.
    private static func millis(_ nanos: UInt64) -> Duration {
        .milliseconds(Int64(clamping: nanos / 1_000_000 + (nanos % 1_000_000 == 0 ? 0 : 1)))
    }
}

/// One node's attempt to hold a lease: it sent `number` to every configured node (itself included) at
/// `sentAt`, and counts the answers.
struct LeaseAttempt {
    enum Outcome: Equatable {
        /// A majority granted it: the lease is this node's until `until` (monotonic nanoseconds here).
        case held(until: UInt64)
        /// Too many refused for a majority to remain possible; the reasons, by node.
        case lost([String: LeaseRefusal])
    }

    let name: String
    let number: LeaseNumber
    let sentAt: UInt64
    let duration: Duration
    /// The configured nodes, this one included: a majority is of these, not of the nodes alive.
    let voters: Int
    private(set) var granted: Set<String> = []
    private(set) var refused: [String: LeaseRefusal] = [:]
    /// Nodes not counted on: dead in the asker's view when it asked, so no answer is waited for (one that comes
    /// all the same counts, if the attempt is not over).
    private(set) var dead: Set<String> = []
    /// What the answering nodes know that a call depends on: the newest lease each knows of (other than this one)
    /// whose call may not be over, and the version of the plugin state each holds.
    private(set) var unfinished: [String: LeaseNumber] = [:]
    private(set) var stateVersions: [String: Version] = [:]

    /// Why a call under a held lease must not be made yet with the caller's plugin state.
    enum StateHazard: Equatable, CustomStringConvertible {
        /// A lease before this one may still have a call, or a state from one, on its holder only.
        case unfinished(LeaseNumber)
        /// A node holds a newer state than the caller (it is on its way: the node sends it before answering).
        case newerState(node: String, Version)

        var description: String {
            switch self {
            case .unfinished(let number): "the previous lease holder \(number.node) may hold a newer state (lease \(number)); waiting for it"
            case .newerState(let node, let version): "\(node) holds a newer state (version \(version)) than this node; waiting for it"
            }
        }
    }

    init(name: String, number: LeaseNumber, sentAt: UInt64, duration: Duration, voters: Int) {
        self.name = name
        self.number = number
        self.sentAt = sentAt
        self.duration = duration
        self.voters = voters
    }

    static func majority(of voters: Int) -> Int { voters / 2 + 1 }

    /// How much shorter the holder counts its lease than its granters: a tenth of it, at least 50 ms, covering
    /// monotonic clocks that run up to 10 % apart over a lease (real ones are within a few parts per million).
    static func margin(of duration: Duration) -> Duration {
        max(duration / 10, .milliseconds(50))
    }

    mutating func grant(from node: String) {
        guard refused[node] == nil else { return }
        granted.insert(node)
    }

    mutating func refusal(from node: String, _ reason: LeaseRefusal) {
        guard !granted.contains(node) else { return }
        refused[node] = reason
    }

    /// `node` is dead in this node's view: a majority that needs its answer is out of reach now, not at the end
    /// of the wait. Giving up sooner calls nothing, so it cannot make two calls overlap.
    mutating func deadInView(_ node: String) {
        dead.insert(node)
    }

    /// What `node` said, with its grant or refusal, about earlier calls and its state.
    mutating func learn(from node: String, unfinished number: LeaseNumber?, stateVersion: Version?) {
        if let number { unfinished[node] = number }
        if let stateVersion { stateVersions[node] = stateVersion }
    }

    /// Whether a call under this lease with a state of version `state` could start from an older state than a
    /// call before it set (§3.20): a lease before it that an answering node knows of may not be over, or an
    /// answering node holds a newer state. Two majorities share a node, so the lease before this one (and the
    /// state it set, once over) is always known to one of the granters. Every answer counts, not only grants.
    /// `keepsState` false (the plugin is not known to keep one, and neither this node nor any answer has one):
    /// an unfinished earlier lease is no hazard, as there is no state it could have spent; waiting for its
    /// holder would stop the expirable on the whole cluster for as long as that node is away.
    func stateHazard(state: Version?, keepsState: Bool = true) -> StateHazard? {
        if keepsState || !stateVersions.isEmpty, let (_, number) = unfinished.max(by: { $0.value < $1.value }) { return .unfinished(number) }
        if let newer = stateVersions.values.max(), state.map({ $0 < newer }) ?? true,
           let node = stateVersions.filter({ $0.value == newer }).keys.min() {
            return .newerState(node: node, newer)
        }
        return nil
    }

    var outcome: Outcome? {
        let majority = Self.majority(of: voters)
        if granted.count >= majority {
            let usable = duration - Self.margin(of: duration)
            return .held(until: sentAt &+ UInt64(max(0, usable.nanoseconds)))
        }
        let waitedFor = voters - refused.count - dead.subtracting(granted).subtracting(refused.keys).count
        if waitedFor < majority { return .lost(refused) }
        return nil
    }
}
