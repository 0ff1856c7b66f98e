import FerryProtocol

/// One libFuzzer input through every parser of network bytes: the client frame decoder (and, for
/// what decodes, encode → decode), the batch publish body, the broker frame decoder and the
/// WebSocket framing. A crash, trap or sanitizer report is a finding.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer?, _ count: Int) -> CInt {
    let bytes = start.map { Array(UnsafeRawBufferPointer(start: $0, count: count)) } ?? []
    if let frame = try? ClientFrame.decode(bytes), (try? ClientFrame.decode(frame.encode())) != frame {
        fatalError("encode → decode changed \(frame)")
    }
    _ = try? BatchPublishBody.decode(bytes)
    _ = try? BrokerFrame.decode(bytes)
    _ = bytes.withUnsafeBytes { WebSocketFrameParser.parse($0, maxPayload: 1 << 16) }
    return 0
}
