import Dispatch
import ExpirableCore
import Synchronization
import Testing

/// SPEC §3 items 13–18 on the manual clock: nothing here sleeps.
@Suite("SPEC §3 freshness (items 13–18)")
struct FreshnessTests {
    // MARK: 13. expiry_margin

    @Test("13. a value counts as expired expiry_margin before its expires_at: not answered, TTL counts to the margin")
    func marginExpiresEarly() {
        let h = Harness(freshness: FreshnessPolicy(expiryMargin: .seconds(10)))
        _ = h.startFetch()
        h.fetcher.complete(value("a", expiresIn: 60_000, clock: h.clock))
        h.clock.advance(by: .seconds(40))
        #expect(h.engine.timeToLive("token") == .millis(10_000))
        h.clock.advance(by: .milliseconds(9_999))
        #expect(string(h.engine.cachedValue("token")) == "a")
        h.clock.advance(by: .milliseconds(1))
        #expect(h.engine.cachedValue("token") == nil)
        #expect(h.engine.timeToLive("token") == .notStored)
        #expect(h.engine.status("token")?.state == .expired)
        let next = h.startFetch()
        #expect(next.count == 0)
        #expect(h.fetcher.calls == 2)
    }

    @Test("13. a fetched value with less than expiry_margin left is never handed out")
    func marginNeverHandedOut() {
        let h = Harness(freshness: FreshnessPolicy(expiryMargin: .seconds(10)))
        let answers = h.startFetch()
        h.fetcher.complete(value("dying", expiresIn: 9_999, clock: h.clock))
        let error = answers.error
        #expect(error?.code == .fetch)
        #expect(error?.message.contains("less than expiry_margin (10000 ms)") == true)
        #expect(h.engine.status("token")?.state == .empty)
    }

    @Test("13. an eager refresh counts before_expiry from expires_at less the margin")
    func marginMovesEagerRefresh() {
        let h = Harness(refresh: .eager(beforeExpiry: .seconds(5)), freshness: FreshnessPolicy(expiryMargin: .seconds(10)))
        _ = h.startFetch()
        h.fetcher.complete(value("a", expiresIn: 60_000, clock: h.clock))
        #expect(h.clock.nextTimerDelay == .seconds(45))
    }

    @Test("13. a replica inside its margin is not offered to peers; a valid one travels with its true remaining time")
    func marginInReplication() {
        let h = Harness(freshness: FreshnessPolicy(expiryMargin: .seconds(10)))
        h.engine.applyReplica("token", value: Secret("r"), remainingMillis: 60_000, version: Version(time: 1, node: "b"))
        #expect(h.engine.replicas().first?.remainingMillis == 60_000)
        h.clock.advance(by: .seconds(50))
        #expect(h.engine.cachedValue("token") == nil)
        #expect(h.engine.replicas().first?.value == nil)
    }

    // MARK: 14. before_expiry as a share, jitter

    @Test("14. before_expiry as a share: 20% of a 100 s lifetime refreshes after 80 s")
    func beforeExpiryShare() {
        let h = Harness(refresh: .eager(beforeExpiry: .share(basisPoints: 2000)))
        _ = h.startFetch()
        h.fetcher.complete(value("a", expiresIn: 100_000, clock: h.clock))
        #expect(h.clock.nextTimerDelay == .seconds(80))
        #expect(h.engine.status("token")?.nextRefreshInMillis == 80_000)
    }

    @Test("14. jitter moves a refresh up to jitter earlier: a draw of 0 is before_expiry, the largest draw before_expiry + jitter")
    func jitterBounds() {
        for (draw, expected) in [(UInt64(0), Duration.seconds(90)), (.max, .seconds(70))] {
            let h = Harness(refresh: .eager(beforeExpiry: .seconds(10)), freshness: FreshnessPolicy(jitter: .seconds(20)),
                            jitter: { bound in min(draw, bound) })
            _ = h.startFetch()
            h.fetcher.complete(value("a", expiresIn: 100_000, clock: h.clock))
            #expect(h.clock.nextTimerDelay == expected)
        }
    }

