import ExpirableConfig
import ExpirableCore
import Logging

/// Loads the plugins a configuration names and makes one fetcher per expirable. Knows nothing of sockets.
public final class PluginHost: Sendable {
    private let instances: [PluginInstance]

    /// The engine's view of the configured expirables, each with its plugin instance as fetcher.
    public let definitions: [ExpirableDefinition]

    /// Resolves, checks, loads and handshakes every plugin `configuration` names, and creates one instance per
    /// expirable. Throws the first refusal, naming the file and the reason.
    public init(configuration: Configuration, logger: Logger = Logger(label: "expirable.plugins")) throws(PluginError) {
        var instances: [PluginInstance] = []
        var definitions: [ExpirableDefinition] = []
        do throws(PluginError) {
            for expirable in configuration.expirables {
                let path: String
                let library: PluginLibrary
                do throws(PluginError) {
                    path = try PluginPath.resolve(expirable.plugin, in: configuration.server.pluginDir)
                    library = try PluginLibrary.open(path)
                } catch {
                    throw PluginError("expirable.\(expirable.name): \(error.message)")
                }
                let instance = PluginInstance(
                    expirable: expirable.name, params: expirable.params, library: library,
                    timeout: expirable.timeout, logger: logger
                )
                try instance.create()
                instances.append(instance)
                definitions.append(ExpirableDefinition(
                    name: expirable.name, scope: expirable.scope, refresh: expirable.refresh, fetcher: instance
                ))
                logger.info("plugin loaded", metadata: [
                    "expirable": "\(expirable.name)", "plugin": "\(path)",
                    "abi": "\(library.version.major).\(library.version.minor)",
                ])
            }
        } catch {
            for instance in instances { instance.destroy() }
            throw error
        }
        self.instances = instances
        self.definitions = definitions
    }

    /// Frees every plugin instance that has no call running. Call once, when the daemon stops.
    public func shutdown() {
        for instance in instances { instance.destroy() }
    }
}
