import Foundation
import Synchronization

/// A TCP proxy on a loopback address that a test can cut: `block()` drops every connection through it and
/// refuses new ones until `unblock()`, as a network partition would; `stall()` keeps every connection open but
/// stops carrying bytes (one way or both) until `resume()`, as a one-way cut or a peer that stops reading would
/// (new connections are accepted and stall too). Threads and plain sockets; stopped by
/// `stop()`. Descriptors are closed only under the proxy's lock, by whoever is last to use them, so a number
/// the kernel has given to someone else is never shut down or closed here.
public final class FaultProxy: @unchecked Sendable {
    public let host: String
    public let port: Int
    private let target: (host: String, port: Int)
    private let listener: Int32

    /// One proxied connection: its two sockets and how many of its two pump threads still run.
    private final class Link: @unchecked Sendable {  // `pumping` changes only under the proxy's lock
        let client: Int32
        let upstream: Int32
        var pumping = 2
        init(client: Int32, upstream: Int32) {
            self.client = client
            self.upstream = upstream
        }
    }

    /// Which way bytes stop: toward the target (what the dialing side sends), back from it, or both.
    public enum Direction: Sendable { case toTarget, fromTarget, both }

    private struct State {
        var blocked = false
        var stalledToTarget = false
        var stalledFromTarget = false
        var stopped = false
        var links: [ObjectIdentifier: Link] = [:]
    }

    private let state = Mutex(State())

    public init(host: String, to targetHost: String, port targetPort: Int) throws {
        self.host = host
        target = (targetHost, targetPort)
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = FaultProxy.address(host, 0)
        let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard bound == 0, listen(fd, 64) == 0 else {
            close(fd)
            throw TestSupportError("proxy cannot listen on \(host): \(String(cString: strerror(errno)))")
        }
        var actual = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &actual) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        listener = fd
        port = Int(UInt16(bigEndian: actual.sin_port))
        Thread.detachNewThread { [self] in acceptLoop() }
    }

    /// Drops every connection through the proxy and refuses new ones.
    public func block() {
        state.withLock { s in
            s.blocked = true
            for link in s.links.values {
                shutdown(link.client, Int32(SHUT_RDWR))
                shutdown(link.upstream, Int32(SHUT_RDWR))
            }
        }
    }

    public func unblock() {
        state.withLock { $0.blocked = false }
    }

    /// Stops carrying bytes `direction`, keeping the connections open.
    public func stall(_ direction: Direction = .both) {
        state.withLock { s in
            if direction != .fromTarget { s.stalledToTarget = true }
            if direction != .toTarget { s.stalledFromTarget = true }
        }
    }

    public func resume() {
        state.withLock { s in
            s.stalledToTarget = false
            s.stalledFromTarget = false
        }
    }

    /// Drops every connection and stops accepting; the accept thread closes the listening socket.
    public func stop() {
        block()
        state.withLock { s in
            s.stopped = true
            shutdown(listener, Int32(SHUT_RDWR))
        }
    }

    private func acceptLoop() {
        while true {
            let client = accept(listener, nil, nil)
            if client >= 0 { _ = fcntl(client, F_SETFD, FD_CLOEXEC) }
            if client < 0 {
                if state.withLock({ $0.stopped }) {
                    close(listener)
                    return
                }
                continue
            }
            if state.withLock({ $0.blocked || $0.stopped }) {
                close(client)
                continue
            }
            let upstream = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            var address = FaultProxy.address(target.host, target.port)
            let connected = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(upstream, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            guard connected == 0 else {
                close(client)
                close(upstream)
                continue
            }
            let link = Link(client: client, upstream: upstream)
            let admitted = state.withLock { s -> Bool in
                guard !s.blocked && !s.stopped else { return false }
                s.links[ObjectIdentifier(link)] = link
                return true
            }
            guard admitted else {
                close(client)
                close(upstream)
                continue
            }
            Thread.detachNewThread { [self] in pump(link, from: client, to: upstream, toTarget: true) }
            Thread.detachNewThread { [self] in pump(link, from: upstream, to: client, toTarget: false) }
        }
    }

    private func pump(_ link: Link, from source: Int32, to destination: Int32, toTarget: Bool) {
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            // Stalled: nothing is read, so the sender's buffers fill as they would with a peer that stops reading.
            while state.withLock({ s in !s.blocked && !s.stopped && (toTarget ? s.stalledToTarget : s.stalledFromTarget) }) { usleep(5_000) }
            let n = read(source, &buffer, buffer.count)
            if n <= 0 { break }
            var offset = 0
            while offset < n {
                // send, not write: a peer gone while the pump was stalled must not raise SIGPIPE in the test process.
                let written = buffer[offset..<n].withUnsafeBytes { send(destination, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                if written <= 0 { break }
                offset += written
            }
            if offset < n { break }
        }
        state.withLock { s in
            // Both sockets are still open here: only the last pump closes them, under this lock.
            shutdown(link.client, Int32(SHUT_RDWR))
            shutdown(link.upstream, Int32(SHUT_RDWR))
            link.pumping -= 1
            if link.pumping == 0 {
                close(link.client)
                close(link.upstream)
                s.links[ObjectIdentifier(link)] = nil
            }
        }
    }

    private static func address(_ host: String, _ port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        inet_pton(AF_INET, host, &address.sin_addr)
        return address
    }
}

/// The ports `freePort` hands out: 20000–60000, or the range `EXPIRABLE_TEST_PORTS` ("17550-17599") names, for
/// a machine where test runs are given ranges of their own.
private let portRange: ClosedRange<Int> = {
    let bounds = (ProcessInfo.processInfo.environment["EXPIRABLE_TEST_PORTS"] ?? "").split(separator: "-").compactMap { Int($0) }
    return bounds.count == 2 && 0 < bounds[0] && bounds[0] < bounds[1] && bounds[1] < 65_536 ? bounds[0]...bounds[1] : 20_000...60_000
}()

/// Ports handed out by `freePort`, so two clusters set up at the same moment never get the same one.
private let nextPort = Mutex<Int>(portRange.lowerBound + Int(getpid()) % (portRange.count / 2))

/// A TCP port free on `host` right now and never returned before by this process (the caller binds it promptly).
public func freePort(on host: String) throws -> Int {
    for _ in 0..<2000 {
        let candidate = nextPort.withLock { port -> Int in
            port = port >= portRange.upperBound ? portRange.lowerBound : port + 1
            return port
        }
        if let fd = boundSocket(host, candidate) {
            close(fd)
            return candidate
        }
    }
    throw TestSupportError("no free port on \(host)")
}

/// A TCP socket bound to `host`:`port` (IPv4), or nil if the port is taken; the caller closes it.
public func boundSocket(_ host: String, _ port: Int) -> Int32? {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = UInt16(port).bigEndian
    inet_pton(AF_INET, host, &address.sin_addr)
    let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    guard bound == 0 else {
        close(fd)
        return nil
    }
    return fd
}
