import ExpirableTestSupport
import Foundation
import Testing

/// The shipped `oauth2` plugin through a real daemon (not the plugin host) against a real OAuth 2.0 authorization
/// server (Authlib, Tests/Fixtures/oauth_server.py): a rotating refresh token kept in the encrypted `state_dir`
/// across restarts, and the error classes of real server errors as INFO and callers see them.
@Suite("oauth2 through the daemon against an Authlib server")
struct OAuth2DaemonTests {
    static let client = OAuthServer.Client("daemon-client", .basic, secret: "d@emon s3cret")

    /// A daemon (not started) with the oauth2 plugin, the client's secret file (`secret`, the right one unless
    /// given), a 0600 state key and `expirables`, where "TOKEN_URL" stands for the server's token endpoint and
    /// "DIR" for the daemon's directory; `serverLines` go into [server], and `stateDir` adds state_dir there.
    static func daemon(_ server: OAuthServer, _ expirables: String, secret: String = client.secret, serverLines: String = "",
                       stateDir: Bool = false) throws -> DaemonProcess {
        let daemon = try DaemonProcess(
            expirables: expirables.replacingOccurrences(of: "TOKEN_URL", with: server.tokenURL),
            server: serverLines + (stateDir ? "\nstate_dir = \"DIR/state\"\nstate_key_file = \"DIR/state.key\"" : ""),
            testPlugins: [], shippedPlugins: ["oauth2"], start: false
        )
        do {
            try write(secret + "\n", to: daemon.directory.appending("client.secret"))
            let key = daemon.directory.appending("state.key")
            try Data((0..<32).map { UInt8($0 * 7 % 251) }).write(to: URL(fileURLWithPath: key))
            chmod(key, 0o600)
        } catch {
            daemon.remove()
            throw error
        }
        return daemon
    }

    static func write(_ text: String, to path: String) throws {
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        chmod(path, 0o600)
    }

    /// `[expirable.NAME]` with the oauth2 plugin, the test client and `params` (TOML lines).
    static func oauth2(_ name: String, _ lines: String = "", params: String = "") -> String {
        """
        [expirable.\(name)]
        plugin = "oauth2"
        timeout = "5s"
        \(lines)
        [expirable.\(name).params]
        token_url = "TOKEN_URL"
        client_id = "\(client.id)"
        client_secret_file = "DIR/client.secret"
        \(params)

        """
    }

    static func info(_ daemon: DaemonProcess, _ name: String, _ field: String) throws -> String? {
        try daemon.redis("INFO", name).split(whereSeparator: \.isNewline)
            .first { $0.hasPrefix("\(field):") }.map { String($0.dropFirst(field.count + 1)) }
    }

