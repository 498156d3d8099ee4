import Foundation

/// Reads another process's writable memory (heap, stacks, anonymous and writable file mappings) through
/// /proc/PID/mem, as an attacker with its user's rights would if the process were dumpable, and counts copies
/// of given byte strings. The test runner needs CAP_SYS_PTRACE (root has it) for a process that is not dumpable.
public enum MemoryScan {
    /// How many times each of `patterns` occurs in the writable mappings of `pid`. Throws when the memory
    /// cannot be opened at all (no such process, no right to read it).
    public static func count(_ patterns: [[UInt8]], in pid: Int32) throws -> [Int] {
        let maps = try String(contentsOfFile: "/proc/\(pid)/maps", encoding: .utf8)
        let fd = open("/proc/\(pid)/mem", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw TestSupportError("cannot open /proc/\(pid)/mem: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var counts = Array(repeating: 0, count: patterns.count)
        let longest = patterns.map(\.count).max() ?? 0
        for line in maps.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 2, fields[1].hasPrefix("rw") else { continue }
            if fields.count >= 6, fields[5] == "[vvar]" || fields[5] == "[vsyscall]" { continue }
            let range = fields[0].split(separator: "-")
            guard range.count == 2, let start = UInt64(range[0], radix: 16), let end = UInt64(range[1], radix: 16) else { continue }
            // Chunks overlap by the longest pattern, so a copy across a chunk boundary is seen once.
            let chunk = 1 << 20
            var offset = start
            var buffer = [UInt8](repeating: 0, count: chunk + longest)
            var carry = 0
            while offset < end {
                let want = Int(min(UInt64(chunk), end - offset))
                let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + carry, want, off_t(Int64(bitPattern: offset))) }
                guard n > 0 else { break }  // an unreadable region (a guard page): skip it
                let filled = carry + n
                buffer.withUnsafeBytes { all in
                    let window = UnsafeRawBufferPointer(rebasing: all[0..<filled])
                    for (index, pattern) in patterns.enumerated() {
                        counts[index] += occurrences(of: pattern, in: window, skippingFirst: carry)
                    }
                }
                // Keep the last longest-1 bytes, so a match that starts there completes in the next chunk.
                let keep = min(max(longest - 1, 0), filled)
                buffer.withUnsafeMutableBytes { all in
                    all.baseAddress!.copyMemory(from: all.baseAddress! + filled - keep, byteCount: keep)
                }
                carry = keep
                offset += UInt64(n)
            }
        }
        return counts
    }

    /// Matches of `pattern` in `window` that end after its first `skip` bytes (those were searched already).
    private static func occurrences(of pattern: [UInt8], in window: UnsafeRawBufferPointer, skippingFirst skip: Int) -> Int {
        guard let first = pattern.first, window.count >= pattern.count else { return 0 }
        var found = 0
        var index = 0
        let last = window.count - pattern.count
        while index <= last {
            guard let hit = memchr(window.baseAddress! + index, Int32(first), last - index + 1) else { break }
            let position = window.baseAddress!.distance(to: UnsafeRawPointer(hit))
            if position + pattern.count > skip,
               pattern.withUnsafeBytes({ memcmp(window.baseAddress! + position, $0.baseAddress!, pattern.count) }) == 0 {
                found += 1
            }
            index = position + 1
        }
        return found
    }

    /// The processes whose parent is `pid` (a daemon's plugin helpers).
    public static func children(of pid: Int32) -> [Int32] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { Int32($0) }.filter { child in
            guard let stat = try? String(contentsOfFile: "/proc/\(child)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { return false }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            return fields.count > 2 && Int32(fields[1]) == pid
        }
    }
}
