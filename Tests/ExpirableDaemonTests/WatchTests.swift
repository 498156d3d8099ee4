import ExpirableClient
import ExpirableTestSupport
import Foundation
import Testing

/// `updates(of:)` and `expirablectl watch` against a real daemon (SUBSCRIBE, SPEC §6 and §7).
@Suite("updates and watch against a real daemon")
struct WatchTests {
    @Test("a value stored after a CLEAR and a GET from another connection is delivered; the clear is not")
    func clearThenGet() async throws {
        let daemon = try ServingTests.start(ServingTests.counter())
        defer { daemon.remove() }
        let client = daemon.client
        #expect(try await client.value("token") == "token-1")
        var updates = try await client.updates(of: ["token"]).makeAsyncIterator()
        try await client.clear("token")
        #expect(try await client.value("token") == "token-2")
        let update = try #require(try await updates.next())
        #expect(update.name == "token")
        #expect(update.value.bytes == Array("token-2".utf8))
    }

    @Test("an eager refresh is delivered like a fetch")
    func eagerRefresh() async throws {
        let daemon = try ServingTests.start("""
            [expirable.token]
            plugin = "counter"
            refresh = "eager"
            before_expiry = "2500ms"
            # The first value is the client's fetch, not a prefetch at start.
            prefetch = false
            [expirable.token.params]
            prefix = "token-"
            ttl_ms = 3000
            count_file = "COUNT/calls"
            """)
        defer { daemon.remove() }
        let client = daemon.client
        var updates = try await client.updates(of: ["token"]).makeAsyncIterator()
        #expect(try await client.value("token") == "token-1")
        // A consumer slower than the refreshes sees the newest value per name (the buffer's policy), so on a
        // busy machine the first update may already be token-2: what matters is that refreshes arrive, in order.
        func number(_ update: ValueUpdate?) -> Int? {
            update.flatMap { Int(String(decoding: $0.value.bytes, as: UTF8.self).dropFirst("token-".count)) }
        }
        let first = try #require(number(try await updates.next()))
        let second = try #require(number(try await updates.next()))
        #expect(first >= 1 && second > first, "updates token-\(first), then token-\(second)")
    }

    @Test("an unknown name among the names throws NOTFOUND")
    func unknownName() async throws {
        let daemon = try ServingTests.start(ServingTests.counter())
        defer { daemon.remove() }
        do {
            _ = try await daemon.client.updates(of: ["token", "nope"])
            Issue.record("expected NOTFOUND")
        } catch {
            #expect(error.code == .notFound)
        }
    }

    @Test("after the daemon restarts the names are subscribed again and new values arrive")
    func resubscribes() async throws {
        let daemon = try ServingTests.start(ServingTests.counter())
        defer { daemon.remove() }
        let client = daemon.client
        let updates = try await client.updates(of: ["token"])
        #expect(daemon.stop() == 0)
        try daemon.start()
        // Nothing tells this test when the subscription is back, so values are stored until one arrives.
        let update = try await Self.whileRotating(daemon) {
            var iterator = updates.makeAsyncIterator()
            return try await iterator.next()
        }
        #expect(update?.name == "token")
        #expect(update.map { String(decoding: $0.value.bytes, as: UTF8.self).hasPrefix("token-") } == true)
    }

    @Test("expirablectl watch prints each rotation, as text and as JSON")
    func watchPrintsRotations() throws {
        let daemon = try ServingTests.start(ServingTests.counter())
        defer { daemon.remove() }
        let ctl = try TestPaths.product("expirablectl").path
        let plain = try RunningTool([ctl, "watch", "token", "--socket", daemon.socket])
        let json = try RunningTool([ctl, "watch", "token", "--json", "--socket", daemon.socket])
        #expect(try Self.firstLine(of: plain, rotating: daemon)?.hasPrefix("token-") == true)
        let object = try #require(try Self.firstLine(of: json, rotating: daemon))
        let decoded = try #require(try JSONSerialization.jsonObject(with: Data(object.utf8)) as? [String: String])
        #expect(decoded["name"] == "token")
        #expect(decoded["value"]?.hasPrefix("token-") == true)
        #expect(plain.stop().stderr == "")
        #expect(json.stop().stderr == "")
    }

    @Test("expirablectl watch exits 66 with NOTFOUND on stderr for an unknown name")
    func watchUnknownName() throws {
        let daemon = try ServingTests.start(ServingTests.counter())
        defer { daemon.remove() }
        let result = try daemon.ctl("watch", "token", "nope")
        #expect(result.status == 66)
        #expect(result.stderr.hasPrefix("expirablectl: NOTFOUND"))
    }

