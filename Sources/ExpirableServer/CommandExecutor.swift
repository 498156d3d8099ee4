import ExpirableCore
import ExpirableRESP
import Logging
import NIOCore

/// Runs one connection's commands against the engine and writes their replies; knows nothing of channels.
/// The connection handler owns the I/O and acts on the outcome: go on, close, wait for the engine, or run a
/// transaction's queued requests. One per connection, used on its event loop only. (A class, so calling it per
/// request costs no copy of its fields.)
final class CommandExecutor {
    let state: ServerState
    /// This connection, as the fan-out of new values knows it.
    let subscriber: Subscriber
    /// Who is on the other end, once SO_PEERCRED has been read.
    var peer: PeerCredentials? {
        didSet { access.connected(peer, engine: state.engine) }
    }
    /// What `peer` may read and whether it may administer.
    let access: ConnectionAccess
    /// This connection's requests by command.
    let requests = RequestCounts()

    init(state: ServerState, subscriber: Subscriber) {
        self.state = state
        self.subscriber = subscriber
        access = state.newAccess()
        state.requestCounts.opened(requests)
    }

    /// Pipelined GETs of keyed names gathered for `readAhead(_:)`; kept to reuse its storage. Used on the
    /// connection's event loop only, so Swift's run-time exclusivity check (a cost on every GET) is left out.
    @exclusivity(unchecked) private var readAheadPlan = ReadAhead()

    /// Before a batch of pipelined requests runs: the GETs of keyed names among its first 64 requests have
    /// their slots, then their blocks, prefetched, so that their cache misses overlap (`Engine.readAhead`).
    func readAhead(_ buffer: ByteBuffer) {
        readAheadSlots(buffer)
        readAheadBlocks()
    }

    /// The first half of `readAhead(_:)`: the slots of the batch's keyed GETs start coming in.
    func readAheadSlots(_ buffer: ByteBuffer) {
        let engine = state.engine
        readAheadPlan.reset()
        buffer.withUnsafeReadableBytes { bytes in
            RESPParser.leadingGETNames(bytes, limit: 64) { engine.readAhead(utf8: $0, into: &readAheadPlan) }
        }
    }

    /// The batch read ahead has run: its families are no longer held.
    func readAheadDone() {
        if readAheadPlan.count > 0 { readAheadPlan.reset() }
    }

    /// The second half: the slots gathered have come in meanwhile; their blocks start coming in.
    func readAheadBlocks() {
        state.engine.readAhead(&readAheadPlan)
    }

    /// The largest transaction: queued requests beyond this many bytes make EXEC fail.
    var maxTransactionBytes: Int { state.options.maxRequestBytes * 16 }

    enum Outcome {
        /// The reply is written; go on with the next request.
        case answered
        /// The reply is written; close once it is out.
        case closeAfterReply
        /// The reply waits on the engine; requests behind it wait their turn.
        case await(PendingReply)
        /// EXEC: the array header is written; these queued requests run next, their replies its elements.
        case runTransaction(ByteBuffer, count: Int)
        /// A reply of one element per name asked for: written element by element, under the output bound.
        case long(LongReply)
    }

