@testable import ExpirableCluster
import ExpirableCore
import NIOCore
import NIOEmbedded
import Testing

/// Peer-link framing without sockets: the decoder in NIO's `ByteToMessageHandler` and the encoder, on an
/// `EmbeddedChannel`, the stall deadline on a `ManualClock` (the engine's clock, which moves only when told to).
@Suite("Cluster frames on an EmbeddedChannel")
struct ClusterFrameTests {
    static let version = Version(time: 1_800_000_000_000, node: "node-b")
    static let value = ClusterMessage.value(name: "token", version: version, remainingMillis: 60_000, value: Secret("s3cret"), lease: nil)
    static let clear = ClusterMessage.clear(name: "token", version: version)
    static let heartbeat = ClusterMessage.heartbeat(wallMillis: 1, echoMillis: 2, holdMillis: 3)

    static func frames(_ messages: ClusterMessage...) -> ByteBuffer {
        var buffer = ByteBuffer()
        for message in messages { ClusterFrame.encode(message, into: &buffer) }
        return buffer
    }

    static func decoding(maxBytes: Int = ClusterFrame.maxBytes, stall: (timeout: Duration, clock: ManualClock)? = nil) -> EmbeddedChannel {
        EmbeddedChannel(handler: ByteToMessageHandler(ClusterFrameDecoder(maxBytes: maxBytes, stall: stall.map { ($0.timeout, $0.clock) })))
    }

    /// Moves `clock` by `delta`, then runs what its timers handed to `channel`'s event loop.
    static func advance(_ clock: ManualClock, by delta: Duration, _ channel: EmbeddedChannel) {
        clock.advance(by: delta)
        channel.embeddedEventLoop.run()
    }

    static func read(_ channel: EmbeddedChannel) throws -> [ClusterMessage] {
        var messages: [ClusterMessage] = []
        while let message = try channel.readInbound(as: ClusterMessage.self) { messages.append(message) }
        return messages
    }

    @Test("a frame split across reads, down to single bytes, is decoded once whole")
    func splitFrames() throws {
        let channel = Self.decoding()
        var bytes = Self.frames(Self.value, Self.clear)
        let total = bytes.readableBytes
        var decoded: [ClusterMessage] = []
        for _ in 0..<total {
            try channel.writeInbound(bytes.readSlice(length: 1)!)
            decoded += try Self.read(channel)
        }
        #expect(decoded == [Self.value, Self.clear])
        #expect(try channel.finish().isClean)
    }

    @Test("several frames in one read are all decoded, in order")
    func severalInOneRead() throws {
        let channel = Self.decoding()
        try channel.writeInbound(Self.frames(Self.heartbeat, Self.value, Self.clear, Self.heartbeat))
        #expect(try Self.read(channel) == [Self.heartbeat, Self.value, Self.clear, Self.heartbeat])
        #expect(try channel.finish().isClean)
    }

    @Test("a length beyond the cap is refused as soon as it is read, with a typed error")
    func oversize() throws {
        let channel = Self.decoding(maxBytes: 1024)
        var buffer = ByteBuffer()
        buffer.writeInteger(UInt32(1025))
        buffer.writeInteger(UInt8(3))
        #expect(throws: PeerError.oversizeFrame(bytes: 1025, limit: 1024)) { try channel.writeInbound(buffer) }
        var huge = ByteBuffer()
        huge.writeInteger(UInt32.max)
        #expect(throws: PeerError.oversizeFrame(bytes: UInt32.max, limit: ClusterFrame.maxBytes)) { try Self.decoding().writeInbound(huge) }
        _ = try? channel.finish()
    }

    @Test("garbage is a typed error: an unknown frame type, a field past its frame, bytes left over, a bad flag")
    func garbage() throws {
        var unknown = ByteBuffer()
        unknown.writeInteger(UInt32(1))
        unknown.writeInteger(UInt8(0xEE))
        #expect(throws: PeerError.unknownFrameType(0xEE)) { try Self.decoding().writeInbound(unknown) }
        var short = ByteBuffer()
        short.writeInteger(UInt32(3))
        short.writeInteger(UInt8(2))  // heartbeat, whose 24 bytes of clocks are missing
        short.writeInteger(UInt16(0))
        #expect(throws: PeerError.malformedFrame("frame ends inside a field")) { try Self.decoding().writeInbound(short) }
        var trailing = Self.frames(Self.clear)
        trailing.setInteger(trailing.getInteger(at: 0, as: UInt32.self)! + 1, at: 0)
        trailing.writeInteger(UInt8(0))
        #expect(throws: PeerError.malformedFrame("1 unexpected bytes at the end of a frame")) { try Self.decoding().writeInbound(trailing) }
        var flag = Self.frames(.fetched(id: 1, version: Self.version, remainingMillis: nil, value: Secret("v"), stale: false))
        flag.setInteger(UInt8(7), at: flag.writerIndex - 1)
        #expect(throws: PeerError.malformedFrame("a flag of 7, expected 0 or 1")) { try Self.decoding().writeInbound(flag) }
    }

