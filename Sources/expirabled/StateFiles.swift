import ExpirableCore
import ExpirableState
import Logging
import Synchronization

/// The engine's state keeper when `state_dir` is set: every change of a plugin's state is written through,
/// encrypted, before the next call can need it. A write that fails (a full disk, a file in the way) keeps the
/// state to write and tries again, 1 s doubling to 30 s apart, and once more when the daemon stops, so a restart
/// after the disk recovered resumes from the latest state and not from a spent refresh token. While a state is
/// not on disk, INFO and EXPLAIN show `state_error` and the metric `expirable_plugin_state_unsaved`.
final class StateFiles: StateKeeper {
    let store: StateStore
    private let clock: any EngineClock
    private let logger: Logger

    /// A state whose latest change is not on disk yet.
    private struct Unsaved {
        /// What to write (nil: remove the file).
        var state: Secret?
        /// Why the last attempt failed: names the file, never the state.
        var error: String
        var failedAttempts: UInt64
    }

    private struct Book {
        var unsaved: [String: Unsaved] = [:]
        var retry: (any Cancellable)?
        var retryDelay = StateFiles.firstRetry
        /// Failed writes since start, for the metrics.
        var failures: UInt64 = 0
        /// Set when the daemon stops: the last attempt has been made.
        var stopped = false
    }

    /// Held while writing, so one name's writes happen in the order of its changes and a retry never writes a
    /// state older than one written since.
    private let book = Mutex(Book())

    static let firstRetry: Duration = .seconds(1)
    static let maximumRetry: Duration = .seconds(30)

    init(store: StateStore, clock: any EngineClock, logger: Logger) {
        self.store = store
        self.clock = clock
        self.logger = logger
    }

    func stateChanged(_ name: String, _ state: Secret?) {
        book.withLock { book in
            if book.stopped { return }
            write(name, state, &book)
            if !book.unsaved.isEmpty && book.retry == nil { scheduleRetry(&book) }
        }
    }

    /// Writes `state`, and keeps it to write again if that fails.
    private func write(_ name: String, _ state: Secret?, _ book: inout Book) {
        do {
            try store.save(state, for: name)
            if let recovered = book.unsaved.removeValue(forKey: name) {
                logger.notice("a plugin state that could not be persisted is persisted now", metadata: [
                    "expirable": "\(name)", "failed_attempts": "\(recovered.failedAttempts)",
                ])
            }
        } catch {
            book.failures &+= 1
            let attempts = (book.unsaved[name]?.failedAttempts ?? 0) + 1
            book.unsaved[name] = Unsaved(state: state, error: error.message, failedAttempts: attempts)
            // Logged on the first failure of a run of them, not on every retry.
            if attempts == 1 {
                logger.error("cannot persist a plugin state; it is kept in memory and written again until it succeeds", metadata: [
                    "expirable": "\(name)", "error": "\(error.message)",
                ])
            }
        }
    }

    private func scheduleRetry(_ book: inout Book) {
        let delay = book.retryDelay
        book.retryDelay = min(book.retryDelay * 2, StateFiles.maximumRetry)
        book.retry = clock.schedule(after: delay) { [weak self] in self?.retry() }
    }

    /// Writes every state not on disk yet, in its latest version.
    private func retry() {
        book.withLock { book in
            book.retry = nil
            guard !book.stopped else { return }
            for (name, unsaved) in book.unsaved { write(name, unsaved.state, &book) }
            if book.unsaved.isEmpty {
                book.retryDelay = StateFiles.firstRetry
            } else {
                scheduleRetry(&book)
            }
        }
    }

    /// The last attempt, when the daemon stops (after the engine, so no state changes after it): a state still
    /// not on disk is logged, since the next start resumes from the older one.
    func stop() {
        book.withLock { book in
            book.retry?.cancel()
            book.retry = nil
            for (name, unsaved) in book.unsaved { write(name, unsaved.state, &book) }
            book.stopped = true
            for (name, unsaved) in book.unsaved {
                logger.critical("stopping with a plugin state that could not be persisted: the next start resumes from the older state in state_dir (with a rotating refresh token, a spent one)", metadata: [
                    "expirable": "\(name)", "error": "\(unsaved.error)", "failed_attempts": "\(unsaved.failedAttempts)",
                ])
            }
        }
    }

    /// INFO and EXPLAIN lines for `name`: `state_error`, empty while its latest state is on disk.
    func info(_ name: String) -> [(String, String)] {
        let unsaved = book.withLock { $0.unsaved[name] }
        guard let unsaved else { return [("state_error", "")] }
        return [("state_error", "\(unsaved.error) (not persisted after \(unsaved.failedAttempts) attempt\(unsaved.failedAttempts == 1 ? "" : "s"); retried until it succeeds; a restart now would resume from the older state)")]
    }

    /// For the metrics: states not on disk now, and failed writes since start.
    func figures() -> (unsaved: Int, failures: UInt64) {
        book.withLock { ($0.unsaved.count, $0.failures) }
    }

    func load(_ name: String) -> Result<Secret, ExpirableError>? {
        do {
            return try store.load(name).map { .success($0) }
        } catch {
            logger.error("a plugin state file cannot be used", metadata: ["expirable": "\(name)", "error": "\(error.message)"])
            return .failure(.fetch("\(name): its saved plugin state cannot be used: \(error.message)", class: .permanent))
        }
    }

    /// The states saved for `names`. A file that cannot be read or decrypted stops its expirable's calls with
    /// the reason (they would otherwise start over without the refresh token), and is logged now.
    static func load(_ store: StateStore, names: [String], logger: Logger) -> [String: Result<Secret, ExpirableError>] {
        var loaded: [String: Result<Secret, ExpirableError>] = [:]
        for name in names {
            do {
                if let state = try store.load(name) { loaded[name] = .success(state) }
            } catch {
                logger.error("a plugin state file cannot be used", metadata: ["expirable": "\(name)", "error": "\(error.message)"])
                loaded[name] = .failure(.fetch("\(name): its saved plugin state cannot be used: \(error.message)", class: .permanent))
            }
        }
        return loaded
    }
}