    @Test("14. jitter is drawn afresh for each refresh and spreads refreshes evenly over its range")
    func jitterSpread() {
        let rng = Locked(SplitMix64(seed: 14))
        let h = Harness(refresh: .eager(beforeExpiry: .seconds(10)), freshness: FreshnessPolicy(jitter: .share(basisPoints: 2000)),
                        jitter: { bound in rng.withLock { $0.next() } % (bound + 1) })
        _ = h.startFetch()
        h.fetcher.complete(value("v", expiresIn: 100_000, clock: h.clock))
        var delays: [Double] = []
        for _ in 0..<1000 {
            guard let delay = h.clock.nextTimerDelay else { break }
            delays.append(Double(delay.nanoseconds) / 1e9)
            h.clock.advance(by: delay)
            h.fetcher.complete(value("v", expiresIn: 100_000, clock: h.clock))
        }
        #expect(delays.count == 1000)
        // Lifetime 100 s, before_expiry 10 s, jitter 20 % = 20 s: every refresh between 70 s and 90 s.
        #expect(delays.allSatisfy { $0 >= 70 && $0 <= 90 })
        let mean = delays.reduce(0, +) / Double(delays.count)
        #expect(abs(mean - 80) < 1)
        var buckets = [Int](repeating: 0, count: 10)
        for delay in delays { buckets[min(9, Int((delay - 70) / 2))] += 1 }
        // Uniform: about 100 per 2-second bucket.
        #expect(buckets.allSatisfy { $0 > 60 && $0 < 140 }, "\(buckets)")
        #expect(Set(delays).count > 900)
    }

    @Test("14. the default jitter source stays within its bound")
    func defaultJitterSource() {
        let clock = ManualClock()
        let fetcher = ControlledFetcher()
        let engine = Engine(expirables: [ExpirableDefinition(name: "t", refresh: .eager(beforeExpiry: .seconds(1)),
                                                             freshness: FreshnessPolicy(jitter: .seconds(10)), fetcher: fetcher)], clock: clock)
        var delays: Set<Duration> = []
        for _ in 0..<50 {
            engine.clear("t")
            engine.fetch("t") { _ in }
            fetcher.complete(value("v", expiresIn: 60_000, clock: clock))
            if let delay = clock.nextTimerDelay { delays.insert(delay) }
        }
        #expect(delays.allSatisfy { $0 >= .seconds(49) && $0 <= .seconds(59) })
        #expect(delays.count > 40)
    }

    @Test("14. jitter never makes one value refresh more than once per second")
    func jitterRateLimited() {
        let h = Harness(refresh: .eager(beforeExpiry: .seconds(1)), freshness: FreshnessPolicy(jitter: .seconds(30)),
                        jitter: { $0 })
        _ = h.startFetch()
        h.fetcher.complete(value("v", expiresIn: 5000, clock: h.clock))
        for _ in 0..<100 {
            h.clock.advance(by: .milliseconds(100))
            while h.fetcher.outstanding > 0 { h.fetcher.complete(value("v", expiresIn: 5000, clock: h.clock)) }
        }
        #expect(h.fetcher.calls <= 11)
    }

    // MARK: 15. prefetch

