import ArgumentParser
import ExpirableClient
import ExpirableTLS
import Foundation

struct ClusterStatus: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cluster",
        abstract: "List the cluster's members: state, address, certificate name, time since last heard, TLS version, clock offset.",
        discussion: "A peer is alive when it is linked both ways over mutual TLS and was heard from within three heartbeats. CLOCK is a peer's clock offset from this node as measured from heartbeats (+: ahead), and for this node the correction from its wall clock to cluster time, by which versions are stamped; a clock further than max_clock_offset from cluster time is an ERROR under NOTE. Configuration differences between nodes and the last error reaching a dead peer are shown under NOTE too."
    )
    @Flag(help: "Print the members as a JSON array, one object per member with the daemon's fields (node, state, address, certificate, last_heard_ms, tls, clock_offset_ms, rtt_ms, config, error); what is unknown or does not apply is null.")
    var json = false
    @OptionGroup var connection: Connection

    func run() async throws {
        try await reporting {
            let members = try await connection.client.cluster()
            if json {
                try JSONOutput.print(members.map(JSONOutput.clusterMember))
                return
            }
            var rows = [["NODE", "STATE", "ADDRESS", "CERTIFICATE", "LAST HEARD", "TLS", "CLOCK", "NOTE"]]
            for member in members {
                let heard = member["last_heard_ms"].flatMap { Int($0) }.map { "\($0)ms ago" } ?? "-"
                let clock = member["clock_offset_ms"].flatMap { Int($0) }.map { "\($0 > 0 ? "+" : "")\($0)ms" } ?? "-"
                let notes = [member["clock_error"].map { "ERROR: \($0)" }, member["config"] ?? member["error"]].compactMap { $0 }
                rows.append([
                    member["node"] ?? "?", member["state"] ?? "?", member["address"] ?? "-", member["certificate"] ?? "-",
                    heard, member["tls"] ?? "-", clock, notes.joined(separator: "; "),
                ])
            }
            printTable(rows)
        }
    }
}

struct Cert: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create the cluster's certificate authority and the nodes' certificates (OpenSSL; P-256, SHA-256).",
        discussion: """
            expirablectl cert ca --dir /etc/expirable            → ca.pem, ca.key (0600)
            expirablectl cert node node-a --dir /etc/expirable   → node-a.pem, node-a.key (0600), signed by ca.pem/ca.key
            Copy ca.pem and each node's own certificate and key to that node; keep ca.key off the nodes if you can.
            """,
        subcommands: [Authority.self, Node.self]
    )

    struct Authority: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "ca", abstract: "Create a cluster CA: DIR/ca.pem and DIR/ca.key.")
        @Option(help: "Where to write the files.") var dir: String = "."
        @Option(help: "The CA's common name.") var name: String = "Expirable cluster CA"
        @Option(help: "Days of validity.") var days: Int = 3650

        func run() throws {
            do {
                try Certificates.makeAuthority(name: name, days: days, certificatePath: dir + "/ca.pem", keyPath: dir + "/ca.key")
            } catch {
                printError("expirablectl: \(error)")
                throw ExitCode(ExitStatus.cannotCreate.rawValue)
            }
            printOut("wrote \(dir)/ca.pem and \(dir)/ca.key (mode 0600)")
        }
    }

    struct Node: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a node certificate: DIR/NAME.pem and DIR/NAME.key, signed by DIR/ca.pem and DIR/ca.key.")
        @Argument(help: "The node's name, as in its cluster.node.") var name: String
        @Option(help: "Where ca.pem and ca.key are, and where to write the files.") var dir: String = "."
        @Option(help: "Days of validity.") var days: Int = 825
        @Option(name: .long, help: ArgumentHelp("Start of validity, in days from now (negative: in the past; tests use it for expired certificates).", visibility: .hidden))
        var notBeforeDays: Int = 0

        func run() throws {
            do {
                try Certificates.makeNode(name, authorityCertificatePath: dir + "/ca.pem", authorityKeyPath: dir + "/ca.key", days: days,
                                          notBeforeDays: notBeforeDays, certificatePath: dir + "/\(name).pem", keyPath: dir + "/\(name).key")
            } catch {
                printError("expirablectl: \(error)")
                throw ExitCode(ExitStatus.cannotCreate.rawValue)
            }
            printOut("wrote \(dir)/\(name).pem and \(dir)/\(name).key (mode 0600)")
        }
    }
}
