import Foundation

/// Commands over an already open `RawConnection`, for tests that time an answer or must have a request reach the
/// daemon at a known moment: `daemon.redis(...)` starts two processes (timeout and redis-cli) per call, which on a
/// loaded machine can take longer than what such a test measures.
extension RawConnection {
    /// Sends `arguments` as one RESP command and returns its reply as `redis-cli` prints it when its output is not a
    /// terminal (what `DaemonProcess.redis` returns): a string as its text, an error as its message, an integer as
    /// its digits, a nil as nothing, an array as its elements one a line.
    public func roundTripCommand(_ arguments: String...) -> String {
        roundTripCommand(arguments)
    }

    public func roundTripCommand(_ arguments: [String]) -> String {
        RawConnection.redisCliText(roundTrip(RawConnection.command(arguments), expecting: 1))
    }

    /// `arguments` as one RESP command (an array of bulk strings), for `send` and `roundTrip`.
    public static func command(_ arguments: [String]) -> String {
        "*\(arguments.count)\r\n" + arguments.map { "$\($0.utf8.count)\r\n\($0)\r\n" }.joined()
    }

    public static func command(_ arguments: String...) -> String { command(arguments) }

    /// `roundTripCommand`, and the seconds from the request's write to its whole reply's arrival.
    public func timedRoundTripCommand(_ arguments: String...) -> (reply: String, seconds: Double) {
        let started = DispatchTime.now().uptimeNanoseconds
        let reply = roundTripCommand(arguments)
        return (reply, Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9)
    }

    /// One RESP reply as `redis-cli` prints it when its output is not a terminal, without the final newline.
    public static func redisCliText(_ reply: String) -> String {
        let bytes = Array(reply.utf8)
        var index = 0
        var lines: [String] = []
        func line() -> String? {
            guard let end = bytes[index...].firstIndex(of: 0x0A) else { return nil }
            var stop = end
            if stop > index && bytes[stop - 1] == 0x0D { stop -= 1 }
            defer { index = end + 1 }
            return String(decoding: bytes[index..<stop], as: UTF8.self)
        }
        func value() {
            guard index < bytes.count, let header = line(), let kind = header.first else { return }
            let rest = String(header.dropFirst())
            switch kind {
            case "$":
                let length = Int(rest) ?? -1
                guard length >= 0 else { lines.append(""); return }
                let end = min(bytes.count, index + length)
                lines.append(String(decoding: bytes[index..<end], as: UTF8.self))
                index = min(bytes.count, end + 2)
            case "*":
                for _ in 0..<max(0, Int(rest) ?? 0) { value() }
            default:  // + - : and anything else: the line's text
                lines.append(rest)
            }
        }
        value()
        return lines.joined(separator: "\n")
    }
}
