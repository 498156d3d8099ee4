import Dispatch
import ExpirableCore
import Testing

/// SPEC §3, one test (or more) per item.
@Suite("SPEC §3 semantics")
struct SemanticsTests {
    @Test("1. a value is valid from its fetch until its expires_at, judged on the monotonic clock")
    func validUntilExpiresAt() {
        let h = Harness()
        let first = h.startFetch()
        h.fetcher.complete(value("a", expiresIn: 1000, clock: h.clock))
        #expect(string(try? first.all.first?.get()) == "a")
        h.clock.advance(by: .milliseconds(999))
        #expect(string(h.engine.cachedValue("token")) == "a")
        // A wall-clock jump does not expire (or revive) a value: validity is on the monotonic clock.
        h.clock.shiftWallClock(by: .seconds(3600))
        #expect(string(h.engine.cachedValue("token")) == "a")
        h.clock.advance(by: .milliseconds(1))
        #expect(h.engine.cachedValue("token") == nil)
        #expect(h.engine.status("token")?.state == .expired)
    }

    @Test("2. fetching a valid value answers from memory without a plugin call")
    func validFromMemory() {
        let h = Harness()
        _ = h.startFetch()
        h.fetcher.complete(value("a", expiresIn: 60_000, clock: h.clock))
        for _ in 0..<100 {
            let answers = h.startFetch()
            #expect(answers.count == 1)
            #expect(string(try? answers.all[0].get()) == "a")
        }
        #expect(h.fetcher.calls == 1)
        #expect(h.engine.status("token")?.counters.hits == 100)
    }

    @Test("3. fetching a missing or expired value calls the plugin and stores the result")
    func missingOrExpiredCallsPlugin() {
        let h = Harness()
        let first = h.startFetch()
        #expect(h.fetcher.calls == 1)
        #expect(first.count == 0)
        h.fetcher.complete(value("a", expiresIn: 1000, clock: h.clock))
        #expect(string(h.engine.cachedValue("token")) == "a")
        h.clock.advance(by: .seconds(2))
        let second = h.startFetch()
        #expect(h.fetcher.calls == 2)
        h.fetcher.complete(value("b", expiresIn: 1000, clock: h.clock))
        #expect(string(try? second.all.first?.get()) == "b")
        #expect(string(h.engine.cachedValue("token")) == "b")
    }

    @Test("4. 1,000 concurrent fetches of an expired value share one plugin call and its value")
    func singleFlightValue() {
        let h = Harness()
        let answers = Answers()
        DispatchQueue.concurrentPerform(iterations: 1000) { _ in
            h.engine.fetch("token") { answers.record($0) }
        }
        #expect(h.fetcher.calls == 1)
        #expect(answers.count == 0)
        h.fetcher.complete(value("shared", expiresIn: 60_000, clock: h.clock))
        #expect(answers.count == 1000)
        let secrets = answers.all.compactMap { try? $0.get().value }
        #expect(secrets.count == 1000)
        #expect(secrets.allSatisfy { $0 === secrets[0] })
    }

    @Test("4. 1,000 concurrent fetches of a failing value share one plugin call and its error")
    func singleFlightError() async {
        let h = Harness()
        await withTaskGroup(of: Result<Fetched, ExpirableError>.self) { group in
            for _ in 0..<1000 {
                group.addTask {
                    do throws(ExpirableError) { return .success(try await h.engine.fetch("token")) } catch { return .failure(error) }
                }
            }
            var spins = 0
            while h.engine.status("token")!.counters.misses < 1000 && spins < 100_000 {
                spins += 1
                await Task.yield()
            }
            #expect(h.fetcher.calls == 1)
            h.fetcher.complete(.failure(.fetch("identity provider said 503")))
            var errors: [ExpirableError] = []
            for await result in group {
                if case .failure(let error) = result { errors.append(error) }
            }
            #expect(errors.count == 1000)
            #expect(errors.allSatisfy { $0 == .fetch("identity provider said 503") })
        }
    }