    /// Runs `command`, whose words are `words`; a transaction queues it instead.
    func execute(_ command: Command, _ words: RESPCommandWords, _ session: inout Session, into out: inout ByteBuffer) -> Outcome {
        if session.restrictedToPubSub && !command.allowedWhileSubscribed {
            out.writeRESPError("ERR Can't execute '\(words.string(0).lowercased().prefix(32))': only SUBSCRIBE / UNSUBSCRIBE / PING / QUIT / RESET are allowed while subscribed (RESP2); UNSUBSCRIBE or RESET first (a connection that sends HELLO 3 before it subscribes may send any command)")
            return .answered
        }
        if session.transaction != nil {
            // As in Redis, RESET and QUIT run at once: RESET drops the transaction, QUIT closes.
            switch command {
            case .exec, .discard, .multi, .reset, .quit: break
            default: return queue(command, words, &session, into: &out)
            }
        }
        requests.count(command.metricSlot)
        let engine = state.engine
        switch command {
        case .get:
            var read = engine.withCachedValue(utf8: words.bytes(1), mask: access.mask, readAhead: &readAheadPlan) { out.writeRESPBulk($0) }
            if case .outdated = read {
                access.update(engine)
                read = engine.withCachedValue(utf8: words.bytes(1), mask: access.mask, readAhead: &readAheadPlan) { out.writeRESPBulk($0) }
            }
            switch read {
            case .answered:
                return .answered
            case .forbidden: return refuseRead(words.string(1), "GET", into: &out)
            case .absent, .outdated: break
            }
            let name = words.string(1)
            guard access.mayRead(name, engine) else { return refuseRead(name, "GET", into: &out) }
            return .await(PendingReply(.get, names: [name], patience: state.options.requestTimeout))
        case .fetch:
            guard access.mayRead(words.string(1), engine) else { return refuseRead(words.string(1), "FETCH", into: &out) }
            if words.count == 4 {
                guard let ms = Int64(words.string(3)), ms >= 0 else {
                    out.writeRESPError("ERR MINTTL expects a non-negative integer of milliseconds, got '\(words.string(3).prefix(32))'")
                    return .answered
                }
                // Validity left is judged by the engine, which refetches through the single flight if it is short.
                return .await(PendingReply(.fetch, names: [words.string(1)], minimumValidity: .milliseconds(ms), patience: state.options.requestTimeout))
            }
            if let fetched = engine.cachedValue(utf8: words.bytes(1)) {
                PendingReply.writeFetched(fetched, to: &out)
                return .answered
            }
            return .await(PendingReply(.fetch, names: [words.string(1)], patience: state.options.requestTimeout))
        case .mget:
            let names = (1..<words.count).map { words.string($0) }
            // As Redis's ACLs do: one name the caller may not read refuses the whole command.
            if let refused = names.first(where: { !access.mayRead($0, engine) }) { return refuseRead(refused, "MGET", into: &out) }
            return .await(PendingReply(.mget, names: names, patience: state.options.requestTimeout))
        case .ttl, .pttl:
            let name = words.string(1)
            guard access.maySee(name, engine) else { return refuseRead(name, command == .ttl ? "TTL" : "PTTL", into: &out) }
            switch engine.timeToLive(name) {
            case nil: out.writeRESPError(engine.notFound(name).description)
            case .notStored: out.writeRESPInteger(-2)
            case .never: out.writeRESPInteger(-1)
            case .millis(let ms): out.writeRESPInteger(command == .ttl ? (ms + 500) / 1000 : ms)
            }
        case .exists:
            let names = (1..<words.count).map { words.string($0) }
            if let refused = names.first(where: { !access.maySee($0, engine) }) { return refuseRead(refused, "EXISTS", into: &out) }
            out.writeRESPInteger(Int64(names.filter(isHeld).count))
        case .type:
            let name = words.string(1)
            guard access.maySee(name, engine) else { return refuseRead(name, "TYPE", into: &out) }
            // A keyed family's name alone is no value (GET answers NOTFOUND): none, as for an unknown name.
            out.writeRESP(.simpleString(engine.scope(of: name) == nil || engine.isKeyed(name) ? "none" : "string"))
        case .dbsize:
            out.writeRESPInteger(Int64(access.visibleNames(engine).filter(isHeld).count))
        case .clear:
            // `NAME:*`, as LIST shows a keyed family, clears the family, as `expirablectl clear NAME:*` does.
            let name = familyNamed(words.string(1))
            guard access.mayAdminister else { return refuseAdmin("CLEAR", name, into: &out) }
            guard engine.clear(name) else {
                out.writeRESPError(engine.notFound(name).description)
                return .answered
            }
            state.logger.notice("clear", metadata: ["expirable": "\(name)", "peer": "\(peer.map(\.description) ?? "unknown")"])
            out.writeRESPSimple("OK")
        case .clearAll:
            guard access.mayAdminister else { return refuseAdmin("CLEARALL", into: &out) }
            engine.clearAll()
            state.logger.notice("clear all", metadata: ["peer": "\(peer.map(\.description) ?? "unknown")"])
            out.writeRESPSimple("OK")
        case .reload:
            guard access.mayAdminister else { return refuseAdmin("RELOAD", into: &out) }
            guard let reload = state.options.reload else {
                out.writeRESPError("ERR this daemon cannot reload its configuration")
                return .answered
            }
            state.logger.notice("reload asked", metadata: ["peer": "\(peer.map(\.description) ?? "unknown")"])
            // Off the event loop: a reload can take seconds (helpers started, expirable_create), and every other
            // connection of this loop would wait for it.
            return .await(PendingReply(reload: reload))
        case .list:
            let names = access.visibleNames(engine)
            out.writeRESPArrayHeader(names.count)
            // A keyed family shows once, as NAME:* (its members are addressed as NAME:KEY).
            for name in names { out.writeRESPBulk(engine.isKeyed(name) ? name + ":*" : name) }
        case .info(let named):
            guard named else {
                out.writeRESPBulk(InfoText.server(state: state, names: access.visibleNames(engine)))
                break
            }
            guard words.count - 1 <= CommandExecutor.maxInfoNames else {
                out.writeRESPError("ERR INFO takes at most \(CommandExecutor.maxInfoNames) names at once, got \(words.count - 1); ask in several requests")
                break
            }
            // As Redis 7 answers several sections: one reply, each section once, in the order asked.
            var sections: [String] = []
            var shown: Set<String> = []
            var serverShown = false
            for index in 1..<words.count {
                let asked = words.string(index)
                let name = familyNamed(asked)
                let isRedisSection = CommandExecutor.redisInfoSections.contains(name.lowercased())
                // Refused in the words asked: `FAMILY:*` of a hidden family, named `FAMILY`, would tell it from
                // a name that does not exist.
                if !isRedisSection && !access.maySee(name, engine) { return refuseRead(asked, "INFO", into: &out) }
                if access.maySee(name, engine), let text = InfoText.expirable(name, state: state) {
                    if shown.insert(name).inserted { sections.append(text) }
                } else if isRedisSection {
                    // Monitoring tools ask Redis for `INFO server`, `INFO all` …: they get the daemon's own.
                    if !serverShown { sections.append(InfoText.server(state: state, names: access.visibleNames(engine))) }
                    serverShown = true
                } else {
                    out.writeRESPError(engine.notFound(name).description)
                    return .answered
                }
            }
            out.writeRESPBulk(sections.joined(separator: "\r\n"))
        case .ping(let echo):
            if session.restrictedToPubSub {
                // Redis's form in subscribed mode, which clients' pub/sub readers expect.
                out.writeRESPArrayHeader(2)
                out.writeRESPBulk("pong")
                if echo { out.writeRESPBulk(words.bytes(1)) } else { out.writeRESPBulk("") }
            } else if echo {
                out.writeRESPBulk(words.bytes(1))
            } else {
                out.writeRESPSimple("PONG")
            }
        case .echo:
            out.writeRESPBulk(words.bytes(1))
        case .subscribe:
            subscribe(words, &session, into: &out)
        case .unsubscribe:
            unsubscribe(words, &session, into: &out)
        case .hello:
            hello(words, &session, into: &out)
        case .client:
            client(words, &session, into: &out)
        case .select:
            switch Int(words.string(1)) {
            case 0?: out.writeRESPSimple("OK")
            case .some: out.writeRESPError("ERR DB index is out of range: expirabled has database 0 only")
            case nil: out.writeRESPError("ERR value is not an integer or out of range")
            }
        case .auth:
            out.writeRESPError("ERR AUTH is not supported: expirabled has no passwords; who may connect is set by the socket's mode (socket_mode) and who may clear by the caller's user and group")
        case .reset:
            unsubscribeAll(&session)
            session.transaction = nil
            session.version = .resp2
            session.name = nil
            out.writeRESPSimple("RESET")
        case .multi:
            guard session.transaction == nil else {
                out.writeRESPError("ERR MULTI calls can not be nested")
                return .answered
            }
            session.transaction = Session.Transaction(requests: ByteBuffer())
            out.writeRESPSimple("OK")
        case .discard:
            guard session.transaction != nil else {
                out.writeRESPError("ERR DISCARD without MULTI")
                return .answered
            }
            session.transaction = nil
            out.writeRESPSimple("OK")
        case .exec:
            guard let transaction = session.transaction else {
                out.writeRESPError("ERR EXEC without MULTI")
                return .answered
            }
            session.transaction = nil
            guard !transaction.failed else {
                out.writeRESPError("EXECABORT Transaction discarded because of previous errors.")
                return .answered
            }
            out.writeRESPArrayHeader(transaction.count)
            return transaction.count == 0 ? .answered : .runTransaction(transaction.requests, count: transaction.count)
        case .command:
            return commandInfo(words, session.version, into: &out)
        case .quit:
            out.writeRESPSimple("OK")
            return .closeAfterReply
        case .explain:
            let name = familyNamed(words.string(1))
            // Refused in the words asked, as INFO.
            guard access.maySee(name, engine) else { return refuseRead(words.string(1), "EXPLAIN", into: &out) }
            guard let text = ExplainText.expirable(name, state: state) else {
                out.writeRESPError(engine.notFound(name).description)
                return .answered
            }
            out.writeRESPBulk(text)
        case .cluster:
            // Configuration differences name expirables: only those the caller may see (SPEC §9), as LIST.
            let text = state.options.clusterInfo?({ access.mayLearnOfClusterName($0, engine) }) ?? "node:\(state.options.nodeName)\tstate:this\taddress:-\tcertificate:-\tlast_heard_ms:-\ttls:-\tconfig:no [cluster] configured\r\n"
            out.writeRESPBulk(text)
        case .configGet:
            configGet(words, session.version, into: &out)
        }
        return .answered
    }

