import ExpirableRESP
import NIOCore
import Testing

@Suite("RESP codec")
struct RESPTests {
    let requests = RESPParser(limits: .requests, inlineCommands: true)
    let replies = RESPParser(limits: .replies)

    @Test("every value survives encoding and parsing")
    func roundTrip() throws {
        let values: [RESPValue] = [
            .simpleString("PONG"), .error("NOTFOUND no expirable named 'x'"), .integer(-42), .integer(Int64.max),
            .bulk(""), .bulk("token\r\nwith CRLF"), .null,
            .array([.bulk("v"), .integer(1_700_000_000_000)]), .array([]),
        ]
        var buffer = ByteBuffer()
        for value in values { buffer.writeRESP(value) }
        var parsed: [RESPValue] = []
        while let value = try replies.next(&buffer) { parsed.append(value) }
        #expect(parsed == values)
        #expect(buffer.readableBytes == 0)
    }

    @Test("a value split at every byte boundary parses once complete, consuming nothing before")
    func incremental() throws {
        var whole = ByteBuffer()
        whole.writeRESPCommand(["GET", "github_access_token"])
        let bytes = Array(whole.readableBytesView)
        for split in 1..<bytes.count {
            var buffer = ByteBuffer(bytes: bytes[..<split])
            #expect(try requests.next(&buffer) == nil)
            #expect(buffer.readableBytes == split)
            buffer.writeBytes(bytes[split...])
            #expect(try requests.next(&buffer) == .array([.bulk("GET"), .bulk("github_access_token")]))
        }
    }

    @Test("pipelined commands come out one at a time, in order")
    func pipelined() throws {
        var buffer = ByteBuffer()
        for i in 0..<100 { buffer.writeRESPCommand(["GET", "k\(i)"]) }
        for i in 0..<100 { #expect(try requests.next(&buffer) == .array([.bulk("GET"), .bulk("k\(i)")])) }
        #expect(try requests.next(&buffer) == nil)
    }

    @Test("inline commands split on spaces")
    func inline() throws {
        var buffer = ByteBuffer(string: "GET  token\r\nPING\n")
        #expect(try requests.next(&buffer) == .array([.bulk("GET"), .bulk("token")]))
        #expect(try requests.next(&buffer) == .array([.bulk("PING")]))
    }

    @Test("malformed input is refused", arguments: ["*2\r\n$3\r\nGET\r\n$x\r\n", "*1\r\n$3\r\nGETX\r\n", "*1\r\n%3\r\n", "*-5\r\n", ":12a\r\n", "*1\r\n*1\r\n$1\r\nx\r\n", "+OK\rX"])
    func malformed(input: String) {
        var buffer = ByteBuffer(string: input)
        #expect(throws: RESPError.self) { try requests.next(&buffer) }
        do { _ = try requests.next(&buffer) } catch { #expect(error.kind == .malformed) }
    }

    @Test("oversized input is refused before it is buffered", arguments: [
        "*1\r\n$99999999\r\n", "*100000\r\n", String(repeating: "A", count: 70_000),
    ])
    func oversized(input: String) {
        var buffer = ByteBuffer(string: input)
        do {
            _ = try requests.next(&buffer)
            Issue.record("expected tooLarge")
        } catch {
            #expect(error.kind == .tooLarge)
        }
    }

    @Test("error replies stay on one line")
    func errorOneLine() throws {
        var buffer = ByteBuffer()
        buffer.writeRESPError("FETCH line one\r\nline two")
        #expect(String(buffer: buffer) == "-FETCH line one  line two\r\n")
    }
}
