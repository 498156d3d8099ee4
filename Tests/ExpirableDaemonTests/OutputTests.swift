import ExpirableTestSupport
import Foundation
import Testing

/// expirablectl's stdout, as shells hand it over: pipes whose reader leaves, full disks, a closed descriptor.
/// A value that could not be printed never ends in success.
@Suite("expirablectl: output that cannot be written")
struct OutputTests {
    static var ctl: String { get throws { try TestPaths.product("expirablectl").path } }

    @Test("watch NAME | head -1 ends once head has its line: expirablectl dies of SIGPIPE (141) as filters do")
    func watchIntoHead() throws {
        let daemon = try ServingTests.start(ServingTests.counter())
        defer { daemon.remove() }
        let out = daemon.directory.appending("head.out"), status = daemon.directory.appending("status")
        let pipeline = try Spawned([
            "bash", "-c", #""$0" watch token --socket "$1" | head -1 > "$2"; echo "${PIPESTATUS[0]}" > "$3""#,
            try Self.ctl, daemon.socket, out, status,
        ])
        defer { if pipeline.isRunning { kill(pipeline.pid, SIGKILL); pipeline.wait() } }
        // Values are stored until head has printed one; then none: the watch must notice without a write.
        var line = ""
        for _ in 0..<100 where line.isEmpty {
            _ = try daemon.redis("CLEAR", "token")
            _ = try daemon.redis("GET", "token")
            usleep(200_000)
            line = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
        }
        #expect(line.hasPrefix("token-"), "head printed \(line.debugDescription)")
        for _ in 0..<200 where pipeline.isRunning { usleep(50_000) }
        #expect(!pipeline.isRunning, "expirablectl watch still runs 10 s after head exited")
        #expect((try? String(contentsOfFile: status, encoding: .utf8)) == "141\n", "killed by SIGPIPE, as `yes | head -1`")
    }

    @Test("a value that cannot be written (/dev/full) is an error: status 74 and the reason on stderr, for fetch and list --json")
    func fullDevice() throws {
        let daemon = try ServingTests.start(ServingTests.counter())
        defer { daemon.remove() }
        for command in ["fetch token", "list --json"] {
            let result = try runTool("sh", ["-c", "\"$0\" \(command) --socket \"$1\" > /dev/full", try Self.ctl, daemon.socket])
            #expect(result.status == 74, "\(command): \(result.stderr)")
            #expect(result.stderr == "expirablectl: cannot write to standard output: No space left on device; nothing more is printed (status 74)\n", "\(command)")
        }
    }

    @Test("a closed stdout is an error too (74); nothing meant for it reaches another descriptor")
    func closedStandardOutput() throws {
        let daemon = try ServingTests.start(ServingTests.counter())
        defer { daemon.remove() }
        let result = try runTool("sh", ["-c", "\"$0\" fetch token --socket \"$1\" >&-", try Self.ctl, daemon.socket])
        #expect(result.status == 74, "\(result.stderr)")
        #expect(result.stderr == "expirablectl: cannot write to standard output: standard output is closed; nothing more is printed (status 74)\n")
        #expect(try daemon.redis("GET", "token") == "token-1", "the daemon is unharmed")
    }
}
