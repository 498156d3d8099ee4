import ExpirableCore
import ExpirableTOML
#if canImport(Glibc)
import Glibc
#endif

/// `allow` and `[server] admins` (SPEC §9): arrays of `uid:N`, `gid:N`, `user:NAME`, `group:NAME`, `exe:PATH`
/// and `exe:PATH sha256:HEX`. Users and groups are looked up and executables' paths resolved now, so a typo is
/// refused at start (or reload) with the file and line, not discovered as a refused reader later.
extension ConfigurationDecoder {
    static let accessForms = "\"uid:1000\", \"gid:50\", \"user:NAME\", \"group:NAME\", \"exe:/ABSOLUTE/PATH\" or \"exe:/ABSOLUTE/PATH sha256:64-HEX-DIGITS\""

    func accessRules(_ v: TOMLValue, at: [String], allowEmpty: Bool) throws(ConfigurationError) -> [AccessRule] {
        guard let array = v.array else {
            throw error(at, "expected an array of strings such as [\"user:www-data\", \"exe:/usr/bin/app\"], got \(show(v))")
        }
        if array.isEmpty && !allowEmpty {
            throw error(at, "is empty, which would let no one read; name who may (\(ConfigurationDecoder.accessForms)), or remove allow to let anyone who can open the socket read")
        }
        var rules: [AccessRule] = []
        for element in array {
            guard let text = element.string else {
                throw error(at, "expected strings such as \"user:www-data\", found an element \(show(element))")
            }
            let rule = try accessRule(text, at: at)
            if !rules.contains(rule) { rules.append(rule) }
        }
        return rules
    }

    private func accessRule(_ text: String, at: [String]) throws(ConfigurationError) -> AccessRule {
        guard let colon = text.firstIndex(of: ":") else {
            throw error(at, "\(ConfigurationError.quoted(text)) has no kind; expected \(ConfigurationDecoder.accessForms)")
        }
        let kind = text[..<colon]
        let rest = String(text[text.index(after: colon)...])
        switch kind {
        case "uid", "gid":
            guard !rest.isEmpty, rest.utf8.count <= 10, rest.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
                  let id = UInt32(rest), id != UInt32.max else {
                throw error(at, "\(ConfigurationError.quoted(text)): expected a decimal \(kind) such as \"\(kind):1000\"")
            }
            return AccessRule(kind == "uid" ? .uid(id) : .gid(id), spelled: text)
        case "user":
            guard let uid = ConfigurationDecoder.lookUpUser(rest) else {
                throw error(at, "\(ConfigurationError.quoted(text)): no user \(ConfigurationError.quoted(rest)) on this machine; name an existing user (getent passwd) or write uid:N")
            }
            return AccessRule(.uid(uid), spelled: text)
        case "group":
            guard let gid = ConfigurationDecoder.lookUpGroup(rest) else {
                throw error(at, "\(ConfigurationError.quoted(text)): no group \(ConfigurationError.quoted(rest)) on this machine; name an existing group (getent group) or write gid:N")
            }
            return AccessRule(.gid(gid), spelled: text)
        case "exe":
            var path = rest
            var digest: [UInt8]?
            if let space = rest.ranges(of: " sha256:").last {
                let hex = rest[space.upperBound...]
                guard hex.utf8.count == 64, let bytes = ConfigurationDecoder.hexBytes(hex) else {
                    throw error(at, "\(ConfigurationError.quoted(text)): expected sha256: followed by 64 hexadecimal digits (sha256sum PATH prints them)")
                }
                path = String(rest[..<space.lowerBound])
                digest = bytes
            }
            guard path.hasPrefix("/"), !path.contains("\0") else {
                throw error(at, "\(ConfigurationError.quoted(text)): expected an absolute path to an executable, as \"exe:/usr/bin/app\"")
            }
            // The peer's executable is known by its real path (/proc/PID/exe): links in the rule are resolved now.
            guard let real = realpath(path, nil) else {
                let reason = String(cString: strerror(errno))
                throw error(at, "\(ConfigurationError.quoted(text)): cannot resolve \(path): \(reason); an exe rule names an executable that exists, by its path")
            }
            defer { free(real) }
            return AccessRule(.exe(path: String(cString: real), sha256: digest), spelled: text)
        default:
            throw error(at, "\(ConfigurationError.quoted(text)): unknown kind \(ConfigurationError.quoted(String(kind))); expected \(ConfigurationDecoder.accessForms)")
        }
    }

    static func hexBytes(_ hex: Substring) -> [UInt8]? {
        var bytes: [UInt8] = []
        var high: UInt8?
        for c in hex.utf8 {
            let nibble: UInt8
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): nibble = c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): nibble = c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): nibble = c - UInt8(ascii: "A") + 10
            default: return nil
            }
            if let h = high {
                bytes.append(h << 4 | nibble)
                high = nil
            } else {
                high = nibble
            }
        }
        return high == nil ? bytes : nil
    }

    static func lookUpUser(_ name: String) -> UInt32? {
        guard !name.isEmpty else { return nil }
        var entry = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 16 * 1024)
        guard getpwnam_r(name, &entry, &buffer, buffer.count, &result) == 0, result != nil else { return nil }
        return entry.pw_uid
    }

    static func lookUpGroup(_ name: String) -> UInt32? {
        guard !name.isEmpty else { return nil }
        var entry = group()
        var result: UnsafeMutablePointer<group>?
        var buffer = [CChar](repeating: 0, count: 64 * 1024)
        guard getgrnam_r(name, &entry, &buffer, buffer.count, &result) == 0, result != nil else { return nil }
        return entry.gr_gid
    }
}
