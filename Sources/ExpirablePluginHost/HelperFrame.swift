import ExpirableABI
import ExpirableCore
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// One message between the daemon and a plugin helper on their socket pair. On the wire: a 4-byte big-endian
/// length, then that many bytes: the kind, then the payload. Frames are bounded (a value of the ABI's largest
/// size plus room for the rest) and every field is bounds-checked: a helper runs a plugin the daemon does not
/// trust, so whatever it sends is read as possibly hostile.
struct HelperFrame {
    enum Kind: UInt8 {
        /// Daemon → helper, once: plugin path and plugin_dir (real paths, checked again by the helper), expirable name, timeout in ms, max_memory and max_cpu (0: none), whether the hard CPU limit is set too (a flag),
        /// uid and gid (-1: keep), the host clock's wall offset in ms (the helper's clock gets it, for `now_ms`),
        /// params.
        case start = 1
        /// Daemon → helper: call `expirable_fetch` once. The payload: the call's id (UInt64), which its answer
        /// carries back; the call's timeout in ms (Int64), after which (plus a grace) the helper has the kernel
        /// kill it; the key (a flag byte, then a string); the state (a flag byte, then bytes).
        case fetch = 2
        /// Helper → daemon: the plugin loaded and `expirable_create` accepted its params. ABI major and minor.
        case ready = 3
        /// Helper → daemon: the plugin could not be loaded or refused its params; the message says why.
        case refused = 4
        /// Helper → daemon: a fetch gave a value. The call's id, expiry (Unix ms, Int64.max for never), the state
        /// change (see `appendState`), then the value's bytes.
        case value = 5
        /// Helper → daemon: a fetch gave an error: the call's id, its class (0 temporary, 1 permanent; UInt32),
        /// its retry-after (Unix ms, 0 for none; Int64), the state change, then the message.
        case error = 6
    }

    /// The largest length field accepted: a value of EXPIRABLE_MAX_VALUE_BYTES, a state of
    /// EXPIRABLE_MAX_STATE_BYTES, and room for the kind, the expiry and their lengths.
    static let maxLength = Int(EXPIRABLE_MAX_VALUE_BYTES) + Int(EXPIRABLE_MAX_STATE_BYTES) + 64

    var kind: Kind
    var payload: [UInt8] = []

    /// Why no frame could be read.
    enum Failure: Error {
        /// The other side closed the socket between frames.
        case closed
        /// Bytes that are not a frame, or a socket that broke mid-frame; the text says which.
        case malformed(String)
    }

    // MARK: Payload fields

    mutating func append(_ n: UInt32) {
        withUnsafeBytes(of: n.bigEndian) { payload.append(contentsOf: $0) }
    }

    mutating func append(_ n: Int64) {
        withUnsafeBytes(of: n.bigEndian) { payload.append(contentsOf: $0) }
    }

    mutating func append(_ n: UInt64) {
        withUnsafeBytes(of: n.bigEndian) { payload.append(contentsOf: $0) }
    }

    mutating func append(_ flag: Bool) {
        payload.append(flag ? 1 : 0)
    }

    /// Bytes as their 4-byte length and the bytes.
    mutating func append(bytes: UnsafeRawBufferPointer) {
        append(UInt32(bytes.count))
        payload.append(contentsOf: bytes)
    }

    /// A state change: 0 keep, 1 set (then its bytes), 2 clear.
    mutating func appendState(_ change: StateChange) {
        switch change {
        case .keep: payload.append(0)
        case .set(let secret):
            payload.append(1)
            secret.withUnsafeBytes { append(bytes: $0) }
        case .clear: payload.append(2)
        }
    }

    /// A string as its 4-byte length and its UTF-8 bytes.
    mutating func append(_ text: String) {
        append(UInt32(text.utf8.count))
        payload.append(contentsOf: text.utf8)
    }

    /// Reads the payload's fields in order, each checked against what is left.
    struct Reader {
        private let payload: [UInt8]
        private var offset = 0

        init(_ frame: HelperFrame) { payload = frame.payload }

        mutating func uint32() throws(Failure) -> UInt32 {
            UInt32(truncatingIfNeeded: try integer(4))
        }

        mutating func int64() throws(Failure) -> Int64 {
            Int64(bitPattern: try integer(8))
        }

        mutating func uint64() throws(Failure) -> UInt64 {
            try integer(8)
        }

        mutating func string() throws(Failure) -> String {
            let count = Int(try uint32())
            guard count <= payload.count - offset else { throw .malformed("a string of \(count) bytes runs past its frame") }
            defer { offset += count }
            return String(decoding: payload[offset..<offset + count], as: UTF8.self)
        }

        mutating func flag() throws(Failure) -> Bool {
            switch try integer(1) {
            case 0: return false
            case 1: return true
            case let other: throw .malformed("a flag of \(other)")
            }
        }

        /// Bytes written by `append(bytes:)`, as a secret (the copy in the payload is the frame's, wiped with it).
        mutating func secret(limit: Int) throws(Failure) -> Secret {
            let count = Int(try uint32())
            guard count <= payload.count - offset else { throw .malformed("bytes of \(count) run past their frame") }
            guard count <= limit else { throw .malformed("\(count) bytes where at most \(limit) belong") }
            defer { offset += count }
            return payload[offset..<offset + count].withUnsafeBytes { Secret(copying: $0) }
        }

