import ExpirableCore
import NIOCore

/// What an expirable looks like to the cluster; peers compare these to find configurations that disagree.
public struct ExpirableDigest: Sendable, Hashable {
    public let name: String
    public let plugin: String
    /// "lazy", or "eager:<before_expiry ms>".
    public let refresh: String
    /// "available" or "quorum".
    public let singleFlight: String
    /// A keyed family (NAME:KEY) rather than one value.
    public let keyed: Bool

    public init(name: String, plugin: String, refresh: String, singleFlight: String = "available", keyed: Bool = false) {
        self.name = name
        self.plugin = plugin
        self.refresh = refresh
        self.singleFlight = singleFlight
        self.keyed = keyed
    }
}

/// Why a node does not take a link a peer dialed (the `linkRefused` frame). A code on the wire; the words are made
/// where they are shown, on the node that dialed (`text`).
enum LinkRefusal: Sendable, Hashable {
    /// Another connection that says it is the dialing node is linked and alive, from `established` (an address),
    /// with another incarnation: two daemons run with one node name.
    case duplicateNode(established: String)
    /// The dialer's certificate names no configured peer of the refusing node.
    case notAPeer

    /// In words, on `node`, which dialed `peer`, which refused.
    func text(node: String, peer: String) -> String {
        switch self {
        case .duplicateNode(let established):
            "\(peer) refuses this link: another daemon named \(node) is linked to it from \(established). Two daemons run with node = \"\(node)\" "
                + "(a cloned machine or configuration?); stop the one that should not run"
        case .notAPeer:
            "\(peer) refuses this node: \(node) is not among the peers of its [cluster] configuration; add \(node) to \(peer)'s peers, "
                + "or remove \(peer) from this node's"
        }
    }
}

/// The messages nodes send each other. Each link carries them one way: a node sends on the connection it
/// dialed and receives on the connections it accepted.
enum ClusterMessage: Sendable, Equatable {
    /// First on every link: who is speaking, and how its cluster-scoped expirables are configured.
    /// `incarnation` is drawn at random when the daemon starts: two connections that claim one node name with
    /// different incarnations come from two daemons (a restart's old link closes before its new one says hello).
    case hello(node: String, protocolVersion: UInt16, incarnation: UInt64 = 0, expirables: [ExpirableDigest])
    /// The sender's wall clock (ms), the wall time of the last heartbeat it received from the receiver (0: none)
    /// and how long ago that one arrived (ms): one NTP round trip for the receiver's clock offsets (§4.15).
    case heartbeat(wallMillis: Int64, echoMillis: Int64, holdMillis: Int64)
    /// A value and its remaining validity in ms (nil: never expires), judged by the receiver on its own clock;
    /// with `single_flight = "quorum"`, the lease it was fetched under, so a receiver that saw a newer lease
    /// refuses it (fencing).
    case value(name: String, version: Version, remainingMillis: Int64?, value: Secret, lease: LeaseNumber?)
    case clear(name: String, version: Version)
    /// Please fetch `name` (you own it) and answer `fetched` or `fetchFailed` with the same id within
    /// `deadlineMillis` (the asking node gives up after that; §4.13). `echoMillis` is the wall time of the latest
    /// heartbeat the asking node had received from the receiver, so a receiver that was paused can tell a request
    /// sent before its peers heard from it again (§4.17).
    case fetch(id: UInt64, name: String, deadlineMillis: Int64, echoMillis: Int64)
    /// The owner's answer; `stale` when it answered its expired value because the refetch failed (§3.16).
    case fetched(id: UInt64, version: Version, remainingMillis: Int64?, value: Secret, stale: Bool)
    /// The owner's failure, with its class and, when set, the time until its retry-after in ms (relative, so
    /// the receiver's wall clock judges it, as with validity).
    case fetchFailed(id: UInt64, code: String, message: String, permanent: Bool, retryAfterMillis: Int64?)

