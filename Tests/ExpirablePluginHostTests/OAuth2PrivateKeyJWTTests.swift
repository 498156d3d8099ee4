import ExpirableCore
@_spi(Testing) import ExpirablePluginHost
import ExpirableTestSupport
import Foundation
import Testing

/// `auth = "private_key_jwt"` (RFC 7523 §2.2, OpenID Connect Core §9) of the shipped `oauth2` plugin against Authlib's
/// JWTBearerClientAssertion in Tests/Fixtures/oauth_server.py, which verifies the signature with the public key
/// registered for the client, iss = sub = client_id, aud, exp, and refuses a jti it has seen before.
@Suite("oauth2 plugin: private_key_jwt against an Authlib server")
struct OAuth2PrivateKeyJWTTests {
    static let rsaClient = "rsa-client"
    static let ecClient = "ec-client"

    /// A plugin_dir with the oauth2 plugin, an RSA and an EC P-256 key pair made by `openssl genpkey` (the private
    /// keys 0600), a third key nobody registered, and a server knowing the two public keys.
    struct Setup {
        let fixture: PluginFixture
        let server: OAuthServer

        init() throws {
            fixture = try PluginFixture()
            do {
                try fixture.install(shipped: "oauth2")
                try Self.generate(fixture.path("rsa.pem"), "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048")
                try Self.generate(fixture.path("ec.pem"), "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256")
                try Self.generate(fixture.path("stranger.pem"), "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048")
                for name in ["rsa", "ec"] { try Self.publicKey(of: fixture.path("\(name).pem"), to: fixture.path("\(name).pub")) }
                server = try OAuthServer(clients: [], jwtClients: [
                    OAuthServer.JWTClient(OAuth2PrivateKeyJWTTests.rsaClient, publicKeyFile: fixture.path("rsa.pub")),
                    OAuthServer.JWTClient(OAuth2PrivateKeyJWTTests.ecClient, publicKeyFile: fixture.path("ec.pub")),
                ])
            } catch {
                fixture.remove()
                throw error
            }
        }

        /// `openssl genpkey -out path arguments`, then chmod 600.
        static func generate(_ path: String, _ arguments: String...) throws {
            let result = try runTool("openssl", ["genpkey", "-out", path] + arguments)
            guard result.status == 0 else { throw TestSupportError("openssl genpkey \(arguments): \(result.stderr)") }
            chmod(path, 0o600)
        }

        static func publicKey(of path: String, to output: String) throws {
            let result = try runTool("openssl", ["pkey", "-in", path, "-pubout", "-out", output])
            guard result.status == 0 else { throw TestSupportError("openssl pkey -pubout: \(result.stderr)") }
        }

        /// `[expirable.NAME]` with the oauth2 plugin signing as `client` with `key` and `params` (TOML lines).
        func expirable(_ name: String, client: String, key: String, _ params: String = "") -> String {
            """
            [expirable.\(name)]
            plugin = "oauth2"
            timeout = "10s"
            [expirable.\(name).params]
            token_url = "\(server.tokenURL)"
            client_id = "\(client)"
            auth = "private_key_jwt"
            private_key_file = "\(fixture.path(key))"
            \(params)

            """
        }

        func remove() {
            server.stop()
            fixture.remove()
        }
    }

