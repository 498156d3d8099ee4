extension RESPParser {
    /// The names of the `GET NAME` requests (RESP arrays, `*2\r\n$3\r\nGET\r\n$N\r\nNAME\r\n`, GET in any case)
    /// that begin `bytes`, up to `limit` of them, in order: a look over a pipelined batch before it runs, for
    /// reading ahead. It stops at the first request of any other shape (another command, an inline command,
    /// one not complete yet) and neither validates nor consumes anything: the batch is parsed again to run.
    /// A name is at most `maxName` bytes.
    public static func leadingGETNames(_ bytes: UnsafeRawBufferPointer, limit: Int, maxName: Int = 1024,
                                       _ body: (UnsafeRawBufferPointer) -> Void) {
        guard let base = bytes.baseAddress else { return }
        let end = bytes.count
        // "*2\r\n$3\r\n" as a little-endian word, and "GET" folded to lower case, then "\r\n$".
        let head: UInt64 = 0x0A0D_3324_0A0D_322A
        var at = 0, found = 0
        while found < limit, end - at >= 16 {
            guard base.loadUnaligned(fromByteOffset: at, as: UInt64.self).littleEndian == head,
                  base.load(fromByteOffset: at + 8, as: UInt8.self) | 0x20 == UInt8(ascii: "g"),
                  base.load(fromByteOffset: at + 9, as: UInt8.self) | 0x20 == UInt8(ascii: "e"),
                  base.load(fromByteOffset: at + 10, as: UInt8.self) | 0x20 == UInt8(ascii: "t"),
                  base.load(fromByteOffset: at + 11, as: UInt8.self) == 0x0D,
                  base.load(fromByteOffset: at + 12, as: UInt8.self) == 0x0A,
                  base.load(fromByteOffset: at + 13, as: UInt8.self) == UInt8(ascii: "$") else { return }
            var cursor = at + 14, length = 0, digits = 0
            while cursor < end, case let byte = base.load(fromByteOffset: cursor, as: UInt8.self),
                  byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") {
                length = length * 10 + Int(byte - UInt8(ascii: "0"))
                digits += 1
                cursor += 1
                guard length <= maxName else { return }
            }
            // The length's CRLF, the name, its CRLF.
            guard digits > 0, end - cursor >= length + 4,
                  base.load(fromByteOffset: cursor, as: UInt8.self) == 0x0D,
                  base.load(fromByteOffset: cursor + 1, as: UInt8.self) == 0x0A,
                  base.load(fromByteOffset: cursor + 2 + length, as: UInt8.self) == 0x0D,
                  base.load(fromByteOffset: cursor + 3 + length, as: UInt8.self) == 0x0A else { return }
            body(UnsafeRawBufferPointer(start: base + cursor + 2, count: length))
            found += 1
            at = cursor + 4 + length
        }
    }
}
