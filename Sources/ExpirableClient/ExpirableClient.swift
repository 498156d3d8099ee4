import ExpirableCore
import ExpirableRESP
import NIOCore
import NIOPosix
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A value and its expiry, as the daemon answered them. It prints as `<secret, N bytes>` (in `print`, string
/// interpolation, `dump`, a debugger's `po` and test failure messages alike): read ``bytes`` or ``string`` to use it.
public struct FetchedValue: Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    /// The value's bytes. A plain array: unlike the `Secret` of ``ValueUpdate``, it is not wiped from memory when
    /// dropped.
    public let bytes: [UInt8]
    /// When it expires.
    public let expiry: Expiry
    /// Whether the daemon answered it past its expiry because the call that should have replaced it failed
    /// (`stale_if_error`). A daemon of the first version never says so.
    public let isStale: Bool

    /// The value as UTF-8 text, with every invalid sequence replaced by U+FFFD: for a value that may not be
    /// text, read ``bytes`` (or use ``ExpirableClient/value(_:)``, which refuses such a value).
    public var string: String { String(decoding: bytes, as: UTF8.self) }

    /// `<secret, N bytes>`: never the value.
    public var description: String { "<secret, \(bytes.count) bytes>" }

    /// `<secret, N bytes>`: never the value.
    public var debugDescription: String { description }

    /// The expiry and staleness; the value shows only as its size.
    public var customMirror: Mirror {
        Mirror(self, children: ["value": description, "expiry": expiry, "isStale": isStale], displayStyle: .struct)
    }
}

/// A client of `expirabled`, talking RESP2 over its Unix socket.
///
/// One client serves any number of tasks over a few connections (up to `maxConnections`, opened as calls need
/// them and reopened after they break, a daemon restart say). The daemon answers a connection's requests in
/// order, so a call goes to a connection with no call waiting on it, or to a new one while there are fewer than
/// `maxConnections`; only then is it pipelined, behind the connection with the fewest calls waiting among those
/// whose current call is not slow (waiting over 100 ms: a plugin call, most likely). When every connection is
/// held by a slow call, a read of a value the daemon holds should not wait for them: the client opens another
/// connection, up to twice `maxConnections`, and closes such extra connections once idle. A call pipelined
/// behind one that turns slow only later still waits for it.
///
/// Every call has a deadline: a daemon that does not answer in time costs that caller, and only that caller, a
/// `.callTimeout` error; cancelling the calling task ends the call at once with `.cancelled`, the same way. Its
/// connection stays open for the calls behind it, and the late reply is dropped when it comes (a connection whose
/// every caller gave up is closed).
/// ``updates(of:)`` watches values for their new versions over a connection of its own.
///
/// ```swift
/// let client = ExpirableClient(socketPath: "/run/expirable/expirable.sock")
/// let token = try await client.value("github_access_token")
/// request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization")
/// ```
public final class ExpirableClient: Sendable {
    /// `$EXPIRABLE_SOCKET` if set, otherwise the daemon's default socket path.
    public static var defaultSocketPath: String {
        getenv("EXPIRABLE_SOCKET").map { String(cString: $0) } ?? "/run/expirable/expirable.sock"
    }

    /// The daemon's socket.
    public let socketPath: String
    /// The longest a call waits for its reply; a little over the daemon's default plugin timeout (30 s).
    public let timeout: Duration

    /// The connections the client's calls use at once (``updates(of:)`` has its own besides); up to twice as many
    /// while all of them are held by slow calls.
    public let maxConnections: Int

    let group: any EventLoopGroup
    private enum Connection: Sendable {
        case connecting(EventLoopFuture<any Channel>)
        case connected(any Channel)
    }

    /// One of the client's connections, with the replies the daemon still owes on it and how many of those
    /// their callers still wait for. A call that gave up (its timeout) leaves its reply owed: the daemon answers
    /// a connection's requests in order, so that reply is read when it comes and dropped, and the calls behind it
    /// get theirs.
    private struct Member: Sendable {
        let id: Int
        var connection: Connection
        /// When each request leased to this connection and not yet answered was leased, oldest first: the daemon
        /// answers in order, so the first is the one it works on.
        var owed = CircularBuffer<NIODeadline>()
        /// Calls leased to this connection still waiting for their reply.
        var waiting = 0

