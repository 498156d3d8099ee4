import ExpirableTestSupport
import Foundation

/// Three (or more) real `expirabled` nodes on 127.0.0.2, .3, .4…, with a CA and node certificates made by
/// `expirablectl cert`. With `proxied`, every link runs through its own `FaultProxy`, so a test can partition
/// the cluster. `remove()` stops every node by PID and every proxy, and deletes the directories.
final class TestCluster: @unchecked Sendable {
    let pki: TemporaryDirectory
    let names: [String]
    private(set) var nodes: [DaemonProcess] = []
    /// "node-a>node-b" is the proxy node-a dials node-b through.
    private(set) var proxies: [String: FaultProxy] = [:]
    // Short enough for quick tests, long enough that a machine running the whole suite on two cores does not
    // miss three heartbeats in a row.
    static let heartbeat = "300ms"

    init(_ count: Int = 3, expirables: (String) -> String, proxied: Bool = false, arguments: [String: [String]] = [:],
         testPlugins: [String] = ["counter"], shippedPlugins: [String] = [], clusterLines: String = "", server: String = "") throws {
        pki = try TemporaryDirectory("expirable-pki")
        names = (0..<count).map { "node-\(Character(UnicodeScalar(UInt8(ascii: "a") + UInt8($0))))" }
        // From here on, a failure stops and removes whatever was made so far.
        do {
            try build(expirables: expirables, proxied: proxied, arguments: arguments, testPlugins: testPlugins, shippedPlugins: shippedPlugins,
                      clusterLines: clusterLines, server: server)
        } catch {
            remove()
            throw error
        }
    }

    private func build(expirables: (String) -> String, proxied: Bool, arguments: [String: [String]], testPlugins: [String],
                       shippedPlugins: [String], clusterLines: String, server: String) throws {
        let ctl = try TestPaths.product("expirablectl").path
        guard try runTool(ctl, ["cert", "ca", "--dir", pki.path]).status == 0 else { throw TestSupportError("cert ca failed") }
        for name in names {
            guard try runTool(ctl, ["cert", "node", name, "--dir", pki.path]).status == 0 else { throw TestSupportError("cert node \(name) failed") }
        }
        let hosts = Dictionary(uniqueKeysWithValues: names.enumerated().map { ($1, "127.0.0.\($0 + 2)") })
        let ports = try Dictionary(uniqueKeysWithValues: names.map { ($0, try freePort(on: hosts[$0]!)) })
        for name in names {
            var peers: [String] = []
            for peer in names where peer != name {
                if proxied {
                    let proxy = try FaultProxy(host: "127.0.0.1", to: hosts[peer]!, port: ports[peer]!)
                    proxies["\(name)>\(peer)"] = proxy
                    peers.append("\(peer) = \"127.0.0.1:\(proxy.port)\"")
                } else {
                    peers.append("\(peer) = \"\(hosts[peer]!):\(ports[peer]!)\"")
                }
            }
            let cluster = """
                [cluster]
                node = "\(name)"
                listen = "\(hosts[name]!):\(ports[name]!)"
                peers = { \(peers.joined(separator: ", ")) }
                ca = "\(pki.appending("ca.pem"))"
                cert = "\(pki.appending("\(name).pem"))"
                key = "\(pki.appending("\(name).key"))"
                heartbeat = "\(TestCluster.heartbeat)"
                \(clusterLines)
                """
            nodes.append(try DaemonProcess(expirables: expirables(name), server: server, cluster: cluster, testPlugins: testPlugins, shippedPlugins: shippedPlugins,
                                           arguments: arguments[name] ?? [], start: false))
        }
        for node in nodes { try node.start() }
        try waitUntilLinked()
    }

    subscript(name: String) -> DaemonProcess { nodes[names.firstIndex(of: name)!] }

    /// The live members `node` reports, itself included.
    func live(_ node: String) -> Set<String> {
        let text = (try? self[node].redis("CLUSTER")) ?? ""
        return Set(text.split(whereSeparator: \.isNewline).compactMap { line -> String? in
            let fields = line.split(separator: "\t")
            guard fields.contains("state:alive") || fields.contains("state:this"), let name = fields.first?.dropFirst(5) else { return nil }
            return String(name)
        })
    }

    /// Waits (at most 15 s) until each node in `among` sees exactly `among` alive.
    func waitUntilLinked(_ among: [String]? = nil) throws {
        let group = Set(among ?? names)
        for _ in 0..<300 {
            if group.allSatisfy({ live($0) == group }) { return }
            usleep(50_000)
        }
        let logs = group.sorted().map { node in
            "\(node)'s log ends:\n" + self[node].log.split(separator: "\n").filter { !$0.contains(" debug ") }.suffix(10).joined(separator: "\n")
        }
        throw TestSupportError("the nodes did not link within 15 s: \(group.map { "\($0) sees \(live($0).sorted())" })\n\(logs.joined(separator: "\n"))")
    }

    /// The owner of expirable `name` as `node` reports it in INFO (asked for a few times, at most 5 s).
    func owner(of name: String = "token", on node: String) throws -> String {
        var last = ""
        for _ in 0..<100 {
            last = (try? self[node].redis("INFO", name)) ?? ""
            if let line = last.split(whereSeparator: \.isNewline).first(where: { $0.hasPrefix("owner:") }) {
                return String(line.dropFirst("owner:".count))
            }
            usleep(50_000)
        }
        throw TestSupportError("\(node) reports no owner for \(name); its INFO said: \(last.isEmpty ? "(nothing)" : last); its log ends: \(self[node].log.split(separator: "\n").suffix(8).joined(separator: "\n"))")
    }

    /// The plugin calls each node made for the counter whose count file is `file`.
    func calls(_ file: String = "calls") -> [String: Int] {
        Dictionary(uniqueKeysWithValues: names.map { ($0, self[$0].count(file)) })
    }

    func totalCalls(_ file: String = "calls") -> Int { calls(file).values.reduce(0, +) }

    /// Cuts every link between `side` and the other nodes, both ways.
    func partition(_ side: Set<String>) {
        for (key, proxy) in proxies {
            let ends = key.split(separator: ">").map(String.init)
            if side.contains(ends[0]) != side.contains(ends[1]) { proxy.block() }
        }
    }

    /// Stalls the link `from` dials to `to`: `from` can no longer send to `to`, while `to` still reaches `from`.
    func cut(from: String, to: String) {
        proxies["\(from)>\(to)"]?.block()
    }

    func heal() {
        for proxy in proxies.values { proxy.unblock() }
    }

    func remove() {
        for node in nodes { node.remove() }
        for proxy in proxies.values { proxy.stop() }
        pki.remove()
    }

    /// Waits (at most `seconds`) for `condition`.
    static func eventually(seconds: Double = 10, _ condition: () throws -> Bool) rethrows -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if try condition() { return true }
            usleep(20_000)
        }
        return try condition()
    }
}

/// A cluster-scoped counter named `name` counting into DIR/`file`, and a local one, for every node.
func counters(ttlMillis: Int = 60_000, sleepMillis: Int = 0, refresh: String = "") -> (String) -> String {
    { node in
        """
        [expirable.token]
        plugin = "counter"
        \(refresh)
        [expirable.token.params]
        prefix = "\(node)-"
        ttl_ms = \(ttlMillis)
        sleep_ms = \(sleepMillis)
        count_file = "DIR/calls"

        [expirable.mine]
        plugin = "counter"
        scope = "local"
        [expirable.mine.params]
        prefix = "local-\(node)-"
        count_file = "DIR/local"
        """
    }
}
