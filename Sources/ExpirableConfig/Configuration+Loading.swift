import ExpirableCore
import ExpirableTOML
#if canImport(Glibc)
import Glibc
#endif

extension Configuration {
    /// Reads and validates the file at `path`.
    public static func load(path: String) throws(ConfigurationError) -> Configuration {
        let bytes: [UInt8]
        let status: stat
        do {
            (bytes, status) = try readFile(path)
        } catch {
            throw ConfigurationError(
                file: path, line: nil, key: nil,
                message: "cannot read the configuration (\(error.reason)); check the path"
            )
        }
        if let problem = writableByOthers(path, status) {
            throw ConfigurationError(file: path, line: nil, key: nil, message: problem)
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            let (line, column, byte) = firstInvalidUTF8(bytes)
            throw ConfigurationError(
                file: path, line: line, key: nil,
                message: "not UTF-8 text: the byte 0x\(String(byte, radix: 16, uppercase: true)) at column \(column) is not valid UTF-8; save the file as UTF-8"
            )
        }
        return try parse(text, file: path)
    }

    /// Where the first byte that is not part of a valid UTF-8 sequence is in `bytes` (which has one): its line,
    /// its column counted in characters (Unicode scalars), and the byte.
    private static func firstInvalidUTF8(_ bytes: [UInt8]) -> (line: Int, column: Int, byte: UInt8) {
        var parser = Unicode.UTF8.ForwardParser()
        var iterator = bytes.makeIterator()
        var (offset, line, column) = (0, 1, 1)
        while true {
            switch parser.parseScalar(from: &iterator) {
            case .valid(let scalar):
                if scalar.count == 1 && scalar.first == UInt8(ascii: "\n") {
                    (line, column) = (line + 1, 1)
                } else {
                    column += 1
                }
                offset += scalar.count
            case .error:
                return (line, column, bytes[offset])
            case .emptyInput:
                return (line, column, 0)
            }
        }
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

    /// Why the file read from `path` (its `fstat`) may not configure this daemon, or nil. The configuration chooses
    /// the code the daemon runs (the `command` plugin's argv, which plugin of plugin_dir gets which params), so,
    /// like plugin_dir and its plugins (SPEC §5), it must be a file no other user could change: owned by root or
    /// the daemon's user, and not writable by its group or others. Otherwise a local user could write it and have
    /// the next reload run their command as the daemon's user.
    private static func writableByOthers(_ path: String, _ st: stat) -> String? {
        let why = "whoever can change it chooses the commands and plugins the daemon runs"
        let mode = "0" + String(st.st_mode & 0o777, radix: 8)
        let euid = geteuid()
        if st.st_uid != 0 && st.st_uid != euid {
            return "the configuration is owned by uid \(st.st_uid), not by root or the daemon's user (uid \(euid)); \(why); chown root \(path)"
        }
        if st.st_mode & S_IWOTH != 0 {
            return "the configuration is writable by others (mode \(mode)); \(why); chmod go-w \(path)"
        }
        if st.st_mode & S_IWGRP != 0 {
            return "the configuration is writable by its group (mode \(mode)); \(why); chmod go-w \(path)"
        }
        return nil
    }

    /// The refusal of a `[metrics]` or `[cluster]` listen address that is an IP address this machine does not
    /// have (EADDRNOTAVAIL on a trial bind to port 0), or nil. Run by check-config and at start, before anything
    /// binds, so that the two agree: the decoder only resolves names, and the daemon found such an address only
    /// when it bound the port, after check-config had passed the file.
    public func unassignedListenAddress() -> ConfigurationError? {
        let listens = [(["metrics", "listen"], metrics?.listen), (["cluster", "listen"], cluster?.listen)]
        for case let (path, endpoint?) in listens {
            guard let reason = Configuration.unassigned(endpoint.host) else { continue }
            return refusal(path, "\(path.joined(separator: ".")): cannot listen on \(endpoint): \(reason); this machine has no such address: use one of its own, such as \"127.0.0.1:\(endpoint.port)\", or \"0.0.0.0:\(endpoint.port)\" for all of them")
        }
        return nil
    }

    /// Why `host`, an IP address, cannot be bound on this machine (EADDRNOTAVAIL), or nil (a name, or an address
    /// it has).
    private static func unassigned(_ host: String) -> String? {
        var address4 = sockaddr_in()
        var address6 = sockaddr_in6()
        let family: Int32
        if inet_pton(AF_INET, host, &address4.sin_addr) == 1 {
            family = AF_INET
            address4.sin_family = sa_family_t(AF_INET)
        } else if inet_pton(AF_INET6, host, &address6.sin6_addr) == 1 {
            family = AF_INET6
            address6.sin6_family = sa_family_t(AF_INET6)
        } else {
            return nil
        }
        let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        let bound = family == AF_INET
            ? withUnsafePointer(to: &address4) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            : withUnsafePointer(to: &address6) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) } }
        guard bound != 0, errno == EADDRNOTAVAIL else { return nil }
        return String(cString: strerror(EADDRNOTAVAIL))
    }

    private struct ReadError: Error {
        let reason: String
    }

    /// The file's bytes, and its status as opened (the file read, not what the path names a moment later).
    private static func readFile(_ path: String) throws(ReadError) -> ([UInt8], stat) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ReadError(reason: errorText(errno)) }
        defer { close(fd) }
        var status = stat()
        guard fstat(fd, &status) == 0 else { throw ReadError(reason: errorText(errno)) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw ReadError(reason: errorText(errno))
            }
            if n == 0 { return (bytes, status) }
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
