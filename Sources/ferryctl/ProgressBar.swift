import Foundation
import Synchronization

/// A progress bar on standard error: bytes so far against an estimate, the rate and the time left.
/// Safe to update from any thread; it redraws at most ten times a second.
final class ProgressBar: Sendable {
    private struct State {
        var bytes = 0
        var drawnAt: ContinuousClock.Instant?
    }

    /// About how many bytes there will be; 0 when unknown.
    private let expected: Int
    private let started = ContinuousClock.now
    private let state = Mutex(State())

    init(expected: Int) {
        self.expected = expected
    }

    /// Records that `bytes` are done, redrawing when the last draw is 100 ms old.
    func update(_ bytes: Int) {
        let now = ContinuousClock.now
        let due = state.withLock { state in
            state.bytes = bytes
            guard state.drawnAt.map({ now - $0 >= .milliseconds(100) }) ?? true else { return false }
            state.drawnAt = now
            return true
        }
        if due { draw(bytes, of: expected, at: now) }
    }

    /// The full bar and a line end: the copy is compacted, so it may end short of the estimate.
    func complete(_ bytes: Int) {
        draw(bytes, of: bytes, at: .now)
        FileHandle.standardError.write(Data("\n".utf8))
    }

    /// A line end, so that a failure's message starts on a line of its own.
    func abandon() {
        FileHandle.standardError.write(Data("\n".utf8))
    }

    private func draw(_ bytes: Int, of total: Int, at now: ContinuousClock.Instant) {
        // Past the estimate the copy is still running: hold the bar short of full.
        let fraction = total > 0 ? min(bytes == total ? 1 : 0.99, Double(bytes) / Double(total)) : 0
        let filled = Int(fraction * 30)
        let bar = String(repeating: "#", count: filled) + String(repeating: " ", count: 30 - filled)
        let elapsed = Double((now - started).components.seconds) + Double((now - started).components.attoseconds) / 1e18
        let rate = elapsed > 0 ? Double(bytes) / elapsed : 0
        var line = "\r[\(bar)] \(Int(fraction * 100))%  \(Format.bytes(bytes))"
        if total > 0 { line += " of ~\(Format.bytes(total))" }
        // The first moments say nothing of the rate yet.
        if elapsed >= 0.5 {
            line += "  \(Format.bytes(Int(rate)))/s"
            if total > bytes, rate > 0 { line += "  ETA \(Format.duration(milliseconds: UInt64(Double(total - bytes) / rate * 1000)))" }
        }
        FileHandle.standardError.write(Data((line + "   ").utf8))
    }
}
