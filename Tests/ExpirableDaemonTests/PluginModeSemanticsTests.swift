import ExpirableTestSupport
import Foundation
import Testing

/// SPEC §3 items 1–12 end to end, once with the plugin in a helper process and once on a thread in the daemon:
/// where a plugin runs changes what a crash costs, never what a caller sees.
@Suite("The same semantics (SPEC §3.1–12) in both isolation modes")
struct PluginModeSemanticsTests {
    static let modes = ["process", "inline"]

    /// A daemon whose plugins run as `isolation` says; "COUNT" in `expirables` is the daemon's directory.
    static func start(_ isolation: String, _ expirables: String, testPlugins: [String] = ["counter"]) throws -> DaemonProcess {
        try ServingTests.start(expirables, server: "isolation = \"\(isolation)\"", testPlugins: testPlugins)
    }

    /// A counter expirable answering "NAME-<call>" and writing its call count to COUNT/NAME. `ttl` is the
    /// counter's ttl_ms ("never" for a value that never expires); `settings` are more lines of its table.
    static func counter(_ name: String, ttl: String = "60000", sleepMillis: Int = 0, settings: String = "") -> String {
        """
        [expirable.\(name)]
        plugin = "counter"
        \(settings)
        [expirable.\(name).params]
        prefix = "\(name)-"
        ttl_ms = "\(ttl)"
        sleep_ms = "\(sleepMillis)"
        count_file = "COUNT/\(name)"

        """
    }

    static var nowMillis: Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    /// `GET name` on an open connection: the value, or the error line as redis-cli prints it.
    static func get(_ connection: RawConnection, _ name: String) -> String {
        let reply = connection.roundTrip("*2\r\n$3\r\nGET\r\n$\(name.utf8.count)\r\n\(name)\r\n", expecting: 1)
        let lines = reply.components(separatedBy: "\r\n")
        if reply.hasPrefix("$"), lines.count > 1 { return lines[1] }
        return String(lines[0].dropFirst())
    }

    /// `INFO name` as its fields.
    static func info(_ daemon: DaemonProcess, _ name: String) throws -> [String: String] {
        var fields: [String: String] = [:]
        for line in try daemon.redis("INFO", name).split(whereSeparator: \.isNewline) {
            guard let colon = line.firstIndex(of: ":") else { continue }
            fields[String(line[..<colon])] = String(line[line.index(after: colon)...])
        }
        return fields
    }

