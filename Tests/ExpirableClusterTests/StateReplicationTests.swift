import ExpirableTestSupport
import Foundation
import Testing

/// SPEC §3.20 and §4.10 with real nodes: a plugin's state travels to the peers, so the next owner continues from
/// it after the owner dies.
@Suite("Cluster: plugin state follows the value to the next owner")
struct StateReplicationTests {
    @Test("the owner's call sets a state; after kill -9 of the owner the next owner's call receives it")
    func nextOwnerContinues() throws {
        let cluster = try TestCluster(2, expirables: { _ in "[expirable.rt]\nplugin = \"stateful\"\n" }, testPlugins: ["stateful"])
        defer { cluster.remove() }
        let owner = try cluster.owner(of: "rt", on: "node-a")
        let survivor = try #require(cluster.names.first { $0 != owner })
        #expect(try cluster[owner].redis("GET", "rt") == "key= state=")
        #expect(try TestCluster.eventually { try cluster[survivor].redis("INFO", "rt").contains("plugin_state:yes") }, "the state reached the peer")
        #expect(try cluster[owner].redis("CLEAR", "rt") == "OK")
        #expect(try TestCluster.eventually { try cluster[survivor].redis("TTL", "rt") == "-2" })
        cluster[owner].kill9()
        #expect(TestCluster.eventually { cluster.live(survivor) == [survivor] })
        #expect(try cluster[survivor].redis("GET", "rt") == "key= state=s", "the next owner continued from the state its peer set")
    }
}
