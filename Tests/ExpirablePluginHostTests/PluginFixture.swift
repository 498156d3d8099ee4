import ExpirableConfig
import ExpirableCore
@_spi(Testing) import ExpirablePluginHost
import ExpirableTestSupport
import Foundation
import Testing

/// A temporary plugin_dir holding test plugins compiled with plain `cc -shared -fPIC` against expirable.h,
/// plus copies of the plugins this package ships. Removed by `remove()`.
struct PluginFixture {
    static let repository = TestPaths.repository
    static let fixtures = TestPaths.fixtures

    let directory: TemporaryDirectory
    let pluginDir: URL
    var root: URL { directory.url }

    init() throws {
        directory = try TemporaryDirectory("expirable-plugins")
        pluginDir = directory.url.appendingPathComponent("plugins")
        try FileManager.default.createDirectory(at: pluginDir, withIntermediateDirectories: true)
        chmod(pluginDir.path, 0o755)
    }

    func remove() {
        directory.remove()
    }

    /// Compiles Fixtures/NAME.c to plugin_dir/libNAME.so with nothing but cc and expirable.h.
    @discardableResult
    func compile(_ name: String) throws -> String {
        try compileTestPlugin(name, into: pluginDir.path)
    }

    /// Copies a plugin this package ships (built by `swift build`) into plugin_dir.
    func install(shipped name: String) throws {
        try installShippedPlugin(name, into: pluginDir.path)
    }

    func path(_ name: String) -> String { root.appendingPathComponent(name).path }

    /// A configuration with `plugin_dir` set to this fixture's directory and the given expirable tables.
    /// Plugins run inline unless `isolation` says "process" (helpers are then the built `expirabled`: the
    /// test runner cannot be one).
    func configuration(_ expirables: String, isolation: String = "inline") throws -> Configuration {
        try Configuration.parse("[server]\nplugin_dir = \"\(pluginDir.path)\"\nisolation = \"\(isolation)\"\n\n" + expirables, file: root.appendingPathComponent("expirable.toml").path)
    }

    /// Loads the plugins of `expirables` and returns an engine over them on `clock` (shared with the plugin
    /// host), or throws the host's refusal.
    func engine(_ expirables: String, isolation: String = "inline", clock: any EngineClock = SystemClock()) throws -> (Engine, PluginHost) {
        if isolation == "process" { PluginHost.useHelperExecutable(try TestPaths.product("expirabled").path) }
        let host = try PluginHost(configuration: configuration(expirables, isolation: isolation), clock: clock)
        return (Engine(expirables: host.definitions, clock: clock), host)
    }

    /// The refusal message for `expirables`, or nil if they load.
    /// The host's refusal of `expirables`, after the `FILE:LINE: ` it starts with (checked here: every refusal
    /// names the configuration file and the line of the key behind it).
    func refusal(_ expirables: String) throws -> String? {
        let configuration = try configuration(expirables)
        do {
            _ = try PluginHost(configuration: configuration)
            return nil
        } catch {
            let place = try #require(error.message.firstRange(of: ": "), "no file and line in \(error.message)")
            let location = error.message[..<place.lowerBound]
            #expect(location.hasPrefix(configuration.file + ":") && Int(location.dropFirst(configuration.file.count + 1)) != nil,
                    "no file and line in \(error.message)")
            return String(error.message[place.upperBound...])
        }
    }
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
