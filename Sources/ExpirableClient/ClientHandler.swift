import ExpirableRESP
import NIOCore

/// A request on its way to the daemon and the promise its reply completes.
struct ClientRequest {
    let words: [String]
    let promise: EventLoopPromise<RESPValue>
}

/// Pipelines requests on one connection and completes their promises in order as replies arrive. Anything
/// that breaks the connection fails every request still waiting. Replies come whole from a `RESPValueDecoder`
/// in front of it, and its parse errors through `errorCaught`.
final class ClientHandler: ChannelDuplexHandler {
    typealias InboundIn = RESPValue
    typealias OutboundIn = ClientRequest
    typealias OutboundOut = ByteBuffer

    private var waiting = CircularBuffer<EventLoopPromise<RESPValue>>()

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let request = unwrapOutboundIn(data)
        waiting.append(request.promise)
        var buffer = context.channel.allocator.buffer(capacity: 64)
        buffer.writeRESPCommand(request.words)
        context.write(wrapOutboundOut(buffer), promise: promise)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // A failure closes the connection while the decoder may still hold replies from the same read: they
        // answer nothing any more.
        guard context.channel.isActive else { return }
        guard let promise = waiting.popFirst() else {
            fail(context: context, ExpirableClientError(code: .unexpectedReply, message: "the daemon sent a reply nobody asked for"))
            return
        }
        promise.succeed(unwrapInboundIn(data))
    }

    func channelInactive(context: ChannelHandlerContext) {
        failAll(ExpirableClientError(code: .unavailable, message: "the connection to the daemon closed before it answered"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let error = error as? RESPError {
            fail(context: context, ExpirableClientError(code: .unexpectedReply, message: "the daemon's reply is not valid RESP: \(error)"))
        } else {
            fail(context: context, ExpirableClientError(code: .unavailable, message: "connection error: \(error)"))
        }
    }

    private func fail(context: ChannelHandlerContext, _ error: ExpirableClientError) {
        failAll(error)
        context.close(promise: nil)
    }

    private func failAll(_ error: ExpirableClientError) {
        while let promise = waiting.popFirst() { promise.fail(error) }
    }
}
