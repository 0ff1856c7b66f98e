import FerryTestSupport
import Foundation
import Glibc

/// Debian's headless Chromium running one page. Foundation starts a child as the leader of a new
/// process group, which Chromium's zygote and renderers join: one signal to the group ends them all.
final class Chromium {
    /// Debian's `chromium` package installs it here; `CHROMIUM_PATH` overrides.
    static let path = ProcessInfo.processInfo.environment["CHROMIUM_PATH"] ?? "/usr/bin/chromium"
    static var isInstalled: Bool { FileManager.default.isExecutableFile(atPath: path) }

    private let process = Process()
    private let exited = DispatchSemaphore(value: 0)
    let logURL: URL

    /// Opens `url` in a fresh profile under `directory` (its own localStorage).
    init(url: URL, directory: URL) throws {
        let profile = directory.appendingPathComponent("chromium-profile")
        logURL = directory.appendingPathComponent("chromium.log")
        _ = FileManager.default.createFile(atPath: logURL.path, contents: nil)
        let log = try FileHandle(forWritingTo: logURL)
        defer { try? log.close() }
        process.executableURL = URL(fileURLWithPath: Self.path)
        process.arguments = [
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--no-first-run", "--no-default-browser-check", "--user-data-dir=\(profile.path)",
            // Keeps the browser running after the page loads, until the test ends it.
            "--remote-debugging-port=0",
            // Page console output goes to the log, for failure messages.
            "--enable-logging=stderr", "--v=0",
            url.absoluteString,
        ]
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = log
        process.standardError = log
        // Crash reports (crashpad) go to the test's folder, not the user's home.
        process.environment = ProcessInfo.processInfo.environment.merging(["XDG_CONFIG_HOME": directory.path]) { $1 }
        // waitUntilExit needs a run loop that test threads do not run: wait on the handler instead.
        let exited = exited
        process.terminationHandler = { _ in exited.signal() }
        try runWithNoSignalsBlocked(process)
    }

    deinit {
        Glibc.kill(-process.processIdentifier, SIGKILL)
        _ = exited.wait(timeout: .now() + 10)
    }

    /// The page's console lines and the browser's errors, for failure messages.
    func logTail(bytes: Int = 3000) -> String {
        guard let data = FileManager.default.contents(atPath: logURL.path) else { return "(no log)" }
        return String(decoding: data.suffix(bytes), as: UTF8.self)
    }
}
