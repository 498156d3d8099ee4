import Dispatch
import ExpirableCore
import ExpirableRESP
import NIOCore
import Synchronization

/// A reply owed once the engine has answered for one or more names (a GET or FETCH that missed, an MGET), or
/// once a RELOAD is done. The engine may answer on any thread; the reply is written on the connection's event loop.
final class PendingReply: Sendable {
    enum Kind { case get, fetch, mget, reload }

    let kind: Kind
    let names: [String]
    /// FETCH … MINTTL: the validity the caller needs left.
    let minimumValidity: Duration?
    /// How long the caller waits for a paced plugin call (SPEC §3.17) before it gets the last error.
    let patience: Duration?
    private let results: Mutex<(answers: [Result<Fetched, ExpirableError>?], left: Int)>
    /// RELOAD's work and, once done, its outcome.
    private let reload: (@Sendable () -> Result<String, ServerError>)?
    private let reloaded = Mutex<Result<String, ServerError>?>(nil)

    init(_ kind: Kind, names: [String], minimumValidity: Duration? = nil, patience: Duration? = nil) {
        self.kind = kind
        self.names = names
        self.minimumValidity = minimumValidity
        self.patience = patience
        results = Mutex((Array(repeating: nil, count: names.count), names.count))
        reload = nil
    }

    /// RELOAD's reply, owed once `reload` has run.
    init(reload: @escaping @Sendable () -> Result<String, ServerError>) {
        kind = .reload
        names = []
        minimumValidity = nil
        patience = nil
        results = Mutex(([], 0))
        self.reload = reload
    }

    /// Asks the engine for every name; `done` runs once, when the last answer is in. A reload runs on a
    /// Dispatch thread, as SIGHUP's does: it reads the file, starts helpers and waits for `expirable_create`,
    /// which may take seconds, and the event loop it came from serves other connections (and the drain of a
    /// SIGTERM) meanwhile.
    func start(_ engine: Engine, done: @escaping @Sendable () -> Void) {
        if let reload {
            DispatchQueue.global().async { [self] in
                let outcome = reload()
                reloaded.withLock { $0 = outcome }
                done()
            }
            return
        }
        for (index, name) in names.enumerated() {
            engine.fetch(name, minimumValidity: minimumValidity, patience: patience) { [self] result in
                let last = results.withLock { r in
                    r.answers[index] = result
                    r.left -= 1
                    return r.left == 0
                }
                if last { done() }
            }
        }
    }

    /// The reply, once every answer is in: one element for GET and FETCH, MGET's array otherwise (written
    /// element by element, so its size is bounded by the connection's output bound, not by the request).
    func reply(_ version: RESPVersion) -> LongReply {
        let answers = results.withLock { $0.answers }
        switch kind {
        case .get:
            return LongReply(count: 1, header: { _ in }) { _, out in
                switch answers[0] {
                case .success(let fetched)?: fetched.value.withUnsafeBytes { out.writeRESPBulk($0) }
                case .failure(let error)?: out.writeRESPError(error.description)
                case nil: out.writeRESPError("ERR no answer")
                }
            }
        case .fetch:
            return LongReply(count: 1, header: { _ in }) { _, out in
                switch answers[0] {
                case .success(let fetched)?: PendingReply.writeFetched(fetched, to: &out)
                case .failure(let error)?: out.writeRESPError(error.description)
                case nil: out.writeRESPError("ERR no answer")
                }
            }
        case .reload:
            let outcome = reloaded.withLock { $0 }
            return LongReply(count: 1, header: { _ in }) { _, out in
                switch outcome {
                case .success(let applied)?: out.writeRESPBulk(applied)
                case .failure(let refusal)?: out.writeRESPError("ERR reload refused, nothing changed: \(refusal.message)")
                case nil: out.writeRESPError("ERR no answer")
                }
            }
        case .mget:
            return LongReply(count: answers.count, header: { $0.writeRESPArrayHeader(answers.count) }) { index, out in
                switch answers[index] {
                case .success(let fetched)?: fetched.value.withUnsafeBytes { out.writeRESPBulk($0) }
                case .failure(let error)? where error.code == .notFound: out.writeRESPNull(version)
                case .failure(let error)?: out.writeRESPError(error.description)
                case nil: out.writeRESPNull(version)
                }
            }
        }
    }

    /// FETCH's reply: `[value, expires_at_ms, "fresh" | "stale"]`, -1 for never. Clients of the first version
    /// read the first two elements (docs/protocol.md asked them to accept a longer array).
    static func writeFetched(_ fetched: Fetched, to out: inout ByteBuffer) {
        out.writeRESPArrayHeader(3)
        fetched.value.withUnsafeBytes { out.writeRESPBulk($0) }
        switch fetched.expiry {
        case .never: out.writeRESPInteger(-1)
        case .at(let ms): out.writeRESPInteger(ms)
        }
        out.writeRESPBulk(fetched.isStale ? "stale" : "fresh")
    }
}
