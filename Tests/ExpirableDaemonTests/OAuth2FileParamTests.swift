import ExpirableTestSupport
import Foundation
import Testing

/// The oauth2 plugin's file params through a real daemon and `expirablectl check-config`: a keyed refresh token
/// family starting each key from its own `refresh_token_file` (SPEC §3.20) against the Authlib server
/// (Tests/Fixtures/oauth_server.py), the paths checked at start (FIFOs, empty and relative paths, `ca_file`), and
/// `ca_file` as the only CAs trusted, against an HTTPS endpoint with the daemon given its own /etc/ssl/certs.
@Suite("oauth2 file params through the daemon")
struct OAuth2FileParamTests {
    static let client = OAuth2DaemonTests.client

    /// check-config on the daemon's configuration, bounded (a plugin blocked in open() would hang it), run from
    /// `directory` when given.
    static func checkConfig(_ daemon: DaemonProcess, from directory: String? = nil) throws -> ToolResult {
        let ctl = try TestPaths.product("expirablectl").path
        let arguments = [ctl, "check-config", daemon.configPath, "--socket", daemon.socket]
        guard let directory else { return try runTool(ctl, Array(arguments.dropFirst()), seconds: 10) }
        return try runTool("/usr/bin/env", ["-C", directory] + arguments, seconds: 10)
    }

    /// What check-config and the daemon at start say after "refused its params: oauth2 plugin: ", both bounded.
    static func refusals(_ daemon: DaemonProcess) throws -> (check: String, start: String) {
        let check = try checkConfig(daemon)
        #expect(check.status == 78, "check-config did not refuse (status \(check.status)): \(check.stdout)\(check.stderr)")
        let start = try runTool(TestPaths.product("expirabled").path, ["--config", daemon.configPath], seconds: 10)
        #expect(start.status == 1, "the daemon did not refuse to start (status \(start.status))")
        return (check.stderr, start.stderr)
    }

    static func write(_ text: String, to path: String) throws {
        try OAuth2DaemonTests.write(text, to: path)
    }

    /// A daemon (not started) with the oauth2 plugin, a 0600 client.secret and `expirables`, for checks made
    /// before any request: "DIR" stands for its directory, and `oauth2`'s TOKEN_URL for a closed loopback port.
    static func unstarted(_ expirables: String) throws -> DaemonProcess {
        let daemon = try DaemonProcess(expirables: expirables.replacingOccurrences(of: "TOKEN_URL", with: "http://127.0.0.1:1/token"),
                                       testPlugins: [], shippedPlugins: ["oauth2"], start: false)
        do {
            try write("s3cret\n", to: daemon.directory.appending("client.secret"))
        } catch {
            daemon.remove()
            throw error
        }
        return daemon
    }

    @Test("a keyed refresh_token family with {key} in refresh_token_file starts each key from its own file; both rotate and the server sees no reuse; a key leaving the directory is a permanent error")
    func keyedRefreshTokenFiles() throws {
        let server = try OAuthServer(clients: [Self.client], expiresIn: 60)
        defer { server.stop() }
        let daemon = try OAuth2DaemonTests.daemon(server, OAuth2DaemonTests.oauth2(
            "fam", "keyed = true", params: "grant = \"refresh_token\"\nrefresh_token_file = \"DIR/rt/{key}\"\nform = [\"k={key}\"]"
        ))
        defer { daemon.remove() }
        try FileManager.default.createDirectory(atPath: daemon.directory.appending("rt"), withIntermediateDirectories: true)
        var firsts: [String] = []
        for key in ["a", "b"] {
            let first = try server.startRefreshTokenFamily(client: Self.client.id, scope: "offline")
            try Self.write(first + "\n", to: daemon.directory.appending("rt/\(key)"))
            firsts.append(first)
        }
        try daemon.start()

        var tokens: Set<String> = []
        for round in 0..<4 {
            for key in ["a", "b"] {
                if round > 0 { #expect(try daemon.redis("CLEAR", "fam:\(key)") == "OK") }
                let token = try daemon.redis("GET", "fam:\(key)")
                #expect(token.hasPrefix("at-") && !tokens.contains(token), "round \(round), key \(key): \(token)")
                tokens.insert(token)
                #expect(try server.lastRequest().form["k"] == [key])
            }
        }
        var counters = try server.counters()
        #expect(counters.refreshes == 8, "\(counters)")
        #expect(counters.reuses == 0, "a refresh token was used twice: \(counters)")
        #expect(counters.revoked_families == 0, "\(counters)")

        // A key that would name a file outside rt/: refused before anything is read or sent.
        let requests = counters.requests
        for key in ["..", "."] {
            let refused = try daemon.redis("GET", "fam:\(key)")
            #expect(refused.hasPrefix("FETCH ") && refused.hasSuffix("oauth2 plugin: the key \"\(key)\" cannot be used in param 'refresh_token_file' \(daemon.directory.path)/rt/{key}: a key may not hold \"/\" nor make a \".\" or \"..\" component of it"),
                    "\(refused)")
            #expect(try OAuth2DaemonTests.info(daemon, "fam:\(key)", "last_error_class") == "permanent")
        }
        let slashed = try daemon.redis("GET", "fam:x/../../client.secret")
        #expect(slashed.contains("the key \"x/../../client.secret\" cannot be used in param 'refresh_token_file'"), "\(slashed)")
        counters = try server.counters()
        #expect(counters.requests == requests, "\(counters)")
        let log = daemon.log
        #expect(!tokens.contains { log.contains($0) } && !firsts.contains { log.contains($0) })
    }

