#if canImport(Glibc)
import Glibc
#endif

/// Bytes that may hold a value: the program's output and the value read from it. Growing moves them to a
/// larger block and zeroes the old one, and the last reference zeroes them before the memory is freed, so no copy
/// stays readable in the helper's heap. (A Swift array cannot promise that: growing it frees the old storage
/// as it is, and zeroing a shared one copies it first.)
final class SecretBuffer {
    private var storage: UnsafeMutableRawBufferPointer
    private(set) var count = 0

    init(capacity: Int) {
        storage = .allocate(byteCount: max(capacity, 16), alignment: 1)
    }

    deinit {
        explicit_bzero(storage.baseAddress!, storage.count)
        storage.deallocate()
    }

    /// Appends `bytes`, growing (and zeroing the old block) when they do not fit.
    func append(_ bytes: UnsafeRawBufferPointer) {
        guard let source = bytes.baseAddress, bytes.count > 0 else { return }
        if count + bytes.count > storage.count {
            let larger = UnsafeMutableRawBufferPointer.allocate(byteCount: max(storage.count * 2, count + bytes.count), alignment: 1)
            larger.baseAddress!.copyMemory(from: storage.baseAddress!, byteCount: count)
            explicit_bzero(storage.baseAddress!, storage.count)
            storage.deallocate()
            storage = larger
        }
        (storage.baseAddress! + count).copyMemory(from: source, byteCount: bytes.count)
        count += bytes.count
    }

    func append(_ byte: UInt8) {
        Swift.withUnsafeBytes(of: byte) { append($0) }
    }

    /// Appends the UTF-8 encoding of `scalar`.
    func append(_ scalar: Unicode.Scalar) {
        for unit in UTF8.encode(scalar)! { append(unit) }
    }

    /// Drops the last `n` bytes (zeroing them).
    func removeLast(_ n: Int) {
        let n = min(n, count)
        count -= n
        explicit_bzero(storage.baseAddress! + count, n)
    }

    var last: UInt8? { count > 0 ? storage[count - 1] : nil }

    /// Calls `body` with the bytes; they must not escape it.
    func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeRawBufferPointer(rebasing: storage[0..<count]))
    }

    /// Whether the bytes are valid UTF-8, checked without making a string of them.
    var isValidUTF8: Bool {
        withUnsafeBytes { bytes in
            var iterator = bytes.makeIterator()
            var decoder = UTF8()
            while true {
                switch decoder.decode(&iterator) {
                case .scalarValue: continue
                case .emptyInput: return true
                case .error: return false
                }
            }
        }
    }
}
