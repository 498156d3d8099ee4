import ExpirableConfig
import ExpirableCore
import Logging

/// Loads the plugins a configuration names and makes one fetcher per expirable. Knows nothing of sockets.
public final class PluginHost: Sendable {
    private let instances: [any PluginCalls]
    private let byName: [String: any PluginCalls]

    /// The engine's view of the configured expirables, each with its plugin instance as fetcher.
    public let definitions: [ExpirableDefinition]

    /// Resolves, checks, loads and handshakes every plugin `configuration` names, and creates one instance per
    /// expirable. Throws the first refusal, naming the file and the reason.
    public init(configuration: Configuration, logger: Logger = Logger(label: "expirable.plugins")) throws(PluginError) {
        var instances: [any PluginCalls] = []
        var definitions: [ExpirableDefinition] = []
        do throws(PluginError) {
            for expirable in configuration.expirables {
                let path: String
                do throws(PluginError) {
                    path = try PluginPath.resolve(expirable.plugin, in: configuration.server.pluginDir)
                } catch {
                    throw PluginError("expirable.\(expirable.name): \(error.message)")
                }
                let instance: any PluginCalls
                switch expirable.isolation {
                case .process:
                    // The daemon only checks the path: loading runs the plugin's code, which is the helper's job.
                    instance = try IsolatedInstance(
                        expirable: expirable.name, path: path, params: expirable.params, timeout: expirable.timeout, logger: logger
                    )
                case .inline:
                    let library: PluginLibrary
                    do throws(PluginError) {
                        library = try PluginLibrary.open(path)
                    } catch {
                        throw PluginError("expirable.\(expirable.name): \(error.message)")
                    }
                    let inline = PluginInstance(
                        expirable: expirable.name, params: expirable.params, library: library,
                        timeout: expirable.timeout, logger: logger
                    )
                    try inline.create()
                    instance = inline
                }
                instances.append(instance)
                definitions.append(ExpirableDefinition(
                    name: expirable.name, scope: expirable.scope, refresh: expirable.refresh, fetcher: instance
                ))
                logger.info("plugin loaded", metadata: [
                    "expirable": "\(expirable.name)", "plugin": "\(path)", "isolation": "\(expirable.isolation.rawValue)",
                ])
            }
        } catch {
            for instance in instances { instance.destroy() }
            throw error
        }
        self.instances = instances
        self.definitions = definitions
        byName = Dictionary(uniqueKeysWithValues: zip(configuration.expirables.map(\.name), instances))
    }

    /// `key:value` facts about `name`'s plugin for INFO: where it runs and, in a helper, its pid, restarts and
    /// how the last one died. Empty for a name that is not configured.
    public func info(_ name: String) -> [(String, String)] {
        byName[name]?.info ?? []
    }

    /// Frees every plugin instance that has no call running, and ends every helper. Call once, when the daemon stops.
    public func shutdown() {
        for instance in instances { instance.destroy() }
    }
}

/// An expirable's plugin as the host drives it, inline or in a helper process.
protocol PluginCalls: Fetcher {
    /// Frees the plugin instance; called once, when the daemon stops.
    func destroy()
    /// Facts for INFO.
    var info: [(String, String)] { get }
}

extension PluginInstance {
    var info: [(String, String)] { [("isolation", "inline")] }
}
