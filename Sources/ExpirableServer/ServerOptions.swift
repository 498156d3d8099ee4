import ExpirableCore

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
    /// Once a connection's unsent replies pass this many bytes, its later requests wait (and it is not read)
    /// until the client has read half of them; a subscriber that falls this far behind is disconnected.
    public var maxOutputBytes: Int
    /// A connection that sends nothing for this long is closed, unless it is subscribed or waits on a plugin.
    /// Zero: never.
    public var idleTimeout: Duration
    /// A connection that leaves a request half sent this long gets an error and is closed.
    public var requestTimeout: Duration
    /// How long a stopping daemon waits for replies still owed (to callers waiting on a plugin) before closing.
    public var drainTimeout: Duration
    /// This node's name for INFO's `owner` field.
    public var nodeName: String
    /// Extra INFO lines for an expirable (`owner`, replica state) from whoever knows them, such as the cluster.
    public var expirableInfo: (@Sendable (String) -> [(String, String)])?
    /// Extra INFO lines for an expirable from its plugin host (where the plugin runs, its helper's pid and restarts).
    public var pluginInfo: (@Sendable (String) -> [(String, String)])?
    /// Extra INFO and EXPLAIN lines about an expirable's persisted plugin state (`state_error`), when `state_dir`
    /// is set.
    public var stateInfo: (@Sendable (String) -> [(String, String)])?
    /// The reply to CLUSTER: one `key:value ...` line per member, naming only expirables the given predicate says
    /// the caller may see. Nil without a cluster.
    public var clusterInfo: (@Sendable (_ visible: (String) -> Bool) -> String)?
    /// Extra lines for the server's INFO (the cluster's clock offsets), from whoever knows them.
    public var serverInfo: (@Sendable () -> [(String, String)])?
    /// Called once the socket listens with its mode set, so the daemon can prefetch and report readiness.
    public var onListening: (@Sendable () -> Void)?
    /// Who may CLEAR, CLEARALL and RELOAD besides root (`[server] admins`, SPEC §9); nil: the daemon's user and
    /// the members of its group.
    public var admins: [AccessRule]?
    /// Re-reads the configuration (RELOAD, SIGHUP): what was applied, or why nothing was.
    public var reload: (@Sendable () -> Result<String, ServerError>)?

    public init(socketPath: String, socketMode: UInt32 = 0o660, maxConnections: Int = 4096, maxRequestBytes: Int = 64 * 1024,
                maxOutputBytes: Int = 1024 * 1024, idleTimeout: Duration = .seconds(300), requestTimeout: Duration = .seconds(10),
                drainTimeout: Duration = .seconds(5), nodeName: String = "local") {
        self.socketPath = socketPath
        self.socketMode = socketMode
        self.maxConnections = maxConnections
        self.maxRequestBytes = maxRequestBytes
        self.maxOutputBytes = maxOutputBytes
        self.idleTimeout = idleTimeout
        self.requestTimeout = requestTimeout
        self.drainTimeout = drainTimeout
        self.nodeName = nodeName
    }
}

/// Why the server could not start.
public struct ServerError: Error, Sendable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
