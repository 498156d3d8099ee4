/// The top-level members of a program's JSON output. A small reader of its own, because Foundation's JSON
/// parser would load Foundation (about 9 MB of resident memory) into every daemon that uses this plugin.
/// It accepts exactly RFC 8259 JSON; nested arrays and objects are checked and kept only as "other".
enum JSONMember {
    case string(String)
    /// The member named as the secret one (the value): its decoded bytes, zeroed when dropped, never a String.
    case secret(SecretBuffer)
    case number(Double, exact: Int64?)  // `exact` when the text is an integer that fits
    case bool(Bool)
    case null
    case other
}

struct JSONError: Error {}

/// Parses `bytes` as one JSON object and returns its members (a repeated key keeps its last value). A string
/// member named `secretKey` comes as `.secret`: the output's value is never copied into a String, whose memory
/// could not be wiped.
func parseJSONObject(_ bytes: UnsafeRawBufferPointer, secretKey: String? = nil) throws(JSONError) -> [String: JSONMember] {
    var reader = JSONReader(bytes: bytes)
    reader.skipSpace()
    guard reader.peek == UInt8(ascii: "{") else { throw JSONError() }
    var members: [String: JSONMember] = [:]
    try reader.object(secretKey: secretKey) { key, value in members[key] = value }
    reader.skipSpace()
    guard reader.atEnd else { throw JSONError() }
    return members
}

private struct JSONReader {
    let bytes: UnsafeRawBufferPointer
    var index = 0
    var depth = 0

    init(bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    var atEnd: Bool { index == bytes.count }
    var peek: UInt8? { index < bytes.count ? bytes[index] : nil }

    mutating func skipSpace() {
        while let b = peek, b == 0x20 || b == 0x09 || b == 0x0A || b == 0x0D { index += 1 }
    }

    mutating func expect(_ byte: UInt8) throws(JSONError) {
        guard peek == byte else { throw JSONError() }
        index += 1
    }

    mutating func object(secretKey: String? = nil, _ member: (String, JSONMember) -> Void) throws(JSONError) {
        try expect(UInt8(ascii: "{"))
        depth += 1
        guard depth <= 64 else { throw JSONError() }
        skipSpace()
        if peek == UInt8(ascii: "}") { index += 1; depth -= 1; return }
        while true {
            skipSpace()
            let key = try string()
            skipSpace()
            try expect(UInt8(ascii: ":"))
            skipSpace()
            if key == secretKey, peek == UInt8(ascii: "\"") {
                member(key, .secret(try stringBytes()))
            } else {
                member(key, try value())
            }
            skipSpace()
            if peek == UInt8(ascii: ",") { index += 1; continue }
            try expect(UInt8(ascii: "}"))
            depth -= 1
            return
        }
    }

    mutating func array() throws(JSONError) {
        try expect(UInt8(ascii: "["))
        depth += 1
        guard depth <= 64 else { throw JSONError() }
        skipSpace()
        if peek == UInt8(ascii: "]") { index += 1; depth -= 1; return }
        while true {
            _ = try value()
            skipSpace()
            if peek == UInt8(ascii: ",") { index += 1; continue }
            try expect(UInt8(ascii: "]"))
            depth -= 1
            return
        }
    }

    mutating func value() throws(JSONError) -> JSONMember {
        skipSpace()
        switch peek {
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "{"): try object { _, _ in }; return .other
        case UInt8(ascii: "["): try array(); return .other
        case UInt8(ascii: "t"): try word("true"); return .bool(true)
        case UInt8(ascii: "f"): try word("false"); return .bool(false)
        case UInt8(ascii: "n"): try word("null"); return .null
        default: return try number()
        }
    }

