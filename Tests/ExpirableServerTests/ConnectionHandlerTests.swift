import ExpirableCore
import ExpirableRESP
import Logging
import NIOCore
import NIOEmbedded
import Synchronization
import Testing
@testable import ExpirableServer

/// A fetcher whose calls wait until the test releases them.
final class GatedFetcher: Fetcher {
    private let waiting = Mutex<[@Sendable (Result<Fetched, ExpirableError>) -> Void]>([])
    var calls: Int { waiting.withLock { $0.count } }

    func fetch(completion: @escaping @Sendable (Result<Fetched, ExpirableError>) -> Void) {
        waiting.withLock { $0.append(completion) }
    }

    func release(_ value: String, lifetimeMillis: Int64 = 60_000) {
        let completions = waiting.withLock { w in defer { w = [] }; return w }
        let fetched = Fetched(value: Secret(value), expiry: .at(unixMillis: SystemClock().unixMillis + lifetimeMillis))
        for completion in completions { completion(.success(fetched)) }
    }
}

/// One ConnectionHandler on an EmbeddedChannel, with an engine of two expirables, `a` and `b`, whose fetches
/// the test releases.
struct Harness {
    let channel = EmbeddedChannel()
    let engine: Engine
    let fetchers = ["a": GatedFetcher(), "b": GatedFetcher(), "f": GatedFetcher()]
    let state: ServerState

    /// With `keyed`, `f` is a keyed family (its members share the one gated fetcher); otherwise `f` is unused.
    init(options: ServerOptions = ServerOptions(socketPath: "/unused"), keyed: Bool = false) throws {
        engine = Engine(expirables: fetchers.compactMap { name, fetcher in
            name != "f" ? ExpirableDefinition(name: name, fetcher: fetcher)
                : keyed ? ExpirableDefinition(name: name, keyed: KeyedPolicy(maxKeys: 100, keyIdle: .seconds(3600)), fetcher: fetcher) : nil
        })
        state = ServerState(engine: engine, options: options, logger: Logger(label: "test"))
        let state = self.state
        engine.observeNewValues { name, fetched in state.subscriptions.publish(name, fetched) }
        try channel.pipeline.syncOperations.addHandler(ConnectionHandler(state: state))
        try channel.connect(to: SocketAddress(unixDomainSocketPath: "/unused")).wait()
    }

    func send(_ text: String) throws {
        try channel.writeInbound(ByteBuffer(string: text))
        channel.pipeline.fireChannelReadComplete()
    }

    /// Everything written to the client so far, after running the event loop's pending tasks.
    func received() throws -> String {
        channel.embeddedEventLoop.run()
        return try writtenSoFar()
    }

    /// Fills `name` with `value` through a GET.
    func store(_ name: String, _ value: String) throws {
        try send("GET \(name)\r\n")
        fetchers[String(name.prefix { $0 != ":" })]!.release(value)
        _ = try received()
    }

    /// Delivers `text` as one read, as a socket's event loop would, without running the loop's pending tasks
    /// afterwards (`writeInbound` runs them).
    func read(_ text: String) {
        channel.pipeline.fireChannelRead(ByteBuffer(string: text))
        channel.pipeline.fireChannelReadComplete()
    }

    /// Everything written to the client so far, without running the event loop's pending tasks.
    func writtenSoFar() throws -> String {
        var text = ""
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) { text += String(buffer: buffer) }
        return text
    }
}

