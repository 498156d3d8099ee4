@testable import ExpirableCluster
import ExpirableCore
import NIOCore
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
        #expect(grants.request("x", number: b2, duration: .seconds(10), now: 5 * Self.second) == .refused(.promised(a1, remaining: .milliseconds(5000))))
        #expect(grants.request("x", number: a1, duration: .seconds(10), now: 5 * Self.second) == .refused(.notNewer(seen: a1)))
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
        #expect(answer == .refused(.quiet(remaining: .milliseconds(7000))))
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
        #expect(grants.request("x", number: old, duration: .seconds(1), now: 0) == .refused(.notNewer(seen: LeaseNumber(round: 5, node: "node-a"))))
    }

    @Test("an attempt is held with a majority of the configured nodes, lost once a majority is out of reach, and held for less than it asked")
    func attempts() {
        var attempt = LeaseAttempt(name: "x", number: LeaseNumber(round: 1, node: "node-a"), sentAt: 7 * Self.second, duration: .seconds(10), voters: 5)
        attempt.grant(from: "node-a")
        attempt.grant(from: "node-b")
        #expect(attempt.outcome == nil)
        let busy = LeaseRefusal.promised(LeaseNumber(round: 0, node: "node-x"), remaining: .seconds(1))
        attempt.refusal(from: "node-c", busy)
        attempt.refusal(from: "node-d", busy)
        #expect(attempt.outcome == nil, "node-e could still make three")
        attempt.grant(from: "node-e")
        #expect(attempt.outcome == .held(until: 16 * Self.second), "10 s less its 1 s margin, counted from before the request was sent")
        var lost = LeaseAttempt(name: "x", number: LeaseNumber(round: 1, node: "node-a"), sentAt: 0, duration: .seconds(10), voters: 3)
        lost.grant(from: "node-a")
        lost.refusal(from: "node-b", .promised(LeaseNumber(round: 0, node: "node-c"), remaining: .seconds(2)))
        #expect(lost.outcome == nil)
        lost.refusal(from: "node-c", .quiet(remaining: .seconds(3)))
        #expect(lost.outcome == .lost(["node-b": .promised(LeaseNumber(round: 0, node: "node-c"), remaining: .seconds(2)), "node-c": .quiet(remaining: .seconds(3))]))
        #expect(LeaseAttempt.majority(of: 2) == 2, "two configured nodes: both, so a partition of two stops calls on both sides")
        #expect(LeaseAttempt.margin(of: .milliseconds(200)) == .milliseconds(50))
    }

    @Test("simulated clusters with delays, losses, pauses, restarts and drifting clocks never run two leases' calls at once", arguments: [3, 4, 5])
    func neverTwoCalls(nodes: Int) {
        for seed in UInt64(1)...40 {
            // The leases alone, without the check of earlier calls' states, which also keeps a holder from calling
            // while an earlier lease's call may be under way: it would hide a lease that overlaps.
            var simulation = Simulation(nodes: nodes, seed: seed &* 7919 &+ UInt64(nodes), checksStates: false)
            simulation.run(until: 600 * Self.second)
            let calls = simulation.calls.sorted { $0.start < $1.start }
            for (earlier, later) in zip(calls, calls.dropFirst()) {
                #expect(later.start >= earlier.end, "seed \(seed): lease \(later.number) called at \(later.start) while \(earlier.number) ran until \(earlier.end)")
            }
            #expect(calls.count >= 3, "seed \(seed): only \(calls.count) calls in 600 s; the simulation barely ran")
        }
    }

    @Test("a node never asks twice under one number, even when its own grants refused the first request")
    func freshNumbers() {
        var grants = LeaseGrants(startedAt: 0, longestLease: .zero)
        #expect(grants.request("x", number: LeaseNumber(round: 3, node: "node-b"), duration: .seconds(10), now: 0) == .granted)
        let first = grants.propose("x", node: "node-a")
        #expect(first == LeaseNumber(round: 4, node: "node-a"))
        #expect(grants.request("x", number: first, duration: .seconds(10), now: 0) == .refused(.promised(LeaseNumber(round: 3, node: "node-b"), remaining: .milliseconds(10_000))))
        // The refusal left `newest` at 3: without remembering what it asked for, node-a would ask for 4 again, and
        // a late grant of its first request would count for the second.
        #expect(grants.propose("x", node: "node-a") == LeaseNumber(round: 5, node: "node-a"))
    }

    @Test("a granter names the leases it granted whose call may not be over, until their holder releases them or greets without them")
    func unfinishedLeases() {
        var grants = LeaseGrants(startedAt: 0, longestLease: .zero)
        let a1 = LeaseNumber(round: 1, node: "node-a")
        let a2 = LeaseNumber(round: 2, node: "node-a")
        let b3 = LeaseNumber(round: 3, node: "node-b")
        #expect(grants.request("x", number: a1, duration: .seconds(1), now: 0) == .granted)
        #expect(grants.unfinished("x", besides: b3) == a1)
        #expect(grants.unfinished("x", besides: a1) == nil, "not the lease asked about")
        #expect(grants.unfinished("y", besides: b3) == nil, "another expirable is independent")
        // The promise runs out; the holder was cut off and said nothing: its call may still have set a state.
        #expect(grants.request("x", number: b3, duration: .seconds(1), now: 2 * Self.second) == .granted)
        #expect(grants.unfinished("x", besides: LeaseNumber(round: 4, node: "node-c")) == b3)
        grants.release("x", number: b3)
        #expect(grants.unfinished("x", besides: LeaseNumber(round: 4, node: "node-c")) == a1, "a1 is still unaccounted for")
        // node-a greets (after a partition) naming a2 as under way: a1 is over, a2 is not.
        grants.underWay("x", number: a2)
        #expect(grants.greeted(by: "node-a", underWay: [a2]).isEmpty, "a1 ended when node-a asked for a2")
        #expect(grants.unfinished("x", besides: LeaseNumber(round: 4, node: "node-c")) == a2)
        // It greets again naming nothing (it restarted): a2 is over, its outcome lost with the process.
        #expect(grants.greeted(by: "node-a", underWay: []).map(\.number) == [a2])
        #expect(grants.unfinished("x", besides: LeaseNumber(round: 4, node: "node-c")) == nil)
        #expect(grants.request("x", number: LeaseNumber(round: 5, node: "node-a"), duration: .seconds(1), now: 4 * Self.second) == .granted)
        #expect(grants.request("x", number: LeaseNumber(round: 6, node: "node-a"), duration: .seconds(1), now: 4 * Self.second) == .granted, "a renewal")
        #expect(grants.unfinished("x", besides: LeaseNumber(round: 6, node: "node-a")) == nil, "a node's new request ends its earlier leases")
    }

    @Test("a held lease is not called under while an answer names an unfinished earlier lease or a newer state")
    func stateHazards() {
        let state = Version(time: 100, node: "node-a")
        var attempt = LeaseAttempt(name: "x", number: LeaseNumber(round: 9, node: "node-b"), sentAt: 0, duration: .seconds(10), voters: 3)
        attempt.grant(from: "node-b")
        attempt.learn(from: "node-b", unfinished: nil, stateVersion: state)
        attempt.grant(from: "node-c")
        attempt.learn(from: "node-c", unfinished: nil, stateVersion: state)
        #expect(attempt.stateHazard(state: state) == nil)
        #expect(attempt.stateHazard(state: nil) == .newerState(node: "node-b", state), "a node with no state yet has an older one")
        #expect(attempt.stateHazard(state: Version(time: 99, node: "node-c")) == .newerState(node: "node-b", state))
        attempt.learn(from: "node-c", unfinished: LeaseNumber(round: 8, node: "node-a"), stateVersion: state)
        let hazard = attempt.stateHazard(state: state)
        #expect(hazard == .unfinished(LeaseNumber(round: 8, node: "node-a")))
        #expect(hazard?.description == "the previous lease holder node-a may hold a newer state (lease 8@node-a); waiting for it")
        #expect(attempt.stateHazard(state: state, keepsState: false) == hazard, "a state known to an answer is waited for all the same")

        // No state anywhere, and a plugin not known to keep one: an unfinished earlier lease spent nothing.
        var stateless = LeaseAttempt(name: "x", number: LeaseNumber(round: 9, node: "node-b"), sentAt: 0, duration: .seconds(10), voters: 3)
        stateless.grant(from: "node-b")
        stateless.learn(from: "node-b", unfinished: LeaseNumber(round: 8, node: "node-a"), stateVersion: nil)
        stateless.grant(from: "node-c")
        #expect(stateless.stateHazard(state: nil, keepsState: false) == nil)
        #expect(stateless.stateHazard(state: nil) == .unfinished(LeaseNumber(round: 8, node: "node-a")), "a plugin known to keep a state waits")
    }

    @Test("lease frames carry state versions and unfinished leases, and a greeting's lease under way, through encoding")
    func frames() throws {
        let number = LeaseNumber(round: 7, node: "node-a")
        let version = Version(time: 1_780_000_000_123, node: "node-b")
        let messages: [ClusterMessage] = [
            .leaseRequest(name: "api", number: number, durationMillis: 6333, stateVersion: version),
            .leaseRequest(name: "api:tenant", number: number, durationMillis: 6333, stateVersion: nil),
            .leaseAnswer(name: "api", number: number, refusal: nil, newest: number, unfinished: LeaseNumber(round: 6, node: "node-c"), stateVersion: version),
            .leaseAnswer(name: "api", number: number, refusal: .quiet(remaining: .milliseconds(4112)), newest: nil, unfinished: nil, stateVersion: nil),
            .leaseUnderWay(name: "api", number: number),
        ]
        for message in messages {
            var buffer = ByteBuffer()
            ClusterFrame.encode(message, into: &buffer)
            #expect(try ClusterFrame.decode(&buffer) == message)
            #expect(buffer.readableBytes == 0)
        }
    }

    @Test("a refusal is a code and its numbers on the wire: each one, and a grant, round-trips through encoding")
    func refusalCodes() throws {
        let number = LeaseNumber(round: 7, node: "node-a")
        let refusals: [LeaseRefusal?] = [
            nil,
            .quiet(remaining: .milliseconds(4112)),
            .quiet(remaining: .zero),
            .notNewer(seen: LeaseNumber(round: 9, node: "node-b")),
            .promised(LeaseNumber(round: LeaseNumber.maxRound, node: "node-ç"), remaining: .milliseconds(86_400_000)),
        ]
        for refusal in refusals {
            let message = ClusterMessage.leaseAnswer(name: "api", number: number, refusal: refusal, newest: number, unfinished: nil, stateVersion: nil)
            var buffer = ByteBuffer()
            ClusterFrame.encode(message, into: &buffer)
            #expect(buffer.getInteger(at: Self.refusalCodeOffset(name: "api", number: number), as: UInt8.self) == Self.code(of: refusal))
            #expect(try ClusterFrame.decode(&buffer) == message)
            #expect(buffer.readableBytes == 0)
        }
    }

    @Test("a lease number beyond the largest round is a malformed frame wherever it appears, and a node's own rounds never wrap to 0")
    func absurdRounds() {
        let absurd = LeaseNumber(round: UInt64.max, node: "node-b")
        let fine = LeaseNumber(round: 3, node: "node-a")
        let messages: [ClusterMessage] = [
            .leaseRequest(name: "api", number: absurd, durationMillis: 1, stateVersion: nil),
            .leaseAnswer(name: "api", number: fine, refusal: .notNewer(seen: absurd), newest: nil, unfinished: nil, stateVersion: nil),
            .leaseAnswer(name: "api", number: fine, refusal: nil, newest: absurd, unfinished: nil, stateVersion: nil),
            .leaseRelease(name: "api", number: LeaseNumber(round: LeaseNumber.maxRound + 1, node: "node-b")),
            .leaseUnderWay(name: "api", number: absurd),
        ]
        for message in messages {
            var buffer = ByteBuffer()
            ClusterFrame.encode(message, into: &buffer)
            #expect(throws: PeerError.self, "\(message.kind)") { _ = try ClusterFrame.decode(&buffer) }
        }
        var grants = LeaseGrants(startedAt: 0, longestLease: .zero)
        grants.observe("x", number: absurd)  // only reachable without the frame check
        #expect(grants.nextRound("x") == UInt64.max, "saturates instead of wrapping to 0")
    }

    @Test("a refusal code this node does not know, or a negative time in one, is a malformed frame, not a crash")
    func unknownRefusalCode() throws {
        let number = LeaseNumber(round: 7, node: "node-a")
        let offset = Self.refusalCodeOffset(name: "api", number: number)
        for code in [UInt8(4), 9, 255] {
            var buffer = ByteBuffer()
            ClusterFrame.encode(.leaseAnswer(name: "api", number: number, refusal: .quiet(remaining: .seconds(1)), newest: nil, unfinished: nil, stateVersion: nil), into: &buffer)
            buffer.setInteger(code, at: offset)
            #expect(throws: PeerError.malformedFrame("a lease answer with refusal code \(code), which this node does not know")) { try ClusterFrame.decode(&buffer) }
        }
        #expect(PeerError.malformedFrame("").isProtocolViolation, "the link it came on is closed as for any malformed frame")
        var negative = ByteBuffer()
        ClusterFrame.encode(.leaseAnswer(name: "api", number: number, refusal: .quiet(remaining: .seconds(1)), newest: nil, unfinished: nil, stateVersion: nil), into: &negative)
        negative.setInteger(Int64(-5), at: offset + 1)
        #expect(throws: PeerError.malformedFrame("a lease refusal for -5 ms")) { try ClusterFrame.decode(&negative) }
        // Cut off inside the refusal's numbers: the frame ends inside a field.
        var short = ByteBuffer()
        short.writeInteger(UInt32(offset - 4 + 1 + 4))
        var whole = ByteBuffer()
        ClusterFrame.encode(.leaseAnswer(name: "api", number: number, refusal: .promised(number, remaining: .seconds(1)), newest: nil, unfinished: nil, stateVersion: nil), into: &whole)
        short.writeBytes(whole.getBytes(at: 4, length: offset - 4 + 1 + 4)!)
        #expect(throws: PeerError.malformedFrame("frame ends inside a field")) { try ClusterFrame.decode(&short) }
    }

    @Test("each refusal in words, as the caller's no-quorum error shows it")
    func refusalWords() {
        let asked = LeaseNumber(round: 4, node: "node-c")
        #expect(LeaseRefusal.quiet(remaining: .milliseconds(7000)).text(refusing: asked) == "it started less than the longest lease ago and grants none for 7000 ms")
        #expect(LeaseRefusal.notNewer(seen: LeaseNumber(round: 5, node: "node-a")).text(refusing: asked) == "lease 4@node-c is not newer than lease 5@node-a")
        #expect(LeaseRefusal.promised(LeaseNumber(round: 3, node: "node-b"), remaining: .milliseconds(1200)).text(refusing: asked)
            == "it promised lease 3@node-b for 1200 ms more")
        let error = PeerError.noQuorum(name: "token", lease: asked, needed: 3, voters: 5, granted: 1,
                                       refusals: ["node-b": .promised(LeaseNumber(round: 3, node: "node-b"), remaining: .milliseconds(1200)),
                                                  "node-a": .notNewer(seen: LeaseNumber(round: 5, node: "node-a"))],
                                       dead: [], silent: ["node-d", "node-e"])
        #expect(error.description == "no quorum for token: a plugin call needs a lease granted by 3 of the 5 configured nodes, and 1 granted it "
            + "(node-a: lease 4@node-c is not newer than lease 5@node-a; node-b: it promised lease 3@node-b for 1200 ms more; "
            + "no answer from node-d, node-e); values already held are still served")
        let unreachable = PeerError.noQuorum(name: "token", lease: asked, needed: 3, voters: 5, granted: 1, refusals: [:], dead: ["node-a", "node-b", "node-d"], silent: ["node-e"])
        #expect(unreachable.description == "no quorum for token: a plugin call needs a lease granted by 3 of the 5 configured nodes, and 1 granted it "
            + "(node-a, node-b, node-d: dead in this node's view; no answer from node-e); values already held are still served")
        #expect(PeerError.leaseTooLate(name: "token", lease: asked, timeoutMillis: 30_000).description
            == "token: the lease for this call (4@node-c) came too late to hold a whole call of 30000 ms; nothing was called")
        #expect(PeerError.callOutlivedLease(name: "token", lease: asked).description
            == "token: the call outlived its lease (4@node-c), so its result is dropped (the node was paused or the call ran long)")
    }

    /// Where a lease answer's refusal code sits: after the length, the type, the name and the lease number.
    static func refusalCodeOffset(name: String, number: LeaseNumber) -> Int {
        4 + 1 + (2 + name.utf8.count) + (1 + 8 + 2 + number.node.utf8.count)
    }

    static func code(of refusal: LeaseRefusal?) -> UInt8 {
        switch refusal {
        case nil: 0
        case .quiet?: 1
        case .notNewer?: 2
        case .promised?: 3
        }
    }

    @Test("simulated clusters with cut-off and paused holders never call with an older plugin state than an earlier call set", arguments: [3, 4, 5])
    func neverASpentState(nodes: Int) {
        var waited = 0
        for seed in UInt64(1)...40 {
            var simulation = Simulation(nodes: nodes, seed: seed &* 7919 &+ UInt64(nodes), restartsWhileAway: false)
            simulation.run(until: 600 * Self.second)
            waited += simulation.waited
            for (call, newer) in simulation.callsWithSpentState {
                #expect(Bool(false), "seed \(seed): lease \(call.number) called at \(call.start) with state \(call.state), but an earlier call set \(newer)")
            }
            #expect(simulation.calls.count >= 3, "seed \(seed): only \(simulation.calls.count) calls in 600 s; the simulation barely ran")
        }
        #expect(waited > 0, "no held lease ever waited for a state: the simulation does not exercise the rule")
    }

    @Test("without the state check, the same simulations call with a spent state")
    func spentStateWithoutTheCheck() {
        var found = 0
        for nodes in [3, 4, 5] {
            for seed in UInt64(1)...40 {
                var simulation = Simulation(nodes: nodes, seed: seed &* 7919 &+ UInt64(nodes), checksStates: false, restartsWhileAway: false)
                simulation.run(until: 600 * Self.second)
                found += simulation.callsWithSpentState.count
            }
        }
        #expect(found > 0)
    }
}

