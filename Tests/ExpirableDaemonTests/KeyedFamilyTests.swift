import ExpirableTestSupport
import Foundation
import Testing

/// SPEC §3.19 through a real daemon and redis-cli: NAME:KEY addressing, the key reaching the plugin (in a helper),
/// LIST showing the family once, INFO with its counts, CLEAR of one key or all.
@Suite("Keyed families through the daemon")
struct KeyedFamilyTests {
    @Test("GET NAME:KEY reaches the plugin with the key; LIST shows NAME:*; INFO counts keys; CLEAR one or all")
    func keyed() throws {
        let daemon = try DaemonProcess(expirables: """
            [expirable.tenant_token]
            plugin = "stateful"
            keyed = true
            max_keys = 2
            key_idle = "1h"
            """, testPlugins: ["stateful"])
        defer { daemon.remove() }
        #expect(try daemon.redis("GET", "tenant_token:acme") == "key=acme state=")
        #expect(try daemon.redis("GET", "tenant_token:globex") == "key=globex state=")
        #expect(try daemon.redis("GET", "tenant_token:acme") == "key=acme state=", "answered from memory")
        #expect(try daemon.redis("LIST") == "tenant_token:*")
        let info = try daemon.redis("INFO", "tenant_token")
        #expect(info.contains("keyed:yes") && info.contains("keys:2") && info.contains("max_keys:2"), "\(info)")
        #expect(try daemon.redis("INFO", "tenant_token:acme").contains("state:valid"))
        #expect(try daemon.redis("GET", "tenant_token").hasPrefix("NOTFOUND tenant_token is a keyed family"))
        // NAME:*, as LIST shows the family, names the family: no member has the key "*".
        #expect(try daemon.redis("GET", "tenant_token:*").hasPrefix("NOTFOUND tenant_token:* has no valid key"))
        #expect(try daemon.redis("INFO", "tenant_token:*") == info)
        #expect(try daemon.redis("EXPLAIN", "tenant_token:*") == daemon.redis("EXPLAIN", "tenant_token"))
        #expect(try daemon.redis("CLEAR", "tenant_token:acme") == "OK")
        #expect(try daemon.redis("TTL", "tenant_token:acme") == "-2")
        #expect(try daemon.redis("GET", "tenant_token:acme") == "key=acme state=s", "the key's own state went to its next call")
        #expect(try daemon.redis("CLEAR", "tenant_token") == "OK")
        #expect(try daemon.redis("TTL", "tenant_token:globex") == "-2")
        // One line for the family, not one a member (a family of 100,000 keys would put every key in the log).
        let cleared = daemon.log.split(separator: "\n").filter { $0.contains("] cleared") }
        #expect(cleared.filter { $0.contains("expirable=tenant_token ") && $0.contains("members=2") }.count == 1, "\(cleared)")
        #expect(!cleared.contains { $0.contains("expirable=tenant_token:globex") }, "\(cleared)")
        // A third key evicts the least recently read of the two (max_keys = 2).
        #expect(try daemon.redis("GET", "tenant_token:initech") == "key=initech state=")
        #expect(try daemon.redis("INFO", "tenant_token").contains("evictions:1"))
    }

