import ArgumentParser
import ExpirableClient
import ExpirableCore
import Foundation
#if canImport(Glibc)
import Glibc
#endif

// Front ends for the credential protocols of programs that cannot speak RESP (SPEC §7): each fetches one value
// and prints it in the form its consumer runs a command for. Errors go to stderr with the exit statuses of the
// table in `expirablectl --help`; a value that is not in the form an adapter needs (not UTF-8 text among them)
// exits 65.

struct CredentialProcess: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "credential-process",
        abstract: "Print AWS credential_process JSON from a value that holds STS credentials.",
        discussion: """
            The value must hold the JSON that `aws sts assume-role`, `get-session-token` or \
            `get-federation-token` prints, {"Credentials": {"AccessKeyId", "SecretAccessKey", "SessionToken", \
            "Expiration"}, ...}, or the Credentials object alone: one value, so the three parts never rotate out of \
            step. Prints {"Version": 1, "AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration"}, Expiration \
            in ISO 8601 UTC: the credentials' own if the JSON has it, else the value's expiry (none for a value that \
            never expires). The JSON's Expiration is an ISO 8601 time, as STS writes it, or a number of seconds \
            since the epoch, or of milliseconds (Expirable's own unit, as expires_at) when over 100000000000. In \
            ~/.aws/config:

              [profile app]
              credential_process = expirablectl --socket /run/expirable/expirable.sock credential-process aws_app

            A value that is not such JSON exits 65.
            """
    )

    @Argument(help: "The expirable holding the STS JSON.") var name: String
    @OptionGroup var connection: Connection

    func run() async throws {
        try await reporting {
            let fetched = try await connection.client.fetch(name)
            let credentials = try AWSCredentials(try ValueText.of(fetched.bytes, name: name, carrier: "credential_process JSON"), name: name)
            var object: [String: Any] = [
                "Version": 1, "AccessKeyId": credentials.accessKeyId, "SecretAccessKey": credentials.secretAccessKey,
            ]
            if let token = credentials.sessionToken { object["SessionToken"] = token }
            if let expiration = credentials.expiration ?? fetched.expiryDate { object["Expiration"] = Timestamp.string(expiration) }
            try JSONOutput.print(object)
        }
    }
}

/// The parts of STS credentials that `credential_process` passes on.
struct AWSCredentials {
    /// A numeric Expiration above this is in milliseconds since the epoch, below it in seconds.
    static let millisecondsAbove = 100_000_000_000.0

    let accessKeyId: String
    let secretAccessKey: String
    let sessionToken: String?
    let expiration: Date?

    init(_ text: String, name: String) throws(AdapterError) {
        let form = "expected the JSON of `aws sts assume-role` ({\"Credentials\": {\"AccessKeyId\", \"SecretAccessKey\", \"SessionToken\", \"Expiration\"}}) or its Credentials object"
        guard let object = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] else {
            throw AdapterError("the value of \(name) is not a JSON object; \(form)")
        }
        let credentials = object["Credentials"] as? [String: Any] ?? object
        guard let id = credentials["AccessKeyId"] as? String, !id.isEmpty,
              let secret = credentials["SecretAccessKey"] as? String, !secret.isEmpty else {
            throw AdapterError("the value of \(name) has no AccessKeyId and SecretAccessKey strings; \(form)")
        }
        accessKeyId = id
        secretAccessKey = secret
        sessionToken = credentials["SessionToken"] as? String
        switch credentials["Expiration"] {
        case nil, is NSNull:
            expiration = nil
        case let text as String:
            guard let date = Timestamp.parse(text) else {
                throw AdapterError("the value of \(name) has an Expiration that is not an ISO 8601 time (\"2026-12-01T12:00:00Z\")")
            }
            expiration = date
        case let number as NSNumber where String(cString: number.objCType) != "c":
            // Seconds since the epoch, or milliseconds, the unit of Expirable's own times (expires_at, FETCH), which
            // read as seconds would be year 58000 and keep the SDK from ever asking again. Over 1e11 is
            // milliseconds: as seconds, year 5138; as milliseconds, 1973. `true` arrives as an NSNumber too (type
            // "c") and is no time.
            let value = number.doubleValue
            expiration = Date(timeIntervalSince1970: value > AWSCredentials.millisecondsAbove ? value / 1000 : value)
        default:
            throw AdapterError("the value of \(name) has an Expiration that is not an ISO 8601 time (\"2026-12-01T12:00:00Z\")")
        }
    }
}

