import FerryCore
import FerryPostgres
import FerryProtocol
import FerryServer
import FerryStore
import Foundation
import Logging

/// Reads every setting one way: the flag if given, else its `FERRY_*` variable (an empty value
/// counts as unset, from either), through the setting's ``SettingParser``. Refusals are
/// collected, so one failed start names every bad setting.
struct SettingsReader {
    private let flags: [Setting: String]
    private let environment: [String: String]
    private var problems: [String] = []

    init(flags: [Setting: String], environment: [String: String]) {
        self.flags = flags
        self.environment = environment
    }

    /// The text given for `setting`; nil when it is unset.
    func text(_ setting: Setting) -> String? {
        let given = { (text: String?) in text?.isEmpty == false ? text : nil }
        return given(flags[setting]) ?? given(environment[setting.variable])
    }

    /// The value given for `setting`; nil when it is unset or refused (then recorded).
    mutating func read<Value>(_ setting: Setting, _ parser: SettingParser<Value>) -> Value? {
        guard let text = text(setting) else { return nil }
        do {
            return try parser.parse(text)
        } catch {
            refuse(setting, text, accepts: parser.accepts, isSecret: parser.isSecret, because: error)
            return nil
        }
    }

    /// Records that `text` of `setting` cannot be used: `error` says why, unless it is a bare
    /// ``SettingRefused``.
    mutating func refuse(_ setting: Setting, _ text: String, accepts: String, isSecret: Bool = false, because error: (any Error)? = nil) {
        let value = isSecret ? "the value given (\(text.utf8.count) bytes, not shown)" : "'\(text)'"
        let reason = error.flatMap { $0 is SettingRefused ? nil : " (\($0))" } ?? ""
        problems.append("\(setting.label): \(value) is not accepted\(reason); expected \(accepts)")
    }

    /// Records a problem of settings together (two that exclude each other, say).
    mutating func refuse(_ problem: String) {
        problems.append(problem)
    }

    /// Throws every problem recorded, one a line.
    func finish() throws {
        guard problems.isEmpty else { throw SettingError(description: problems.joined(separator: "\n")) }
    }
}

struct SettingError: Error, CustomStringConvertible {
    let description: String
}

/// Everything `ferryd` runs with, read from its flags and `FERRY_*` variables.
struct FerrydSettings {
    var logLevel = Logger.Level.info
    var store: LMDBStoreConfiguration
    /// Set when the store is PostgreSQL (`--postgres`), with the same retention and dedup window.
    var postgres: PostgresStoreConfiguration?
    var broker = BrokerConfiguration()
    var server = ServerConfiguration()

    /// Reads and checks every setting, or throws naming each one that cannot be used.
    /// - Parameter openFiles: the open-file limit in force, which bounds the default connection cap.
    init(reading reader: inout SettingsReader, openFiles: UInt64) async throws {
        logLevel = reader.read(.logLevel, .oneOf(Logger.Level.allCases.map { ($0.rawValue, $0) })) ?? .info
        store = LMDBStoreConfiguration(path: reader.read(.data, .folder) ?? "./ferry-data")
        readStore(&reader)
        if var postgres = reader.read(.postgres, .postgresURL) {
            postgres.retention = store.retention
            postgres.dedupWindow = store.dedupWindow
            self.postgres = postgres
        }
        readBroker(&reader)
        await readServer(&reader, openFiles: openFiles)
        try reader.finish()
    }

    private mutating func readStore(_ reader: inout SettingsReader) {
        if let sync = reader.read(.sync, .oneOf([("full", true), ("none", false)])) { store.syncOnCommit = sync }
        if let size = reader.read(.mapSize, .size(in: 1 << 20...UInt64(Int.max))) { store.mapSize = Int(size) }
        if let limit = reader.read(.retentionMaxMessages, .unlimitedOr(.count(in: 1...UInt64.max))) { store.retention.maxMessages = limit }
        if let limit = reader.read(.retentionMaxBytes, .unlimitedOr(.size(in: 1...UInt64.max))) { store.retention.maxBytes = limit }
        if let limit = reader.read(.retentionMaxAge, .unlimitedOr(.duration(in: 1...UInt64.max))) { store.retention.maxAge = limit }
        if let window = reader.read(.dedupWindow, .duration()) { store.dedupWindow = window }
    }

