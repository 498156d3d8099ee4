import ExpirableClient
import ExpirableTestSupport
import Foundation
import Testing

/// The freshness policy through the real daemon: FETCH's stale/fresh mark and MINTTL, prefetch with systemd
/// readiness, and what INFO, the client and `expirablectl` show.
@Suite("Freshness through the daemon")
struct FreshnessDaemonTests {
    @Test("15. with NOTIFY_SOCKET the daemon sends READY=1 once every prefetch answered, and status then shows them valid")
    func prefetchThenReady() throws {
        let daemon = try DaemonProcess(expirables: "", start: false)
        defer { daemon.remove() }
        let config = try String(contentsOfFile: daemon.configPath, encoding: .utf8) + """
            [expirable.eager]
            plugin = "counter"
            refresh = "eager"
            before_expiry = "10%"
            jitter = "5s"
            [expirable.eager.params]
            prefix = "e-"
            ttl_ms = 600000
            count_file = "\(daemon.directory.appending("eager-calls"))"
            [expirable.lazy]
            plugin = "counter"
            prefetch = true
            [expirable.lazy.params]
            prefix = "l-"
            ttl_ms = 600000
            count_file = "\(daemon.directory.appending("lazy-calls"))"
            [expirable.idle]
            plugin = "counter"
            [expirable.idle.params]
            prefix = "i-"
            ttl_ms = 600000
            count_file = "\(daemon.directory.appending("idle-calls"))"

            """
        try config.write(toFile: daemon.configPath, atomically: true, encoding: .utf8)
        let listener = try DatagramListener(daemon.directory.appending("notify.sock"))
        daemon.environment = ["NOTIFY_SOCKET": listener.path]
        try daemon.start()
        var messages: [String] = []
        while !messages.contains(where: { $0.split(separator: "\n").contains("READY=1") }) {
            guard let message = listener.receive(timeoutSeconds: 15) else { break }
            messages.append(message)
        }
        let ready = try #require(messages.last, "no READY=1 within 15 s: \(daemon.log)")
        #expect(ready.contains("READY=1"))
        #expect(ready.contains("STATUS=ready; prefetched 2 of 2"), "\(ready)")
        // Right after readiness: the prefetched values are valid, fetched once each; the other is untouched.
        let status = try daemon.ctl("status")
        let rows = status.stdout.split(separator: "\n").map { $0.split(separator: " ", omittingEmptySubsequences: true).map(String.init) }
        #expect(rows.first { $0.first == "eager" }?[3] == "valid", "\(status.stdout)")
        #expect(rows.first { $0.first == "lazy" }?[3] == "valid", "\(status.stdout)")
        #expect(rows.first { $0.first == "idle" }?[3] == "empty", "\(status.stdout)")
        #expect(daemon.count("eager-calls") == 1 && daemon.count("lazy-calls") == 1 && daemon.count("idle-calls") == 0)
        #expect(try daemon.redis("GET", "eager") == "e-1")
        let info = try daemon.redis("INFO", "eager")
        #expect(info.contains("prefetch:yes") && info.contains("before_expiry:10%") && info.contains("jitter:5000"), "\(info)")
        // Their calls are recorded as the prefetch's, not a reader's (explain: "started by prefetch").
        for name in ["eager", "lazy"] {
            let explain = try daemon.ctl("explain", name).stdout
            #expect(explain.contains("success  started by prefetch"), "\(explain)")
        }
    }

