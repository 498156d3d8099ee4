import Dispatch
import ExpirableConfig
import ExpirableCore
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Loads the plugins a configuration names and makes one fetcher per expirable. Knows nothing of sockets.
public final class PluginHost: Sendable {
    private struct Loaded {
        /// The expirables as configured, and each one's plugin instance.
        var expirables: [String: Configuration.Expirable] = [:]
        var instances: [String: any PluginCalls] = [:]
        var definitions: [ExpirableDefinition] = []
        /// Helper restarts of the instances reloads retired, by expirable: INFO and the metrics count an
        /// expirable's restarts from the daemon's start, whatever instance it has now.
        var restartsBefore: [String: Int] = [:]
    }
    private let loaded = Mutex(Loaded())
    /// Instances a reload replaced or removed whose call under way has not ended yet, by identity: `shutdown`
    /// ends them too.
    private let retiring = Mutex<[ObjectIdentifier: any PluginCalls]>([:])
    private let clock: any EngineClock
    private let logger: Logger
    /// Whether inline expirables' plugins are loaded in a helper too (a checker's host).
    private let isolatesInline: Bool

    /// The engine's view of the configured expirables, each with its plugin instance as fetcher.
    public var definitions: [ExpirableDefinition] { loaded.withLock { $0.definitions } }

    /// Resolves, checks, loads and handshakes every plugin `configuration` names, and creates one instance per
    /// expirable. Throws the first refusal, naming the file and the reason. Plugin calls' timeouts and helpers'
    /// restart backoff are measured on `clock`, the engine's. With `isolatingInline`, plugins of inline
    /// expirables run in a helper as well: a checker (`expirablectl check-config`) runs no plugin code in its own
    /// process, so a plugin that crashes while loading is a refusal there, not the checker's crash.
    public init(
        configuration: Configuration, clock: any EngineClock = SystemClock(), logger: Logger = Logger(label: "expirable.plugins"),
        isolatingInline: Bool = false
    ) throws(PluginError) {
        self.clock = clock
        self.logger = logger
        self.isolatesInline = isolatingInline
        let account = try PluginHost.account(of: configuration)
        // plugin_dir is checked even when no expirable uses it yet: only a restart changes it, so one that does not
        // exist would otherwise pass check-config and the start, and refuse the first reload that adds an expirable.
        do throws(PluginError) {
            _ = try PluginPath.directory(configuration.server.pluginDir)
        } catch {
            // At plugin_dir's line; a file that leaves it to its default has none, and the first plugin key needing it has one.
            let key = configuration.line(of: ["server", "plugin_dir"]) != nil || configuration.expirables.isEmpty
                ? ["server", "plugin_dir"] : ["expirable", configuration.expirables[0].name, "plugin"]
            throw PluginHost.located(configuration, key, error)
        }
        if geteuid() == 0, account == nil, configuration.expirables.contains(where: { $0.isolation == .process }) {
            logger.warning("plugin helpers run as root; set plugin_user in [server] to run them as an unprivileged user")
        }
        var made = Loaded()
        do throws(PluginError) {
            for expirable in configuration.expirables {
                let instance = try makeInstance(expirable, configuration: configuration, account: account)
                made.expirables[expirable.name] = expirable
                made.instances[expirable.name] = instance
                made.definitions.append(PluginHost.definition(expirable, instance))
            }
        } catch {
            for instance in made.instances.values { instance.destroy() }
            throw error
        }
        loaded.withLock { $0 = made }
    }

    /// What a reload would do to the plugins: new definitions for the engine, the names whose expirable is
    /// exactly as before (their instance, helper and state are kept), the changed names whose value the engine
    /// keeps, and `commit` to call once the engine has switched, which ends the instances no longer used (each once
    /// its call under way has returned).
    /// Nothing changes until `commit`; `abandon` ends the instances made for the reload instead.
    public struct Reload: Sendable {
        public let definitions: [ExpirableDefinition]
        public let unchanged: Set<String>
        /// Changed expirables whose plugin and params are as before, and which are still keyed or still not
        /// (SPEC §10: they keep their value). Their instance is kept too unless `isolation`, `timeout`,
        /// `max_memory` or `max_cpu` changed, which a plugin instance is made with.
        public let keepingValues: Set<String>
        public let commit: @Sendable () -> Void
        public let abandon: @Sendable () -> Void
    }

