import Foundation
import Glibc
import Synchronization

/// A TCP proxy on 127.0.0.1 that breaks links on request, as networks and brokers do.
///
///     let proxy = try FaultProxy(targetPort: ferryd.port)
///     let url = URL(string: "ws://127.0.0.1:\(proxy.port)/v1/ws")!   // give this to the client
///     proxy.dropAll()      // every link dies at once, both sides reset
///     proxy.stall()        // links stay open but carry nothing: a silent dead connection
///
/// Each accepted connection (a *link*) is forwarded to `127.0.0.1:<target port>`. One thread runs a
/// `poll` loop over every socket; a fault command is applied by that thread and returns once it
/// is in force. `close()` (or deinit) stops the thread and closes every descriptor it opened.
package final class FaultProxy: Sendable {
    /// What a test can count on, as of the last loop iteration.
    package struct Counters: Sendable, Equatable {
        /// Connections accepted so far, refused ones included.
        package var accepted = 0
        /// Links open now.
        package var live = 0
        /// Links closed by `dropAll()` so far.
        package var dropped = 0

        package init(accepted: Int = 0, live: Int = 0, dropped: Int = 0) {
            (self.accepted, self.live, self.dropped) = (accepted, live, dropped)
        }
    }

    package let port: Int
    private let control: Control
    private let thread: BackgroundThread

    /// Listens on a free loopback port and forwards to `127.0.0.1:targetPort`.
    package init(targetPort: Int) throws {
        let listener = try Self.listen()
        var address = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &length) }
        }
        // The loop's wake-up line (Glibc has no pipe2 or eventfd for Swift; socketpair takes the flags).
        var wake: [Int32] = [-1, -1]
        let flags = Int32(SOCK_STREAM.rawValue | SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue)
        guard socketpair(AF_UNIX, flags, 0, &wake) == 0 else {
            Glibc.close(listener)
            throw TestFailure("socketpair: \(String(cString: strerror(errno)))")
        }
        port = Int(UInt16(bigEndian: address.sin_port))
        let control = Control(targetPort: targetPort, wakeRead: wake[0], wakeWrite: wake[1])
        self.control = control
        thread = BackgroundThread {
            var loop = Loop(listener: listener, control: control)
            loop.run()
        }
    }

    deinit { close() }

    package var counters: Counters { control.state.withLock { $0.counters } }
    package var acceptedLinks: Int { counters.accepted }
    package var liveLinks: Int { counters.live }

    /// Resets every live link, both sides (SO_LINGER 0): each peer sees its connection die.
    /// Returns how many links it dropped.
    @discardableResult
    package func dropAll() -> Int {
        let before = counters.dropped
        command { $0.dropGeneration += 1 }
        return counters.dropped - before
    }

    /// Stops forwarding in both directions on every link, new ones too; nothing is read or closed.
    package func stall() { command { $0.stalled = true } }

    /// Forwards again, starting with whatever was read before the stall.
    package func unstall() { command { $0.stalled = false } }

    /// Holds each chunk read from now on for `milliseconds` before forwarding it (0: no delay).
    package func delay(_ milliseconds: Int) { command { $0.delay = .milliseconds(max(0, milliseconds)) } }

    /// While on, accepts and at once resets new connections, as when the broker is down.
    package func refuseNew(_ refuse: Bool) { command { $0.refusing = refuse } }

    /// Forwards links accepted from now on to another port; live links keep their target.
    package func retarget(port: Int) { command { $0.targetPort = port } }

    /// Waits until `condition` holds for the counters; false when it still does not after `timeout`.
    /// The loop re-checks after every iteration that changed them, so this is not polling.
    package func wait(timeout: TimeInterval, until condition: @escaping @Sendable (Counters) -> Bool) -> Bool {
        let signal = DispatchSemaphore(value: 0)
        let id = UUID()
        let settled = control.state.withLock { state -> Bool? in
            if condition(state.counters) { return true }
            if !state.running { return false }
            state.watchers[id] = Watcher(condition: condition, signal: signal)
            return nil
        }
        if let settled { return settled }
        _ = signal.wait(timeout: .now() + timeout)
        control.state.withLock { _ = $0.watchers.removeValue(forKey: id) }
        return condition(counters)
    }

    /// Closes the listener and every link and ends the loop thread. Idempotent.
    package func close() {
        let first = control.state.withLock { state in
            defer { state.closeRequested = true }
            return !state.closeRequested
        }
        guard first else { return }
        command { $0.closing = true }
        guard thread.join(timeout: 10) else {
            print("FaultProxy on port \(port): loop thread did not end within 10 s; its sockets leak")
            return
        }
        // The loop has closed its sockets and set `running` false, so nothing writes to the wake line any more.
        Glibc.close(control.wakeRead)
        Glibc.close(control.wakeWrite)
    }

    /// Changes the settings and waits until the loop has applied them (at once if it has ended).
    private func command(_ change: (inout Settings) -> Void) {
        let applied = DispatchSemaphore(value: 0)
        let queued = control.state.withLock { state -> Bool in
            change(&state.settings)
            guard state.running else { return false }
            state.commandsApplied.append(applied)
            control.wake()  // under the lock: `close()` closes the line only after the loop said it stopped
            return true
        }
        guard queued else { return }
        if applied.wait(timeout: .now() + 10) == .timedOut {
            print("FaultProxy on port \(port): a command was not applied within 10 s")
        }
    }

    private static func listen() throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue | SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket(): \(String(cString: strerror(errno)))") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = TCPConnection.loopback(port: 0)
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0, Glibc.listen(fd, 4096) == 0 else {  // room for a reconnect storm; the kernel caps it at somaxconn
            let reason = String(cString: strerror(errno))
            Glibc.close(fd)
            throw TestFailure("bind/listen on 127.0.0.1: \(reason)")
        }
        return fd
    }
}

