import ExpirableCore

/// A validated `expirabled` configuration file (SPEC §2). Paths are absolute: relative ones in the file are
/// resolved against the file's directory.
public struct Configuration: Sendable, Hashable {
    /// The file it was read from, as given.
    public let file: String
    public let server: Server
    /// Nil when the node runs alone; cluster scope then means this node.
    public let cluster: Cluster?
    /// The configured expirables, sorted by name.
    public let expirables: [Expirable]
    /// The line of every key and table written in the file, for refusals found after decoding (a plugin that is
    /// not there, a TLS file that cannot be read). Not part of equality: moving a key does not change the meaning.
    var keyLines = KeyLines()

    /// Lines by key path. Always equal, so two configurations compare by what they say.
    struct KeyLines: Sendable, Hashable {
        var lines: [[String]: Int] = [:]
        static func == (_: KeyLines, _: KeyLines) -> Bool { true }
        func hash(into _: inout Hasher) {}
    }

    /// The line of `path` (`["cluster", "cert"]`), or of its nearest enclosing key or table written in the file.
    public func line(of path: [String]) -> Int? {
        var path = path
        while !path.isEmpty {
            if let line = keyLines.lines[path] { return line }
            path.removeLast()
        }
        return nil
    }

    /// A refusal found after the file was decoded, about what the key at `path` names (the plugin file, a TLS
    /// file, the socket's directory): it names the file and that key's line; `message` names the key itself.
    public func refusal(_ path: [String], _ message: String) -> ConfigurationError {
        ConfigurationError(file: file, line: line(of: path), key: nil, message: message)
    }

    /// Each expirable's `allow` list by name (SPEC §9); a name without one may be read by anyone who can open the
    /// socket. Kept apart from `Expirable`, whose equality decides what a reload keeps: changing who may read a
    /// value keeps the value and its plugin.
    public internal(set) var readers: [String: [AccessRule]] = [:]

    /// The refusal of the first `allow` (by expirable name) or `admins` list with an `exe:… sha256:…` rule, whose
    /// digest needs OpenSSL, when `openSSLProblem` (which loads it) says why it cannot be had; nil when there is no
    /// such rule or OpenSSL loads. For the daemon's start and reload and for `expirablectl check-config`.
    public func digestRuleRefusal(openSSLProblem: () -> String?) -> ConfigurationError? {
        let lists = readers.sorted { $0.key < $1.key }.map { (["expirable", $0.key, "allow"], $0.value) }
            + [(["server", "admins"], server.admins ?? [])]
        guard let path = lists.first(where: { $0.1.contains { if case .exe(_, .some) = $0.principal { true } else { false } } })?.0,
              let problem = openSSLProblem() else { return nil }
        return refusal(path, "an exe rule with sha256 needs OpenSSL: \(problem)")
    }

    /// `[[sink]]`: files the daemon keeps holding a value, in file order; none by default.
    public internal(set) var sinks: [Sink] = []

    /// `[metrics]`: the Prometheus endpoint; nil (no endpoint) by default.
    public internal(set) var metrics: Metrics? = nil

    /// `[metrics]` (SPEC §10).
    public struct Metrics: Sendable, Hashable {
        /// Where `GET /metrics` is served over HTTP. Any address is accepted; one that is not loopback draws a
        /// warning at start, for the endpoint has no authentication (it never shows a value or a key).
        public let listen: Endpoint
        /// `metrics_keys`: whether each member a keyed family holds gets series of its own, labelled with its key
        /// (SPEC §10: never a key unless this is true). Off by default.
        public let keys: Bool

        public init(listen: Endpoint, keys: Bool = false) {
            self.listen = listen
            self.keys = keys
        }

        /// Whether `listen` is reachable only from this machine.
        public var isLoopback: Bool {
            listen.host == "localhost" || listen.host == "::1" || listen.host.hasPrefix("127.")
        }
    }

    /// `[server]`.
    public struct Server: Sendable, Hashable {
        public static let defaultSocket = "/run/expirable/expirable.sock"
        public static let defaultSocketMode: UInt32 = 0o660
        public static let defaultPluginDir = "/usr/local/lib/expirable"
        public static let defaultMaxRequestBytes = 64 * 1024
        public static let defaultMaxOutputBytes = 1024 * 1024
        public static let defaultIdleTimeout: Duration = .seconds(300)
        public static let defaultRequestTimeout: Duration = .seconds(10)
        public static let defaultIsolation: Isolation = .process

        /// The Unix socket path.
        public let socket: String
        /// The socket file's permission bits.
        public let socketMode: UInt32
        /// The only directory plugins are loaded from.
        public let pluginDir: String
        /// Connections beyond this many are refused with an error. Nil: as many as the daemon's limit on open
        /// files allows, less a reserve for plugins and peers.
        public let maxConnections: Int?
        /// Requests larger than this are refused and their connection closed.
        public let maxRequestBytes: Int
        /// Once a connection's unsent replies pass this many bytes, its requests wait until the client reads.
        public let maxOutputBytes: Int
        /// A connection that sends nothing for this long is closed (subscribers and callers waiting on a
        /// plugin excepted). Zero: never.
        public let idleTimeout: Duration
        /// A connection that leaves a request half sent for this long gets an error and is closed.
        public let requestTimeout: Duration
        /// Where plugins run unless an expirable says otherwise.
        public let isolation: Isolation
        /// Who plugin helpers run as when the daemon runs as root; nil: the daemon's own user and group.
        public let pluginAccount: PluginAccount?
        /// Where plugin states are kept, encrypted (SPEC §3.20); nil: in memory only.
        public let stateDir: String?
        /// The 32-byte key for `stateDir`; nil: the systemd credential `expirable-state-key`.
        public let stateKeyFile: String?
        /// `admins`: who may CLEAR, CLEARALL and RELOAD besides root. Nil: the daemon's user and the members of
        /// its group, as before there was a setting.
        public internal(set) var admins: [AccessRule]? = nil
    }

