import ExpirableClient
import ExpirableTestSupport
import Testing

/// TTL and PTTL with Redis's meanings (SPEC §6), and the client's `timeToLive(_:)` built on PTTL.
@Suite("TTL in seconds, PTTL in milliseconds")
struct TimeToLiveTests {
    @Test("TTL answers whole seconds rounded to nearest, PTTL milliseconds; -1 never expires, -2 nothing stored")
    func protocolMeanings() throws {
        let daemon = try ServingTests.start(ServingTests.counter() + "[expirable.forever]\nplugin = \"counter\"\n[expirable.forever.params]\nttl_ms = \"never\"\n")
        defer { daemon.remove() }
        #expect(try daemon.redis("TTL", "token") == "-2")
        #expect(try daemon.redis("PTTL", "token") == "-2")
        _ = try daemon.redis("GET", "token")
        let ms = try #require(Int(try daemon.redis("PTTL", "token")))
        #expect(ms > 55_000 && ms <= 60_000)
        // 60 s less the few ms since the fetch round to 60.
        #expect(try daemon.redis("TTL", "token") == "60")
        _ = try daemon.redis("GET", "forever")
        #expect(try daemon.redis("TTL", "forever") == "-1")
        #expect(try daemon.redis("PTTL", "forever") == "-1")
        #expect(try daemon.redis("TTL", "nope").hasPrefix("NOTFOUND"))
        #expect(try daemon.redis("PTTL", "nope").hasPrefix("NOTFOUND"))
    }

    @Test("timeToLive is notStored, never, or a Duration to the millisecond; an unknown name throws NOTFOUND")
    func client() async throws {
        let daemon = try ServingTests.start(ServingTests.counter(ttlMillis: 600_000) + "[expirable.forever]\nplugin = \"counter\"\n[expirable.forever.params]\nttl_ms = \"never\"\n")
        defer { daemon.remove() }
        let client = daemon.client
        #expect(try await client.timeToLive("token") == .notStored)
        _ = try await client.value("token")
        guard case .expiresIn(let left) = try await client.timeToLive("token") else {
            Issue.record("expected a finite time to live")
            return
        }
        // A 10-minute lifetime read back in whole minutes, not milliseconds or hours; the bound below leaves minutes for
        // a cooperative thread to come back to this async test.
        #expect(left > .seconds(300) && left <= .seconds(600))
        _ = try await client.value("forever")
        #expect(try await client.timeToLive("forever") == .never)
        try await client.clear("forever")
        #expect(try await client.timeToLive("forever") == .notStored)
        do {
            _ = try await client.timeToLive("nope")
            Issue.record("expected NOTFOUND")
        } catch {
            #expect(error.code == .notFound)
        }
    }
}
