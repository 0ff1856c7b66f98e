import Foundation
import Glibc

/// How one start of `ferryd` ended: it exited (a refused setting, say), or it came up and
/// said it listens, and was killed.
package struct FerrydStart: Sendable, CustomStringConvertible {
    /// The exit status; nil when the broker started instead.
    package let status: Int32?
    /// What it wrote to stdout and stderr.
    package let output: String

    package var description: String { "\(status.map { "exit \($0)" } ?? "started") with output:\n\(output)" }

    /// Runs `ferryd` with `arguments` and `environment` on port 0 with a data folder of its own
    /// (both overridable), until it exits or says it listens (then it is killed).
    ///
    /// The test process's own `FERRY_*` variables are not inherited. Defaults come as variables,
    /// so a case may override them with a flag or with a variable alike.
    package static func run(arguments: [String] = [], environment: [String: String] = [:], timeout: TimeInterval = 30) throws -> FerrydStart {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("ferryd-start-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let logURL = folder.appendingPathComponent("output")
        _ = FileManager.default.createFile(atPath: logURL.path, contents: nil)
        let log = try FileHandle(forWritingTo: logURL)
        defer { try? log.close() }

        let defaults = ["FERRY_HOST": "127.0.0.1", "FERRY_PORT": "0", "FERRY_DATA": folder.appendingPathComponent("data").path]
        let (process, exited) = try spawnFerryd(
            try locateExecutable(named: "ferryd", override: "FERRYD_PATH"), arguments: arguments,
            environment: defaults.merging(environment) { $1 }, output: log)

        let read = { String(decoding: FileManager.default.contents(atPath: logURL.path) ?? Data(), as: UTF8.self) }
        let deadline = Deadline(seconds: timeout)
        // Either event ends the wait: the exit (awaited on the semaphore) or the start line.
        while exited.wait(timeout: .now() + 0.02) == .timedOut {
            if read().contains("listening on") || deadline.hasPassed {
                Glibc.kill(process.processIdentifier, SIGKILL)
                exited.wait()
                if deadline.hasPassed { throw TestFailure("ferryd neither exited nor started within \(timeout) s:\n\(read())") }
                return FerrydStart(status: nil, output: read())
            }
        }
        return FerrydStart(status: process.terminationStatus, output: read())
    }
}
