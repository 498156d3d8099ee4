import CExpirableOpenSSL
#if canImport(Glibc)
import Glibc
#endif

/// The TLS settings shared by every connection of a node: its certificate and key, the cluster CA that peers'
/// certificates must chain to, mutual authentication, TLS 1.2 at least (1.3 preferred, as OpenSSL negotiates).
/// Owns the `SSL_CTX`.
public final class TLSContext: @unchecked Sendable {
    // @unchecked: an SSL_CTX is safe to share once configured; nothing here changes after init.
    let context: OpaquePointer
    /// Problems that do not stop the node but should be logged (a private key readable by others).
    public let warnings: [String]

    /// Loads the CA, certificate and key from PEM files and checks that the key matches the certificate.
    public init(caPath: String, certificatePath: String, keyPath: String) throws(TLSError) {
        try TLSError.loadOpenSSL()
        ERR_clear_error()
        guard let context = SSL_CTX_new(TLS_method()) else { throw .openSSL("cannot create a TLS context") }
        self.context = context
        _ = CExpirableSSL_CTX_set_min_proto_version(context, CExpirableSSL_TLS1_2_VERSION())
        _ = CExpirableSSL_CTX_set_hardening_options(context)
        _ = CExpirableSSL_CTX_set_mode_partial_writes(context)
        guard SSL_CTX_use_certificate_chain_file(context, certificatePath) == 1 else {
            throw .openSSL("cluster.cert \(certificatePath) cannot be used as this node's certificate", key: "cert")
        }
        guard SSL_CTX_use_PrivateKey_file(context, keyPath, SSL_FILETYPE_PEM) == 1 else {
            throw .openSSL("cluster.key \(keyPath) cannot be used as this node's private key", key: "key")
        }
        guard SSL_CTX_check_private_key(context) == 1 else {
            throw .openSSL("cluster.key \(keyPath) does not match cluster.cert \(certificatePath)", key: "key")
        }
        guard SSL_CTX_load_verify_locations(context, caPath, nil) == 1 else {
            throw .openSSL("cluster.ca \(caPath) cannot be loaded as the cluster's certificate authority", key: "ca")
        }
        SSL_CTX_set_verify(context, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nil)
        var warnings: [String] = []
        var st = stat()
        if stat(keyPath, &st) == 0, st.st_mode & (S_IRWXG | S_IRWXO) != 0 {
            warnings.append("cluster.key \(keyPath) is readable by group or others (mode \(String(st.st_mode & 0o777, radix: 8))); chmod 600 \(keyPath)")
        }
        self.warnings = warnings
    }

    /// The context of cluster node `node`: as `init`, and the certificate must verify against the CA now (signed
    /// by it, within its dates) and name the node, as its peers will require.
    public convenience init(node: String, caPath: String, certificatePath: String, keyPath: String) throws(TLSError) {
        try self.init(caPath: caPath, certificatePath: certificatePath, keyPath: keyPath)
        try verifyOwnCertificate(node: node, caPath: caPath, certificatePath: certificatePath)
        let names: [String]
        do throws(TLSError) {
            names = try Certificates.names(inCertificateAt: certificatePath)
        } catch {
            throw TLSError(error.message, key: "cert")
        }
        guard names.contains(node) else {
            throw TLSError("cluster.cert \(certificatePath) names \(names.joined(separator: ", ")), not this node (cluster.node = \"\(node)\"); make one with `expirablectl cert node \(node)`", key: "cert")
        }
    }

    deinit {
        SSL_CTX_free(context)
    }
}
