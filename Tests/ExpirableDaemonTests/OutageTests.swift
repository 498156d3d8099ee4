import ExpirableTestSupport
import Foundation
import Synchronization
import Testing

/// Issue 10 end to end: the daemon fetching tokens through the `command` plugin and real curl from a local token
/// endpoint (Tests/Fixtures/token_endpoint.py) that answers 500, hangs, refuses connections and comes back, while
/// concurrent readers loop on FETCH. SPEC §3 items 13, 16 and 17 as a user of an identity provider sees them.
@Suite("An outage of the token endpoint, through curl")
struct OutageTests {
    /// The `command` plugin running curl against `endpoint`, with the freshness keys given.
    static func token(_ endpoint: TokenEndpoint, _ freshness: String) -> String {
        """
        [expirable.token]
        plugin = "command"
        \(freshness)
        [expirable.token.params]
        argv = ["curl", "-sS", "--fail-with-body", "--max-time", "2", "\(endpoint.tokenURL)"]
        output = "json"
        value_key = "access_token"

        """
    }

    @Test("16, 17. 500, then a hanging endpoint, then refused connections: one curl per retry_interval, the stale token until the bound, then the failure, and a new token on the first success")
    func outageWithStaleIfError() throws {
        try requireCurl()
        let endpoint = try TokenEndpoint(expiresIn: 2, slowSeconds: 5)
        defer { endpoint.stop() }
        let margin = 500.0, staleFor = 3000.0
        let daemon = try DaemonProcess(expirables: Self.token(endpoint, """
            expiry_margin = "500ms"
            stale_if_error = "3s"
            retry_interval = "1s"
            """), testPlugins: [])
        defer { daemon.remove() }
        // The phases below take about 14 s, longer on a loaded machine; stop() ends the readers.
        let readers = FetchReaders(socket: daemon.socket, name: "token", count: 8, pause: 20_000, limit: 60)
        readers.start()
        defer { readers.stop() }

        // Tokens live 2 s and are handed out for 1.5 s: one passes before the outage. Each phase is timed from
        // before the first count read in it to after the last, which on a loaded machine is more than its sleep.
        usleep(1_600_000)
        try endpoint.set(.http500)
        let outageStart = unixMillis(), requestsAt500 = try endpoint.requests()
        usleep(3_000_000)
        try endpoint.set(.slow)
        let slowStart = unixMillis(), requestsAtSlow = try endpoint.requests(), slowRead = unixMillis()
        usleep(4_000_000)
        try endpoint.set(.down)
        let requestsAtDown = try endpoint.requests(), downRead = unixMillis()
        let callsAtDownRead = unixMillis(), callsAtDown = try pluginCalls(daemon)
        usleep(3_000_000)
        let callsBeforeRecovery = try pluginCalls(daemon), requestsBeforeRecovery = try endpoint.requests()
        let recovery = unixMillis()
        try endpoint.set(.ok)
        // Connections are accepted from here on (a call between `recovery` and here was still refused).
        let okAt = unixMillis()
        // Recovery is the next paced call, at most retry_interval away; wait for it (10 s at most, a bound only),
        // then watch half a second more.
        let firstAfter = "tok-\(requestsBeforeRecovery + 1)"
        for _ in 0..<200 where !readers.answers().contains(where: { $0.value == firstAfter }) { usleep(50_000) }
        usleep(500_000)
        readers.stop()
        let answers = readers.answers()
        let arrivals = try endpoint.arrivals()

        #expect(answers.allSatisfy { $0.kind != .other }, "\(answers.filter { $0.kind == .other }.prefix(3))")
        // 13: every fresh answer has at least expiry_margin left. The daemon checks after the request was sent, so
        // every fresh answer had the margin left at its sending (10 ms allowed: the daemon reads its monotonic and
        // wall clocks one after the other).
        let fresh = answers.filter { $0.kind == .fresh }
        let leastLeftAtSending = fresh.map { Double($0.expiresAt) - $0.sentAt }.min() ?? .infinity
        #expect(leastLeftAtSending >= margin - 10, "a fresh token was handed out for a request sent with \(leastLeftAtSending) ms left; expiry_margin is \(margin) ms")
        // And when it arrives, with 10 ms allowed for its transit from the daemon's check to the reader's clock
        // read, judged on the answers that came back within 10 ms of being asked (the check fell inside that
        // window): a reader the loaded machine did not run for a while after the answer arrived would count the
        // wait against the daemon, as in marginEndToEnd.
        let prompt = fresh.filter { $0.receivedAt - $0.sentAt <= 10 }
        #expect(prompt.count >= 8, "only \(prompt.count) of \(fresh.count) fresh answers came back within 10 ms")
        let leastLeft = prompt.map { Double($0.expiresAt) - $0.receivedAt }.min() ?? .infinity
        #expect(leastLeft >= margin - 10, "a fresh token arrived with \(leastLeft) ms left; expiry_margin is \(margin) ms")

        // 16: the stale answers are the last token before the outage, until stale_if_error past the moment it
        // stopped being valid: its expires_at less expiry_margin, which counts for every purpose (freshness.md).
        // Between that bound and expires_at + stale_if_error a failed call answers its error (a loaded machine
        // that put a call's failure there made this test fail when it took expires_at + stale_if_error).
        let stale = answers.filter { $0.kind == .stale }
        let firstStale = try #require(stale.first, "no stale answer during the outage")
        let lastFresh = try #require(fresh.last { $0.receivedAt <= firstStale.receivedAt }, "no fresh answer before the outage")
        let bound = Double(lastFresh.expiresAt) - margin + staleFor
        #expect(stale.allSatisfy { $0.value == lastFresh.value && $0.expiresAt == lastFresh.expiresAt },
                "stale answers other than \(lastFresh.value): \(Set(stale.map(\.value)))")
        // The daemon decides after the request is sent and before the reader reads: no request sent after the
        // bound got a stale answer (10 ms allowed for the daemon's two clocks, as above), a prompt answer arrives
        // within transit of the bound (50 ms allowed), and no error can be received before it.
        let lastStaleSent = stale.map(\.sentAt).max() ?? 0
        #expect(lastStaleSent <= bound + 10, "a stale answer to a request sent \(lastStaleSent - bound) ms after the bound")
        let lastStale = stale.filter { $0.receivedAt - $0.sentAt <= 10 }.map(\.receivedAt).max() ?? 0
        #expect(lastStale <= bound + 50, "a stale answer \(lastStale - bound) ms after the bound")
        #expect(stale.allSatisfy { $0.receivedAt >= Double($0.expiresAt) - margin - 10 }, "a stale answer before the token's end")

