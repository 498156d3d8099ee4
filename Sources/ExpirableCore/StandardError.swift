import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Whole log lines to stderr, one write each where the kernel allows, and never two threads' lines interleaved.
enum StandardError {
    private static let output = Mutex(())

    static func write(_ line: inout String) {
        output.withLock { _ in
            line.withUTF8 { buffer in
                var offset = 0
                while offset < buffer.count {
                    let written = Glibc.write(2, buffer.baseAddress! + offset, buffer.count - offset)
                    if written < 0 && errno == EINTR { continue }
                    if written <= 0 { return }
                    offset += written
                }
            }
        }
    }
}
