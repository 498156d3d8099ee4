import ExpirableConfig
import Foundation
import Testing

/// `[[sink]]` decoding: keys, owner and group lookups, and the tmpfs rule, each refusal naming file, line and key.
@Suite("Configuration: [[sink]]")
struct SinkConfigurationTests {
    static let file = "/etc/expirable/expirable.toml"
    static let expirables = """
        [expirable.token]
        plugin = "command"

        [expirable.family]
        plugin = "command"
        keyed = true

        """

    static func parse(_ sinks: String) throws(ConfigurationError) -> Configuration {
        try Configuration.parse(expirables + sinks, file: file)
    }

    static func refusal(_ sinks: String) -> ConfigurationError? {
        do {
            _ = try parse(sinks)
            return nil
        } catch {
            return error
        }
    }

    /// A directory of its own on the tmpfs /dev/shm, mode 0755, holding a subdirectory `d`; removed after `body`.
    static func withDirectory<T>(_ body: (String) throws -> T) throws -> T {
        let directory = "/dev/shm/expirable-sinkconf-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory + "/d", withIntermediateDirectories: true)
        chmod(directory, 0o755)
        chmod(directory + "/d", 0o755)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        return try body(directory)
    }

    @Test("sinks decode in file order, with owner and group resolved and mode 0600 by default")
    func decodes() throws { try Self.withDirectory { dir in
        let config = try Self.parse("""
            [[sink]]
            expirable = "token"
            path = "\(dir)/token"
            owner = "nobody"
            group = 0
            mode = "0640"

            [[sink]]
            expirable = "family:github"
            path = "\(dir)/github"
            """)
        #expect(config.sinks.count == 2)
        #expect(config.sinks[0] == .init(expirable: "token", path: "\(dir)/token", uid: getpwnam("nobody").pointee.pw_uid, gid: 0, mode: 0o640, line: 8))
        #expect(config.sinks[1].expirable == "family:github")
        #expect(config.sinks[1].uid == nil && config.sinks[1].gid == nil && config.sinks[1].mode == 0o600)
    } }

    @Test("a sink in a directory others or its group may write is refused, and so is one under a directory others may swap, and a mode that lets others write")
    func refusesWritableByOthers() throws { try Self.withDirectory { dir in
        // /dev/shm is mode 1777: anyone may put a file of their own at /dev/shm/x while the sink's file is absent.
        var error = try #require(Self.refusal("[[sink]]\nexpirable = \"token\"\npath = \"/dev/shm/x\""))
        #expect(error.key == "sink[1].path")
        #expect(error.message.hasPrefix("/dev/shm is writable by others (mode 1777): they could put a file of their own at this path"), "\(error)")
        chmod(dir + "/d", 0o775)
        error = try #require(Self.refusal("[[sink]]\nexpirable = \"token\"\npath = \"\(dir)/d/x\""))
        #expect(error.message.hasPrefix("\(dir)/d is writable by its group (mode 775)"), "\(error)")
        chmod(dir + "/d", 0o755)
        chmod(dir, 0o777)
        error = try #require(Self.refusal("[[sink]]\nexpirable = \"token\"\npath = \"\(dir)/d/x\""))
        #expect(error.message.hasPrefix("\(dir), above \(dir)/d, is writable by others without the sticky bit (mode 777)"), "\(error)")
        chmod(dir, 0o1777)
        #expect(Self.refusal("[[sink]]\nexpirable = \"token\"\npath = \"\(dir)/d/x\"") == nil, "a sticky ancestor cannot have the directory swapped")
        for mode in ["0666", "0620", "0602"] {
            error = try #require(Self.refusal("[[sink]]\nexpirable = \"token\"\npath = \"\(dir)/d/x\"\nmode = \"\(mode)\""))
            #expect(error.key == "sink[1].mode")
            #expect(error.message.hasPrefix("\(mode) lets others than the owner write the file"), "\(error)")
        }
        #expect(Self.refusal("[[sink]]\nexpirable = \"token\"\npath = \"\(dir)/d/x\"\nmode = \"0644\"") == nil)
    } }

    @Test("a sink whose directory, or one above it, another user owns is refused; the sink's own owner may own them")
    func refusesOthersDirectories() throws { try Self.withDirectory { dir in
        guard geteuid() == 0 else { return }  // giving a directory to another user needs root
        let nobody = getpwnam("nobody").pointee.pw_uid
        #expect(chown(dir + "/d", nobody, nobody) == 0)
        var error = try #require(Self.refusal("[[sink]]\nexpirable = \"token\"\npath = \"\(dir)/d/x\""))
        #expect(error.key == "sink[1].path")
        #expect(error.message.hasPrefix("\(dir)/d is owned by uid \(nobody) (nobody), not by root, the daemon's user or the sink's owner: they could replace the file"), "\(error)")
        #expect(error.message.contains("install -d leaves the owner of a directory that exists as it is"), "\(error)")
        #expect(Self.refusal("[[sink]]\nexpirable = \"token\"\npath = \"\(dir)/d/x\"\nowner = \"nobody\"") == nil)
        #expect(chown(dir + "/d", 0, 0) == 0 && chown(dir, nobody, nobody) == 0)
        error = try #require(Self.refusal("[[sink]]\nexpirable = \"token\"\npath = \"\(dir)/d/x\""))
        #expect(error.message.hasPrefix("\(dir), above \(dir)/d, is owned by uid \(nobody) (nobody)"), "\(error)")
        #expect(Self.refusal("[[sink]]\nexpirable = \"token\"\npath = \"\(dir)/d/x\"\nowner = \"\(nobody)\"") == nil)
        #expect(chown(dir, 0, 0) == 0)
    } }

