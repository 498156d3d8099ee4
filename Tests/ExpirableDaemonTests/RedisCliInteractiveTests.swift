import ExpirableTestSupport
import Foundation
import Testing

/// `redis-cli` as a person uses it: interactive, in a real terminal (tmux), where it asks the server for
/// `COMMAND DOCS` at start and shows argument hints and `help` from the answer.
@Suite("redis-cli interactive (tmux)")
struct RedisCliInteractiveTests {
    /// A tmux server of its own, on a socket in a temporary directory, killed and removed at the end; the
    /// screen is read with capture-pane.
    final class Terminal {
        let directory: TemporaryDirectory
        var server: String { directory.appending("tmux.sock") }

        init(_ command: String) throws {
            directory = try TemporaryDirectory("tmux")
            do {
                try tmux(["new-session", "-d", "-s", "main", "-x", "160", "-y", "50", command])
            } catch {
                directory.remove()
                throw error
            }
        }

        deinit {
            _ = try? tmux(["kill-server"])
            directory.remove()
        }

        func type(_ keys: String, enter: Bool = true) throws {
            try tmux(["send-keys", "-t", "main", "-l", keys])
            if enter { try tmux(["send-keys", "-t", "main", "Enter"]) }
        }

        var screen: String { (try? runTool("tmux", ["-S", server, "capture-pane", "-t", "main", "-p"]).stdout) ?? "" }

        /// Waits (at most 5 s) until the screen shows `text`.
        func shows(_ text: String) -> Bool {
            for _ in 0..<100 {
                if screen.contains(text) { return true }
                usleep(50_000)
            }
            return false
        }

        @discardableResult
        private func tmux(_ arguments: [String]) throws -> ToolResult {
            try runTool("tmux", ["-S", server] + arguments, seconds: 10)
        }
    }

    @Test("redis-cli -2 and -3, interactive: values, TTL in seconds, help and argument hints from COMMAND DOCS", arguments: ["-2", "-3"])
    func interactive(protocolFlag: String) throws {
        let daemon = try ServingTests.start(ServingTests.counter())
        defer { daemon.remove() }
        let terminal = try Terminal("redis-cli \(protocolFlag) -s \(daemon.socket)")
        #expect(terminal.shows("\(daemon.socket)>"))
        try terminal.type("GET token")
        #expect(terminal.shows("\"token-1\""), "screen:\n\(terminal.screen)")
        try terminal.type("TTL token")
        #expect(terminal.shows("(integer) 60") || terminal.shows("(integer) 59"), "screen:\n\(terminal.screen)")
        try terminal.type("help GET")
        #expect(terminal.shows("summary: The value of an expirable"), "screen:\n\(terminal.screen)")
        try terminal.type("MGET ", enter: false)
        #expect(terminal.shows("MGET name [name ...]"), "the hint for MGET's arguments; screen:\n\(terminal.screen)")
        try terminal.type("token nope")
        #expect(terminal.shows("2) (nil)"), "MGET gives nil for a name not configured; screen:\n\(terminal.screen)")
        try terminal.type("FETCH ", enter: false)
        #expect(terminal.shows("FETCH name [MINTTL ms]"), "the hint for FETCH's arguments; screen:\n\(terminal.screen)")
        try terminal.type("token")
        #expect(terminal.shows("3) \"fresh\""), "screen:\n\(terminal.screen)")
        try terminal.type("help RELOAD")
        #expect(terminal.shows("summary: Re-reads the configuration file"), "screen:\n\(terminal.screen)")
    }
}
