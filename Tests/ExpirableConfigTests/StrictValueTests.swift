import ExpirableConfig
import Testing

/// Issue 13 item 6: values parsed strictly, control characters escaped, and every refusal naming file and line.
@Suite("Configuration: strict values and messages")
struct StrictValueTests {
    static func refusal(_ text: String) -> String? {
        do {
            _ = try Configuration.parse(text, file: "F")
            return nil
        } catch {
            return error.description
        }
    }

    static let cluster = "[cluster]\nnode = \"a\"\npeers = { b = \"127.0.0.2:7400\" }\nca = \"ca.pem\"\ncert = \"a.pem\"\nkey = \"a.key\"\n"

    @Test("socket_mode is three or four octal digits (or a TOML octal integer), nothing else", arguments: [
        ("\"+0660\"", false), ("\" 660\"", false), ("\"0660 \"", false), ("\"06600\"", false), ("\"66\"", false), ("\"0o660\"", false),
        ("\"-660\"", false), ("\"0868\"", false), ("\"1660\"", false), ("-1", false),
        ("\"0660\"", true), ("\"660\"", true), ("\"0600\"", true), ("0o640", true),
    ])
    func socketMode(value: String, accepted: Bool) {
        let message = Self.refusal("[server]\nsocket_mode = \(value)\n")
        if accepted {
            #expect(message == nil)
        } else {
            #expect(message?.hasPrefix("F:2: server.socket_mode: expected an octal file mode string such as \"0660\", got ") == true, "\(message ?? "accepted")")
        }
    }

    @Test("listen and peer endpoints are host:port with one colon, IPv6 only in brackets", arguments: [
        ("127.0.0.2:7400:1", "F:2: cluster.listen: expected one \":\" before the port, got \"127.0.0.2:7400:1\"; write an IPv6 address in brackets, as \"[::1]:7400\""),
        ("::1:7400", "F:2: cluster.listen: expected one \":\" before the port, got \"::1:7400\"; write an IPv6 address in brackets, as \"[::1]:7400\""),
        ("[example.com]:7400", "F:2: cluster.listen: expected an IPv6 address inside the brackets, got \"[example.com]:7400\""),
        ("[::1:7400", "F:2: cluster.listen: expected \"host:port\" with a port from 1 to 65535 (IPv6 as \"[::1]:7400\"), got \"[::1:7400\""),
        ("host:+80", "F:2: cluster.listen: expected \"host:port\" with a port from 1 to 65535 (IPv6 as \"[::1]:7400\"), got \"host:+80\""),
        ("host:7400 ", "F:2: cluster.listen: expected \"host:port\" with a port from 1 to 65535 (IPv6 as \"[::1]:7400\"), got \"host:7400 \""),
        ("ho st:7400", "F:2: cluster.listen: expected \"host:port\" with a port from 1 to 65535 (IPv6 as \"[::1]:7400\"), got \"ho st:7400\""),
        ("host:000007400", "F:2: cluster.listen: expected \"host:port\" with a port from 1 to 65535 (IPv6 as \"[::1]:7400\"), got \"host:000007400\""),
    ])
    func endpoints(value: String, message: String) {
        #expect(Self.refusal("[cluster]\nlisten = \"\(value)\"\n" + Self.cluster.dropFirst("[cluster]\n".count)) == message)
    }

    @Test("good endpoints decode: a name this machine resolves, IPv4, IPv6 in brackets")
    func goodEndpoints() throws {
        for value in ["localhost:7400", "0.0.0.0:1", "[::1]:65535", "[fe80::1]:7400"] {
            let config = try Configuration.parse("[cluster]\nlisten = \"\(value)\"\n" + Self.cluster.dropFirst("[cluster]\n".count), file: "F")
            #expect(config.cluster?.listen.description == value)
        }
    }

    @Test("an address to listen on that is no IP address and does not resolve is refused, as the daemon could not bind it")
    func unresolvableListen() throws {
        let metrics = try #require(Self.refusal("[metrics]\nlisten = \"999.0.0.1:9400\"\n"))
        #expect(metrics.hasPrefix("F:2: metrics.listen: cannot listen on \"999.0.0.1:9400\": \"999.0.0.1\" is not an IP address, and it does not resolve ("), "\(metrics)")
        #expect(metrics.hasSuffix("use an address of this machine, such as \"127.0.0.1:9400\" or \"0.0.0.0:9400\""), "\(metrics)")
        let cluster = try #require(Self.refusal("[cluster]\nlisten = \"no-such-host.invalid:7400\"\n" + Self.cluster.dropFirst("[cluster]\n".count)))
        #expect(cluster.hasPrefix("F:2: cluster.listen: cannot listen on \"no-such-host.invalid:7400\""), "\(cluster)")
        #expect(Self.refusal("[metrics]\nlisten = \"127.0.0.1:9400\"\n") == nil)
    }

    @Test("a duration longer than a clock counts (about 292 years) is refused, not cut short unseen", arguments: [
        ("9223372036854775807", "9223372036854775807"), ("\"9223372036855ms\"", "\"9223372036855ms\""), ("\"2562048h\"", "\"2562048h\""),
    ])
    func tooLong(value: String, shown: String) throws {
        for key in ["expiry_margin", "timeout", "retry_interval", "jitter"] {
            let message = Self.refusal("[expirable.x]\nplugin = \"p\"\n\(key) = \(value)\n")
            #expect(message == "F:3: expirable.x.\(key): \(shown) is longer than the longest duration (at most 2562047h, about 292 years)", "\(key): \(message ?? "accepted")")
        }
        #expect(Self.refusal("[expirable.x]\nplugin = \"p\"\ntimeout = \"2562047h\"\n") == nil, "the longest is accepted")
    }

