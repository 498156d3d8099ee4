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

    /// One request to the control port: its status and body.
    private func control(_ method: String, _ path: String) throws -> (Int, String) {
        try loopbackHTTP(port: controlPort, method, path)
    }
}
