/// Integers in four notations and floats. The grammar is checked here before the standard library converts the
/// digits, because it accepts forms that TOML refuses (`1.`, `.5`, `0123`, `0x-1`) and knows nothing of `_`.
extension TOMLParser {
    /// Reads a number from a word already known not to be a boolean, `inf`, `nan` or a date-time.
    func parseNumber(_ word: ArraySlice<UInt8>, text: String, at start: TOMLMark) throws(TOMLSyntaxError) -> TOMLValue {
        let end = word.endIndex
        func fail(_ reason: String, at index: Int) -> TOMLSyntaxError {
            guard quotesWords else {
                return scanner.error("invalid number of \(text.unicodeScalars.count) characters: \(reason)" + TOMLParser.unquotedNote,
                                     at: start.advanced(by: index - word.startIndex))
            }
            return scanner.error("invalid number '\(text)': \(reason)", at: start.advanced(by: index - word.startIndex))
        }
        /// Skips digits of `radix` from `index`, where the caller has seen one, with `_` allowed only between two.
        func digitRun(from index: Int, radix: Int) throws(TOMLSyntaxError) -> Int {
            var index = index
            while index < end {
                if TOMLParser.digitValue(word[index], radix: radix) != nil {
                    index += 1
                } else if word[index] == UInt8(ascii: "_") {
                    guard index + 1 < end, TOMLParser.digitValue(word[index + 1], radix: radix) != nil else {
                        throw fail("'_' must sit between two digits", at: index)
                    }
                    index += 1
                } else {
                    break
                }
            }
            return index
        }
        func digitFollows(_ index: Int) -> Bool { index < end && TOMLParser.isDigit(word[index]) }
        func found(_ index: Int) -> String { scanner.found(at: start.index + (index - word.startIndex)) }
        func withoutUnderscores(_ range: Range<Int>) -> String {
            String(decoding: word[range].lazy.filter { $0 != UInt8(ascii: "_") }, as: UTF8.self)
        }

        var index = word.startIndex
        let hasSign = word[index] == UInt8(ascii: "+") || word[index] == UInt8(ascii: "-")
        if hasSign { index += 1 }
        guard digitFollows(index) else {
            if index < end, word[index] == UInt8(ascii: ".") {
                throw fail("a float needs a digit before its decimal point", at: index)
            }
            if hasSign {
                throw fail("expected a digit after the sign, found \(found(index))", at: index)
            }
            guard quotesWords else {
                throw scanner.error("expected a value, found a bare word of \(text.unicodeScalars.count) characters; a string must be in quotes" + TOMLParser.unquotedNote, at: start)
            }
            throw scanner.error("expected a value, found '\(text)'; a string must be in quotes, as in \"\(text)\"", at: start)
        }

        if word[index] == UInt8(ascii: "0"), index + 1 < end, let (radix, name) = TOMLParser.prefixedRadix(word[index + 1]) {
            guard !hasSign else { throw fail("\(TOMLParser.article(name)) \(name) integer cannot have a sign", at: word.startIndex) }
            let digitsStart = index + 2
            guard digitsStart < end, TOMLParser.digitValue(word[digitsStart], radix: radix) != nil else {
                throw fail("expected \(TOMLParser.article(name)) \(name) digit after '0\(Character(Unicode.Scalar(word[index + 1])))', found \(found(digitsStart))", at: digitsStart)
            }
            let digitsEnd = try digitRun(from: digitsStart, radix: radix)
            guard digitsEnd == end else { throw fail("\(found(digitsEnd)) is not a \(name) digit", at: digitsEnd) }
            guard let value = Int64(withoutUnderscores(digitsStart..<end), radix: radix) else {
                throw fail("it does not fit in a 64-bit signed integer (at most 0x7FFFFFFFFFFFFFFF)", at: word.startIndex)
            }
            return .integer(value)
        }

        let integerStart = index
        index = try digitRun(from: index, radix: 10)
        if word[integerStart] == UInt8(ascii: "0"), index - integerStart > 1 {
            throw fail("leading zeros are not allowed", at: integerStart)
        }
        var isFloat = false
        if index < end, word[index] == UInt8(ascii: ".") {
            index += 1
            guard digitFollows(index) else { throw fail("expected a digit after the decimal point, found \(found(index))", at: index) }
            index = try digitRun(from: index, radix: 10)
            isFloat = true
        }
        if index < end, word[index] == UInt8(ascii: "e") || word[index] == UInt8(ascii: "E") {
            index += 1
            if index < end, word[index] == UInt8(ascii: "+") || word[index] == UInt8(ascii: "-") { index += 1 }
            guard digitFollows(index) else { throw fail("expected a digit in the exponent, found \(found(index))", at: index) }
            index = try digitRun(from: index, radix: 10)
            isFloat = true
        }
        guard index == end else { throw fail("unexpected \(found(index))", at: index) }

        let digits = withoutUnderscores(word.startIndex..<end)
        if isFloat {
            guard let value = Double(digits) else { throw fail("not a float", at: word.startIndex) }
            return .float(value)
        }
        guard let value = Int64(digits) else {
            throw fail("it does not fit in a 64-bit signed integer (-9223372036854775808 to 9223372036854775807)", at: word.startIndex)
        }
        return .integer(value)
    }

    /// The value of an ASCII digit of `radix` (up to 16), or nil if `byte` is not one.
    static func digitValue(_ byte: UInt8, radix: Int) -> Int? {
        let value: Int
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): value = Int(byte - UInt8(ascii: "0"))
        case UInt8(ascii: "a")...UInt8(ascii: "f"): value = Int(byte - UInt8(ascii: "a")) + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): value = Int(byte - UInt8(ascii: "A")) + 10
        default: return nil
        }
        return value < radix ? value : nil
    }

    /// The radix named by the letter after a leading `0`; TOML allows only lower-case `x`, `o` and `b`.
    private static func prefixedRadix(_ letter: UInt8) -> (Int, String)? {
        switch letter {
        case UInt8(ascii: "x"): (16, "hexadecimal")
        case UInt8(ascii: "o"): (8, "octal")
        case UInt8(ascii: "b"): (2, "binary")
        default: nil
        }
    }
}