    /// A request that could not be parsed as a command: its error, and inside MULTI, a failed transaction.
    func refuse(_ error: ReplyError, _ session: inout Session, into out: inout ByteBuffer) {
        requests.count(Command.unknownMetricSlot)
        session.transaction?.failed = true
        out.writeRESPError(error.text)
    }

    /// Whether a new value of `name` may be pushed to this subscriber: a reload may have taken its right away.
    func mayReceive(_ name: String) -> Bool {
        access.mayRead(name, state.engine)
    }

    /// Called when the connection closes: its subscriptions end.
    func connectionClosed(_ session: inout Session) {
        unsubscribeAll(&session)
        state.requestCounts.closed(requests)
    }

    // MARK: Commands with more to them

    private func queue(_ command: Command, _ words: RESPCommandWords, _ session: inout Session, into out: inout ByteBuffer) -> Outcome {
        guard command.queueable else {
            session.transaction!.failed = true
            out.writeRESPError("ERR \(words.string(0).uppercased().prefix(32)) is not allowed inside MULTI; the transaction will fail at EXEC")
            return .answered
        }
        let request = words.requestBytes
        guard session.transaction!.requests.readableBytes + request.count <= maxTransactionBytes else {
            session.transaction!.failed = true
            out.writeRESPError("ERR transaction over \(maxTransactionBytes) bytes; it will fail at EXEC: send EXEC sooner")
            return .answered
        }
        session.transaction!.requests.writeBytes(request)
        session.transaction!.count += 1
        out.writeRESPSimple("QUEUED")
        return .answered
    }