    @Test("a single node with state_dir refreshes with each rotated refresh token and resumes from the saved one after a restart and after kill -9")
    func resumesAfterRestart() throws {
        let server = try OAuthServer(clients: [Self.client], expiresIn: 60)
        defer { server.stop() }
        let first = try server.startRefreshTokenFamily(client: Self.client.id, scope: "offline")
        let daemon = try Self.daemon(server, Self.oauth2("api", params: "grant = \"refresh_token\"\nrefresh_token_file = \"DIR/first.rt\""), stateDir: true)
        defer { daemon.remove() }
        try Self.write(first + "\n", to: daemon.directory.appending("first.rt"))
        try daemon.start()

        var tokens: [String] = []
        func refresh() throws {
            #expect(try daemon.redis("CLEAR", "api") == "OK")
            let token = try daemon.redis("GET", "api")
            #expect(token.hasPrefix("at-") && !tokens.contains(token), "\(token)")
            tokens.append(token)
        }
        tokens.append(try daemon.redis("GET", "api"))
        #expect(tokens[0].hasPrefix("at-"), "\(tokens[0])")
        #expect(try daemon.redis("GET", "api") == tokens[0], "a valid token is answered from memory")
        for _ in 1..<5 { try refresh() }
        #expect(try Self.info(daemon, "api", "plugin_state") == "yes")
        var counters = try server.counters()
        #expect(counters.refreshes == 5 && counters.reuses == 0, "\(counters)")

        // A full restart (SIGTERM, then a new process on the same configuration and state_dir): the first call
        // uses the refresh token saved by the last one, not refresh_token_file, whose token is long spent.
        #expect(daemon.stop() == 0)
        try daemon.start()
        let resumed = try daemon.redis("GET", "api")
        #expect(resumed.hasPrefix("at-") && !tokens.contains(resumed), "\(resumed)")
        tokens.append(resumed)
        try refresh()

        // kill -9 right after a refresh: the rotated token was saved before the caller got its answer.
        daemon.kill9()
        try daemon.start()
        let afterKill = try daemon.redis("GET", "api")
        #expect(afterKill.hasPrefix("at-") && !tokens.contains(afterKill), "\(afterKill)")
        try refresh()

        counters = try server.counters()
        #expect(counters.refreshes == 9, "\(counters)")
        #expect(counters.reuses == 0, "the server saw a refresh token used twice: \(counters)")
        #expect(counters.revoked_families == 0, "\(counters)")
        #expect(try Self.info(daemon, "api", "last_error") == "")
        let log = daemon.log
        #expect(!tokens.contains { log.contains($0) } && !log.contains(first) && !log.contains(Self.client.secret), "tokens and secrets are never logged")
        let saved = try FileManager.default.contentsOfDirectory(atPath: daemon.directory.appending("state")).filter { $0 != "expirabled.lock" }
        #expect(saved.count == 1, "\(saved)")
        let sealed = try Data(contentsOf: URL(fileURLWithPath: daemon.directory.appending("state/\(saved[0])")))
        #expect(!sealed.contains(Data("rt-".utf8)), "the saved refresh token is encrypted")
    }

    /// Rewrites the daemon's expirables (its [server] part as written at start), "TOKEN_URL" and "DIR" replaced.
    static func rewrite(_ daemon: DaemonProcess, _ server: OAuthServer, _ expirables: String) throws {
        try ReloadTests.rewrite(daemon, expirables.replacingOccurrences(of: "TOKEN_URL", with: server.tokenURL)
            .replacingOccurrences(of: "DIR", with: daemon.directory.path))
    }

    @Test("a reload that changes a refresh-token expirable's params, or removes it and adds it back, goes on with the rotated refresh token: no reuse, with state_dir and without")
    func reloadKeepsRotatedRefreshToken() throws {
        let server = try OAuthServer(clients: [Self.client], expiresIn: 60)
        defer { server.stop() }
        let grant = "grant = \"refresh_token\"\nrefresh_token_file = \"DIR/first.rt\""
        // Another expirable, never fetched, so the configuration is not empty while `api` is removed.
        let other = Self.oauth2("other", params: "grant = \"client_credentials\"")
        for stateDir in [true, false] {
            let first = try server.startRefreshTokenFamily(client: Self.client.id, scope: "offline")
            let daemon = try Self.daemon(server, Self.oauth2("api", params: grant) + other, stateDir: stateDir)
            defer { daemon.remove() }
            try Self.write(first + "\n", to: daemon.directory.appending("first.rt"))
            try daemon.start()
            var tokens = [try daemon.redis("GET", "api")]
            #expect(tokens[0].hasPrefix("at-"), "\(tokens[0])")
            #expect(try Self.info(daemon, "api", "plugin_state") == "yes")

            // A params edit: a new plugin instance, empty, but with the rotated token (first.rt is spent).
            try Self.rewrite(daemon, server, Self.oauth2("api", params: grant + "\nscope = \"offline\"") + other)
            let reload = try daemon.redis("RELOAD")
            #expect(reload.contains("changed: api (new plugin instance, starts empty; plugin state kept)"), "\(reload)")
            #expect(try Self.info(daemon, "api", "plugin_state") == "yes", "stateDir \(stateDir)")
            let afterEdit = try daemon.redis("GET", "api")
            #expect(afterEdit.hasPrefix("at-") && !tokens.contains(afterEdit), "stateDir \(stateDir): \(afterEdit)")
            tokens.append(afterEdit)

            if stateDir {
                // Removed, then added back by a later reload: its state is read from state_dir, as at start.
                try Self.rewrite(daemon, server, other)
                #expect(try daemon.redis("RELOAD").contains("removed: api"))
                try Self.rewrite(daemon, server, Self.oauth2("api", params: grant) + other)
                #expect(try daemon.redis("RELOAD").contains("added: api"))
                #expect(try Self.info(daemon, "api", "plugin_state") == "yes")
                let readded = try daemon.redis("GET", "api")
                #expect(readded.hasPrefix("at-") && !tokens.contains(readded), "\(readded)")
                tokens.append(readded)
            }
            let counters = try server.counters()
            #expect(counters.reuses == 0, "stateDir \(stateDir): the server saw a refresh token used twice: \(counters)")
            #expect(try Self.info(daemon, "api", "last_error") == "")
            let log = daemon.log
            #expect(!tokens.contains { log.contains($0) } && !log.contains(first), "tokens are never logged")
        }
        #expect(try server.counters().revoked_families == 0)
    }

