#if canImport(Glibc)
import Glibc
#endif

/// A process's memory as the kernel counts it (`/proc/PID/smaps_rollup`), and its open descriptors.
public struct ProcessFigures: Sendable, Hashable {
    /// Private memory: anonymous and private file pages (Private_Clean + Private_Dirty), the figure SPEC §8
    /// sets a target for. Shared library pages are not counted.
    public let privateBytes: Int
    /// Resident memory, shared pages included.
    public let residentBytes: Int
    public let openDescriptors: Int?

    /// This process's figures, or another's by `pid`; nil when it cannot be read (gone, or not ours to read).
    public static func read(pid: Int32? = nil) -> ProcessFigures? {
        let directory = pid.map { "/proc/\($0)" } ?? "/proc/self"
        guard let text = readFile(directory + "/smaps_rollup") else { return nil }
        var kilobytes: [Substring: Int] = [:]
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 2, fields[0].hasSuffix(":"), let value = Int(fields[1]) else { continue }
            kilobytes[fields[0].dropLast()] = value
        }
        let privateKB = (kilobytes["Private_Clean"] ?? 0) + (kilobytes["Private_Dirty"] ?? 0)
        return ProcessFigures(privateBytes: privateKB * 1024, residentBytes: (kilobytes["Rss"] ?? 0) * 1024,
                              openDescriptors: countEntries(directory + "/fd"))
    }

    private static func readFile(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while bytes.count < 1 << 20 {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { break }
            bytes += chunk[0..<n]
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    private static func countEntries(_ path: String) -> Int? {
        guard let directory = opendir(path) else { return nil }
        defer { closedir(directory) }
        var count = 0
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != "." && name != ".." { count += 1 }
        }
        // The directory's own descriptor is one of them.
        return max(0, count - 1)
    }
}
