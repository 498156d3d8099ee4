import ExpirableTestSupport
import Foundation
import Testing

/// The oauth2 plugin's file params through a real daemon and `expirablectl check-config`: the paths checked at
/// start (FIFOs, relative paths, `ca_file`).
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
