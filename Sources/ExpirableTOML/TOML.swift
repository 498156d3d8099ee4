/// The entry point: TOML 1.0.0 without Foundation, so that the daemon does not load Foundation and the C++
/// runtime only to read its configuration.
public enum TOML {
    /// Larger documents are refused: a configuration file is a few kilobytes, and the limit keeps a mistaken path
    /// (a log, a disk image) from being read into memory whole before failing.
    public static let maximumBytes = 1 << 20

    /// Parses a whole document into its root table. Input larger than 1 MiB, or with tables and arrays nested more
    /// than 64 levels deep, is refused with a `TOMLSyntaxError` rather than risking the stack on hostile input.
    public static func parse(_ text: String) throws(TOMLSyntaxError) -> TOMLTable {
        let size = text.utf8.count
        guard size <= maximumBytes else {
            throw TOMLSyntaxError(line: 1, column: 1, message: "the document is \(size) bytes; at most \(maximumBytes) (1 MiB) are accepted")
        }
        var parser = TOMLParser(Array(text.utf8))
        return try parser.parseDocument()
    }
}
