import ArgumentParser
import ExpirableClient
import Foundation

struct Watch: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print every new value of one or more expirables as the daemon stores it, until interrupted.",
        discussion: """
            Subscribes to the names (the daemon's SUBSCRIBE) and prints one line per new value, whatever stored \
            it: a fetch, an eager refresh, a value from a cluster peer. Watching one name prints just the value; \
            watching several prints the name, a space and the value, one line each: a value holding a newline or \
            carriage return, which would start a line reading as another name's value, ends such a watch with the \
            error on stderr and status 65 (one name's value is printed as it is). With --json every line is \
            {"name", "value"}, which keeps values holding newlines on one line; a value that is not UTF-8 text, which JSON \
            cannot carry, ends watch --json with the error on stderr and status 65 rather than print other bytes \
            (without --json values are printed as the bytes they are). A clear prints nothing, and the value stored \
            when watch starts is not printed: only the ones after it.

            If the connection breaks (a daemon restart), watch connects and subscribes again, backing off up to 2 s \
            between attempts; values stored meanwhile are not printed. It exits with the error on stderr if a name \
            is not configured (status 66), including one a reload removes while watched, if the daemon cannot be reached (69), or if it is not back within \
            --timeout (69). If the output cannot keep up, intermediate values of a name are skipped: the \
            newest is always printed. When the reader of its output goes away (`watch NAME | head -1`), watch \
            ends as Unix filters do, by SIGPIPE (status 141 in a shell), within a quarter of a second and \
            without waiting for the next value.
            """
    )

    @Argument(help: ArgumentHelp("The expirables' names.", valueName: "name")) var names: [String]
    @Flag(help: "Print each update as JSON: {\"name\", \"value\"}.") var json = false
    @OptionGroup var connection: Connection

    func run() async throws {
        let names = names, json = json
        try await reporting {
            let updates = try await connection.client.updates(of: names)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    for try await update in updates {
                        let value = update.value.bytes
                        if json {
                            try JSONOutput.print(["name": update.name, "value": try ValueText.of(value, name: update.name, carrier: "JSON")])
                        } else if names.count == 1 {
                            printOut(value + [UInt8(ascii: "\n")])
                        } else {
                            // A line break inside would start a line that reads as another name's value.
                            if value.contains(where: { $0 == UInt8(ascii: "\n") || $0 == UInt8(ascii: "\r") }) {
                                throw AdapterError("the value of \(update.name) holds a newline or carriage return, which would end its NAME VALUE line early; watch --json carries it on one line")
                            }
                            printOut(Array("\(update.name) ".utf8) + value + [UInt8(ascii: "\n")])
                        }
                    }
                }
                // A name may rotate once a day: a reader that went away (`watch NAME | head -1`) is noticed
                // without waiting for the next write to fail.
                group.addTask {
                    while !Task.isCancelled {
                        if StandardOutput.readerIsGone { StandardOutput.diedOfSIGPIPE() }
                        try await Task.sleep(for: .milliseconds(250))
                    }
                }
                try await group.next()
                group.cancelAll()
            }
        }
    }
}