// MARK: - Shared between the tests' threads and the loop thread

extension FaultProxy {
    struct Settings: Sendable {
        var targetPort: Int
        var stalled = false
        var delay: Duration = .zero
        var refusing = false
        /// Bumped by `dropAll()`; the loop drops every link when it sees a new value.
        var dropGeneration = 0
        var closing = false
    }

    struct Watcher: Sendable {
        let condition: @Sendable (Counters) -> Bool
        let signal: DispatchSemaphore
    }

    struct State: Sendable {
        var settings: Settings
        var counters = Counters()
        /// Commands waiting for the loop to apply the settings they changed.
        var commandsApplied: [DispatchSemaphore] = []
        var watchers: [UUID: Watcher] = [:]
        /// False once the loop has ended: commands then return at once.
        var running = true
        var closeRequested = false
    }

    final class Control: Sendable {
        let state: Mutex<State>
        let wakeRead: Int32
        let wakeWrite: Int32

        init(targetPort: Int, wakeRead: Int32, wakeWrite: Int32) {
            state = Mutex(State(settings: Settings(targetPort: targetPort)))
            self.wakeRead = wakeRead
            self.wakeWrite = wakeWrite
        }

        /// Interrupts the loop's `poll`. A full line already holds a wake-up, so EAGAIN is fine.
        func wake() {
            var byte: UInt8 = 1
            _ = Glibc.write(wakeWrite, &byte, 1)
        }
    }
}

// MARK: - The loop thread

extension FaultProxy {
    /// Everything the loop thread alone touches: the listener and the links.
    struct Loop {
        /// Bytes read but not yet written, per direction, before reading stops (back-pressure).
        static let queueLimit = 1 << 20
        static let readSize = 65536

        struct Chunk {
            var bytes: [UInt8]
            var offset = 0
            let due: ContinuousClock.Instant
        }

        /// One direction of a link: from `fds[side]` to `fds[1 - side]`.
        struct Direction {
            var queue: [Chunk] = []
            var queued = 0
            var sourceEnded = false
            var destinationShutDown = false
        }

        struct Link {
            /// 0: the accepted client, 1: the upstream connection.
            var fds: [Int32]
            /// 0: client → upstream, 1: upstream → client.
            var directions = [Direction(), Direction()]
            var broken = false
            var finished: Bool { directions[0].destinationShutDown && directions[1].destinationShutDown }
        }

        let listener: Int32
        let control: Control
        var links: [Link] = []
        /// Set when `accept` ran out of descriptors: the listener stays readable, so leave it out
        /// of the poll set for a moment instead of spinning on it.
        var acceptPausedUntil: ContinuousClock.Instant?
        var dropGeneration = 0
        var readBuffer = [UInt8](repeating: 0, count: Loop.readSize)