struct ExecCredential: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "exec-credential",
        abstract: "Print a Kubernetes ExecCredential holding a value as its bearer token (kubectl, client-go).",
        discussion: """
            Prints {"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential", "status": {"token", \
            "expirationTimestamp"}}, the timestamp in RFC 3339 UTC (none for a value that never expires), so \
            client-go runs the command again once the token expires. In a kubeconfig:

              users:
              - name: app
                user:
                  exec:
                    apiVersion: client.authentication.k8s.io/v1
                    command: expirablectl
                    args: ["--socket", "/run/expirable/expirable.sock", "exec-credential", "k8s_token"]
                    interactiveMode: Never
            """
    )

    enum APIVersion: String, ExpressibleByArgument, CaseIterable {
        case v1, v1beta1
        var group: String { "client.authentication.k8s.io/\(rawValue)" }
    }

    @Argument(help: "The expirable holding the token.") var name: String
    @Option(name: .customLong("api-version"), help: "The ExecCredential version: v1 (client-go 1.22 and later) or v1beta1.")
    var apiVersion: APIVersion = .v1
    @OptionGroup var connection: Connection

    func run() async throws {
        try await reporting {
            let fetched = try await connection.client.fetch(name)
            let token = try ValueText.of(fetched.bytes, name: name, carrier: "an ExecCredential's JSON")
            var status: [String: Any] = ["token": try Lines.headerToken(token, name: name, what: "a bearer token")]
            if let expiry = fetched.expiryDate { status["expirationTimestamp"] = Timestamp.string(expiry) }
            try JSONOutput.print(["apiVersion": apiVersion.group, "kind": "ExecCredential", "status": status])
        }
    }
}

struct GitCredential: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "git-credential",
        abstract: "A git credential helper answering `get` with a value as the password.",
        discussion: """
            Reads git's request (key=value lines up to a blank line) and answers username, password and \
            password_expiry_utc (so git does not keep an expired password). The password is the value; a value that \
            is a JSON object {"username", "password"} gives both, and one without a "password" string is refused \
            (65), never sent whole. The username is --username if given, else the \
            JSON's, else x-access-token (what GitHub and Gitea accept with a token). `store` and `erase` are \
            accepted and ignored: the daemon owns the value. In ~/.gitconfig (or `git config`):

              [credential "https://github.com"]
                helper = "!expirablectl --socket /run/expirable/expirable.sock git-credential github_token"
            """
    )

    @Argument(help: "The expirable holding the password or token.") var name: String
    @Argument(help: "What git asks: get, store or erase.") var action: String
    @Option(help: "The username to answer (default: the value's, else x-access-token).") var username: String?
    @OptionGroup var connection: Connection

    func validate() throws { try Lines.option(username) }

    func run() async throws {
        // Read the request whatever the action: git writes it and expects it consumed. A request is a few short
        // lines ending in a blank one; at most 64 KiB of it is read, so endless input cannot hold this forever.
        _ = StandardInput.read(upTo: 65_536, untilBlankLine: true)
        guard action == "get" else { return }
        try await reporting {
            let fetched = try await connection.client.fetch(name)
            let login = try Login(fetched, name: name, username: username, carrier: "git's credential protocol")
            var answer = "username=\(login.username)\npassword=\(login.password)\n"
            if let expiry = fetched.expiryDate { answer += "password_expiry_utc=\(Int64(expiry.timeIntervalSince1970))\n" }
            printOut(Array(answer.utf8))
        }
    }
}

struct DockerCredential: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "docker-credential",
        abstract: "A docker credential helper answering `get` with a value as the registry secret.",
        discussion: """
            Speaks the docker-credential-helpers protocol: `get` reads the registry's server URL on stdin and \
            prints {"ServerURL", "Username", "Secret"}; `list` prints {}; `store` and `erase` are accepted and \
            ignored. The secret is the value, or a value's JSON {"username", "password"} (a JSON object without a \
            "password" string is refused, 65, never sent whole); the username is \
            --username, else the JSON's, else x-access-token (use --username AWS for ECR). Docker runs \
            docker-credential-SUFFIX, so install a wrapper as /usr/local/bin/docker-credential-expirable:

              #!/bin/sh
              exec expirablectl --socket /run/expirable/expirable.sock docker-credential registry_token "$@"

            and name it in ~/.docker/config.json: {"credHelpers": {"registry.example.com": "expirable"}}.
            """
    )

    @Argument(help: "The expirable holding the registry password or token.") var name: String
    @Argument(help: "What docker asks: get, list, store or erase.") var action: String
    @Option(help: "The username to answer (default: the value's, else x-access-token).") var username: String?
    @OptionGroup var connection: Connection

    func validate() throws { try Lines.option(username) }

    func run() async throws {
        // The server URL (get, erase) or a small JSON object (store): at most 64 KiB is read.
        let input = String(decoding: StandardInput.read(upTo: 65_536), as: UTF8.self)
        switch action {
        case "get":
            try await reporting {
                let fetched = try await connection.client.fetch(name)
                let login = try Login(fetched, name: name, username: username, carrier: "docker's credential JSON")
                try JSONOutput.print([
                    "ServerURL": input.trimmingCharacters(in: .whitespacesAndNewlines), "Username": login.username, "Secret": login.password,
                ])
            }
        case "list":
            printOut("{}")
        default:
            return
        }
    }
}

/// A username and password from a value: the value itself as the password, or a JSON object's two fields.
struct Login {
    let username: String
    let password: String

