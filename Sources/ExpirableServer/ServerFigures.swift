/// The server's figures for the metrics: connections, requests by command, output back-pressure.
public struct ServerFigures: Sendable {
    /// Connections open now.
    public let connections: Int
    public let connectionsAccepted: Int
    /// Refused at once: over `max_connections`, or no descriptor to spare.
    public let connectionsRefused: Int
    public let maxConnections: Int
    /// Requests answered so far, by command (lower case, `unknown` for requests that were not a command).
    public let requests: [(command: String, count: UInt64)]
    /// Times a connection's unsent replies passed `max_output_bytes`, so it was neither answered nor read until
    /// the client caught up.
    public let outputThrottles: UInt64
    /// Connections throttled so right now.
    public let throttledConnections: Int
    /// Subscribers disconnected for not reading their messages.
    public let slowSubscribersClosed: UInt64
}

extension ExpirableServer {
    /// The figures so far.
    public func figures() -> ServerFigures {
        ServerFigures(
            connections: state.connections.load(ordering: .relaxed),
            connectionsAccepted: state.connectionsAccepted.load(ordering: .relaxed),
            connectionsRefused: state.connectionsRefused.load(ordering: .relaxed),
            maxConnections: state.options.maxConnections,
            requests: state.requestCounts.totals().map { (command: $0.0, count: $0.1) },
            outputThrottles: state.outputThrottles.load(ordering: .relaxed),
            throttledConnections: state.throttledConnections.load(ordering: .relaxed),
            slowSubscribersClosed: state.slowSubscribersClosed.load(ordering: .relaxed)
        )
    }
}
