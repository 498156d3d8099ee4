import ExpirableCore
@testable import ExpirableState
import ExpirableTestSupport
import Foundation
import Testing

/// Plugin states on disk (SPEC §3.20): AES-256-GCM files, written atomically, refused loudly when they do not
/// decrypt, and a key and directory that only the daemon's user can read.
@Suite("Encrypted plugin state files")
struct StateStoreTests {
    /// A state_dir and a 0600 key file in a temporary directory.
    static func store(_ dir: TemporaryDirectory, key: [UInt8] = Array(repeating: 7, count: 32)) throws -> StateStore {
        let keyFile = dir.appending("state.key")
        FileManager.default.createFile(atPath: keyFile, contents: Data(key))
        chmod(keyFile, 0o600)
        return try StateStore(directory: dir.appending("state"), keyFile: keyFile, environment: [:])
    }

    @Test("a keyed member's name of any valid length (a 256-byte key) has a state file whose name the file system takes; each name its own")
    func longNames() throws {
        let dir = try TemporaryDirectory("state")
        defer { dir.remove() }
        let store = try Self.store(dir)
        // Up to 118 bytes: named by their hex. Beyond: by a SHA-256 (the hex, ".state" and ".tmp-PID" must stay
        // within 255 bytes).
        for name in ["f:" + String(repeating: "k", count: 116), "f:" + String(repeating: "k", count: 117), "f:" + String(repeating: "k", count: 256),
                     "family-with-a-long-name:" + String(repeating: "q", count: 256)] {
            try store.save(Secret("state-of-\(name.count)"), for: name)
            #expect(try store.load(name)?.bytes == Array("state-of-\(name.count)".utf8), "\(name.count) bytes")
            let file = URL(fileURLWithPath: store.path(for: name)).lastPathComponent
            #expect(file.utf8.count + ".tmp-4194304".utf8.count <= 255, "\(file)")
            #expect(file.hasPrefix("sha256-") == (name.utf8.count > 118), "\(file)")
        }
        // Names that share their first 200 bytes are told apart.
        let a = "f:" + String(repeating: "k", count: 200) + "a", b = "f:" + String(repeating: "k", count: 200) + "b"
        try store.save(Secret("A"), for: a)
        try store.save(Secret("B"), for: b)
        #expect(try store.load(a)?.bytes == Array("A".utf8) && store.load(b)?.bytes == Array("B".utf8))
    }

    @Test("a state round-trips through its file, which holds neither the state nor the name in clear")
    func roundTrip() throws {
        let dir = try TemporaryDirectory("state")
        defer { dir.remove() }
        let store = try Self.store(dir)
        try store.save(Secret("rt-0123456789-refresh-token"), for: "github:tenant-7")
        #expect(try store.load("github:tenant-7")?.bytes == Array("rt-0123456789-refresh-token".utf8))
        let file = try Data(contentsOf: URL(fileURLWithPath: store.path(for: "github:tenant-7")))
        #expect(!String(decoding: file, as: UTF8.self).contains("rt-0123456789"))
        #expect(!String(decoding: file, as: UTF8.self).contains("tenant-7"))
        var st = stat()
        #expect(stat(store.path(for: "github:tenant-7"), &st) == 0 && st.st_mode & 0o777 == 0o600)
        #expect(try store.load("other") == nil)
        try store.save(nil, for: "github:tenant-7")
        #expect(try store.load("github:tenant-7") == nil)
        // Two saves of the same state differ (a fresh nonce each time).
        try store.save(Secret("same"), for: "x")
        let first = try Data(contentsOf: URL(fileURLWithPath: store.path(for: "x")))
        try store.save(Secret("same"), for: "x")
        #expect(try Data(contentsOf: URL(fileURLWithPath: store.path(for: "x"))) != first)
        #expect(try FileManager.default.contentsOfDirectory(atPath: store.directory).allSatisfy { $0.hasSuffix(".state") }, "no temporary file left")
    }

