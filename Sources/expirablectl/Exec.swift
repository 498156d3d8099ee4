import ArgumentParser
import ExpirableClient
import Foundation
#if canImport(Glibc)
import Glibc
#endif

struct Exec: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a command with values in its environment; restart or signal it when they rotate.",
        discussion: """
            Subscribes to the names (as watch does), fetches their values, and runs the command with them in its \
            environment (VAR=value, on top of expirablectl's own environment). When the daemon stores a new value \
            of one of them (a different one: a refresh that brings the same bytes changes nothing):

              --on-rotate restart (the default): SIGTERM to the command, up to --grace for it to exit, then \
            SIGKILL; then the command runs again with the new environment (once nothing of the old run is left: \
            see below).
              --on-rotate signal:HUP (or any signal: USR1, USR2, INT, TERM, ... or a number): the signal is sent \
            and the command keeps running. Its environment cannot change: a process's environment is fixed \
            when it starts, so use this for programs that re-read their credentials from elsewhere on a signal \
            (a sink file, say).

            SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 sent to expirablectl are passed to the command; \
            after SIGTERM, SIGINT or SIGQUIT it is not restarted again. The command runs in a process group of its \
            own and every signal goes to that whole group, so what it started stops with it (a Ctrl-C at a terminal \
            reaches it once, through expirablectl; it cannot read the terminal). Whenever the command exits (on a \
            restart, on a passed-on signal or on its own), whatever is left in its group gets SIGTERM (unless the \
            signal that ended it already went there), up to --grace to exit, then SIGKILL: nothing it started lives \
            on with old values. When the command exits, expirablectl exits \
            with its status (128 + the signal's number if a signal ended it); 126 or 127 if it cannot be run. If \
            the daemon goes away for longer than --timeout, the command keeps running with the values it has \
            and expirablectl subscribes again every 5 s, restarting or signalling it if a value changed meanwhile. \
            The names are also fetched again just after each value's expiry (a lazy value is not kept expired) and \
            at least every 5 s (a value stored while the daemon restarted still arrives).

              expirablectl exec --env GITHUB_TOKEN=github_token --env DB_PASSWORD=db -- ./server --port 8080
            """
    )

    @Option(name: .customLong("env"), help: ArgumentHelp("Put NAME's value in the command's environment as VAR (repeatable).", valueName: "VAR=NAME"))
    var bindings: [Binding] = []
    @Option(name: .customLong("on-rotate"), help: ArgumentHelp("What a new value does: restart, or signal:SIG (the command keeps its environment).", valueName: "restart|signal:SIG"))
    var onRotate: Rotation = .restart
    /// Written into the help by hand: ArgumentParser shows no default for an option read with `transform`.
    static let defaultGrace = CommandLineDuration(.seconds(10))
    @Option(parsing: .unconditional, help: ArgumentHelp("How long a restart waits after SIGTERM before SIGKILL, 0 to 7 days. (default: \(Exec.defaultGrace.defaultValueDescription))", valueName: "duration"),
            transform: { try CommandLineDuration.parse($0, allowing: .zero...CommandLineDuration.longest) })
    var grace: CommandLineDuration = Exec.defaultGrace
    @Argument(parsing: .postTerminator, help: ArgumentHelp("The command and its arguments, after --.", valueName: "command"))
    var command: [String] = []
    @OptionGroup var connection: Connection

    struct Binding: ExpressibleByArgument {
        let variable: String
        let name: String

        init?(argument: String) {
            guard let equals = argument.firstIndex(of: "="), equals != argument.startIndex else { return nil }
            variable = String(argument[..<equals])
            name = String(argument[argument.index(after: equals)...])
            guard !name.isEmpty, variable.allSatisfy({ $0 == "_" || $0.isASCII && ($0.isLetter || $0.isNumber) }),
                  variable.first?.isNumber == false else { return nil }
        }
    }

    enum Rotation: ExpressibleByArgument {
        case restart
        case signal(Int32)

        init?(argument: String) {
            if argument == "restart" {
                self = .restart
                return
            }
            guard argument.hasPrefix("signal:"), let number = Exec.signalNumber(String(argument.dropFirst("signal:".count))) else { return nil }
            self = .signal(number)
        }
    }

    static let signalNames: [String: Int32] = [
        "HUP": SIGHUP, "INT": SIGINT, "QUIT": SIGQUIT, "USR1": SIGUSR1, "USR2": SIGUSR2, "TERM": SIGTERM,
        "ALRM": SIGALRM, "WINCH": SIGWINCH, "CONT": SIGCONT, "KILL": SIGKILL,
    ]

    static func signalNumber(_ text: String) -> Int32? {
        if let number = Int32(text), number > 0, number < 65 { return number }
        let upper = text.uppercased()
        return signalNames[upper.hasPrefix("SIG") ? String(upper.dropFirst(3)) : upper]
    }

    func validate() throws {
        if bindings.isEmpty { throw ValidationError("give at least one --env VAR=NAME") }
        var seen = Set<String>()
        for binding in bindings where !seen.insert(binding.variable).inserted {
            throw ValidationError("--env binds \(binding.variable) more than once; give each variable one name")
        }
        if command.isEmpty { throw ValidationError("give the command to run after --, as: exec --env VAR=NAME -- CMD ARGS") }
    }

    func run() async throws {
        var code: Int32 = 0
        try await reporting {
            let client = connection.client
            let names = bindings.reduce(into: [String]()) { names, binding in if !names.contains(binding.name) { names.append(binding.name) } }
            // Subscribe before fetching, so no value stored in between is missed.
            let updates = try await client.updates(of: names)
            var values: [String: [UInt8]] = [:]
            var expiries: [String: Date] = [:]
            for name in names {
                let fetched = try await client.fetch(name)
                values[name] = fetched.bytes
                expiries[name] = fetched.expiryDate
            }
            let supervisor = Supervisor(command: command, bindings: bindings, rotation: onRotate, grace: grace.duration)
            code = await supervisor.run(values: values, expiries: expiries, updates: updates, client: client)
        }
        throw ExitCode(code)
    }
}