        mutating func state() throws(Failure) -> StateChange {
            switch try integer(1) {
            case 0: return .keep
            case 1: return .set(try secret(limit: Int(EXPIRABLE_MAX_STATE_BYTES)))
            case 2: return .clear
            case let other: throw .malformed("a state change of kind \(other)")
            }
        }

        /// Everything not read yet.
        mutating func rest() -> ArraySlice<UInt8> {
            defer { offset = payload.count }
            return payload[offset...]
        }

        private mutating func integer(_ size: Int) throws(Failure) -> UInt64 {
            guard size <= payload.count - offset else { throw .malformed("a frame ends inside a field") }
            var n: UInt64 = 0
            for byte in payload[offset..<offset + size] { n = n << 8 | UInt64(byte) }
            offset += size
            return n
        }
    }

    // MARK: The socket

    /// Writes the frame whole; false when the socket is gone.
    func send(on socket: Int32) -> Bool {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(5 + payload.count)
        withUnsafeBytes(of: UInt32(1 + payload.count).bigEndian) { bytes.append(contentsOf: $0) }
        bytes.append(kind.rawValue)
        bytes.append(contentsOf: payload)
        defer { HelperFrame.wipe(&bytes) }
        return bytes.withUnsafeBytes { all in
            var sent = 0
            while sent < all.count {
                // MSG_NOSIGNAL: a peer that died is a false return here, not a SIGPIPE.
                let n = Glibc.send(socket, all.baseAddress! + sent, all.count - sent, Int32(MSG_NOSIGNAL))
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { return false }
                sent += n
            }
            return true
        }
    }

    /// Blocks until a whole frame has arrived, the socket closes, or the bytes prove not to be a frame. With a
    /// `pidfd` (not -1), the exit of that process ends the wait too, as a close (or, inside a frame, as a
    /// malformed one), whoever else still holds the socket's other end.
    static func receive(from socket: Int32, watching pidfd: Int32 = -1) throws(Failure) -> HelperFrame {
        var header = [UInt8](repeating: 0, count: 4)
        guard try read(socket, into: &header, allowClose: true, watching: pidfd) else { throw .closed }
        let length = header.reduce(0) { $0 << 8 | Int($1) }
        guard length >= 1, length <= maxLength else {
            throw .malformed("a frame of \(length) bytes, outside 1 to \(maxLength)")
        }
        var body = [UInt8](repeating: 0, count: length)
        defer { wipe(&body) }
        _ = try read(socket, into: &body, allowClose: false, watching: pidfd)
        guard let kind = Kind(rawValue: body[0]) else { throw .malformed("a frame of unknown kind \(body[0])") }
        return HelperFrame(kind: kind, payload: Array(body[1...]))
    }

    /// Fills `buffer`; false when the socket closed before its first byte and `allowClose`.
    private static func read(_ socket: Int32, into buffer: inout [UInt8], allowClose: Bool, watching pidfd: Int32) throws(Failure) -> Bool {
        var filled = 0
        while filled < buffer.count {
            if pidfd >= 0 && !readable(socket, orExitOf: pidfd) {
                if filled == 0 && allowClose { return false }
                throw .malformed("its process ended inside a frame, after \(filled) of \(buffer.count) bytes")
            }
            let n = buffer.withUnsafeMutableBytes { Glibc.read(socket, $0.baseAddress! + filled, $0.count - filled) }
            if n < 0 && errno == EINTR { continue }
            // A peer that died with bytes unread in its end resets the connection: that is a close too.
            let closed = n == 0 || (n < 0 && errno == ECONNRESET)
            if n < 0 && !closed { throw .malformed("the socket failed: \(String(cString: strerror(errno)))") }
            if closed {
                if filled == 0 && allowClose { return false }
                throw .malformed("the socket closed inside a frame, after \(filled) of \(buffer.count) bytes")
            }
            filled += n
        }
        return true
    }

    /// Waits until `socket` has bytes (or an end) to read: true; or until the process of `pidfd` has exited
    /// with nothing left to read: false. Bytes it wrote before exiting are still read.
    private static func readable(_ socket: Int32, orExitOf pidfd: Int32) -> Bool {
        var fds = [pollfd(fd: socket, events: Int16(POLLIN), revents: 0), pollfd(fd: pidfd, events: Int16(POLLIN), revents: 0)]
        while true {
            let n = poll(&fds, 2, -1)
            if n < 0 && errno == EINTR { continue }
            if n < 0 { return true }  // let read() report the failure
            if fds[0].revents != 0 { return true }
            if fds[1].revents != 0 {
                // Exited: whatever it sent before is in the socket already.
                var last = [pollfd(fd: socket, events: Int16(POLLIN), revents: 0)]
                return poll(&last, 1, 0) == 1
            }
        }
    }

    /// Values are secrets: their copies are zeroed before the memory is given back.
    static func wipe(_ bytes: inout [UInt8]) {
        bytes.withUnsafeMutableBytes { buffer in
            if let start = buffer.baseAddress { _ = memset(start, 0, buffer.count) }
        }
    }
}
