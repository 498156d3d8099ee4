import ExpirableClient
import ExpirableTestSupport
import Foundation
import Synchronization
import Testing

@Suite("ExpirableClient and replies it does not expect")
struct ClientReplyTests {
    /// A server on a Unix socket in a temporary directory that answers the first request of each connection
    /// with `reply`, then waits for the client to close it.
    ///
    /// It accepts every connection until it is released, and waits up to 600 s for each request. The client writes its request only
    /// once the calling task runs again after its connect completed, and in a busy test run (the synchronous
    /// tests of other suites holding the cooperative threads, on 2 loaded cores) that took over 10 s: a server
    /// that served one connection and gave up on it after 10 s had it closed before the request came, and the
    /// call ended as `.unavailable`, its retry refused.
    final class FakeServer: Sendable {
        /// The listening socket, closed by the accept thread only (under the lock, so that `deinit` never shuts
        /// down a descriptor reused meanwhile).
        final class Listener: Sendable {
            let descriptor: Mutex<Int32?>
            init(_ fd: Int32) { descriptor = Mutex(fd) }

            /// Wakes the accept thread, which then closes the socket.
            func stop() {
                descriptor.withLock { fd in if let fd { _ = shutdown(fd, Int32(SHUT_RDWR)) } }
            }
        }

        let directory: TemporaryDirectory
        let socket: String
        let listener: Listener

        init(reply: String) throws {
            directory = try TemporaryDirectory("expfake")
            socket = directory.appending("f.sock")
            // accept waits until the server is stopped (deinit): in a clean-clone CI run a calling task was held
            // for over 60 s, and a listener that gave up after 60 s refused its connect.
            let fd = Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard withUnixAddress(socket, { bind(fd, $0, $1) }) == 0, listen(fd, 8) == 0 else {
                close(fd)
                directory.remove()
                throw TestSupportError("cannot listen on \(socket)")
            }
            let listener = Listener(fd)
            self.listener = listener
            Thread.detachNewThread {
                for _ in 0..<16 {
                    let connection = accept(fd, nil, nil)
                    if connection < 0 && errno == EINTR { continue }
                    guard connection >= 0 else { break }
                    _ = fcntl(connection, F_SETFD, FD_CLOEXEC)
                    Thread.detachNewThread { Self.serve(connection, reply) }
                }
                listener.descriptor.withLock { descriptor in
                    descriptor = nil
                    close(fd)
                }
            }
        }

        /// Answers the first request on `connection` with `reply`, waits (at most 600 s) for the client to close
        /// it, and closes it.
        private static func serve(_ connection: Int32, _ reply: String) {
            defer { close(connection) }
            var limit = timeval(tv_sec: 600, tv_usec: 0)
            setsockopt(connection, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
            var buffer = [UInt8](repeating: 0, count: 4096)
            guard read(connection, &buffer, buffer.count) > 0 else { return }
            _ = Array(reply.utf8).withUnsafeBytes { send(connection, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            _ = read(connection, &buffer, buffer.count)
        }

        deinit {
            listener.stop()
            directory.remove()
        }
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
            let client = ExpirableClient(socketPath: server.socket, timeout: .seconds(120))
            do {
                try await call(client)
                Issue.record("\(command): expected unexpectedReply")
            } catch {
                let error = try #require(error as? ExpirableClientError)
                Self.expectNoValue(error, command)
                #expect(error.message.contains(command) && error.message.contains("bytes"), "\(error.message)")
            }
            await client.close()
            withExtendedLifetime(server) {}
        }
        let server = try FakeServer(reply: "*3\r\n\(bulk)$2\r\n12\r\n$5\r\nfresh\r\n")
        await #expect(throws: ExpirableClientError(code: .unexpectedReply, message: "unexpected reply to FETCH from \(server.socket): an array of 3 (a bulk string of 12 bytes, a bulk string of 2 bytes, a bulk string of 5 bytes), not [value, expiry]; is that the socket of expirabled, of a version this client knows?")) {
            try await ExpirableClient(socketPath: server.socket, timeout: .seconds(120)).fetch("x")
        }
        withExtendedLifetime(server) {}
    }

    @Test("a subscription message of an unexpected shape is described by its type and size, never its bytes")
    func subscriptionShapeNotBytes() async throws {
        let server = try FakeServer(reply: "*2\r\n$7\r\nmessage\r\n$\(Self.secret.utf8.count)\r\n\(Self.secret)\r\n")
        let client = ExpirableClient(socketPath: server.socket, timeout: .seconds(120))
        do {
            _ = try await client.updates(of: ["x"])
            Issue.record("expected unexpectedReply")
        } catch {
            Self.expectNoValue(error, "SUBSCRIBE")
        }
        withExtendedLifetime(server) {}
    }
}
