import ExpirableTestSupport
import Foundation
import Testing

/// The Prometheus endpoint (SPEC §10) of a real daemon, scraped over HTTP and parsed by prometheus_client's own
/// text parser (Tests/Clients/prometheus_scrape.py, installed by scripts/test.sh).
@Suite("metrics over HTTP, parsed by a real Prometheus parser")
struct MetricsTests {
    struct Sample {
        let name: String
        let labels: [String: String]
        let value: Double
    }

    struct Scrape {
        let text: String
        let contentType: String
        /// Family name (as the parser names it: counters without `_total`) to type and samples.
        let families: [String: (type: String, samples: [Sample])]

        func value(_ sample: String, _ labels: [String: String] = [:]) -> Double? {
            families.values.flatMap(\.samples).first { candidate in
                candidate.name == sample && labels.allSatisfy { key, value in candidate.labels[key] == value }
            }?.value
        }
    }

    /// A daemon with `[metrics]` on a free loopback port: `token` (a counter, 60 s) and `broken` (always fails).
    static func start() throws -> (DaemonProcess, URL) {
        let port = try freePort(on: "127.0.0.1")
        let daemon = try ServingTests.start("[metrics]\nlisten = \"127.0.0.1:\(port)\"\n\n" + ServingTests.counter() + """
            [expirable.broken]
            plugin = "command"
            scope = "local"
            retry_interval = "10s"
            [expirable.broken.params]
            shell = "exit 4"
            ttl = "1m"

            """)
        return (daemon, URL(string: "http://127.0.0.1:\(port)/metrics")!)
    }

    /// Scrapes `url` through the Python parser; retried for up to 5 s while the endpoint starts.
    static func scrape(_ url: URL) throws -> Scrape {
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("scrape-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).json")
        defer { try? FileManager.default.removeItem(at: out) }
        var environment = ProcessInfo.processInfo.environment
        environment["PYTHONPATH"] = [RedisClientTests.pythonClients, environment["PYTHONPATH"]].compactMap { $0 }.joined(separator: ":")
        environment["PYTHONDONTWRITEBYTECODE"] = "1"
        var last = ""
        for _ in 0..<50 {
            let result = try runTool("python3", [RedisClientTests.clients.appendingPathComponent("prometheus_scrape.py").path, url.absoluteString, out.path],
                                     seconds: 30, environment: environment)
            if result.status == 0, let data = FileManager.default.contents(atPath: out.path),
               let object = try JSONSerialization.jsonObject(with: data) as? [String: Any] {
                let raw = object["families"] as? [String: [String: Any]] ?? [:]
                var families: [String: (type: String, samples: [Sample])] = [:]
                for (name, family) in raw {
                    let samples = (family["samples"] as? [[String: Any]] ?? []).map {
                        Sample(name: $0["name"] as? String ?? "", labels: $0["labels"] as? [String: String] ?? [:], value: ($0["value"] as? NSNumber)?.doubleValue ?? .nan)
                    }
                    families[name] = (family["type"] as? String ?? "", samples)
                }
                return Scrape(text: object["text"] as? String ?? "", contentType: object["content_type"] as? String ?? "", families: families)
            }
            last = result.stdout + result.stderr
            if last.contains("No module named") { break }
            usleep(100_000)
        }
        throw TestSupportError("cannot scrape \(url): \(last)")
    }

