import FerryTestSupport
import Foundation
import Testing

/// `FERRY_TLS_CERT` / `FERRY_TLS_KEY`: HTTP and WebSocket over TLS, with a certificate made here.
@Suite("TLS")
struct TLSTests {
    @Test func httpsAndWSSServeOverTLSAndAPlainClientFailsCleanly() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-tls-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        let certificate = try TestCertificate(in: folder)
        let ferryd = try Ferryd(environment: certificate.environment)
        let port = ferryd.port

        let health = try await TLSTestStream.with(port: port, trusting: certificate.certificatePEM) { stream in
            try await stream.write(Array("GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".utf8))
            return String(decoding: try await stream.readToEnd(), as: UTF8.self)
        }
        #expect(health.hasPrefix("HTTP/1.1 200") && health.contains(#"{"status":"ok"}"#), "\(health)")

        // A plain-text client gets no HTTP answer, and the broker goes on serving TLS.
        #expect(throws: (any Error).self) { try HTTP.request(port: port, method: "GET", path: "/healthz", timeout: 5) }
        #expect(throws: (any Error).self) { try TestWebSocket(port: port) }

        let welcomeText = try await TLSTestStream.with(port: port, trusting: certificate.certificatePEM) { stream in
            let key = Data((0..<16).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
            let upgrade = "GET /v1/ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                + "Sec-WebSocket-Key: \(key)\r\nSec-WebSocket-Version: 13\r\n\r\n"
            try await stream.write(Array(upgrade.utf8))
            let head = String(decoding: try await stream.read(until: TLSTestStream.headLength), as: UTF8.self)
            guard head.hasPrefix("HTTP/1.1 101") else { throw TestFailure("upgrade over TLS: \(head)") }
            try await stream.write(TestWebSocket.frame(.text, Array(#"{"op":"hello","client_id":"secure-1"}"#.utf8)))
            let frame = try await stream.read(until: TLSTestStream.frameLength)
            return String(decoding: frame.dropFirst(frame[1] & 0x7F == 126 ? 4 : 2), as: UTF8.self)
        }
        let welcome = parseJSONObject(welcomeText)
        #expect(welcome?.string("op") == "welcome" && welcome?.string("client_id") == "secure-1", "\(String(describing: welcome))")
        #expect(ferryd.isRunning)
    }
}