    /// `NAME:*`, as LIST shows a keyed family, names the family itself (`*` is never a key).
    private func familyNamed(_ name: String) -> String {
        guard name.hasSuffix(":*") else { return name }
        let family = String(name.dropLast(2))
        return state.engine.isKeyed(family) ? family : name
    }

    private func isHeld(_ name: String) -> Bool {
        switch state.engine.timeToLive(name) {
        case .never?, .millis?: true
        case .notStored?, nil: false
        }
    }

    /// Refuses an admin command (of the expirable `name`, for CLEAR): NOPERM naming the command, what it names
    /// and who may run it, and a warning with who asked.
    private func refuseAdmin(_ command: String, _ name: String? = nil, into out: inout ByteBuffer) -> Outcome {
        var metadata: Logger.Metadata = ["command": "\(command)", "peer": "\(peer.map(\.description) ?? "unknown")"]
        if let name { metadata["expirable"] = "\(name.prefix(200))" }
        state.logger.warning("refused admin command", metadata: metadata)
        let refused = name.map { "NOPERM cannot \(command) \($0.prefix(200)): " } ?? "NOPERM "
        if let admins = state.options.admins {
            let listed = admins.isEmpty ? "" : " and \(admins.map(\.spelled).joined(separator: ", "))"
            out.writeRESPError("\(refused)\(command) is allowed to root\(listed) only ([server] admins)")
        } else {
            out.writeRESPError("\(refused)\(command) is allowed to root, the daemon's user (uid \(state.daemonUID)) and members of its group (gid \(state.daemonGID)) only")
        }
        return .answered
    }

