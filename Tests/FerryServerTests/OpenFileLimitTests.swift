import FerryTestSupport
import Foundation
import Testing

/// ferryd takes the hard limit on open files, as a server that needs one per connection must.
@Suite("ferryd's open-file limit")
struct OpenFileLimitTests {
    private static let prlimit = "/usr/bin/prlimit"

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: prlimit), "needs util-linux's prlimit"))
    func softLimitIsRaisedToTheHardLimit() throws {
        // A container runtime's typical start: a low soft limit under a higher hard one.
        let ferryd = try Ferryd(wrapper: [Self.prlimit, "--nofile=256:4096", "--"])
        let pid = try #require(ferryd.processID)
        let limits = try String(contentsOfFile: "/proc/\(pid)/limits", encoding: .utf8)
        let line = try #require(limits.split(separator: "\n").first { $0.hasPrefix("Max open files") })
        #expect(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst(3).prefix(2) == ["4096", "4096"])
        #expect(ferryd.logTail().contains("ferry.open_files=4096"))
        // The default WebSocket cap keeps a tenth of the descriptors spare.
        #expect(ferryd.logTail().contains("ferry.max_connections=3681"))
    }
}