        // Every error carries the failure that caused it: the endpoint's own error (curl --fail-with-body hands
        // the command plugin its JSON body), or what curl printed on stderr.
        let errors = answers.filter { $0.kind == .error }
        let failures = [#"curl reported error "temporarily_unavailable": token endpoint in mode 500"#, "curl: (28) Operation timed out",
                        "curl: (7) Failed to connect to 127.0.0.1 port \(endpoint.port)"]
        #expect(errors.allSatisfy { error in failures.contains { error.value.contains($0) } },
                "unexpected errors: \(Set(errors.map(\.value)).filter { message in !failures.contains { message.contains($0) } })")
        #expect(errors.allSatisfy { $0.receivedAt >= bound - 20 }, "an error while the stale token could still be answered (bound \(bound)): \(errors.filter { $0.receivedAt < bound - 20 }.prefix(3))")
        #expect(errors.contains { $0.value.contains(failures[1]) }, "no error from the hanging endpoint")
        #expect(errors.contains { $0.value.contains(failures[2]) }, "no error from the refused connections")

        // 17: pacing. The endpoint saw the calls of the 500 and slow phases; while down it saw none, and the
        // daemon's own counter shows the calls it made. No two calls less than retry_interval apart, so at most one
        // a second, however many readers. The daemon paces the calls' starts; an arrival at the endpoint comes after
        // the helper has started curl and curl has connected, which takes from a few to over a hundred
        // milliseconds on a loaded machine (150 ms allowed, as in outageWithoutStale). Calls not paced at all
        // arrive milliseconds apart.
        let outageArrivals = arrivals.filter { $0 >= outageStart && $0 < recovery }
        let gaps = zip(outageArrivals.dropFirst(), outageArrivals).map { $0 - $1 }
        #expect(gaps.allSatisfy { $0 >= 1000 - 150 }, "calls closer than retry_interval during the outage: \(gaps)")
        // In a phase of `span` ms, calls one retry_interval apart: at most one per whole second, and one more; the
        // arrivals, whose curl may have started up to 150 ms before the phase, as many in 150 ms more. A phase
        // lasts its sleep, and on a loaded machine longer: counted against its measured length (3 s of 500 allow 4
        // requests, 4 s of hanging 5, 3 s of refused connections 4 calls).
        func paced(_ span: Double, jitter: Double = 0) -> Int { Int((span + jitter) / 1000) + 1 }
        let (span500, spanSlow, spanDown) = (slowRead - outageStart, downRead - slowStart, recovery - callsAtDownRead)
        #expect(requestsAtSlow - requestsAt500 <= paced(span500, jitter: 150), "\(requestsAtSlow - requestsAt500) requests in \(span500) ms of 500")
        #expect(requestsAtDown - requestsAtSlow <= paced(spanSlow, jitter: 150), "\(requestsAtDown - requestsAtSlow) requests in \(spanSlow) ms of hanging")
        #expect(requestsBeforeRecovery == requestsAtDown, "a request reached the endpoint while it refused connections")
        #expect((2...paced(spanDown)).contains(callsBeforeRecovery - callsAtDown), "\(callsBeforeRecovery - callsAtDown) calls in \(spanDown) ms of refused connections")
        #expect(readers.pluginCallsPerSecond(from: outageStart, to: recovery).allSatisfy { $0 <= 2 },
                "plugin calls per second: \(readers.pluginCallsPerSecond(from: outageStart, to: recovery))")

        // Recovery on the first success: the first request after the endpoint came back gave a fresh token,
        // within retry_interval (and curl), and every request sent after it arrived was answered fresh. Timed
        // from when the endpoint accepted connections again: the request reached it within retry_interval (500
        // ms allowed for the daemon's timer and curl's start on a loaded machine), and its token was answered
        // within a second of that.
        let recovered = try #require(answers.first { $0.value == firstAfter }, "no \(firstAfter) after recovery: \(Set(answers.suffix(20).map(\.value)))")
        #expect(recovered.kind == .fresh)
        let recoveredArrival = try #require(arrivals.count > requestsBeforeRecovery ? arrivals[requestsBeforeRecovery] : nil, "\(arrivals.count) arrivals")
        #expect(recoveredArrival - okAt < 1000 + 500, "the first request reached the endpoint \(recoveredArrival - okAt) ms after it came back")
        #expect(recovered.receivedAt - recoveredArrival < 1000, "recovered \(recovered.receivedAt - recoveredArrival) ms after the first request reached the endpoint")
        let later = answers.filter { $0.sentAt > recovered.receivedAt }
        #expect(!later.isEmpty && later.allSatisfy { $0.kind == .fresh }, "\(later.filter { $0.kind != .fresh }.prefix(3))")
    }

    @Test("17. without stale_if_error, callers during a 500 outage wait for the next paced call and each gets its error")
    func outageWithoutStale() throws {
        try requireCurl()
        let endpoint = try TokenEndpoint(expiresIn: 60)
        defer { endpoint.stop() }
        try endpoint.set(.http500)
        let daemon = try DaemonProcess(expirables: Self.token(endpoint, "retry_interval = \"1s\""), testPlugins: [])
        defer { daemon.remove() }
        let start = unixMillis()
        let readers = FetchReaders(socket: daemon.socket, name: "token", count: 8, pause: 0, limit: 10)
        readers.start()
        defer { readers.stop() }
        usleep(3_000_000)
        readers.stop()
        let answers = readers.answers()
        let arrivals = try endpoint.arrivals()
        #expect(answers.count >= 16, "\(answers.count) answers")
        #expect(answers.allSatisfy { $0.kind == .error && $0.value.contains(#"curl reported error "temporarily_unavailable": token endpoint in mode 500"#) && $0.value.contains("(exit status 22)") },
                "\(answers.filter { $0.kind != .error }.prefix(3))")
        // Never an error from memory: each answer came from a request that reached the endpoint after the
        // caller asked and before it was answered.
        #expect(answers.allSatisfy { answer in arrivals.contains { $0 >= answer.sentAt && $0 <= answer.receivedAt } })
        // The daemon paces the calls' starts; an arrival at the endpoint comes after the helper has started
        // curl and curl has connected, which takes from a few to over a hundred milliseconds on a loaded
        // machine (a clean-clone CI run saw gaps under 970 ms). Calls not paced at all arrive milliseconds apart.
        let gaps = zip(arrivals.dropFirst(), arrivals).map { $0 - $1 }
        #expect(gaps.allSatisfy { $0 >= 1000 - 150 }, "calls closer than retry_interval: \(gaps)")
        #expect(arrivals.count <= Int((unixMillis() - start) / 1000) + 1, "\(arrivals.count) requests")
    }

    @Test("13 end to end: no FETCH through curl hands out a token with less than expiry_margin left")
    func marginEndToEnd() throws {
        try requireCurl()
        let endpoint = try TokenEndpoint(expiresIn: 1)
        defer { endpoint.stop() }
        let daemon = try DaemonProcess(expirables: Self.token(endpoint, "expiry_margin = \"400ms\""), testPlugins: [])
        defer { daemon.remove() }
        let readers = FetchReaders(socket: daemon.socket, name: "token", count: 8, pause: 5_000, limit: 10)
        readers.start()
        defer { readers.stop() }
        usleep(3_000_000)
        readers.stop()
        let answers = readers.answers()
        #expect(answers.allSatisfy { $0.kind == .fresh }, "\(answers.filter { $0.kind != .fresh }.prefix(3))")
        // Tokens are handed out for 600 ms of their 1 s: several pass, and readers catch each near its end.
        #expect(Set(answers.map(\.value)).count >= 4)
        // Left at receipt, with 10 ms allowed for the reply's transit from the daemon's check to the reader,
        // judged on the answers that came back within 10 ms of being asked: the check fell inside that
        // window. A reader the loaded machine did not run for a while after the answer arrived would count
        // the wait against the daemon (a clean-clone CI run saw 280 ms "left" that way).
        let prompt = answers.filter { $0.receivedAt - $0.sentAt <= 10 }
        #expect(prompt.count >= 8, "only \(prompt.count) of \(answers.count) answers came back within 10 ms")
        let left = prompt.map { Double($0.expiresAt) - $0.receivedAt }
        let least = left.min() ?? .infinity
        #expect(least >= 400 - 10, "a token arrived with \(least) ms left; expiry_margin is 400 ms")
        #expect(least < 400 + 100, "no answer near a token's end (least left \(least) ms): the margin was not exercised")
    }
}

