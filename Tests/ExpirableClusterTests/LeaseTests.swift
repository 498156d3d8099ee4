@testable import ExpirableCluster
import Testing

/// The quorum lease protocol's logic (SPEC §4.10), without processes: what a node grants, when an attempt is
/// held, and, in a simulated cluster with message delays and losses, pauses, restarts and clocks that run at
/// different rates, that no two leases' calls ever overlap.
@Suite("Quorum leases")
struct LeaseTests {
    static let second: UInt64 = 1_000_000_000

    @Test("a node grants one lease per expirable at a time, refuses an older number, and grants again once it ran out or was released")
    func grants() {
        var grants = LeaseGrants(startedAt: 0, longestLease: .zero)
        let a1 = LeaseNumber(round: 1, node: "node-a")
        let b2 = LeaseNumber(round: 2, node: "node-b")
        let c3 = LeaseNumber(round: 3, node: "node-c")
        #expect(grants.request("x", number: a1, duration: .seconds(10), now: 0) == .granted)
        #expect(grants.request("y", number: b2, duration: .seconds(10), now: 0) == .granted, "another expirable is independent")
        #expect(grants.request("x", number: b2, duration: .seconds(10), now: 5 * Self.second) == .refused("it promised lease 1@node-a for 5000 ms more"))
        #expect(grants.request("x", number: a1, duration: .seconds(10), now: 5 * Self.second) == .refused("lease 1@node-a is not newer than lease 1@node-a"))
        #expect(grants.request("x", number: b2, duration: .seconds(10), now: 10 * Self.second) == .granted, "the promise ran out")
        grants.release("x", number: a1)
        #expect(grants.promises["x"]?.number == b2, "releasing an older lease frees nothing")
        grants.release("x", number: b2)
        #expect(grants.request("x", number: c3, duration: .seconds(10), now: 10 * Self.second) == .granted, "released: granted at once")
        #expect(grants.nextRound("x") == 4)
    }

    @Test("the holder may renew its own lease with a newer number before it runs out")
    func renewal() {
        var grants = LeaseGrants(startedAt: 0, longestLease: .zero)
        #expect(grants.request("x", number: LeaseNumber(round: 1, node: "node-a"), duration: .seconds(10), now: 0) == .granted)
        #expect(grants.request("x", number: LeaseNumber(round: 2, node: "node-a"), duration: .seconds(10), now: Self.second) == .granted)
        #expect(grants.promises["x"]?.until == 11 * Self.second)
    }

    @Test("a node that restarted grants nothing until the longest lease it could have granted before has run out")
    func quietAfterRestart() {
        var grants = LeaseGrants(startedAt: 100 * Self.second, longestLease: .seconds(12))
        let answer = grants.request("x", number: LeaseNumber(round: 1, node: "node-b"), duration: .seconds(12), now: 105 * Self.second)
        #expect(answer == .refused("it started less than the longest lease ago and grants none for 7000 ms"))
        #expect(grants.request("x", number: LeaseNumber(round: 1, node: "node-b"), duration: .seconds(12), now: 112 * Self.second) == .granted)
    }

    @Test("a result under a lease older than one seen is superseded")
    func fencing() {
        var grants = LeaseGrants(startedAt: 0, longestLease: .zero)
        let old = LeaseNumber(round: 4, node: "node-c")
        #expect(!grants.isSuperseded("x", number: old))
        grants.observe("x", number: LeaseNumber(round: 5, node: "node-a"))
        #expect(grants.isSuperseded("x", number: old))
        #expect(!grants.isSuperseded("x", number: LeaseNumber(round: 5, node: "node-a")))
        #expect(grants.request("x", number: old, duration: .seconds(1), now: 0) == .refused("lease 4@node-c is not newer than lease 5@node-a"))
    }

