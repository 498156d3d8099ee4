import ExpirableTestSupport
import Foundation
import Synchronization
import Testing

/// Reload (SPEC §10): SIGHUP and RELOAD read the configuration again, all or nothing, keeping what did not change.
@Suite("Configuration reload")
struct ReloadTests {
    static func counter(_ name: String, prefix: String? = nil, count: String? = nil) -> String {
        "[expirable.\(name)]\nplugin = \"counter\"\n[expirable.\(name).params]\nprefix = \"\(prefix ?? name + "-")\"\ncount_file = \"COUNT/\(count ?? name)\"\n"
    }

    /// Rewrites the daemon's configuration: its [server] part as written at start, then `expirables`.
    static func rewrite(_ daemon: DaemonProcess, server: String = "", _ expirables: String) throws {
        let text = try String(contentsOfFile: daemon.configPath, encoding: .utf8)
        let head = text.components(separatedBy: "\n[expirable.").first ?? text
        try (head.replacingOccurrences(of: "[server]\n", with: "[server]\n" + server) + "\n" + expirables.replacingOccurrences(of: "COUNT", with: daemon.directory.path))
            .write(toFile: daemon.configPath, atomically: true, encoding: .utf8)
    }

    @Test("SIGHUP applies added, changed and removed expirables; an unchanged one keeps its value, its helper and makes no call")
    func hangup() throws {
        let daemon = try ServingTests.start(Self.counter("kept") + Self.counter("changed") + Self.counter("removed"))
        defer { daemon.remove() }
        #expect(try daemon.redis("GET", "kept") == "kept-1")
        #expect(try daemon.redis("GET", "changed") == "changed-1")
        let keptHelper = try #require(IsolationTests.helper(of: daemon, for: "kept"))
        let socketBefore = try FileManager.default.attributesOfItem(atPath: daemon.socket)[.systemFileNumber] as? Int
        try Self.rewrite(daemon, Self.counter("kept") + Self.counter("changed", prefix: "new-", count: "changed2") + Self.counter("added"))
        kill(try #require(daemon.process?.pid), SIGHUP)
        #expect(IsolationTests.eventually { daemon.log.contains("configuration reloaded") }, "\(daemon.log.suffix(800))")
        #expect(daemon.answers(), "SIGHUP did not stop the daemon")
        #expect(try FileManager.default.attributesOfItem(atPath: daemon.socket)[.systemFileNumber] as? Int == socketBefore, "the socket stayed")
        #expect(try daemon.redis("GET", "kept") == "kept-1", "kept its value")
        #expect(daemon.count("kept") == 1, "no call for the unchanged expirable")
        #expect(IsolationTests.helper(of: daemon, for: "kept") == keptHelper, "and its helper")
        #expect(try daemon.redis("GET", "changed") == "new-1", "changed: a new instance with the new params")
        #expect(try daemon.redis("GET", "added") == "added-1")
        #expect(try daemon.redis("GET", "removed").hasPrefix("NOTFOUND"))
        #expect(try daemon.redis("LIST") == "added\nchanged\nkept")
    }

    @Test("RELOAD answers what it applied; a bad file or a refusing plugin changes nothing and says why")
    func allOrNothing() throws {
        let daemon = try ServingTests.start(Self.counter("a"))
        defer { daemon.remove() }
        #expect(try daemon.redis("GET", "a") == "a-1")
        try Self.rewrite(daemon, Self.counter("a") + Self.counter("b"))
        let applied = try daemon.ctl("reload")
        #expect(applied.status == 0, "\(applied.stderr)")
        #expect(applied.stdout.contains("added: b; changed: none; removed: none; unchanged: a"), "\(applied.stdout)")

        // A typo: refused whole, with the file and line.
        try Self.rewrite(daemon, Self.counter("a") + "[expirable.c]\nplugin = \"counter\"\ncolour = \"blue\"\n")
        let typo = try daemon.redis("RELOAD")
        #expect(typo.hasPrefix("ERR reload refused, nothing changed: \(daemon.configPath):"), "\(typo)")
        #expect(typo.contains("expirable.c.colour: unknown key"))
        // A plugin that refuses its params: the same, and the expirable added beside it is not there either.
        try Self.rewrite(daemon, Self.counter("a") + Self.counter("d") + "[expirable.broken]\nplugin = \"command\"\n")
        let refused = try daemon.redis("RELOAD")
        #expect(refused.hasPrefix("ERR reload refused, nothing changed: expirable.broken:"), "\(refused)")
        #expect(try daemon.redis("GET", "d").hasPrefix("NOTFOUND"))
        #expect(try daemon.redis("GET", "b") == "b-1")
        #expect(try daemon.redis("GET", "a") == "a-1")
        #expect(daemon.count("a") == 1)
        let ctl = try daemon.ctl("reload")
        #expect(ctl.status == 65 && ctl.stderr.contains("reload refused"), "\(ctl.stdout) \(ctl.stderr)")
    }

    @Test("a change only a restart applies refuses the reload, naming it")
    func needsRestart() throws {
        let daemon = try ServingTests.start(Self.counter("a"))
        defer { daemon.remove() }
        try Self.rewrite(daemon, server: "socket_mode = \"0600\"\n", Self.counter("a") + Self.counter("b"))
        let answer = try daemon.redis("RELOAD")
        #expect(answer.hasPrefix("ERR reload refused, nothing changed: server.socket_mode changed, and only a restart applies it"), "\(answer)")
        #expect(try daemon.redis("GET", "b").hasPrefix("NOTFOUND"))
    }

    @Test("a client reading during repeated reloads gets every answer from memory, without an error or a call")
    func readsDuringReloads() throws {
        let daemon = try ServingTests.start(Self.counter("steady"))
        defer { daemon.remove() }
        #expect(try daemon.redis("GET", "steady") == "steady-1")
        let stop = Atomic<Bool>(false)
        let failures = Mutex<[String]>([])
        let reader = DispatchGroup()
        DispatchQueue.global().async(group: reader) {
            let connection = try? RawConnection(daemon.socket)
            for _ in 0..<20_000 where !stop.load(ordering: .relaxed) {
                let reply = connection?.roundTrip("*2\r\n$3\r\nGET\r\n$6\r\nsteady\r\n", expecting: 1) ?? "no connection"
                if reply != "$8\r\nsteady-1\r\n" { failures.withLock { $0.append(reply) } }
            }
        }
        for round in 0..<10 {
            try Self.rewrite(daemon, Self.counter("steady") + (round % 2 == 0 ? Self.counter("extra\(round)") : ""))
            #expect(try daemon.redis("RELOAD").hasPrefix("reloaded"))
        }
        stop.store(true, ordering: .relaxed)
        reader.wait()
        #expect(failures.withLock { $0.isEmpty }, "\(failures.withLock { $0.prefix(3) })")
        #expect(daemon.count("steady") == 1)
    }
}