/// The outage tests run real curl, as users of the `command` plugin do; the plugin's helper looks it up in this PATH.
private func requireCurl() throws {
    let found = ["/usr/local/bin", "/usr/bin", "/bin"].contains { FileManager.default.isExecutableFile(atPath: "\($0)/curl") }
    try #require(found, "curl is not installed (looked in /usr/local/bin, /usr/bin, /bin); these tests drive the command plugin through real curl: apt-get install curl, or run scripts/test.sh, which installs it")
}

private func unixMillis() -> Double {
    var now = timespec()
    clock_gettime(CLOCK_REALTIME, &now)
    return Double(now.tv_sec) * 1000 + Double(now.tv_nsec) / 1_000_000
}

private func pluginCalls(_ daemon: DaemonProcess) throws -> Int {
    try #require(infoField("plugin_calls", in: RawConnection(daemon.socket).roundTrip("INFO token\r\n", expecting: 1)))
}

private func infoField(_ field: String, in info: String) -> Int? {
    info.split(whereSeparator: \.isNewline).first { $0.hasPrefix("\(field):") }.flatMap { Int($0.dropFirst(field.count + 1)) }
}

/// One FETCH answer as a reader saw it, times on the local wall clock in Unix milliseconds.
struct FetchAnswer: Sendable, CustomStringConvertible {
    enum Kind: Sendable { case fresh, stale, error, other }
    let kind: Kind
    /// The token, or the error's message (or the raw reply, for `other`).
    let value: String
    /// FETCH's `expires_at_ms`; 0 for an error.
    let expiresAt: Int64
    let sentAt: Double
    let receivedAt: Double

