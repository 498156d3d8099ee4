import Logging
#if canImport(Glibc)
import Glibc
#endif

/// What a plugin helper writes on its stderr (the plugin's prints, a program it runs, the helper's own log
/// lines), read by the daemon from a pipe and logged as records of the daemon's: one per line, attributed to the
/// expirable and the helper's pid (`stream=stderr`), escaped by the log format as any other text, and cut at
/// `maxLine` bytes. Written to the daemon's stderr as it was, a line would land raw in the log: it would break
/// `--log-format json` and could pass for a record of the daemon's own.
final class HelperOutput: @unchecked Sendable {
    /// The longest line logged; the rest of a longer one is dropped, so one line never makes a huge record.
    static let maxLine = 4096

    private let fd: Int32
    private let logger: Logger
    private let metadata: Logger.Metadata
    // Touched by the reading thread only.
    private var line: [UInt8] = []
    /// The line under way went past `maxLine` and was logged cut: the rest of it, up to its newline, is dropped.
    private var dropping = false

    /// Starts logging what arrives on `fd`, the read end of the helper's stderr pipe, until its end (the helper
    /// and every process that shares its stderr have exited); then closes it. A small thread of its own blocks
    /// on it: a dispatch read source here crashed libdispatch's event loop at the daemon's exit.
    static func follow(_ fd: Int32, expirable: String, pid: pid_t, logger: Logger) {
        let output = HelperOutput(fd: fd, logger: logger, metadata: ["expirable": "\(expirable)", "pid": "\(pid)", "stream": "stderr"])
        let context = Unmanaged.passRetained(output).toOpaque()
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
        pthread_attr_setstacksize(&attributes, 256 * 1024)
        var thread = pthread_t()
        let started = pthread_create(&thread, &attributes, { context in
            Unmanaged<HelperOutput>.fromOpaque(context!).takeRetainedValue().run()
            return nil
        }, context)
        if started != 0 {
            // No thread: what the helper prints is dropped (its writes fail with EPIPE) rather than logged raw.
            Unmanaged<HelperOutput>.fromOpaque(context).release()
            close(fd)
        }
    }

    private init(fd: Int32, logger: Logger, metadata: Logger.Metadata) {
        self.fd = fd
        self.logger = logger
        self.metadata = metadata
    }

    private func run() {
        var buffer = [UInt8](repeating: 0, count: 16384)
        while true {
            let count = read(fd, &buffer, buffer.count)
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { break }
            take(buffer[0..<count])
        }
        // The end: a last line without its newline is still a line.
        if !line.isEmpty { emit() }
        close(fd)
    }

    private func take(_ bytes: ArraySlice<UInt8>) {
        for byte in bytes {
            if byte == UInt8(ascii: "\n") {
                if !dropping { emit() }
                dropping = false
            } else if dropping {
                continue
            } else if line.count < HelperOutput.maxLine {
                line.append(byte)
            } else {
                // Logged now, not at a newline that may never come.
                emit(cut: true)
                dropping = true
            }
        }
    }

    private func emit(cut: Bool = false) {
        var metadata = self.metadata
        if cut { metadata["cut"] = "after \(HelperOutput.maxLine) bytes" }
        logger.notice("\(String(decoding: line, as: UTF8.self))", metadata: metadata)
        line.removeAll(keepingCapacity: true)
    }
}
