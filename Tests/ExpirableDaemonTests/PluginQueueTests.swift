import ExpirableTestSupport
import Foundation
import Testing

/// One plugin instance serves every key of a keyed family, and the ABI promises it one call at a time: calls for
/// different keys wait in the daemon, each timed from its start, in both isolation modes.
@Suite("Calls of one plugin instance queue in the daemon")
struct PluginQueueTests {
    static let modes = ["process", "inline"]

    /// A daemon with the keyed family `fam` on the keylog fixture (each call `sleepMillis`, logging to DIR/calls.log).
    static func start(_ isolation: String, sleepMillis: Int, timeout: String) throws -> DaemonProcess {
        try ServingTests.start("""
            [expirable.fam]
            plugin = "keylog"
            keyed = true
            timeout = "\(timeout)"
            [expirable.fam.params]
            log = "COUNT/calls.log"
            sleep_ms = "\(sleepMillis)"
            """, server: "isolation = \"\(isolation)\"", testPlugins: ["keylog"])
    }

    /// `GET fam:KEY` for every key at once, each on its own connection (all sent before any answer is read); the
    /// answers by key, as `PluginModeSemanticsTests.get` gives them.
    static func getAtOnce(_ daemon: DaemonProcess, _ keys: [String]) throws -> [String: String] {
        let connections = try keys.map { _ in try RawConnection(daemon.socket) }
        for (key, connection) in zip(keys, connections) {
            let name = "fam:\(key)"
            connection.send("*2\r\n$3\r\nGET\r\n$\(name.utf8.count)\r\n\(name)\r\n")
        }
        var answers: [String: String] = [:]
        for (key, connection) in zip(keys, connections) {
            let reply = connection.receive(replies: 1)
            let lines = reply.components(separatedBy: "\r\n")
            answers[key] = reply.hasPrefix("$") && lines.count > 1 ? lines[1] : String(lines[0].dropFirst())
        }
        return answers
    }

