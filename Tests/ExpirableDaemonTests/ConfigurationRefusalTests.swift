import ExpirableTestSupport
import Foundation
import Testing

/// Issue 13 item 6: `check-config` refuses what the daemon would refuse at start, and both name the file and the
/// line of the key behind the refusal, for problems found past the TOML (plugin files, params, the socket path,
/// state_dir and its key, TLS files).
@Suite("Configuration refusals name file and line")
struct ConfigurationRefusalTests {
    /// A daemon directory whose configuration has `expirables` and extra `server` lines, not started.
    static func setUp(_ expirables: String, server: String = "", cluster: String = "") throws -> DaemonProcess {
        try DaemonProcess(expirables: expirables, server: server, cluster: cluster, testPlugins: [], start: false)
    }

    /// `file:line` of the first line of the configuration starting with `prefix`.
    static func place(_ daemon: DaemonProcess, _ prefix: String) throws -> String {
        let lines = try String(contentsOfFile: daemon.configPath, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false)
        let index = try #require(lines.firstIndex { $0.hasPrefix(prefix) }, "no line starts with \(prefix)")
        return "\(daemon.configPath):\(index + 1)"
    }

    /// check-config's refusal, and the daemon's at start (after its log lines): the same message after each
    /// program's name.
    static func refusals(_ daemon: DaemonProcess) throws -> (check: String, start: String) {
        let check = try daemon.ctl("check-config", daemon.configPath)
        #expect(check.status == 78, "check-config accepted it: \(check.stdout)")
        let start = try runTool(TestPaths.product("expirabled").path, ["--config", daemon.configPath])
        #expect(start.status == 1, "the daemon started")
        return (check.stderr, start.stderr)
    }