    /// Quorum single flight (SPEC §4.10, Lease.swift): may I hold lease `number` on `name` for `durationMillis`?
    /// `stateVersion` is the version of the plugin state the asking node holds: a granter with a newer one sends
    /// it first.
    case leaseRequest(name: String, number: LeaseNumber, durationMillis: Int64, stateVersion: Version?)
    /// The answer: granted (`refusal` nil) or refused, and why, as a code and its numbers; either way it names the
    /// newest lease number the granter saw, so a node that restarted and forgot its numbers catches up, the newest
    /// other lease the granter knows whose call may not be over (`unfinished`) and the version of the state it
    /// holds: the asker must not call with an older state than those may have set.
    case leaseAnswer(name: String, number: LeaseNumber, refusal: LeaseRefusal?, newest: LeaseNumber?,
                     unfinished: LeaseNumber?, stateVersion: Version?)
    /// The holder's call is over: the lease may be granted to someone else at once.
    case leaseRelease(name: String, number: LeaseNumber)
    /// A plugin's state (SPEC §3.20) changed on the sender under `version` (nil: cleared), with the lease
    /// of the call that changed it, for fencing like a value's.
    case state(name: String, version: Version, state: Secret?, lease: LeaseNumber?)
    /// In a greeting, after the states: the sender's attempt or call under `number` is not over yet (its
    /// release follows). A lease of the sender that its greeting does not name is over.
    case leaseUnderWay(name: String, number: LeaseNumber)
    /// Last on a link this node accepted, before it closes it: why it does not take the link, so the node that
    /// dialed can show it (it cannot see this node's log).
    case linkRefused(LinkRefusal)

    /// 2: `fetched` carries the stale mark, `fetchFailed` the error's class and retry-after (ABI 1.1), `value`
    /// its lease, and the lease frames exist.
    /// 3: `heartbeat` carries clocks for cluster time, `fetch` a deadline and an echo.
    /// 4: the `state` frame.
    /// 5: the accepting side echoes every heartbeat back on the same link (§4.14), and a greeting ends with a
    /// heartbeat (§4.11).
    /// 6: changes (value, clear, state) may also come back on a link this node dialed, from a peer whose own
    /// link to this node does not deliver (a one-way cut, §4.14).
    /// 7: lease requests and answers carry state versions and unfinished leases, and `leaseUnderWay` exists.
    /// 8: a lease answer's refusal is a code and its numbers (`LeaseRefusal`), no longer a sentence.
    /// 9: hello carries the daemon's incarnation, and each expirable's single_flight and keyed; the
    /// `linkRefused` frame.
    static let protocolVersion: UInt16 = 9

    /// The frame's kind, for errors.
    var kind: String {
        switch self {
        case .hello: "hello"
        case .heartbeat: "heartbeat"
        case .value: "value"
        case .clear: "clear"
        case .fetch: "fetch"
        case .fetched: "fetched"
        case .fetchFailed: "fetch-failed"
        case .leaseRequest: "lease-request"
        case .leaseAnswer: "lease-answer"
        case .leaseRelease: "lease-release"
        case .state: "state"
        case .leaseUnderWay: "lease-under-way"
        case .linkRefused: "link-refused"
        }
    }
}

/// Frames: a 4-byte big-endian length, then a type byte and the fields. Strings are a 2-byte length and
/// UTF-8; byte strings a 4-byte length. Every length is checked against what remains and against the caps.
enum ClusterFrame {
    /// The largest frame accepted: a 1 MiB value plus room for its name and fields.
    static let maxBytes = 1024 * 1024 + 64 * 1024
    static let maxDigests = 10_000

    private enum Kind: UInt8 {
        case hello = 1, heartbeat, value, clear, fetch, fetched, fetchFailed, leaseRequest, leaseAnswer, leaseRelease, state, leaseUnderWay, linkRefused
    }

