#if canImport(Glibc)
import Glibc
#endif

/// The socket file's life: refuse to start over a live daemon, replace a stale file, remove it at exit (only
/// if it is still the file this daemon bound).
enum SocketFile {
    /// Which file a path names: its device and inode.
    struct Identity: Equatable, Sendable {
        var device: UInt64
        var inode: UInt64
    }
    /// The longest socket path served: what the daemon's own clients connect to. A `sockaddr_un` holds 107
    /// bytes, and redis-cli could reach such a path, but expirablectl and ExpirableClient connect through NIO's
    /// `SocketAddress(unixDomainSocketPath:)`, which takes at most 103; a daemon on a longer path would serve
    /// everyone but its own tools.
    static let maxPathBytes = 103

    /// Why `path` is too long to serve.
    private static func tooLong(_ path: String) -> String {
        "server.socket \(path) is \(path.utf8.count) bytes long; its clients (expirablectl, ExpirableClient) connect to Unix socket paths of at most \(maxPathBytes) bytes; choose a shorter path"
    }

    /// Makes `path` free to bind: creates its directory if needed, removes a stale socket file left by a daemon
    /// that died, and refuses if a daemon is still answering there or the path is some other kind of file.
    /// Returns true if a stale file was replaced.
    static func claim(_ path: String) throws(ServerError) -> Bool {
        guard path.utf8.count <= maxPathBytes else { throw ServerError(tooLong(path)) }
        if let slash = path.lastIndex(of: "/"), slash != path.startIndex {
            try makeDirectories(String(path[..<slash]))
        }
        var st = stat()
        guard lstat(path, &st) == 0 else {
            if errno == ENOENT { return false }
            throw ServerError("server.socket \(path) cannot be examined: \(String(cString: strerror(errno)))")
        }
        guard (st.st_mode & S_IFMT) == S_IFSOCK else {
            throw ServerError("server.socket \(path) exists and is not a socket; remove it or choose another path")
        }
        switch probe(path) {
        case .answering:
            throw ServerError("another daemon is already serving \(path) (a connection to it succeeded); stop it first or choose another server.socket")
        case .unknown(let code):
            throw ServerError("server.socket \(path) exists and a connection to it failed with \(String(cString: strerror(code))), so a daemon may still be serving there (one this user may not connect to); stop that daemon or remove the file if none runs, or choose another server.socket")
        case .stale:
            break
        }
        guard unlink(path) == 0 || errno == ENOENT else {
            throw ServerError("stale socket file \(path) cannot be removed: \(String(cString: strerror(errno)))")
        }
        return true
    }

    /// What would stop a daemon from serving at `path` (too long, a directory it cannot create or write, another
    /// kind of file there), or nil; a daemon answering there is not counted. Creates nothing. Without
    /// `checkingAccess`, whether this user may write the directory is not judged (see `unwritableDirectory`).
    static func problem(_ path: String, checkingAccess: Bool = true) -> String? {
        guard path.utf8.count <= maxPathBytes else { return tooLong(path) }
        var st = stat()
        if lstat(path, &st) == 0, (st.st_mode & S_IFMT) != S_IFSOCK {
            return "server.socket \(path) exists and is not a socket; remove it or choose another path"
        }
        // The nearest directory that exists must be one the daemon can write: the socket, or the directories
        // missing below it, are created there.
        var directory = path
        repeat {
            guard let slash = directory.lastIndex(of: "/") else { directory = "."; break }
            directory = slash == directory.startIndex ? "/" : String(directory[..<slash])
        } while stat(directory, &st) != 0 && (errno == ENOENT || errno == ENOTDIR) && directory != "/"
        guard stat(directory, &st) == 0 else {
            return "the socket's directory \(directory) cannot be examined: \(String(cString: strerror(errno)))"
        }
        guard (st.st_mode & S_IFMT) == S_IFDIR else {
            return "the socket's directory \(directory) is not a directory; fix server.socket"
        }
        guard !checkingAccess || access(directory, W_OK | X_OK) == 0 else {
            return "the socket's directory \(directory) is not writable by this user (uid \(geteuid())); the daemon creates \(path) there: fix its owner or mode, or choose another server.socket"
        }
        return nil
    }

