import Logging
#if canImport(Glibc)
import Glibc
#endif

/// Writes each log record to stderr as one JSON object on one line, for log shippers that parse JSON lines
/// (`--log-format json`): `time` (ISO 8601, UTC, milliseconds), `level`, `label`, `message`, then each metadata
/// entry as a string member. The keys are stable; a metadata key that would shadow one of the four is written
/// as `metadata.KEY`. Control characters are escaped, so one record is always one line. The daemon and its
/// plugin helpers use it alike.
public struct JSONLogHandler: LogHandler {
    /// The logger's label, written as `label`.
    public let label: String
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?

    /// A handler for the logger `label` that writes records of `level` and above.
    public init(label: String, level: Logger.Level) {
        self.label = label
        logLevel = level
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { $1 } }
        if let explicit = event.metadata { merged.merge(explicit) { $1 } }
        if let error = event.error { merged["error"] = "\(error)" }
        var record = JSONLogHandler.record(time: JSONLogHandler.now(), level: event.level, label: label, message: "\(event.message)", metadata: merged)
        StandardError.write(&record)
    }

    static let reservedKeys: Set<String> = ["time", "level", "label", "message"]

    /// One record as a line of JSON, newline included. Metadata keys are sorted, so equal records print alike.
    public static func record(time: String, level: Logger.Level, label: String, message: String, metadata: Logger.Metadata) -> String {
        var line = "{\"time\":\"\(time)\",\"level\":\"\(level.rawValue)\",\"label\":"
        appendString(label, to: &line)
        line += ",\"message\":"
        appendString(message, to: &line)
        for key in metadata.keys.sorted() {
            line += ","
            appendString(reservedKeys.contains(key) ? "metadata.\(key)" : key, to: &line)
            line += ":"
            appendString("\(metadata[key]!)", to: &line)
        }
        line += "}\n"
        return line
    }

    /// `text` as a JSON string: quotes and backslashes escaped, and every control character (C0, DEL, C1) and
    /// invisible formatting character (direction overrides, zero-width marks, the line and paragraph separators:
    /// `isControlOrInvisible`) as an escape, never raw.
    static func appendString(_ text: String, to line: inout String) {
        line += "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": line += "\\\""
            case "\\": line += "\\\\"
            case "\n": line += "\\n"
            case "\r": line += "\\r"
            case "\t": line += "\\t"
            case _ where scalar.isControlOrInvisible:
                let hex = String(scalar.value, radix: 16)
                line += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default:
                line.unicodeScalars.append(scalar)
            }
        }
        line += "\""
    }

    /// The current time as `2026-12-01T17:45:00.123Z`.
    public static func now() -> String {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        var seconds = spec.tv_sec
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func pad(_ value: Int32, _ width: Int) -> String {
            let digits = String(value)
            return String(repeating: "0", count: max(0, width - digits.count)) + digits
        }
        return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))T"
            + "\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2)).\(pad(Int32(spec.tv_nsec / 1_000_000), 3))Z"
    }
}