    static func encode(_ message: ClusterMessage, into out: inout ByteBuffer) {
        let start = out.writerIndex
        out.writeInteger(UInt32(0))
        switch message {
        case .hello(let node, let version, let incarnation, let expirables):
            out.writeInteger(Kind.hello.rawValue)
            out.writeShortString(node)
            out.writeInteger(version)
            out.writeInteger(incarnation)
            out.writeInteger(UInt32(expirables.count))
            for digest in expirables {
                out.writeShortString(digest.name)
                out.writeShortString(digest.plugin)
                out.writeShortString(digest.refresh)
                out.writeShortString(digest.singleFlight)
                out.writeInteger(UInt8(digest.keyed ? 1 : 0))
            }
        case .linkRefused(let refusal):
            out.writeInteger(Kind.linkRefused.rawValue)
            switch refusal {
            case .duplicateNode(let established):
                out.writeInteger(UInt8(1))
                out.writeShortString(established)
            case .notAPeer:
                out.writeInteger(UInt8(2))
            }
        case .heartbeat(let wall, let echo, let hold):
            out.writeInteger(Kind.heartbeat.rawValue)
            out.writeInteger(wall)
            out.writeInteger(echo)
            out.writeInteger(hold)
        case .value(let name, let version, let remaining, let value, let lease):
            out.writeInteger(Kind.value.rawValue)
            out.writeShortString(name)
            out.writeVersion(version)
            out.writeInteger(remaining ?? -1)
            out.writeSecret(value)
            out.writeLease(lease)
        case .clear(let name, let version):
            out.writeInteger(Kind.clear.rawValue)
            out.writeShortString(name)
            out.writeVersion(version)
        case .fetch(let id, let name, let deadline, let echo):
            out.writeInteger(Kind.fetch.rawValue)
            out.writeInteger(id)
            out.writeShortString(name)
            out.writeInteger(deadline)
            out.writeInteger(echo)
        case .fetched(let id, let version, let remaining, let value, let stale):
            out.writeInteger(Kind.fetched.rawValue)
            out.writeInteger(id)
            out.writeVersion(version)
            out.writeInteger(remaining ?? -1)
            out.writeSecret(value)
            out.writeInteger(UInt8(stale ? 1 : 0))
        case .fetchFailed(let id, let code, let message, let permanent, let retryAfter):
            out.writeInteger(Kind.fetchFailed.rawValue)
            out.writeInteger(id)
            out.writeShortString(code)
            out.writeShortString(String(decoding: message.utf8.prefix(4000), as: UTF8.self))
            out.writeInteger(UInt8(permanent ? 1 : 0))
            out.writeInteger(retryAfter ?? -1)
        case .leaseRequest(let name, let number, let duration, let stateVersion):
            out.writeInteger(Kind.leaseRequest.rawValue)
            out.writeShortString(name)
            out.writeLease(number)
            out.writeInteger(duration)
            out.writeOptionalVersion(stateVersion)
        case .leaseAnswer(let name, let number, let refusal, let newest, let unfinished, let stateVersion):
            out.writeInteger(Kind.leaseAnswer.rawValue)
            out.writeShortString(name)
            out.writeLease(number)
            out.writeRefusal(refusal)
            out.writeLease(newest)
            out.writeLease(unfinished)
            out.writeOptionalVersion(stateVersion)
        case .leaseUnderWay(let name, let number):
            out.writeInteger(Kind.leaseUnderWay.rawValue)
            out.writeShortString(name)
            out.writeLease(number)
        case .state(let name, let version, let state, let lease):
            out.writeInteger(Kind.state.rawValue)
            out.writeShortString(name)
            out.writeVersion(version)
            out.writeInteger(UInt8(state == nil ? 0 : 1))
            if let state { out.writeSecret(state) }
            out.writeLease(lease)
        case .leaseRelease(let name, let number):
            out.writeInteger(Kind.leaseRelease.rawValue)
            out.writeShortString(name)
            out.writeLease(number)
        }
        out.setInteger(UInt32(out.writerIndex - start - 4), at: start)
    }