    @Test("an attempt is held with a majority of the configured nodes, lost once a majority is out of reach, and held for less than it asked")
    func attempts() {
        var attempt = LeaseAttempt(name: "x", number: LeaseNumber(round: 1, node: "node-a"), sentAt: 7 * Self.second, duration: .seconds(10), voters: 5)
        attempt.grant(from: "node-a")
        attempt.grant(from: "node-b")
        #expect(attempt.outcome == nil)
        attempt.refusal(from: "node-c", "busy")
        attempt.refusal(from: "node-d", "busy")
        #expect(attempt.outcome == nil, "node-e could still make three")
        attempt.grant(from: "node-e")
        #expect(attempt.outcome == .held(until: 16 * Self.second), "10 s less its 1 s margin, counted from before the request was sent")
        var lost = LeaseAttempt(name: "x", number: LeaseNumber(round: 1, node: "node-a"), sentAt: 0, duration: .seconds(10), voters: 3)
        lost.grant(from: "node-a")
        lost.refusal(from: "node-b", "promised to node-c")
        #expect(lost.outcome == nil)
        lost.refusal(from: "node-c", "promised to itself")
        #expect(lost.outcome == .lost(["node-b": "promised to node-c", "node-c": "promised to itself"]))
        #expect(LeaseAttempt.majority(of: 2) == 2, "two configured nodes: both, so a partition of two stops calls on both sides")
        #expect(LeaseAttempt.margin(of: .milliseconds(200)) == .milliseconds(50))
    }

    @Test("simulated clusters with delays, losses, pauses, restarts and drifting clocks never run two leases' calls at once", arguments: [3, 4, 5])
    func neverTwoCalls(nodes: Int) {
        for seed in UInt64(1)...40 {
            var simulation = Simulation(nodes: nodes, seed: seed &* 7919 &+ UInt64(nodes))
            simulation.run(until: 600 * Self.second)
            let calls = simulation.calls.sorted { $0.start < $1.start }
            for (earlier, later) in zip(calls, calls.dropFirst()) {
                #expect(later.start >= earlier.end, "seed \(seed): lease \(later.number) called at \(later.start) while \(earlier.number) ran until \(earlier.end)")
            }
            #expect(calls.count >= 3, "seed \(seed): only \(calls.count) calls in 600 s; the simulation barely ran")
        }
    }
}

/// A cluster of `nodes` running the lease protocol on one expirable, on simulated time: every message takes
/// 0–80 ms or is lost (5 %), nodes pause for up to 30 s and restart (forgetting their promises), and each node's
/// monotonic clock runs at its own rate within ±4 % of true time.
private struct Simulation {
    struct Node {
        var grants: LeaseGrants
        let offset: UInt64
        let rate: Double
        var pausedUntil: UInt64 = 0
        var attempt: LeaseAttempt?
        var acted = false
        /// True time until which this node's call runs.
        var callingUntil: UInt64 = 0
    }

    struct Call {
        let number: LeaseNumber
        let start: UInt64
        let end: UInt64
    }

    enum Event {
        case attempt(node: Int)
        case request(to: Int, from: Int, number: LeaseNumber)
        /// A refusal carries the newest number the granter saw, so a node that restarted catches up.
        case answer(to: Int, from: Int, number: LeaseNumber, granted: Bool, newest: LeaseNumber?)
        case release(to: Int, number: LeaseNumber)
        case pause(node: Int)
        case restart(node: Int)
    }

    static let lease: Duration = .seconds(6)
    var nodes: [Node] = []
    var events: [(time: UInt64, event: Event)] = []
    var calls: [Call] = []
    var random: SplitMix

    init(nodes count: Int, seed: UInt64) {
        random = SplitMix(seed: seed)
        for _ in 0..<count {
            let offset = random.next() % (1000 * LeaseTests.second)
            nodes.append(Node(grants: LeaseGrants(startedAt: 0, longestLease: .zero), offset: offset, rate: 0.96 + Double(random.next() % 800) / 10_000))
        }
        for index in 0..<count {
            schedule(.attempt(node: index), at: random.next() % (5 * LeaseTests.second))
            schedule(.pause(node: index), at: random.next() % (200 * LeaseTests.second))
            schedule(.restart(node: index), at: random.next() % (400 * LeaseTests.second))
        }
    }

    func name(_ index: Int) -> String { "node-\(index)" }

    func local(_ index: Int, _ time: UInt64) -> UInt64 {
        nodes[index].offset &+ UInt64(Double(time) * nodes[index].rate)
    }

    mutating func schedule(_ event: Event, at time: UInt64) {
        events.append((time, event))
    }

    mutating func send(_ event: Event, from time: UInt64) {
        guard random.next() % 100 >= 5 else { return }  // lost
        schedule(event, at: time + random.next() % 80_000_000)
    }