    init(reply: String, sentAt: Double, receivedAt: Double) {
        self.sentAt = sentAt
        self.receivedAt = receivedAt
        let parts = reply.components(separatedBy: "\r\n")
        if reply.hasPrefix("-") {
            (kind, value, expiresAt) = (.error, String(parts[0].dropFirst()), 0)
        } else if parts.count >= 6, parts[0] == "*3", parts[3].hasPrefix(":"), let expiresAt = Int64(parts[3].dropFirst()),
                  parts[5] == "fresh" || parts[5] == "stale" {
            (kind, value, self.expiresAt) = (parts[5] == "fresh" ? .fresh : .stale, parts[2], expiresAt)
        } else {
            (kind, value, expiresAt) = (.other, reply, 0)
        }
    }

    var description: String { "\(kind) \(value) expires_at=\(expiresAt) sent=\(sentAt) received=\(receivedAt)" }
}

/// `count` threads, each with its own connection, looping `FETCH name` with `pause` microseconds between requests,
/// for at most `limit` seconds or until `stop()`; and one more thread reading INFO's `plugin_calls` every 100 ms.
final class FetchReaders: Sendable {
    let socket: String
    let name: String
    let count: Int
    let pause: UInt32
    let limit: Double
    private let collected = Mutex<[FetchAnswer]>([])
    /// (Unix ms when INFO was sent, plugin_calls).
    private let samples = Mutex<[(Double, Int)]>([])
    private let stopping = Atomic<Bool>(false)
    private let running = Atomic<Int>(0)

