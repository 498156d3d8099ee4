extension ExpirableClient {
    /// Every new value the daemon stores for `names` from now on, as it stores it: a fetch, an eager refresh,
    /// a value from a cluster peer. A clear is not an update.
    ///
    /// Returns once the daemon has confirmed the subscription, so any value stored after that is delivered;
    /// subscribing does not deliver the current value (``fetch(_:)`` it after subscribing to start from it).
    /// Throws `.notFound` if a name is not configured (and nothing is subscribed), `.unavailable` if the daemon
    /// cannot be reached, `.cancelled` at once if the calling task is cancelled before the confirmation.
    ///
    /// The updates come over a connection of their own (the client's calls go on over its usual one). If that
    /// connection breaks, a daemon restart say, it is reopened and the names subscribed again: a first attempt
    /// after 50 ms, then twice as long a wait after each failed one, up to 2 s between attempts. Values stored
    /// while it was broken are not delivered. If the daemon is not back within the client's
    /// `timeout`, or it refuses the subscription when back (`.notFound` for a name no longer configured), the
    /// sequence throws that error after the updates it still holds.
    ///
    /// A consumer slower than the rotations does not make memory grow: at most one update per name waits to
    /// be taken, the newest (a newer value of a name replaces the older one still waiting, in its place).
    /// Cancelling the consuming task, or dropping the sequence, closes the connection. Iterate it from one task.
    ///
    /// ```swift
    /// for try await update in try await client.updates(of: ["github_access_token"]) {
    ///     session.token = update.value
    /// }
    /// ```
    public func updates(of names: [String]) async throws(ExpirableClientError) -> ValueUpdates {
        var seen = Set<String>()
        let unique = names.filter { seen.insert($0).inserted }
        guard !unique.isEmpty else { throw ExpirableClientError(code: .badRequest, message: "no name to watch; give at least one") }
        let subscription = Subscription(names: unique, socketPath: socketPath, timeout: timeout, group: group)
        try await subscription.start()
        return ValueUpdates(subscription)
    }
}

/// The updates of the names given to ``ExpirableClient/updates(of:)``, in the order the daemon stored them
/// (except that a newer value waiting replaces an older one, see there). Ends by throwing
/// ``ExpirableClientError`` when the subscription cannot go on, and returns nil once its task is cancelled.
public struct ValueUpdates: AsyncSequence, Sendable {
    public typealias Element = ValueUpdate
    public typealias Failure = ExpirableClientError

    private let subscription: Subscription

    init(_ subscription: Subscription) {
        self.subscription = subscription
    }

    /// The names watched, each once, in the order given.
    public var names: [String] { subscription.names }

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(subscription: subscription)
    }

    /// Takes the updates; see ``ValueUpdates``.
    public struct AsyncIterator: AsyncIteratorProtocol {
        let subscription: Subscription

        public mutating func next() async throws(ExpirableClientError) -> ValueUpdate? {
            try await subscription.next(isolation: nil)
        }

        public mutating func next(isolation actor: isolated (any Actor)?) async throws(ExpirableClientError) -> ValueUpdate? {
            try await subscription.next(isolation: actor)
        }
    }
}
