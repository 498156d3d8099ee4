@testable import ExpirableCluster
import ExpirableTestSupport
import Foundation
import Testing

@Suite("Refused peers")
struct PeerSecurityTests {
    /// The address node-a listens on for peers, from its configuration.
    static func listenAddress(_ cluster: TestCluster) throws -> (host: String, port: String) {
        let config = try String(contentsOfFile: cluster["node-a"].configPath, encoding: .utf8)
        let line = try #require(config.split(separator: "\n").first { $0.hasPrefix("listen = ") })
        let address = line.dropFirst("listen = \"".count).dropLast()
        let parts = address.split(separator: ":")
        return (String(parts[0]), String(parts[1]))
    }

    /// Connects with `openssl s_client` using `cert`/`key` and sends `payload` after the handshake.
    static func openSSLClient(_ host: String, _ port: String, cert: String, key: String, ca: String, payload: String = "") throws -> ToolResult {
        let script = "printf '\(payload)' | openssl s_client -quiet -connect \(host):\(port) -cert \(cert) -key \(key) -CAfile \(ca) -verify_return_error"
        return try runTool("sh", ["-c", script], seconds: 10)
    }

    @Test("another CA, another node's name, an expired certificate, plaintext and garbage are refused and logged; the cluster carries on")
    func refusals() throws {
        let cluster = try TestCluster(expirables: counters())
        defer { cluster.remove() }
        let (host, port) = try Self.listenAddress(cluster)
        let ctl = try TestPaths.product("expirablectl").path
        let rogue = try TemporaryDirectory("expirable-rogue")
        defer { rogue.remove() }
        #expect(try runTool(ctl, ["cert", "ca", "--dir", rogue.path]).status == 0)
        #expect(try runTool(ctl, ["cert", "node", "node-b", "--dir", rogue.path]).status == 0)
        // A certificate from the right CA for a name that is not a peer, and an expired one for node-b.
        let other = try TemporaryDirectory("expirable-other")
        defer { other.remove() }
        for file in ["ca.pem", "ca.key"] { try FileManager.default.copyItem(atPath: cluster.pki.appending(file), toPath: other.appending(file)) }
        #expect(try runTool(ctl, ["cert", "node", "node-x", "--dir", other.path]).status == 0)
        #expect(try runTool(ctl, ["cert", "node", "node-b", "--dir", other.path, "--not-before-days=-30", "--days", "10"]).status == 0)
        let ca = cluster.pki.appending("ca.pem")

        _ = try Self.openSSLClient(host, port, cert: rogue.appending("node-b.pem"), key: rogue.appending("node-b.key"), ca: ca, payload: "hello")
        _ = try Self.openSSLClient(host, port, cert: other.appending("node-x.pem"), key: other.appending("node-x.key"), ca: ca, payload: "hello")
        _ = try Self.openSSLClient(host, port, cert: other.appending("node-b.pem"), key: other.appending("node-b.key"), ca: ca, payload: "hello")
        let plaintext = try runTool("redis-cli", ["-h", host, "-p", port, "PING"], seconds: 10)
        #expect(!plaintext.stdout.contains("PONG"))
        _ = try runTool("bash", ["-c", "exec 3<>/dev/tcp/\(host)/\(port); head -c 3000 /dev/urandom >&3; sleep 0.2"], seconds: 10)

        let log = cluster["node-a"].log
        let refused = log.split(separator: "\n").filter { $0.contains("refused peer connection") }
        #expect(refused.count >= 5, "\(refused)")
        #expect(refused.contains { $0.contains("unable to get local issuer certificate") }, "another CA")
        #expect(refused.contains { $0.contains("names node-x, none of which is a configured peer") }, "another node's name")
        #expect(refused.contains { $0.contains("certificate has expired") }, "expired")
        #expect(refused.filter { $0.contains("TLS handshake failed") }.count >= 2, "plaintext and garbage")
        // The real peers are untouched: still linked, still serving.
        #expect(cluster.live("node-a") == Set(cluster.names))
        for name in cluster.names { #expect(try cluster[name].redis("GET", "token").hasPrefix("node-")) }
    }

    @Test("a malformed frame after a valid handshake closes that connection only")
    func malformedFrame() throws {
        let cluster = try TestCluster(expirables: counters())
        defer { cluster.remove() }
        let (host, port) = try Self.listenAddress(cluster)
        // A valid certificate for node-b, but frames that break the rules.
        _ = try Self.openSSLClient(host, port, cert: cluster.pki.appending("node-b.pem"), key: cluster.pki.appending("node-b.key"),
                                   ca: cluster.pki.appending("ca.pem"), payload: "\\377\\377\\377\\377garbage")
        #expect(TestCluster.eventually { cluster["node-a"].log.contains("malformed frame from peer; closing that link") })
        #expect(cluster["node-a"].log.contains("frame of 4294967295 bytes"))
        #expect(cluster.live("node-a") == Set(cluster.names))
        _ = try cluster["node-b"].redis("GET", "token")
        #expect(try TestCluster.eventually { try cluster["node-a"].redis("TTL", "token") != "-2" })
    }

    @Test("a second daemon with node-b's name and certificate: node-a keeps the established link, says why in a warning naming both addresses, and the duplicate is told")
    func duplicateNodeName() throws {
        let cluster = try TestCluster(expirables: counters())
        defer { cluster.remove() }
        // A copy of node-b's configuration on another address: a cloned machine, or a second daemon started by
        // mistake.
        let original = try String(contentsOfFile: cluster["node-b"].configPath, encoding: .utf8)
        let lines = original.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let start = try #require(lines.firstIndex(of: "[cluster]"))
        var table: [String] = []
        for line in lines[start...] {
            if line.hasPrefix("[") && line != "[cluster]" { break }
            table.append(line.hasPrefix("listen = ") ? "listen = \"127.0.0.9:\(try freePort(on: "127.0.0.9"))\"" : line)
        }
        let duplicate = try DaemonProcess(expirables: counters()("node-b"), cluster: table.joined(separator: "\n"))
        defer { duplicate.remove() }
        let deadBefore = cluster["node-b"].log.components(separatedBy: "peer dead").count
        // The duplicate dials node-a every heartbeat for a while.
        #expect(TestCluster.eventually { cluster["node-a"].log.contains("is linked from") })
        let warning = cluster["node-a"].log.split(separator: "\n").first { $0.contains("is linked from") }.map(String.init) ?? ""
        #expect(warning.contains(" warning ") && warning.contains("node-b") && warning.contains("Two daemons"), "\(warning)")
        usleep(3_000_000)
        #expect(cluster["node-b"].log.components(separatedBy: "peer dead").count == deadBefore, "the real node-b's links do not flap: \(cluster["node-b"].log.split(separator: "\n").suffix(6))")
        #expect(cluster.live("node-a") == Set(cluster.names))
        #expect(cluster.live("node-b") == Set(cluster.names))
        let view = try duplicate.redis("CLUSTER")
        #expect(view.contains("another daemon named node-b"), "the duplicate shows why node-a refuses it: \(view)")
        let refusals = cluster["node-a"].log.split(separator: "\n").filter { $0.contains("is linked from") && $0.contains(" warning ") }
        #expect(refusals.count == 1, "one warning, then a count: \(refusals)")
    }

    @Test("node-a does not list node-c as a peer: node-c shows and logs once that node-a refuses it and why, and its redials are not logged at info each heartbeat")
    func notListedAsPeer() throws {
        let cluster = try TestCluster(expirables: counters())
        defer { cluster.remove() }
        // node-a is restarted without node-c among its peers; node-b and node-c still list node-a.
        _ = cluster["node-a"].stop()
        let config = try String(contentsOfFile: cluster["node-a"].configPath, encoding: .utf8)
        let edited = config.replacingOccurrences(of: #", node-c = "[^"]*""#, with: "", options: .regularExpression)
        #expect(edited != config)
        try edited.write(toFile: cluster["node-a"].configPath, atomically: true, encoding: .utf8)
        try cluster["node-a"].start()
        #expect(TestCluster.eventually(seconds: 15) { cluster.live("node-a") == ["node-a", "node-b"] && cluster.live("node-b") == Set(cluster.names) })
        var view = ""
        #expect(try TestCluster.eventually { view = try cluster["node-c"].redis("CLUSTER"); return view.contains("error:node-a refuses this node: node-c is not among the peers") },
                "node-c's view of node-a says why: \(view)")
        let mark = cluster["node-c"].log.count
        usleep(3_000_000)  // ten heartbeats, each a redial refused
        let later = cluster["node-c"].log.dropFirst(mark).split(separator: "\n")
        let info = later.filter { ($0.contains(" info ") || $0.contains(" warning ") || $0.contains(" error ")) && $0.contains("peer=node-a") }
        #expect(info.count <= 1, "no line at info or above per redial: \(info.prefix(6))")
        #expect(cluster["node-c"].log.components(separatedBy: "peer refuses this node's link").count == 2, "logged once")
        #expect(try cluster["node-c"].ctl("cluster").stdout.contains("node-a refuses this node"))
    }

    @Test("peers whose configurations disagree on a cluster-scoped expirable are reported")
    func configurationDisagreement() throws {
        let cluster = try TestCluster(expirables: { node in
            counters()(node) + (node == "node-c" ? "\n[expirable.shared]\nplugin = \"counter\"\nrefresh = \"eager\"\nbefore_expiry = \"5s\"\n" : "\n[expirable.shared]\nplugin = \"counter\"\n")
        })
        defer { cluster.remove() }
        let view = try cluster["node-a"].redis("CLUSTER")
        #expect(view.contains("config:shared: here refresh=lazy; on node-c refresh=eager:5000"), "\(view)")
        #expect(cluster["node-a"].log.contains("peer configuration disagrees"))
        let table = try cluster["node-a"].ctl("cluster").stdout
        #expect(table.contains("node-c") && table.contains("shared: here refresh=lazy; on node-c refresh=eager:5000"))
        #expect(table.hasPrefix("NODE    STATE  ADDRESS"))
    }
}

@Suite("Cluster configuration checks")
struct ClusterConfigurationTests {
    @Test("an expirable only some nodes have as cluster-scoped, or keyed on some and plain on others, is owned among the nodes that define it so; each difference is reported on both sides, both named")
    func partialDefinitions() throws {
        let all = ["node-a", "node-b", "node-c"]
        // Names that rendezvous hashing over all three nodes gives to node-a or node-b, which lack them (or have them
        // keyed, or local).
        func notOnC(_ prefix: String, _ count: Int) -> [String] {
            Array((0..<500).map { "\(prefix)\($0)" }.filter { Ownership.owner(of: $0, among: all) != "node-c" }.prefix(count))
        }
        let only = notOnC("only", 2)
        let local = notOnC("loc", 1)[0]
        let family = notOnC("fam", 1)[0]
        let cluster = try TestCluster(expirables: { node in
            var text = counters()(node)
            if node == "node-c" {
                for name in only { text += "\n[expirable.\(name)]\nplugin = \"counter\"\n[expirable.\(name).params]\nprefix = \"\(name)-\"\n" }
            }
            text += "\n[expirable.\(local)]\nplugin = \"counter\"\nscope = \"\(node == "node-c" ? "cluster" : "local")\"\n"
            text += "\n[expirable.\(family)]\nplugin = \"counter\"\n" + (node == "node-c" ? "" : "keyed = true\n")
            text += "\n[expirable.sf]\nplugin = \"counter\"\nsingle_flight = \"\(node == "node-c" ? "available" : "quorum")\"\n"
            return text
        })
        defer { cluster.remove() }
        for name in only {
            let value = try cluster["node-c"].redis("GET", name)
            #expect(value.hasPrefix("\(name)-"), "node-c, the only node with \(name), fetches it: \(value)")
            #expect(try cluster.owner(of: name, on: "node-c") == "node-c")
        }
        let localValue = try cluster["node-c"].redis("GET", local)
        #expect(!localValue.isEmpty && !localValue.hasPrefix("FETCH") && !localValue.hasPrefix("NOTFOUND"), "cluster-scoped on node-c only: \(localValue)")
        let plain = try cluster["node-c"].redis("GET", family)
        #expect(!plain.isEmpty && !plain.hasPrefix("FETCH") && !plain.hasPrefix("NOTFOUND"), "plain on node-c, owned there: \(plain)")
        let member = try cluster["node-a"].redis("GET", "\(family):k1")
        #expect(!member.isEmpty && !member.hasPrefix("FETCH") && !member.hasPrefix("NOTFOUND"), "keyed on node-a and node-b, owned between them: \(member)")

        let viewA = try cluster["node-a"].redis("CLUSTER")
        let viewC = try cluster["node-c"].redis("CLUSTER")
        #expect(viewA.contains("\(family): here keyed=true; on node-c keyed=false"), "\(viewA)")
        #expect(viewC.contains("\(family): here keyed=false; on node-a keyed=true"), "\(viewC)")
        #expect(viewA.contains("sf: here single_flight=quorum; on node-c single_flight=available"), "\(viewA)")
        #expect(viewC.contains("sf: here single_flight=available; on node-b single_flight=quorum"), "\(viewC)")
        #expect(viewA.contains("\(only[0]): here not configured as cluster-scoped; on node-c cluster-scoped"), "\(viewA)")
        #expect(viewC.contains("\(local): here cluster-scoped; on node-a not configured as cluster-scoped"), "\(viewC)")
        #expect(try cluster["node-b"].ctl("cluster").stdout.contains("\(family): here keyed=true; on node-c keyed=false"))
        #expect(cluster["node-a"].log.contains("difference=\(family): here keyed=true; on node-c keyed=false"))
    }

