import ExpirableCore
import ExpirableRESP
import NIOCore

/// A SUBSCRIBE on its way to the daemon, and the promise completed once the daemon confirmed every name.
struct SubscribeRequest {
    let names: [String]
    let confirmed: EventLoopPromise<Void>
}

/// The connection of a subscriber: sends SUBSCRIBE, matches the daemon's `subscribe` confirmations to the
/// names asked for, and hands every `message` on. An error reply to SUBSCRIBE (`NOTFOUND`) fails the
/// confirmation and closes the connection; so does anything that is not Redis pub/sub in RESP2. Messages come
/// whole from a `RESPValueDecoder` in front of it, and its parse errors through `errorCaught`.
final class SubscriberHandler: ChannelDuplexHandler {
    typealias InboundIn = RESPValue
    typealias OutboundIn = SubscribeRequest
    typealias OutboundOut = ByteBuffer

    private let deliver: (ValueUpdate) -> Void
    /// Names whose confirmation has not arrived yet, in the order they were sent.
    private var unconfirmed = CircularBuffer<String>()
    private var confirmed: EventLoopPromise<Void>?

    init(deliver: @escaping (ValueUpdate) -> Void) {
        self.deliver = deliver
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let request = unwrapOutboundIn(data)
        unconfirmed.append(contentsOf: request.names)
        confirmed = request.confirmed
        var buffer = context.channel.allocator.buffer(capacity: 64)
        buffer.writeRESPCommand(["SUBSCRIBE"] + request.names)
        context.write(wrapOutboundOut(buffer), promise: promise)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // A failure closes the connection while the decoder may still hold messages from the same read: what
        // follows a message that could not be made sense of is not handed on either.
        guard context.channel.isActive else { return }
        if let error = handle(unwrapInboundIn(data)) {
            fail(context: context, error)
        }
    }

    /// Acts on one reply; an error means the connection cannot go on.
    private func handle(_ reply: RESPValue) -> ExpirableClientError? {
        if case .error(let text) = reply { return ExpirableClientError(reply: text) }
        guard case .array(let parts) = reply, parts.count == 3, case .bulkString(let kind) = parts[0],
              case .bulkString(let name) = parts[1] else {
            return ExpirableClientError(code: .unexpectedReply, message: "unexpected message from the daemon: \(reply.shape), not a pub/sub message or confirmation; is that the socket of expirabled, of a version this client knows?")
        }
        switch (kind.readableBytesView.elementsEqual("message".utf8), parts[2]) {
        case (true, .bulkString(let value)):
            deliver(ValueUpdate(name: String(buffer: name), value: value.withUnsafeReadableBytes { Secret(copying: $0) }))
            return nil
        case (false, .integer) where kind.readableBytesView.elementsEqual("subscribe".utf8):
            guard let expected = unconfirmed.first, name.readableBytesView.elementsEqual(expected.utf8) else {
                return ExpirableClientError(code: .unexpectedReply, message: "the daemon confirmed a subscription to '\(String(buffer: name))' nobody asked for")
            }
            unconfirmed.removeFirst()
            if unconfirmed.isEmpty {
                confirmed?.succeed()
                confirmed = nil
            }
            return nil
        default:
            return ExpirableClientError(code: .unexpectedReply, message: "unexpected message from the daemon: \(reply.shape), not a pub/sub message or confirmation; is that the socket of expirabled, of a version this client knows?")
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        confirmed?.fail(ExpirableClientError(code: .unavailable, message: "the connection to the daemon closed before it confirmed the subscription"))
        confirmed = nil
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let error = error as? RESPError {
            fail(context: context, ExpirableClientError(code: .unexpectedReply, message: "the daemon's message is not valid RESP: \(error)"))
        } else {
            fail(context: context, ExpirableClientError(code: .unavailable, message: "connection error: \(error)"))
        }
    }

    private func fail(context: ChannelHandlerContext, _ error: ExpirableClientError) {
        confirmed?.fail(error)
        confirmed = nil
        context.close(promise: nil)
    }
}