/// A cluster of `nodes` running the lease protocol on one expirable, on simulated time: every message takes
/// 0–80 ms, and a link breaks now and then (3 % of messages: that one and those after it are lost until the link
/// is dialed again 1–3 s later, and the new link starts with a greeting, as TCP links do); nodes pause for up to
/// 30 s, are cut off from all others for up to 15 s, and restart (forgetting their promises); and each node's
/// monotonic clock runs at its own rate within ±4 % of true time.
///
/// Each call consumes the plugin state its node holds (a number: higher is newer) and, three times in four, sets
/// a new one (a rotated refresh token), which its node learns when the call ends (late if it is paused) and sends
/// with its release; a granter sends its state with its answer (before it, on the link), and a greeting carries
/// the sender's state and its leases under way. A restart keeps the state (as `state_dir` does) and waits for a
/// call under way to end, and when checking states, for the other nodes to be back: the documented exceptions
/// (docs/cluster.md) are a state lost with a process, and a lease forgotten because every node that heard of it
/// restarted while its holder was away.
private struct Simulation {
    struct Node {
        var grants: LeaseGrants
        let offset: UInt64
        let rate: Double
        var pausedUntil: UInt64 = 0
        var cutOffUntil: UInt64 = 0
        var attempt: LeaseAttempt?
        var acted = false
        /// True time until which this node's call runs.
        var callingUntil: UInt64 = 0
        /// A call's end has not been handled yet (its state is not here yet).
        var calling = false
        /// The plugin state it holds (0: the initial one, which has no version).
        var state: UInt64 = 0
        /// Its own attempt or call not over, for its greetings.
        var underWay: LeaseNumber?
    }

