import FerryTestSupport
import Foundation

/// Two brokers on a fresh database of the test PostgreSQL server, with the admin API on and
/// `environment` added; the database is dropped after `body`.
func withCluster(environment extra: [String: String] = [:], _ body: (Ferryd, Ferryd) throws -> Void) throws {
    let server = try PostgresTestServer.shared.get()
    let database = try server.createDatabase()
    defer { _ = try? server.dropDatabase(database) }
    let environment = ["FERRY_POSTGRES_URL": server.url(database: database), "FERRY_ADMIN_TOKEN": testAdminToken].merging(extra) { $1 }
    // One after the other: two starts at once are covered by the store's own tests.
    let a = try Ferryd(environment: environment)
    let b = try Ferryd(environment: environment)
    try body(a, b)
}

/// The database a broker of ``withCluster(environment:_:)`` runs on.
func clusterDatabase(of broker: Ferryd) throws -> String {
    guard let name = broker.environmentValue("FERRY_POSTGRES_URL")?.split(separator: "/").last else {
        throw TestFailure("the broker has no FERRY_POSTGRES_URL")
    }
    return String(name)
}
