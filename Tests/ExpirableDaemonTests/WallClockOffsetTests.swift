import ExpirableTestSupport
import Foundation
import Testing

/// `expirabled --wall-clock-offset MS`: how a process test gives one node a wall clock of its own. The daemon
/// builds one clock with the offset and gives it to everything, the plugins' `now_ms` included, in a helper
/// process as inline.
@Suite("A daemon's own wall clock (--wall-clock-offset)")
struct WallClockOffsetTests {
    static let fiveMinutes: Int64 = 5 * 60 * 1000

    @Test("a plugin's now_ms reads the node's shifted clock, in a helper as inline: its expires_at is shifted by the offset and the value keeps its whole lifetime",
          arguments: PluginModeSemanticsTests.modes, [fiveMinutes, -fiveMinutes])
    func pluginsReadTheNodesClock(isolation: String, offset: Int64) throws {
        let daemon = try DaemonProcess(
            expirables: "[expirable.token]\nplugin = \"counter\"\n[expirable.token.params]\nprefix = \"token-\"\nttl_ms = 60000\n",
            server: "isolation = \"\(isolation)\"", arguments: ["--wall-clock-offset=\(offset)"]
        )
        defer { daemon.remove() }
        let before = PluginModeSemanticsTests.nowMillis
        let fetched = try daemon.redis("FETCH", "token").split(separator: "\n").map(String.init)
        let after = PluginModeSemanticsTests.nowMillis
        #expect(fetched.first == "token-1", "\(fetched)")
        let expiresAt = try #require(fetched.count > 1 ? Int64(fetched[1]) : nil, "FETCH gives the expiry: \(fetched)")
        #expect((before + offset + 60_000...after + offset + 60_000).contains(expiresAt),
                "the plugin's now_ms + 60 s is \(expiresAt - before - 60_000) ms off the machine's clock; the node's runs \(offset) ms off")
        // The node reads the plugin's expires_at on the same clock: the value is kept for its 60 s, no more, no less.
        let pttl = try #require(Int(try daemon.redis("PTTL", "token")))
        #expect(pttl > 50_000 && pttl <= 60_000, "PTTL \(pttl)")
    }
}
