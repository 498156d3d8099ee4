import ExpirableRESP
import NIOCore

/// What a connection has told the server about itself, as in Redis: its protocol, its name, what it listens
/// to and the transaction it is queueing. Lives on the connection's event loop.
struct Session {
    /// RESP2 until `HELLO 3`.
    var version: RESPVersion = .resp2
    /// The connection's number, unique in this daemon (`CLIENT ID`, `HELLO`).
    let id: Int64
    /// `CLIENT SETNAME`, shown in logs.
    var name: String?
    /// The expirables this connection is subscribed to.
    var subscriptions = SubscribedNames()
    /// Set between MULTI and EXEC or DISCARD.
    var transaction: Transaction?

    /// Commands queued by MULTI, kept as the requests' own bytes and run like pipelined requests by EXEC.
    struct Transaction {
        var requests: ByteBuffer
        var count = 0
        /// A command was refused while queueing: EXEC fails as a whole, as in Redis.
        var failed = false
    }

    /// A RESP2 connection with subscriptions may only (un)subscribe, ping, quit or reset.
    var restrictedToPubSub: Bool { version == .resp2 && !subscriptions.isEmpty }
}

/// The names a connection is subscribed to. Every valid key of a keyed family is a name, so a connection may
/// hold thousands: each is found, added and removed in constant time (an array's `contains` and `firstIndex`
/// made subscribing to N names cost N² on the event loop, stalling every client of the daemon), and the
/// order they were subscribed in, which `UNSUBSCRIBE` without names answers in, is kept as a number per name.
struct SubscribedNames {
    /// Each name, and when it was subscribed (a count that only goes up).
    private var order: [String: UInt64] = [:]
    private var next: UInt64 = 0

    var count: Int { order.count }
    var isEmpty: Bool { order.isEmpty }

    func contains(_ name: String) -> Bool { order[name] != nil }

    /// Adds `name`; false if it was there already.
    mutating func insert(_ name: String) -> Bool {
        guard order[name] == nil else { return false }
        order[name] = next
        next += 1
        return true
    }

    /// Removes `name`; false if it was not there.
    mutating func remove(_ name: String) -> Bool { order.removeValue(forKey: name) != nil }

    mutating func removeAll() { order = [:] }

    /// The names in the order they were subscribed.
    var inOrder: [String] { order.sorted { $0.value < $1.value }.map(\.key) }

    /// The names in no particular order.
    var names: Dictionary<String, UInt64>.Keys { order.keys }
}
