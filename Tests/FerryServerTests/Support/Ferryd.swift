import Foundation
import Glibc

/// A real `ferryd` child process on a free loopback port, with a data folder of its own.
///
///     let ferryd = try Ferryd(environment: ["FERRY_HEARTBEAT": "1"])
///     let ws = try ferryd.connect()
///
/// The binary is `FERRYD_PATH`, else the `ferryd` beside the test bundle. Its output goes to
/// `ferryd.log` in the broker's temp folder, which deinit removes after killing the process
/// (unless `FERRY_TEST_KEEP` is set, to read the logs of a failed run).
final class Ferryd {
    let port: Int
    /// This broker's temp folder: `data/`, `ferryd.log`, and room for a test's own files.
    let directory: URL
    let dataDirectory: URL
    let logURL: URL
    private let binary: URL
    private let environment: [String: String]
    private var process: Process?
    private var exited: DispatchSemaphore?

    /// Starts a broker and waits until `/healthz` answers 200.
    /// - Parameters:
    ///   - environment: `FERRY_*` settings; the test process's own `FERRY_*` variables are not inherited.
    ///   - seed: a data folder (a backup, say) to copy in as this broker's data before it starts.
    init(environment: [String: String] = [:], copyingDataFrom seed: URL? = nil) throws {
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
        if let process, process.isRunning {
            Glibc.kill(process.processIdentifier, SIGKILL)
            _ = exited?.wait(timeout: .now() + 5)
        }
        if ProcessInfo.processInfo.environment["FERRY_TEST_KEEP"] == nil {
            try? FileManager.default.removeItem(at: directory)
        }
    }

    var isRunning: Bool { process?.isRunning ?? false }

    /// Starts the broker on the same port and data folder; it must not be running.
    func start() throws {
        guard process == nil else { throw TestFailure("ferryd is already running") }
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
        self.process = process
        self.exited = exited
        try waitUntilReady()
    }

    /// SIGTERM, then waits for the exit; returns the exit status.
    @discardableResult
    func terminate(timeout: TimeInterval = 15) throws -> Int32 {
        try stop(signal: SIGTERM, timeout: timeout)
    }

    /// SIGKILL, then waits for the exit.
    func kill() throws {
        _ = try stop(signal: SIGKILL, timeout: 10)
    }

    /// Stops the broker if it runs (SIGTERM) and starts it again on the same port and data.
    func restart() throws {
        if process != nil { _ = try terminate() }
        try start()
    }

    /// The last `bytes` of the broker's log, for failure messages.
    func logTail(bytes: Int = 4000) -> String {
        guard let data = FileManager.default.contents(atPath: logURL.path) else { return "(no log)" }
        return String(decoding: data.suffix(bytes), as: UTF8.self)
    }

    private func stop(signal: Int32, timeout: TimeInterval) throws -> Int32 {
        guard let process, let exited else { throw TestFailure("ferryd is not running") }
        Glibc.kill(process.processIdentifier, signal)
        let timedOut = exited.wait(timeout: .now() + timeout) == .timedOut
        if timedOut {
            Glibc.kill(process.processIdentifier, SIGKILL)
            _ = exited.wait(timeout: .now() + 5)
        }
        self.process = nil
        self.exited = nil
        if timedOut { throw TestFailure("ferryd did not exit within \(timeout) s of signal \(signal)\n\(logTail())") }
        return process.terminationStatus
    }

    private func waitUntilReady() throws {
        let deadline = Deadline(seconds: 20)
        while true {
            // Nothing to await here but the port: poll it, bounded by the deadline.
            if let health = try? HTTP.request(port: port, method: "GET", path: "/healthz", timeout: 2),
                health.status == 200
            {
                return
            }
            if let process, !process.isRunning {
                self.process = nil
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
