/// The rule for a cluster node's name, one for the configuration (`cluster.node`, the peers' names) and for
/// `expirablectl cert node`, which writes NAME.pem and NAME.key and puts the name in the certificate's CN and
/// DNS subjectAltName: a DNS-like name that is also a plain file name.
public enum NodeName {
    /// The rule in words, for errors and help.
    public static let rule = "1 to 64 letters, digits, '-', '_' and '.', beginning and ending with a letter or digit, no '..'"

    /// Why `name` is not a node name (the rule, with the name quoted), or nil when it is one.
    public static func problem(_ name: String) -> String? {
        let scalars = name.unicodeScalars
        func alphanumeric(_ s: Unicode.Scalar?) -> Bool {
            guard let s, s.isASCII else { return false }
            return ("a"..."z").contains(s) || ("A"..."Z").contains(s) || ("0"..."9").contains(s)
        }
        let fits = !scalars.isEmpty && scalars.count <= 64
            && scalars.allSatisfy { alphanumeric($0) || $0 == "-" || $0 == "_" || $0 == "." }
            && alphanumeric(scalars.first) && alphanumeric(scalars.last) && !name.contains("..")
        return fits ? nil : "expected a node name of \(rule), got \(ConfigurationError.quoted(name))"
    }
}