    /// `carrier` names the protocol the login goes out in, for the refusal of a value that is not UTF-8 text.
    init(_ fetched: FetchedValue, name: String, username: String?, carrier: String) throws(AdapterError) {
        var fromValue: String?
        var password = try ValueText.of(fetched.bytes, name: name, carrier: carrier)
        if password.first == "{",
           let object = (try? JSONSerialization.jsonObject(with: Data(password.utf8))) as? [String: Any] {
            if let secret = object["password"] as? String {
                password = secret
                fromValue = object["username"] as? String
            } else if object["password"] != nil {
                // A login object whose password is not a string is a mistake; sending the whole object as the
                // password would hand its other fields to the server too.
                throw AdapterError("the value of \(name) has a \"password\" that is not a string, so it cannot be sent in \(carrier); have the plugin write {\"username\": \"…\", \"password\": \"…\"}")
            } else {
                // Nor is an object without a password one (an OAuth token response whose value_key was left out,
                // say): sent whole, its refresh token and any other field would go to the server with it.
                throw AdapterError("the value of \(name) is a JSON object without a \"password\" string, so it is not sent in \(carrier): its other fields would go with it; have the plugin write {\"username\": \"…\", \"password\": \"…\"}, or keep only the token (for a token response, value_key = \"access_token\")")
            }
        }
        self.username = try Lines.single(username ?? fromValue ?? "x-access-token", name: name, what: "a username")
        self.password = try Lines.single(password, name: name, what: "a password")
    }
}

/// JSON and the credential protocols carry text: a value that is not UTF-8 would reach them as other bytes
/// (U+FFFD in place of each bad sequence), so it is refused instead; `fetch` without --json prints any bytes.
enum ValueText {
    /// The value as text, or the refusal naming `carrier`, what cannot carry it.
    static func of(_ bytes: [UInt8], name: String, carrier: String) throws(AdapterError) -> String {
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw AdapterError("the value of \(name) is not UTF-8 text, which \(carrier) cannot carry; `expirablectl fetch \(name)` without --json prints its bytes")
        }
        return text
    }
}

/// Line-based protocols cannot carry a newline or a NUL inside a field.
enum Lines {
    static func single(_ text: String, name: String, what: String) throws(AdapterError) -> String {
        guard !text.isEmpty, !text.contains(where: { $0 == "\n" || $0 == "\r" || $0 == "\0" }) else {
            throw AdapterError("the value of \(name) is empty or holds a newline or NUL, so it cannot be \(what); have the plugin trim it")
        }
        return text
    }

    /// A token for an HTTP `Authorization` header: one line, and no control character at all (a header value
    /// holds none; kubectl refuses the whole credential with "invalid header field value").
    static func headerToken(_ text: String, name: String, what: String) throws(AdapterError) -> String {
        let line = try single(text, name: name, what: what)
        if let control = line.unicodeScalars.first(where: { $0.value < 0x20 || $0.value == 0x7f }) {
            throw AdapterError("the value of \(name) holds a control character (U+\(String(format: "%04X", control.value))), so it cannot be \(what) in an HTTP header; have the plugin send printable text")
        }
        return line
    }

    /// A `--username` given on the command line: one line.
    static func option(_ username: String?) throws {
        if let username, username.isEmpty || username.contains(where: { $0 == "\n" || $0 == "\r" || $0 == "\0" }) {
            throw ValidationError("--username is empty or holds a newline or NUL; give the user name on one line")
        }
    }
}

/// An adapter's value is not in the form its consumer needs: status 65, as for data the daemon refused.
struct AdapterError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// What a credential helper's caller writes on stdin, read with a bound.
enum StandardInput {
    /// Up to `limit` bytes of stdin: until its end, or with `untilBlankLine` through the first empty line (git's
    /// request ends with one, and git may keep stdin open while it waits for the answer).
    static func read(upTo limit: Int, untilBlankLine: Bool = false) -> [UInt8] {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while bytes.count < limit {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(0, $0.baseAddress!, min($0.count, limit - bytes.count)) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { break }
            let scanned = bytes.count
            bytes.append(contentsOf: chunk[0..<n])
            guard untilBlankLine else { continue }
            // An empty line: the input's first byte a newline, or two newlines in a row.
            if bytes[0] == 0x0A || (max(1, scanned)..<bytes.count).contains(where: { bytes[$0] == 0x0A && bytes[$0 - 1] == 0x0A }) { break }
        }
        return bytes
    }
}

/// ISO 8601 / RFC 3339 times in UTC, as AWS and Kubernetes write them.
enum Timestamp {
    /// The last second RFC 3339 can write (four-digit years).
    static let latest = Date(timeIntervalSince1970: 253_402_300_799)

    /// A time past 9999-12-31T23:59:59Z (a plugin's expiry in microseconds, say) is written as that second:
    /// a five-digit year is no RFC 3339 time, and kubectl and the AWS SDKs refuse the whole answer.
    static func string(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        return formatter.string(from: min(date, latest))
    }

    static func parse(_ text: String) -> Date? {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        if let date = formatter.date(from: text) { return date }
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.date(from: text)
    }
}

extension FetchedValue {
    /// When the value expires; nil for never.
    var expiryDate: Date? {
        guard case .at(let ms) = expiry else { return nil }
        return Date(timeIntervalSince1970: Double(ms) / 1000)
    }
}