/// Runs the command and reacts to its exit, to new values and to signals, one event at a time.
private final class Supervisor: Sendable {
    let command: [String]
    let bindings: [Exec.Binding]
    let rotation: Exec.Rotation
    let grace: Duration
    let events: AsyncStream<Event>
    let sink: AsyncStream<Event>.Continuation

    enum Event: Sendable {
        case update(String, [UInt8])
        case signal(Int32)
        /// The child has exited (it is a zombie until `reap`, so its pid cannot be reused meanwhile).
        case exited(pid_t)
        /// The grace given to the child after `signal` is over.
        case graceOver(pid_t, signal: Int32)
        case warning(String)
    }

    static let forwarded: [Int32] = [SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2]
    static let ending: Set<Int32> = [SIGTERM, SIGINT, SIGQUIT]

    init(command: [String], bindings: [Exec.Binding], rotation: Exec.Rotation, grace: Duration) {
        self.command = command
        self.bindings = bindings
        self.rotation = rotation
        self.grace = grace
        (events, sink) = AsyncStream.makeStream(of: Event.self)
    }

    /// Runs until the command exits on its own (or after a passed-on SIGTERM); returns the status to exit with.
    func run(values: [String: [UInt8]], expiries: [String: Date], updates: ValueUpdates, client: ExpirableClient) async -> Int32 {
        var values = values
        let signals = catchSignals()
        defer { for source in signals { source.cancel() } }
        let watcher = Task { await watch(updates, client: client, names: updates.names) }
        defer { watcher.cancel() }
        let reconciler = Task { await reconcile(client: client, names: updates.names, expiries: expiries) }
        defer { reconciler.cancel() }

        var child: pid_t
        switch spawn(values) {
        case .success(let pid): child = pid
        case .failure(let failure): return report(failure)
        }
        /// Restarting: SIGTERM sent for a new value, a new child to start once this one exits.
        var restarting = false
        /// A passed-on SIGTERM, SIGINT or SIGQUIT: no restart any more; the child's exit is ours.
        var ending = false
        /// The last value of each name that could not be passed on, so it is reported once.
        var refused: [String: [UInt8]] = [:]
        for await event in events {
            switch event {
            case .update(let name, let bytes):
                guard values[name] != bytes else { continue }
                if let problem = unusable(name, bytes) {
                    // The command keeps running with the value it has; a later value may do. Said once per value:
                    // the fetches every 5 s bring the same one back.
                    if refused[name] != bytes { printError("expirablectl: exec: a new value of \(name) cannot be passed on, so \(command[0]) keeps the one it has: \(problem)") }
                    refused[name] = bytes
                    continue
                }
                refused[name] = nil
                values[name] = bytes
                guard !ending else { continue }
                switch rotation {
                case .restart:
                    guard !restarting else { continue }  // the next child starts with the newest values anyway
                    restarting = true
                    signalGroup(child, SIGTERM)
                    armGrace(child)
                case .signal(let number):
                    signalGroup(child, number)
                }
            case .signal(let number):
                signalGroup(child, number)
                if Supervisor.ending.contains(number) && !ending {
                    // A command that ignores it is killed after --grace, as on a restart: exec never hangs on it.
                    ending = true
                    armGrace(child, after: number)
                }
            case .exited(let pid):
                guard pid == child else { continue }
                let status = reap(pid)
                await stopGroup(pid, signalled: restarting || ending)
                guard restarting && !ending else { return status }
                restarting = false
                switch spawn(values) {
                case .success(let pid):
                    child = pid
                    printError("expirablectl: exec: a value rotated; restarted \(command[0]) (pid \(pid))")
                case .failure(let failure):
                    return report(failure)
                }
            case .graceOver(let pid, let signal):
                if pid == child && (restarting || ending) {
                    printError("expirablectl: exec: \(command[0]) (pid \(pid)) did not exit within \(grace) of \(Supervisor.name(of: signal)); sending SIGKILL")
                    signalGroup(pid, SIGKILL)
                }
            case .warning(let text):
                printError("expirablectl: exec: \(text)")
            }
        }
        return 0
    }

