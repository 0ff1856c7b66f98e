import FerryProtocol
import Foundation
import Logging

/// A connection attempt: token, TCP, TLS and upgrade, then the WebSocket until it ends, with a
/// watchdog that gives the attempt up when a phase overruns its deadline (``AttemptWatch``).
extension ClientCore {
    /// One attempt, from the token to the connection's end, with a deadline on every phase.
    func connectOnce() async -> AttemptEnd {
        guard !isFinished else { return .lost(closeCode: nil, reason: "closed") }
        enter(configuration.tokenProvider == nil ? .connect : .token)
        let task = Task { await self.attemptUnderDeadlines() }
        attempt = task
        defer { attempt = nil }
        return await task.value
    }

    private nonisolated func attemptUnderDeadlines() async -> AttemptEnd {
        await withTaskGroup(of: AttemptEnd?.self) { group in
            group.addTask { await self.openAndServe() }
            group.addTask { await self.watchDeadlines() }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first ?? .lost(closeCode: nil, reason: "closed")
        }
    }

    /// Token, TCP, TLS and upgrade, then the WebSocket until it ends.
    private nonisolated func openAndServe() async -> AttemptEnd {
        do {
            let dialer = try dialer.get()
            var token: String?
            if let provider = configuration.tokenProvider {
                do {
                    token = try await abandoningOnCancel { try await provider() }
                } catch {
                    return .lost(closeCode: nil, reason: "the token provider failed: \(error)")
                }
                await enter(.connect)
            }
            let handshake = try await dialer.connect(token: token)
            await enter(.handshake)
            let webSocket = try await dialer.answer(handshake)
            let (frames, sender) = AsyncStream.makeStream(of: [UInt8].self)
            await opened(sender)
            let (code, reason) = try await WebSocketDialer.serve(
                webSocket, outgoing: frames, onText: { await self.received($0) }, onHeard: { await self.heard() })
            return .lost(closeCode: code, reason: reason)
        } catch WebSocketDialer.Failure.refused(let refusal) {
            return .refused(refusal)
        } catch {
            logger.debug("connection ended", metadata: ["error": "\(error)"])
            return .lost(closeCode: nil, reason: "\(error)")
        }
    }

    /// Ends the attempt when its phase overruns its deadline, or a connection goes silent.
    private nonisolated func watchDeadlines() async -> AttemptEnd? {
        while !Task.isCancelled {
            switch await deadlineVerdict() {
            case .wait(let wait), .ping(then: let wait):
                await sleep(wait)
            case .expired(let phase, let after):
                return .lost(closeCode: nil, reason: phase == .connected ? "silent" : "no \(phase.rawValue) within \(after)")
            }
        }
        return nil
    }

    private func deadlineVerdict() -> AttemptWatch.Verdict {
        let verdict = watch.check(at: clock.now())
        switch verdict {
        case .ping:
            if case .connected = state { send(.ping(id: nil)) }
        case .expired(let phase, let after):
            logger.info("connection attempt abandoned", metadata: ["ferry.phase": "\(phase.rawValue)", "ferry.after": "\(after)"])
        case .wait:
            break
        }
        return verdict
    }

    /// The watchdog's sleep; `enter` wakes it early, since a new phase has a deadline of its own.
    private func sleep(_ duration: Duration) async {
        let sleeper = Task { [clock] in _ = try? await clock.sleep(duration) }
        nap = sleeper
        await withTaskCancellationHandler { await sleeper.value } onCancel: { sleeper.cancel() }
    }

    func enter(_ phase: AttemptWatch.Phase) {
        watch.enter(phase, at: clock.now())
        nap?.cancel()
    }
}
