import Crypto
import FerryTestSupport
import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import SwiftASN1
import X509

/// A self-signed certificate for `localhost`, made at test time, written as PEM
/// files into `folder` for `FERRY_TLS_CERT` and `FERRY_TLS_KEY`.
struct TestCertificate {
    let certificatePEM: String
    let certificateFile: URL
    let keyFile: URL

    init(in folder: URL) throws {
        let key = P256.Signing.PrivateKey()
        let name = try DistinguishedName { CommonName("localhost") }
        let now = Date()
        let certificate = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: Certificate.PublicKey(key.publicKey),
            notValidBefore: now - 3600, notValidAfter: now + 3600, issuer: name, subject: name,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: nil))
                SubjectAlternativeNames([.dnsName("localhost")])
            },
            issuerPrivateKey: Certificate.PrivateKey(key))
        certificatePEM = try certificate.serializeAsPEM().pemString
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        certificateFile = folder.appendingPathComponent("cert.pem")
        keyFile = folder.appendingPathComponent("key.pem")
        try Data(certificatePEM.utf8).write(to: certificateFile)
        try Data(key.pemRepresentation.utf8).write(to: keyFile)
    }

    var environment: [String: String] { ["FERRY_TLS_CERT": certificateFile.path, "FERRY_TLS_KEY": keyFile.path] }
}

/// A TLS client connection to 127.0.0.1 that trusts one certificate and checks the name
/// `localhost`: bytes out, and reads until a whole unit (an HTTP head, a frame) has arrived.
struct TLSTestStream {
    private var inbound: NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator
    private let outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>
    private var buffer: [UInt8] = []

    /// Connects, runs `body` with the stream, and closes.
    static func with<Result: Sendable>(
        port: Int, trusting certificatePEM: String, _ body: (inout TLSTestStream) async throws -> Result
    ) async throws -> Result {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(Array(certificatePEM.utf8)))
        let context = try NIOSSLContext(configuration: configuration)
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: context, serverHostname: "localhost"))
                    return try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
        return try await channel.executeThenClose { inbound, outbound in
            var stream = TLSTestStream(inbound: inbound.makeAsyncIterator(), outbound: outbound)
            return try await body(&stream)
        }
    }

    mutating func write(_ bytes: [UInt8]) async throws {
        try await outbound.write(ByteBuffer(bytes: bytes))
    }

    /// Reads until `whole` finds a complete unit at the start of what arrived (it returns its
    /// length), then returns that unit; what follows stays for the next read.
    mutating func read(until whole: ([UInt8]) -> Int?) async throws -> [UInt8] {
        while true {
            if let length = whole(buffer) {
                defer { buffer.removeFirst(length) }
                return Array(buffer.prefix(length))
            }
            guard let bytes = try await inbound.next() else {
                throw TestFailure("TLS connection closed; received so far: \(String(decoding: buffer, as: UTF8.self))")
            }
            buffer += Array(buffer: bytes)
        }
    }

    /// Everything until the server closes.
    mutating func readToEnd() async throws -> [UInt8] {
        while let bytes = try await inbound.next() { buffer += Array(buffer: bytes) }
        defer { buffer.removeAll() }
        return buffer
    }

    /// The length of an HTTP head (through its blank line) at the start of `bytes`.
    static func headLength(_ bytes: [UInt8]) -> Int? {
        bytes.firstRange(of: Array("\r\n\r\n".utf8)).map(\.upperBound)
    }

    /// The length of one unmasked server frame with a 7- or 16-bit length at the start of `bytes`.
    static func frameLength(_ bytes: [UInt8]) -> Int? {
        guard bytes.count >= 2 else { return nil }
        let short = Int(bytes[1] & 0x7F)
        if short < 126 { return bytes.count >= 2 + short ? 2 + short : nil }
        guard bytes.count >= 4 else { return nil }
        let length = Int(bytes[2]) << 8 | Int(bytes[3])
        return bytes.count >= 4 + length ? 4 + length : nil
    }
}
