import DequeModule
import FerryStore
import Foundation
import Synchronization

/// Where the core runs store reads: inline for an engine whose reads never wait (LMDB reads
/// mapped memory), else on a few dedicated threads, so a read that waits for a database round
/// trip never holds an event loop or a thread of the cooperative pool.
final class StoreReader: Sendable {
    private let store: any MessageStore
    /// Nil when reads run inline.
    private let pool: ReadPool?

    init(store: any MessageStore, threads: Int = 4) {
        self.store = store
        pool = store.readsMayBlock ? ReadPool(threads: threads) : nil
    }

    /// True when ``read(_:completion:)`` calls its completion before it returns.
    var isInline: Bool { pool == nil }

    /// Runs `body` against the store and hands its result to `completion`: inline, or later on a
    /// read thread.
    func read<T: Sendable>(
        _ body: @escaping @Sendable (any MessageStore) throws(StoreError) -> T,
        completion: @escaping @Sendable (Result<T, StoreError>) -> Void
    ) {
        let store = self.store
        let job: @Sendable () -> Void = { completion(Result { () throws(StoreError) -> T in try body(store) }) }
        if let pool { pool.submit(job) } else { job() }
    }

    /// Runs `body` against the store off the cooperative pool (unless reads never wait).
    func read<T: Sendable>(_ body: @escaping @Sendable (any MessageStore) throws(StoreError) -> T) async -> Result<T, StoreError> {
        await withCheckedContinuation { continuation in
            read(body) { continuation.resume(returning: $0) }
        }
    }

    /// Lets the read threads finish what is queued and exit.
    func stop() {
        pool?.stop()
    }
}

/// A fixed number of threads taking jobs in order from one queue.
private final class ReadPool: Sendable {
    private struct Queue {
        var jobs: Deque<@Sendable () -> Void> = []
        var stopping = false
    }

    private let queue = Mutex(Queue())
    private let available = DispatchSemaphore(value: 0)
    private let threads: Int

    init(threads: Int) {
        self.threads = threads
        for index in 0..<threads {
            let thread = Thread { [self] in run() }
            thread.name = "ferry-store-read-\(index)"
            thread.start()
        }
    }

    func submit(_ job: @escaping @Sendable () -> Void) {
        queue.withLock { $0.jobs.append(job) }
        available.signal()
    }

    func stop() {
        queue.withLock { $0.stopping = true }
        for _ in 0..<threads { available.signal() }
    }

    private func run() {
        while true {
            available.wait()
            let next: (@Sendable () -> Void)?? = queue.withLock { queue in
                if !queue.jobs.isEmpty { return queue.jobs.removeFirst() }
                return queue.stopping ? .some(nil) : nil
            }
            switch next {
            case .some(.some(let job)): job()
            case .some(.none): return
            case .none: continue
            }
        }
    }
}
