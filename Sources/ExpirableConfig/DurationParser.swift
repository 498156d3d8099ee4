/// The one parser for durations in Expirable: configuration values, plugin params (through the plugin ABI's
/// `parse_duration_ms`) and CLI flags all go through it.
///
/// A duration is a non-negative integer followed by a unit, `ms`, `s`, `m` or `h` (`"250ms"`, `"30s"`,
/// `"5m"`, `"1h"`), or a bare non-negative integer of milliseconds (`"1500"`: plugin params arrive as text, a TOML
/// integer among them). The configuration's own keys refuse a bare number written as a string (`timeout = "10"`)
/// and take a TOML integer for milliseconds (`ConfigurationDecoder`).
public enum DurationParser {
    /// What a duration looks like, for error messages.
    public static let expected = "a duration such as \"250ms\", \"30s\", \"5m\", \"1h\" or an integer of milliseconds"

    /// The duration `text` denotes in milliseconds, or nil if it is not a duration (or overflows).
    public static func milliseconds(_ text: some StringProtocol) -> Int64? {
        uncapped(text).flatMap { $0 <= maxMilliseconds ? $0 : nil }
    }

    /// Whether `text` is written as a duration but longer than the longest (`maxMilliseconds`).
    public static func isTooLong(_ text: some StringProtocol) -> Bool {
        uncapped(text).map { $0 > maxMilliseconds } ?? false
    }

    private static func uncapped(_ text: some StringProtocol) -> Int64? {
        let utf8 = Array(text.utf8)
        var digitsEnd = 0
        while digitsEnd < utf8.count, utf8[digitsEnd] >= UInt8(ascii: "0"), utf8[digitsEnd] <= UInt8(ascii: "9") {
            digitsEnd += 1
        }
        guard digitsEnd > 0 else { return nil }
        // Past 18 significant digits the number does not fit: it is a duration, and longer than any (`.max`), so
        // that "9999999999999999999h" is "too long" as one digit fewer is, not "not a duration".
        let significant = utf8[0..<digitsEnd].drop { $0 == UInt8(ascii: "0") }
        var number: Int64 = 0
        if significant.count <= 18 {
            for digit in significant { number = number * 10 + Int64(digit - UInt8(ascii: "0")) }
        }
        let scale: Int64
        switch String(decoding: utf8[digitsEnd...], as: UTF8.self) {
        case "", "ms": scale = 1
        case "s": scale = 1000
        case "m": scale = 60_000
        case "h": scale = 3_600_000
        default: return nil
        }
        if significant.count > 18 { return .max }
        let (result, overflow) = number.multipliedReportingOverflow(by: scale)
        return overflow ? .max : result
    }

    /// The longest duration: what a clock of signed 64-bit nanoseconds can count (2562047h, about 292 years).
    /// Anything longer would be cut to it unseen, so it is no duration.
    public static let maxMilliseconds = Int64.max / 1_000_000

    /// What the longest duration is, for error messages.
    public static let longest = "at most 2562047h, about 292 years"

    /// The duration `text` denotes, or nil if it is not a duration.
    public static func duration(_ text: some StringProtocol) -> Duration? {
        milliseconds(text).map { .milliseconds($0) }
    }
}
