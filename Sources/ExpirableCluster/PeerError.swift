/// What goes wrong with a peer: in a frame, on a link, with a fetch forwarded to it, or with the leases the peers
/// grant. Each case says what happened and to whom; `description` is the text the log, `expirablectl cluster` and
/// a caller's error show. What crosses the wire stays a coded field (a `fetchFailed` frame's error code, a lease
/// answer's `LeaseRefusal`); this is what a node makes of it, and of what it sees itself.
enum PeerError: Error, Hashable, CustomStringConvertible {
    // MARK: Frames (the link they arrive on is closed; nothing else is affected)

    /// A frame's length is 0 or beyond the cap.
    case oversizeFrame(bytes: UInt32, limit: Int)
    /// A frame type this node does not know.
    case unknownFrameType(UInt8)
    /// A field breaks its rules: runs past the frame, is not UTF-8, a flag that is not 0 or 1, a negative time.
    case malformedFrame(String)
    /// The link closed with `bytes` of a frame read and the rest missing.
    case truncatedFrame(bytes: Int)
    /// A frame was begun (`bytes` of it read) and the rest did not arrive within the dead time.
    case stalledMidFrame(bytes: Int, millis: Int64)

    // MARK: Links

    /// The first frame on an accepted link was not hello.
    case notHello
    /// hello names another node than the certificate was verified for.
    case wrongNode(claimed: String, verified: String)
    /// hello speaks another protocol version.
    case badVersion(theirs: UInt16, ours: UInt16)
    /// A frame that has no business on this link (`link`: which side it arrived on).
    case unexpectedFrame(kind: String, link: String)
    /// An accepted connection did not finish TLS (`verified` nil) or did not say hello within the handshake
    /// deadline.
    case handshakeTimeout(millis: Int64, verified: String?)
    /// A second daemon says it is `node`, from `from`, while another daemon with that name is linked from
    /// `established` and alive: the established link is kept.
    case duplicateNode(node: String, from: String, established: String)
    /// An accepted connection beyond the budget of unauthenticated connections.
    case unauthenticatedOverBudget(limit: Int)

    // MARK: Forwarded fetches

    /// The link to the owner closed before it answered.
    case linkClosed(peer: String)
    /// The owner was declared dead before it answered.
    case ownerGone(owner: String)
    /// There is no link to ask the owner on.
    case ownerUnreachable(owner: String, name: String)
    /// The owner did not answer within the asker's time.
    case ownerSilent(owner: String, name: String, millis: Int64)
    /// The owner dropped a fetch whose deadline had passed when it read it (`pauseMillis`: it had just been
    /// paused that long).
    case deadlinePassed(node: String, peer: String, name: String, deadlineMillis: Int64, pauseMillis: Int64?)
    /// The owner dropped a fetch sent before the asker heard from it again after a pause.
    case sentBeforeRejoin(node: String, peer: String, name: String, pauseMillis: Int64)

    // MARK: Quorum single flight

    /// No majority granted `lease` on `name`, so no call was made: `needed` of the `voters` configured nodes had
    /// to grant it and `granted` did; the nodes that refused it, and why, those dead in this node's view (not
    /// waited for), and those that did not answer in time.
    case noQuorum(name: String, lease: LeaseNumber, needed: Int, voters: Int, granted: Int, refusals: [String: LeaseRefusal], dead: [String], silent: [String])
    /// The majority's lease arrived with less of it left than the call's timeout: nothing was called.
    case leaseTooLate(name: String, lease: LeaseNumber, timeoutMillis: Int64)
    /// The call ended after its lease had run out on this node's clock: its result is dropped.
    case callOutlivedLease(name: String, lease: LeaseNumber)

    var description: String {
        switch self {
        case .oversizeFrame(let bytes, let limit): "frame of \(bytes) bytes (allowed: 1 to \(limit))"
        case .unknownFrameType(let type): "unknown frame type \(type)"
        case .malformedFrame(let what): what
        case .truncatedFrame(let bytes): "the link closed \(bytes) bytes into a frame"
        case .stalledMidFrame(let bytes, let millis): "\(bytes) bytes of a frame, the rest not within \(millis) ms"
        case .notHello: "the first frame is not hello"
        case .wrongNode(let claimed, let verified): "hello says \(claimed), but the certificate was verified for \(verified)"
        case .badVersion(let theirs, let ours): "cluster protocol \(theirs), this node speaks \(ours)"
        case .unexpectedFrame(let kind, let link): "a \(kind) frame on \(link)"
        case .handshakeTimeout(let millis, nil): "no TLS handshake within \(millis) ms"
        case .handshakeTimeout(let millis, let verified?): "verified as \(verified): no hello within \(millis) ms of connecting"
        case .duplicateNode(let node, let from, let established):
            "a second daemon says it is \(node), from \(from), while \(node) is linked from \(established) and alive; the established link is kept. "
                + "Two daemons run with node = \"\(node)\" and its certificate (a cloned machine or configuration?): stop the one that should not run"
        case .unauthenticatedOverBudget(let limit): "over the budget of \(limit) unauthenticated connections"
        case .linkClosed(let peer): "the link to \(peer) closed before it answered"
        case .ownerGone(let owner): "\(owner), the owner, went away before it answered"
        case .ownerUnreachable(let owner, let name): "cannot reach \(owner), the owner of \(name)"
        case .ownerSilent(let owner, let name, let millis): "\(owner), the owner of \(name), did not answer within \(millis)ms"
        case .deadlinePassed(let node, let peer, let name, let deadline, let pause):
            "\(node) dropped \(peer)'s fetch of \(name): its deadline (\(deadline) ms) had passed when it was read\(pause.map { " after a pause of \($0) ms" } ?? ""); try again"
        case .sentBeforeRejoin(let node, let peer, let name, let pause):
            "\(node) dropped \(peer)'s fetch of \(name): it was sent before \(peer) heard from \(node) again after a pause of \(pause) ms; try again"
        case .noQuorum(let name, let lease, let needed, let voters, let granted, let refusals, let dead, let silent):
            "no quorum for \(name): a plugin call needs a lease granted by \(needed) of the \(voters) configured nodes, and \(granted) granted it ("
                + (refusals.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value.text(refusing: lease))" }
                    + (dead.isEmpty ? [] : ["\(dead.joined(separator: ", ")): dead in this node's view"])
                    + (silent.isEmpty ? [] : ["no answer from \(silent.joined(separator: ", "))"])).joined(separator: "; ")
                + "); values already held are still served"
        case .leaseTooLate(let name, let lease, let timeout):
            "\(name): the lease for this call (\(lease)) came too late to hold a whole call of \(timeout) ms; nothing was called"
        case .callOutlivedLease(let name, let lease):
            "\(name): the call outlived its lease (\(lease)), so its result is dropped (the node was paused or the call ran long)"
        }
    }

    /// Whether the frame or the link broke the protocol (logged as a malformed frame), rather than TLS or the
    /// network failing.
    var isProtocolViolation: Bool {
        switch self {
        case .oversizeFrame, .unknownFrameType, .malformedFrame, .truncatedFrame, .unexpectedFrame: true
        default: false
        }
    }

    /// Whether a connection failed a check of who it is (its hello does not confirm the certificate, or speaks
    /// another protocol): logged as a refused peer connection, as a failed TLS check is.
    var isRefusal: Bool {
        switch self {
        case .notHello, .wrongNode, .badVersion: true
        default: false
        }
    }
}
