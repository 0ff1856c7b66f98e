import Foundation

/// Maps values of one axis to pixels, linearly or by their logarithm, and chooses the axis's
/// ticks. Pure: a plot is this arithmetic plus text.
///
///     let x = PlotScale.logarithmic(covering: [1, 10_000], pixels: 80...680)
///     x.position(100)   // 380: halfway, two decades of four
///     x.ticks           // [1, 10, 100, 1000, 10000]
public struct PlotScale: Sendable, Equatable {
    /// The values at the axis's two ends (for a logarithmic scale, both positive).
    public let domain: ClosedRange<Double>
    /// Pixels of `domain.lowerBound` and `domain.upperBound`; `start` may be the larger (a y axis grows upwards).
    public let start: Double
    public let end: Double
    public let isLogarithmic: Bool
    /// Where the labels go, inside `domain`, ascending.
    public let ticks: [Double]

    /// A linear scale from 0 (or the smallest value, when negative) to a round number at or above
    /// the largest value, with about `tickCount` ticks at multiples of 1, 2 or 5 × 10ⁿ.
    public static func linear(covering values: [Double], from start: Double, to end: Double, tickCount: Int = 5) -> PlotScale {
        let finite = values.filter(\.isFinite)
        let low = min(0, finite.min() ?? 0)
        var high = max(0, finite.max() ?? 0)
        if high <= low { high = low + 1 }
        let step = niceStep((high - low) / Double(max(1, tickCount)))
        let domain = (low / step).rounded(.down) * step...(high / step).rounded(.up) * step
        // n / 5 rather than n × 0.2, so a tick is the decimal it looks like (0.6, not 0.6000000000000001).
        let perUnit = step < 1 ? (1 / step).rounded() : nil
        let ticks = (Int((domain.lowerBound / step).rounded())...Int((domain.upperBound / step).rounded())).map { index in
            perUnit.map { Double(index) / $0 } ?? Double(index) * step
        }
        return PlotScale(domain: domain, start: start, end: end, isLogarithmic: false, ticks: ticks)
    }

    /// A logarithmic scale over whole decades around the positive `values`; ticks at each power
    /// of 10, and at 2 and 5 times it when the axis spans fewer than three decades.
    public static func logarithmic(covering values: [Double], from start: Double, to end: Double) -> PlotScale {
        let positive = values.filter { $0.isFinite && $0 > 0 }
        var low = (log10(positive.min() ?? 1)).rounded(.down)
        var high = (log10(positive.max() ?? 10)).rounded(.up)
        if high <= low {
            low -= 0.5
            high += 0.5
            (low, high) = (low.rounded(.down), high.rounded(.up))
        }
        let decades = Int(high - low)
        let multiples: [Double] = decades < 3 ? [1, 2, 5] : [1]
        let domain = pow(10, low)...pow(10, high)
        var ticks: [Double] = []
        for power in Int(low)...Int(high) {
            let decade: Double = pow(10, Double(power))
            ticks += multiples.map { $0 * decade }.filter { $0 <= domain.upperBound * (1 + 1e-9) }
        }
        return PlotScale(domain: domain, start: start, end: end, isLogarithmic: true, ticks: ticks)
    }

    /// The pixel of `value`; nil for a value a logarithmic scale cannot place (zero, negative) or
    /// one that is not finite.
    public func position(_ value: Double) -> Double? {
        guard value.isFinite, !isLogarithmic || value > 0 else { return nil }
        let fraction =
            isLogarithmic
            ? (log10(value) - log10(domain.lowerBound)) / (log10(domain.upperBound) - log10(domain.lowerBound))
            : (value - domain.lowerBound) / (domain.upperBound - domain.lowerBound)
        return start + fraction * (end - start)
    }

    /// 1, 2 or 5 × 10ⁿ: the smallest at or above `rough`.
    static func niceStep(_ rough: Double) -> Double {
        guard rough > 0, rough.isFinite else { return 1 }
        let magnitude = pow(10, log10(rough).rounded(.down))
        return [1.0, 2, 5, 10].map { $0 * magnitude }.first { $0 >= rough * (1 - 1e-9) } ?? 10 * magnitude
    }

    /// Whether a sweep's x values are better drawn on a logarithmic axis: all positive and
    /// spanning a factor of 10 or more (1, 10, 100 … or 1, 2, 5, 10 …), as geometric sweeps do.
    public static func suitsLogarithmic(_ values: [Double]) -> Bool {
        guard let low = values.min(), let high = values.max(), low > 0 else { return false }
        return high / low >= 10
    }
}

/// Numbers as an axis shows them: 1, 2.5, 10k, 1.2M; no more than three significant digits.
public func compactLabel(_ value: Double) -> String {
    guard value.isFinite else { return "–" }
    let magnitude = abs(value)
    let (scaled, suffix): (Double, String) =
        magnitude >= 1e9 ? (value / 1e9, "G") : magnitude >= 1e6 ? (value / 1e6, "M") : magnitude >= 1e3 ? (value / 1e3, "k") : (value, "")
    // %g drops trailing zeros; a value just under 1,000 may still round to 1e+03.
    var text = String(format: "%.3g", scaled)
    if text.contains("e") { text = String(format: "%.0f", scaled) }
    return (text == "-0" ? "0" : text) + suffix
}