    @Test("a frame cut off by the end of the connection is a typed error, whole frames before it are delivered")
    func truncatedAtEOF() throws {
        let channel = Self.decoding()
        var bytes = Self.frames(Self.heartbeat, Self.value)
        let cut = bytes.readableBytes - 3
        try channel.writeInbound(bytes.readSlice(length: cut)!)
        #expect(try Self.read(channel) == [Self.heartbeat])
        let partial = cut - Self.frames(Self.heartbeat).readableBytes
        #expect(throws: PeerError.truncatedFrame(bytes: partial)) { _ = try channel.finish() }
    }

    @Test("a frame begun and not finished within the stall time of the engine's clock closes the link, not a moment before; whole frames keep it open")
    func stalledMidFrame() throws {
        let clock = ManualClock()
        let channel = Self.decoding(stall: (.milliseconds(900), clock))
        // Whole frames, well apart: never a stall.
        for _ in 0..<5 {
            try channel.writeInbound(Self.frames(Self.heartbeat))
            Self.advance(clock, by: .seconds(2), channel)
            try channel.throwIfErrorCaught()
        }
        #expect(clock.pendingTimers == 0)
        // A frame's first 5 bytes, then nothing.
        var bytes = Self.frames(Self.value)
        try channel.writeInbound(bytes.readSlice(length: 5)!)
        Self.advance(clock, by: .milliseconds(899), channel)
        try channel.throwIfErrorCaught()
        Self.advance(clock, by: .milliseconds(1), channel)
        #expect(throws: PeerError.stalledMidFrame(bytes: 5, millis: 900)) { try channel.throwIfErrorCaught() }
        _ = try? channel.finish()
    }

    @Test("a frame completed within the stall time stops its timer, even one that fell due while the frame's rest was on its way to the event loop")
    func completedFrameStopsTheStallTimer() throws {
        let clock = ManualClock()
        let channel = Self.decoding(stall: (.milliseconds(900), clock))
        var bytes = Self.frames(Self.value)
        try channel.writeInbound(bytes.readSlice(length: 5)!)
        Self.advance(clock, by: .milliseconds(500), channel)
        try channel.writeInbound(bytes.readSlice(length: 10)!)
        #expect(clock.pendingTimers == 1, "one timer per frame, from its first bytes")
        try channel.writeInbound(bytes)
        #expect(try Self.read(channel) == [Self.value])
        #expect(clock.pendingTimers == 0)
        Self.advance(clock, by: .seconds(2), channel)
        try channel.throwIfErrorCaught()
        // The timer runs on the clock's thread and hops to the event loop; the frame completes before the hop runs.
        var next = Self.frames(Self.clear)
        try channel.writeInbound(next.readSlice(length: 3)!)
        clock.advance(by: .milliseconds(900))
        try channel.writeInbound(next)
        channel.embeddedEventLoop.run()
        try channel.throwIfErrorCaught()
        #expect(try Self.read(channel) == [Self.clear])
        #expect(try channel.finish().isClean)
    }

    @Test("a decoder removed with a frame incomplete leaves no timer on the engine's clock")
    func removedDecoderStopsTheStallTimer() throws {
        let clock = ManualClock()
        let channel = Self.decoding(stall: (.milliseconds(900), clock))
        var bytes = Self.frames(Self.value)
        try channel.writeInbound(bytes.readSlice(length: 5)!)
        #expect(clock.pendingTimers == 1)
        #expect(throws: PeerError.truncatedFrame(bytes: 5)) { _ = try channel.finish() }
        #expect(clock.pendingTimers == 0)
    }

    @Test("the encoder writes frames the decoder reads back, values and states as Secrets")
    func encoderRoundTrip() throws {
        let state = ClusterMessage.state(name: "token", version: Self.version, state: Secret([0, 1, 2, 255]), lease: LeaseNumber(round: 3, node: "node-b"))
        let fetched = ClusterMessage.fetched(id: 9, version: Self.version, remainingMillis: nil, value: Secret(Array(repeating: 0x41, count: 70_000)), stale: true)
        let messages = [Self.value, state, fetched, Self.clear, ClusterMessage.state(name: "token", version: Self.version, state: nil, lease: nil)]
        let encoder = EmbeddedChannel(handler: ClusterFrameEncoder())
        for message in messages { try encoder.writeOutbound(message) }
        let decoder = Self.decoding()
        while let frame = try encoder.readOutbound(as: ByteBuffer.self) { try decoder.writeInbound(frame) }
        #expect(try Self.read(decoder) == messages)
        #expect(try encoder.finish().isClean && decoder.finish().isClean)
    }
}
