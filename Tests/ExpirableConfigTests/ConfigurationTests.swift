import ExpirableConfig
import ExpirableCore
import Foundation
import Testing

@Suite("Configuration")
struct ConfigurationTests {
    static let file = "/etc/expirable/expirable.toml"

    @Test("every key of SPEC §2 decodes into typed values")
    func fullExample() throws {
        let config = try Configuration.parse("""
            [server]
            socket = "/run/expirable/expirable.sock"
            socket_mode = "0640"
            plugin_dir = "plugins"
            max_connections = 100
            max_request_bytes = 4096

            [cluster]
            node = "node-a"
            listen = "0.0.0.0:7400"
            peers = { node-b = "10.0.0.2:7400", node-c = "[::1]:7401" }
            ca = "/etc/expirable/ca.pem"
            cert = "node-a.pem"
            key = "/etc/expirable/node-a.key"

            [expirable.github_access_token]
            plugin = "oauth2"
            scope = "cluster"
            refresh = "eager"
            before_expiry = "30s"
            timeout = "10s"

            [expirable.github_access_token.params]
            token_url = "https://github.example/oauth/token"
            client_id = "abc"
            retries = 3
            argv = ["curl", "-s"]
            verbose = true
            ratio = 0.5
            not_before = 2026-11-21T10:00:00Z

            [expirable.local_one]
            plugin = "command"
            scope = "local"
            timeout = 1500
            """, file: Self.file)
        #expect(config.server.socket == "/run/expirable/expirable.sock")
        #expect(config.server.socketMode == 0o640)
        #expect(config.server.pluginDir == "/etc/expirable/plugins")
        #expect(config.server.maxConnections == 100)
        #expect(config.server.maxRequestBytes == 4096)
        let cluster = try #require(config.cluster)
        #expect(cluster.node == "node-a")
        #expect(cluster.listen == .init(host: "0.0.0.0", port: 7400))
        #expect(cluster.peers.map(\.name) == ["node-b", "node-c"])
        #expect(cluster.peers[1].endpoint == .init(host: "::1", port: 7401))
        #expect(cluster.cert == "/etc/expirable/node-a.pem")
        #expect(cluster.heartbeat == .milliseconds(500))
        #expect(cluster.maxClockOffset == .milliseconds(500))
        #expect(config.expirables.map(\.name) == ["github_access_token", "local_one"])
        let github = config.expirables[0]
        #expect(github.plugin == "oauth2")
        #expect(github.scope == .cluster)
        #expect(github.refresh == .eager(beforeExpiry: .seconds(30)))
        #expect(github.timeout == .seconds(10))
        #expect(github.params.map { "\($0.key)=\($0.value)" } == [
            "argv=curl", "argv=-s", "client_id=abc", "not_before=2026-11-21T10:00:00Z", "ratio=0.5", "retries=3",
            "token_url=https://github.example/oauth/token", "verbose=true",
        ])
        let local = config.expirables[1]
        #expect(local.scope == .local)
        #expect(local.refresh == .lazy)
        #expect(local.timeout == .milliseconds(1500))
    }

    @Test("defaults: server keys, cluster scope, lazy refresh, 30 s timeout, no cluster")
    func defaults() throws {
        let config = try Configuration.parse("[expirable.a]\nplugin = \"file\"\n", file: Self.file)
        #expect(config.server.socket == "/run/expirable/expirable.sock")
        #expect(config.server.socketMode == 0o660)
        #expect(config.server.pluginDir == "/usr/local/lib/expirable")
        #expect(config.server.maxConnections == nil, "the daemon derives it from its limit on open files")
        #expect(config.server.maxOutputBytes == 1024 * 1024)
        #expect(config.server.idleTimeout == .seconds(300))
        #expect(config.server.requestTimeout == .seconds(10))
        #expect(config.cluster == nil)
        #expect(config.expirables[0].scope == .cluster)
        #expect(config.expirables[0].refresh == .lazy)
        #expect(config.expirables[0].timeout == .seconds(30))
        #expect(config.expirables[0].params.isEmpty)
        #expect(config.expirables[0].isolation == Configuration.Server.defaultIsolation)
    }

    @Test("[metrics] metrics_keys is off by default and true turns it on (SPEC §10)")
    func metricsKeys() throws {
        let off = try Configuration.parse("[metrics]\nlisten = \"127.0.0.1:9477\"\n", file: Self.file)
        #expect(off.metrics?.listen == .init(host: "127.0.0.1", port: 9477))
        #expect(off.metrics?.keys == false)
        let on = try Configuration.parse("[metrics]\nlisten = \"127.0.0.1:9477\"\nmetrics_keys = true\n", file: Self.file)
        #expect(on.metrics?.keys == true)
    }

    @Test("isolation in [server] applies to every expirable, and an expirable's own overrides it")
    func isolation() throws {
        let config = try Configuration.parse("""
            [server]
            isolation = "process"
            [expirable.a]
            plugin = "file"
            [expirable.b]
            plugin = "file"
            isolation = "inline"
            """, file: Self.file)
        #expect(config.server.isolation == .process)
        #expect(config.expirables.map(\.isolation) == [.process, .inline])
    }

    @Test("max_memory takes binary sizes or bytes, max_cpu a duration; plugin_user and plugin_group resolve to ids")
    func helperLimitsAndAccount() throws {
        let config = try Configuration.parse("""
            [server]
            plugin_user = "nobody"
            [expirable.a]
            plugin = "file"
            max_memory = "64MiB"
            max_cpu = "2s"
            [expirable.b]
            plugin = "file"
            max_memory = "1G"
            [expirable.c]
            plugin = "file"
            max_memory = 40000000
            """, file: "F")
        #expect(config.expirables.map(\.maxMemory) == [64 << 20, 1 << 30, 40_000_000])
        #expect(config.expirables.map(\.maxCPU) == [.seconds(2), nil, nil])
        let nobody = try #require(getpwnam("nobody")).pointee
        #expect(config.server.pluginAccount == .init(user: "nobody", uid: nobody.pw_uid, group: String(cString: getgrgid(nobody.pw_gid)!.pointee.gr_name), gid: nobody.pw_gid))
        let byNumber = try Configuration.parse("[server]\nplugin_user = 0\nplugin_group = \"0\"\n", file: "F")
        #expect(byNumber.server.pluginAccount == .init(user: "root", uid: 0, group: "root", gid: 0))
        let groupOnly = try Configuration.parse("[server]\nplugin_group = \"root\"\n", file: "F")
        #expect(groupOnly.server.pluginAccount == .init(user: nil, uid: nil, group: "root", gid: 0))
        #expect(try Configuration.parse("", file: "F").server.pluginAccount == nil)
    }

    @Test("single_flight defaults to quorum for the oauth2 plugin rotating refresh tokens in cluster scope, else available")
    func singleFlightDefaults() throws {
        let config = try Configuration.parse("""
            [expirable.rotating]
            plugin = "oauth2"
            [expirable.rotating.params]
            grant = "refresh_token"
            [expirable.credentials]
            plugin = "oauth2"
            [expirable.credentials.params]
            grant = "client_credentials"
            [expirable.local_rotating]
            plugin = "oauth2"
            scope = "local"
            [expirable.local_rotating.params]
            grant = "refresh_token"
            [expirable.chosen]
            plugin = "oauth2"
            single_flight = "available"
            [expirable.chosen.params]
            grant = "refresh_token"
            """, file: "F")
        #expect(config.expirables.map(\.singleFlight) == [.available, .available, .available, .quorum], "\(config.expirables.map(\.name))")
    }

    @Test("single_flight defaults to quorum for the oauth2 plugin however it is named: liboauth2.so, liboauth2, a link to it")
    func singleFlightDefaultFollowsThePluginFile() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("expirable-sf-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Data("oauth2".utf8).write(to: URL(fileURLWithPath: dir + "/liboauth2.so"))
        try Data("other".utf8).write(to: URL(fileURLWithPath: dir + "/libother.so"))
        try FileManager.default.createSymbolicLink(atPath: dir + "/idp.so", withDestinationPath: "liboauth2.so")
        var text = "[server]\nplugin_dir = \"\(dir)\"\n"
        for (name, plugin) in [("a", "oauth2"), ("b", "liboauth2.so"), ("c", "liboauth2"), ("d", "idp"), ("e", "other")] {
            text += "[expirable.\(name)]\nplugin = \"\(plugin)\"\n[expirable.\(name).params]\ngrant = \"refresh_token\"\n"
        }
        let config = try Configuration.parse(text, file: "F")
        #expect(config.expirables.map(\.singleFlight) == [.quorum, .quorum, .quorum, .quorum, .available], "\(config.expirables.map(\.name))")
    }

    static let refusals: [(String, String)] = [
        // The first ':' of NAME:KEY splits a keyed family's name from the key, and list shows a family as NAME:*.
        ("[expirable.\"a:b\"]\nplugin = \"file\"\n",
         "F:1: expirable.a:b: a name may not hold ':' or '*': NAME:KEY reads a keyed family's member and NAME:* names the family; rename it, \"a_b\" say"),
        ("[expirable.\"x*\"]\nplugin = \"file\"\n",
         "F:1: expirable.x*: a name may not hold ':' or '*': NAME:KEY reads a keyed family's member and NAME:* names the family; rename it, \"x_\" say"),
        ("[expirable.a]\nplugin = \"file\"\ntimeout = \"10\"\n",
         "F:3: expirable.a.timeout: \"10\" has no unit; write \"10s\" or \"10ms\", or the integer 10 for milliseconds"),
        ("[server]\nidle_timeout = \"300\"\n",
         "F:2: server.idle_timeout: \"300\" has no unit; write \"300s\" or \"300ms\", or the integer 300 for milliseconds"),
        ("[expirable.a]\nplugin = \"file\"\nrefresh = \"eager\"\nbefore_expiry = \"5000\"\n",
         "F:4: expirable.a.before_expiry: \"5000\" has no unit; write \"5000s\" or \"5000ms\", or the integer 5000 for milliseconds"),
        ("[server]\nsocket = \"/tmp/x.sock\"\nsockt_mode = \"0660\"\n",
         "F:3: server.sockt_mode: unknown key in [server]; expected one of: admins, idle_timeout, isolation, max_connections, max_output_bytes, max_request_bytes, plugin_dir, plugin_group, plugin_user, request_timeout, socket, socket_mode, state_dir, state_key_file"),
        ("[server]\nmax_connections = 0\n",
         "F:2: server.max_connections: expected an integer from 1 to 1000000, got 0"),
        ("[expirable.a]\nplugin = \"x\\u0000junk\"\n",
         "F:2: expirable.a.plugin: expected a plugin name inside plugin_dir such as \"command\", without \"/\" or control characters, got \"x\\0junk\""),
        ("[expirable.a]\nplugin = \"x\\njunk\"\n",
         "F:2: expirable.a.plugin: expected a plugin name inside plugin_dir such as \"command\", without \"/\" or control characters, got \"x\\njunk\""),
        ("[server]\nmax_output_bytes = 100\n",
         "F:2: server.max_output_bytes: expected an integer from 65536 to 1073741824, got 100"),
        ("[server]\nidle_timeout = \"soon\"\n",
         "F:2: server.idle_timeout: expected a duration such as \"250ms\", \"30s\", \"5m\", \"1h\" or an integer of milliseconds, got \"soon\""),
        ("[server]\nrequest_timeout = 0\n",
         "F:2: server.request_timeout: expected a duration above zero such as \"10s\", got 0"),
        ("[servr]\n",
         "F:1: servr: unknown key at the top level; expected one of: cluster, expirable, metrics, server, sink"),
        ("[server]\nsocket_mode = \"rw-rw----\"\n",
         "F:2: server.socket_mode: expected an octal file mode string such as \"0660\", got \"rw-rw----\""),
        ("[server]\nsocket = 5\n",
         "F:2: server.socket: expected a string, got 5"),
        ("[expirable.a]\nplugin = \"file\"\ntimeout = \"ten seconds\"\n",
         "F:3: expirable.a.timeout: expected a duration such as \"250ms\", \"30s\", \"5m\", \"1h\" or an integer of milliseconds, got \"ten seconds\""),
        ("[expirable.a]\nplugin = \"file\"\ntimeout = \"0s\"\n",
         "F:3: expirable.a.timeout: expected a duration above zero"),
        ("[expirable.a]\nplugin = \"file\"\nrefresh = \"eager\"\n",
         "F:1: expirable.a.before_expiry: is missing; expected a duration such as \"30s\" or a share of the value's lifetime such as \"20%\", required with refresh = \"eager\""),
        ("[expirable.a]\nplugin = \"file\"\nbefore_expiry = \"5s\"\n",
         "F:3: expirable.a.before_expiry: only applies with refresh = \"eager\"; remove it or set refresh = \"eager\""),
        ("[expirable.a]\nplugin = \"file\"\nrefresh = \"sometimes\"\n",
         "F:3: expirable.a.refresh: expected \"lazy\" or \"eager\", got \"sometimes\""),
        ("[server]\nisolation = \"container\"\n",
         "F:2: server.isolation: expected \"process\" or \"inline\", got \"container\""),
        ("[expirable.a]\nplugin = \"file\"\nmax_memory = \"1MiB\"\n",
         "F:3: expirable.a.max_memory: expected at least 32MiB, what a plugin helper needs before it loads the plugin; got \"1MiB\""),
        ("[expirable.a]\nplugin = \"file\"\nmax_memory = \"64 MB\"\n",
         "F:3: expirable.a.max_memory: expected a size such as \"64MiB\", \"512KiB\", \"1GiB\" (binary units; \"64M\" is the same as \"64MiB\") or an integer of bytes, got \"64 MB\""),
        ("[expirable.a]\nplugin = \"file\"\nmax_cpu = \"500ms\"\n",
         "F:3: expirable.a.max_cpu: expected at least \"1s\": the kernel counts CPU limits in whole seconds; got \"500ms\""),
        ("[expirable.a]\nplugin = \"file\"\nisolation = \"inline\"\nmax_cpu = \"5s\"\n",
         "F:4: expirable.a.max_cpu: limits a plugin helper, and this expirable's plugin runs inline in the daemon; remove max_cpu or set isolation = \"process\""),
        ("[server]\nplugin_user = \"no-such-user-x\"\n",
         "F:2: server.plugin_user: no user \"no-such-user-x\" on this machine; create it (useradd --system --no-create-home no-such-user-x) or name an existing user"),
        ("[server]\nplugin_group = \"no-such-group-x\"\n",
         "F:2: server.plugin_group: no group \"no-such-group-x\" on this machine; create it (groupadd --system no-such-group-x) or name an existing group"),
        ("[expirable.a]\nplugin = \"file\"\nscope = \"local\"\nsingle_flight = \"quorum\"\n",
         "F:4: expirable.a.single_flight: \"quorum\" keeps plugin calls single across a cluster, and this expirable has scope = \"local\"; remove single_flight or set scope = \"cluster\""),
        ("[expirable.a]\nplugin = \"file\"\nisolation = \"inline\"\nsingle_flight = \"quorum\"\n",
         "F:4: expirable.a.single_flight: \"quorum\" needs isolation = \"process\": a call that outlives its lease must be stopped, and only a helper can be killed; remove isolation = \"inline\""),
        ("[expirable.a]\nplugin = \"file\"\nsingle_flight = \"majority\"\n",
         "F:3: expirable.a.single_flight: expected \"available\" or \"quorum\", got \"majority\""),
        ("[server]\nstate_key_file = \"/etc/expirable/state.key\"\n",
         "F:2: server.state_key_file: only applies with state_dir; set state_dir (where plugin states are kept) or remove state_key_file"),
        ("[expirable.a]\nplugin = \"file\"\nmax_keys = 10\n",
         "F:3: expirable.a.max_keys: only applies with keyed = true; set keyed = true or remove max_keys"),
        ("[expirable.a]\nplugin = \"file\"\nkeyed = \"yes\"\n",
         "F:3: expirable.a.keyed: expected true or false, got \"yes\""),
        ("[server]\nplugin_user = \"a:b\"\n",
         "F:2: server.plugin_user: expected a user or group name or a numeric id, got \"a:b\""),
        ("[expirable.a]\nplugin = \"file\"\nisolation = 1\n",
         "F:3: expirable.a.isolation: expected \"process\" or \"inline\", got 1"),
        ("[expirable.a]\nplugin = \"file\"\nscope = \"global\"\n",
         "F:3: expirable.a.scope: expected \"cluster\" or \"local\", got \"global\""),
        ("[expirable.a]\nscope = \"local\"\n",
         "F:1: expirable.a.plugin: is missing; expected the name of a plugin in plugin_dir, as plugin = \"command\""),
        ("[expirable.a]\nplugin = \"../../tmp/evil\"\n",
         "F:2: expirable.a.plugin: expected a plugin name inside plugin_dir such as \"command\", without \"/\" or control characters, got \"../../tmp/evil\""),
        ("[expirable.a]\nplugin = \"file\"\ncolour = \"blue\"\n",
         "F:3: expirable.a.colour: unknown key in [expirable.a]; expected one of: allow, before_expiry, expiry_margin, isolation, jitter, key_idle, keyed, max_cpu, max_keys, max_memory, params, plugin, prefetch, refresh, retry_backoff, retry_interval, scope, single_flight, stale_if_error, timeout"),
        ("[expirable.a]\nplugin = \"file\"\n[expirable.a.params]\nnested = { x = 1 }\n",
         "F:4: expirable.a.params.nested: expected a string, number, boolean or array of them, got a table"),
        ("expirable = \"token\"\n",
         "F:1: expirable: expected a table, got \"token\""),
        ("[cluster]\nnode = \"a\"\nlisten = \"0.0.0.0\"\npeers = { b = \"127.0.0.2:7400\" }\nca = \"ca.pem\"\ncert = \"a.pem\"\nkey = \"a.key\"\n",
         "F:3: cluster.listen: expected \"host:port\" with a port from 1 to 65535 (IPv6 as \"[::1]:7400\"), got \"0.0.0.0\""),
        ("[cluster]\nnode = \"a\"\nlisten = \"0.0.0.0:7400\"\npeers = { b = \"127.0.0.2:99999\" }\nca = \"ca.pem\"\ncert = \"a.pem\"\nkey = \"a.key\"\n",
         "F:4: cluster.peers.b: expected \"host:port\" with a port from 1 to 65535 (IPv6 as \"[::1]:7400\"), got \"127.0.0.2:99999\""),
        ("[cluster]\nnode = \"a\"\nlisten = \"0.0.0.0:7400\"\npeers = { a = \"127.0.0.2:7400\" }\nca = \"ca.pem\"\ncert = \"a.pem\"\nkey = \"a.key\"\n",
         "F:4: cluster.peers.a: is this node itself (cluster.node = \"a\"); list only the other nodes"),
        ("[cluster]\nnode = \"a\"\nlisten = \"0.0.0.0:7400\"\npeers = { b = \"127.0.0.2:7400\" }\nca = \"ca.pem\"\ncert = \"a.pem\"\n",
         "F:1: cluster.key: is missing; expected a path to a PEM file"),
        ("[cluster]\nnode = \"node a\"\n",
         "F:2: cluster.node: expected a node name of 1 to 64 letters, digits, '-', '_' and '.', beginning and ending with a letter or digit, no '..', got \"node a\""),
        ("[cluster]\nnode = \"a\"\nlisten = \"0.0.0.0:7400\"\npeers = {}\n",
         "F:4: cluster.peers: expected at least one peer, as peers = { node-b = \"10.0.0.2:7400\" }; remove [cluster] to run alone"),
        ("[cluster]\nnode = \"a\"\nlisten = \"0.0.0.0:7400\"\npeers = { b = \"127.0.0.2:7400\" }\nca = \"ca.pem\"\ncert = \"a.pem\"\nkey = \"a.key\"\nheartbeat = \"10ms\"\n",
         "F:8: cluster.heartbeat: expected a duration from 50ms to 60s"),
        ("[cluster]\nnode = \"a\"\nlisten = \"0.0.0.0:7400\"\npeers = { b = \"127.0.0.2:7400\" }\nca = \"ca.pem\"\ncert = \"a.pem\"\nkey = \"a.key\"\nmax_clock_offset = \"0ms\"\n",
         "F:8: cluster.max_clock_offset: expected a duration of at least 1ms, as \"500ms\""),
        ("[metrics]\nlisten = \"127.0.0.1:9477\"\nmetrics_keys = \"yes\"\n",
         "F:3: metrics.metrics_keys: expected true or false, got \"yes\""),
        ("[metrics]\nlisten = \"127.0.0.1:9477\"\nmetric_keys = true\n",
         "F:3: metrics.metric_keys: unknown key in [metrics]; expected one of: listen, metrics_keys"),
        // Names: no Unicode space, invisible (format) or control character, which would show as another name.
        ("[expirable.\"a\u{00A0}b\"]\nplugin = \"file\"\n",
         "F:1: expirable.a\u{00A0}b: expected a name of 1 to 200 characters without spaces, invisible or control characters; it holds U+00A0 at character 2; rename it"),
        ("[expirable.\"a\u{3000}b\"]\nplugin = \"file\"\n",
         "F:1: expirable.a\u{3000}b: expected a name of 1 to 200 characters without spaces, invisible or control characters; it holds U+3000 at character 2; rename it"),
        ("[expirable.\"ab\u{200B}\"]\nplugin = \"file\"\n",
         "F:1: expirable.ab\u{200B}: expected a name of 1 to 200 characters without spaces, invisible or control characters; it holds U+200B at character 3; rename it"),
        ("[expirable.\"\u{202E}ab\"]\nplugin = \"file\"\n",
         "F:1: expirable.\u{202E}ab: expected a name of 1 to 200 characters without spaces, invisible or control characters; it holds U+202E at character 1; rename it"),
        ("[expirable.\"a\u{0085}b\"]\nplugin = \"file\"\n",
         "F:1: expirable.a\\u0085b: expected a name of 1 to 200 characters without spaces, invisible or control characters; it holds U+0085 at character 2; rename it"),
        ("[expirable.\"a b\"]\nplugin = \"file\"\n",
         "F:1: expirable.a b: expected a name of 1 to 200 characters without spaces, invisible or control characters; it holds U+0020 at character 2; rename it"),
        // prefetch on a keyed family: no value to fetch before a key is asked for.
        ("[expirable.f]\nplugin = \"file\"\nkeyed = true\nrefresh = \"eager\"\nbefore_expiry = \"5s\"\nprefetch = true\n",
         "F:6: expirable.f.prefetch: a keyed family has nothing to prefetch: its values are fetched per key, when NAME:KEY is first asked for; remove prefetch"),
        // Errors that say what to write.
        ("[cluster]\nnode = \"a\"\n",
         "F:1: cluster.listen: is missing; expected \"host:port\" where this node listens for its peers, as listen = \"0.0.0.0:7400\""),
        ("[cluster]\nlisten = \"0.0.0.0:7400\"\n",
         "F:1: cluster.node: is missing; expected this node's name, as node = \"node-a\" (the name its peers give it)"),
        ("[cluster]\nnode = \"a\"\nlisten = \"0.0.0.0:7400\"\n",
         "F:1: cluster.peers: is missing; expected the other nodes' names and addresses, as peers = { node-b = \"10.0.0.2:7400\" }"),
        ("[metrics]\n",
         "F:1: metrics.listen: is missing; expected \"host:port\" to serve metrics on, as listen = \"127.0.0.1:9477\"; or remove [metrics]"),
        ("[[expirable]]\nplugin = \"command\"\n",
         "F:1: expirable: expected a table, got an array of tables; write each expirable as [expirable.NAME], not [[expirable]]"),
        ("[server]\nplugin_dir = []\n",
         "F:2: server.plugin_dir: expected a string, got an array"),
        ("[server]\nsocket_mode = 0o7777\n",
         "F:2: server.socket_mode: expected an octal file mode string such as \"0660\", got 0o7777"),
        ("[expirable.a]\nplugin = \"file\"\ntimeout = \"9999999999999999999h\"\n",
         "F:3: expirable.a.timeout: \"9999999999999999999h\" is longer than the longest duration (at most 2562047h, about 292 years)"),
        ("[expirable.a]\nplugin = \"file\"\ntimeout = \"99999999999999999999999ms\"\n",
         "F:3: expirable.a.timeout: \"99999999999999999999999ms\" is longer than the longest duration (at most 2562047h, about 292 years)"),
        ("[server]\nsocket = \"/tmp/a\\u0000b.sock\"\n",
         "F:2: server.socket: a path may not hold a NUL character (\\0); remove it"),
        ("[server]\nsocket = \"\"\n",
         "F:2: server.socket: expected a non-empty path"),
        ("[server]\nplugin_user = 99999\n",
         "F:2: server.plugin_user: no user has uid 99999 on this machine; name an existing user or uid (getent passwd lists them)"),
        ("[server]\nplugin_group = 99999\n",
         "F:2: server.plugin_group: no group has gid 99999 on this machine; name an existing group or gid (getent group lists them)"),
    ]

    @Test("freshness keys (SPEC §3 items 13–17) decode, with before_expiry and jitter as durations or shares")
    func freshnessKeys() throws {
        let config = try Configuration.parse("""
            [expirable.a]
            plugin = "oauth2"
            refresh = "eager"
            before_expiry = "20%"
            jitter = "12.5%"
            expiry_margin = "30s"
            prefetch = false
            stale_if_error = "5m"
            retry_interval = "2s"
            retry_backoff = "30s"

            [expirable.b]
            plugin = "oauth2"
            refresh = "eager"
            before_expiry = 30000
            jitter = "10s"
            """, file: Self.file)
        let a = config.expirables[0], b = config.expirables[1]
        #expect(a.refresh == .eager(beforeExpiry: .share(basisPoints: 2000)))
        #expect(a.freshness == FreshnessPolicy(expiryMargin: .seconds(30), jitter: .share(basisPoints: 1250), prefetch: false,
                                               staleIfError: .seconds(300), retryInterval: .seconds(2), retryBackoff: .seconds(30)))
        #expect(b.refresh == .eager(beforeExpiry: .seconds(30)))
        #expect(b.freshness.jitter == .seconds(10))
        #expect(b.freshness.prefetch, "eager values are prefetched unless told otherwise")
    }

    @Test("freshness defaults: no margin, no jitter, prefetch for eager only, no stale serving, retry_interval 1s, no backoff")
    func freshnessDefaults() throws {
        let config = try Configuration.parse("""
            [expirable.lazy]
            plugin = "file"
            [expirable.eager]
            plugin = "file"
            refresh = "eager"
            before_expiry = "1m"
            """, file: Self.file)
        let eager = config.expirables[0], lazy = config.expirables[1]
        #expect(lazy.freshness == FreshnessPolicy())
        #expect(lazy.freshness.retryInterval == .seconds(1))
        #expect(lazy.freshness.retryBackoff == nil)
        #expect(lazy.freshness.prefetch == false)
        #expect(eager.freshness.prefetch == true)
        #expect(eager.freshness.expiryMargin == .zero && eager.freshness.staleIfError == .zero && eager.freshness.jitter.isZero)
    }

    @Test("an eager keyed family is not prefetched by default: it has no value before a key is asked for")
    func keyedFamilyNotPrefetched() throws {
        let config = try Configuration.parse("[expirable.f]\nplugin = \"file\"\nkeyed = true\nrefresh = \"eager\"\nbefore_expiry = \"5s\"\n", file: Self.file)
        #expect(config.expirables[0].freshness.prefetch == false)
        let explicit = try Configuration.parse("[expirable.f]\nplugin = \"file\"\nkeyed = true\nrefresh = \"eager\"\nbefore_expiry = \"5s\"\nprefetch = false\n", file: Self.file)
        #expect(explicit.expirables[0].freshness.prefetch == false)
    }

    static let freshnessRefusals: [(String, String)] = [
        // A share takes no sign: "+20%" is not 20 % written otherwise, and "-0.5%" is not 0.5 %.
        ("[expirable.a]\nplugin = \"file\"\nrefresh = \"eager\"\nbefore_expiry = \"+20%\"\n",
         "F:4: expirable.a.before_expiry: expected a share without a sign, such as \"20%\", got \"+20%\""),
        ("[expirable.a]\nplugin = \"file\"\nrefresh = \"eager\"\nbefore_expiry = \"1s\"\njitter = \"-0.5%\"\n",
         "F:5: expirable.a.jitter: expected a share without a sign, such as \"0.5%\", got \"-0.5%\""),
        ("[expirable.a]\nplugin = \"file\"\nrefresh = \"eager\"\nbefore_expiry = \"-5%\"\n",
         "F:4: expirable.a.before_expiry: expected a share without a sign, such as \"5%\", got \"-5%\""),
        ("[expirable.a]\nplugin = \"file\"\nrefresh = \"eager\"\nbefore_expiry = \"100%\"\n",
         "F:4: expirable.a.before_expiry: expected a share above 0% and below 100% of the value's lifetime, got \"100%\""),
        ("[expirable.a]\nplugin = \"file\"\nrefresh = \"eager\"\nbefore_expiry = \"0%\"\n",
         "F:4: expirable.a.before_expiry: expected a share above 0% and below 100% of the value's lifetime, got \"0%\""),
        ("[expirable.a]\nplugin = \"file\"\nrefresh = \"eager\"\nbefore_expiry = \"twenty%\"\n",
         "F:4: expirable.a.before_expiry: expected a share such as \"20%\" or \"12.5%\", got \"twenty%\""),
        ("[expirable.a]\nplugin = \"file\"\nrefresh = \"eager\"\nbefore_expiry = \"1s\"\njitter = \"soon\"\n",
         "F:5: expirable.a.jitter: expected a duration such as \"30s\" or a share of the value's lifetime such as \"20%\", got \"soon\""),
        ("[expirable.a]\nplugin = \"file\"\nrefresh = \"eager\"\nbefore_expiry = \"60%\"\njitter = \"40%\"\n",
         "F:5: expirable.a.jitter: before_expiry (60%) and jitter (40%) add up to 100% of the lifetime or more, so a refresh could be due the moment a value arrives; lower one of them"),
        ("[expirable.a]\nplugin = \"file\"\njitter = \"10s\"\n",
         "F:3: expirable.a.jitter: only applies with refresh = \"eager\" (it spreads eager refreshes); remove it or set refresh = \"eager\""),
        ("[expirable.a]\nplugin = \"file\"\nprefetch = \"yes\"\n",
         "F:3: expirable.a.prefetch: expected true or false, got \"yes\""),
        ("[expirable.a]\nplugin = \"file\"\nexpiry_margin = \"-5s\"\n",
         "F:3: expirable.a.expiry_margin: expected a duration such as \"250ms\", \"30s\", \"5m\", \"1h\" or an integer of milliseconds, got \"-5s\""),
        ("[expirable.a]\nplugin = \"file\"\nstale_if_error = true\n",
         "F:3: expirable.a.stale_if_error: expected a duration such as \"250ms\", \"30s\", \"5m\", \"1h\" or an integer of milliseconds, got a boolean"),
        ("[expirable.a]\nplugin = \"file\"\nretry_interval = \"0s\"\n",
         "F:3: expirable.a.retry_interval: expected a duration above zero such as \"1s\": it is the least time between two calls after a failure"),
        ("[expirable.a]\nplugin = \"file\"\nretry_interval = \"5s\"\nretry_backoff = \"2s\"\n",
         "F:4: expirable.a.retry_backoff: is the bound the retry interval doubles up to, so it must be at least retry_interval (5000 ms); got 2000 ms"),
    ]

    @Test("bad freshness settings are refused with file, line, key and what was expected", arguments: freshnessRefusals)
    func freshnessRefused(text: String, expected: String) {
        do {
            _ = try Configuration.parse(text, file: "F")
            Issue.record("expected a refusal: \(expected)")
        } catch {
            #expect(error.description == expected)
        }
    }

    @Test("bad configurations are refused with file, line, key and what was expected", arguments: refusals)
    func refused(text: String, expected: String) {
        #expect(throws: ConfigurationError.self) { try Configuration.parse(text, file: "F") }
        do {
            _ = try Configuration.parse(text, file: "F")
        } catch {
            #expect(error.description == expected)
        }
    }

    @Test("durations: strings with a unit or integers of milliseconds; \"0\" needs no unit, being zero in every unit")
    func durationForms() throws {
        let config = try Configuration.parse("""
            [server]
            idle_timeout = "0"
            [expirable.a]
            plugin = "file"
            timeout = 1500
            stale_if_error = "0"
            retry_interval = "250ms"
            """, file: Self.file)
        #expect(config.server.idleTimeout == .zero)
        #expect(config.expirables[0].timeout == .milliseconds(1500))
        #expect(config.expirables[0].freshness.staleIfError == .zero)
        #expect(config.expirables[0].freshness.retryInterval == .milliseconds(250))
    }

    @Test("a TOML syntax error names the file and the parser's line and column")
    func syntaxError() {
        do {
            _ = try Configuration.parse("[server]\nsocket = \"/tmp/x.sock\"\nplugin_dir = \n", file: "F")
            Issue.record("expected a syntax error")
        } catch {
            #expect(error.file == "F")
            #expect(error.line == 3)
            #expect(error.description.hasPrefix("F:3: TOML syntax error at column "))
        }
    }

    @Test("a duplicate key is a syntax error with its line")
    func duplicateKey() {
        do {
            _ = try Configuration.parse("[expirable.a]\nplugin = \"file\"\nplugin = \"command\"\n", file: "F")
            Issue.record("expected an error")
        } catch {
            #expect(error.line == 3)
            #expect(error.description.contains("TOML syntax error"))
        }
    }

    @Test("an unreadable file is refused with its path, the reason and what to check; one not UTF-8 with the line of the bad byte")
    func unreadableFiles() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("expirable-config-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let latin1 = dir.appendingPathComponent("latin1.toml")
        try Data([0x23, 0x20, 0xE9, 0x0A]).write(to: latin1)  // "# é" in Latin-1
        let big = dir.appendingPathComponent("big.toml")
        try Data(repeating: 0x23, count: (1 << 20) + 1).write(to: big)
        for (path, reason) in [
            ("/nonexistent/expirable.toml", "no such file"),
            (dir.path, "it is a directory"),
            (big.path, "larger than 1 MiB"),
        ] {
            do {
                _ = try Configuration.load(path: path)
                Issue.record("expected an error for \(path)")
            } catch {
                #expect(error.description == "\(path): cannot read the configuration (\(reason)); check the path")
            }
        }
        // A file that is read but is not UTF-8 text: the line and column of the first bad byte.
        do {
            _ = try Configuration.load(path: latin1.path)
            Issue.record("expected an error for \(latin1.path)")
        } catch {
            #expect(error.description == "\(latin1.path):1: not UTF-8 text: the byte 0xE9 at column 3 is not valid UTF-8; save the file as UTF-8")
        }
    }

    @Test("relative paths resolve against the configuration file's directory")
    func relativePaths() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("expirable-config-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("expirable.toml")
        try "[server]\nsocket = \"run/e.sock\"\nplugin_dir = \"../plugins\"\n".write(to: file, atomically: true, encoding: .utf8)
        let config = try Configuration.load(path: file.path)
        #expect(config.server.socket == dir.path + "/run/e.sock")
        #expect(config.server.pluginDir == dir.deletingLastPathComponent().path + "/plugins")
    }
}
