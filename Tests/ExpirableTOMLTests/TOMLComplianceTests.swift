import ExpirableTOML
import Foundation
import Testing

/// The TOML 1.0 files of the toml-test corpus (github.com/toml-lang/toml-test, MIT licence), vendored under
/// Tests/Fixtures/toml-test with the list of the files that apply to TOML 1.0 (`files-toml-1.0.0`). Every valid
/// file must parse to the values of the tagged JSON beside it; every invalid file must be refused, files that
/// are not UTF-8 before parsing, as `Configuration.load` refuses them.
@Suite("toml-test: the TOML 1.0 compliance corpus")
struct TOMLComplianceTests {
    static let corpus = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/toml-test")

    /// The corpus's own list of TOML 1.0 files, relative to `corpus`.
    static let files: [String] = {
        let list = (try? String(contentsOf: corpus.appendingPathComponent("files-toml-1.0.0"), encoding: .utf8)) ?? ""
        return list.split(separator: "\n").map(String.init).filter { $0.hasSuffix(".toml") }
    }()

    static let valid = files.filter { $0.hasPrefix("valid/") }
    static let invalid = files.filter { $0.hasPrefix("invalid/") }

    @Test("the vendored corpus is complete: 210 valid and 499 invalid TOML 1.0 files")
    func corpusIsThere() {
        #expect(Self.valid.count == 210)
        #expect(Self.invalid.count == 499)
    }

    @Test("the comparison with tagged JSON notices a wrong value, a wrong type, a missing key and another instant")
    func comparisonIsStrict() throws {
        let table = try TOML.parse("a = 1\nb = 1979-05-27T07:32:00-07:00\n")
        let right: [String: Any] = ["a": ["type": "integer", "value": "1"], "b": ["type": "datetime", "value": "1979-05-27T14:32:00Z"]]
        #expect(TaggedJSON.differences(expected: right, actual: .table(table), at: "").isEmpty)
        for wrong: [String: Any] in [
            ["a": ["type": "integer", "value": "2"], "b": right["b"]!],
            ["a": ["type": "float", "value": "1"], "b": right["b"]!],
            ["a": right["a"]!, "b": right["b"]!, "c": ["type": "bool", "value": "true"]],
            ["a": right["a"]!, "b": ["type": "datetime", "value": "1979-05-27T07:32:00Z"]],
        ] {
            #expect(!TaggedJSON.differences(expected: wrong, actual: .table(table), at: "").isEmpty)
        }
    }

    @Test("every valid file parses to the values of its tagged JSON", arguments: valid)
    func validFile(_ path: String) throws {
        let bytes = try Data(contentsOf: Self.corpus.appendingPathComponent(path))
        let text = try #require(String(validating: Array(bytes), as: UTF8.self), "\(path) is not UTF-8")
        let table: TOMLTable
        do {
            table = try TOML.parse(text)
        } catch {
            Issue.record("\(path) refused: \(error)")
            return
        }
        let jsonPath = String(path.dropLast(".toml".count)) + ".json"
        let expected = try JSONSerialization.jsonObject(with: Data(contentsOf: Self.corpus.appendingPathComponent(jsonPath)))
        let differences = TaggedJSON.differences(expected: expected, actual: .table(table), at: "")
        #expect(differences.isEmpty, "\(path): \(differences.joined(separator: "; "))")
    }

    @Test("every invalid file is refused", arguments: invalid)
    func invalidFile(_ path: String) throws {
        let bytes = try Data(contentsOf: Self.corpus.appendingPathComponent(path))
        // Not UTF-8: refused before parsing, as the configuration loader does.
        guard let text = String(validating: Array(bytes), as: UTF8.self) else { return }
        #expect(throws: TOMLSyntaxError.self, "\(path) was accepted") { try TOML.parse(text) }
    }
}

/// Compares a parsed value with toml-test's tagged JSON: tables are objects, arrays are arrays, and every other
/// value is `{"type": …, "value": "…"}`. Floats compare as numbers (NaN equal to NaN) and date-times as the
/// instants or local times they denote, as toml-test's own runner compares them.
enum TaggedJSON {
    static func differences(expected: Any, actual: TOMLValue, at path: String) -> [String] {
        let here = path.isEmpty ? "the document" : path
        switch actual {
        case .table(let table):
            guard let object = expected as? [String: Any], !isTagged(object) else { return ["\(here): expected \(expected), got a table"] }
            var found: [String] = []
            let missing = Set(object.keys).subtracting(table.keys)
            let extra = Set(table.keys).subtracting(object.keys)
            if !missing.isEmpty { found.append("\(here): missing keys \(missing.sorted())") }
            if !extra.isEmpty { found.append("\(here): extra keys \(extra.sorted())") }
            for key in table.keys where object[key] != nil {
                found += differences(expected: object[key]!, actual: table[key]!, at: path.isEmpty ? key : "\(path).\(key)")
            }
            return found
        case .array(let elements):
            guard let array = expected as? [Any] else { return ["\(here): expected \(expected), got an array"] }
            guard array.count == elements.count else { return ["\(here): expected \(array.count) elements, got \(elements.count)"] }
            return zip(array, elements).enumerated().flatMap { index, pair in differences(expected: pair.0, actual: pair.1, at: "\(here)[\(index)]") }
        default:
            guard let object = expected as? [String: Any], isTagged(object),
                  let type = object["type"] as? String, let value = object["value"] as? String
            else { return ["\(here): expected \(expected), got \(actual)"] }
            return scalarMatches(type: type, value: value, actual) ? [] : ["\(here): expected \(type) \(value.debugDescription), got \(actual)"]
        }
    }

