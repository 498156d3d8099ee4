import ExpirableCore
import Foundation
import Logging
import Testing

@Suite("JSON log records")
struct JSONLogHandlerTests {
    @Test("a record is one line of JSON: stable keys first, metadata as sorted string members, control characters escaped")
    func record() throws {
        let line = JSONLogHandler.record(
            time: "2026-12-01T17:45:00.123Z", level: .warning, label: "expirable.engine",
            message: "fetch failed: \"bad\"\n\u{1B}[31m\u{7F}\u{85}\u{2028}\\\u{0}",
            metadata: ["expirable": "token", "time": "shadowed", "attempt": .stringConvertible(3)]
        )
        #expect(line == #"{"time":"2026-12-01T17:45:00.123Z","level":"warning","label":"expirable.engine","message":"fetch failed: \"bad\"\n\u001b[31m\u007f\u0085\u2028\\\u0000","attempt":"3","expirable":"token","metadata.time":"shadowed"}"# + "\n")
        #expect(line.filter { $0 == "\n" }.count == 1)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: String])
        #expect(object["message"] == "fetch failed: \"bad\"\n\u{1B}[31m\u{7F}\u{85}\u{2028}\\\u{0}")
    }

    @Test("the time is ISO 8601 in UTC with milliseconds")
    func time() {
        #expect(JSONLogHandler.now().range(of: #"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$"#, options: .regularExpression) != nil)
    }
}
