import ExpirableCore
import Synchronization
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

    @Test("an eager refresh the one-call-a-second rule puts after the expiry is not announced: none is coming")
    func refreshAfterExpiryNotAnnounced() {
        let h = Harness(refresh: .eager(beforeExpiry: .seconds(2)))
        _ = h.startFetch()
        h.fetcher.complete(value("v", expiresIn: 300, clock: h.clock))
        #expect(h.engine.status("token")?.nextRefreshInMillis == nil)
        var explanation = h.engine.explanation("token")
        #expect(explanation?.refresh == nil)
        #expect(explanation?.next.contains("no eager refresh before it expires") == true, "\(explanation?.next ?? "")")
        h.clock.advance(by: .seconds(3))
        #expect(h.fetcher.calls == 1, "no refresh ran")
        let status = h.engine.status("token")
        #expect(status?.state == .expired)
        #expect(status?.nextRefreshInMillis == nil, "INFO says next_refresh_in_ms:none")
        explanation = h.engine.explanation("token")
        #expect(explanation?.refresh == nil)
        #expect(explanation?.next == "the next reader's fetch calls the plugin", "\(explanation?.next ?? "")")
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

/// A cluster's fetcher as the engine sees it: it answers from wherever the test says (`route`), and reports the
/// calls of this node's plugin itself, as `ClusterFetcher` does.
final class RoutedFetcher: ForwardingFetcher {
    let answers = Mutex<[(Result<Fetched, ExpirableError>, CallRecord.Route)]>([])
    let engine = Mutex<Engine?>(nil)

    func fetch(_ request: FetchRequest, completion: @escaping @Sendable (FetchOutcome) -> Void) {
        let (result, route) = answers.withLock { $0.removeFirst() }
        if route == .plugin, let engine = engine.withLock({ $0 }) { engine.countPluginCall(request.key.map { "fam:" + $0 } ?? "token") }
        completion(FetchOutcome(result: result, route: route))
    }
}

@Suite("explain's history: the node's own plugin calls, and the fetches answered without one")
struct CallRouteTests {
    @Test("a fetch forwarded to the owner, one answered by the join and one the quorum did not allow are recorded as such, not as plugin calls, nor timed as calls")
    func routes() async throws {
        let clock = ManualClock()
        let fetcher = RoutedFetcher()
        let engine = Engine(expirables: [ExpirableDefinition(name: "token", freshness: FreshnessPolicy(retryInterval: .milliseconds(10)), fetcher: fetcher)],
                            clock: clock)
        fetcher.engine.withLock { $0 = engine }
        let timed = Locked<[CallRecord]>([])
        engine.observeCalls { _, call in timed.withLock { $0.append(call) } }
        let routes: [CallRecord.Route] = [.plugin, .forwarded(to: "node-b"), .joined, .notCalled]
        for route in routes {
            fetcher.answers.withLock { $0.append((route == .notCalled ? .failure(.fetch("no quorum for token")) : value("v", expiresIn: 1000, clock: clock), route)) }
            _ = try? await engine.fetch("token")
            clock.advance(by: .seconds(2))
            if route != .notCalled { engine.clear("token") }
        }
        let explanation = try #require(engine.explanation("token"))
        #expect(explanation.calls.map(\.route) == routes.reversed())
        #expect(explanation.calls.map(\.isPluginCall) == [false, false, false, true])
        #expect(explanation.why == "nothing is stored: the last fetch failed without a plugin call here (temporary): FETCH no quorum for token")
        #expect(engine.status("token")?.counters.pluginCalls == 1)
        #expect(timed.withLock { $0.map(\.route) } == [.plugin], "only the plugin's call is timed as one (expirable_plugin_call_duration_seconds)")

        clock.advance(by: .seconds(1))
        fetcher.answers.withLock { $0.append((.failure(.timeout("node-b, the owner of token, did not answer within 2000ms")), .forwarded(to: "node-b"))) }
        _ = try? await engine.fetch("token")
        #expect(engine.explanation("token")?.why.hasPrefix("nothing is stored: the last fetch, forwarded to node-b, failed (temporary)") == true)
    }

    @Test("19. a compact keyed member keeps where its last fetch was answered")
    func compactMemberRoute() async throws {
        let clock = ManualClock()
        let fetcher = RoutedFetcher()
        let engine = Engine(expirables: [ExpirableDefinition(name: "fam", keyed: KeyedPolicy(maxKeys: 10, keyIdle: .seconds(3600)), fetcher: fetcher)],
                            clock: clock)
        fetcher.engine.withLock { $0 = engine }
        for (key, route) in [("a", CallRecord.Route.forwarded(to: "node-b")), ("b", .joined), ("c", .plugin)] {
            fetcher.answers.withLock { $0.append((value(key, expiresIn: 60_000, clock: clock), route)) }
            _ = try await engine.fetch("fam:\(key)")
        }
        #expect(engine.explanation("fam:a")?.calls.map(\.route) == [.forwarded(to: "node-b")])
        #expect(engine.explanation("fam:b")?.calls.map(\.route) == [.joined])
        #expect(engine.explanation("fam:c")?.calls.map(\.route) == [.plugin])
        #expect(engine.status("fam:a")?.counters.pluginCalls == 0 && engine.status("fam:c")?.counters.pluginCalls == 1)
    }
}