    private mutating func readBroker(_ reader: inout SettingsReader) {
        // Below 100 ms, pings would be most of the traffic.
        if let milliseconds = reader.read(.heartbeat, .duration(in: 100...UInt64.max)) {
            broker.heartbeatSeconds = Double(milliseconds) / 1000
        }
        if let bytes = reader.read(.maxMessageBytes, .size(in: 1...256 << 20)) { broker.limits.maxMessageBytes = Int(bytes) }
        if let count = reader.read(.maxSubscriptions, .count(in: 1...UInt64(Int.max))) { broker.limits.maxSubscriptions = Int(count) }
        if let count = reader.read(.maxPatterns, .count(in: 1...UInt64(Int.max))) { broker.limits.maxPatterns = Int(count) }
        // A pattern's topics are matched, held and stored together: bounded so one subscribe stays one commit.
        if let count = reader.read(.maxPatternTopics, .count(in: 1...1_000_000)) { broker.limits.maxPatternTopics = Int(count) }
        if let rate = reader.read(.publishRate, .count(in: 0...UInt64(Int.max))) { broker.limits.publishRate = Int(rate) }
        if let burst = reader.read(.publishBurst, .count(in: 1...UInt64(TokenBucket.maxBurst))) { broker.limits.publishBurst = Int(burst) }
        if let count = reader.read(.publishRejectionsBeforeClose, .count(in: 1...UInt64(Int.max))) {
            broker.publishRejectionsBeforeClose = Int(count)
        }
        // Below this, replies to an ordinary burst of requests could trip it.
        if let bytes = reader.read(.maxPendingBytes, .size(in: 64 << 10...UInt64(Int.max))) { broker.limits.maxPendingBytes = Int(bytes) }
        if let ttl = reader.read(.sessionTTL, .duration()) { broker.sessionTTL = ttl }
        // Past this, a crash redelivers more than a client would think reasonable.
        if let interval = reader.read(.ackFlush, .duration(in: 1...10_000)) { broker.ackFlushInterval = interval }
    }

    private mutating func readServer(_ reader: inout SettingsReader, openFiles: UInt64) async {
        if let host = reader.read(.host, .host) { server.host = host }
        if let port = reader.read(.port, .count(in: 0...65535)) { server.port = Int(port) }
        server.adminToken = reader.read(.adminToken, .bearerToken)
        if reader.text(.jwtSecret) != nil && reader.text(.jwtPublicKey) != nil {
            reader.refuse("\(Setting.jwtSecret.label) and \(Setting.jwtPublicKey.label): set one of them, not both")
        } else if let secret = reader.read(.jwtSecret, .secret(atLeast: JWTKey.minimumSecretBytes)) {
            server.jwtKey = .secret(secret)
        } else if let path = reader.read(.jwtPublicKey, .readableFile) {
            do {
                let key = JWTKey.publicKeyPEM(try String(contentsOfFile: path, encoding: .utf8))
                try await key.validate()
                server.jwtKey = key
            } catch {
                reader.refuse(.jwtPublicKey, path, accepts: "a PEM file of an RSA or a P-256 public key", because: error)
            }
        }
        if let path = reader.read(.acl, .readableFile) {
            do {
                server.accessRules = try AccessRules(json: Data(contentsOf: URL(fileURLWithPath: path)))
            } catch {
                reader.refuse(.acl, path, accepts: "a JSON file of ACL rules", because: error)
            }
        }
        let certificate = reader.read(.tlsCert, .readableFile)
        let key = reader.read(.tlsKey, .readableFile)
        if (reader.text(.tlsCert) == nil) != (reader.text(.tlsKey) == nil) {
            reader.refuse("\(Setting.tlsCert.label) and \(Setting.tlsKey.label) go together: set both or neither")
        } else if let certificate, let key {
            do {
                try FerryServer.validateTLS(certificate: certificate, privateKey: key)
                server.tls = (certificate, key)
            } catch {
                reader.refuse("\(Setting.tlsCert.label) and \(Setting.tlsKey.label): \(error)")
            }
        }
        if let count = reader.read(.metricsTopN, .count(in: 0...UInt64(Int.max))) { server.metricsTopN = Int(count) }
        let maxConnections = SettingParser<UInt64?>.unlimitedOr(.count(in: 1...UInt64(Int.max)))
        if let limit = reader.read(.maxConnections, maxConnections) {
            server.maxConnections = limit.map { Int($0) }
        } else if reader.text(.maxConnections) == nil, openFiles > 0 {
            // A WebSocket holds a descriptor: refuse with 503 before accept() fails for want of one,
            // keeping a tenth for the store, plain HTTP and the listener.
            server.maxConnections = Int(clamping: openFiles / 10 * 9)
        }
        if let limit = reader.read(.maxConnectionsPerIP, maxConnections) { server.maxConnectionsPerIP = limit.map { Int($0) } }
    }
}