    @Test("a refusal quoting a huge key or value shows its start and how much more there was, not all of it")
    func hugeInputCut() throws {
        let key = String(repeating: "k", count: 1_000_000)
        let message = try #require(Self.refusal("[server]\n\(key) = 1\n"))
        #expect(message.utf8.count < 8192, "\(message.utf8.count) bytes")
        #expect(message.hasPrefix("F:2: server.\(String(repeating: "k", count: 249))… ("), "\(message.prefix(300))")
        let value = try #require(Self.refusal("[server]\nsocket_mode = \"\(String(repeating: "7", count: 100_000))\"\n"))
        #expect(value.utf8.count < 1024 && value.hasSuffix("…\" (100000 characters)"), "\(value.suffix(200))")
    }

    @Test("control characters in a refused value or key are shown escaped", arguments: [
        ("[server]\nsocket_mode = \"\\u001b[31m\\n\"\n", "F:2: server.socket_mode: expected an octal file mode string such as \"0660\", got \"\\u001B[31m\\n\""),
        ("[expirable.x]\nplugin = \"p\"\nrefresh = \"eager\\r\\tx\"\n", "F:3: expirable.x.refresh: expected \"lazy\" or \"eager\", got \"eager\\r\\tx\""),
        ("[server]\n\"bad\\u0007key\" = 1\n", "F:2: server.bad\\u0007key: unknown key in [server]; expected one of: admins, idle_timeout, isolation, max_connections, max_output_bytes, max_request_bytes, plugin_dir, plugin_group, plugin_user, request_timeout, socket, socket_mode, state_dir, state_key_file"),
        ("[cluster]\nnode = \"a\\u009bb\"\n", "F:2: cluster.node: expected a node name of 1 to 64 letters, digits, '-', '_' and '.', beginning and ending with a letter or digit, no '..', got \"a\\u009Bb\""),
    ])
    func controlCharacters(text: String, message: String) {
        let refusal = Self.refusal(text)
        #expect(refusal == message)
        #expect(refusal?.unicodeScalars.contains { $0.value < 0x20 || (0x7f...0x9f).contains($0.value) } == false)
    }

    /// A valid configuration with every kind of key, to mutate.
    static let valid = """
        [server]
        socket = "/run/expirable/expirable.sock"
        socket_mode = "0660"
        plugin_dir = "/usr/local/lib/expirable"
        max_connections = 100
        idle_timeout = "5m"
        isolation = "process"

        [cluster]
        node = "node-a"
        listen = "0.0.0.0:7400"
        peers = { node-b = "10.0.0.2:7400", node-c = "[::1]:7401" }
        ca = "/etc/expirable/ca.pem"
        cert = "/etc/expirable/node-a.pem"
        key = "/etc/expirable/node-a.key"
        heartbeat = "500ms"

        [expirable.github]
        plugin = "oauth2"
        scope = "cluster"
        refresh = "eager"
        before_expiry = "20%"
        jitter = "5s"
        timeout = "10s"
        stale_if_error = "5m"
        retry_interval = "1s"
        retry_backoff = "30s"

        [expirable.github.params]
        token_url = "https://github.example/oauth/token"
        client_id = "abc"

        [expirable.keyed]
        plugin = "command"
        keyed = true
        max_keys = 100
        key_idle = "1h"
        [expirable.keyed.params]
        shell = "echo x"
        ttl = "1m"
        """

    /// SplitMix64: the same mutations on every run.
    struct Random {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
    }

    static let junk = [
        "\"\"", "\"+0660\"", "\"127.0.0.2:7400:1\"", "-1", "0", "99999999999", "1.5", "true", "[]", "{}", "\"\\u0000\"",
        "\"\\u001b[2J\"", "\"a\\nb\"", "\"5\"", "\"5x\"", "\"200%\"", "\"0%\"", "\"eager\"", "\"quorum\"", "\"inline\"",
        "\"../x\"", "\"a/b\"", "1979-05-27", "\"[::1]:0\"", "{ a = 1 }", "[1, \"x\"]", "\"local\"", "\"lazy\"",
    ]

    @Test("fuzz: 3,000 seeded mutations of a valid configuration; every refusal names the file and a line")
    func fuzzRefusalsNameFileAndLine() {
        var random = Random(state: 13)
        let lines = Self.valid.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var refused = 0
        var unlocated: [String] = []
        for _ in 0..<3000 {
            var mutated = lines
            for _ in 0..<(1 + random.below(3)) {
                let index = random.below(mutated.count)
                switch random.below(5) {
                case 0: mutated.remove(at: index)
                case 1: mutated.insert(mutated[random.below(mutated.count)], at: index)
                case 2, 3:
                    if let equals = mutated[index].firstIndex(of: "=") {
                        mutated[index] = mutated[index][..<equals] + "= " + Self.junk[random.below(Self.junk.count)]
                    }
                default:
                    let other = random.below(mutated.count)
                    mutated.swapAt(index, other)
                }
            }
            do {
                _ = try Configuration.parse(mutated.joined(separator: "\n"), file: "/etc/expirable/fuzz.toml")
            } catch {
                refused += 1
                if error.line == nil || !error.description.hasPrefix("/etc/expirable/fuzz.toml:\(error.line ?? 0): ") {
                    unlocated.append(error.description)
                }
                #expect(!error.description.unicodeScalars.contains { $0.value < 0x20 || (0x7f...0x9f).contains($0.value) })
            }
        }
        #expect(refused > 1000, "only \(refused) of 3000 mutations were refused: the fuzzer is not mutating much")
        #expect(unlocated.isEmpty, "\(unlocated.count) refusals without file and line, such as \(unlocated.prefix(5))")
    }
}
