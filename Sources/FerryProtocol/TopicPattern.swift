/// A topic pattern with NATS semantics over `.`-separated tokens: a literal token matches
/// itself, `*` matches exactly one token, and `>` (last only) matches one or more tokens.
///
/// ```swift
/// TopicPattern("orders.*")!.matches("orders.eu")      // true
/// TopicPattern("orders.*")!.matches("orders.eu.1")    // false
/// TopicPattern("chat.>")!.matches("chat.room.7")      // true
/// TopicPattern("chat.>")!.matches("chat")             // false
/// ```
///
/// Permissions use it, subscriptions to many topics, and per-topic configuration, which the
/// storage engines enforce.
public struct TopicPattern: Sendable, Hashable, CustomStringConvertible {
    private enum Token: Sendable, Hashable {
        case literal([UInt8])
        case one
        case rest

        /// How narrowly the token matches: a literal beats `*`, which beats `>`.
        var rank: Int {
            switch self {
            case .literal: 2
            case .one: 1
            case .rest: 0
            }
        }
    }

    private let tokens: [Token]
    /// `>` alone, what authentication off and the operator get: every publish checks it, so it
    /// is answered without splitting the name.
    private let isEverything: Bool
    public let description: String

    /// Parses a pattern; nil when it is empty, longer than a topic name, uses `*` or `>` inside a
    /// token, or has `>` anywhere but last.
    public init?(_ text: String) {
        guard !text.isEmpty, text.utf8.count <= 255 else { return nil }
        let parts = text.utf8.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        var tokens: [Token] = []
        for (index, part) in parts.enumerated() {
            switch Array(part) {
            case [UInt8(ascii: "*")]: tokens.append(.one)
            case [UInt8(ascii: ">")] where index == parts.count - 1: tokens.append(.rest)
            case let bytes where bytes.contains(UInt8(ascii: "*")) || bytes.contains(UInt8(ascii: ">")): return nil
            case let bytes: tokens.append(.literal(bytes))
            }
        }
        self.tokens = tokens
        isEverything = tokens == [.rest]
        description = text
    }

    /// Whether `topic` is one of the names this pattern stands for.
    public func matches(_ topic: String) -> Bool {
        if isEverything { return true }
        let names = topic.utf8.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        for (index, token) in tokens.enumerated() {
            switch token {
            case .rest:
                return names.count > index
            case .one:
                guard index < names.count else { return false }
            case .literal(let bytes):
                guard index < names.count, names[index].elementsEqual(bytes) else { return false }
            }
        }
        return names.count == tokens.count
    }
}

extension TopicPattern {
    /// `>`: every topic.
    // A literal that always parses.
    public static let everything = TopicPattern(">")!
}


extension TopicPattern {
    /// True when the pattern has a `*` or `>` token: it stands for many topics, not one name.
    public var isWildcard: Bool { tokens.contains { $0.rank < 2 } }

    /// True when the pattern has no wildcard: it matches exactly one topic, the one it names.
    public var isExactName: Bool { !isWildcard }

    /// Whether this pattern is more specific than `other`, both matching one topic: at the first
    /// token where they differ in kind, a literal beats `*` and `*` beats `>`. An exact name
    /// therefore beats every pattern. Two different patterns that match one topic always differ in
    /// kind somewhere (their literals are that topic's tokens), so exactly one of them wins.
    public func isMoreSpecific(than other: TopicPattern) -> Bool {
        for (mine, theirs) in zip(tokens, other.tokens) where mine.rank != theirs.rank {
            return mine.rank > theirs.rank
        }
        // Same kinds throughout the shorter one: only a `>` ends a pattern early, and both end
        // there, so they are the same pattern.
        return false
    }

    /// A pattern a client may subscribe to: it has a wildcard token, and its literal tokens use
    /// only the characters of topic names (a topic name has no `*` or `>`, so `subscribe` tells
    /// the two apart by the text alone).
    public init?(subscribing text: String) {
        guard let pattern = TopicPattern(text), pattern.isWildcard else { return nil }
        let literalized = text.utf8.map { $0 == UInt8(ascii: "*") || $0 == UInt8(ascii: ">") ? UInt8(ascii: "x") : $0 }
        guard Names.isValidTopic(String(decoding: literalized, as: UTF8.self)) else { return nil }
        self = pattern
    }

    /// Whether `text` is meant as a pattern (it has a token that is `*` or `>`), valid or not.
    public static func looksLikePattern(_ text: String) -> Bool {
        text.utf8.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false).contains {
            $0.elementsEqual("*".utf8) || $0.elementsEqual(">".utf8)
        }
    }
}
