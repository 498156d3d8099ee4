import Foundation

/// Tests/Fixtures/oauth_server.py on loopback: a real OAuth 2.0 authorization server built on Authlib, with the
/// client credentials grant, the refresh token grant with rotation and reuse detection, and token exchange (RFC 8693);
/// clients authenticate by secret (basic, post) or by a JWT signed with their private key (private_key_jwt, RFC 7523,
/// with a jti replay check). Authlib is imported from .build/python-clients (where scripts/test.sh installs it;
/// $EXPIRABLE_PYTHON_CLIENTS overrides) and PYTHONPATH. `stop()` sends SIGTERM to its PID; it also exits with the test
/// process, or after `lifetime` seconds.
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

    /// A client that authenticates with private_key_jwt: its id and the PEM file of its public key (RSA or EC).
    public struct JWTClient: Sendable {
        public let id: String
        public let publicKeyFile: String

        public init(_ id: String, publicKeyFile: String) {
            self.id = id
            self.publicKeyFile = publicKeyFile
        }
    }

    /// What the server counted: token requests, access tokens issued, refresh grants served, reuses of a spent
    /// refresh token, families revoked for them, and client assertions refused for a jti seen before.
    public struct Counters: Decodable, Sendable {
        /// Token requests received, counted before `slow`'s wait (`requests` counts them after it).
        public let arrived: Int
        public let requests: Int
        public let issued: Int
        public let refreshes: Int
        public let reuses: Int
        public let revoked_families: Int
        public let jti_reuses: Int
    }

    /// The last token request: its form fields (secrets redacted), its client assertion's header and claims as sent
    /// (nil without one), the client authentication Authlib accepted (nil if none), the subject a token exchange
    /// acted for (nil if none), and the status answered.
    public struct LastRequest: Decodable, Sendable {
        public let form: [String: [String]]
        public let assertion: Assertion?
        public let auth_method: String?
        public let subject: String?
        public let status: Int?
    }

    /// A client assertion's JOSE header and claims, decoded without verification.
    public struct Assertion: Decodable, Sendable {
        public struct Header: Decodable, Sendable {
            public let alg: String
            public let typ: String?
            public let kid: String?
        }

        public struct Claims: Decodable, Sendable {
            public let iss: String
            public let sub: String
            public let aud: String
            public let jti: String
            public let iat: Int
            public let nbf: Int?
            public let exp: Int
        }

        public let header: Header
        public let claims: Claims
    }

    /// What the server answered a token request sent again unchanged (its error, never its tokens).
    public struct Replay: Decodable, Sendable {
        public let status: Int
        public let error: String?
        public let error_description: String?
    }

    public let port: Int
    private let tool: RunningTool

    public var tokenURL: String { "http://127.0.0.1:\(port)/token" }

    public static var pythonPackages: String {
        ProcessInfo.processInfo.environment["EXPIRABLE_PYTHON_CLIENTS"]
            ?? TestPaths.repository.appendingPathComponent(".build/python-clients").path
    }

    /// The issuer's URL, which a client assertion may name as its audience besides `tokenURL`.
    public var issuer: String { "http://127.0.0.1:\(port)" }

    public init(clients: [Client], jwtClients: [JWTClient] = [], expiresIn seconds: Int = 60, lifetime: Int = 900) throws {
        let script = TestPaths.fixtures.appendingPathComponent("oauth_server.py").path
        var environment = ProcessInfo.processInfo.environment
        environment["PYTHONPATH"] = ([Self.pythonPackages] + (environment["PYTHONPATH"].map { [$0] } ?? [])).joined(separator: ":")
        environment["PYTHONDONTWRITEBYTECODE"] = "1"
        tool = try RunningTool(
            ["python3", script, "--expires-in", "\(seconds)", "--lifetime", "\(lifetime)"]
                + clients.flatMap { ["--client", "\($0.id):\($0.method.rawValue):\($0.secret)"] }
                + jwtClients.flatMap { ["--jwt-client", "\($0.id):\($0.publicKeyFile)"] },
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

    /// The next `count` /token requests (all, without it) answer `status` with `body` (JSON text), Authlib not
    /// asked; `{refresh_token}`, `{client_secret}` and `{subject_token}` in it become the request's own values,
    /// `{form}` its raw form-encoded body, `{authorization}` its Authorization header, and `{invalid_utf8}` the bytes
    /// FF FE.
    public func answer(status: Int, body: String, count: Int? = nil) throws {
        var form = "status=\(status)&body=\(body.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "")"
        if let count { form += "&count=\(count)" }
        let _: [String: Int] = try control("POST", "/control/answer", form: form)
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

    /// A token that token exchange accepts as `subject`'s subject_token.
    public func issueSubjectToken(subject: String) throws -> String {
        let answer: [String: String] = try control("POST", "/control/subject_token", form: "subject=\(subject)")
        guard let token = answer["subject_token"] else { throw TestSupportError("oauth_server.py gave no subject token: \(answer)") }
        return token
    }

    /// Sends the last token request again, unchanged: a replayed client assertion.
    public func replayLastRequest() throws -> Replay {
        try control("POST", "/control/replay")
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