    /// Calls `body` every 20 ms until it is true, for at most `seconds`; whether it became true.
    static func eventually(seconds: Double, _ body: () throws -> Bool) rethrows -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if try body() { return true }
            usleep(20_000)
        }
        return try body()
    }

    @Test("1: a value is valid from its fetch until the expires_at its plugin gave, and not after", arguments: modes)
    func validUntilExpiry(isolation: String) throws {
        let daemon = try Self.start(isolation, Self.counter("token", ttl: "1000"))
        defer { daemon.remove() }
        let before = Self.nowMillis
        let fetched = try daemon.redis("FETCH", "token").split(separator: "\n").map(String.init)
        let after = Self.nowMillis
        #expect(fetched.first == "token-1")
        let expiresAt = try #require(fetched.count > 1 ? Int64(fetched[1]) : nil, "FETCH gives the expiry: \(fetched)")
        try #require(expiresAt >= before + 1000 && expiresAt <= after + 1000, "the plugin's expires_at, unchanged: \(expiresAt)")
        let connection = try RawConnection(daemon.socket)
        var answers: Set<String> = []
        for _ in 0..<100 where Self.nowMillis < expiresAt - 250 {
            answers.insert(Self.get(connection, "token"))
            usleep(50_000)
        }
        #expect(answers == ["token-1"], "valid until expires_at: answered from memory")
        usleep(UInt32(clamping: max(0, expiresAt + 50 - Self.nowMillis)) * 1000)
        #expect(try daemon.redis("PTTL", "token") == "-2", "nothing valid is stored past expires_at")
        #expect(Self.get(connection, "token") == "token-2")
        #expect(daemon.count("token") == 2)
    }

    @Test("2: GET, FETCH and MGET of a valid value answer from memory: one plugin call", arguments: modes)
    func validFromMemory(isolation: String) throws {
        let daemon = try Self.start(isolation, Self.counter("token"))
        defer { daemon.remove() }
        #expect(try daemon.redis("GET", "token") == "token-1")
        for _ in 0..<5 { #expect(try daemon.redis("GET", "token") == "token-1") }
        #expect(try daemon.redis("FETCH", "token").hasPrefix("token-1\n"))
        #expect(try daemon.redis("MGET", "token", "token") == "token-1\ntoken-1")
        #expect(daemon.count("token") == 1)
        #expect(try Self.info(daemon, "token")["plugin_calls"] == "1")
    }

    @Test("3: a missing value, then an expired one, is fetched by a plugin call, stored and answered", arguments: modes)
    func missingAndExpiredCallThePlugin(isolation: String) throws {
        let daemon = try Self.start(isolation, Self.counter("token", ttl: "300"))
        defer { daemon.remove() }
        #expect(try daemon.redis("TTL", "token") == "-2")
        #expect(daemon.count("token") == 0)
        // The value lives 300 ms: what is asked right after a GET goes on the same open connection, milliseconds
        // later, not after a redis-cli's start, which on a loaded machine can take longer than that.
        let connection = try RawConnection(daemon.socket)
        #expect(connection.roundTripCommand("GET", "token") == "token-1")
        let pttl = try #require(Int(connection.roundTripCommand("PTTL", "token")))
        #expect(pttl > 0 && pttl <= 300, "stored with the plugin's lifetime: \(pttl)")
        #expect(daemon.count("token") == 1)
        usleep(400_000)
        #expect(connection.roundTripCommand("GET", "token") == "token-2", "expired: fetched again")
        #expect(connection.roundTripCommand("GET", "token") == "token-2", "and stored")
        #expect(daemon.count("token") == 2)
    }

    @Test("4: 20 concurrent GETs of a missing value share one plugin call and all get its value", arguments: modes)
    func singleFlight(isolation: String) throws {
        let daemon = try Self.start(isolation, Self.counter("token", sleepMillis: 300))
        defer { daemon.remove() }
        let connections = try (0..<20).map { _ in try RawConnection(daemon.socket) }
        // Every request is on its way before the first call can end (it sleeps 300 ms); then the replies.
        let started = Date()
        for connection in connections { connection.send("*2\r\n$3\r\nGET\r\n$5\r\ntoken\r\n") }
        let replies = connections.map { $0.receive(replies: 1) }
        #expect(Set(replies) == ["$7\r\ntoken-1\r\n"], "\(Set(replies))")
        #expect(daemon.count("token") == 1)
        #expect(Date().timeIntervalSince(started) < 2, "answered by the one call, not by 20 in turn")
    }

    @Test("4: 20 concurrent GETs of a value whose fetch fails share one plugin call and all get its error", arguments: modes)
    func singleFlightFailure(isolation: String) throws {
        let daemon = try Self.start(isolation, """
            [expirable.down]
            plugin = "command"
            [expirable.down.params]
            shell = "echo called >> COUNT/calls; sleep 0.3; echo 'upstream down' >&2; exit 1"
            ttl = "1m"
            """)
        defer { daemon.remove() }
        let connections = try (0..<20).map { _ in try RawConnection(daemon.socket) }
        for connection in connections { connection.send("*2\r\n$3\r\nGET\r\n$4\r\ndown\r\n") }
        let replies = connections.map { $0.receive(replies: 1) }
        #expect(Set(replies).count == 1, "\(Set(replies))")
        #expect(replies[0].hasPrefix("-FETCH ") && replies[0].contains("upstream down"), "\(replies[0])")
        #expect(daemon.lines("calls") == 1)
    }

    @Test("5: a failed fetch answers FETCH with the plugin's message and stores nothing; a later call's success is stored", arguments: modes)
    func failureNotStored(isolation: String) throws {
        let daemon = try Self.start(isolation, """
            [expirable.flaky]
            plugin = "command"
            [expirable.flaky.params]
            shell = "echo called >> COUNT/calls; if [ -e COUNT/up ]; then echo recovered; else echo 'upstream said 503' >&2; exit 1; fi"
            ttl = "1m"
            """)
        defer { daemon.remove() }
        let failure = try daemon.redis("GET", "flaky")
        #expect(failure.hasPrefix("FETCH ") && failure.contains("upstream said 503"), "\(failure)")
        #expect(try daemon.redis("TTL", "flaky") == "-2")
        #expect(try Self.info(daemon, "flaky")["state"] == "empty", "a failure is not stored")
        #expect(daemon.lines("calls") == 1)
        try "".write(toFile: daemon.directory.appending("up"), atomically: true, encoding: .utf8)
        // The failure was not kept: this GET gets a new call's result (after the retry interval, if paced).
        let started = Date()
        #expect(try daemon.redis("GET", "flaky") == "recovered")
        #expect(Date().timeIntervalSince(started) < 2)
        #expect(daemon.lines("calls") == 2)
        #expect(try daemon.redis("GET", "flaky") == "recovered", "the success is stored")
        #expect(daemon.lines("calls") == 2)
    }

    @Test("5: a call that outlives its timeout answers TIMEOUT at the timeout and stores nothing", arguments: modes)
    func timeout(isolation: String) throws {
        let daemon = try Self.start(isolation, """
            [expirable.slow]
            plugin = "sleeper"
            timeout = "200ms"
            [expirable.slow.params]
            sleep_ms = "1500"
            """, testPlugins: ["sleeper"])
        defer { daemon.remove() }
        // Timed on a connection already open: the daemon's answer, not a redis-cli's start.
        let (answer, took) = try RawConnection(daemon.socket).timedRoundTripCommand("GET", "slow")
        #expect(answer.hasPrefix("TIMEOUT ") && answer.contains("did not answer within 200ms"), "\(answer)")
        // What to do, too: where the limit is set, and what else to look at.
        #expect(answer.hasSuffix("did not answer within 200ms; raise timeout in [expirable.slow] if it needs longer, or check the plugin and what it calls"),
                "\(answer)")
        #expect(took < 1.2, "answered at the timeout, not when the plugin ends (\(took) s)")
        #expect(try Self.info(daemon, "slow")["state"] == "empty")
        #expect(try daemon.redis("PING") == "PONG")
    }

    @Test("5: a malformed result is a FETCH error naming the plugin and what it did wrong, the same in both modes", arguments: modes)
    func malformedResult(isolation: String) throws {
        let daemon = try Self.start(isolation, """
            [expirable.bad]
            plugin = "malformed"
            [expirable.bad.params]
            mode = "none"
            """, testPlugins: ["malformed"])
        defer { daemon.remove() }
        let real = URL(fileURLWithPath: daemon.pluginDir + "/libmalformed.so").resolvingSymlinksInPath().path
        #expect(try daemon.redis("GET", "bad") == "FETCH plugin \(real) returned neither a value nor an error; it must call set_value or set_error")
        #expect(try Self.info(daemon, "bad")["state"] == "empty")
    }

    @Test("5: a length of (size_t)-1 given to set_value, set_error, set_state or parse_duration_ms is refused with an error naming it; the daemon serves on", arguments: modes)
    func negativeLengths(isolation: String) throws {
        let daemon = try Self.start(isolation, """
            [expirable.k]
            plugin = "malformed"
            keyed = true
            """, testPlugins: ["malformed"])
        defer { daemon.remove() }
        let real = URL(fileURLWithPath: daemon.pluginDir + "/libmalformed.so").resolvingSymlinksInPath().path
        let minusOne = "18446744073709551615 (-1 as a signed number: an error code such as a failed read()'s, not a length)"
        #expect(try daemon.redis("GET", "k:sizemax") == "FETCH plugin \(real) returned a value of \(minusOne) bytes, over the limit of 1048576")
        #expect(try daemon.redis("GET", "k:errmax") == "FETCH plugin \(real) passed set_error a message length of \(minusOne)")
        #expect(try daemon.redis("GET", "k:statemax") == "FETCH plugin \(real) set a state of \(minusOne) bytes, over the limit of 65536")
        #expect(try daemon.redis("GET", "k:durmax") == "refused")
        #expect(try daemon.redis("PING") == "PONG")
    }

    @Test("5: a plugin's error message reaches callers and the log without C1 controls, direction overrides or other invisible characters", arguments: modes)
    func invisibleCharactersInMessages(isolation: String) throws {
        let daemon = try Self.start(isolation, """
            [expirable.x]
            plugin = "failing"
            [expirable.x.params]
            message = "safe \\u202E txt.exe \\u0085 nel \\u2028 ls \\u009B31m c1 \\u200B zw \\u2066 iso \\uFEFF bom"
            """, testPlugins: ["failing"])
        defer { daemon.remove() }
        let answer = try daemon.redis("GET", "x")
        #expect(answer == "FETCH safe   txt.exe   nel   ls  31m c1   zw   iso   bom", "\(answer.unicodeScalars.map { String($0.value, radix: 16) })")
        let hidden: [Unicode.Scalar] = ["\u{202E}", "\u{85}", "\u{2028}", "\u{9B}", "\u{200B}", "\u{2066}", "\u{FEFF}"]
        #expect(!daemon.log.unicodeScalars.contains { hidden.contains($0) }, "the log shows none of them raw")
    }

    @Test("6: a success whose expires_at has already passed is answered to its caller but not stored", arguments: modes)
    func pastExpiryNotStored(isolation: String) throws {
        let daemon = try Self.start(isolation, Self.counter("stale", ttl: "-1000"))
        defer { daemon.remove() }
        let before = Self.nowMillis
        let fetched = try daemon.redis("FETCH", "stale").split(separator: "\n").map(String.init)
        #expect(fetched.first == "stale-1", "\(fetched)")
        let expiresAt = try #require(fetched.count > 1 ? Int64(fetched[1]) : nil, "\(fetched)")
        #expect(expiresAt < before, "answered with its own expiry, already past")
        #expect(try daemon.redis("TTL", "stale") == "-2")
        #expect(try Self.info(daemon, "stale")["state"] == "empty", "not stored, not even as expired")
        #expect(try daemon.redis("GET", "stale") == "stale-2", "the next fetch calls the plugin")
        #expect(daemon.count("stale") == 2)
    }

    @Test("7: a value that never expires is kept (TTL -1, FETCH -1) and never refreshed, even eager; CLEAR drops it", arguments: modes)
    func neverExpires(isolation: String) throws {
        let daemon = try Self.start(isolation, Self.counter("forever", ttl: "never", settings: "refresh = \"eager\"\nbefore_expiry = \"100ms\""))
        defer { daemon.remove() }
        #expect(try daemon.redis("GET", "forever") == "forever-1")
        #expect(try daemon.redis("TTL", "forever") == "-1")
        #expect(try daemon.redis("PTTL", "forever") == "-1")
        #expect(try daemon.redis("FETCH", "forever").hasPrefix("forever-1\n-1"))
        usleep(1_200_000)  // past the one-second floor on refreshes: an eager timer would have fired
        #expect(try daemon.redis("GET", "forever") == "forever-1")
        #expect(daemon.count("forever") == 1)
        #expect(try Self.info(daemon, "forever")["refreshes"] == "0")
        #expect(try daemon.redis("CLEAR", "forever") == "OK")
        #expect(try daemon.redis("GET", "forever") == "forever-2")
    }

    @Test("8: lazy: nothing happens in the background; an expired value waits for the next fetch", arguments: modes)
    func lazy(isolation: String) throws {
        let daemon = try Self.start(isolation, Self.counter("lazy", ttl: "300", settings: "refresh = \"lazy\""))
        defer { daemon.remove() }
        #expect(try daemon.redis("GET", "lazy") == "lazy-1")
        usleep(700_000)
        #expect(daemon.count("lazy") == 1, "no call while nobody asked")
        #expect(try daemon.redis("TTL", "lazy") == "-2", "expired, and not replaced in the background")
        #expect(try daemon.redis("GET", "lazy") == "lazy-2")
        #expect(daemon.count("lazy") == 2)
        #expect(try Self.info(daemon, "lazy")["refreshes"] == "0")
    }

    @Test("9: eager: a new value is fetched before the current one expires, while readers keep getting the current one from memory", arguments: modes)
    func eager(isolation: String) throws {
        // Not prefetched, so the first call is this test's. Each call takes 300 ms and gives 2 s of life; the refresh is due 1 s before expiry, held to one
        // second after the first call started, so it runs from about 1.0 s to 1.3 s; the first value lasts until 2.3 s.
        let daemon = try Self.start(isolation, Self.counter("eager", ttl: "2000", sleepMillis: 300, settings: "refresh = \"eager\"\nbefore_expiry = \"1s\"\nprefetch = false"))
        defer { daemon.remove() }
        let fetched = try daemon.redis("FETCH", "eager").split(separator: "\n").map(String.init)
        #expect(fetched.first == "eager-1")
        let firstExpiry = try #require(fetched.count > 1 ? Int64(fetched[1]) : nil, "\(fetched)")
        let connection = try RawConnection(daemon.socket)
        var answers: [String] = []
        let refreshed = Self.eventually(seconds: 4) {
            answers.append(Self.get(connection, "eager"))
            return daemon.count("eager") >= 2
        }
        #expect(refreshed)
        #expect(Self.nowMillis < firstExpiry, "the refresh ended before the first value expired")
        #expect(answers.allSatisfy { $0 == "eager-1" || $0 == "eager-2" }, "\(Set(answers))")
        // The plugin counts its call before it returns; the value then still travels to the engine (through the
        // helper's pipe in process mode), so it is looked for a moment rather than at once (10 s allowed; a
        // value that was not stored never shows).
        var latest = ""
        #expect(Self.eventually(seconds: 10) { latest = Self.get(connection, "eager"); return latest == "eager-2" },
                "the new value is stored: \(latest)")
        let info = try Self.info(daemon, "eager")
        #expect(info["misses"] == "1", "every GET but the first answered from memory, the refresh included: \(info)")
        #expect(info["refreshes"] == "1", "\(info)")
    }

    @Test("10: CLEAR drops a value and stops its eager refresh; the next fetch calls the plugin", arguments: modes)
    func clear(isolation: String) throws {
        let eager = "refresh = \"eager\"\nbefore_expiry = \"1500ms\""
        let daemon = try Self.start(isolation, Self.counter("cleared", ttl: "2000", settings: eager) + Self.counter("control", ttl: "2000", settings: eager))
        defer { daemon.remove() }
        #expect(try daemon.redis("GET", "cleared") == "cleared-1")
        #expect(try daemon.redis("CLEAR", "cleared") == "OK")
        #expect(try daemon.redis("TTL", "cleared") == "-2")
        // The control, fetched after the clear with the same lifetimes, is refreshed once its refresh is due:
        // by then a refresh of the cleared value would have been due too.
        #expect(try daemon.redis("GET", "control") == "control-1")
        #expect(Self.eventually(seconds: 4) { daemon.count("control") >= 2 }, "the control is refreshed")
        usleep(100_000)
        #expect(daemon.count("cleared") == 1, "no refresh of a cleared value")
        #expect(try daemon.redis("GET", "cleared") == "cleared-2")
        #expect(daemon.count("cleared") == 2)
    }

    @Test("10: CLEARALL drops every value and stops every eager refresh; the next fetches call the plugins", arguments: modes)
    func clearAll(isolation: String) throws {
        let eager = "refresh = \"eager\"\nbefore_expiry = \"1500ms\""
        let daemon = try Self.start(isolation, Self.counter("a", ttl: "2000", settings: eager) + Self.counter("b", ttl: "2000", settings: eager))
        defer { daemon.remove() }
        #expect(try daemon.redis("GET", "a") == "a-1")
        #expect(try daemon.redis("GET", "b") == "b-1")
        #expect(try daemon.redis("CLEARALL") == "OK")
        #expect(try daemon.redis("TTL", "a") == "-2")
        #expect(try daemon.redis("TTL", "b") == "-2")
        #expect(try daemon.redis("GET", "b") == "b-2", "the next fetch calls the plugin")
        // b, fetched again after the clear, is refreshed once its refresh is due; a's would have been due by then.
        #expect(Self.eventually(seconds: 4) { daemon.count("b") >= 3 }, "b's new value is refreshed")
        usleep(100_000)
        #expect(daemon.count("a") == 1, "no refresh of a cleared value")
        #expect(try daemon.redis("GET", "a") == "a-2")
    }

    @Test("11: an unknown name is a NOTFOUND error naming it, for every command that takes a name", arguments: modes)
    func unknownName(isolation: String) throws {
        let daemon = try Self.start(isolation, Self.counter("token"))
        defer { daemon.remove() }
        #expect(try daemon.redis("GET", "nope") == "NOTFOUND no expirable named 'nope' is configured; `expirablectl list` shows the names")
        for command in ["FETCH", "TTL", "PTTL", "CLEAR", "INFO"] {
            let answer = try daemon.redis(command, "nope")
            #expect(answer.hasPrefix("NOTFOUND") && answer.contains("'nope'"), "\(command): \(answer)")
        }
        #expect(daemon.count("token") == 0, "no plugin was called")
        #expect(try Self.info(daemon, "token")["plugin_calls"] == "0")
    }

    @Test("6, 17: values already expired, or with 1 ms to live, do not make readers call the plugin in a stampede", arguments: modes)
    func unusableLifetimesPaced(isolation: String) throws {
        let daemon = try Self.start(isolation, Self.counter("past", ttl: "-1000") + Self.counter("brief", ttl: "1"))
        defer { daemon.remove() }
        for name in ["past", "brief"] {
            // Twenty readers for two seconds: one call, then one each retry_interval (1 s); readers wait for it.
            let started = Date()
            let group = DispatchGroup()
            for _ in 0..<20 {
                DispatchQueue.global().async(group: group) {
                    // Each reader asks at least once, even if a loaded machine starts it after the two seconds.
                    guard let connection = try? RawConnection(daemon.socket) else { return }
                    let command = "*2\r\n$3\r\nGET\r\n$\(name.utf8.count)\r\n\(name)\r\n"
                    repeat { _ = connection.roundTrip(command, expecting: 1) } while Date().timeIntervalSince(started) < 2
                }
            }
            group.wait()
            let seconds = Date().timeIntervalSince(started)
            #expect(Double(daemon.count(name)) <= seconds + 1, "\(name): \(daemon.count(name)) plugin calls in \(seconds) s")
            let info = try Self.info(daemon, name)
            #expect(info["last_error"]?.contains("the plugin's value") == true, "\(info)")
        }
    }

    @Test("12: fetched values never reach the daemon's log or its directory", arguments: modes)
    func valuesAreSecret(isolation: String) throws {
        let daemon = try Self.start(isolation, Self.counter("s3cr3t", ttl: "1500", settings: "refresh = \"eager\"\nbefore_expiry = \"1s\"") + Self.counter("gone", ttl: "-1"))
        defer { daemon.remove() }
        #expect(try daemon.redis("GET", "s3cr3t") == "s3cr3t-1")
        #expect(try daemon.redis("FETCH", "s3cr3t").hasPrefix("s3cr3t-1\n"))
        #expect(try daemon.redis("GET", "gone") == "gone-1")
        #expect(Self.eventually(seconds: 3) { daemon.count("s3cr3t") >= 2 }, "an eager refresh ran")
        #expect(try daemon.redis("CLEARALL") == "OK")
        daemon.stop()
        #expect(daemon.log.contains("eager refresh"), "the log is written at debug level: \(daemon.log)")
        for value in ["s3cr3t-1", "s3cr3t-2", "gone-1"] { #expect(!daemon.log.contains(value), "\(value) is in the log") }
        let files = FileManager.default.enumerator(atPath: daemon.directory.path)?.compactMap { $0 as? String } ?? []
        for file in files where !file.hasSuffix(".so") && file != "expirable.toml" {
            let bytes = (try? Data(contentsOf: URL(fileURLWithPath: daemon.directory.appending(file)))) ?? Data()
            for value in ["s3cr3t-", "gone-"] { #expect(bytes.range(of: Data(value.utf8)) == nil, "\(file) holds a value") }
        }
    }
}
