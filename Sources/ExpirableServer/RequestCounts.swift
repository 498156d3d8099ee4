import Synchronization

/// Requests counted by command, per connection: written by the connection's event loop alone (a load and a
/// store, no locked instruction, no cache line shared with other connections), read by scrapes.
final class RequestCounts: Sendable {
    /// One slot per name in `Command.metricNames`.
    private let slots: InlineArray<32, Atomic<UInt64>>

    init() {
        precondition(Command.metricNames.count <= 32)
        slots = InlineArray { _ in Atomic(0) }
    }

    /// Counts one request; called only on the connection's event loop.
    func count(_ slot: Int) {
        slots[slot].store(slots[slot].load(ordering: .relaxed) &+ 1, ordering: .relaxed)
    }

    func add(to totals: inout [UInt64]) {
        for slot in totals.indices { totals[slot] &+= slots[slot].load(ordering: .relaxed) }
    }
}

/// Every connection's request counts: the open connections' live, the closed ones' folded into totals.
final class RequestCountRegistry: Sendable {
    private struct Counts {
        var open: [ObjectIdentifier: RequestCounts] = [:]
        var closed = [UInt64](repeating: 0, count: Command.metricNames.count)
    }
    private let counts = Mutex(Counts())

    func opened(_ connection: RequestCounts) {
        counts.withLock { $0.open[ObjectIdentifier(connection)] = connection }
    }

    func closed(_ connection: RequestCounts) {
        counts.withLock { c in
            guard c.open.removeValue(forKey: ObjectIdentifier(connection)) != nil else { return }
            connection.add(to: &c.closed)
        }
    }

    /// Requests so far by command name; commands never sent are left out.
    func totals() -> [(String, UInt64)] {
        var totals = counts.withLock { c in
            var totals = c.closed
            for connection in c.open.values { connection.add(to: &totals) }
            return totals
        }
        totals = Array(totals.prefix(Command.metricNames.count))
        return zip(Command.metricNames, totals).filter { $0.1 > 0 }
    }
}
