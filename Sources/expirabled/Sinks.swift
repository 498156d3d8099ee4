import ExpirableConfig
import ExpirableCore
import Logging
import Synchronization

/// The configured `[[sink]]`s (SPEC §7): files that hold a value for programs that read a file. Each is written
/// when the daemon starts and again on every new value the engine stores, whoever stored it (a caller's fetch,
/// an eager refresh, a cluster peer); removed on a clear (here or on a peer), then fetched again at once, and
/// removed at shutdown. A value that expires with nothing to replace it is fetched again when it expires, as a
/// reader would; if that fails the file is removed (a sink never holds a value past its expiry, save a stale one
/// that `stale_if_error` answers too) and the fetch is retried, 1 s doubling to 30 s apart. A reload that gives
/// its expirable a new plugin instance drops the file's value too, and the sink fetches anew. Never logs a value.
final class Sinks: Service, Sendable {
    private let sinks: [Sink]
    private let engine: Engine
    private let clock: any EngineClock
    private let logger: Logger
    /// Each expirable's `expiry_margin`: a value counts as expired that long before its `expires_at`.
    private let margins: [String: Duration]

    /// One file and what the daemon knows of it, under its own lock: writes to one file never interleave.
    private final class Sink: Sendable {
        let file: SinkFile
        let state = Mutex(State())

        struct State {
            /// The timer that fetches the value again at its expiry (or retries a failed fetch).
            var timer: (any Cancellable)?
            var retryDelay = Sinks.firstRetry
            /// Set at shutdown: nothing is written after it.
            var stopped = false
        }

        init(_ sink: Configuration.Sink) { file = SinkFile(sink: sink) }
        var name: String { file.sink.expirable }
    }

    static let firstRetry: Duration = .seconds(1)
    static let maximumRetry: Duration = .seconds(30)
    static let afterExpiry: Duration = .milliseconds(5)

    init(_ configuration: Configuration, engine: Engine, clock: any EngineClock, logger: Logger) {
        sinks = configuration.sinks.map(Sink.init)
        margins = Dictionary(uniqueKeysWithValues: configuration.expirables.map { ($0.name, $0.freshness.expiryMargin) })
        self.engine = engine
        self.clock = clock
        self.logger = logger
        engine.observeNewValues { [weak self] name, fetched in self?.stored(name, fetched) }
        engine.observeClears { [weak self] name in self?.cleared(name) }
        engine.observeReloads { [weak self] report in self?.reloaded(report) }
    }

    /// Writes every sink (fetching values not in memory yet), then keeps them until the daemon shuts down, and
    /// removes them.
    func run() async throws {
        for name in Set(sinks.map(\.name)) { refresh(name) }
        try? await gracefulShutdown()
        stop()
    }

    /// Fetches `name` as a reader would and writes its sinks; removes them if the fetch fails.
    private func refresh(_ name: String) {
        engine.fetch(name) { [weak self] result in
            guard let self else { return }
            switch result {
            case .success(let fetched):
                stored(name, fetched)
            case .failure(let error):
                logger.warning("a sink's value cannot be fetched; its file is removed until a fetch succeeds", metadata: [
                    "expirable": "\(name)", "error": "\(error)",
                ])
                for sink in sinks where sink.name == name { retryLater(sink) }
            }
        }
    }

    /// Runs on the thread that stored the value, which must not block: a write to a tmpfs costs microseconds.
    private func stored(_ name: String, _ fetched: Fetched) {
        for sink in sinks where sink.name == name {
            sink.state.withLock { state in
                guard !state.stopped else { return }
                do {
                    try sink.file.write(fetched.value)
                } catch {
                    // The file would hold an older value than readers of the socket get: better none.
                    logger.error("cannot write a sink; its file is removed", metadata: ["expirable": "\(name)", "path": "\(sink.file.sink.path)", "error": "\(error)"])
                    remove(sink)
                }
                state.timer?.cancel()
                state.timer = nil
                guard case .at(let expiresAt) = fetched.expiry else { return }
                let left = expiresAt - (margins[Sinks.family(of: name)] ?? .zero).milliseconds - clock.unixMillis
                // Asked a little after the expiry, so the engine no longer answers the old value. A stale value is
                // already past its expiry: ask again after the retry delay, not at once.
                let delay = left > 0 ? Duration.milliseconds(left) + Sinks.afterExpiry : state.retryDelay
                if left > 0 { state.retryDelay = Sinks.firstRetry } else { state.retryDelay = min(state.retryDelay * 2, Sinks.maximumRetry) }
                state.timer = clock.schedule(after: delay) { [weak self] in self?.refresh(name) }
            }
        }
    }

    private func retryLater(_ sink: Sink) {
        sink.state.withLock { state in
            guard !state.stopped else { return }
            remove(sink)
            state.timer?.cancel()
            let delay = state.retryDelay
            state.retryDelay = min(state.retryDelay * 2, Sinks.maximumRetry)
            state.timer = clock.schedule(after: delay) { [weak self] in self?.refresh(sink.name) }
        }
    }

    /// A clear dropped `name`'s value: the file goes with it, and the sink fetches a new value at once, as the
    /// reader it stands for would; a program that reads only the file has no other way to ask for one, and a
    /// clear is how an operator forces a new value (an eager one's refresh stops with the clear, too).
    private func cleared(_ name: String) {
        // Outside the sink's lock: a fetch may answer (and write the file) on this thread.
        if drop(name) { refresh(name) }
    }

    /// A reload gave these expirables a new plugin instance, which starts empty: the value in their sinks' files
    /// went with the old one, and a file must not hold a value the daemon no longer has (a rotated-away or
    /// revoked credential, kept until its expiry). The file is removed, and the sink fetches from the new
    /// instance at once, as the reader it stands for would.
    private func reloaded(_ report: ReloadReport) {
        let startingEmpty = Set(report.startingEmpty)
        for name in Set(sinks.map(\.name)) where startingEmpty.contains(Sinks.family(of: name)) {
            // Outside the sink's lock: a fetch may answer (and write the file) on this thread.
            if drop(name) { refresh(name) }
        }
    }

    /// Removes `name`'s files and stops their timers; whether any sink is still running (not after shutdown).
    private func drop(_ name: String) -> Bool {
        var running = false
        for sink in sinks where sink.name == name {
            sink.state.withLock { state in
                guard !state.stopped else { return }
                state.timer?.cancel()
                state.timer = nil
                state.retryDelay = Sinks.firstRetry
                remove(sink)
                running = true
            }
        }
        return running
    }

    /// The configured expirable `name` belongs to: itself, or the keyed family of `NAME:KEY`.
    private static func family(of name: String) -> String {
        String(name.split(separator: ":", maxSplits: 1).first ?? Substring(name))
    }

    private func stop() {
        for sink in sinks {
            sink.state.withLock { state in
                state.stopped = true
                state.timer?.cancel()
                state.timer = nil
                remove(sink)
            }
        }
    }

    private func remove(_ sink: Sink) {
        do {
            try sink.file.remove()
        } catch {
            logger.error("cannot remove a sink", metadata: ["expirable": "\(sink.name)", "path": "\(sink.file.sink.path)", "error": "\(error)"])
        }
    }
}
