/// One entry of an `allow` or `admins` list (SPEC §9): whom it names, resolved to numbers when the
/// configuration is read, and how it was written, for refusals and EXPLAIN. The engine keeps these with its
/// table; the server matches them against a connection's peer credentials.
public struct AccessRule: Sendable, Hashable, CustomStringConvertible {
    public enum Principal: Sendable, Hashable {
        /// The connection's SO_PEERCRED uid.
        case uid(UInt32)
        /// The connection's SO_PEERCRED gid, or one of the peer process's supplementary groups.
        case gid(UInt32)
        /// The real path of the peer's executable (/proc/PID/exe when it connected), which must lead the daemon
        /// to the very file the peer runs (same device and inode), and, if given, the SHA-256 of that file's
        /// contents, 32 bytes.
        case exe(path: String, sha256: [UInt8]?)
    }

    public let principal: Principal
    /// As written in the configuration: `user:www-data`, `exe:/usr/bin/app sha256:…`.
    public let spelled: String

    public init(_ principal: Principal, spelled: String) {
        self.principal = principal
        self.spelled = spelled
    }

    public var description: String { spelled }
}
