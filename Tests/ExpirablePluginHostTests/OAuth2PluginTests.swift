import ExpirableCore
@_spi(Testing) import ExpirablePluginHost
import ExpirableTestSupport
import Foundation
import Testing

/// The shipped `oauth2` plugin (SPEC §5) against a real OAuth 2.0 authorization server (Authlib, in
/// Tests/Fixtures/oauth_server.py), called through the plugin host with the state threaded from call to call as
/// the engine does, inline and in a helper process.
@Suite("oauth2 plugin against an Authlib server")
struct OAuth2PluginTests {
    static let modes = ["inline", "process"]
    /// Secrets with the characters client_secret_basic and client_secret_post must encode.
    static let basicClient = OAuthServer.Client("basic-client", .basic, secret: "s3:cr%et +/=&")
    static let postClient = OAuthServer.Client("post-client", .post, secret: "p&s=t +%:")

    /// A plugin_dir with the oauth2 plugin, the two clients' secret files (mode 0600) and a server knowing them.
    struct Setup {
        let fixture: PluginFixture
        let server: OAuthServer

        init(expiresIn: Int = 60) throws {
            fixture = try PluginFixture()
            do {
                try fixture.install(shipped: "oauth2")
                for client in [OAuth2PluginTests.basicClient, OAuth2PluginTests.postClient] {
                    try Setup.write(client.secret + "\n", to: fixture.path("\(client.id).secret"))
                }
                server = try OAuthServer(clients: [OAuth2PluginTests.basicClient, OAuth2PluginTests.postClient], expiresIn: expiresIn)
            } catch {
                fixture.remove()
                throw error
            }
        }

        static func write(_ text: String, to path: String, mode: mode_t = 0o600) throws {
            try Data(text.utf8).write(to: URL(fileURLWithPath: path))
            chmod(path, mode)
        }

        /// `[expirable.NAME]` with the oauth2 plugin, the server's token_url and `params` (TOML lines).
        func expirable(_ name: String, client: OAuthServer.Client = OAuth2PluginTests.basicClient, _ params: String = "") -> String {
            """
            [expirable.\(name)]
            plugin = "oauth2"
            timeout = "10s"
            [expirable.\(name).params]
            token_url = "\(server.tokenURL)"
            client_id = "\(client.id)"
            client_secret_file = "\(fixture.path("\(client.id).secret"))"
            \(client.method == .post ? "auth = \"post\"\n" : "")\(params)

            """
        }

        func remove() {
            server.stop()
            fixture.remove()
        }
    }

    /// One call of `name`'s fetcher with `request`, waited for.
    static func call(_ host: PluginHost, _ name: String, _ request: FetchRequest = FetchRequest()) async throws -> FetchOutcome {
        let fetcher = try #require(host.definitions.first { $0.name == name }?.fetcher)
        return await withCheckedContinuation { continuation in
            fetcher.fetch(request) { continuation.resume(returning: $0) }
        }
    }

    static func newState(_ outcome: FetchOutcome) -> String? {
        if case .set(let secret) = outcome.state { return String(decoding: secret.bytes, as: UTF8.self) }
        return nil
    }

    static func error(_ outcome: FetchOutcome) -> ExpirableError? {
        if case .failure(let error) = outcome.result { return error }
        return nil
    }

    @Test("client credentials with client_secret_basic and client_secret_post: an access token that expires in expires_in", arguments: modes)
    func clientCredentials(isolation: String) async throws {
        let setup = try Setup(expiresIn: 120)
        defer { setup.remove() }
        let (_, host) = try setup.fixture.engine(
            setup.expirable("basic", "scope = [\"read\", \"write\"]") + setup.expirable("post", client: Self.postClient), isolation: isolation
        )
        defer { host.shutdown() }
        for (name, method) in [("basic", "client_secret_basic"), ("post", "client_secret_post")] {
            let before = SystemClock().unixMillis
            let outcome = try await Self.call(host, name)
            let after = SystemClock().unixMillis
            let fetched = try outcome.result.get()
            #expect(fetched.text.hasPrefix("at-"), "\(fetched.text)")
            guard case .at(let at) = fetched.expiry else {
                Issue.record("expected a finite expiry")
                continue
            }
            #expect((before + 120_000...after + 120_000).contains(at))
            #expect(Self.newState(outcome) == nil, "a client credentials answer has no refresh token")
            let last = try setup.server.lastRequest()
            #expect(last.auth_method == method)
            #expect(last.form["grant_type"] == ["client_credentials"])
            #expect(last.form["scope"] == (name == "basic" ? ["read write"] : nil))
            #expect(last.form["client_secret"] == (name == "post" ? ["<redacted>"] : nil), "the secret travels in the form only with auth = post")
        }
        #expect(try setup.server.counters().issued == 2)
    }

