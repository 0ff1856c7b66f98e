import Crypto
import FerryCore
import FerryProtocol
import FerryStore
import Foundation
import JWTKit

/// How clients prove who they are, when authentication is on.
public enum JWTKey: Sendable {
    /// HS256 with this shared secret.
    case secret(String)
    /// RS256 or ES256 with this public key (PEM, `-----BEGIN PUBLIC KEY-----`).
    case publicKeyPEM(String)

    /// The shortest HS256 secret accepted: RFC 7518 asks for at least the hash's 256 bits.
    public static let minimumSecretBytes = 32

    /// Checks that the key can verify tokens, as the broker will at start.
    /// - Throws: ``ConfigurationError`` saying why it cannot.
    public func validate() async throws(ConfigurationError) {
        _ = try await Authenticator.algorithm(for: self)
    }
}

/// Turns the credential a request or WebSocket upgrade presents into a ``Principal``.
///
/// With no JWT key configured, authentication is off and everyone is
/// ``Principal/unrestricted``. With one, a JWT (`Authorization: Bearer <token>` or
/// `?token=<token>`) is verified on every request and upgrade, nothing is cached: the algorithm
/// named in its header must be the key's, the signature must verify, `exp` must be in the
/// future and `nbf`, if present, in the past. The admin token, presented the same way, makes the
/// operator: any client id, every topic.
struct Authenticator: Sendable {
    /// The verifying key; nil when authentication is off.
    private let key: (any JWTAlgorithm)?
    private let adminToken: BearerSecret?
    private let rules: AccessRules?
    private let now: @Sendable () -> Timestamp

    /// - Parameters:
    ///   - key: The JWT key; nil turns client authentication off.
    ///   - adminToken: The operator's token, accepted wherever a JWT is.
    ///   - rules: Permissions for tokens without a `ferry` claim; nil grants them every topic.
    init(key: JWTKey?, adminToken: String?, rules: AccessRules?, now: @escaping @Sendable () -> Timestamp = systemMilliseconds)
        async throws(ConfigurationError)
    {
        if let key {
            self.key = try await Self.algorithm(for: key)
        } else {
            self.key = nil
        }
        self.adminToken = adminToken.map(BearerSecret.init)
        self.rules = rules
        self.now = now
    }

    /// The principal behind `token` (nil: none was presented), or `unauthorized`.
    func principal(presenting token: String?) throws(ProtocolError) -> Principal {
        if let token, adminToken?.matches(token) == true { return .unrestricted }
        guard let key else { return .unrestricted }
        guard let token, !token.isEmpty else { throw ProtocolError(.unauthorized, "a bearer token is required") }
        return try verify(token, with: key)
    }

    /// The token of `Authorization: Bearer <token>`, else of the `token` query parameter.
    static func presentedToken(authorization: String?, query: Substring?) -> String? {
        if let authorization {
            let parts = authorization.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
            if parts.count == 2, parts[0].lowercased() == "bearer" { return parts[1].trimmingCharacters(in: .whitespaces) }
        }
        guard let query else { return nil }
        for pair in query.split(separator: "&") {
            let field = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            if field.count == 2, field[0] == "token" {
                let value = field[1].replacingOccurrences(of: "+", with: " ")
                return value.removingPercentEncoding ?? value
            }
        }
        return nil
    }