        /// Whether the request the daemon works on has been waiting longer than ``ExpirableClient/slowCall``.
        func isSlow(at now: NIODeadline) -> Bool {
            owed.first.map { now - $0 >= ExpirableClient.slowCall } ?? false
        }
    }

    /// A call that has waited this long for its reply counts as slow: most likely a plugin call, as the daemon
    /// answers a value it holds in microseconds. A call is not pipelined behind a slow one while there is room for
    /// another connection.
    static let slowCall = TimeAmount.milliseconds(100)

    private struct Pool: Sendable {
        var members: [Member] = []
        var nextID = 0
    }

    private let pool = Mutex(Pool())

    /// A client of the daemon at `socketPath`. No connection is made until the first call; a connection opened
    /// for a burst of concurrent calls stays open until ``close()``, the client's end, or the daemon's
    /// `idle_timeout` closes it.
    ///
    /// - Parameters:
    ///   - timeout: The longest a call takes, counted from its start, retries included.
    ///   - maxConnections: How many connections concurrent calls may open (at least 1; default 4). A call is
    ///     pipelined behind another still waiting for its reply only when that many are busy; while all of them
    ///     are held by slow calls (waiting over 100 ms), up to as many again are opened, and closed once idle.
    public init(socketPath: String = ExpirableClient.defaultSocketPath, timeout: Duration = .seconds(35),
                maxConnections: Int = 4, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) {
        precondition(maxConnections >= 1, "ExpirableClient(maxConnections: \(maxConnections)): give at least 1")
        self.socketPath = socketPath
        self.timeout = timeout
        self.maxConnections = maxConnections
        self.group = group
    }

    deinit {
        pool.withLock { pool in
            for member in pool.members { Self.close(member.connection) }
        }
    }

    // MARK: Calls

    /// The value of `name` and its expiry; from the daemon's memory if valid, otherwise fetched by its plugin.
    ///
    /// With `minimumValidity`, a value with less than that left is not good enough: the daemon fetches a new
    /// one (one plugin call shared by every such caller) and answers it (`FETCH name MINTTL ms`).
    public func fetch(_ name: String, minimumValidity: Duration? = nil) async throws(ExpirableClientError) -> FetchedValue {
        var words = ["FETCH", name]
        if let minimumValidity { words += ["MINTTL", String(max(0, minimumValidity.milliseconds))] }
        let reply = try await call(words)
        // [value, expires_at_ms] from a first-version daemon; [value, expires_at_ms, "fresh"|"stale"] since.
        guard case .array(let parts) = reply, parts.count >= 2, case .bulkString(let value) = parts[0], case .integer(let expiresAt) = parts[1] else {
            throw unexpected(reply, "FETCH", expected: "[value, expiry]")
        }
        let stale = parts.count >= 3 && parts[2].string == "stale"
        return FetchedValue(bytes: Array(value.readableBytesView), expiry: expiresAt == -1 ? .never : .at(unixMillis: expiresAt), isStale: stale)
    }

    /// The value of `name` as text. A value that is not valid UTF-8 is refused (`.unexpectedReply`), not altered:
    /// ``fetch(_:minimumValidity:)`` gives any value's bytes.
    public func value(_ name: String) async throws(ExpirableClientError) -> String {
        let reply = try await call(["GET", name])
        guard case .bulkString(let value) = reply else { throw unexpected(reply, "GET", expected: "the value (a bulk string)") }
        guard let text = String(validating: value.readableBytesView, as: UTF8.self) else {
            throw ExpirableClientError(code: .unexpectedReply, message: "the value of \(name) is not UTF-8 text (\(value.readableBytes) bytes); fetch(_:) gives its bytes")
        }
        return text
    }

    /// Drops the stored value of `name`; the next fetch calls its plugin.
    public func clear(_ name: String) async throws(ExpirableClientError) {
        let reply = try await call(["CLEAR", name])
        guard reply == .simpleString("OK") else { throw unexpected(reply, "CLEAR", expected: "OK") }
    }

