import Foundation

/// Tests/Fixtures/token_endpoint.py on loopback: an OAuth-style token endpoint (`{"access_token": "tok-N",
/// "expires_in": S}`, N the request's number) that a test switches to answering 500, hanging, or refusing
/// connections, and whose requests it counts. `stop()` sends SIGTERM to its PID; it also exits with the test
/// process, or after `lifetime` seconds.
public final class TokenEndpoint {
    public enum Mode: String, Sendable {
        case ok
        /// HTTP 500 with a JSON error body.
        case http500 = "500"
        /// Sleeps `slowSeconds` before answering.
        case slow
        /// Not listening: connections are refused.
        case down
    }

    public let port: Int
    /// The port of the control requests, which stays up in every mode.
    public let controlPort: Int
    private let tool: RunningTool

    public var tokenURL: String { "http://127.0.0.1:\(port)/token" }

    public init(expiresIn seconds: Double, slowSeconds: Double = 5, lifetime: Int = 120) throws {
        let script = TestPaths.fixtures.appendingPathComponent("token_endpoint.py").path
        tool = try RunningTool(["python3", script, "--expires-in", "\(seconds)", "--slow", "\(slowSeconds)", "--lifetime", "\(lifetime)"])
        let ports = tool.nextLine(within: 10).map { $0.split(separator: " ").compactMap { Int($0) } } ?? []
        guard ports.count == 2 else {
            let stderr = tool.stop(signal: SIGKILL).stderr
            throw TestSupportError("token_endpoint.py did not print its two ports within 10 s: \(stderr)")
        }
        port = ports[0]
        controlPort = ports[1]
    }

    /// Puts `mode` in effect (the endpoint answers once it is).
    public func set(_ mode: Mode) throws {
        let (status, body) = try control("POST", "/mode/\(mode.rawValue)")
        guard status == 200 else { throw TestSupportError("token endpoint refused mode \(mode.rawValue): \(status) \(body)") }
    }

    /// How many /token requests have arrived.
    public func requests() throws -> Int {
        let (status, body) = try control("GET", "/count")
        guard status == 200, let count = Int(body.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw TestSupportError("token endpoint /count answered \(status) \(body)")
        }
        return count
    }

    /// When each /token request arrived, Unix milliseconds, oldest first.
    public func arrivals() throws -> [Double] {
        let (status, body) = try control("GET", "/arrivals")
        guard status == 200 else { throw TestSupportError("token endpoint /arrivals answered \(status) \(body)") }
        return body.split(separator: "\n").compactMap { Double($0) }
    }

    public func stop() {
        guard tool.process.isRunning else { return }
        tool.stop(signal: SIGTERM)
    }

    /// One HTTP/1.0 request to the control port: its status and body.
    private func control(_ method: String, _ path: String) throws -> (Int, String) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw TestSupportError("socket: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(controlPort).bigEndian
        inet_pton(AF_INET, "127.0.0.1", &address.sin_addr)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else {
            throw TestSupportError("token endpoint control port \(controlPort): \(String(cString: strerror(errno)))")
        }
        let request = Array("\(method) \(path) HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n".utf8)
        guard request.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) == request.count else {
            throw TestSupportError("token endpoint control port \(controlPort): short write")
        }
        var response: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while response.count < 1 << 20 {
            let n = read(fd, &buffer, buffer.count)
            if n <= 0 { break }
            response += buffer[0..<n]
        }
        let text = String(decoding: response, as: UTF8.self)
        guard let headerEnd = text.range(of: "\r\n\r\n"),
              let status = text.split(separator: " ", maxSplits: 2).dropFirst().first.flatMap({ Int($0) })
        else { throw TestSupportError("token endpoint control port \(controlPort): no HTTP response to \(method) \(path)") }
        return (status, String(text[headerEnd.upperBound...]))
    }
}
