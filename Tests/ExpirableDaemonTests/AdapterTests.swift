import ExpirableTestSupport
import Foundation
import Testing

/// expirablectl's adapters (SPEC §7) driven by their real consumers where this machine has them: the AWS CLI
/// (PyPI's awscli, from .build/python-clients) through credential_process against a local STS-like endpoint that
/// checks the SigV4 signature, git through its credential helper, kubectl through a kubeconfig's exec plugin;
/// docker's helper protocol piped as docker pipes it.
@Suite("adapters: credential-process, exec-credential, git-credential, docker-credential")
struct AdapterTests {
    /// A fake `aws sts assume-role`: prints STS JSON with a new key on every call and records it as issued.
    static let fakeSTS = """
        #!/bin/sh
        dir=$(dirname "$0")
        n=$(( $(cat "$dir/sts-count" 2>/dev/null || echo 0) + 1 ))
        echo $n > "$dir/sts-count"
        echo "ASIATEST$n secret-$n token-$n" >> "$dir/issued"
        printf '{"Credentials": {"AccessKeyId": "ASIATEST%s", "SecretAccessKey": "secret-%s", "SessionToken": "token-%s", "Expiration": "2030-01-02T03:04:05+00:00"}, "AssumedRoleUser": {"Arn": "arn:aws:sts::123456789012:assumed-role/app/s"}}\\n' $n $n $n

        """

    /// A daemon with `aws` (the fake STS through the command plugin, valid `ttl`) and `token` (the counter).
    static func start(awsTTL: String = "1h") throws -> DaemonProcess {
        let daemon = try DaemonProcess(expirables: "", start: false)
        let script = daemon.directory.appending("fake-sts.sh")
        try fakeSTS.write(toFile: script, atomically: true, encoding: .utf8)
        chmod(script, 0o755)
        FileManager.default.createFile(atPath: daemon.directory.appending("issued"), contents: nil)
        let config = try String(contentsOfFile: daemon.configPath, encoding: .utf8) + """
            [expirable.aws]
            plugin = "command"
            [expirable.aws.params]
            argv = ["\(script)"]
            ttl = "\(awsTTL)"

            """ + ServingTests.counter("token").replacingOccurrences(of: "COUNT", with: daemon.directory.path)
        try config.write(toFile: daemon.configPath, atomically: true, encoding: .utf8)
        try daemon.start()
        return daemon
    }

