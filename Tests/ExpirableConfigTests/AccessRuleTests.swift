import ExpirableConfig
import ExpirableCore
import Glibc
import Testing

/// SPEC §9: `allow` and `[server] admins`, resolved when the file is read; every refusal names file and line.
@Suite("Configuration: access rules")
struct AccessRuleTests {
    static func config(allow: String, admins: String = "") -> String {
        "[server]\n\(admins)\n[expirable.db-token]\nplugin = \"command\"\nallow = \(allow)\n"
    }

    @Test("uid, gid, user, group and exe entries resolve to numbers and real paths, and keep their spelling")
    func resolves() throws {
        let digest = String(repeating: "ab", count: 32)
        let parsed = try Configuration.parse(Self.config(
            allow: "[\"uid:1000\", \"gid:50\", \"user:root\", \"group:root\", \"exe:/bin/sh\", \"exe:/bin/sh sha256:\(digest.uppercased())\"]",
            admins: "admins = [\"user:nobody\"]"
        ), file: "F")
        let rules = try #require(parsed.readers["db-token"])
        #expect(rules.map(\.principal) == [
            .uid(1000), .gid(50), .uid(0), .gid(0),
            .exe(path: realPath("/bin/sh"), sha256: nil),
            .exe(path: realPath("/bin/sh"), sha256: Array(repeating: 0xab, count: 32)),
        ])
        #expect(rules.map(\.spelled)[2] == "user:root")
        #expect(parsed.server.admins?.map(\.spelled) == ["user:nobody"])
        #expect(try Configuration.parse("[expirable.a]\nplugin = \"command\"\n", file: "F").readers.isEmpty)
    }

    @Test("bad entries are refused with file, line, key and the fix", arguments: [
        ("[\"user:no-such-user-xyz\"]", "F:5: expirable.db-token.allow: \"user:no-such-user-xyz\": no user \"no-such-user-xyz\" on this machine; name an existing user (getent passwd) or write uid:N"),
        ("[\"group:no-such-group-xyz\"]", "F:5: expirable.db-token.allow: \"group:no-such-group-xyz\": no group \"no-such-group-xyz\" on this machine; name an existing group (getent group) or write gid:N"),
        ("[\"uid:abc\"]", "F:5: expirable.db-token.allow: \"uid:abc\": expected a decimal uid such as \"uid:1000\""),
        ("[\"pid:1\"]", "F:5: expirable.db-token.allow: \"pid:1\": unknown kind \"pid\"; expected \"uid:1000\", \"gid:50\", \"user:NAME\", \"group:NAME\", \"exe:/ABSOLUTE/PATH\" or \"exe:/ABSOLUTE/PATH sha256:64-HEX-DIGITS\""),
        ("[\"www-data\"]", "F:5: expirable.db-token.allow: \"www-data\" has no kind; expected \"uid:1000\", \"gid:50\", \"user:NAME\", \"group:NAME\", \"exe:/ABSOLUTE/PATH\" or \"exe:/ABSOLUTE/PATH sha256:64-HEX-DIGITS\""),
        ("[\"exe:bin/app\"]", "F:5: expirable.db-token.allow: \"exe:bin/app\": expected an absolute path to an executable, as \"exe:/usr/bin/app\""),
        ("[\"exe:/no/such/app\"]", "F:5: expirable.db-token.allow: \"exe:/no/such/app\": cannot resolve /no/such/app: No such file or directory; an exe rule names an executable that exists, by its path"),
        ("[\"exe:/bin/sh sha256:abc\"]", "F:5: expirable.db-token.allow: \"exe:/bin/sh sha256:abc\": expected sha256: followed by 64 hexadecimal digits (sha256sum PATH prints them)"),
        ("[]", "F:5: expirable.db-token.allow: is empty, which would let no one read; name who may (\"uid:1000\", \"gid:50\", \"user:NAME\", \"group:NAME\", \"exe:/ABSOLUTE/PATH\" or \"exe:/ABSOLUTE/PATH sha256:64-HEX-DIGITS\"), or remove allow to let anyone who can open the socket read"),
        ("\"uid:0\"", "F:5: expirable.db-token.allow: expected an array of strings such as [\"user:www-data\", \"exe:/usr/bin/app\"], got \"uid:0\""),
        ("[1000]", "F:5: expirable.db-token.allow: expected strings such as \"user:www-data\", found an element 1000"),
    ])
    func refused(allow: String, expected: String) {
        do {
            _ = try Configuration.parse(Self.config(allow: allow), file: "F")
            Issue.record("expected a refusal: \(expected)")
        } catch {
            #expect(error.description == expected)
        }
    }

    @Test("[server] admins takes the same entries, and an empty list (root only)")
    func admins() throws {
        #expect(try Configuration.parse("[server]\nadmins = []\n", file: "F").server.admins == [])
        do {
            _ = try Configuration.parse("[server]\n\nadmins = [\"user:no-such-user-xyz\"]\n", file: "F")
            Issue.record("expected a refusal")
        } catch {
            #expect(error.description.hasPrefix("F:3: server.admins: \"user:no-such-user-xyz\": no user"))
        }
    }

    private func realPath(_ path: String) -> String {
        guard let real = realpath(path, nil) else { return path }
        defer { free(real) }
        return String(cString: real)
    }
}
