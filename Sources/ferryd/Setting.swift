import Foundation

/// Every setting of `ferryd`: its flag is `--` + the raw value, its environment variable
/// `FERRY_` + the raw value in capitals with `_` for `-`.
enum Setting: String, CaseIterable, Sendable {
    case host, port, data, sync
    case postgres
    case mapSize = "map-size"
    case heartbeat
    case maxMessageBytes = "max-message-bytes"
    case maxSubscriptions = "max-subscriptions"
    case maxPatterns = "max-patterns"
    case maxPatternTopics = "max-pattern-topics"
    case publishRate = "publish-rate"
    case publishBurst = "publish-burst"
    case publishRejectionsBeforeClose = "publish-rejections-before-close"
    case maxPendingBytes = "max-pending-bytes"
    case maxConnections = "max-connections"
    case maxConnectionsPerIP = "max-connections-per-ip"
    case retentionMaxMessages = "retention-max-messages"
    case retentionMaxBytes = "retention-max-bytes"
    case retentionMaxAge = "retention-max-age"
    case dedupWindow = "dedup-window"
    case sessionTTL = "session-ttl"
    case ackFlush = "ack-flush"
    case adminToken = "admin-token"
    case jwtSecret = "jwt-secret"
    case jwtPublicKey = "jwt-public-key"
    case acl
    case tlsCert = "tls-cert"
    case tlsKey = "tls-key"
    case logLevel = "log-level"
    case metricsTopN = "metrics-top-n"

    var flag: String { "--" + rawValue }
    var variable: String {
        // A URL: the variable says so, as DATABASE_URL-style variables do.
        self == .postgres ? "FERRY_POSTGRES_URL" : "FERRY_" + rawValue.uppercased().replacingOccurrences(of: "-", with: "_")
    }
    /// How an error message names it: both ways of giving it.
    var label: String { "\(flag) / \(variable)" }

    /// `FERRY_*` variables other Ferry programs read, which are no typo when ferryd sees them.
    static let otherPrograms: Set<String> = ["FERRY_URL", "FERRY_TOKEN"]

    /// The `FERRY_*` variables in `environment` that name no setting, each with the variable of
    /// the setting whose name is closest (fewest edits).
    ///
    /// They are warned about, not refused: an operator's shell may hold variables of other Ferry
    /// tools, and a broker that will not start over an unrelated variable is worse than a warning.
    static func unknownVariables(in environment: [String: String]) -> [(variable: String, closest: String)] {
        let known = Set(allCases.map(\.variable))
        return environment.keys.filter { $0.hasPrefix("FERRY_") && !known.contains($0) && !otherPrograms.contains($0) }.sorted().map { name in
            let closest = allCases.map(\.variable).min { editDistance(name, $0) < editDistance(name, $1) } ?? ""
            return (name, closest)
        }
    }
}

/// Levenshtein distance: insertions, deletions and substitutions turning `a` into `b`.
func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a.utf8)
    let b = Array(b.utf8)
    var previous = Array(0...b.count)
    for (i, x) in a.enumerated() {
        var current = [i + 1]
        for (j, y) in b.enumerated() {
            current.append(min(previous[j + 1] + 1, current[j] + 1, previous[j] + (x == y ? 0 : 1)))
        }
        previous = current
    }
    return previous[b.count]
}
