@testable import ExpirableCore
import Testing

@Suite("Secret")
struct SecretTests {
    @Test("12. wiping a secret's buffer overwrites every byte with zero")
    func wipeZeroes() {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64, alignment: 1)
        defer { buffer.deallocate() }
        buffer.initializeMemory(as: UInt8.self, repeating: 0xAB)
        Secret.wipe(buffer)
        #expect(buffer.allSatisfy { $0 == 0 })
    }

    @Test("a secret keeps its own copy of the bytes")
    func copies() {
        var source: [UInt8] = Array("token".utf8)
        let secret = Secret(source)
        source[0] = UInt8(ascii: "X")
        #expect(secret.bytes == Array("token".utf8))
        #expect(Secret([]).count == 0)
    }

    @Test("shutdown stops every refresh timer")
    func shutdownStopsTimers() {
        let h = Harness(refresh: .eager(beforeExpiry: .seconds(1)))
        _ = h.startFetch()
        h.fetcher.complete(value("v", expiresIn: 60_000, clock: h.clock))
        #expect(h.clock.pendingTimers == 1)
        h.engine.shutdown()
        #expect(h.clock.pendingTimers == 0)
    }
}
