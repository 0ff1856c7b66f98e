import ArgumentParser
import FerryProtocol
import Foundation

extension Topics {
    /// `ferryctl topics config`: per-topic configuration by pattern.
    struct Config: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List, set and delete per-topic configuration (retention, payload limit, dedup window) by pattern.",
            discussion: """
                A pattern is a topic name or a NATS pattern (* one token, > the rest). The most specific pattern \
                that matches a topic applies; each setting it leaves out is the broker's global one.
                """,
            subcommands: [List.self, SetEntry.self, Delete.self],
            defaultSubcommand: List.self
        )

        struct List: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "List every configuration entry.")

            @OptionGroup var admin: AdminOptions
            @OptionGroup var output: OutputOptions

            func run() async throws {
                let (list, body) = try await admin.client().get("/v1/admin/config/topics", as: TopicConfigList.self)
                if output.json { return output.printBody(body) }
                var table = Table("PATTERN", "MAX MESSAGES", "MAX BYTES", "MAX AGE", "MAX MESSAGE BYTES", "DEDUP WINDOW", "RETENTION")
                for entry in list.configs {
                    table.add(
                        entry.pattern ?? "?", Self.text(entry.maxMessages, String.init), Self.text(entry.maxBytes) { Format.bytes($0) },
                        Self.text(entry.maxAgeMs) { Format.duration(milliseconds: $0) }, entry.maxMessageBytes.map { Format.bytes($0) } ?? "-",
                        entry.dedupWindowMs.map { Format.duration(milliseconds: $0) } ?? "-", entry.retention ?? "-")
                }
                print(table.text)
            }

            /// `-` for a setting the entry leaves to the global one.
            private static func text(_ limit: LimitSetting?, _ format: (UInt64) -> String) -> String {
                switch limit {
                case nil: "-"
                case .unlimited: "unlimited"
                case .atMost(let bound): format(bound)
                }
            }
        }

        struct SetEntry: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                commandName: "set",
                abstract: "Create or replace the configuration entry of a pattern.",
                discussion: """
                    Settings left out fall back to the broker's global ones (FERRY_RETENTION_*, FERRY_MAX_MESSAGE_BYTES, \
                    FERRY_DEDUP_WINDOW). Sizes take bytes or a K/M/G/T suffix, durations 500ms, 30s, 10m, 24h, 7d or \
                    plain seconds, as ferryd's settings do; the retention limits also take unlimited.
                    """
            )

            @OptionGroup var admin: AdminOptions
            @OptionGroup var output: OutputOptions
            @Argument(help: "The topic pattern, e.g. orders.* or sensors.>.") var pattern: String
            @Option(help: "Messages kept per topic, or unlimited.", transform: { try limit($0, { UInt64($0.trimmingCharacters(in: .whitespaces)) }, "a whole number") })
            var maxMessages: LimitSetting?
            @Option(help: "Payload bytes kept per topic (e.g. 512M), or unlimited.", transform: { try limit($0, Quantity.bytes, Quantity.bytesAccepted) })
            var maxBytes: LimitSetting?
            @Option(help: "Age of the oldest message kept (e.g. 7d), or unlimited.", transform: { try limit($0, Quantity.milliseconds, Quantity.durationAccepted) })
            var maxAge: LimitSetting?
            @Option(help: "Payload limit (e.g. 64K), at most the broker's.", transform: { try quantity($0, Quantity.bytes, Quantity.bytesAccepted) })
            var maxMessageBytes: UInt64?
            @Option(help: "How long a msg_id is remembered (e.g. 1h).", transform: { try quantity($0, Quantity.milliseconds, Quantity.durationAccepted) })
            var dedupWindow: UInt64?
            @Option(help: "Retention policy: limits; interest (a message goes once every durable subscriber acked it); work_queue (once a queue group member acked it).")
            var retention: String?

            func run() async throws {
                let entry = TopicConfigEntry(
                    maxMessages: maxMessages, maxBytes: maxBytes, maxAgeMs: maxAge, maxMessageBytes: maxMessageBytes,
                    dedupWindowMs: dedupWindow, retention: retention)
                let client = try admin.client()
                let body = try await client.send("PUT", AdminClient.path("config/topics", pattern), json: entry)
                if output.json { return output.printBody(body) }
                let stored = try client.decode(TopicConfigEntry.self, body)
                print("set topic configuration \(stored.pattern ?? pattern)")
            }
        }

        struct Delete: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Delete the configuration entry of a pattern.",
                discussion: "The topics it matched fall back to a less specific entry, or to the broker's global settings."
            )

            @OptionGroup var admin: AdminOptions
            @Argument(help: "The topic pattern, exactly as set.") var pattern: String

            func run() async throws {
                _ = try await admin.client().send("DELETE", AdminClient.path("config/topics", pattern))
                print("deleted topic configuration \(pattern)")
            }
        }
    }
}

/// A quantity parsed by `parse` (``Quantity``), or a usage error naming what is accepted.
private func quantity(_ text: String, _ parse: (String) -> UInt64?, _ accepts: String) throws -> UInt64 {
    guard let value = parse(text) else { throw ValidationError("'\(text)' is not \(accepts)") }
    return value
}

/// `unlimited`, or a quantity of at least 1.
private func limit(_ text: String, _ parse: (String) -> UInt64?, _ accepts: String) throws -> LimitSetting {
    if text.trimmingCharacters(in: .whitespaces).lowercased() == "unlimited" { return .unlimited }
    let value = try quantity(text, parse, accepts + ", or unlimited")
    guard value > 0 else { throw ValidationError("'\(text)' must be at least 1, or unlimited") }
    return .atMost(value)
}
