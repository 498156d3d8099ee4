import Foundation
import Testing
@testable import ExpirableCore

/// The memory of a large keyed family (`HugePageArena`): blocks that never overlap, come back for reuse, and lie
/// in regions advised for huge pages; and a family of a million keys uses one, a small one does not.
@Suite("Keyed families: the huge-page arena of a large family")
struct HugePageArenaTests {
    /// The flags smaps gives the mapping holding `address` (e.g. "rd wr mr mw me ac hg"), nil if none holds it.
    static func vmFlags(of address: UnsafeMutableRawPointer) -> String? {
        // Read to its end: /proc files give no size for a single read to rely on.
        guard let handle = FileHandle(forReadingAtPath: "/proc/self/smaps") else { return nil }
        defer { try? handle.close() }
        let smaps = String(decoding: handle.readDataToEndOfFile(), as: UTF8.self)
        let target = UInt(bitPattern: address)
        var inside = false
        for line in smaps.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            if let range = fields.first, range.contains("-"), !range.hasSuffix(":") {
                let bounds = range.split(separator: "-").compactMap { UInt($0, radix: 16) }
                inside = bounds.count == 2 && bounds[0] <= target && target < bounds[1]
            } else if inside, line.hasPrefix("VmFlags:") {
                return String(line.dropFirst("VmFlags:".count)).trimmingCharacters(in: .whitespaces)
            }
        }
        return nil
    }

    @Test("blocks of every size are 16-byte aligned, never overlap, and keep what is written to them")
    func blocksAreDisjoint() {
        let arena = HugePageArena()
        var blocks: [(UnsafeMutableRawPointer, Int, UInt8)] = []
        // Sizes from 1 byte to 1 MB (the largest a shared region serves) and beyond (a region of its own).
        let sizes = [1, 15, 16, 17, 100, 174, 4095, 4096, 4097, 8192, 70_000, 1 << 20, (1 << 20) + 1, 5 << 20]
        for round in 0..<40 {
            for (i, size) in sizes.enumerated() {
                let block = arena.allocate(byteCount: size)
                let mark = UInt8(truncatingIfNeeded: round * 31 + i + 1)
                #expect(UInt(bitPattern: block) % 16 == 0, "size \(size)")
                block.initializeMemory(as: UInt8.self, repeating: mark, count: size)
                blocks.append((block, size, mark))
            }
        }
        for (block, size, mark) in blocks {
            let bytes = UnsafeRawBufferPointer(start: block, count: size)
            #expect(bytes.allSatisfy { $0 == mark }, "a block of \(size) bytes was overwritten by another")
        }
        let ranges = blocks.map { (UInt(bitPattern: $0.0), UInt(bitPattern: $0.0) + UInt($0.1)) }.sorted { $0.0 < $1.0 }
        for (a, b) in zip(ranges, ranges.dropFirst()) { #expect(a.1 <= b.0, "blocks overlap: \(a) and \(b)") }
        for (block, size, _) in blocks { arena.deallocate(block, byteCount: size) }
    }

    @Test("a freed block is given again for the next request of its size class; a region is not mapped again for it")
    func freedBlocksAreReused() {
        let arena = HugePageArena()
        let first = (0..<1000).map { _ in arena.allocate(byteCount: 174) }
        let mapped = arena.mappedBytes
        for block in first { arena.deallocate(block, byteCount: 174) }
        // 161 to 176 bytes are one class: blocks of another size in it reuse the freed ones.
        let second = (0..<1000).map { _ in arena.allocate(byteCount: 170) }
        #expect(Set(second) == Set(first))
        #expect(arena.mappedBytes == mapped)
        for block in second { arena.deallocate(block, byteCount: 170) }
    }

    @Test("a freed block of 64 KB or more (a slot array outgrown) gives its pages back, but for the first; one smaller keeps them")
    func largeFreedBlocksReleasePages() throws {
        let arena = HugePageArena()
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        func residentPages(_ block: UnsafeMutableRawPointer, _ size: Int) -> Int {
            // mincore wants a page-aligned start: the pages wholly inside the block.
            let start = (UInt(bitPattern: block) + UInt(page) - 1) & ~UInt(page - 1)
            let count = (Int(UInt(bitPattern: block) + UInt(size) - start)) / page
            var vector = [UInt8](repeating: 0, count: count)
            #expect(mincore(UnsafeMutableRawPointer(bitPattern: start), count * page, &vector) == 0)
            return vector.filter { $0 & 1 == 1 }.count
        }
        let large = arena.allocate(byteCount: 256 << 10), small = arena.allocate(byteCount: 32 << 10)
        large.initializeMemory(as: UInt8.self, repeating: 0xA5, count: 256 << 10)
        small.initializeMemory(as: UInt8.self, repeating: 0xA5, count: 32 << 10)
        let before = residentPages(large, 256 << 10)
        #expect(before >= (256 << 10) / page - 1, "written pages are resident: \(before)")
        arena.deallocate(large, byteCount: 256 << 10)
        arena.deallocate(small, byteCount: 32 << 10)
        #expect(residentPages(large, 256 << 10) <= 1, "a freed slot array keeps at most its first page")
        #expect(residentPages(small, 32 << 10) >= (32 << 10) / page - 1, "a freed small block keeps its pages for reuse")
        // Reused, it is memory as any other: written and read back whole.
        let again = arena.allocate(byteCount: 256 << 10)
        #expect(again == large)
        again.initializeMemory(as: UInt8.self, repeating: 0x5A, count: 256 << 10)
        #expect(UnsafeRawBufferPointer(start: again, count: 256 << 10).allSatisfy { $0 == 0x5A })
    }

    @Test("its regions, shared or a large block's own, are 2 MB-aligned and advised for huge pages (VmFlags hg)")
    func regionsAdvisedForHugePages() throws {
        let arena = HugePageArena()
        let small = arena.allocate(byteCount: 200)
        let large = arena.allocate(byteCount: 3 << 20)
        let flags = try #require(Self.vmFlags(of: small), "the block is in no mapping of /proc/self/smaps")
        #expect(flags.split(separator: " ").contains("hg"), "VmFlags: \(flags)")
        let largeFlags = try #require(Self.vmFlags(of: large))
        #expect(largeFlags.split(separator: " ").contains("hg"), "VmFlags: \(largeFlags)")
        #expect(UInt(bitPattern: small) % UInt(HugePageArena.hugePageSize) == 0, "the first block of a new region is at its start")
        #expect(UInt(bitPattern: large) % UInt(HugePageArena.hugePageSize) == 0)
        // That they are unmapped when freed is not asserted here: other tests of this process map memory at the
        // same time and may be given the same addresses.
        arena.deallocate(large, byteCount: 3 << 20)
        arena.deallocate(small, byteCount: 200)
    }

    @Test("a family of max_keys 65,536 or more keeps its members in an arena, a smaller one with malloc; both answer every key its own value")
    func largeFamiliesUseTheArena() async throws {
        for (maxKeys, usesArena) in [(HugePageArena.minimumKeys, true), (HugePageArena.minimumKeys - 1, false)] {
            let clock = ManualClock()
            let fetcher = KeyRecordingFetcher(clock: clock, setsState: false)
            let engine = KeyedTests.engine(fetcher, clock: clock, maxKeys: maxKeys)
            let family = try #require(engine.families["fam"])
            #expect((family.arena != nil) == usesArena, "max_keys \(maxKeys)")
            for i in 0..<3_000 { _ = try await engine.fetch("fam:k\(i)") }
            // Cleared and fetched again: blocks freed to the arena and made anew.
            for i in stride(from: 0, to: 3_000, by: 3) { _ = engine.clear("fam:k\(i)") }
            for i in stride(from: 0, to: 3_000, by: 3) { _ = try await engine.fetch("fam:k\(i)") }
            for i in 0..<3_000 {
                let expected = i % 3 == 0 ? "k\(i)#2" : "k\(i)#1"
                #expect(engine.cachedValue("fam:k\(i)").map { String(decoding: $0.value.bytes, as: UTF8.self) } == expected, "fam:k\(i)")
            }
            #expect(engine.familyInfo("fam")?.keys == 3_000)
        }
    }
}