    /// `plugin_user` / `plugin_group`, resolved to ids when the configuration is read.
    public struct PluginAccount: Sendable, Hashable {
        /// The user helpers switch to; nil when only `plugin_group` is set.
        public let user: String?
        public let uid: UInt32?
        /// The group helpers switch to: `plugin_group`, else `plugin_user`'s primary group.
        public let group: String
        public let gid: UInt32

        public init(user: String?, uid: UInt32?, group: String, gid: UInt32) {
            self.user = user
            self.uid = uid
            self.group = group
            self.gid = gid
        }
    }

    /// `single_flight` (SPEC §4.10).
    public enum SingleFlight: String, Sendable, Hashable, CaseIterable {
        /// The expirable's owner calls; every side of a partition keeps fetching (at most one call per side).
        case available
        /// A call needs a lease from a majority of the configured nodes: never two calls at once in the cluster;
        /// a minority side serves what it holds and fails misses.
        case quorum
    }

    /// Where an expirable's plugin runs (SPEC §5, Isolation).
    public enum Isolation: String, Sendable, Hashable, CaseIterable {
        /// In a helper process of its own: a plugin that crashes, exits or hangs costs its callers an error,
        /// never the daemon.
        case process
        /// On a thread in the daemon, for trusted plugins: no process to start, but a crash takes the daemon.
        case inline
    }

    /// `[cluster]`.
    public struct Cluster: Sendable, Hashable {
        /// This node's name; its certificate must carry it.
        public let node: String
        /// Where this node accepts peers.
        public let listen: Endpoint
        /// The other nodes, sorted by name.
        public let peers: [Peer]
        /// PEM files: the cluster CA, this node's certificate and its private key.
        public let ca: String
        public let cert: String
        public let key: String
        /// How often nodes send heartbeats; a peer silent for three of them is dead.
        public let heartbeat: Duration
        public static let defaultHeartbeat: Duration = .milliseconds(500)
        /// A node whose clock is further than this from cluster time is reported as an error.
        public var maxClockOffset: Duration = Cluster.defaultMaxClockOffset
        public static let defaultMaxClockOffset: Duration = .milliseconds(500)
        /// How long a starting node waits for its peers before a cluster-scoped plugin call (SPEC §4.11); nil: the
        /// dead time plus a heartbeat (four heartbeats).
        public var joinTimeout: Duration? = nil
    }

    /// A peer node: its name and address.
    public struct Peer: Sendable, Hashable {
        public let name: String
        public let endpoint: Endpoint
    }

    /// A `host:port` pair.
    public struct Endpoint: Sendable, Hashable, CustomStringConvertible {
        public let host: String
        public let port: Int
        public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

        public init(host: String, port: Int) {
            self.host = host
            self.port = port
        }
    }

    /// `[expirable.NAME]`.
    public struct Expirable: Sendable, Hashable {
        public static let defaultTimeout: Duration = .seconds(30)
        /// The smallest `max_memory`: a helper maps 10.5 MiB of data before it loads the plugin (the Swift
        /// runtime, the C library, two threads' stacks; VmData in /proc/PID/status), and the rest is the plugin's.
        public static let minimumMaxMemory = 32 * 1024 * 1024

        public let name: String
        /// The plugin's name as written; `PluginHost` resolves it inside `plugin_dir`.
        public let plugin: String
        public let scope: Scope
        public let refresh: RefreshPolicy
        /// Expiry margin, jitter, prefetch, stale-if-error and pacing (SPEC §3 items 13–17).
        public let freshness: FreshnessPolicy
        /// The limit on one plugin call.
        public let timeout: Duration
        /// Where its plugin runs: its own `isolation`, else `[server]`'s.
        public let isolation: Isolation
        /// How the cluster keeps to one plugin call at a time (SPEC §4.10).
        public let singleFlight: SingleFlight
        /// Set for a keyed family (`keyed = true`, SPEC §3.19).
        public let keyed: KeyedPolicy?
        /// The most memory its helper may map for data (RLIMIT_DATA), in bytes; nil: no limit.
        public let maxMemory: Int?
        /// The most CPU time one call may use in its helper (RLIMIT_CPU, whole seconds); nil: no limit.
        public let maxCPU: Duration?
        /// `params`, as string pairs in file order by key; an array contributes one pair per element.
        public let params: [Param]
        /// Whether its plugin is known from the configuration to keep a state between calls (the oauth2 plugin
        /// with grant = "refresh_token"): under quorum, a lease holder that went away during a call then makes the
        /// others wait for the state that call may have set, even before any state is known (docs/cluster.md).
        public var keepsState = false
    }

    /// One plugin parameter.
    public struct Param: Sendable, Hashable {
        public let key: String
        public let value: String
        public init(key: String, value: String) {
            self.key = key
            self.value = value
        }
    }
}