    @Test("5. a failed fetch answers the plugin's message, stores nothing, and the next fetch calls again")
    func failureNotKept() {
        let h = Harness()
        let first = h.startFetch()
        h.fetcher.complete(.failure(.fetch("bad credentials")))
        guard case .failure(let error) = first.all.first else {
            Issue.record("expected an error")
            return
        }
        #expect(error.code == .fetch)
        #expect(error.message == "bad credentials")
        #expect(h.engine.status("token")?.state == .empty)
        #expect(h.engine.status("token")?.lastError == "FETCH bad credentials")
        // The next fetch gets a call of its own, paced (§3.17) to start retry_interval after the failed one.
        let second = h.startFetch()
        #expect(h.fetcher.calls == 1)
        h.clock.advance(by: FreshnessPolicy.defaultRetryInterval)
        #expect(h.fetcher.calls == 2)
        h.fetcher.complete(.failure(.timeout("plugin did not answer within 10ms")))
        #expect((try? second.all.first?.get()) == nil)
        h.clock.advance(by: FreshnessPolicy.defaultRetryInterval)
        _ = h.startFetch()
        #expect(h.fetcher.calls == 3)
    }

    @Test("6, 17. a success whose expires_at is already past is answered but not stored; the next call is paced as after a failure")
    func pastExpiryNotStored() {
        let h = Harness()
        let first = h.startFetch()
        h.fetcher.complete(value("stale", expiresIn: -5, clock: h.clock))
        #expect(string(try? first.all.first?.get()) == "stale")
        #expect(h.engine.cachedValue("token") == nil)
        let status = h.engine.status("token")
        #expect(status?.state == .empty)
        #expect(status?.consecutiveFailures == 1)
        #expect(status?.lastError?.contains("the plugin's value expired 5 ms before it arrived") == true, "\(String(describing: status?.lastError))")
        // Readers meanwhile wait for the next call, one retry_interval after the first started (SPEC §3.17).
        let second = h.startFetch()
        #expect(h.fetcher.calls == 1)
        #expect(second.count == 0)
        // One who will not wait that long is told why, with the time of the next call.
        let impatient = h.startFetch(patience: .milliseconds(10))
        #expect(impatient.error?.message.contains("the plugin's value expired 5 ms before it arrived") == true)
        h.clock.advance(by: FreshnessPolicy.defaultRetryInterval)
        #expect(h.fetcher.calls == 2)
    }

    @Test("6, 17. a success with a few milliseconds to live is not stored, and paced: the plugin is not called for every reader")
    func nearZeroLifetimePaced() {
        let h = Harness()
        let first = h.startFetch()
        h.fetcher.complete(value("brief", expiresIn: 1, clock: h.clock))
        #expect(string(try? first.all.first?.get()) == "brief")
        #expect(h.engine.status("token")?.lastError?.contains("the plugin's value has 1 ms left") == true)
        for _ in 0..<50 { _ = h.startFetch() }
        #expect(h.fetcher.calls == 1, "fifty readers wait for one paced call")
        h.clock.advance(by: FreshnessPolicy.defaultRetryInterval)
        #expect(h.fetcher.calls == 2)
        h.fetcher.complete(value("good", expiresIn: 60_000, clock: h.clock))
        #expect(string(h.engine.cachedValue("token")) == "good")
        #expect(h.engine.status("token")?.consecutiveFailures == 0)
    }