        mutating func run() {
            while true {
                let (settings, applied) = control.state.withLock { state in
                    defer { state.commandsApplied = [] }
                    return (state.settings, state.commandsApplied)
                }
                if settings.closing {
                    shutDown(applied)
                    return
                }
                var dropped = 0
                if settings.dropGeneration != dropGeneration {
                    dropGeneration = settings.dropGeneration
                    dropped = links.count
                    for link in links { Self.reset(link.fds) }
                    links.removeAll()
                }
                publish(accepted: 0, dropped: dropped)
                for command in applied { command.signal() }

                var accepted = 0
                pollOnce(settings, accepted: &accepted)
                links.removeAll { link in
                    if link.broken {
                        Self.reset(link.fds)
                    } else if link.finished {
                        link.fds.forEach { Glibc.close($0) }
                    }
                    return link.broken || link.finished
                }
                publish(accepted: accepted, dropped: 0)
            }
        }

        /// One `poll` over the wake line, the listener and every link that has something to do.
        private mutating func pollOnce(_ settings: Settings, accepted: inout Int) {
            var timeout = Duration.seconds(1)
            let now = ContinuousClock.now
            if let until = acceptPausedUntil {
                if until <= now { acceptPausedUntil = nil } else { timeout = min(timeout, until - now) }
            }
            var fds = [
                pollfd(fd: control.wakeRead, events: Int16(POLLIN), revents: 0),
                pollfd(fd: listener, events: acceptPausedUntil == nil ? Int16(POLLIN) : 0, revents: 0),
            ]
            var owners: [(link: Int, side: Int)] = []
            if !settings.stalled {  // a stalled link is left out of the poll set: nothing is read, written or noticed
                for (index, link) in links.enumerated() {
                    for side in 0..<2 {
                        var events: Int16 = 0
                        let outgoing = link.directions[side]
                        if !outgoing.sourceEnded && outgoing.queued < Self.queueLimit { events |= Int16(POLLIN) }
                        if let head = link.directions[1 - side].queue.first {
                            if head.due <= now { events |= Int16(POLLOUT) } else { timeout = min(timeout, head.due - now) }
                        }
                        // An fd with no events would still report POLLHUP/POLLERR at once: leave it out.
                        guard events != 0 else { continue }
                        fds.append(pollfd(fd: link.fds[side], events: events, revents: 0))
                        owners.append((index, side))
                    }
                }
            }
            let milliseconds = Int32(clamping: max(1, (timeout.components.seconds * 1000) + timeout.components.attoseconds / 1_000_000_000_000_000))
            guard poll(&fds, nfds_t(fds.count), milliseconds) > 0 else { return }  // timeout or EINTR: go round
            if fds[0].revents != 0 { drainWakeLine() }
            if fds[1].revents & Int16(POLLIN) != 0 { accepted = acceptAll(settings) }
            for (slot, owner) in owners.enumerated() {
                let entry = fds[slot + 2]
                guard entry.revents != 0, !links[owner.link].broken else { continue }
                if entry.revents & Int16(POLLERR | POLLNVAL) != 0 {
                    links[owner.link].broken = true
                    continue
                }
                if entry.events & Int16(POLLIN) != 0, entry.revents & Int16(POLLIN | POLLHUP) != 0 {
                    read(link: owner.link, direction: owner.side, delay: settings.delay)
                }
                if entry.revents & Int16(POLLOUT) != 0 { write(link: owner.link, direction: 1 - owner.side) }
            }
            for index in links.indices where !links[index].broken {
                for direction in 0..<2 { finishIfDone(link: index, direction: direction) }
            }
        }

        private mutating func read(link index: Int, direction: Int, delay: Duration) {
            let fd = links[index].fds[direction]
            let count = readBuffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count > 0 {
                let chunk = Chunk(bytes: Array(readBuffer[0..<count]), due: .now + delay)
                links[index].directions[direction].queue.append(chunk)
                links[index].directions[direction].queued += count
                if delay == .zero { write(link: index, direction: direction) }  // save a poll round
            } else if count == 0 {
                links[index].directions[direction].sourceEnded = true
            } else if errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR {
                links[index].broken = true  // ECONNRESET and friends: pass the reset on
            }
        }

