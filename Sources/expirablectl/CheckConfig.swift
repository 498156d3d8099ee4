import ArgumentParser
import ExpirableClient
import ExpirableConfig
import ExpirablePluginHost
import ExpirableServer
import ExpirableState
import ExpirableTLS
import Logging
#if canImport(Glibc)
import Glibc
#endif

struct CheckConfig: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-config",
        abstract: "Validate a configuration file and load its plugins, without serving.",
        discussion: "Runs every check the daemon runs at start: the TOML, every key, the plugin files' paths, owners and modes, their ABI versions and their params (expirable_create, in a helper process for every plugin, inline ones too, so a plugin that crashes is reported, never fatal to the check), the socket path (its directory must exist or be creatable; one this user may not write is a warning, since the daemon's user may differ), the listen addresses of [metrics] and [cluster] (an IP address must be this machine's), state_dir and its key, and for a cluster the CA, certificate and key (the key must match; the certificate must verify against the CA, within its dates, and name the node) and the peers' addresses (none at listen's, no two alike). Every refusal names the file and the line of the key behind it. Prints a summary, or the first error on stderr with exit status 78 (EX_CONFIG). Then says whether a daemon answers on the file's own server.socket, and if one does, that `expirablectl reload` applies the file to it, except the keys only a restart applies (the socket, the connection limits and timeouts, admins, plugin_dir, plugin_user, plugin_group, state_dir, state_key_file, [metrics], the cluster, sinks)."
    )

    @Argument(help: "The configuration file.") var file: String
    @OptionGroup var connection: Connection

    func run() async throws {
        let configuration: Configuration
        let host: PluginHost
        var warnings: [String] = []
        do {
            configuration = try Configuration.load(path: file)
        } catch {
            printError("expirablectl: \(error)")
            throw ExitCode(ExitStatus.badConfiguration.rawValue)
        }
        // What the daemon would refuse at start, in its order, each naming the file and the key's line.
        do {
            // Whether the socket's directory is writable is the daemon's user's to judge: this check may be run by
            // another (an admin), so for it that is a warning, and the daemon refuses at start if it must.
            if let problem = ExpirableServer.socketPathProblem(configuration.server.socket, checkingAccess: false) {
                throw configuration.refusal(["server", "socket"], problem)
            }
            if let directory = ExpirableServer.socketDirectoryNotWritable(configuration.server.socket) {
                warnings.append("the socket's directory \(directory) is not writable by this user (uid \(geteuid())), who runs this check; the daemon's user must be able to write it, or the daemon refuses to start")
            }
            if let refusal = configuration.unassignedListenAddress() { throw refusal }
            // Every plugin in a helper, inline ones too: a plugin that aborts while loading must not take the checker with it.
            host = try PluginHost(
                configuration: configuration, logger: Logger(label: "expirablectl", factory: { _ in SwiftLogNoOpLogHandler() }), isolatingInline: true
            )
        } catch {
            printError("expirablectl: \(error)")
            throw ExitCode(ExitStatus.badConfiguration.rawValue)
        }
        do {
            if let cluster = configuration.cluster {
                do throws(TLSError) {
                    warnings += try TLSContext(node: cluster.node, caPath: cluster.ca, certificatePath: cluster.cert, keyPath: cluster.key).warnings
                } catch {
                    throw configuration.refusal(["cluster"] + (error.key.map { [$0] } ?? []), error.message)
                }
            }
            if let directory = configuration.server.stateDir {
                do throws(StateError) {
                    try StateStore.check(directory: directory, keyFile: configuration.server.stateKeyFile)
                } catch {
                    let key = error.aboutKey && configuration.server.stateKeyFile != nil ? "state_key_file" : "state_dir"
                    throw configuration.refusal(["server", key], "[server] \(key): \(error.message)")
                }
            }
            if let refusal = configuration.digestRuleRefusal(openSSLProblem: TLSError.openSSLProblem) { throw refusal }
        } catch {
            host.shutdown()
            printError("expirablectl: \(error)")
            throw ExitCode(ExitStatus.badConfiguration.rawValue)
        }
        host.shutdown()
        let names = configuration.expirables.map(\.name)
        printOut("\(file): ok: \(names.count) expirable\(names.count == 1 ? "" : "s")\(names.isEmpty ? "" : " (" + names.joined(separator: ", ") + ")"), plugins loaded from \(configuration.server.pluginDir)")
        if let cluster = configuration.cluster {
            printOut("cluster: node \(cluster.node), listening on \(cluster.listen), \(cluster.peers.count) peer\(cluster.peers.count == 1 ? "" : "s"), certificate and key ok")
        }
        for sink in configuration.sinks {
            printOut("sink: \(sink.expirable) to \(sink.path), mode 0\(String(sink.mode, radix: 8)), on a tmpfs")
        }
        for warning in warnings { printError("expirablectl: warning: \(warning)") }
        // The daemon this file configures is the one on its own socket, whatever --socket says.
        let socket = configuration.server.socket
        if (try? await ExpirableClient(socketPath: socket, timeout: connection.timeout.duration).ping()) != nil {
            printOut("a daemon is running on \(socket) (this file's server.socket): `expirablectl --socket \(socket) reload` applies this configuration if that daemon reads this file; changes to what only a restart applies (socket, socket_mode, the connection limits and timeouts, admins, plugin_dir, plugin_user, plugin_group, state_dir, state_key_file, [metrics], [cluster], [[sink]]) need a restart, and the reload refuses them, naming them")
        }
    }
}
