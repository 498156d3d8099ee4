import Foundation

/// Commands over a `RawConnection` answered as text, for tests that time a request: a connection opened
/// beforehand takes no process start-up into the timed span, as `DaemonProcess.redis` (timeout + redis-cli) does.
public extension RawConnection {
    /// Sends `arguments` as one RESP command and returns the reply as redis-cli prints it outside a terminal: a
    /// bulk or simple string's text, an error's message, an integer's digits, "" for a nil, an array's elements
    /// one a line; "(no reply)" if none came (closed, or 10 s passed).
    func redisReply(_ arguments: String...) -> String {
        RawConnection.plainText(of: roundTrip(RawConnection.command(arguments), expecting: 1))
    }

    /// `arguments` as a RESP array of bulk strings.
    static func command(_ arguments: [String]) -> String {
        "*\(arguments.count)\r\n" + arguments.map { "$\($0.utf8.count)\r\n\($0)\r\n" }.joined()
    }

    /// One RESP reply as redis-cli prints it outside a terminal (see `redisReply`).
    static func plainText(of reply: String) -> String {
        let bytes = Array(reply.utf8)
        guard !bytes.isEmpty else { return "(no reply)" }
        var index = 0
        func line() -> String? {
            guard let end = bytes[index...].firstIndex(of: 0x0A) else { return nil }
            var stop = end
            if stop > index, bytes[stop - 1] == 0x0D { stop -= 1 }
            let text = String(decoding: bytes[index..<stop], as: UTF8.self)
            index = end + 1
            return text
        }
        func value() -> [String] {
            guard index < bytes.count, let header = line(), let kind = header.first else { return [] }
            let rest = String(header.dropFirst())
            switch kind {
            case "$":
                let length = Int(rest) ?? -1
                guard length >= 0 else { return [""] }
                let end = min(bytes.count, index + length)
                let text = String(decoding: bytes[index..<end], as: UTF8.self)
                index = min(bytes.count, end + 2)
                return [text]
            case "*":
                let count = Int(rest) ?? 0
                return (0..<max(0, count)).flatMap { _ in value() }
            default:
                return [rest]
            }
        }
        return value().joined(separator: "\n")
    }
}
