import FerryTestSupport
import Foundation
import Glibc
import Testing

/// Debian's headless Chromium running one page. Foundation starts a child as the leader of a new
/// process group, which Chromium's zygote and renderers join: one signal to the group ends them all.
final class Chromium {
    /// Debian's `chromium` package installs it here; `CHROMIUM_PATH` overrides.
    static let path = ProcessInfo.processInfo.environment["CHROMIUM_PATH"] ?? "/usr/bin/chromium"
    static var isInstalled: Bool { FileManager.default.isExecutableFile(atPath: path) }

    private let process = Process()
    private let exited = DispatchSemaphore(value: 0)
    let logURL: URL
    private let profile: URL

    /// Opens `url` in a fresh profile under `directory` (its own localStorage).
    init(url: URL, directory: URL) throws {
        profile = directory.appendingPathComponent("chromium-profile")
        logURL = directory.appendingPathComponent("chromium.log")
        _ = FileManager.default.createFile(atPath: logURL.path, contents: nil)
        let log = try FileHandle(forWritingTo: logURL)
        defer { try? log.close() }
        process.executableURL = URL(fileURLWithPath: Self.path)
        process.arguments = [
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--no-first-run", "--no-default-browser-check", "--user-data-dir=\(profile.path)",
            "--window-size=1280,1000",
            // Keeps the browser running after the page loads, until the test ends it; tests that
            // look into the page use it through `devTools()`.
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

    /// A DevTools protocol connection to the page the browser opened. Chromium writes the port
    /// it chose to `DevToolsActivePort` in the profile once it listens.
    func devTools(timeout: TimeInterval = 30) throws -> DevTools {
        let deadline = Deadline(seconds: timeout)
        let file = profile.appendingPathComponent("DevToolsActivePort")
        while true {
            if let text = try? String(contentsOf: file, encoding: .utf8),
                let port = text.split(separator: "\n").first.flatMap({ Int($0) }),
                let list = try? HTTP.request(port: port, method: "GET", path: "/json/list"),
                let targets = try? JSONSerialization.jsonObject(with: list.body) as? [JSON],
                let page = targets.first(where: { $0.string("type") == "page" }),
                let socketURL = page.string("webSocketDebuggerUrl").flatMap(URL.init(string:))
            {
                return try DevTools(port: port, path: socketURL.path)
            }
            if deadline.hasPassed { throw TestFailure("no DevTools page target within \(timeout) s. Chromium:\n\(logTail())") }
            Thread.sleep(forTimeInterval: 0.05)
        }
    }

    /// The page's console lines and the browser's errors, for failure messages.
    func logTail(bytes: Int = 3000) -> String {
        guard let data = FileManager.default.contents(atPath: logURL.path) else { return "(no log)" }
        return String(decoding: data.suffix(bytes), as: UTF8.self)
    }
}

/// The Chrome DevTools protocol over a WebSocket: commands with ids, answered in order; events skipped.
final class DevTools {
    private let socket: TestWebSocket
    private var nextID = 1

    init(port: Int, path: String) throws {
        socket = try TestWebSocket(port: port, path: path)
    }

    deinit { socket.close() }

    /// Sends `method` and returns its `result`; a protocol error throws.
    @discardableResult
    func call(_ method: String, _ params: JSON = [:], timeout: TimeInterval = 30) throws -> JSON {
        let id = nextID
        nextID += 1
        try socket.sendJSON(["id": id, "method": method, "params": params])
        let deadline = Deadline(seconds: timeout)
        while let frame = try socket.nextJSON(timeout: deadline.remaining) {
            guard frame.int("id") == id else { continue }
            if let error = frame.object("error") { throw TestFailure("DevTools \(method): \(error.text)") }
            return frame.object("result") ?? [:]
        }
        throw TestFailure("DevTools \(method): no answer within \(timeout) s")
    }

    /// The value of a JavaScript expression in the page (a promise is awaited); a thrown error throws.
    @discardableResult
    func evaluate(_ expression: String, timeout: TimeInterval = 30) throws -> Any? {
        let result = try call(
            "Runtime.evaluate", ["expression": expression, "returnByValue": true, "awaitPromise": true], timeout: timeout)
        if let exception = result.object("exceptionDetails") {
            let description = exception.object("exception")?.string("description") ?? exception.text
            throw TestFailure("page threw on `\(expression.prefix(200))`: \(description)")
        }
        return result.object("result")?["value"]
    }

    /// Evaluates `expression` until it is `true`. The page has no event to await from here, so
    /// this polls its state, bounded by the deadline.
    func waitUntil(_ expression: String, timeout: TimeInterval = 30, _ what: @autoclosure () -> String = "") throws {
        let deadline = Deadline(seconds: timeout)
        while try evaluate(expression) as? Bool != true {
            if deadline.hasPassed { throw TestFailure("within \(timeout) s, never true: \(expression) \(what())") }
            Thread.sleep(forTimeInterval: 0.05)
        }
    }

    /// A PNG of the page as it is drawn now.
    func screenshot() throws -> Data {
        let result = try call("Page.captureScreenshot", ["format": "png"], timeout: 60)
        guard let png = result.string("data").flatMap({ Data(base64Encoded: $0) }) else {
            throw TestFailure("Page.captureScreenshot gave no data")
        }
        return png
    }
}

extension Trait where Self == ConditionTrait {
    /// Skips a test where Debian's chromium is missing.
    static var needsChromium: Self {
        .enabled(if: Chromium.isInstalled, "needs Debian's chromium (scripts/install-deps.sh installs it)")
    }
}
