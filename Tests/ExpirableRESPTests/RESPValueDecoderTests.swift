import ExpirableRESP
import NIOCore
import NIOEmbedded
import Testing

/// The decoder as the client's handlers see it: bytes go in as socket reads, whole values come out.
@Suite("RESP value decoder")
struct RESPValueDecoderTests {
    /// A channel that decodes what is written into it with the limits the client uses.
    func decodingChannel() throws -> EmbeddedChannel {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(RESPValueDecoder(limits: .replies)))
        return channel
    }

    /// The values decoded so far, taking them off the channel.
    func decoded(_ channel: EmbeddedChannel) throws -> [RESPValue] {
        var values: [RESPValue] = []
        while let value = try channel.readInbound(as: RESPValue.self) { values.append(value) }
        return values
    }

    @Test("a reply split across reads is decoded once, when its last byte arrives", arguments: [1, 2, 5, 16])
    func splitReply(bytesPerRead: Int) throws {
        let reply = RESPValue.array([.bulk("token"), .integer(1_700_000_000_000)])
        var whole = ByteBuffer()
        whole.writeRESP(reply)
        let channel = try decodingChannel()
        while whole.readableBytes > 0 {
            try channel.writeInbound(whole.readSlice(length: min(bytesPerRead, whole.readableBytes))!)
            #expect(try decoded(channel) == (whole.readableBytes == 0 ? [reply] : []))
        }
        #expect(try channel.finish().isClean)
    }

    @Test("several replies in one read give one value each, in order; a partial one after them waits for its bytes")
    func severalReplies() throws {
        let replies: [RESPValue] = [
            .simpleString("OK"), .error("NOTFOUND no expirable named 'x'"), .integer(-42), .bulk("token\r\nwith CRLF"),
            .null, .array([.bulk("v"), .array([.integer(1)])]),
        ]
        var read = ByteBuffer()
        for reply in replies { read.writeRESP(reply) }
        read.writeString("$5\r\nto")
        let channel = try decodingChannel()
        try channel.writeInbound(read)
        #expect(try decoded(channel) == replies)
        try channel.writeInbound(ByteBuffer(string: "ken\r\n"))
        #expect(try decoded(channel) == [.bulk("token")])
        #expect(try channel.finish().isClean)
    }

    @Test("malformed input is thrown, after the replies before it are passed on", arguments: [":12a\r\n", "+OK\rX", "$x\r\n", "%3\r\n", "$3\r\nabcde"])
    func malformed(input: String) throws {
        let channel = try decodingChannel()
        let error = #expect(throws: RESPError.self) { try channel.writeInbound(ByteBuffer(string: "+PONG\r\n" + input)) }
        #expect(error?.kind == .malformed)
        #expect(try decoded(channel) == [.simpleString("PONG")])
        _ = try channel.finish()
    }

    @Test("a bulk string over the limit is thrown from its length line, before its bytes are buffered")
    func oversizedBulk() throws {
        let channel = try decodingChannel()
        let error = #expect(throws: RESPError.self) {
            try channel.writeInbound(ByteBuffer(string: "$\(RESPLimits.replies.maxBulkLength + 1)\r\n"))
        }
        #expect(error?.kind == .tooLarge)
        #expect(try decoded(channel) == [])
        _ = try channel.finish()
    }
}