@Suite("Connection handler (EmbeddedChannel)")
struct ConnectionHandlerTests {
    @Test("a pipelined batch naming keyed members runs once the loop's reads are done, in order with what is read behind it, and not at all once closed")
    func readAheadRound() throws {
        let h = try Harness(keyed: true)
        for key in ["x", "y", "z"] { try h.store("f:\(key)", "value-\(key)") }
        try h.store("a", "alpha")
        // 71 bytes with a ':' (more than 64): read ahead, so answered from the loop's task queue, not during the read.
        h.read("GET f:x\r\nPING\r\nGET a\r\nGET f:y\r\n*2\r\n$3\r\nGET\r\n$3\r\nf:z\r\nGET f:y\r\nGET f:x\r\n")
        #expect(try h.writtenSoFar() == "")
        // Read before the round ran: it waits for the batch ahead of it, then both are answered in order.
        h.read("GET f:z\r\nGET b\r\n")
        #expect(try h.writtenSoFar() == "")
        #expect(h.fetchers["b"]!.calls == 0, "a request read behind a waiting batch must not run ahead of it")
        let first = try h.received()
        #expect(first == "$7\r\nvalue-x\r\n+PONG\r\n$5\r\nalpha\r\n$7\r\nvalue-y\r\n$7\r\nvalue-z\r\n$7\r\nvalue-y\r\n$7\r\nvalue-x\r\n"
                + "$7\r\nvalue-z\r\n")
        // `b` is not stored: its GET waits on the plugin, and is answered once released.
        #expect(h.fetchers["b"]!.calls == 1)
        h.fetchers["b"]!.release("beta")
        #expect(try h.received() == "$4\r\nbeta\r\n")

        // A client that sends a batch and shuts its writing side at once is answered before the connection closes.
        let halfClosed = try Harness(keyed: true)
        for key in ["x", "y", "z"] { try halfClosed.store("f:\(key)", "value-\(key)") }
        halfClosed.read(String(repeating: "GET f:x\r\nGET f:y\r\nGET f:z\r\n", count: 3))
        halfClosed.channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        #expect(halfClosed.channel.isActive, "closed before the batch waiting for its round was answered")
        #expect(try halfClosed.received() == String(repeating: "$7\r\nvalue-x\r\n$7\r\nvalue-y\r\n$7\r\nvalue-z\r\n", count: 3))
        #expect(!halfClosed.channel.isActive)

        // Shutting down (quiescing) answers a batch waiting for its round before closing.
        let quiesced = try Harness(keyed: true)
        for key in ["x", "y", "z"] { try quiesced.store("f:\(key)", "value-\(key)") }
        quiesced.read(String(repeating: "GET f:x\r\nGET f:y\r\nGET f:z\r\n", count: 3))
        quiesced.channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        #expect(try quiesced.writtenSoFar() == String(repeating: "$7\r\nvalue-x\r\n$7\r\nvalue-y\r\n$7\r\nvalue-z\r\n", count: 3))

