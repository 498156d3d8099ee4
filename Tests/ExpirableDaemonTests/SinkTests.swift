import ExpirableTestSupport
import Foundation
import Testing

/// `[[sink]]` files (SPEC §7) written by a real daemon in a directory under /dev/shm (a tmpfs).
@Suite("sinks: files on a tmpfs, rewritten on every new value")
struct SinkTests {
    /// A fresh directory on the tmpfs /dev/shm, removed by the caller.
    static func tmpfsDirectory() throws -> String {
        let path = "/dev/shm/expirable-sink-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
        chmod(path, 0o755)  // whatever the umask: a sink's directory others may write is refused
        return path
    }

    @Test("a sink is written at start with its owner, group and mode, rewritten on rotation and after a clear, removed at SIGTERM", .timeLimit(.minutes(2)))
    func lifecycle() async throws {
        let shm = try Self.tmpfsDirectory()
        defer { try? FileManager.default.removeItem(atPath: shm) }
        let path = shm + "/token"
        let daemon = try ServingTests.start("""
            [expirable.token]
            plugin = "counter"
            refresh = "eager"
            before_expiry = "2500ms"
            [expirable.token.params]
            prefix = "token-"
            ttl_ms = 3000

            [[sink]]
            expirable = "token"
            path = "\(path)"
            owner = "nobody"
            group = "daemon"
            mode = "0640"
            """)
        defer { daemon.remove() }
        let first = try #require(try await fileContent(path) { $0 != nil })
        #expect(first.hasPrefix("token-"))
        var info = stat()
        #expect(stat(path, &info) == 0)
        #expect(info.st_mode & 0o7777 == 0o640)
        #expect(info.st_uid == getpwnam("nobody").pointee.pw_uid)
        #expect(info.st_gid == getgrnam("daemon").pointee.gr_gid)
        // An eager refresh (about once a second) rewrites it, whole: never empty, never a part.
        let next = try await fileContent(path) { $0 != first }
        #expect(next.map { $0.hasPrefix("token-") && $0 != first } == true, "\(next ?? "nil")")
        #expect(stat(path, &info) == 0 && info.st_mode & 0o7777 == 0o640 && info.st_uid == getpwnam("nobody").pointee.pw_uid)
        // No temporary file is left behind.
        #expect(try FileManager.default.contentsOfDirectory(atPath: shm) == ["token"])

        // A clear removes the file and the sink fetches again at once (refetchedAfterClear).
        try await daemon.client.clear("token")
        let fetched = try await daemon.client.value("token")
        #expect(try await fileContent(path) { $0 != nil }.map { $0.hasPrefix("token-") } == true, "fetched \(fetched)")

        #expect(daemon.stop(signal: SIGTERM) == 0)
        #expect(!FileManager.default.fileExists(atPath: path), "removed at shutdown")
        #expect(!daemon.log.contains(fetched), "the value is never logged")
    }

    @Test("a lazy value's sink is fetched again when it expires")
    func lazyValueRefetchedAtExpiry() async throws {
        let shm = try Self.tmpfsDirectory()
        defer { try? FileManager.default.removeItem(atPath: shm) }
        let daemon = try ServingTests.start(ServingTests.counter("token", ttlMillis: 1500) + """

            [[sink]]
            expirable = "token"
            path = "\(shm)/token"
            """)
        defer { daemon.remove() }
        // Refetched at each expiry (1.5 s): a later value, whichever this test sees first on a loaded machine.
        let first = try #require(try await fileContent(shm + "/token") { $0 != nil })
        #expect(first.hasPrefix("token-"))
        let later = try await fileContent(shm + "/token") { $0 != nil && $0 != first }
        #expect(later?.hasPrefix("token-") == true)
        var info = stat()
        #expect(stat(shm + "/token", &info) == 0 && info.st_mode & 0o7777 == 0o600, "the default mode is 0600")
    }

