import Foundation
import Glibc

/// A failure in test support code, with words that say what was expected.
package struct TestFailure: Error, CustomStringConvertible {
    package let description: String
    package init(_ description: String) { self.description = description }
}

/// A point in time that bounded waits count down to.
package struct Deadline: Sendable {
    private let end: ContinuousClock.Instant

    package init(seconds: TimeInterval) {
        end = .now + .milliseconds(Int(seconds * 1000))
    }

    package var hasPassed: Bool { ContinuousClock.now >= end }

    /// Seconds left, never negative.
    package var remaining: TimeInterval {
        let left = (end - .now).components
        return max(0, Double(left.seconds) + Double(left.attoseconds) / 1e18)
    }
}

/// A blocking TCP connection to 127.0.0.1, shared by the WebSocket and HTTP test clients.
package final class TCPConnection {
    package enum ReadResult: Sendable, Equatable {
        case bytes([UInt8])
        case timeout
        case eof
    }

    private var fd: Int32

    /// Connects to `127.0.0.1:port`; throws `TestFailure` with errno words when that fails.
    package init(port: Int, sendTimeout: TimeInterval = 10) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket(): \(String(cString: strerror(errno)))") }
        var address = Self.loopback(port: port)
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard rc == 0 else {
            let reason = String(cString: strerror(errno))
            Glibc.close(fd)
            fd = -1
            throw TestFailure("connect to 127.0.0.1:\(port): \(reason)")
        }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        setTimeout(SO_SNDTIMEO, seconds: sendTimeout)
    }

    deinit { close() }

    package var isOpen: Bool { fd >= 0 }

    /// Writes every byte or throws (the peer closed, or it stopped reading for `sendTimeout`).
    package func write(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes[offset...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if sent < 0 {
                if errno == EINTR { continue }
                throw TestFailure("send: \(String(cString: strerror(errno)))")
            }
            offset += sent
        }
    }

    /// Reads what is available, waiting until `deadline` at most.
    package func read(until deadline: Deadline) -> ReadResult {
        guard fd >= 0 else { return .eof }
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            if deadline.hasPassed { return .timeout }
            // SO_RCVTIMEO of zero means "block forever": never set less than a millisecond.
            setTimeout(SO_RCVTIMEO, seconds: max(deadline.remaining, 0.001))
            let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count > 0 { return .bytes(Array(chunk[0..<count])) }
            if count == 0 { return .eof }
            switch errno {
            case EINTR, EAGAIN, EWOULDBLOCK: continue
            default: return .eof  // ECONNRESET and friends: the peer is gone.
            }
        }
    }

    package func close() {
        if fd >= 0 {
            Glibc.close(fd)
            fd = -1
        }
    }

    private func setTimeout(_ option: Int32, seconds: TimeInterval) {
        var value = timeval(tv_sec: Int(seconds), tv_usec: Int((seconds - seconds.rounded(.down)) * 1_000_000))
        setsockopt(fd, SOL_SOCKET, option, &value, socklen_t(MemoryLayout<timeval>.size))
    }

    package static func loopback(port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr = in_addr(s_addr: inet_addr("127.0.0.1"))
        return address
    }

    /// A port that was free a moment ago: bind port 0 and ask the kernel which one it gave.
    package static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket(): \(String(cString: strerror(errno)))") }
        defer { Glibc.close(fd) }
        var address = loopback(port: 0)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let rc = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                bind(fd, pointer, length) == 0 ? getsockname(fd, pointer, &length) : -1
            }
        }
        guard rc == 0 else { throw TestFailure("bind/getsockname: \(String(cString: strerror(errno)))") }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}
