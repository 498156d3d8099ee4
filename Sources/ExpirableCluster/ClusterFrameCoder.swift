import ExpirableCore
import NIOCore

/// Reads frames off a link (after TLS): NIO's `ByteToMessageHandler` keeps the bytes of a frame not yet
/// complete, this cuts whole frames out of them. A length beyond the cap is refused as soon as it is read
/// (`PeerError.oversizeFrame`), so a peer cannot make the link hold more than one frame; a frame that breaks a
/// rule, or one cut off by the end of the connection, is a `PeerError` fired down the pipeline, and the link
/// handler closes that link.
///
/// With `stall`, a frame begun must be complete within its timeout: a peer that sends a frame's length and stops
/// holds the link no longer (`PeerError.stalledMidFrame`, fired on the event loop). The time runs from the first
/// bytes of the frame still incomplete, so a peer that keeps sending whole frames never meets it. It is timed on
/// the clock given with it (the engine's), so a test on a `ManualClock` sees the stall without waiting.
struct ClusterFrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = ClusterMessage

    /// The stall timer of one incomplete frame, confined to the channel's event loop. The clock may run the
    /// timer's action on any thread, which hops to the loop: a frame completed or a decoder removed meanwhile
    /// marks the timer stopped there first, so a late action fires nothing.
    private final class StallTimer {
        var timer: (any Cancellable)?
        var stopped = false
        /// The stall was reported: the close it causes is not a truncated frame too.
        var fired = false

        func stop() {
            stopped = true
            timer?.cancel()
            timer = nil
        }
    }

    let maxBytes: Int
    /// How long a frame begun may take to complete, and the clock that times it.
    let stall: (timeout: Duration, clock: any EngineClock)?
    private var stallTimer: StallTimer?

    init(maxBytes: Int = ClusterFrame.maxBytes, stall: (timeout: Duration, clock: any EngineClock)? = nil) {
        self.maxBytes = maxBytes
        self.stall = stall
    }

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        if let message = try ClusterFrame.decode(&buffer, maxBytes: maxBytes) {
            stopStallTimer()
            context.fireChannelRead(wrapInboundOut(message))
            return .continue
        }
        if buffer.readableBytes == 0 {
            stopStallTimer()
        } else if stallTimer == nil, let stall {
            let error = PeerError.stalledMidFrame(bytes: buffer.readableBytes, millis: stall.timeout.milliseconds)
            let timer = StallTimer()
            let eventLoop = context.eventLoop
            let bound = NIOLoopBound((context, timer), eventLoop: eventLoop)
            timer.timer = stall.clock.schedule(after: stall.timeout) {
                eventLoop.execute {
                    let (context, timer) = bound.value
                    guard !timer.stopped else { return }
                    timer.stopped = true
                    timer.fired = true
                    context.fireErrorCaught(error)
                }
            }
            stallTimer = timer
        }
        return .needMoreData
    }

    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        while try decode(context: context, buffer: &buffer) == .continue {}
        let stalled = stallTimer?.fired == true
        stopStallTimer()
        guard buffer.readableBytes == 0 else {
            // The link closes because the frame stalled, which was reported: one event, one line.
            if stalled {
                buffer.moveReaderIndex(to: buffer.writerIndex)
                return .needMoreData
            }
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
        stallTimer?.stop()
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
