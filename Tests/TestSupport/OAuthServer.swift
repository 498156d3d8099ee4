import Foundation

/// Tests/Fixtures/oauth_server.py on loopback: a real OAuth 2.0 authorization server built on Authlib, with the
/// client credentials grant and the refresh token grant with rotation and reuse detection. Authlib is imported from
/// .build/python-clients (where scripts/test.sh installs it; $EXPIRABLE_PYTHON_CLIENTS overrides) and PYTHONPATH.
/// `stop()` sends SIGTERM to its PID; it also exits with the test process, or after `lifetime` seconds.
public final class OAuthServer {
    /// A client the server knows: its id, its one client authentication method and its secret.
    public struct Client: Sendable {
        public enum Method: String, Sendable {
            case basic = "client_secret_basic"
            case post = "client_secret_post"
        }

        public let id: String
        public let method: Method
        public let secret: String

        public init(_ id: String, _ method: Method, secret: String) {
            self.id = id
            self.method = method
            self.secret = secret
        }
    }

    /// What the server counted: token requests, access tokens issued, refresh grants served, reuses of a spent
    /// refresh token, and families revoked for them.
    public struct Counters: Decodable, Sendable {
        public let requests: Int
        public let issued: Int
        public let refreshes: Int
        public let reuses: Int
        public let revoked_families: Int
    }

    /// The last token request: its form fields (secrets redacted), the client authentication Authlib accepted
    /// (nil if none), and the status answered.
    public struct LastRequest: Decodable, Sendable {
        public let form: [String: [String]]
        public let auth_method: String?
        public let status: Int?
    }

    public let port: Int
    private let tool: RunningTool

    public var tokenURL: String { "http://127.0.0.1:\(port)/token" }

    public static var pythonPackages: String {
        ProcessInfo.processInfo.environment["EXPIRABLE_PYTHON_CLIENTS"]
            ?? TestPaths.repository.appendingPathComponent(".build/python-clients").path
    }

    public init(clients: [Client], expiresIn seconds: Int = 60, lifetime: Int = 900) throws {
        let script = TestPaths.fixtures.appendingPathComponent("oauth_server.py").path
        var environment = ProcessInfo.processInfo.environment
        environment["PYTHONPATH"] = ([Self.pythonPackages] + (environment["PYTHONPATH"].map { [$0] } ?? [])).joined(separator: ":")
        environment["PYTHONDONTWRITEBYTECODE"] = "1"
        tool = try RunningTool(
            ["python3", script, "--expires-in", "\(seconds)", "--lifetime", "\(lifetime)"]
                + clients.flatMap { ["--client", "\($0.id):\($0.method.rawValue):\($0.secret)"] },
            environment: environment
        )
        guard let line = tool.nextLine(within: 15), let port = Int(line) else {
            let stderr = tool.stop(signal: SIGKILL).stderr
            throw TestSupportError("oauth_server.py did not start (no port printed within 15 s): \(stderr.isEmpty ? "(no output)" : stderr)"
                + (stderr.contains("Authlib") ? "" : "; if Authlib is missing, run scripts/test.sh, which installs it into .build/python-clients"))
        }
        self.port = port
    }

    deinit { stop() }

    /// Starts a token family for `client` and returns its first refresh token.
    public func startRefreshTokenFamily(client: String, scope: String = "") throws -> String {
        let answer: [String: String] = try control("POST", "/control/refresh_token", form: "client_id=\(client)&scope=\(scope)")
        guard let token = answer["refresh_token"] else { throw TestSupportError("oauth_server.py gave no refresh token: \(answer)") }
        return token
    }

    /// Makes the next `count` token requests (all of them when nil) answer `status`, with `retryAfter` as the
    /// Retry-After header when given.
    public func fail(status: Int, retryAfter: String? = nil, count: Int? = nil) throws {
        var form = "status=\(status)"
        if let retryAfter { form += "&retry_after=\(retryAfter.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "")" }
        if let count { form += "&count=\(count)" }
        let _: [String: Int?] = try control("POST", "/control/fail", form: form)
    }

    /// Back to answering tokens.
    public func recover() throws {
        let _: [String: Int?] = try control("POST", "/control/ok")
    }

    /// Whether token answers leave out expires_in.
    public func omitExpiresIn(_ omit: Bool) throws {
        let _: [String: Bool] = try control("POST", "/control/omit_expires_in", form: "omit=\(omit ? 1 : 0)")
    }

    /// Makes each token request wait `seconds` before it is handled.
    public func slow(_ seconds: Double) throws {
        let _: [String: Double] = try control("POST", "/control/slow", form: "seconds=\(seconds)")
    }

    public func counters() throws -> Counters {
        try control("GET", "/control/counters")
    }

    public func lastRequest() throws -> LastRequest {
        try control("GET", "/control/last")
    }

    public func stop() {
        guard tool.process.isRunning else { return }
        tool.stop(signal: SIGTERM)
    }

    private func control<T: Decodable>(_ method: String, _ path: String, form: String = "") throws -> T {
        let (status, body) = try loopbackHTTP(port: port, method, path, form: form)
        guard status == 200 else { throw TestSupportError("oauth_server.py \(method) \(path) answered \(status) \(body)") }
        return try JSONDecoder().decode(T.self, from: Data(body.utf8))
    }
}
