import FerryProtocol
import FerryStore
import Testing

/// Which configuration entry applies to a topic, without I/O.
@Suite("TopicConfigs: the most specific pattern wins")
struct TopicConfigsTests {
    private static let global = RetentionPolicy(maxMessages: nil, maxBytes: 1 << 30, maxAge: 7 * 86_400_000)

    private func configs(_ patterns: [String]) throws -> TopicConfigs {
        var configs = TopicConfigs(defaults: Self.global, dedupWindow: 86_400_000)
        for (index, text) in patterns.enumerated() {
            configs[try #require(TopicPattern(text))] = TopicConfig(maxMessages: .atMost(UInt64(index + 1)))
        }
        return configs
    }

    private func winner(_ topic: String, among patterns: [String]) throws -> String? {
        try configs(patterns).effective(for: topic).pattern?.description
    }

    private static let cases: [(topic: String, patterns: [String], winner: String?)] = [
        ("orders.eu", ["orders.*", "orders.>", ">"], "orders.*"),
        ("orders.eu", ["orders.>", ">"], "orders.>"),
        ("orders.eu", ["orders.eu", "orders.*", "*.eu", ">"], "orders.eu"),
        ("orders.eu.1", ["orders.*.1", "orders.eu.>", "*.eu.1"], "orders.eu.>"),
        ("orders.eu.1", ["*.eu.1", "*.*.1", "*.>"], "*.eu.1"),
        ("a.b.c", ["a.*.*", "a.*.>", "a.>"], "a.*.*"),
        ("a.b", [">", "*.b", "a.*"], "a.*"),
        ("chat", ["chat.>", "*"], "*"),
        ("x", ["orders.*"], nil),
    ]

    @Test("token by token, a literal beats *, and * beats >; an exact name beats every pattern", arguments: cases)
    func specificity(topic: String, patterns: [String], expected: String?) throws {
        #expect(try winner(topic, among: patterns) == expected)
        // Whatever order the entries are in.
        #expect(try winner(topic, among: patterns.reversed()) == expected)
    }

    @Test func specificityIsAStrictOrderOnPatternsThatMatchOneTopic() throws {
        let patterns = ["a.b.c", "a.b.*", "a.*.c", "*.b.c", "a.*.*", "*.*.c", "a.b.>", "a.>", "*.>", ">", "*.*.*"].compactMap { TopicPattern($0) }
        for lhs in patterns {
            #expect(lhs.matches("a.b.c"))
            #expect(!lhs.isMoreSpecific(than: lhs))
            for rhs in patterns where rhs != lhs {
                #expect(lhs.isMoreSpecific(than: rhs) != rhs.isMoreSpecific(than: lhs), "\(lhs) vs \(rhs)")
            }
        }
        #expect(patterns.filter(\.isExactName).map(\.description) == ["a.b.c"])
    }

    @Test func unsetFieldsAreTheGlobalSettingsNotThoseOfALessSpecificEntry() throws {
        var configs = TopicConfigs(defaults: Self.global, dedupWindow: 60_000)
        let broad = try #require(TopicPattern("orders.>"))
        let narrow = try #require(TopicPattern("orders.*"))
        configs[broad] = TopicConfig(maxBytes: .atMost(100), dedupWindow: 5, retention: .limits)
        configs[narrow] = TopicConfig(maxMessages: .atMost(10), maxAge: .unlimited, maxMessageBytes: 512)

        let effective = configs.effective(for: "orders.eu")
        #expect(effective.pattern == narrow)
        #expect(effective.retentionLimits == RetentionPolicy(maxMessages: 10, maxBytes: 1 << 30, maxAge: nil))
        #expect(effective.dedupWindow == 60_000)
        #expect(effective.maxMessageBytes == 512)
        #expect(effective.retention == .limits)

        let deeper = configs.effective(for: "orders.eu.1")
        #expect(deeper.pattern == broad)
        #expect(deeper.retentionLimits == RetentionPolicy(maxMessages: nil, maxBytes: 100, maxAge: 7 * 86_400_000))
        #expect(deeper.dedupWindow == 5)
        #expect(deeper.maxMessageBytes == nil)

        let none = configs.effective(for: "billing")
        #expect(none.pattern == nil)
        #expect(none.retentionLimits == Self.global)
        #expect(none.dedupWindow == 60_000)
        #expect(configs.shortestDedupWindow == 5)

        configs.apply(.deleteTopicConfig(narrow))
        #expect(configs.effective(for: "orders.eu").pattern == broad)
        configs.apply(.putTopicConfig(narrow, TopicConfig()))
        #expect(configs.effective(for: "orders.eu").pattern == narrow)
        #expect(configs.effective(for: "orders.eu").retentionLimits == Self.global)
    }
}