    @Test("RS256 and ES256 client assertions get tokens, with the claims RFC 7523 §3 asks for and no secret in the form",
          arguments: OAuth2PluginTests.modes)
    func signsAssertions(isolation: String) async throws {
        let setup = try Setup()
        defer { setup.remove() }
        let (_, host) = try setup.fixture.engine(
            setup.expirable("rsa", client: Self.rsaClient, key: "rsa.pem", "key_id = \"rsa-2026\"")
                + setup.expirable("ec", client: Self.ecClient, key: "ec.pem", "assertion_audience = \"\(setup.server.issuer)\"\nassertion_lifetime = \"2m\"\nscope = \"read\""),
            isolation: isolation
        )
        defer { host.shutdown() }
        for (name, client, alg, kid, audience, lifetime) in [
            ("rsa", Self.rsaClient, "RS256", "rsa-2026", setup.server.tokenURL, 60),
            ("ec", Self.ecClient, "ES256", nil, setup.server.issuer, 120),
        ] {
            let before = Int(SystemClock().unixMillis / 1000)
            let fetched = try await OAuth2PluginTests.call(host, name).result.get()
            let after = Int(SystemClock().unixMillis / 1000)
            #expect(fetched.text.hasPrefix("at-"), "\(fetched.text)")
            let last = try setup.server.lastRequest()
            #expect(last.status == 200)
            #expect(last.auth_method == "private_key_jwt")
            #expect(last.form["client_assertion_type"] == ["urn:ietf:params:oauth:client-assertion-type:jwt-bearer"])
            #expect(last.form["client_assertion"] == ["<redacted>"])
            #expect(last.form["client_id"] == [client])
            #expect(last.form["client_secret"] == nil)
            let assertion = try #require(last.assertion)
            #expect(assertion.header.alg == alg)
            #expect(assertion.header.typ == "JWT")
            #expect(assertion.header.kid == kid)
            #expect(assertion.claims.iss == client && assertion.claims.sub == client)
            #expect(assertion.claims.aud == audience)
            #expect((before...after).contains(assertion.claims.iat), "iat \(assertion.claims.iat) outside \(before)...\(after)")
            #expect(assertion.claims.nbf == assertion.claims.iat)
            #expect(assertion.claims.exp - assertion.claims.iat == lifetime)
            #expect(assertion.claims.jti.count == 22 && assertion.claims.jti.allSatisfy { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" },
                    "a 128-bit jti in base64url: \(assertion.claims.jti)")
        }
        #expect(try setup.server.counters().issued == 2)
    }

    @Test("every request signs a new assertion: across refreshes the server's jti check sees no reuse, and refuses a replayed one",
          arguments: OAuth2PluginTests.modes)
    func freshJTI(isolation: String) async throws {
        let setup = try Setup()
        defer { setup.remove() }
        let first = try setup.server.startRefreshTokenFamily(client: Self.ecClient, scope: "offline")
        let (_, host) = try setup.fixture.engine(
            setup.expirable("credentials", client: Self.rsaClient, key: "rsa.pem")
                + setup.expirable("rotating", client: Self.ecClient, key: "ec.pem", "grant = \"refresh_token\""),
            isolation: isolation
        )
        defer { host.shutdown() }
        var jtis = Set<String>()
        var state: String? = first
        for _ in 1...10 {
            #expect(try await OAuth2PluginTests.call(host, "credentials").result.get().text.hasPrefix("at-"))
            jtis.insert(try #require(try setup.server.lastRequest().assertion).claims.jti)
            let outcome = try await OAuth2PluginTests.call(host, "rotating", FetchRequest(state: state.map { Secret($0) }))
            #expect(try outcome.result.get().text.hasPrefix("at-"))
            let next = try #require(OAuth2PluginTests.newState(outcome), "each refresh rotates the refresh token")
            state = next
            jtis.insert(try #require(try setup.server.lastRequest().assertion).claims.jti)
        }
        #expect(jtis.count == 20)
        var counters = try setup.server.counters()
        #expect(counters.issued == 20 && counters.refreshes == 10)
        #expect(counters.jti_reuses == 0)
        #expect(counters.reuses == 0)

        // The same request again, assertion and all: the server's check is live, so the plugin's fresh jti matters.
        let replay = try setup.server.replayLastRequest()
        #expect(replay.status == 400)
        #expect(replay.error == "invalid_client")
        #expect(replay.error_description == "JWT ID is used before.")
        counters = try setup.server.counters()
        #expect(counters.jti_reuses == 1)
    }

    @Test("a key the server does not know for the client, or a wrong audience, is invalid_client: permanent, with the server's description",
          arguments: OAuth2PluginTests.modes)
    func refusedAssertions(isolation: String) async throws {
        let setup = try Setup()
        defer { setup.remove() }
        let (_, host) = try setup.fixture.engine(
            setup.expirable("stranger", client: Self.rsaClient, key: "stranger.pem")
                + setup.expirable("elsewhere", client: Self.ecClient, key: "ec.pem", "assertion_audience = \"https://elsewhere.example/token\""),
            isolation: isolation
        )
        defer { host.shutdown() }
        // Authlib answers 400 (RFC 6749 §5.2 asks for 401 only when the client authenticated with an Authorization
        // header); a bad signature comes without an error_description.
        for (name, description) in [("stranger", ""), ("elsewhere", ": Invalid claim: 'aud'")] {
            let error = try #require(OAuth2PluginTests.error(try await OAuth2PluginTests.call(host, name)))
            #expect(error.message == "oauth2 plugin: \(setup.server.tokenURL) answered HTTP 400 with error \"invalid_client\"\(description)")
            #expect(error.errorClass == .permanent)
            #expect(error.retryAfter == nil)
            #expect(!error.message.contains("eyJ"), "no assertion (a base64url JSON header starts eyJ) in \(error.message)")
            #expect(try setup.server.lastRequest().status == 400)
        }
        #expect(try setup.server.counters().issued == 0)
    }

    @Test("private_key_jwt refuses a bad key file, a mismatched signing_alg and bad assertion params when the daemon starts")
    func refusals() throws {
        let fixture = try PluginFixture()
        defer { fixture.remove() }
        try fixture.install(shipped: "oauth2")
        try Setup.generate(fixture.path("rsa.pem"), "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048")
        try Setup.generate(fixture.path("ec.pem"), "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256")
        try Setup.generate(fixture.path("p384.pem"), "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384")
        try Setup.generate(fixture.path("rsa1024.pem"), "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024")
        try Setup.generate(fixture.path("ed25519.pem"), "-algorithm", "ED25519")
        try Setup.generate(fixture.path("open.pem"), "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256")
        chmod(fixture.path("open.pem"), 0o644)
        try Setup.publicKey(of: fixture.path("ec.pem"), to: fixture.path("ec.pub"))
        chmod(fixture.path("ec.pub"), 0o600)
        let encrypted = try runTool("openssl", ["pkey", "-in", fixture.path("ec.pem"), "-aes256", "-passout", "pass:hunter2", "-out", fixture.path("encrypted.pem")])
        #expect(encrypted.status == 0, "\(encrypted.stderr)")
        chmod(fixture.path("encrypted.pem"), 0o600)
        try OAuth2PluginTests.Setup.write("s3cret\n", to: fixture.path("secret"))

        let base = "token_url = \"https://idp.example/oauth2/token\"\nclient_id = \"c\""
        let jwt = "\(base)\nauth = \"private_key_jwt\""
        let cases: [(String, String)] = [
            ("\(jwt)\nprivate_key = \"-----BEGIN PRIVATE KEY-----\"", "param 'private_key' would put a secret in the configuration; write it to a file only the daemon can read (chmod 600) and set private_key_file to its path"),
            (jwt, "param 'private_key_file' is missing; auth = \"private_key_jwt\" signs each request with the client's private key (PEM, RSA or EC P-256), in a file only the daemon can read (chmod 600)"),
            ("\(jwt)\nprivate_key_file = \"DIR/ec.pem\"\nclient_secret_file = \"DIR/secret\"", "param 'client_secret_file' is set with auth = \"private_key_jwt\", which signs with the key in private_key_file and sends no secret; remove client_secret_file, or auth for client_secret_basic"),
            ("\(base)\nclient_secret_file = \"DIR/secret\"\nprivate_key_file = \"DIR/ec.pem\"", "param 'private_key_file' is for auth = \"private_key_jwt\"; set auth = \"private_key_jwt\" to sign with private_key_file, or remove it"),
            ("\(jwt)\nprivate_key_file = \"DIR/missing.pem\"", "param 'private_key_file': cannot open DIR/missing.pem: No such file or directory"),
            ("\(jwt)\nprivate_key_file = \"DIR/open.pem\"", "param 'private_key_file': DIR/open.pem is accessible by others (mode 0644); chmod o-rwx DIR/open.pem"),
            ("\(jwt)\nprivate_key_file = \"DIR/ec.pub\"", "param 'private_key_file': DIR/ec.pub holds no PEM private key (a public key or a certificate is not one); expected \"-----BEGIN PRIVATE KEY-----\" as `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256` writes"),
            ("\(jwt)\nprivate_key_file = \"DIR/encrypted.pem\"", "param 'private_key_file': DIR/encrypted.pem is encrypted with a passphrase, which the plugin cannot ask for; write it decrypted to a file only the daemon can read (umask 077; openssl pkey -in DIR/encrypted.pem -out DECRYPTED) and name that one"),
            ("\(jwt)\nprivate_key_file = \"DIR/p384.pem\"", "param 'private_key_file': DIR/p384.pem is an EC key on curve secp384r1; ES256 needs P-256 (prime256v1)"),
            ("\(jwt)\nprivate_key_file = \"DIR/rsa1024.pem\"", "param 'private_key_file': DIR/rsa1024.pem is an RSA key of 1024 bits; RS256 needs 2048 bits or more (RFC 7518 §3.3)"),
            ("\(jwt)\nprivate_key_file = \"DIR/ed25519.pem\"", "param 'private_key_file': DIR/ed25519.pem is a key of type ED25519; expected an RSA key (RS256) or an EC key on P-256 (ES256)"),
            ("\(jwt)\nprivate_key_file = \"DIR/rsa.pem\"\nsigning_alg = \"ES256\"", "param 'signing_alg' is \"ES256\", and DIR/rsa.pem is an RSA key, which signs RS256; set signing_alg = \"RS256\", or name a key for ES256 in private_key_file"),
            ("\(jwt)\nprivate_key_file = \"DIR/ec.pem\"\nsigning_alg = \"HS256\"", "param 'signing_alg' is \"HS256\"; expected \"RS256\" (an RSA key) or \"ES256\" (an EC key on P-256)"),
            ("\(jwt)\nprivate_key_file = \"DIR/ec.pem\"\nassertion_lifetime = \"2h\"", "param 'assertion_lifetime' is \"2h\"; expected a duration from \"1s\" to \"1h\" (the default is \"60s\"): how long each client assertion is valid"),
            ("\(jwt)\nprivate_key_file = \"DIR/ec.pem\"\nkey_id = \"\"", "param 'key_id' is empty; set it to the key's identifier registered at the identity provider (the JWT header's kid), or remove it"),
        ]
        for (params, reason) in cases {
            let message = try fixture.refusal("[expirable.k]\nplugin = \"oauth2\"\n[expirable.k.params]\n\(params.replacingOccurrences(of: "DIR", with: fixture.root.path))\n")
            let expected = reason.replacingOccurrences(of: "DIR", with: fixture.root.path)
            #expect(message?.hasSuffix("refused its params: oauth2 plugin: \(expected)") == true, "\(message ?? "loaded")")
        }
        // A matching explicit signing_alg loads.
        #expect(try fixture.refusal("[expirable.k]\nplugin = \"oauth2\"\n[expirable.k.params]\n\(jwt)\nprivate_key_file = \"\(fixture.path("ec.pem"))\"\nsigning_alg = \"ES256\"\n") == nil)
    }
}
