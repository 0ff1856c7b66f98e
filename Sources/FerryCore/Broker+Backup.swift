import FerryProtocol
import FerryStore
import Foundation

extension Broker {
    // MARK: - Backups

    /// A compacted hot copy of the store in the empty folder `path`; returns its size in bytes.
    /// Deferred acks and sessions are committed first, so the copy holds every ack seen so far.
    public func backup(to path: String) async throws(ProtocolError) -> Int {
        try await flushDeferred()
        let store = self.store
        return try await Self.onOwnThread { () throws(StoreError) in try store.backup(to: path) }.mapError(Self.backupError).get()
    }

    /// Readies a streamed backup (``copyBackup(into:)``): commits deferred acks and sessions, so
    /// the copy holds every ack seen so far, and returns about how many bytes the copy will have.
    /// A store that ferryd does not back up (PostgreSQL) is `not_supported`.
    public func prepareBackupStream() async throws(ProtocolError) -> Int {
        try await flushDeferred()
        return try await reader.read { store throws(StoreError) in try store.backupSizeEstimate() }.mapError(Self.backupError).get()
    }

    /// Writes a consistent, compacted copy of the store's data file into `descriptor` (the write
    /// end of a pipe) on a thread of its own, and closes `descriptor` when the copy ends, so its
    /// reader sees the end. A reader that closes its end makes the copy fail and end.
    public func copyBackup(into descriptor: Int32) async -> Result<Void, ProtocolError> {
        let store = self.store
        return await Self.onOwnThread { () throws(StoreError) in
            defer { close(descriptor) }
            try store.backup(into: descriptor)
        }.mapError(Self.backupError)
    }

    /// An empty job makes the committer flush what maintenance holds back.
    private func flushDeferred() async throws(ProtocolError) {
        if case .failure(let error) = await commit([]) { throw ProtocolError(.unavailable, "\(error)") }
    }

    private static func backupError(_ error: StoreError) -> ProtocolError {
        if case .unsupported(let reason) = error { return ProtocolError(.notSupported, reason) }
        return ProtocolError(.unavailable, "\(error)")
    }

    /// Runs `body` on a thread of its own: a copy blocks for as long as it takes, which must not
    /// hold a thread of the cooperative pool.
    private static func onOwnThread<T: Sendable>(_ body: @escaping @Sendable () throws(StoreError) -> T) async -> Result<T, StoreError> {
        await withCheckedContinuation { continuation in
            Thread { continuation.resume(returning: Result { () throws(StoreError) -> T in try body() }) }.start()
        }
    }
}
