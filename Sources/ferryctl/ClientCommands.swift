import ArgumentParser
import FerryProtocol
import Foundation

struct Clients: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List, inspect, delete and rewind durable clients.",
        subcommands: [List.self, Show.self, Delete.self, Rewind.self],
        defaultSubcommand: List.self
    )

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List the durable sessions, in client id order: every one, or a page of those matching a search.")

        @OptionGroup var admin: AdminOptions
        @OptionGroup var output: OutputOptions
        @Option(help: "Only the clients whose id contains this text (letters in any case).") var search: String?
        @Option(help: "At most this many clients (1-1000); the listing then names the --after of the next page.") var limit: Int?
        @Option(help: "Only the clients after this client id (the next page of a listing with --limit).") var after: String?

        func run() async throws {
            var query = URLComponents()
            query.queryItems = [("search", search), ("after", after), ("limit", limit.map(String.init))]
                .compactMap { name, value in value.map { URLQueryItem(name: name, value: $0) } }
            let path = "/v1/admin/clients" + (query.queryItems?.isEmpty == false ? "?" + (query.percentEncodedQuery ?? "") : "")
            let (list, body) = try await admin.client().get(path, as: ClientList.self)
            if output.json { return output.printBody(body) }
            var table = Table("CLIENT", "CONNECTED", "SUBSCRIPTIONS", "LAST SEEN")
            for client in list.clients {
                table.add(client.clientID, Format.yesNo(client.connected), "\(client.subscriptions)", Format.ago(client.lastSeen))
            }
            print(table.text)
            if let next = list.next {
                print("\(list.clients.count) of \(list.total.map(String.init) ?? "more"); the next page: --after \(next)")
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show a client: its subscriptions, ack floors, lag and last resume.")

        @OptionGroup var admin: AdminOptions
        @OptionGroup var output: OutputOptions
        @Argument(help: "The client id.") var id: String

        func run() async throws {
            let (client, body) = try await admin.client().get(AdminClient.path("clients", id), as: ClientDetail.self)
            if output.json { return output.printBody(body) }
            let resume = client.lastResume.map {
                "\($0.resumed ? "resumed, \($0.subscriptions) subscription(s) restored" : "new session"), \(Format.ago($0.at))"
            }
            print(
                fields([
                    ("client", client.clientID),
                    ("connected", Format.yesNo(client.connected)),
                    ("created", Format.ago(client.createdAt)),
                    ("last seen", Format.ago(client.lastSeen)),
                    ("last resume", resume ?? "none since the broker started"),
                ]
                    + client.patterns.map { ("pattern", "\($0.pattern): \($0.topics) topic(s), window \($0.window)") }))
            guard !client.subscriptions.isEmpty else { return }
            var table = Table("TOPIC", "ACK FLOOR", "HEAD", "LAG", "OLDEST UNACKED", "WINDOW", "VIA")
            for subscription in client.subscriptions {
                table.add(
                    subscription.topic, "\(subscription.ackFloor)", "\(subscription.head)", "\(subscription.lag)",
                    subscription.oldestUnackedAgeMs.map { Format.duration(milliseconds: $0) } ?? "-", "\(subscription.window)",
                    subscription.pattern ?? "-")
            }
            print("\n" + table.text)
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Delete a durable session and its positions.",
            discussion: "A connected client is closed with 4010 and does not reconnect."
        )

        @OptionGroup var admin: AdminOptions
        @Argument(help: "The client id.") var id: String

        func run() async throws {
            _ = try await admin.client().send("DELETE", AdminClient.path("clients", id))
            print("deleted client \(id)")
        }
    }

    struct Rewind: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Move a client's ack floor on a topic, so it is sent every later message again.",
            discussion: "The client must be disconnected; it gets the messages after --to when it resumes."
        )

        @OptionGroup var admin: AdminOptions
        @OptionGroup var output: OutputOptions
        @Argument(help: "The client id.") var id: String
        @Option(help: "The topic.") var topic: String
        @Option(help: "The new ack floor: delivery resumes after this version.") var to: UInt64

        func run() async throws {
            let client = try admin.client()
            let body = try await client.send("POST", AdminClient.path("clients", id, "/rewind"), json: RewindRequest(topic: topic, to: to))
            if output.json { return output.printBody(body) }
            let subscription = try client.decode(SubscriptionInfo.self, body)
            print("rewound \(id) on \(subscription.topic): ack floor \(subscription.ackFloor), \(subscription.lag) to deliver")
        }
    }
}
