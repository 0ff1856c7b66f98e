@testable import FerryCore
import Testing

@Suite("LogThrottle: one line per kind of failure every few seconds")
struct LogThrottleTests {
    @Test("the first line is due, the next ones within the interval are counted, the one after says how many")
    func throttles() {
        var throttle = LogThrottle(interval: 100)
        #expect(throttle.due("commit engine", now: 1_000) == (true, 0))
        #expect(throttle.due("commit engine", now: 1_050) == (false, 0))
        #expect(throttle.due("commit engine", now: 1_099) == (false, 0))
        // Another kind has its own interval.
        #expect(throttle.due("read engine", now: 1_099) == (true, 0))
        #expect(throttle.due("commit engine", now: 1_100) == (true, 2))
        #expect(throttle.due("commit engine", now: 1_300) == (true, 0))
    }
}