    /// Prepares the plugins of `configuration` (all or nothing): instances are made for new and changed
    /// expirables and kept for unchanged ones, and for changed ones whose instance would be made the same.
    /// Throws the first refusal, having ended what it made.
    public func prepareReload(_ configuration: Configuration) throws(PluginError) -> Reload {
        let current = loaded.withLock { $0 }
        let account = try PluginHost.account(of: configuration)
        var next = Loaded()
        var fresh: [any PluginCalls] = []
        var unchanged: Set<String> = []
        var keepingValues: Set<String> = []
        var reused: Set<String> = []
        do throws(PluginError) {
            for expirable in configuration.expirables {
                let before = current.expirables[expirable.name]
                let instance: any PluginCalls
                if let before, PluginHost.keepsInstance(before, expirable), let kept = current.instances[expirable.name] {
                    instance = kept
                    reused.insert(expirable.name)
                } else {
                    instance = try makeInstance(expirable, configuration: configuration, account: account)
                    fresh.append(instance)
                }
                if before == expirable, reused.contains(expirable.name) {
                    unchanged.insert(expirable.name)
                } else if let before, PluginHost.keepsValue(before, expirable) {
                    keepingValues.insert(expirable.name)
                }
                next.expirables[expirable.name] = expirable
                next.instances[expirable.name] = instance
                next.definitions.append(PluginHost.definition(expirable, instance))
            }
        } catch {
            for instance in fresh { instance.destroy() }
            throw error
        }
        let retired = current.instances.filter { !reused.contains($0.key) }
        let made = next
        let madeForReload = fresh
        return Reload(
            definitions: next.definitions, unchanged: unchanged, keepingValues: keepingValues,
            commit: { [self] in
                loaded.withLock { l in
                    var before = l.restartsBefore
                    for (name, instance) in retired { before[name, default: 0] += PluginHost.restarts(instance.info) }
                    l = made
                    l.restartsBefore = before
                }
                for (name, instance) in retired {
                    retire(instance, because: made.expirables[name] == nil
                        ? .notFound(explaining: "\(name) was removed by a reload of the configuration while this call waited for its plugin; `expirablectl list` shows the names")
                        : .fetch("the plugin instance of \(name) was replaced by a reload while this call waited for it; fetch again to call the new one"))
                }
            },
            abandon: { for instance in madeForReload { instance.destroy() } }
        )
    }

    /// Ends an instance a reload no longer uses once its call under way, if any, has answered its callers (a
    /// helper is not killed under it); calls waiting behind that one get `reason`.
    private func retire(_ instance: any PluginCalls, because reason: ExpirableError) {
        let id = ObjectIdentifier(instance)
        retiring.withLock { $0[id] = instance }
        instance.retire(reason) { [self] in retiring.withLock { _ = $0.removeValue(forKey: id) } }
    }

    /// Whether a reload keeps the value of an expirable changed from `old` to `new` (SPEC §10): its plugin and
    /// params are as before, and it is still keyed or still not. Scope does not count: on a single node it
    /// changes nothing, and in a cluster a change of it is refused (`Reloader.needsRestart`).
    static func keepsValue(_ old: Configuration.Expirable, _ new: Configuration.Expirable) -> Bool {
        old.plugin == new.plugin && old.params == new.params && (old.keyed == nil) == (new.keyed == nil)
    }

