import CExpirableLinux
import ExpirableConfig
import ExpirableCore
#if canImport(Glibc)
import Glibc
#endif

/// One sink's file operations, in Glibc calls (the daemon loads no Foundation): the value goes to a temporary
/// file in the same directory, which gets the owner, group and mode before any byte of the value, is checked
/// to be on a tmpfs, written, synced and renamed over the file, so a reader sees the old value or the new one,
/// never a part, and never a file with the wrong mode. Every operation first opens the directory afresh by
/// walking its path without following links others control (`Configuration.Sink.openDirectory`), then creates,
/// renames and removes relative to that descriptor: a directory or link swapped since start is refused, never
/// followed, and a link at the file's own name is replaced or removed, never written through.
struct SinkFile {
    let sink: Configuration.Sink

    /// What went wrong, with what to do; never the value.
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    /// Tries for a free temporary name; each is 64 random bits, so a clash means someone is guessing.
    private static let temporaryAttempts = 16

    /// Replaces the file's content with `value`.
    func write(_ value: Secret) throws(Failure) {
        let path = sink.path
        let directory = try openDirectory()
        defer { close(directory) }
        var fd: Int32 = -1
        var temporary = ""
        for _ in 0..<SinkFile.temporaryAttempts {
            temporary = "." + sink.fileName + "." + String(UInt64.random(in: 0...UInt64.max), radix: 36)
            // Mode 0600, O_EXCL and O_NOFOLLOW: a name someone else made is never opened.
            fd = openat(directory, temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
            if fd >= 0 || errno != EEXIST { break }
        }
        guard fd >= 0 else { throw Failure(description: "cannot create a temporary file next to \(path): \(SinkFile.reason(errno))") }
        var renamed = false
        defer {
            close(fd)
            if !renamed { unlinkat(directory, temporary, 0) }
        }
        let type = CExpirableLinux_filesystem_type_fd(fd)
        guard type != -1 else { throw Failure(description: "cannot check the file system of \(path): \(SinkFile.reason(errno))") }
        if let problem = Configuration.Sink.memoryOnlyProblem(statfsType: Int(type)) {
            throw Failure(description: "\(path) \(problem) (the directory was replaced after start); nothing written")
        }
        if sink.uid != nil || sink.gid != nil {
            guard fchown(fd, sink.uid ?? UInt32.max, sink.gid ?? UInt32.max) == 0 else {
                throw Failure(description: "cannot give \(path) its owner and group: \(SinkFile.reason(errno)) (changing the owner needs root)")
            }
        }
        guard fchmod(fd, mode_t(sink.mode)) == 0 else { throw Failure(description: "cannot set the mode of \(path): \(SinkFile.reason(errno))") }
        let written: Bool = value.withUnsafeBytes { bytes in
            var offset = 0
            while offset < bytes.count {
                let n = Glibc.write(fd, bytes.baseAddress! + offset, bytes.count - offset)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { return false }
                offset += n
            }
            return true
        }
        guard written else { throw Failure(description: "cannot write \(path): \(SinkFile.reason(errno))") }
        guard fsync(fd) == 0 else { throw Failure(description: "cannot sync \(path): \(SinkFile.reason(errno))") }
        guard renameat(directory, temporary, directory, sink.fileName) == 0 else {
            throw Failure(description: "cannot rename the new file to \(path): \(SinkFile.reason(errno))")
        }
        renamed = true
    }

    /// Removes the file; a file already gone is not an error.
    func remove() throws(Failure) {
        let directory = try openDirectory()
        defer { close(directory) }
        guard unlinkat(directory, sink.fileName, 0) == 0 || errno == ENOENT else {
            throw Failure(description: "cannot remove \(sink.path): \(SinkFile.reason(errno))")
        }
    }

    private func openDirectory() throws(Failure) -> Int32 {
        do {
            return try sink.openDirectory()
        } catch {
            throw Failure(description: "\(error.description) (checked before every write and removal of \(sink.path)); nothing written or removed")
        }
    }

    private static func reason(_ code: Int32) -> String { String(cString: strerror(code)) }
}
