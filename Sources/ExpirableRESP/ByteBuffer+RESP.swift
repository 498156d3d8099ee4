import NIOCore

extension ByteBuffer {
    /// Appends `value` in RESP2.
    public mutating func writeRESP(_ value: RESPValue) {
        switch value {
        case .simpleString(let s):
            writeInteger(UInt8(ascii: "+"))
            writeString(s)
            writeCRLF()
        case .error(let s):
            writeRESPError(s)
        case .integer(let n):
            writeRESPInteger(n)
        case .bulkString(let b):
            writeRESPBulkHeader(b.readableBytes)
            writeImmutableBuffer(b)
            writeCRLF()
        case .null:
            writeStaticString("$-1\r\n")
        case .array(let elements):
            writeRESPArrayHeader(elements.count)
            for element in elements { writeRESP(element) }
        }
    }

    /// Appends an error reply; CR and LF in `message` become spaces so the reply stays one line.
    public mutating func writeRESPError(_ message: String) {
        writeInteger(UInt8(ascii: "-"))
        for byte in message.utf8 { writeInteger(byte == 0x0D || byte == 0x0A ? UInt8(ascii: " ") : byte) }
        writeCRLF()
    }

    /// Appends a bulk string holding `bytes`, in one write to the buffer (this is every GET's reply).
    public mutating func writeRESPBulk(_ bytes: UnsafeRawBufferPointer) {
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)
        let digitCount = withUnsafeMutableBytes(of: &digits) { ByteBuffer.formatDecimal(UInt64(bytes.count), into: $0) }
        let total = 1 + digitCount + 2 + bytes.count + 2
        writeWithUnsafeMutableBytes(minimumWritableBytes: total) { out in
            out[0] = UInt8(ascii: "$")
            withUnsafeBytes(of: &digits) { out.baseAddress!.advanced(by: 1).copyMemory(from: $0.baseAddress!.advanced(by: $0.count - digitCount), byteCount: digitCount) }
            var offset = 1 + digitCount
            out[offset] = 0x0D
            out[offset + 1] = 0x0A
            offset += 2
            if let base = bytes.baseAddress, bytes.count > 0 { out.baseAddress!.advanced(by: offset).copyMemory(from: base, byteCount: bytes.count) }
            offset += bytes.count
            out[offset] = 0x0D
            out[offset + 1] = 0x0A
            return total
        }
    }

    /// Appends `:n\r\n`.
    public mutating func writeRESPInteger(_ n: Int64) {
        writeInteger(UInt8(ascii: ":"))
        writeDecimal(n)
        writeCRLF()
    }

    /// Appends `*count\r\n`; the elements follow.
    public mutating func writeRESPArrayHeader(_ count: Int) {
        writeInteger(UInt8(ascii: "*"))
        writeDecimal(Int64(count))
        writeCRLF()
    }

    /// Appends a command as an array of bulk strings, the form every Redis client sends.
    public mutating func writeRESPCommand(_ words: [String]) {
        writeRESPArrayHeader(words.count)
        for word in words {
            var word = word
            word.withUTF8 { writeRESPBulk(UnsafeRawBufferPointer($0)) }
        }
    }

    private mutating func writeRESPBulkHeader(_ length: Int) {
        writeInteger(UInt8(ascii: "$"))
        writeDecimal(Int64(length))
        writeCRLF()
    }

    private mutating func writeCRLF() {
        writeInteger(UInt16(0x0D0A))
    }

    /// Writes an integer's decimal digits without allocating.
    private mutating func writeDecimal(_ n: Int64) {
        if n < 0 { writeInteger(UInt8(ascii: "-")) }
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 24 bytes of scratch, enough for 20 digits
        let count = withUnsafeMutableBytes(of: &digits) { ByteBuffer.formatDecimal(n.magnitude, into: $0) }
        _ = withUnsafeBytes(of: &digits) { writeBytes(UnsafeRawBufferPointer(rebasing: $0[($0.count - count)...])) }
    }

    /// Writes `value`'s decimal digits at the end of `scratch`; returns how many.
    private static func formatDecimal(_ value: UInt64, into scratch: UnsafeMutableRawBufferPointer) -> Int {
        var magnitude = value
        var index = scratch.count
        repeat {
            index -= 1
            scratch[index] = UInt8(ascii: "0") + UInt8(magnitude % 10)
            magnitude /= 10
        } while magnitude > 0
        return scratch.count - index
    }
}

extension Optional where Wrapped == ByteBuffer {
    /// Appends bytes just received to what is waiting to be parsed (taking them as they are when nothing is).
    public mutating func accumulate(_ incoming: ByteBuffer) {
        guard var pending = self, pending.readableBytes > 0 else {
            self = incoming
            return
        }
        self = nil
        var incoming = incoming
        pending.writeBuffer(&incoming)
        self = pending
    }
}
