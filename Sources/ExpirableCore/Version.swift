/// Expirable's version, kept here only: `expirabled --version`, `expirablectl --version` and the daemon's INFO
/// and HELLO all print this string.
public enum ExpirableVersion {
    /// The version of this source tree.
    public static let string = "0.1.0"
}
