import Dispatch
import FerryStore
import Foundation
import Synchronization

/// The one writer: a dedicated thread that drains every queued job into a single store commit.
///
/// Group commit is the design, not an optimisation: a synced commit costs ~0.6 ms whatever it
/// holds, so while one commit runs the next batch gathers. A job is confirmed only after the
/// commit that holds it returns. The thread is a real thread, not a task, because commits block
/// (fsync) and the cooperative pool has only as many threads as cores.
final class Committer: Sendable {
    typealias Completion = @Sendable (Result<ArraySlice<CommitResult.Outcome>, StoreError>) -> Void

    struct Job: Sendable {
        var operations: [StoreOperation]
        var completion: Completion?
    }

    /// What the broker does around commits, on the committer thread.
    struct Hooks: Sendable {
        /// Operations to add to the next commit (deferred acks, sweeps); `busy` is true when jobs are queued.
        var maintenance: @Sendable (_ now: Timestamp, _ busy: Bool) -> [StoreOperation]
        /// Called after each commit, before any job's completion.
        var committed: @Sendable (_ operations: [StoreOperation], _ result: CommitResult) -> Void
        /// Called when a commit fails as a whole, before its jobs' completions.
        var failed: @Sendable (_ operations: [StoreOperation], _ error: StoreError) -> Void
    }

    private struct Queue {
        var jobs: [Job] = []
        var sleeping = false
        var stopping = false
    }

    /// Operations per commit; bounds the time one transaction holds the writer.
    static let maxOperationsPerCommit = 16384

    private let store: any MessageStore
    private let now: @Sendable () -> Timestamp
    private let idleWakeup: DispatchTimeInterval
    private let queue = Mutex(Queue())
    private let wakeup = DispatchSemaphore(value: 0)
    private let finished = DispatchSemaphore(value: 0)
    private let metrics = CommitMetrics()

    init(store: any MessageStore, now: @escaping @Sendable () -> Timestamp, idleWakeupMilliseconds: Int) {
        self.store = store
        self.now = now
        self.idleWakeup = .milliseconds(idleWakeupMilliseconds)
    }

    func start(hooks: Hooks) {
        let thread = Thread { [self] in
            run(hooks)
            finished.signal()
        }
        thread.name = "ferry-committer"
        thread.start()
    }

    /// Queues `operations`; `completion` runs on the committer thread after the commit.
    func submit(_ operations: [StoreOperation], completion: Completion?) {
        let wake = queue.withLock { queue in
            queue.jobs.append(Job(operations: operations, completion: completion))
            defer { queue.sleeping = false }
            return queue.sleeping
        }
        if wake { wakeup.signal() }
    }

    /// Commits what is queued, runs a last maintenance pass, and stops the thread.
    func stop() async {
        let wake = queue.withLock { queue in
            queue.stopping = true
            defer { queue.sleeping = false }
            return queue.sleeping
        }
        if wake { wakeup.signal() }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            DispatchQueue.global().async {
                self.finished.wait()
                continuation.resume()
            }
        }
    }

    private func run(_ hooks: Hooks) {
        while true {
            let (jobs, stopping) = takeJobs()
            var operations = jobs.flatMap(\.operations)
            let jobCount = operations.count
            let commitTime = now()
            operations += hooks.maintenance(commitTime, !jobs.isEmpty || stopping)
            if !operations.isEmpty {
                commit(operations, jobs: jobs, jobOperationCount: jobCount, at: commitTime, hooks: hooks)
            } else {
                // Empty jobs (a flush of deferred writes that found none) are done at once.
                for job in jobs { job.completion?(.success([])) }
            }
            if stopping && jobs.isEmpty { return }
        }
    }

    /// Waits for jobs (or the idle timeout, for maintenance) and takes up to a commit's worth.
    private func takeJobs() -> (jobs: [Job], stopping: Bool) {
        while true {
            let taken: (jobs: [Job], stopping: Bool)? = queue.withLock { queue in
                if queue.jobs.isEmpty && !queue.stopping {
                    queue.sleeping = true
                    return nil
                }
                var count = 0
                var end = 0
                while end < queue.jobs.count && (end == 0 || count + queue.jobs[end].operations.count <= Self.maxOperationsPerCommit) {
                    count += queue.jobs[end].operations.count
                    end += 1
                }
                let jobs = Array(queue.jobs[..<end])
                queue.jobs.removeFirst(end)
                return (jobs, queue.stopping)
            }
            if let taken { return taken }
            if wakeup.wait(timeout: .now() + idleWakeup) == .timedOut {
                let wasSleeping = queue.withLock { queue in
                    defer { queue.sleeping = false }
                    return queue.sleeping
                }
                // A submit that raced the timeout signalled: consume it so it does not linger.
                if !wasSleeping { wakeup.wait() }
                return ([], queue.withLock { $0.stopping })
            }
        }
    }

    private func commit(_ operations: [StoreOperation], jobs: [Job], jobOperationCount: Int, at time: Timestamp, hooks: Hooks) {
        do {
            let result = try metrics.measure(operations) { () throws(StoreError) in try store.commit(operations, now: time) }
            hooks.committed(operations, result)
            var start = 0
            for job in jobs {
                let end = start + job.operations.count
                job.completion?(.success(result.outcomes[start..<end]))
                start = end
            }
        } catch {
            hooks.failed(operations, error)
            for job in jobs { job.completion?(.failure(error)) }
        }
    }
}