    @Test("GET /metrics parses as the text format; names, types and values follow the reads; no value appears")
    func scrapeAfterReads() throws {
        let (daemon, url) = try Self.start()
        defer { daemon.remove() }
        #expect(try daemon.redis("GET", "token") == "token-1")
        #expect(try daemon.redis("GET", "token") == "token-1")
        #expect(try daemon.redis("GET", "token") == "token-1")
        #expect(try daemon.redis("GET", "broken").contains("FETCH"))
        _ = try daemon.redis("TTL", "token")
        let scrape = try Self.scrape(url)
        #expect(scrape.contentType.hasPrefix("text/plain; version=0.0.4"))

        // Names: every family has the prefix; counters end in _total, histograms and durations in _seconds.
        #expect(!scrape.families.isEmpty)
        for (name, family) in scrape.families {
            #expect(name.hasPrefix("expirable_"), "\(name)")
            if family.type == "counter" { #expect(family.samples.allSatisfy { $0.name.hasSuffix("_total") }, "\(name)") }
        }
        #expect(scrape.families["expirable_hits"]?.type == "counter")
        #expect(scrape.families["expirable_state"]?.type == "gauge")
        #expect(scrape.families["expirable_plugin_call_duration_seconds"]?.type == "histogram")

        // Values after one miss and two hits of token, one failed call of broken, and five requests.
        let token = ["expirable": "token"]
        #expect(scrape.value("expirable_hits_total", token) == 2)
        #expect(scrape.value("expirable_misses_total", token) == 1)
        #expect(scrape.value("expirable_plugin_calls_total", token) == 1)
        #expect(scrape.value("expirable_state", ["expirable": "token", "state": "valid"]) == 1)
        #expect(scrape.value("expirable_state", ["expirable": "token", "state": "empty"]) == 0)
        let left = try #require(scrape.value("expirable_expires_in_seconds", token))
        #expect(left > 50 && left <= 60)
        #expect(scrape.value("expirable_plugin_call_duration_seconds_count", ["expirable": "token", "outcome": "success"]) == 1)
        #expect(scrape.value("expirable_helper_up", token) == 1)
        let broken = ["expirable": "broken"]
        #expect(scrape.value("expirable_plugin_failures_total", ["expirable": "broken", "class": "temporary"]) == 1)
        #expect(scrape.value("expirable_plugin_failures_total", ["expirable": "broken", "class": "permanent"]) == 0)
        #expect(scrape.value("expirable_consecutive_failures", broken) == 1)
        #expect((scrape.value("expirable_next_attempt_seconds", broken) ?? 0) > 5)
        #expect(scrape.value("expirable_state", ["expirable": "broken", "state": "empty"]) == 1)
        #expect(scrape.value("expirable_server_requests_total", ["command": "get"]) == 4)
        #expect(scrape.value("expirable_server_requests_total", ["command": "ttl"]) == 1)
        #expect((scrape.value("expirable_server_connections_accepted_total") ?? 0) >= 5)
        #expect(scrape.value("expirable_server_output_throttles_total") == 0)
        let privateBytes = try #require(scrape.value("expirable_process_private_memory_bytes"))
        #expect(privateBytes > 100_000 && privateBytes < 200_000_000)
        #expect(scrape.value("expirable_build_info", ["version": "0.1.0"]) == 1)

        // Never a value.
        #expect(!scrape.text.contains("token-1"))

        // The next scrape moves the counters on, never back.
        _ = try daemon.redis("GET", "token")
        let again = try Self.scrape(url)
        #expect(again.value("expirable_hits_total", token) == 3)
        #expect(again.value("expirable_server_requests_total", ["command": "get"]) == 5)
    }

    @Test("an expirable removed by a reload leaves the exposition: its gauges, counters and histograms")
    func removedByReload() throws {
        let (daemon, url) = try Self.start()
        defer { daemon.remove() }
        #expect(try daemon.redis("GET", "token") == "token-1")
        #expect(try daemon.redis("GET", "broken").contains("FETCH"))
        let before = try Self.scrape(url)
        let broken = ["expirable": "broken"]
        #expect(before.value("expirable_consecutive_failures", broken) == 1)
        #expect(before.value("expirable_plugin_call_duration_seconds_count", ["expirable": "broken", "outcome": "temporary"]) == 1)

        try ReloadTests.rewrite(daemon, ServingTests.counter())
        let applied = try daemon.ctl("reload")
        #expect(applied.status == 0, "\(applied.stderr)")
        let after = try Self.scrape(url)
        let left = after.families.values.flatMap(\.samples).filter { $0.labels["expirable"] == "broken" }
        #expect(left.isEmpty, "series of the removed expirable: \(left.map(\.name))")
        #expect(after.value("expirable_hits_total", ["expirable": "token"]) == 0)
        #expect(after.value("expirable_misses_total", ["expirable": "token"]) == 1, "the kept expirable's series stay")
        #expect(after.value("expirable_plugin_call_duration_seconds_count", ["expirable": "token", "outcome": "success"]) == 1)
    }

    @Test("counters count every event across reloads that replace an expirable's instance or remove and add it again; never down")
    func countersAcrossReloads() throws {
        let port = try freePort(on: "127.0.0.1")
        let daemon = try ServingTests.start("[metrics]\nlisten = \"127.0.0.1:\(port)\"\n\n" + ReloadTests.counter("token"))
        defer { daemon.remove() }
        let url = URL(string: "http://127.0.0.1:\(port)/metrics")!
        let token = ["expirable": "token"]
        /// A miss and a plugin call each.
        func calls(_ n: Int) throws {
            for _ in 0..<n {
                #expect(try daemon.redis("CLEAR", "token") == "OK")
                #expect(try daemon.redis("GET", "token").hasPrefix("token"))
            }
        }
        func expectCounts(_ n: Double, _ when: String) throws {
            let scrape = try Self.scrape(url)
            #expect(scrape.value("expirable_plugin_calls_total", token) == n, "\(when)")
            #expect(scrape.value("expirable_misses_total", token) == n, "\(when)")
            #expect(scrape.value("expirable_plugin_call_duration_seconds_count", ["expirable": "token", "outcome": "success"]) == n, "\(when): the histogram agrees")
        }
        try calls(2)
        try expectCounts(2, "before any reload")
        // One call nobody scraped, then new params: a new instance, a new entry counting from zero.
        try calls(1)
        try ReloadTests.rewrite(daemon, ReloadTests.counter("token", prefix: "tokenB-"))
        #expect(try daemon.redis("RELOAD").contains("changed: token (new plugin instance, starts empty)"))
        try calls(2)
        try expectCounts(5, "after a reload that replaced the instance")
        // Removed and added again between two scrapes: the series goes on.
        try ReloadTests.rewrite(daemon, ReloadTests.counter("other"))
        #expect(try daemon.redis("RELOAD").contains("removed: token"))
        try ReloadTests.rewrite(daemon, ReloadTests.counter("token"))
        #expect(try daemon.redis("RELOAD").contains("added: token"))
        try calls(1)
        try expectCounts(6, "after a remove and an add between two scrapes")
        // Removed, scraped without it, added again: new series, which count from zero (docs/metrics.md).
        try ReloadTests.rewrite(daemon, ReloadTests.counter("other"))
        #expect(try daemon.redis("RELOAD").contains("removed: token"))
        #expect(try Self.scrape(url).value("expirable_plugin_calls_total", token) == nil, "gone from the exposition")
        try ReloadTests.rewrite(daemon, ReloadTests.counter("token"))
        #expect(try daemon.redis("RELOAD").contains("added: token"))
        try calls(1)
        try expectCounts(1, "back after it left the exposition")
    }

    @Test("helper restarts are counted across a reload that gives the expirable a new helper")
    func helperRestartsAcrossReload() throws {
        let port = try freePort(on: "127.0.0.1")
        let daemon = try ServingTests.start("[metrics]\nlisten = \"127.0.0.1:\(port)\"\n\n" + ReloadTests.counter("token"))
        defer { daemon.remove() }
        let url = URL(string: "http://127.0.0.1:\(port)/metrics")!
        /// Kills the helper, and fetches until a new one answers (after the backoff of 1 s).
        func restartHelper() throws {
            let helper = try #require(IsolationTests.helper(of: daemon, for: "token"))
            kill(helper, SIGKILL)
            #expect(try IsolationTests.eventually(seconds: 10) {
                _ = try daemon.redis("CLEAR", "token")
                return try daemon.redis("GET", "token").hasPrefix("token")
            }, "a new helper answers")
        }
        try restartHelper()
        #expect(try Self.scrape(url).value("expirable_helper_restarts_total", ["expirable": "token"]) == 1)
        try ReloadTests.rewrite(daemon, ReloadTests.counter("token").replacingOccurrences(of: "plugin = \"counter\"\n", with: "plugin = \"counter\"\ntimeout = \"9s\"\n"))
        let retired = try #require(IsolationTests.helper(of: daemon, for: "token"))
        #expect(try daemon.redis("RELOAD").contains("changed: token (value kept)"))
        #expect(IsolationTests.eventually { kill(retired, 0) != 0 }, "the replaced helper exits")
        try restartHelper()
        #expect(try Self.scrape(url).value("expirable_helper_restarts_total", ["expirable": "token"]) == 2, "the new instance's restart counts too")
        let info = try daemon.redis("INFO", "token")
        #expect(info.contains("helper_restarts:2"), "INFO counts them for the expirable: \(info)")
    }

    @Test("a [metrics] port another program holds fails the start at metrics.listen, in words, and no READY=1 is sent")
    func portTaken() throws {
        // Another program's listener on a loopback port (SO_REUSEADDR does not share a port being listened on).
        let port = try freePort(on: "127.0.0.1")
        let holder = try #require(boundSocket("127.0.0.1", port))
        defer { close(holder) }
        try #require(listen(holder, 4) == 0)
        let daemon = try DaemonProcess(expirables: ServingTests.counter(), start: false)
        defer { daemon.remove() }
        try (try String(contentsOfFile: daemon.configPath, encoding: .utf8) + "\n[metrics]\nlisten = \"127.0.0.1:\(port)\"\n")
            .write(toFile: daemon.configPath, atomically: true, encoding: .utf8)
        let notify = try DatagramListener(daemon.directory.appending("notify.sock"))
        var environment = ProcessInfo.processInfo.environment
        environment["NOTIFY_SOCKET"] = notify.path
        let result = try runTool(TestPaths.product("expirabled").path, ["--config", daemon.configPath], seconds: 20, environment: environment)
        #expect(result.status == 1)
        #expect(result.stderr.contains("metrics.listen: cannot listen on 127.0.0.1:\(port): Address already in use; choose a free port or another address"), "\(result.stderr)")
        var messages: [String] = []
        while let message = notify.receive(timeoutSeconds: 1) { messages.append(message) }
        #expect(!messages.contains { $0.split(separator: "\n").contains("READY=1") }, "\(messages)")
        #expect(!FileManager.default.fileExists(atPath: daemon.socket), "the socket was served before the metrics endpoint failed")
    }

    @Test("only GET /metrics: another path is 404, another method 405")
    func otherRequests() throws {
        let (daemon, url) = try Self.start()
        defer { daemon.remove() }
        _ = try Self.scrape(url)
        let base = url.absoluteString.replacingOccurrences(of: "/metrics", with: "")
        let notFound = try runTool("curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10", base + "/other"])
        #expect(notFound.stdout == "404")
        let post = try runTool("curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10", "-X", "POST", url.absoluteString])
        #expect(post.stdout == "405")
    }

    /// No Foundation library at all, FoundationEssentials included (SPEC §8's idle memory: the daemon parses its
    /// own options), with the metrics endpoint serving.
    @Test("the daemon serving metrics does not load Foundation (/proc/PID/maps)")
    func noFoundation() throws {
        let (daemon, url) = try Self.start()
        defer { daemon.remove() }
        _ = try daemon.redis("GET", "token")
        _ = try Self.scrape(url)
        let pid = try #require(daemon.process?.pid)
        let maps = try String(contentsOfFile: "/proc/\(pid)/maps", encoding: .utf8)
        #expect(maps.contains("expirabled"))
        let foundation = maps.split(separator: "\n").filter {
            $0.contains("libFoundation")
        }
        #expect(foundation.isEmpty, "\(foundation)")
    }

    /// A daemon with `[metrics]` (plus `extra` lines in it) and keyed families: `fam` (a value per key, at most 3
    /// keys), `failing` (every call fails) and `hidden` (an allow list: left out of the metrics).
    static func startKeyed(metrics extra: String) throws -> (DaemonProcess, URL) {
        let port = try freePort(on: "127.0.0.1")
        let daemon = try DaemonProcess(expirables: """
            [metrics]
            listen = "127.0.0.1:\(port)"
            \(extra)

            [expirable.fam]
            plugin = "command"
            keyed = true
            max_keys = 3
            [expirable.fam.params]
            shell = "echo FAMSECRET"
            ttl = "1m"

            [expirable.failing]
            plugin = "command"
            keyed = true
            retry_interval = "10s"
            [expirable.failing.params]
            shell = "echo FAILMSG >&2; exit 4"
            ttl = "1m"

            [expirable.hidden]
            plugin = "command"
            keyed = true
            allow = ["uid:\(getuid())"]
            [expirable.hidden.params]
            shell = "echo HIDDENSECRET"
            ttl = "1m"

            """, testPlugins: [])
        return (daemon, URL(string: "http://127.0.0.1:\(port)/metrics")!)
    }

    /// Reads `globex`, `initech`, then `acme` twice, then `umbrella` from `fam` (max_keys 3: the least recently read,
    /// `globex`, is evicted), `x` from `failing` and `secretkey` from `hidden`.
    static func readKeys(_ daemon: DaemonProcess) throws {
        for key in ["globex", "initech", "acme", "acme", "umbrella"] { #expect(try daemon.redis("GET", "fam:\(key)") == "FAMSECRET") }
        #expect(try daemon.redis("GET", "failing:x").contains("FETCH"))
        #expect(try daemon.redis("GET", "hidden:secretkey") == "HIDDENSECRET")
    }

    @Test("metrics_keys = true: each member a keyed family holds has its own series, labelled with its key; never a value; hidden families stay hidden")
    func keysWithMetricsKeys() throws {
        let (daemon, url) = try Self.startKeyed(metrics: "metrics_keys = true")
        defer { daemon.remove() }
        try Self.readKeys(daemon)
        let scrape = try Self.scrape(url)

        #expect(scrape.families["expirable_key_state"]?.type == "gauge")
        #expect(scrape.families["expirable_key_hits"]?.type == "counter")
        let acme = ["expirable": "fam", "key": "acme"]
        #expect(scrape.value("expirable_key_state", acme.merging(["state": "valid"]) { $1 }) == 1)
        #expect(scrape.value("expirable_key_state", acme.merging(["state": "empty"]) { $1 }) == 0)
        #expect(scrape.value("expirable_key_hits_total", acme) == 1)
        #expect(scrape.value("expirable_key_misses_total", acme) == 1)
        #expect(scrape.value("expirable_key_plugin_calls_total", acme) == 1)
        let left = try #require(scrape.value("expirable_key_expires_in_seconds", acme))
        #expect(left > 50 && left <= 60)
        let x = ["expirable": "failing", "key": "x"]
        #expect(scrape.value("expirable_key_state", x.merging(["state": "empty"]) { $1 }) == 1)
        #expect(scrape.value("expirable_key_consecutive_failures", x) == 1)
        #expect(scrape.value("expirable_key_plugin_failures_total", x.merging(["class": "temporary"]) { $1 }) == 1)

        // As many members as the family holds (max_keys 3 of the four read), each with its state.
        let famKeys = Set(scrape.families["expirable_key_state"]?.samples.filter { $0.labels["expirable"] == "fam" }.compactMap { $0.labels["key"] } ?? [])
        #expect(famKeys.count == 3 && famKeys.contains("acme") && famKeys.isSubset(of: ["acme", "globex", "initech", "umbrella"]), "\(famKeys)")
        #expect(scrape.value("expirable_family_keys", ["expirable": "fam"]) == 3)

        // The family's own series are as without metrics_keys: summed, no key label.
        #expect(scrape.value("expirable_state", ["expirable": "fam", "state": "valid"]) == 3)
        let keyed = scrape.families.filter { !$0.key.hasPrefix("expirable_key_") }.values.flatMap(\.samples).filter { $0.labels["key"] != nil }
        #expect(keyed.isEmpty, "\(keyed.map(\.name))")

        // Never a value; an expirable with an allow list is left out, its keys too.
        #expect(!scrape.text.contains("FAMSECRET") && !scrape.text.contains("HIDDENSECRET") && !scrape.text.contains("FAILMSG"))
        #expect(!scrape.text.contains("hidden") && !scrape.text.contains("secretkey"))
    }

    @Test("without metrics_keys no key appears in the metrics, only the families' sums")
    func noKeysWithoutMetricsKeys() throws {
        let (daemon, url) = try Self.startKeyed(metrics: "")
        defer { daemon.remove() }
        try Self.readKeys(daemon)
        let scrape = try Self.scrape(url)
        #expect(scrape.value("expirable_state", ["expirable": "fam", "state": "valid"]) == 3)
        #expect(scrape.families.keys.filter { $0.hasPrefix("expirable_key_") }.isEmpty)
        for key in ["acme", "globex", "initech", "umbrella", "secretkey", "FAMSECRET", "HIDDENSECRET"] {
            #expect(!scrape.text.contains(key), "\(key) in the metrics")
        }
    }

    @Test("a reload that changes [metrics] (metrics_keys) is refused, naming it: only a restart applies it")
    func metricsChangeNeedsRestart() throws {
        let (daemon, url) = try Self.startKeyed(metrics: "")
        defer { daemon.remove() }
        let text = try String(contentsOfFile: daemon.configPath, encoding: .utf8)
        try text.replacingOccurrences(of: "[metrics]\n", with: "[metrics]\nmetrics_keys = true\n").write(toFile: daemon.configPath, atomically: true, encoding: .utf8)
        let answer = try daemon.redis("RELOAD")
        #expect(answer.hasPrefix("ERR reload refused, nothing changed: [metrics] changed, and only a restart applies it"), "\(answer)")
        #expect(try daemon.redis("GET", "fam:acme") == "FAMSECRET")
        #expect(!(try Self.scrape(url).text.contains("acme")))
    }

    @Test("without [metrics] nothing listens for HTTP")
    func offByDefault() throws {
        let daemon = try ServingTests.start(ServingTests.counter())
        defer { daemon.remove() }
        #expect(!daemon.log.contains("metrics listening"))
    }
}