    private func verify(_ token: String, with key: any JWTAlgorithm) throws(ProtocolError) -> Principal {
        let bytes = Array(token.utf8)
        let parsed: (header: JWTHeader, payload: FerryClaims, signature: Data)
        do {
            parsed = try DefaultJWTParser().parse(bytes, as: FerryClaims.self)
        } catch {
            throw ProtocolError(.unauthorized, "the token is not a JWT with an exp claim")
        }
        // The header names the algorithm: anything but the configured key's (`none`, or HS256
        // signed with a public key as the secret) is refused before any signature check.
        guard parsed.header.alg == key.name else {
            throw ProtocolError(.unauthorized, "the token's algorithm is not \(key.name)")
        }
        guard let signed = bytes.lastIndex(of: UInt8(ascii: ".")),
            (try? key.verify(parsed.signature, signs: bytes[..<signed])) == true
        else { throw ProtocolError(.unauthorized, "the token's signature does not verify") }
        let claims = parsed.payload
        let now = now()
        let expiresAt = Self.milliseconds(claims.exp.value)
        guard now < expiresAt else { throw ProtocolError(.unauthorized, "the token has expired") }
        if let nbf = claims.nbf, now < Self.milliseconds(nbf.value) {
            throw ProtocolError(.unauthorized, "the token is not valid yet")
        }
        let subject = claims.sub?.value
        let permissions: Permissions
        if let grants = claims.ferry {
            guard let granted = Permissions(publishing: grants.pub ?? [], subscribing: grants.sub ?? []) else {
                throw ProtocolError(.unauthorized, "the token's ferry claim has an invalid topic pattern")
            }
            permissions = granted
        } else {
            permissions = rules?.permissions(for: subject) ?? .all
        }
        return Principal(identity: .client(subject), permissions: permissions, expiresAt: expiresAt)
    }

    private static func milliseconds(_ date: Date) -> Timestamp {
        let value = date.timeIntervalSince1970 * 1000
        return value <= 0 ? 0 : value >= Double(Timestamp.max) ? .max : Timestamp(value)
    }

    fileprivate static func algorithm(for key: JWTKey) async throws(ConfigurationError) -> any JWTAlgorithm {
        let keys = JWTKeyCollection()
        switch key {
        case .secret(let secret):
            guard secret.utf8.count >= JWTKey.minimumSecretBytes else {
                throw ConfigurationError("the JWT secret must be at least \(JWTKey.minimumSecretBytes) bytes")
            }
            await keys.add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256)
        case .publicKeyPEM(let pem):
            if let rsa = try? Insecure.RSA.PublicKey(pem: pem) {
                await keys.add(rsa: rsa, digestAlgorithm: .sha256)
            } else if let ecdsa = try? ES256PublicKey(pem: pem) {
                await keys.add(ecdsa: ecdsa)
            } else {
                throw ConfigurationError("the JWT public key is neither an RSA nor a P-256 public key in PEM")
            }
        }
        do {
            return try await keys.getKey()
        } catch {
            throw ConfigurationError("the JWT key cannot be used: \(error)")
        }
    }
}

/// A setting `ferryd` cannot start with.
public struct ConfigurationError: Error, CustomStringConvertible {
    public let description: String

    public init(_ description: String) {
        self.description = description
    }
}

/// A bearer secret compared in constant time: both sides are hashed first, so neither the
/// content nor the length of the secret shows in how long a wrong guess takes.
struct BearerSecret: Sendable {
    private let digest: [UInt8]

    init(_ secret: String) {
        digest = Array(SHA256.hash(data: Array(secret.utf8)))
    }

    func matches(_ presented: String) -> Bool {
        constantTimeEqual(Array(SHA256.hash(data: Array(presented.utf8))), digest)
    }
}

/// The claims Ferry reads: `sub` (the one client id the token may use), `exp` (required),
/// `nbf` (optional) and `ferry` (topic permissions).
struct FerryClaims: JWTPayload {
    /// `{"pub": [patterns], "sub": [patterns]}`; a missing list grants nothing.
    struct Grants: Codable, Sendable {
        var pub: [String]?
        var sub: [String]?
    }

    var sub: SubjectClaim?
    var exp: ExpirationClaim
    var nbf: NotBeforeClaim?
    var ferry: Grants?

    // The authenticator checks times against its own clock; this is for JWTKit's own verify.
    func verify(using algorithm: some JWTAlgorithm) async throws {
        try exp.verifyNotExpired()
        try nbf?.verifyNotBefore()
    }
}
