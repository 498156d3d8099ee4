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
    /// The expirables this connection is subscribed to, in the order subscribed.
    var subscriptions: [String] = []
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