    /// Refuses a command naming `name`, which the caller may not read (or, when names are hidden from it, that
    /// does not exist): NOPERM, and a warning with who asked and the rule that refused, never a value.
    private func refuseRead(_ name: String, _ command: String, into out: inout ByteBuffer) -> Outcome {
        access.refusals += 1
        if access.refusals <= ConnectionAccess.loggedRefusals {
            state.logger.warning("refused read", metadata: [
                "command": "\(command)", "expirable": "\(name.prefix(200))", "pid": "\(peer.map { String($0.pid) } ?? "unknown")",
                "uid": "\(peer.map { String($0.uid) } ?? "unknown")", "exe": "\(peer?.shownExecutable ?? "unknown")",
                "rule": "\(access.refusingRule(name))",
            ])
            if access.refusals == ConnectionAccess.loggedRefusals {
                state.logger.notice("further refused reads of this connection are not logged", metadata: ["client": "\(subscriber.id)"])
            }
        }
        out.writeRESPError(access.refusal(name))
        return .answered
    }

    private func subscribe(_ words: RESPCommandWords, _ session: inout Session, into out: inout ByteBuffer) {
        let names = (1..<words.count).map { words.string($0) }
        if let refused = names.first(where: { !access.mayRead($0, state.engine) }) {
            _ = refuseRead(refused, "SUBSCRIBE", into: &out)
            return
        }
        // A keyed family's name alone is refused as GET refuses it: subscribe to its members, NAME:KEY.
        if let unknown = names.first(where: { state.engine.scope(of: $0) == nil || state.engine.isKeyed($0) }) {
            out.writeRESPError(state.engine.notFound(unknown).description)
            return
        }
        // Every valid key of a keyed family is a name: a connection holds at most `maxSubscriptions`, and a
        // SUBSCRIBE that would take it past them subscribes nothing, as one with an unknown name.
        let wanted = session.subscriptions.count + Set(names).filter { !session.subscriptions.contains($0) }.count
        guard wanted <= CommandExecutor.maxSubscriptions else {
            out.writeRESPError("ERR too many subscriptions: this SUBSCRIBE would bring the connection to \(wanted) names, over the limit of "
                + "\(CommandExecutor.maxSubscriptions) a connection; nothing was subscribed. UNSUBSCRIBE names no longer needed, or subscribe on another connection")
            return
        }
        for name in names {
            if session.subscriptions.insert(name) { state.subscriptions.add(name, subscriber) }
            writeSubscription("subscribe", name, count: session.subscriptions.count, session.version, into: &out)
        }
    }

    private func unsubscribe(_ words: RESPCommandWords, _ session: inout Session, into out: inout ByteBuffer) {
        let names = words.count > 1 ? (1..<words.count).map { words.string($0) } : session.subscriptions.inOrder
        guard !names.isEmpty else {
            out.writeRESPPushHeader(3, session.version)
            out.writeRESPBulk("unsubscribe")
            out.writeRESPNull(session.version)
            out.writeRESPInteger(0)
            return
        }
        for name in names {
            if session.subscriptions.remove(name) { state.subscriptions.remove(name, subscriber) }
            writeSubscription("unsubscribe", name, count: session.subscriptions.count, session.version, into: &out)
        }
    }

    /// A subscription the daemon ended (a reload removed the name): dropped from the session and announced as
    /// Redis announces an unsubscription, `unsubscribe NAME COUNT`, COUNT the subscriptions left. Returns false
    /// if the connection was not subscribed to it (any more).
    func endSubscription(_ name: String, _ session: inout Session, into out: inout ByteBuffer) -> Bool {
        guard session.subscriptions.remove(name) else { return false }
        state.subscriptions.remove(name, subscriber)
        writeSubscription("unsubscribe", name, count: session.subscriptions.count, session.version, into: &out)
        return true
    }

    private func unsubscribeAll(_ session: inout Session) {
        for name in session.subscriptions.names { state.subscriptions.remove(name, subscriber) }
        session.subscriptions.removeAll()
    }

    private func writeSubscription(_ kind: String, _ name: String, count: Int, _ version: RESPVersion, into out: inout ByteBuffer) {
        out.writeRESPPushHeader(3, version)
        out.writeRESPBulk(kind)
        out.writeRESPBulk(name)
        out.writeRESPInteger(Int64(count))
    }

