/// Validation of the names the protocol constrains: topics, client ids and message ids.
public enum Names {
    /// 1–255 bytes of `A-Z a-z 0-9 _ - . : /`, not starting with `$` (reserved for the broker).
    public static func isValidTopic(_ name: String) -> Bool {
        let utf8 = name.utf8
        guard (1...255).contains(utf8.count) else { return false }
        return utf8.allSatisfy { isAlphanumeric($0) || "_-.:/".utf8.contains($0) }
    }

    /// The characters of a topic name plus the wildcards `*` and `>`, 1–255 bytes (where a
    /// wildcard may stand is the pattern parser's rule).
    public static func isValidTopicPattern(_ pattern: String) -> Bool {
        let utf8 = pattern.utf8
        guard (1...255).contains(utf8.count) else { return false }
        return utf8.allSatisfy { isAlphanumeric($0) || "_-.:/*>".utf8.contains($0) }
    }

    /// 1–128 bytes of `A-Z a-z 0-9 _ - . : @`.
    public static func isValidClientID(_ id: String) -> Bool {
        let utf8 = id.utf8
        guard (1...128).contains(utf8.count) else { return false }
        return utf8.allSatisfy { isAlphanumeric($0) || "_-.:@".utf8.contains($0) }
    }

    /// A message id (`msg_id`, `Idempotency-Key`) is 1–128 bytes.
    public static func isValidMessageID(_ id: String) -> Bool {
        (1...128).contains(id.utf8.count)
    }

    private static func isAlphanumeric(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"):
            true
        default: false
        }
    }
}
