import CExpirableLinux
import ExpirableTOML
#if canImport(Glibc)
import Glibc
#endif

extension Configuration {
    /// `[[sink]]`: a file the daemon keeps holding one value, for programs that read a file (SPEC §7). Written
    /// atomically at start and on every new value, removed on a clear and at shutdown; only on a tmpfs or ramfs.
    public struct Sink: Sendable, Hashable {
        /// The expirable whose value the file holds (`NAME`, or `NAME:KEY` for one key of a keyed family).
        public let expirable: String
        /// The file's absolute path.
        public let path: String
        /// The owner and group given to the file, resolved when the configuration was read; nil: the daemon's.
        public let uid: UInt32?
        public let gid: UInt32?
        /// The file's permission bits.
        public let mode: UInt32
        /// The line of its `[[sink]]` table, for messages.
        public let line: Int?

        public static let defaultMode: UInt32 = 0o600

        /// The same sink with no line, to compare what two configurations say.
        public var withoutLine: Sink { Sink(expirable: expirable, path: path, uid: uid, gid: gid, mode: mode, line: nil) }

        public init(expirable: String, path: String, uid: UInt32?, gid: UInt32?, mode: UInt32, line: Int?) {
            self.expirable = expirable
            self.path = path
            self.uid = uid
            self.gid = gid
            self.mode = mode
            self.line = line
        }

        /// Why the file system holding `directory` cannot take a value (nil when it is a tmpfs or a ramfs, whose
        /// pages never reach a disk), checked at load and again on the open temporary file before every write.
        public static func memoryOnlyProblem(statfsType type: Int) -> String? {
            // TMPFS_MAGIC and RAMFS_MAGIC from <linux/magic.h>.
            if type == 0x0102_1994 || type == 0x8584_58f6 { return nil }
            return "is not on a tmpfs or ramfs (file system type 0x\(String(type, radix: 16))), and values never touch a disk"
        }
    }
}

extension ConfigurationDecoder {
    /// The `[[sink]]` array: each table's keys checked, its owner and group looked up, its directory required to
    /// exist on a tmpfs (values never touch a disk), and no two sinks on one path.
    func decodeSinks(_ value: TOMLValue, expirables: [Configuration.Expirable]) throws(ConfigurationError) -> [Configuration.Sink] {
        guard let elements = value.array else {
            throw error(["sink"], "expected an array of tables, written [[sink]] (one per file), got \(show(value))")
        }
        var sinks: [Configuration.Sink] = []
        for (index, element) in elements.enumerated() {
            guard let t = element.table else {
                throw error(["sink"], "expected an array of tables, written [[sink]] (one per file), got an array holding \(show(element))")
            }
            let sink = try decodeSink(t, number: index + 1, expirables: expirables)
            if let other = sinks.first(where: { $0.path == sink.path }) {
                throw sinkError(t, "path", number: index + 1, "is also the path of the sink on line \(other.line.map(String.init) ?? "?"); give each sink a file of its own")
            }
            sinks.append(sink)
        }
        return sinks
    }

