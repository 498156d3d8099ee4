import CExpirableOpenSSL
import NIOCore

/// One TLS session driven through memory BIOs: ciphertext from the network goes in with `receive`, ciphertext
/// for the network comes out of `takeOutput`, and the plaintext side is `read`/`write`. Owns the `SSL*`.
/// Not thread-safe: used from its channel's event loop only.
final class TLSConnection {
    enum Step {
        case done
        case wantsInput
        case failed(TLSError)
    }

    private let ssl: OpaquePointer
    private let input: OpaquePointer
    private let output: OpaquePointer

    init(context: TLSContext, isServer: Bool) throws(TLSError) {
        guard let ssl = SSL_new(context.context) else { throw .openSSL("cannot create a TLS session") }
        guard let input = BIO_new(BIO_s_mem()), let output = BIO_new(BIO_s_mem()) else {
            SSL_free(ssl)
            throw .openSSL("cannot create TLS buffers")
        }
        SSL_set_bio(ssl, input, output)  // the SSL now owns both BIOs
        if isServer { SSL_set_accept_state(ssl) } else { SSL_set_connect_state(ssl) }
        self.ssl = ssl
        self.input = input
        self.output = output
    }

    deinit {
        SSL_free(ssl)
    }

    /// Feeds ciphertext received from the peer.
    func receive(_ buffer: ByteBuffer) {
        buffer.withUnsafeReadableBytes { bytes in
            var offset = 0
            while offset < bytes.count {
                let n = BIO_write(input, bytes.baseAddress! + offset, Int32(bytes.count - offset))
                if n <= 0 { break }
                offset += Int(n)
            }
        }
    }

    /// Advances the handshake.
    func handshake() -> Step {
        ERR_clear_error()
        let result = SSL_do_handshake(ssl)
        if result == 1 { return .done }
        return classify(result, during: "TLS handshake")
    }

    /// Why verifying the peer's certificate failed, if it did.
    var verificationFailure: String? {
        let result = SSL_get_verify_result(ssl)
        guard result != X509_V_OK else { return nil }
        return String(cString: X509_verify_cert_error_string(result))
    }

    /// The negotiated protocol, such as "TLSv1.3".
    var protocolVersion: String { String(cString: SSL_get_version(ssl)) }

    /// The DNS names in the peer certificate's subjectAltName and its subject's common name, each once.
    func peerNames() -> [String] {
        guard let certificate = SSL_get1_peer_certificate(ssl) else { return [] }
        defer { X509_free(certificate) }
        return TLSConnection.names(of: certificate)
    }

    /// The DNS subjectAltNames of `certificate`, then its common name, each once in that order: a node
    /// certificate names the node in both, and a message listing "node-b, node-b" reads as two names.
    static func names(of certificate: OpaquePointer) -> [String] {
        var names: [String] = []
        if let raw = X509_get_ext_d2i(certificate, NID_subject_alt_name, nil, nil) {
            let general = OpaquePointer(raw)
            for index in 0..<CExpirable_sk_GENERAL_NAME_num(general) {
                var length: Int32 = 0
                if let entry = CExpirable_sk_GENERAL_NAME_value(general, index), let dns = CExpirable_GENERAL_NAME_dns(entry, &length) {
                    names.append(String(decoding: UnsafeBufferPointer(start: dns, count: Int(length)), as: UTF8.self))
                }
            }
            GENERAL_NAMES_free(general)
        }
        if let subject = X509_get_subject_name(certificate) {
            var buffer = [CChar](repeating: 0, count: 256)
            let length = X509_NAME_get_text_by_NID(subject, NID_commonName, &buffer, Int32(buffer.count))
            if length > 0 { names.append(buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }) }
        }
        var seen: Set<String> = []
        return names.filter { seen.insert($0).inserted }
    }

    /// Encrypts `plaintext`; the ciphertext waits in `takeOutput`.
    func write(_ plaintext: ByteBuffer) -> TLSError? {
        ERR_clear_error()
        return plaintext.withUnsafeReadableBytes { bytes -> TLSError? in
            var offset = 0
            while offset < bytes.count {
                let n = SSL_write(ssl, bytes.baseAddress! + offset, Int32(bytes.count - offset))
                if n <= 0 {
                    if case .failed(let error) = classify(n, during: "TLS write") { return error }
                    return TLSError("TLS write stalled")
                }
                offset += Int(n)
            }
            return nil
        }
    }

    enum ReadResult {
        case data(ByteBuffer)
        case wantsInput
        case closed
        case failed(TLSError)
    }

    /// Decrypts whatever whole records have arrived.
    func read(allocator: ByteBufferAllocator) -> ReadResult {
        ERR_clear_error()
        var buffer = allocator.buffer(capacity: 16384)
        let n = buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: 16384) { out in
            Int(max(0, SSL_read(ssl, out.baseAddress, Int32(out.count))))
        }
        if n > 0 { return .data(buffer) }
        let error = SSL_get_error(ssl, 0)
        if error == SSL_ERROR_ZERO_RETURN { return .closed }
        if case .failed(let failure) = classify(0, during: "TLS read") { return .failed(failure) }
        return .wantsInput
    }

    /// Starts a clean close (close_notify).
    func shutdown() {
        ERR_clear_error()
        _ = SSL_shutdown(ssl)
    }

    /// Ciphertext waiting to go to the peer, if any.
    func takeOutput(allocator: ByteBufferAllocator) -> ByteBuffer? {
        let pending = Int(BIO_ctrl_pending(output))
        guard pending > 0 else { return nil }
        var buffer = allocator.buffer(capacity: pending)
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: pending) { out in
            Int(max(0, BIO_read(output, out.baseAddress, Int32(pending))))
        }
        return buffer
    }

    private func classify(_ result: Int32, during what: String) -> Step {
        switch SSL_get_error(ssl, result) {
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE:
            return .wantsInput
        case SSL_ERROR_ZERO_RETURN:
            return .failed(TLSError("\(what): the peer closed the TLS session"))
        default:
            var failure = TLSError.openSSL("\(what) failed")
            if let verification = verificationFailure {
                failure = TLSError("\(failure.message) (certificate verification: \(verification))")
            }
            return .failed(failure)
        }
    }
}
