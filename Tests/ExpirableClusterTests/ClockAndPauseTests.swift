import ExpirableTestSupport
import Foundation
import Testing

/// Real nodes whose clocks disagree (§4.15) and owners paused with SIGSTOP (§4.13, §4.17).
@Suite("Cluster time and pauses")
struct ClockAndPauseTests {
    static let fiveMinutes = 5 * 60 * 1000

    /// `field` of `node`'s line in `viewer`'s CLUSTER reply.
    static func field(_ field: String, of node: String, on viewer: DaemonProcess) -> String? {
        let text = (try? viewer.redis("CLUSTER")) ?? ""
        let line = text.split(whereSeparator: \.isNewline).first { $0.hasPrefix("node:\(node)\t") }
        return line?.split(separator: "\t").first { $0.hasPrefix("\(field):") }.map { String($0.dropFirst(field.count + 1)) }
    }

    @Test("§4.15: in a partition a node 5 minutes ahead fetches, the other side clears a second later; healed, the clear wins; offsets are shown and the skew reported")
    func skewedFetchLosesToLaterClear() throws {
        // inline: the plugin reads the node's skewed clock too, as it would on a machine whose clock is off.
        let expirables: (String) -> String = { node in
            "[expirable.token]\nplugin = \"counter\"\nisolation = \"inline\"\n[expirable.token.params]\nprefix = \"\(node)-\"\ncount_file = \"DIR/calls\"\n"
        }
        let cluster = try TestCluster(expirables: expirables, proxied: true, arguments: ["node-c": ["--wall-clock-offset", "\(Self.fiveMinutes)"]])
        defer { cluster.remove() }
        // node-c measures its peers 5 minutes behind it and corrects its clock by that; they see it ahead.
        #expect(TestCluster.eventually {
            guard let correction = Self.field("clock_offset_ms", of: "node-c", on: cluster["node-c"]).flatMap(Int.init) else { return false }
            return abs(correction + Self.fiveMinutes) < 200
        })
        #expect(Self.field("clock_error", of: "node-c", on: cluster["node-c"])?.contains("ms ahead of cluster time") == true)
        #expect(TestCluster.eventually { Self.field("clock_error", of: "node-c", on: cluster["node-a"])?.contains("ms ahead of cluster time") == true })
        #expect(Self.field("clock_error", of: "node-b", on: cluster["node-a"]) == nil)
        #expect(try cluster["node-a"].redis("INFO").contains("clock_offset_errors:1"))
        #expect(try cluster["node-a"].ctl("cluster").stdout.contains("ERROR: clock "))

        cluster.partition(["node-c"])
        #expect(TestCluster.eventually { cluster.live("node-c") == ["node-c"] && cluster.live("node-a") == ["node-a", "node-b"] })
        #expect(try cluster["node-c"].redis("GET", "token") == "node-c-1")
        usleep(1_000_000)
        #expect(try cluster["node-a"].redis("CLEAR", "token") == "OK")
        cluster.heal()
        try cluster.waitUntilLinked()
        // The clear was made a second after the fetch, so it is newer, whatever node-c's clock said: it reaches
        // node-c once relinked. Had the fetch won, node-c would keep its value (valid for a minute) and never show -2.
        let cleared = try TestCluster.eventually { try cluster.names.allSatisfy { try cluster[$0].redis("TTL", "token") == "-2" } }
        #expect(cleared, "\(cluster.names.map { "\($0) holds \((try? cluster[$0].redis("GET", "token")) ?? "?")" })")
    }

    /// A lazy counter whose plugin calls have `timeout` (so a forward's deadline is that plus 2 s).
    static func lazy(timeout: String = "10s") -> (String) -> String {
        { node in
            "[expirable.token]\nplugin = \"counter\"\ntimeout = \"\(timeout)\"\n[expirable.token.params]\nprefix = \"\(node)-\"\nttl_ms = 60000\ncount_file = \"DIR/calls\"\n"
        }
    }

    /// GETs `token` on `node` in the background; the reply does not matter (the owner is paused).
    static func getInBackground(_ node: DaemonProcess) -> Thread {
        let thread = Thread { _ = try? node.redis("GET", "token") }
        thread.start()
        return thread
    }

    /// The text of a bulk-string reply read from a `RawConnection`; any other reply as it came.
    static func bulk(_ reply: String) -> String {
        let lines = reply.components(separatedBy: "\r\n")
        return lines.count >= 2 && lines[0].hasPrefix("$") && lines[0] != "$-1" ? lines[1] : reply
    }

    /// The value of the `key:value` line `key` in an INFO reply.
    static func infoField(_ key: String, in info: String) -> String? {
        info.components(separatedBy: "\r\n").first { $0.hasPrefix("\(key):") }.map { String($0.dropFirst(key.count + 1)) }
    }

    @Test("§4.13: a fetch forwarded to an owner that is then paused past its deadline is dropped on SIGCONT without a plugin call")
    func forwardPastDeadlineDropped() throws {
        let cluster = try TestCluster(2, expirables: Self.lazy(timeout: "500ms"))
        defer { cluster.remove() }
        let owner = try cluster.owner(on: "node-a")
        let asker = cluster.names.first { $0 != owner }!
        let pid = try #require(cluster[owner].process).pid
        // Connected before the pause, so the GET reaches the asker the moment the owner stops, with no process to
        // start on the way: it must be forwarded before the asker takes the silent owner for dead (0.9 s).
        let get = try RawConnection(cluster[asker].socket)
        let probe = try RawConnection(cluster[asker].socket)
        kill(pid, SIGSTOP)
        let stoppedAt = Date()
        defer { kill(pid, SIGCONT) }
        get.send(RawConnection.command("GET", "token"))
        // The asker's flight is under way while it still names the paused node the owner: it was forwarded there.
        var info = ""
        let underWay = TestCluster.eventually {
            info = probe.roundTrip(RawConnection.command("INFO", "token"), expecting: 1)
            return Self.infoField("fetching", in: info) == "yes"
        }
        #expect(underWay && Self.infoField("owner", in: info) == owner, "the GET was not forwarded to the paused owner: \(info)")
        // The forward's deadline is 2.5 s; the owner stays paused for 3.5 s.
        Thread.sleep(until: stoppedAt.addingTimeInterval(3.5))
        kill(pid, SIGCONT)
        try cluster.waitUntilLinked()
        #expect(TestCluster.eventually { cluster[owner].log.contains("dropped a forwarded fetch without calling the plugin") }, "\(cluster[asker].log)")
        #expect(cluster[owner].count("calls") == 0, "the paused owner called its plugin for a forward past its deadline")
        withExtendedLifetime(get) {}
    }

    @Test("§4.17: an owner paused while others GET and take over makes no second call on SIGCONT within the value's lifetime")
    func pausedOwnerMakesNoStaleCall() throws {
        let cluster = try TestCluster(3, expirables: Self.lazy())
        defer { cluster.remove() }
        let owner = try cluster.owner(on: "node-a")
        let others = cluster.names.filter { $0 != owner }
        let pid = try #require(cluster[owner].process).pid
        kill(pid, SIGSTOP)
        defer { kill(pid, SIGCONT) }
        // Forwarded to the paused owner while the others still see it alive: they queue in its socket.
        let waiting = others.map { Self.getInBackground(cluster[$0]) }
        _ = waiting
        // The others take it for dead and take over: one call by the next owner.
        #expect(TestCluster.eventually { others.allSatisfy { cluster.live($0) == Set(others) } })
        #expect(try TestCluster.eventually { try others.allSatisfy { try cluster[$0].redis("GET", "token").hasPrefix("node-") } })
        let value = try cluster[others[0]].redis("GET", "token")
        #expect(cluster.totalCalls() == 1)
        usleep(1_000_000)
        kill(pid, SIGCONT)
        try cluster.waitUntilLinked()
        usleep(1_000_000)
        #expect(cluster[owner].count("calls") == 0, "the resumed owner called its plugin for a stale forward: \(cluster.calls())")
        #expect(cluster.totalCalls() == 1)
        #expect(try TestCluster.eventually { try cluster.names.allSatisfy { try cluster[$0].redis("GET", "token") == value } })
    }

    @Test("§4.17: a GET sent to an owner while it was paused, after the next owner fetched, is answered on SIGCONT with the cluster's value, without a call")
    func localGetOnPausedOwnerMakesNoCall() throws {
        let cluster = try TestCluster(3, expirables: Self.lazy())
        defer { cluster.remove() }
        let owner = try cluster.owner(on: "node-a")
        let others = cluster.names.filter { $0 != owner }
        let pid = try #require(cluster[owner].process).pid
        kill(pid, SIGSTOP)
        defer { kill(pid, SIGCONT) }
        // The others take the owner for dead; the next owner fetches, once.
        #expect(TestCluster.eventually { others.allSatisfy { cluster.live($0) == Set(others) } })
        let value = try cluster[others[0]].redis("GET", "token")
        #expect(value.hasPrefix("node-") && !value.hasPrefix("\(owner)-"), "\(value)")
        // A client of the paused owner asks meanwhile: its GET waits in the owner's socket. Connecting (into the
        // listening socket's backlog) and writing both complete while the owner is stopped, so the GET is there
        // before SIGCONT, however slowly this machine runs.
        let client = try RawConnection(cluster[owner].socket)
        client.setReceiveTimeout(seconds: 30)
        client.send(RawConnection.command("GET", "token"))
        kill(pid, SIGCONT)
        let reply = client.receive(replies: 1)
        #expect(!reply.isEmpty, "no answer within 30 s of SIGCONT")
        let answer = Self.bulk(reply)
        try cluster.waitUntilLinked()
        #expect(answer == value, "the resumed owner answered \(answer), the cluster holds \(value)")
        #expect(cluster[owner].count("calls") == 0, "the resumed owner called its plugin for a value its peers had fetched: \(cluster.calls())")
        #expect(try TestCluster.eventually { try cluster.names.allSatisfy { try cluster[$0].redis("GET", "token") == value } })
    }

    @Test("§4.7, §4.17: the late result of a call an owner made across a pause does not replace the newer value the next owner fetched meanwhile")
    func lateResultAcrossPauseLoses() throws {
        // A call of 4 s (the recorder logs its start and its end): the owner is stopped in the middle of it, and its
        // helper finishes while the owner is stopped.
        let cluster = try TestCluster(3, expirables: { _ in
            "[expirable.token]\nplugin = \"recorder\"\ntimeout = \"10s\"\n[expirable.token.params]\nlog = \"DIR/rec.log\"\nsleep_ms = \"4000\"\nttl_ms = \"60000\"\n"
        }, testPlugins: ["recorder"])
        defer { cluster.remove() }
        let owner = try cluster.owner(on: "node-a")
        let others = cluster.names.filter { $0 != owner }
        let pid = try #require(cluster[owner].process).pid
        let started = { (node: String) in cluster[node].lines("rec.log") >= 1 }
        let ended = { (node: String) in
            ((try? String(contentsOfFile: cluster[node].directory.appending("rec.log"), encoding: .utf8)) ?? "").split(separator: "\n").contains { $0.hasPrefix("end ") }
        }
        // Forwarded to the owner, whose plugin starts its call; the owner stops 300 ms into it.
        let asked = Self.getInBackground(cluster[others[0]])
        #expect(TestCluster.eventually { started(owner) })
        usleep(300_000)
        kill(pid, SIGSTOP)
        defer { kill(pid, SIGCONT) }
        try #require(!ended(owner), "the owner's call ended before the owner was stopped")
        // The others take it for dead and the next owner fetches: the newest value.
        #expect(TestCluster.eventually { others.allSatisfy { cluster.live($0) == Set(others) } })
        let newest = try cluster[others[1]].redis("GET", "token")
        #expect(newest.hasPrefix("rec-") && started(others[0]) != started(others[1]), "\(newest)")
        #expect(TestCluster.eventually(seconds: 30) { asked.isFinished })
        // The owner's helper has answered while the owner was stopped.
        #expect(TestCluster.eventually(seconds: 30) { ended(owner) })
        usleep(200_000)
        kill(pid, SIGCONT)
        try cluster.waitUntilLinked()
        usleep(1_000_000)
        for name in cluster.names {
            #expect(try cluster[name].redis("GET", "token") == newest, "\(name) serves the older value of the call made across the pause")
        }
    }

    @Test("§4.17: an eager refresh due while its owner was paused is not made by it on SIGCONT once the next owner has refreshed")
    func pausedOwnerSkipsStaleRefresh() throws {
        // Refreshed 8 s after each call (a lifetime of 20 s, 12 s before expiry): seconds of slack for the pause to
        // begin before the owner's refresh is due, and for the count below to be taken before the refresh of the
        // next owner's value is due (made by the original owner, owner again once relinked).
        let eager = counters(ttlMillis: 20000, refresh: "refresh = \"eager\"\nbefore_expiry = \"12s\"")
        let cluster = try TestCluster(3, expirables: eager)
        defer { cluster.remove() }
        _ = try cluster["node-a"].redis("GET", "token")
        let owner = try cluster.owner(on: "node-a")
        let others = cluster.names.filter { $0 != owner }
        #expect(try TestCluster.eventually { try others.allSatisfy { try cluster[$0].redis("TTL", "token") != "-2" } })
        let pid = try #require(cluster[owner].process).pid
        // Paused from before its refresh is due until the next owner has made it.
        let probe = try RawConnection(cluster[owner].socket)
        let info = probe.roundTrip(RawConnection.command("INFO", "token"), expecting: 1)
        kill(pid, SIGSTOP)
        defer { kill(pid, SIGCONT) }
        let dueIn = Self.infoField("next_refresh_in_ms", in: info).flatMap(Int.init)
        try #require(dueIn.map { $0 > 500 } == true, "the owner's refresh was not still ahead when it was paused: \(info)")
        // When the next owner's call is first seen, and the last time it was not: the call came after that.
        var notYet = Date()
        #expect(TestCluster.eventually(seconds: 20) {
            let now = Date()
            if others.contains(where: { cluster[$0].count("calls") >= 1 }) { return true }
            notYet = now
            return false
        })
        let callsBefore = cluster[owner].count("calls")
        usleep(500_000)
        kill(pid, SIGCONT)
        try cluster.waitUntilLinked()
        // The old owner's timer, due during the pause, makes no call: 1.2 s to show one. The next owner's value is
        // refreshed 8 s after its call, so the count is taken well before that (and the test gives up if this
        // machine ran too slowly for that).
        Thread.sleep(until: min(Date().addingTimeInterval(1.2), notYet.addingTimeInterval(6.5)))
        try #require(Date() < notYet.addingTimeInterval(7.5), "relinked too late to tell a stale refresh from the new value's own")
        #expect(cluster[owner].count("calls") == callsBefore, "calls per node: \(cluster.calls()); \(owner)'s log ends: \(cluster[owner].log.split(separator: "\n").filter { !$0.contains(" debug ") }.suffix(12).joined(separator: "\n"))")
    }
}
