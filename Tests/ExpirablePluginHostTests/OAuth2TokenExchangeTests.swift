import ExpirableCore
@_spi(Testing) import ExpirablePluginHost
import ExpirableTestSupport
import Foundation
import Testing

/// `grant = "token_exchange"` (RFC 8693) of the shipped `oauth2` plugin against the token exchange grant that
/// Tests/Fixtures/oauth_server.py adds to Authlib: it accepts only subject tokens it issued, of the access token or
/// JWT type, and answers an access token with its issued_token_type.
@Suite("oauth2 plugin: token exchange against an Authlib server")
struct OAuth2TokenExchangeTests {
    static let accessTokenType = "urn:ietf:params:oauth:token-type:access_token"

    /// `[expirable.NAME]` exchanging the token in `subject` (a file in the fixture) as the basic client.
    static func expirable(_ setup: OAuth2PluginTests.Setup, _ name: String, subject: String = "subject.token", _ params: String = "") -> String {
        setup.expirable(name, "grant = \"token_exchange\"\nsubject_token_file = \"\(setup.fixture.path(subject))\"\n\(params)")
    }

    @Test("the token in subject_token_file is exchanged for an access token, read again at each call, {key} in audience",
          arguments: OAuth2PluginTests.modes)
    func exchanges(isolation: String) async throws {
        let setup = try OAuth2PluginTests.Setup(expiresIn: 300)
        defer { setup.remove() }
        try OAuth2PluginTests.Setup.write(try setup.server.issueSubjectToken(subject: "alice") + "\n", to: setup.fixture.path("subject.token"))
        let (_, host) = try setup.fixture.engine(
            Self.expirable(setup, "exchanged", "audience = \"https://{key}.api.example\"\nrequested_token_type = \"\(Self.accessTokenType)\"\nscope = \"read\"")
                + Self.expirable(setup, "whole", "value = \"response\""),
            isolation: isolation
        )
        defer { host.shutdown() }

        let before = SystemClock().unixMillis
        let outcome = try await OAuth2PluginTests.call(host, "exchanged", FetchRequest(key: "billing"))
        let fetched = try outcome.result.get()
        #expect(fetched.text.hasPrefix("at-"), "\(fetched.text)")
        guard case .at(let at) = fetched.expiry else {
            Issue.record("expected a finite expiry")
            return
        }
        #expect((before + 300_000...SystemClock().unixMillis + 300_000).contains(at))
        #expect(OAuth2PluginTests.newState(outcome) == nil, "token exchange keeps no state")
        var last = try setup.server.lastRequest()
        #expect(last.status == 200)
        #expect(last.subject == "alice")
        #expect(last.auth_method == "client_secret_basic")
        #expect(last.form["grant_type"] == ["urn:ietf:params:oauth:grant-type:token-exchange"])
        #expect(last.form["subject_token"] == ["<redacted>"])
        #expect(last.form["subject_token_type"] == [Self.accessTokenType])
        #expect(last.form["requested_token_type"] == [Self.accessTokenType])
        #expect(last.form["audience"] == ["https://billing.api.example"])
        #expect(last.form["scope"] == ["read"])

        // A subject token replaced on disk (a projected service account token) is the one the next call trades.
        try OAuth2PluginTests.Setup.write(try setup.server.issueSubjectToken(subject: "bob"), to: setup.fixture.path("subject.token"))
        #expect(try await OAuth2PluginTests.call(host, "exchanged", FetchRequest(key: "payroll")).result.get().text.hasPrefix("at-"))
        last = try setup.server.lastRequest()
        #expect(last.subject == "bob")
        #expect(last.form["audience"] == ["https://payroll.api.example"])
        #expect(last.form["requested_token_type"] == [Self.accessTokenType])

        let whole = try await OAuth2PluginTests.call(host, "whole").result.get().text
        let json = try #require(try JSONSerialization.jsonObject(with: Data(whole.utf8)) as? [String: Any], "\(whole)")
        #expect(json["issued_token_type"] as? String == Self.accessTokenType)
        #expect((json["access_token"] as? String)?.hasPrefix("at-") == true)
        #expect(try setup.server.lastRequest().form["requested_token_type"] == nil, "requested_token_type is sent only when set")
    }