    @Test("a sink outside a tmpfs is refused at start and by check-config, with the file, the line and why")
    func refusedOnDisk() throws {
        var fs = statvfs()
        // /var/tmp is on the root file system here (ext4); the test is meaningless where it is a tmpfs.
        let onDisk = try runTool("stat", ["-f", "-c", "%T", "/var/tmp"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        guard onDisk != "tmpfs", onDisk != "ramfs", statvfs("/var/tmp", &fs) == 0 else { return }
        let daemon = try DaemonProcess(expirables: ServingTests.counter("token") + """

            [[sink]]
            expirable = "token"
            path = "/var/tmp/expirable-token"
            """, start: false)
        defer { daemon.remove() }
        let check = try runTool(try TestPaths.product("expirablectl").path, ["check-config", daemon.configPath])
        #expect(check.status == 78)
        let config = try String(contentsOfFile: daemon.configPath, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false)
        let line = try #require(config.firstIndex { $0.hasPrefix("path = \"/var/tmp") }) + 1
        let expected = "\(daemon.configPath):\(line): sink[1].path: /var/tmp is not on a tmpfs or ramfs"
        #expect(check.stderr.contains(expected), "\(check.stderr)")
        #expect(check.stderr.contains("values never touch a disk"))
        #expect(throws: (any Error).self) { try daemon.start() }
        #expect(daemon.log.contains(expected), "\(daemon.log)")
        #expect(!FileManager.default.fileExists(atPath: "/var/tmp/expirable-token"))
    }

    @Test("a reload that changes a sink is refused as needing a restart; the sink stays")
    func reloadRefusesSinkChanges() async throws {
        let shm = try Self.tmpfsDirectory()
        defer { try? FileManager.default.removeItem(atPath: shm) }
        let daemon = try ServingTests.start(ServingTests.counter("token") + """

            [[sink]]
            expirable = "token"
            path = "\(shm)/token"
            """)
        defer { daemon.remove() }
        #expect(try await fileContent(shm + "/token") { $0 != nil } == "token-1")
        let config = try String(contentsOfFile: daemon.configPath, encoding: .utf8)
        try (config + "\nmode = \"0644\"\n").write(toFile: daemon.configPath, atomically: true, encoding: .utf8)
        let reload = try daemon.ctl("reload")
        #expect(reload.status == 65)
        #expect(reload.stderr.contains("[[sink]] changed, and only a restart applies it"), "\(reload.stderr)")
        #expect(try String(contentsOfFile: shm + "/token", encoding: .utf8) == "token-1")
    }

    @Test("a reload that gives a sink's expirable a new plugin instance drops the old value from the file and writes the new one", .timeLimit(.minutes(2)))
    func reloadStartingEmptyRewritesTheFile() async throws {
        let shm = try Self.tmpfsDirectory()
        defer { try? FileManager.default.removeItem(atPath: shm) }
        let daemon = try ServingTests.start(ServingTests.counter("token") + Self.sink(shm + "/token"))
        defer { daemon.remove() }
        #expect(try await fileContent(shm + "/token") { $0 != nil } == "token-1")
        // New params (another account, say): the value is dropped, and the file must not keep it.
        let config = try String(contentsOfFile: daemon.configPath, encoding: .utf8)
        try config.replacingOccurrences(of: "prefix = \"token-\"", with: "prefix = \"renewed-\"").write(toFile: daemon.configPath, atomically: true, encoding: .utf8)
        let reload = try daemon.ctl("reload")
        #expect(reload.status == 0, "\(reload.stderr)")
        #expect(reload.stdout.contains("changed: token (new plugin instance, starts empty)"), "\(reload.stdout)")
        // No socket reader asks: the sink itself fetches from the new instance.
        #expect(try await fileContent(shm + "/token") { $0 != "token-1" && $0 != nil } == "renewed-1")
        #expect(!daemon.log.contains("renewed-1"), "the value is never logged")
    }

    @Test("after CLEAR or CLEARALL a sink's file is removed and the sink fetches a new value at once, as the standing reader it is, lazy or eager", .timeLimit(.minutes(2)))
    func refetchedAfterClear() async throws {
        let shm = try Self.tmpfsDirectory()
        defer { try? FileManager.default.removeItem(atPath: shm) }
        // Each call of the lazy value takes 3 s, so the file is seen absent while the new value is fetched; the
        // eager value's refresh is far off, so only the clear brings a new value within the test.
        let daemon = try ServingTests.start(ServingTests.counter("token") + "sleep_ms = 3000\n" + Self.sink(shm + "/token") + """

            [expirable.eager]
            plugin = "counter"
            refresh = "eager"
            before_expiry = "10s"
            [expirable.eager.params]
            prefix = "eager-"
            ttl_ms = 600000
            count_file = "COUNT/eager-calls"

            [[sink]]
            expirable = "eager"
            path = "\(shm)/eager"
            """)
        defer { daemon.remove() }
        #expect(try await fileContent(shm + "/token") { $0 != nil } == "token-1")
        #expect(try await fileContent(shm + "/eager") { $0 != nil } == "eager-1")
        // No socket reader asks for either value after the clear.
        #expect(try daemon.redis("CLEAR", "token") == "OK")
        #expect(try await fileContent(shm + "/token") { $0 == nil } == nil, "the cleared value leaves the file")
        #expect(try await fileContent(shm + "/token") { $0 == "token-2" } == "token-2")
        #expect(try daemon.redis("CLEARALL") == "OK")
        #expect(try await fileContent(shm + "/token") { $0 == nil } == nil)
        #expect(try await fileContent(shm + "/token") { $0 == "token-3" } == "token-3")
        #expect(try await fileContent(shm + "/eager") { $0 == "eager-2" } == "eager-2")
        #expect(daemon.count("calls") == 3 && daemon.count("eager-calls") == 2, "one call per clear")
    }

    /// Another local user (nobody): what an attacker on the machine would own.
    static var nobody: uid_t { getpwnam("nobody").pointee.pw_uid }

    static func sink(_ path: String, owner: String? = nil) -> String {
        "\n[[sink]]\nexpirable = \"token\"\npath = \"\(path)\"\n" + (owner.map { "owner = \"\($0)\"\n" } ?? "")
    }

    @Test("a sink directory another user owns is refused by check-config, at start and at reload, and not touched after", .timeLimit(.minutes(2)))
    func refusesDirectoryOwnedByAnotherUser() async throws {
        guard geteuid() == 0 else { return }  // giving a directory to another user needs root
        let shm = try Self.tmpfsDirectory()
        defer { try? FileManager.default.removeItem(atPath: shm) }
        // Another user made /dev/shm/.../app first, mode 0755: `install -d -m 0755` by the admin keeps them its owner.
        #expect(mkdir(shm + "/app", 0o755) == 0 && chown(shm + "/app", Self.nobody, Self.nobody) == 0)
        let refused = try DaemonProcess(expirables: ServingTests.counter("token") + Self.sink(shm + "/app/token"), start: false)
        defer { refused.remove() }
        let check = try runTool(try TestPaths.product("expirablectl").path, ["check-config", refused.configPath])
        let expected = "sink[1].path: \(shm)/app is owned by uid \(Self.nobody) (nobody), not by root, the daemon's user or the sink's owner"
        #expect(check.status == 78)
        #expect(check.stderr.contains(expected), "\(check.stderr)")
        #expect(throws: (any Error).self) { try refused.start() }
        #expect(refused.log.contains(expected), "\(refused.log)")
        #expect(!FileManager.default.fileExists(atPath: shm + "/app/token"))
        // The user the sink is written for may own it.
        let theirs = try DaemonProcess(expirables: ServingTests.counter("token") + Self.sink(shm + "/app/token", owner: "nobody"), start: false)
        defer { theirs.remove() }
        #expect(try runTool(try TestPaths.product("expirablectl").path, ["check-config", theirs.configPath]).status == 0)

        // A directory given away after start: a reload is refused, and the daemon no longer touches the file.
        #expect(mkdir(shm + "/mine", 0o755) == 0)
        let daemon = try ServingTests.start(ServingTests.counter("token") + Self.sink(shm + "/mine/token"))
        defer { daemon.remove() }
        #expect(try await fileContent(shm + "/mine/token") { $0 != nil } == "token-1")
        #expect(chown(shm + "/mine", Self.nobody, Self.nobody) == 0)
        let reload = try daemon.ctl("reload")
        #expect(reload.status != 0)
        #expect(reload.stderr.contains("\(shm)/mine is owned by uid \(Self.nobody) (nobody)"), "\(reload.stderr)")
        #expect(try daemon.redis("CLEAR", "token") == "OK")
        #expect(waitUntil(seconds: 30) { daemon.log.contains("cannot remove a sink") }, "\(daemon.log)")
        #expect(daemon.log.contains("\(shm)/mine is owned by uid \(Self.nobody) (nobody)"), "\(daemon.log)")
    }

    @Test("a sink path through a symbolic link another user owns is refused; a link put in the directory's place after start is never followed", .timeLimit(.minutes(2)))
    func neverFollowsOthersLinks() async throws {
        guard geteuid() == 0 else { return }  // giving a link to another user needs root
        let shm = try Self.tmpfsDirectory()
        defer { try? FileManager.default.removeItem(atPath: shm) }
        // A root-only directory holding a file of the same name as the sink's: what an attacker would aim at.
        #expect(mkdir(shm + "/real", 0o755) == 0 && mkdir(shm + "/victim", 0o700) == 0)
        try "precious".write(toFile: shm + "/victim/token", atomically: false, encoding: .utf8)
        #expect(symlink(shm + "/real", shm + "/app") == 0 && lchown(shm + "/app", Self.nobody, Self.nobody) == 0)
        let refused = try DaemonProcess(expirables: ServingTests.counter("token") + Self.sink(shm + "/app/token"), start: false)
        defer { refused.remove() }
        let check = try runTool(try TestPaths.product("expirablectl").path, ["check-config", refused.configPath])
        #expect(check.status == 78)
        #expect(check.stderr.contains("sink[1].path: \(shm)/app is a symbolic link owned by uid \(Self.nobody) (nobody)"), "\(check.stderr)")
        #expect(throws: (any Error).self) { try refused.start() }
        #expect(!FileManager.default.fileExists(atPath: shm + "/real/token"))

        // Started on a real directory, which is then swapped for another user's link to the victim's directory.
        #expect(mkdir(shm + "/swapped", 0o755) == 0)
        let daemon = try ServingTests.start(ServingTests.counter("token") + Self.sink(shm + "/swapped/token"))
        defer { daemon.remove() }
        #expect(try await fileContent(shm + "/swapped/token") { $0 != nil } == "token-1")
        #expect(rename(shm + "/swapped", shm + "/moved") == 0)
        #expect(symlink(shm + "/victim", shm + "/swapped") == 0 && lchown(shm + "/swapped", Self.nobody, Self.nobody) == 0)
        #expect(try daemon.redis("CLEAR", "token") == "OK")
        #expect(waitUntil(seconds: 30) { daemon.log.contains("cannot remove a sink") }, "\(daemon.log)")
        let fetched = try daemon.redis("GET", "token")
        #expect(fetched == "token-2")
        #expect(waitUntil(seconds: 30) { daemon.log.contains("cannot write a sink") }, "\(daemon.log)")
        #expect(daemon.log.contains("\(shm)/swapped is a symbolic link owned by uid \(Self.nobody) (nobody)"), "\(daemon.log)")
        #expect(try String(contentsOfFile: shm + "/victim/token", encoding: .utf8) == "precious", "never removed through the link")
        #expect(try FileManager.default.contentsOfDirectory(atPath: shm + "/victim") == ["token"], "never written through the link")
    }
}

