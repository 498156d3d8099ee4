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

    /// The words of the next request, as text.
    func words(_ buffer: inout ByteBuffer) throws -> [String]? {
        var first: [String]?
        try requests.scanCommands(&buffer) { words in
            first = (0..<words.count).map { words.string($0) }
            return false
        }
        return first
    }

    @Test("a request split at every byte boundary parses once complete, consuming nothing before")
    func incremental() throws {
        var whole = ByteBuffer()
        whole.writeRESPCommand(["GET", "github_access_token"])
        let bytes = Array(whole.readableBytesView)
        for split in 1..<bytes.count {
            var buffer = ByteBuffer(bytes: bytes[..<split])
            #expect(try words(&buffer) == nil)
            #expect(buffer.readableBytes == split)
            buffer.writeBytes(bytes[split...])
            #expect(try words(&buffer) == ["GET", "github_access_token"])
        }
    }

    @Test("a reply split at every byte boundary parses once complete")
    func incrementalReply() throws {
        var whole = ByteBuffer()
        whole.writeRESP(.array([.bulk("token"), .integer(1_700_000_000_000)]))
        let bytes = Array(whole.readableBytesView)
        for split in 1..<bytes.count {
            var buffer = ByteBuffer(bytes: bytes[..<split])
            #expect(try replies.next(&buffer) == nil)
            buffer.writeBytes(bytes[split...])
            #expect(try replies.next(&buffer) == .array([.bulk("token"), .integer(1_700_000_000_000)]))
        }
    }

    @Test("pipelined commands come out one at a time, in order")
    func pipelined() throws {
        var buffer = ByteBuffer()
        for i in 0..<100 { buffer.writeRESPCommand(["GET", "k\(i)"]) }
        for i in 0..<100 { #expect(try words(&buffer) == ["GET", "k\(i)"]) }
        #expect(try words(&buffer) == nil)
    }

    @Test("a look ahead over a pipelined batch finds the names of its leading GETs, in any case, and stops at anything else")
    func leadingGETNames() throws {
        func names(_ text: String, limit: Int = 64) -> [String] {
            var found: [String] = []
            Array(text.utf8).withUnsafeBytes { bytes in
                RESPParser.leadingGETNames(bytes, limit: limit) { found.append(String(decoding: $0, as: UTF8.self)) }
            }
            return found
        }
        var batch = ByteBuffer()
        for name in ["f:a", "f:bb", "plain", "f:" + String(repeating: "k", count: 200)] { batch.writeRESPCommand(["GET", name]) }
        #expect(names(String(buffer: batch)) == ["f:a", "f:bb", "plain", "f:" + String(repeating: "k", count: 200)])
        #expect(names(String(buffer: batch), limit: 2) == ["f:a", "f:bb"])
        #expect(names("*2\r\n$3\r\nget\r\n$3\r\nf:a\r\n*2\r\n$3\r\ngEt\r\n$3\r\nf:b\r\n") == ["f:a", "f:b"])
        // Another command, an inline GET, three words, a name cut short, a length that lies, a missing CRLF.
        #expect(names("*2\r\n$3\r\nGET\r\n$3\r\nf:a\r\n*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$3\r\nf:b\r\n") == ["f:a"])
        #expect(names("GET f:a\r\n*2\r\n$3\r\nGET\r\n$3\r\nf:b\r\n") == [])
        #expect(names("*3\r\n$3\r\nGET\r\n$3\r\nf:a\r\n$1\r\nx\r\n") == [])
        #expect(names("*2\r\n$3\r\nGET\r\n$3\r\nf:a\r\n*2\r\n$3\r\nGET\r\n$9\r\nf:b\r\n") == ["f:a"])
        #expect(names("*2\r\n$3\r\nGET\r\n$2\r\nf:a\r\n") == [])
        #expect(names("*2\r\n$3\r\nGET\r\n$\r\nf:a\r\n") == [])
        #expect(names("*2\r\n$3\r\nGET\r\n$3\r\nf:a\n\n") == [])
        #expect(names("*2\r\n$3\r\nGET\r\n$99999999999999999999\r\nf:a\r\n") == [], "a length past any name")
        #expect(names("") == [] && names("*2\r\n$3\r\nGE") == [])
    }

    @Test("scanning stops where the server says, consuming only what it was given; an error comes after the good requests")
    func scanning() throws {
        var buffer = ByteBuffer(string: "PING\r\n*2\r\n$3\r\nGET\r\n$1\r\na\r\nPING x\r\n*1\r\n$4\r\nPI")
        var seen: [[String]] = []
        try requests.scanCommands(&buffer) { words in
            seen.append((0..<words.count).map { words.string($0) })
            return seen.count < 2
        }
        #expect(seen == [["PING"], ["GET", "a"]])
        #expect(String(buffer: buffer) == "PING x\r\n*1\r\n$4\r\nPI")
        try requests.scanCommands(&buffer) { words in
            seen.append((0..<words.count).map { words.string($0) })
            return true
        }
        #expect(seen.last == ["PING", "x"])
        #expect(String(buffer: buffer) == "*1\r\n$4\r\nPI")

        var bad = ByteBuffer(string: "PING\r\n*1\r\n%3\r\n")
        var before = 0
        #expect(throws: RESPError.self) { try requests.scanCommands(&bad) { _ in before += 1; return true } }
        #expect(before == 1)
    }

    @Test("inline commands split on spaces")
    func inline() throws {
        var buffer = ByteBuffer(string: "GET  token\r\nPING\n")
        #expect(try words(&buffer) == ["GET", "token"])
        #expect(try words(&buffer) == ["PING"])
    }

    @Test("inline commands split on any whitespace and take quoted words as redis-server's sdssplitargs does")
    func inlineQuoting() throws {
        func split(_ text: String) throws -> [String]? {
            var buffer = ByteBuffer(string: text)
            return try words(&buffer)
        }
        #expect(try split("ECHO \"hello world\"\r\n") == ["ECHO", "hello world"])
        #expect(try split("ECHO 'x y'\r\n") == ["ECHO", "x y"])
        #expect(try split("ECHO \"\\x41\\n\\t\\\"q\\\\\\z\"\r\n") == ["ECHO", "A\n\t\"q\\z"])
        #expect(try split("ECHO 'it\\'s \\n'\r\n") == ["ECHO", "it's \\n"])
        #expect(try split("CLIENT SETNAME \"\" x\r\n") == ["CLIENT", "SETNAME", "", "x"])
        #expect(try split("ab\"c d\" 'e'\r\n") == ["abc d", "e"])
        #expect(try split("PING\tx\r\n") == ["PING", "x"])
        #expect(try split("GET tok\rPING\r\n") == ["GET", "tok", "PING"])
        #expect(try split("MGET a \"b c\" d e f\n") == ["MGET", "a", "b c", "d", "e", "f"])
        for bad in ["ECHO \"a\r\n", "ECHO 'a\n", "ECHO \"a\"b\r\n", "ECHO 'a'b\r\n"] {
            var buffer = ByteBuffer(string: bad)
            #expect(throws: RESPError.malformed("unbalanced quotes in inline request")) { try requests.scanCommands(&buffer) { _ in true } }
        }
    }

    @Test("an array header of -1 or less is skipped unanswered, as Redis does with *0")
    func negativeArrayHeader() throws {
        var buffer = ByteBuffer(string: "*-1\r\n*-5\r\n*1\r\n$4\r\nPING\r\n")
        #expect(try words(&buffer) == ["PING"])
    }

    @Test("command words match keywords regardless of case")
    func keywords() throws {
        var buffer = ByteBuffer(string: "*2\r\n$3\r\ngEt\r\n$1\r\nx\r\n")
        var checked = false
        try requests.scanCommands(&buffer) { request in
            #expect(request.word(0, is: "GET"))
            #expect(!request.word(0, is: "GETX"))
            #expect(!request.word(1, is: "GET"))
            checked = true
            return true
        }
        #expect(checked)
    }

    @Test("malformed requests are refused", arguments: ["*2\r\n$3\r\nGET\r\n$x\r\n", "*1\r\n$3\r\nGETX\r\n", "*1\r\n%3\r\n", ":12\r\n", "*1\r\n*1\r\n$1\r\nx\r\n", "$3\r\nGET\r\n"])
    func malformed(input: String) {
        var buffer = ByteBuffer(string: input)
        do {
            try requests.scanCommands(&buffer) { _ in true }
            Issue.record("expected malformed")
        } catch {
            #expect(error.kind == .malformed)
        }
    }

    @Test("malformed replies are refused", arguments: [":12a\r\n", "+OK\rX", "$x\r\n", "%3\r\n"])
    func malformedReply(input: String) {
        var buffer = ByteBuffer(string: input)
        do {
            _ = try replies.next(&buffer)
            Issue.record("expected malformed")
        } catch {
            #expect(error.kind == .malformed)
        }
    }

    @Test("oversized input is refused before it is buffered", arguments: [
        "*1\r\n$99999999\r\n", "*100000\r\n", String(repeating: "A", count: 70_000),
    ])
    func oversized(input: String) {
        var buffer = ByteBuffer(string: input)
        do {
            try requests.scanCommands(&buffer) { _ in true }
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