    /// Whether a reload keeps the plugin instance (and helper) of an expirable changed from `old` to `new`: it
    /// keeps the value, and what the instance is made with (where it runs, its limits, the timeout the plugin
    /// is given when created) is as before.
    static func keepsInstance(_ old: Configuration.Expirable, _ new: Configuration.Expirable) -> Bool {
        keepsValue(old, new) && old.isolation == new.isolation && old.timeout == new.timeout
            && old.maxMemory == new.maxMemory && old.maxCPU == new.maxCPU
    }

    /// `error` naming the configuration file and the line of the key at `path` (every refusal does).
    /// The first of `keys` that `message` names as `param 'KEY'`.
    static func namedParam(_ message: String, among keys: Set<String>) -> String? {
        var rest = message[...]
        while let start = rest.firstRange(of: "param '") {
            rest = rest[start.upperBound...]
            guard let end = rest.firstIndex(of: "'") else { return nil }
            if keys.contains(String(rest[..<end])) { return String(rest[..<end]) }
        }
        return nil
    }

    private static func located(_ configuration: Configuration, _ path: [String], _ error: PluginError) -> PluginError {
        PluginError(configuration.refusal(path, error.message).description)
    }

    /// The ids helpers switch to, or a refusal at the line of plugin_user (or plugin_group).
    private static func account(of configuration: Configuration) throws(PluginError) -> (uid: UInt32?, gid: UInt32?)? {
        do throws(PluginError) {
            return try account(configuration.server.pluginAccount)
        } catch {
            throw located(configuration, ["server", configuration.server.pluginAccount?.user != nil ? "plugin_user" : "plugin_group"], error)
        }
    }

    private static func definition(_ expirable: Configuration.Expirable, _ instance: any PluginCalls) -> ExpirableDefinition {
        ExpirableDefinition(name: expirable.name, scope: expirable.scope, refresh: expirable.refresh, keyed: expirable.keyed, fetcher: instance)
    }

