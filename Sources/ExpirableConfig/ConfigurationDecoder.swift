import ExpirableCore
import ExpirableTOML
#if canImport(Glibc)
import Glibc
#endif

/// Turns a parsed TOML document into a `Configuration`, one table at a time, refusing unknown keys and
/// values of the wrong type or form with an error that names the key and its line.
struct ConfigurationDecoder {
    let file: String
    let root: TOMLTable
    let baseDirectory: String

    init(file: String, root: TOMLTable) {
        self.file = file
        self.root = root
        let absolute = file.hasPrefix("/") ? file : ConfigurationDecoder.currentDirectory() + "/" + file
        baseDirectory = ConfigurationDecoder.normalized(absolute + "/..")
    }

    mutating func decode(_ root: TOMLTable) throws(ConfigurationError) -> Configuration {
        try allowOnly(["server", "cluster", "metrics", "expirable", "sink"], in: root, at: [])
        let server = try decodeServer(root["server"].map { v throws(ConfigurationError) in try table(v, at: ["server"]) })
        let cluster = try root["cluster"].map { v throws(ConfigurationError) in try decodeCluster(table(v, at: ["cluster"])) }
        var expirables: [Configuration.Expirable] = []
        var readers: [String: [AccessRule]] = [:]
        if let value = root["expirable"] {
            let all = try table(value, at: ["expirable"])
            for name in all.keys.sorted() {
                guard let value = all[name] else { continue }
                let t = try table(value, at: ["expirable", name])
                expirables.append(try decodeExpirable(name, t, isolation: server.isolation, pluginDir: server.pluginDir))
                if let allow = t["allow"] { readers[name] = try accessRules(allow, at: ["expirable", name, "allow"], allowEmpty: false) }
            }
        }
        var configuration = Configuration(file: file, server: server, cluster: cluster, expirables: expirables)
        configuration.readers = readers
        configuration.metrics = try root["metrics"].map { v throws(ConfigurationError) in try decodeMetrics(table(v, at: ["metrics"])) }
        configuration.sinks = try root["sink"].map { v throws(ConfigurationError) in try decodeSinks(v, expirables: expirables) } ?? []
        ConfigurationDecoder.collectLines(root, at: [], into: &configuration.keyLines.lines)
        return configuration
    }

    private static func collectLines(_ table: TOMLTable, at: [String], into lines: inout [[String]: Int]) {
        for key in table.keys {
            if let line = table.line(of: key) { lines[at + [key]] = line }
            if let inner = table[key]?.table { collectLines(inner, at: at + [key], into: &lines) }
        }
    }

    private func decodeMetrics(_ t: TOMLTable) throws(ConfigurationError) -> Configuration.Metrics {
        let at = ["metrics"]
        try allowOnly(["listen", "metrics_keys"], in: t, at: at)
        let listen = try required(t, "listen", at: at, expecting: "\"host:port\" to serve metrics on, as listen = \"127.0.0.1:9477\"; or remove [metrics]") { v throws(ConfigurationError) in
            try listenAddress(v, at: at + ["listen"])
        }
        var keys = false
        if let v = t["metrics_keys"] {
            guard let flag = v.boolean else { throw error(at + ["metrics_keys"], "expected true or false, got \(show(v))") }
            keys = flag
        }
        return .init(listen: listen, keys: keys)
    }

    // MARK: Tables

