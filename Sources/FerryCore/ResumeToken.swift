import Crypto
import Foundation

/// Resume tokens: `base64url(client id).incarnation.base64url(HMAC-SHA256)`.
///
/// The MAC covers the client id and the session's incarnation, so a token cannot be forged
/// without the store's secret, and a token of a deleted session does not resume a newer one.
struct ResumeTokens: Sendable {
    private let key: SymmetricKey

    init(secret: [UInt8]) {
        key = SymmetricKey(data: secret)
    }

    func token(clientID: String, incarnation: String) -> String {
        "\(Self.base64URL(Data(clientID.utf8))).\(incarnation).\(Self.base64URL(mac(clientID, incarnation)))"
    }

    /// The client id and incarnation a token names, or nil when it is malformed or forged.
    func verify(_ token: String) -> (clientID: String, incarnation: String)? {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let idBytes = Self.decodeBase64URL(parts[0]), let presented = Self.decodeBase64URL(parts[2]) else {
            return nil
        }
        let clientID = String(decoding: idBytes, as: UTF8.self)
        let incarnation = String(parts[1])
        guard HMAC<SHA256>.isValidAuthenticationCode(presented, authenticating: Self.message(clientID, incarnation), using: key)
        else { return nil }
        return (clientID, incarnation)
    }

    private func mac(_ clientID: String, _ incarnation: String) -> Data {
        Data(HMAC<SHA256>.authenticationCode(for: Self.message(clientID, incarnation), using: key))
    }

    private static func message(_ clientID: String, _ incarnation: String) -> Data {
        Data("ferry-resume\n\(clientID)\n\(incarnation)".utf8)
    }

    // Byte-wise mapping: Foundation's replacingOccurrences cost tens of microseconds per hello
    // on Linux, which a broker restart pays once per reconnecting client.
    private static func base64URL(_ data: Data) -> String {
        let mapped = data.base64EncodedData().compactMap { byte -> UInt8? in
            switch byte {
            case UInt8(ascii: "+"): UInt8(ascii: "-")
            case UInt8(ascii: "/"): UInt8(ascii: "_")
            case UInt8(ascii: "="): nil
            default: byte
            }
        }
        return String(decoding: mapped, as: UTF8.self)
    }

    private static func decodeBase64URL(_ text: Substring) -> Data? {
        var base64 = text.utf8.map { byte -> UInt8 in
            switch byte {
            case UInt8(ascii: "-"): UInt8(ascii: "+")
            case UInt8(ascii: "_"): UInt8(ascii: "/")
            default: byte
            }
        }
        base64 += Array(repeating: UInt8(ascii: "="), count: (4 - base64.count % 4) % 4)
        return Data(base64Encoded: Data(base64))
    }
}
