import ArgumentParser
import FerryClient
import FerryProtocol
import FerryTestSupport
import Foundation
import Logging

/// One process's share of the storm's subscribers. Prints `ready` once every client is
/// connected, then, once every client has all its messages (or at the timeout), one JSON line:
/// each client's connect times and what it saw.
struct StormWorker: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "storm-worker", shouldDisplay: false)

    @Option var port: Int
    @Option var clients: Int
    @Option var prefix: String
    @Option var messages: Int
    @Option var timeout: Double
    @Flag var noJitter = false

    /// Always the top of the range: every wait is its backoff ceiling.
    private struct Ceiling: RandomNumberGenerator {
        mutating func next() -> UInt64 { .max }
    }

    struct ClientLog: Codable {
        /// Seconds since 1970 of each `connected` state.
        var connectedAt: [Double] = []
        /// Seconds since 1970 of each connect attempt after the first connection was lost.
        var attemptsAt: [Double] = []
        var versions: [UInt64] = []
        /// Nil when the client saw versions 1…messages exactly once, in order.
        var problem: String?
    }

    func run() async throws {
        LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
        guard let url = URL(string: "ws://127.0.0.1:\(port)/v1/ws") else { throw ValidationError("bad port") }
        let logs = Shared([ClientLog](repeating: ClientLog(), count: clients))
        let (changes, changed) = AsyncStream.makeStream(of: Void.self)
        var ferryClients: [FerryClient] = []
        for index in 0..<clients {
            var configuration = FerryClientConfiguration()
            if noJitter { configuration.makeRandom = { Ceiling() } }
            let client = FerryClient(url: url, clientID: "\(prefix)\(index)", configuration: configuration)
            ferryClients.append(client)
            let states = client.states
            let subscription = client.subscribe("storm", from: .earliest)
            Task {
                for await state in states {
                    logs.update { logs in
                        switch state {
                        case .connected: logs[index].connectedAt.append(Date().timeIntervalSince1970)
                        case .connecting where !logs[index].connectedAt.isEmpty: logs[index].attemptsAt.append(Date().timeIntervalSince1970)
                        default: break
                        }
                    }
                    changed.yield()
                }
            }
            Task {
                for try await message in subscription {
                    logs.update { $0[index].versions.append(message.version) }
                    changed.yield()
                }
            }
        }

        let deadline = Date().addingTimeInterval(timeout)
        let timer = Task {
            try await Task.sleep(for: .seconds(timeout))
            changed.yield()
        }
        var saidReady = false
        for await _ in changes {
            let (connected, complete) = logs.update { logs in
                (logs.allSatisfy { !$0.connectedAt.isEmpty }, logs.allSatisfy { $0.versions.count >= messages })
            }
            if connected && !saidReady {
                saidReady = true
                say("ready")
            }
            if complete || Date() >= deadline { break }
        }
        timer.cancel()
        var final = logs.value
        let expected = (1...UInt64(messages)).map { $0 }
        for index in final.indices where final[index].versions != expected {
            final[index].problem = "\(prefix)\(index) saw \(final[index].versions.count) versions: \(final[index].versions.prefix(30))"
        }
        for index in final.indices { final[index].versions = [] }
        say(String(decoding: try JSONEncoder().encode(final), as: UTF8.self))
        for client in ferryClients { await client.close() }
    }

    /// One line to the coordinator, unbuffered.
    private func say(_ line: String) {
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }
}
