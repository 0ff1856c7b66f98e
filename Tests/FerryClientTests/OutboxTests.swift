@testable import FerryClient
import FerryProtocol
import Foundation
import Testing

/// The outbox on its own, on a real temp folder: what stays in memory, what waits on disk, and
/// what a restart finds.
@Suite("Outbox")
final class OutboxTests {
    private let directory = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-outbox-\(UUID().uuidString)")

    deinit { try? FileManager.default.removeItem(at: directory) }

    private func request(_ n: Int) -> PublishRequest {
        PublishRequest(topic: "t", payload: .json(Array(#"{"n":\#(n)}"#.utf8)), messageID: "m\(n)", headers: [])
    }

    private func numbers(_ requests: some Sequence<PublishRequest>) -> [Int] {
        requests.compactMap { $0.messageID.flatMap { Int($0.dropFirst()) } }
    }

    /// Confirms the oldest publish each time and returns them in the order they became sendable.
    private func drain(_ outbox: inout Outbox) -> [Int] {
        var order = numbers(outbox.sendable)
        while let oldest = outbox.sendable.first?.messageID {
            order += numbers(outbox.remove(oldest))
        }
        return order
    }

    @Test func pastTheMemoryBoundPublishesWaitOnDiskAndComeBackInOrder() throws {
        var outbox = try Outbox(directory: directory, limit: 100, residentLimit: 4)
        let resident = try (1...10).map { try outbox.append(request($0)) }
        #expect(resident.map { $0 != nil } == Array(repeating: true, count: 4) + Array(repeating: false, count: 6))
        #expect(numbers(outbox.sendable) == [1, 2, 3, 4])
        #expect(outbox.count == 10)
        #expect(numbers(outbox.remove("m2")) == [5], "a confirmation makes room for the oldest spilled one")
        #expect(numbers(outbox.sendable) == [1, 3, 4, 5])
        #expect(drain(&outbox) == [1, 3, 4, 5, 6, 7, 8, 9, 10])
        #expect(outbox.count == 0)
    }

    @Test func aRestartFindsTheUnconfirmedOnesInOrder() throws {
        do {
            var outbox = try Outbox(directory: directory, limit: 100, residentLimit: 3)
            for n in 1...10 { _ = try outbox.append(request(n)) }
            for n in [1, 4, 7] { _ = outbox.remove("m\(n)") }
        }
        var reopened = try Outbox(directory: directory, limit: 100, residentLimit: 3)
        #expect(reopened.count == 7)
        #expect(reopened.contains("m2") && !reopened.contains("m4"))
        #expect(numbers(reopened.sendable) == [2, 3, 5])
        #expect(drain(&reopened) == [2, 3, 5, 6, 8, 9, 10])
    }

    @Test func compactionKeepsTheLogSmallAndTheSpilledOnesReadable() throws {
        var outbox = try Outbox(directory: directory, limit: 10_000, residentLimit: 16)
        for n in 1...3000 { _ = try outbox.append(request(n)) }
        for n in 1...2990 { _ = outbox.remove("m\(n)") }
        let log = directory.appendingPathComponent("outbox.jsonl")
        let size = try #require(try FileManager.default.attributesOfItem(atPath: log.path)[.size] as? Int)
        // 10 publish lines plus fewer than 1,024 done lines since the last compaction.
        #expect(size < 40_000, "the log is \(size) bytes for 10 pending publishes")
        #expect(numbers(outbox.sendable) == Array(2991...3000))
        var reopened = try Outbox(directory: directory, limit: 10_000, residentLimit: 4)
        #expect(drain(&reopened) == Array(2991...3000))
    }

    @Test func aFullOutboxRefusesThePublish() throws {
        var outbox = try Outbox(directory: directory, limit: 3, residentLimit: 2)
        for n in 1...3 { _ = try outbox.append(request(n)) }
        #expect(throws: FerryClientError.outboxFull(limit: 3)) { try outbox.append(request(4)) }
        _ = outbox.remove("m1")
        #expect(try outbox.append(request(4)) == nil, "room again, behind the spilled one")
    }

    @Test func aLineTornByACrashIsIgnored() throws {
        do {
            var outbox = try Outbox(directory: directory, limit: 100, residentLimit: 8)
            for n in 1...3 { _ = try outbox.append(request(n)) }
        }
        let log = try FileHandle(forUpdating: directory.appendingPathComponent("outbox.jsonl"))
        try log.seekToEnd()
        try log.write(contentsOf: Array(#"{"op":"publish","topic":"t","da"#.utf8))
        try log.close()
        var reopened = try Outbox(directory: directory, limit: 100, residentLimit: 8)
        #expect(drain(&reopened) == [1, 2, 3])
        var again = try Outbox(directory: directory, limit: 100, residentLimit: 8)
        #expect(again.count == 0, "confirmations after the torn line were recorded")
        _ = try again.append(request(9))
        #expect(numbers(again.sendable) == [9])
    }

    @Test func withoutADirectoryEverythingStaysInMemory() throws {
        var outbox = Outbox(limit: 5)
        for n in 1...5 { #expect(try outbox.append(request(n)) != nil) }
        #expect(throws: FerryClientError.outboxFull(limit: 5)) { try outbox.append(request(6)) }
        #expect(drain(&outbox) == [1, 2, 3, 4, 5])
    }

    @Test func aClientWhoseOutboxCannotBeOpenedFailsAtOnce() async throws {
        // A file where the state folder should be.
        #expect(FileManager.default.createFile(atPath: directory.path, contents: Data("not a folder".utf8)))
        var configuration = FerryClientConfiguration()
        configuration.stateDirectory = directory
        let client = FerryClient(url: try #require(URL(string: "ws://127.0.0.1:9/v1/ws")), configuration: configuration)
        var last: ConnectionState?
        for await state in client.states { last = state }
        guard case .failed(let error)? = last else {
            Issue.record("the client ended in \(String(describing: last)), not failed")
            return
        }
        #expect(error.description.contains("cannot open the outbox"), "\(error)")
        await #expect(throws: error) { try await client.publish("t", data: Data("x".utf8)) }
    }
}
