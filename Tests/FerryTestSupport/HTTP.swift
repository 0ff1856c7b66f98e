import Foundation

/// One HTTP response: status, headers (names lowercased) and the decoded body.
package struct HTTPResponse: Sendable, CustomStringConvertible {
    package let status: Int
    package let headers: [String: String]
    package let body: Data

    /// The body as a JSON object, or nil when it is not one.
    package var json: JSON? { (try? JSONSerialization.jsonObject(with: body)) as? JSON }

    package var text: String { String(decoding: body, as: UTF8.self) }

    /// `error.code` of a Ferry error body.
    package var errorCode: String? { json?.object("error")?.string("code") }

    package var description: String { "HTTP \(status) \(text.prefix(500))" }
}

/// A tiny blocking HTTP/1.1 client on raw sockets: one request per connection, `Connection: close`.
package enum HTTP {
    package static func request(
        port: Int,
        method: String,
        path: String,
        headers: [String: String] = [:],
        body: Data = Data(),
        timeout: TimeInterval = 10
    ) throws -> HTTPResponse {
        let connection = try TCPConnection(port: port)
        defer { connection.close() }
        var head = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nConnection: close\r\n"
        if !body.isEmpty || method == "POST" || method == "PUT" {
            head += "Content-Length: \(body.count)\r\n"
        }
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        head += "\r\n"
        // A server may answer early (413) and close while the body is still going out:
        // read its answer anyway, and report the write failure only when there is none.
        var writeFailure: (any Error)?
        do { try connection.write(Array(head.utf8) + Array(body)) } catch { writeFailure = error }

        var buffer: [UInt8] = []
        let deadline = Deadline(seconds: timeout)
        while true {
            switch connection.read(until: deadline) {
            case .bytes(let bytes):
                buffer += bytes
                if let response = try parse(buffer, complete: false) { return response }
            case .eof:
                if let response = try parse(buffer, complete: true) { return response }
                throw writeFailure ?? TestFailure("\(method) \(path): connection closed before a full response")
            case .timeout:
                throw TestFailure("\(method) \(path): no full response within \(timeout) s")
            }
        }
    }

    /// The response in `buffer`, or nil while more bytes are needed. `complete`: the peer closed.
    private static func parse(_ buffer: [UInt8], complete: Bool) throws -> HTTPResponse? {
        guard let headEnd = buffer.firstRange(of: Array("\r\n\r\n".utf8)) else { return nil }
        let lines = String(decoding: buffer[..<headEnd.lowerBound], as: UTF8.self).components(separatedBy: "\r\n")
        let statusParts = lines[0].split(separator: " ")
        guard statusParts.count >= 2, let status = Int(statusParts[1]) else {
            throw TestFailure("bad HTTP status line: \(lines[0])")
        }
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let name = line[..<colon].trimmingCharacters(in: .whitespaces).lowercased()
            headers[name] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        let rest = Array(buffer[headEnd.upperBound...])
        let body: [UInt8]?
        if headers["transfer-encoding"]?.lowercased().contains("chunked") == true {
            body = try dechunk(rest)
        } else if let length = headers["content-length"].flatMap({ Int($0) }) {
            body = rest.count >= length ? Array(rest.prefix(length)) : nil
        } else {
            body = complete ? rest : nil
        }
        return body.map { HTTPResponse(status: status, headers: headers, body: Data($0)) }
    }

    /// Decodes a chunked body, or nil while the last chunk has not arrived.
    private static func dechunk(_ bytes: [UInt8]) throws -> [UInt8]? {
        var body: [UInt8] = []
        var index = 0
        while true {
            guard let lineEnd = bytes[index...].firstRange(of: Array("\r\n".utf8)) else { return nil }
            let sizeText = String(decoding: bytes[index..<lineEnd.lowerBound], as: UTF8.self)
            let sizeField = (sizeText.split(separator: ";").first ?? "").trimmingCharacters(in: .whitespaces)
            guard let size = Int(sizeField, radix: 16) else {
                throw TestFailure("bad chunk size line: \(sizeText)")
            }
            if size == 0 { return body }
            let start = lineEnd.upperBound
            guard bytes.count >= start + size + 2 else { return nil }
            body += bytes[start..<start + size]
            index = start + size + 2
        }
    }
}
