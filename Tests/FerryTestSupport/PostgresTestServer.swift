import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A PostgreSQL server for the tests: the one `FERRY_TEST_POSTGRES_URL` names (its user must be
/// allowed to create databases), else a throwaway one started once per test process from the
/// installed binaries (``ThrowawayPostgres``) and stopped once the process is gone.
///
/// Each test gets a database of its own (``createDatabase()``), dropped after it.
package struct PostgresTestServer: Sendable {
    package let host: String
    package let port: Int
    package let user: String
    package let password: String?
    /// The database the server's databases are created from and dropped through.
    package let adminDatabase: String
    package let psql: String

    /// The server, or why there is none (then the PostgreSQL tests are skipped with that reason).
    package static let shared: Result<PostgresTestServer, ServerUnavailable> = start()

    package static var isAvailable: Bool { (try? shared.get()) != nil }

    /// Why the PostgreSQL tests cannot run here (said when they are skipped).
    package static var unavailableReason: String {
        if case .failure(let error) = shared { return "PostgreSQL could not be started: \(error.reason)" }
        return "PostgreSQL is available"
    }

    package struct ServerUnavailable: Error, CustomStringConvertible {
        package var reason: String
        package var description: String { reason }
    }

    package func url(database: String) -> String {
        let credentials = password.map { "\(user):\($0)" } ?? user
        return "postgres://\(credentials)@\(host):\(port)/\(database)"
    }

    /// A new empty database's name.
    package func createDatabase() throws -> String {
        let name = "ferry_test_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
        try run("CREATE DATABASE \(name)")
        return name
    }

    /// Drops `name`, closing whatever connections still use it.
    package func dropDatabase(_ name: String) throws {
        try run("DROP DATABASE IF EXISTS \(name) WITH (FORCE)")
    }

    /// Runs `sql` with psql and returns its unaligned output.
    @discardableResult
    package func run(_ sql: String, database: String? = nil) throws -> String {
        var environment = ProcessInfo.processInfo.environment
        if let password { environment["PGPASSWORD"] = password }
        let result = try Self.execute(
            psql, ["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", host, "-p", "\(port)", "-U", user, "-d", database ?? adminDatabase, "-c", sql],
            environment: environment)
        guard result.status == 0 else { throw ServerUnavailable(reason: "psql failed on \(sql): \(result.output)") }
        return result.output.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    // MARK: - Starting one

    private static func start() -> Result<PostgresTestServer, ServerUnavailable> {
        do {
            if let url = ProcessInfo.processInfo.environment["FERRY_TEST_POSTGRES_URL"], !url.isEmpty {
                guard let parts = URLComponents(string: url), let host = parts.host, let user = parts.user, parts.path.count > 1 else {
                    throw ServerUnavailable(reason: "FERRY_TEST_POSTGRES_URL is not postgres://user[:password]@host[:port]/database")
                }
                return .success(
                    PostgresTestServer(
                        host: host, port: parts.port ?? 5432, user: user, password: parts.password,
                        adminDatabase: String(parts.path.dropFirst()), psql: "psql"))
            }
            return .success(try startThrowaway())
        } catch let error as ServerUnavailable {
            return .failure(error)
        } catch {
            return .failure(ServerUnavailable(reason: "\(error)"))
        }
    }

    /// A server of this process's own, never stopped by the tests: its watcher stops it and
    /// removes its folder once the process is gone.
    private static func startThrowaway() throws -> PostgresTestServer {
        try ThrowawayPostgres().server
    }

    /// A port nothing listens on now.
    static func freePort() throws -> Int {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw ServerUnavailable(reason: "socket() failed") }
        defer { close(descriptor) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, length) == 0 && getsockname(descriptor, $0, &length) == 0 }
        }
        guard bound else { throw ServerUnavailable(reason: "cannot find a free port") }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    package static func execute(_ path: String, _ arguments: [String], environment: [String: String]? = nil) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        if let environment { process.environment = environment }
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: output, as: UTF8.self))
    }
}

func shellQuoted(_ text: String) -> String {
    "'" + text.replacingOccurrences(of: "'", with: "'\\''") + "'"
}