    private func decodeSink(_ t: TOMLTable, number: Int, expirables: [Configuration.Expirable]) throws(ConfigurationError) -> Configuration.Sink {
        let known: Set<String> = ["expirable", "path", "owner", "group", "mode"]
        for key in t.keys.sorted() where !known.contains(key) {
            throw sinkError(t, key, number: number, "unknown key in [[sink]]; expected one of: \(known.sorted().joined(separator: ", "))")
        }
        func text(_ key: String) throws(ConfigurationError) -> String? {
            guard let v = t[key] else { return nil }
            if (key == "owner" || key == "group"), let id = v.integer, id >= 0, id < Int64(UInt32.max) { return String(id) }
            guard let s = v.string else { throw sinkError(t, key, number: number, "expected a string, got \(show(v))") }
            return s
        }
        guard let name = try text("expirable") else {
            throw sinkError(t, "expirable", number: number, "is missing; expected the name of the expirable whose value the file holds")
        }
        let family = name.split(separator: ":", maxSplits: 1).first.map(String.init) ?? name
        guard let expirable = expirables.first(where: { $0.name == family }) else {
            throw sinkError(t, "expirable", number: number, "names \(ConfigurationError.quoted(name)), which is not configured; expected one of: \(expirables.map(\.name).joined(separator: ", "))")
        }
        if (expirable.keyed != nil) != (family != name) {
            throw sinkError(t, "expirable", number: number, expirable.keyed != nil
                ? "\(family) is a keyed family; name one of its values, as \"\(family):KEY\""
                : "\(family) is not a keyed family; name it without a key")
        }
        guard let written = try text("path"), !written.isEmpty, !written.contains("\0"), !written.hasSuffix("/") else {
            throw sinkError(t, "path", number: number, "is missing or not a file path; expected a file on a tmpfs, such as \"/run/app/token\"")
        }
        let path = ConfigurationDecoder.normalized(written.hasPrefix("/") ? written : baseDirectory + "/" + written)
        let parent = String(path[..<path.lastIndex(of: "/")!])
        let directory = parent.isEmpty ? "/" : parent
        var info = stat()
        guard stat(directory, &info) == 0, info.st_mode & S_IFMT == S_IFDIR else {
            throw sinkError(t, "path", number: number, "\(directory) is not a directory; create it on a tmpfs (/run, /dev/shm) first")
        }
        let type = CExpirableLinux_filesystem_type(directory)
        guard type != -1 else {
            throw sinkError(t, "path", number: number, "cannot check the file system of \(directory): \(String(cString: strerror(errno)))")
        }
        if let problem = Configuration.Sink.memoryOnlyProblem(statfsType: Int(type)) {
            throw sinkError(t, "path", number: number, "\(directory) \(problem); use a directory under /run or /dev/shm")
        }
        if stat(path, &info) == 0, info.st_mode & S_IFMT == S_IFDIR {
            throw sinkError(t, "path", number: number, "\(path) is a directory; name the file to write")
        }
        var uid: UInt32?
        if let owner = try text("owner") {
            guard let entry = UInt32(owner).map({ getpwuid($0) }) ?? getpwnam(owner) else {
                throw sinkError(t, "owner", number: number, "no user \(ConfigurationError.quoted(owner)) on this machine; name an existing user or a numeric uid")
            }
            uid = entry.pointee.pw_uid
        }
        // Who owns the directory and every one above it counts as much as its mode: the owner of a directory may
        // swap what is in it, whatever the sticky bit. Checked as the daemon will walk it before every write.
        do throws(Configuration.Sink.UnsafeDirectory) {
            close(try Configuration.Sink(expirable: name, path: path, uid: uid, gid: nil, mode: 0, line: nil).openDirectory())
        } catch {
            throw sinkError(t, "path", number: number, error.description)
        }
        var gid: UInt32?
        if let group = try text("group") {
            guard let entry = UInt32(group).map({ getgrgid($0) }) ?? getgrnam(group) else {
                throw sinkError(t, "group", number: number, "no group \(ConfigurationError.quoted(group)) on this machine; name an existing group or a numeric gid")
            }
            gid = entry.pointee.gr_gid
        }
        var mode = Configuration.Sink.defaultMode
        if let v = t["mode"] {
            let modeText = v.string ?? v.integer.flatMap { $0 >= 0 ? String($0, radix: 8) : nil }
            guard let modeText, v.integer != nil || (3...4).contains(modeText.utf8.count),
                  modeText.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "7") }),
                  let parsed = UInt32(modeText, radix: 8), parsed <= 0o777 else {
                throw sinkError(t, "mode", number: number, "expected an octal file mode string such as \"0640\", got \(show(v))")
            }
            guard parsed & 0o022 == 0 else {
                throw sinkError(t, "mode", number: number, "\(modeText) lets others than the owner write the file, and put a value of their own in it; drop the group and others' write bits, as in \"0640\"")
            }
            mode = parsed
        }
        return .init(expirable: name, path: path, uid: uid, gid: gid, mode: mode, line: sinkLine(t))
    }

    private func sinkLine(_ t: TOMLTable, _ key: String? = nil) -> Int? {
        key.flatMap { t.line(of: $0) } ?? t.keys.compactMap { t.line(of: $0) }.min() ?? root.line(of: "sink")
    }

    private func sinkError(_ t: TOMLTable, _ key: String, number: Int, _ message: String) -> ConfigurationError {
        ConfigurationError(file: file, line: sinkLine(t, key), key: "sink[\(number)].\(key)", message: message)
    }
}
