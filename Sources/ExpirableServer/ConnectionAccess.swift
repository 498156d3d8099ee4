import CExpirableOpenSSL
import ExpirableCore
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// What one connection may do under SPEC §9's rules, worked out once from its peer credentials: the names it may
/// read (a `ReadMask` over the engine's table, made again when a reload replaces the table) and whether it is an
/// admin. Used on the connection's event loop only.
final class ConnectionAccess {
    private(set) var peer: PeerCredentials?
    /// May CLEAR, CLEARALL and RELOAD, and sees every name's metadata (LIST, INFO, EXPLAIN, status): root,
    /// whoever `[server] admins` names, or without it the daemon's user and the members of its group.
    private(set) var mayAdminister = false
    /// The table `mask` is of.
    private(set) var rules: ReadRules
    // Read for every GET, on the connection's event loop only (see ConnectionHandler's fields).
    @exclusivity(unchecked) private(set) var mask = ReadMask.outdated
    /// Owns `mask`'s bits.
    private var maskStorage: ReadMaskStorage?
    /// The SHA-256 of the peer's executable, read once if a rule asks for it: nil until then, `.some(nil)` when
    /// it could not be read.
    private var digest: [UInt8]??
    /// Refusals so far; past `loggedRefusals` they are counted, not logged.
    var refusals = 0
    static let loggedRefusals = 16

    private let logger: Logger

    private let admins: [AccessRule]?
    private let daemonUID: UInt32
    private let daemonGID: UInt32

    /// Rights of a connection whose peer is not known yet: names without rules only.
    init(engine: Engine, admins: [AccessRule]?, daemonUID: UInt32, daemonGID: UInt32, logger: Logger) {
        self.logger = logger
        self.admins = admins
        self.daemonUID = daemonUID
        self.daemonGID = daemonGID
        rules = engine.readRules
        remask()
    }

    /// The peer's credentials, read as it connected: its rights are worked out now.
    func connected(_ peer: PeerCredentials?, engine: Engine) {
        self.peer = peer
        digest = nil
        mayAdminister = false
        if let peer {
            if peer.uid == 0 {
                mayAdminister = true
            } else if let admins {
                mayAdminister = ConnectionAccess.matches(admins, peer, digest: { self.executableDigest() })
            } else {
                mayAdminister = peer.uid == daemonUID || peer.isMember(of: daemonGID)
            }
        }
        rules = engine.readRules
        remask()
    }

    /// Makes the mask again if the engine's table is no longer the one it is of.
    @inline(__always)
    func update(_ engine: Engine) {
        if engine.tableGeneration != mask.generation {
            rules = engine.readRules
            remask()
        }
    }

    private func remask() {
        let readers = rules.readers
        let storage = ReadMaskStorage(rules) { ordinal in
            guard let allowed = readers[ordinal] else { return true }
            guard let peer else { return false }
            if peer.executable == nil, allowed.contains(where: { if case .exe = $0.principal { true } else { false } }) {
                ConnectionAccess.warnExecutableUnknown(peer, logger)
            }
            return ConnectionAccess.matches(allowed, peer, digest: { self.executableDigest() })
        }
        maskStorage = storage
        mask = storage.mask
    }

    private static let warnedExecutableUnknown = Atomic<Bool>(false)

    /// Once per daemon: exe rules cannot match a peer whose /proc/PID/exe the daemon may not read (another user's
    /// process, without CAP_SYS_PTRACE), which would otherwise look like a wrong path.
    private static func warnExecutableUnknown(_ peer: PeerCredentials, _ logger: Logger) {
        guard !warnedExecutableUnknown.exchange(true, ordering: .relaxed) else { return }
        logger.warning("exe rules cannot match this peer: its executable (/proc/PID/exe) could not be read; a daemon that is not root reads it only for processes of its own user unless it has CAP_SYS_PTRACE", metadata: [
            "pid": "\(peer.pid)", "uid": "\(peer.uid)",
        ])
    }

    /// Whether the caller may read `name`'s value; a name not configured counts as readable (it gets "not
    /// found") only when nothing is hidden from the caller, so a refusal never tells a hidden name from none.
    func mayRead(_ name: String, _ engine: Engine) -> Bool {
        update(engine)
        if let ordinal = rules.ordinal(of: name) { return mask.permits(ordinal) }
        return mask.all || mayAdminister
    }

    /// Whether the caller may see `name`'s metadata (INFO, EXPLAIN, TTL, EXISTS, TYPE): a reader, or an admin.
    func maySee(_ name: String, _ engine: Engine) -> Bool {
        mayAdminister || mayRead(name, engine)
    }

    /// Whether CLUSTER may name `name` to the caller, an expirable configured differently on a peer: one
    /// configured here if the caller may see it; one not configured here, whose `allow` list this node does not
    /// know, to admins only (a caller who may read every name here may still be kept from it on the peer).
    func mayLearnOfClusterName(_ name: String, _ engine: Engine) -> Bool {
        update(engine)
        return rules.ordinal(of: name) != nil ? maySee(name, engine) : mayAdminister
    }

    /// The names LIST, DBSIZE and INFO show the caller.
    func visibleNames(_ engine: Engine) -> [String] {
        update(engine)
        if mask.all || mayAdminister { return rules.names }
        return rules.names.indices.filter { mask.permits($0) }.map { rules.names[$0] }
    }

