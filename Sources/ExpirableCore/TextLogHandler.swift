import Logging
#if canImport(Glibc)
import Glibc
#endif

/// Writes each log record to stderr as one line of text, the daemon's default format:
/// `2026-12-01T17:45:00+0000 warning expirable.server: expirable=token uid=1001 [ExpirableServer] refused read`
/// (local time, level, label, metadata sorted by key, source module, message), as swift-log's
/// `StreamLogHandler` writes it, with one difference: control characters are escaped wherever they appear, so a
/// record is always one line. Names and other values from clients reach the log, and a newline in one would
/// otherwise start a line of the client's making. The daemon and its plugin helpers use it alike.
public struct TextLogHandler: LogHandler {
    /// The logger's label, written after the level.
    public let label: String
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?

    /// A handler for the logger `label` that writes records of `level` and above.
    public init(label: String, level: Logger.Level) {
        self.label = label
        logLevel = level
        metadataProvider = LoggingSystem.metadataProvider
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { $1 } }
        if let explicit = event.metadata { merged.merge(explicit) { $1 } }
        if let error = event.error {
            merged["error.message"] = "\(error)"
            merged["error.type"] = "\(String(reflecting: type(of: error)))"
        }
        var line = TextLogHandler.line(time: TextLogHandler.now(), level: event.level, label: label, source: event.source,
                                       message: "\(event.message)", metadata: merged)
        StandardError.write(&line)
    }

    /// One record as a line, newline included. Metadata keys are sorted, so equal records print alike.
    public static func line(time: String, level: Logger.Level, label: String, source: String, message: String,
                            metadata: Logger.Metadata) -> String {
        var line = "\(time) \(level.rawValue)"
        if !label.isEmpty {
            line += " "
            appendEscaped(label, to: &line)
        }
        line += ":"
        for key in metadata.keys.sorted() {
            line += " "
            appendEscaped(key, to: &line)
            line += "="
            appendEscaped("\(metadata[key]!)", to: &line)
        }
        line += " ["
        appendEscaped(source, to: &line)
        line += "] "
        appendEscaped(message, to: &line)
        line += "\n"
        return line
    }

    /// `text` with every control character escaped, so that it cannot end the line or drive a terminal: `\n`,
    /// `\r`, `\t`, other C0 controls and DEL as `\xNN`, C1 controls and invisible formatting characters (direction
    /// overrides, zero-width marks, the line and paragraph separators: `isControlOrInvisible`) as `\uNNNN`, and the
    /// backslash itself as `\\`, so an escape in the log always stands for the character.
    /// Everything else, whatever the script, is written as it is.
    static func appendEscaped(_ text: String, to line: inout String) {
        guard text.unicodeScalars.contains(where: needsEscape) else {
            line += text
            return
        }
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\\": line += "\\\\"
            case "\n": line += "\\n"
            case "\r": line += "\\r"
            case "\t": line += "\\t"
            case _ where scalar.value < 0x20 || scalar.value == 0x7F:
                line += "\\x" + hex(scalar.value, digits: 2)
            case _ where needsEscape(scalar):
                line += "\\u" + hex(scalar.value, digits: 4)
            default:
                line.unicodeScalars.append(scalar)
            }
        }
    }

    /// `text` escaped as `appendEscaped` escapes it: for names a client sent, quoted in an error it is answered.
    public static func escaped(_ text: String) -> String {
        var out = ""
        appendEscaped(text, to: &out)
        return out
    }

    private static func needsEscape(_ scalar: Unicode.Scalar) -> Bool {
        scalar == "\\" || scalar.isControlOrInvisible
    }

    private static func hex(_ value: UInt32, digits: Int) -> String {
        let text = String(value, radix: 16)
        return String(repeating: "0", count: max(0, digits - text.count)) + text
    }

    /// The current local time as `2026-12-01T17:45:00+0000`, as `StreamLogHandler` writes it.
    public static func now() -> String {
        var seconds = time(nil)
        var parts = tm()
        guard localtime_r(&seconds, &parts) != nil else { return "<unknown>" }
        var buffer = [CChar](repeating: 0, count: 64)
        let count = strftime(&buffer, buffer.count, "%Y-%m-%dT%H:%M:%S%z", &parts)
        return String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
