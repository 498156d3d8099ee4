import NIOCore
#if canImport(Glibc)
import Glibc
#endif

/// Who is on the other end of a Unix-socket connection, from SO_PEERCRED (read once, on accept).
struct PeerCredentials: Sendable, Hashable, CustomStringConvertible {
    // The layout of Linux's `struct ucred`.
    var pid: Int32
    var uid: UInt32
    var gid: UInt32

    var description: String { "pid=\(pid) uid=\(uid) gid=\(gid)" }

    /// The credentials of `channel`'s peer, or nil if the socket cannot tell.
    static func of(_ channel: any Channel) -> EventLoopFuture<PeerCredentials?> {
        guard let provider = channel as? any SocketOptionProvider else {
            return channel.eventLoop.makeSucceededFuture(nil)
        }
        let future: EventLoopFuture<PeerCredentials> = provider.unsafeGetSocketOption(
            level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(SO_PEERCRED)
        )
        return future.map { Optional($0) }.recover { _ in nil }
    }
}