    @Test("15. prefetch fetches every prefetch expirable and reports once each has answered, failures included")
    func prefetchAnswersAll() {
        let clock = ManualClock()
        let (good, bad, idle) = (ControlledFetcher(), ControlledFetcher(), ControlledFetcher())
        let engine = Engine(expirables: [
            ExpirableDefinition(name: "good", refresh: .eager(beforeExpiry: .seconds(5)), freshness: FreshnessPolicy(prefetch: true), fetcher: good),
            ExpirableDefinition(name: "bad", freshness: FreshnessPolicy(prefetch: true), fetcher: bad),
            ExpirableDefinition(name: "idle", fetcher: idle),
        ], clock: clock)
        #expect(engine.prefetchNames == ["bad", "good"])
        let outcome = Locked<[String]?>(nil)
        engine.prefetch { failed in outcome.withLock { $0 = failed } }
        #expect(good.calls == 1 && bad.calls == 1 && idle.calls == 0)
        good.complete(value("g", expiresIn: 60_000, clock: clock))
        #expect(outcome.withLock { $0 } == nil)
        bad.complete(.failure(.fetch("no")))
        #expect(outcome.withLock { $0 } == ["bad"])
        #expect(engine.status("good")?.state == .valid)
    }

    @Test("15. with nothing to prefetch the engine is ready at once")
    func prefetchNothing() {
        let h = Harness()
        let ready = Locked(false)
        h.engine.prefetch { _ in ready.withLock { $0 = true } }
        #expect(ready.withLock { $0 })
        #expect(h.fetcher.calls == 0)
    }

    // MARK: 16. stale_if_error

    @Test("16. when the refetch of an expired value fails, callers get the expired value marked stale")
    func staleServedOnError() {
        let h = Harness(freshness: FreshnessPolicy(staleIfError: .seconds(60)))
        _ = h.startFetch()
        h.fetcher.complete(value("old", expiresIn: 10_000, clock: h.clock))
        h.clock.advance(by: .seconds(10))
        let waiting = h.startFetch()
        h.fetcher.complete(.failure(.fetch("provider down")))
        #expect(string(waiting.fetched) == "old")
        #expect(waiting.fetched?.isStale == true)
        #expect(h.engine.status("token")?.state == .stale)
        #expect(h.engine.status("token")?.counters.staleAnswers == 1)
        // Readers in between get it at once, without a call; the GET hot path never does.
        let meanwhile = h.startFetch()
        #expect(meanwhile.fetched?.isStale == true)
        #expect(h.fetcher.calls == 2)
        #expect(h.engine.cachedValue("token") == nil)
        #expect(h.engine.timeToLive("token") == .notStored)
    }

    @Test("16. a success ends stale serving at once")
    func staleEndsOnSuccess() {
        let h = Harness(freshness: FreshnessPolicy(staleIfError: .seconds(60)))
        _ = h.startFetch()
        h.fetcher.complete(value("old", expiresIn: 10_000, clock: h.clock))
        h.clock.advance(by: .seconds(10))
        _ = h.startFetch()
        h.fetcher.complete(.failure(.fetch("provider down")))
        h.clock.advance(by: .seconds(1))
        let next = h.startFetch()
        #expect(next.count == 0)
        h.fetcher.complete(value("new", expiresIn: 10_000, clock: h.clock))
        #expect(string(next.fetched) == "new")
        #expect(next.fetched?.isStale == false)
        #expect(h.engine.status("token")?.state == .valid)
        #expect(string(h.engine.cachedValue("token")) == "new")
    }

    @Test("16. stale serving ends exactly stale_if_error after expiry, never beyond")
    func staleEndsAtBound() {
        let h = Harness(freshness: FreshnessPolicy(staleIfError: .seconds(60)))
        _ = h.startFetch()
        h.fetcher.complete(value("old", expiresIn: 10_000, clock: h.clock))
        // Expires at 10 s; stale may be served until just before 70 s.
        h.clock.advance(by: .milliseconds(69_999))
        let last = h.startFetch()
        h.fetcher.complete(.failure(.fetch("down")))
        #expect(last.fetched?.isStale == true)
        h.clock.advance(by: .microseconds(999))
        #expect(h.startFetch().fetched?.isStale == true)
        h.clock.advance(by: .microseconds(1))
        #expect(h.engine.status("token")?.state == .expired)
        let beyond = h.startFetch()
        #expect(beyond.count == 0)
        h.clock.advance(by: .seconds(1))
        h.fetcher.complete(.failure(.fetch("down")))
        #expect(beyond.error?.message == "down")
    }