    @Test("a subject token the server does not know is invalid_grant, a type it does not take invalid_request: both permanent",
          arguments: OAuth2PluginTests.modes)
    func refusedExchanges(isolation: String) async throws {
        let setup = try OAuth2PluginTests.Setup()
        defer { setup.remove() }
        let forged = "st-forged-\(UUID().uuidString)"
        try OAuth2PluginTests.Setup.write(forged, to: setup.fixture.path("forged.token"))
        try OAuth2PluginTests.Setup.write(try setup.server.issueSubjectToken(subject: "carol"), to: setup.fixture.path("subject.token"))
        let (_, host) = try setup.fixture.engine(
            Self.expirable(setup, "forged", subject: "forged.token")
                + Self.expirable(setup, "saml", "subject_token_type = \"urn:ietf:params:oauth:token-type:saml2\""),
            isolation: isolation
        )
        defer { host.shutdown() }
        let forgedError = try #require(OAuth2PluginTests.error(try await OAuth2PluginTests.call(host, "forged")))
        #expect(forgedError.message == "oauth2 plugin: \(setup.server.tokenURL) answered HTTP 400 with error \"invalid_grant\": subject_token is not valid")
        #expect(forgedError.errorClass == .permanent)
        #expect(!forgedError.message.contains(forged))
        let samlError = try #require(OAuth2PluginTests.error(try await OAuth2PluginTests.call(host, "saml")))
        #expect(samlError.message == "oauth2 plugin: \(setup.server.tokenURL) answered HTTP 400 with error \"invalid_request\": unsupported subject_token_type urn:ietf:params:oauth:token-type:saml2")
        #expect(samlError.errorClass == .permanent)
        #expect(try setup.server.counters().issued == 0)
    }

    @Test("token exchange params are refused without their grant, and the grant without a subject token file")
    func refusals() throws {
        let fixture = try PluginFixture()
        defer { fixture.remove() }
        try fixture.install(shipped: "oauth2")
        try OAuth2PluginTests.Setup.write("s3cret\n", to: fixture.path("secret"))
        try OAuth2PluginTests.Setup.write("subject\n", to: fixture.path("subject"))
        try OAuth2PluginTests.Setup.write("subject\n", to: fixture.path("open"), mode: 0o644)
        let base = "token_url = \"https://idp.example/oauth2/token\"\nclient_id = \"c\"\nclient_secret_file = \"DIR/secret\""
        let exchange = "\(base)\ngrant = \"token_exchange\""
        let cases: [(String, String)] = [
            ("\(exchange)\nsubject_token = \"eyJhbGciOi\"", "param 'subject_token' would put a secret in the configuration; write it to a file only the daemon can read (chmod 600) and set subject_token_file to its path"),
            (exchange, "param 'subject_token_file' is missing; grant = \"token_exchange\" trades the token in that file (RFC 8693 subject_token) for another, so it needs the file, readable only by the daemon (chmod 600)"),
            ("\(exchange)\nsubject_token_file = \"DIR/open\"", "param 'subject_token_file': DIR/open is accessible by others (mode 0644); chmod o-rwx DIR/open"),
            ("\(exchange)\nsubject_token_file = \"DIR/subject\"\nsubject_token_type = \"\"", "param 'subject_token_type' is empty; set it to a token type URI such as \"urn:ietf:params:oauth:token-type:access_token\", or remove it"),
            ("\(exchange)\nsubject_token_file = \"DIR/subject\"\nrefresh_token_file = \"DIR/subject\"", "param 'refresh_token_file' needs grant = \"refresh_token\"; the token exchange grant uses no refresh token"),
            ("\(base)\nsubject_token_file = \"DIR/subject\"", "param 'subject_token_file' needs grant = \"token_exchange\"; remove it, or set grant"),
            ("\(base)\ngrant = \"refresh_token\"\nrequested_token_type = \"\(Self.accessTokenType)\"", "param 'requested_token_type' needs grant = \"token_exchange\"; remove it, or set grant"),
            ("\(exchange)\nsubject_token_file = \"DIR/subject\"\nform = [\"subject_token_type=x\"]", "param 'form' sets 'subject_token_type', which the plugin sets itself or which would put a secret in the configuration; use the params scope, audience, resource, client_secret_file or refresh_token_file"),
        ]
        for (params, reason) in cases {
            let message = try fixture.refusal("[expirable.k]\nplugin = \"oauth2\"\n[expirable.k.params]\n\(params.replacingOccurrences(of: "DIR", with: fixture.root.path))\n")
            let expected = reason.replacingOccurrences(of: "DIR", with: fixture.root.path)
            #expect(message?.hasSuffix("refused its params: oauth2 plugin: \(expected)") == true, "\(message ?? "loaded")")
        }
    }
}
