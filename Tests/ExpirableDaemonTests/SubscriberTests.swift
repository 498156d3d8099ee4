import ExpirableCore
import ExpirableTestSupport
import Foundation
import Testing
@testable import ExpirableClient

/// `updates(of:)` and `expirablectl watch` against redis-server, which speaks the same RESP2 pub/sub as the
/// daemon: what the client parses, buffers, and how it reconnects, independent of the daemon's side.
@Suite("updates and watch against redis-server's pub/sub", .enabled(if: RedisServer.isInstalled))
struct SubscriberTests {
    @Test("each published value arrives with its name and exact bytes; its description hides the value")
    func messages() async throws {
        let redis = try RedisServer()
        defer { redis.remove() }
        let client = ExpirableClient(socketPath: redis.socket, timeout: .seconds(10))
        let updates = try await client.updates(of: ["token", "other", "token"])
        #expect(updates.names == ["token", "other"])
        #expect(try redis.subscribers("token") == 1 && redis.subscribers("other") == 1)
        let binary: [UInt8] = [0, 13, 10, 255] + Array("tok".utf8)
        #expect(try redis.publish("token", binary) == 1)
        #expect(try redis.publish("other", "second") == 1)
        var iterator = updates.makeAsyncIterator()
        let first = try #require(try await iterator.next())
        #expect(first.name == "token")
        #expect(first.value.bytes == binary)
        #expect("\(first)" == "new value of token: <secret, 7 bytes>")
        let second = try #require(try await iterator.next())
        #expect(second.name == "other" && second.value.bytes == Array("second".utf8))
    }

    @Test("a consumer that falls behind gets the newest value of each name, in order, not a backlog")
    func slowConsumer() async throws {
        let redis = try RedisServer()
        defer { redis.remove() }
        let updates = try await ExpirableClient(socketPath: redis.socket, timeout: .seconds(10)).updates(of: ["a", "b", "end"])
        for i in 1...500 { try redis.publish("a", "a\(i)") }
        try redis.publish("b", "b1")
        try redis.publish("end", "")
        var taken: [String] = []
        for try await update in updates {
            if update.name == "end" { break }
            taken.append(String(decoding: update.value.bytes, as: UTF8.self))
        }
        let numbers = taken.dropLast().compactMap { Int($0.dropFirst()) }
        #expect(taken.last == "b1")
        #expect(taken.dropLast().last == "a500")
        #expect(numbers == numbers.sorted() && Set(numbers).count == numbers.count)
    }

    @Test("the buffer keeps one update per name, the newest, in the place of the first one waiting")
    func bufferPolicy() {
        var buffer = UpdateBuffer()
        for (name, value) in [("a", "a1"), ("b", "b1"), ("a", "a2"), ("c", "c1"), ("a", "a3")] {
            buffer.append(ValueUpdate(name: name, value: Secret(value)))
        }
        #expect(buffer.count == 3)
        var order: [String] = []
        while let update = buffer.popFirst() { order.append(String(decoding: update.value.bytes, as: UTF8.self)) }
        #expect(order == ["a3", "b1", "c1"])
    }

    @Test("after the server restarts the names are subscribed again and new values arrive")
    func resubscribes() async throws {
        let redis = try RedisServer()
        defer { redis.remove() }
        let client = ExpirableClient(socketPath: redis.socket, timeout: .seconds(10))
        var iterator = try await client.updates(of: ["token"]).makeAsyncIterator()
        try redis.publish("token", "before")
        #expect(try await iterator.next()?.value.bytes == Array("before".utf8))
        redis.stop()
        try redis.start()
        #expect(try RedisServer.eventually { try redis.subscribers("token") == 1 })
        try redis.publish("token", "after")
        #expect(try await iterator.next()?.value.bytes == Array("after".utf8))
    }

    @Test("a server not back within the client's timeout ends the sequence with unavailable")
    func givesUp() async throws {
        let redis = try RedisServer()
        defer { redis.remove() }
        let client = ExpirableClient(socketPath: redis.socket, timeout: .milliseconds(500))
        var iterator = try await client.updates(of: ["token"]).makeAsyncIterator()
        redis.stop()
        do {
            _ = try await iterator.next()
            Issue.record("expected unavailable")
        } catch {
            #expect(error.code == .unavailable)
            #expect(error.message.hasPrefix("lost the connection to \(redis.socket) and could not subscribe again within 0.5 seconds"))
        }
        #expect(try await iterator.next() == nil)
    }

    @Test("cancelling the consuming task closes the connection")
    func cancelling() async throws {
        let redis = try RedisServer()
        defer { redis.remove() }
        let updates = try await ExpirableClient(socketPath: redis.socket, timeout: .seconds(10)).updates(of: ["token"])
        let consumer = Task { for try await _ in updates {} }
        #expect(try redis.subscribers("token") == 1)
        consumer.cancel()
        try await consumer.value
        #expect(try RedisServer.eventually { try redis.subscribers("token") == 0 })
    }

    @Test("no names is refused before connecting")
    func noNames() async {
        await #expect(throws: ExpirableClientError(code: .badRequest, message: "no name to watch; give at least one")) {
            _ = try await ExpirableClient(socketPath: "/nonexistent.sock").updates(of: [])
        }
    }

    @Test("expirablectl watch prints the value alone for one name, name and value for several, JSON with --json")
    func watchOutput() throws {
        let redis = try RedisServer()
        defer { redis.remove() }
        let ctl = try TestPaths.product("expirablectl").path
        let one = try RunningTool([ctl, "watch", "token", "--socket", redis.socket])
        let several = try RunningTool([ctl, "watch", "token", "other", "--socket", redis.socket])
        let json = try RunningTool([ctl, "watch", "--json", "token", "--socket", redis.socket])
        #expect(try RedisServer.eventually { try redis.subscribers("token") == 3 && redis.subscribers("other") == 1 })
        try redis.publish("token", "token-1")
        try redis.publish("other", "other-1")
        #expect(one.nextLine(within: 10) == "token-1")
        #expect(several.nextLine(within: 10) == "token token-1")
        #expect(several.nextLine(within: 10) == "other other-1")
        #expect(json.nextLine(within: 10) == #"{"name":"token","value":"token-1"}"#)
        for tool in [one, several, json] { #expect(tool.stop(signal: SIGTERM).stderr == "") }
    }
}
