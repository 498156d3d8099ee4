#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// Where a large keyed family keeps its members' blocks and its shards' slot arrays: regions of 8 MB aligned to
/// 2 MB, which the kernel is asked to back with huge pages (`madvise(MADV_HUGEPAGE)`; Linux's transparent huge
/// pages in their default `madvise` mode). A read of a random key among a million touches a slot and a block
/// some 200 MB apart from the last one: with 4 KB pages each costs a page walk as well as its cache miss (the
/// TLB covers a few megabytes), with 2 MB pages the walks mostly go. A family with a small `max_keys` does not
/// use one: its members fit in the TLB's reach anyway, and a region would make it hold at least 2 MB.
///
/// Allocation is by size class: sizes rounded up to 16 bytes to 4 KB, then to a power of two up to 1 MB, each
/// class a free list threaded through its freed blocks; a new block comes from the free list or from the end of
/// the current region. A request over 1 MB (a slot array of a shard over 65,536 slots) gets a region of its
/// own, returned to the system when it is freed. Freed blocks are kept for reuse; those of 64 KB or more (slot
/// arrays a shard has outgrown) give their pages back meanwhile, smaller ones do not: a family that shrinks
/// keeps the high-water mark of its members' memory until it is removed, when every region goes.
///
/// Thread-safe (one lock; blocks are made on stores, not on reads). Blocks are 16-byte aligned.
final class HugePageArena: @unchecked Sendable {
    static let regionSize = 8 << 20
    static let hugePageSize = 2 << 20
    /// The largest request served from a shared region.
    static let largestShared = 1 << 20
    /// The smallest family (by `max_keys`) that uses an arena.
    static let minimumKeys = 65_536

    private struct State {
        /// The free part at the end of the current region.
        var next: UnsafeMutableRawPointer?
        var end: UnsafeMutableRawPointer?
        /// Every shared region (unmapped when the arena goes).
        var regions: [UnsafeMutableRawPointer] = []
        /// Per size class, the first free block; a free block's first 8 bytes point to the next.
        var free = [UnsafeMutableRawPointer?](repeating: nil, count: HugePageArena.classCount)
    }

    private let state = Mutex(State())

    /// 256 classes of 16-byte steps to 4 KB, then 8 KB … 1 MB.
    private static let classCount = 256 + 8

    init() {}

    deinit {
        state.withLock { s in
            for region in s.regions { munmap(region, HugePageArena.regionSize) }
        }
    }

    /// The size class of `byteCount` (at most `largestShared`) and the size it is given.
    private static func sizeClass(_ byteCount: Int) -> (index: Int, size: Int) {
        let bytes = max(16, byteCount)
        if bytes <= 4096 {
            let size = (bytes + 15) & ~15
            return (size / 16 - 1, size)
        }
        let shift = Int.bitWidth - (bytes - 1).leadingZeroBitCount  // the power of two at or above `bytes`
        return (256 + shift - 13, 1 << shift)
    }

    /// `byteCount` bytes, 16-byte aligned, uninitialized. Stops the process if the system has no memory to map,
    /// as Swift's own allocations do.
    func allocate(byteCount: Int) -> UnsafeMutableRawPointer {
        if byteCount > HugePageArena.largestShared {
            guard let own = HugePageArena.map(HugePageArena.ownSize(byteCount)) else { fatalError("out of memory: \(byteCount) bytes for a keyed family") }
            return own
        }
        let (index, size) = HugePageArena.sizeClass(byteCount)
        return state.withLock { s in
            if let block = s.free[index] {
                s.free[index] = block.load(as: UnsafeMutableRawPointer?.self)
                return block
            }
            if s.next == nil || s.end! - s.next! < size {
                // The rest of the current region (less than this request) is left unused.
                guard let region = HugePageArena.map(HugePageArena.regionSize) else { fatalError("out of memory: a region for a keyed family") }
                s.regions.append(region)
                s.next = region
                s.end = region + HugePageArena.regionSize
            }
            let block = s.next!
            s.next = block + size
            return block
        }
    }

    /// Gives back a block of `allocate(byteCount:)`, with the same `byteCount`.
    func deallocate(_ block: UnsafeMutableRawPointer, byteCount: Int) {
        if byteCount > HugePageArena.largestShared {
            munmap(block, HugePageArena.ownSize(byteCount))
            return
        }
        let (index, size) = HugePageArena.sizeClass(byteCount)
        if size >= HugePageArena.releasedSize { HugePageArena.release(block, size) }
        let address = UInt(bitPattern: block)  // a raw pointer is not Sendable into the lock's region
        state.withLock { s in
            let block = UnsafeMutableRawPointer(bitPattern: address)!
            block.storeBytes(of: s.free[index], as: UnsafeMutableRawPointer?.self)
            s.free[index] = block
        }
    }

    /// Freed blocks of this size or more (a shard's slot arrays it has outgrown) give their pages back.
    static let releasedSize = 64 << 10

    /// Gives the whole pages inside a freed block back to the system, keeping the first (it holds the free
    /// list's link): they come back as zero pages when the block is reused. A family of a million keys outgrows
    /// some 32 MB of slot arrays on its way there, which would otherwise stay resident in the free lists.
    private static func release(_ block: UnsafeMutableRawPointer, _ size: Int) {
        let page = UInt(sysconf(Int32(_SC_PAGESIZE)))
        let start = (UInt(bitPattern: block) + UInt(MemoryLayout<UnsafeMutableRawPointer?>.size) + page - 1) & ~(page - 1)
        let end = (UInt(bitPattern: block) + UInt(size)) & ~(page - 1)
        guard end > start, let first = UnsafeMutableRawPointer(bitPattern: start) else { return }
        _ = madvise(first, Int(end - start), MADV_DONTNEED)
    }

    /// How many bytes of regions the arena has mapped, for tests.
    var mappedBytes: Int { state.withLock { $0.regions.count * HugePageArena.regionSize } }

    private static func ownSize(_ byteCount: Int) -> Int {
        (byteCount + hugePageSize - 1) & ~(hugePageSize - 1)
    }

    /// `size` bytes (a multiple of 2 MB) of anonymous memory at a 2 MB boundary, advised for huge pages.
    private static func map(_ size: Int) -> UnsafeMutableRawPointer? {
        let span = size + hugePageSize
        guard let raw = mmap(nil, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
              raw != UnsafeMutableRawPointer(bitPattern: -1) else { return nil }
        let start = UInt(bitPattern: raw)
        let aligned = (start + UInt(hugePageSize) - 1) & ~UInt(hugePageSize - 1)
        let head = Int(aligned - start), tail = span - head - size
        if head > 0 { munmap(raw, head) }
        let base = raw + head
        if tail > 0 { munmap(base + size, tail) }
        #if os(Linux)
        // A hint: where transparent huge pages are off, the region is made of 4 KB pages as any other memory.
        _ = madvise(base, size, MADV_HUGEPAGE)
        #endif
        return base
    }
}
