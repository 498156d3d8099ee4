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
}