        /// Writes the due chunks of `direction` until the socket would block.
        private mutating func write(link index: Int, direction: Int) {
            let fd = links[index].fds[1 - direction]
            let now = ContinuousClock.now
            while var chunk = links[index].directions[direction].queue.first, chunk.due <= now {
                let sent = chunk.bytes[chunk.offset...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                if sent < 0 {
                    if errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR { links[index].broken = true }
                    return
                }
                chunk.offset += sent
                links[index].directions[direction].queued -= sent
                if chunk.offset < chunk.bytes.count {
                    links[index].directions[direction].queue[0] = chunk
                    return
                }
                links[index].directions[direction].queue.removeFirst()
            }
        }

        /// Passes an end of stream on once everything before it was written (a half-close).
        private mutating func finishIfDone(link index: Int, direction: Int) {
            let state = links[index].directions[direction]
            guard state.sourceEnded, state.queue.isEmpty, !state.destinationShutDown else { return }
            Glibc.shutdown(links[index].fds[1 - direction], Int32(SHUT_WR))
            links[index].directions[direction].destinationShutDown = true
        }

        private mutating func acceptAll(_ settings: Settings) -> Int {
            var accepted = 0
            while true {
                let client = accept(listener, nil, nil)
                guard client >= 0 else {
                    if [EMFILE, ENFILE, ENOBUFS, ENOMEM].contains(errno) { acceptPausedUntil = .now + .milliseconds(50) }
                    return accepted  // EAGAIN: all taken
                }
                // No accept4 in Glibc for Swift. Foundation's Process closes inherited descriptors
                // in its children anyway, so a ferryd started meanwhile cannot keep this link alive.
                _ = fcntl(client, F_SETFD, FD_CLOEXEC)
                _ = fcntl(client, F_SETFL, fcntl(client, F_GETFL) | O_NONBLOCK)
                accepted += 1
                guard !settings.refusing, let upstream = Self.connect(port: settings.targetPort) else {
                    Self.reset([client])
                    continue
                }
                Self.noDelay(client)
                links.append(Link(fds: [client, upstream]))
            }
        }

        /// A blocking connect (loopback answers at once), then non-blocking; nil when refused.
        private static func connect(port: Int) -> Int32? {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { return nil }
            var address = TCPConnection.loopback(port: port)
            let rc = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard rc == 0 else {
                Glibc.close(fd)
                return nil
            }
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            noDelay(fd)
            return fd
        }

        private static func noDelay(_ fd: Int32) {
            var one: Int32 = 1
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        }

        /// Closes with SO_LINGER 0, so the peer gets a reset rather than an orderly end of stream.
        private static func reset(_ fds: [Int32]) {
            for fd in fds {
                var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
                setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
                Glibc.close(fd)
            }
        }

        private func drainWakeLine() {
            var bytes = [UInt8](repeating: 0, count: 64)
            while bytes.withUnsafeMutableBytes({ Glibc.read(control.wakeRead, $0.baseAddress, $0.count) }) > 0 {}
        }

        /// Updates the counters and wakes the watchers whose condition now holds.
        private func publish(accepted: Int, dropped: Int) {
            let live = links.count
            let woken = control.state.withLock { state -> [DispatchSemaphore] in
                let before = state.counters
                state.counters.accepted += accepted
                state.counters.dropped += dropped
                state.counters.live = live
                guard state.counters != before else { return [] }
                let counters = state.counters
                let ready = state.watchers.filter { $0.value.condition(counters) }
                for id in ready.keys { state.watchers[id] = nil }
                return ready.values.map(\.signal)
            }
            for signal in woken { signal.signal() }
        }

        /// Ends the loop: closes every socket, then releases commands and watchers.
        private mutating func shutDown(_ applied: [DispatchSemaphore]) {
            for link in links { Self.reset(link.fds) }
            links.removeAll()
            Glibc.close(listener)
            publish(accepted: 0, dropped: 0)
            let waiting = control.state.withLock { state in
                state.running = false
                defer {
                    state.commandsApplied = []
                    state.watchers = [:]
                }
                return state.commandsApplied + state.watchers.values.map(\.signal)
            }
            for signal in applied + waiting { signal.signal() }
        }
    }
}
