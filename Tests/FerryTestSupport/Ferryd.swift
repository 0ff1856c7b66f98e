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
    /// The broker's port: chosen once in `init`, kept across restarts.
    package var port: Int { state.withLock { $0.port } }
    /// This broker's temp folder: `data/`, `ferryd.log`, and room for a test's own files.
    package let directory: URL
    package let dataDirectory: URL
    package let logURL: URL
    private let binary: URL
    private let environment: [String: String]
    private let wrapper: [String]
    /// The port and the running child (nil while stopped). Held for the whole of a start or stop,
    /// so two of them never interleave.
    private let state: Mutex<State>

    private struct State: Sendable {
        var port: Int
        var child: Child?
    }

    private struct Child: Sendable {
        let process: Process
        let exited: DispatchSemaphore
        /// Where this run's output starts in the log, which earlier runs share.
        let logOffset: UInt64
    }

    /// Another process bound the port between `freePort()` and ferryd's own bind.
    private struct PortTaken: Error, CustomStringConvertible {
        let port: Int
        var description: String { "port \(port) was taken by another process" }
    }

    /// Starts a broker and waits until it answers `/healthz` and its own log says it listens.
    /// - Parameters:
    ///   - environment: `FERRY_*` settings; the test process's own `FERRY_*` variables are not inherited.
    ///   - seed: a data folder (a backup, say) to copy in as this broker's data before it starts.
    ///   - wrapper: a command that execs the one after it (`prlimit --nofile=256:4096 --`, say),
    ///     so the broker runs in the conditions it sets, under the same process id.
    ///   - data: where the data folder goes (on a small filesystem, say); `data/` in the temp folder by default.
    package init(
        environment: [String: String] = [:], copyingDataFrom seed: URL? = nil, wrapper: [String] = [], data: URL? = nil
    ) throws {
        binary = try locateExecutable(named: "ferryd", override: "FERRYD_PATH")
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-test-\(UUID().uuidString)")
        dataDirectory = data ?? directory.appendingPathComponent("data")
        logURL = directory.appendingPathComponent("ferryd.log")
        self.environment = environment
        self.wrapper = wrapper
        state = Mutex(State(port: 0, child: nil))
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        if let seed {
            try FileManager.default.copyItem(at: seed, to: dataDirectory)
        } else {
            try FileManager.default.createDirectory(at: dataDirectory, withIntermediateDirectories: true)
        }
        // A free port is only free until someone binds it: parallel tests (brokers, proxies) race
        // for ports. Losing that race is not this test's failure, so take another port.
        for attempt in 1...5 {
            do {
                try state.withLock { state in
                    state.port = try TCPConnection.freePort()
                    try start(&state, mayTakeAnotherPort: true)
                }
                return
            } catch is PortTaken where attempt < 5 {
                continue
            }
        }
    }

    deinit {
        if let child = state.withLock({ $0.child }), child.process.isRunning {
            Glibc.kill(child.process.processIdentifier, SIGKILL)
            _ = child.exited.wait(timeout: .now() + 5)
        }
        if ProcessInfo.processInfo.environment["FERRY_TEST_KEEP"] == nil {
            try? FileManager.default.removeItem(at: directory)
        }
    }

    package var isRunning: Bool { state.withLock { $0.child?.process.isRunning ?? false } }

    /// A `FERRY_*` setting this broker was started with.
    package func environmentValue(_ name: String) -> String? {
        environment[name]
    }

    /// The running broker's process id.
    package var processID: Int32? { state.withLock { $0.child?.process.processIdentifier } }

    /// Starts the broker on the same port and data folder; it must not be running.
    package func start() throws {
        try state.withLock { try start(&$0) }
    }

    /// SIGTERM, then waits for the exit; returns the exit status.
    @discardableResult
    package func terminate(timeout: TimeInterval = 15) throws -> Int32 {
        try state.withLock { try stop(&$0, signal: SIGTERM, timeout: timeout) }
    }

    /// SIGKILL, then waits for the exit.
    package func kill() throws {
        _ = try state.withLock { try stop(&$0, signal: SIGKILL, timeout: 10) }
    }

    /// Stops the broker if it runs (SIGTERM) and starts it again on the same port and data.
    package func restart() throws {
        try state.withLock { state in
            if state.child != nil { _ = try stop(&state, signal: SIGTERM, timeout: 15) }
            try start(&state)
        }
    }

    /// The last `bytes` of the broker's log, for failure messages.
    package func logTail(bytes: Int = 4000) -> String {
        guard let data = FileManager.default.contents(atPath: logURL.path) else { return "(no log)" }
        return String(decoding: data.suffix(bytes), as: UTF8.self)
    }

    /// Launches the child on `state.port` and waits until it is ready. Only `init` may answer a lost
    /// port race with another port: after a restart the clients under test expect the old one.
    private func start(_ state: inout State, mayTakeAnotherPort: Bool = false) throws {
        guard state.child == nil else { throw TestFailure("ferryd is already running") }
        state.child = try launch(port: state.port)
        do {
            try waitUntilReady(&state)
        } catch let taken as PortTaken where !mayTakeAnotherPort {
            throw TestFailure("\(taken) while ferryd was down. Log tail:\n\(logTail())")
        }
    }

    private func launch(port: Int) throws -> Child {
        if !FileManager.default.fileExists(atPath: logURL.path) {
            _ = FileManager.default.createFile(atPath: logURL.path, contents: nil)
        }
        let log = try FileHandle(forWritingTo: logURL)
        let logOffset = log.seekToEndOfFile()
        defer { try? log.close() }  // the child has its own descriptor

        let (process, exited) = try spawnFerryd(
            wrapper.first.map { URL(fileURLWithPath: $0) } ?? binary,
            arguments: wrapper.dropFirst() + (wrapper.isEmpty ? [] : [binary.path])
                + ["--host", "127.0.0.1", "--port", String(port), "--data", dataDirectory.path],
            environment: environment, output: log)
        return Child(process: process, exited: exited, logOffset: logOffset)
    }

    private func stop(_ state: inout State, signal: Int32, timeout: TimeInterval) throws -> Int32 {
        guard let running = state.child else { throw TestFailure("ferryd is not running") }
        let process = running.process
        Glibc.kill(process.processIdentifier, signal)
        let timedOut = running.exited.wait(timeout: .now() + timeout) == .timedOut
        if timedOut {
            Glibc.kill(process.processIdentifier, SIGKILL)
            _ = running.exited.wait(timeout: .now() + 5)
        }
        state.child = nil
        if timedOut { throw TestFailure("ferryd did not exit within \(timeout) s of signal \(signal)\n\(logTail())") }
        return process.terminationStatus
    }

    /// Waits until `/healthz` answers 200 *and* this run's log says it listens on the port: a 200
    /// alone may come from another test's broker that won the port. Clears `child` when the process
    /// exits first; throws `PortTaken` when it exited because the port was in use.
    private func waitUntilReady(_ state: inout State) throws {
        let deadline = Deadline(seconds: 20)
        let port = state.port
        while let child = state.child {
            // Nothing to await here but the port: poll it, bounded by the deadline.
            if isServing(port: port), Self.saysListening(runLog(child), port: port) {
                return
            }
            if !child.process.isRunning {
                state.child = nil
                if runLog(child).contains("Address already in use") { throw PortTaken(port: port) }
                let failure = "ferryd exited with \(child.process.terminationStatus) before it was ready. Log tail:\n\(logTail())"
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

    /// `/healthz` answers 200; with TLS on, which this plain client cannot speak, the port accepts.
    private func isServing(port: Int) -> Bool {
        guard environment["FERRY_TLS_CERT"] == nil else { return (try? TCPConnection(port: port)) != nil }
        return (try? HTTP.request(port: port, method: "GET", path: "/healthz", timeout: 2))?.status == 200
    }

    /// ferryd's and Hummingbird's start lines: "listening on http://127.0.0.1:PORT", "listening on 127.0.0.1:PORT".
    private static func saysListening(_ log: String, port: Int) -> Bool {
        log.split(separator: "\n").contains { $0.contains("listening on") && $0.contains("127.0.0.1:\(port)") }
    }

    /// What this run of the child wrote to the log so far.
    private func runLog(_ child: Child) -> String {
        guard let handle = try? FileHandle(forReadingFrom: logURL) else { return "" }
        defer { try? handle.close() }
        try? handle.seek(toOffset: child.logOffset)
        return String(decoding: (try? handle.readToEnd()) ?? Data(), as: UTF8.self)
    }
}

/// Starts `executable` with the test process's environment less its `FERRY_*` variables, plus
/// `environment`, writing stdout and stderr to `output`; the semaphore is signalled when it exits.
package func spawnFerryd(_ executable: URL, arguments: [String], environment: [String: String], output: FileHandle) throws
    -> (Process, DispatchSemaphore)
{
    let process = Process()
    process.executableURL = executable
    process.arguments = arguments
    process.environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("FERRY_") }.merging(environment) { $1 }
    process.standardInput = FileHandle.nullDevice
    process.standardOutput = output
    process.standardError = output
    let exited = DispatchSemaphore(value: 0)
    process.terminationHandler = { _ in exited.signal() }
    try runWithNoSignalsBlocked(process)
    return (process, exited)
}

/// A child inherits the signal mask of the thread that spawns it, and the test runner's threads
/// block most signals: a child would never see its SIGTERM. So spawn with nothing blocked.
package func runWithNoSignalsBlocked(_ process: Process) throws {
    var nothing = sigset_t()
    var previous = sigset_t()
    sigemptyset(&nothing)
    pthread_sigmask(SIG_SETMASK, &nothing, &previous)
    defer { pthread_sigmask(SIG_SETMASK, &previous, nil) }
    try process.run()
}

/// The executable `override` names (an environment variable), else the first file called `name`
/// in the test bundle's folder or up to three above it: where `swift build` puts products.
package func locateExecutable(named name: String, override: String) throws -> URL {
    if let path = ProcessInfo.processInfo.environment[override], !path.isEmpty {
        return URL(fileURLWithPath: path)
    }
    let starts = [
        Bundle.main.bundleURL,
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent(),
    ]
    for start in starts {
        var folder = start.standardizedFileURL
        for _ in 0..<4 {
            let candidate = folder.appendingPathComponent(name)
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: candidate.path, isDirectory: &isDirectory),
                !isDirectory.boolValue, FileManager.default.isExecutableFile(atPath: candidate.path)
            {
                return candidate
            }
            folder.deleteLastPathComponent()
        }
    }
    throw TestFailure("no \(name) binary near \(starts.map(\.path)): build it, or set \(override)")
}