    /// Makes the daemon read its configuration file again (admin only). Returns what it applied; a refusal
    /// (nothing changed) is an `ERR` error saying why.
    public func reload() async throws(ExpirableClientError) -> String {
        let reply = try await call(["RELOAD"])
        guard case .bulkString(let text) = reply else { throw unexpected(reply, "RELOAD", expected: "a text (a bulk string)") }
        return String(buffer: text)
    }

    /// Drops every stored value.
    public func clearAll() async throws(ExpirableClientError) {
        let reply = try await call(["CLEARALL"])
        guard reply == .simpleString("OK") else { throw unexpected(reply, "CLEARALL", expected: "OK") }
    }

    /// How long the value stored for `name` stays valid, to the millisecond (the daemon's `PTTL`).
    ///
    /// Unlike ``fetch(_:)`` this never calls the plugin: it only looks at what the daemon holds.
    public func timeToLive(_ name: String) async throws(ExpirableClientError) -> TimeToLive {
        let reply = try await call(["PTTL", name])
        guard case .integer(let ms) = reply, ms >= -2 else { throw unexpected(reply, "PTTL", expected: "milliseconds (an integer)") }
        switch ms {
        case -2: return .notStored
        case -1: return .never
        default: return .expiresIn(.milliseconds(ms))
        }
    }

    /// The configured names.
    public func list() async throws(ExpirableClientError) -> [String] {
        let reply = try await call(["LIST"])
        guard case .array(let names) = reply else { throw unexpected(reply, "LIST", expected: "the names (an array)") }
        return names.compactMap(\.string)
    }

    /// INFO for `name` (or for the daemon, without a name) as key/value pairs.
    public func info(_ name: String? = nil) async throws(ExpirableClientError) -> [String: String] {
        let reply = try await call(name.map { ["INFO", $0] } ?? ["INFO"])
        guard let text = reply.string else { throw unexpected(reply, "INFO", expected: "a text") }
        var pairs: [String: String] = [:]
        for line in text.split(separator: "\r\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            pairs[String(line[..<colon])] = String(line[line.index(after: colon)...])
        }
        return pairs
    }

    /// EXPLAIN for `name`: why it is in its state and what happens next, as key/value lines in the daemon's
    /// order (`call` repeats, once per past plugin call, newest first). Never the value.
    public func explain(_ name: String) async throws(ExpirableClientError) -> [(key: String, value: String)] {
        let reply = try await call(["EXPLAIN", name])
        guard let text = reply.string else { throw unexpected(reply, "EXPLAIN", expected: "a text") }
        var lines: [(key: String, value: String)] = []
        for line in text.split(separator: "\r\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            lines.append((String(line[..<colon]), String(line[line.index(after: colon)...])))
        }
        return lines
    }

    /// The cluster's members as the daemon sees them, one dictionary per member (`node`, `state`, `address`,
    /// `certificate`, `last_heard_ms`, `tls`, and `config`/`error` when there is something to report).
    public func cluster() async throws(ExpirableClientError) -> [[String: String]] {
        let reply = try await call(["CLUSTER"])
        guard let text = reply.string else { throw unexpected(reply, "CLUSTER", expected: "a text") }
        return text.split(separator: "\r\n").map { line in
            var member: [String: String] = [:]
            for field in line.split(separator: "\t") {
                let parts = field.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
                guard parts.count == 2 else { continue }
                member[String(parts[0])] = String(parts[1])
            }
            return member
        }
    }

    /// Checks that the daemon answers.
    public func ping() async throws(ExpirableClientError) {
        let reply = try await call(["PING"])
        guard reply == .simpleString("PONG") else { throw unexpected(reply, "PING", expected: "PONG") }
    }

    /// Closes the connections; a later call opens a new one.
    public func close() async {
        let members = pool.withLock { pool in defer { pool.members = [] }; return pool.members }
        for member in members {
            switch member.connection {
            case .connected(let channel): try? await channel.close()
            case .connecting(let future): try? await future.get().close()
            }
        }
    }