    /// `HELLO [protover [AUTH user pass] [SETNAME name]]`.
    private func hello(_ words: RESPCommandWords, _ session: inout Session, into out: inout ByteBuffer) {
        var version = session.version
        var name = session.name
        if words.count > 1 {
            guard let requested = Int(words.string(1)).flatMap(RESPVersion.init(rawValue:)) else {
                out.writeRESPError("NOPROTO sorry, this protocol version is not supported; expirabled speaks 2 and 3")
                return
            }
            version = requested
            var index = 2
            while index < words.count {
                if words.word(index, is: "SETNAME"), index + 1 < words.count {
                    guard let valid = CommandExecutor.clientName(words.string(index + 1)) else {
                        out.writeRESPError(CommandExecutor.badClientName(words.string(index + 1)))
                        return
                    }
                    name = valid
                    index += 2
                } else if words.word(index, is: "AUTH") {
                    out.writeRESPError("ERR HELLO AUTH is not supported: expirabled has no passwords; who may connect is set by the socket's mode (socket_mode)")
                    return
                } else {
                    out.writeRESPError("ERR syntax error in HELLO option '\(words.string(index).prefix(32))'; expected HELLO [2|3 [SETNAME name]]")
                    return
                }
            }
        }
        session.version = version
        session.name = name
        out.writeRESPMapHeader(7, version)
        out.writeRESPBulk("server")
        out.writeRESPBulk("expirable")
        out.writeRESPBulk("version")
        out.writeRESPBulk(ExpirableServer.version)
        out.writeRESPBulk("proto")
        out.writeRESPInteger(Int64(version.rawValue))
        out.writeRESPBulk("id")
        out.writeRESPInteger(session.id)
        out.writeRESPBulk("mode")
        out.writeRESPBulk("standalone")
        out.writeRESPBulk("role")
        out.writeRESPBulk("master")
        out.writeRESPBulk("modules")
        out.writeRESPArrayHeader(0)
    }

    private func client(_ words: RESPCommandWords, _ session: inout Session, into out: inout ByteBuffer) {
        let arguments = words.count - 2
        if words.word(1, is: "SETNAME"), arguments == 1 {
            guard let name = CommandExecutor.clientName(words.string(2)) else { return out.writeRESPError(CommandExecutor.badClientName(words.string(2))) }
            session.name = name.isEmpty ? nil : name
            out.writeRESPSimple("OK")
        } else if words.word(1, is: "GETNAME"), arguments == 0 {
            if let name = session.name { out.writeRESPBulk(name) } else { out.writeRESPNull(session.version) }
        } else if words.word(1, is: "SETINFO"), arguments == 2 {
            guard words.word(2, is: "LIB-NAME") || words.word(2, is: "LIB-VER") else {
                return out.writeRESPError("ERR unrecognized option '\(words.string(2).prefix(32))'; CLIENT SETINFO takes LIB-NAME or LIB-VER")
            }
            out.writeRESPSimple("OK")
        } else if words.word(1, is: "ID"), arguments == 0 {
            out.writeRESPInteger(session.id)
        } else if words.word(1, is: "INFO"), arguments == 0 {
            let multi = session.transaction.map { String($0.count) } ?? "-1"
            out.writeRESPBulk("id=\(session.id) name=\(session.name ?? "") resp=\(session.version.rawValue) sub=\(session.subscriptions.count) multi=\(multi)\n")
        } else {
            out.writeRESPError("ERR unknown CLIENT subcommand or wrong number of arguments for '\(words.string(1).prefix(32))'; expirabled answers CLIENT SETNAME name, GETNAME, SETINFO LIB-NAME|LIB-VER value, ID, INFO")
        }
    }

    /// The most names one INFO answers: a reply of some KB each, bounded whatever the request's size.
    static let maxInfoNames = 64
    /// The names one connection may be subscribed to at once (docs/protocol.md, Limits): a keyed family makes
    /// every valid key a name, and each costs memory in the connection and in the fan-out's table.
    static let maxSubscriptions = 10_000

    /// Redis's INFO sections; an expirable of the same name is answered first.
    static let redisInfoSections: Set<String> = [
        "server", "clients", "memory", "persistence", "stats", "replication", "cpu", "modules", "keyspace",
        "errorstats", "commandstats", "latencystats", "cluster", "all", "default", "everything",
    ]

