import FerryTestSupport
import Foundation
import Testing

/// Every ferryd setting, given a bad value as a flag or as a `FERRY_*` variable, stops the real
/// binary at start with a message naming the flag, the variable, the value and what is accepted.
@Suite("Settings")
struct SettingsTests {
    struct Case: CustomStringConvertible {
        /// The flag without its dashes; the variable is `FERRY_` + it in capitals.
        let flag: String
        let bad: String
        /// Words of the message that say what is accepted.
        let accepted: String
        /// A secret is not written back.
        var secret = false
        /// The variable when it is not `FERRY_` + the flag in capitals.
        var named: String?

        var variable: String { named ?? "FERRY_" + flag.uppercased().replacingOccurrences(of: "-", with: "_") }
        var description: String { "--\(flag) / \(variable) = \(bad.debugDescription)" }
    }

    static let cases: [Case] = [
        Case(flag: "host", bad: "127.0.0.1:8080", accepted: "an IP address or a host name"),
        Case(flag: "port", bad: "80a", accepted: "from 0 to 65535"),
        Case(flag: "data", bad: "/dev/null", accepted: "a folder"),
        Case(flag: "postgres", bad: "mysql://u:pw@h/db", accepted: "postgres://user[:password]@host[:port]/database", secret: true, named: "FERRY_POSTGRES_URL"),
        Case(flag: "sync", bad: "fsync", accepted: "one of full, none"),
        Case(flag: "map-size", bad: "8X", accepted: "a size"),
        Case(flag: "heartbeat", bad: "20x", accepted: "a duration"),
        Case(flag: "max-message-bytes", bad: "2G", accepted: "256M"),
        Case(flag: "max-subscriptions", bad: "many", accepted: "a whole number"),
        Case(flag: "max-patterns", bad: "0", accepted: "a whole number"),
        Case(flag: "max-pattern-topics", bad: "2000000", accepted: "from 1 to 1000000"),
        Case(flag: "publish-rate", bad: "-1", accepted: "a whole number"),
        Case(flag: "publish-burst", bad: "0", accepted: "from 1 to 1000000000"),
        Case(flag: "publish-rejections-before-close", bad: "1.5", accepted: "a whole number"),
        Case(flag: "max-pending-bytes", bad: "1K", accepted: "at least 64K"),
        Case(flag: "max-connections", bad: "lots", accepted: "unlimited"),
        Case(flag: "max-connections-per-ip", bad: "-3", accepted: "unlimited"),
        Case(flag: "retention-max-messages", bad: "10k", accepted: "unlimited"),
        Case(flag: "retention-max-bytes", bad: "1 GB!", accepted: "a size"),
        Case(flag: "retention-max-age", bad: "1e300", accepted: "a duration"),
        Case(flag: "dedup-window", bad: "1y", accepted: "a duration"),
        Case(flag: "session-ttl", bad: "forever", accepted: "a duration"),
        Case(flag: "ack-flush", bad: "11s", accepted: "a duration"),
        Case(flag: "admin-token", bad: "two words", accepted: "visible ASCII", secret: true),
        Case(flag: "jwt-secret", bad: "tooShortSecret", accepted: "at least 32 bytes", secret: true),
        Case(flag: "jwt-public-key", bad: "/nonexistent/key.pem", accepted: "a readable file"),
        Case(flag: "acl", bad: "/nonexistent/acl.json", accepted: "a readable file"),
        Case(flag: "tls-cert", bad: "/nonexistent/cert.pem", accepted: "a readable file"),
        Case(flag: "tls-key", bad: "/nonexistent/key.pem", accepted: "a readable file"),
        Case(flag: "log-level", bad: "verbose", accepted: "one of trace, debug"),
        Case(flag: "metrics-top-n", bad: "top", accepted: "a whole number"),
    ]

    @Test func aBadValueStopsTheStartNamingTheSettingAsAFlagAndAsAVariable() throws {
        forEachCase(Self.cases) { item in
            for (form, start) in [
                ("flag", { try FerrydStart.run(arguments: ["--\(item.flag)=\(item.bad)"]) }),
                ("variable", { try FerrydStart.run(environment: [item.variable: item.bad]) }),
            ] as [(String, () throws -> FerrydStart)] {
                let run = try start()
                let said = "\(item) as a \(form): \(run)"
                #expect(run.status.map { $0 != 0 } == true, "not refused: \(said)")
                #expect(run.output.contains("--\(item.flag)") && run.output.contains(item.variable), "names not given: \(said)")
                #expect(run.output.contains(item.accepted), "what is accepted not said: \(said)")
                if item.secret {
                    #expect(!run.output.contains(item.bad), "a secret was written out: \(said)")
                } else {
                    #expect(run.output.contains("'\(item.bad)'"), "the value not given: \(said)")
                }
            }
        }
    }

    /// The table above is every setting: each option `ferryd --help` lists has a case.
    @Test func theCasesCoverEveryOption() throws {
        let help = try FerrydStart.run(arguments: ["--help"])
        #expect(help.status == 0, "\(help)")
        let options = Set(
            help.output.split(separator: "\n").compactMap { line -> String? in
                let words = line.split(separator: " ")
                guard let first = words.first, first.hasPrefix("--") else { return nil }
                return String(first.dropFirst(2))
            }
        ).subtracting(["help", "version"])
        #expect(options.count > 20, "\(help)")
        #expect(options == Set(Self.cases.map(\.flag)))
    }

    /// A `FERRY_*` variable that is no setting (a typo) is named in the log with the setting it
    /// is closest to; the broker still starts (other tools read `FERRY_*` variables too).
    @Test func anUnknownVariableIsWarnedAboutWithTheClosestSetting() throws {
        let ferryd = try Ferryd(environment: ["FERRY_MAX_SUBSCRIPTION": "5"])
        let warning = ferryd.logTail().split(separator: "\n").first { $0.contains("FERRY_MAX_SUBSCRIPTION ") }
        #expect(warning?.contains("FERRY_MAX_SUBSCRIPTIONS") == true, "\(ferryd.logTail())")
        // ferryctl's own variables are not typos.
        let quiet = try Ferryd(environment: ["FERRY_URL": "http://127.0.0.1:1", "FERRY_TOKEN": "x"])
        #expect(!quiet.logTail().contains("FERRY_URL"), "\(quiet.logTail())")
    }
}