    mutating func word(_ text: StaticString) throws(JSONError) {
        let expected = UnsafeBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount)
        guard bytes.count - index >= expected.count, bytes[index..<index + expected.count].elementsEqual(expected) else {
            throw JSONError()
        }
        index += expected.count
    }

    mutating func number() throws(JSONError) -> JSONMember {
        let start = index
        var integral = true
        if peek == UInt8(ascii: "-") { index += 1 }
        if peek == UInt8(ascii: "0") {
            index += 1
        } else {
            guard try digits() > 0 else { throw JSONError() }
        }
        if peek == UInt8(ascii: ".") {
            index += 1
            integral = false
            guard try digits() > 0 else { throw JSONError() }
        }
        if peek == UInt8(ascii: "e") || peek == UInt8(ascii: "E") {
            index += 1
            integral = false
            if peek == UInt8(ascii: "+") || peek == UInt8(ascii: "-") { index += 1 }
            guard try digits() > 0 else { throw JSONError() }
        }
        let text = String(decoding: bytes[start..<index], as: UTF8.self)
        guard let double = Double(text) else { throw JSONError() }
        return .number(double, exact: integral ? Int64(text) : nil)
    }

    mutating func digits() throws(JSONError) -> Int {
        var count = 0
        while let b = peek, b >= UInt8(ascii: "0"), b <= UInt8(ascii: "9") { index += 1; count += 1 }
        return count
    }

    mutating func string() throws(JSONError) -> String {
        let decoded = try stringBytes()
        return decoded.withUnsafeBytes { String(decoding: $0, as: UTF8.self) }
    }

    /// A string's decoded bytes, checked to be UTF-8. Decoding never lengthens a string, so the buffer is sized
    /// once and never grows.
    mutating func stringBytes() throws(JSONError) -> SecretBuffer {
        try expect(UInt8(ascii: "\""))
        let decoded = SecretBuffer(capacity: bytes.count - index)
        var run = index  // start of the bytes not yet copied
        while let b = peek {
            switch b {
            case UInt8(ascii: "\""):
                decoded.append(UnsafeRawBufferPointer(rebasing: bytes[run..<index]))
                index += 1
                // Raw runs are valid UTF-8 pieces and escapes add whole scalars, so checking the result is
                // checking every run.
                guard decoded.isValidUTF8 else { throw JSONError() }
                return decoded
            case UInt8(ascii: "\\"):
                decoded.append(UnsafeRawBufferPointer(rebasing: bytes[run..<index]))
                index += 1
                decoded.append(try escape())
                run = index
            case 0..<0x20:
                throw JSONError()
            default:
                index += 1
            }
        }
        throw JSONError()
    }

    mutating func escape() throws(JSONError) -> Unicode.Scalar {
        guard let b = peek else { throw JSONError() }
        index += 1
        switch b {
        case UInt8(ascii: "\""): return "\""
        case UInt8(ascii: "\\"): return "\\"
        case UInt8(ascii: "/"): return "/"
        case UInt8(ascii: "b"): return "\u{08}"
        case UInt8(ascii: "f"): return "\u{0C}"
        case UInt8(ascii: "n"): return "\n"
        case UInt8(ascii: "r"): return "\r"
        case UInt8(ascii: "t"): return "\t"
        case UInt8(ascii: "u"):
            let unit = try hex4()
            if (0xD800..<0xDC00).contains(unit) {
                try word("\\u")
                let low = try hex4()
                guard (0xDC00..<0xE000).contains(low) else { throw JSONError() }
                let combined = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
                guard let scalar = Unicode.Scalar(combined) else { throw JSONError() }
                return scalar
            }
            guard let scalar = Unicode.Scalar(unit) else { throw JSONError() }  // a lone low surrogate
            return scalar
        default:
            throw JSONError()
        }
    }

    mutating func hex4() throws(JSONError) -> UInt32 {
        guard bytes.count - index >= 4 else { throw JSONError() }
        var value: UInt32 = 0
        for _ in 0..<4 {
            guard let nibble = hexValue(bytes[index]) else { throw JSONError() }
            value = value << 4 | nibble
            index += 1
        }
        return value
    }

    private func hexValue(_ b: UInt8) -> UInt32? {
        switch b {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return UInt32(b - UInt8(ascii: "0"))
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return UInt32(b - UInt8(ascii: "a") + 10)
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return UInt32(b - UInt8(ascii: "A") + 10)
        default: return nil
        }
    }
}
