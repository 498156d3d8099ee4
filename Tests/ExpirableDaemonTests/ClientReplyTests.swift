import ExpirableClient
import ExpirableTestSupport
import Foundation
import Testing

@Suite("ExpirableClient and replies it does not expect")
struct ClientReplyTests {
    /// A server on a Unix socket in a temporary directory that answers the first request of its first connection
    /// with `reply`, then waits (at most 10 s) for the client to close.
    final class FakeServer {
        let directory: TemporaryDirectory
        let socket: String

        init(reply: String) throws {
            directory = try TemporaryDirectory("expfake")
            socket = directory.appending("f.sock")
            let listener = Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            var limit = timeval(tv_sec: 10, tv_usec: 0)
            setsockopt(listener, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
            guard withUnixAddress(socket, { bind(listener, $0, $1) }) == 0, listen(listener, 4) == 0 else {
                close(listener)
                directory.remove()
                throw TestSupportError("cannot listen on \(socket)")
            }
            let thread = Thread {
                var limit = timeval(tv_sec: 10, tv_usec: 0)
                defer { close(listener) }
                let connection = accept(listener, nil, nil)
                guard connection >= 0 else { return }
                defer { close(connection) }
                setsockopt(connection, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
                var buffer = [UInt8](repeating: 0, count: 4096)
                guard read(connection, &buffer, buffer.count) > 0 else { return }
                _ = reply.utf8CString.withUnsafeBufferPointer { write(connection, $0.baseAddress, $0.count - 1) }
                _ = read(connection, &buffer, buffer.count)
            }
            thread.start()
        }

        deinit { directory.remove() }
    }

    static let secret = "s3cr3t-value"
    static let secretHex = Self.secret.utf8.map { String(format: "%02x", $0) }.joined()

    static func expectNoValue(_ error: ExpirableClientError, _ what: String) {
        #expect(error.code == .unexpectedReply)
        #expect(!error.message.contains(secret) && !error.message.lowercased().contains(secretHex), "\(what): \(error.message)")
        #expect(!error.message.contains("RESPValue") && !error.message.contains("ByteBuffer"), "\(what): \(error.message)")
    }

    @Test("a reply of an unexpected shape is described by its type and size, never its bytes")
    func shapeNotBytes() async throws {
        let bulk = "$\(Self.secret.utf8.count)\r\n\(Self.secret)\r\n"
        let cases: [(reply: String, call: (ExpirableClient) async throws -> Void, expected: String)] = [
            ("*3\r\n\(bulk)$2\r\n12\r\n$5\r\nfresh\r\n", { _ = try await $0.fetch("x") }, "FETCH"),
            ("+\(Self.secret)\r\n", { _ = try await $0.value("x") }, "GET"),
            ("*1\r\n\(bulk)", { try await $0.ping() }, "PING"),
            (bulk, { _ = try await $0.timeToLive("x") }, "PTTL"),
        ]
        for (reply, call, command) in cases {
            let server = try FakeServer(reply: reply)
            let client = ExpirableClient(socketPath: server.socket, timeout: .seconds(10))
            do {
                try await call(client)
                Issue.record("\(command): expected unexpectedReply")
            } catch {
                let error = try #require(error as? ExpirableClientError)
                Self.expectNoValue(error, command)
                #expect(error.message.contains(command) && error.message.contains("bytes"), "\(error.message)")
            }
            await client.close()
        }
        let server = try FakeServer(reply: "*3\r\n\(bulk)$2\r\n12\r\n$5\r\nfresh\r\n")
        await #expect(throws: ExpirableClientError(code: .unexpectedReply, message: "unexpected reply to FETCH from \(server.socket): an array of 3 (a bulk string of 12 bytes, a bulk string of 2 bytes, a bulk string of 5 bytes), not [value, expiry]; is that the socket of expirabled, of a version this client knows?")) {
            try await ExpirableClient(socketPath: server.socket, timeout: .seconds(10)).fetch("x")
        }
    }

    @Test("a subscription message of an unexpected shape is described by its type and size, never its bytes")
    func subscriptionShapeNotBytes() async throws {
        let server = try FakeServer(reply: "*2\r\n$7\r\nmessage\r\n$\(Self.secret.utf8.count)\r\n\(Self.secret)\r\n")
        let client = ExpirableClient(socketPath: server.socket, timeout: .seconds(10))
        do {
            _ = try await client.updates(of: ["x"])
            Issue.record("expected unexpectedReply")
        } catch {
            Self.expectNoValue(error, "SUBSCRIBE")
        }
    }
}