    /// The next whole frame at the front of `buffer`, consuming it; nil when more bytes are needed. A length
    /// beyond `maxBytes` is refused as soon as it is read, before its bytes are waited for.
    static func decode(_ buffer: inout ByteBuffer, maxBytes: Int = ClusterFrame.maxBytes) throws(PeerError) -> ClusterMessage? {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else { return nil }
        guard length >= 1, length <= maxBytes else { throw .oversizeFrame(bytes: length, limit: maxBytes) }
        guard buffer.readableBytes >= 4 + Int(length) else { return nil }
        buffer.moveReaderIndex(forwardBy: 4)
        var frame = buffer.readSlice(length: Int(length))!
        let message = try parse(&frame)
        guard frame.readableBytes == 0 else { throw .malformedFrame("\(frame.readableBytes) unexpected bytes at the end of a frame") }
        return message
    }

    private static func parse(_ frame: inout ByteBuffer) throws(PeerError) -> ClusterMessage {
        guard let raw = frame.readInteger(as: UInt8.self) else { throw .malformedFrame("an empty frame") }
        guard let kind = Kind(rawValue: raw) else { throw .unknownFrameType(raw) }
        switch kind {
        case .hello:
            let node = try frame.readShortString()
            let version = try frame.readChecked(UInt16.self)
            guard version == ClusterMessage.protocolVersion else {
                // Another version's hello may be laid out differently: what matters is that it is refused, by name.
                frame.moveReaderIndex(forwardBy: frame.readableBytes)
                return .hello(node: node, protocolVersion: version, expirables: [])
            }
            let incarnation = try frame.readChecked(UInt64.self)
            let count = try frame.readChecked(UInt32.self)
            guard count <= maxDigests else { throw PeerError.malformedFrame("hello lists \(count) expirables") }
            var digests: [ExpirableDigest] = []
            for _ in 0..<count {
                digests.append(ExpirableDigest(name: try frame.readShortString(), plugin: try frame.readShortString(), refresh: try frame.readShortString(),
                                               singleFlight: try frame.readShortString(), keyed: try frame.readFlag()))
            }
            return .hello(node: node, protocolVersion: version, incarnation: incarnation, expirables: digests)
        case .heartbeat:
            let wall = try frame.readChecked(Int64.self)
            let echo = try frame.readChecked(Int64.self)
            let hold = try frame.readChecked(Int64.self)
            guard hold >= 0 else { throw PeerError.malformedFrame("a heartbeat held for \(hold) ms") }
            return .heartbeat(wallMillis: wall, echoMillis: echo, holdMillis: hold)
        case .value:
            let name = try frame.readShortString()
            let version = try frame.readVersion()
            let remaining = try frame.readRemaining()
            let value = try frame.readSecret()
            return .value(name: name, version: version, remainingMillis: remaining, value: value, lease: try frame.readOptionalLease())
        case .clear:
            return .clear(name: try frame.readShortString(), version: try frame.readVersion())
        case .fetch:
            let id = try frame.readChecked(UInt64.self)
            let name = try frame.readShortString()
            let deadline = try frame.readChecked(Int64.self)
            guard deadline >= 0 else { throw PeerError.malformedFrame("a fetch with a deadline of \(deadline) ms") }
            return .fetch(id: id, name: name, deadlineMillis: deadline, echoMillis: try frame.readChecked(Int64.self))
        case .fetched:
            let id = try frame.readChecked(UInt64.self)
            let version = try frame.readVersion()
            let remaining = try frame.readRemaining()
            let value = try frame.readSecret()
            return .fetched(id: id, version: version, remainingMillis: remaining, value: value, stale: try frame.readFlag())
        case .fetchFailed:
            let id = try frame.readChecked(UInt64.self)
            let code = try frame.readShortString()
            let message = try frame.readShortString()
            let permanent = try frame.readFlag()
            let retryAfter = try frame.readChecked(Int64.self)
            guard retryAfter >= -1 else { throw PeerError.malformedFrame("a retry-after of \(retryAfter) ms") }
            return .fetchFailed(id: id, code: code, message: message, permanent: permanent, retryAfterMillis: retryAfter < 0 ? nil : retryAfter)
        case .leaseRequest:
            let name = try frame.readShortString()
            let number = try frame.readLease()
            let duration = try frame.readChecked(Int64.self)
            guard duration > 0, duration <= 24 * 3_600_000 else { throw PeerError.malformedFrame("a lease of \(duration) ms") }
            return .leaseRequest(name: name, number: number, durationMillis: duration, stateVersion: try frame.readOptionalVersion())
        case .leaseAnswer:
            let name = try frame.readShortString()
            let number = try frame.readLease()
            let refusal = try frame.readRefusal()
            let newest = try frame.readOptionalLease()
            let unfinished = try frame.readOptionalLease()
            return .leaseAnswer(name: name, number: number, refusal: refusal, newest: newest, unfinished: unfinished,
                                stateVersion: try frame.readOptionalVersion())
        case .leaseUnderWay:
            return .leaseUnderWay(name: try frame.readShortString(), number: try frame.readLease())
        case .state:
            let name = try frame.readShortString()
            let version = try frame.readVersion()
            let state = try frame.readFlag() ? try frame.readSecret(max: 64 * 1024, what: "a state") : nil
            return .state(name: name, version: version, state: state, lease: try frame.readOptionalLease())
        case .leaseRelease:
            return .leaseRelease(name: try frame.readShortString(), number: try frame.readLease())
        case .linkRefused:
            switch try frame.readChecked(UInt8.self) {
            case 1: return .linkRefused(.duplicateNode(established: try frame.readShortString()))
            case 2: return .linkRefused(.notAPeer)
            case let code: throw PeerError.malformedFrame("a link refusal with code \(code), which this node does not know")
            }
        }
    }
}