    private func makeInstance(_ expirable: Configuration.Expirable, configuration: Configuration, account: (uid: UInt32?, gid: UInt32?)?) throws(PluginError) -> any PluginCalls {
        let directory: String
        do throws(PluginError) {
            directory = try PluginPath.directory(configuration.server.pluginDir)
        } catch {
            // At plugin_dir's line; a file that leaves it to its default has none, and the plugin key needing it has one.
            let key = configuration.line(of: ["server", "plugin_dir"]) != nil ? ["server", "plugin_dir"] : ["expirable", expirable.name, "plugin"]
            throw PluginHost.located(configuration, key, error)
        }
        let path: String
        do throws(PluginError) {
            path = try PluginPath.resolve(expirable.plugin, in: directory)
        } catch {
            throw PluginHost.located(configuration, ["expirable", expirable.name, "plugin"], PluginError("expirable.\(expirable.name): \(error.message)"))
        }
        let instance: any PluginCalls
        do throws(PluginError) {
            switch isolatesInline ? .process : expirable.isolation {
            case .process:
                // The daemon only checks the path: loading runs the plugin's code, which is the helper's job.
                // An inline plugin checked in a helper runs as it would in the daemon: as the daemon's user.
                let account = expirable.isolation == .process ? account : nil
                let limits = HelperLimits(
                    maxMemory: expirable.maxMemory,
                    maxCPUSeconds: expirable.maxCPU.map { Int(($0.milliseconds + 999) / 1000) },
                    uid: account?.uid, gid: account?.gid
                )
                instance = try IsolatedInstance(
                    expirable: expirable.name, path: path, directory: directory, params: expirable.params, timeout: expirable.timeout,
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
            // Params a plugin refused, or too large to hand to its helper, point at the param the plugin names
            // (`param 'KEY'`, as the shipped plugins word it) or else at [expirable.NAME.params]; anything else
            // at its plugin key.
            guard error.message.contains("refused its params") || error.message.contains("its params take") else {
                throw PluginHost.located(configuration, ["expirable", expirable.name, "plugin"], error)
            }
            let named = PluginHost.namedParam(error.message, among: Set(expirable.params.map(\.key)))
            throw PluginHost.located(configuration, ["expirable", expirable.name, "params"] + (named.map { [$0] } ?? []), error)
        }
        logger.info("plugin loaded", metadata: [
            "expirable": "\(expirable.name)", "plugin": "\(path)", "isolation": "\(expirable.isolation.rawValue)",
        ])
        return instance
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
        let family = name.split(separator: ":", maxSplits: 1).first.map(String.init) ?? name
        let (instance, before) = loaded.withLock { l in
            l.instances[name].map { ($0, l.restartsBefore[name] ?? 0) } ?? (l.instances[family], l.restartsBefore[family] ?? 0)
        }
        return (instance?.info ?? []).map { fact in
            fact.0 == "helper_restarts" ? (fact.0, String(PluginHost.restarts([fact]) + before)) : fact
        }
    }

    /// An instance's helper restarts, from its facts.
    private static func restarts(_ info: [(String, String)]) -> Int {
        info.first { $0.0 == "helper_restarts" }.flatMap { Int($0.1) } ?? 0
    }

    /// How long `shutdown` waits for the plugins' `expirable_destroy` calls before it returns without them.
    public static let destroyGrace: Duration = .seconds(5)

    /// Frees every plugin instance that has no call running, and ends every helper, all at once, waiting at most
    /// `grace` for them: an inline `expirable_destroy` that does not return by then is left running on its thread
    /// (and logged, naming its expirable), so a stopping daemon is never held by a plugin. Call once, when the
    /// daemon stops.
    public func shutdown(grace: Duration = PluginHost.destroyGrace) {
        var (instances, expirables) = loaded.withLock { ($0.instances, $0.expirables) }
        for (index, instance) in retiring.withLock({ Array($0.values) }).enumerated() {
            // Under a name of its own: the one it had may be its successor's.
            instances["\(instance.expirable) (retired by a reload, \(index + 1))"] = instance
        }
        let pending = Mutex(Set(instances.keys))
        let group = DispatchGroup()
        for (name, instance) in instances {
            DispatchQueue.global().async(group: group) {
                instance.destroy()
                pending.withLock { _ = $0.remove(name) }
            }
        }
        guard group.wait(timeout: .now() + .nanoseconds(Int(grace.nanoseconds))) == .timedOut else { return }
        for name in pending.withLock({ $0 }).sorted() {
            logger.warning("plugin's expirable_destroy did not return; stopping without it", metadata: [
                "expirable": "\(name)", "plugin": "\(expirables[name]?.plugin ?? "")", "waited_ms": "\(grace.milliseconds)",
            ])
        }
    }
}

/// An expirable's plugin as the host drives it, inline or in a helper process.
protocol PluginCalls: AnyObject, Fetcher {
    /// The expirable it serves.
    var expirable: String { get }
    /// Frees the plugin instance; called once, when the daemon stops (or a retired instance's call must end).
    func destroy()
    /// Frees the plugin instance once a reload no longer uses it, after the call under way has answered its
    /// callers; calls waiting behind that one get `reason`. Returns at once; `ended` runs once it is freed.
    func retire(_ reason: ExpirableError, ended: @escaping @Sendable () -> Void)
    /// Facts for INFO.
    var info: [(String, String)] { get }
}

extension PluginInstance {
    /// Inline, how long the call under way has run; past its timeout, that it is stuck, in words (explain's
    /// "next"): nothing can end it, and no other call starts until it returns.
    var info: [(String, String)] {
        var facts = [("isolation", "inline")]
        guard let running = runningCallMillis else { return facts }
        facts.append(("call_running_ms", String(running)))
        if running >= timeout.milliseconds {
            facts.append(("call_stuck", "a plugin call started \(running / 1000) s ago is still running, past its timeout of \(timeout.milliseconds) ms: no new call can start until it returns, and readers get TIMEOUT at once meanwhile"))
        }
        return facts
    }
}
