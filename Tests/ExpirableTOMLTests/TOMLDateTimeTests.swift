import ExpirableTOML
import Testing

@Suite("TOML date-times")
struct TOMLDateTimeTests {
    @Test("offset and local date-times, dates and times are validated and kept as written", arguments: [
        "1979-05-27T07:32:00Z", "1979-05-27T00:32:00-07:00", "1979-05-27T00:32:00.999999-07:00", "1979-05-27 07:32:00Z",
        "1979-05-27t07:32:00z", "1979-05-27T07:32:00", "1979-05-27T00:32:00.999999", "1979-05-27", "07:32:00",
        "00:32:00.999999", "00:00:00.123456789012", "2000-02-29", "2024-02-29", "1990-12-31T23:59:60Z", "0000-01-01",
        "9999-12-31T23:59:59+23:59", "2024-04-30", "1987-07-05 17:45:00",
    ])
    func valid(literal: String) throws {
        #expect(try value(literal) == .dateTime(literal))
    }

    @Test("a date followed by a space and a comment is a date, not the start of a date-time")
    func dateThenComment() throws {
        #expect(try value("1979-05-27 # a birthday") == .dateTime("1979-05-27"))
        #expect(try value("[1979-05-27 07:32:00Z, 07:32:00, 1979-05-27]")
            == .array([.dateTime("1979-05-27 07:32:00Z"), .dateTime("07:32:00"), .dateTime("1979-05-27")]))
    }

    @Test("impossible dates and times are refused with the field at fault", arguments: [
        ("1979-13-01", "the month must be from 1 to 12, not 13"),
        ("1979-00-01", "the month must be from 1 to 12, not 0"),
        ("1979-04-31", "the day must be from 1 to 30, not 31"),
        ("2023-02-29", "the day must be from 1 to 28, not 29"),
        ("1900-02-29", "the day must be from 1 to 28, not 29"),
        ("2000-02-30", "the day must be from 1 to 29, not 30"),
        ("1979-05-00", "the day must be from 1 to 31, not 0"),
        ("1979-05-27T24:00:00", "the hour must be from 0 to 23, not 24"),
        ("1979-05-27T07:60:00", "the minute must be from 0 to 59, not 60"),
        ("07:32:61", "the second must be from 0 to 60, not 61"),
        ("07:32", "expected ':' and the seconds (TOML 1.0 requires them)"),
        ("1979-05-27T07:32Z", "expected ':' and the seconds"),
        ("1979-05-27T07:32:00+25:00", "the offset hour must be from 0 to 23, not 25"),
        ("1979-05-27T07:32:00+07", "expected ':' in the offset"),
        ("1979-05-27T07:32:00+0700", "expected ':' in the offset, found '0'"),
        ("07:32:00Z", "unexpected 'Z' after the time"),
        ("1979-5-27", "expected 2 digits for the month, found '-'"),
        ("1979-05-27T7:32:00", "expected 2 digits for the hour"),
        ("1979-05-27T07:32:00.", "expected a digit after the decimal point of the seconds"),
        ("1979-05-27X07:32:00", "expected 'T' or a space between the date and the time, found 'X'"),
        ("1979-05-27T", "expected 2 digits for the hour, found the end of the value"),
    ])
    func refused(literal: String, fragment: String) throws {
        // After a line that reads as TOML, so that the characters found are quoted (tokenFileNotQuoted).
        let error = try #require(syntaxError("w = 1\nv = \(literal)"))
        #expect(error.line == 2)
        #expect(error.message.contains(fragment), "\(error)")
    }

    @Test("an out-of-range field is reported at that field")
    func fieldPosition() throws {
        let error = try #require(syntaxError("when = 2023-02-29"))
        #expect(error.column == 16)
    }
}