    @Test("refresh token rotation: 100 refreshes, each with the previous answer's refresh token, and the server sees no reuse", arguments: modes)
    func rotation(isolation: String) async throws {
        let setup = try Setup()
        defer { setup.remove() }
        try Setup.write(try setup.server.startRefreshTokenFamily(client: Self.basicClient.id, scope: "offline"), to: setup.fixture.path("rt"))
        let (_, host) = try setup.fixture.engine(
            setup.expirable("rotating", "grant = \"refresh_token\"\nrefresh_token_file = \"\(setup.fixture.path("rt"))\""), isolation: isolation
        )
        defer { host.shutdown() }
        var state: String?
        var tokens = Set<String>()
        for call in 1...100 {
            let outcome = try await Self.call(host, "rotating", FetchRequest(state: state.map { Secret($0) }))
            tokens.insert(try outcome.result.get().text)
            let next = try #require(Self.newState(outcome), "call \(call) gave no new refresh token")
            #expect(next != state)
            state = next
        }
        let counters = try setup.server.counters()
        #expect(counters.refreshes == 100)
        #expect(counters.reuses == 0)
        #expect(counters.revoked_families == 0)
        #expect(tokens.count == 100, "every refresh gave a new access token")
    }

    @Test("invalid_grant for a spent or revoked refresh token is permanent, carries the error_description, and drops the state", arguments: modes)
    func invalidGrant(isolation: String) async throws {
        let setup = try Setup()
        defer { setup.remove() }
        let first = try setup.server.startRefreshTokenFamily(client: Self.basicClient.id)
        try Setup.write(first, to: setup.fixture.path("rt"))
        let (_, host) = try setup.fixture.engine(
            setup.expirable("rotating", "grant = \"refresh_token\"\nrefresh_token_file = \"\(setup.fixture.path("rt"))\""), isolation: isolation
        )
        defer { host.shutdown() }
        let rotated = try await Self.call(host, "rotating")
        let second = try #require(Self.newState(rotated))

        // The spent first token again (what two nodes sharing one refresh token do): the server revokes the family.
        let reused = try await Self.call(host, "rotating", FetchRequest(state: Secret(first)))
        let error = try #require(Self.error(reused))
        #expect(error.message == "oauth2 plugin: \(setup.server.tokenURL) answered HTTP 400 with error \"invalid_grant\": refresh token reused: it was already exchanged, so its whole family is revoked; the refresh token was dropped, so the next call reads refresh_token_file")
        #expect(error.errorClass == .permanent)
        #expect(error.retryAfter == nil)
        if case .clear = reused.state {} else { Issue.record("the dead refresh token should be dropped, got \(reused.state)") }
        #expect(!error.message.contains(first) && !error.message.contains(second) && !error.message.contains(Self.basicClient.secret))

        // Its successor is now revoked too.
        let revoked = try #require(Self.error(try await Self.call(host, "rotating", FetchRequest(state: Secret(second)))))
        #expect(revoked.message.contains("with error \"invalid_grant\": refresh token revoked: its family was revoked after a reuse"))
        #expect(revoked.errorClass == .permanent)
        #expect(try setup.server.counters().reuses == 1)
    }

    @Test("429 with Retry-After in seconds or as an HTTP date gives a temporary error with a retry-after; 503 is temporary", arguments: modes)
    func overload(isolation: String) async throws {
        let setup = try Setup()
        defer { setup.remove() }
        let (_, host) = try setup.fixture.engine(setup.expirable("token"), isolation: isolation)
        defer { host.shutdown() }

        try setup.server.fail(status: 429, retryAfter: "30", count: 1)
        var now = SystemClock().unixMillis
        let limited = try #require(Self.error(try await Self.call(host, "token")))
        // The plugin reads its clock during the call: between now and the answer, however long the answer took
        // to reach this task.
        let answered = SystemClock().unixMillis
        #expect(limited.message == "oauth2 plugin: \(setup.server.tokenURL) answered HTTP 429 with error \"slow_down\": too many token requests; retry after 30s")
        #expect(limited.errorClass == .temporary)
        #expect((now + 30_000 - 1_000...answered + 30_000 + 1_000).contains(limited.retryAfter ?? 0), "\(String(describing: limited.retryAfter))")

        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        try setup.server.fail(status: 503, retryAfter: formatter.string(from: Date().addingTimeInterval(120)), count: 1)
        now = SystemClock().unixMillis
        let unavailable = try #require(Self.error(try await Self.call(host, "token")))
        #expect(unavailable.message.hasPrefix("oauth2 plugin: \(setup.server.tokenURL) answered HTTP 503 without an OAuth error; retry after "))
        #expect(unavailable.errorClass == .temporary)
        #expect(abs((unavailable.retryAfter ?? 0) - (now + 120_000)) < 3_000, "\(String(describing: unavailable.retryAfter))")

        try setup.server.fail(status: 503, count: 1)
        let plain = try #require(Self.error(try await Self.call(host, "token")))
        #expect(plain.message == "oauth2 plugin: \(setup.server.tokenURL) answered HTTP 503 without an OAuth error")
        #expect(plain.errorClass == .temporary)
        #expect(plain.retryAfter == nil)

        #expect(try await Self.call(host, "token").result.get().text.hasPrefix("at-"), "the server answers again")
    }