    // MARK: Plumbing

    /// Sends one command and returns its reply; error replies are thrown. The call's deadline is fixed when its
    /// request is first written (time the calling task spent waiting for a thread before that is not the
    /// daemon's), and holds across its attempts. A connection that broke before the reply (a daemon restart) is
    /// reopened and the command sent once more, for the time the call has left: every command is idempotent.
    func call(_ words: [String]) async throws(ExpirableClientError) -> RESPValue {
        var deadline: NIODeadline?
        var attempt = 0
        while true {
            attempt += 1
            do {
                let reply = try await send(words, deadline: &deadline)
                if case .error(let text) = reply { throw ExpirableClientError(reply: text) }
                return reply
            } catch let error as ExpirableClientError {
                guard error.code == .unavailable, attempt < 2, deadline.map({ NIODeadline.now() < $0 }) ?? true else { throw error }
            } catch {
                throw ExpirableClientError(code: .unavailable, message: "\(error)")
            }
        }
    }

    /// One attempt; `deadline` is fixed by the first attempt that writes its request. A timeout fails this call
    /// only: its request stays owed on the connection, and its reply, when it comes, is dropped in its turn.
    private func send(_ words: [String], deadline: inout NIODeadline?) async throws -> RESPValue {
        guard !Task.isCancelled else { throw ExpirableClientError.cancelled }
        let (id, connection) = lease()
        defer { leave(id) }
        let channel = try await channel(id, connection)
        let due = deadline ?? NIODeadline.now() + .nanoseconds(timeout.nanoseconds)
        deadline = due
        // `reply` is the connection's: completed by the daemon's answer, or by the connection failing. `outcome`
        // is this call's: the reply, or the timeout, whichever comes first.
        let reply = channel.eventLoop.makePromise(of: RESPValue.self)
        reply.futureResult.whenComplete { [weak self] _ in self?.settle(id) }
        let outcome = channel.eventLoop.makePromise(of: RESPValue.self)
        reply.futureResult.cascade(to: outcome)
        let timer = channel.eventLoop.scheduleTask(deadline: due) { [timeout] in
            outcome.fail(ExpirableClientError(code: .callTimeout, message: "the daemon did not answer within \(timeout)"))
        }
        // A connection that closed a moment ago (a daemon restarting) refuses the write; without this the reply
        // promise would wait out the whole timeout instead of failing at once and being retried on a new one.
        channel.writeAndFlush(ClientRequest(words: words, promise: reply)).whenFailure { _ in
            reply.fail(ExpirableClientError(code: .unavailable, message: "the connection to the daemon closed before the request was sent"))
        }
        defer { timer.cancel() }
        // A cancelled call gives up as a timed-out one does: its reply stays owed, and is dropped when it comes.
        return try await withTaskCancellationHandler {
            try await outcome.futureResult.get()
        } onCancel: {
            outcome.fail(ExpirableClientError.cancelled)
        }
    }

    /// The connection a call goes to, counted as waiting on it until ``leave(_:)`` and as owed a reply until
    /// ``settle(_:)``: one owed nothing; else a new one while below `maxConnections`; else the one owed the fewest
    /// replies among those not held by a slow call (``slowCall``); else, when every connection is held by one, a
    /// new one while below twice `maxConnections`; else the one owed the fewest replies.
    private func lease() -> (id: Int, connection: Connection) {
        pool.withLock { pool in
            pool.members.removeAll { member in
                if case .connected(let channel) = member.connection { !channel.isActive } else { false }
            }
            let now = NIODeadline.now()
            func fewestOwed(_ indices: [Int]) -> Int? {
                indices.min { pool.members[$0].owed.count < pool.members[$1].owed.count }
            }
            let index: Int
            if let idle = pool.members.firstIndex(where: { $0.owed.isEmpty }) {
                index = idle
            } else if pool.members.count < maxConnections {
                index = Self.open(&pool, connect())
            } else if let prompt = fewestOwed(pool.members.indices.filter { !pool.members[$0].isSlow(at: now) }) {
                index = prompt
            } else if pool.members.count < 2 * maxConnections {
                index = Self.open(&pool, connect())
            } else {
                index = fewestOwed(Array(pool.members.indices))!
            }
            pool.members[index].owed.append(now)
            pool.members[index].waiting += 1
            return (pool.members[index].id, pool.members[index].connection)
        }
    }