    @Test("real server errors end to end: invalid_client and invalid_grant are permanent in INFO, 503 temporary, and no call is made before a 429's Retry-After")
    func errorClasses() throws {
        let server = try OAuthServer(clients: [Self.client], expiresIn: 60)
        defer { server.stop() }
        let expirables = Self.oauth2("paced", "retry_interval = \"100ms\"")
            + Self.oauth2("unknown_rt", "retry_interval = \"100ms\"", params: "grant = \"refresh_token\"\nrefresh_token_file = \"DIR/unknown.rt\"")
        // Callers wait for a call at most 1 s (request_timeout): while a 429's Retry-After is further away, they
        // get its error at once.
        let daemon = try Self.daemon(server, expirables, serverLines: "request_timeout = \"1s\"")
        defer { daemon.remove() }
        try Self.write("rt-not-issued-by-this-server\n", to: daemon.directory.appending("unknown.rt"))
        let wrong = try Self.daemon(server, Self.oauth2("wrong_secret"), secret: "not the secret")
        defer { wrong.remove() }
        try daemon.start()
        try wrong.start()

        let refused = try wrong.redis("GET", "wrong_secret")
        #expect(refused.hasPrefix("FETCH ") && refused.contains("answered HTTP 401 with error \"invalid_client\""), "\(refused)")
        #expect(try Self.info(wrong, "wrong_secret", "last_error_class") == "permanent")
        #expect(!refused.contains("not the secret") && !wrong.log.contains("not the secret"))

        let spent = try daemon.redis("GET", "unknown_rt")
        #expect(spent.contains("with error \"invalid_grant\": unknown refresh token"), "\(spent)")
        #expect(try Self.info(daemon, "unknown_rt", "last_error_class") == "permanent")

        try server.fail(status: 503, count: 1)
        let unavailable = try daemon.redis("GET", "paced")
        #expect(unavailable.contains("answered HTTP 503 without an OAuth error"), "\(unavailable)")
        #expect(try Self.info(daemon, "paced", "last_error_class") == "temporary")
        usleep(150_000)

        // 429 with Retry-After: 4 s. Readers asking while that is more than their patience away get the error at
        // once, and none reaches the server; then one call, when the Retry-After is over. They ask on a connection
        // already open, so that a request reaches the daemon when the loop below sends it, not a redis-cli's start
        // later (one sent at 2.5 s and arriving after 3 s would rightly wait for the call).
        try server.fail(status: 429, retryAfter: "4", count: 1)
        let before = try server.counters().requests
        let reader = try RawConnection(daemon.socket)
        let limitedAt = Date()
        let limited = reader.roundTripCommand("GET", "paced")
        #expect(limited.contains("answered HTTP 429 with error \"slow_down\": too many token requests; retry after 4s"), "\(limited)")
        #expect(try Self.info(daemon, "paced", "last_error_class") == "temporary")
        #expect(try server.counters().requests == before + 1)
        while Date().timeIntervalSince(limitedAt) < 2.5 {
            let answer = reader.roundTripCommand("GET", "paced")
            #expect(answer.hasPrefix("FETCH "), "no token before the Retry-After: \(answer)")
            #expect(try server.counters().requests == before + 1, "a call \(Date().timeIntervalSince(limitedAt)) s after the 429 said to wait 4 s")
            usleep(200_000)
        }
        var token = ""
        let deadline = Date().addingTimeInterval(5)
        while !token.hasPrefix("at-") && Date() < deadline {
            token = try daemon.redis("GET", "paced")
            usleep(100_000)
        }
        #expect(token.hasPrefix("at-"), "\(token)")
        #expect(Date().timeIntervalSince(limitedAt) >= 3.9)
        #expect(try server.counters().requests == before + 2, "one call after the retry-after, none before")
    }

