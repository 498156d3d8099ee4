import ExpirableTestSupport
import Foundation
import Testing

/// SPEC §3.20 with a real daemon: a plugin's state goes from one call to the next, survives a restart through the
/// encrypted state_dir, and a state file that does not decrypt stops that expirable's calls with a clear error.
@Suite("Plugin state across calls and restarts")
struct PluginStateTests {
    /// A daemon with the `stateful` fixture (its value shows the state it received; it appends "+" to it) and
    /// a state_dir with a 0600 key.
    static func start(_ directory: TemporaryDirectory, isolation: String = "process") throws -> DaemonProcess {
        let keyFile = directory.appending("state.key")
        if !FileManager.default.fileExists(atPath: keyFile) {
            FileManager.default.createFile(atPath: keyFile, contents: Data((0..<32).map { UInt8($0) }))
            chmod(keyFile, 0o600)
        }
        return try DaemonProcess(expirables: """
            [expirable.rt]
            plugin = "stateful"
            """, server: "isolation = \"\(isolation)\"\nstate_dir = \"\(directory.appending("state"))\"\nstate_key_file = \"\(keyFile)\"",
            testPlugins: ["stateful"])
    }

    @Test("each call gets the state the previous one set, and a restart resumes from the saved state", arguments: ["process", "inline"])
    func resumes(isolation: String) throws {
        let directory = try TemporaryDirectory("state")
        defer { directory.remove() }
        let first = try Self.start(directory, isolation: isolation)
        #expect(try first.redis("GET", "rt") == "key= state=")
        #expect(try first.redis("CLEAR", "rt") == "OK")
        #expect(try first.redis("GET", "rt") == "key= state=s")
        #expect(try first.redis("CLEAR", "rt") == "OK")
        #expect(try first.redis("GET", "rt") == "key= state=s+")
        #expect(try first.redis("INFO", "rt").contains("plugin_state:yes"))
        first.remove()
        // The state file holds the state encrypted, readable by the daemon's user alone.
        let files = try FileManager.default.contentsOfDirectory(atPath: directory.appending("state"))
        #expect(files.count == 1 && files[0].hasSuffix(".state"), "\(files)")
        let file = directory.appending("state/\(files[0])")
        #expect(!(try Data(contentsOf: URL(fileURLWithPath: file))).contains(Data("s++".utf8)))
        var st = stat()
        #expect(stat(file, &st) == 0 && st.st_mode & 0o777 == 0o600)

        let second = try Self.start(directory, isolation: isolation)
        defer { second.remove() }
        #expect(try second.redis("GET", "rt") == "key= state=s++", "the restarted daemon continued from the saved state")
        #expect(!second.log.contains("s++"), "states are never logged")
    }

    @Test("a state file that does not decrypt stops its expirable's calls with an error naming the file")
    func undecryptable() throws {
        let directory = try TemporaryDirectory("state")
        defer { directory.remove() }
        let first = try Self.start(directory)
        #expect(try first.redis("GET", "rt") == "key= state=")
        first.remove()
        let name = try #require(try FileManager.default.contentsOfDirectory(atPath: directory.appending("state")).first)
        let file = directory.appending("state/\(name)")
        var bytes = try Data(contentsOf: URL(fileURLWithPath: file))
        bytes[bytes.count - 1] ^= 0xff
        try bytes.write(to: URL(fileURLWithPath: file))
        let second = try Self.start(directory)
        defer { second.remove() }
        let answer = try second.redis("GET", "rt")
        #expect(answer.hasPrefix("FETCH rt: its saved plugin state cannot be used: \(file) does not decrypt with the configured state key"), "\(answer)")
        #expect(second.log.contains("a plugin state file cannot be used"))
        // The plugin was not called: the refusal is not counted or timed as a call, and explain says so.
        let info = try second.redis("INFO", "rt")
        #expect(info.contains("plugin_calls:0"), "\(info)")
        let explained = try second.redis("EXPLAIN", "rt")
        #expect(explained.contains("without a plugin call"), "\(explained)")
        #expect(!explained.split(whereSeparator: \.isNewline).contains { $0.hasPrefix("call:") }, "\(explained)")
        #expect(try second.redis("PING") == "PONG")
    }

    @Test("a FIFO where a state file goes: that expirable reports it and the daemon serves, instead of hanging at start")
    func fifoStateFile() throws {
        let directory = try TemporaryDirectory("state")
        defer { directory.remove() }
        let state = directory.appending("state")
        try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: true)
        chmod(state, 0o700)
        // "rt" hex-encoded.
        let file = state + "/7274.state"
        #expect(mkfifo(file, 0o600) == 0)
        let daemon = try Self.start(directory)
        defer { daemon.remove() }
        let answer = try daemon.redis("GET", "rt")
        #expect(answer == "FETCH rt: its saved plugin state cannot be used: \(file) is a FIFO, not a regular file: it cannot be a state file; remove it", "\(answer)")
        #expect(daemon.log.contains("a plugin state file cannot be used"))
        #expect(try daemon.redis("PING") == "PONG")
    }
}
