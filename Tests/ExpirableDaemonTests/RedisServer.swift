import ExpirableTestSupport
import Foundation

/// A real `redis-server` on a Unix socket in a temporary directory, standing in for a daemon that speaks Redis
/// pub/sub: `PUBLISH` plays a new value being stored.
final class RedisServer {
    static let isInstalled = FileManager.default.isExecutableFile(atPath: "/usr/bin/redis-server")

    let directory: TemporaryDirectory
    let socket: String
    private var process: Spawned?

    init() throws {
        directory = try TemporaryDirectory("redis")
        socket = directory.appending("r.sock")
        do {
            try start()
        } catch {
            remove()
            throw error
        }
    }

    /// Starts redis-server (again) on the same socket and waits, at most 10 s, until it answers PING.
    func start() throws {
        let process = try Spawned(["redis-server", "--port", "0", "--unixsocket", socket, "--save", "", "--appendonly", "no", "--dir", directory.path],
                                  stdout: .file(directory.appending("redis.log")), stderr: .file(directory.appending("redis.log")))
        self.process = process
        for _ in 0..<200 {
            if (try? RawConnection(socket).roundTrip("*1\r\n$4\r\nPING\r\n", expecting: 1)) == "+PONG\r\n" { return }
            if !process.isRunning { break }
            usleep(50_000)
        }
        stop()
        throw TestSupportError("redis-server did not answer on \(socket)")
    }

    func stop() {
        guard let process, process.isRunning else { return }
        kill(process.pid, SIGKILL)
        process.wait()
    }

    func remove() {
        stop()
        directory.remove()
    }

    /// Publishes `value`'s exact bytes on `channel`; the number of subscribers that received it.
    @discardableResult
    func publish(_ channel: String, _ value: [UInt8]) throws -> Int {
        let connection = try RawConnection(socket)
        connection.send(Array("*3\r\n$7\r\nPUBLISH\r\n$\(channel.utf8.count)\r\n\(channel)\r\n$\(value.count)\r\n".utf8) + value + Array("\r\n".utf8))
        let reply = connection.receive(replies: 1)
        return Int(reply.dropFirst().trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
    }

    @discardableResult
    func publish(_ channel: String, _ value: String) throws -> Int {
        try publish(channel, Array(value.utf8))
    }

    /// How many connections are subscribed to `channel`.
    func subscribers(_ channel: String) throws -> Int {
        let reply = try RawConnection(socket).roundTrip("*3\r\n$6\r\nPUBSUB\r\n$6\r\nNUMSUB\r\n$\(channel.utf8.count)\r\n\(channel)\r\n", expecting: 1)
        // *2 $len channel :count
        return Int(reply.split(separator: "\r\n").last?.dropFirst() ?? "") ?? -1
    }

    /// Waits (at most 10 s) until `condition` holds; whether it did. For what redis-server shows no event for.
    static func eventually(_ condition: () throws -> Bool) rethrows -> Bool {
        for _ in 0..<200 {
            if try condition() { return true }
            usleep(50_000)
        }
        return false
    }
}
