/// Rendezvous (highest-random-weight) hashing: every node ranks the live nodes for an expirable by a hash of
/// (name, node) and the top one owns it. Nodes that see the same live set agree without talking; when a node
/// dies only the expirables it owned move.
enum Ownership {
    static func owner(of name: String, among nodes: [String]) -> String? {
        nodes.max { score(name, $0) < score(name, $1) || (score(name, $0) == score(name, $1) && $0 < $1) }
    }

    static func score(_ name: String, _ node: String) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in name.utf8 { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3 }
        hash = (hash ^ 0) &* 0x0000_0100_0000_01b3
        for byte in node.utf8 { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3 }
        // splitmix64's finalizer, so similar names spread over the nodes.
        hash = (hash ^ (hash >> 30)) &* 0xbf58_476d_1ce4_e5b9
        hash = (hash ^ (hash >> 27)) &* 0x94d0_49bb_1331_11eb
        return hash ^ (hash >> 31)
    }
}

/// A hybrid logical clock: the wall clock in milliseconds, but never behind a reading it gave or a version it
/// saw, so a change made after seeing another is always newer, whatever the nodes' clocks say.
struct HybridClock {
    private(set) var last: Int64 = 0

    mutating func next(wall: Int64) -> Int64 {
        last = max(wall, last + 1)
        return last
    }

    mutating func observe(_ time: Int64) {
        last = max(last, time)
    }
}