    /// The NOPERM reply for `name`, naming the rule that refused it (SPEC §9): its allow list. Admins, who may
    /// read the configuration anyway, are told the list; everyone else gets the same words for a hidden name and
    /// for one that does not exist, and the entries that would let them in.
    func refusal(_ name: String) -> String {
        let shown = String(name.prefix(200))
        let you = ConnectionAccess.entriesNaming(peer)
        if mayAdminister, case .some(.some(let allowed)) = rules.rules(of: name) {
            let ask = you.isEmpty
                ? "this connection has no peer credentials, so no allow list can name it"
                : "ask its owner to add you (\(you.joined(separator: " or "))) to its allow list"
            return "NOPERM you may not read '\(shown)' (allowed: \(allowed.map(\.spelled).joined(separator: ", "))); \(ask)"
        }
        let ask = you.isEmpty
            ? "this connection has no peer credentials, so no allow list can name it"
            : "ask its owner to add you (\(you.joined(separator: " or "))) to it"
        return "NOPERM you may not read '\(shown)' (or it does not exist): refused by its allow list; \(ask)"
    }

    /// The rule that refused `name`, for the log, which only the operator reads: the allow list (of the keyed
    /// family, for a member) as the configuration spells it, or, for a name not configured, that it was refused
    /// as a hidden one would be.
    func refusingRule(_ name: String) -> String {
        guard let ordinal = rules.ordinal(of: name), let allowed = rules.readers[ordinal] else {
            return "none: no expirable of this name; refused as a hidden one, since an allow list hides some names from this caller"
        }
        return "expirable.\(rules.names[ordinal]).allow = [\(allowed.map { "\"\($0.spelled)\"" }.joined(separator: ", "))]"
    }

    /// The allow-list entries that would name this peer: its uid, and its executable when an `exe:` rule could
    /// match it.
    static func entriesNaming(_ peer: PeerCredentials?) -> [String] {
        guard let peer else { return [] }
        return ["uid:\(peer.uid)"] + (peer.attestedExecutable.map { ["exe:\($0)"] } ?? [])
    }

    static func matches(_ rules: [AccessRule], _ peer: PeerCredentials, digest: () -> [UInt8]?) -> Bool {
        rules.contains { rule in
            switch rule.principal {
            case .uid(let uid): peer.uid == uid
            case .gid(let gid): peer.isMember(of: gid)
            // The path /proc/PID/exe gives is the one the peer sees; it counts only when the daemon finds the
            // file the peer runs at that path, or a peer could mount any file over an allowed path in a mount
            // namespace of its own (unshare -Urm needs no privilege).
            case .exe(let path, let sha256):
                peer.attestedExecutable == path && (sha256 == nil || digest() == sha256)
            }
        }
    }

    private func executableDigest() -> [UInt8]? {
        if let digest { return digest }
        let computed = peer.flatMap { peer in peer.executableFile.flatMap { ExecutableDigests.shared.digest(pid: peer.pid, of: $0) } }
        digest = .some(computed)
        return computed
    }
}

/// SHA-256 of executables, by the file's identity (device, inode, size, change time), so a binary that
/// connects a thousand times is hashed once. A file cannot be written while it runs (ETXTBSY), and writing one
/// that does not run changes its change time.
final class ExecutableDigests: Sendable {
    static let shared = ExecutableDigests()
    private struct Identity: Hashable {
        var device: UInt64, inode: UInt64, size: Int64, changed: Int64, changedNanos: Int64
    }
    private let known = Mutex<[Identity: [UInt8]]>([:])

    /// The digest of the file /proc/PID/exe opens: the very file the process runs, even if its path now names
    /// another. Nil when it cannot be read, or is not `file`, the one the peer ran when it connected (the pid
    /// may since be another process's, or the process may have run another program).
    func digest(pid: Int32, of file: PeerCredentials.FileIdentity) -> [UInt8]? {
        let fd = open("/proc/\(pid)/exe", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG, PeerCredentials.FileIdentity(info) == file else { return nil }
        let identity = Identity(device: UInt64(info.st_dev), inode: UInt64(info.st_ino), size: Int64(info.st_size),
                                changed: Int64(info.st_ctim.tv_sec), changedNanos: Int64(info.st_ctim.tv_nsec))
        if let digest = known.withLock({ $0[identity] }) { return digest }
        guard let digest = ExecutableDigests.sha256(fd) else { return nil }
        known.withLock { known in
            if known.count >= 256 { known.removeAll() }
            known[identity] = digest
        }
        return digest
    }

    static func sha256(_ fd: Int32) -> [UInt8]? {
        // OpenSSL is loaded on first use (CExpirableOpenSSL.h): a daemon whose rules name a digest loaded it when it
        // started or reloaded, and refused them if it could not; if it still cannot, the rule matches no one.
        guard CExpirableOpenSSL_load() == nil, let context = EVP_MD_CTX_new() else { return nil }
        defer { EVP_MD_CTX_free(context) }
        guard EVP_DigestInit_ex(context, EVP_sha256(), nil) == 1 else { return nil }
        var buffer = [UInt8](repeating: 0, count: 256 * 1024)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else { return nil }
            if n == 0 { break }
            guard buffer.withUnsafeBytes({ EVP_DigestUpdate(context, $0.baseAddress, n) }) == 1 else { return nil }
        }
        var digest = [UInt8](repeating: 0, count: 32)
        var length: UInt32 = 0
        guard EVP_DigestFinal_ex(context, &digest, &length) == 1, length == 32 else { return nil }
        return digest
    }
}
