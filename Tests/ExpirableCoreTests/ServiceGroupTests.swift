import ExpirableCore
import Logging
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("ServiceGroup", .timeLimit(.minutes(1)))
struct ServiceGroupTests {
    @Test("shutdown goes in reverse order, each service asked only once the one after it has returned")
    func reverseOrder() async throws {
        let journal = Journal()
        let group = ServiceGroup(services: ["a", "b", "c"].map { Stopping($0, journal) }, gracefulShutdownSignals: [], logger: logger)
        async let run: Void = group.run()
        await journal.waitFor(started: 3)
        group.triggerGracefulShutdown()
        try await run
        #expect(await journal.stops() == ["c asked", "c returned", "b asked", "b returned", "a asked", "a returned"])
    }

    @Test("a service that returns shuts the others down, in reverse order")
    func oneEnds() async throws {
        let journal = Journal()
        let group = ServiceGroup(services: [Stopping("a", journal), Ending("b", journal), Stopping("c", journal)],
                                 gracefulShutdownSignals: [], logger: logger)
        try await group.run()
        #expect(await journal.stops() == ["b returned", "c asked", "c returned", "a asked", "a returned"])
    }

    @Test("a service that throws shuts the others down, and its error is the group's, not a later one's")
    func firstErrorWins() async throws {
        let journal = Journal()
        let group = ServiceGroup(services: [Stopping("a", journal), Ending("b", journal, throwing: true), Stopping("c", journal, throwing: true)],
                                 gracefulShutdownSignals: [], logger: logger)
        await #expect(throws: Failure("b")) { try await group.run() }
        #expect(await journal.stops() == ["b returned", "c asked", "c returned", "a asked", "a returned"])
    }

    @Test("an error thrown while shutting down is the group's, and the services before it still shut down")
    func errorDuringShutdown() async throws {
        let journal = Journal()
        let group = ServiceGroup(services: [Stopping("a", journal), Stopping("b", journal, throwing: true)], gracefulShutdownSignals: [], logger: logger)
        group.triggerGracefulShutdown()
        await #expect(throws: Failure("b")) { try await group.run() }
        #expect(await journal.stops() == ["b asked", "b returned", "a asked", "a returned"])
    }

    @Test("a handler registered after shutdown was requested runs at once, before the operation; one registered before runs once")
    func handlerAfterRequest() async throws {
        let journal = Journal()
        let group = ServiceGroup(services: [Handlers(journal)], gracefulShutdownSignals: [], logger: logger)
        async let run: Void = group.run()
        await journal.waitFor(started: 1)
        group.triggerGracefulShutdown()
        group.triggerGracefulShutdown()
        try await run
        #expect(await journal.lines == ["handlers started", "early handler ran 1 time(s)", "late handler ran 1 time(s) before the operation"])
    }

    @Test("gracefulShutdown() throws CancellationError when its task is cancelled")
    func cancelled() async {
        let task = Task { try await gracefulShutdown() }
        task.cancel()
        await #expect(throws: CancellationError.self) { try await task.value }
    }

    @Test("outside a group, withGracefulShutdownHandler only runs the operation")
    func outsideGroup() async {
        #expect(await withGracefulShutdownHandler { 42 } onGracefulShutdown: { Issue.record("handler ran") } == 42)
    }

    @Test("a trapped signal shuts the group down and does not end the process")
    func signal() async throws {
        let journal = Journal()
        let group = ServiceGroup(services: [Stopping("a", journal)], gracefulShutdownSignals: [SIGUSR2], logger: logger)
        async let run: Void = group.run()
        await journal.waitFor(started: 1)
        kill(getpid(), SIGUSR2)
        try await run
        #expect(await journal.stops() == ["a asked", "a returned"])
    }
}

private let logger = Logger(label: "test")

private struct Failure: Error, Equatable {
    let name: String
    init(_ name: String) { self.name = name }
}

/// What the services did, in order; a test awaits their start instead of sleeping.
private actor Journal {
    private(set) var lines: [String] = []
    private var waiters: [(count: Int, continuation: CheckedContinuation<Void, Never>)] = []

    func record(_ line: String) {
        lines.append(line)
        let started = self.started
        waiters.removeAll { waiter in
            guard started >= waiter.count else { return false }
            waiter.continuation.resume()
            return true
        }
    }

    func waitFor(started count: Int) async {
        guard started < count else { return }
        await withCheckedContinuation { waiters.append((count, $0)) }
    }

    func stops() -> [String] { lines.filter { !$0.hasSuffix("started") } }

    private var started: Int { lines.count { $0.hasSuffix("started") } }
}

/// Waits to be asked to shut down, then takes a moment to stop: long enough for a group that did not wait for it
/// to ask the next service first.
private struct Stopping: Service {
    let name: String
    let journal: Journal
    let throwing: Bool

    init(_ name: String, _ journal: Journal, throwing: Bool = false) {
        (self.name, self.journal, self.throwing) = (name, journal, throwing)
    }

    func run() async throws {
        await journal.record("\(name) started")
        try await gracefulShutdown()
        await journal.record("\(name) asked")
        try await Task.sleep(for: .milliseconds(20))
        await journal.record("\(name) returned")
        if throwing { throw Failure(name) }
    }
}

/// Returns (or throws) once it has started, unasked.
private struct Ending: Service {
    let name: String
    let journal: Journal
    let throwing: Bool

    init(_ name: String, _ journal: Journal, throwing: Bool = false) {
        (self.name, self.journal, self.throwing) = (name, journal, throwing)
    }

    func run() async throws {
        await journal.record("\(name) started")
        await journal.record("\(name) returned")
        if throwing { throw Failure(name) }
    }
}

/// Registers a handler before shutdown is requested and another after.
private struct Handlers: Service {
    let journal: Journal

    init(_ journal: Journal) { self.journal = journal }

    func run() async throws {
        let early = Counter()
        let stopped = AsyncStream<Void>.makeStream()
        await withGracefulShutdownHandler {
            await journal.record("handlers started")
            for await _ in stopped.stream {}
            await journal.record("early handler ran \(early.value) time(s)")
        } onGracefulShutdown: {
            early.increment()
            stopped.continuation.finish()
        }
        let late = Counter()
        await withGracefulShutdownHandler {
            await journal.record("late handler ran \(late.value) time(s) before the operation")
        } onGracefulShutdown: {
            late.increment()
        }
    }
}

private final class Counter: Sendable {
    private let count = Atomic(0)
    var value: Int { count.load(ordering: .relaxed) }
    func increment() { count.add(1, ordering: .relaxed) }
}