    @Test("TTL, PTTL and INFO of a valid key holding nothing (never read, evicted, cleared) answer -2 and empty; the family's name alone and an invalid key get GET's NOTFOUND")
    func keyHoldingNothing() throws {
        let daemon = try DaemonProcess(expirables: """
            [expirable.fam]
            plugin = "stateful"
            keyed = true
            max_keys = 1
            [expirable.fam.params]
            mode = "clear"
            """, testPlugins: ["stateful"])
        defer { daemon.remove() }
        #expect(try daemon.redis("TTL", "fam:never") == "-2")
        #expect(try daemon.redis("PTTL", "fam:never") == "-2")
        #expect(try daemon.redis("EXISTS", "fam:never") == "0")
        let info = try daemon.redis("INFO", "fam:never")
        #expect(info.contains("name:fam:never") && info.contains("state:empty") && info.contains("hits:0"), "\(info)")
        let explained = try daemon.redis("EXPLAIN", "fam:never")
        #expect(explained.contains("name:fam:never") && explained.contains("state:empty")
                && explained.contains("why:nothing is stored: the family holds no member for this key"), "\(explained)")
        #expect(try daemon.redis("GET", "fam:a") == "key=a state=")
        #expect(try daemon.redis("GET", "fam:b") == "key=b state=", "evicts fam:a (max_keys = 1)")
        #expect(try daemon.redis("TTL", "fam:a") == "-2")
        #expect(try daemon.redis("INFO", "fam:a").contains("state:empty"))
        #expect(try daemon.redis("CLEAR", "fam:b") == "OK")
        #expect(try daemon.redis("TTL", "fam:b") == "-2")
        let family = try daemon.redis("GET", "fam")
        #expect(family == "NOTFOUND fam is a keyed family: ask for one of its values as fam:KEY")
        #expect(try daemon.redis("TTL", "fam") == family)
        #expect(try daemon.redis("PTTL", "fam") == family)
        for invalid in ["fam:", "fam:a b"] {
            let refusal = try daemon.redis("GET", invalid)
            #expect(refusal.hasPrefix("NOTFOUND \(invalid) has no valid key"), "\(refusal)")
            #expect(try daemon.redis("TTL", invalid) == refusal)
            #expect(try daemon.redis("PTTL", invalid) == refusal)
        }
        #expect(try daemon.redis("TYPE", "fam") == "none", "no value: GET fam is NOTFOUND")
        #expect(try daemon.redis("TYPE", "fam:never") == "string")
    }

    @Test("CLEAR NAME:KEY and CLEAR NAME drop the members from the family, so INFO, EXPLAIN and status count only the keys held; a member carrying plugin state stays, holding no value")
    func clearDropsMembers() throws {
        let daemon = try DaemonProcess(expirables: """
            [expirable.fam]
            plugin = "stateful"
            keyed = true
            [expirable.fam.params]
            mode = "clear"

            [expirable.eager]
            plugin = "stateful"
            keyed = true
            refresh = "eager"
            before_expiry = "10s"
            [expirable.eager.params]
            mode = "clear"

            [expirable.kept]
            plugin = "stateful"
            keyed = true
            """, testPlugins: ["stateful"])
        defer { daemon.remove() }
        func keys(_ family: String) throws -> String? {
            try daemon.redis("INFO", family).split(whereSeparator: \.isNewline).first { $0.hasPrefix("keys:") }.map { String($0.dropFirst(5)) }
        }
        for family in ["fam", "eager", "kept"] {
            for key in ["a", "b", "c"] { _ = try daemon.redis("GET", "\(family):\(key)") }
            #expect(try keys(family) == "3")
            #expect(try daemon.redis("CLEAR", "\(family):a") == "OK")
        }
        #expect(try keys("fam") == "2", "a compact member")
        #expect(try keys("eager") == "2", "a whole member, its refresh stopped")
        #expect(try keys("kept") == "2", "a member kept for its plugin state holds no value: not a key held")
        #expect(try daemon.redis("GET", "kept:a") == "key=a state=s", "the state went to its next call")
        #expect(try keys("kept") == "3")
        // CLEAR of the whole family: its members stay for their states, but no key is held.
        #expect(try daemon.redis("CLEAR", "kept") == "OK")
        #expect(try keys("kept") == "0")
        #expect(try daemon.redis("EXPLAIN", "kept").contains("\nkeys:0"))
        let explained = try daemon.ctl("explain", "kept").stdout
        #expect(explained.contains("0 keys held"), "\(explained)")
        let status = try daemon.ctl("status").stdout
        #expect(status.contains("keyed, 0 keys"), "\(status)")
        #expect(try daemon.redis("GET", "kept:b") == "key=b state=s", "the state went to its next call")
        for family in ["fam", "eager"] {
            #expect(try daemon.redis("CLEAR", family) == "OK")
            #expect(try keys(family) == "0")
            #expect(try daemon.redis("INFO", "\(family):b").contains("state:empty"))
            #expect(try daemon.redis("GET", "\(family):b") == "key=b state=")
            #expect(try keys(family) == "1")
        }
    }

    @Test("SUBSCRIBE of a keyed family's name alone or of an invalid key is refused with GET's NOTFOUND; a member's new values arrive")
    func subscribeFamily() throws {
        let daemon = try DaemonProcess(expirables: """
            [expirable.fam]
            plugin = "stateful"
            keyed = true
            """, testPlugins: ["stateful"])
        defer { daemon.remove() }
        for name in ["fam", "fam:"] {
            let refusal = try daemon.redis("GET", name)
            #expect(refusal.hasPrefix("NOTFOUND"))
            let connection = try RawConnection(daemon.socket)
            #expect(connection.roundTrip("SUBSCRIBE \(name)\r\n", expecting: 1) == "-\(refusal)\r\n")
            #expect(connection.roundTrip("PING\r\n", expecting: 1) == "+PONG\r\n", "nothing was subscribed")
        }
        let subscriber = try RawConnection(daemon.socket)
        #expect(subscriber.roundTrip("SUBSCRIBE fam:a\r\n", expecting: 1) == "*3\r\n$9\r\nsubscribe\r\n$5\r\nfam:a\r\n:1\r\n")
        #expect(try daemon.redis("GET", "fam:a") == "key=a state=")
        #expect(subscriber.receive(replies: 1) == "*3\r\n$7\r\nmessage\r\n$5\r\nfam:a\r\n$12\r\nkey=a state=\r\n")
    }

    /// A daemon serving the keyed family `fam` through the `stateful` test plugin, which answers "key=KEY state=".
    static func statefulFamily() throws -> DaemonProcess {
        try DaemonProcess(expirables: """
            [expirable.fam]
            plugin = "stateful"
            keyed = true
            [expirable.fam.params]
            mode = "clear"
            """, testPlugins: ["stateful"])
    }

    @Test("SUBSCRIBE takes up to 10,000 names a connection, quickly, in order; one more is refused with a clear error and subscribes nothing")
    func manySubscriptions() throws {
        let daemon = try Self.statefulFamily()
        defer { daemon.remove() }
        func subscribe(_ names: [String]) -> String {
            "*\(names.count + 1)\r\n$9\r\nSUBSCRIBE\r\n" + names.map { "$\($0.utf8.count)\r\n\($0)\r\n" }.joined()
        }
        let subscriber = try RawConnection(daemon.socket)
        subscriber.setReceiveTimeout(seconds: 60)
        for batch in 0..<10 {
            let names = (batch * 1000..<(batch + 1) * 1000).map { "fam:k\($0)" }
            let replies = subscriber.roundTrip(subscribe(names), expecting: names.count)
            #expect(replies.hasSuffix("$\(names.last!.utf8.count)\r\n\(names.last!)\r\n:\((batch + 1) * 1000)\r\n"), "batch \(batch): \(replies.suffix(80))")
        }
        // One new name past the bound (fam:k0 is held already): refused whole, nothing subscribed.
        let refused = subscriber.roundTrip(subscribe(["fam:k0", "fam:extra"]), expecting: 1)
        #expect(refused.hasPrefix("-ERR too many subscriptions: ") && refused.contains("10000") && refused.contains("UNSUBSCRIBE"), "\(refused)")
        #expect(subscriber.roundTrip("PING\r\n", expecting: 1) == "*2\r\n$4\r\npong\r\n$0\r\n\r\n", "still subscribed, in pub/sub mode")
        #expect(subscriber.roundTrip(subscribe(["fam:k0"]), expecting: 1).hasSuffix(":10000\r\n"), "a name held already is no new one")
        #expect(subscriber.roundTrip("UNSUBSCRIBE fam:k0\r\n", expecting: 1).hasSuffix(":9999\r\n"))
        #expect(subscriber.roundTrip(subscribe(["fam:extra"]), expecting: 1).hasSuffix("fam:extra\r\n:10000\r\n"))
        // A GET from another client is answered, and a new value reaches the subscriber.
        #expect(try daemon.redis("GET", "fam:extra") == "key=extra state=")
        #expect(subscriber.receive(replies: 1) == "*3\r\n$7\r\nmessage\r\n$9\r\nfam:extra\r\n$16\r\nkey=extra state=\r\n")
        // UNSUBSCRIBE without names ends them all, in the order subscribed.
        let ended = subscriber.roundTrip("UNSUBSCRIBE\r\n", expecting: 10_000)
        #expect(ended.hasPrefix("*3\r\n$11\r\nunsubscribe\r\n$6\r\nfam:k1\r\n:9999\r\n"), "\(ended.prefix(80))")
        #expect(ended.hasSuffix("$9\r\nfam:extra\r\n:0\r\n"), "\(ended.suffix(80))")
        #expect(subscriber.roundTrip("PING\r\n", expecting: 1) == "+PONG\r\n")
    }

    @Test("CLEAR NAME:*, as LIST shows a keyed family, clears the whole family, as expirablectl clear NAME:* does")
    func clearFamilyAsListed() throws {
        let daemon = try Self.statefulFamily()
        defer { daemon.remove() }
        for key in ["a", "b"] { #expect(try daemon.redis("GET", "fam:\(key)") == "key=\(key) state=") }
        #expect(try daemon.redis("LIST") == "fam:*")
        #expect(try daemon.redis("CLEAR", "fam:*") == "OK")
        #expect(try daemon.redis("TTL", "fam:a") == "-2" && daemon.redis("TTL", "fam:b") == "-2")
        #expect(try daemon.redis("INFO", "fam").contains("keys:0"))
        let cleared = daemon.log.split(separator: "\n").filter { $0.contains("] cleared") }
        #expect(cleared.filter { $0.contains("expirable=fam ") && $0.contains("members=2") }.count == 1, "one line for the family: \(cleared)")
        #expect(try daemon.redis("CLEAR", "nosuch:*").hasPrefix("NOTFOUND no expirable named 'nosuch:*'"))
    }

    @Test("control characters in a name asked for (ESC, NUL, BEL, DEL) are escaped in the NOTFOUND error, as in the log")
    func notFoundEscapes() throws {
        let daemon = try DaemonProcess(expirables: """
            [expirable.fam]
            plugin = "stateful"
            keyed = true
            """, testPlugins: ["stateful"])
        defer { daemon.remove() }
        let connection = try RawConnection(daemon.socket)
        let cases: [([UInt8], String)] = [
            (Array("fam:a\u{1b}[2Jb".utf8), "-NOTFOUND fam:a\\x1b[2Jb has no valid key"),
            (Array("fam:".utf8) + [0] + Array("x".utf8), "-NOTFOUND fam:\\x00x has no valid key"),
            (Array("fam:b\u{7f}".utf8), "-NOTFOUND fam:b\\x7f has no valid key"),
            (Array("nosuch\u{1b}]0;pwned\u{07}".utf8), "-NOTFOUND no expirable named 'nosuch\\x1b]0;pwned\\x07' is configured"),
            (Array("fam:back\\slash\u{1b}".utf8), "-NOTFOUND fam:back\\\\slash\\x1b has no valid key"),
        ]
        for (name, expected) in cases {
            connection.send(Array("*2\r\n$3\r\nGET\r\n$\(name.count)\r\n".utf8) + name + Array("\r\n".utf8))
            let reply = connection.receive(replies: 1)
            #expect(reply.hasPrefix(expected), "\(reply.debugDescription)")
            #expect(!reply.dropLast(2).unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7f }, "\(reply.debugDescription)")
        }
        // The log escapes them too.
        #expect(!daemon.log.unicodeScalars.contains { $0.value == 0x1b || $0.value == 0 || $0.value == 0x07 })
    }

    @Test("pipelined GETs of many keys are each answered with their own key's value, from memory once fetched")
    func pipelinedKeys() throws {
        // mode = "clear": the plugin keeps no state, so the keys are held compact once fetched, and a pipelined
        // batch of them is read ahead (prefetched) before it is answered.
        let daemon = try DaemonProcess(expirables: """
            [expirable.fam]
            plugin = "stateful"
            keyed = true
            max_keys = 1000
            [expirable.fam.params]
            mode = "clear"
            """, testPlugins: ["stateful"])
        defer { daemon.remove() }
        let keys = (0..<300).map { "k\($0)" }
        let batch = keys.map { "*2\r\n$3\r\nGET\r\n$\($0.utf8.count + 4)\r\nfam:\($0)\r\n" }.joined()
        let expected = keys.map { "$\("key=\($0) state=".utf8.count)\r\nkey=\($0) state=\r\n" }.joined()
        let connection = try RawConnection(daemon.socket)
        #expect(connection.roundTrip(batch, expecting: keys.count) == expected, "first batch: one call per key")
        #expect(connection.roundTrip(batch, expecting: keys.count) == expected, "second batch: from memory")
        let info = try daemon.redis("INFO", "fam:k7")
        #expect(info.contains("plugin_calls:1") && info.contains("hits:1") && info.contains("plugin_state:no"), "\(info)")
        #expect(try daemon.redis("INFO", "fam").contains("keys:300"))
    }

    @Test("the command plugin gets the key: {key} in argv elements and $EXPIRABLE_KEY for argv and shell; shell metacharacters in a key run nothing")
    func commandPluginKey() throws {
        let daemon = try DaemonProcess(expirables: """
            [expirable.cmd]
            plugin = "command"
            keyed = true
            [expirable.cmd.params]
            argv = ["printf", "%s|", "{key}", "k={key}.{key}", "%k", "$1"]
            ttl = "1m"
            [expirable.env]
            plugin = "command"
            keyed = true
            [expirable.env.params]
            argv = ["/bin/sh", "-c", 'printf "%s" "$EXPIRABLE_KEY"']
            ttl = "1m"
            [expirable.sh]
            plugin = "command"
            keyed = true
            [expirable.sh.params]
            shell = 'printf "%s" "$EXPIRABLE_KEY"'
            ttl = "1m"
            [expirable.plain]
            plugin = "command"
            [expirable.plain.params]
            shell = 'printf "%s" "${EXPIRABLE_KEY-unset}"'
            ttl = "1m"
            [expirable.bare]
            plugin = "command"
            [expirable.bare.params]
            argv = ["echo", "{key}"]
            ttl = "1m"
            """, testPlugins: [], start: false)
        defer { daemon.remove() }
        // The daemon's own environment has one: a call without a key must not pass it on as if it were a key.
        daemon.environment = ["EXPIRABLE_KEY": "inherited"]
        try daemon.start()
        #expect(try daemon.redis("GET", "cmd:alpha") == "alpha|k=alpha.alpha|%k|$1|")
        #expect(try daemon.redis("GET", "cmd:beta") == "beta|k=beta.beta|%k|$1|")
        #expect(try daemon.redis("GET", "env:alpha") == "alpha")
        #expect(try daemon.redis("GET", "sh:beta") == "beta")
        #expect(try daemon.redis("GET", "plain") == "unset")
        let bare = try daemon.redis("GET", "bare")
        #expect(bare.contains("param 'argv' uses {key}, and this call has no key"), "\(bare)")

        let marks = (1...3).map { daemon.directory.appending("ran\($0)") }
        let key = "k;touch${IFS}\(marks[0]);$(touch${IFS}\(marks[1]))'\"`touch${IFS}\(marks[2])`/../%s\\"
        #expect(key.utf8.count <= 256 && !key.contains(" "))
        #expect(try daemon.redis("GET", "cmd:\(key)") == "\(key)|k=\(key).\(key)|%k|$1|")
        #expect(try daemon.redis("GET", "env:\(key)") == key)
        #expect(try daemon.redis("GET", "sh:\(key)") == key)
        for mark in marks { #expect(!FileManager.default.fileExists(atPath: mark), "the key ran a command: \(mark)") }
    }

    @Test("the command plugin refuses {key} in the program's name: a caller would choose the program")
    func commandPluginKeyInProgram() throws {
        let daemon = try DaemonProcess(expirables: """
            [expirable.cmd]
            plugin = "command"
            keyed = true
            [expirable.cmd.params]
            argv = ["{key}", "x"]
            ttl = "1m"
            """, testPlugins: [], start: false)
        defer { daemon.remove() }
        let check = try daemon.ctl("check-config", daemon.configPath)
        #expect(check.status == 78)
        #expect(check.stderr.contains("command plugin: param 'argv': the program's name \"{key}\" holds {key}"), "\(check.stderr)")
    }

    @Test("the file plugin puts the key into its path with {key}; a key cannot leave the path's directory")
    func filePluginKey() throws {
        let daemon = try DaemonProcess(expirables: """
            [expirable.files]
            plugin = "file"
            keyed = true
            [expirable.files.params]
            path = "DIR/keys/{key}.txt"
            ttl = "1m"
            [expirable.dirs]
            plugin = "file"
            keyed = true
            [expirable.dirs.params]
            path = "DIR/keys/{key}/token"
            ttl = "1m"
            [expirable.dots]
            plugin = "file"
            keyed = true
            [expirable.dots.params]
            path = "DIR/keys/.{key}/token"
            ttl = "1m"
            [expirable.plain]
            plugin = "file"
            [expirable.plain.params]
            path = "DIR/keys/{key}.txt"
            ttl = "1m"
            """, testPlugins: [], shippedPlugins: ["file"], start: false)
        defer { daemon.remove() }
        let keys = daemon.directory.appending("keys")
        try FileManager.default.createDirectory(atPath: keys + "/inner", withIntermediateDirectories: true)
        try "A\n".write(toFile: keys + "/alpha.txt", atomically: true, encoding: .utf8)
        try "B\n".write(toFile: keys + "/beta.txt", atomically: true, encoding: .utf8)
        try "inner\n".write(toFile: keys + "/inner/token", atomically: true, encoding: .utf8)
        try "outside\n".write(toFile: daemon.directory.appending("secret.txt"), atomically: true, encoding: .utf8)
        try "outside\n".write(toFile: daemon.directory.appending("token"), atomically: true, encoding: .utf8)
        try daemon.start()
        #expect(try daemon.redis("GET", "files:alpha") == "A")
        #expect(try daemon.redis("GET", "files:beta") == "B")
        #expect(try daemon.redis("GET", "dirs:inner") == "inner")
        for (name, key) in [("files", "../secret"), ("files", "..%2fsecret/../../secret"), ("dirs", ".."), ("dirs", "."), ("dots", "."), ("files", "/etc/passwd")] {
            let answer = try daemon.redis("GET", "\(name):\(key)")
            #expect(answer.contains("file plugin: the key") && answer.contains("cannot be used in path"), "\(name):\(key) gave \(answer)")
        }
        let plain = try daemon.redis("GET", "plain")
        #expect(plain.contains("param 'path' uses {key}, and this call has no key"), "\(plain)")
    }
}