    @Test("a file that does not decrypt is an error naming it: another key, a damaged byte, or another expirable's file")
    func refusals() throws {
        let dir = try TemporaryDirectory("state")
        defer { dir.remove() }
        let store = try Self.store(dir)
        try store.save(Secret("rt-1"), for: "a")
        try store.save(Secret("rt-2"), for: "b")
        let other = try Self.store(dir, key: Array(repeating: 9, count: 32))
        #expect(throws: StateError.self) { try other.load("a") }
        do {
            _ = try other.load("a")
        } catch {
            #expect(error.message.hasPrefix("\(store.path(for: "a")) does not decrypt with the configured state key"))
        }
        // Swapped files: b's file under a's name does not decrypt (the name is authenticated).
        try FileManager.default.removeItem(atPath: store.path(for: "a"))
        try FileManager.default.copyItem(atPath: store.path(for: "b"), toPath: store.path(for: "a"))
        #expect(throws: StateError.self) { try store.load("a") }
        // One flipped byte.
        var bytes = try Data(contentsOf: URL(fileURLWithPath: store.path(for: "b")))
        bytes[bytes.count - 20] ^= 1
        try bytes.write(to: URL(fileURLWithPath: store.path(for: "b")))
        #expect(throws: StateError.self) { try store.load("b") }
        FileManager.default.createFile(atPath: store.path(for: "c"), contents: Data("not a state".utf8))
        do {
            _ = try store.load("c")
            Issue.record("a file without the header loaded")
        } catch {
            #expect(error.message.contains("is not an Expirable state file"))
        }
    }

    @Test("a state file cut short after its header is reported as truncated, not as a file without the header")
    func truncated() throws {
        let dir = try TemporaryDirectory("state")
        defer { dir.remove() }
        let store = try Self.store(dir)
        try store.save(Secret("rt-0123456789"), for: "rt")
        let file = store.path(for: "rt")
        let whole = try Data(contentsOf: URL(fileURLWithPath: file))
        for length in [20, 9, 5, 0] {
            try whole.prefix(length).write(to: URL(fileURLWithPath: file))
            do {
                _ = try store.load("rt")
                Issue.record("a file of \(length) bytes loaded")
            } catch {
                #expect(error.message == "\(file) is truncated (\(length) bytes; a state file holds at least 37: the EXPSTATE1 header, a 12-byte nonce, the 16-byte tag): restore it from a backup, or remove it to start rt without its state; then restart the daemon (state files are read at start)", "\(error.message)")
            }
        }
        // The decrypt error says a restart is needed after the fix.
        try whole.write(to: URL(fileURLWithPath: file))
        let other = try Self.store(dir, key: Array(repeating: 9, count: 32))
        do {
            _ = try other.load("rt")
            Issue.record("loaded with another key")
        } catch {
            #expect(error.message.hasSuffix("restore the key, or remove the file to start rt without its state; then restart the daemon (state files are read at start)"), "\(error.message)")
        }
    }

    @Test("a FIFO where a state file goes is refused at once, naming it, instead of blocking the read")
    func fifoAsStateFile() throws {
        let dir = try TemporaryDirectory("state")
        defer { dir.remove() }
        let store = try Self.store(dir)
        #expect(mkfifo(store.path(for: "rt"), 0o600) == 0)
        do {
            _ = try store.load("rt")
            Issue.record("a FIFO loaded as a state")
        } catch {
            #expect(error.message == "\(store.path(for: "rt")) is a FIFO, not a regular file: it cannot be a state file; remove it and restart the daemon", "\(error.message)")
        }
        // A symbolic link is not followed, and says so.
        #expect(symlink(dir.appending("state.key"), store.path(for: "ln")) == 0)
        do {
            _ = try store.load("ln")
            Issue.record("a symbolic link loaded as a state")
        } catch {
            #expect(error.message == "\(store.path(for: "ln")) is a symbolic link, which state_dir never follows: it cannot be a state file; remove it and restart the daemon", "\(error.message)")
        }
    }

    @Test("a FIFO at the temporary file's name fails the write at once, naming it; a stale temporary file of ours is replaced")
    func fifoAsTemporaryFile() throws {
        let dir = try TemporaryDirectory("state")
        defer { dir.remove() }
        let store = try Self.store(dir)
        let temporary = store.path(for: "rt") + ".tmp-\(getpid())"
        #expect(mkfifo(temporary, 0o600) == 0)
        do {
            try store.save(Secret("rt-1"), for: "rt")
            Issue.record("a state was written through a FIFO")
        } catch {
            #expect(error.message == "cannot write \(temporary): it exists and is a FIFO, not a temporary state file; remove it", "\(error.message)")
        }
        #expect(try store.load("rt") == nil)
        unlink(temporary)
        // A regular file left by an earlier write (a crash between create and rename) is ours to replace.
        FileManager.default.createFile(atPath: temporary, contents: Data("stale".utf8))
        try store.save(Secret("rt-2"), for: "rt")
        #expect(try store.load("rt")?.bytes == Array("rt-2".utf8))
        #expect(!FileManager.default.fileExists(atPath: temporary))
    }

