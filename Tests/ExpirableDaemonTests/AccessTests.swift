import ExpirableTestSupport
import Foundation
import Testing

/// Issue 14 item 1, SPEC §9: who may read what, by the peer credentials of real processes under other uids
/// (setpriv) and as other executables (copies of redis-cli at different paths).
@Suite("Access rules", .enabled(if: CommandLineTests.canDropPrivileges, "needs root and setpriv"))
struct AccessTests {
    static let redisCLI = "/usr/bin/redis-cli"

    /// A counter expirable with an `allow` list (TOML array text) if given.
    static func expirable(_ name: String, allow: String? = nil) -> String {
        "[expirable.\(name)]\nplugin = \"counter\"\n" + (allow.map { "allow = \($0)\n" } ?? "")
            + "[expirable.\(name).params]\nprefix = \"\(name)-\"\nttl_ms = 600000\ncount_file = \"DIR/\(name).calls\"\n"
    }

    /// A daemon with a socket anyone may open; `prepare` runs in its directory before it starts (copies of
    /// executables that rules name must exist when the configuration is read).
    static func start(_ expirables: String, server: String = "", prepare: (String) throws -> Void = { _ in }) throws -> DaemonProcess {
        let daemon = try DaemonProcess(expirables: expirables, server: "socket_mode = \"0666\"\n" + server, start: false)
        try prepare(daemon.directory.path)
        try daemon.start()
        return daemon
    }

    /// `redis-cli` (or `tool`) as uid/gid, with only the supplementary groups given.
    static func cli(_ daemon: DaemonProcess, uid: Int, gid: Int? = nil, groups: [Int] = [], tool: String = redisCLI, seconds: Int = 30,
                    _ arguments: String...) throws -> String {
        let groupFlags = groups.isEmpty ? ["--clear-groups"] : ["--groups=" + groups.map(String.init).joined(separator: ",")]
        let result = try runTool("/usr/bin/setpriv", ["--reuid=\(uid)", "--regid=\(gid ?? uid)"] + groupFlags + [tool, "-s", daemon.socket] + arguments,
                                 seconds: seconds)
        return result.stdout.trimmingCharacters(in: .newlines)
    }

    static func hidden(_ name: String, uid: Int, exe: String = redisCLI) -> String {
        "NOPERM you may not read '\(name)' (or it does not exist): refused by its allow list; ask its owner to add you (uid:\(uid) or exe:\(exe)) to it"
    }