    /// Why `text` is no client name: too long, or Redis's error for what it may not contain.
    static func badClientName(_ text: String) -> String {
        text.utf8.count > 256
            ? "ERR client name of \(text.utf8.count) bytes; names are at most 256 bytes"
            : "ERR Client names cannot contain spaces, newlines or special characters."
    }

    /// What `CONFIG GET` answers: a Redis that persists nothing, which is what the daemon is. redis-benchmark
    /// asks for these two and warns without them.
    static let redisSettings = [("save", ""), ("appendonly", "no")]

    /// `CONFIG GET parameter …`: the settings any parameter (a glob pattern, as in Redis) matches, as a map.
    private func configGet(_ words: RESPCommandWords, _ version: RESPVersion, into out: inout ByteBuffer) {
        let patterns = (2..<words.count).map { Array(words.string($0).lowercased().utf8) }
        let matched = CommandExecutor.redisSettings.filter { setting in
            patterns.contains { CommandExecutor.glob($0, matches: Array(setting.0.utf8)) }
        }
        out.writeRESPMapHeader(matched.count, version)
        for (name, value) in matched {
            out.writeRESPBulk(name)
            out.writeRESPBulk(value)
        }
    }

    /// Whether `pattern` (`*` and `?` as wildcards) matches the whole of `text`; in time proportional to the
    /// product of their lengths, whatever the pattern (one step back to the last `*`, never a search tree).
    static func glob(_ pattern: [UInt8], matches text: [UInt8]) -> Bool {
        var p = 0, t = 0, star = -1, resume = 0
        while t < text.count {
            if p < pattern.count && (pattern[p] == UInt8(ascii: "?") || pattern[p] == text[t]) {
                p += 1
                t += 1
            } else if p < pattern.count && pattern[p] == UInt8(ascii: "*") {
                star = p
                resume = t
                p += 1
            } else if star >= 0 {
                p = star + 1
                resume += 1
                t = resume
            } else {
                return false
            }
        }
        while p < pattern.count && pattern[p] == UInt8(ascii: "*") { p += 1 }
        return p == pattern.count
    }

    /// A name as Redis allows it: printable ASCII without spaces, at most 256 bytes.
    static func clientName(_ text: String) -> String? {
        guard text.utf8.count <= 256, text.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else { return nil }
        return text
    }

    /// `COMMAND`, `COMMAND COUNT|LIST|INFO [name …]|DOCS [name …]`. INFO and DOCS answer one element per name
    /// given, as Redis does, so their size is the request's to choose: they are long replies.
    private func commandInfo(_ words: RESPCommandWords, _ version: RESPVersion, into out: inout ByteBuffer) -> Outcome {
        let asked = words.count > 2 ? (2..<words.count).map { words.string($0) } : nil
        if words.count == 1 {
            out.writeRESPArrayHeader(CommandTable.entries.count)
            for entry in CommandTable.entries { CommandTable.writeInfo(entry, to: &out, version) }
        } else if words.word(1, is: "COUNT"), words.count == 2 {
            out.writeRESPInteger(Int64(CommandTable.entries.count))
        } else if words.word(1, is: "LIST"), words.count == 2 {
            out.writeRESPArrayHeader(CommandTable.entries.count)
            for entry in CommandTable.entries { out.writeRESPBulk(entry.name) }
        } else if words.word(1, is: "INFO") {
            let entries = asked.map { $0.map(CommandTable.entry(named:)) } ?? CommandTable.entries.map { $0 }
            return .long(LongReply(count: entries.count, header: { $0.writeRESPArrayHeader(entries.count) }) { index, out in
                if let entry = entries[index] { CommandTable.writeInfo(entry, to: &out, version) } else { out.writeRESPNull(version) }
            })
        } else if words.word(1, is: "DOCS") {
            let entries = asked.map { $0.compactMap(CommandTable.entry(named:)) } ?? CommandTable.entries
            return .long(LongReply(count: entries.count, header: { $0.writeRESPMapHeader(entries.count, version) }) { index, out in
                CommandTable.writeDocs(entries[index], to: &out, version)
            })
        } else {
            out.writeRESPError("ERR unknown COMMAND subcommand '\(words.string(1).prefix(32))'; expected COMMAND [COUNT | LIST | INFO [name ...] | DOCS [name ...]]")
        }
        return .answered
    }
}
