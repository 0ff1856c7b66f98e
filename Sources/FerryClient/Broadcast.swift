import Synchronization

/// One producer's elements fanned out to any number of `AsyncStream`s. Observers register
/// synchronously, so an observer created before a change is guaranteed to see it; a replaying
/// broadcast starts each new observer with the latest element.
final class Broadcast<Element: Sendable>: Sendable {
    private struct State {
        var latest: Element?
        var observers: [Int: AsyncStream<Element>.Continuation] = [:]
        var nextID = 0
        var finished = false
    }

    private let state: Mutex<State>
    private let replays: Bool

    /// - Parameter latest: The element a new observer starts with; nil for a broadcast of events
    ///   that are not replayed.
    init(replaying latest: Element? = nil) {
        state = Mutex(State(latest: latest))
        replays = latest != nil
    }

    func stream() -> AsyncStream<Element> {
        let (stream, continuation) = AsyncStream.makeStream(of: Element.self)
        let id: Int? = state.withLock { state in
            if let latest = state.latest { continuation.yield(latest) }
            guard !state.finished else { return nil }
            defer { state.nextID += 1 }
            state.observers[state.nextID] = continuation
            return state.nextID
        }
        guard let id else {
            continuation.finish()
            return stream
        }
        continuation.onTermination = { [weak self] _ in
            _ = self?.state.withLock { $0.observers.removeValue(forKey: id) }
        }
        return stream
    }

    func yield(_ element: Element) {
        state.withLock { state in
            if replays { state.latest = element }
            for observer in state.observers.values { observer.yield(element) }
        }
    }

    /// Ends every stream; later observers get the latest element and an end.
    func finish() {
        // Finished outside the lock: finishing runs onTermination, which takes it.
        let observers = state.withLock { state in
            state.finished = true
            defer { state.observers.removeAll() }
            return Array(state.observers.values)
        }
        for observer in observers { observer.finish() }
    }
}