    @Test("a uid on the allow list reads; another gets NOPERM, word for word the refusal of a name that does not exist")
    func uidRule() throws {
        let daemon = try Self.start(Self.expirable("token", allow: "[\"uid:4242\"]") + Self.expirable("public"))
        defer { daemon.remove() }
        #expect(try Self.cli(daemon, uid: 4242, "GET", "token") == "token-1")
        #expect(try Self.cli(daemon, uid: 4343, "GET", "token") == Self.hidden("token", uid: 4343))
        #expect(try Self.cli(daemon, uid: 4343, "GET", "nosuch") == Self.hidden("nosuch", uid: 4343))
        #expect(try Self.cli(daemon, uid: 4343, "FETCH", "token") == Self.hidden("token", uid: 4343))
        #expect(try Self.cli(daemon, uid: 4343, "GET", "public") == "public-1")
        // Root administers, so it may be told the list; reading still needs a place on it.
        #expect(try daemon.redis("GET", "token") == "NOPERM you may not read 'token' (allowed: uid:4242); ask its owner to add you (uid:0 or exe:\(Self.redisCLI)) to its allow list")
        // Whoever may read every name gets the usual answer for one that does not exist.
        let notFound = try Self.cli(daemon, uid: 4242, "GET", "nosuch")
        #expect(notFound.contains("nosuch") && !notFound.hasPrefix("NOPERM"), "\(notFound)")
        let log = daemon.log
        #expect(log.contains("refused read"), "\(log)")
        #expect(log.contains("uid=4343") && log.contains("exe=\(Self.redisCLI)") && log.contains("pid="))
        // The log, which only the operator reads, names the rule that refused: the list, or that the name is not
        // configured (refused as a hidden one, since some names are hidden from this caller).
        let refusals = log.split(separator: "\n").filter { $0.contains("refused read") }
        #expect(refusals.contains { $0.contains("expirable=token") && $0.contains(#"rule=expirable.token.allow = ["uid:4242"]"#) }, "\(refusals)")
        #expect(refusals.contains { $0.contains("expirable=nosuch") && $0.contains("rule=none: no expirable of this name; refused as a hidden one, since an allow list hides some names from this caller") },
                "\(refusals)")
        #expect(!log.contains("token-1"))
        #expect(daemon.count("token.calls") == 1)
    }

    @Test("user: and group: rules; a supplementary group counts, as does the primary one")
    func groupRules() throws {
        let daemon = try Self.start(Self.expirable("mine", allow: "[\"user:nobody\"]") + Self.expirable("team", allow: "[\"group:daemon\"]"))
        defer { daemon.remove() }
        #expect(try Self.cli(daemon, uid: 65534, "GET", "mine") == "mine-1")
        #expect(try Self.cli(daemon, uid: 65534, "GET", "team") == Self.hidden("team", uid: 65534))
        #expect(try Self.cli(daemon, uid: 4242, groups: [1], "GET", "team") == "team-1")
        #expect(try Self.cli(daemon, uid: 4242, gid: 1, "GET", "team") == "team-1")
        #expect(try Self.cli(daemon, uid: 4242, "GET", "team") == Self.hidden("team", uid: 4242))
    }

    @Test("exe rules: a copy of redis-cli at the allowed path reads, the same binary elsewhere does not; sha256 is of the file")
    func exeRules() throws {
        let original = try Data(contentsOf: URL(fileURLWithPath: Self.redisCLI))
        let digest = try runTool("/usr/bin/sha256sum", [Self.redisCLI]).stdout.prefix(64)
        let daemon = try Self.start(
            Self.expirable("app", allow: "[\"exe:DIR/allowed/redis-cli\"]")
                + Self.expirable("pinned", allow: "[\"exe:DIR/allowed/redis-cli sha256:\(digest)\"]")
                + Self.expirable("tampered", allow: "[\"exe:DIR/modified/redis-cli sha256:\(digest)\"]")
        ) { directory in
            for (folder, bytes) in [("allowed", original), ("other", original), ("modified", original + Data([0]))] {
                try FileManager.default.createDirectory(atPath: "\(directory)/\(folder)", withIntermediateDirectories: true)
                let path = "\(directory)/\(folder)/redis-cli"
                try bytes.write(to: URL(fileURLWithPath: path))
                chmod("\(directory)/\(folder)", 0o755)
                chmod(path, 0o755)
            }
        }
        defer { daemon.remove() }
        let directory = daemon.directory.path
        let allowed = "\(directory)/allowed/redis-cli", other = "\(directory)/other/redis-cli", modified = "\(directory)/modified/redis-cli"
        #expect(try Self.cli(daemon, uid: 4242, tool: allowed, "GET", "app") == "app-1")
        #expect(try Self.cli(daemon, uid: 4242, tool: other, "GET", "app") == Self.hidden("app", uid: 4242, exe: other))
        #expect(try Self.cli(daemon, uid: 4242, tool: allowed, "GET", "pinned") == "pinned-1")
        #expect(try Self.cli(daemon, uid: 4242, tool: modified, "GET", "tampered") == Self.hidden("tampered", uid: 4242, exe: modified))
        #expect(try Self.cli(daemon, uid: 4242, tool: modified, "PING") == "PONG")
    }

    /// Whether this process may make a mount namespace of its own (`unshare -m`, util-linux): root outside a
    /// container that forbids it.
    static let canMountPrivately = getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/unshare")
        && (try? runTool("/usr/bin/unshare", ["-m", "--propagation", "private", "/bin/true"]).status) == 0

    @Test("exe rules match the file at the rule's path as the daemon sees it, not another file bind-mounted over that path in the peer's mount namespace",
          .enabled(if: canMountPrivately, "needs root, setpriv and unshare -m (util-linux) permitted here"))
    func exeRuleInAnotherMountNamespace() throws {
        let original = try Data(contentsOf: URL(fileURLWithPath: Self.redisCLI))
        let digest = try runTool("/usr/bin/sha256sum", [Self.redisCLI]).stdout.prefix(64)
        let daemon = try Self.start(
            Self.expirable("app", allow: "[\"exe:DIR/allowed/redis-cli\"]")
                + Self.expirable("pinned", allow: "[\"exe:DIR/allowed/redis-cli sha256:\(digest)\"]")
                + Self.expirable("guarded", allow: "[\"exe:DIR/private/redis-cli\"]")
        ) { directory in
            for (folder, bytes) in [("allowed", original), ("impostor", original + Data([0])), ("copy", original), ("private", original)] {
                try FileManager.default.createDirectory(atPath: "\(directory)/\(folder)", withIntermediateDirectories: true)
                let path = "\(directory)/\(folder)/redis-cli"
                try bytes.write(to: URL(fileURLWithPath: path))
                chmod("\(directory)/\(folder)", 0o755)
                chmod(path, folder == "private" ? 0o750 : 0o755)
            }
        }
        defer { daemon.remove() }
        let directory = daemon.directory.path
        let allowed = "\(directory)/allowed/redis-cli"
        /// `file` bind-mounted over the allowed path in a mount namespace of its own, run there by that path as
        /// uid 4242: its /proc/PID/exe reads as the allowed path.
        func masked(by file: String, _ arguments: String...) throws -> String {
            let script = #"mount --bind "$1" "$2" && shift 2 && exec /usr/bin/setpriv --reuid=4242 --regid=4242 --clear-groups "$@""#
            let result = try runTool("/usr/bin/unshare", ["-m", "--propagation", "private", "/bin/sh", "-c", script, "sh", file, allowed,
                                                          allowed, "-s", daemon.socket] + arguments)
            return result.stdout.trimmingCharacters(in: .newlines) + result.stderr
        }
        let refused = { (name: String) in
            "NOPERM you may not read '\(name)' (or it does not exist): refused by its allow list; ask its owner to add you (uid:4242) to it"
        }
        let impostor = try masked(by: "\(directory)/impostor/redis-cli", "GET", "app")
        #expect(impostor == refused("app"), "\(impostor)")
        // The same bytes at another inode: the hash matches, the file is still not the one at the path.
        let copy = try masked(by: "\(directory)/copy/redis-cli", "GET", "pinned")
        #expect(copy == refused("pinned"), "\(copy)")
        #expect(try masked(by: "\(directory)/impostor/redis-cli", "PING") == "PONG")
        // The same without privilege: nobody may not run the root-owned 0750 file, but may make a user and mount
        // namespace of its own (unshare -Urm) and mount its own file over that path there.
        let script = #"mount --bind "$1" "$2" && exec "$2" -s "$3" GET guarded"#
        let unprivileged = try runTool("/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/unshare", "-Urm",
                                                           "/bin/sh", "-c", script, "sh", "\(directory)/impostor/redis-cli",
                                                           "\(directory)/private/redis-cli", daemon.socket])
        if unprivileged.stderr.isEmpty {
            #expect(unprivileged.stdout.trimmingCharacters(in: .newlines)
                        == "NOPERM you may not read 'guarded' (or it does not exist): refused by its allow list; ask its owner to add you (uid:65534) to it",
                    "\(unprivileged)")
        } else {
            // User namespaces are off for unprivileged users here (kernel.unprivileged_userns_clone, AppArmor).
            #expect(!unprivileged.stdout.contains("guarded-1"), "\(unprivileged)")
        }
        let log = daemon.log
        #expect(log.contains("exe=\(allowed) (not the file at that path)"), "\(log)")
        #expect(!log.contains("app-1") && !log.contains("pinned-1") && !log.contains("guarded-1"))
        // The genuine file still reads, also from a mount namespace of its own that leaves it in place.
        #expect(try Self.cli(daemon, uid: 4242, tool: allowed, "GET", "app") == "app-1")
        #expect(try Self.cli(daemon, uid: 4242, tool: allowed, "GET", "pinned") == "pinned-1")
        #expect(try masked(by: allowed, "GET", "app") == "app-1")
        #expect(daemon.count("app.calls") == 1 && daemon.count("pinned.calls") == 1 && daemon.count("guarded.calls") == 0)
    }

    @Test("a refused name cannot forge log lines: its control characters are escaped in the text log, and in JSON")
    func refusedNameCannotForgeLogLines() throws {
        let forged = "1999-12-31T23:59:59+0000 critical expirable.server: FORGED LINE uid=0"
        // printf makes the newline, CR, ESC and NUL bytes; redis-cli -x sends its stdin, byte for byte, as GET's name.
        let script = #"printf 'x\n%s\r\033[2J\000\177end' "$1" | exec /usr/bin/redis-cli -x -s "$2" GET"#
        for format in ["text", "json"] {
            let daemon = try DaemonProcess(expirables: Self.expirable("token", allow: "[\"uid:12345\"]"), server: "socket_mode = \"0666\"",
                                           arguments: ["--log-format", format])
            defer { daemon.remove() }
            let refused = try runTool("/usr/bin/setpriv", ["--reuid=4343", "--regid=4343", "--clear-groups", "/bin/sh", "-c", script, "sh",
                                                          forged, daemon.socket])
            #expect(refused.stdout.hasPrefix("NOPERM you may not read 'x "), "\(refused)")
            let log = daemon.log
            let lines = log.split(separator: "\n", omittingEmptySubsequences: false)
            #expect(!lines.contains { $0.hasPrefix("1999-") }, "\(log)")
            #expect(!log.utf8.contains { ($0 < 0x20 && $0 != 0x0A) || $0 == 0x7F }, "\(log)")
            if format == "text" {
                #expect(log.contains(#"expirable=x\n\#(forged)\r\x1b[2J\x00\x7fend "#), "\(log)")
            } else {
                let records = try lines.filter { !$0.isEmpty }.map {
                    try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: String], "\($0)")
                }
                #expect(records.contains { $0["expirable"] == "x\n\(forged)\r\u{1B}[2J\0\u{7F}end" }, "\(log)")
            }
        }
    }

    @Test("MGET and SUBSCRIBE of a name the caller may not read are refused; LIST, INFO, DBSIZE, EXPLAIN and status show only what it may read")
    func filtering() throws {
        let daemon = try Self.start(Self.expirable("token", allow: "[\"uid:4242\"]") + Self.expirable("public"))
        defer { daemon.remove() }
        #expect(try Self.cli(daemon, uid: 4343, "MGET", "public", "token") == Self.hidden("token", uid: 4343))
        #expect(try Self.cli(daemon, uid: 4343, "MGET", "public", "nosuch") == Self.hidden("nosuch", uid: 4343))
        // `public` is no keyed family: `public:x` does not exist, and a caller with hidden names is told so in
        // the same words as for any other name that does not exist.
        for command in ["GET", "TTL", "INFO"] {
            #expect(try Self.cli(daemon, uid: 4343, command, "public:x") == Self.hidden("public:x", uid: 4343), "\(command)")
        }
        #expect(try Self.cli(daemon, uid: 4242, "MGET", "public", "token") == "public-1\ntoken-1")
        let subscribe = try Self.cli(daemon, uid: 4343, seconds: 3, "SUBSCRIBE", "token")
        #expect(subscribe.contains(Self.hidden("token", uid: 4343)), "\(subscribe)")
        #expect(try Self.cli(daemon, uid: 4343, "LIST") == "public")
        #expect(try Self.cli(daemon, uid: 4242, "LIST") == "public\ntoken")
        #expect(try daemon.redis("LIST") == "public\ntoken")
        #expect(try Self.cli(daemon, uid: 4343, "INFO").contains("expirables:1\r"))
        #expect(try Self.cli(daemon, uid: 4343, "DBSIZE") == "1")
        for command in ["INFO", "EXPLAIN", "TTL", "PTTL", "EXISTS", "TYPE"] {
            #expect(try Self.cli(daemon, uid: 4343, command, "token") == Self.hidden("token", uid: 4343), "\(command)")
        }
        #expect(try Self.cli(daemon, uid: 4242, "EXPLAIN", "token").contains("readers:uid:4242"))
        let status = try runTool("/usr/bin/setpriv", ["--reuid=4343", "--regid=4343", "--clear-groups", TestPaths.product("expirablectl").path,
                                                      "status", "--socket", daemon.socket])
        #expect(status.stdout.contains("public") && !status.stdout.contains("token"), "\(status)")
    }

    @Test("a subscriber hears only values it may read; after a reload that takes its right away, nothing more")
    func subscriberLosesRight() throws {
        let daemon = try Self.start(Self.expirable("token", allow: "[\"uid:0\"]"))
        defer { daemon.remove() }
        let subscriber = try RawConnection(daemon.socket)
        #expect(subscriber.roundTrip("SUBSCRIBE token\r\n", expecting: 1).contains("subscribe"))
        #expect(try daemon.redis("GET", "token") == "token-1")
        #expect(subscriber.receive(replies: 1).contains("token-1"))
        let config = try String(contentsOfFile: daemon.configPath, encoding: .utf8)
        try config.replacingOccurrences(of: "allow = [\"uid:0\"]", with: "allow = [\"uid:4242\"]").write(toFile: daemon.configPath, atomically: true, encoding: .utf8)
        #expect(try daemon.redis("RELOAD").contains("allow changed: token"))
        #expect(try daemon.redis("CLEAR", "token") == "OK")
        #expect(try Self.cli(daemon, uid: 4242, "GET", "token") == "token-2")
        subscriber.setReceiveTimeout(seconds: 1)
        #expect(!subscriber.receive(replies: 1).contains("token-2"))
    }

    @Test("a reload recomputes an open connection's rights")
    func reloadRecomputes() throws {
        let daemon = try Self.start(Self.expirable("token", allow: "[\"uid:4242\"]"))
        defer { daemon.remove() }
        let connection = try RawConnection(daemon.socket)
        #expect(connection.roundTrip("GET token\r\n", expecting: 1).hasPrefix("-NOPERM you may not read 'token' (allowed: uid:4242)"))
        let config = try String(contentsOfFile: daemon.configPath, encoding: .utf8)
        try config.replacingOccurrences(of: "allow = [\"uid:4242\"]", with: "allow = [\"uid:4242\", \"uid:0\"]").write(toFile: daemon.configPath, atomically: true, encoding: .utf8)
        #expect(try daemon.redis("RELOAD").contains("allow changed: token"))
        #expect(connection.roundTrip("GET token\r\n", expecting: 1) == "$7\r\ntoken-1\r\n")
        #expect(connection.roundTrip("GET token\r\n", expecting: 1) == "$7\r\ntoken-1\r\n")
    }

    @Test("[server] admins names who may CLEAR, CLEARALL and RELOAD; root always may")
    func admins() throws {
        let daemon = try Self.start(Self.expirable("public"), server: "admins = [\"uid:4242\"]")
        defer { daemon.remove() }
        #expect(try Self.cli(daemon, uid: 4242, "GET", "public") == "public-1")
        #expect(try Self.cli(daemon, uid: 4242, "CLEAR", "public") == "OK")
        #expect(try Self.cli(daemon, uid: 4242, "RELOAD").hasPrefix("reloaded "))
        #expect(try Self.cli(daemon, uid: 4343, "CLEAR", "public") == "NOPERM cannot CLEAR public: CLEAR is allowed to root and uid:4242 only ([server] admins)")
        let refusal = daemon.log.split(separator: "\n").first { $0.contains("refused admin command") && $0.contains("command=CLEAR") }
        #expect(refusal?.contains("expirable=public") == true, "the log names the expirable: \(refusal ?? "none")")
        #expect(try Self.cli(daemon, uid: 4343, "RELOAD").hasPrefix("NOPERM RELOAD"))
        #expect(try Self.cli(daemon, uid: 4343, "CLEARALL").hasPrefix("NOPERM CLEARALL"))
        #expect(try daemon.redis("CLEARALL") == "OK")
    }

    @Test("a keyed family's members follow the family's allow list, from memory and on a miss")
    func keyedFamily() throws {
        let daemon = try DaemonProcess(expirables: """
            [expirable.tenant]
            plugin = "stateful"
            keyed = true
            allow = ["uid:4242"]
            """, server: "socket_mode = \"0666\"", testPlugins: ["stateful"])
        defer { daemon.remove() }
        #expect(try Self.cli(daemon, uid: 4343, "GET", "tenant:acme") == Self.hidden("tenant:acme", uid: 4343))
        #expect(try Self.cli(daemon, uid: 4242, "GET", "tenant:acme") == "key=acme state=")
        #expect(try Self.cli(daemon, uid: 4242, "GET", "tenant:acme") == "key=acme state=", "answered from memory")
        #expect(try Self.cli(daemon, uid: 4343, "GET", "tenant:acme") == Self.hidden("tenant:acme", uid: 4343))
        #expect(try Self.cli(daemon, uid: 4343, "LIST") == "")
        #expect(try Self.cli(daemon, uid: 4242, "LIST") == "tenant:*")
    }

    @Test("INFO and EXPLAIN of NAME:* refuse a hidden keyed family in the very words of a name that does not exist")
    func hiddenFamilyPattern() throws {
        let daemon = try DaemonProcess(expirables: """
            [expirable.tenant]
            plugin = "stateful"
            keyed = true
            allow = ["uid:4242"]
            """, server: "socket_mode = \"0666\"", testPlugins: ["stateful"])
        defer { daemon.remove() }
        for command in ["INFO", "EXPLAIN"] {
            #expect(try Self.cli(daemon, uid: 4343, command, "tenant:*") == Self.hidden("tenant:*", uid: 4343), "\(command)")
            #expect(try Self.cli(daemon, uid: 4343, command, "nosuch:*") == Self.hidden("nosuch:*", uid: 4343), "\(command)")
            let shown = try Self.cli(daemon, uid: 4242, command, "tenant:*")
            #expect(!shown.hasPrefix("NOPERM") && shown.contains("tenant"), "a reader is shown the family: \(shown)")
        }
    }

    @Test("metrics leave out expirables with an allow list: a scrape has no peer credentials")
    func metricsHideRestricted() throws {
        let port = try freePort(on: "127.0.0.1")
        let daemon = try Self.start(Self.expirable("token", allow: "[\"uid:0\"]") + Self.expirable("public"),
                                    server: "\n[metrics]\nlisten = \"127.0.0.1:\(port)\"\n")
        defer { daemon.remove() }
        #expect(try daemon.redis("GET", "token") == "token-1")
        #expect(try daemon.redis("GET", "public") == "public-1")
        var scrape = ""
        for _ in 0..<50 where !scrape.contains("expirable_state") {
            scrape = try runTool("/usr/bin/curl", ["-s", "http://127.0.0.1:\(port)/metrics"]).stdout
            if !scrape.contains("expirable_state") { usleep(100_000) }
        }
        #expect(scrape.contains("expirable=\"public\""))
        #expect(!scrape.contains("token"))
    }
}
