import ArgumentParser
import FerryProtocol
import Foundation

struct Topics: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List, inspect, delete and trim topics, and configure them by pattern.",
        subcommands: [List.self, Show.self, Delete.self, Trim.self, Config.self],
        defaultSubcommand: List.self
    )

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List every topic with its log and subscribers.")

        @OptionGroup var admin: AdminOptions
        @OptionGroup var output: OutputOptions

        func run() async throws {
            let (list, body) = try await admin.client().get("/v1/admin/topics", as: TopicList.self)
            if output.json { return output.printBody(body) }
            var table = Table("TOPIC", "EPOCH", "FIRST", "HEAD", "MESSAGES", "BYTES", "SUBSCRIBERS", "CONNECTED", "LAG")
            for topic in list.topics {
                table.add(
                    topic.topic, topic.epoch, "\(topic.first)", "\(topic.head)", "\(topic.messages)", Format.bytes(topic.bytes),
                    "\(topic.subscribers)", "\(topic.connected ?? 0)", "\(topic.lag ?? 0)")
            }
            print(table.text)
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a topic, the configuration that applies to it, and each durable subscription to it.")

        @OptionGroup var admin: AdminOptions
        @OptionGroup var output: OutputOptions
        @Argument(help: "The topic.") var topic: String

        func run() async throws {
            let (info, body) = try await admin.client().get(AdminClient.path("topics", topic), as: TopicInfo.self)
            if output.json { return output.printBody(body) }
            print(
                fields([
                    ("topic", info.topic),
                    ("epoch", info.epoch),
                    ("versions", info.messages == 0 ? "none stored (head \(info.head))" : "\(info.first)...\(info.head)"),
                    ("messages", "\(info.messages) (\(Format.bytes(info.bytes)))"),
                    ("subscribers", "\(info.subscribers), \(info.connected ?? 0) connected"),
                ]))
            if let config = info.config { print("\n" + fields(Self.configFields(config))) }
            let subscriptions = info.durableSubscriptions ?? []
            guard !subscriptions.isEmpty else { return }
            var table = Table("CLIENT", "CONNECTED", "ACK FLOOR", "LAG", "OLDEST UNACKED")
            for subscription in subscriptions {
                table.add(
                    subscription.clientID, Format.yesNo(subscription.connected), "\(subscription.ackFloor)", "\(subscription.lag)",
                    subscription.oldestUnackedAgeMs.map { Format.duration(milliseconds: $0) } ?? "-")
            }
            print("\n" + table.text)
        }

        /// The configuration that applies, one line per setting; unlimited bounds say so.
        private static func configFields(_ config: TopicConfigInfo) -> [(String, String)] {
            func limit(_ bound: UInt64?, _ format: (UInt64) -> String) -> String { bound.map(format) ?? "unlimited" }
            return [
                ("configuration", config.pattern.map { "entry \($0)" } ?? "the broker's global settings"),
                ("max messages", limit(config.maxMessages, String.init)),
                ("max bytes", limit(config.maxBytes) { Format.bytes($0) }),
                ("max age", limit(config.maxAgeMs) { Format.duration(milliseconds: $0) }),
                ("max message bytes", Format.bytes(config.maxMessageBytes)),
                ("dedup window", Format.duration(milliseconds: config.dedupWindowMs)),
                ("retention", config.retention),
            ]
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Delete a topic's log.",
            discussion: "Subscribers get a reset; the next publish starts a new log (new epoch, version 1)."
        )

        @OptionGroup var admin: AdminOptions
        @Argument(help: "The topic.") var topic: String
        @Flag(help: "Do not ask for confirmation.") var yes = false

        func run() async throws {
            try confirm(yes: yes, "Delete topic \(topic) and all its messages?")
            _ = try await admin.client().send("DELETE", AdminClient.path("topics", topic))
            print("deleted topic \(topic)")
        }
    }

    struct Trim: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Delete a topic's messages up to a version.",
            discussion: """
                Refuses, naming each client and the versions it would lose, when a durable subscriber has \
                not acked them; --force trims anyway (those subscribers get a gap).
                """
        )

        @OptionGroup var admin: AdminOptions
        @OptionGroup var output: OutputOptions
        @Argument(help: "The topic.") var topic: String
        @Option(help: "Delete every version up to and including this one.") var to: UInt64
        @Flag(help: "Trim even what durable subscribers have not acked.") var force = false

        func run() async throws {
            let client = try admin.client()
            let (status, body) = try await client.exchange(
                "POST", AdminClient.path("topics", topic, "/trim"), json: TrimRequest(to: to, force: force))
            if status == 409, let refusal = try? JSONDecoder().decode(ErrorBody.self, from: body), let losses = refusal.error.affected {
                var table = Table("CLIENT", "ACK FLOOR", "WOULD LOSE")
                for loss in losses {
                    table.add(loss.clientID, "\(loss.ackFloor)", "versions \(loss.from)...\(loss.to) (\(loss.to - loss.from + 1) messages)")
                }
                Format.printError(table.text)
                throw Failure("trim of \(topic) refused: \(losses.count) durable subscriber(s) have not acked those messages; --force trims anyway")
            }
            guard (200..<300).contains(status) else { throw client.failure(status: status, body: body) }
            if output.json { return output.printBody(body) }
            let result = try client.decode(TrimResult.self, body)
            print("trimmed \(result.topic): removed \(result.removed) messages, \(result.messages) left (first \(result.first), head \(result.head))")
        }
    }
}

/// Asks before a destructive command unless `yes`; without a terminal to ask on, requires `--yes`.
func confirm(yes: Bool, _ question: String) throws {
    guard !yes else { return }
    guard Format.isTerminal(STDIN_FILENO) else {
        throw Failure("\(question.dropLast()) needs --yes when there is no terminal to confirm on", code: .usage)
    }
    print("\(question) [y/N] ", terminator: "")
    guard let answer = readLine(), ["y", "yes"].contains(answer.lowercased()) else { throw Failure("not confirmed") }
}
