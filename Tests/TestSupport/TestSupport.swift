import Foundation

/// Where things are when tests run from this repository.
public enum TestPaths {
    /// The repository's root.
    public static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    /// The directory holding expirable.h.
    public static let header = repository.appendingPathComponent("Sources/ExpirableABI/include").path
    /// The C sources of the test plugins.
    public static let fixtures = repository.appendingPathComponent("Tests/Fixtures")
    /// Where SwiftPM put the test binary, and with it `expirabled`, `expirablectl` and the plugin products.
    public static let products = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()

    /// A built product (`expirabled`, `libcommand.so`), or an error saying to run `swift build` first.
    public static func product(_ name: String) throws -> URL {
        let url = products.appendingPathComponent(name)
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw TestSupportError("\(url.path) is missing; run `swift build` before `swift test` to build every product")
        }
        return url
    }
}

public struct TestSupportError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A directory under /tmp (short, so Unix socket paths inside it fit), readable by other users, removed by
/// `remove()`.
public struct TemporaryDirectory: Sendable {
    public let url: URL
    public var path: String { url.path }

    public init(_ prefix: String = "expirable") throws {
        url = URL(fileURLWithPath: "/tmp/\(prefix)-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        chmod(url.path, 0o755)
    }

    public func appending(_ name: String) -> String { url.appendingPathComponent(name).path }

    public func remove() {
        try? FileManager.default.removeItem(at: url)
    }
}

/// Compiles Tests/Fixtures/NAME.c into `directory`/libNAME.so (or `as`.so) with plain `cc -shared -fPIC` and
/// expirable.h from `headerDirectory` (this daemon's by default).
@discardableResult
public func compileTestPlugin(_ name: String, into directory: String, as library: String? = nil, headerDirectory: String = TestPaths.header) throws -> String {
    let output = directory + "/lib\(library ?? name).so"
    let result = try runTool("cc", ["-shared", "-fPIC", "-I", headerDirectory, TestPaths.fixtures.appendingPathComponent("\(name).c").path, "-o", output])
    guard result.status == 0 else { throw TestSupportError("cc failed for \(name).c: \(result.stderr)") }
    return output
}

/// Copies a plugin this package ships (built by `swift build`) into `directory`.
public func installShippedPlugin(_ name: String, into directory: String) throws {
    try FileManager.default.copyItem(at: TestPaths.product("lib\(name).so"), to: URL(fileURLWithPath: directory + "/lib\(name).so"))
}

/// What a finished program printed and how it exited.
public struct ToolResult: Sendable {
    public let status: Int32
    public let stdout: String
    public let stderr: String
}

/// Runs `tool` (looked up in PATH) with `arguments`, killed after `seconds` by coreutils `timeout`.
public func runTool(_ tool: String, _ arguments: [String], seconds: Int = 30, environment: [String: String]? = nil) throws -> ToolResult {
    let out = try closeOnExecPair()
    let err = try closeOnExecPair()
    let child: Spawned
    do {
        child = try Spawned(["/usr/bin/timeout", "-k", "2", "\(seconds)", tool] + arguments,
                            stdout: .descriptor(out.write), stderr: .descriptor(err.write), environment: environment)
    } catch {
        for fd in [out.read, out.write, err.read, err.write] { close(fd) }
        throw error
    }
    close(out.write)
    close(err.write)
    var collected: [Int32: [UInt8]] = [out.read: [], err.read: []]
    var open = [out.read, err.read]
    var buffer = [UInt8](repeating: 0, count: 65536)
    while !open.isEmpty {
        var fds = open.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
        if poll(&fds, nfds_t(fds.count), 1000) < 0 && errno != EINTR { break }
        for entry in fds where entry.revents != 0 {
            let n = read(entry.fd, &buffer, buffer.count)
            if n <= 0 {
                open.removeAll { $0 == entry.fd }
            } else {
                collected[entry.fd]! += buffer[0..<n]
            }
        }
    }
    close(out.read)
    close(err.read)
    let status = child.wait()
    return ToolResult(status: status, stdout: String(decoding: collected[out.read]!, as: UTF8.self), stderr: String(decoding: collected[err.read]!, as: UTF8.self))
}

/// The content of the file at `path` once `done` holds for it (nil: the file is absent), polling every 50 ms for
/// up to 20 s; throws naming what the file holds then.
public func fileContent(_ path: String, until done: (String?) -> Bool) async throws -> String? {
    for _ in 0..<400 {
        let text = try? String(contentsOfFile: path, encoding: .utf8)
        if done(text) { return text }
        try await Task.sleep(for: .milliseconds(50))
    }
    throw TestSupportError("\(path) never got there; it holds \((try? String(contentsOfFile: path, encoding: .utf8)) ?? "nothing")")
}

/// Calls `call` (`bind` or `connect`) with the address of the Unix socket at `path`, and returns what it returns.
public func withUnixAddress(_ path: String, _ call: (UnsafePointer<sockaddr>, socklen_t) -> Int32) -> Int32 {
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    withUnsafeMutableBytes(of: &address.sun_path) { raw in
        let bytes = Array(path.utf8.prefix(raw.count - 1))
        raw.copyBytes(from: bytes)
        raw[bytes.count] = 0
    }
    return withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { call($0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    }
}

/// Binds a Unix socket at `path` and closes it without unlinking: a socket file that refuses connections, as a
/// daemon that died leaves it.
public func bindAndClose(_ path: String) throws {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    let bound = withUnixAddress(path) { bind(fd, $0, $1) }
    let error = errno
    close(fd)
    guard bound == 0 else { throw TestSupportError("bind \(path): \(String(cString: strerror(error)))") }
}