    @Test("a plugin that is not in plugin_dir: the line of its plugin key")
    func missingPlugin() throws {
        let daemon = try Self.setUp("[expirable.x]\nplugin = \"nope\"\n")
        defer { daemon.remove() }
        let (check, start) = try Self.refusals(daemon)
        let message = "\(try Self.place(daemon, "plugin = \"nope\"")): expirable.x: plugin \"nope\" not found: none of"
        #expect(check.hasPrefix("expirablectl: " + message), "\(check)")
        #expect(start.contains("expirabled: " + message), "\(start)")
    }

    @Test("a param the plugin refuses: the line of that param", arguments: ["process", "inline"])
    func refusedParams(isolation: String) throws {
        let daemon = try Self.setUp("[expirable.x]\nplugin = \"command\"\nisolation = \"\(isolation)\"\n[expirable.x.params]\nshell = \"echo x\"\nttl = \"1m\"\ncolour = \"red\"\n")
        defer { daemon.remove() }
        let (check, start) = try Self.refusals(daemon)
        let message = "\(try Self.place(daemon, "colour = \"red\"")): expirable.x: plugin \(daemon.pluginDir)/libcommand.so refused its params: command plugin: unknown param 'colour'"
        #expect(check.hasPrefix("expirablectl: " + message), "\(check)")
        #expect(start.contains("expirabled: " + message), "\(start)")
    }

    @Test("params too large for a plugin helper's start: the line of the params table, and how to shorten them")
    func paramsTooLarge() throws {
        // 200,000 elements: the params' JSON is over the 1 MiB + 64 KiB a helper accepts in one frame.
        let elements = Array(repeating: "1", count: 200_000).joined(separator: ",")
        let daemon = try Self.setUp("[expirable.x]\nplugin = \"command\"\n[expirable.x.params]\nargv = [\"echo\", \"x\"]\nttl = \"1m\"\nextra = [\(elements)]\n")
        defer { daemon.remove() }
        let (check, start) = try Self.refusals(daemon)
        let message = "\(try Self.place(daemon, "[expirable.x.params]")): expirable.x: its params take "
        #expect(check.hasPrefix("expirablectl: " + message), "\(check.prefix(400))")
        #expect(start.contains("expirabled: " + message), "\(start.prefix(400))")
        #expect(check.contains("a plugin helper accepts at start; shorten them") && !check.contains("status 65"), "\(check.prefix(400))")
    }

    @Test("a socket path under a file, or over the length a Unix socket allows: the line of server.socket")
    func socketPath() throws {
        let daemon = try Self.setUp("[expirable.x]\nplugin = \"command\"\n[expirable.x.params]\nshell = \"echo x\"\nttl = \"1m\"\n")
        defer { daemon.remove() }
        let config = try String(contentsOfFile: daemon.configPath, encoding: .utf8)
        let underFile = config.replacingOccurrences(of: "socket = \"\(daemon.socket)\"", with: "socket = \"\(daemon.configPath)/run/s.sock\"")
        try underFile.write(toFile: daemon.configPath, atomically: true, encoding: .utf8)
        var (check, start) = try Self.refusals(daemon)
        var message = "\(try Self.place(daemon, "socket = ")): the socket's directory \(daemon.configPath) is not a directory; fix server.socket"
        #expect(check == "expirablectl: \(message)\n")
        #expect(start.hasSuffix("expirabled: \(message)\n"), "\(start)")

        let long = "/tmp/" + String(repeating: "s", count: 120) + ".sock"
        try config.replacingOccurrences(of: "socket = \"\(daemon.socket)\"", with: "socket = \"\(long)\"").write(toFile: daemon.configPath, atomically: true, encoding: .utf8)
        (check, start) = try Self.refusals(daemon)
        message = "\(try Self.place(daemon, "socket = ")): server.socket \(long) is 130 bytes long; its clients (expirablectl, ExpirableClient) connect to Unix socket paths of at most 103 bytes; choose a shorter path"
        #expect(check == "expirablectl: \(message)\n")
        #expect(start.hasSuffix("expirabled: \(message)\n"), "\(start)")

        // 104 to 107 bytes fit a sockaddr_un, and redis-cli could connect, but expirablectl and ExpirableClient
        // cannot: the daemon refuses what its own clients could not reach.
        let justOver = "/tmp/" + String(repeating: "s", count: 104 - 10) + ".sock"
        try config.replacingOccurrences(of: "socket = \"\(daemon.socket)\"", with: "socket = \"\(justOver)\"").write(toFile: daemon.configPath, atomically: true, encoding: .utf8)
        (check, start) = try Self.refusals(daemon)
        message = "\(try Self.place(daemon, "socket = ")): server.socket \(justOver) is 104 bytes long; its clients (expirablectl, ExpirableClient) connect to Unix socket paths of at most 103 bytes; choose a shorter path"
        #expect(check == "expirablectl: \(message)\n")
        #expect(start.hasSuffix("expirabled: \(message)\n"), "\(start)")
        #expect(!FileManager.default.fileExists(atPath: justOver))

        // A file of another kind where the socket goes: the daemon would refuse to replace it.
        try config.write(toFile: daemon.configPath, atomically: true, encoding: .utf8)
        #expect(FileManager.default.createFile(atPath: daemon.socket, contents: Data("x".utf8)))
        (check, start) = try Self.refusals(daemon)
        message = "\(try Self.place(daemon, "socket = ")): server.socket \(daemon.socket) exists and is not a socket; remove it or choose another path"
        #expect(check == "expirablectl: \(message)\n")
        #expect(start.hasSuffix("expirabled: \(message)\n"), "\(start)")
    }

    @Test("state_dir without a key, and a state key file that is not there: the line of the key concerned")
    func stateDirectory() throws {
        let expirable = "[expirable.x]\nplugin = \"command\"\n[expirable.x.params]\nshell = \"echo x\"\nttl = \"1m\"\n"
        let noKey = try Self.setUp(expirable, server: "state_dir = \"DIR/state\"")
        defer { noKey.remove() }
        let check = try noKey.ctl("check-config", noKey.configPath)
        #expect(check.status == 78)
        #expect(check.stderr.hasPrefix("expirablectl: \(try Self.place(noKey, "state_dir")): [server] state_dir: state_dir is set but there is no key"), "\(check.stderr)")
        #expect(!FileManager.default.fileExists(atPath: noKey.directory.appending("state")), "check-config created state_dir")

        let missingKey = try Self.setUp(expirable, server: "state_dir = \"DIR/state\"\nstate_key_file = \"DIR/no-such.key\"")
        defer { missingKey.remove() }
        let (checked, started) = try Self.refusals(missingKey)
        let message = "\(try Self.place(missingKey, "state_key_file")): [server] state_key_file: cannot read the state key \(missingKey.directory.appending("no-such.key"))"
        #expect(checked.hasPrefix("expirablectl: " + message), "\(checked)")
        #expect(started.contains("expirabled: " + message), "\(started)")
    }

    @Test("a FIFO as state_key_file: check-config and the daemon refuse it at once, naming it, instead of hanging")
    func stateKeyFIFO() throws {
        let expirable = "[expirable.x]\nplugin = \"command\"\n[expirable.x.params]\nshell = \"echo x\"\nttl = \"1m\"\n"
        let daemon = try Self.setUp(expirable, server: "state_dir = \"DIR/state\"\nstate_key_file = \"DIR/fifo.key\"")
        defer { daemon.remove() }
        let key = daemon.directory.appending("fifo.key")
        #expect(mkfifo(key, 0o600) == 0)
        let message = "\(try Self.place(daemon, "state_key_file")): [server] state_key_file: the state key \(key) is a FIFO, not a regular file"
        let check = try runTool(TestPaths.product("expirablectl").path, ["check-config", daemon.configPath], seconds: 10)
        #expect(check.status == 78, "check-config: status \(check.status) (124: it hung)")
        #expect(check.stderr.hasPrefix("expirablectl: " + message), "\(check.stderr)")
        let start = try runTool(TestPaths.product("expirabled").path, ["--config", daemon.configPath], seconds: 10)
        #expect(start.status == 1, "expirabled: status \(start.status) (124: it hung)")
        #expect(start.stderr.contains("expirabled: " + message), "\(start.stderr)")
    }

    @Test("TLS files that cannot be read: the line of cluster.cert, cluster.key, cluster.ca")
    func tlsFiles() throws {
        let expirable = "[expirable.x]\nplugin = \"command\"\nscope = \"local\"\n[expirable.x.params]\nshell = \"echo x\"\nttl = \"1m\"\n"
        let cluster = "[cluster]\nnode = \"node-a\"\nlisten = \"127.0.0.1:1\"\npeers = { node-b = \"127.0.0.2:7400\" }\nca = \"DIR/ca.pem\"\ncert = \"DIR/node-a.pem\"\nkey = \"DIR/node-a.key\"\n"
        let daemon = try Self.setUp(expirable, cluster: cluster)
        defer { daemon.remove() }
        let (check, start) = try Self.refusals(daemon)
        let message = "\(try Self.place(daemon, "cert = ")): cluster.cert \(daemon.directory.appending("node-a.pem")) cannot be used as this node's certificate"
        #expect(check.hasPrefix("expirablectl: " + message), "\(check)")
        #expect(start.contains("expirabled: " + message), "\(start)")
    }
    @Test("a duration string without a unit is refused at its line, with the ways to write it (\"10s\", \"10ms\", 10)")
    func unitlessDuration() throws {
        let daemon = try Self.setUp("[expirable.x]\nplugin = \"command\"\ntimeout = \"10\"\n[expirable.x.params]\nshell = \"echo x\"\nttl = \"1m\"\n")
        defer { daemon.remove() }
        let (check, start) = try Self.refusals(daemon)
        let message = "\(try Self.place(daemon, "timeout = ")): expirable.x.timeout: \"10\" has no unit; write \"10s\" or \"10ms\", or the integer 10 for milliseconds"
        #expect(check == "expirablectl: \(message)\n", "\(check)")
        #expect(start.hasSuffix("expirabled: \(message)\n"), "\(start)")
    }

    @Test("a relative plugin_dir that does not exist: the line of server.plugin_dir, not an expirable's")
    func missingPluginDirectory() throws {
        let daemon = try Self.setUp("[expirable.x]\nplugin = \"command\"\n[expirable.x.params]\nshell = \"echo x\"\nttl = \"1m\"\n")
        defer { daemon.remove() }
        let config = try String(contentsOfFile: daemon.configPath, encoding: .utf8)
        try config.replacingOccurrences(of: "plugin_dir = \"\(daemon.pluginDir)\"", with: "plugin_dir = \"no-such-plugins\"").write(toFile: daemon.configPath, atomically: true, encoding: .utf8)
        let (check, start) = try Self.refusals(daemon)
        let message = "\(try Self.place(daemon, "plugin_dir = ")): server.plugin_dir \(daemon.directory.appending("no-such-plugins")) cannot be resolved: No such file or directory"
        #expect(check.hasPrefix("expirablectl: " + message), "\(check)")
        #expect(start.contains("expirabled: " + message), "\(start)")
    }

    @Test("a plugin_dir inside a directory others may write without the sticky bit, or that another user owns, is refused at start and by check-config; a sticky one is not")
    func pluginDirectoryAncestors() throws {
        let daemon = try Self.setUp("[expirable.x]\nplugin = \"command\"\n[expirable.x.params]\nshell = \"echo x\"\nttl = \"1m\"\n")
        defer { daemon.remove() }
        let open = URL(fileURLWithPath: daemon.directory.appending("open")).resolvingSymlinksInPath().path
        let inner = open + "/plugins"
        try FileManager.default.createDirectory(atPath: inner, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: daemon.pluginDir + "/libcommand.so", toPath: inner + "/libcommand.so")
        chmod(inner, 0o755)
        chmod(inner + "/libcommand.so", 0o644)
        let config = try String(contentsOfFile: daemon.configPath, encoding: .utf8)
        try config.replacingOccurrences(of: "plugin_dir = \"\(daemon.pluginDir)\"", with: "plugin_dir = \"\(inner)\"").write(toFile: daemon.configPath, atomically: true, encoding: .utf8)
        let place = try Self.place(daemon, "plugin_dir = ")
        chmod(open, 0o777)
        var (check, start) = try Self.refusals(daemon)
        var message = "\(place): server.plugin_dir \(inner) is inside \(open), which is writable by others without the sticky bit (mode 777): they could put a directory of their own in plugin_dir's place before the daemon starts; chmod go-w \(open), or chmod +t \(open)"
        #expect(check == "expirablectl: \(message)\n", "\(check)")
        #expect(start.hasSuffix("expirabled: \(message)\n"), "\(start)")
        chmod(open, 0o770)
        (check, start) = try Self.refusals(daemon)
        #expect(check.hasPrefix("expirablectl: \(place): server.plugin_dir \(inner) is inside \(open), which is writable by its group without the sticky bit (mode 770)"), "\(check)")
        // With the sticky bit (as /tmp has) nobody may rename what they do not own in it: accepted.
        chmod(open, 0o1777)
        let sticky = try daemon.ctl("check-config", daemon.configPath)
        #expect(sticky.status == 0, "\(sticky.stderr)")
        // A directory above owned by another user: its owner may rename what is in it, whatever its mode.
        try #require(geteuid() == 0, "changing a directory's owner needs root")
        chmod(open, 0o755)
        #expect(chown(open, 65534, 65534) == 0)
        (check, start) = try Self.refusals(daemon)
        message = "\(place): server.plugin_dir \(inner) is inside \(open), which is owned by uid 65534, not by root or the daemon's user (uid 0): its owner could put a directory of their own in plugin_dir's place before the daemon starts; chown root \(open), or move plugin_dir out of it"
        #expect(check == "expirablectl: \(message)\n", "\(check)")
        #expect(start.hasSuffix("expirabled: \(message)\n"), "\(start)")
        #expect(chown(open, 0, 0) == 0)
        #expect(try daemon.ctl("check-config", daemon.configPath).status == 0)
    }

    @Test("a configuration that is not UTF-8 text: the line and column of the first bad byte")
    func notUTF8() throws {
        let daemon = try Self.setUp("[expirable.x]\nplugin = \"command\"\n# caf\u{E9}\n[expirable.x.params]\nshell = \"echo x\"\nttl = \"1m\"\n")
        defer { daemon.remove() }
        let place = try Self.place(daemon, "# caf")
        // The comment's é written in Latin-1: one byte, 0xE9, that UTF-8 does not allow there.
        var bytes = Array(try String(contentsOfFile: daemon.configPath, encoding: .utf8).utf8)
        let at = try #require(bytes.firstIndex(of: 0xC3))
        bytes.replaceSubrange(at...(at + 1), with: [0xE9])
        try Data(bytes).write(to: URL(fileURLWithPath: daemon.configPath))
        let (check, start) = try Self.refusals(daemon)
        let message = "\(place): not UTF-8 text: the byte 0xE9 at column 6 is not valid UTF-8; save the file as UTF-8"
        #expect(check == "expirablectl: \(message)\n", "\(check)")
        #expect(start.hasSuffix("expirabled: \(message)\n"), "\(start)")
    }

    @Test("a configuration file its group or others may write, or another user owns, is refused by check-config, at start and at reload")
    func writableConfiguration() throws {
        let daemon = try ServingTests.start(ServingTests.counter())
        defer { daemon.remove() }
        let path = daemon.configPath
        let why = "whoever can change it chooses the commands and plugins the daemon runs"
        for (mode, message) in [
            (0o666 as mode_t, "\(path): the configuration is writable by others (mode 0666); \(why); chmod go-w \(path)"),
            (0o664, "\(path): the configuration is writable by its group (mode 0664); \(why); chmod go-w \(path)"),
        ] {
            chmod(path, mode)
            let (check, start) = try Self.refusals(daemon)
            #expect(check == "expirablectl: \(message)\n", "\(check)")
            #expect(start.hasSuffix("expirabled: \(message)\n"), "\(start)")
            #expect(try daemon.redis("RELOAD") == "ERR reload refused, nothing changed: \(message)")
        }
        chmod(path, 0o644)
        #expect(chown(path, 65534, 65534) == 0)
        let message = "\(path): the configuration is owned by uid 65534, not by root or the daemon's user (uid \(geteuid())); \(why); chown root \(path)"
        let (check, start) = try Self.refusals(daemon)
        #expect(check == "expirablectl: \(message)\n", "\(check)")
        #expect(start.hasSuffix("expirabled: \(message)\n"), "\(start)")
        #expect(try daemon.redis("RELOAD") == "ERR reload refused, nothing changed: \(message)")
        // Owned by root and 0644 (what a default umask writes): accepted.
        #expect(chown(path, 0, 0) == 0)
        #expect(try daemon.redis("RELOAD").hasPrefix("reloaded"), "a 0644 file of root's")
        #expect(try daemon.redis("GET", "token") == "token-1")
    }

    @Test("refresh = \"eager\" with a before_expiry of zero (\"0s\", 0) is refused by check-config, at start and at reload, as \"0%\" is")
    func zeroBeforeExpiry() throws {
        let daemon = try ServingTests.start(ServingTests.counter())
        defer { daemon.remove() }
        let path = daemon.configPath
        let valid = try String(contentsOfFile: path, encoding: .utf8)
        for (written, shown) in [("\"0s\"", "\"0s\""), ("0", "0"), ("\"0ms\"", "\"0ms\"")] {
            try valid.replacingOccurrences(of: "plugin = \"counter\"\n", with: "plugin = \"counter\"\nrefresh = \"eager\"\nbefore_expiry = \(written)\n")
                .write(toFile: path, atomically: true, encoding: .utf8)
            let message = "\(try Self.place(daemon, "before_expiry = ")): expirable.token.before_expiry: expected a lead above 0, such as \"30s\" or \"20%\", got \(shown): "
                + "a refresh due the moment the value expires never runs (an expired value is fetched by its next reader, as with refresh = \"lazy\"); "
                + "give a lead, or set refresh = \"lazy\""
            let (check, start) = try Self.refusals(daemon)
            #expect(check == "expirablectl: \(message)\n", "\(check)")
            #expect(start.hasSuffix("expirabled: \(message)\n"), "\(start)")
            #expect(try daemon.redis("RELOAD") == "ERR reload refused, nothing changed: \(message)")
        }
        #expect(try daemon.redis("GET", "token") == "token-1", "the running daemon kept its configuration")
    }

    @Test("a token file given as the configuration by mistake: check-config and the daemon name its line and column, never its text")
    func tokenFileAsConfiguration() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.appending("token.txt")
        try "ghp_S3CRETt0ken1234567890\n".write(toFile: path, atomically: true, encoding: .utf8)
        let message = "\(path):1: TOML syntax error at column 26: expected '=' after the key that starts at column 1, found the end of the line; its text is not shown"
        let check = try runTool(TestPaths.product("expirablectl").path, ["check-config", path])
        #expect(check.status == 78)
        #expect(check.stderr.hasPrefix("expirablectl: \(message)"), "\(check.stderr)")
        let start = try runTool(TestPaths.product("expirabled").path, ["--config", path])
        #expect(start.status == 1)
        #expect(start.stderr.contains("expirabled: \(message)"), "\(start.stderr)")
        #expect(!(check.stdout + check.stderr + start.stdout + start.stderr).contains("S3CRET"))
    }

    @Test("a file of two words, or a PEM private key, given as the configuration: not one character of its text in the error")
    func secretWordsNotQuoted() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        for (text, message) in [
            ("SECRETWORD SECRET2\n", "TOML syntax error at column 12: expected '=' after the key that starts at column 1, found a letter; its text is not shown"),
            ("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n", "TOML syntax error at column 12: expected '=' after the key that starts at column 1, found a letter; its text is not shown"),
            ("K = 2024-01-0SECRET\n", "TOML syntax error at column 14: invalid date-time of 15 characters: expected 2 digits for the day, found a letter; its text is not shown"),
        ] {
            let path = directory.appending("secret.toml")
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            let check = try runTool(TestPaths.product("expirablectl").path, ["check-config", path])
            #expect(check.status == 78)
            #expect(check.stderr.hasPrefix("expirablectl: \(path):1: \(message)"), "\(check.stderr)")
            let words = check.stderr.replacingOccurrences(of: path, with: "FILE")
            for secret in ["'S'", "'P'", "SECRET", "PRIVATE", "2024"] {
                #expect(!words.contains(secret), "\(check.stderr)")
            }
        }
    }

    @Test("a plugin_dir that does not exist is refused at its line even when no expirable uses it yet")
    func missingPluginDirectoryWithoutExpirables() throws {
        let daemon = try Self.setUp("")
        defer { daemon.remove() }
        let config = try String(contentsOfFile: daemon.configPath, encoding: .utf8)
        try config.replacingOccurrences(of: "plugin_dir = \"\(daemon.pluginDir)\"", with: "plugin_dir = \"/nonexistent-expirable-plugins\"")
            .write(toFile: daemon.configPath, atomically: true, encoding: .utf8)
        let (check, start) = try Self.refusals(daemon)
        let message = "\(try Self.place(daemon, "plugin_dir = ")): server.plugin_dir /nonexistent-expirable-plugins cannot be resolved: No such file or directory"
        #expect(check.hasPrefix("expirablectl: " + message), "\(check)")
        #expect(start.contains("expirabled: " + message), "\(start)")
    }

    @Test("a metrics or cluster listen address that is not this machine's is refused by check-config as by the daemon")
    func listenAddressNotHere() throws {
        // 192.0.2.1 (TEST-NET-1, RFC 5737) is on no machine's interfaces.
        let daemon = try Self.setUp("", cluster: "[metrics]\nlisten = \"192.0.2.1:24021\"\n")
        defer { daemon.remove() }
        let (check, start) = try Self.refusals(daemon)
        let message = "\(try Self.place(daemon, "listen = ")): metrics.listen: cannot listen on 192.0.2.1:24021: Cannot assign requested address; this machine has no such address: use one of its own, such as \"127.0.0.1:24021\", or \"0.0.0.0:24021\" for all of them"
        #expect(check == "expirablectl: \(message)\n", "\(check)")
        #expect(start.contains("expirabled: \(message)"), "\(start)")
    }

    @Test("check-config run by another user than the daemon's (an admin) does not refuse a socket directory only the daemon's user may write",
          .enabled(if: CommandLineTests.canDropPrivileges, "needs root and setpriv"))
    func checkConfigAsAnotherUser() throws {
        let daemon = try Self.setUp("")
        defer { daemon.remove() }
        let check = try runTool("/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups",
                                                     TestPaths.product("expirablectl").path, "check-config", daemon.configPath])
        #expect(check.status == 0, "\(check.stderr)")
        #expect(check.stdout.hasPrefix("\(daemon.configPath): ok: 0 expirables"), "\(check.stdout)")
        #expect(check.stderr == "expirablectl: warning: the socket's directory \(daemon.directory.path) is not writable by this user (uid 65534), who runs this check; the daemon's user must be able to write it, or the daemon refuses to start\n", "\(check.stderr)")
    }
}