        // A batch whose connection closes before the round runs: nothing is answered, nothing breaks.
        h.read(String(repeating: "GET f:x\r\nGET f:y\r\nGET f:z\r\n", count: 3))
        #expect(try h.writtenSoFar() == "")
        h.channel.close(promise: nil)  // not `.wait()`: on an EmbeddedChannel that runs the loop's tasks first
        let late = try h.received()
        #expect(late == "", "\(late.debugDescription)")
    }

    @Test("GET of a valid value is answered inline; pipelined requests are answered in order")
    func inlineAnswers() throws {
        let h = try Harness()
        try h.store("a", "alpha")
        try h.send("GET a\r\nPING\r\n*2\r\n$3\r\nGET\r\n$1\r\na\r\n")
        #expect(try h.received() == "$5\r\nalpha\r\n+PONG\r\n$5\r\nalpha\r\n")
    }

    @Test("a miss holds the requests behind it, then answers them in order")
    func missHoldsLaterRequests() throws {
        let h = try Harness()
        try h.send("GET a\r\nPING\r\nECHO x\r\n")
        #expect(try h.received() == "")
        h.fetchers["a"]!.release("alpha")
        #expect(try h.received() == "$5\r\nalpha\r\n+PONG\r\n$1\r\nx\r\n")
    }

    @Test("MULTI queues, EXEC answers one array in order, waiting on a miss inside it")
    func transactions() throws {
        let h = try Harness()
        try h.store("a", "alpha")
        try h.send("MULTI\r\nGET a\r\nGET b\r\nPTTL nope\r\nEXEC\r\nPING\r\n")
        #expect(try h.received() == "+OK\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n*3\r\n$5\r\nalpha\r\n")
        h.fetchers["b"]!.release("beta")
        #expect(try h.received() == "$4\r\nbeta\r\n-NOTFOUND no expirable named 'nope' is configured; `expirablectl list` shows the names\r\n+PONG\r\n")
    }

    @Test("a command refused inside MULTI fails the transaction at EXEC; DISCARD and a lone EXEC are errors as in Redis")
    func failedTransactions() throws {
        let h = try Harness()
        try h.send("MULTI\r\nNOSUCH\r\nGET a\r\nEXEC\r\nEXEC\r\nDISCARD\r\n")
        let reply = try h.received()
        #expect(reply.hasPrefix("+OK\r\n-ERR unknown command 'NOSUCH'"))
        #expect(reply.hasSuffix("+QUEUED\r\n-EXECABORT Transaction discarded because of previous errors.\r\n-ERR EXEC without MULTI\r\n-ERR DISCARD without MULTI\r\n"))
        #expect(h.fetchers["a"]!.calls == 0)
    }

    @Test("HELLO 3 switches to RESP3: a map, null as _, subscriptions as push frames; RESET goes back to RESP2")
    func resp3() throws {
        let h = try Harness()
        try h.send("HELLO 3\r\n")
        let hello = try h.received()
        #expect(hello.hasPrefix("%7\r\n$6\r\nserver\r\n$9\r\nexpirable\r\n"))
        #expect(hello.contains("$5\r\nproto\r\n:3\r\n"))
        try h.send("CLIENT GETNAME\r\nMGET nope\r\nSUBSCRIBE a\r\n")
        #expect(try h.received() == "_\r\n*1\r\n_\r\n>3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n")
        try h.send("GET a\r\n")
        h.fetchers["a"]!.release("alpha")
        // The push of the new value and the GET's reply, in either order.
        let answer = try h.received()
        #expect(answer.contains(">3\r\n$7\r\nmessage\r\n$1\r\na\r\n$5\r\nalpha\r\n"))
        #expect(answer.contains("$5\r\nalpha\r\n"))
        try h.send("RESET\r\nCLIENT GETNAME\r\n")
        #expect(try h.received() == "+RESET\r\n$-1\r\n")
        #expect(h.state.subscriptions.count("a") == 0)
    }

    @Test("in RESP2 a subscribed connection may only (un)subscribe, ping, quit or reset; PING answers as in pub/sub")
    func resp2SubscribedMode() throws {
        let h = try Harness()
        try h.send("SUBSCRIBE a b\r\nGET a\r\nPING\r\nUNSUBSCRIBE\r\nGET nope\r\n")
        let reply = try h.received()
        #expect(reply.hasPrefix("*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n*3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n-ERR Can't execute 'get'"))
        #expect(reply.hasSuffix("*2\r\n$4\r\npong\r\n$0\r\n\r\n*3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:1\r\n*3\r\n$11\r\nunsubscribe\r\n$1\r\nb\r\n:0\r\n-NOTFOUND no expirable named 'nope' is configured; `expirablectl list` shows the names\r\n"))
    }

    @Test("a new value is pushed to subscribers as a pub/sub message; a clear pushes nothing")
    func pushes() throws {
        let h = try Harness()
        try h.send("SUBSCRIBE a\r\n")
        _ = try h.received()
        h.engine.fetch("a") { _ in }
        h.fetchers["a"]!.release("alpha")
        #expect(try h.received() == "*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$5\r\nalpha\r\n")
        h.engine.clear("a")
        #expect(try h.received() == "")
    }

    @Test("past the output bound nothing more is answered or read until the client drains; then the rest is answered")
    func backPressure() throws {
        let h = try Harness()
        try h.store("a", String(repeating: "v", count: 40_000))
        h.channel.isWritable = false
        try h.send(String(repeating: "GET a\r\n", count: 10))
        // Replies go out in 64 KiB pieces: after the first piece the connection is throttled.
        let first = try h.received()
        #expect(first.occurrences(of: "$40000\r\n") == 2)
        h.channel.isWritable = true
        h.channel.pipeline.fireChannelWritabilityChanged()
        let rest = try h.received()
        #expect(rest.occurrences(of: "$40000\r\n") == 8)
    }

    @Test("one MGET or COMMAND INFO of many names is written element by element under the output bound; the rest follows once the client reads")
    func longRepliesAreBounded() throws {
        let h = try Harness()
        try h.store("a", String(repeating: "v", count: 40_000))
        h.channel.isWritable = false
        try h.send("MGET" + String(repeating: " a", count: 100) + "\r\nPING\r\n")
        // 4 MB of reply: no more than a few 64 KiB pieces are written before the connection is throttled.
        let first = try h.received()
        #expect(first.utf8.count < 200_000, "\(first.utf8.count) bytes written for a client that does not read")
        h.channel.isWritable = true
        h.channel.pipeline.fireChannelWritabilityChanged()
        let rest = first + (try h.received())
        #expect(rest.hasPrefix("*100\r\n$40000\r\n"))
        #expect(rest.occurrences(of: "$40000\r\n") == 100)
        #expect(rest.hasSuffix("\r\n+PONG\r\n"), "PING is answered after the whole MGET")

        // COMMAND INFO and DOCS answer one element per name given, as Redis does.
        let c = try Harness()
        c.channel.isWritable = false
        try c.send("COMMAND INFO" + String(repeating: " get", count: 5_000) + "\r\nPING\r\n")
        let info = try c.received()
        #expect(info.utf8.count < 200_000, "\(info.utf8.count) bytes written for a client that does not read")
        c.channel.isWritable = true
        c.channel.pipeline.fireChannelWritabilityChanged()
        let all = info + (try c.received())
        #expect(all.hasPrefix("*5000\r\n*10\r\n$3\r\nget\r\n"))
        #expect(all.occurrences(of: "*10\r\n$3\r\nget\r\n") == 5_000)
        #expect(all.hasSuffix("+PONG\r\n"))
    }

    @Test("a long reply the client stops reading in the middle keeps its place: in a transaction's array, and ahead of pushes")
    func longReplyKeepsItsPlace() throws {
        let h = try Harness()
        try h.store("a", String(repeating: "v", count: 40_000))
        h.channel.isWritable = false
        try h.send("MULTI\r\nMGET" + String(repeating: " a", count: 100) + "\r\nPING\r\nEXEC\r\nECHO after\r\n")
        var all = try h.received()
        #expect(all.utf8.count < 200_000)
        h.channel.isWritable = true
        h.channel.pipeline.fireChannelWritabilityChanged()
        all += try h.received()
        #expect(all.hasPrefix("+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n*100\r\n$40000\r\n"))
        #expect(all.occurrences(of: "$40000\r\n") == 100)
        #expect(all.hasSuffix("$40000\r\n" + String(repeating: "v", count: 40_000) + "\r\n+PONG\r\n$5\r\nafter\r\n"))

        // RESP3: a new value for a subscription arrives while the MGET waits for the client; it follows the MGET.
        let p = try Harness()
        try p.store("a", String(repeating: "v", count: 40_000))
        try p.send("HELLO 3\r\nSUBSCRIBE b\r\n")
        _ = try p.received()
        p.channel.isWritable = false
        try p.send("MGET" + String(repeating: " a", count: 100) + "\r\n")
        var reply = try p.received()
        p.engine.fetch("b") { _ in }
        p.fetchers["b"]!.release("beta")
        reply += try p.received()
        #expect(!reply.contains(">3\r\n"), "a push went out in the middle of the MGET's array")
        p.channel.isWritable = true
        p.channel.pipeline.fireChannelWritabilityChanged()
        reply += try p.received()
        #expect(reply.occurrences(of: "$40000\r\n") == 100)
        #expect(reply.hasSuffix(String(repeating: "v", count: 40_000) + "\r\n>3\r\n$7\r\nmessage\r\n$1\r\nb\r\n$4\r\nbeta\r\n"))
    }

    @Test("draining answers every request already read: those behind a waiting one once it is answered, then closes")
    func drainingAnswersWhatWasRead() throws {
        let h = try Harness()
        try h.store("b", "beta")
        try h.send("GET a\r\nGET b\r\nPING\r\n")
        h.channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        #expect(h.channel.isActive, "closed while a reply was owed")
        h.fetchers["a"]!.release("alpha")
        #expect(try h.received() == "$5\r\nalpha\r\n$4\r\nbeta\r\n+PONG\r\n")
        #expect(!h.channel.isActive)
    }

    @Test("draining a client that is not reading: what it sent is answered once it reads; if it never does, it is closed at the drain time")
    func drainingAnUnreadConnection() throws {
        let h = try Harness()
        try h.store("a", String(repeating: "v", count: 40_000))
        h.channel.isWritable = false
        try h.send("MGET" + String(repeating: " a", count: 100) + "\r\nPING\r\n")
        var all = try h.received()
        h.channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        #expect(h.channel.isActive, "closed in the middle of an MGET its client may still read")
        h.channel.isWritable = true
        h.channel.pipeline.fireChannelWritabilityChanged()
        all += try h.received()
        #expect(all.occurrences(of: "$40000\r\n") == 100)
        #expect(all.hasSuffix("\r\n+PONG\r\n"))
        #expect(!h.channel.isActive)

        let stuck = try Harness()
        try stuck.store("a", String(repeating: "v", count: 40_000))
        stuck.channel.isWritable = false
        try stuck.send("MGET" + String(repeating: " a", count: 100) + "\r\n")
        stuck.channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        stuck.channel.embeddedEventLoop.advanceTime(by: .seconds(4))
        #expect(stuck.channel.isActive)
        stuck.channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        #expect(!stuck.channel.isActive)
    }

    @Test("draining past the drain time: every request still owed, the waiting one and those behind it, gets an error before the close")
    func drainingPastItsTime() throws {
        let h = try Harness(options: ServerOptions(socketPath: "/unused", drainTimeout: .seconds(2)))
        try h.send("GET a\r\nPING\r\nGET b\r\n")
        h.channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        h.channel.embeddedEventLoop.advanceTime(by: .seconds(2))
        let error = "-TRYAGAIN the daemon is stopping and did not answer within its drain time (2000 ms); send the request again once it is back\r\n"
        #expect(try h.received() == String(repeating: error, count: 3))
        #expect(!h.channel.isActive)
        // The plugin's late answer goes nowhere.
        h.fetchers["a"]!.release("alpha")
        #expect(try h.received() == "")
    }

    @Test("inline commands take quoted words as redis-server does; unbalanced quotes are a protocol error")
    func inlineQuoting() throws {
        let h = try Harness()
        try h.send("ECHO \"hello world\"\r\nECHO 'x y'\r\nECHO \"\\x41\"\r\nCLIENT SETNAME app\r\nCLIENT SETNAME \"\"\r\nCLIENT GETNAME\r\nPING\tx\r\n")
        #expect(try h.received() == "$11\r\nhello world\r\n$3\r\nx y\r\n$1\r\nA\r\n+OK\r\n+OK\r\n$-1\r\n$1\r\nx\r\n")
        // Queued inside MULTI, a quoted word is run as it was sent.
        try h.send("MULTI\r\nECHO \"a b\"\r\nEXEC\r\n")
        #expect(try h.received() == "+OK\r\n+QUEUED\r\n*1\r\n$3\r\na b\r\n")
        try h.send("ECHO \"a\r\n")
        #expect(try h.received() == "-ERR Protocol error: unbalanced quotes in inline request; closing the connection\r\n")
    }

    @Test("INFO is in Redis's form, a '# Section' line before its fields; several sections or names are answered in one reply")
    func infoSections() throws {
        let h = try Harness()
        func text(_ reply: String) -> String { reply.firstRange(of: "\r\n").map { String(reply[$0.upperBound...]) } ?? reply }
        try h.send("INFO\r\n")
        let server = text(try h.received())
        #expect(server.hasPrefix("# Server\r\ndaemon:expirabled\r\n"))
        try h.send("INFO a\r\n")
        #expect(text(try h.received()).hasPrefix("# Expirable\r\nname:a\r\n"))
        try h.send("INFO server clients\r\n")
        let two = text(try h.received())
        #expect(two.hasPrefix("# Server\r\n") && two.occurrences(of: "# Server") == 1, "\(two)")
        try h.send("INFO a server b\r\n")
        let three = text(try h.received())
        #expect(three.hasPrefix("# Expirable\r\nname:a\r\n"))
        #expect(three.contains("\r\n\r\n# Server\r\ndaemon:expirabled\r\n"))
        #expect(three.contains("\r\n\r\n# Expirable\r\nname:b\r\n"))
        try h.send("INFO a nope\r\n")
        #expect(try h.received().hasPrefix("-NOTFOUND no expirable named 'nope'"))
    }

    @Test("COMMAND describes every command answered, RELOAD, CONFIG and AUTH included; FETCH's MINTTL is a token with its ms")
    func commandTable() throws {
        let h = try Harness()
        try h.send("COMMAND LIST\r\n")
        let list = try h.received()
        for name in ["reload", "config", "auth", "get", "fetch", "command"] {
            #expect(list.contains("$\(name.count)\r\n\(name)\r\n"), "COMMAND LIST lacks \(name)")
        }
        try h.send("COMMAND COUNT\r\n")
        #expect(try h.received() == ":\(list.occurrences(of: "$") )\r\n")
        try h.send("COMMAND DOCS fetch\r\n")
        let docs = try h.received()
        #expect(docs.contains("$5\r\ntoken\r\n$6\r\nMINTTL\r\n"), "\(docs)")
        #expect(docs.contains("$12\r\ndisplay_text\r\n$2\r\nms\r\n"), "\(docs)")
        #expect(!docs.contains("pure-token"), "\(docs)")
    }

    @Test("HELLO while subscribed in RESP2 is refused with what to do instead")
    func helloWhileSubscribed() throws {
        let h = try Harness()
        try h.send("SUBSCRIBE a\r\nHELLO 3\r\n")
        let reply = try h.received()
        #expect(reply.contains("-ERR Can't execute 'hello'"))
        #expect(!reply.contains("HELLO 3 lifts this"), "\(reply)")
        #expect(reply.contains("UNSUBSCRIBE or RESET first"), "\(reply)")
    }

    @Test("Redis compatibility: CONFIG GET save/appendonly as a Redis without persistence, *-1 skipped, a long client name's error, short ASCII unknown-command errors")
    func redisCompatibility() throws {
        let h = try Harness()
        try h.send("CONFIG GET save\r\nCONFIG GET appendonly\r\nCONFIG GET nope\r\n")
        #expect(try h.received() == "*2\r\n$4\r\nsave\r\n$0\r\n\r\n*2\r\n$10\r\nappendonly\r\n$2\r\nno\r\n*0\r\n")
        try h.send("*-1\r\nPING\r\n")
        #expect(try h.received() == "+PONG\r\n")
        try h.send("CLIENT SETNAME \(String(repeating: "n", count: 257))\r\nCLIENT SETNAME a\u{1}b\r\n")
        #expect(try h.received() == "-ERR client name of 257 bytes; names are at most 256 bytes\r\n-ERR Client names cannot contain spaces, newlines or special characters.\r\n")
        try h.send("NOSUCH x\r\n")
        let unknown = try h.received()
        #expect(unknown.hasPrefix("-ERR unknown command 'NOSUCH'"))
        #expect(unknown.utf8.count < 120 && unknown.utf8.allSatisfy { $0 < 0x80 }, "\(unknown)")
    }

    @Test("after a half-close every request read is answered, then the connection closes")
    func halfClose() throws {
        let h = try Harness()
        try h.send("GET a\r\nPING\r\n")
        h.channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        #expect(h.channel.isActive)
        h.fetchers["a"]!.release("alpha")
        #expect(try h.received() == "$5\r\nalpha\r\n+PONG\r\n")
        #expect(!h.channel.isActive)
    }

    @Test("an idle connection closes after idle_timeout, a half-sent request after request_timeout")
    func timeouts() throws {
        let options = ServerOptions(socketPath: "/unused", idleTimeout: .seconds(60), requestTimeout: .seconds(2))
        let idle = try Harness(options: options)
        idle.channel.embeddedEventLoop.advanceTime(by: .seconds(59))
        #expect(idle.channel.isActive)
        idle.channel.embeddedEventLoop.advanceTime(by: .seconds(2))
        #expect(!idle.channel.isActive)

        // request_timeout counts from the last read of a request left half sent, within a tenth of a second.
        let partial = try Harness(options: options)
        try partial.send("*2\r\n$3\r\nGET")
        partial.channel.embeddedEventLoop.advanceTime(by: .milliseconds(1_500))
        try partial.send("\r\n$1")
        partial.channel.embeddedEventLoop.advanceTime(by: .milliseconds(1_900))
        #expect(partial.channel.isActive, "closed before request_timeout passed since the last read")
        partial.channel.embeddedEventLoop.advanceTime(by: .milliseconds(200))
        #expect(try partial.received().hasPrefix("-ERR request incomplete after 2000 ms (request_timeout)"))
        #expect(!partial.channel.isActive)
    }

    @Test("CLIENT SETNAME/GETNAME/SETINFO/ID, SELECT 0 only, ECHO, TTL in seconds and PTTL in milliseconds")
    func redisConnectionCommands() throws {
        let h = try Harness()
        try h.store("a", "alpha")
        try h.send("CLIENT SETNAME app\r\nCLIENT GETNAME\r\nCLIENT SETINFO LIB-NAME redis-py\r\nSELECT 0\r\nSELECT 3\r\nECHO hi\r\nTTL a\r\nTTL b\r\nEXISTS a b a\r\nTYPE a\r\nTYPE nope\r\nDBSIZE\r\n")
        let reply = try h.received()
        #expect(reply.hasPrefix("+OK\r\n$3\r\napp\r\n+OK\r\n+OK\r\n-ERR DB index is out of range"))
        #expect(reply.hasSuffix("$2\r\nhi\r\n:60\r\n:-2\r\n:2\r\n+string\r\n+none\r\n:1\r\n"))
        try h.send("INFO server\r\nINFO nope\r\n")
        let info = try h.received()
        #expect(info.hasPrefix("$") && info.contains("version:"), "INFO server is the daemon's own")
        #expect(info.hasSuffix("-NOTFOUND no expirable named 'nope' is configured; `expirablectl list` shows the names\r\n"))
        try h.send("PTTL a\r\n")
        let pttl = try #require(Int(try h.received().dropFirst().dropLast(1)))
        #expect(pttl > 59_000 && pttl <= 60_000)
    }
}

extension String {
    func occurrences(of part: String) -> Int {
        var count = 0
        var rest = self[...]
        while let range = rest.firstRange(of: part) {
            count += 1
            rest = rest[range.upperBound...]
        }
        return count
    }
}