    @Test("6, 13. a value a few milliseconds beyond expiry_margin is refused in words that count the margin")
    func nearMarginLifetimeWording() {
        let h = Harness(freshness: FreshnessPolicy(expiryMargin: .seconds(2)))
        let first = h.startFetch()
        h.fetcher.complete(value("brief", expiresIn: 2_005, clock: h.clock))
        #expect(string(first.fetched) == "brief", "answered to its call's callers")
        #expect(h.engine.cachedValue("token") == nil, "not stored")
        let lastError = h.engine.status("token")?.lastError ?? ""
        #expect(lastError == "FETCH token: the plugin's value has 2005 ms left, 5 ms of it before expiry_margin (2000 ms): too little to keep (under 10 ms), "
            + "so it was not stored and the next call waits retry_interval; lower expiry_margin or have the issuer grant longer lifetimes", "\(lastError)")
    }

    @Test("7. a value that never expires is kept until cleared and never refreshed")
    func infinityKept() {
        let h = Harness(refresh: .eager(beforeExpiry: .seconds(30)))
        _ = h.startFetch()
        h.fetcher.complete(.success(Fetched(value: Secret("forever"), expiry: .never)))
        #expect(h.clock.pendingTimers == 0)
        h.clock.advance(by: .seconds(10 * 365 * 24 * 3600))
        #expect(string(h.engine.cachedValue("token")) == "forever")
        #expect(h.engine.timeToLive("token") == .never)
        #expect(h.fetcher.calls == 1)
        h.engine.clear("token")
        #expect(h.engine.cachedValue("token") == nil)
    }

    @Test("8. lazy refresh does nothing in the background; an expired value is refetched on the next fetch")
    func lazyDoesNothingInBackground() {
        let h = Harness(refresh: .lazy)
        _ = h.startFetch()
        h.fetcher.complete(value("a", expiresIn: 1000, clock: h.clock))
        #expect(h.clock.pendingTimers == 0)
        h.clock.advance(by: .seconds(3600))
        #expect(h.fetcher.calls == 1)
        _ = h.startFetch()
        #expect(h.fetcher.calls == 2)
    }

    @Test("9. eager refresh starts before_expiry ahead and readers keep the current value meanwhile")
    func eagerRefreshAhead() {
        let h = Harness(refresh: .eager(beforeExpiry: .seconds(10)))
        _ = h.startFetch()
        let old = value("old", expiresIn: 60_000, clock: h.clock)
        h.fetcher.complete(old)
        h.clock.advance(by: .milliseconds(49_999))
        #expect(h.fetcher.calls == 1)
        h.clock.advance(by: .milliseconds(1))
        #expect(h.fetcher.calls == 2)
        #expect(h.engine.status("token")?.fetching == true)
        let during = h.startFetch()
        #expect(string(try? during.all.first?.get()) == "old")
        h.fetcher.complete(value("new", expiresIn: 60_000, clock: h.clock))
        #expect(string(h.engine.cachedValue("token")) == "new")
        #expect(h.engine.status("token")?.counters.refreshes == 1)
        #expect(h.clock.pendingTimers == 1)
    }

    @Test("9. a failed eager refresh keeps the current value and retries with backoff until it expires")
    func eagerRefreshBackoff() {
        let h = Harness(refresh: .eager(beforeExpiry: .seconds(20)))
        _ = h.startFetch()
        h.fetcher.complete(value("current", expiresIn: 30_000, clock: h.clock))
        h.clock.advance(by: .seconds(10))
        #expect(h.fetcher.calls == 2)
        var delays: [Duration] = []
        for _ in 0..<4 {
            h.fetcher.complete(.failure(.fetch("provider down")))
            #expect(string(h.engine.cachedValue("token")) == "current")
            guard let delay = h.clock.nextTimerDelay else { break }
            delays.append(delay)
            h.clock.advance(by: delay)
        }
        #expect(delays == [.seconds(1), .seconds(2), .seconds(4), .seconds(8)])
        // 15 s after the refresh began, 5 s of validity remain: the next backoff (16 s) would pass expiry.
        h.fetcher.complete(.failure(.fetch("provider down")))
        #expect(h.clock.pendingTimers == 0)
        #expect(string(h.engine.cachedValue("token")) == "current")
        h.clock.advance(by: .seconds(5))
        #expect(h.engine.cachedValue("token") == nil)
        let calls = h.fetcher.calls
        _ = h.startFetch()
        #expect(h.fetcher.calls == calls + 1)
    }

    @Test("9. eager refresh never calls the plugin more than once per second, whatever the lifetimes")
    func eagerRefreshRateLimited() {
        let h = Harness(refresh: .eager(beforeExpiry: .seconds(10)))
        _ = h.startFetch()
        h.fetcher.complete(value("v", expiresIn: 5000, clock: h.clock))
        for _ in 0..<100 {
            h.clock.advance(by: .milliseconds(100))
            while h.fetcher.outstanding > 0 {
                h.fetcher.complete(value("v", expiresIn: 5000, clock: h.clock))
            }
        }
        // 10 s of time: the first call plus at most one refresh per second.
        #expect(h.fetcher.calls <= 11)
        #expect(h.fetcher.calls >= 10)
        #expect(string(h.engine.cachedValue("token")) == "v")
    }

    @Test("9. a value that is replaced leaves exactly one refresh timer behind")
    func replacedValueLeavesOneTimer() {
        let h = Harness(refresh: .eager(beforeExpiry: .seconds(1)))
        for round in 0..<5 {
            h.engine.clear("token")
            _ = h.startFetch()
            h.fetcher.complete(value("v\(round)", expiresIn: 60_000, clock: h.clock))
            #expect(h.clock.pendingTimers == 1)
        }
    }

    @Test("10. clear drops the value and stops eager refresh; the next fetch calls the plugin")
    func clearStopsRefresh() {
        let h = Harness(refresh: .eager(beforeExpiry: .seconds(10)))
        _ = h.startFetch()
        h.fetcher.complete(value("a", expiresIn: 60_000, clock: h.clock))
        #expect(h.clock.pendingTimers == 1)
        h.engine.clear("token")
        #expect(h.clock.pendingTimers == 0)
        #expect(h.engine.cachedValue("token") == nil)
        #expect(h.engine.timeToLive("token") == .notStored)
        h.clock.advance(by: .seconds(120))
        #expect(h.fetcher.calls == 1)
        _ = h.startFetch()
        #expect(h.fetcher.calls == 2)
    }

    @Test("10. a refresh in flight when the value is cleared answers its callers but is not stored")
    func clearDuringFlight() {
        let h = Harness()
        let before = h.startFetch()
        h.engine.clear("token")
        // A fetch after the clear must not reuse the call that began before it.
        let after = h.startFetch()
        #expect(h.fetcher.calls == 1)
        h.fetcher.complete(value("from-before-clear", expiresIn: 60_000, clock: h.clock))
        #expect(string(try? before.all.first?.get()) == "from-before-clear")
        #expect(after.count == 0)
        #expect(h.fetcher.calls == 2)
        h.fetcher.complete(value("after-clear", expiresIn: 60_000, clock: h.clock))
        #expect(string(try? after.all.first?.get()) == "after-clear")
        #expect(string(h.engine.cachedValue("token")) == "after-clear")
    }

    @Test("10. clear_all clears every expirable and leaves no refresh loop running")
    func clearAll() {
        let clock = ManualClock()
        let fetchers = (0..<3).map { _ in ControlledFetcher() }
        let engine = Engine(
            expirables: fetchers.enumerated().map { ExpirableDefinition(name: "e\($0)", refresh: .eager(beforeExpiry: .seconds(5)), fetcher: $1) },
            clock: clock
        )
        for (index, fetcher) in fetchers.enumerated() {
            engine.fetch("e\(index)") { _ in }
            fetcher.complete(value("v", expiresIn: 60_000, clock: clock))
        }
        #expect(clock.pendingTimers == 3)
        engine.clearAll()
        #expect(clock.pendingTimers == 0)
        #expect(engine.names.allSatisfy { engine.cachedValue($0) == nil })
    }

    @Test("11. fetching an unknown name is an error that names it and never reaches a plugin")
    func unknownName() async {
        let h = Harness()
        do throws(ExpirableError) {
            _ = try await h.engine.fetch("no_such_token")
            Issue.record("expected NOTFOUND")
        } catch {
            #expect(error.code == .notFound)
            #expect(error.message.contains("'no_such_token'"))
        }
        #expect(h.fetcher.calls == 0)
        #expect(h.engine.cachedValue("no_such_token") == nil)
        #expect(h.engine.clear("no_such_token") == false)
    }

    @Test("12. values never reach the logs, and a secret prints only its size")
    func valuesNeverLogged() {
        let h = Harness(refresh: .eager(beforeExpiry: .seconds(5)))
        let secret = "s3cr3t-token-value"
        _ = h.startFetch()
        h.fetcher.complete(value(secret, expiresIn: 10_000, clock: h.clock))
        h.clock.advance(by: .seconds(5))
        h.fetcher.complete(.failure(.fetch("refresh failed")))
        h.clock.advance(by: .seconds(1))
        h.fetcher.complete(value(secret, expiresIn: 10_000, clock: h.clock))
        h.engine.clear("token")
        #expect(!h.logs.text.isEmpty)
        #expect(!h.logs.text.contains(secret))
        #expect("\(Secret(secret))" == "<secret, \(secret.utf8.count) bytes>")
    }
}
