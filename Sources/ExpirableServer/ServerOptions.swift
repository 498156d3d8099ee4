/// How the socket server runs. The daemon fills it from `[server]`.
public struct ServerOptions: Sendable {
    /// The Unix socket path.
    public var socketPath: String
    /// The socket file's permission bits.
    public var socketMode: UInt32
    /// Connections beyond this many are answered `-ERR max number of clients reached` and closed.
    public var maxConnections: Int
    /// A request larger than this gets an error and its connection is closed.
    public var maxRequestBytes: Int
    /// How long a stopping daemon waits for replies still owed (to callers waiting on a plugin) before closing.
    public var drainTimeout: Duration
    /// This node's name for INFO's `owner` field.
    public var nodeName: String
    /// Extra INFO lines for an expirable (`owner`, replica state) from whoever knows them, such as the cluster.
    public var expirableInfo: (@Sendable (String) -> [(String, String)])?
    /// The reply to CLUSTER: one `key:value ...` line per member. Nil without a cluster.
    public var clusterInfo: (@Sendable () -> String)?

    public init(socketPath: String, socketMode: UInt32 = 0o660, maxConnections: Int = 4096, maxRequestBytes: Int = 64 * 1024,
                drainTimeout: Duration = .seconds(5), nodeName: String = "local") {
        self.socketPath = socketPath
        self.socketMode = socketMode
        self.maxConnections = maxConnections
        self.maxRequestBytes = maxRequestBytes
        self.drainTimeout = drainTimeout
        self.nodeName = nodeName
    }
}

/// Why the server could not start.
public struct ServerError: Error, Sendable, CustomStringConvertible {
    public let message: String
    init(_ message: String) { self.message = message }
    public var description: String { message }
}
