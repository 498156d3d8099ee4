import ExpirableCore
import NIOCore

/// Reads frames off a link (after TLS): NIO's `ByteToMessageHandler` keeps the bytes of a frame not yet
/// complete, this cuts whole frames out of them. A length beyond the cap is refused as soon as it is read
/// (`PeerError.oversizeFrame`), so a peer cannot make the link hold more than one frame; a frame that breaks a
/// rule, or one cut off by the end of the connection, is a `PeerError` fired down the pipeline, and the link
/// handler closes that link.
///
/// With `stallTimeout`, a frame begun must be complete within it: a peer that sends a frame's length and stops
/// holds the link no longer (`PeerError.stalledMidFrame`, fired on the event loop). The time runs from the first
/// bytes of the frame still incomplete, so a peer that keeps sending whole frames never meets it.
struct ClusterFrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = ClusterMessage

    let maxBytes: Int
    let stallTimeout: TimeAmount?
    private var stallTimer: Scheduled<Void>?

    init(maxBytes: Int = ClusterFrame.maxBytes, stallTimeout: TimeAmount? = nil) {
        self.maxBytes = maxBytes
        self.stallTimeout = stallTimeout
    }

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        if let message = try ClusterFrame.decode(&buffer, maxBytes: maxBytes) {
            stopStallTimer()
            context.fireChannelRead(wrapInboundOut(message))
            return .continue
        }
        if buffer.readableBytes == 0 {
            stopStallTimer()
        } else if stallTimer == nil, let stallTimeout {
            let bytes = buffer.readableBytes
            let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
            stallTimer = context.eventLoop.scheduleTask(in: stallTimeout) {
                bound.value.fireErrorCaught(PeerError.stalledMidFrame(bytes: bytes, millis: stallTimeout.nanoseconds / 1_000_000))
            }
        }
        return .needMoreData
    }

    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        while try decode(context: context, buffer: &buffer) == .continue {}
        stopStallTimer()
        guard buffer.readableBytes == 0 else {
            let bytes = buffer.readableBytes
            buffer.moveReaderIndex(to: buffer.writerIndex)
            throw PeerError.truncatedFrame(bytes: bytes)
        }
        return .needMoreData
    }

    mutating func decoderRemoved(context: ChannelHandlerContext) {
        stopStallTimer()
    }

    private mutating func stopStallTimer() {
        stallTimer?.cancel()
        stallTimer = nil
    }
}

/// Writes messages onto a link as frames, into buffers of the channel's allocator: on a peer link, one that
/// zeroes memory as it frees it (the daemon's `WipingAllocator`), so a frame that held a value is wiped once the
/// TLS handler below has encrypted it and let it go.
final class ClusterFrameEncoder: ChannelOutboundHandler {
    typealias OutboundIn = ClusterMessage
    typealias OutboundOut = ByteBuffer

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        var buffer = context.channel.allocator.buffer(capacity: 64)
        ClusterFrame.encode(unwrapOutboundIn(data), into: &buffer)
        context.write(wrapOutboundOut(buffer), promise: promise)
    }
}
