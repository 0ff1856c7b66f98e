import Foundation
import Glibc
import Synchronization

/// A real `ferryd` child process on a free loopback port, with a data folder of its own.
///
///     let ferryd = try Ferryd(environment: ["FERRY_HEARTBEAT": "1"])
///     let ws = try ferryd.connect()
///
/// The binary is `FERRYD_PATH`, else the `ferryd` beside the test bundle. Its output goes to
/// `ferryd.log` in the broker's temp folder, which deinit removes after killing the process
/// (unless `FERRY_TEST_KEEP` is set, to read the logs of a failed run).
///
/// `Sendable`, so a test may kill and restart it from another task or thread while it watches a
/// client: the running child is behind a mutex, and start/stop calls are serialised by it.
package final class Ferryd: Sendable {
    package let port: Int
    /// This broker's temp folder: `data/`, `ferryd.log`, and room for a test's own files.
    package let directory: URL
    package let dataDirectory: URL
    package let logURL: URL
    private let binary: URL
    private let environment: [String: String]
    /// The running child and the semaphore its termination handler signals; nil while stopped.
    /// Held for the whole of a start or stop, so two of them never interleave.
    private let child = Mutex<Child?>(nil)

    private struct Child: Sendable {
        let process: Process
        let exited: DispatchSemaphore
    }

    /// Starts a broker and waits until `/healthz` answers 200.
    /// - Parameters:
    ///   - environment: `FERRY_*` settings; the test process's own `FERRY_*` variables are not inherited.
    ///   - seed: a data folder (a backup, say) to copy in as this broker's data before it starts.
    package init(environment: [String: String] = [:], copyingDataFrom seed: URL? = nil) throws {
        binary = try Self.locateBinary()
        port = try TCPConnection.freePort()
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-test-\(UUID().uuidString)")
        dataDirectory = directory.appendingPathComponent("data")
        logURL = directory.appendingPathComponent("ferryd.log")
        self.environment = environment
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        if let seed {
            try FileManager.default.copyItem(at: seed, to: dataDirectory)
        } else {
            try FileManager.default.createDirectory(at: dataDirectory, withIntermediateDirectories: true)
        }
        try start()
    }

    deinit {
        if let child = child.withLock({ $0 }), child.process.isRunning {
            Glibc.kill(child.process.processIdentifier, SIGKILL)
            _ = child.exited.wait(timeout: .now() + 5)
        }
        if ProcessInfo.processInfo.environment["FERRY_TEST_KEEP"] == nil {
            try? FileManager.default.removeItem(at: directory)
        }
    }

    package var isRunning: Bool { child.withLock { $0?.process.isRunning ?? false } }

    /// Starts the broker on the same port and data folder; it must not be running.
    package func start() throws {
        try child.withLock { child in
            guard child == nil else { throw TestFailure("ferryd is already running") }
            child = try launch()
            try waitUntilReady(&child)
        }
    }

    private func launch() throws -> Child {
        if !FileManager.default.fileExists(atPath: logURL.path) {
            _ = FileManager.default.createFile(atPath: logURL.path, contents: nil)
        }
        let log = try FileHandle(forWritingTo: logURL)
        log.seekToEndOfFile()
        defer { try? log.close() }  // the child has its own descriptor

        let process = Process()
        process.executableURL = binary
        process.arguments = ["--host", "127.0.0.1", "--port", String(port), "--data", dataDirectory.path]
        process.environment = ProcessInfo.processInfo.environment
            .filter { !$0.key.hasPrefix("FERRY_") }
            .merging(environment) { $1 }
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = log
        process.standardError = log
        let exited = DispatchSemaphore(value: 0)
        process.terminationHandler = { _ in exited.signal() }
        try Self.withNoSignalsBlocked { try process.run() }
        return Child(process: process, exited: exited)
    }

    /// SIGTERM, then waits for the exit; returns the exit status.
    @discardableResult
    package func terminate(timeout: TimeInterval = 15) throws -> Int32 {
        try child.withLock { try Self.stop(&$0, signal: SIGTERM, timeout: timeout, log: logTail) }
    }

    /// SIGKILL, then waits for the exit.
    package func kill() throws {
        _ = try child.withLock { try Self.stop(&$0, signal: SIGKILL, timeout: 10, log: logTail) }
    }

    /// Stops the broker if it runs (SIGTERM) and starts it again on the same port and data.
    package func restart() throws {
        try child.withLock { child in
            if child != nil { _ = try Self.stop(&child, signal: SIGTERM, timeout: 15, log: logTail) }
            child = try launch()
            try waitUntilReady(&child)
        }
    }

    /// The last `bytes` of the broker's log, for failure messages.
    package func logTail(bytes: Int = 4000) -> String {
        guard let data = FileManager.default.contents(atPath: logURL.path) else { return "(no log)" }
        return String(decoding: data.suffix(bytes), as: UTF8.self)
    }

    private static func stop(
        _ child: inout Child?, signal: Int32, timeout: TimeInterval, log: (Int) -> String
    ) throws -> Int32 {
        guard let running = child else { throw TestFailure("ferryd is not running") }
        let process = running.process
        Glibc.kill(process.processIdentifier, signal)
        let timedOut = running.exited.wait(timeout: .now() + timeout) == .timedOut
        if timedOut {
            Glibc.kill(process.processIdentifier, SIGKILL)
            _ = running.exited.wait(timeout: .now() + 5)
        }
        child = nil
        if timedOut { throw TestFailure("ferryd did not exit within \(timeout) s of signal \(signal)\n\(log(4000))") }
        return process.terminationStatus
    }

    /// Waits for `/healthz`; clears `child` when the process exits before it is ready.
    private func waitUntilReady(_ child: inout Child?) throws {
        let deadline = Deadline(seconds: 20)
        while true {
            // Nothing to await here but the port: poll it, bounded by the deadline.
            if let health = try? HTTP.request(port: port, method: "GET", path: "/healthz", timeout: 2),
                health.status == 200
            {
                return
            }
            if let process = child?.process, !process.isRunning {
                child = nil
                let failure = "ferryd exited with \(process.terminationStatus) before it was ready. Log tail:\n\(logTail())"
                print(failure)
                throw TestFailure(failure)
            }
            if deadline.hasPassed {
                let failure = "ferryd not ready within 20 s on port \(port). Log tail:\n\(logTail())"
                print(failure)
                throw TestFailure(failure)
            }
            Thread.sleep(forTimeInterval: 0.02)
        }
    }

    /// A child inherits the signal mask of the thread that spawns it, and the test runner's threads
    /// block most signals: ferryd would never see its SIGTERM. So spawn with nothing blocked.
    private static func withNoSignalsBlocked(_ body: () throws -> Void) rethrows {
        var nothing = sigset_t()
        var previous = sigset_t()
        sigemptyset(&nothing)
        pthread_sigmask(SIG_SETMASK, &nothing, &previous)
        defer { pthread_sigmask(SIG_SETMASK, &previous, nil) }
        try body()
    }

    /// `FERRYD_PATH`, else the first `ferryd` file in the test bundle's folder or one above it.
    private static func locateBinary() throws -> URL {
        if let path = ProcessInfo.processInfo.environment["FERRYD_PATH"], !path.isEmpty {
            return URL(fileURLWithPath: path)
        }
        let starts = [
            Bundle.main.bundleURL,
            URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent(),
        ]
        for start in starts {
            var folder = start.standardizedFileURL
            for _ in 0..<4 {
                let candidate = folder.appendingPathComponent("ferryd")
                var isDirectory: ObjCBool = false
                if FileManager.default.fileExists(atPath: candidate.path, isDirectory: &isDirectory),
                    !isDirectory.boolValue, FileManager.default.isExecutableFile(atPath: candidate.path)
                {
                    return candidate
                }
                folder.deleteLastPathComponent()
            }
        }
        throw TestFailure("no ferryd binary near \(starts.map(\.path)): build it, or set FERRYD_PATH")
    }
}
