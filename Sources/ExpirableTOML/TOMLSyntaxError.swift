/// Why a document is not valid TOML, and where: the position is where the parser noticed the problem, so a
/// configuration error can point the user at the exact character to fix.
public struct TOMLSyntaxError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The 1-based line of the problem.
    public let line: Int
    /// The 1-based column of the problem, counted in Unicode scalars rather than bytes, so that accented letters
    /// earlier on the line do not push it past the character an editor shows.
    public let column: Int
    /// What was found and what was expected instead, without the position.
    public let message: String

    /// Public so that callers' tests can state the exact error they expect and compare it with `==`.
    public init(line: Int, column: Int, message: String) {
        self.line = line
        self.column = column
        self.message = message
    }

    /// The position and the message in one line, as a log or a terminal wants it.
    public var description: String { "line \(line), column \(column): \(message)" }
}