    static func json(_ text: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any], "not a JSON object: \(text)")
    }

    // MARK: AWS

    @Test("credential-process prints credential_process JSON from the STS JSON, Expiration in ISO 8601")
    func credentialProcessJSON() throws {
        let daemon = try Self.start()
        defer { daemon.remove() }
        let result = try daemon.ctl("credential-process", "aws")
        #expect(result.status == 0, "\(result.stderr)")
        let object = try Self.json(result.stdout)
        #expect(object["Version"] as? Int == 1)
        #expect(object["AccessKeyId"] as? String == "ASIATEST1")
        #expect(object["SecretAccessKey"] as? String == "secret-1")
        #expect(object["SessionToken"] as? String == "token-1")
        #expect(object["Expiration"] as? String == "2030-01-02T03:04:05Z")
    }

    @Test("credential-process refuses a value that is not STS JSON with status 65, naming the form it needs")
    func credentialProcessRefusesOtherValues() throws {
        let daemon = try Self.start()
        defer { daemon.remove() }
        let result = try daemon.ctl("credential-process", "token")
        #expect(result.status == 65)
        #expect(result.stdout.isEmpty)
        #expect(result.stderr.contains("the value of token is not a JSON object"))
        #expect(result.stderr.contains("AccessKeyId"))
        #expect(try daemon.ctl("credential-process", "nope").status == 66)
    }

    @Test("credential-process refuses a boolean Expiration (no time); git-credential refuses a login object whose password is no string")
    func refusedShapes() throws {
        let daemon = try DaemonProcess(expirables: """
            [expirable.boolexp]
            plugin = "command"
            [expirable.boolexp.params]
            argv = ["echo", "{\\"AccessKeyId\\": \\"AKIA1\\", \\"SecretAccessKey\\": \\"s\\", \\"Expiration\\": true}"]
            ttl = "1h"
            [expirable.numpass]
            plugin = "command"
            [expirable.numpass.params]
            argv = ["echo", "{\\"username\\": \\"bot\\", \\"password\\": 123, \\"other\\": \\"private\\"}"]
            ttl = "1h"
            """, testPlugins: [])
        defer { daemon.remove() }
        let aws = try daemon.ctl("credential-process", "boolexp")
        #expect(aws.status == 65 && aws.stdout.isEmpty, "\(aws)")
        #expect(aws.stderr.contains("has an Expiration that is not an ISO 8601 time"), "\(aws.stderr)")
        let ctl = try TestPaths.product("expirablectl").path
        let git = try runTool("sh", ["-c", "printf 'protocol=https\\nhost=h\\n\\n' | \"$0\" \"$@\"", ctl, "--socket", daemon.socket, "git-credential", "numpass", "get"])
        #expect(git.status == 65 && git.stdout.isEmpty, "\(git)")
        #expect(git.stderr.contains("has a \"password\" that is not a string"), "\(git.stderr)")
        #expect(!git.stderr.contains("private"))
    }

    @Test("credential-process reads a numeric Expiration of Unix milliseconds as milliseconds, one of seconds as seconds")
    func numericExpiration() throws {
        let now = Int64(Date().timeIntervalSince1970)
        func sts(_ name: String, expiration: String, ttl: String) -> String {
            """
            [expirable.\(name)]
            plugin = "command"
            [expirable.\(name).params]
            argv = ["echo", "{\\"AccessKeyId\\": \\"AKIA1\\", \\"SecretAccessKey\\": \\"s\\", \\"Expiration\\": \(expiration)}"]
            ttl = "\(ttl)"

            """
        }
        // Expirable's own times (expires_at, FETCH) are milliseconds; the adapter must not take them for seconds.
        let daemon = try DaemonProcess(expirables: sts("millis", expiration: "\((now + 1800) * 1000)", ttl: "1h")
                                       + sts("seconds", expiration: "\(now + 1200)", ttl: "1h"), testPlugins: [])
        defer { daemon.remove() }
        func expiration(_ name: String) throws -> Double {
            let result = try daemon.ctl("credential-process", name)
            #expect(result.status == 0, "\(result.stderr)")
            let text = try #require(try Self.json(result.stdout)["Expiration"] as? String, "\(result.stdout)")
            let formatter = ISO8601DateFormatter()
            return try #require(formatter.date(from: text), "\(text)").timeIntervalSince1970 - Double(now)
        }
        let millis = try expiration("millis")
        #expect(abs(millis - 1800) < 5, "milliseconds read as \(millis) s from now")
        let seconds = try expiration("seconds")
        #expect(abs(seconds - 1200) < 5, "seconds read as \(seconds) s from now")
    }

    @Test("git-credential and docker-credential refuse a JSON object without a \"password\" string (an OAuth token response, say) instead of sending it whole")
    func loginObjectWithoutPassword() throws {
        let daemon = try DaemonProcess(expirables: """
            [expirable.tokenjson]
            plugin = "command"
            [expirable.tokenjson.params]
            argv = ["echo", "{\\"access_token\\": \\"AT\\", \\"refresh_token\\": \\"RT-private\\", \\"token_type\\": \\"bearer\\"}"]
            ttl = "10m"
            """, testPlugins: [])
        defer { daemon.remove() }
        let ctl = try TestPaths.product("expirablectl").path
        let git = try runTool("sh", ["-c", "printf 'protocol=https\\nhost=h\\n\\n' | \"$0\" \"$@\"", ctl, "--socket", daemon.socket, "git-credential", "tokenjson", "get"])
        #expect(git.status == 65 && git.stdout.isEmpty, "\(git)")
        #expect(git.stderr.contains("is a JSON object without a \"password\""), "\(git.stderr)")
        #expect(git.stderr.contains("value_key"), "the refusal says how to pick the token: \(git.stderr)")
        #expect(!git.stderr.contains("RT-private") && !git.stderr.contains("AT\""))
        let docker = try runTool("sh", ["-c", "printf 'registry.example.com' | \"$0\" \"$@\"", ctl, "--socket", daemon.socket, "docker-credential", "tokenjson", "get"])
        #expect(docker.status == 65 && docker.stdout.isEmpty, "\(docker)")
        #expect(!docker.stdout.contains("RT-private") && !docker.stderr.contains("RT-private"))
    }

    @Test("the AWS CLI signs with fresh credentials across a rotation, through credential_process", .timeLimit(.minutes(3)))
    func awsCLIAcrossRotation() async throws {
        let clients = RedisClientTests.pythonClients
        guard FileManager.default.fileExists(atPath: clients + "/awscli") else {
            throw TestSupportError("\(clients)/awscli is missing: run scripts/test.sh, which installs the AWS CLI (awscli) there")
        }
        let daemon = try Self.start(awsTTL: "3s")
        defer { daemon.remove() }
        let dir = daemon.directory
        let endpoint = try RunningTool(["python3", TestPaths.fixtures.appendingPathComponent("sts_endpoint.py").path, dir.appending("issued"), dir.appending("seen")])
        defer { endpoint.stop(signal: SIGKILL) }
        let port = try #require(endpoint.nextLine(within: 20), "the STS endpoint did not start")
        let config = dir.appending("aws-config")
        try """
            [profile app]
            credential_process = \(try TestPaths.product("expirablectl").path) --socket \(daemon.socket) credential-process aws
            region = us-east-1

            """.write(toFile: config, atomically: true, encoding: .utf8)
        FileManager.default.createFile(atPath: dir.appending("aws-credentials"), contents: nil)
        let environment = [
            "PATH": "/usr/bin:/bin", "HOME": dir.path, "PYTHONPATH": clients, "AWS_CONFIG_FILE": config,
            "AWS_SHARED_CREDENTIALS_FILE": dir.appending("aws-credentials"), "AWS_PROFILE": "app", "AWS_EC2_METADATA_DISABLED": "true",
        ]
        func callerIdentity() throws -> String {
            let result = try runTool("python3", ["-m", "awscli", "sts", "get-caller-identity", "--endpoint-url", "http://127.0.0.1:\(port)", "--output", "json"],
                                     seconds: 60, environment: environment)
            #expect(result.status == 0, "aws: \(result.stderr)")
            return (try? Self.json(result.stdout))?["Arn"] as? String ?? ""
        }
        #expect(try callerIdentity() == "arn:aws:sts::123456789012:assumed-role/app/ASIATEST1")
        // The value lives 3 s; once it has expired, the next aws call makes the daemon fetch a new one.
        let client = daemon.client
        while case .expiresIn = try await client.timeToLive("aws") { try await Task.sleep(for: .milliseconds(100)) }
        #expect(try callerIdentity() == "arn:aws:sts::123456789012:assumed-role/app/ASIATEST2")
        let seen = try String(contentsOfFile: dir.appending("seen"), encoding: .utf8)
        #expect(seen == "ASIATEST1\nASIATEST2\n", "the endpoint saw only signed requests with issued keys")
    }

    // MARK: Kubernetes

    @Test("an expiry past year 9999 (a plugin's microseconds read as milliseconds) is written as 9999-12-31T23:59:59Z, never a five-digit year")
    func farExpiry() throws {
        let daemon = try DaemonProcess(expirables: """
            [expirable.far]
            plugin = "command"
            [expirable.far.params]
            argv = ["echo", "{\\"value\\": \\"tok\\", \\"expires_at\\": 253402300800000}"]
            output = "json"
            """, testPlugins: [])
        defer { daemon.remove() }
        let result = try runTool(try TestPaths.product("expirablectl").path, ["exec-credential", "far", "--socket", daemon.socket])
        #expect(result.status == 0, "\(result.stderr)")
        let status = try #require(try Self.json(result.stdout)["status"] as? [String: Any])
        #expect(status["expirationTimestamp"] as? String == "9999-12-31T23:59:59Z", "\(result.stdout)")
    }

    @Test("a token with a control character is no bearer token; options that cannot be right are refused as usage errors (64)")
    func refusedTokensAndOptions() throws {
        let daemon = try DaemonProcess(expirables: """
            [expirable.esc]
            plugin = "command"
            [expirable.esc.params]
            shell = 'printf "tok\\033[31m"'
            ttl = "1h"
            """, testPlugins: [])
        defer { daemon.remove() }
        let ctl = try TestPaths.product("expirablectl").path
        let esc = try runTool(ctl, ["exec-credential", "esc", "--socket", daemon.socket])
        #expect(esc.status == 65 && esc.stdout.isEmpty, "\(esc)")
        #expect(esc.stderr.contains("the value of esc holds a control character (U+001B), so it cannot be a bearer token in an HTTP header"), "\(esc.stderr)")
        let empty = try runTool(ctl, ["ping", "--socket", ""])
        #expect(empty.status == 64 && empty.stderr.contains("--socket is empty"), "\(empty)")
        let user = try runTool(ctl, ["git-credential", "esc", "get", "--socket", daemon.socket, "--username", "a\nb"])
        #expect(user.status == 64 && user.stderr.contains("--username is empty or holds a newline or NUL"), "\(user)")
        let twice = try runTool(ctl, ["exec", "--socket", daemon.socket, "--env", "A=esc", "--env", "A=esc", "--", "true"])
        #expect(twice.status == 64 && twice.stderr.contains("--env binds A more than once"), "\(twice)")
    }

    @Test("exec-credential prints an ExecCredential as client-go's schema has it (v1, and v1beta1 on request)")
    func execCredentialSchema() throws {
        let daemon = try Self.start()
        defer { daemon.remove() }
        let before = Date()
        for (flag, version) in [([String](), "client.authentication.k8s.io/v1"), (["--api-version", "v1beta1"], "client.authentication.k8s.io/v1beta1")] {
            let result = try runTool(try TestPaths.product("expirablectl").path, ["exec-credential", "token", "--socket", daemon.socket] + flag)
            #expect(result.status == 0, "\(result.stderr)")
            // client.authentication.k8s.io ExecCredential: apiVersion, kind, status {token, expirationTimestamp
            // (metav1.Time: RFC 3339, seconds, UTC "Z")}; nothing else is required.
            let object = try Self.json(result.stdout)
            #expect(Set(object.keys) == ["apiVersion", "kind", "status"])
            #expect(object["apiVersion"] as? String == version)
            #expect(object["kind"] as? String == "ExecCredential")
            let status = try #require(object["status"] as? [String: Any])
            #expect(Set(status.keys) == ["token", "expirationTimestamp"])
            #expect(status["token"] as? String == "token-1")
            let stamp = try #require(status["expirationTimestamp"] as? String)
            #expect(stamp.range(of: #"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$"#, options: .regularExpression) != nil, "\(stamp)")
            let formatter = ISO8601DateFormatter()
            let expiry = try #require(formatter.date(from: stamp))
            #expect(abs(expiry.timeIntervalSince(before) - 60) < 10, "the counter's value lives 60 s")
        }
    }

    @Test("kubectl sends the value as its bearer token through a kubeconfig's exec plugin", .timeLimit(.minutes(2)))
    func kubectlUsesTheToken() throws {
        guard let kubectl = try? runTool("sh", ["-c", "command -v kubectl"]), kubectl.status == 0 else {
            // Debian's kubernetes-client (scripts/test.sh installs it) brings one; without it the schema test stands.
            return
        }
        let daemon = try Self.start()
        defer { daemon.remove() }
        let dir = daemon.directory
        let made = try runTool("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", dir.appending("api.key"), "-out", dir.appending("api.crt"),
                                           "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"])
        #expect(made.status == 0, "\(made.stderr)")
        let server = try RunningTool(["python3", TestPaths.fixtures.appendingPathComponent("bearer_endpoint.py").path, dir.appending("bearer"), dir.appending("api.crt"), dir.appending("api.key")])
        defer { server.stop(signal: SIGKILL) }
        let port = try #require(server.nextLine(within: 20), "the API endpoint did not start")
        // client-go before 1.22 knows only v1beta1 (Debian 12's kubectl is 1.20).
        let versionText = try runTool("kubectl", ["version", "--client", "-o", "json"]).stdout
        let minor = Int(((try? Self.json(versionText))?["clientVersion"] as? [String: Any])?["minor"] as? String ?? "")
            ?? Int(versionText.split(separator: "\"").drop { $0 != "minor" }.dropFirst(2).first?.prefix { $0.isNumber } ?? "") ?? 0
        let version = minor >= 22 ? "v1" : "v1beta1"
        try """
            apiVersion: v1
            kind: Config
            clusters:
            - name: local
              cluster:
                server: https://127.0.0.1:\(port)
                certificate-authority: \(dir.appending("api.crt"))
            contexts:
            - name: local
              context: {cluster: local, user: app}
            current-context: local
            users:
            - name: app
              user:
                exec:
                  apiVersion: client.authentication.k8s.io/\(version)
                  command: \(try TestPaths.product("expirablectl").path)
                  args: ["--socket", "\(daemon.socket)", "exec-credential", "token", "--api-version", "\(version)"]
                  interactiveMode: Never

            """.write(toFile: dir.appending("kubeconfig"), atomically: true, encoding: .utf8)
        let result = try runTool("kubectl", ["--kubeconfig", dir.appending("kubeconfig"), "get", "--raw", "/api"], seconds: 60,
                                 environment: ["PATH": "/usr/bin:/bin:/usr/local/bin", "HOME": dir.path])
        #expect(result.status == 0, "kubectl: \(result.stderr)")
        let seen = try String(contentsOfFile: dir.appending("bearer"), encoding: .utf8)
        #expect(seen.contains("Bearer token-1 /api"), "\(seen)")
    }

    // MARK: git and docker

    @Test("git credential fill gets the value from the helper, and a fresh one after a rotation")
    func gitCredentialFill() async throws {
        let daemon = try Self.start()
        defer { daemon.remove() }
        let helper = "!\(try TestPaths.product("expirablectl").path) --socket \(daemon.socket) git-credential token"
        func fill() throws -> [String: String] {
            let request = daemon.directory.appending("git-request")
            try "protocol=https\nhost=git.example.com\n\n".write(toFile: request, atomically: true, encoding: .utf8)
            let result = try runTool("sh", ["-c", "git -c credential.helper= -c credential.helper=\"$1\" credential fill < \"$2\"", "sh", helper, request],
                                     environment: ["PATH": "/usr/bin:/bin", "HOME": daemon.directory.path, "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0"])
            #expect(result.status == 0, "git: \(result.stderr)")
            return Dictionary(result.stdout.split(separator: "\n").map { line in
                let parts = line.split(separator: "=", maxSplits: 1)
                return (String(parts[0]), parts.count > 1 ? String(parts[1]) : "")
            }) { $1 }
        }
        let first = try fill()
        #expect(first["username"] == "x-access-token")
        #expect(first["password"] == "token-1")
        #expect(first["host"] == "git.example.com")
        try await daemon.client.clear("token")
        #expect(try fill()["password"] == "token-2")
    }

    @Test("git-credential answers password_expiry_utc, takes --username or the value's JSON, and ignores store and erase")
    func gitCredentialProtocol() throws {
        let daemon = try Self.start()
        defer { daemon.remove() }
        let ctl = try TestPaths.product("expirablectl").path
        func helper(_ arguments: [String], input: String) throws -> ToolResult {
            let file = daemon.directory.appending("input")
            try input.write(toFile: file, atomically: true, encoding: .utf8)
            return try runTool("sh", ["-c", "\"$0\" \"$@\" < \(file)", ctl, "--socket", daemon.socket] + arguments)
        }
        let answer = try helper(["git-credential", "token", "get", "--username", "bot"], input: "protocol=https\nhost=h\n\n")
        #expect(answer.status == 0)
        let lines = answer.stdout.split(separator: "\n")
        #expect(lines.count == 3 && lines[0] == "username=bot" && lines[1] == "password=token-1")
        let expiry = try #require(Double(lines[2].dropFirst("password_expiry_utc=".count)))
        #expect(abs(expiry - Date().timeIntervalSince1970 - 60) < 10)
        for action in ["store", "erase"] {
            let ignored = try helper(["git-credential", "token", action], input: "protocol=https\nhost=h\nusername=u\npassword=p\n\n")
            #expect(ignored.status == 0 && ignored.stdout.isEmpty)
        }
        // The AWS value is JSON but has no password: refused, never sent whole (its other fields would go too).
        let aws = try helper(["git-credential", "aws", "get"], input: "\n")
        #expect(aws.status == 65 && aws.stdout.isEmpty, "\(aws)")
        // Endless input with no blank line: at most 64 KiB is read, then the answer comes (`yes` stops on SIGPIPE).
        let endless = try runTool("sh", ["-c", "yes a=b | timeout 10 \"$0\" \"$@\"", ctl, "--socket", daemon.socket, "git-credential", "token", "get"])
        #expect(endless.status == 0 && endless.stdout.hasPrefix("username=x-access-token\npassword=token-1\n"), "\(endless)")
        // git may keep stdin open while it waits for the answer: the blank line ends the request.
        let open = try runTool("sh", ["-c", "(printf 'protocol=https\\nhost=h\\n\\n'; sleep 5) | timeout 4 \"$0\" \"$@\"", ctl, "--socket", daemon.socket, "git-credential", "token", "get"])
        #expect(open.status == 0 && open.stdout.hasPrefix("username=x-access-token\npassword=token-1\n"), "\(open)")
    }

    @Test("docker-credential get answers docker's JSON for the server URL on stdin; a wrapper script installs it")
    func dockerCredentialHelper() throws {
        let daemon = try Self.start()
        defer { daemon.remove() }
        let wrapper = daemon.directory.appending("docker-credential-expirable")
        try "#!/bin/sh\nexec \(try TestPaths.product("expirablectl").path) --socket \(daemon.socket) docker-credential token \"$@\"\n"
            .write(toFile: wrapper, atomically: true, encoding: .utf8)
        chmod(wrapper, 0o755)
        let get = try runTool("sh", ["-c", "printf 'https://registry.example.com' | docker-credential-expirable get"],
                              environment: ["PATH": "\(daemon.directory.path):/usr/bin:/bin"])
        #expect(get.status == 0, "\(get.stderr)")
        let object = try Self.json(get.stdout)
        #expect(object as NSDictionary == ["ServerURL": "https://registry.example.com", "Username": "x-access-token", "Secret": "token-1"] as NSDictionary)
        let list = try runTool("sh", ["-c", "docker-credential-expirable list < /dev/null"], environment: ["PATH": "\(daemon.directory.path):/usr/bin:/bin"])
        #expect(list.stdout == "{}\n")
        let store = try runTool("sh", ["-c", "echo '{\"ServerURL\":\"x\",\"Username\":\"u\",\"Secret\":\"s\"}' | docker-credential-expirable store"],
                                environment: ["PATH": "\(daemon.directory.path):/usr/bin:/bin"])
        #expect(store.status == 0 && store.stdout.isEmpty)
        let ecr = try runTool("sh", ["-c", "echo https://x.dkr.ecr.eu-west-1.amazonaws.com | docker-credential-expirable get --username AWS"],
                              environment: ["PATH": "\(daemon.directory.path):/usr/bin:/bin"])
        #expect(try Self.json(ecr.stdout)["Username"] as? String == "AWS")
    }
}

