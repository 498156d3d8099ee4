import CExpirableOpenSSL
import Glibc

/// Creates the cluster's certificate authority and node certificates with OpenSSL: P-256 keys, SHA-256
/// signatures, node certificates naming the node in both the common name and a DNS subjectAltName, usable for
/// TLS server and client authentication, valid from an hour before they are made (clocks disagree). Private keys
/// are written with mode 0600.
public enum Certificates {
    /// Creates a self-signed CA valid for `days`, writing `certificatePath` and `keyPath` (0600). Refuses to
    /// overwrite existing files.
    public static func makeAuthority(name: String, days: Int, certificatePath: String, keyPath: String) throws(TLSError) {
        try TLSError.loadOpenSSL()
        try refuseExisting([certificatePath, keyPath])
        let key = try generateKey()
        defer { EVP_PKEY_free(key) }
        let certificate = try makeCertificate(commonName: name, publicKey: key, notBeforeDays: 0, days: days)
        defer { X509_free(certificate) }
        let subject = X509_get_subject_name(certificate)
        X509_set_issuer_name(certificate, subject)
        try addExtensions(to: certificate, issuer: certificate, [
            (NID_basic_constraints, "critical,CA:TRUE,pathlen:0"),
            (NID_key_usage, "critical,keyCertSign,cRLSign"),
            (NID_subject_key_identifier, "hash"),
        ])
        guard X509_sign(certificate, key, EVP_sha256()) > 0 else { throw .openSSL("cannot sign the CA certificate") }
        try write(certificate: certificate, to: certificatePath)
        try write(key: key, to: keyPath)
    }

    /// Creates a certificate for node `node`, signed by the CA in `authorityCertificatePath`/`authorityKeyPath`.
    /// `notBeforeDays` shifts the start of validity (negative: in the past), so tests can make expired ones.
    public static func makeNode(
        _ node: String, authorityCertificatePath: String, authorityKeyPath: String, days: Int, notBeforeDays: Int = 0,
        certificatePath: String, keyPath: String
    ) throws(TLSError) {
        try TLSError.loadOpenSSL()
        try refuseExisting([certificatePath, keyPath])
        let authority = try readCertificate(authorityCertificatePath)
        defer { X509_free(authority) }
        let authorityKey = try readKey(authorityKeyPath)
        defer { EVP_PKEY_free(authorityKey) }
        let key = try generateKey()
        defer { EVP_PKEY_free(key) }
        let certificate = try makeCertificate(commonName: node, publicKey: key, notBeforeDays: notBeforeDays, days: days)
        defer { X509_free(certificate) }
        X509_set_issuer_name(certificate, X509_get_subject_name(authority))
        try addExtensions(to: certificate, issuer: authority, [
            (NID_basic_constraints, "critical,CA:FALSE"),
            (NID_key_usage, "critical,digitalSignature,keyEncipherment"),
            (NID_ext_key_usage, "serverAuth,clientAuth"),
            (NID_subject_alt_name, "DNS:\(node)"),
            (NID_subject_key_identifier, "hash"),
            (NID_authority_key_identifier, "keyid"),
        ])
        guard X509_sign(certificate, authorityKey, EVP_sha256()) > 0 else { throw .openSSL("cannot sign the certificate for \(node)") }
        try write(certificate: certificate, to: certificatePath)
        try write(key: key, to: keyPath)
    }

    /// The names (DNS subjectAltNames, then the common name, each once) in the PEM certificate at `path`.
    public static func names(inCertificateAt path: String) throws(TLSError) -> [String] {
        try TLSError.loadOpenSSL()
        let certificate = try readCertificate(path)
        defer { X509_free(certificate) }
        return TLSConnection.names(of: certificate)
    }

    /// How long before it is made a certificate becomes valid, in seconds (SPEC §4.15).
    public static let backdating = 3600

    // MARK: Pieces

    private static func refuseExisting(_ paths: [String]) throws(TLSError) {
        for path in paths where access(path, F_OK) == 0 {
            throw TLSError("\(path) already exists; remove it first or choose another path")
        }
    }

