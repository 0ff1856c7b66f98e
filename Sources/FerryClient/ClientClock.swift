/// The client's time: how long since an origin, and a sleep. Real time by default; tests drive
/// a manual one to check the backoff schedule and the heartbeat watchdog without waiting.
package struct ClientClock: Sendable {
    /// Time since an arbitrary origin; never goes backwards.
    package var now: @Sendable () -> Duration
    package var sleep: @Sendable (Duration) async throws -> Void

    package init(now: @escaping @Sendable () -> Duration, sleep: @escaping @Sendable (Duration) async throws -> Void) {
        self.now = now
        self.sleep = sleep
    }

    package static let continuous: ClientClock = {
        let origin = ContinuousClock.now
        return ClientClock(now: { .now - origin }, sleep: { try await Task.sleep(for: $0) })
    }()
}
