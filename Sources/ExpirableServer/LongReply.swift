import NIOCore

/// A reply of one element per name asked for (`MGET`'s values, `COMMAND INFO` / `DOCS`), whose size the request
/// does not bound: one 8 KiB `MGET` of a 60 KB value's name, 2,000 times, is 120 MB of reply. It is written
/// element by element, so the connection hands it to the channel in pieces and a client that does not read
/// throttles it in the middle, as it would between pipelined replies: the daemon holds at most
/// `maxOutputBytes` of it.
struct LongReply {
    /// Writes the array's or map's header.
    let header: (inout ByteBuffer) -> Void
    let count: Int
    /// Writes element `index`.
    let element: (Int, inout ByteBuffer) -> Void
    /// The next element to write; -1 while the header is not written.
    private var next = -1

    init(count: Int, header: @escaping (inout ByteBuffer) -> Void, element: @escaping (Int, inout ByteBuffer) -> Void) {
        self.count = count
        self.header = header
        self.element = element
    }

    /// Writes on until the reply is complete (true) or `out` holds at least `limit` bytes (false: call again once
    /// they are handed on).
    mutating func write(to out: inout ByteBuffer, limit: Int) -> Bool {
        if next < 0 {
            header(&out)
            next = 0
        }
        while next < count {
            if out.readableBytes >= limit { return false }
            element(next, &out)
            next += 1
        }
        return true
    }
}
