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
    /// A key or a message longer than its limit is cut there, saying how much was left out: input quoted back
    /// at the user (a key of a megabyte) must not make a megabyte of error.
    public var description: String {
        var text = file
        if let line { text += ":\(line)" }
        text += ": "
        if let key { text += "\(ConfigurationError.cut(key, at: ConfigurationError.shownLength)): " }
        return ConfigurationError.escapingControls(text + ConfigurationError.cut(message, at: 16 * ConfigurationError.shownLength))
    }

    /// How much of a key or a quoted value an error shows.
    public static let shownLength = 256

    private static func cut(_ text: String, at limit: Int) -> String {
        let scalars = text.unicodeScalars
        guard scalars.count > limit else { return text }
        return String(String.UnicodeScalarView(scalars.prefix(limit))) + "… (\(scalars.count - limit) more characters)"
    }

    /// `text` in double quotes, its quotes, backslashes and control characters escaped as in TOML; past
    /// `shownLength` characters it is cut, saying how many more there were.
    public static func quoted(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars.prefix(shownLength) {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            default: out += escaped(scalar)
            }
        }
        let count = text.unicodeScalars.count
        return out + (count > shownLength ? "…\" (\(count) characters)" : "\"")
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