    init(socket: String, name: String, count: Int, pause: UInt32, limit: Double) {
        self.socket = socket
        self.name = name
        self.count = count
        self.pause = pause
        self.limit = limit
    }

    func start() {
        let deadline = unixMillis() + limit * 1000
        running.store(count + 1, ordering: .sequentiallyConsistent)
        for _ in 0..<count {
            Thread.detachNewThread { [self] in
                defer { running.subtract(1, ordering: .sequentiallyConsistent) }
                let request = "*2\r\n$5\r\nFETCH\r\n$\(name.utf8.count)\r\n\(name)\r\n"
                guard let connection = try? RawConnection(socket) else {
                    collected.withLock { $0.append(FetchAnswer(reply: "cannot connect", sentAt: 0, receivedAt: 0)) }
                    return
                }
                while !stopping.load(ordering: .sequentiallyConsistent) && unixMillis() < deadline {
                    let sent = unixMillis()
                    let reply = connection.roundTrip(request, expecting: 1)
                    let answer = FetchAnswer(reply: reply, sentAt: sent, receivedAt: unixMillis())
                    collected.withLock { $0.append(answer) }
                    if pause > 0 { usleep(pause) }
                }
            }
        }
        Thread.detachNewThread { [self] in
            defer { running.subtract(1, ordering: .sequentiallyConsistent) }
            while !stopping.load(ordering: .sequentiallyConsistent) && unixMillis() < deadline {
                let sent = unixMillis()
                if let connection = try? RawConnection(socket),
                   let calls = infoField("plugin_calls", in: connection.roundTrip("*2\r\n$4\r\nINFO\r\n$\(name.utf8.count)\r\n\(name)\r\n", expecting: 1)) {
                    samples.withLock { $0.append((sent, calls)) }
                }
                usleep(100_000)
            }
        }
    }

    /// Asks the threads to stop and waits (at most 15 s: a reader may be waiting on a plugin call) until they have.
    func stop() {
        stopping.store(true, ordering: .sequentiallyConsistent)
        for _ in 0..<300 where running.load(ordering: .sequentiallyConsistent) > 0 { usleep(50_000) }
    }

    /// Every answer so far, in the order received.
    func answers() -> [FetchAnswer] {
        collected.withLock { $0 }.sorted { $0.receivedAt < $1.receivedAt }
    }

    /// Plugin calls started in each whole second from `start` to `end`, from the INFO samples.
    func pluginCallsPerSecond(from start: Double, to end: Double) -> [Int] {
        let samples = samples.withLock { $0 }
        func calls(at time: Double) -> Int? { samples.last { $0.0 <= time }?.1 }
        return stride(from: start, to: end - 1000, by: 1000).compactMap { second in
            guard let before = calls(at: second), let after = calls(at: second + 1000) else { return nil }
            return after - before
        }
    }
}