    // MARK: The child

    struct SpawnFailure: Error {
        let message: String
        let status: Int32
    }

    private func report(_ failure: SpawnFailure) -> Int32 {
        printError("expirablectl: exec: \(failure.message)")
        return failure.status
    }

    /// `bytes` and a NUL in memory from malloc, for `free`.
    private static func cString(_ bytes: [UInt8]) -> UnsafeMutablePointer<CChar> {
        let pointer = malloc(bytes.count + 1)!.assumingMemoryBound(to: CChar.self)
        bytes.withUnsafeBytes { if let base = $0.baseAddress { memcpy(pointer, base, bytes.count) } }
        pointer[bytes.count] = 0
        return pointer
    }

    /// Starts the command with `values` in its environment and a thread that waits for its exit.
    /// The longest string Linux passes to a new program (MAX_ARG_STRLEN, 32 pages): a variable with its name.
    static let longestVariable = 32 * 4096 - 1

    /// Why `bytes` cannot be `name`'s value in the command's environment, or nil.
    private func unusable(_ name: String, _ bytes: [UInt8]) -> String? {
        if bytes.contains(0) { return "the value of \(name) holds a NUL byte, which an environment variable cannot carry" }
        for binding in bindings where binding.name == name && binding.variable.utf8.count + 1 + bytes.count > Supervisor.longestVariable {
            return "the value of \(name) is \(bytes.count) bytes, over the \(Supervisor.longestVariable) bytes Linux passes in one environment variable (\(binding.variable)=…); use a sink file for it"
        }
        return nil
    }

    /// expirablectl's own environment, byte for byte: `ProcessInfo` would decode it as UTF-8 and replace what
    /// is not.
    private static func inheritedEnvironment() -> [(name: [UInt8], entry: [UInt8])] {
        var inherited: [(name: [UInt8], entry: [UInt8])] = []
        var cursor = environ
        while let entry = cursor.pointee {
            let bytes = Array(UnsafeRawBufferPointer(start: entry, count: strlen(entry)))
            let name = bytes.firstIndex(of: UInt8(ascii: "=")).map { Array(bytes[..<$0]) } ?? bytes
            inherited.append((name, bytes))
            cursor += 1
        }
        return inherited
    }

