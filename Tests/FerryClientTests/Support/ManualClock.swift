import FerryClient
import Synchronization

/// A clock that moves only when the test says: sleepers wake when `advance` passes their
/// deadline, decided synchronously, so "not yet" can be asserted right after an advance.
final class ManualClock: Sendable {
    private struct Sleeper {
        let deadline: Duration
        let continuation: CheckedContinuation<Void, any Error>
    }

    private struct State {
        var now = Duration.zero
        var sleepers: [Int: Sleeper] = [:]
        var nextID = 0
        /// Tests waiting for sleepers, each with a condition on the sleepers' deadlines.
        var watchers: [(ready: @Sendable ([Duration]) -> Bool, continuation: CheckedContinuation<Void, Never>)] = []

        /// Removes and returns the watchers whose condition holds.
        mutating func takeWatchers() -> [CheckedContinuation<Void, Never>] {
            let deadlines = Array(sleepers.values.map(\.deadline))
            let ready = watchers.filter { $0.ready(deadlines) }.map(\.continuation)
            watchers.removeAll { $0.ready(deadlines) }
            return ready
        }
    }

    private let state = Mutex(State())

    var clientClock: ClientClock {
        ClientClock(now: { self.now }, sleep: { try await self.sleep(for: $0) })
    }

    var now: Duration { state.withLock { $0.now } }

    var sleeperCount: Int { state.withLock { $0.sleepers.count } }

    func sleep(for duration: Duration) async throws {
        let id = state.withLock { state in
            defer { state.nextID += 1 }
            return state.nextID
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let (resume, watchers) = state.withLock { state -> (Bool, [CheckedContinuation<Void, Never>]) in
                    if duration <= .zero || Task.isCancelled { return (true, []) }
                    state.sleepers[id] = Sleeper(deadline: state.now + duration, continuation: continuation)
                    return (false, state.takeWatchers())
                }
                if resume { continuation.resume() }
                for watcher in watchers { watcher.resume() }
            }
            try Task.checkCancellation()
        } onCancel: {
            state.withLock { $0.sleepers.removeValue(forKey: id) }?.continuation.resume(throwing: CancellationError())
        }
    }

    /// Moves time on and wakes every sleeper whose deadline it reached.
    func advance(by duration: Duration) {
        let woken = state.withLock { state in
            state.now += duration
            let due = state.sleepers.filter { $0.value.deadline <= state.now }
            for id in due.keys { state.sleepers[id] = nil }
            return due.values.map(\.continuation)
        }
        for continuation in woken { continuation.resume() }
    }

    /// Returns once at least `count` tasks sleep on this clock.
    func waitForSleepers(_ count: Int = 1) async {
        await waitUntil { $0.count >= count }
    }

    /// Returns once a task sleeps until exactly `deadline` (an instant of this clock): the
    /// moment a client's watchdog has taken up the deadline of a phase.
    func waitForSleeper(until deadline: Duration) async {
        await waitUntil { $0.contains(deadline) }
    }

    private func waitUntil(_ ready: @escaping @Sendable ([Duration]) -> Bool) async {
        await withCheckedContinuation { continuation in
            let now = state.withLock { state in
                if ready(Array(state.sleepers.values.map(\.deadline))) { return true }
                state.watchers.append((ready, continuation))
                return false
            }
            if now { continuation.resume() }
        }
    }
}

/// A seeded generator (SplitMix64), so a test can compute the jitter a client will draw.
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
