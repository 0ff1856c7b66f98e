import ArgumentParser
import Crypto
import Foundation

/// `ferryctl token`: an HS256 client token for a broker started with `FERRY_JWT_SECRET`.
struct MintToken: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token",
        abstract: "Print an HS256 client token signed with the broker's JWT secret.",
        discussion: """
            The token's claims: sub (--sub), exp (now + --ttl) and, when --pub or --sub-topics is given, \
            "ferry": {"pub": [...], "sub": [...]}. Without them the broker's ACL file, or every topic, applies. \
            Patterns: * is one .-separated token, > one or more trailing tokens.
            """
    )

    @Option(help: "The broker's HS256 secret (FERRY_JWT_SECRET).") var secret: String?
    @Option(help: "The client id the token may use; omit for ephemeral sessions only.") var sub: String?
    @Option(help: "A topic pattern it may publish to; repeat for more.") var pub: [String] = []
    @Option(name: .customLong("sub-topics"), help: "A topic pattern it may subscribe to and read; repeat for more.")
    var subTopics: [String] = []
    @Option(help: "Seconds until it expires.") var ttl: Int = 3600

    func run() throws {
        guard let secret = secret ?? ProcessInfo.processInfo.environment["FERRY_JWT_SECRET"], !secret.isEmpty else {
            throw Failure("give the broker's secret with --secret or FERRY_JWT_SECRET", code: .usage)
        }
        guard ttl > 0 else { throw Failure("--ttl must be a positive number of seconds", code: .usage) }
        var claims: [String: Any] = ["exp": Int(Date().timeIntervalSince1970) + ttl]
        claims["sub"] = sub
        if !pub.isEmpty || !subTopics.isEmpty { claims["ferry"] = ["pub": pub, "sub": subTopics] }
        let header = Self.base64URL(Data(#"{"alg":"HS256","typ":"JWT"}"#.utf8))
        let payload = Self.base64URL(try JSONSerialization.data(withJSONObject: claims, options: [.sortedKeys]))
        let input = header + "." + payload
        let signature = HMAC<SHA256>.authenticationCode(for: Data(input.utf8), using: SymmetricKey(data: Data(secret.utf8)))
        print(input + "." + Self.base64URL(Data(signature)))
    }

    private static func base64URL(_ data: Data) -> String {
        data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }
}