    private func spawn(_ values: [String: [UInt8]]) -> Result<pid_t, SpawnFailure> {
        var bound: [[UInt8]: [UInt8]] = [:]
        for binding in bindings {
            guard let bytes = values[binding.name] else { continue }
            if let problem = unusable(binding.name, bytes) {
                return .failure(SpawnFailure(message: problem, status: ExitStatus.refused.rawValue))
            }
            // The value's own bytes: a variable carries any byte but NUL, UTF-8 text or not.
            bound[Array(binding.variable.utf8)] = Array("\(binding.variable)=".utf8) + bytes
        }
        // The inherited variables in their order, those bound replaced; then the bound ones not inherited.
        var entries: [[UInt8]] = []
        var placed = Set<[UInt8]>()
        for (name, entry) in Supervisor.inheritedEnvironment() where !placed.contains(name) {
            placed.insert(name)
            entries.append(bound[name] ?? entry)
        }
        for binding in bindings where !placed.contains(Array(binding.variable.utf8)) {
            if let entry = bound[Array(binding.variable.utf8)] { entries.append(entry) }
            placed.insert(Array(binding.variable.utf8))
        }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // The signals caught here are ignored by the process; the command gets them back at their defaults. Its
        // own process group: a restart stops what it started too, and a terminal's Ctrl-C reaches it once.
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP))
        posix_spawnattr_setpgroup(&attributes, 0)
        var none = sigset_t()
        sigemptyset(&none)
        posix_spawnattr_setsigmask(&attributes, &none)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for number in Supervisor.forwarded { sigaddset(&defaults, number) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        var arguments: [UnsafeMutablePointer<CChar>?] = command.map { strdup($0) } + [nil]
        var variables: [UnsafeMutablePointer<CChar>?] = entries.map { Supervisor.cString($0) } + [nil]
        defer {
            for pointer in arguments { free(pointer) }
            for pointer in variables {
                if let pointer { explicit_bzero(pointer, strlen(pointer)) }
                free(pointer)
            }
        }
        // No file actions: the command gets the descriptors expirablectl was started with; its own (the daemon
        // connections, NIO's epoll descriptors) are close-on-exec (CExpirableCloseOnExec, linked in).
        var pid: pid_t = 0
        let result = posix_spawnp(&pid, command[0], nil, &attributes, &arguments, &variables)
        guard result == 0 else {
            let status: Int32 = result == ENOENT ? 127 : 126
            return .failure(SpawnFailure(message: "cannot run \(command[0]): \(String(cString: strerror(result)))", status: status))
        }
        let sink = sink
        let started = pid
        Thread.detachNewThread {
            var info = siginfo_t()
            while waitid(P_PID, id_t(started), &info, WEXITED | WNOWAIT) < 0 && errno == EINTR {}
            sink.yield(.exited(started))
        }
        return .success(started)
    }

    /// Sends `signal` to the command's process group (its pid is the group's id).
    private func signalGroup(_ pid: pid_t, _ signal: Int32) {
        if kill(-pid, signal) != 0 { kill(pid, signal) }
    }

    /// After the command, its group's leader, has exited: what it started is still in its process group, and
    /// would live on with the values it was given, through every restart and after exec itself. The group gets
    /// SIGTERM (unless the signal that ended the command already went to it), up to --grace to go, then SIGKILL.
    /// While any process is in the group its id cannot be a new process's, so signalling it by id is safe.
    private func stopGroup(_ group: pid_t, signalled: Bool) async {
        guard Supervisor.groupLives(group) else { return }
        if !signalled { kill(-group, SIGTERM) }
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: grace)
        while clock.now < deadline {
            try? await Task.sleep(for: .milliseconds(50))
            if !Supervisor.groupLives(group) { return }
        }
        printError("expirablectl: exec: what \(command[0]) started (process group \(group)) did not exit within \(grace) of \(command[0])'s end; sending SIGKILL")
        kill(-group, SIGKILL)
    }

    /// Whether a process that is not a zombie is in process group `group`. A zombie holds nothing and waits only
    /// for init (the command's orphans' new parent) to collect it, which an init that collects none never does.
    private static func groupLives(_ group: pid_t) -> Bool {
        guard kill(-group, 0) == 0 else { return false }
        guard let directory = opendir("/proc") else { return true }
        defer { closedir(directory) }
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            // /proc/PID/stat: "PID (COMMAND) STATE PPID PGRP ...", COMMAND possibly holding spaces and parentheses.
            guard let pid = pid_t(name), let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                  let end = stat.lastIndex(of: ")") else { continue }
            let fields = stat[stat.index(after: end)...].split(separator: " ")
            if fields.count > 2, fields[0] != "Z", pid_t(fields[2]) == group { return true }
        }
        return false
    }

    /// Collects the exited child; its status as a shell reports it.
    private func reap(_ pid: pid_t) -> Int32 {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let signal = status & 0x7f
        return signal == 0 ? (status >> 8) & 0xff : 128 + signal
    }

    private func armGrace(_ pid: pid_t, after signal: Int32 = SIGTERM) {
        let sink = sink
        let grace = grace
        Task {
            try? await Task.sleep(for: grace)
            sink.yield(.graceOver(pid, signal: signal))
        }
    }

    /// SIGTERM, SIGINT, SIGQUIT by name.
    static func name(of signal: Int32) -> String {
        switch signal {
        case SIGINT: "SIGINT"
        case SIGQUIT: "SIGQUIT"
        default: "SIGTERM"
        }
    }

    // MARK: Events

    private func catchSignals() -> [any DispatchSourceSignal] {
        Supervisor.forwarded.map { number in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            let sink = sink
            source.setEventHandler { sink.yield(.signal(number)) }
            source.activate()
            return source
        }
    }

    /// What updates alone would miss: a lazy value that expires is fetched again then (no one else may read it,
    /// and the command must not keep an expired value), and values stored while the update connection was
    /// being reopened (a daemon restarted within --timeout) are caught by fetching every name at least every
    /// 5 s. A fetch answered from the daemon's memory costs it a lookup; an unchanged value is not passed on.
    private func reconcile(client: ExpirableClient, names: [String], expiries: [String: Date]) async {
        var expiries = expiries
        var failing = false
        while !Task.isCancelled {
            let soonest = expiries.values.min().map { $0.timeIntervalSinceNow } ?? 5
            // Just past the expiry, so the daemon no longer answers the expired value from memory; a value
            // already past it (served stale, while its plugin fails) is asked for again a second later.
            let wait = soonest > 0 ? min(5, soonest + 0.01) : 1
            try? await Task.sleep(for: .milliseconds(Int64(wait * 1000)))
            guard !Task.isCancelled else { return }
            for name in names {
                do {
                    let fetched = try await client.fetch(name)
                    expiries[name] = fetched.expiryDate
                    sink.yield(.update(name, fetched.bytes))
                    if failing {
                        failing = false
                        sink.yield(.warning("fetching \(name) works again"))
                    }
                } catch {
                    // Retried at the next round; said once, not every 5 s.
                    expiries[name] = nil
                    if !failing {
                        failing = true
                        sink.yield(.warning("cannot fetch \(name) (\(error)); the command keeps its values, trying again every 5 s"))
                    }
                }
            }
        }
    }

    /// Passes on new values; when the subscription ends (the daemon gone past --timeout), subscribes again every
    /// 5 s and passes on the values fetched then, so a rotation missed meanwhile still reaches the command.
    private func watch(_ updates: ValueUpdates, client: ExpirableClient, names: [String]) async {
        var updates = updates
        while !Task.isCancelled {
            do {
                for try await update in updates { sink.yield(.update(update.name, update.value.bytes)) }
                return
            } catch {
                sink.yield(.warning("lost the daemon's updates (\(error)); the command keeps its values, subscribing again every 5 s"))
            }
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(5))
                do {
                    updates = try await client.updates(of: names)
                    for name in names { sink.yield(.update(name, try await client.fetch(name).bytes)) }
                    sink.yield(.warning("subscribed again"))
                    break
                } catch {
                    continue
                }
            }
        }
    }
}
