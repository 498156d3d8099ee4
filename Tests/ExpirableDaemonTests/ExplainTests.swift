import ExpirableTestSupport
import Foundation
import Testing

/// `expirablectl explain NAME` and the EXPLAIN command behind it, against a real daemon.
@Suite("explain: why a value is in its state and what happens next")
struct ExplainTests {
    /// `eager` (a counter, 60 s, refreshed 20 s before expiry with up to 5 s of jitter) and `broken` (always
    /// fails, paced by retry_interval 30 s, stale_if_error off).
    static func start() throws -> DaemonProcess {
        try ServingTests.start(ServingTests.counter("eager", count: "eager").replacingOccurrences(
            of: "plugin = \"counter\"\n", with: "plugin = \"counter\"\nrefresh = \"eager\"\nbefore_expiry = \"20s\"\njitter = \"5s\"\n") + """
            [expirable.broken]
            plugin = "command"
            scope = "local"
            retry_interval = "30s"
            [expirable.broken.params]
            shell = "exit 4"
            ttl = "1m"

            """)
    }

    static func json(_ output: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any])
    }

    @Test("inline, a call stuck past its timeout: explain says since when it runs and that no call can start, not that one may")
    func stuckInlineCall() throws {
        let daemon = try ServingTests.start("""
            [expirable.stuck]
            plugin = "sleeper"
            timeout = "300ms"
            retry_interval = "10ms"
            [expirable.stuck.params]
            release_file = "COUNT/release"
            """, server: "isolation = \"inline\"", testPlugins: ["sleeper"])
        defer {
            FileManager.default.createFile(atPath: daemon.directory.appending("release"), contents: nil)
            daemon.remove()
        }
        #expect(try daemon.redis("GET", "stuck").hasPrefix("TIMEOUT"))
        #expect(try daemon.redis("GET", "stuck").contains("is still running a call started"))
        let words = try daemon.ctl("explain", "stuck").stdout
        #expect(words.contains("Next: a plugin call started "), "\(words)")
        #expect(words.contains("is still running, past its timeout of 300 ms: no new call can start until it returns"), "\(words)")
        #expect(!words.contains("may start now"), "\(words)")
        #expect(words.contains("Plugin: inline, in the daemon's process; a call has been running for "), "\(words)")
        let object = try Self.json(try daemon.ctl("explain", "stuck", "--json").stdout)
        #expect((object["call_running_ms"] as? Int64 ?? (object["call_running_ms"] as? Int).map(Int64.init) ?? 0) >= 300, "\(object)")
    }

    @Test("a valid eager value: its last call, the next refresh and the rule that set it, who may read it")
    func validEager() throws {
        let daemon = try Self.start()
        defer { daemon.remove() }
        // Eager values are prefetched at start: the first call is there before any reader asks, and says so.
        var prefetched = ""
        for _ in 0..<100 where !prefetched.contains("success  started by") {
            prefetched = try daemon.ctl("explain", "eager").stdout
            usleep(50_000)
        }
        #expect(prefetched.range(of: #"  [0-9T:.-]+Z  [0-9.]+ ms  success  started by prefetch"#, options: .regularExpression) != nil, "\(prefetched)")
        #expect(try daemon.redis("GET", "eager") == "eager-1")
        let words = try daemon.ctl("explain", "eager")
        #expect(words.status == 0, "\(words.stderr)")
        #expect(words.stdout.hasPrefix("eager is valid: a value is stored and valid, handed out for "), "\(words.stdout)")
        #expect(words.stdout.contains("Last calls, newest first:"))
        #expect(words.stdout.range(of: #"  [0-9T:.-]+Z  [0-9.]+ ms  success  started by prefetch"#, options: .regularExpression) != nil, "\(words.stdout)")
        #expect(words.stdout.contains("before_expiry 20000 ms and a jitter of"), "\(words.stdout)")
        #expect(words.stdout.contains("Pacing: none"))
        #expect(words.stdout.contains("Stale window: none"))
        #expect(words.stdout.contains("Owner: local"))
        #expect(words.stdout.contains("Plugin: in a helper process (pid "))
        #expect(words.stdout.contains("Who may read it: anyone who can open the socket \(daemon.socket)"))
        #expect(!words.stdout.contains("eager-1"))

        let object = try Self.json(try daemon.ctl("explain", "eager", "--json").stdout)
        #expect(object["state"] as? String == "valid")
        let calls = try #require(object["calls"] as? [[String: Any]])
        #expect(calls.count == 1)
        #expect(calls.first?["outcome"] as? String == "success")
        #expect(calls.first?["trigger"] as? String == "prefetch")
        let started = try #require(calls.first?["started_at_ms"] as? Int64)
        #expect(abs(started - Int64(Date().timeIntervalSince1970 * 1000)) < 60_000)
        // 60 s lifetime less 20 s before_expiry less 0–5 s of jitter.
        let refresh = try #require(object["next_refresh_in_ms"] as? Int)
        #expect(refresh > 30_000 && refresh <= 40_000, "\(refresh)")
        #expect((object["refresh_rule"] as? String)?.hasPrefix("before_expiry 20000 ms and a jitter of ") == true)
        #expect(object["next_attempt_in_ms"] is NSNull)
        #expect(object["lifetime_ms"] as? Int ?? 0 > 55_000)
        // Each field of one type: numbers, booleans, null; jitter as jitter_ms (5 s).
        #expect(object["fetching"] as? Bool == false, "\(String(describing: object["fetching"]))")
        #expect(object["helper_pid"] is Int && object["helper_restarts"] as? Int == 0, "\(object)")
        #expect(object["jitter_ms"] as? Int == 5000 && object["jitter"] == nil, "\(object)")
        #expect(object["consecutive_failures"] as? Int == 0 && object["stale_if_error_ms"] is Int)
    }

    @Test("a failing value: the failed call with its class, pacing with the next attempt and the rule behind it")
    func failing() throws {
        let daemon = try Self.start()
        defer { daemon.remove() }
        #expect(try daemon.ctl("explain", "broken").stdout.contains("Last calls: none yet."))
        #expect(try daemon.redis("GET", "broken").contains("FETCH"))
        let words = try daemon.ctl("explain", "broken")
        #expect(words.stdout.hasPrefix("broken is empty: nothing is stored: the last plugin call failed (temporary)"), "\(words.stdout)")
        #expect(words.stdout.contains("temporary (FETCH)  started by reader"))
        #expect(words.stdout.contains("Pacing: 1 consecutive failure; next attempt in "))
        #expect(words.stdout.contains("retry_interval 30000 ms after the start of the last call"))
        let object = try Self.json(try daemon.ctl("explain", "broken", "--json").stdout)
        #expect(object["consecutive_failures"] as? Int == 1)
        let next = try #require(object["next_attempt_in_ms"] as? Int)
        #expect(next > 20_000 && next <= 30_000)
        #expect(object["last_error_class"] as? String == "temporary")
        #expect((object["calls"] as? [[String: Any]])?.first?["error"] as? String == "FETCH")
    }

    @Test("an unknown name is NOTFOUND; EXPLAIN over RESP never carries the value")
    func unknownAndRaw() throws {
        let daemon = try Self.start()
        defer { daemon.remove() }
        let unknown = try daemon.ctl("explain", "nope")
        #expect(unknown.status != 0)
        #expect(unknown.stderr.contains("NOTFOUND"))
        _ = try daemon.redis("GET", "eager")
        let raw = try daemon.redis("EXPLAIN", "eager")
        #expect(raw.contains("state:valid"))
        #expect(raw.contains("call:"))
        #expect(!raw.contains("eager-1"))
    }
}