    @Test("13, 16. with expiry_margin, stale_if_error counts from the expiry less the margin, when the value stops being valid")
    func staleBoundCountsFromMargin() throws {
        let h = Harness(freshness: FreshnessPolicy(expiryMargin: .seconds(2), staleIfError: .seconds(1), retryInterval: .milliseconds(100)))
        _ = h.startFetch()
        h.fetcher.complete(value("old", expiresIn: 5_000, clock: h.clock))
        // Valid until 3 s (5 s less the 2 s margin); stale may be served until just before 4 s, never up to 6 s.
        h.clock.advance(by: .seconds(3))
        let first = h.startFetch()
        h.fetcher.complete(.failure(.fetch("down")))
        #expect(first.fetched?.isStale == true)
        h.clock.advance(by: .milliseconds(999))
        let late = h.startFetch()
        try #require(h.fetcher.outstanding == 1, "past the 100 ms retry_interval, a failure within the bound calls again")
        h.fetcher.complete(.failure(.fetch("down")))
        #expect(late.fetched?.isStale == true)
        h.clock.advance(by: .milliseconds(1))
        #expect(h.engine.status("token")?.state == .expired)
        let beyond = h.startFetch()
        #expect(beyond.count == 0, "no stale answer beyond the bound: it waits for the paced call")
        h.clock.advance(by: .milliseconds(100))
        try #require(h.fetcher.outstanding == 1, "the paced call starts once retry_interval has passed")
        h.fetcher.complete(.failure(.fetch("down")))
        #expect(beyond.error?.message == "down")
    }

    @Test("16. a call that started within the bound but fails beyond it answers the error")
    func staleCallOutlivesBound() {
        let h = Harness(freshness: FreshnessPolicy(staleIfError: .seconds(5)))
        _ = h.startFetch()
        h.fetcher.complete(value("old", expiresIn: 1_000, clock: h.clock))
        h.clock.advance(by: .seconds(2))
        let waiting = h.startFetch()
        h.clock.advance(by: .seconds(4))
        h.fetcher.complete(.failure(.timeout("plugin did not answer within 4s")))
        #expect(waiting.error?.code == .timeout)
    }

    @Test("16. without stale_if_error a failed refetch of an expired value is an error")
    func staleOffByDefault() {
        let h = Harness()
        _ = h.startFetch()
        h.fetcher.complete(value("old", expiresIn: 1_000, clock: h.clock))
        h.clock.advance(by: .seconds(2))
        let waiting = h.startFetch()
        h.fetcher.complete(.failure(.fetch("down")))
        #expect(waiting.error?.message == "down")
        #expect(h.engine.status("token")?.state == .expired)
    }

    // MARK: 17. pacing

    @Test("17. 1,000 concurrent callers of a failing fetcher over 10 s make at most 10 calls, each answered by a real call")
    func pacingUnderLoad() {
        let clock = ManualClock()
        let fetcher = ScriptedFetcher(clock: clock) { $0 < .seconds(10) }
        let engine = Engine(expirables: [ExpirableDefinition(name: "token", fetcher: fetcher)], clock: clock)
        let answers = Locked<[(arrived: Duration, result: Result<Fetched, ExpirableError>)]>([])
        let start = clock.monotonicNanos
        // 100 steps of 100 ms, 10 callers at once in each.
        for step in 0..<100 {
            let arrived = Duration.nanoseconds(Int64(clock.monotonicNanos - start))
            DispatchQueue.concurrentPerform(iterations: 10) { _ in
                engine.fetch("token") { result in answers.withLock { $0.append((arrived, result)) } }
            }
            if step < 99 { clock.advance(by: .milliseconds(100)) }
        }
        clock.advance(by: .seconds(2))
        let all = answers.withLock { $0 }
        #expect(all.count == 1000)
        #expect(fetcher.callTimes.filter { $0 < .seconds(10) }.count <= 10)
        #expect(fetcher.callTimes.count <= 11)
        var errors = 0
        for (arrived, result) in all {
            switch result {
            case .failure(let error):
                errors += 1
                // "call at <ms>": the call answering a caller started when or after it arrived.
                let started = Int64(error.message.split(separator: " ").last.map(String.init) ?? "") ?? -1
                #expect(started >= arrived.milliseconds, "\(error) for a caller arriving at \(arrived)")
            case .success(let fetched):
                #expect(string(fetched) == "recovered")
            }
        }
        #expect(errors >= 900)
    }

