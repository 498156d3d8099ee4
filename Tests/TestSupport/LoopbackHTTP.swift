import Foundation

/// One HTTP/1.0 request to 127.0.0.1:`port`, for the control ports of test servers: its status and body.
/// `form` is sent as an application/x-www-form-urlencoded body. Reads at most 1 MiB; 10 s receive timeout.
public func loopbackHTTP(port: Int, _ method: String, _ path: String, form: String = "") throws -> (status: Int, body: String) {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw TestSupportError("socket: \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var timeout = timeval(tv_sec: 10, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = UInt16(port).bigEndian
    inet_pton(AF_INET, "127.0.0.1", &address.sin_addr)
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard connected == 0 else {
        throw TestSupportError("127.0.0.1:\(port): \(String(cString: strerror(errno)))")
    }
    let body = Array(form.utf8)
    let request = Array("\(method) \(path) HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: \(body.count)\r\n\r\n".utf8) + body
    guard request.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) == request.count else {
        throw TestSupportError("127.0.0.1:\(port): short write")
    }
    var response: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while response.count < 1 << 20 {
        let n = read(fd, &buffer, buffer.count)
        if n <= 0 { break }
        response += buffer[0..<n]
    }
    let text = String(decoding: response, as: UTF8.self)
    guard let headerEnd = text.range(of: "\r\n\r\n"),
          let status = text.split(separator: " ", maxSplits: 2).dropFirst().first.flatMap({ Int($0) })
    else { throw TestSupportError("127.0.0.1:\(port): no HTTP response to \(method) \(path)") }
    return (status, String(text[headerEnd.upperBound...]))
}
