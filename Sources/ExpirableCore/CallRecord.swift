/// One finished fetch, as `explain` and the metrics show it: when it started, how long it took, how it ended, what
/// started it and where its answer came from. Never the value, nor the plugin's state. Most are calls of this
/// node's plugin (`route == .plugin`); in a cluster a fetch may also be answered without one (`Route`), and only
/// the plugin's calls count as calls (INFO `plugin_calls`, the call duration metric, explain's `call` lines).
public struct CallRecord: Sendable, Hashable {
    /// What a call ended in.
    public enum Outcome: String, Sendable, Hashable, CaseIterable {
        /// A value arrived (stored, or dropped because a clear came first).
        case success
        /// A temporary failure (`ExpirableError.Class.temporary`): an outage, an overload, a timeout.
        case temporary
        /// A permanent failure: the configuration or the grant is broken.
        case permanent
    }

    /// Why the call started.
    public enum Trigger: String, Sendable, Hashable {
        /// A reader found no valid value (or not enough validity for its MINTTL).
        case reader
        /// Eager refresh, before the value expires.
        case refresh
        /// A reader's call that pacing held back after a failure, started when pacing allowed it.
        case paced
        /// Readers who arrived after a clear, while a call from before it was still running.
        case afterClear = "after_clear"
        /// The prefetch when the daemon starts (`prefetch = true`, and eager values), before any reader.
        case prefetch
    }

    /// Where a fetch's answer came from.
    public enum Route: Sendable, Hashable {
        /// This node's plugin was called.
        case plugin
        /// The expirable's owner was asked (`to`): its plugin's call, if it made one, is in the owner's history.
        case forwarded(to: String)
        /// The value a peer sent while this node was joining the cluster answered it: nothing was called.
        case joined
        /// Nothing was called, nor an owner asked: the cluster did not let this node call (quorum single flight:
        /// no lease, or one that could not be used), or the fetch waited past its time (for the join, after a
        /// pause) before it could go anywhere; or the plugin's saved state could not be used (state_dir). The error
        /// says why.
        case notCalled
    }

    /// Wall-clock start, Unix milliseconds.
    public let startedAtMillis: Int64
    /// How long the call took, in nanoseconds.
    public let durationNanos: UInt64
    public let outcome: Outcome
    public let trigger: Trigger
    /// The protocol's error word (`FETCH`, `TIMEOUT`) for a failure; nil for a success.
    public let errorCode: ExpirableError.Code?
    public let route: Route

    public init(startedAtMillis: Int64, durationNanos: UInt64, outcome: Outcome, trigger: Trigger, errorCode: ExpirableError.Code? = nil,
                route: Route = .plugin) {
        self.startedAtMillis = startedAtMillis
        self.durationNanos = durationNanos
        self.outcome = outcome
        self.trigger = trigger
        self.errorCode = errorCode
        self.route = route
    }

    /// Whether this node's plugin made the call.
    public var isPluginCall: Bool { route == .plugin }
}

/// The last fetches of one entry, newest first: the newest inline, older ones (plain expirables only) in a small
/// array, so a keyed family's million members pay for one record each, not for a ring.
struct CallHistory {
    /// Fetches kept per plain expirable.
    static let depth = 8

    private(set) var newest: CallRecord?
    private var older: [CallRecord] = []

    mutating func record(_ call: CallRecord, keepOlder: Bool) {
        if keepOlder, let previous = newest {
            if older.count == CallHistory.depth - 1 { older.removeLast() }
            older.insert(previous, at: 0)
        }
        newest = call
    }

    /// Newest first.
    var all: [CallRecord] { (newest.map { [$0] } ?? []) + older }
}