    struct Call {
        let number: LeaseNumber
        let start: UInt64
        let end: UInt64
        /// The state it was made with, and the one it set (nil: none, or its end never came).
        let state: UInt64
        var produced: UInt64?
    }

    enum Event {
        case attempt(node: Int)
        case request(to: Int, from: Int, number: LeaseNumber, state: UInt64)
        /// The granter's answer; its state travels with it (sent just before it on the link).
        case answer(to: Int, from: Int, number: LeaseNumber, granted: Bool, newest: LeaseNumber?, unfinished: LeaseNumber?, state: UInt64)
        /// The holder's release, after the state its call set.
        case release(to: Int, from: Int, number: LeaseNumber, state: UInt64)
        case callEnded(node: Int, call: Int)
        /// A new link from `from` to `to`: the sender's greeting (its state and its lease under way).
        case dial(from: Int, to: Int)
        case greeting(to: Int, from: Int, state: UInt64, underWay: LeaseNumber?)
        case pause(node: Int)
        case cut(node: Int)
        case restart(node: Int)
    }

    static let lease: Duration = .seconds(6)
    /// Whether a held lease's call waits for the states of earlier calls (the protocol); false: it calls with
    /// whatever state its node holds (the protocol before states were checked).
    let checksStates: Bool
    /// Whether a node may restart while another is cut off or paused; when it may, two restarts can forget a
    /// lease whose holder is away (a documented exception for states, not for overlapping calls).
    let restartsWhileAway: Bool
    var nodes: [Node] = []
    /// Each pending event, with the link it travels on and that link's epoch (a message on a link that broke
    /// since it was sent is lost).
    var events: [(time: UInt64, event: Event, link: (from: Int, to: Int, epoch: UInt64)?)] = []
    var calls: [Call] = []
    /// Held leases not called under because of an earlier call or a newer state.
    var waited = 0
    var nextState: UInt64 = 0
    /// Per directed link: broken (until dialed again), its epoch, and the time its last message arrives (FIFO).
    var broken: [[Bool]]
    var epoch: [[UInt64]]
    var lastArrival: [[UInt64]]
    var random: SplitMix