    /// The keylog fixture's log: each call's key with its start and end (ns) and pid, in start order; calls
    /// with a start and no end have `end` nil.
    static func calls(_ daemon: DaemonProcess) -> [(key: String, start: Int64, end: Int64?, pid: String)] {
        let text = (try? String(contentsOfFile: daemon.directory.appending("calls.log"), encoding: .utf8)) ?? ""
        var calls: [(key: String, start: Int64, end: Int64?, pid: String)] = []
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ").map(String.init)
            guard fields.count == 4, let at = Int64(fields[2]) else { continue }
            if fields[0] == "start" {
                calls.append((fields[1], at, nil, fields[3]))
            } else if let index = calls.lastIndex(where: { $0.key == fields[1] && $0.end == nil }) {
                calls[index].end = at
            }
        }
        return calls.sorted { $0.start < $1.start }
    }

    /// Whether every call ended before the next one started.
    static func oneAtATime(_ calls: [(key: String, start: Int64, end: Int64?, pid: String)]) -> Bool {
        zip(calls, calls.dropFirst()).allSatisfy { earlier, later in earlier.end.map { $0 <= later.start } ?? false }
    }

    @Test("8 keys of a keyed family fetched at once all get their value: the calls run one after another, none overlaps, no helper is killed",
          arguments: modes)
    func keysQueue(isolation: String) throws {
        let daemon = try Self.start(isolation, sleepMillis: 300, timeout: "5s")
        defer { daemon.remove() }
        let keys = (1...8).map { "k\($0)" }
        let answers = try Self.getAtOnce(daemon, keys)
        for key in keys {
            #expect(answers[key]?.hasPrefix("\(key)-") == true, "\(key): \(answers[key] ?? "no answer")")
        }
        let calls = Self.calls(daemon)
        #expect(calls.map(\.key).sorted() == keys, "one call per key: \(calls)")
        #expect(Self.oneAtATime(calls), "calls overlapped: \(calls)")
        #expect(Set(calls.map(\.pid)).count == 1, "all in one process: \(calls)")
        let info = try PluginModeSemanticsTests.info(daemon, "fam")
        if isolation == "process" {
            #expect(info["helper_restarts"] == "0", "\(info)")
            #expect(info["helper_last_death"] == "", "\(info)")
        }
        #expect(!daemon.log.contains("timed out"), "\(daemon.log)")
    }

    @Test("a queue longer than the timeout allows: the late calls get a TIMEOUT saying they waited behind others, are dropped unstarted, and no running call is killed",
          arguments: modes)
    func lateCallsDropped(isolation: String) throws {
        // 8 calls of 300 ms cannot all start within 1 s: the last would start after 2.1 s at the earliest.
        let daemon = try Self.start(isolation, sleepMillis: 300, timeout: "1s")
        defer { daemon.remove() }
        let keys = (1...8).map { "k\($0)" }
        let answers = try Self.getAtOnce(daemon, keys)
        let served = keys.filter { answers[$0]?.hasPrefix("\($0)-") == true }
        let dropped = keys.filter { !served.contains($0) }
        #expect(!served.isEmpty, "\(answers)")
        #expect(!dropped.isEmpty, "\(answers)")
        let real = URL(fileURLWithPath: daemon.pluginDir + "/libkeylog.so").resolvingSymlinksInPath().path
        let pattern = "^TIMEOUT plugin \(NSRegularExpression.escapedPattern(for: real)) for fam: this call waited [0-9]+ms behind [0-9]+ other calls? of its plugin instance without starting, as long as its timeout of 1000ms, so it was dropped \\(the instance runs one call at a time, for every key of a keyed family\\); raise timeout or make the plugin answer sooner$"
        for key in dropped {
            #expect(answers[key]?.range(of: pattern, options: .regularExpression) != nil, "\(key): \(answers[key] ?? "no answer")")
        }
        // Wait until no call can still be running (none started after the timeout, each lasts 300 ms).
        usleep(600_000)
        let calls = Self.calls(daemon)
        #expect(calls.map(\.key).sorted() == served.sorted(), "the plugin saw only the calls that were answered with a value: \(calls)")
        #expect(calls.allSatisfy { $0.end != nil }, "a call was cut short: \(calls)")
        #expect(Self.oneAtATime(calls), "calls overlapped: \(calls)")
        let info = try PluginModeSemanticsTests.info(daemon, "fam")
        if isolation == "process" {
            #expect(info["helper_restarts"] == "0", "no helper was killed: \(info)")
        }
        #expect(!daemon.log.contains("did not answer within"), "\(daemon.log)")
        // The instance is free again: a new key is served.
        #expect(try daemon.redis("GET", "fam:again").hasPrefix("again-"))
    }

    @Test("a plugin whose expirable_create blocks (a FIFO nobody writes) is refused by check-config and by the daemon's start within its timeout",
          arguments: modes)
    func blockingCreate(isolation: String) throws {
        let daemon = try DaemonProcess(expirables: """
            [expirable.x]
            plugin = "keylog"
            timeout = "1s"
            [expirable.x.params]
            log = "DIR/calls.log"
            create_open = "DIR/fifo"
            """, server: "isolation = \"\(isolation)\"", testPlugins: ["keylog"], start: false)
        defer { daemon.remove() }
        #expect(mkfifo(daemon.directory.appending("fifo"), 0o600) == 0)
        let real = URL(fileURLWithPath: daemon.pluginDir + "/libkeylog.so").resolvingSymlinksInPath().path
        let refusal = "expirable.x: plugin \(real) for x did not finish loading and creating its instance (its constructors, expirable_abi and expirable_create) within 1000ms (its timeout), so its helper (pid "
        let check = try runTool(TestPaths.product("expirablectl").path, ["check-config", daemon.configPath], seconds: 15)
        #expect(check.status == 78, "status \(check.status), stderr: \(check.stderr)")
        #expect(check.stderr.contains(refusal), "stderr: \(check.stderr)")
        // Inline, the daemon runs expirable_create itself and nothing can bound it: check-config is the guard.
        guard isolation == "process" else { return }
        #expect(throws: (any Error).self) { try daemon.start() }
        #expect(daemon.process?.isRunning == false, "the daemon refused to start rather than hang: \(daemon.log)")
        #expect(daemon.log.contains(refusal), "\(daemon.log)")
    }
}
