import ArgumentParser
import ExpirableClient
import ExpirableConfig
import ExpirablePluginHost
import ExpirableTLS
import Logging

struct CheckConfig: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-config",
        abstract: "Validate a configuration file and load its plugins, without serving.",
        discussion: "Runs every check the daemon runs at start: the TOML, every key, the plugin files' paths, owners and modes, their ABI versions and their params (expirable_create), and for a cluster the CA, certificate and key (the key must match, the certificate must name the node). Prints a summary, or the first error on stderr with exit status 78 (EX_CONFIG). With --socket, also says whether a daemon answers there."
    )

    @Argument(help: "The configuration file.") var file: String
    @OptionGroup var connection: Connection

    func run() async throws {
        let configuration: Configuration
        let host: PluginHost
        var warnings: [String] = []
        do {
            configuration = try Configuration.load(path: file)
            host = try PluginHost(configuration: configuration, logger: Logger(label: "expirablectl", factory: { _ in SwiftLogNoOpLogHandler() }))
            if let cluster = configuration.cluster {
                warnings = try TLSContext(node: cluster.node, caPath: cluster.ca, certificatePath: cluster.cert, keyPath: cluster.key).warnings
            }
        } catch {
            printError("expirablectl: \(error)")
            throw ExitCode(ExitStatus.badConfiguration.rawValue)
        }
        host.shutdown()
        let names = configuration.expirables.map(\.name)
        printOut("\(file): ok: \(names.count) expirable\(names.count == 1 ? "" : "s")\(names.isEmpty ? "" : " (" + names.joined(separator: ", ") + ")"), plugins loaded from \(configuration.server.pluginDir)")
        if let cluster = configuration.cluster {
            printOut("cluster: node \(cluster.node), listening on \(cluster.listen), \(cluster.peers.count) peer\(cluster.peers.count == 1 ? "" : "s"), certificate and key ok")
        }
        for warning in warnings { printError("expirablectl: warning: \(warning)") }
        if (try? await connection.client.ping()) != nil {
            printOut("a daemon is running on \(connection.socket); restart it to apply this configuration")
        }
    }
}