    @Test("a symbolic link on a sink's path is followed only when root, the daemon's user or the sink's owner owns it, and judged by where it leads")
    func linksOnThePath() throws { try Self.withDirectory { dir in
        guard geteuid() == 0 else { return }  // giving a link to another user needs root
        let nobody = getpwnam("nobody").pointee.pw_uid
        #expect(symlink(dir + "/d", dir + "/absolute") == 0 && symlink("d", dir + "/relative") == 0 && symlink("/dev/shm", dir + "/shared") == 0)
        #expect(Self.refusal("[[sink]]\nexpirable = \"token\"\npath = \"\(dir)/absolute/x\"") == nil)
        #expect(Self.refusal("[[sink]]\nexpirable = \"token\"\npath = \"\(dir)/relative/x\"") == nil)
        var error = try #require(Self.refusal("[[sink]]\nexpirable = \"token\"\npath = \"\(dir)/shared/x\""))
        #expect(error.message.hasPrefix("/dev/shm is writable by others (mode 1777)"), "\(error)")
        #expect(lchown(dir + "/absolute", nobody, nobody) == 0)
        error = try #require(Self.refusal("[[sink]]\nexpirable = \"token\"\npath = \"\(dir)/absolute/x\""))
        #expect(error.key == "sink[1].path")
        #expect(error.message.hasPrefix("\(dir)/absolute is a symbolic link owned by uid \(nobody) (nobody), not by root, the daemon's user or the sink's owner: its owner could point it at another directory at any time"), "\(error)")
        #expect(error.message.contains("use the real directory's path"))
        #expect(Self.refusal("[[sink]]\nexpirable = \"token\"\npath = \"\(dir)/absolute/x\"\nowner = \"nobody\"") == nil)
        #expect(symlink("loop", dir + "/loop") == 0)
        error = try #require(Self.refusal("[[sink]]\nexpirable = \"token\"\npath = \"\(dir)/loop/x\""))
        #expect(error.message.contains("is not a directory") || error.message.contains("symbolic links"), "\(error)")
    } }

    @Test("a sink on a disk file system is refused: values never touch a disk")
    func refusesDisk() throws {
        guard try String(contentsOfFile: "/proc/mounts", encoding: .utf8).split(separator: "\n").contains(where: { $0.split(separator: " ")[1] == "/" && $0.split(separator: " ")[2] != "tmpfs" }) else { return }
        let error = try #require(Self.refusal("""
            [[sink]]
            expirable = "token"
            path = "/etc/expirable-token"
            """))
        #expect(error.line == 9)
        #expect(error.key == "sink[1].path")
        #expect(error.message.hasPrefix("/etc is not on a tmpfs or ramfs (file system type 0x"))
        #expect(error.message.contains("values never touch a disk; use a directory under /run or /dev/shm"))
    }

    @Test("refusals name the sink, its key, its line and the fix", arguments: [
        ("expirable = \"nope\"\npath = \"/dev/shm/x\"", "sink[1].expirable", "names \"nope\", which is not configured; expected one of: family, token"),
        ("expirable = \"family\"\npath = \"/dev/shm/x\"", "sink[1].expirable", "family is a keyed family; name one of its values, as \"family:KEY\""),
        ("expirable = \"token:k\"\npath = \"/dev/shm/x\"", "sink[1].expirable", "token is not a keyed family; name it without a key"),
        ("path = \"/dev/shm/x\"", "sink[1].expirable", "is missing"),
        ("expirable = \"token\"", "sink[1].path", "is missing or not a file path"),
        ("expirable = \"token\"\npath = \"DIR/no/such/dir/x\"", "sink[1].path", "DIR/no/such/dir is not a directory"),
        ("expirable = \"token\"\npath = \"DIR/d\"", "sink[1].path", "DIR/d is a directory; name the file to write"),
        ("expirable = \"token\"\npath = \"/dev/shm/x\"\nowner = \"no-such-user-here\"", "sink[1].owner", "no user \"no-such-user-here\" on this machine"),
        ("expirable = \"token\"\npath = \"/dev/shm/x\"\ngroup = \"no-such-group-here\"", "sink[1].group", "no group \"no-such-group-here\" on this machine"),
        ("expirable = \"token\"\npath = \"/dev/shm/x\"\nmode = \"rw\"", "sink[1].mode", "expected an octal file mode string such as \"0640\""),
        ("expirable = \"token\"\npath = \"/dev/shm/x\"\nuser = \"root\"", "sink[1].user", "unknown key in [[sink]]; expected one of: expirable, group, mode, owner, path"),
        ("expirable = \"token\"\npath = \"/dev/shm/x\"\n[[sink]]\nexpirable = \"token\"\npath = \"/dev/shm/x\"", "sink[2].path", "is also the path of the sink on line 8"),
    ])
    func refusals(sink: String, key: String, message: String) throws { try Self.withDirectory { dir in
        let sink = sink.replacingOccurrences(of: "/dev/shm/x", with: dir + "/x").replacingOccurrences(of: "DIR", with: dir)
        let error = try #require(Self.refusal("[[sink]]\n" + sink))
        #expect(error.key == key)
        #expect(error.message.contains(message.replacingOccurrences(of: "DIR", with: dir)), "\(error)")
        #expect(error.line != nil && error.line! >= 8, "\(error)")
        #expect("\(error)".hasPrefix(Self.file + ":"))
    } }

    @Test("sink written as a table rather than an array of tables is refused")
    func notAnArray() throws {
        let error = try #require(Self.refusal("[sink]\nexpirable = \"token\"\n"))
        #expect(error.key == "sink")
        #expect(error.message.contains("expected an array of tables, written [[sink]]"))
    }
}