    @Test("a FIFO as the state key file is refused at once, naming it")
    func fifoAsKeyFile() throws {
        let dir = try TemporaryDirectory("state")
        defer { dir.remove() }
        let keyFile = dir.appending("state.key")
        #expect(mkfifo(keyFile, 0o600) == 0)
        for environment in [[:], ["CREDENTIALS_DIRECTORY": dir.path]] {
            let file = environment.isEmpty ? keyFile : dir.appending("expirable-state-key")
            if !environment.isEmpty { #expect(mkfifo(file, 0o600) == 0) }
            do {
                _ = try StateStore(directory: dir.appending("s"), keyFile: environment.isEmpty ? keyFile : nil, environment: environment)
                Issue.record("a FIFO was accepted as the state key")
            } catch {
                #expect(error.message == "the state key \(file) is a FIFO, not a regular file: write 32 random bytes to a file: head -c 32 /dev/urandom > FILE; chmod 600 FILE", "\(error.message)")
            }
            #expect(throws: StateError.self) { try StateStore.check(directory: dir.appending("s"), keyFile: environment.isEmpty ? keyFile : nil, environment: environment) }
        }
    }

    @Test("the key must be 32 bytes readable only by the daemon's user; the directory too; or a systemd credential")
    func keyAndDirectory() throws {
        let dir = try TemporaryDirectory("state")
        defer { dir.remove() }
        let keyFile = dir.appending("state.key")
        FileManager.default.createFile(atPath: keyFile, contents: Data(Array(repeating: 1, count: 32)))
        chmod(keyFile, 0o644)
        #expect(throws: StateError.self) { try StateStore(directory: dir.appending("s1"), keyFile: keyFile, environment: [:]) }
        FileManager.default.createFile(atPath: keyFile, contents: Data(Array(repeating: 1, count: 31)))
        chmod(keyFile, 0o600)
        do {
            _ = try StateStore(directory: dir.appending("s2"), keyFile: keyFile, environment: [:])
            Issue.record("a 31-byte key was accepted")
        } catch {
            #expect(error.message.contains("holds 31 bytes; it must be exactly 32 random bytes"))
        }
        do {
            _ = try StateStore(directory: dir.appending("s3"), keyFile: nil, environment: [:])
            Issue.record("no key at all was accepted")
        } catch {
            #expect(error.message.hasPrefix("state_dir is set but there is no key"))
        }
        // The systemd credential.
        let credentials = dir.appending("creds")
        try FileManager.default.createDirectory(atPath: credentials, withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: credentials + "/expirable-state-key", contents: Data(Array(repeating: 3, count: 32)))
        let store = try StateStore(directory: dir.appending("s4"), keyFile: nil, environment: ["CREDENTIALS_DIRECTORY": credentials])
        try store.save(Secret("x"), for: "n")
        #expect(try store.load("n")?.bytes == Array("x".utf8))
        var st = stat()
        #expect(stat(dir.appending("s4"), &st) == 0 && st.st_mode & 0o777 == 0o700, "state_dir is created 0700")
        chmod(dir.appending("s4"), 0o755)
        #expect(throws: StateError.self) { try StateStore(directory: dir.appending("s4"), keyFile: nil, environment: ["CREDENTIALS_DIRECTORY": credentials]) }
    }

    @Test("a key file its group may read is refused, saying group and others must have no access", arguments: [0o640, 0o604, 0o620])
    func keyReadableByGroup(mode: Int) throws {
        let dir = try TemporaryDirectory("state")
        defer { dir.remove() }
        let keyFile = dir.appending("state.key")
        FileManager.default.createFile(atPath: keyFile, contents: Data(Array(repeating: 1, count: 32)))
        chmod(keyFile, mode_t(mode))
        do {
            _ = try StateStore(directory: dir.appending("s"), keyFile: keyFile, environment: [:])
            Issue.record("a key of mode \(String(mode, radix: 8)) was accepted")
        } catch {
            #expect(error.message == "the state key \(keyFile) has mode \(String(mode, radix: 8)); its group and others must have no access to it: chmod 600 \(keyFile)")
        }
    }
}
