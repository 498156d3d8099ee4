import ExpirableCore
import Synchronization

/// One subscribed connection, as the fan-out sees it: a way to hand it a new value, or the end of a
/// subscription, on its own event loop.
final class Subscriber: Sendable {
    let id: Int64
    private let deliver: @Sendable (String, Fetched) -> Void
    private let ended: @Sendable (String) -> Void

    init(id: Int64, deliver: @escaping @Sendable (String, Fetched) -> Void, ended: @escaping @Sendable (String) -> Void = { _ in }) {
        self.id = id
        self.deliver = deliver
        self.ended = ended
    }

    func push(_ name: String, _ fetched: Fetched) { deliver(name, fetched) }

    /// `name` is no longer served (a reload removed it): the connection tells its client.
    func end(_ name: String) { ended(name) }
}

/// Who listens to which expirable. The engine's observer calls `publish` for every new value; each subscriber
/// gets it on its own event loop. Costs nothing per GET: only stores of new values look here.
final class Subscriptions: Sendable {
    private let table = Mutex<[String: [Int64: Subscriber]]>([:])

    func add(_ name: String, _ subscriber: Subscriber) {
        table.withLock { $0[name, default: [:]][subscriber.id] = subscriber }
    }

    func remove(_ name: String, _ subscriber: Subscriber) {
        table.withLock { t in
            t[name]?[subscriber.id] = nil
            if t[name]?.isEmpty == true { t[name] = nil }
        }
    }

    func publish(_ name: String, _ fetched: Fetched) {
        let listeners = table.withLock { $0[name].map { Array($0.values) } ?? [] }
        for listener in listeners { listener.push(name, fetched) }
    }

    /// Ends every subscription to a name for which `gone` holds (after a reload: no longer configured, or now a
    /// keyed family's name, which SUBSCRIBE refuses): each subscriber is told, and the name is forgotten.
    func end(where gone: (String) -> Bool) {
        let ended = table.withLock { t in
            t.keys.filter(gone).map { name in (name, Array(t.removeValue(forKey: name)!.values)) }
        }
        for (name, listeners) in ended {
            for listener in listeners { listener.end(name) }
        }
    }

    /// How many connections listen to `name`.
    func count(_ name: String) -> Int { table.withLock { $0[name]?.count ?? 0 } }
}