    @Test("an endpoint's answers the plugin must not pass on: echoed secrets are blanked, an access token with a control byte is refused, a rotated refresh token over the state limit is dropped and held, a huge Retry-After is an hour", arguments: modes)
    func hostileAnswers(isolation: String) async throws {
        let setup = try Setup()
        defer { setup.remove() }
        let first = try setup.server.startRefreshTokenFamily(client: Self.postClient.id)
        try Setup.write(first, to: setup.fixture.path("rt"))
        let (_, host) = try setup.fixture.engine(
            setup.expirable("rotating", client: Self.postClient, "grant = \"refresh_token\"\nrefresh_token_file = \"\(setup.fixture.path("rt"))\""), isolation: isolation
        )
        defer { host.shutdown() }

        // An endpoint that quotes what it was sent (Spring Security OAuth: "Invalid refresh token: <token>").
        try setup.server.answer(status: 400, body: #"{"error": "invalid_grant", "error_description": "Invalid refresh token: {refresh_token} for secret {client_secret}"}"#, count: 1)
        let echoed = try #require(Self.error(try await Self.call(host, "rotating")))
        #expect(!echoed.message.contains(first) && !echoed.message.contains(Self.postClient.secret), "\(echoed.message)")
        #expect(echoed.message.contains("Invalid refresh token: \(String(repeating: "*", count: first.utf8.count)) for secret "), "\(echoed.message)")

        // A C1 CSI, a right-to-left override and a zero-width space in a description reach no terminal or log.
        try setup.server.answer(status: 400, body: #"{"error": "invalid_request", "error_description": "a\u009b31mb\u202ec\u200bd"}"#, count: 1)
        let invisible = try #require(Self.error(try await Self.call(host, "rotating")))
        #expect(invisible.message.hasSuffix("with error \"invalid_request\": a 31mb c d"), "\(invisible.message.unicodeScalars.map { String($0.value, radix: 16) })")

        // CR LF in an access token would go into callers' Authorization headers as it is.
        try setup.server.answer(status: 200, body: #"{"access_token": "AT-1\r\nX-Injected: 1", "token_type": "Bearer", "expires_in": 60}"#, count: 1)
        let injected = try #require(Self.error(try await Self.call(host, "rotating")))
        #expect(injected.message == "oauth2 plugin: \(setup.server.tokenURL) answered an \"access_token\" holding byte 0x0d at offset 4; RFC 6749 allows printable ASCII only, so it was refused")
        #expect(injected.errorClass == .temporary)

        // A Retry-After past what a 64-bit millisecond clock adds up: an hour, the longest the engine holds.
        try setup.server.fail(status: 429, retryAfter: "9223372036854775", count: 1)
        let before = SystemClock().unixMillis
        let limited = try #require(Self.error(try await Self.call(host, "rotating")))
        #expect(limited.message.hasSuffix("retry after 3600s (it asked for longer; an hour at most)"), "\(limited.message)")
        #expect((before + 3_600_000 - 1_000...SystemClock().unixMillis + 3_600_000 + 1_000).contains(limited.retryAfter ?? 0), "\(String(describing: limited.retryAfter))")
        // One past what curl reads (it answers 0 for a number that overflows): an hour too, not none.
        try setup.server.fail(status: 429, retryAfter: "99999999999999999999", count: 1)
        let before1 = SystemClock().unixMillis
        let overflowing = try #require(Self.error(try await Self.call(host, "rotating")))
        #expect(overflowing.message.hasSuffix("retry after 3600s (it asked for longer; an hour at most)"), "\(overflowing.message)")
        #expect((before1 + 3_600_000 - 1_000...SystemClock().unixMillis + 3_600_000 + 1_000).contains(overflowing.retryAfter ?? 0), "\(String(describing: overflowing.retryAfter))")

        // A rotated refresh token the state cannot hold: the old one is spent, so nothing is kept and no call is
        // made for an hour (the host would refuse the whole answer, and the next call send the spent token).
        let huge = String(repeating: "R", count: 70_000)
        try setup.server.answer(status: 200, body: #"{"access_token": "AT-2", "token_type": "Bearer", "expires_in": 60, "refresh_token": "\#(huge)"}"#, count: 1)
        let before2 = SystemClock().unixMillis
        let dropped = try await Self.call(host, "rotating")
        let tooLarge = try #require(Self.error(dropped))
        // The state holds the token with the token_url and client_id it is bound to (and a 26-byte header).
        let room = 65536 - 26 - setup.server.tokenURL.utf8.count - 1 - Self.postClient.id.utf8.count - 1
        #expect(tooLarge.message == "oauth2 plugin: \(setup.server.tokenURL) rotated the refresh token to one of 70000 bytes, over the \(room) a plugin state holds beside token_url and client_id; the old one is spent, so it was dropped and no call is made for an hour: put a new refresh token in refresh_token_file, then lift the hold with `expirablectl clear rotating` (a reload does not)")
        #expect(tooLarge.errorClass == .permanent)
        #expect((before2 + 3_600_000 - 1_000...SystemClock().unixMillis + 3_600_000 + 1_000).contains(tooLarge.retryAfter ?? 0))
        if case .clear = dropped.state {} else { Issue.record("the spent refresh token should be dropped, got \(dropped.state)") }
    }

    /// `text` percent-encoded as the plugin sends a form field: every byte but A-Z a-z 0-9 - . _ ~ as %XX.
    static func formEncoded(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")) ?? text
    }

    @Test("secrets an endpoint echoes as it received them, form-encoded or as the Basic header's base64, are blanked too", arguments: modes)
    func echoedEncodedSecrets(isolation: String) async throws {
        let setup = try Setup()
        defer { setup.remove() }
        let (_, host) = try setup.fixture.engine(
            setup.expirable("post", client: Self.postClient, "grant = \"refresh_token\"") + setup.expirable("basic", "grant = \"refresh_token\""), isolation: isolation
        )
        defer { host.shutdown() }
        let refresh = "RT+a/b=c&d%x"

        // An endpoint that quotes the form it was sent, still encoded.
        try setup.server.answer(status: 400, body: #"{"error": "invalid_request", "error_description": "got {form}"}"#, count: 1)
        let form = try #require(Self.error(try await Self.call(host, "post", FetchRequest(state: Secret(refresh)))))
        #expect(!form.message.contains(Self.formEncoded(refresh)) && !form.message.contains(Self.formEncoded(Self.postClient.secret)), "\(form.message)")
        #expect(form.message.contains("got grant_type=refresh_token&refresh_token=\(String(repeating: "*", count: Self.formEncoded(refresh).utf8.count))&client_id=post-client&client_secret=*"), "\(form.message)")

        // One that quotes the Authorization header: the base64 of the encoded id and secret.
        try setup.server.answer(status: 400, body: #"{"error": "invalid_request", "error_description": "got {authorization}"}"#, count: 1)
        let basic = try #require(Self.error(try await Self.call(host, "basic", FetchRequest(state: Secret(refresh)))))
        let credentials = Data("\(Self.formEncoded(Self.basicClient.id)):\(Self.formEncoded(Self.basicClient.secret))".utf8).base64EncodedString()
        #expect(!basic.message.contains(credentials), "\(basic.message)")
        #expect(basic.message.hasSuffix("with error \"invalid_request\": got Basic \(String(repeating: "*", count: credentials.utf8.count))"), "\(basic.message)")
    }

    @Test("a refresh token kept as state is bound to its token_url and client_id: another endpoint gets refresh_token_file's token, or an error, never it; a state of the earlier format is used once and bound", arguments: modes)
    func stateBoundToEndpoint(isolation: String) async throws {
        let setup = try Setup()
        defer { setup.remove() }
        let first = try setup.server.startRefreshTokenFamily(client: Self.basicClient.id)
        try Setup.write(try setup.server.startRefreshTokenFamily(client: Self.basicClient.id), to: setup.fixture.path("other.rt"))
        // The same server under another name: what a token_url edited between two runs (or reloads) looks like.
        let moved = setup.server.tokenURL.replacingOccurrences(of: "127.0.0.1", with: "localhost")
        let elsewhere = { (name: String, extra: String) in
            "[expirable.\(name)]\nplugin = \"oauth2\"\ntimeout = \"10s\"\n[expirable.\(name).params]\ntoken_url = \"\(moved)\"\nclient_id = \"basic-client\"\n"
                + "client_secret_file = \"\(setup.fixture.path("basic-client.secret"))\"\ngrant = \"refresh_token\"\n\(extra)\n"
        }
        let (_, host) = try setup.fixture.engine(
            setup.expirable("a", "grant = \"refresh_token\"") + elsewhere("b", "refresh_token_file = \"\(setup.fixture.path("other.rt"))\"") + elsewhere("c", ""),
            isolation: isolation
        )
        defer { host.shutdown() }

        // A state saved by the earlier format (the bare token) is used, and the rotated token comes back bound.
        let rotated = try await Self.call(host, "a", FetchRequest(state: Secret(first)))
        #expect(try rotated.result.get().text.hasPrefix("at-"))
        let bound = try #require(Self.newState(rotated))
        // Without a rotation, the earlier format's token is written back bound.
        try setup.server.answer(status: 200, body: #"{"access_token": "AT-1", "token_type": "Bearer", "expires_in": 60}"#, count: 1)
        let kept = try await Self.call(host, "a", FetchRequest(state: Secret("RT-earlier")))
        #expect(try kept.result.get().text == "AT-1")
        let rebound = try #require(Self.newState(kept), "an earlier-format state is rewritten with its binding")
        #expect(rebound != "RT-earlier" && rebound.hasSuffix("RT-earlier"))

        // The state moved to another token_url: refresh_token_file's token is sent there, not the state's.
        let moved1 = try await Self.call(host, "b", FetchRequest(state: Secret(bound)))
        #expect(try moved1.result.get().text.hasPrefix("at-"))
        #expect(try setup.server.counters().reuses == 0)
        // The state's token was not spent: its own endpoint still takes it.
        #expect(try await Self.call(host, "a", FetchRequest(state: Secret(bound))).result.get().text.hasPrefix("at-"))
        #expect(try setup.server.counters().reuses == 0)

        // Without refresh_token_file: an error that says why, and no request.
        let requests = try setup.server.counters().requests
        let refused = try #require(Self.error(try await Self.call(host, "c", FetchRequest(state: Secret(rebound)))))
        #expect(refused.message == "oauth2 plugin: the refresh token in the state was issued by \(setup.server.tokenURL) to client_id basic-client, and the expirable now has token_url \(moved) and client_id basic-client, so it was not sent; param 'refresh_token_file' is not set: put a refresh token of the new endpoint in a file (chmod 600) and set refresh_token_file to its path")
        #expect(refused.errorClass == .permanent)
        #expect(try setup.server.counters().requests == requests)
    }

    @Test("value = \"response\" refuses an answer that is not UTF-8, which callers could not read as text", arguments: modes)
    func responseNotUTF8(isolation: String) async throws {
        let setup = try Setup()
        defer { setup.remove() }
        let (_, host) = try setup.fixture.engine(setup.expirable("whole", "value = \"response\""), isolation: isolation)
        defer { host.shutdown() }
        try setup.server.answer(status: 200, body: #"{"access_token": "abc", "expires_in": 60, "x": "{invalid_utf8}"}"#, count: 1)
        let refused = try #require(Self.error(try await Self.call(host, "whole")))
        #expect(refused.message == "oauth2 plugin: \(setup.server.tokenURL) answered a body that is not UTF-8 (byte 0xff at offset 48); value = \"response\" hands the whole answer to callers as text, so it was refused")
        #expect(refused.errorClass == .temporary)
    }

    @Test("an answer with a member twice is refused saying so, not as a body that is not JSON", arguments: modes)
    func duplicateMember(isolation: String) async throws {
        let setup = try Setup()
        defer { setup.remove() }
        let (_, host) = try setup.fixture.engine(setup.expirable("rt", "grant = \"refresh_token\""), isolation: isolation)
        defer { host.shutdown() }
        try setup.server.answer(status: 200, body: #"{"access_token": "t", "expires_in": 60, "refresh_token": "RT-A", "refresh_token": "RT-B"}"#, count: 1)
        let refused = try #require(Self.error(try await Self.call(host, "rt", FetchRequest(state: Secret("RT-0")))))
        #expect(refused.message == "oauth2 plugin: \(setup.server.tokenURL) answered HTTP 200 with the member \"refresh_token\" twice, so which one it means is unknown; the answer was refused")
    }

    @Test("a wrong client secret is invalid_client, permanent; an endpoint that refuses connections is a temporary error")
    func clientAndNetworkErrors() async throws {
        let setup = try Setup()
        defer { setup.remove() }
        try Setup.write("not-the-secret", to: setup.fixture.path("wrong.secret"))
        let closed = try Self.closedPort()
        let (_, host) = try setup.fixture.engine(
            "[expirable.wrong]\nplugin = \"oauth2\"\n[expirable.wrong.params]\ntoken_url = \"\(setup.server.tokenURL)\"\nclient_id = \"basic-client\"\nclient_secret_file = \"\(setup.fixture.path("wrong.secret"))\"\n"
                + "[expirable.down]\nplugin = \"oauth2\"\n[expirable.down.params]\ntoken_url = \"http://127.0.0.1:\(closed)/token\"\nclient_id = \"basic-client\"\nclient_secret_file = \"\(setup.fixture.path("basic-client.secret"))\"\n"
        )
        defer { host.shutdown() }
        let wrong = try #require(Self.error(try await Self.call(host, "wrong")))
        #expect(wrong.message.hasPrefix("oauth2 plugin: \(setup.server.tokenURL) answered HTTP 401 with error \"invalid_client\": "), "\(wrong.message)")
        #expect(wrong.errorClass == .permanent)
        let down = try #require(Self.error(try await Self.call(host, "down")))
        #expect(down.message.hasPrefix("oauth2 plugin: cannot reach http://127.0.0.1:\(closed)/token: "), "\(down.message)")
        #expect(down.errorClass == .temporary)
    }

    @Test("an endpoint slower than the plugin's timeout is a temporary error saying so, before the expirable's timeout", arguments: modes)
    func slowEndpoint(isolation: String) async throws {
        let setup = try Setup()
        defer { setup.remove() }
        try setup.server.slow(20)
        let (_, host) = try setup.fixture.engine(setup.expirable("slow", "timeout = \"300ms\""), isolation: isolation)
        defer { host.shutdown() }
        // Timed inside the completion, on the thread the plugin answers on: after `await` the time would also count
        // however long the test's task waited for a thread of the cooperative pool, which a loaded full suite
        // (tests that block their thread in sleeps) can make a minute.
        let fetcher = try #require(host.definitions.first { $0.name == "slow" }?.fetcher)
        let started = ContinuousClock.now
        let (outcome, elapsed) = await withCheckedContinuation { continuation in
            fetcher.fetch(FetchRequest()) { continuation.resume(returning: ($0, ContinuousClock.now - started)) }
        }
        let slow = try #require(Self.error(outcome))
        #expect(elapsed < .seconds(8), "the plugin's own 300 ms, well before the expirable's 10 s")
        #expect(slow.message == "oauth2 plugin: \(setup.server.tokenURL) did not answer within 300 ms (param timeout)")
        #expect(slow.code == .timeout, "the plugin's own deadline is a TIMEOUT, as the call's is")
        #expect(slow.errorClass == .temporary)
    }

    @Test("{key} in audience, scope, resource and form values becomes the call's key, URL-encoded; without a key it is an error", arguments: modes)
    func keySubstitution(isolation: String) async throws {
        let setup = try Setup()
        defer { setup.remove() }
        let (_, host) = try setup.fixture.engine(setup.expirable("family", """
            audience = "api://{key}"
            scope = "read:{key}"
            resource = ["https://{key}.example/", "https://static.example/"]
            form = ["tenant={key}", "prompt=none"]
            """), isolation: isolation)
        defer { host.shutdown() }
        let key = "t/7&x=1%{key}"
        #expect(try await Self.call(host, "family", FetchRequest(key: key)).result.get().text.hasPrefix("at-"))
        let form = try setup.server.lastRequest().form
        #expect(form["audience"] == ["api://\(key)"])
        #expect(form["scope"] == ["read:\(key)"])
        #expect(form["resource"] == ["https://\(key).example/", "https://static.example/"])
        #expect(form["tenant"] == [key])
        #expect(form["prompt"] == ["none"])
        #expect(form["x"] == nil, "the key cannot add form fields")

        let unkeyed = try #require(Self.error(try await Self.call(host, "family")))
        #expect(unkeyed.message == "oauth2 plugin: param 'scope' uses {key}, and this call has no key; set keyed = true on the expirable and fetch NAME:KEY")
        #expect(unkeyed.errorClass == .permanent)
    }

    @Test("value = \"response\" is the whole JSON answer without its refresh token, which becomes the state", arguments: modes)
    func valueResponse(isolation: String) async throws {
        let setup = try Setup(expiresIn: 90)
        defer { setup.remove() }
        let first = try setup.server.startRefreshTokenFamily(client: Self.postClient.id, scope: "profile")
        let (_, host) = try setup.fixture.engine(setup.expirable("whole", client: Self.postClient, "grant = \"refresh_token\"\nvalue = \"response\""), isolation: isolation)
        defer { host.shutdown() }
        let outcome = try await Self.call(host, "whole", FetchRequest(state: Secret(first)))
        let text = try outcome.result.get().text
        let json = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any], "\(text)")
        #expect((json["access_token"] as? String)?.hasPrefix("at-") == true)
        #expect(json["token_type"] as? String == "Bearer")
        #expect(json["expires_in"] as? Int == 90)
        #expect(json["scope"] as? String == "profile")
        #expect(json["refresh_token"] == nil, "the refresh token is state, never a value: \(text)")
        let next = try #require(Self.newState(outcome))
        #expect(next != first && !text.contains(next))
    }

    @Test("without expires_in the ttl param sets the lifetime; without either the answer is a permanent error")
    func ttlFallback() async throws {
        let setup = try Setup()
        defer { setup.remove() }
        try setup.server.omitExpiresIn(true)
        let (_, host) = try setup.fixture.engine(setup.expirable("ttl", "ttl = \"5m\"") + setup.expirable("none"))
        defer { host.shutdown() }
        let before = SystemClock().unixMillis
        let fetched = try await Self.call(host, "ttl").result.get()
        guard case .at(let at) = fetched.expiry else {
            Issue.record("expected a finite expiry")
            return
        }
        #expect(at >= before + 300_000 && at <= SystemClock().unixMillis + 300_000)
        let none = try #require(Self.error(try await Self.call(host, "none")))
        #expect(none.message == "oauth2 plugin: \(setup.server.tokenURL) answered without \"expires_in\"; set param ttl to the tokens' lifetime")
        #expect(none.errorClass == .permanent)
    }

    /// A loopback port that nothing listens on (bound, then closed).
    static func closedPort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        inet_pton(AF_INET, "127.0.0.1", &address.sin_addr)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard bound else { throw TestSupportError("bind: \(String(cString: strerror(errno)))") }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}

@Suite("oauth2 plugin params")
struct OAuth2ParamTests {
    static let url = "token_url = \"https://idp.example/oauth2/token\""

    @Test("oauth2 refuses bad params and secret files when the daemon starts", arguments: [
        ("client_id = \"c\"\nclient_secret_file = \"SECRET\"", "param 'token_url' is missing; set it to the token endpoint, such as \"https://idp.example/oauth2/token\""),
        ("token_url = \"http://idp.example/token\"\nclient_id = \"c\"\nclient_secret_file = \"SECRET\"", "param 'token_url' is \"http://idp.example/token\": plain http would send the client secret and tokens unencrypted; use https:// (http:// is accepted for 127.0.0.1, [::1] and localhost only)"),
        ("token_url = \"https://c:s@idp.example/token\"\nclient_id = \"c\"\nclient_secret_file = \"SECRET\"", "param 'token_url' carries a user name or password; put the client secret in the file named by client_secret_file"),
        ("\(url)\nclient_id = \"c\"\nclient_secret = \"hunter2\"", "param 'client_secret' would put a secret in the configuration; write it to a file only the daemon can read (chmod 600) and set client_secret_file to its path"),
        ("\(url)\nclient_id = \"c\"", "param 'client_secret_file' is missing; the client credentials grant needs the client secret, in a file only the daemon can read (chmod 600), or auth = \"private_key_jwt\" with the client's private key in private_key_file"),
        ("\(url)\nclient_id = \"c\"\nclient_secret_file = \"MISSING\"", "param 'client_secret_file': cannot open MISSING: No such file or directory"),
        ("\(url)\nclient_id = \"c\"\nclient_secret_file = \"DIR\"", "param 'client_secret_file': DIR is not a regular file"),
        ("\(url)\nclient_id = \"c\"\nclient_secret_file = \"OPEN\"", "param 'client_secret_file': OPEN is accessible by others (mode 0644); chmod o-rwx OPEN"),
        ("\(url)\nclient_id = \"c\"\nclient_secret_file = \"EMPTY\"", "param 'client_secret_file': EMPTY is empty"),
        ("\(url)\nclient_id = \"c\"\nclient_secret_file = \"SECRET\"\ngrant = \"password\"", "param 'grant' is \"password\"; expected \"client_credentials\", \"refresh_token\" or \"token_exchange\""),
        ("\(url)\nclient_id = \"c\"\nclient_secret_file = \"SECRET\"\nauth = \"jwt\"", "param 'auth' is \"jwt\"; expected \"basic\" (client_secret_basic, the default), \"post\" (client_secret_post) or \"private_key_jwt\" (a JWT signed with the key in private_key_file)"),
        ("\(url)\nclient_id = \"c\"\nclient_secret_file = \"SECRET\"\nrefresh_token_file = \"SECRET\"", "param 'refresh_token_file' needs grant = \"refresh_token\"; the client credentials grant uses no refresh token"),
        ("\(url)\nclient_id = \"c\"\nclient_secret_file = \"SECRET\"\nform = [\"client_secret=x\"]", "param 'form' sets 'client_secret', which the plugin sets itself or which would put a secret in the configuration; use the params scope, audience, resource, client_secret_file or refresh_token_file"),
        ("\(url)\nclient_id = \"c\"\nclient_secret_file = \"SECRET\"\nform = [\"novalue\"]", "param 'form' has \"novalue\"; expected \"NAME=VALUE\", such as form = [\"tenant=contoso\"]"),
        ("\(url)\nclient_id = \"c\"\nclient_secret_file = \"SECRET\"\ntimeout = \"30s\"", "param 'timeout' (30000 ms) must be below the expirable's timeout (30000 ms), so that the plugin reports its own error before the call is cut off; lower it or raise the expirable's timeout"),
        ("\(url)\nclient_id = \"c\"\nclient_secret_file = \"SECRET\"\nvalue = \"id_token\"", "param 'value' is \"id_token\"; expected \"access_token\" (the default) or \"response\" (the whole JSON answer)"),
        ("\(url)\nclient_id = \"c\"\nclient_secret_file = \"SECRET\"\nclient_id_file = \"x\"", "unknown param 'client_id_file'; expected one of assertion_audience, assertion_lifetime, audience, auth, ca_file, client_id, client_secret_file, form, grant, key_id, private_key_file, refresh_token_file, requested_token_type, resource, scope, signing_alg, subject_token_file, subject_token_type, timeout, token_url, ttl, value"),
        ("\(url)\ngrant = \"refresh_token\"\nclient_id = \"c\"\nauth = \"post\"", "param 'auth' says how to send the client secret, and there is none; set client_secret_file, or remove auth for a public client"),
        ("\(url)\nclient_id = \"c\"\nclient_secret_file = \"SECRET\"\nca_file = \"\"", "param 'ca_file' is empty; set it to a file's absolute path, or remove it"),
        ("\(url)\ngrant = \"refresh_token\"\nclient_id = \"c\"\nclient_secret_file = \"\"", "param 'client_secret_file' is empty; set it to a file's absolute path, or remove it"),
        ("\(url)\ngrant = \"refresh_token\"\nclient_id = \"c\"\nclient_secret_file = \"SECRET\"\nrefresh_token_file = \"\"", "param 'refresh_token_file' is empty; set it to a file's absolute path, or remove it"),
        ("\(url)\ngrant = \"token_exchange\"\nclient_id = \"c\"\nclient_secret_file = \"SECRET\"\nsubject_token_file = \"\"", "param 'subject_token_file' is empty; set it to a file's absolute path, or remove it"),
        ("\(url)\nclient_id = \"c\"\nauth = \"private_key_jwt\"\nprivate_key_file = \"\"", "param 'private_key_file' is empty; set it to a file's absolute path, or remove it"),
        ("\(url)\nclient_id = \"c\"\nclient_secret_file = \"../secrets/basic.secret\"", "param 'client_secret_file' is \"../secrets/basic.secret\", a relative path, which would depend on the daemon's working directory; write its absolute path (the plugin does not know where the configuration file is)"),
        ("\(url)\nclient_id = \"c\"\nclient_secret_file = \"SECRET\"\nca_file = \"ca.pem\"", "param 'ca_file' is \"ca.pem\", a relative path, which would depend on the daemon's working directory; write its absolute path (the plugin does not know where the configuration file is)"),
        ("\(url)\nclient_id = \"c\"\nclient_secret_file = \"SECRET\"\nca_file = \"DIR\"", "param 'ca_file': DIR is not a regular file"),
        ("\(url)\nclient_id = \"c\"\nclient_secret_file = \"SECRET\"\nca_file = \"SECRET\"", "param 'ca_file': SECRET holds no PEM certificate; expected the CA certificates that may sign the endpoint's, each from \"-----BEGIN CERTIFICATE-----\""),
        ("\(url)\ngrant = \"refresh_token\"\nclient_id = \"c\"\nclient_secret_file = \"SECRET\"\nrefresh_token_file = \"DIR/../{key}\"", "param 'refresh_token_file' is \"DIR/../{key}\", with {key} and a \".\" or \"..\" component; write the path without them, so that a key cannot name a file outside its directory"),
        ("\(url)\nclient_id = \"c\"\nclient_secret_file = \"SECRET\"\nca_file = \"WWCA\"", "param 'ca_file': WWCA is writable by others (mode 0666), and whoever can write it chooses the servers trusted with the client's credentials; chmod go-w WWCA"),
        ("\(url)\nclient_id = \"c\"\nclient_secret_file = \"SECRET\"\nca_file = \"GWCA\"", "param 'ca_file': GWCA is writable by its group (mode 0664), and whoever can write it chooses the servers trusted with the client's credentials; chmod go-w GWCA"),
        ("\(url)\nclient_id = \"c\"\nclient_secret_file = \"SECRET\"\nform = [\"{key}=x\"]", "param 'form' has \"{key}=x\", with {key} in the field's name; {key} is replaced in values only: write the name itself, such as form = [\"tenant={key}\"]"),
        ("\(url)\nclient_id = \"c\"\nclient_secret_file = \"DIR/{key}.secret\"", "param 'client_secret_file' is \"DIR/{key}.secret\", with {key}, which only refresh_token_file replaces (each key's first refresh token); name the one file every key uses"),
        ("\(url)\ngrant = \"token_exchange\"\nclient_id = \"c\"\nclient_secret_file = \"SECRET\"\nsubject_token_file = \"DIR/{key}\"", "param 'subject_token_file' is \"DIR/{key}\", with {key}, which only refresh_token_file replaces (each key's first refresh token); name the one file every key uses"),
        ("token_url = \"http://127.0.0.1:99999/token\"\nclient_id = \"c\"\nclient_secret_file = \"SECRET\"", "param 'token_url' is \"http://127.0.0.1:99999/token\", whose port is not a number from 1 to 65535"),
    ])
    func refuses(params: String, reason: String) throws {
        let fixture = try PluginFixture()
        defer { fixture.remove() }
        try fixture.install(shipped: "oauth2")
        let files = ["SECRET": fixture.path("secret"), "MISSING": fixture.path("missing"), "DIR": fixture.path("dir"),
                     "OPEN": fixture.path("open"), "EMPTY": fixture.path("empty"),
                     "WWCA": fixture.path("ww-ca.pem"), "GWCA": fixture.path("gw-ca.pem")]
        try OAuth2PluginTests.Setup.write("s3cret\n", to: files["SECRET"]!)
        try OAuth2PluginTests.Setup.write("s3cret\n", to: files["OPEN"]!, mode: 0o644)
        try OAuth2PluginTests.Setup.write("\n", to: files["EMPTY"]!)
        // The CA files' mode is checked before their content.
        try OAuth2PluginTests.Setup.write("s3cret\n", to: files["WWCA"]!, mode: 0o666)
        try OAuth2PluginTests.Setup.write("s3cret\n", to: files["GWCA"]!, mode: 0o664)
        try FileManager.default.createDirectory(atPath: files["DIR"]!, withIntermediateDirectories: true)
        var params = params, reason = reason
        for (placeholder, path) in files {
            params = params.replacingOccurrences(of: placeholder, with: path)
            reason = reason.replacingOccurrences(of: placeholder, with: path)
        }
        let message = try fixture.refusal("[expirable.k]\nplugin = \"oauth2\"\n[expirable.k.params]\n\(params)\n")
        #expect(message?.hasSuffix("refused its params: oauth2 plugin: \(reason)") == true, "\(message ?? "loaded")")
    }

    @Test("a token_url curl cannot parse is refused as such, not as a URL that is not https")
    func unparsableURL() throws {
        let fixture = try PluginFixture()
        defer { fixture.remove() }
        try fixture.install(shipped: "oauth2")
        try OAuth2PluginTests.Setup.write("s3cret\n", to: fixture.path("secret"))
        let message = try fixture.refusal("[expirable.k]\nplugin = \"oauth2\"\n[expirable.k.params]\ntoken_url = \"http://127.0.0.1:8080/token \"\nclient_id = \"c\"\nclient_secret_file = \"\(fixture.path("secret"))\"\n")
        #expect(message?.contains("refused its params: oauth2 plugin: param 'token_url' is \"http://127.0.0.1:8080/token \", which curl cannot parse as a URL (") == true, "\(message ?? "loaded")")
        #expect(message?.hasSuffix("); write it without spaces, such as \"https://idp.example/oauth2/token\"") == true, "\(message ?? "loaded")")
    }
}
