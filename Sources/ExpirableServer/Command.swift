import ExpirableRESP

/// A request, checked for its name and arity. Its arguments stay in the request's words (positions in the
/// receive buffer) until needed, so answering a GET from memory makes no String.
enum Command {
    /// PING, echoing word 1 if there is one.
    case ping(echo: Bool)
    /// The name is word 1 for these.
    case get, fetch, ttl, clear
    case clearAll
    case list
    /// INFO, about the expirable named by word 1 if there is one.
    case info(named: Bool)
    case quit
    /// The cluster's members, one line each.
    case cluster
    /// redis-benchmark and some clients ask for server settings first; the daemon has none to give.
    case configGet

    static let usage = "PING, GET name, FETCH name, TTL name, CLEAR name, CLEARALL, LIST, INFO [name], CLUSTER"

    /// The command `words` spell, or the error reply to send.
    static func parse(_ words: RESPCommandWords) -> Result<Command, ReplyError> {
        guard words.count > 0 else { return .failure(.init("ERR empty command; expected \(usage)")) }
        let arguments = words.count - 1
        func named(_ command: Command, _ spelled: String) -> Result<Command, ReplyError> {
            arguments == 1 ? .success(command) : arity(spelled, "\(spelled) name")
        }
        if words.word(0, is: "GET") { return named(.get, "GET") }
        if words.word(0, is: "FETCH") { return named(.fetch, "FETCH") }
        if words.word(0, is: "TTL") { return named(.ttl, "TTL") }
        if words.word(0, is: "PING") { return arguments <= 1 ? .success(.ping(echo: arguments == 1)) : arity("PING", "PING [message]") }
        if words.word(0, is: "CLEAR") { return named(.clear, "CLEAR") }
        if words.word(0, is: "CLEARALL") { return arguments == 0 ? .success(.clearAll) : arity("CLEARALL", "CLEARALL") }
        if words.word(0, is: "LIST") { return arguments == 0 ? .success(.list) : arity("LIST", "LIST") }
        if words.word(0, is: "INFO") { return arguments <= 1 ? .success(.info(named: arguments == 1)) : arity("INFO", "INFO [name]") }
        if words.word(0, is: "QUIT") { return .success(.quit) }
        if words.word(0, is: "CLUSTER") { return arguments == 0 ? .success(.cluster) : arity("CLUSTER", "CLUSTER") }
        if words.word(0, is: "CONFIG"), arguments >= 1, words.word(1, is: "GET") { return .success(.configGet) }
        return .failure(.init("ERR unknown command '\(String(words.string(0).prefix(64)))'; expected \(usage)"))
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
