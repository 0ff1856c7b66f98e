import FerryTestSupport
import Foundation

/// Publishes `{"n":1}` … `{"n":count}` to one topic over HTTP, on a thread of its own, while a
/// test's subscriber reads them: a live stream that does not depend on the client under test.
///
/// Batches go to `POST /v1/publish` with `msg_id` `n-<n>`. A batch the broker did not confirm
/// (it was killed, say) is sent again with the same ids until it is, so a retry never stores a
/// second copy and version *n* always holds `{"n":n}`. The publisher stays at most `lead`
/// messages ahead of what `consumerReached` reported, so faults land mid-stream, not after it.
final class NumberedPublisher: Sendable {
    struct Log: Sendable {
        /// The confirmed version of each n, in n order.
        var versions: [UInt64] = []
        var duplicates = 0
        /// Requests that failed (broker down) and were retried.
        var retries = 0
        var problem: String?
    }

    private let log: Shared<Log>
    private let consumed: Shared<Int>
    private let progress: DispatchSemaphore
    private let thread: BackgroundThread

    init(port: Int, topic: String, count: Int, batch: Int = 50, lead: Int = 1000, deadline seconds: TimeInterval = 150) {
        let (log, consumed, progress) = (Shared(Log()), Shared(0), DispatchSemaphore(value: 0))
        (self.log, self.consumed, self.progress) = (log, consumed, progress)
        thread = BackgroundThread {
            let deadline = Deadline(seconds: seconds)
            var next = 1
            while next <= count {
                while next - 1 - consumed.value >= lead {
                    guard progress.wait(timeout: .now() + deadline.remaining) == .success else {
                        log.update { $0.problem = "the consumer stopped at \(consumed.value) of \(count)" }
                        return
                    }
                }
                let numbers = next...min(count, next + batch - 1)
                guard Self.publish(numbers, topic: topic, port: port, log: log, deadline: deadline) else { return }
                next = numbers.upperBound + 1
            }
        }
    }

    var value: Log { log.value }

    /// The subscriber has received `count` messages.
    func consumerReached(_ count: Int) {
        consumed.update { $0 = max($0, count) }
        progress.signal()
    }

    /// Waits until every message is confirmed or the publisher gave up.
    func join(timeout: TimeInterval) -> Bool { thread.join(timeout: timeout) }

    /// One batch, retried until confirmed; false (with `problem` set) when that cannot happen.
    private static func publish(
        _ numbers: ClosedRange<Int>, topic: String, port: Int, log: Shared<Log>, deadline: Deadline
    ) -> Bool {
        let messages = numbers.map { #"{"topic":\#(jsonText(topic)),"data":{"n":\#($0)},"msg_id":"n-\#($0)"}"# }
        let body = Data(#"{"messages":[\#(messages.joined(separator: ","))]}"#.utf8)
        while !deadline.hasPassed {
            let response = try? HTTP.request(
                port: port, method: "POST", path: "/v1/publish", headers: ["Content-Type": "application/json"], body: body,
                timeout: 5)
            if let response, response.status == 201, let results = response.json?.objects("results"), results.count == numbers.count {
                log.update { log in
                    for result in results {
                        log.versions.append(result.int("version").map { UInt64(max(0, $0)) } ?? 0)
                        if result.bool("duplicate") == true { log.duplicates += 1 }
                    }
                }
                return true
            }
            if let response, (400..<500).contains(response.status) {
                log.update { $0.problem = "batch \(numbers) was refused: \(response)" }
                return false
            }
            log.update { $0.retries += 1 }
            // The broker is down or restarting: ask again shortly (a retry interval, not a synchronisation).
            Thread.sleep(forTimeInterval: 0.02)
        }
        log.update { $0.problem = "batch \(numbers) was not confirmed before the deadline" }
        return false
    }
}
