import ArgumentParser
import ExpirableClient
import ExpirableConfig
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

    /// Validity is counted in whole days from 1 to 100 years: 0 makes a certificate that expires as it is made,
    /// and OpenSSL writes dates past the year 9999 that it cannot read back.
    static func check(days: Int) throws {
        guard (1...36500).contains(days) else { throw ValidationError("--days must be from 1 to 36500 (100 years), got \(days)") }
    }

    /// Refuses a --dir that does not exist, naming the fix, before OpenSSL reports it in its own words.
    static func checkDirectory(_ dir: String, writing file: String) throws(TLSError) {
        var status = stat()
        if stat(dir, &status) != 0 {
            throw TLSError("cannot create \(dir)/\(file): the directory \(dir) does not exist; create it (mkdir -p \(dir)) or give --dir an existing one")
        }
        guard status.st_mode & S_IFMT == S_IFDIR else {
            throw TLSError("cannot create \(dir)/\(file): \(dir) is not a directory; give --dir a directory")
        }
    }

    struct Authority: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "ca", abstract: "Create a cluster CA: DIR/ca.pem and DIR/ca.key.")
        @Option(help: "Where to write the files (an existing directory).") var dir: String = "."
        @Option(help: "The CA's common name: 1 to 64 characters, no control characters (UTF-8 text).") var name: String = "Expirable cluster CA"
        @Option(parsing: .unconditional, help: "Days of validity, 1 to 36500.") var days: Int = 3650

        func validate() throws {
            try Cert.check(days: days)
            guard !name.isEmpty, name.count <= 64, !name.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
                throw ValidationError("--name must be 1 to 64 characters without control characters, got \(ConfigurationError.quoted(name))")
            }
        }

        func run() throws {
            do {
                try Cert.checkDirectory(dir, writing: "ca.pem")
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
        @Argument(help: ArgumentHelp("The node's name, as in its cluster.node: \(NodeName.rule).", valueName: "name")) var name: String
        @Option(help: "Where ca.pem and ca.key are, and where to write the files.") var dir: String = "."
        @Option(parsing: .unconditional, help: "Days of validity, 1 to 36500.") var days: Int = 825
        @Option(name: .long, help: ArgumentHelp("Start of validity, in days from now (negative: in the past; tests use it for expired certificates).", visibility: .hidden))
        var notBeforeDays: Int = 0

        func validate() throws {
            try Cert.check(days: days)
            guard (-36500...36500).contains(notBeforeDays) else { throw ValidationError("--not-before-days must be from -36500 to 36500, got \(notBeforeDays)") }
            if let problem = NodeName.problem(name) { throw ValidationError(problem) }
        }

        func run() throws {
            do {
                try Cert.checkDirectory(dir, writing: "\(name).pem")
                let authority = dir + "/ca.pem"
                guard access(authority, F_OK) == 0 else {
                    throw TLSError("cannot create \(dir)/\(name).pem: \(authority) does not exist; create the CA first (expirablectl cert ca --dir \(dir)) or give --dir the directory that holds ca.pem and ca.key")
                }
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