    @Test("17. retry_backoff doubles the interval with each consecutive failure up to its bound")
    func pacingBackoff() {
        let h = Harness(freshness: FreshnessPolicy(retryInterval: .seconds(1), retryBackoff: .seconds(8)))
        var gaps: [Duration] = []
        var last = h.clock.monotonicNanos
        _ = h.startFetch()
        for _ in 0..<6 {
            h.fetcher.complete(.failure(.fetch("down")))
            _ = h.startFetch()
            let calls = h.fetcher.calls
            while h.fetcher.calls == calls { h.clock.advance(by: .milliseconds(100)) }
            gaps.append(.nanoseconds(Int64(h.clock.monotonicNanos - last)))
            last = h.clock.monotonicNanos
        }
        #expect(gaps == [.seconds(1), .seconds(2), .seconds(4), .seconds(8), .seconds(8), .seconds(8)])
        h.fetcher.complete(value("v", expiresIn: 1000, clock: h.clock))
        #expect(h.engine.status("token")?.consecutiveFailures == 0)
    }

    @Test("17. a caller who will not wait for the next attempt gets the last error at once, with its time")
    func pacingPatience() {
        let h = Harness(freshness: FreshnessPolicy(retryInterval: .seconds(4)))
        _ = h.startFetch()
        h.fetcher.complete(.failure(.fetch("provider down")))
        h.clock.advance(by: .seconds(1))
        let impatient = h.startFetch(patience: .seconds(2))
        let error = impatient.error
        #expect(error?.message == "provider down (next attempt in 3.000s, at \(h.clock.unixMillis + 3000) Unix ms)")
        #expect(error?.retryAfter == h.clock.unixMillis + 3000)
        let patient = h.startFetch(patience: .seconds(5))
        #expect(patient.count == 0)
        h.clock.advance(by: .seconds(3))
        #expect(h.fetcher.calls == 2)
        h.fetcher.complete(value("v", expiresIn: 60_000, clock: h.clock))
        #expect(string(patient.fetched) == "v")
    }

    @Test("17. a success resets pacing, and a clear lifts it at once")
    func pacingResetAndClear() {
        let h = Harness(freshness: FreshnessPolicy(retryInterval: .seconds(10)))
        _ = h.startFetch()
        h.fetcher.complete(.failure(.fetch("down")))
        let parked = h.startFetch()
        #expect(h.fetcher.calls == 1)
        #expect(h.engine.status("token")?.nextAttemptInMillis == 10_000)
        h.engine.clear("token")
        #expect(h.fetcher.calls == 2)
        h.fetcher.complete(value("v", expiresIn: 1_000, clock: h.clock))
        #expect(string(parked.fetched) == "v")
        h.clock.advance(by: .seconds(2))
        _ = h.startFetch()
        #expect(h.fetcher.calls == 3)
        #expect(h.clock.pendingTimers == 0)
    }

    @Test("17. a call that started before a clear and fails after it does not pace the next fetch: a clear is \"try again now\"")
    func clearOutlivesFailingCall() throws {
        let h = Harness(freshness: FreshnessPolicy(retryInterval: .seconds(5)))
        let before = h.startFetch()
        h.engine.clear("token")
        h.clock.advance(by: .seconds(1))
        h.fetcher.complete(.failure(.fetch("down")))
        #expect(before.error?.message == "down", "the call's own callers get its error")
        #expect(h.engine.status("token")?.nextAttemptInMillis == nil, "no pacing after the clear")
        let after = h.startFetch()
        #expect(h.fetcher.calls == 2, "called at once, not retry_interval after the call from before the clear")
        try #require(h.fetcher.outstanding == 1)
        h.fetcher.complete(value("v", expiresIn: 60_000, clock: h.clock))
        #expect(string(after.fetched) == "v")
    }

