import FerryCore
import Foundation

/// Static topic permissions per client id, from the `--acl` file, for tokens that carry no
/// `ferry` claim of their own:
///
/// ```json
/// {"rules": [
///   {"client": "sensor-*", "publish": ["sensors.>"], "subscribe": ["commands.*"]},
///   {"client": "dashboard", "subscribe": [">"]}
/// ]}
/// ```
///
/// `client` is an exact client id, a prefix followed by `*`, or `*` alone (every token,
/// including one without `sub`); it is matched against the token's `sub`. A token gets the union
/// of the rules that match it, and nothing when none does.
public struct AccessRules: Sendable {
    private struct Rule: Sendable {
        /// The client id, or its prefix when `isPrefix`.
        var client: String
        var isPrefix: Bool
        var permissions: Permissions

        func matches(_ subject: String?) -> Bool {
            if isPrefix { return client.isEmpty || subject?.hasPrefix(client) == true }
            return subject == client
        }
    }

    private struct File: Decodable {
        struct Entry: Decodable {
            var client: String
            var publish: [String]?
            var subscribe: [String]?
        }
        var rules: [Entry]
    }

    private let rules: [Rule]

    /// Parses the JSON of an ACL file; the error names the rule at fault.
    public init(json: Data) throws(ConfigurationError) {
        let file: File
        do {
            file = try JSONDecoder().decode(File.self, from: json)
        } catch {
            throw ConfigurationError(#"the ACL file must be {"rules":[{"client":…,"publish":[…],"subscribe":[…]}]}: \#(error)"#)
        }
        var rules: [Rule] = []
        for (index, entry) in file.rules.enumerated() {
            let isPrefix = entry.client.hasSuffix("*")
            let client = isPrefix ? String(entry.client.dropLast()) : entry.client
            guard !client.contains("*"), isPrefix || !client.isEmpty else {
                throw ConfigurationError("ACL rule \(index + 1): client must be an id, a prefix followed by *, or *")
            }
            guard let permissions = Permissions(publishing: entry.publish ?? [], subscribing: entry.subscribe ?? []) else {
                throw ConfigurationError("ACL rule \(index + 1) (\(entry.client)): invalid topic pattern")
            }
            rules.append(Rule(client: client, isPrefix: isPrefix, permissions: permissions))
        }
        self.rules = rules
    }

    /// The union of the permissions of every rule that matches `subject` (a token's `sub`).
    func permissions(for subject: String?) -> Permissions {
        rules.filter { $0.matches(subject) }.reduce(Permissions.none) { $0.union($1.permissions) }
    }
}
