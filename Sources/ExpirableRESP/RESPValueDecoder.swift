import NIOCore

/// Frames the RESP2 values of a byte stream for a NIO pipeline: put `ByteToMessageHandler(RESPValueDecoder(limits:))`
/// in front of a handler whose `InboundIn` is `RESPValue`, and it receives each value once whole, however the bytes
/// were split across reads. Malformed or oversized input is thrown, and `ByteToMessageHandler` passes the
/// `RESPError` to `errorCaught`; values complete before it are passed on first. The stream cannot be resynchronised
/// after one: close the connection.
///
/// When the input ends, values still buffered are passed on and an incomplete one is dropped (the default
/// `decodeLast`): the handler behind learns from `channelInactive` that its answer will not come.
public struct RESPValueDecoder: ByteToMessageDecoder {
    /// One complete value per `channelRead`.
    public typealias InboundOut = RESPValue

    private let parser: RESPParser

    /// A decoder that refuses values over `limits` (`.replies` for what a client receives).
    public init(limits: RESPLimits) {
        parser = RESPParser(limits: limits)
    }

    /// Passes on the value at the front of `buffer`, if it has arrived whole.
    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let value = try parser.next(&buffer) else { return .needMoreData }
        context.fireChannelRead(wrapInboundOut(value))
        return .continue
    }
}