    init(nodes count: Int, seed: UInt64, checksStates: Bool = true, restartsWhileAway: Bool = true) {
        self.checksStates = checksStates
        self.restartsWhileAway = restartsWhileAway
        random = SplitMix(seed: seed)
        broken = Array(repeating: Array(repeating: false, count: count), count: count)
        epoch = Array(repeating: Array(repeating: 0, count: count), count: count)
        lastArrival = Array(repeating: Array(repeating: 0, count: count), count: count)
        for _ in 0..<count {
            let offset = random.next() % (1000 * LeaseTests.second)
            nodes.append(Node(grants: LeaseGrants(startedAt: 0, longestLease: .zero), offset: offset, rate: 0.96 + Double(random.next() % 800) / 10_000))
        }
        for index in 0..<count {
            schedule(.attempt(node: index), at: random.next() % (5 * LeaseTests.second))
            schedule(.pause(node: index), at: random.next() % (200 * LeaseTests.second))
            schedule(.cut(node: index), at: random.next() % (100 * LeaseTests.second))
            schedule(.restart(node: index), at: random.next() % (400 * LeaseTests.second))
        }
    }

    func name(_ index: Int) -> String { "node-\(index)" }

    func local(_ index: Int, _ time: UInt64) -> UInt64 {
        nodes[index].offset &+ UInt64(Double(time) * nodes[index].rate)
    }

