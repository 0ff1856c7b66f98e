import ArgumentParser
import FerryClient
import FerryProtocol
import Foundation

/// `ferryctl`: Ferry from the terminal.
@main
struct Ferryctl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ferryctl",
        abstract: "Operate a Ferry broker: inspect, trim, rewind, back up, publish and follow.",
        discussion: """
            Admin commands need the broker's admin token (--token or FERRY_ADMIN_TOKEN). Read commands \
            print tables, or JSON with --json. Exit codes: 0 ok, 1 failure, 2 usage, 3 not found, 4 unauthorized.
            """,
        subcommands: [
            Status.self, Topics.self, Clients.self, Top.self, Publish.self, Tail.self, Backup.self, Restore.self, Verify.self, Bench.self,
            MintToken.self,
        ]
    )

    /// Runs the command, mapping failures to the exit codes of the contract, one line each.
    static func main() async {
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch let failure as Failure {
            Format.printError("ferryctl: \(failure.message)")
            exit(withError: ExitCode(failure.code.rawValue))
        } catch let error as FerryClientError {
            Format.printError("ferryctl: \(error)")
            exit(withError: ExitCode(Failure.Code.failure.rawValue))
        } catch {
            // ArgumentParser says EX_USAGE (64) for a bad command line; the contract says 2.
            if exitCode(for: error) == .validationFailure {
                Format.printError(fullMessage(for: error))
                exit(withError: ExitCode(Failure.Code.usage.rawValue))
            }
            exit(withError: error)
        }
    }
}

/// Options every subcommand shares.
struct BrokerOptions: ParsableArguments {
    @Option(help: "The broker's base URL (FERRY_URL, default http://127.0.0.1:8080).")
    var url: String?

    var baseURL: String {
        url ?? ProcessInfo.processInfo.environment["FERRY_URL"] ?? "http://127.0.0.1:8080"
    }

    /// The WebSocket endpoint of the broker at `baseURL`, with the client token, if any, as
    /// `?token=` (the client library sets no headers).
    func webSocketURL(token: String?) throws -> URL {
        guard var components = URLComponents(string: baseURL), let scheme = components.scheme else {
            throw ValidationError("--url must be like http://127.0.0.1:8080")
        }
        components.scheme = scheme == "https" || scheme == "wss" ? "wss" : "ws"
        components.path = "/v1/ws"
        if let token { components.queryItems = [URLQueryItem(name: "token", value: token)] }
        guard let url = components.url else { throw ValidationError("--url must be like http://127.0.0.1:8080") }
        return url
    }
}

/// The client token of `pub` and `tail`, for a broker with authentication on.
struct ClientTokenOptions: ParsableArguments {
    @Option(name: .customLong("token"), help: "A client token (JWT), or the admin token (FERRY_TOKEN).")
    var token: String?

    var clientToken: String? {
        token ?? ProcessInfo.processInfo.environment["FERRY_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
    }
}

struct Publish: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pub",
        abstract: "Publish a message, or each line of standard input with '-'.",
        discussion: "Data that parses as JSON is published as JSON, anything else as bytes. Each message is confirmed (stored) before the next is sent."
    )

    @OptionGroup var broker: BrokerOptions
    @OptionGroup var credentials: ClientTokenOptions
    @Argument(help: "The topic.") var topic: String
    @Argument(help: "The message, or '-' to publish each line of standard input.") var data: String = "-"

    func run() async throws {
        try await broker.requireReachable()
        try await broker.requireAccepted(token: credentials.clientToken, topic: topic)
        let client = FerryClient(url: try broker.webSocketURL(token: credentials.clientToken))
        if data == "-" {
            while let line = readLine() {
                print(try await publish(line, with: client))
            }
        } else {
            print(try await publish(data, with: client))
        }
        await client.close()
    }

    private func publish(_ text: String, with client: FerryClient) async throws -> UInt64 {
        let bytes = Data(text.utf8)
        if (try? JSONScanner.validate(Array(bytes))) != nil {
            return try await client.publish(topic, jsonText: bytes)
        }
        return try await client.publish(topic, data: bytes)
    }
}

struct Tail: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the messages of a topic, or of every topic a pattern matches, as they arrive, one JSON line each.",
        discussion: """
            With --client the subscription is durable: run it again with the same id to continue where it stopped \
            (with a pattern, in each of its topics).
            """
    )

    @OptionGroup var broker: BrokerOptions
    @OptionGroup var credentials: ClientTokenOptions
    @Argument(help: "The topic, or a pattern: orders.* (one token), chat.> (the rest).") var topic: String
    @Option(help: "Start after this version of the topic (default: new messages only, or where --client stopped).") var from: UInt64?
    @Option(help: "A durable client id: resume where it stopped.") var client: String?

    func validate() throws {
        if from != nil, TopicPattern.looksLikePattern(topic) {
            throw ValidationError("--from names a version of one topic; a pattern starts at new messages, or where --client stopped")
        }
    }

    func run() async throws {
        try await broker.requireReachable()
        try await broker.requireAccepted(token: credentials.clientToken, topic: topic)
        let ferry = FerryClient(url: try broker.webSocketURL(token: credentials.clientToken), clientID: client)
        let start: StartPosition = from.map { .after($0) } ?? (client == nil ? .latest : .stored)
        for try await message in ferry.subscribe(topic, from: start) {
            var writer = JSONWriter()
            writer.field("topic", message.topic)
            writer.field("version", message.version)
            writer.field("ts", UInt64(message.timestamp.timeIntervalSince1970 * 1000))
            ServerFrame.writePayload(message.isJSON ? .json(Array(message.payload)) : .bytes(Array(message.payload)), to: &writer)
            // Unbuffered, so a pipe sees each message as it arrives.
            FileHandle.standardOutput.write(Data(writer.finish() + [UInt8(ascii: "\n")]))
        }
    }
}