    mutating func run(until end: UInt64) {
        var steps = 0
        while steps < 200_000, let index = events.indices.min(by: { events[$0].time < events[$1].time }) {
            steps += 1
            let (time, event) = events.remove(at: index)
            guard time < end else { return }
            handle(event, at: time)
        }
    }

    /// The node an event is for, if that node is paused: the event waits in its socket until it resumes.
    func target(_ event: Event) -> Int? {
        switch event {
        case .attempt(let node), .request(let node, _, _), .answer(let node, _, _, _, _), .release(let node, _): node
        case .pause, .restart: nil
        }
    }

    mutating func handle(_ event: Event, at time: UInt64) {
        if let node = target(event), nodes[node].pausedUntil > time {
            schedule(event, at: nodes[node].pausedUntil)
            return
        }
        switch event {
        case .attempt(let node):
            // A call under way goes on; an attempt that heard too little by now is given up for a new one (its
            // late answers no longer match).
            guard nodes[node].callingUntil <= time else {
                schedule(.attempt(node: node), at: time + LeaseTests.second)
                return
            }
            let number = LeaseNumber(round: nodes[node].grants.nextRound("x"), node: name(node))
            nodes[node].attempt = LeaseAttempt(name: "x", number: number, sentAt: local(node, time), duration: Self.lease, voters: nodes.count)
            nodes[node].acted = false
            for other in nodes.indices {
                if other == node {
                    handle(.request(to: node, from: node, number: number), at: time)
                } else {
                    send(.request(to: other, from: node, number: number), from: time)
                }
            }
            // Give up on an attempt that hears too little, and try again later.
            schedule(.attempt(node: node), at: time + 2 * LeaseTests.second + random.next() % (3 * LeaseTests.second))
        case .request(let node, let from, let number):
            let answer = nodes[node].grants.request("x", number: number, duration: Self.lease, now: local(node, time))
            let reply = Event.answer(to: from, from: node, number: number, granted: answer == .granted, newest: nodes[node].grants.newest["x"])
            if from == node { handle(reply, at: time) } else { send(reply, from: time) }
        case .answer(let node, let from, let number, let granted, let newest):
            if let newest { nodes[node].grants.observe("x", number: newest) }
            guard var attempt = nodes[node].attempt, attempt.number == number else { return }
            if granted { attempt.grant(from: name(from)) } else { attempt.refusal(from: name(from), "no") }
            nodes[node].attempt = attempt
            switch attempt.outcome {
            case .held(let until)?:
                guard !nodes[node].acted else { return }
                nodes[node].acted = true
                nodes[node].attempt = nil
                let now = local(node, time)
                // The lease is checked on the holder's own clock before the call: after a pause it may be over.
                guard now < until else { return }
                // The call runs for a while, and is stopped (its helper killed) when the lease ends.
                let wanted = UInt64(Double(random.next() % (8 * LeaseTests.second)))
                let localEnd = min(now + wanted, until)
                let trueEnd = time + UInt64(Double(localEnd - now) / nodes[node].rate)
                calls.append(Call(number: number, start: time, end: trueEnd))
                nodes[node].callingUntil = trueEnd
                // Released once the call is over: to itself at once, to the others by message.
                schedule(.release(to: node, number: number), at: trueEnd)
                for other in nodes.indices where other != node { send(.release(to: other, number: number), from: trueEnd) }
            case .lost?:
                nodes[node].attempt = nil
            case nil:
                break
            }
        case .release(let node, let number):
            nodes[node].grants.release("x", number: number)
        case .pause(let node):
            nodes[node].pausedUntil = time + random.next() % (30 * LeaseTests.second)
            schedule(.pause(node: node), at: time + 20 * LeaseTests.second + random.next() % (200 * LeaseTests.second))
        case .restart(let node):
            // A restart forgets every promise; the new process waits out the longest lease before granting.
            nodes[node].grants = LeaseGrants(startedAt: local(node, time), longestLease: Self.lease)
            nodes[node].attempt = nil
            schedule(.restart(node: node), at: time + 50 * LeaseTests.second + random.next() % (300 * LeaseTests.second))
        }
    }
}

/// A small seeded generator, so every run of the simulation is the same.
private struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}