    @Test("CLUSTER names a differently configured expirable only to a caller who may see it: not one with an allow list the caller is not on, nor, but to admins, one not configured on this node",
          .enabled(if: getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv"), "needs root and setpriv"))
    func disagreementsFollowAccess() throws {
        // node-a has `payroll`, which only root may read; node-b has nothing hidden, so nobody reads all it has
        // and `payroll`, unknown there, must still not be named to it. `shared` differs and anyone may see it.
        let cluster = try TestCluster(2, expirables: { node in
            (node == "node-a" ? "[expirable.payroll]\nplugin = \"counter\"\nallow = [\"uid:0\"]\n\n" : "")
                + "[expirable.shared]\nplugin = \"counter\"\n"
                + (node == "node-a" ? "refresh = \"eager\"\nbefore_expiry = \"5s\"\n" : "")
        }, server: "socket_mode = \"0666\"")
        defer { cluster.remove() }
        func asNobody(_ arguments: [String]) throws -> String {
            try runTool("/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups"] + arguments).stdout
        }
        var root: [String: String] = [:]
        #expect(try TestCluster.eventually {
            for node in cluster.names { root[node] = try cluster[node].redis("CLUSTER") }
            return root.values.allSatisfy { $0.contains("payroll") && $0.contains("shared: here") }
        }, "root, an admin, sees every difference: \(root)")
        for node in cluster.names {
            let view = try asNobody(["/usr/bin/redis-cli", "-s", cluster[node].socket, "CLUSTER"])
            #expect(view.contains("shared: here refresh="), "\(node): \(view)")
            #expect(!view.contains("payroll"), "\(node) names a hidden expirable to nobody: \(view)")
            let table = try asNobody([try TestPaths.product("expirablectl").path, "cluster", "--socket", cluster[node].socket])
            #expect(table.contains("shared: here") && !table.contains("payroll"), "\(node): \(table)")
        }
    }

