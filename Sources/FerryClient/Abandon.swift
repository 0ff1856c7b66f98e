import Synchronization

/// Runs `operation` in a task of its own and stops waiting for it as soon as the caller is
/// cancelled, so that work which ignores cancellation (NIO's connect, an application's token
/// provider) cannot hold up `close()`. What it produces after being given up goes to `dispose`.
func abandoningOnCancel<T: Sendable>(
    dispose: @escaping @Sendable (T) -> Void = { _ in }, _ operation: @escaping @Sendable () async throws -> T
) async throws -> T {
    let meeting = Meeting<T>()
    let task = Task {
        let result: Result<T, any Error>
        do {
            result = .success(try await operation())
        } catch {
            result = .failure(error)
        }
        meeting.finished(with: result, dispose: dispose)
    }
    return try await withTaskCancellationHandler {
        try await withCheckedThrowingContinuation { meeting.wait(with: $0) }
    } onCancel: {
        task.cancel()
        meeting.abandon()
    }
}

/// Where the operation's result and its waiter meet, whichever comes first.
private final class Meeting<T: Sendable>: Sendable {
    private enum State {
        case pending
        case waiting(CheckedContinuation<T, any Error>)
        case finished(Result<T, any Error>)
        case abandoned
        case done
    }

    private let state = Mutex(State.pending)

    func wait(with continuation: CheckedContinuation<T, any Error>) {
        let ready: Result<T, any Error>? = state.withLock { state in
            switch state {
            case .pending:
                state = .waiting(continuation)
                return nil
            case .finished(let result):
                state = .done
                return result
            case .abandoned, .waiting, .done:
                return .failure(CancellationError())
            }
        }
        if let ready { continuation.resume(with: ready) }
    }

    private enum Next {
        case resume(CheckedContinuation<T, any Error>)
        case dispose
        case nothing
    }

    func finished(with result: Result<T, any Error>, dispose: @Sendable (T) -> Void) {
        let next: Next = state.withLock { state in
            switch state {
            case .pending:
                state = .finished(result)
                return .nothing
            case .waiting(let continuation):
                state = .done
                return .resume(continuation)
            case .abandoned:
                state = .done
                return .dispose
            case .finished, .done:
                return .nothing
            }
        }
        switch next {
        case .resume(let continuation): continuation.resume(with: result)
        case .dispose: if case .success(let value) = result { dispose(value) }
        case .nothing: break
        }
    }

    func abandon() {
        let waiter: CheckedContinuation<T, any Error>? = state.withLock { state in
            switch state {
            case .waiting(let continuation):
                state = .abandoned
                return continuation
            case .pending:
                state = .abandoned
                return nil
            case .finished, .abandoned, .done:
                return nil
            }
        }
        waiter?.resume(throwing: CancellationError())
    }
}