/// The codes of a lease answer's refusal on the wire; the numbers that follow each are in `writeRefusal`.
private enum RefusalCode: UInt8 {
    case granted = 0, quiet, notNewer, promised
}

extension ByteBuffer {
    fileprivate mutating func writeLease(_ number: LeaseNumber?) {
        guard let number else {
            writeInteger(UInt8(0))
            return
        }
        writeInteger(UInt8(1))
        writeLeaseBody(number)
    }

    fileprivate mutating func readOptionalLease() throws(PeerError) -> LeaseNumber? {
        try readFlag() ? try readLeaseBody() : nil
    }

    fileprivate mutating func readLease() throws(PeerError) -> LeaseNumber {
        guard try readFlag() else { throw PeerError.malformedFrame("a lease frame without its lease number") }
        return try readLeaseBody()
    }

    private mutating func writeLeaseBody(_ number: LeaseNumber) {
        writeInteger(number.round)
        writeShortString(number.node)
    }

    /// A round beyond `LeaseNumber.maxRound` is refused (the link is closed as for any malformed frame): no node
    /// gets there by asking, and one such number would spread through the answers and stop every node's leases.
    private mutating func readLeaseBody() throws(PeerError) -> LeaseNumber {
        let round = try readChecked(UInt64.self)
        let node = try readShortString()
        guard round <= LeaseNumber.maxRound else {
            throw PeerError.malformedFrame("lease number \(round)@\(node) is beyond the largest round a node can reach (\(LeaseNumber.maxRound)); the sender is broken or forged")
        }
        return LeaseNumber(round: round, node: node)
    }

    /// A lease answer's refusal: a code byte (0: granted, none) and the code's numbers. Durations are whole
    /// milliseconds, as an Int64 that must not be negative.
    fileprivate mutating func writeRefusal(_ refusal: LeaseRefusal?) {
        switch refusal {
        case nil:
            writeInteger(RefusalCode.granted.rawValue)
        case .quiet(let remaining)?:
            writeInteger(RefusalCode.quiet.rawValue)
            writeInteger(remaining.milliseconds)
        case .notNewer(let seen)?:
            writeInteger(RefusalCode.notNewer.rawValue)
            writeLeaseBody(seen)
        case .promised(let lease, let remaining)?:
            writeInteger(RefusalCode.promised.rawValue)
            writeLeaseBody(lease)
            writeInteger(remaining.milliseconds)
        }
    }

