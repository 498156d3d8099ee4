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
/// This file is the protocol's logic without I/O: the grants a node gives (`LeaseGrants`) and one node's
/// attempt to hold a lease (`LeaseAttempt`). Messages and timers are the cluster's.

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
        case refused(String)
    }

    private(set) var promises: [String: Promise] = [:]
    /// The newest lease number seen per expirable, in a request or in a result.
    private(set) var newest: [String: LeaseNumber] = [:]
    /// A node that restarts has forgotten its promises; it promises nothing until the longest lease it could
    /// have granted before has run out (monotonic nanoseconds).
    let quietUntil: UInt64

    init(startedAt: UInt64, longestLease: Duration) {
        quietUntil = startedAt &+ UInt64(max(0, longestLease.nanoseconds))
    }

    /// A request for `number` on `name`, lasting `duration`, heard at `now`.
    mutating func request(_ name: String, number: LeaseNumber, duration: Duration, now: UInt64) -> Answer {
        if now < quietUntil {
            return .refused("it started less than the longest lease ago and grants none for \(Self.millis(quietUntil - now)) ms")
        }
        if let seen = newest[name], number <= seen {
            return .refused("lease \(number) is not newer than lease \(seen)")
        }
        if let promise = promises[name], promise.until > now, promise.number.node != number.node {
            return .refused("it promised lease \(promise.number) for \(Self.millis(promise.until - now)) ms more")
        }
        newest[name] = number
        promises[name] = Promise(number: number, until: now &+ UInt64(max(0, duration.nanoseconds)))
        return .granted
    }

    /// The holder of `number` is done with it: the next lease may be granted at once.
    mutating func release(_ name: String, number: LeaseNumber) {
        if promises[name]?.number == number { promises[name] = nil }
    }

    /// A lease number seen on a result: older leases are superseded from now on.
    mutating func observe(_ name: String, number: LeaseNumber) {
        if newest[name].map({ $0 < number }) ?? true { newest[name] = number }
    }

    /// Whether a result made under `number` must be refused: a newer lease was seen for `name`.
    func isSuperseded(_ name: String, number: LeaseNumber) -> Bool {
        newest[name].map { number < $0 } ?? false
    }

    /// The round for this node's next request on `name`: past every number seen.
    func nextRound(_ name: String) -> UInt64 {
        (newest[name]?.round ?? 0) &+ 1
    }

    private static func millis(_ nanos: UInt64) -> UInt64 { (nanos + 999_999) / 1_000_000 }
}

/// One node's attempt to hold a lease: it sent `number` to every configured node (itself included) at
/// `sentAt`, and counts the answers.
struct LeaseAttempt {
    enum Outcome: Equatable {
        /// A majority granted it: the lease is this node's until `until` (monotonic nanoseconds here).
        case held(until: UInt64)
        /// Too many refused for a majority to remain possible; the reasons, by node.
        case lost([String: String])
    }

    let name: String
    let number: LeaseNumber
    let sentAt: UInt64
    let duration: Duration
    /// The configured nodes, this one included: a majority is of these, not of the nodes alive.
    let voters: Int
    private(set) var granted: Set<String> = []
    private(set) var refused: [String: String] = [:]

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

    mutating func refusal(from node: String, _ reason: String) {
        guard !granted.contains(node) else { return }
        refused[node] = reason
    }

    var outcome: Outcome? {
        let majority = Self.majority(of: voters)
        if granted.count >= majority {
            let usable = duration - Self.margin(of: duration)
            return .held(until: sentAt &+ UInt64(max(0, usable.nanoseconds)))
        }
        if voters - refused.count < majority { return .lost(refused) }
        return nil
    }
}
