import ExpirableConfig
import Testing

@Suite("Duration parser")
struct DurationParserTests {
    @Test("units ms, s, m, h and bare integers of milliseconds", arguments: [
        ("250ms", 250), ("30s", 30_000), ("5m", 300_000), ("1h", 3_600_000), ("1500", 1500), ("0", 0), ("0s", 0),
    ] as [(String, Int64)])
    func parses(text: String, millis: Int64) {
        #expect(DurationParser.milliseconds(text) == millis)
    }

    @Test("anything else is refused", arguments: ["", "s", "10 s", "-5s", "1.5s", "10d", "5M", "1h30m", "ten", "99999999999999999999h", "9223372036854775807h"])
    func refuses(text: String) {
        #expect(DurationParser.milliseconds(text) == nil)
    }
}