    @Test("FETCH answers [value, expires_at_ms, fresh]; MINTTL refetches a value with too little left; the client and CLI ask for it")
    func fetchMinimumValidity() async throws {
        let daemon = try ServingTests.start(ServingTests.counter(ttlMillis: 600_000))
        // A lifetime of 10 minutes: an async test can wait minutes for a thread of the cooperative pool when the full
        // suite's long synchronous tests hold it, and the value must not expire between two of its calls.
        defer { daemon.remove() }
        let reply = try daemon.redis("FETCH", "token").split(separator: "\n")
        #expect(reply.count == 3 && reply[0] == "token-1" && reply[2] == "fresh", "\(reply)")
        #expect(try daemon.redis("FETCH", "token", "MINTTL", "30000").hasPrefix("token-1\n"))
        #expect(try daemon.redis("FETCH", "token", "MINTTL", "1200000").hasPrefix("token-2\n"))
        #expect(try daemon.redis("GET", "token") == "token-2")
        #expect(try daemon.redis("FETCH", "token", "MINTTL", "soon").hasPrefix("ERR MINTTL expects"))
        #expect(try daemon.redis("FETCH", "token", "MAXTTL", "5").hasPrefix("ERR syntax error: unknown option 'MAXTTL' for 'FETCH'"))
        let client = daemon.client
        let fetched = try await client.fetch("token", minimumValidity: .seconds(1200))
        #expect(fetched.string == "token-3")
        #expect(fetched.isStale == false)
        #expect(try await client.fetch("token").string == "token-3")
        let ctl = try daemon.ctl("fetch", "--min-ttl", "20m", "token")
        #expect(ctl.status == 0 && ctl.stdout == "token-4\n", "\(ctl)")
        #expect(try daemon.ctl("fetch", "--min-ttl", "a while", "token").status != 0)
        #expect(daemon.count("calls") == 4)
    }

    @Test("13. expirablectl fetch --json counts expires_in_ms down to the expiry less expiry_margin, as PTTL and INFO do")
    func fetchJSONHonoursMargin() throws {
        // A lifetime of 10 minutes and a margin of 5: the value is handed out for about 5 minutes, not 10.
        let daemon = try ServingTests.start(ServingTests.counter(ttlMillis: 600_000).replacingOccurrences(of: "plugin = \"counter\"\n", with: "plugin = \"counter\"\nexpiry_margin = \"5m\"\n"))
        defer { daemon.remove() }
        let ctl = try daemon.ctl("fetch", "--json", "token")
        #expect(ctl.status == 0, "\(ctl)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(ctl.stdout.utf8)) as? [String: Any], "\(ctl.stdout)")
        let expiresAt = try #require((object["expires_at_ms"] as? NSNumber)?.int64Value, "\(object)")
        let expiresIn = try #require((object["expires_in_ms"] as? NSNumber)?.int64Value, "\(object)")
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        #expect(expiresAt - now > 500_000, "expires_at_ms is the value's own expiry, not less the margin: \(object)")
        #expect(expiresIn <= 300_000 && expiresIn > 200_000, "expires_in_ms counts to the expiry less the margin: \(object)")
        let pttl = try #require(Int64(try daemon.redis("PTTL", "token")))
        #expect(abs(pttl - expiresIn) < 60_000, "PTTL \(pttl), expires_in_ms \(expiresIn)")
    }

    @Test("18. retry-after: the caller whose call brought it and every caller until then get the error with that time at once")
    func retryAfterAnsweredAtOnce() throws {
        // 8 s: less than the daemon's request timeout (10 s), so a caller would otherwise wait for the next call.
        let daemon = try ServingTests.start("""
            [expirable.limited]
            plugin = "flaky"
            [expirable.limited.params]
            mode_file = "COUNT/mode"
            count_file = "COUNT/calls"
            """, testPlugins: ["flaky"])
        defer { daemon.remove() }
        try "fail 8\n".write(toFile: daemon.directory.appending("mode"), atomically: true, encoding: .utf8)
        let first = try daemon.redis("GET", "limited")
        #expect(first.hasPrefix("FETCH upstream down (next attempt in ") && first.hasSuffix(" Unix ms)"), "\(first)")
        let asked = Date()
        let second = try daemon.redis("GET", "limited")
        #expect(Date().timeIntervalSince(asked) < 4, "answered at once, not when the retry-after is over")
        #expect(second.hasPrefix("FETCH upstream down (next attempt in ") && second.hasSuffix(" Unix ms)"), "\(second)")
        #expect(daemon.count("calls") == 1, "no call before the retry-after")
        try "ok\n".write(toFile: daemon.directory.appending("mode"), atomically: true, encoding: .utf8)
        var value = ""
        #expect(try IsolationTests.eventually(seconds: 30) { value = try daemon.redis("GET", "limited"); return value.hasPrefix("v-") }, "\(value)")
        #expect(daemon.count("calls") == 2, "one call, once the retry-after is over")
    }