/// A value whose bytes are not UTF-8 text: plain `fetch` hands over its bytes as they are; JSON outputs and the
/// adapters, which can only carry text, refuse it with status 65 instead of handing over other bytes.
@Suite("values that are not UTF-8 text")
struct NonUTF8ValueTests {
    /// `bin` holds the bytes "ab", 0xFF, "cd"; `token` is the counter.
    static func start() throws -> DaemonProcess {
        try ServingTests.start(ServingTests.counter() + "[expirable.bin]\nplugin = \"command\"\n[expirable.bin.params]\nshell = \"printf 'ab\\\\377cd'\"\nttl = \"1m\"\n")
    }

    static func expectRefused(_ result: ToolResult, _ what: String, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(result.status == 65, "\(what): \(result.stdout) \(result.stderr)", sourceLocation: sourceLocation)
        #expect(!result.stdout.contains("\u{FFFD}") && !result.stdout.contains("ab"), "\(what) handed over other bytes: \(result.stdout)", sourceLocation: sourceLocation)
        #expect(result.stderr.contains("the value of bin is not UTF-8 text"), "\(what): \(result.stderr)", sourceLocation: sourceLocation)
        #expect(result.stderr.contains("`expirablectl fetch bin` without --json prints its bytes"), "\(what): \(result.stderr)", sourceLocation: sourceLocation)
    }