    @Test("check-config and the daemon refuse a certificate that names another node, and warn about a readable key")
    func certificateMustNameNode() throws {
        let pki = try TemporaryDirectory("expirable-pki")
        defer { pki.remove() }
        let ctl = try TestPaths.product("expirablectl").path
        #expect(try runTool(ctl, ["cert", "ca", "--dir", pki.path]).status == 0)
        for name in ["node-a", "node-b"] { #expect(try runTool(ctl, ["cert", "node", name, "--dir", pki.path]).status == 0) }
        func cluster(cert: String) -> String {
            "[cluster]\nnode = \"node-a\"\nlisten = \"127.0.0.2:1\"\npeers = { node-b = \"127.0.0.3:1\" }\nca = \"\(pki.appending("ca.pem"))\"\ncert = \"\(pki.appending("\(cert).pem"))\"\nkey = \"\(pki.appending("\(cert).key"))\"\n"
        }
        let good = try DaemonProcess(expirables: "", cluster: cluster(cert: "node-a"), testPlugins: [], shippedPlugins: [], start: false)
        defer { good.remove() }
        let ok = try runTool(ctl, ["check-config", good.configPath])
        #expect(ok.status == 0)
        #expect(ok.stdout.contains("cluster: node node-a, listening on 127.0.0.2:1, 1 peer, certificate and key ok"))
        chmod(pki.appending("node-a.key"), 0o644)
        #expect(try runTool(ctl, ["check-config", good.configPath]).stderr.contains("warning: cluster.key \(pki.appending("node-a.key")) is readable by group or others (mode 644); chmod 600"))

        let wrong = try DaemonProcess(expirables: "", cluster: cluster(cert: "node-b"), testPlugins: [], shippedPlugins: [], start: false)
        defer { wrong.remove() }
        // The refusal names the file and the line of the key that named the certificate.
        let lines = try String(contentsOfFile: wrong.configPath, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false)
        let line = try #require(lines.firstIndex { $0.hasPrefix("cert =") }) + 1
        let expected = "\(wrong.configPath):\(line): cluster.cert \(pki.appending("node-b.pem")) names node-b, not this node (cluster.node = \"node-a\"); make one with `expirablectl cert node node-a`"
        let refused = try runTool(ctl, ["check-config", wrong.configPath])
        #expect(refused.status == 78)
        #expect(refused.stderr == "expirablectl: \(expected)\n")
        let daemon = try runTool(TestPaths.product("expirabled").path, ["--config", wrong.configPath])
        #expect(daemon.status == 1)
        #expect(daemon.stderr.contains("expirabled: \(expected)"))
    }

    /// A `[cluster]` table for node-a listening on `listen`, with `peers` and the CA, certificate and key given.
    static func table(listen: String = "127.0.0.2:1", peers: String = "node-b = \"127.0.0.3:1\"", ca: String, cert: String, key: String) -> String {
        "[cluster]\nnode = \"node-a\"\nlisten = \"\(listen)\"\npeers = { \(peers) }\nca = \"\(ca)\"\ncert = \"\(cert)\"\nkey = \"\(key)\"\n"
    }

    /// `file:line` of the first line of `daemon`'s configuration starting with `prefix`.
    static func place(_ daemon: DaemonProcess, _ prefix: String) throws -> String {
        let lines = try String(contentsOfFile: daemon.configPath, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false)
        let index = try #require(lines.firstIndex { $0.hasPrefix(prefix) }, "no line starts with \(prefix)")
        return "\(daemon.configPath):\(index + 1)"
    }

    /// Expects check-config and the daemon's start to refuse `daemon`'s configuration with `message` (after the
    /// file and line); `exact`: check-config prints that message and nothing else.
    static func expectRefusal(_ daemon: DaemonProcess, _ message: String, exact: Bool = true, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let check = try daemon.ctl("check-config", daemon.configPath)
        #expect(check.status == 78, "check-config accepted it: \(check.stdout)", sourceLocation: sourceLocation)
        if exact {
            #expect(check.stderr == "expirablectl: \(message)\n", sourceLocation: sourceLocation)
        } else {
            #expect(check.stderr.hasPrefix("expirablectl: \(message)"), "\(check.stderr)", sourceLocation: sourceLocation)
        }
        let start = try runTool(TestPaths.product("expirabled").path, ["--config", daemon.configPath], seconds: 15)
        #expect(start.status == 1, "the daemon started", sourceLocation: sourceLocation)
        #expect(start.stderr.contains("expirabled: \(message)"), "\(start.stderr)", sourceLocation: sourceLocation)
    }

    @Test("check-config and the daemon refuse a certificate that cluster.ca did not sign, either way round")
    func certificateMustBeSignedByCA() throws {
        let pki = try TemporaryDirectory("expirable-pki")
        defer { pki.remove() }
        let rogue = try TemporaryDirectory("expirable-rogue")
        defer { rogue.remove() }
        let ctl = try TestPaths.product("expirablectl").path
        for dir in [pki, rogue] {
            #expect(try runTool(ctl, ["cert", "ca", "--dir", dir.path]).status == 0)
            #expect(try runTool(ctl, ["cert", "node", "node-a", "--dir", dir.path]).status == 0)
        }
        // A foreign CA with this cluster's certificate, and this cluster's CA with a certificate the foreign one signed.
        for (ca, dir) in [(rogue.appending("ca.pem"), pki), (pki.appending("ca.pem"), rogue)] {
            let cert = dir.appending("node-a.pem")
            let daemon = try DaemonProcess(expirables: "", cluster: Self.table(ca: ca, cert: cert, key: dir.appending("node-a.key")),
                                           testPlugins: [], shippedPlugins: [], start: false)
            defer { daemon.remove() }
            try Self.expectRefusal(daemon, "\(try Self.place(daemon, "cert = ")): cluster.cert \(cert) is not signed by cluster.ca \(ca) (OpenSSL: unable to get local issuer certificate); sign it with that CA (`expirablectl cert node node-a --dir DIR`, DIR holding that CA's ca.pem and ca.key) or point cluster.ca at the CA that signed it")
        }
    }

    @Test("check-config and the daemon refuse an expired or not yet valid certificate, with its dates")
    func certificateMustBeValidNow() throws {
        let ctl = try TestPaths.product("expirablectl").path
        let pki = try TemporaryDirectory("expirable-pki")
        defer { pki.remove() }
        #expect(try runTool(ctl, ["cert", "ca", "--dir", pki.path]).status == 0)
        for (notBefore, days) in [(-30, 10), (2, 10)] {
            let dir = try TemporaryDirectory("expirable-dated")
            defer { dir.remove() }
            for file in ["ca.pem", "ca.key"] { try FileManager.default.copyItem(atPath: pki.appending(file), toPath: dir.appending(file)) }
            #expect(try runTool(ctl, ["cert", "node", "node-a", "--dir", dir.path, "--not-before-days=\(notBefore)", "--days", "\(days)"]).status == 0)
            let cert = dir.appending("node-a.pem")
            // The dates as OpenSSL prints them ("notBefore=2026-01-02 03:04:05Z"), in the message's form.
            let dates = try runTool("openssl", ["x509", "-noout", "-startdate", "-enddate", "-dateopt", "iso_8601", "-in", cert]).stdout
                .split(separator: "\n").map { $0.split(separator: "=", maxSplits: 1)[1].dropLast() + " UTC" }
            try #require(dates.count == 2)
            let daemon = try DaemonProcess(expirables: "", cluster: Self.table(ca: dir.appending("ca.pem"), cert: cert, key: dir.appending("node-a.key")),
                                           testPlugins: [], shippedPlugins: [], start: false)
            defer { daemon.remove() }
            let place = try Self.place(daemon, "cert = ")
            let remedy = "make a new one with `expirablectl cert node node-a --dir DIR`, DIR holding the CA's ca.pem and ca.key"
            if notBefore < 0 {
                try Self.expectRefusal(daemon, "\(place): cluster.cert \(cert) expired on \(dates[1]) (valid from \(dates[0]) to \(dates[1])); \(remedy)")
            } else {
                try Self.expectRefusal(daemon, "\(place): cluster.cert \(cert) is not valid yet (valid from \(dates[0]) to \(dates[1])); check this machine's clock, or \(remedy)")
            }
        }
    }

    @Test("check-config and the daemon refuse two peers at one address, and a peer at this node's listen address")
    func peerAddresses() throws {
        let pki = try TemporaryDirectory("expirable-pki")
        defer { pki.remove() }
        let ctl = try TestPaths.product("expirablectl").path
        #expect(try runTool(ctl, ["cert", "ca", "--dir", pki.path]).status == 0)
        #expect(try runTool(ctl, ["cert", "node", "node-a", "--dir", pki.path]).status == 0)
        func daemon(listen: String = "127.0.0.71:27400", peers: String) throws -> DaemonProcess {
            try DaemonProcess(expirables: "", cluster: Self.table(listen: listen, peers: peers, ca: pki.appending("ca.pem"), cert: pki.appending("node-a.pem"), key: pki.appending("node-a.key")),
                              testPlugins: [], shippedPlugins: [], start: false)
        }
        let refused: [(listen: String, peers: String, message: String)] = [
            ("127.0.0.71:27400", "node-b = \"127.0.0.72:27400\", node-c = \"127.0.0.72:27400\"", "cluster.peers.node-c: 127.0.0.72:27400 is also node-b's address; give each peer the address in its own cluster.listen"),
            ("127.0.0.71:27400", "node-b = \"127.0.0.71:27400\", node-c = \"127.0.0.73:27400\"", "cluster.peers.node-b: 127.0.0.71:27400 is this node's own listen address (cluster.listen); give node-b the address in node-b's cluster.listen"),
            // The same address spelled differently is still the same: IPv6 in another form, a host name in other case.
            ("127.0.0.71:27400", "node-b = \"[::1]:7400\", node-c = \"[0:0:0:0:0:0:0:1]:7400\"", "cluster.peers.node-c: [0:0:0:0:0:0:0:1]:7400 is also node-b's address; give each peer the address in its own cluster.listen"),
            // (A name to listen on must resolve on this machine: localhost does.)
            ("localhost:7400", "node-b = \"LOCALHOST:7400\"", "cluster.peers.node-b: LOCALHOST:7400 is this node's own listen address (cluster.listen); give node-b the address in node-b's cluster.listen"),
        ]
        for (listen, peers, message) in refused {
            let node = try daemon(listen: listen, peers: peers)
            defer { node.remove() }
            try Self.expectRefusal(node, "\(try Self.place(node, "peers = ")): \(message)")
        }
        // A wildcard listen may or may not be the address a peer is given: not refused (docs/cluster.md).
        let wildcard = try daemon(listen: "0.0.0.0:27400", peers: "node-b = \"127.0.0.1:27400\"")
        defer { wildcard.remove() }
        #expect(try wildcard.ctl("check-config", wildcard.configPath).status == 0)
    }
}