    static func isTagged(_ object: [String: Any]) -> Bool {
        object.count == 2 && object["type"] is String && object["value"] is String
    }

    static func scalarMatches(type: String, value: String, _ actual: TOMLValue) -> Bool {
        switch (type, actual) {
        case ("string", .string(let string)): return string == value
        case ("integer", .integer(let integer)): return Int64(value) == integer
        case ("bool", .boolean(let boolean)): return value == String(boolean)
        case ("float", .float(let float)):
            let expected = value.lowercased()
            if expected.hasSuffix("nan") { return float.isNaN }
            return Double(expected) == float
        case ("datetime", .dateTime(let text)), ("datetime-local", .dateTime(let text)),
             ("date-local", .dateTime(let text)), ("time-local", .dateTime(let text)):
            guard let have = DateTimeText(text), let want = DateTimeText(value) else { return false }
            return have.kind == type && have == want
        default:
            return false
        }
    }
}

/// A TOML date-time reduced to what it denotes: an offset date-time to its instant (seconds since the epoch and
/// the fraction), a local one to its fields; the separator's spelling (`T`, `t` or a space) and trailing zeros
/// of the fraction do not count.
struct DateTimeText: Equatable {
    let kind: String
    let canonical: String

    init?(_ source: String) {
        let text = source.replacingOccurrences(of: " ", with: "T").replacingOccurrences(of: "t", with: "T").replacingOccurrences(of: "z", with: "Z")
        let parts = text.split(separator: "T", omittingEmptySubsequences: false)
        if parts.count == 1 {
            if text.count == 10 {
                kind = "date-local"
                canonical = text
            } else {
                guard let time = DateTimeText.time(text) else { return nil }
                kind = "time-local"
                canonical = time.text
            }
            return
        }
        guard parts.count == 2 else { return nil }
        let date = String(parts[0])
        var clock = String(parts[1])
        var offsetMinutes: Int?
        if clock.hasSuffix("Z") {
            clock.removeLast()
            offsetMinutes = 0
        } else if let sign = clock.lastIndex(where: { $0 == "+" || $0 == "-" }) {
            let offset = clock[clock.index(after: sign)...].split(separator: ":").compactMap { Int($0) }
            guard offset.count == 2 else { return nil }
            offsetMinutes = (offset[0] * 60 + offset[1]) * (clock[sign] == "-" ? -1 : 1)
            clock = String(clock[..<sign])
        }
        guard let time = DateTimeText.time(clock) else { return nil }
        guard let offsetMinutes else {
            kind = "datetime-local"
            canonical = "\(date)T\(time.text)"
            return
        }
        let fields = date.split(separator: "-").compactMap { Int($0) }
        guard fields.count == 3 else { return nil }
        let seconds = DateTimeText.daysFromCivil(fields[0], fields[1], fields[2]) * 86_400 + time.seconds - offsetMinutes * 60
        kind = "datetime"
        canonical = "\(seconds)\(time.fraction)"
    }

    /// `HH:MM:SS[.fraction]` as seconds into the day, the fraction (at most nanoseconds, trailing zeros dropped)
    /// and the normalized text.
    static func time(_ text: String) -> (seconds: Int, fraction: String, text: String)? {
        let pieces = text.split(separator: ".", maxSplits: 1)
        let hms = pieces[0].split(separator: ":").compactMap { Int($0) }
        guard hms.count == 3 else { return nil }
        var fraction = pieces.count == 2 ? String(pieces[1].prefix(9)) : ""
        while fraction.hasSuffix("0") { fraction.removeLast() }
        if !fraction.isEmpty { fraction = "." + fraction }
        return (hms[0] * 3600 + hms[1] * 60 + hms[2], fraction, String(pieces[0]) + fraction)
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
    static func daysFromCivil(_ year: Int, _ month: Int, _ day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }
}