    @Test("17. a paced call's callers take a value a peer sends instead of calling")
    func pacingAnsweredByReplica() {
        let h = Harness(freshness: FreshnessPolicy(retryInterval: .seconds(10)))
        _ = h.startFetch()
        h.fetcher.complete(.failure(.fetch("down")))
        let parked = h.startFetch()
        h.engine.applyReplica("token", value: Secret("from-peer"), remainingMillis: 60_000, version: Version(time: 5, node: "b"))
        #expect(string(parked.fetched) == "from-peer")
        h.clock.advance(by: .seconds(20))
        #expect(h.fetcher.calls == 1)
    }

    // MARK: 18. error classes and retry-after

    @Test("18. a permanent error stops eager retries; callers still get a call each retry_interval, without backoff")
    func permanentError() {
        let h = Harness(refresh: .eager(beforeExpiry: .seconds(20)),
                        freshness: FreshnessPolicy(retryInterval: .seconds(1), retryBackoff: .seconds(30)))
        _ = h.startFetch()
        h.fetcher.complete(value("current", expiresIn: 30_000, clock: h.clock))
        h.clock.advance(by: .seconds(10))
        #expect(h.fetcher.calls == 2)
        h.fetcher.complete(.failure(.fetch("invalid_grant", class: .permanent)))
        #expect(h.clock.pendingTimers == 0)
        #expect(h.engine.status("token")?.lastErrorClass == .permanent)
        #expect(string(h.engine.cachedValue("token")) == "current")
        h.clock.advance(by: .seconds(20))
        #expect(h.fetcher.calls == 2)
        for round in 0..<3 {
            let caller = h.startFetch()
            if round > 0 {
                #expect(caller.count == 0)
                h.clock.advance(by: .seconds(1))
            }
            #expect(h.fetcher.calls == 3 + round)
            h.fetcher.complete(.failure(.fetch("invalid_grant", class: .permanent)))
            #expect(caller.error?.errorClass == .permanent)
        }
    }

    @Test("18. retry-after: no call before then; the callers of the call that brought it and every caller until then get the error with that time")
    func retryAfter() {
        let h = Harness()
        let first = h.startFetch()
        let until = h.clock.unixMillis + 30_000
        h.fetcher.complete(.failure(.fetch("429 Too Many Requests", retryAfter: until)))
        #expect(first.error?.message == "429 Too Many Requests (next attempt in 30.000s, at \(until) Unix ms)")
        #expect(first.error?.retryAfter == until)
        h.clock.advance(by: .seconds(10))
        // A caller who would wait any time is not made to wait: the plugin said when it may be called again.
        let patient = h.startFetch()
        #expect(patient.error?.message == "429 Too Many Requests (next attempt in 20.000s, at \(until) Unix ms)")
        #expect(patient.error?.retryAfter == until)
        let impatient = h.startFetch(patience: .seconds(1))
        #expect(impatient.error?.retryAfter == until)
        h.clock.advance(by: .milliseconds(19_999))
        #expect(h.startFetch().error?.message == "429 Too Many Requests (next attempt in 0.001s, at \(until) Unix ms)")
        #expect(h.fetcher.calls == 1)
        h.clock.advance(by: .milliseconds(1))
        let after = h.startFetch()
        #expect(h.fetcher.calls == 2)
        h.fetcher.complete(value("v", expiresIn: 60_000, clock: h.clock))
        #expect(string(after.fetched) == "v")
    }

