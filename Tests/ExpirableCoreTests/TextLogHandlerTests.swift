import ExpirableCore
import Foundation
import Logging
import Testing

@Suite("Text log lines")
struct TextLogHandlerTests {
    @Test("a line is StreamLogHandler's: time, level, label, sorted metadata, [source], message")
    func format() {
        let line = TextLogHandler.line(time: "2026-12-01T17:45:00+0000", level: .warning, label: "expirable.server", source: "ExpirableServer",
                                       message: "refused read", metadata: ["uid": "1001", "expirable": "token", "attempt": .stringConvertible(3)])
        #expect(line == "2026-12-01T17:45:00+0000 warning expirable.server: attempt=3 expirable=token uid=1001 [ExpirableServer] refused read\n")
        #expect(TextLogHandler.line(time: "T", level: .info, label: "", source: "S", message: "m", metadata: [:]) == "T info: [S] m\n")
    }

    @Test("control characters in metadata and message are escaped, so a record is one line; other text is kept")
    func escaping() {
        let forged = "x\n2026-12-02T05:04:37+0000 critical expirable.server: FORGED\r\t\u{0}\u{1B}[2J\u{7F}\u{85}\u{2028}\\n é 名"
        let line = TextLogHandler.line(time: "T", level: .warning, label: "l", source: "S", message: "about \(forged)",
                                       metadata: ["expirable": .string(forged), "k\ney": "v"])
        let escaped = #"x\n2026-12-02T05:04:37+0000 critical expirable.server: FORGED\r\t\x00\x1b[2J\x7f\u0085\u2028\\n é 名"#
        #expect(line == "T warning l: expirable=\(escaped) k\\ney=v [S] about \(escaped)\n")
        #expect(line.filter { $0 == "\n" }.count == 1)
    }

    @Test("the time is local, to the second, with the zone's offset")
    func time() {
        #expect(TextLogHandler.now().range(of: #"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}[+-]\d{4}$"#, options: .regularExpression) != nil)
    }
}
