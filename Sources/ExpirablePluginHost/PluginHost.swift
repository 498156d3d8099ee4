import ExpirableConfig
import ExpirableCore
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// Loads the plugins a configuration names and makes one fetcher per expirable. Knows nothing of sockets.
public final class PluginHost: Sendable {
    private let instances: [any PluginCalls]
    private let byName: [String: any PluginCalls]

    /// The engine's view of the configured expirables, each with its plugin instance as fetcher.
    public let definitions: [ExpirableDefinition]

    /// Resolves, checks, loads and handshakes every plugin `configuration` names, and creates one instance per
    /// expirable. Throws the first refusal, naming the file and the reason. Plugin calls' timeouts and helpers'
    /// restart backoff are measured on `clock`, the engine's.
    public init(
        configuration: Configuration, clock: any EngineClock = SystemClock(), logger: Logger = Logger(label: "expirable.plugins")
    ) throws(PluginError) {
        var instances: [any PluginCalls] = []
        var definitions: [ExpirableDefinition] = []
        // Every refusal names the configuration file and the line of the key behind it.
        func located(_ path: [String], _ error: PluginError) -> PluginError {
            PluginError(configuration.refusal(path, error.message).description)
        }
        let account: (uid: UInt32?, gid: UInt32?)?
        do throws(PluginError) {
            account = try PluginHost.account(configuration.server.pluginAccount)
        } catch {
            throw located(["server", configuration.server.pluginAccount?.user != nil ? "plugin_user" : "plugin_group"], error)
        }
        if geteuid() == 0, account == nil, configuration.expirables.contains(where: { $0.isolation == .process }) {
            logger.warning("plugin helpers run as root; set plugin_user in [server] to run them as an unprivileged user")
        }
        do throws(PluginError) {
            for expirable in configuration.expirables {
                let path: String
                do throws(PluginError) {
                    path = try PluginPath.resolve(expirable.plugin, in: configuration.server.pluginDir)
                } catch {
                    throw located(["expirable", expirable.name, "plugin"], PluginError("expirable.\(expirable.name): \(error.message)"))
                }
                let instance: any PluginCalls
                do throws(PluginError) {
                    switch expirable.isolation {
                    case .process:
                        // The daemon only checks the path: loading runs the plugin's code, which is the helper's job.
                        let limits = HelperLimits(
                            maxMemory: expirable.maxMemory,
                            maxCPUSeconds: expirable.maxCPU.map { Int(($0.milliseconds + 999) / 1000) },
                            uid: account?.uid, gid: account?.gid
                        )
                        instance = try IsolatedInstance(
                            expirable: expirable.name, path: path, params: expirable.params, timeout: expirable.timeout,
                            limits: limits, clock: clock, logger: logger
                        )
                    case .inline:
                        let library: PluginLibrary
                        do throws(PluginError) {
                            library = try PluginLibrary.open(path)
                        } catch {
                            throw PluginError("expirable.\(expirable.name): \(error.message)")
                        }
                        instance = try PluginInstance(
                            expirable: expirable.name, params: expirable.params, library: library,
                            timeout: expirable.timeout, clock: clock, logger: logger
                        )
                    }
                } catch {
                    // Params a plugin refused point at [expirable.NAME.params]; anything else at its plugin key.
                    let key = error.message.contains("refused its params") ? "params" : "plugin"
                    throw located(["expirable", expirable.name, key], error)
                }
                instances.append(instance)
                definitions.append(ExpirableDefinition(
                    name: expirable.name, scope: expirable.scope, refresh: expirable.refresh, keyed: expirable.keyed, fetcher: instance
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

    /// The ids helpers switch to. Switching needs root; a daemon that is not root may name only its own user
    /// and group (then nothing changes), and is refused otherwise rather than running plugins as itself.
    private static func account(_ account: Configuration.PluginAccount?) throws(PluginError) -> (uid: UInt32?, gid: UInt32?)? {
        guard let account else { return nil }
        if geteuid() == 0 { return (account.uid, account.gid) }
        let names = [account.user.map { "plugin_user = \"\($0)\"" }, "plugin_group = \"\(account.group)\""].compactMap { $0 }
        guard (account.uid ?? geteuid()) == geteuid(), account.gid == getegid() else {
            throw PluginError("server: \(names.joined(separator: ", ")) needs the daemon to run as root to switch its plugin helpers to them, but it runs as uid \(geteuid()), gid \(getegid()); start expirabled as root or remove plugin_user and plugin_group")
        }
        return nil
    }

    /// Makes helpers run `path` (an `expirabled`) instead of this executable, for a test runner that holds a
    /// `PluginHost` itself: the runner cannot act as a helper.
    @_spi(Testing) public static func useHelperExecutable(_ path: String) {
        HelperProcess.executable.withLock { $0 = path }
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
