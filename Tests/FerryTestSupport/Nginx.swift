import Foundation
import Glibc

/// A real nginx child process on a free loopback port, serving the shipped
/// `deploy/nginx/ferry.conf` in front of a broker.
///
///     let nginx = try Nginx(proxyingTo: ferryd.port)
///     let ws = try TestWebSocket(port: nginx.port)
///
/// The config is the committed file with only its addresses changed (and, when asked, its socket
/// timeouts), so a test through it tests what operators install. deinit stops nginx with SIGQUIT
/// (graceful, so no worker outlives it) and removes its temp folder.
package final class Nginx {
    /// The nginx binary, or nil when it is not installed.
    package static let executable: String? = ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"]
        .first { FileManager.default.isExecutableFile(atPath: $0) }

    /// The repository's `deploy/nginx/`.
    private static let folder = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("deploy/nginx")
    /// The site operators install.
    package static let shippedConfig = folder.appendingPathComponent("ferry.conf")
    /// The main config that runs the site from a scratch folder.
    private static let localConfig = folder.appendingPathComponent("local.conf")

    package let port: Int
    private let directory: URL
    private let process: Process
    private let exited = DispatchSemaphore(value: 0)

    /// Starts nginx and waits until it accepts connections.
    /// - Parameters:
    ///   - upstreamPort: the broker's port, in place of the shipped 127.0.0.1:8080.
    ///   - socketTimeout: replaces the WebSocket location's `proxy_read_timeout` and
    ///     `proxy_send_timeout` (e.g. `"2s"`), to test their relation to the heartbeat quickly.
    package init(proxyingTo upstreamPort: Int, socketTimeout: String? = nil) throws {
        guard let executable = Self.executable else { throw TestFailure("nginx is not installed") }
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-nginx-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory.appendingPathComponent("temp"), withIntermediateDirectories: true)
        port = try TCPConnection.freePort()
        var site = try Self.render(
            String(contentsOf: Self.shippedConfig, encoding: .utf8),
            replacing: [
                "server 127.0.0.1:8080;": "server 127.0.0.1:\(upstreamPort);",
                "listen 80;": "listen 127.0.0.1:\(port);",
                // The test host may have no IPv6.
                "listen [::]:80;": "",
            ])
        if let socketTimeout {
            site = try Self.render(
                site,
                replacing: [
                    "proxy_read_timeout 75s;": "proxy_read_timeout \(socketTimeout);",
                    "proxy_send_timeout 75s;": "proxy_send_timeout \(socketTimeout);",
                ])
        }
        try site.write(to: directory.appendingPathComponent("ferry.conf"), atomically: true, encoding: .utf8)
        try FileManager.default.copyItem(at: Self.localConfig, to: directory.appendingPathComponent("local.conf"))

        process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = [
            "-p", directory.path + "/", "-c", "local.conf", "-e", directory.appendingPathComponent("error.log").path,
            "-g", "daemon off;",
        ]
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        process.terminationHandler = { [exited] _ in exited.signal() }
        try runWithNoSignalsBlocked(process)
        try waitUntilListening()
    }

    deinit {
        if process.isRunning {
            Glibc.kill(process.processIdentifier, SIGQUIT)
            if exited.wait(timeout: .now() + 10) == .timedOut { Glibc.kill(process.processIdentifier, SIGKILL) }
        }
        if ProcessInfo.processInfo.environment["FERRY_TEST_KEEP"] == nil {
            try? FileManager.default.removeItem(at: directory)
        }
    }

    /// nginx's error log so far, for failure messages.
    package var errorLog: String {
        (try? String(contentsOf: directory.appendingPathComponent("error.log"), encoding: .utf8)) ?? "(no error log)"
    }

    /// `text` with each key replaced by its value; every key must occur, so a change to the
    /// shipped file fails here instead of quietly testing something else.
    private static func render(_ text: String, replacing replacements: [String: String]) throws -> String {
        var text = text
        for (old, new) in replacements {
            guard text.contains(old) else { throw TestFailure("\(shippedConfig.path) no longer contains '\(old)'") }
            text = text.replacingOccurrences(of: old, with: new)
        }
        return text
    }

    /// Nothing to await but the port: poll it until nginx accepts, exits, or 10 s pass.
    private func waitUntilListening() throws {
        let deadline = Deadline(seconds: 10)
        while true {
            if let probe = try? TCPConnection(port: port) {
                probe.close()
                return
            }
            if !process.isRunning { throw TestFailure("nginx exited with \(process.terminationStatus):\n\(errorLog)") }
            if deadline.hasPassed { throw TestFailure("nginx not listening on \(port) within 10 s:\n\(errorLog)") }
            Thread.sleep(forTimeInterval: 0.02)
        }
    }
}
