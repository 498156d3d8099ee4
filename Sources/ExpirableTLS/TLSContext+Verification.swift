import CExpirableOpenSSL
#if canImport(Glibc)
import Glibc
#endif

extension TLSContext {
    /// Verifies this node's own certificate, with the intermediates its file holds, against the CA as its peers
    /// will (OpenSSL's `X509_verify_cert`, now): a certificate another CA signed, or one out of its dates, would
    /// start a node that never links ("certificate verify failed" on its dials, "unknown ca" on its peers), so it
    /// is refused at start and by check-config instead, naming the key to fix.
    func verifyOwnCertificate(node: String, caPath: String, certificatePath: String) throws(TLSError) {
        ERR_clear_error()
        guard let certificate = SSL_CTX_get0_certificate(context), let store = SSL_CTX_get_cert_store(context),
              let verification = X509_STORE_CTX_new()
        else { throw .openSSL("cluster.cert \(certificatePath) cannot be verified", key: "cert") }
        defer { X509_STORE_CTX_free(verification) }
        var chain: OpaquePointer?
        _ = CExpirableSSL_CTX_get0_chain_certs(context, &chain)
        guard X509_STORE_CTX_init(verification, store, certificate, chain) == 1 else {
            throw .openSSL("cluster.cert \(certificatePath) cannot be verified", key: "cert")
        }
        if X509_verify_cert(verification) == 1 { return }
        let code = X509_STORE_CTX_get_error(verification)
        let reason = String(cString: X509_verify_cert_error_string(Int(code)))
        let depth = X509_STORE_CTX_get_error_depth(verification)
        let failing = X509_STORE_CTX_get_current_cert(verification)
        ERR_clear_error()
        let remake = "make a new one with `expirablectl cert node \(node) --dir DIR`, DIR holding the CA's ca.pem and ca.key"
        switch code {
        case X509_V_ERR_CERT_HAS_EXPIRED, X509_V_ERR_CERT_NOT_YET_VALID:
            let (from, until) = failing.map { (Self.text(X509_getm_notBefore($0)), Self.text(X509_getm_notAfter($0))) } ?? ("?", "?")
            let when = code == X509_V_ERR_CERT_HAS_EXPIRED ? "expired on \(until)" : "is not valid yet"
            if depth == 0 {
                let fix = code == X509_V_ERR_CERT_HAS_EXPIRED ? remake : "check this machine's clock, or \(remake)"
                throw TLSError("cluster.cert \(certificatePath) \(when) (valid from \(from) to \(until)); \(fix)", key: "cert")
            }
            let name = failing.map(Self.commonName) ?? "?"
            throw TLSError("cluster.cert \(certificatePath) chains to the CA certificate \"\(name)\", which \(when) (valid from \(from) to \(until)); cluster.ca \(caPath) needs a CA valid now: make one (`expirablectl cert ca`) and node certificates it signs, or check this machine's clock", key: "ca")
        case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY, X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT, X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE,
             X509_V_ERR_CERT_SIGNATURE_FAILURE, X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT, X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
            throw TLSError("cluster.cert \(certificatePath) is not signed by cluster.ca \(caPath) (OpenSSL: \(reason)); sign it with that CA (`expirablectl cert node \(node) --dir DIR`, DIR holding that CA's ca.pem and ca.key) or point cluster.ca at the CA that signed it", key: "cert")
        default:
            throw TLSError("cluster.cert \(certificatePath) does not verify against cluster.ca \(caPath) (OpenSSL: \(reason)), so peers would refuse it; \(remake), or point cluster.ca at the CA that signed it", key: "cert")
        }
    }

    /// `time` as "2026-01-02 03:04:05 UTC".
    private static func text(_ time: UnsafeMutablePointer<ASN1_TIME>?) -> String {
        var parts = tm()
        guard let time, ASN1_TIME_to_tm(time, &parts) == 1 else { return "?" }
        func two(_ n: Int32) -> String { n < 10 ? "0\(n)" : "\(n)" }
        return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday)) \(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)) UTC"
    }

    private static func commonName(_ certificate: OpaquePointer) -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard let subject = X509_get_subject_name(certificate),
              X509_NAME_get_text_by_NID(subject, NID_commonName, &buffer, Int32(buffer.count)) > 0 else { return "?" }
        return buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }
}
