import CExpirableOpenSSL

/// A TLS failure: what went wrong, with OpenSSL's error queue (and the certificate verification result, when
/// there is one) appended so the log says why a peer was refused.
public struct TLSError: Error, Sendable, Hashable, CustomStringConvertible {
    public let message: String
    /// The `[cluster]` key naming the file the failure is about (`ca`, `cert` or `key`), so the daemon can name
    /// that key's line in the configuration; nil when it is about no one file.
    public let key: String?

    public init(_ message: String, key: String? = nil) {
        self.message = message
        self.key = key
    }

    /// Loads OpenSSL, which nothing links (CExpirableOpenSSL.h): a missing or too old libssl.so.3 is an error
    /// here, in words, before any OpenSSL call.
    public static func loadOpenSSL() throws(TLSError) {
        if let problem = openSSLProblem() { throw TLSError(problem) }
    }

    /// Loads OpenSSL: nil when it is usable, otherwise why not, in words.
    public static func openSSLProblem() -> String? {
        CExpirableOpenSSL_load().map { String(cString: $0) }
    }

    /// `what`, followed by everything on this thread's OpenSSL error queue (which it empties).
    static func openSSL(_ what: String, key: String? = nil) -> TLSError {
        let queue = TLSError.drainQueue()
        return TLSError(queue.isEmpty ? what : "\(what): \(queue.joined(separator: "; "))", key: key)
    }

    /// Empties this thread's OpenSSL error queue, returning its entries as text.
    static func drainQueue() -> [String] {
        var entries: [String] = []
        while true {
            let code = ERR_get_error()
            if code == 0 { break }
            var buffer = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(code, &buffer, buffer.count)
            entries.append(buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) })
        }
        return entries
    }

    public var description: String { message }
}