    fileprivate mutating func readRefusal() throws(PeerError) -> LeaseRefusal? {
        let raw = try readChecked(UInt8.self)
        guard let code = RefusalCode(rawValue: raw) else { throw PeerError.malformedFrame("a lease answer with refusal code \(raw), which this node does not know") }
        switch code {
        case .granted: return nil
        case .quiet: return .quiet(remaining: try readRefusalMillis())
        case .notNewer: return .notNewer(seen: try readLeaseBody())
        case .promised: return .promised(try readLeaseBody(), remaining: try readRefusalMillis())
        }
    }

    private mutating func readRefusalMillis() throws(PeerError) -> Duration {
        let millis = try readChecked(Int64.self)
        guard millis >= 0 else { throw PeerError.malformedFrame("a lease refusal for \(millis) ms") }
        return .milliseconds(millis)
    }

    /// A byte that must be 0 or 1.
    fileprivate mutating func readFlag() throws(PeerError) -> Bool {
        switch try readChecked(UInt8.self) {
        case 0: return false
        case 1: return true
        case let other: throw PeerError.malformedFrame("a flag of \(other), expected 0 or 1")
        }
    }

    fileprivate mutating func writeShortString(_ text: String) {
        let bytes = Array(text.utf8.prefix(Int(UInt16.max)))
        writeInteger(UInt16(bytes.count))
        writeBytes(bytes)
    }

    /// A value's bytes, straight from the secret: no copy but the frame's.
    fileprivate mutating func writeSecret(_ secret: Secret) {
        writeInteger(UInt32(secret.count))
        secret.withUnsafeBytes { _ = writeBytes($0) }
    }

    fileprivate mutating func writeVersion(_ version: Version) {
        writeInteger(version.time)
        writeShortString(version.node)
    }

    fileprivate mutating func readChecked<T: FixedWidthInteger>(_: T.Type) throws(PeerError) -> T {
        guard let value = readInteger(as: T.self) else { throw PeerError.malformedFrame("frame ends inside a field") }
        return value
    }

    fileprivate mutating func readShortString() throws(PeerError) -> String {
        let length = try readChecked(UInt16.self)
        guard let bytes = readBytes(length: Int(length)) else { throw PeerError.malformedFrame("string runs past the end of its frame") }
        guard let text = String(validating: bytes, as: UTF8.self) else { throw PeerError.malformedFrame("string is not UTF-8") }
        return text
    }

    /// A value's bytes, copied from the frame straight into a secret: no array in between.
    fileprivate mutating func readSecret(max: Int = ClusterFrame.maxBytes, what: String = "a value") throws(PeerError) -> Secret {
        let length = Int(try readChecked(UInt32.self))
        guard length <= readableBytes else { throw .malformedFrame("\(what) runs past the end of its frame") }
        guard length <= max else { throw .malformedFrame("\(what) of \(length) bytes") }
        let secret = withUnsafeReadableBytes { Secret(copying: UnsafeRawBufferPointer(rebasing: $0[0..<length])) }
        moveReaderIndex(forwardBy: length)
        return secret
    }

    fileprivate mutating func readVersion() throws(PeerError) -> Version {
        let time = try readChecked(Int64.self)
        return Version(time: time, node: try readShortString())
    }

    fileprivate mutating func writeOptionalVersion(_ version: Version?) {
        writeInteger(UInt8(version == nil ? 0 : 1))
        if let version { writeVersion(version) }
    }

    fileprivate mutating func readOptionalVersion() throws(PeerError) -> Version? {
        try readFlag() ? try readVersion() : nil
    }

    fileprivate mutating func readRemaining() throws(PeerError) -> Int64? {
        let remaining = try readChecked(Int64.self)
        guard remaining >= -1 else { throw PeerError.malformedFrame("negative remaining validity") }
        return remaining == -1 ? nil : remaining
    }
}
