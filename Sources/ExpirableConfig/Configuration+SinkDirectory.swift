import CExpirableLinux
#if canImport(Glibc)
import Glibc
#endif

extension Configuration.Sink {
    /// Why a sink's directory cannot be used, with what to do; never about a value.
    public struct UnsafeDirectory: Error, CustomStringConvertible {
        public let description: String
    }

    /// The directory that holds the file.
    public var directory: String {
        let slash = path.lastIndex(of: "/")!
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    /// The file's name in `directory`.
    public var fileName: String { String(path[path.index(after: path.lastIndex(of: "/")!)...]) }

    /// Opens `directory` (an `O_PATH` descriptor, close-on-exec, which the caller closes) so that the file is
    /// created, renamed and removed relative to it, never through a path a symbolic link could redirect. The
    /// path is walked from `/` one component at a time without following links, each directory checked as it
    /// is opened; whoever may change a component could otherwise make the daemon (often root) write the value
    /// into a directory of their choosing, or remove a file there. Refused: a component owned by anyone but
    /// root, the daemon's user or the sink's `owner` (its owner may rename it and put a directory of their own in
    /// its place, or swap the file); a directory above writable by its group or others without the sticky bit;
    /// the directory itself writable by its group or others (they could put a file of their own at the path
    /// while it is absent, before start or after a clear, or replace it). A symbolic link on the way (such as
    /// `/var/run`) is followed only when root, the daemon's user or the sink's owner owns it. Checked when the
    /// configuration is read and again before every write and removal.
    public func openDirectory() throws(UnsafeDirectory) -> Int32 {
        var trusted: Set<uid_t> = [0, geteuid()]
        if let uid { trusted.insert(uid) }
        var walk = DirectoryWalk(target: directory, trusted: trusted)
        return try walk.run(DirectoryWalk.components(directory))
    }
}

/// One walk down a sink's directory path: the descriptor of the directory reached, and its path for messages.
private struct DirectoryWalk {
    let target: String
    let trusted: Set<uid_t>
    var fd: Int32 = -1
    var at = "/"
    var links = 0

    static let maximumLinks = 40
    /// O_PATH: the walk needs search permission only, not read permission, on each directory.
    static let oPath = CExpirableLinux_o_path()

    mutating func run(_ start: [String]) throws(Configuration.Sink.UnsafeDirectory) -> Int32 {
        var remaining = start
        do throws(Configuration.Sink.UnsafeDirectory) {
            try openRoot(last: remaining.isEmpty)
            while let name = remaining.popLast() {
                let next = openat(fd, name, DirectoryWalk.oPath | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                let nextPath = name == ".." ? parent(of: at) : (at == "/" ? "/" : at + "/") + name
                guard next >= 0 else {
                    let code = errno
                    let target = try linkTarget(name, path: nextPath, openError: code)
                    links += 1
                    guard links <= DirectoryWalk.maximumLinks else {
                        throw refusal("\(self.target) goes through more than \(DirectoryWalk.maximumLinks) symbolic links; use the real directory's path")
                    }
                    remaining += DirectoryWalk.components(target)
                    if target.hasPrefix("/") {
                        close(fd)
                        try openRoot(last: remaining.isEmpty)
                    } else {
                        // A link to "." leaves this directory as the last one: checked as such.
                        try check(last: remaining.isEmpty)
                    }
                    continue
                }
                close(fd)
                fd = next
                at = nextPath
                try check(last: remaining.isEmpty)
            }
        } catch {
            if fd >= 0 { close(fd) }
            throw error
        }
        return fd
    }

    private mutating func openRoot(last: Bool) throws(Configuration.Sink.UnsafeDirectory) {
        fd = open("/", DirectoryWalk.oPath | O_DIRECTORY | O_CLOEXEC)
        at = "/"
        guard fd >= 0 else { throw refusal("cannot open /: \(String(cString: strerror(errno)))") }
        try check(last: last)
    }

    /// The target of the symbolic link `name` in the current directory, if its owner may be trusted with it.
    private func linkTarget(_ name: String, path: String, openError: Int32) throws(Configuration.Sink.UnsafeDirectory) -> String {
        var info = stat()
        guard fstatat(fd, name, &info, AT_SYMLINK_NOFOLLOW) == 0 else {
            throw refusal("\(path) cannot be opened: \(String(cString: strerror(openError))); create \(target) on a tmpfs (/run, /dev/shm) first")
        }
        guard info.st_mode & S_IFMT == S_IFLNK else {
            throw refusal("\(path) is not a directory; create \(target) on a tmpfs (/run, /dev/shm) first")
        }
        guard trusted.contains(info.st_uid) else {
            throw refusal("\(path)\(path == target ? "" : ", on the way to \(target),") is a symbolic link owned by \(Self.user(info.st_uid)), not by root, the daemon's user or the sink's owner: its owner could point it at another directory at any time, and the daemon would write and remove files there; use the real directory's path instead")
        }
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = readlinkat(fd, name, &buffer, buffer.count - 1)
        guard count > 0 else { throw refusal("cannot read the symbolic link \(path): \(String(cString: strerror(errno)))") }
        return String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Checks the directory just opened: its owner, and who may write it (anyone, for the last one; anyone but
    /// with the sticky bit, for one above it, so that nobody may rename what others put in it).
    private func check(last: Bool) throws(Configuration.Sink.UnsafeDirectory) {
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw refusal("cannot examine \(at): \(String(cString: strerror(errno)))") }
        let above = last ? "" : ", above \(target),"
        guard trusted.contains(info.st_uid) else {
            throw refusal("\(at)\(above) is owned by \(Self.user(info.st_uid)), not by root, the daemon's user or the sink's owner: they could replace the file, or the directory, with one of their own at any time; \(last ? "remove it and make it again yourself (install -d leaves the owner of a directory that exists as it is), or chown root \(at)" : "chown root \(at), or use another directory")")
        }
        let mode = String(info.st_mode & 0o7777, radix: 8)
        let who = info.st_mode & S_IWOTH != 0 ? "others" : "its group"
        if last && info.st_mode & (S_IWGRP | S_IWOTH) != 0 {
            throw refusal("\(at) is writable by \(who) (mode \(mode)): they could put a file of their own at this path while it is absent (before start, after a clear) or replace it; use a directory of its own that only its owner may write, such as one made with `install -d -m 0755 /dev/shm/app`")
        }
        if !last && info.st_mode & (S_IWGRP | S_IWOTH) != 0 && info.st_mode & S_ISVTX == 0 {
            throw refusal("\(at)\(above) is writable by \(who) without the sticky bit (mode \(mode)): they could replace \(target) and the file in it; make it writable by its owner only (chmod go-w), or the sticky bit (chmod +t)")
        }
    }

    /// The components of `path` to look up, last first (a stack), without the `.` that change nothing.
    static func components(_ path: String) -> [String] {
        path.split(separator: "/").filter { $0 != "." }.reversed().map(String.init)
    }

    private func parent(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/"), slash != path.startIndex else { return "/" }
        return String(path[..<slash])
    }

    private func refusal(_ message: String) -> Configuration.Sink.UnsafeDirectory { .init(description: message) }

    private static func user(_ uid: uid_t) -> String {
        guard let entry = getpwuid(uid) else { return "uid \(uid)" }
        return "uid \(uid) (\(String(cString: entry.pointee.pw_name)))"
    }
}
