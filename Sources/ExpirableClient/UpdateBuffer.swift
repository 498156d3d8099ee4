import NIOCore

/// Updates received but not yet taken by the consumer, at most one per name: a newer value of a name still
/// waiting replaces the older one in its place. So a consumer that falls behind costs one value per watched
/// name, never a queue that grows with the daemon's rotations, and it always gets the newest value.
struct UpdateBuffer {
    /// Names with a waiting value, in the order their first waiting value arrived.
    private var order = CircularBuffer<String>()
    private var newest: [String: ValueUpdate] = [:]

    var count: Int { order.count }

    mutating func append(_ update: ValueUpdate) {
        if newest.updateValue(update, forKey: update.name) == nil { order.append(update.name) }
    }

    mutating func popFirst() -> ValueUpdate? {
        guard let name = order.popFirst() else { return nil }
        return newest.removeValue(forKey: name)
    }

    mutating func removeAll() {
        order.removeAll()
        newest.removeAll()
    }
}