    static func version(_ state: UInt64) -> Version? {
        state == 0 ? nil : Version(time: Int64(state), node: "state")
    }

    mutating func schedule(_ event: Event, at time: UInt64) {
        events.append((time, event, nil))
    }

    func cut(_ node: Int, _ time: UInt64) -> Bool { nodes[node].cutOffUntil > time }

    /// Sends on the link `from` → `to`: in order, unless the link is broken or breaks now.
    mutating func send(_ event: Event, from: Int, to: Int, at time: UInt64) {
        guard !broken[from][to] else { return }
        if cut(from, time) || cut(to, time) || random.next() % 100 < 3 {
            breakLink(from: from, to: to, at: time)
            return
        }
        let arrival = max(time + random.next() % 80_000_000, lastArrival[from][to])
        lastArrival[from][to] = arrival
        events.append((arrival, event, (from, to, epoch[from][to])))
    }

    /// The link is lost with what is on its way; its node dials again 1–3 s later (after a cut ends).
    mutating func breakLink(from: Int, to: Int, at time: UInt64) {
        guard !broken[from][to] else { return }
        broken[from][to] = true
        epoch[from][to] += 1
        let again = max(time, nodes[from].cutOffUntil, nodes[to].cutOffUntil) + LeaseTests.second + random.next() % (2 * LeaseTests.second)
        schedule(.dial(from: from, to: to), at: again)
    }

