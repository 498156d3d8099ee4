import ExpirableConfig
import ExpirableCore
import ExpirablePluginHost
import Foundation

/// A temporary plugin_dir holding test plugins compiled with plain `cc -shared -fPIC` against expirable.h,
/// plus copies of the plugins this package ships. Removed by `remove()`.
struct PluginFixture {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let header = repository.appendingPathComponent("Sources/ExpirableABI/include").path
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")
    /// Where SwiftPM put this test binary and the `.dynamic` plugin products built with it.
    static let products = URL(fileURLWithPath: CommandLine.arguments[0].hasPrefix("/") ? CommandLine.arguments[0] : ProcessInfo.processInfo.arguments[0])
        .resolvingSymlinksInPath().deletingLastPathComponent()

    let root: URL
    let pluginDir: URL

    init() throws {
        root = FileManager.default.temporaryDirectory.appendingPathComponent("expirable-plugins-\(UUID().uuidString)")
        pluginDir = root.appendingPathComponent("plugins")
        try FileManager.default.createDirectory(at: pluginDir, withIntermediateDirectories: true)
        chmod(root.path, 0o755)
        chmod(pluginDir.path, 0o755)
    }

    func remove() {
        try? FileManager.default.removeItem(at: root)
    }

    /// Compiles Fixtures/NAME.c to plugin_dir/libNAME.so with nothing but cc and expirable.h.
    @discardableResult
    func compile(_ name: String) throws -> String {
        let output = pluginDir.appendingPathComponent("lib\(name).so").path
        try run("/usr/bin/env", ["cc", "-shared", "-fPIC", "-I", Self.header, Self.fixtures.appendingPathComponent("\(name).c").path, "-o", output])
        return output
    }

    /// Copies a plugin this package ships (built by `swift build`) into plugin_dir.
    func install(shipped name: String) throws {
        let source = Self.products.appendingPathComponent("lib\(name).so")
        guard FileManager.default.fileExists(atPath: source.path) else {
            throw FixtureError("\(source.path) is missing; run `swift build` before `swift test` to build the plugin products")
        }
        try FileManager.default.copyItem(at: source, to: pluginDir.appendingPathComponent("lib\(name).so"))
    }

    func path(_ name: String) -> String { root.appendingPathComponent(name).path }

    /// A configuration with `plugin_dir` set to this fixture's directory and the given expirable tables.
    func configuration(_ expirables: String) throws -> Configuration {
        try Configuration.parse("[server]\nplugin_dir = \"\(pluginDir.path)\"\n\n" + expirables, file: root.appendingPathComponent("expirable.toml").path)
    }

    /// Loads the plugins of `expirables` and returns an engine over them, or throws the host's refusal.
    func engine(_ expirables: String) throws -> (Engine, PluginHost) {
        let host = try PluginHost(configuration: configuration(expirables))
        return (Engine(expirables: host.definitions), host)
    }

    /// The refusal message for `expirables`, or nil if they load.
    func refusal(_ expirables: String) throws -> String? {
        let configuration = try configuration(expirables)
        do {
            _ = try PluginHost(configuration: configuration)
            return nil
        } catch {
            return error.message
        }
    }

    private func run(_ tool: String, _ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = arguments
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw FixtureError("\(arguments.joined(separator: " ")) failed") }
    }
}

struct FixtureError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

extension Fetched {
    var text: String { String(decoding: value.bytes, as: UTF8.self) }
}

/// The fetch's error, or nil if it succeeded.
func fetchError(_ engine: Engine, _ name: String) async -> ExpirableError? {
    do throws(ExpirableError) {
        _ = try await engine.fetch(name)
        return nil
    } catch {
        return error
    }
}
