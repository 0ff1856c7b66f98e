import Foundation
import Synchronization
import Testing

/// A value that threads share behind a mutex.
final class Shared<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>

    init(_ value: Value) { mutex = Mutex(value) }

    var value: Value { mutex.withLock { $0 } }

    func update<Result: Sendable>(_ body: (inout Value) -> Result) -> Result {
        mutex.withLock { body(&$0) }
    }
}

/// Work on a thread of its own (tests block on sockets, so not on the cooperative pool).
final class BackgroundThread: Sendable {
    private let finished = DispatchSemaphore(value: 0)

    init(_ body: @escaping @Sendable () -> Void) {
        let finished = finished
        let thread = Thread {
            body()
            finished.signal()
        }
        thread.start()
    }

    /// Waits until the work is done; false when it is still running after `timeout`.
    func join(timeout: TimeInterval) -> Bool {
        finished.wait(timeout: .now() + timeout) == .success
    }
}

/// Runs `body` for each case and records a failure per case, so one bad case does not hide the rest.
func forEachCase<Case>(_ cases: [Case], _ body: (Case) throws -> Void) {
    for item in cases {
        do {
            try body(item)
        } catch {
            Issue.record(error, "case \(String(describing: item).prefix(120))")
        }
    }
}
