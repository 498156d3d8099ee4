import CExpirableLinux
import ExpirableConfig
import ExpirableCore
#if canImport(Glibc)
import Glibc
#endif

/// One sink's file operations, in Glibc calls (the daemon loads no Foundation): the value goes to a temporary
/// file in the same directory, which gets the owner, group and mode before any byte of the value, is checked
/// to be on a tmpfs, written, synced and renamed over the file, so a reader sees the old value or the new one,
/// never a part, and never a file with the wrong mode.
struct SinkFile {
    let sink: Configuration.Sink

    /// What went wrong, with what to do; never the value.
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    /// Replaces the file's content with `value`.
    func write(_ value: Secret) throws(Failure) {
        let path = sink.path
        let slash = path.lastIndex(of: "/")!
        var template = Array((String(path[..<slash]) + "/." + String(path[path.index(after: slash)...]) + ".XXXXXX").utf8CString)
        // Mode 0600 and O_EXCL; plugin helpers close every inherited descriptor, so the moment before
        // FD_CLOEXEC leaks nothing.
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else { throw Failure(description: "cannot create a temporary file next to \(path): \(SinkFile.reason(errno))") }
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        let temporary = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        var renamed = false
        defer {
            close(fd)
            if !renamed { unlink(temporary) }
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
        guard rename(temporary, path) == 0 else { throw Failure(description: "cannot rename the new file to \(path): \(SinkFile.reason(errno))") }
        renamed = true
    }

    /// Removes the file; a file already gone is not an error.
    func remove() throws(Failure) {
        guard unlink(sink.path) == 0 || errno == ENOENT else {
            throw Failure(description: "cannot remove \(sink.path): \(SinkFile.reason(errno))")
        }
    }

    private static func reason(_ code: Int32) -> String { String(cString: strerror(code)) }
}