    @Test("16. stale_if_error: an expired value whose refetch fails is answered marked stale; INFO, status and the client say so")
    func staleThroughTheDaemon() async throws {
        // A stale window far longer than the test: an async test can wait minutes for a thread of the cooperative
        // pool when the full suite's long synchronous tests hold it.
        let daemon = try ServingTests.start("""
            [expirable.rates]
            plugin = "command"
            stale_if_error = "30m"
            retry_interval = "100ms"
            [expirable.rates.params]
            shell = "if [ -e COUNT/down ]; then echo 'rates service down' >&2; exit 1; fi; echo rates-ok"
            ttl = "1s"
            """)
        defer { daemon.remove() }
        #expect(try daemon.redis("GET", "rates") == "rates-ok")
        try "".write(toFile: daemon.directory.appending("down"), atomically: true, encoding: .utf8)
        // Wait for the value to expire (an event the daemon reports), bounded.
        for _ in 0..<60 where try daemon.redis("PTTL", "rates") != "-2" { usleep(50_000) }
        let reply = try daemon.redis("FETCH", "rates").split(separator: "\n")
        #expect(reply.first == "rates-ok" && reply.last == "stale", "\(reply)")
        #expect(try daemon.redis("GET", "rates") == "rates-ok")
        let fetched = try await daemon.client.fetch("rates")
        #expect(fetched.isStale && fetched.string == "rates-ok")
        let info = try daemon.redis("INFO", "rates")
        #expect(info.contains("state:stale") && info.contains("stale_if_error_ms:1800000"), "\(info)")
        #expect(info.contains("last_error:FETCH command plugin"), "\(info)")
        let answers = try #require(info.split(whereSeparator: \.isNewline).first { $0.hasPrefix("stale_answers:") }.flatMap { Int($0.dropFirst(14).trimmingCharacters(in: .whitespacesAndNewlines)) })
        #expect(answers >= 3)
        #expect(try daemon.redis("INFO").contains("stale_answers:"))
        let status = try daemon.ctl("status")
        #expect(status.stdout.split(separator: "\n").first { $0.hasPrefix("rates") }?.contains("stale") == true, "\(status.stdout)")
        let ctl = try daemon.ctl("fetch", "--json", "rates")
        #expect(ctl.stdout.contains("\"stale\":true") && ctl.stderr.contains("is stale"), "\(ctl)")
        // The first success ends it.
        try FileManager.default.removeItem(atPath: daemon.directory.appending("down"))
        usleep(150_000)
        let fresh = try daemon.redis("FETCH", "rates").split(separator: "\n")
        #expect(fresh.last == "fresh", "\(fresh)")
    }
}

/// A Unix datagram socket a test binds to stand in for systemd's notification socket.
final class DatagramListener {
    let path: String
    private let fd: Int32

    init(_ path: String) throws {
        self.path = path
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        let bound = withUnixAddress(path) { bind(fd, $0, $1) }
        guard bound == 0 else {
            close(fd)
            throw TestSupportError("bind \(path): \(String(cString: strerror(errno)))")
        }
        self.fd = fd
    }

    deinit { close(fd) }

    /// The next datagram as text, or nil after `timeoutSeconds` without one.
    func receive(timeoutSeconds: Int) -> String? {
        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        guard n > 0 else { return nil }
        return String(decoding: buffer[..<n], as: UTF8.self)
    }
}
