import ExpirableRESP
import NIOCore

/// A request, checked for its name and arity.
enum Command {
    case ping(ByteBuffer?)
    case get(String)
    case fetch(String)
    case ttl(String)
    case clear(String)
    case clearAll
    case list
    case info(String?)
    case quit
    /// redis-benchmark and some clients ask for server settings first; the daemon has none to give.
    case configGet

    static let usage = "PING, GET name, FETCH name, TTL name, CLEAR name, CLEARALL, LIST, INFO [name]"

    /// The command `request` spells, or the error reply to send.
    static func parse(_ request: RESPValue) -> Result<Command, ReplyError> {
        guard case .array(let words) = request, let first = words.first else {
            return .failure(.init("ERR expected a command as an array of bulk strings, e.g. GET name"))
        }
        var arguments: [ByteBuffer] = []
        arguments.reserveCapacity(words.count)
        for word in words {
            guard case .bulkString(let bytes) = word else {
                return .failure(.init("ERR expected a command as an array of bulk strings, e.g. GET name"))
            }
            arguments.append(bytes)
        }
        let name = String(buffer: arguments[0]).uppercased()
        let count = arguments.count - 1
        func one(_ make: (String) -> Command) -> Result<Command, ReplyError> {
            count == 1 ? .success(make(String(buffer: arguments[1]))) : arity(name, "\(name) name")
        }
        switch name {
        case "PING": return count <= 1 ? .success(.ping(count == 1 ? arguments[1] : nil)) : arity(name, "PING [message]")
        case "GET": return one(Command.get)
        case "FETCH": return one(Command.fetch)
        case "TTL": return one(Command.ttl)
        case "CLEAR": return one(Command.clear)
        case "CLEARALL": return count == 0 ? .success(.clearAll) : arity(name, "CLEARALL")
        case "LIST": return count == 0 ? .success(.list) : arity(name, "LIST")
        case "INFO": return count <= 1 ? .success(.info(count == 1 ? String(buffer: arguments[1]) : nil)) : arity(name, "INFO [name]")
        case "QUIT": return .success(.quit)
        case "CONFIG" where count >= 1 && String(buffer: arguments[1]).uppercased() == "GET": return .success(.configGet)
        default:
            _ = first
            return .failure(.init("ERR unknown command '\(String(String(buffer: arguments[0]).prefix(64)))'; expected \(usage)"))
        }
    }

    private static func arity(_ name: String, _ form: String) -> Result<Command, ReplyError> {
        .failure(.init("ERR wrong number of arguments for '\(name)'; expected \(form)"))
    }
}

/// An error reply: the first word is the kind (ERR, NOTFOUND, FETCH, TIMEOUT, NOPERM).
struct ReplyError: Error {
    let text: String
    init(_ text: String) { self.text = text }
}
