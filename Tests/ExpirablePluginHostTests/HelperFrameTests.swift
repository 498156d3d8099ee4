import ExpirableABI
@testable import ExpirablePluginHost
import Foundation
import Testing

/// The frames between the daemon and a plugin helper, on a real socket pair. A helper runs code the daemon
/// does not trust, so every way its bytes can be wrong must end in `.malformed` or `.closed`, never a crash or
/// a read past what arrived.
@Suite("Helper frames")
struct HelperFrameTests {
    /// A connected pair of Unix stream sockets; reads give up after 5 s, so no test can hang on a frame that
    /// never ends.
    final class Pair {
        private(set) var near: Int32
        private(set) var far: Int32

        init() throws {
            var fds: [Int32] = [-1, -1]
            guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0 else {
                throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO)
            }
            near = fds[0]
            far = fds[1]
            var timeout = timeval(tv_sec: 5, tv_usec: 0)
            for fd in fds { setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size)) }
        }

        deinit {
            closeNear()
            closeFar()
        }

        func closeNear() {
            if near >= 0 { close(near) }
            near = -1
        }

        func closeFar() {
            if far >= 0 { close(far) }
            far = -1
        }

        /// Writes raw bytes to the far end, as a helper that breaks the protocol would.
        func writeFar(_ bytes: [UInt8]) {
            let n = bytes.withUnsafeBytes { write(far, $0.baseAddress, $0.count) }
            precondition(n == bytes.count, "the test's bytes fit in the socket's buffer")
        }
    }

    /// What a receive gave, comparable.
    enum Received: Equatable {
        case frame(HelperFrame.Kind, [UInt8])
        case closed
        case malformed(String)
    }

    static func receive(_ socket: Int32) -> Received {
        do throws(HelperFrame.Failure) {
            let frame = try HelperFrame.receive(from: socket)
            return .frame(frame.kind, frame.payload)
        } catch {
            switch error {
            case .closed: return .closed
            case .malformed(let what): return .malformed(what)
            }
        }
    }

    /// A frame's length field: big-endian, counting the kind byte and the payload.
    static func header(_ length: UInt32) -> [UInt8] {
        withUnsafeBytes(of: length.bigEndian) { Array($0) }
    }

    static func malformed(_ body: () throws(HelperFrame.Failure) -> Void) -> String? {
        do throws(HelperFrame.Failure) {
            try body()
            return nil
        } catch {
            guard case .malformed(let what) = error else { return "closed" }
            return what
        }
    }

    // MARK: Round trips

    /// A frame to send, named for the test's report.
    struct Sample: Sendable, CustomStringConvertible {
        let description: String
        let frame: HelperFrame
    }

    /// Every kind, with the fields the daemon and the helper put in it.
    static let frames: [Sample] = {
        var start = HelperFrame(kind: .start)
        start.append("/usr/lib/expirable/libx.so")
        start.append("token")
        start.append(Int64(30_000))
        start.append(UInt32(2))
        for (key, value) in [("client_id", "abc"), ("scope", "ünïcode ✓")] {
            start.append(key)
            start.append(value)
        }
        var ready = HelperFrame(kind: .ready)
        ready.append(UInt32(1))
        ready.append(UInt32(3))
        var value = HelperFrame(kind: .value)
        value.append(Int64(1_700_000_000_123))
        value.payload += Array("a value\0with a NUL".utf8)
        var never = HelperFrame(kind: .value)
        never.append(Int64.max)
        return [
            Sample(description: "start with params", frame: start),
            Sample(description: "fetch", frame: HelperFrame(kind: .fetch)),
            Sample(description: "ready 1.3", frame: ready),
            Sample(description: "refused", frame: HelperFrame(kind: .refused, payload: Array("expirable.token: bad params".utf8))),
            Sample(description: "value", frame: value),
            Sample(description: "value that never expires, empty", frame: never),
            Sample(description: "error", frame: HelperFrame(kind: .error, payload: Array("upstream said 503".utf8))),
        ]
    }()

    @Test("every kind of frame arrives as it was sent: kind and payload", arguments: frames)
    func roundTrip(sample: Sample) throws {
        let frame = sample.frame
        let pair = try Pair()
        #expect(frame.send(on: pair.far))
        #expect(Self.receive(pair.near) == .frame(frame.kind, frame.payload))
    }

    @Test("a start frame's fields read back in order, and nothing is left after them")
    func startFields() throws {
        let pair = try Pair()
        #expect(Self.frames[0].frame.send(on: pair.far))
        let frame = try HelperFrame.receive(from: pair.near)
        var fields = HelperFrame.Reader(frame)
        #expect(try fields.string() == "/usr/lib/expirable/libx.so")
        #expect(try fields.string() == "token")
        #expect(try fields.int64() == 30_000)
        #expect(try fields.uint32() == 2)
        #expect(try fields.string() == "client_id")
        #expect(try fields.string() == "abc")
        #expect(try fields.string() == "scope")
        #expect(try fields.string() == "ünïcode ✓")
        #expect(fields.rest().isEmpty)
    }

    @Test("a value frame reads as the daemon reads it: the expiry (Int64.max for never), then the value's bytes")
    func valueFields() throws {
        let pair = try Pair()
        #expect(Self.frames[4].frame.send(on: pair.far))
        #expect(Self.frames[5].frame.send(on: pair.far))
        var value = HelperFrame.Reader(try HelperFrame.receive(from: pair.near))
        #expect(try value.int64() == 1_700_000_000_123)
        #expect(Array(value.rest()) == Array("a value\0with a NUL".utf8))
        var never = HelperFrame.Reader(try HelperFrame.receive(from: pair.near))
        #expect(try never.int64() == Int64.max)
        #expect(never.rest().isEmpty, "an empty value is a value")
    }

    @Test("the largest value the ABI allows fits in a frame, and a length of exactly maxLength is read")
    func largestValue() throws {
        #expect(1 + 8 + Int(EXPIRABLE_MAX_VALUE_BYTES) <= HelperFrame.maxLength)
        let pair = try Pair()
        var frame = HelperFrame(kind: .value)
        frame.append(Int64.max)
        frame.payload += (0..<(HelperFrame.maxLength - 9)).map { UInt8(truncatingIfNeeded: $0 % 251) }
        // A megabyte is more than a socket buffer holds: the sender needs a thread of its own.
        let sender = FrameSender(frame, on: pair.far)
        #expect(Self.receive(pair.near) == .frame(.value, frame.payload))
        #expect(sender.result(within: 5) == true)
    }

    // MARK: Bytes that are no frame

    @Test("a length field of 0, of maxLength + 1 or of 4 GiB is refused as malformed before any body is read",
          arguments: [UInt32(0), UInt32(HelperFrame.maxLength + 1), UInt32.max])
    func lengthOutOfBounds(length: UInt32) throws {
        let pair = try Pair()
        pair.writeFar(Self.header(length) + [HelperFrame.Kind.value.rawValue])
        #expect(Self.receive(pair.near) == .malformed("a frame of \(length) bytes, outside 1 to \(HelperFrame.maxLength)"))
    }

    @Test("a frame of unknown kind is refused as malformed", arguments: [UInt8(0), 7, 255])
    func unknownKind(kind: UInt8) throws {
        let pair = try Pair()
        pair.writeFar(Self.header(3) + [kind, 1, 2])
        #expect(Self.receive(pair.near) == .malformed("a frame of unknown kind \(kind)"))
    }

    @Test("a peer that closes inside a frame, in its length or its body, leaves a malformed frame")
    func cutMidFrame() throws {
        let body = try Pair()
        body.writeFar(Self.header(10) + [HelperFrame.Kind.value.rawValue, 1, 2])
        body.closeFar()
        #expect(Self.receive(body.near) == .malformed("the socket closed inside a frame, after 3 of 10 bytes"))
        let length = try Pair()
        length.writeFar([0, 0])
        length.closeFar()
        #expect(Self.receive(length.near) == .malformed("the socket closed inside a frame, after 2 of 4 bytes"))
    }

    @Test("a peer that closes between frames is .closed, after the frames it sent whole")
    func closeBetweenFrames() throws {
        let pair = try Pair()
        #expect(HelperFrame(kind: .error, payload: Array("last words".utf8)).send(on: pair.far))
        pair.closeFar()
        #expect(Self.receive(pair.near) == .frame(.error, Array("last words".utf8)))
        #expect(Self.receive(pair.near) == .closed)
        #expect(Self.receive(pair.near) == .closed, "and stays closed")
    }

    @Test("a peer that dies with bytes unread (the socket is reset) is .closed too")
    func resetBetweenFrames() throws {
        let pair = try Pair()
        #expect(HelperFrame(kind: .fetch).send(on: pair.near), "an order the peer never reads")
        pair.closeFar()
        #expect(Self.receive(pair.near) == .closed)
    }

    @Test("sending to a peer that is gone returns false instead of raising SIGPIPE")
    func sendToClosedPeer() throws {
        let pair = try Pair()
        pair.closeFar()
        #expect(!HelperFrame(kind: .fetch).send(on: pair.near))
    }

    @Test("a frame that stops arriving does not block forever: the socket's timeout makes it malformed")
    func stalledFrame() throws {
        let pair = try Pair()
        var timeout = timeval(tv_sec: 0, tv_usec: 200_000)
        setsockopt(pair.near, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        pair.writeFar(Self.header(10) + [HelperFrame.Kind.value.rawValue])
        let outcome = Self.receive(pair.near)
        guard case .malformed(let what) = outcome else {
            Issue.record("\(outcome)")
            return
        }
        #expect(what.hasPrefix("the socket failed: "), "\(what)")
    }

    // MARK: Fields

    @Test("a string field whose length runs past its frame is refused, whatever the length")
    func stringPastFrame() {
        for length in [UInt32(4), 100, UInt32.max] {
            var frame = HelperFrame(kind: .start)
            frame.append(length)
            frame.payload += Array("abc".utf8)
            var fields = HelperFrame.Reader(frame)
            #expect(Self.malformed { () throws(HelperFrame.Failure) in _ = try fields.string() } == "a string of \(length) bytes runs past its frame")
        }
        var exact = HelperFrame(kind: .start)
        exact.append("abc")
        var fields = HelperFrame.Reader(exact)
        var text: String?
        #expect(Self.malformed { () throws(HelperFrame.Failure) in text = try fields.string() } == nil)
        #expect(text == "abc")
    }

    @Test("Reader throws on a field past the end of the payload, and reads nothing past it")
    func fieldsPastEnd() {
        var empty = HelperFrame.Reader(HelperFrame(kind: .fetch))
        #expect(Self.malformed { () throws(HelperFrame.Failure) in _ = try empty.uint32() } == "a frame ends inside a field")
        #expect(Self.malformed { () throws(HelperFrame.Failure) in _ = try empty.string() } == "a frame ends inside a field")
        var short = HelperFrame.Reader(HelperFrame(kind: .value, payload: [0, 0, 0, 0, 0, 0, 1]))
        #expect(Self.malformed { () throws(HelperFrame.Failure) in _ = try short.int64() } == "a frame ends inside a field")
        #expect(Array(short.rest()) == [0, 0, 0, 0, 0, 0, 1], "a failed field consumes nothing")
        var ready = HelperFrame(kind: .ready)
        ready.append(UInt32(1))
        var fields = HelperFrame.Reader(ready)
        var first: UInt32?
        #expect(Self.malformed { () throws(HelperFrame.Failure) in first = try fields.uint32() } == nil)
        #expect(first == 1)
        #expect(Self.malformed { () throws(HelperFrame.Failure) in _ = try fields.uint32() } == "a frame ends inside a field")
        #expect(fields.rest().isEmpty)
    }

    @Test("wipe zeroes every byte and keeps the count")
    func wipe() {
        var bytes = Array("a secret value".utf8)
        HelperFrame.wipe(&bytes)
        #expect(bytes == [UInt8](repeating: 0, count: 14))
        var empty: [UInt8] = []
        HelperFrame.wipe(&empty)
        #expect(empty.isEmpty)
    }
}

/// Sends a frame on a thread of its own, for frames larger than a socket's buffer.
final class FrameSender: @unchecked Sendable {  // `sent` is written before `done` is signalled and read after
    private var sent: Bool?
    private let done = DispatchSemaphore(value: 0)

    init(_ frame: HelperFrame, on socket: Int32) {
        Thread.detachNewThread { [self] in
            sent = frame.send(on: socket)
            done.signal()
        }
    }

    /// Whether the whole frame went out; nil if the send has not ended within `seconds`.
    func result(within seconds: Int) -> Bool? {
        done.wait(timeout: .now() + .seconds(seconds)) == .success ? sent : nil
    }
}