    mutating func run(until end: UInt64) {
        var steps = 0
        while steps < 300_000, let index = events.indices.min(by: { events[$0].time < events[$1].time }) {
            steps += 1
            let (time, event, link) = events.remove(at: index)
            guard time < end else { return }
            if let link, epoch[link.from][link.to] != link.epoch { continue }  // its link broke on the way
            handle(event, at: time)
        }
    }

    /// The node an event is for, if that node is paused: the event waits in its socket until it resumes.
    func target(_ event: Event) -> Int? {
        switch event {
        case .attempt(let node), .request(let node, _, _, _), .answer(let node, _, _, _, _, _, _), .release(let node, _, _, _),
             .callEnded(let node, _), .greeting(let node, _, _, _), .dial(let node, _):
            node
        case .pause, .cut, .restart: nil
        }
    }

    /// A state that arrived: the newest wins.
    mutating func receive(state: UInt64, at node: Int) {
        nodes[node].state = max(nodes[node].state, state)
    }

    /// The attempt or call under `number` is over: released here and, with the state, to the others.
    mutating func release(_ node: Int, _ number: LeaseNumber, at time: UInt64) {
        if nodes[node].underWay == number { nodes[node].underWay = nil }
        nodes[node].grants.release("x", number: number)
        for other in nodes.indices where other != node {
            send(.release(to: other, from: node, number: number, state: nodes[node].state), from: node, to: other, at: time)
        }
    }