    @Test("fetch prints the bytes as they are; fetch --json refuses with 65, naming the value and the way to its bytes")
    func fetch() throws {
        let daemon = try Self.start()
        defer { daemon.remove() }
        let ctl = try TestPaths.product("expirablectl").path
        let bytes = try runTool("/bin/sh", ["-c", "\"$0\" fetch bin --socket \"$1\" | od -An -tx1", ctl, daemon.socket])
        #expect(bytes.stdout.split(whereSeparator: \.isWhitespace) == ["61", "62", "ff", "63", "64", "0a"], "\(bytes.stdout) \(bytes.stderr)")
        let json = try daemon.ctl("fetch", "bin", "--json")
        Self.expectRefused(json, "fetch --json")
        #expect(json.stderr.contains("JSON cannot carry"), "\(json.stderr)")
    }

    @Test("exec-credential, git-credential, docker-credential and credential-process refuse it with 65")
    func adapters() throws {
        let daemon = try Self.start()
        defer { daemon.remove() }
        Self.expectRefused(try daemon.ctl("exec-credential", "bin"), "exec-credential")
        Self.expectRefused(try daemon.ctl("git-credential", "bin", "get"), "git-credential")
        Self.expectRefused(try daemon.ctl("docker-credential", "bin", "get"), "docker-credential")
        Self.expectRefused(try daemon.ctl("credential-process", "bin"), "credential-process")
    }

