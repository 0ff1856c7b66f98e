import Foundation

/// Sizes and durations as operators write them: `ferryd`'s settings and `ferryctl`'s options read
/// them with these, so a value means the same wherever it is given.
public enum Quantity {
    /// What ``bytes(_:)`` accepts, in words.
    public static let bytesAccepted = "a size in bytes, with an optional K, M, G or T suffix (e.g. 512M)"
    /// What ``milliseconds(_:)`` accepts, in words.
    public static let durationAccepted = "a duration: seconds, or a number with ms, s, m, h or d (e.g. 500ms, 30s, 7d)"

    /// Bytes with an optional `K`/`M`/`G`/`T` suffix (powers of 1024; `KB`, `KiB` also read), or
    /// nil when the text is not one.
    public static func bytes(_ text: String) -> UInt64? {
        scaled(text, units: byteUnits)
    }

    /// Plain seconds or a number with a unit (`500ms`, `30s`, `10m`, `24h`, `7d`), in
    /// milliseconds; nil when the text is not one.
    public static func milliseconds(_ text: String) -> UInt64? {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        // Plain numbers are seconds.
        return Double(trimmed) == nil ? scaled(trimmed, units: durationUnits) : scaled(trimmed + "s", units: durationUnits)
    }

    /// `65536` as `64K`, `268435456` as `256M`: the largest unit that divides it.
    public static func formatBytes(_ bytes: UInt64) -> String {
        for (shift, suffix) in [(40, "T"), (30, "G"), (20, "M"), (10, "K")] where bytes >= 1 << shift && bytes % (1 << shift) == 0 {
            return "\(bytes >> shift)\(suffix)"
        }
        return "\(bytes)"
    }

    private static let byteUnits: [(suffix: String, factor: Double)] =
        ["k", "m", "g", "t"].enumerated().flatMap { power, letter in
            let factor = Double(UInt64(1) << (10 * (power + 1)))
            return [(letter + "ib", factor), (letter + "b", factor), (letter, factor)]
        } + [("b", 1)]

    private static let durationUnits: [(suffix: String, factor: Double)] = [
        ("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000),
    ]

    /// A non-negative number with an optional unit suffix, as a whole count of the smallest unit,
    /// or nil past what a `UInt64` holds (and for `inf`, `nan` and negatives).
    private static func scaled(_ text: String, units: [(suffix: String, factor: Double)]) -> UInt64? {
        let trimmed = text.trimmingCharacters(in: .whitespaces).lowercased()
        let (number, factor) =
            units.first { trimmed.hasSuffix($0.suffix) && trimmed.count > $0.suffix.count }
            .map { (trimmed.dropLast($0.suffix.count).trimmingCharacters(in: .whitespaces), $0.factor) } ?? (trimmed, 1)
        if let whole = UInt64(number), factor == 1 { return whole }
        guard let value = Double(number), value.isFinite, value >= 0, value * factor < 0x1p64 else { return nil }
        return UInt64(value * factor)
    }
}