    private func decodeServer(_ t: TOMLTable?) throws(ConfigurationError) -> Configuration.Server {
        typealias Server = Configuration.Server
        let t = t ?? TOMLTable()
        let at = ["server"]
        try allowOnly(["socket", "socket_mode", "plugin_dir", "max_connections", "max_request_bytes", "max_output_bytes",
                       "idle_timeout", "request_timeout", "isolation", "plugin_user", "plugin_group", "state_dir", "state_key_file", "admins"], in: t, at: at)
        let socket = try path(t, "socket", at: at) ?? Server.defaultSocket
        let pluginDir = try path(t, "plugin_dir", at: at) ?? Server.defaultPluginDir
        var mode = Server.defaultSocketMode
        if let value = t["socket_mode"] {
            // Three or four octal digits as a string ("0660"), or a TOML octal integer (0o660); no sign, no spaces.
            let text = value.string ?? value.integer.flatMap { $0 >= 0 ? String($0, radix: 8) : nil }
            guard let text, value.integer != nil || (3...4).contains(text.utf8.count),
                  text.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "7") }),
                  let parsed = UInt32(text, radix: 8), parsed <= 0o777 else {
                // An integer is shown as written, in octal: 0o7777 is "got 0o7777", not its decimal 4095.
                let shown = value.integer.map { $0 >= 0 ? "0o" + String($0, radix: 8) : String($0) } ?? show(value)
                throw error(at + ["socket_mode"], "expected an octal file mode string such as \"0660\", got \(shown)")
            }
            mode = parsed
        }
        let maxConnections = try integer(t, "max_connections", at: at, in: 1...1_000_000)
        let maxRequestBytes = try integer(t, "max_request_bytes", at: at, in: 1024...(16 * 1024 * 1024)) ?? Server.defaultMaxRequestBytes
        let maxOutputBytes = try integer(t, "max_output_bytes", at: at, in: (64 * 1024)...(1024 * 1024 * 1024)) ?? Server.defaultMaxOutputBytes
        let idleTimeout = try t["idle_timeout"].map { v throws(ConfigurationError) in try duration(v, at: at + ["idle_timeout"]) } ?? Server.defaultIdleTimeout
        let requestTimeout = try t["request_timeout"].map { v throws(ConfigurationError) in try duration(v, at: at + ["request_timeout"]) } ?? Server.defaultRequestTimeout
        guard requestTimeout > .zero else {
            throw error(at + ["request_timeout"], "expected a duration above zero such as \"10s\", got \(show(t["request_timeout"]!))")
        }
        let isolation = try t["isolation"].map { v throws(ConfigurationError) in try oneOf(Configuration.Isolation.self, v, at: at + ["isolation"]) } ?? Server.defaultIsolation
        let account = try pluginAccount(t, at: at)
        let stateDir = try path(t, "state_dir", at: at)
        let stateKeyFile = try path(t, "state_key_file", at: at)
        if stateKeyFile != nil && stateDir == nil {
            throw error(at + ["state_key_file"], "only applies with state_dir; set state_dir (where plugin states are kept) or remove state_key_file")
        }
        var server = Server(socket: socket, socketMode: mode, pluginDir: pluginDir, maxConnections: maxConnections, maxRequestBytes: maxRequestBytes,
                            maxOutputBytes: maxOutputBytes, idleTimeout: idleTimeout, requestTimeout: requestTimeout, isolation: isolation,
                            pluginAccount: account, stateDir: stateDir, stateKeyFile: stateKeyFile)
        server.admins = try t["admins"].map { v throws(ConfigurationError) in try accessRules(v, at: at + ["admins"], allowEmpty: true) }
        return server
    }

    /// `plugin_user` and `plugin_group`: names or numeric ids, looked up on this machine now, so a typo is
    /// refused at start rather than when the first helper starts.
    private func pluginAccount(_ t: TOMLTable, at: [String]) throws(ConfigurationError) -> Configuration.PluginAccount? {
        func text(_ key: String) throws(ConfigurationError) -> String? {
            guard let v = t[key] else { return nil }
            if let n = v.integer, n >= 0, n < Int64(UInt32.max) { return String(n) }
            let s = try string(v, at: at + [key])
            guard !s.isEmpty, s.utf8.count <= 64, s.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value < 0x7f && $0 != ":" }) else {
                throw error(at + [key], "expected a user or group name or a numeric id, got \(show(v))")
            }
            return s
        }
        let userText = try text("plugin_user")
        let groupText = try text("plugin_group")
        guard userText != nil || groupText != nil else { return nil }
        var user: (name: String, uid: UInt32, gid: UInt32)?
        if let userText {
            let entry = UInt32(userText).map { getpwuid($0) } ?? getpwnam(userText)
            guard let entry else {
                // useradd refuses a numeric name, so a missing uid gets no advice to create it.
                if UInt32(userText) != nil {
                    throw error(at + ["plugin_user"], "no user has uid \(userText) on this machine; name an existing user or uid (getent passwd lists them)")
                }
                throw error(at + ["plugin_user"], "no user \(userText.debugDescription) on this machine; create it (useradd --system --no-create-home \(userText)) or name an existing user")
            }
            user = (String(cString: entry.pointee.pw_name), entry.pointee.pw_uid, entry.pointee.pw_gid)
        }
        var group: (name: String, gid: UInt32)?
        if let groupText {
            let entry = UInt32(groupText).map { getgrgid($0) } ?? getgrnam(groupText)
            guard let entry else {
                if UInt32(groupText) != nil {
                    throw error(at + ["plugin_group"], "no group has gid \(groupText) on this machine; name an existing group or gid (getent group lists them)")
                }
                throw error(at + ["plugin_group"], "no group \(groupText.debugDescription) on this machine; create it (groupadd --system \(groupText)) or name an existing group")
            }
            group = (String(cString: entry.pointee.gr_name), entry.pointee.gr_gid)
        } else if let user {
            let entry = getgrgid(user.gid)
            group = (entry.map { String(cString: $0.pointee.gr_name) } ?? String(user.gid), user.gid)
        }
        guard let group else { return nil }
        return .init(user: user?.name, uid: user?.uid, group: group.name, gid: group.gid)
    }

    private func decodeCluster(_ t: TOMLTable) throws(ConfigurationError) -> Configuration.Cluster {
        let at = ["cluster"]
        try allowOnly(["node", "listen", "peers", "ca", "cert", "key", "heartbeat", "max_clock_offset", "join_timeout"], in: t, at: at)
        let node = try required(t, "node", at: at, expecting: "this node's name, as node = \"node-a\" (the name its peers give it)") { v throws(ConfigurationError) in
            try nodeName(v, at: at + ["node"])
        }
        let listen = try required(t, "listen", at: at, expecting: "\"host:port\" where this node listens for its peers, as listen = \"0.0.0.0:7400\"") { v throws(ConfigurationError) in
            try listenAddress(v, at: at + ["listen"])
        }
        let peerTable = try required(t, "peers", at: at, expecting: "the other nodes' names and addresses, as peers = { node-b = \"10.0.0.2:7400\" }") { v throws(ConfigurationError) in
            try table(v, at: at + ["peers"])
        }
        guard !peerTable.isEmpty else {
            throw error(at + ["peers"], "expected at least one peer, as peers = { node-b = \"10.0.0.2:7400\" }; remove [cluster] to run alone")
        }
        var peers: [Configuration.Peer] = []
        for name in peerTable.keys.sorted() {
            let peerAt = at + ["peers", name]
            _ = try nodeName(name, at: peerAt)
            guard name != node else { throw error(peerAt, "is this node itself (cluster.node = \"\(node)\"); list only the other nodes") }
            guard let value = peerTable[name] else { continue }
            peers.append(.init(name: name, endpoint: try endpoint(value, at: peerAt)))
        }
        try refuseSharedAddresses(listen: listen, peers: peers, at: at)
        func file(_ key: String) throws(ConfigurationError) -> String {
            guard let p = try path(t, key, at: at) else { throw missing(at + [key], "a path to a PEM file") }
            return p
        }
        let heartbeat = try t["heartbeat"].map { v throws(ConfigurationError) in try duration(v, at: at + ["heartbeat"]) } ?? Configuration.Cluster.defaultHeartbeat
        guard heartbeat >= .milliseconds(50), heartbeat <= .seconds(60) else {
            throw error(at + ["heartbeat"], "expected a duration from 50ms to 60s")
        }
        let maxClockOffset = try t["max_clock_offset"].map { v throws(ConfigurationError) in try duration(v, at: at + ["max_clock_offset"]) }
            ?? Configuration.Cluster.defaultMaxClockOffset
        guard maxClockOffset >= .milliseconds(1) else {
            throw error(at + ["max_clock_offset"], "expected a duration of at least 1ms, as \"500ms\"")
        }
        var cluster = Configuration.Cluster(node: node, listen: listen, peers: peers, ca: try file("ca"), cert: try file("cert"), key: try file("key"),
                                            heartbeat: heartbeat, maxClockOffset: maxClockOffset)
        if let v = t["join_timeout"] {
            let join = try duration(v, at: at + ["join_timeout"])
            guard join >= heartbeat, join <= .seconds(600) else {
                throw error(at + ["join_timeout"], "expected a duration from one heartbeat (\(heartbeat.milliseconds)ms) to 10m")
            }
            cluster.joinTimeout = join
        }
        return cluster
    }

    /// Refuses a peer at this node's own listen address and two peers at one address: that peer would stay dead
    /// for good (the node dials itself, or one listener answers for two names). Only certain duplicates are
    /// refused: the same port and the same host, an IP address compared as the address it spells ("[::1]" is
    /// "[0:0:0:0:0:0:0:1]") and a name without regard to case. A peer that may or may not be this node (one of
    /// this machine's addresses when listen is 0.0.0.0, a name that resolves to it) is not refused.
    private func refuseSharedAddresses(listen: Configuration.Endpoint, peers: [Configuration.Peer], at: [String]) throws(ConfigurationError) {
        let own = ConfigurationDecoder.sameness(listen)
        var owners: [String: String] = [:]
        for peer in peers {
            let address = ConfigurationDecoder.sameness(peer.endpoint)
            if address == own {
                throw error(at + ["peers", peer.name], "\(peer.endpoint) is this node's own listen address (cluster.listen); give \(peer.name) the address in \(peer.name)'s cluster.listen")
            }
            if let owner = owners[address] {
                throw error(at + ["peers", peer.name], "\(peer.endpoint) is also \(owner)'s address; give each peer the address in its own cluster.listen")
            }
            owners[address] = peer.name
        }
    }

    /// What two endpoints that are certainly the same address share: the port, and the host as inet_ntop writes
    /// an IP address or in lower case as a name.
    private static func sameness(_ endpoint: Configuration.Endpoint) -> String {
        var host = endpoint.host.lowercased()
        for family in [AF_INET, AF_INET6] {
            var address = in6_addr()  // large enough for either family
            var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
            if inet_pton(family, endpoint.host, &address) == 1, inet_ntop(family, &address, &text, socklen_t(text.count)) != nil {
                host = text.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
                break
            }
        }
        return "\(host) \(endpoint.port)"
    }

    private func decodeExpirable(_ name: String, _ t: TOMLTable, isolation serverIsolation: Configuration.Isolation,
                                 pluginDir: String) throws(ConfigurationError) -> Configuration.Expirable {
        let at = ["expirable", name]
        let expectedName = "expected a name of 1 to 200 characters without spaces, invisible or control characters"
        guard !name.isEmpty, name.utf8.count <= 200 else { throw error(at, expectedName) }
        if let (offset, scalar) = name.unicodeScalars.enumerated().first(where: { ConfigurationDecoder.isUnseen($0.element) }) {
            let hex = String(scalar.value, radix: 16, uppercase: true)
            let code = "U+" + String(repeating: "0", count: max(0, 4 - hex.count)) + hex
            throw error(at, "\(expectedName); it holds \(code) at character \(offset + 1); rename it")
        }
        // The first ':' of NAME:KEY splits a keyed family's name from the key, and LIST shows a family as
        // NAME:*: a plain name holding either would make one address mean two things.
        if name.contains(where: { $0 == ":" || $0 == "*" }) {
            let renamed = String(name.map { $0 == ":" || $0 == "*" ? "_" : $0 })
            throw error(at, "a name may not hold ':' or '*': NAME:KEY reads a keyed family's member and NAME:* names the family; rename it, \"\(renamed)\" say")
        }
        try allowOnly(["plugin", "scope", "refresh", "before_expiry", "timeout", "params", "isolation", "max_memory", "max_cpu", "single_flight", "keyed", "max_keys", "key_idle", "allow",
                       "expiry_margin", "jitter", "prefetch", "stale_if_error", "retry_interval", "retry_backoff"], in: t, at: at)
        let plugin = try required(t, "plugin", at: at, expecting: "the name of a plugin in plugin_dir, as plugin = \"command\"") { v throws(ConfigurationError) in
            try string(v, at: at + ["plugin"])
        }
        // The name becomes part of a file path (plugin_dir/libNAME.so); a NUL would end that path early in C.
        guard !plugin.isEmpty, !plugin.contains("/"), !plugin.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else {
            throw error(at + ["plugin"], "expected a plugin name inside plugin_dir such as \"command\", without \"/\" or control characters, got \(plugin.debugDescription)")
        }
        let scope = try t["scope"].map { v throws(ConfigurationError) in try oneOf(Scope.self, v, at: at + ["scope"]) } ?? .cluster
        let refreshWord = try t["refresh"].map { v throws(ConfigurationError) in try string(v, at: at + ["refresh"]) } ?? "lazy"
        let before = try t["before_expiry"].map { v throws(ConfigurationError) in try lead(v, at: at + ["before_expiry"]) }
        let jitter = try t["jitter"].map { v throws(ConfigurationError) in try lead(v, at: at + ["jitter"]) } ?? .zero
        let refresh: RefreshPolicy
        switch refreshWord {
        case "lazy":
            if before != nil {
                throw error(at + ["before_expiry"], "only applies with refresh = \"eager\"; remove it or set refresh = \"eager\"")
            }
            if t["jitter"] != nil {
                throw error(at + ["jitter"], "only applies with refresh = \"eager\" (it spreads eager refreshes); remove it or set refresh = \"eager\"")
            }
            refresh = .lazy
        case "eager":
            guard let before else { throw missing(at + ["before_expiry"], "\(ConfigurationDecoder.expectedLead), required with refresh = \"eager\"") }
            // A refresh due at the expiry itself would find the value expired, which is never refreshed in the
            // background: "0s" would make eager silently lazy. ("0%" is refused as a share.)
            if before.isZero, let written = t["before_expiry"] {
                throw error(at + ["before_expiry"], "expected a lead above 0, such as \"30s\" or \"20%\", got \(show(written)): a refresh due the moment the value expires never runs (an expired value is fetched by its next reader, as with refresh = \"lazy\"); give a lead, or set refresh = \"lazy\"")
            }
            if case .share(let b) = before, case .share(let j) = jitter, b + j >= 10_000 {
                throw error(at + ["jitter"], "before_expiry (\(before)) and jitter (\(jitter)) add up to 100% of the lifetime or more, so a refresh could be due the moment a value arrives; lower one of them")
            }
            refresh = .eager(beforeExpiry: before)
        default:
            throw error(at + ["refresh"], "expected \"lazy\" or \"eager\", got \(ConfigurationError.quoted(refreshWord))")
        }
        func optionalDuration(_ key: String) throws(ConfigurationError) -> Duration? {
            try t[key].map { v throws(ConfigurationError) in try duration(v, at: at + [key]) }
        }
        // A keyed family holds no value of its own: each member is fetched when NAME:KEY is first asked for, so
        // there is nothing to prefetch, and prefetch = true would be a setting that silently does nothing.
        let keyed = t["keyed"]?.boolean == true
        let prefetch: Bool
        if let value = t["prefetch"] {
            guard case .boolean(let flag) = value else { throw error(at + ["prefetch"], "expected true or false, got \(show(value))") }
            if flag && keyed {
                throw error(at + ["prefetch"], "a keyed family has nothing to prefetch: its values are fetched per key, when NAME:KEY is first asked for; remove prefetch")
            }
            prefetch = flag
        } else {
            prefetch = refreshWord == "eager" && !keyed
        }
        let retryInterval = try optionalDuration("retry_interval") ?? FreshnessPolicy.defaultRetryInterval
        guard retryInterval > .zero else {
            throw error(at + ["retry_interval"], "expected a duration above zero such as \"1s\": it is the least time between two calls after a failure")
        }
        let retryBackoff = try optionalDuration("retry_backoff")
        if let retryBackoff, retryBackoff < retryInterval {
            throw error(at + ["retry_backoff"], "is the bound the retry interval doubles up to, so it must be at least retry_interval (\(retryInterval.milliseconds) ms); got \(retryBackoff.milliseconds) ms")
        }
        let freshness = FreshnessPolicy(
            expiryMargin: try optionalDuration("expiry_margin") ?? .zero, jitter: jitter, prefetch: prefetch,
            staleIfError: try optionalDuration("stale_if_error") ?? .zero, retryInterval: retryInterval, retryBackoff: retryBackoff
        )
        let timeout = try t["timeout"].map { v throws(ConfigurationError) in try duration(v, at: at + ["timeout"]) } ?? Configuration.Expirable.defaultTimeout
        guard timeout > .zero else { throw error(at + ["timeout"], "expected a duration above zero") }
        let params = try t["params"].map { v throws(ConfigurationError) in try decodeParams(table(v, at: at + ["params"]), at: at + ["params"]) } ?? []
        let isolation = try t["isolation"].map { v throws(ConfigurationError) in try oneOf(Configuration.Isolation.self, v, at: at + ["isolation"]) } ?? serverIsolation
        let maxMemory = try t["max_memory"].map { v throws(ConfigurationError) in try size(v, at: at + ["max_memory"]) }
        if let maxMemory, maxMemory < Configuration.Expirable.minimumMaxMemory {
            throw error(at + ["max_memory"], "expected at least \(Configuration.Expirable.minimumMaxMemory / (1024 * 1024))MiB, what a plugin helper needs before it loads the plugin; got \(show(t["max_memory"]!))")
        }
        let maxCPU = try t["max_cpu"].map { v throws(ConfigurationError) in try duration(v, at: at + ["max_cpu"]) }
        if let maxCPU, maxCPU < .seconds(1) {
            throw error(at + ["max_cpu"], "expected at least \"1s\": the kernel counts CPU limits in whole seconds; got \(show(t["max_cpu"]!))")
        }
        if isolation == .inline, let key = ["max_memory", "max_cpu"].first(where: { t[$0] != nil }) {
            throw error(at + [key], "limits a plugin helper, and this expirable's plugin runs inline in the daemon; remove \(key) or set isolation = \"process\"")
        }
        // A stateful plugin (the oauth2 plugin rotating refresh tokens) defaults to quorum in a cluster: two calls
        // with one refresh token revoke the token family at most identity providers (SPEC §4.10). The plugin is
        // recognized by the file it names, not by the word: "liboauth2.so" or a link to it is the same plugin.
        // Other plugins that keep state cannot be known before they run; the cluster warns when one first sets a
        // state under "available" (docs/cluster.md).
        let stateful = ConfigurationDecoder.isOAuth2Plugin(plugin, in: pluginDir)
            && params.contains { $0.key == "grant" && $0.value == "refresh_token" }
        let singleFlight = try t["single_flight"].map { v throws(ConfigurationError) in try oneOf(Configuration.SingleFlight.self, v, at: at + ["single_flight"]) }
            ?? (stateful && scope == .cluster && isolation == .process ? .quorum : .available)
        if singleFlight == .quorum && scope == .local {
            throw error(at + ["single_flight"], "\"quorum\" keeps plugin calls single across a cluster, and this expirable has scope = \"local\"; remove single_flight or set scope = \"cluster\"")
        }
        if singleFlight == .quorum && isolation == .inline {
            throw error(at + ["single_flight"], "\"quorum\" needs isolation = \"process\": a call that outlives its lease must be stopped, and only a helper can be killed; remove isolation = \"inline\"")
        }
        var expirable = Configuration.Expirable(name: name, plugin: plugin, scope: scope, refresh: refresh, freshness: freshness, timeout: timeout,
                                                isolation: isolation, singleFlight: singleFlight, keyed: try keyedPolicy(t, at: at), maxMemory: maxMemory,
                                                maxCPU: maxCPU, params: params)
        expirable.keepsState = stateful
        return expirable
    }

    /// Whether plugin `name` is the shipped oauth2 plugin: the file it resolves to in `pluginDir` (the first of
    /// libNAME.so, NAME.so and NAME, as the plugin host looks) is the file "oauth2" resolves to, or is named
    /// liboauth2.so / oauth2.so / oauth2 itself after links are followed. Without such a file (check-config on
    /// another machine, plugin_dir not there yet) the name alone decides, with "lib" and ".so" taken off.
    static func isOAuth2Plugin(_ name: String, in pluginDir: String) -> Bool {
        func bare(_ file: String) -> String {
            var s = Substring(file)
            if s.hasSuffix(".so") { s = s.dropLast(3) }
            if s.hasPrefix("lib") { s = s.dropFirst(3) }
            return String(s)
        }
        func resolved(_ name: String) -> (path: String, device: UInt64, inode: UInt64)? {
            for candidate in ["lib\(name).so", "\(name).so", name] {
                var st = stat()
                guard lstat(pluginDir + "/" + candidate, &st) == 0, let real = realpath(pluginDir + "/" + candidate, nil) else { continue }
                defer { free(real) }
                guard stat(real, &st) == 0 else { return nil }
                return (String(cString: real), UInt64(st.st_dev), UInt64(st.st_ino))
            }
            return nil
        }
        guard let file = resolved(name) else { return bare(name) == "oauth2" }
        if bare(String(file.path.split(separator: "/").last ?? "")) == "oauth2" { return true }
        guard let oauth2 = resolved("oauth2") else { return false }
        return oauth2.device == file.device && oauth2.inode == file.inode
    }

    /// A character a name may not hold because it does not show as itself: any Unicode space (U+0020, NO-BREAK
    /// SPACE, IDEOGRAPHIC SPACE, line separators), control characters (C0, DEL, C1) and format characters (zero
    /// width spaces and joiners, bidirectional overrides, the BOM). Names are shown by check-config, LIST,
    /// status and the logs; with these, "a b" and "ab" could name different expirables, or a name read reordered.
    static func isUnseen(_ scalar: Unicode.Scalar) -> Bool {
        if scalar.properties.isWhitespace { return true }
        switch scalar.properties.generalCategory {
        case .control, .format, .spaceSeparator, .lineSeparator, .paragraphSeparator: return true
        default: return false
        }
    }

    private func decodeParams(_ t: TOMLTable, at: [String]) throws(ConfigurationError) -> [Configuration.Param] {
        var params: [Configuration.Param] = []
        for key in t.keys.sorted() {
            guard let value = t[key] else { continue }
            if let array = value.array {
                for element in array {
                    guard let text = scalar(element) else {
                        throw error(at + [key], "expected an array of strings, numbers or booleans, found an element \(show(element))")
                    }
                    params.append(.init(key: key, value: text))
                }
            } else if let text = scalar(value) {
                params.append(.init(key: key, value: text))
            } else {
                throw error(at + [key], "expected a string, number, boolean or array of them, got \(show(value))")
            }
        }
        return params
    }

    // MARK: Values

    private func scalar(_ v: TOMLValue) -> String? {
        switch v {
        case .string(let s): s
        case .integer(let i): String(i)
        case .boolean(let b): String(b)
        case .float(let d): String(d)
        case .dateTime(let text): text
        case .array, .table: nil
        }
    }

    private func integer(_ t: TOMLTable, _ key: String, at: [String], in range: ClosedRange<Int>) throws(ConfigurationError) -> Int? {
        guard let v = t[key] else { return nil }
        guard let n = v.integer.flatMap({ Int(exactly: $0) }), range.contains(n) else {
            throw error(at + [key], "expected an integer from \(range.lowerBound) to \(range.upperBound), got \(show(v))")
        }
        return n
    }

    private func table(_ v: TOMLValue, at: [String]) throws(ConfigurationError) -> TOMLTable {
        guard let t = v.table else {
            // [[expirable]] for [expirable.NAME]: a slip worth naming, since TOML reads it as an array of tables.
            if at.count == 1, let array = v.array, !array.isEmpty, array.allSatisfy({ $0.table != nil }) {
                throw error(at, "expected a table, got an array of tables; write each \(at[0]) as [\(at[0]).NAME], not [[\(at[0])]]")
            }
            throw error(at, "expected a table, got \(show(v))")
        }
        return t
    }

    func string(_ v: TOMLValue, at: [String]) throws(ConfigurationError) -> String {
        guard let s = v.string else { throw error(at, "expected a string, got \(show(v))") }
        return s
    }

    private func duration(_ v: TOMLValue, at: [String]) throws(ConfigurationError) -> Duration {
        if let ms = v.integer, ms >= 0, ms <= DurationParser.maxMilliseconds { return .milliseconds(ms) }
        try refuseTooLong(v, at: at)
        try refuseUnitless(v, at: at)
        if let s = v.string, let d = DurationParser.duration(s) { return d }
        throw error(at, "expected \(DurationParser.expected), got \(show(v))")
    }

    /// A duration longer than a clock can count, which would be cut short unseen.
    private func refuseTooLong(_ v: TOMLValue, at: [String]) throws(ConfigurationError) {
        let tooLong = v.integer.map { $0 > DurationParser.maxMilliseconds } ?? v.string.map { DurationParser.isTooLong($0) } ?? false
        guard tooLong else { return }
        throw error(at, "\(show(v)) is longer than the longest duration (\(DurationParser.longest))")
    }

    /// A string of digits alone: SPEC §2 writes durations as strings with a unit or integers of milliseconds, and
    /// "10" reads as 10 s as easily as 10 ms. "0" is zero in every unit, and the defaults are written so.
    private func refuseUnitless(_ v: TOMLValue, at: [String]) throws(ConfigurationError) {
        guard let s = v.string, !s.isEmpty, s != "0", s.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) else { return }
        throw error(at, "\"\(s)\" has no unit; write \"\(s)s\" or \"\(s)ms\", or the integer \(s) for milliseconds")
    }

    static let expectedLead = "a duration such as \"30s\" or a share of the value's lifetime such as \"20%\""

    /// A duration, or a share of a value's lifetime: `"20%"`, `"12.5%"` (at most two decimals), above 0 %
    /// and below 100 %.
    private func lead(_ v: TOMLValue, at: [String]) throws(ConfigurationError) -> Lead {
        if let text = v.string, text.hasSuffix("%") {
            let number = text.dropLast()
            // No sign: a share already counts back from the expiry, and Int() would take "+20" as 20 and "-0" as 0,
            // so "-0.5%" would have become 0.5 % unseen.
            if let sign = number.first, sign == "+" || sign == "-" {
                throw error(at, "expected a share without a sign, such as \"\(number.dropFirst())%\", got \(show(v))")
            }
            let parts = number.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
            guard let whole = parts.first.flatMap({ Int($0) }), parts[0].allSatisfy({ $0.isASCII && $0.isNumber }), whole >= 0, whole <= 100,
                  parts.count == 1 || (1...2).contains(parts[1].count) && parts[1].allSatisfy({ $0.isASCII && $0.isNumber }) else {
                throw error(at, "expected a share such as \"20%\" or \"12.5%\", got \(show(v))")
            }
            let fraction = parts.count == 2 ? Int(parts[1].count == 1 ? parts[1] + "0" : parts[1]) ?? 0 : 0
            let basisPoints = whole * 100 + fraction
            guard basisPoints > 0, basisPoints < 10_000 else {
                throw error(at, "expected a share above 0% and below 100% of the value's lifetime, got \(show(v))")
            }
            return .share(basisPoints: basisPoints)
        }
        try refuseUnitless(v, at: at)
        guard let text = v.string ?? v.integer.map(String.init), let d = DurationParser.duration(text) else {
            try refuseTooLong(v, at: at)
            throw error(at, "expected \(ConfigurationDecoder.expectedLead), got \(show(v))")
        }
        return .duration(d)
    }

    /// `keyed`, `max_keys`, `key_idle` (SPEC §3.19): nil unless `keyed = true`; the other two need it.
    private func keyedPolicy(_ t: TOMLTable, at: [String]) throws(ConfigurationError) -> KeyedPolicy? {
        var keyed = false
        if let v = t["keyed"] {
            guard let flag = v.boolean else { throw error(at + ["keyed"], "expected true or false, got \(show(v))") }
            keyed = flag
        }
        let maxKeys = try integer(t, "max_keys", at: at, in: 1...10_000_000)
        let keyIdle = try t["key_idle"].map { v throws(ConfigurationError) in try duration(v, at: at + ["key_idle"]) }
        guard keyed else {
            if let key = ["max_keys", "key_idle"].first(where: { t[$0] != nil }) {
                throw error(at + [key], "only applies with keyed = true; set keyed = true or remove \(key)")
            }
            return nil
        }
        if let keyIdle, keyIdle < .seconds(1) { throw error(at + ["key_idle"], "expected at least \"1s\", got \(show(t["key_idle"]!))") }
        return KeyedPolicy(maxKeys: maxKeys ?? KeyedPolicy.defaultMaxKeys, keyIdle: keyIdle ?? KeyedPolicy.defaultKeyIdle)
    }

    /// A size in bytes: an integer, or a string with a binary unit ("64MiB", "64M", "512KiB", "1G").
    private func size(_ v: TOMLValue, at: [String]) throws(ConfigurationError) -> Int {
        let expected = "a size such as \"64MiB\", \"512KiB\", \"1GiB\" (binary units; \"64M\" is the same as \"64MiB\") or an integer of bytes"
        if let n = v.integer, n > 0, let bytes = Int(exactly: n) { return bytes }
        guard let s = v.string else { throw error(at, "expected \(expected), got \(show(v))") }
        let digits = s.prefix { $0.isASCII && $0.isNumber }
        let units: [String: Int] = ["": 1, "B": 1, "K": 1 << 10, "KiB": 1 << 10, "M": 1 << 20, "MiB": 1 << 20, "G": 1 << 30, "GiB": 1 << 30, "T": 1 << 40, "TiB": 1 << 40]
        guard !digits.isEmpty, digits.count <= 12, let number = Int(digits), let scale = units[String(s.dropFirst(digits.count))] else {
            throw error(at, "expected \(expected), got \(show(v))")
        }
        let (bytes, overflow) = number.multipliedReportingOverflow(by: scale)
        guard !overflow, bytes > 0 else { throw error(at, "expected \(expected), got \(show(v))") }
        return bytes
    }

    private func oneOf<E: RawRepresentable & CaseIterable>(_: E.Type, _ v: TOMLValue, at: [String]) throws(ConfigurationError) -> E where E.RawValue == String {
        let words = E.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: " or ")
        guard let s = v.string, let e = E(rawValue: s) else { throw error(at, "expected \(words), got \(show(v))") }
        return e
    }

    private func nodeName(_ v: TOMLValue, at: [String]) throws(ConfigurationError) -> String {
        try nodeName(try string(v, at: at), at: at)
    }

    @discardableResult
    private func nodeName(_ s: String, at: [String]) throws(ConfigurationError) -> String {
        if let problem = NodeName.problem(s) { throw error(at, problem) }
        return s
    }

    /// `host:port`: a name or IPv4 address without ":", or an IPv6 address in brackets (`[::1]:7400`); the port
    /// is 1 to 5 decimal digits from 1 to 65535, nothing after it.
    private func endpoint(_ v: TOMLValue, at: [String]) throws(ConfigurationError) -> Configuration.Endpoint {
        let s = try string(v, at: at)
        let bad = error(at, "expected \"host:port\" with a port from 1 to 65535 (IPv6 as \"[::1]:7400\"), got \(show(v))")
        guard let colon = s.lastIndex(of: ":") else { throw bad }
        var host = String(s[..<colon])
        let portText = s[s.index(after: colon)...]
        guard (1...5).contains(portText.utf8.count), portText.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
              let port = Int(portText), (1...65535).contains(port) else { throw bad }
        if host.hasPrefix("[") {
            guard host.hasSuffix("]") else { throw bad }
            host = String(host.dropFirst().dropLast())
            var address = in6_addr()
            guard inet_pton(AF_INET6, host, &address) == 1 else {
                throw error(at, "expected an IPv6 address inside the brackets, got \(show(v))")
            }
        } else {
            guard !host.isEmpty, host.utf8.count <= 253,
                  host.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value < 0x7f && !":[]/\\".unicodeScalars.contains($0) }) else {
                throw host.contains(":") ? error(at, "expected one \":\" before the port, got \(show(v)); write an IPv6 address in brackets, as \"[::1]:7400\"") : bad
            }
        }
        return .init(host: host, port: port)
    }

    /// An endpoint to listen on: its host an IP address, or a name this machine resolves (as `localhost`), so
    /// that check-config refuses what the daemon could not bind.
    private func listenAddress(_ v: TOMLValue, at: [String]) throws(ConfigurationError) -> Configuration.Endpoint {
        let endpoint = try endpoint(v, at: at)
        var address = in_addr(), address6 = in6_addr()
        if inet_pton(AF_INET, endpoint.host, &address) == 1 || inet_pton(AF_INET6, endpoint.host, &address6) == 1 { return endpoint }
        var hints = addrinfo()
        hints.ai_flags = AI_PASSIVE
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var found: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(endpoint.host, nil, &hints, &found)
        if let found { freeaddrinfo(found) }
        guard status == 0 else {
            throw error(at, "cannot listen on \(show(v)): \(ConfigurationError.quoted(endpoint.host)) is not an IP address, and it does not resolve (\(String(cString: gai_strerror(status)))); use an address of this machine, such as \"127.0.0.1:\(endpoint.port)\" or \"0.0.0.0:\(endpoint.port)\"")
        }
        return endpoint
    }

    private func path(_ t: TOMLTable, _ key: String, at: [String]) throws(ConfigurationError) -> String? {
        guard let v = t[key] else { return nil }
        let s = try string(v, at: at + [key])
        guard !s.isEmpty else { throw error(at + [key], "expected a non-empty path") }
        guard !s.contains("\0") else { throw error(at + [key], "a path may not hold a NUL character (\\0); remove it") }
        return ConfigurationDecoder.normalized(s.hasPrefix("/") ? s : baseDirectory + "/" + s)
    }

    /// `path` without empty, "." and ".." components (resolved by name, not by following links).
    static func normalized(_ path: String) -> String {
        var parts: [Substring] = []
        for part in path.split(separator: "/", omittingEmptySubsequences: true) {
            switch part {
            case ".": continue
            case "..": _ = parts.popLast()
            default: parts.append(part)
            }
        }
        return "/" + parts.joined(separator: "/")
    }

    static func currentDirectory() -> String {
        guard let cwd = getcwd(nil, 0) else { return "/" }
        defer { free(cwd) }
        return String(cString: cwd)
    }

    /// The value of `key`, converted; when it is missing, an error saying what to write (`expecting`).
    private func required<T>(_ t: TOMLTable, _ key: String, at: [String], expecting: String, _ convert: (TOMLValue) throws(ConfigurationError) -> T) throws(ConfigurationError) -> T {
        guard let v = t[key] else { throw missing(at + [key], expecting) }
        return try convert(v)
    }

    func allowOnly(_ keys: Set<String>, in t: TOMLTable, at: [String]) throws(ConfigurationError) {
        for key in t.keys.sorted() where !keys.contains(key) {
            let known = keys.sorted().joined(separator: ", ")
            let whereText = at.isEmpty ? "at the top level" : "in [\(at.joined(separator: "."))]"
            throw error(at + [key], "unknown key \(whereText); expected one of: \(known)")
        }
    }

    // MARK: Errors

    func show(_ v: TOMLValue) -> String {
        switch v {
        case .string(let s): ConfigurationError.quoted(s)
        case .integer(let i): "\(i)"
        default: (v.typeName.first.map { "aeiou".contains($0) } == true ? "an " : "a ") + v.typeName
        }
    }

    /// The line of `path`, or of its nearest enclosing key or table written in the file.
    private func line(of path: [String]) -> Int? {
        var table = root
        var found: Int?
        for key in path {
            guard let line = table.line(of: key) else { break }
            found = line
            guard let next = table[key]?.table else { break }
            table = next
        }
        return found
    }

    func error(_ at: [String], _ message: String) -> ConfigurationError {
        ConfigurationError(file: file, line: line(of: at), key: at.joined(separator: "."), message: message)
    }

    func missing(_ at: [String], _ what: String) -> ConfigurationError {
        ConfigurationError(file: file, line: line(of: Array(at.dropLast())), key: at.joined(separator: "."),
                           message: "is missing; expected \(what)")
    }
}
