/// A configuration the daemon refuses. The description names the file, the line when it is known, the key,
/// and what was expected: `/etc/expirable.toml:12: expirable.github.timeout: expected a duration ..., got "ten"`.
public struct ConfigurationError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The configuration file.
    public let file: String
    /// The 1-based line, when the parser or the source scan knows it.
    public let line: Int?
    /// The dotted key the problem is about, if any (`expirable.github.timeout`).
    public let key: String?
    /// What is wrong and what to do.
    public let message: String

    public init(file: String, line: Int?, key: String?, message: String) {
        self.file = file
        self.line = line
        self.key = key
        self.message = message
    }

    /// Control characters anywhere (in a value quoted in the message, a quoted key, the file's own name) are
    /// shown escaped, so a message is one line and cannot move a terminal's cursor.
    public var description: String {
        var text = file
        if let line { text += ":\(line)" }
        text += ": "
        if let key { text += "\(key): " }
        return ConfigurationError.escapingControls(text + message)
    }

    /// `text` in double quotes, its quotes, backslashes and control characters escaped as in TOML.
    public static func quoted(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            default: out += escaped(scalar)
            }
        }
        return out + "\""
    }

    /// `text` with control characters (C0, DEL, C1) written as escapes: `\n`, `\t`, `\u001B`.
    public static func escapingControls(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: isControl) else { return text }
        return text.unicodeScalars.map(escaped).joined()
    }

    private static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        scalar.value < 0x20 || (0x7f...0x9f).contains(scalar.value)
    }

    private static func escaped(_ scalar: Unicode.Scalar) -> String {
        switch scalar {
        case "\n": return "\\n"
        case "\t": return "\\t"
        case "\r": return "\\r"
        case _ where isControl(scalar):
            let hex = String(scalar.value, radix: 16, uppercase: true)
            return "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
        default: return String(scalar)
        }
    }
}
