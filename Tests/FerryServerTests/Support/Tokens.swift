import Crypto
import CryptoExtras
import FerryTestSupport
import Foundation

/// JWTs made here with swift-crypto alone, not with the broker's JWT library, so the tests check
/// the wire format and can also make the malformed and forged tokens a client could send.
enum Token {
    /// The HS256 secret the auth tests give their brokers (`FERRY_JWT_SECRET`).
    static let secret = "ferry-test-secret-0123456789-abcdefgh"

    /// The claims of a client token: `sub`, `exp` `ttl` seconds from now (none when nil), `nbf`
    /// when given, and the `ferry` claim when `pub` or `sub` topics are given.
    static func claims(
        sub: String?, ttl: TimeInterval? = 300, notBefore: TimeInterval? = nil, pub: [String]? = nil, subTopics: [String]? = nil
    ) -> JSON {
        let now = Date().timeIntervalSince1970
        var claims: JSON = [:]
        claims["sub"] = sub
        claims["exp"] = ttl.map { Int(now + $0) }
        claims["nbf"] = notBefore.map { Int(now + $0) }
        if pub != nil || subTopics != nil {
            var grants: JSON = [:]
            grants["pub"] = pub
            grants["sub"] = subTopics
            claims["ferry"] = grants
        }
        return claims
    }

    /// An HS256 token signed with `secret`.
    static func hs256(_ claims: JSON, secret: String = Token.secret) -> String {
        sign(claims, alg: "HS256") { input in
            Data(HMAC<SHA256>.authenticationCode(for: input, using: SymmetricKey(data: Data(secret.utf8))))
        }
    }

    /// An HS256 token for `sub` with the `ferry` claim given, valid for five minutes.
    static func client(_ sub: String?, pub: [String]? = nil, subTopics: [String]? = nil) -> String {
        hs256(claims(sub: sub, pub: pub, subTopics: subTopics))
    }

    static func es256(_ claims: JSON, key: P256.Signing.PrivateKey) throws -> String {
        try sign(claims, alg: "ES256") { try key.signature(for: $0).rawRepresentation }
    }

    static func rs256(_ claims: JSON, key: _RSA.Signing.PrivateKey) throws -> String {
        try sign(claims, alg: "RS256") { try key.signature(for: $0, padding: .insecurePKCS1v1_5).rawRepresentation }
    }

    /// `alg: none` with an empty signature, which a broker must never accept.
    static func unsigned(_ claims: JSON) -> String {
        sign(claims, alg: "none") { _ in Data() }
    }

    /// `token` with one character of its signature changed.
    static func tampered(_ token: String) -> String {
        var characters = Array(token)
        let index = characters.count - 5
        characters[index] = characters[index] == "A" ? "B" : "A"
        return String(characters)
    }

    static func sign(_ claims: JSON, alg: String, _ signer: (Data) throws -> Data) rethrows -> String {
        let header = base64URL(Data(#"{"alg":"\#(alg)","typ":"JWT"}"#.utf8))
        // The claims are the tests' own dictionaries of strings, numbers and lists.
        let payload = base64URL((try? JSONSerialization.data(withJSONObject: claims)) ?? Data())
        let input = header + "." + payload
        return input + "." + base64URL(try signer(Data(input.utf8)))
    }

    static func base64URL(_ data: Data) -> String {
        data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }
}
