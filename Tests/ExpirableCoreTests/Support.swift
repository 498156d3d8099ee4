import Dispatch
import ExpirableCore
import Logging
import Synchronization

/// A fetcher whose calls the test completes by hand, so single flight and refresh are observed step by step.
final class ControlledFetcher: Fetcher {
    typealias Completion = @Sendable (Result<Fetched, ExpirableError>) -> Void
    private let pending = Mutex<[Completion]>([])
    private let count = Mutex(0)

    var calls: Int { count.withLock { $0 } }
    var outstanding: Int { pending.withLock { $0.count } }

    func fetch(completion: @escaping Completion) {
        count.withLock { $0 += 1 }
        pending.withLock { $0.append(completion) }
    }

    /// Completes the oldest outstanding call.
    func complete(_ result: Result<Fetched, ExpirableError>) {
        let completion = pending.withLock { $0.isEmpty ? nil : $0.removeFirst() }
        precondition(completion != nil, "no outstanding call to complete")
        completion!(result)
    }
}

/// Collects what the engine logs, to check that no value ever reaches a log line.
struct CapturingLogHandler: LogHandler {
    let box: LogBox
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata?, source: String, file: String, function: String, line: UInt) {
        let all = self.metadata.merging(metadata ?? [:]) { $1 }
        box.lines.withLock { $0.append("\(level) \(message) \(all)") }
    }
}

final class LogBox: Sendable {
    let lines = Mutex<[String]>([])
    var logger: Logger {
        Logger(label: "test") { _ in CapturingLogHandler(box: self) }
    }
    var text: String { lines.withLock { $0.joined(separator: "\n") } }
}

/// A value that expires `millis` after the clock's current wall time.
func value(_ text: String, expiresIn millis: Int64, clock: ManualClock) -> Result<Fetched, ExpirableError> {
    .success(Fetched(value: Secret(text), expiry: .at(unixMillis: clock.unixMillis + millis)))
}

func string(_ fetched: Fetched?) -> String? {
    fetched.map { String(decoding: $0.value.bytes, as: UTF8.self) }
}

/// Collects the results of callback fetches.
final class Answers: Sendable {
    private let results = Mutex<[Result<Fetched, ExpirableError>]>([])
    var all: [Result<Fetched, ExpirableError>] { results.withLock { $0 } }
    var count: Int { results.withLock { $0.count } }
    func record(_ result: Result<Fetched, ExpirableError>) { results.withLock { $0.append(result) } }
}

struct Harness {
    let clock = ManualClock()
    let fetcher = ControlledFetcher()
    let logs = LogBox()
    let engine: Engine

    init(name: String = "token", refresh: RefreshPolicy = .lazy, freshness: FreshnessPolicy = FreshnessPolicy(),
         scope: Scope = .cluster, extra: [String] = [], jitter: JitterSource? = nil) {
        let definitions = [ExpirableDefinition(name: name, scope: scope, refresh: refresh, freshness: freshness, fetcher: fetcher)]
            + extra.map { ExpirableDefinition(name: $0, fetcher: ControlledFetcher()) }
        if let jitter {
            engine = Engine(expirables: definitions, clock: clock, logger: logs.logger, jitter: jitter)
        } else {
            engine = Engine(expirables: definitions, clock: clock, logger: logs.logger)
        }
    }

    /// Starts a fetch and returns where its answer will land.
    func startFetch(_ name: String = "token", minimumValidity: Duration? = nil, patience: Duration? = nil) -> Answers {
        let answers = Answers()
        engine.fetch(name, minimumValidity: minimumValidity, patience: patience) { answers.record($0) }
        return answers
    }
}

extension Answers {
    /// The only answer, if exactly one has arrived.
    var only: Result<Fetched, ExpirableError>? { count == 1 ? all[0] : nil }
    var error: ExpirableError? { if case .failure(let error)? = only { error } else { nil } }
    var fetched: Fetched? { if case .success(let fetched)? = only { fetched } else { nil } }
}

/// A value behind a lock that escaping closures can share.
final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    init(_ value: Value) { mutex = Mutex(value) }
    func withLock<R>(_ body: (inout Value) -> R) -> R { mutex.withLock { body(&$0) } }
}
