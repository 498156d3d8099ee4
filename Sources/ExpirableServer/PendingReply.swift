import ExpirableCore
import ExpirableRESP
import NIOCore
import Synchronization

/// A reply owed once the engine has answered for one or more names (a GET or FETCH that missed, an MGET).
/// The engine may answer on any thread; the reply is written on the connection's event loop.
final class PendingReply: Sendable {
    enum Kind { case get, fetch, mget }

    let kind: Kind
    let names: [String]
    private let results: Mutex<(answers: [Result<Fetched, ExpirableError>?], left: Int)>

    init(_ kind: Kind, names: [String]) {
        self.kind = kind
        self.names = names
        results = Mutex((Array(repeating: nil, count: names.count), names.count))
    }

    /// Asks the engine for every name; `done` runs once, when the last answer is in.
    func start(_ engine: Engine, done: @escaping @Sendable () -> Void) {
        for (index, name) in names.enumerated() {
            engine.fetch(name) { [self] result in
                let last = results.withLock { r in
                    r.answers[index] = result
                    r.left -= 1
                    return r.left == 0
                }
                if last { done() }
            }
        }
    }

    func write(to out: inout ByteBuffer, _ version: RESPVersion) {
        let answers = results.withLock { $0.answers }
        switch kind {
        case .get:
            switch answers[0] {
            case .success(let fetched)?: fetched.value.withUnsafeBytes { out.writeRESPBulk($0) }
            case .failure(let error)?: out.writeRESPError(error.description)
            case nil: out.writeRESPError("ERR no answer")
            }
        case .fetch:
            switch answers[0] {
            case .success(let fetched)?: PendingReply.writeFetched(fetched, to: &out)
            case .failure(let error)?: out.writeRESPError(error.description)
            case nil: out.writeRESPError("ERR no answer")
            }
        case .mget:
            out.writeRESPArrayHeader(answers.count)
            for answer in answers {
                switch answer {
                case .success(let fetched)?: fetched.value.withUnsafeBytes { out.writeRESPBulk($0) }
                case .failure(let error)? where error.code == .notFound: out.writeRESPNull(version)
                case .failure(let error)?: out.writeRESPError(error.description)
                case nil: out.writeRESPNull(version)
                }
            }
        }
    }

    /// FETCH's reply: `[value, expires_at_ms]`, -1 for never.
    static func writeFetched(_ fetched: Fetched, to out: inout ByteBuffer) {
        out.writeRESPArrayHeader(2)
        fetched.value.withUnsafeBytes { out.writeRESPBulk($0) }
        switch fetched.expiry {
        case .never: out.writeRESPInteger(-1)
        case .at(let ms): out.writeRESPInteger(ms)
        }
    }
}
