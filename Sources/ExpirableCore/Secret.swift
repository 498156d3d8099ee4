#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The bytes of a value. They are copied in once, never printed (`description` shows only the size), and
/// wiped from memory when the last reference goes away.
public final class Secret: @unchecked Sendable, CustomStringConvertible {
    // Immutable after init; shared read-only between threads, which is why the class is @unchecked Sendable.
    private let storage: UnsafeMutableRawBufferPointer

    /// Copies `bytes` into memory owned by the new secret.
    public init(copying bytes: UnsafeRawBufferPointer) {
        storage = .allocate(byteCount: Swift.max(bytes.count, 1), alignment: 1)
        if let base = bytes.baseAddress, bytes.count > 0 {
            storage.baseAddress!.copyMemory(from: base, byteCount: bytes.count)
        }
        count = bytes.count
    }

    /// Copies the bytes of `bytes`.
    public convenience init(_ bytes: some Collection<UInt8>) {
        let array = Array(bytes)
        self.init(copying: array.withUnsafeBytes { $0 })
    }

    /// Copies the UTF-8 bytes of `string`.
    public convenience init(_ string: String) {
        self.init(Array(string.utf8))
    }

    /// The number of bytes.
    public let count: Int

    /// Calls `body` with the bytes; they must not escape it.
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeRawBufferPointer(rebasing: storage[0..<count]))
    }

    /// A copy of the bytes, for callers that need an array (tests, the CLI). The copy is not wiped.
    public var bytes: [UInt8] { withUnsafeBytes { Array($0) } }

    public var description: String { "<secret, \(count) bytes>" }

    deinit {
        Secret.wipe(storage)
        storage.deallocate()
    }

    /// Overwrites `buffer` with zeros in a way the optimizer does not remove.
    static func wipe(_ buffer: UnsafeMutableRawBufferPointer) {
        guard let base = buffer.baseAddress, buffer.count > 0 else { return }
        #if canImport(Glibc)
        explicit_bzero(base, buffer.count)
        #else
        memset_s(base, buffer.count, 0, buffer.count)
        #endif
    }
}

extension Secret: Equatable {
    /// Same bytes, compared in time that depends on the length only.
    public static func == (lhs: Secret, rhs: Secret) -> Bool {
        guard lhs.count == rhs.count else { return false }
        return lhs.withUnsafeBytes { a in
            rhs.withUnsafeBytes { b in
                var difference: UInt8 = 0
                for index in 0..<a.count { difference |= a[index] ^ b[index] }
                return difference == 0
            }
        }
    }
}
