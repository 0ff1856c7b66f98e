import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A PostgreSQL server of its own in a temp folder, started from the installed binaries
/// (`/usr/lib/postgresql/*/bin`), as the system user `ferrytest` when run as root (PostgreSQL
/// refuses root). Its owner may stop it, as a crash would, and start it again on the same data
/// folder and port:
///
///     let postgres = try ThrowawayPostgres()
///     defer { postgres.remove() }
///     try postgres.stop(immediate: true)     // pg_ctl stop -m immediate: no shutdown checkpoint
///     try postgres.start()                   // crash recovery, then accepts again on the same port
///
/// A watcher process stops the server and removes the folder once the test process is gone, so a
/// crashed or killed test run leaves nothing running; ``remove()`` does it at once.
package final class ThrowawayPostgres: Sendable {
    /// How to reach it: superuser `ferry`, trust authentication, database `postgres`.
    package let server: PostgresTestServer
    private let bin: String
    private let folder: String
    /// `setpriv` arguments that run the command after them as `ferrytest`; empty when not root.
    private let asUser: [String]
    private var data: String { folder + "/data" }
    private var log: String { folder + "/postgres.log" }

    /// Initialises a cluster in a new temp folder and starts it on a free port.
    package init() throws(PostgresTestServer.ServerUnavailable) {
        let versions = (try? FileManager.default.contentsOfDirectory(atPath: "/usr/lib/postgresql")) ?? []
        guard let version = versions.compactMap(Int.init).max() else {
            throw .init(reason: "no /usr/lib/postgresql/*/bin/initdb (run scripts/install-deps.sh)")
        }
        bin = "/usr/lib/postgresql/\(version)/bin"
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-pg-\(UUID().uuidString)").path
        do {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            asUser = try Self.unprivilegedUser(owning: folder)
            server = PostgresTestServer(
                host: "127.0.0.1", port: try PostgresTestServer.freePort(), user: "ferry", password: nil, adminDatabase: "postgres",
                psql: bin + "/psql")
        } catch {
            try? FileManager.default.removeItem(atPath: folder)
            throw error as? PostgresTestServer.ServerUnavailable ?? .init(reason: "\(error)")
        }
        do {
            try watch()
            let initialized = try run(
                "initdb", ["-D", data, "-U", server.user, "--auth=trust", "-E", "UTF8", "--no-locale", "--no-sync"])
            guard initialized.status == 0 else { throw PostgresTestServer.ServerUnavailable(reason: "initdb failed: \(initialized.output)") }
            try start()
        } catch {
            remove()
            throw error as? PostgresTestServer.ServerUnavailable ?? .init(reason: "\(error)")
        }
    }

    /// Starts the server on its data folder and port, and waits until it accepts connections (after
    /// an immediate stop, that includes crash recovery).
    ///
    /// The postmaster is a child of this process, not started by `pg_ctl start`: a daemon that
    /// pg_ctl leaves behind inherits the descriptor by which Foundation learns that pg_ctl exited,
    /// so waiting for pg_ctl would last as long as the server.
    package func start() throws(PostgresTestServer.ServerUnavailable) {
        let postmaster = Process()
        do {
            if !FileManager.default.fileExists(atPath: log) { _ = FileManager.default.createFile(atPath: log, contents: nil) }
            let output = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
            defer { try? output.close() }  // the child has its own descriptor
            output.seekToEndOfFile()
            let command = asUser + [bin + "/postgres"]
            postmaster.executableURL = URL(fileURLWithPath: command[0])
            postmaster.arguments = Array(command.dropFirst()) + [
                "-D", data, "-k", folder, "-h", server.host, "-p", "\(server.port)",
                "-c", "fsync=on", "-c", "synchronous_commit=on", "-c", "max_connections=300",
            ]
            postmaster.standardInput = FileHandle.nullDevice
            postmaster.standardOutput = output
            postmaster.standardError = output
            try runWithNoSignalsBlocked(postmaster)
        } catch {
            throw .init(reason: "postgres did not start: \(error)")
        }
        // Nothing to await but the port: poll it, bounded.
        let deadline = Deadline(seconds: 30)
        while (try? server.run("SELECT 1")) != "1" {
            guard postmaster.isRunning, !deadline.hasPassed else {
                throw .init(reason: "postgres did not accept connections on \(server.host):\(server.port) within 30 s: \(logTail())")
            }
            Thread.sleep(forTimeInterval: 0.1)
        }
    }

    /// Stops the server: `immediate` as a crash does (`pg_ctl stop -m immediate`: backends are
    /// killed, nothing is checkpointed, the next start recovers from the WAL), else `-m fast`.
    /// Returns once the postmaster is gone. (pg_ctl stop leaves no process behind: it may be waited for.)
    package func stop(immediate: Bool) throws(PostgresTestServer.ServerUnavailable) {
        let stopped = try run("pg_ctl", ["stop", "-D", data, "-m", immediate ? "immediate" : "fast", "-w", "-t", "30"])
        guard stopped.status == 0 else { throw .init(reason: "pg_ctl stop failed: \(stopped.output)") }
    }

    /// Stops the server if it runs and removes its folder (the watcher then ends).
    package func remove() {
        _ = try? run("pg_ctl", ["stop", "-D", data, "-m", "immediate", "-w", "-t", "30"])
        try? FileManager.default.removeItem(atPath: folder)
    }

    /// The end of the server's log, for failure messages.
    package func logTail(bytes: Int = 4000) -> String {
        guard let log = FileManager.default.contents(atPath: log) else { return "(no log)" }
        return String(decoding: log.suffix(bytes), as: UTF8.self)
    }

    /// A server binary run as the unprivileged user.
    private func run(_ program: String, _ arguments: [String]) throws(PostgresTestServer.ServerUnavailable) -> (
        status: Int32, output: String
    ) {
        let command = asUser + [bin + "/" + program] + arguments
        do {
            return try PostgresTestServer.execute(command[0], Array(command.dropFirst()))
        } catch {
            throw .init(reason: "\(program) did not run: \(error)")
        }
    }

    /// Stops the server and removes the folder once the test process is gone, unless `remove()`
    /// removed the folder first. A process, not an exit handler: it also acts when the tests crash
    /// or are killed.
    private func watch() throws {
        let stop = (asUser + [bin + "/pg_ctl", "stop", "-D", data, "-m", "immediate", "-w"]).map(shellQuoted).joined(separator: " ")
        let script = """
            while kill -0 \(getpid()) 2>/dev/null && [ -d \(shellQuoted(folder)) ]; do sleep 0.5; done
            if [ -d \(shellQuoted(folder)) ]; then \(stop) >/dev/null 2>&1; rm -rf \(shellQuoted(folder)); fi
            """
        let watcher = Process()
        watcher.executableURL = URL(fileURLWithPath: "/bin/sh")
        watcher.arguments = ["-c", script]
        watcher.standardInput = FileHandle.nullDevice
        watcher.standardOutput = FileHandle.nullDevice
        watcher.standardError = FileHandle.nullDevice
        try watcher.run()
    }

    /// Root: the `setpriv` prefix that runs a command as `ferrytest` (created when missing), to
    /// whom `folder` is given. Otherwise the current user runs the server.
    private static func unprivilegedUser(owning folder: String) throws -> [String] {
        guard getuid() == 0 else { return [] }
        let user = "ferrytest"
        if try PostgresTestServer.execute("/usr/bin/id", ["-u", user]).status != 0 {
            let added = try PostgresTestServer.execute(
                "/usr/sbin/useradd", ["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", user])
            guard added.status == 0 else { throw PostgresTestServer.ServerUnavailable(reason: "useradd \(user) failed: \(added.output)") }
        }
        let owned = try PostgresTestServer.execute("/bin/chown", [user, folder])
        guard owned.status == 0 else { throw PostgresTestServer.ServerUnavailable(reason: "chown failed: \(owned.output)") }
        return ["/usr/bin/setpriv", "--reuid=\(user)", "--regid=\(user)", "--init-groups", "--"]
    }
}
