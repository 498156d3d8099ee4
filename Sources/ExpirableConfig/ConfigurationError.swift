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

    public var description: String {
        var text = file
        if let line { text += ":\(line)" }
        text += ": "
        if let key { text += "\(key): " }
        return text + message
    }
}
