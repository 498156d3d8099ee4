import ExpirableCore
import Testing

/// The engine's side of `explain` and of the metrics, on a manual clock: the call history and the rules it reports.
@Suite("explain and figures, on the engine")
struct EngineExplainTests {
    @Test("each call is recorded with its start, duration, outcome and trigger, newest first, at most 8")
    func callHistory() {
        let h = Harness(refresh: .lazy, freshness: FreshnessPolicy(retryInterval: .milliseconds(100)))
        _ = h.startFetch()
        h.clock.advance(by: .milliseconds(250))
        h.fetcher.complete(.failure(.fetch("down", class: .permanent)))
        var explanation = h.engine.explanation("token")
        #expect(explanation?.calls.count == 1)
        #expect(explanation?.calls.first?.outcome == .permanent)
        #expect(explanation?.calls.first?.durationNanos == 250_000_000)
        #expect(explanation?.calls.first?.trigger == .reader)
        #expect(explanation?.calls.first?.errorCode == .fetch)
        #expect(explanation?.pacing?.reason.hasPrefix("the last failure was permanent") == true)
        for _ in 0..<10 {
            h.clock.advance(by: .seconds(1))
            _ = h.startFetch()
            h.fetcher.complete(value("v", expiresIn: 10, clock: h.clock))
        }
        explanation = h.engine.explanation("token")
        #expect(explanation?.calls.count == 8)
        #expect(explanation?.calls.allSatisfy { $0.outcome == .success } == true)
        #expect(h.engine.status("token")?.counters.permanentFailures == 1)
    }

    @Test("the next refresh names before_expiry, the jitter drawn and expiry_margin")
    func refreshRule() {
        let h = Harness(refresh: .eager(beforeExpiry: .seconds(10)),
                        freshness: FreshnessPolicy(expiryMargin: .seconds(5), jitter: .seconds(20)), jitter: { _ in 7_000_000_000 })
        _ = h.startFetch()
        h.fetcher.complete(value("v", expiresIn: 60_000, clock: h.clock))
        let explanation = h.engine.explanation("token")
        // 60 s less 5 s margin less 10 s before_expiry less 7 s jitter.
        #expect(explanation?.refresh?.inMillis == 38_000)
        #expect(explanation?.refresh?.rule == "before_expiry 10000 ms and a jitter of 7000 ms (drawn from 0 to 20000 ms) before the expiry and expiry_margin 5000 ms")
        #expect(explanation?.why.hasPrefix("a value is stored and valid, handed out for 55000 ms more") == true)
        #expect(explanation?.lifetimeMillis == 60_000)
    }

    @Test("figures: one per configured name, counters and state as the engine holds them")
    func figures() {
        let h = Harness()
        _ = h.startFetch()
        h.fetcher.complete(value("v", expiresIn: 30_000, clock: h.clock))
        _ = h.startFetch()
        let figures = h.engine.figures()
        #expect(figures.count == 1)
        #expect(figures.first?.states == [.valid: 1])
        #expect(figures.first?.counters.hits == 1)
        #expect(figures.first?.counters.misses == 1)
        #expect(figures.first?.expiresInSeconds == 30)
    }
}