    private static func generateKey() throws(TLSError) -> OpaquePointer {
        ERR_clear_error()
        guard let context = EVP_PKEY_CTX_new_id(EVP_PKEY_EC, nil) else { throw .openSSL("cannot create a key generator") }
        defer { EVP_PKEY_CTX_free(context) }
        var key: OpaquePointer?
        guard EVP_PKEY_keygen_init(context) > 0,
              EVP_PKEY_CTX_set_ec_paramgen_curve_nid(context, NID_X9_62_prime256v1) > 0,
              EVP_PKEY_keygen(context, &key) > 0, let key
        else { throw .openSSL("cannot generate a P-256 key") }
        return key
    }

    private static func makeCertificate(commonName: String, publicKey: OpaquePointer, notBeforeDays: Int, days: Int) throws(TLSError) -> OpaquePointer {
        guard let certificate = X509_new() else { throw .openSSL("cannot create a certificate") }
        X509_set_version(certificate, 2)
        var serial = [UInt8](repeating: 0, count: 16)
        guard RAND_bytes(&serial, Int32(serial.count)) == 1 else {
            X509_free(certificate)
            throw .openSSL("cannot draw a serial number")
        }
        serial[0] &= 0x7F
        if let number = BN_bin2bn(serial, Int32(serial.count), nil) {
            BN_to_ASN1_INTEGER(number, X509_get_serialNumber(certificate))
            BN_free(number)
        }
        // Valid from an hour before it is made: a node whose clock is minutes behind the machine that made it
        // accepts it at once instead of refusing every peer until the certificate is as old as its error.
        X509_gmtime_adj(X509_getm_notBefore(certificate), notBeforeDays * 86_400 - Certificates.backdating)
        X509_gmtime_adj(X509_getm_notAfter(certificate), (notBeforeDays + days) * 86_400)
        X509_set_pubkey(certificate, publicKey)
        let subject = X509_get_subject_name(certificate)
        // UTF-8, so a CA name outside ASCII is stored as its characters (MBSTRING_ASC took each byte for one).
        X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_UTF8, commonName, -1, -1, 0)
        return certificate
    }

    private static func addExtensions(to certificate: OpaquePointer, issuer: OpaquePointer, _ extensions: [(Int32, String)]) throws(TLSError) {
        var context = X509V3_CTX()
        CExpirableX509V3_set_ctx_nodb(&context)
        X509V3_set_ctx(&context, issuer, certificate, nil, nil, 0)
        for (nid, value) in extensions {
            guard let ext = X509V3_EXT_conf_nid(nil, &context, nid, value) else { throw .openSSL("cannot make extension \(value)") }
            X509_add_ext(certificate, ext, -1)
            X509_EXTENSION_free(ext)
        }
    }

    private static func readCertificate(_ path: String) throws(TLSError) -> OpaquePointer {
        ERR_clear_error()
        guard let bio = BIO_new_file(path, "r") else { throw .openSSL("cannot open \(path)") }
        defer { BIO_free(bio) }
        guard let certificate = PEM_read_bio_X509(bio, nil, nil, nil) else { throw .openSSL("\(path) holds no PEM certificate") }
        return certificate
    }

    private static func readKey(_ path: String) throws(TLSError) -> OpaquePointer {
        ERR_clear_error()
        guard let bio = BIO_new_file(path, "r") else { throw .openSSL("cannot open \(path)") }
        defer { BIO_free(bio) }
        guard let key = PEM_read_bio_PrivateKey(bio, nil, nil, nil) else { throw .openSSL("\(path) holds no PEM private key") }
        return key
    }

    private static func write(certificate: OpaquePointer, to path: String) throws(TLSError) {
        guard let bio = BIO_new_file(path, "w") else { throw .openSSL("cannot create \(path)") }
        defer { BIO_free(bio) }
        guard PEM_write_bio_X509(bio, certificate) == 1 else { throw .openSSL("cannot write \(path)") }
        chmod(path, 0o644)
    }

    private static func write(key: OpaquePointer, to path: String) throws(TLSError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw TLSError("cannot create \(path): \(String(cString: strerror(errno)))") }
        fchmod(fd, 0o600)
        guard let bio = BIO_new_fd(fd, BIO_CLOSE) else {
            close(fd)
            throw .openSSL("cannot write \(path)")
        }
        defer { BIO_free(bio) }
        guard PEM_write_bio_PrivateKey(bio, key, nil, nil, 0, nil, nil) == 1 else { throw .openSSL("cannot write \(path)") }
    }
}
