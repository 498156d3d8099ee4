/// Gets a fresh value for one expirable. The engine makes at most one call per expirable at a time and
/// calls it from any thread; `completion` must be called exactly once, from any thread.
public protocol Fetcher: Sendable {
    func fetch(completion: @escaping @Sendable (Result<Fetched, ExpirableError>) -> Void)
}

/// A fetcher made from an async closure, for tests and for programs embedding the engine.
public struct ClosureFetcher: Fetcher {
    private let body: @Sendable () async -> Result<Fetched, ExpirableError>

    public init(_ body: @escaping @Sendable () async -> Result<Fetched, ExpirableError>) {
        self.body = body
    }

    public func fetch(completion: @escaping @Sendable (Result<Fetched, ExpirableError>) -> Void) {
        Task { completion(await body()) }
    }
}