    @Test("18. an error that already says when (one a peer forwarded) says it once, with the time here")
    func nextAttemptToldOnce() {
        let h = Harness()
        let first = h.startFetch()
        let until = h.clock.unixMillis + 5_000
        h.fetcher.complete(.failure(.fetch("down (next attempt in 6.000s, at \(until) Unix ms)", retryAfter: until)))
        #expect(first.error?.message == "down (next attempt in 5.000s, at \(until) Unix ms)")
        h.clock.advance(by: .seconds(1))
        #expect(h.startFetch().error?.message == "down (next attempt in 4.000s, at \(until) Unix ms)")
    }

    @Test("18. retry-after holds back eager refresh too")
    func retryAfterEager() {
        let h = Harness(refresh: .eager(beforeExpiry: .seconds(50)))
        _ = h.startFetch()
        h.fetcher.complete(value("v", expiresIn: 60_000, clock: h.clock))
        h.clock.advance(by: .seconds(10))
        #expect(h.fetcher.calls == 2)
        h.fetcher.complete(.failure(.fetch("503", retryAfter: h.clock.unixMillis + 20_000)))
        #expect(h.clock.nextTimerDelay == .seconds(20))
    }

    // MARK: FETCH MINTTL

    @Test("MINTTL: a value with less validity left is refetched through one shared call; plain readers keep it")
    func minimumValidity() {
        let h = Harness()
        _ = h.startFetch()
        h.fetcher.complete(value("old", expiresIn: 60_000, clock: h.clock))
        h.clock.advance(by: .seconds(50))
        let enough = h.startFetch(minimumValidity: .seconds(5))
        #expect(string(enough.fetched) == "old")
        let wanting = (0..<3).map { _ in h.startFetch(minimumValidity: .seconds(20)) }
        #expect(h.fetcher.calls == 2)
        #expect(wanting.allSatisfy { $0.count == 0 })
        #expect(string(h.startFetch().fetched) == "old")
        #expect(string(h.engine.cachedValue("token")) == "old")
        h.fetcher.complete(value("new", expiresIn: 60_000, clock: h.clock))
        #expect(wanting.allSatisfy { string($0.fetched) == "new" })
    }

    @Test("MINTTL: refetches of one value start at most once a second")
    func minimumValidityRateLimited() {
        let h = Harness()
        _ = h.startFetch()
        h.fetcher.complete(value("short", expiresIn: 3_000, clock: h.clock))
        let wanting = h.startFetch(minimumValidity: .seconds(10))
        #expect(h.fetcher.calls == 1)
        h.clock.advance(by: .seconds(1))
        #expect(h.fetcher.calls == 2)
        h.fetcher.complete(value("short2", expiresIn: 3_000, clock: h.clock))
        // The freshest value is answered even if it, too, has less than asked.
        #expect(string(wanting.fetched) == "short2")
    }
}

/// A fetcher that answers at once: an error ("call at <ms>") while `failing(now)` holds, else "recovered".
final class ScriptedFetcher: Fetcher {
    let clock: ManualClock
    let start: UInt64
    let failing: @Sendable (Duration) -> Bool
    private let calls = Mutex<[Duration]>([])

    init(clock: ManualClock, failing: @escaping @Sendable (Duration) -> Bool) {
        self.clock = clock
        start = clock.monotonicNanos
        self.failing = failing
    }

    var callTimes: [Duration] { calls.withLock { $0 } }

    func fetch(completion: @escaping @Sendable (Result<Fetched, ExpirableError>) -> Void) {
        let now = Duration.nanoseconds(Int64(clock.monotonicNanos - start))
        calls.withLock { $0.append(now) }
        if failing(now) {
            completion(.failure(.fetch("call at \(now.milliseconds)")))
        } else {
            completion(.success(Fetched(value: Secret("recovered"), expiry: .at(unixMillis: clock.unixMillis + 60_000))))
        }
    }
}

/// A small seeded generator, so the spread of jitter is checked on the same draws every run.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
