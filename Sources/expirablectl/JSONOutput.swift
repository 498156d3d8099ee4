import Foundation

/// `--json` output, shared by every reading command: one JSON document on one line, keys sorted.
enum JSONOutput {
    /// Prints `object` (dictionaries, arrays, strings, numbers, booleans, NSNull) and a newline.
    static func print(_ object: Any) throws {
        let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
        printOut(Array(data) + [UInt8(ascii: "\n")])
    }

    /// Keys whose values are words or names, kept as strings whatever they look like (a node may be named "1").
    static let textKeys: Set<String> = [
        "name", "node", "owner", "replica", "state", "scope", "refresh", "address", "certificate", "tls", "config",
        "error", "clock_error", "last_error", "last_error_class", "isolation", "socket", "version", "daemon",
        "before_expiry", "plugin",
    ]

    /// An expirable's INFO fields as `status --json` prints them: `typed`, and each key of one type whatever the
    /// configuration. before_expiry and jitter, a duration or a share of the lifetime, become `KEY_ms` or
    /// `KEY_percent`, numbers both; retry_backoff_ms is absent when off; a `_ms` field that is not a number
    /// (`never`, `none`) is null.
    static func status(_ fields: [String: String]) -> [String: Any] {
        var fields = fields
        for lead in ["before_expiry", "jitter"] {
            guard let value = fields.removeValue(forKey: lead) else { continue }
            if value.hasSuffix("%") {
                fields[lead + "_percent"] = String(value.dropLast())
            } else {
                fields[lead + "_ms"] = value
            }
        }
        if fields["retry_backoff_ms"] == "off" { fields["retry_backoff_ms"] = nil }
        var object = typed(fields)
        for (key, value) in object where key.hasSuffix("_ms") && !(value is NSNull) && Int64(fields[key] ?? "") == nil {
            object[key] = NSNull()
        }
        return object
    }

    /// Keys of a CLUSTER member that are numbers: when the daemon does not know one (`-`: this node's time since
    /// last heard, a peer never heard from), it is null, not a string.
    static let clusterNumberKeys: Set<String> = ["last_heard_ms", "clock_offset_ms", "rtt_ms", "queue"]

    /// A member's CLUSTER fields as `cluster --json` prints them: `typed`, with the daemon's `-` (unknown, or not
    /// applicable: this node's own certificate and TLS version) as null, so each key has one type.
    static func clusterMember(_ fields: [String: String]) -> [String: Any] {
        var object = typed(fields.filter { $0.value != "-" || $0.key == "node" })
        for key in fields.keys where key != "node" && fields[key] == "-" { object[key] = NSNull() }
        // Every member has every number key: one the daemon leaves out (this node has no queue) is null.
        for key in clusterNumberKeys where object[key] == nil || object[key] is String { object[key] = NSNull() }
        return object
    }

    /// The daemon's INFO or CLUSTER fields (`key:value` text) as typed JSON members: numbers as numbers, yes/no
    /// as booleans, `none` as null, everything else (and every key in `textKeys`) as the string it is.
    static func typed(_ fields: [String: String]) -> [String: Any] {
        var object: [String: Any] = [:]
        for (key, value) in fields {
            if textKeys.contains(key) {
                object[key] = value
            } else if let number = Int64(value) {
                object[key] = number
            } else if let number = Double(value), number.isFinite, value.first?.isNumber == true {
                object[key] = number
            } else if value == "yes" || value == "no" {
                object[key] = value == "yes"
            } else if value == "none" {
                object[key] = NSNull()
            } else {
                object[key] = value
            }
        }
        return object
    }
}