    @Test("exec puts the value's own bytes in the command's environment")
    func execEnvironment() throws {
        let daemon = try Self.start()
        defer { daemon.remove() }
        let ctl = try TestPaths.product("expirablectl").path
        let result = try runTool(ctl, ["--socket", daemon.socket, "exec", "--env", "V=bin", "--", "sh", "-c", "printf %s \"$V\" | od -An -tx1"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.split(whereSeparator: \.isWhitespace) == ["61", "62", "ff", "63", "64"], "\(result.stdout)")
    }

    @Test("watch --json ends with 65 at a value that is not UTF-8, printing nothing for it")
    func watchJSON() throws {
        let daemon = try Self.start()
        defer { daemon.remove() }
        let ctl = try TestPaths.product("expirablectl").path
        let watch = try RunningTool([ctl, "watch", "bin", "--json", "--socket", daemon.socket])
        var printed: [String] = []
        for _ in 0..<100 where watch.process.isRunning {
            _ = try daemon.redis("CLEAR", "bin")
            _ = try daemon.redis("GET", "bin")
            if let line = watch.nextLine(within: 0.2) { printed.append(line) }
        }
        let (status, stderr) = watch.finish(within: 10)
        #expect(status == 65, "\(stderr)")
        #expect(printed.isEmpty, "\(printed)")
        #expect(stderr.contains("the value of bin is not UTF-8 text"), "\(stderr)")
    }
}
