import ExpirableTOML
import Testing

@Suite("TOML numbers")
struct TOMLNumberTests {
    @Test("integers in decimal, hexadecimal, octal and binary, with underscores between digits", arguments: [
        ("+99", 99), ("42", 42), ("0", 0), ("-0", 0), ("+0", 0), ("-17", -17),
        ("1_000", 1000), ("5_349_221", 5_349_221), ("1_2_3_4_5", 12345),
        ("0xDEADBEEF", 0xDEAD_BEEF), ("0xdeadbeef", 0xDEAD_BEEF), ("0xdead_beef", 0xDEAD_BEEF), ("0x00ff", 255),
        ("0o01234567", 0o1234567), ("0o755", 0o755), ("0b11010110", 0b1101_0110), ("0b0000_0001", 1),
        ("9223372036854775807", .max), ("-9223372036854775808", .min), ("0x7FFFFFFFFFFFFFFF", .max),
        ("0o777777777777777777777", .max), ("0b" + String(repeating: "1", count: 63), .max),
    ] as [(String, Int64)])
    func integers(literal: String, expected: Int64) throws {
        #expect(try value(literal) == .integer(expected))
    }

    @Test("floats with a fraction, an exponent or both", arguments: [
        ("+1.0", 1.0), ("3.1415", 3.1415), ("-0.01", -0.01), ("5e+22", 5e22), ("1e06", 1e6), ("-2E-2", -0.02),
        ("6.626e-34", 6.626e-34), ("224_617.445_991_228", 224_617.445_991_228), ("1e1_0", 1e10), ("0e0", 0),
        ("0.0", 0), ("-0.0", -0.0), ("1.007", 1.007), ("9_224_617.445_991_228_313", 9_224_617.445_991_228_313),
        ("inf", .infinity), ("+inf", .infinity), ("-inf", -.infinity),
    ] as [(String, Double)])
    func floats(literal: String, expected: Double) throws {
        #expect(try value(literal) == .float(expected))
    }

    @Test("nan in all three spellings is a float NaN", arguments: ["nan", "+nan", "-nan"])
    func notANumber(literal: String) throws {
        #expect(try value(literal)?.float?.isNaN == true)
    }

    @Test("an integer is not a float and a float is not an integer")
    func noConversion() throws {
        #expect(try value("1")?.float == nil)
        #expect(try value("1.0")?.integer == nil)
    }

    @Test("malformed or out-of-range numbers are refused with the reason", arguments: [
        ("1.", "expected a digit after the decimal point"),
        (".5", "a float needs a digit before its decimal point"),
        ("-.5", "a float needs a digit before its decimal point"),
        ("1e", "expected a digit in the exponent"),
        ("1e+", "expected a digit in the exponent"),
        ("1.e5", "expected a digit after the decimal point, found 'e'"),
        ("1e5.5", "unexpected '.'"),
        ("1.2.3", "unexpected '.'"),
        ("01.5", "leading zeros are not allowed"),
        ("01", "leading zeros are not allowed"),
        ("-01", "leading zeros are not allowed"),
        ("0_1", "leading zeros are not allowed"),
        ("1__000", "'_' must sit between two digits"),
        ("1_", "'_' must sit between two digits"),
        ("1_.5", "'_' must sit between two digits"),
        ("1._5", "expected a digit after the decimal point, found '_'"),
        ("_1", "a string must be in quotes"),
        ("0x", "expected a hexadecimal digit after '0x'"),
        ("0x_1", "expected a hexadecimal digit after '0x', found '_'"),
        ("0xfg", "'g' is not a hexadecimal digit"),
        ("0o8", "expected an octal digit after '0o', found '8'"),
        ("0b102", "'2' is not a binary digit"),
        ("-0x1", "a hexadecimal integer cannot have a sign"),
        ("+0b1", "a binary integer cannot have a sign"),
        ("0X1", "unexpected 'X'"),
        ("+-1", "expected a digit after the sign, found '-'"),
        ("9223372036854775808", "does not fit in a 64-bit signed integer"),
        ("-9223372036854775809", "does not fit in a 64-bit signed integer"),
        ("0x8000000000000000", "does not fit in a 64-bit signed integer"),
        ("Inf", "a string must be in quotes"),
        ("NaN", "a string must be in quotes"),
        ("infinity", "a string must be in quotes"),
    ])
    func refused(literal: String, fragment: String) throws {
        // After a line that reads as TOML, so that the characters found are quoted (tokenFileNotQuoted).
        let error = try #require(syntaxError("w = 1\nv = \(literal)"))
        #expect(error.line == 2)
        #expect(error.message.contains(fragment), "\(error)")
    }

    @Test("a misplaced underscore is reported at the underscore, not at the start of the number")
    func underscorePosition() throws {
        let error = try #require(syntaxError("w = 1\nv = 12__3"))
        #expect(error.line == 2 && error.column == 7)
        #expect(error.message == "invalid number '12__3': '_' must sit between two digits")
        // On the first line, before any line read as TOML, the word is not quoted: the file may be a token.
        let first = try #require(syntaxError("v = 12__3"))
        #expect(first.column == 7)
        #expect(first.message.hasPrefix("invalid number of 5 characters: '_' must sit between two digits; its text is not shown"), "\(first)")
    }
}