    @Test("expirablectl watch exits 69 with UNAVAILABLE on stderr when the daemon cannot be reached")
    func watchUnreachable() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let socket = directory.appending("none.sock")
        let result = try runTool(TestPaths.product("expirablectl").path, ["watch", "token", "--socket", socket])
        #expect(result.status == 69)
        #expect(result.stderr == "expirablectl: UNAVAILABLE no socket \(socket): is expirabled running, and is that its server.socket?\n")
    }

    @Test("a name a reload removes: its subscribers get Redis's unsubscribe message for it, and watch ends with NOTFOUND, 66")
    func removedByReload() throws {
        let daemon = try ServingTests.start(ServingTests.counter() + ServingTests.counter("other", count: "other"))
        defer { daemon.remove() }
        let watch = try RunningTool([try TestPaths.product("expirablectl").path, "watch", "token", "--socket", daemon.socket])
        #expect(try Self.firstLine(of: watch, rotating: daemon)?.hasPrefix("token-") == true, "subscribed")
        // A plain Redis subscriber (what redis-cli SUBSCRIBE sees), to the removed name and to one that stays.
        let raw = try RawConnection(daemon.socket)
        #expect(raw.roundTrip("*3\r\n$9\r\nSUBSCRIBE\r\n$5\r\ntoken\r\n$5\r\nother\r\n", expecting: 2)
            == "*3\r\n$9\r\nsubscribe\r\n$5\r\ntoken\r\n:1\r\n*3\r\n$9\r\nsubscribe\r\n$5\r\nother\r\n:2\r\n")
        try ReloadTests.rewrite(daemon, ServingTests.counter("other", count: "other"))
        #expect(try daemon.redis("RELOAD").contains("removed: token"))
        #expect(raw.receive(replies: 1) == "*3\r\n$11\r\nunsubscribe\r\n$5\r\ntoken\r\n:1\r\n", "told, with the count left")
        let ended = watch.finish(within: 20)
        #expect(ended.status == 66, "\(ended.stderr)")
        #expect(ended.stderr.hasPrefix("expirablectl: NOTFOUND no expirable named 'token' is configured"), "\(ended.stderr)")
        // The name that stays is still watched on that connection.
        _ = try daemon.redis("GET", "other")
        #expect(raw.receive(replies: 1) == "*3\r\n$7\r\nmessage\r\n$5\r\nother\r\n$7\r\nother-1\r\n")
    }

    @Test("watch with several names refuses a value holding a newline (65, pointing at --json) rather than print a line that reads as another name's")
    func newlineCannotForgeALine() throws {
        let daemon = try ServingTests.start(ServingTests.counter() + """
            [expirable.nl]
            plugin = "command"
            scope = "local"
            [expirable.nl.params]
            shell = "printf 'x\\ntoken forged'"
            trim = false
            ttl = "1h"

            """)
        defer { daemon.remove() }
        let watch = try RunningTool([try TestPaths.product("expirablectl").path, "watch", "nl", "token", "--socket", daemon.socket])
        #expect(try Self.firstLine(of: watch, rotating: daemon)?.hasPrefix("token token-") == true, "subscribed")
        _ = try daemon.redis("GET", "nl")
        let ended = watch.finish(within: 20)
        #expect(ended.status == 65, "\(ended.stderr)")
        #expect(ended.stderr == "expirablectl: the value of nl holds a newline or carriage return, which would end its NAME VALUE line early; watch --json carries it on one line\n")
        #expect(watch.nextLine(within: 1) == nil, "nothing of it was printed")
    }

    /// Runs `body` while clearing and fetching `token` every 100 ms, so a subscriber whose subscription is
    /// not known to be in place yet still sees a new value; gives up after 30 s.
    static func whileRotating<T: Sendable>(_ daemon: DaemonProcess, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        let client = daemon.client
        let rotating = Task {
            while !Task.isCancelled {
                try? await client.clear("token")
                _ = try? await client.value("token")
                try? await Task.sleep(for: .milliseconds(100))
            }
        }
        defer { rotating.cancel() }
        return try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask { try await body() }
            group.addTask {
                try await Task.sleep(for: .seconds(30))
                return nil
            }
            defer { group.cancelAll() }
            guard let result = try await group.next(), let result else { throw TestSupportError("nothing arrived within 30 s of rotations") }
            return result
        }
    }

    /// The first line `tool` prints while `token` is cleared and fetched again and again (at most 100 times).
    static func firstLine(of tool: RunningTool, rotating daemon: DaemonProcess) throws -> String? {
        for _ in 0..<100 {
            _ = try daemon.redis("CLEAR", "token")
            _ = try daemon.redis("GET", "token")
            if let line = tool.nextLine(within: 0.2) { return line }
        }
        return nil
    }
}