    @Test("a keyed refresh_token family whose refresh_token_file has no {key} refuses to send the shared token: permanent, and the server sees no request and no reuse; a plain expirable on the file works")
    func sharedRefreshTokenFile() throws {
        let server = try OAuthServer(clients: [Self.client], expiresIn: 60)
        defer { server.stop() }
        let params = "grant = \"refresh_token\"\nrefresh_token_file = \"DIR/shared.rt\""
        let daemon = try OAuth2DaemonTests.daemon(
            server, OAuth2DaemonTests.oauth2("krt", "keyed = true", params: params) + OAuth2DaemonTests.oauth2("plain", params: params)
        )
        defer { daemon.remove() }
        let first = try server.startRefreshTokenFamily(client: Self.client.id)
        try Self.write(first + "\n", to: daemon.directory.appending("shared.rt"))
        try daemon.start()

        for key in ["a", "b"] {
            let refused = try daemon.redis("GET", "krt:\(key)")
            #expect(refused.hasPrefix("FETCH ") && refused.hasSuffix("oauth2 plugin: param 'refresh_token_file' \(daemon.directory.path)/shared.rt is shared by every key of the family, "
                    + "and a refresh token used by two keys is a reuse that revokes its whole family; write {key} in its path (such as "
                    + "/etc/expirable/refresh_tokens/{key}) and put each key's first refresh token in its own file"),
                    "\(refused)")
            #expect(try OAuth2DaemonTests.info(daemon, "krt:\(key)", "last_error_class") == "permanent")
        }
        var counters = try server.counters()
        #expect(counters.requests == 0 && counters.reuses == 0, "\(counters)")

        #expect(try daemon.redis("GET", "plain").hasPrefix("at-"), "a plain expirable has one state, so the file is its own")
        counters = try server.counters()
        #expect(counters.refreshes == 1 && counters.reuses == 0 && counters.revoked_families == 0, "\(counters)")
    }

    @Test("a FIFO in any file param is refused by check-config and at start, naming the param, without hanging; a symlink to a regular file is still accepted")
    func fifoRefused() throws {
        let cases: [(param: String, params: String)] = [
            ("client_secret_file", "client_secret_file = \"DIR/fifo\""),
            ("refresh_token_file", "client_secret_file = \"DIR/client.secret\"\ngrant = \"refresh_token\"\nrefresh_token_file = \"DIR/fifo\""),
            ("subject_token_file", "client_secret_file = \"DIR/client.secret\"\ngrant = \"token_exchange\"\nsubject_token_file = \"DIR/fifo\""),
            ("private_key_file", "auth = \"private_key_jwt\"\nprivate_key_file = \"DIR/fifo\""),
            ("ca_file", "client_secret_file = \"DIR/client.secret\"\nca_file = \"DIR/fifo\""),
        ]
        for (param, params) in cases {
            let daemon = try Self.unstarted(
                "[expirable.x]\nplugin = \"oauth2\"\ntimeout = \"2s\"\n[expirable.x.params]\ntoken_url = \"http://127.0.0.1:1/token\"\nclient_id = \"c\"\n\(params)\n"
            )
            defer { daemon.remove() }
            let fifo = daemon.directory.appending("fifo")
            #expect(mkfifo(fifo, 0o600) == 0)
            let (check, start) = try Self.refusals(daemon)
            let reason = "refused its params: oauth2 plugin: param '\(param)': \(fifo) is not a regular file"
            #expect(check.contains(reason), "\(param): \(check)")
            #expect(start.contains(reason), "\(param): \(start)")
        }

        let daemon = try Self.unstarted(
            "[expirable.x]\nplugin = \"oauth2\"\n[expirable.x.params]\ntoken_url = \"http://127.0.0.1:1/token\"\nclient_id = \"c\"\nclient_secret_file = \"DIR/link\"\n"
        )
        defer { daemon.remove() }
        #expect(symlink(daemon.directory.appending("client.secret"), daemon.directory.appending("link")) == 0)
        let check = try Self.checkConfig(daemon)
        #expect(check.status == 0, "\(check.stderr)")
    }

    @Test("ca_file must be a regular file holding a PEM certificate: /dev/null, a directory and a private key are refused at start naming ca_file; a CA certificate is accepted")
    func caFileChecked() throws {
        let keys = try TemporaryDirectory("expirable-ca")
        defer { keys.remove() }
        let key = keys.appending("ca.key"), certificate = keys.appending("ca.pem")
        let made = try runTool("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key,
                                           "-out", certificate, "-days", "1", "-subj", "/CN=expirable test CA"])
        #expect(made.status == 0, "\(made.stderr)")
        chmod(key, 0o600)
        let cases: [(path: String, reason: String)] = [
            ("/dev/null", "param 'ca_file': /dev/null is not a regular file"),
            (keys.path, "param 'ca_file': \(keys.path) is not a regular file"),
            (key, "param 'ca_file': \(key) holds no PEM certificate; expected the CA certificates that may sign the endpoint's, each from \"-----BEGIN CERTIFICATE-----\""),
        ]
        for (path, reason) in cases {
            let daemon = try Self.unstarted(OAuth2DaemonTests.oauth2("x", params: "ca_file = \"\(path)\""))
            defer { daemon.remove() }
            let (check, start) = try Self.refusals(daemon)
            #expect(check.contains("refused its params: oauth2 plugin: \(reason)"), "\(check)")
            #expect(start.contains("refused its params: oauth2 plugin: \(reason)"), "\(start)")
        }
        let daemon = try Self.unstarted(OAuth2DaemonTests.oauth2("x", params: "ca_file = \"\(certificate)\""))
        defer { daemon.remove() }
        let check = try Self.checkConfig(daemon)
        #expect(check.status == 0, "\(check.stderr)")
    }

    /// Whether a program may be started in its own mount namespace with a directory bound over /etc/ssl/certs
    /// (`unshare --mount` and `mount --bind` need root, or CAP_SYS_ADMIN); probed once with an empty directory.
    static let ownCertificateDirectory: Bool = {
        guard let empty = try? TemporaryDirectory("expirable-probe") else { return false }
        defer { empty.remove() }
        let probe = try? runTool("unshare", ["--mount", "--propagation", "private", "sh", "-c", "mount --bind \"$0\" /etc/ssl/certs", empty.path], seconds: 10)
        return probe?.status == 0
    }()

    /// A token endpoint over HTTPS on 127.0.0.1 with `certificate` and `key`: every POST gets the access token
    /// "at-tls". It prints its port, then serves until killed.
    static let httpsEndpoint = """
        import json, ssl, sys
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = json.dumps({"access_token": "at-tls", "token_type": "Bearer", "expires_in": 60}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(sys.argv[1], sys.argv[2])
        server.socket = context.wrap_socket(server.socket, server_side=True)
        print(server.server_address[1], flush=True)
        server.serve_forever()
        """

    @Test("with ca_file, only its CAs verify the endpoint: a certificate signed by a CA of the system's CA directory is refused naming the endpoint; one signed by ca_file's CA is accepted; without ca_file the system's CAs verify it",
          .enabled(if: ownCertificateDirectory, "needs `unshare --mount` and `mount --bind` (root) to give the daemon its own /etc/ssl/certs"))
    func caFileAlone() throws {
        let pki = try TemporaryDirectory("expirable-pki")
        defer { pki.remove() }
        func openssl(_ arguments: [String]) throws {
            let result = try runTool("openssl", arguments)
            guard result.status == 0 else { throw TestSupportError("openssl \(arguments.first ?? ""): \(result.stderr)") }
        }
        // CA a signs the endpoint's certificate; CA b signs nothing.
        for ca in ["a", "b"] {
            try openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", pki.appending("\(ca).key"),
                         "-out", pki.appending("\(ca).pem"), "-days", "1", "-subj", "/CN=expirable test CA \(ca)",
                         "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign"])
        }
        try openssl(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", pki.appending("endpoint.key"),
                     "-out", pki.appending("endpoint.csr"), "-subj", "/CN=127.0.0.1"])
        try "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n".write(toFile: pki.appending("endpoint.ext"), atomically: true, encoding: .utf8)
        try openssl(["x509", "-req", "-in", pki.appending("endpoint.csr"), "-CA", pki.appending("a.pem"), "-CAkey", pki.appending("a.key"),
                     "-set_serial", "2", "-days", "1", "-extfile", pki.appending("endpoint.ext"), "-out", pki.appending("endpoint.pem")])
        // The daemon's /etc/ssl/certs, as Debian lays it out, trusting CA a alone: the bundle curl reads when
        // CAINFO is not set, and the hashed link OpenSSL looks up in the CA directory (CAPATH).
        let certs = pki.appending("certs")
        try FileManager.default.createDirectory(atPath: certs, withIntermediateDirectories: false)
        for name in ["a.pem", "ca-certificates.crt"] {
            try FileManager.default.copyItem(atPath: pki.appending("a.pem"), toPath: "\(certs)/\(name)")
        }
        let hash = try runTool("openssl", ["x509", "-hash", "-noout", "-in", pki.appending("a.pem")]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(symlink("a.pem", "\(certs)/\(hash).0") == 0)

        let endpoint = try RunningTool(["python3", "-c", Self.httpsEndpoint, pki.appending("endpoint.pem"), pki.appending("endpoint.key")])
        defer { endpoint.stop(signal: SIGKILL) }
        let port = try #require(endpoint.nextLine(within: 20), "the HTTPS endpoint did not start")
        let url = "https://127.0.0.1:\(port)/token"
        let daemon = try Self.unstarted([
            OAuth2DaemonTests.oauth2("elsewhere", params: "ca_file = \"\(pki.appending("b.pem"))\""),
            OAuth2DaemonTests.oauth2("pinned", params: "ca_file = \"\(pki.appending("a.pem"))\""),
            OAuth2DaemonTests.oauth2("system"),
        ].joined().replacingOccurrences(of: "TOKEN_URL", with: url))
        defer { daemon.remove() }
        // exec keeps the PID, so stop() signals the daemon itself; its namespace, and the mount in it, end with it.
        daemon.launcher = ["unshare", "--mount", "--propagation", "private", "sh", "-c", "mount --bind \"$0\" /etc/ssl/certs && exec \"$@\"", certs]
        try daemon.start()

        let refused = try daemon.redis("GET", "elsewhere")
        #expect(refused.hasPrefix("FETCH ") && refused.contains("cannot reach \(url): SSL certificate problem"),
                "\(refused)")
        #expect(try daemon.redis("GET", "pinned") == "at-tls")
        #expect(try daemon.redis("GET", "system") == "at-tls")

        // The bind mount lives in the daemon's namespace (its helpers share it), not in this process's, and goes
        // with the daemon.
        let mounted = pki.url.lastPathComponent + "/certs"
        func mountinfo(_ pid: String) -> String { (try? String(contentsOfFile: "/proc/\(pid)/mountinfo", encoding: .utf8)) ?? "" }
        func processesSeeingTheMount() -> [String] {
            let pids = (try? FileManager.default.contentsOfDirectory(atPath: "/proc"))?.filter { $0.allSatisfy(\.isNumber) } ?? []
            return pids.filter { mountinfo($0).contains(mounted) }
        }
        let pid = try #require(daemon.process?.pid)
        #expect(mountinfo("\(pid)").contains(mounted), "the daemon does not see the bind mount")
        #expect(!mountinfo("self").contains(mounted), "the bind mount is in the test's own namespace")
        #expect(daemon.stop() == 0)
        #expect(processesSeeingTheMount().isEmpty, "the bind mount outlived the daemon")
    }

    @Test("a relative path in a file param is refused by check-config from any directory, saying it needs an absolute path")
    func relativePathRefused() throws {
        let daemon = try Self.unstarted("""
            [expirable.x]
            plugin = "oauth2"
            [expirable.x.params]
            token_url = "http://127.0.0.1:1/token"
            client_id = "c"
            client_secret_file = "client.secret"

            """)
        defer { daemon.remove() }
        // From the directory where the relative path names the file, as from anywhere else.
        for directory in [daemon.directory.path, "/"] {
            let check = try Self.checkConfig(daemon, from: directory)
            #expect(check.status == 78, "check-config from \(directory) accepted it")
            #expect(check.stderr.contains("refused its params: oauth2 plugin: param 'client_secret_file' is \"client.secret\", a relative path, which "
                                          + "would depend on the daemon's working directory; write its absolute path (the plugin does not know "
                                          + "where the configuration file is)"), "\(check.stderr)")
        }
    }
}
