import ExpirableCore
import ExpirableTOML
#if canImport(Glibc)
import Glibc
#endif

extension Configuration {
    /// Reads and validates the file at `path`.
    public static func load(path: String) throws(ConfigurationError) -> Configuration {
        let bytes: [UInt8]
        do {
            bytes = try readFile(path)
        } catch {
            throw ConfigurationError(
                file: path, line: nil, key: nil,
                message: "cannot read the configuration (\(error.reason)); check the path given to --config"
            )
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw ConfigurationError(
                file: path, line: nil, key: nil,
                message: "cannot read the configuration (not UTF-8 text); check the path given to --config"
            )
        }
        return try parse(text, file: path)
    }

    /// Validates `text` as if read from `file` (relative paths resolve against `file`'s directory).
    public static func parse(_ text: String, file: String) throws(ConfigurationError) -> Configuration {
        let root: TOMLTable
        do {
            root = try TOML.parse(text)
        } catch {
            throw ConfigurationError(
                file: file, line: error.line, key: nil,
                message: "TOML syntax error at column \(error.column): \(error.message)"
            )
        }
        var decoder = ConfigurationDecoder(file: file, root: root)
        return try decoder.decode(root)
    }

    private struct ReadError: Error {
        let reason: String
    }

    private static func readFile(_ path: String) throws(ReadError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ReadError(reason: errorText(errno)) }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw ReadError(reason: errorText(errno))
            }
            if n == 0 { return bytes }
            bytes.append(contentsOf: chunk[..<n])
            // Stop reading at the parser's limit: a mistaken path (a log, /dev/zero) is not read whole.
            guard bytes.count <= TOML.maximumBytes else { throw ReadError(reason: "larger than 1 MiB") }
        }
    }

    private static func errorText(_ code: Int32) -> String {
        switch code {
        case ENOENT: "no such file"
        case EACCES: "permission denied"
        case EISDIR: "it is a directory"
        default: String(cString: strerror(code))
        }
    }
}
