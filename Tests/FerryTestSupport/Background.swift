import Foundation
import Synchronization

/// A value that threads share behind a mutex.
package final class Shared<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>

    package init(_ value: Value) { mutex = Mutex(value) }

    package var value: Value { mutex.withLock { $0 } }

    package func update<Result: Sendable>(_ body: (inout Value) -> Result) -> Result {
        mutex.withLock { body(&$0) }
    }
}

/// Work on a thread of its own (tests block on sockets, so not on the cooperative pool).
package final class BackgroundThread: Sendable {
    private let finished = DispatchSemaphore(value: 0)

    package init(_ body: @escaping @Sendable () -> Void) {
        let finished = finished
        let thread = Thread {
            body()
            finished.signal()
        }
        thread.start()
    }

    /// Waits until the work is done; false when it is still running after `timeout`.
    package func join(timeout: TimeInterval) -> Bool {
        finished.wait(timeout: .now() + timeout) == .success
    }
}