    mutating func handle(_ event: Event, at time: UInt64) {
        if let node = target(event), nodes[node].pausedUntil > time {
            events.append((nodes[node].pausedUntil, event, nil))
            return
        }
        switch event {
        case .attempt(let node):
            // A call under way goes on; an attempt that heard too little by now is given up for a new one (its
            // late answers no longer match).
            guard nodes[node].callingUntil <= time, !nodes[node].calling else {
                schedule(.attempt(node: node), at: time + LeaseTests.second)
                return
            }
            let number = nodes[node].grants.propose("x", node: name(node))
            nodes[node].attempt = LeaseAttempt(name: "x", number: number, sentAt: local(node, time), duration: Self.lease, voters: nodes.count)
            nodes[node].acted = false
            nodes[node].underWay = number
            for other in nodes.indices {
                if other == node {
                    handle(.request(to: node, from: node, number: number, state: nodes[node].state), at: time)
                } else {
                    send(.request(to: other, from: node, number: number, state: nodes[node].state), from: node, to: other, at: time)
                }
            }
            // Give up on an attempt that hears too little, and try again later.
            schedule(.attempt(node: node), at: time + 2 * LeaseTests.second + random.next() % (3 * LeaseTests.second))
        case .request(let node, let from, let number, _):
            let answer = nodes[node].grants.request("x", number: number, duration: Self.lease, now: local(node, time))
            let reply = Event.answer(to: from, from: node, number: number, granted: answer == .granted, newest: nodes[node].grants.newest["x"],
                                     unfinished: nodes[node].grants.unfinished("x", besides: number), state: nodes[node].state)
            if from == node { handle(reply, at: time) } else { send(reply, from: node, to: from, at: time) }
        case .answer(let node, let from, let number, let granted, let newest, let unfinished, let state):
            receive(state: state, at: node)
            if let newest { nodes[node].grants.observe("x", number: newest) }
            guard var attempt = nodes[node].attempt, attempt.number == number else { return }
            if granted { attempt.grant(from: name(from)) } else { attempt.refusal(from: name(from), .notNewer(seen: number)) }
            attempt.learn(from: name(from), unfinished: unfinished, stateVersion: Self.version(state))
            nodes[node].attempt = attempt
            switch attempt.outcome {
            case .held(let until)?:
                guard !nodes[node].acted else { return }
                nodes[node].acted = true
                nodes[node].attempt = nil
                let now = local(node, time)
                // The lease is checked on the holder's own clock before the call: after a pause it may be over.
                guard now < until else { return release(node, number, at: time) }
                if checksStates, attempt.stateHazard(state: Self.version(nodes[node].state)) != nil {
                    waited += 1
                    return release(node, number, at: time)
                }
                // The call runs for a while, and is stopped (its helper killed) when the lease ends.
                let wanted = UInt64(Double(random.next() % (8 * LeaseTests.second)))
                let localEnd = min(now + wanted, until)
                let trueEnd = time + UInt64(Double(localEnd - now) / nodes[node].rate)
                calls.append(Call(number: number, start: time, end: trueEnd, state: nodes[node].state))
                nodes[node].callingUntil = trueEnd
                nodes[node].calling = true
                schedule(.callEnded(node: node, call: calls.count - 1), at: trueEnd)
            case .lost?:
                nodes[node].attempt = nil
                release(node, number, at: time)
            case nil:
                break
            }
        case .callEnded(let node, let call):
            // Its node learns what the call did (after a pause, late), keeps it, and releases with it.
            if random.next() % 4 != 0 {
                nextState += 1
                nodes[node].state = nextState
                calls[call].produced = nextState
            }
            nodes[node].calling = false
            release(node, calls[call].number, at: time)
        case .release(let node, _, let number, let state):
            receive(state: state, at: node)
            nodes[node].grants.release("x", number: number)
        case .dial(let from, let to):
            if cut(from, time) || cut(to, time) {
                schedule(.dial(from: from, to: to), at: max(nodes[from].cutOffUntil, nodes[to].cutOffUntil) + LeaseTests.second)
                return
            }
            broken[from][to] = false
            send(.greeting(to: to, from: from, state: nodes[from].state, underWay: nodes[from].underWay), from: from, to: to, at: time)
        case .greeting(let node, let from, let state, let underWay):
            receive(state: state, at: node)
            if let underWay { nodes[node].grants.underWay("x", number: underWay) }
            _ = nodes[node].grants.greeted(by: name(from), underWay: underWay.map { [$0] } ?? [])
        case .pause(let node):
            nodes[node].pausedUntil = time + random.next() % (30 * LeaseTests.second)
            schedule(.pause(node: node), at: time + 20 * LeaseTests.second + random.next() % (200 * LeaseTests.second))
        case .cut(let node):
            nodes[node].cutOffUntil = time + random.next() % (15 * LeaseTests.second)
            for other in nodes.indices where other != node {
                breakLink(from: node, to: other, at: time)
                breakLink(from: other, to: node, at: time)
            }
            schedule(.cut(node: node), at: time + 20 * LeaseTests.second + random.next() % (100 * LeaseTests.second))
        case .restart(let node):
            // A call under way ends first (a process killed during its call is the exception, above), and unless
            // `restartsWhileAway`, so does a cut or a pause of another node.
            let away = nodes.indices.contains { $0 != node && (cut($0, time) || nodes[$0].pausedUntil > time) }
            guard !nodes[node].calling, restartsWhileAway || !away else {
                schedule(.restart(node: node), at: time + LeaseTests.second)
                return
            }
            // A restart forgets every promise and lease; the new process waits out the longest lease before
            // granting, and dials everyone (and is dialed) anew.
            nodes[node].grants = LeaseGrants(startedAt: local(node, time), longestLease: Self.lease)
            nodes[node].attempt = nil
            nodes[node].underWay = nil
            for other in nodes.indices where other != node {
                breakLink(from: node, to: other, at: time)
                breakLink(from: other, to: node, at: time)
            }
            schedule(.restart(node: node), at: time + 50 * LeaseTests.second + random.next() % (300 * LeaseTests.second))
        }
    }

    /// Calls made with an older state than an earlier call set: (the call, the newer state it should have had).
    var callsWithSpentState: [(Call, UInt64)] {
        var newest: UInt64 = 0
        var found: [(Call, UInt64)] = []
        for call in calls.sorted(by: { $0.start < $1.start }) {
            if call.state < newest { found.append((call, newest)) }
            newest = max(newest, call.produced ?? 0)
        }
        return found
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
