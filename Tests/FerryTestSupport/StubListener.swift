import Foundation
import Glibc

/// A TCP listener on 127.0.0.1 that plays a broker which never answers the upgrade: what a
/// client sees when the broker hangs, crashes or restarts while it connects.
///
///     let listener = try StubListener(.closeAfterRequest)
///     let url = URL(string: "ws://127.0.0.1:\(listener.port)/v1/ws")!
///     #expect(listener.waitForAccepted(3, timeout: 10))   // the client keeps retrying
package final class StubListener: Sendable {
    package enum Behaviour: Sendable {
        /// Accepts and never reads or writes; the connection stays open until `close()`.
        case silent
        /// Reads the request head, then closes (FIN) without a byte of answer.
        case closeAfterRequest
    }

    package let port: Int
    private let listener: Int32
    private let state = Shared(State())
    private let acceptedSignal = DispatchSemaphore(value: 0)
    private let thread: BackgroundThread

    private struct State: Sendable {
        var accepted = 0
        var open: [Int32] = []
        var closing = false
    }

    package init(_ behaviour: Behaviour) throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket(): \(String(cString: strerror(errno)))") }
        var address = TCPConnection.loopback(port: 0)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let rc = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 ? getsockname(fd, $0, &length) : -1 }
        }
        guard rc == 0, listen(fd, 128) == 0 else {
            Glibc.close(fd)
            throw TestFailure("bind/listen on 127.0.0.1: \(String(cString: strerror(errno)))")
        }
        listener = fd
        port = Int(UInt16(bigEndian: address.sin_port))
        let state = state
        let acceptedSignal = acceptedSignal
        thread = BackgroundThread {
            while true {
                var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                // A bounded poll, so `close()` is noticed within 50 ms.
                let ready = poll(&entry, 1, 50)
                if state.update({ $0.closing }) { return }
                guard ready > 0 else { continue }
                let client = accept(fd, nil, nil)
                guard client >= 0 else { continue }
                state.update {
                    $0.accepted += 1
                    $0.open.append(client)
                }
                if case .closeAfterRequest = behaviour {
                    Self.readHead(client)
                    Glibc.shutdown(client, Int32(SHUT_RDWR))  // an orderly end (FIN), no answer
                }
                acceptedSignal.signal()
            }
        }
    }

    deinit { close() }

    /// Connections accepted so far.
    package var accepted: Int { state.update { $0.accepted } }

    /// Waits until `count` connections were accepted; false if not within `timeout` seconds.
    package func waitForAccepted(_ count: Int, timeout: TimeInterval) -> Bool {
        let deadline = Deadline(seconds: timeout)
        while accepted < count {
            if acceptedSignal.wait(timeout: .now() + deadline.remaining) == .timedOut { return accepted >= count }
        }
        return true
    }

    /// Stops listening and closes every accepted connection. Idempotent.
    package func close() {
        let first = state.update { state in
            defer { state.closing = true }
            return !state.closing
        }
        guard first else { return }
        _ = thread.join(timeout: 5)
        for fd in state.update({ $0.open }) { Glibc.close(fd) }
        Glibc.close(listener)
    }

    /// Reads until the end of an HTTP request head (or 5 s, or the peer's end).
    private static func readHead(_ fd: Int32) {
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var received: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while !received.suffix(4).elementsEqual(Array("\r\n\r\n".utf8)) {
            let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard count > 0 else { return }
            received += chunk[0..<count]
        }
    }
}