    @Test("private_key_jwt through the daemon: a token for an ES256 assertion; a key the server does not know is a permanent invalid_client; no key bytes or assertion in the log")
    func privateKeyJWT() throws {
        let keys = try TemporaryDirectory("expirable-jwt-keys")
        defer { keys.remove() }
        for name in ["ec", "stranger"] {
            let generated = try runTool("openssl", ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", keys.appending("\(name).pem")])
            #expect(generated.status == 0, "\(generated.stderr)")
            chmod(keys.appending("\(name).pem"), 0o600)
        }
        let exported = try runTool("openssl", ["pkey", "-in", keys.appending("ec.pem"), "-pubout", "-out", keys.appending("ec.pub")])
        #expect(exported.status == 0, "\(exported.stderr)")
        let server = try OAuthServer(clients: [], jwtClients: [OAuthServer.JWTClient("jwt-client", publicKeyFile: keys.appending("ec.pub"))])
        defer { server.stop() }
        func expirable(_ name: String, key: String) -> String {
            """
            [expirable.\(name)]
            plugin = "oauth2"
            timeout = "5s"
            [expirable.\(name).params]
            token_url = "TOKEN_URL"
            client_id = "jwt-client"
            auth = "private_key_jwt"
            private_key_file = "\(keys.appending(key))"

            """
        }
        let daemon = try Self.daemon(server, expirable("signed", key: "ec.pem") + expirable("stranger", key: "stranger.pem"))
        defer { daemon.remove() }
        try daemon.start()

        let token = try daemon.redis("GET", "signed")
        #expect(token.hasPrefix("at-"), "\(token)")
        #expect(try server.lastRequest().auth_method == "private_key_jwt")
        let refused = try daemon.redis("GET", "stranger")
        #expect(refused.hasPrefix("FETCH ") && refused.contains("answered HTTP 400 with error \"invalid_client\""), "\(refused)")
        #expect(try Self.info(daemon, "stranger", "last_error_class") == "permanent")

        let log = daemon.log
        for name in ["ec.pem", "stranger.pem"] {
            let pem = try String(contentsOfFile: keys.appending(name), encoding: .utf8)
            for line in pem.split(separator: "\n") where !line.hasPrefix("-----") {
                #expect(!log.contains(line) && !refused.contains(line), "a line of the private key in the log")
            }
        }
        #expect(!log.contains("eyJ") && !refused.contains("eyJ"), "no JWT (a base64url JSON header starts eyJ) in the log")
        #expect(!log.contains(token))
    }
}