    /// The nearest existing directory of `path` when this user may not write it (nil when it may, or when it
    /// cannot be told). A checker run by another user than the daemon's (an admin) judges only itself with it.
    static func unwritableDirectory(_ path: String) -> String? {
        var st = stat()
        var directory = path
        repeat {
            guard let slash = directory.lastIndex(of: "/") else { directory = "."; break }
            directory = slash == directory.startIndex ? "/" : String(directory[..<slash])
        } while stat(directory, &st) != 0 && (errno == ENOENT || errno == ENOTDIR) && directory != "/"
        guard stat(directory, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else { return nil }
        return access(directory, W_OK | X_OK) == 0 ? nil : directory
    }

    /// A listening socket bound to `path`, for `ServerBootstrap.withBoundSocket`. Bound here rather than by NIO,
    /// because a server channel NIO bound to a path unlinks whatever file is at that path when it closes, even
    /// one another daemon has put there since.
    static func listen(_ path: String, backlog: Int32) throws(ServerError) -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { throw ServerError("cannot listen on \(path): socket: \(String(cString: strerror(errno)))") }
        let bound = withAddress(path) { bind(fd, $0, $1) }
        guard bound == 0, Glibc.listen(fd, backlog) == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw ServerError("cannot listen on \(path): \(reason)")
        }
        return fd
    }

    /// The identity of the socket file at `path`, read right after binding it; nil if it is not a socket.
    static func identity(_ path: String) -> Identity? {
        var st = stat()
        guard lstat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFSOCK else { return nil }
        return Identity(device: UInt64(st.st_dev), inode: UInt64(st.st_ino))
    }

    /// Removes the socket file if it is still the one this daemon bound (`identity`): another daemon may have
    /// replaced it since (someone removed this one's file and started a second on the same path), and its file
    /// must stay. Returns whether the file was removed.
    @discardableResult
    static func remove(_ path: String, ifStill identity: Identity?) -> Bool {
        guard let identity, SocketFile.identity(path) == identity else { return false }
        return unlink(path) == 0
    }

    /// What a connection to the socket file at `path` shows.
    enum Probe: Equatable {
        /// Something accepted the connection: a live daemon.
        case answering
        /// Nobody listens there (ECONNREFUSED), or the file has just gone: a file left by a daemon that died.
        case stale
        /// The connection failed otherwise (EACCES, EPERM, …): a live daemon of another user, or a socket of
        /// mode 0600, refuses this user just as a stale file would, so the file must not be taken for stale.
        case unknown(errno: Int32)
    }

    /// Tries to connect to the socket at `path`. Only ECONNREFUSED (and ENOENT) proves the file stale: taking
    /// any failure for it would unlink a live daemon's socket this user merely may not open.
    static func probe(_ path: String) -> Probe {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return .unknown(errno: errno) }
        defer { close(fd) }
        if withAddress(path) { connect(fd, $0, $1) } == 0 { return .answering }
        let code = errno
        return code == ECONNREFUSED || code == ENOENT ? .stale : .unknown(errno: code)
    }

    /// Calls `call` (`bind` or `connect`) with the address of the Unix socket at `path`, and returns its result.
    private static func withAddress(_ path: String, _ call: (UnsafePointer<sockaddr>, socklen_t) -> Int32) -> Int32 {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            let bytes = Array(path.utf8.prefix(raw.count - 1))
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { call($0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
    }

    private static func makeDirectories(_ directory: String) throws(ServerError) {
        var st = stat()
        if stat(directory, &st) == 0 { return }
        if let slash = directory.lastIndex(of: "/"), slash != directory.startIndex {
            try makeDirectories(String(directory[..<slash]))
        }
        guard mkdir(directory, 0o755) == 0 || errno == EEXIST else {
            throw ServerError("the socket's directory \(directory) cannot be created: \(String(cString: strerror(errno)))")
        }
    }
}
