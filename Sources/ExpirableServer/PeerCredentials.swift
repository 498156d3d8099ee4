import NIOCore
#if canImport(Glibc)
import Glibc
#endif

/// Who is on the other end of a Unix-socket connection: SO_PEERCRED's pid, uid and gid, and the supplementary
/// groups and executable of that process, all read once, on accept.
struct PeerCredentials: Sendable, Hashable, CustomStringConvertible {
    var pid: Int32
    var uid: UInt32
    var gid: UInt32
    /// The peer's supplementary groups, from /proc/PID/status as it connected; empty when they could not be read
    /// or the process there is no longer the one that connected.
    var groups: [UInt32] = []
    /// The real path of the peer's executable (/proc/PID/exe) as it connected, under the same condition as
    /// `groups`; nil when it could not be read. A file deleted or replaced since it was started reads as
    /// "PATH (deleted)", which no rule names. The path is the one the peer sees: see `attestedExecutable`.
    var executable: String?
    /// The file the peer runs, by device and inode: stat of /proc/PID/exe, which leads to the file itself
    /// whatever its path. Read with `executable`.
    var executableFile: FileIdentity?
    /// Whether the daemon, looking up `executable` in its own mount namespace as the peer connected, found the
    /// very file the peer runs. A peer in another mount namespace (`unshare -m`, a container) may run some other
    /// file mounted at that path there, and /proc/PID/exe names the path only.
    var executableIsAtItsPath = false

    /// The executable as `exe:` rules see it: its path, when that path leads the daemon to the very file the
    /// peer runs; nil otherwise.
    var attestedExecutable: String? { executableIsAtItsPath ? executable : nil }

    /// `executable` for the log, saying when it is not the file the daemon finds at that path.
    var shownExecutable: String? {
        guard let executable else { return nil }
        if executableIsAtItsPath || executable.hasSuffix(" (deleted)") { return executable }
        return executable + " (not the file at that path)"
    }

    var description: String {
        var text = "pid=\(pid) uid=\(uid) gid=\(gid)"
        if !groups.isEmpty { text += " groups=\(groups.map(String.init).joined(separator: ","))" }
        if let shownExecutable { text += " exe=\(shownExecutable)" }
        return text
    }

    /// A file by device and inode, as stat tells them.
    struct FileIdentity: Sendable, Hashable {
        var device: UInt64
        var inode: UInt64

        init(_ info: stat) {
            device = UInt64(info.st_dev)
            inode = UInt64(info.st_ino)
        }
    }

    /// Whether the peer is in group `gid`, as its primary group or a supplementary one.
    func isMember(of gid: UInt32) -> Bool {
        self.gid == gid || groups.contains(gid)
    }

    /// The layout of Linux's `struct ucred`, which SO_PEERCRED fills.
    private struct Ucred {
        var pid: Int32
        var uid: UInt32
        var gid: UInt32
    }

    /// The credentials of `channel`'s peer, or nil if the socket cannot tell.
    static func of(_ channel: any Channel) -> EventLoopFuture<PeerCredentials?> {
        guard let provider = channel as? any SocketOptionProvider else {
            return channel.eventLoop.makeSucceededFuture(nil)
        }
        let future: EventLoopFuture<Ucred> = provider.unsafeGetSocketOption(
            level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(SO_PEERCRED)
        )
        return future.map { ucred in
            var peer = PeerCredentials(pid: ucred.pid, uid: ucred.uid, gid: ucred.gid)
            // Both read through one handle on /proc/PID: if that process ends and its pid is reused in between,
            // reads through the handle fail rather than describe the newcomer (as SPIRE's peer tracker does).
            let directory = ucred.pid > 0 ? open("/proc/\(ucred.pid)", O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1
            if directory >= 0 {
                defer { close(directory) }
                if let groups = supplementaryGroups(of: ucred, in: directory) {
                    peer.groups = groups
                    peer.executable = executable(in: directory)
                    var running = stat()
                    if fstatat(directory, "exe", &running, 0) == 0 {
                        peer.executableFile = FileIdentity(running)
                    }
                    var atPath = stat()
                    if let path = peer.executable, let file = peer.executableFile, stat(path, &atPath) == 0 {
                        peer.executableIsAtItsPath = FileIdentity(atPath) == file
                    }
                }
            }
            return Optional(peer)
        }.recover { _ in nil }
    }

    /// The `Groups:` of /proc/PID/status. SO_PEERCRED fixes pid, uid and gid at connect; the groups are read
    /// just after, so they count only when the process at that pid still has the connecting process's real and
    /// effective uid and gid (a pid reused in between by another user's process gives none). SO_PEERGROUPS
    /// would need the option's returned length, which NIO's socket option API does not pass on.
    /// Nil when the process at the pid is not the one that connected, as far as its ids tell.
    private static func supplementaryGroups(of ucred: Ucred, in directory: Int32) -> [UInt32]? {
        guard let text = readSmallFile("status", in: directory) else { return nil }
        var uids: [UInt32] = []
        var gids: [UInt32] = []
        var groups: [UInt32] = []
        for line in text.split(separator: "\n") {
            if line.hasPrefix("Uid:") {
                uids = numbers(line.dropFirst(4))
            } else if line.hasPrefix("Gid:") {
                gids = numbers(line.dropFirst(4))
            } else if line.hasPrefix("Groups:") {
                groups = numbers(line.dropFirst(7))
            }
        }
        guard uids.count >= 2, gids.count >= 2, uids[0] == ucred.uid || uids[1] == ucred.uid,
              gids[0] == ucred.gid || gids[1] == ucred.gid else { return nil }
        return groups
    }

    /// readlink of /proc/PID/exe: the path the kernel opened the executable by, links resolved. A daemon that is
    /// not root may read it only for processes of its own user (or with CAP_SYS_PTRACE).
    private static func executable(in directory: Int32) -> String? {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlinkat(directory, "exe", &buffer, buffer.count - 1)
        guard n > 0 else { return nil }
        return String(decoding: buffer[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    private static func numbers(_ text: Substring) -> [UInt32] {
        text.split(whereSeparator: { $0 == " " || $0 == "\t" }).compactMap { UInt32($0) }
    }

    /// At most 16 KiB of a /proc file, as text.
    private static func readSmallFile(_ path: String, in directory: Int32) -> String? {
        let fd = openat(directory, path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: 16384)
        var filled = 0
        while filled < bytes.count {
            let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress! + filled, $0.count - filled) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { break }
            filled += n
        }
        return String(decoding: bytes[..<filled], as: UTF8.self)
    }
}
