import ExpirableCore
import Foundation
import TOMLKit

extension Configuration {
    /// Reads and validates the file at `path`.
    public static func load(path: String) throws(ConfigurationError) -> Configuration {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ConfigurationError(
                file: path, line: nil, key: nil,
                message: "cannot read the configuration (\(Configuration.reason(error))); check the path given to --config"
            )
        }
        return try parse(text, file: path)
    }

    /// Validates `text` as if read from `file` (relative paths resolve against `file`'s directory).
    public static func parse(_ text: String, file: String) throws(ConfigurationError) -> Configuration {
        let root: TOMLTable
        do {
            root = try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            throw ConfigurationError(
                file: file, line: error.source.begin.line, key: nil,
                message: "TOML syntax error at column \(error.source.begin.column): \(error.description)"
            )
        } catch {
            throw ConfigurationError(file: file, line: nil, key: nil, message: "TOML syntax error: \(error)")
        }
        var decoder = ConfigurationDecoder(file: file, lines: SourceLines(text))
        return try decoder.decode(root)
    }

    private static func reason(_ error: any Error) -> String {
        let ns = error as NSError
        if let posix = ns.userInfo[NSUnderlyingErrorKey] as? NSError, posix.domain == NSPOSIXErrorDomain {
            return String(cString: strerror(Int32(posix.code)))
        }
        if ns.domain == NSCocoaErrorDomain, ns.code == NSFileReadNoSuchFileError { return "no such file" }
        if ns.domain == NSCocoaErrorDomain, ns.code == NSFileReadNoPermissionError { return "permission denied" }
        if ns.domain == NSCocoaErrorDomain, ns.code == NSFileReadInapplicableStringEncodingError { return "not UTF-8 text" }
        return ns.localizedDescription
    }
}
