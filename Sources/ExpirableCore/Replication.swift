/// The order of changes to one cluster-scoped expirable across the cluster: a hybrid logical clock reading
/// (milliseconds, never behind anything the node has seen) and the node that made the change, to break ties.
/// The newest version wins everywhere, so nodes converge whatever order changes arrive in.
public struct Version: Sendable, Hashable, Comparable, CustomStringConvertible {
    public let time: Int64
    public let node: String

    public init(time: Int64, node: String) {
        self.time = time
        self.node = node
    }

    public static func < (lhs: Version, rhs: Version) -> Bool {
        (lhs.time, lhs.node) < (rhs.time, rhs.node)
    }

    public var description: String { "\(time)@\(node)" }
}

/// What the engine tells the cluster, and asks it, about cluster-scoped expirables. Attached once, before
/// serving; never called for local-scoped ones.
public protocol Replicator: Sendable {
    /// A version newer than any this node has made or seen.
    func nextVersion() -> Version
    /// This node's plugin produced a value, now stored under `version`: send it to the peers.
    /// `remainingMillis` is its remaining validity (nil: never expires).
    func stored(_ name: String, _ fetched: Fetched, remainingMillis: Int64?, version: Version)
    /// The value was cleared on this node under `version`: tell the peers.
    func cleared(_ name: String, version: Version)
    /// Whether this node should run the eager refresh of `name` now (only its owner does).
    func mayRefresh(_ name: String) -> Bool
    /// When a node told not to refresh `name` should ask `mayRefresh` again.
    func refreshRecheckDelay(_ name: String) -> Duration
    /// The least time before expiry at which an eager refresh starts, when the lifetime allows: enough for
    /// another node to take the refresh over if the one making it dies.
    var takeoverLead: Duration { get }
    /// A call on this node changed `name`'s plugin state (nil: cleared) under `version`: tell the peers, so
    /// the next owner continues from it.
    func stateChanged(_ name: String, _ state: Secret?, version: Version)
    /// Members of keyed families with eager refresh read on this node since their family's last idle sweep: the
    /// owner of each, when another node, should count a read, or it drops the member (and its refresh) after
    /// `key_idle` while this node serves it from its copy, and the copy then expires under its readers.
    func readHere(_ names: [String])
}

extension Replicator {
    public func refreshRecheckDelay(_ name: String) -> Duration { Engine.minimumRefreshInterval }
    public var takeoverLead: Duration { .zero }
    public func stateChanged(_ name: String, _ state: Secret?, version: Version) {}
    public func readHere(_ names: [String]) {}
}

/// A cluster-scoped expirable's replicable state: its value (nil for a clear) and version.
public struct ReplicaState: Sendable {
    public let name: String
    public let value: Secret?
    /// Remaining validity in milliseconds; nil for a value that never expires (or for a clear).
    public let remainingMillis: Int64?
    public let version: Version
}

/// A value as this node answers a peer's forwarded fetch: its bytes, the version this node holds for it (nil:
/// none), its validity left in milliseconds (nil: never expires), and whether it is an expired value answered
/// stale.
public struct ReplicaAnswer: Sendable {
    public let value: Secret
    public let version: Version?
    public let remainingMillis: Int64?
    public let isStale: Bool
}
