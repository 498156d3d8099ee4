import ExpirableCore
import NIOCore
import Synchronization

/// The sending side of a link this node dialed (SPEC §4.16). Messages wait in a queue that holds at most one
/// change per expirable (a newer value or clear replaces the queued one) and one heartbeat, and are written only
/// while the channel is writable (NIO's write-buffer watermarks). So a peer that stops reading costs this node
/// at most the watermark, one frame, and one queued change per name, however many changes are made meanwhile;
/// the cluster drops such a link once it has gone unacknowledged for the dead time, and the greeting on the next
/// link resends everything.
final class LinkSender: Sendable {
    /// What a queued message may be replaced by.
    enum Key: Hashable {
        case hello, heartbeat
        case change(String)
        /// A plugin state (§3.20), collapsed apart from values.
        case state(String)
        case request(UInt64)
        case answer(UInt64)
        /// Never replaced (lease frames).
        case unique(UInt64)
    }

    private struct State {
        /// `since`: monotonic nanoseconds when the key's first unsent message was queued. A newer change to the
        /// same name replaces the message but keeps `since`: the peer has lacked the name's change from then on,
        /// which is the link's replication lag (`expirable_cluster_peer_replication_lag_seconds`).
        var queued: [Key: (order: UInt64, message: ClusterMessage, since: UInt64)] = [:]
        /// The order in which keys were queued; entries whose order no longer matches `queued` are skipped.
        var order: [(key: Key, order: UInt64)] = []
        var head = 0
        var nextOrder: UInt64 = 0
        /// A drain is scheduled on the event loop or running.
        var draining = false

        mutating func enqueue(_ message: ClusterMessage, now: UInt64) {
            let key = LinkSender.key(of: message) ?? .unique(nextOrder + 1)
            if let old = queued[key]?.message, let oldVersion = LinkSender.version(of: old),
               let newVersion = LinkSender.version(of: message), newVersion < oldVersion {
                return  // the queued change is newer already
            }
            nextOrder += 1
            queued[key] = (nextOrder, message, queued[key]?.since ?? now)
            order.append((key, nextOrder))
            // Replaced entries stay in `order` until skipped: compact when they outnumber the live ones.
            if order.count - head > 2 * queued.count + 64 {
                order = order[head...].filter { queued[$0.key]?.order == $0.order }
                head = 0
            }
        }

        mutating func popFirst() -> ClusterMessage? {
            while head < order.count {
                let (key, position) = order[head]
                head += 1
                if let entry = queued[key], entry.order == position {
                    queued[key] = nil
                    return entry.message
                }
            }
            order.removeAll(keepingCapacity: order.count < 1024)
            head = 0
            return nil
        }
    }

    let channel: any Channel
    /// The cluster's clock, for how long changes wait (monotonic time only).
    private let clock: any EngineClock
    private let state = Mutex(State())

    init(channel: any Channel, clock: any EngineClock) {
        self.channel = channel
        self.clock = clock
    }

    /// Messages waiting for the channel to become writable.
    var queueLength: Int { state.withLock { $0.queued.count } }

    /// The changes (values, clears, plugin states) waiting for the channel to become writable, and how long the
    /// oldest of them has waited (zero with none): what the peer lacks of this node's changes beyond the link's
    /// transit. Counting walks the queue, at most one entry per expirable: for a scrape, not for every send.
    var backlog: (changes: Int, oldest: Duration) {
        let now = clock.monotonicNanos
        return state.withLock { s in
            var changes = 0
            var oldest = now
            for (key, entry) in s.queued {
                switch key {
                case .change, .state:
                    changes += 1
                    oldest = min(oldest, entry.since)
                default:
                    break
                }
            }
            return (changes, .nanoseconds(Int64(clamping: now - oldest)))
        }
    }

    /// Queues `message` (replacing an older change to the same expirable) and has it written when the channel
    /// can take it. Any thread.
    func send(_ message: ClusterMessage) {
        let now = clock.monotonicNanos
        let schedule: Bool = state.withLock { s in
            s.enqueue(message, now: now)
            defer { s.draining = true }
            return !s.draining
        }
        if schedule { channel.eventLoop.execute { self.drain() } }
    }

    /// Writes queued messages while the channel is writable. On the channel's event loop: after `send`, and
    /// when the channel becomes writable again.
    func drain() {
        var wrote = false
        while true {
            let next: ClusterMessage? = state.withLock { s in
                guard channel.isWritable, let message = s.popFirst() else {
                    s.draining = false
                    return nil
                }
                return message
            }
            guard let next else { break }
            // Framed (and wiped, if it holds a value) by the link's `ClusterFrameEncoder`.
            channel.write(next, promise: nil)
            wrote = true
        }
        if wrote { channel.flush() }
    }

    /// What `message` may replace in the queue; nil: nothing.
    static func key(of message: ClusterMessage) -> Key? {
        switch message {
        case .hello: .hello
        case .heartbeat: .heartbeat
        case .value(let name, _, _, _, _), .clear(let name, _): .change(name)
        case .state(let name, _, _, _): .state(name)
        case .fetch(let id, _, _, _): .request(id)
        case .fetched(let id, _, _, _, _), .fetchFailed(let id, _, _, _, _): .answer(id)
        case .leaseRequest, .leaseAnswer, .leaseRelease, .leaseUnderWay, .linkRefused: nil
        }
    }

    private static func version(of message: ClusterMessage) -> Version? {
        switch message {
        case .value(_, let version, _, _, _), .clear(_, let version), .state(_, let version, _, _): version
        default: nil
        }
    }
}
