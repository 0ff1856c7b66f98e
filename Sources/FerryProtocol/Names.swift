/// Validation of the names the protocol constrains: topics, client ids and message ids.
public enum Names {
    /// 1–255 bytes of `A-Z a-z 0-9 _ - . : /`, not starting with `$` (reserved for the broker).
    public static func isValidTopic(_ name: String) -> Bool {
        topicBytes.holdsAll(name, lengths: 1...255)
    }

    /// The characters of a topic name plus the wildcards `*` and `>`, 1–255 bytes (where a
    /// wildcard may stand is the pattern parser's rule).
    public static func isValidTopicPattern(_ pattern: String) -> Bool {
        patternBytes.holdsAll(pattern, lengths: 1...255)
    }

    /// 1–128 bytes of `A-Z a-z 0-9 _ - . : @`.
    public static func isValidClientID(_ id: String) -> Bool {
        clientIDBytes.holdsAll(id, lengths: 1...128)
    }

    /// A message id (`msg_id`, `Idempotency-Key`) is 1–128 bytes.
    public static func isValidMessageID(_ id: String) -> Bool {
        (1...128).contains(id.utf8.count)
    }

    private static let topicBytes = ASCIISet(alphanumericsAnd: "_-.:/")
    private static let patternBytes = ASCIISet(alphanumericsAnd: "_-.:/*>")
    private static let clientIDBytes = ASCIISet(alphanumericsAnd: "_-.:@")

    /// A set of ASCII bytes as a 128-bit mask: a name is checked a bit test per byte (every
    /// publish checks its topic twice).
    private struct ASCIISet {
        private var low: UInt64 = 0
        private var high: UInt64 = 0

        init(alphanumericsAnd others: StaticString) {
            let alphanumerics = (UInt8(ascii: "a")...UInt8(ascii: "z")).map { $0 } + (UInt8(ascii: "A")...UInt8(ascii: "Z")).map { $0 }
                + (UInt8(ascii: "0")...UInt8(ascii: "9")).map { $0 }
            let extra = UnsafeBufferPointer(start: others.utf8Start, count: others.utf8CodeUnitCount)
            for byte in alphanumerics + extra {
                if byte < 64 { low |= 1 << byte } else { high |= 1 << (byte - 64) }
            }
        }

        func contains(_ byte: UInt8) -> Bool {
            byte < 64 ? low >> byte & 1 != 0 : byte < 128 && high >> (byte - 64) & 1 != 0
        }

        /// Whether `text` is `lengths` bytes long, every one of them in the set.
        func holdsAll(_ text: String, lengths: ClosedRange<Int>) -> Bool {
            var text = text
            return text.withUTF8 { utf8 in lengths.contains(utf8.count) && utf8.allSatisfy(contains) }
        }
    }
}