    /// Adds a member connecting by `connection`, returning its index.
    private static func open(_ pool: inout Pool, _ connection: EventLoopFuture<any Channel>) -> Int {
        pool.members.append(Member(id: pool.nextID, connection: .connecting(connection)))
        pool.nextID += 1
        return pool.members.count - 1
    }

    /// The reply owed on member `id` arrived (or its connection failed).
    private func settle(_ id: Int) {
        pool.withLock { pool in
            if let index = pool.members.firstIndex(where: { $0.id == id }) { _ = pool.members[index].owed.popFirst() }
        }
    }

    /// A call leased to member `id` is done with it, answered or not. A connection owed replies that no call
    /// waits for any more is closed: they are of no use, and a daemon that stopped answering (SIGSTOP, a hung
    /// machine) would otherwise have them pile up for as long as it stays so. So is an idle one beyond
    /// `maxConnections`, opened while the others were held by slow calls.
    private func leave(_ id: Int) {
        let closing = pool.withLock { pool -> Connection? in
            guard let index = pool.members.firstIndex(where: { $0.id == id }) else { return nil }
            pool.members[index].waiting -= 1
            guard pool.members[index].waiting == 0,
                  !pool.members[index].owed.isEmpty || pool.members.count > maxConnections else { return nil }
            return pool.members.remove(at: index).connection
        }
        if let closing { Self.close(closing) }
    }

    private func connect() -> EventLoopFuture<any Channel> {
        ClientBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers(
                        ByteToMessageHandler(RESPValueDecoder(limits: .replies)), ClientHandler()
                    )
                }
            }
            .connect(unixDomainSocketPath: socketPath)
    }

    /// The open channel of member `id`, once its connect (shared by every call leased to it meanwhile) completes.
    private func channel(_ id: Int, _ connection: Connection) async throws(ExpirableClientError) -> any Channel {
        switch connection {
        case .connected(let channel):
            return channel
        case .connecting(let future):
            do {
                let channel = try await future.get()
                let first = pool.withLock { pool in
                    guard let index = pool.members.firstIndex(where: { $0.id == id }),
                          case .connecting = pool.members[index].connection else { return false }
                    pool.members[index].connection = .connected(channel)
                    return true
                }
                if first { channel.closeFuture.whenComplete { [weak self] _ in self?.forget(id) } }
                return channel
            } catch {
                forget(id)
                throw ExpirableClientError.cannotConnect(to: socketPath, error)
            }
        }
    }

    private func forget(_ id: Int) {
        pool.withLock { pool in pool.members.removeAll { $0.id == id } }
    }

    private static func close(_ connection: Connection) {
        switch connection {
        case .connected(let channel): channel.close(promise: nil)
        case .connecting(let future): future.whenSuccess { $0.close(promise: nil) }
        }
    }

    /// The error for a reply to `command` not of the `expected` form. It gives the reply's type and size only: a
    /// reply of the wrong form may still hold a value.
    private func unexpected(_ reply: RESPValue, _ command: String, expected: String) -> ExpirableClientError {
        ExpirableClientError(code: .unexpectedReply, message: "unexpected reply to \(command) from \(socketPath): \(reply.shape), not \(expected); is that the socket of expirabled, of a version this client knows?")
    }
}

extension ExpirableClient {
    /// The answer to ``ExpirableClient/timeToLive(_:)``: how long the daemon keeps serving the value it holds.
    public enum TimeToLive: Sendable, Hashable {
        /// Nothing valid is stored; the next fetch calls the plugin.
        case notStored
        /// Stored until cleared: the value never expires.
        case never
        /// Valid for this long (millisecond precision) from when the daemon answered.
        case expiresIn(Duration)
    }
}
