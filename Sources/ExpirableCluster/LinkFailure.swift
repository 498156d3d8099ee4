import ExpirableTLS
import NIOCore
import NIOPosix
#if canImport(Glibc)
import Glibc
#endif

/// Why a cluster link failed, in words with what to check, for the log and `expirablectl cluster`'s NOTE,
/// instead of the dump of NIO's error values.
enum LinkFailure {
    /// Why dialing the peer at `address` (`host:port`) failed.
    static func dialing(_ address: String, _ error: any Error) -> String {
        if let connection = error as? NIOConnectionError {
            if let first = connection.connectionErrors.first { return dialing(address, first.error) }
            if connection.dnsAError != nil || connection.dnsAAAAError != nil {
                return "cannot resolve \(connection.host): check the peer's address in [cluster] peers"
            }
            return "cannot connect to \(address)"
        }
        if case ChannelError.connectTimeout(let amount) = error {
            return "no answer from \(address) within \(amount.nanoseconds / 1_000_000)ms: the host is down, or a firewall drops the connection"
        }
        if let io = error as? IOError {
            switch io.errnoCode {
            case ECONNREFUSED:
                return "\(address) refused the connection: no expirabled listens there (stopped, or its cluster.listen is another port)"
            case EHOSTUNREACH, ENETUNREACH:
                return "no route to \(address): check the network between the nodes"
            case ETIMEDOUT:
                return "no answer from \(address): the host is down, or a firewall drops the connection"
            default:
                return "cannot connect to \(address): \(String(cString: strerror(io.errnoCode)))"
            }
        }
        return "cannot connect to \(address): \(link(error))"
    }

    /// Why a link that was connected (handshaking or linked) failed.
    static func link(_ error: any Error) -> String {
        if let tls = error as? TLSError { return "TLS: \(tls.message)" }
        if let io = error as? IOError {
            switch io.errnoCode {
            case ECONNRESET: return "the peer reset the connection"
            case EPIPE: return "the peer closed the connection"
            default: return String(cString: strerror(io.errnoCode))
            }
        }
        if let channel = error as? ChannelError {
            switch channel {
            case .eof, .ioOnClosedChannel, .alreadyClosed, .outputClosed, .inputClosed: return "the link closed"
            default: break
            }
        }
        return "\(error)"
    }
}
