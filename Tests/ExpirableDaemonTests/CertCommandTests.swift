import ExpirableTestSupport
import Foundation
import Testing

/// `expirablectl cert`: what it refuses (and how it says so) before OpenSSL gets a chance to write something
/// unusable, and that what it writes reads back as written.
@Suite("expirablectl cert: names, days and directories")
struct CertCommandTests {
    static var ctl: String { get throws { try TestPaths.product("expirablectl").path } }

    @Test("--days outside 1 to 36500 is refused as a usage error (64), for the CA and for a node, writing nothing")
    func daysBounds() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        #expect(try runTool(Self.ctl, ["cert", "ca", "--dir", directory.path]).status == 0)
        for days in ["0", "-5", "99999999", "36501"] {
            for command in [["cert", "ca"], ["cert", "node", "n1"]] {
                let result = try runTool(Self.ctl, command + ["--dir", directory.appending(command.count == 2 ? "elsewhere" : ""), "--days=\(days)"])
                #expect(result.status == 64, "\(command) --days=\(days): \(result.stderr)")
                #expect(result.stderr.contains("--days must be from 1 to 36500 (100 years), got \(days)"), "\(result.stderr)")
            }
        }
        // A negative number as its own argument, as people type it, gets the same reason (not "Missing value").
        for command in [["cert", "ca"], ["cert", "node", "n1"]] {
            let result = try runTool(Self.ctl, command + ["--dir", directory.appending(command.count == 2 ? "elsewhere" : ""), "--days", "-1"])
            #expect(result.status == 64 && result.stderr.contains("--days must be from 1 to 36500 (100 years), got -1"), "\(command) --days -1: \(result.stderr)")
        }
        #expect(!FileManager.default.fileExists(atPath: directory.appending("n1.pem")))
    }

    @Test("a node name must be a DNS-like name: refused with the rule (64), nothing written inside or outside --dir")
    func nodeNames() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let pki = directory.appending("pki")
        try FileManager.default.createDirectory(atPath: pki, withIntermediateDirectories: false)
        #expect(try runTool(Self.ctl, ["cert", "ca", "--dir", pki]).status == 0)
        for name in ["../evil", "a b", "", "ключ", "a/b", "..", ".hidden", "-x", "a..b", "tab\tname", String(repeating: "a", count: 65)] {
            let result = try runTool(Self.ctl, ["cert", "node", "--dir", pki, "--", name])
            #expect(result.status == 64, "\(name.debugDescription): \(result.stderr)")
            #expect(result.stderr.contains("1 to 64 letters, digits, '-', '_' and '.', beginning and ending with a letter or digit, no '..'"), "\(name.debugDescription): \(result.stderr)")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path) == ["pki"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: pki).sorted() == ["ca.key", "ca.pem"])
        let good = try runTool(Self.ctl, ["cert", "node", "node-a.example_1", "--dir", pki])
        #expect(good.status == 0, "\(good.stderr)")
    }

    @Test("a missing --dir or CA is named with the fix, not OpenSSL's text (73)")
    func missingDirectoryAndAuthority() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let missing = directory.appending("missing")
        let ca = try runTool(Self.ctl, ["cert", "ca", "--dir", missing])
        #expect(ca.status == 73)
        #expect(ca.stderr == "expirablectl: cannot create \(missing)/ca.pem: the directory \(missing) does not exist; create it (mkdir -p \(missing)) or give --dir an existing one\n")
        let node = try runTool(Self.ctl, ["cert", "node", "n1", "--dir", directory.path])
        #expect(node.status == 73)
        #expect(node.stderr == "expirablectl: cannot create \(directory.path)/n1.pem: \(directory.path)/ca.pem does not exist; create the CA first (expirablectl cert ca --dir \(directory.path)) or give --dir the directory that holds ca.pem and ca.key\n")
        #expect(!node.stderr.contains("error:"), "no raw OpenSSL text")
    }

    @Test("a CA name outside ASCII is written as UTF-8, read back as given")
    func unicodeAuthorityName() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let result = try runTool(Self.ctl, ["cert", "ca", "--dir", directory.path, "--name", "Кластер CA"])
        #expect(result.status == 0, "\(result.stderr)")
        let subject = try runTool("openssl", ["x509", "-in", directory.appending("ca.pem"), "-noout", "-subject", "-nameopt", "oneline,-esc_msb"])
        #expect(subject.stdout.contains("CN = Кластер CA"), "\(subject.stdout)")
        let empty = try runTool(Self.ctl, ["cert", "ca", "--dir", directory.appending("x"), "--name", ""])
        #expect(empty.status == 64, "\(empty.stderr)")
    }
}
