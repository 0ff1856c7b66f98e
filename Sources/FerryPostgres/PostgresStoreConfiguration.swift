import FerryStore
import Foundation

/// How the PostgreSQL store connects and what it enforces.
///
/// ```swift
/// var configuration = try PostgresStoreConfiguration(url: "postgres://ferry@127.0.0.1:5432/ferry")
/// configuration.retention = RetentionPolicy(maxMessages: 10_000)
/// let store = try PostgresMessageStore(configuration: configuration)
/// ```
public struct PostgresStoreConfiguration: Sendable {
    /// A host name or IP address (no brackets around IPv6).
    public var host: String
    public var port: Int
    public var username: String
    /// Nil for trust or peer authentication.
    public var password: String?
    /// Ferry's database; the store creates its tables there.
    public var database: String
    public var retention = RetentionPolicy()
    /// How long a `msg_id` is remembered, in milliseconds.
    public var dedupWindow: UInt64 = 24 * 3600 * 1000
    /// Idle connections kept open for reads and commits; more are opened while callers overlap.
    public var idleConnections = 4
    /// How this broker is named to operators among the brokers sharing the database (its host
    /// and port, say): at most 44 ASCII bytes are kept.
    public var nodeName = ProcessInfo.processInfo.hostName

    public init(host: String, port: Int = 5432, username: String, password: String? = nil, database: String) {
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.database = database
    }

    /// Parses `postgres://user[:password]@host[:port]/database` (or `postgresql://`).
    ///
    /// Refuses anything else, naming what is wrong: a query string (TLS and other options are not
    /// supported yet), a missing user, host or database, a port outside 1...65535.
    public init(url: String) throws(StoreError) {
        func invalid(_ reason: String) -> StoreError {
            // The URL may carry a password: name only what is wrong with it.
            StoreError.engine("invalid PostgreSQL URL: \(reason); expected postgres://user[:password]@host[:port]/database")
        }
        guard let components = URLComponents(string: url) else { throw invalid("it does not parse as a URL") }
        guard let scheme = components.scheme?.lowercased(), scheme == "postgres" || scheme == "postgresql" else {
            throw invalid("the scheme must be postgres or postgresql")
        }
        guard components.query == nil, components.fragment == nil else { throw invalid("query parameters and fragments are not supported") }
        guard let user = components.user, !user.isEmpty else { throw invalid("the user is missing") }
        guard let host = components.host, !host.isEmpty else { throw invalid("the host is missing") }
        let port = components.port ?? 5432
        guard (1...65535).contains(port) else { throw invalid("the port must be within 1...65535") }
        let path = components.percentEncodedPath
        guard path.hasPrefix("/"), path.count > 1, !path.dropFirst().contains("/") else {
            throw invalid("the path must name exactly one database")
        }
        guard let username = components.percentEncodedUser?.removingPercentEncoding,
            let database = String(path.dropFirst()).removingPercentEncoding
        else { throw invalid("a percent escape is malformed") }
        var password: String?
        if let encoded = components.percentEncodedPassword {
            guard let decoded = encoded.removingPercentEncoding else { throw invalid("a percent escape is malformed") }
            password = decoded
        }
        // An IPv6 literal arrives bracketed.
        let bareHost = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        self.init(host: bareHost, port: port, username: username, password: password, database: database)
    }
}
