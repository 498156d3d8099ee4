import ExpirableCore
import NIOCore

/// How a forwarded fetch ended: the owner answered (or did not in time), or it went away first.
enum ForwardOutcome: Sendable {
    case answered(Result<Fetched, ExpirableError>)
    /// The owner died, its link closed, or it could not be asked: the fetch is for the next owner.
    case ownerLost(PeerError)
}

extension Cluster {
    /// Makes the one call of `name`'s flight (`family`'s member, or `family` itself): here if this node owns it
    /// (or serves fetches forwarded to it), otherwise at its owner. If the owner goes away before answering, the fetch goes to the next owner, and so
    /// on until `deadline` (monotonic): a caller gets a value from whoever owns the name by then, not "the owner
    /// went away" (SPEC §4.13). `lost` is why the last owner asked (`asked`) did not answer.
    func route(_ name: String, family: String, local: any Fetcher, request: FetchRequest, timeout: Duration, deadline: UInt64,
               lost: PeerError? = nil, asked: String? = nil, completion: @escaping @Sendable (FetchOutcome) -> Void) {
        let owner = owner(of: name)
        if owner == options.node || servingForwards(of: name) {
            if let lost { logger.info("fetching here: the owner went away", metadata: ["expirable": "\(name)", "reason": "\(lost)"]) }
            if options.quorum[family] != nil {
                return callUnderLease(name, local: local, request: request, timeout: timeout, completion: completion)
            }
            engine?.countPluginCall(name)
            return local.fetch(request, completion: completion)
        }
        let now = clock.monotonicNanos
        guard deadline > now else {
            return completion(FetchOutcome(result: .failure(.timeout("\(lost.map { "\($0)" } ?? "\(owner), the owner of \(name), did not answer"); no other node answered in time")),
                                           route: asked.map { .forwarded(to: $0) } ?? .notCalled))
        }
        if let lost { logger.info("forwarding to the next owner: the owner went away", metadata: ["expirable": "\(name)", "owner": "\(owner)", "reason": "\(lost)"]) }
        forward(name, to: owner, timeout: .nanoseconds(Int64(deadline - now))) { [self] outcome in
            switch outcome {
            case .answered(let result):
                completion(FetchOutcome(result: result, route: .forwarded(to: owner)))
            case .ownerLost(let reason):
                // At once if the view already names another owner; otherwise after a moment, so a link that is
                // being redialed or a death not yet noticed does not make this spin.
                if self.owner(of: name) != owner {
                    route(name, family: family, local: local, request: request, timeout: timeout, deadline: deadline, lost: reason, asked: owner,
                          completion: completion)
                } else {
                    let pause = min(options.heartbeat / 4, .milliseconds(100))
                    _ = clock.schedule(after: pause) { [self] in
                        route(name, family: family, local: local, request: request, timeout: timeout, deadline: deadline, lost: reason, asked: owner,
                              completion: completion)
                    }
                }
            }
        }
    }
}
