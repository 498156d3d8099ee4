/// Offset date-times, local date-times, local dates and local times. They are validated field by field, including
/// the length of each month, and then kept as written: see `TOMLValue.dateTime`.
extension TOMLParser {
    /// Whether a word starts like a date (`1979-`) or a time (`07:`), the only values that start with digits and
    /// are not numbers.
    static func looksLikeDateTime(_ word: ArraySlice<UInt8>) -> Bool {
        let bytes = Array(word.prefix(5))
        guard bytes.count >= 3, isDigit(bytes[0]), isDigit(bytes[1]) else { return false }
        if bytes[2] == UInt8(ascii: ":") { return true }
        return bytes.count == 5 && isDigit(bytes[2]) && isDigit(bytes[3]) && bytes[4] == UInt8(ascii: "-")
    }

    /// Whether a word is exactly a full date `YYYY-MM-DD`, which a space and a time may follow.
    static func isDate(_ word: ArraySlice<UInt8>) -> Bool {
        word.count == 10 && word.enumerated().allSatisfy { offset, byte in
            offset == 4 || offset == 7 ? byte == UInt8(ascii: "-") : isDigit(byte)
        }
    }

    /// Checks a word that looks like a date-time and returns it as its value.
    func validateDateTime(_ word: ArraySlice<UInt8>, text: String, at start: TOMLMark) throws(TOMLSyntaxError) -> String {
        let end = word.endIndex
        var index = word.startIndex
        func fail(_ reason: String, at position: Int) -> TOMLSyntaxError {
            // As for numbers: a word on the first line of a file that may not be TOML is described, not quoted.
            guard quotesWords else {
                return scanner.error("invalid date-time of \(text.unicodeScalars.count) characters: \(reason)" + TOMLParser.unquotedNote,
                                     at: start.advanced(by: position - word.startIndex))
            }
            return scanner.error("invalid date-time '\(text)': \(reason)", at: start.advanced(by: position - word.startIndex))
        }
        func found() -> String {
            index < end ? scanner.found(at: start.index + (index - word.startIndex)) : "the end of the value"
        }
        func field(_ name: String, digits: Int, in range: ClosedRange<Int>) throws(TOMLSyntaxError) -> Int {
            let fieldStart = index
            var value = 0
            for _ in 0..<digits {
                guard index < end, TOMLParser.isDigit(word[index]) else {
                    throw fail("expected \(digits) digits for the \(name), found \(found())", at: index)
                }
                value = value * 10 + Int(word[index] - UInt8(ascii: "0"))
                index += 1
            }
            guard range.contains(value) else {
                throw fail("the \(name) must be from \(range.lowerBound) to \(range.upperBound), not \(value)", at: fieldStart)
            }
            return value
        }
        func expect(_ separator: Unicode.Scalar, _ what: String) throws(TOMLSyntaxError) {
            guard index < end, word[index] == UInt8(ascii: separator) else {
                throw fail("expected \(what), found \(found())", at: index)
            }
            index += 1
        }

        let hasDate = word[word.startIndex + 2] != UInt8(ascii: ":")
        if hasDate {
            let year = try field("year", digits: 4, in: 0...9999)
            try expect("-", "'-' after the year")
            let month = try field("month", digits: 2, in: 1...12)
            try expect("-", "'-' after the month")
            _ = try field("day", digits: 2, in: 1...TOMLParser.days(inMonth: month, of: year))
            if index == end { return text }
            guard [UInt8(ascii: "T"), UInt8(ascii: "t"), UInt8(ascii: " ")].contains(word[index]) else {
                throw fail("expected 'T' or a space between the date and the time, found \(found())", at: index)
            }
            index += 1
        }
        _ = try field("hour", digits: 2, in: 0...23)
        try expect(":", "':' after the hour")
        _ = try field("minute", digits: 2, in: 0...59)
        try expect(":", "':' and the seconds (TOML 1.0 requires them)")
        _ = try field("second", digits: 2, in: 0...60)
        if index < end, word[index] == UInt8(ascii: ".") {
            index += 1
            guard index < end, TOMLParser.isDigit(word[index]) else {
                throw fail("expected a digit after the decimal point of the seconds, found \(found())", at: index)
            }
            while index < end, TOMLParser.isDigit(word[index]) {
                index += 1
            }
        }
        if hasDate, index < end {
            switch word[index] {
            case UInt8(ascii: "Z"), UInt8(ascii: "z"):
                index += 1
            case UInt8(ascii: "+"), UInt8(ascii: "-"):
                index += 1
                _ = try field("offset hour", digits: 2, in: 0...23)
                try expect(":", "':' in the offset")
                _ = try field("offset minute", digits: 2, in: 0...59)
            default:
                throw fail("expected 'Z' or an offset such as +01:00 after the time, found \(found())", at: index)
            }
        }
        guard index == end else { throw fail("unexpected \(found()) after the \(hasDate ? "date-time" : "time")", at: index) }
        return text
    }

    private static func days(inMonth month: Int, of year: Int) -> Int {
        switch month {
        case 2: year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }
}
