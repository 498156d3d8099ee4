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
        #expect(try daemon.redis("CLEAR", "tenant_token:acme") == "OK")
        #expect(try daemon.redis("TTL", "tenant_token:acme") == "-2")
        #expect(try daemon.redis("GET", "tenant_token:acme") == "key=acme state=s", "the key's own state went to its next call")
        #expect(try daemon.redis("CLEAR", "tenant_token") == "OK")
        #expect(try daemon.redis("TTL", "tenant_token:globex") == "-2")
        // A third key evicts the least recently read of the two (max_keys = 2).
        #expect(try daemon.redis("GET", "tenant_token:initech") == "key=initech state=")
        #expect(try daemon.redis("INFO", "tenant_token").contains("evictions:1"))
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
}
