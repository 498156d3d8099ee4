import ExpirableCore
import Synchronization

/// One subscribed connection, as the fan-out sees it: a way to hand it a new value on its own event loop.
final class Subscriber: Sendable {
    let id: Int64
    private let deliver: @Sendable (String, Fetched) -> Void

    init(id: Int64, deliver: @escaping @Sendable (String, Fetched) -> Void) {
        self.id = id
        self.deliver = deliver
    }

    func push(_ name: String, _ fetched: Fetched) { deliver(name, fetched) }
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

    /// How many connections listen to `name`.
    func count(_ name: String) -> Int { table.withLock { $0[name]?.count ?? 0 } }
}
