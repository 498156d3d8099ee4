import Glibc
@_spi(CustomByteBufferAllocator) import NIOCore

/// The allocator of every reply buffer: memory is zeroed before it goes back to malloc, when a buffer is freed
/// and when it grows (a growing buffer moves to new memory, and the old memory, which may hold a value already
/// written into the replies, is zeroed instead of being handed back as it is by `realloc`). Values reach the
/// replies in plain bytes (RESP needs them so), and freed heap memory is otherwise readable in the daemon's
/// address space until something else is written over it.
///
/// Each block starts with a 16-byte header holding its size (so alignment stays 16). The cost is one
/// `explicit_bzero` of a buffer's capacity per buffer (4 KiB for most replies), paid once per flush, not per
/// request. The daemon gives it to the cluster too, for every buffer of a peer link (TLS plaintext, frames).
public enum WipingAllocator {
    /// The allocator; share it.
    public static let shared = ByteBufferAllocator(
        allocate: { size in wipingAllocate(size) },
        reallocate: { old, _, newSize in
            guard let old else { return wipingAllocate(newSize) }
            guard let new = wipingAllocate(newSize) else { return nil }
            let (block, oldSize) = wipingBlock(old)
            memcpy(new, old, min(oldSize, newSize))
            explicit_bzero(block, oldSize + wipingHeader)
            free(block)
            return new
        },
        deallocate: { pointer in
            let (block, size) = wipingBlock(pointer)
            explicit_bzero(block, size + wipingHeader)
            free(block)
        },
        copy: { destination, source, count in _ = memcpy(destination, source, count) })
}

private let wipingHeader = 16

private func wipingAllocate(_ size: Int) -> UnsafeMutableRawPointer? {
    guard let block = malloc(size + wipingHeader) else { return nil }
    block.storeBytes(of: size, as: Int.self)
    return block + wipingHeader
}

/// The malloc'd block behind `pointer`, and the size asked for it.
private func wipingBlock(_ pointer: UnsafeMutableRawPointer) -> (UnsafeMutableRawPointer, Int) {
    let block = pointer - wipingHeader
    return (block, block.load(as: Int.self))
}
