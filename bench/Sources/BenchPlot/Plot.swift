import Foundation

/// A line plot of one or two series against one x axis, written as SVG text: axes with ticks and
/// labels, a logarithmic x axis for geometric sweeps, a title and a caption. A point whose
/// measurement failed has no y: the line breaks there and a red × on the x axis marks it.
///
///     var plot = Plot(title: "Fan-out", xLabel: "subscribers", xLogarithmic: true)
///     plot.series = [Plot.Series(name: "deliveries/s", points: [.init(x: 1, y: 150_000), .init(x: 10, y: nil)])]
///     let text = plot.svg()
public struct Plot: Sendable {
    public struct Point: Sendable, Equatable {
        public var x: Double
        /// Nil when the point failed.
        public var y: Double?
        /// Shown when the pointer rests on the point: the failure, say.
        public var note: String?

        public init(x: Double, y: Double?, note: String? = nil) {
            self.x = x
            self.y = y
            self.note = note
        }
    }

    public enum Side: Sendable { case left, right }

    public struct Series: Sendable {
        /// The legend's and the y axis's label, with its unit.
        public var name: String
        public var side: Side
        public var yLogarithmic: Bool
        public var points: [Point]

        public init(name: String, side: Side = .left, yLogarithmic: Bool = false, points: [Point]) {
            self.name = name
            self.side = side
            self.yLogarithmic = yLogarithmic
            self.points = points
        }
    }

    public var title: String
    public var xLabel: String
    public var xLogarithmic: Bool
    /// Lines under the plot: when, where and what was measured.
    public var caption: [String]
    /// One or two; the second normally on the right axis.
    public var series: [Series]
    public var width = 760.0
    public var height = 480.0

    public init(title: String, xLabel: String, xLogarithmic: Bool, caption: [String] = [], series: [Series] = []) {
        self.title = title
        self.xLabel = xLabel
        self.xLogarithmic = xLogarithmic
        self.caption = caption
        self.series = series
    }

    static let colors = ["#1f5fa8", "#c2410c"]
    static let failedColor = "#d00000"

    /// The plot area's edges in pixels.
    var frame: (left: Double, right: Double, top: Double, bottom: Double) {
        let hasRight = series.contains { $0.side == .right }
        return (84, width - (hasRight ? 84 : 28), 64, height - 72 - 16 * Double(caption.count))
    }

    /// The x scale over every point's x, failed ones included.
    public var xScale: PlotScale {
        let values = series.flatMap { $0.points.map(\.x) }
        let (left, right, _, _) = frame
        return xLogarithmic ? .logarithmic(covering: values, from: left, to: right) : .linear(covering: values, from: left, to: right)
    }

    /// The scale of one side's y axis; nil when no series is on that side.
    public func yScale(_ side: Side) -> PlotScale? {
        let onSide = series.filter { $0.side == side }
        guard let first = onSide.first else { return nil }
        let values = onSide.flatMap { $0.points.compactMap(\.y) }
        let (_, _, top, bottom) = frame
        return first.yLogarithmic ? .logarithmic(covering: values, from: bottom, to: top) : .linear(covering: values, from: bottom, to: top)
    }

    /// SVG path data through `pixels` in order; a nil starts a new piece, so a failed point
    /// leaves a gap instead of a line across it.
    public static func pathData(through pixels: [(x: Double, y: Double)?]) -> String {
        var commands: [String] = []
        var drawing = false
        for pixel in pixels {
            guard let pixel else {
                drawing = false
                continue
            }
            commands.append("\(drawing ? "L" : "M")\(number(pixel.x)) \(number(pixel.y))")
            drawing = true
        }
        return commands.joined(separator: " ")
    }

    /// The whole document.
    public func svg() -> String {
        let (left, right, top, bottom) = frame
        let x = xScale
        var body: [String] = [
            #"<rect width="100%" height="100%" fill="white"/>"#,
            #"<text x="\#(number(width / 2))" y="24" text-anchor="middle" font-size="16" font-weight="bold">\#(escaped(title))</text>"#,
        ]
        body += legend(y: 46)
        // Grid and ticks of the x axis.
        for tick in x.ticks {
            guard let px = x.position(tick) else { continue }
            body.append(line(px, top, px, bottom, stroke: "#e5e5e5"))
            body.append(line(px, bottom, px, bottom + 5, stroke: "black"))
            body.append(text(compactLabel(tick), x: px, y: bottom + 19, anchor: "middle"))
        }
        body.append(text(xLabel, x: (left + right) / 2, y: bottom + 40, anchor: "middle", size: 13))
        for side in [Side.left, .right] {
            guard let scale = yScale(side) else { continue }
            body += yAxis(scale, side: side)
        }
        body.append(#"<rect x="\#(number(left))" y="\#(number(top))" width="\#(number(right - left))" height="\#(number(bottom - top))" fill="none" stroke="black"/>"#)
        for (index, series) in series.enumerated() {
            guard let y = yScale(series.side) else { continue }
            body += draw(series, color: Self.colors[index % Self.colors.count], square: index % 2 == 1, x: x, y: y, axisY: bottom)
        }
        for (index, line) in caption.enumerated() {
            body.append(text(line, x: 12, y: height - 12 - 16 * Double(caption.count - 1 - index), anchor: "start", size: 11, fill: "#555555"))
        }
        return """
            <?xml version="1.0" encoding="UTF-8"?>
            <svg xmlns="http://www.w3.org/2000/svg" width="\(number(width))" height="\(number(height))" viewBox="0 0 \(number(width)) \(number(height))" font-family="sans-serif" font-size="12">
            \(body.joined(separator: "\n"))
            </svg>

            """
    }

    private func legend(y: Double) -> [String] {
        var entries: [String] = []
        var cursor = frame.left
        for (index, series) in series.enumerated() {
            let color = Self.colors[index % Self.colors.count]
            entries.append(marker(x: cursor + 6, y: y - 4, color: color, square: index % 2 == 1))
            let label = series.name + (series.side == .right && self.series.count > 1 ? " (right axis)" : "")
            entries.append(text(label, x: cursor + 16, y: y, anchor: "start", fill: color))
            // About 7 pixels a character at 12 px: room enough without measuring text.
            cursor += 40 + 7 * Double(label.count)
        }
        if series.contains(where: { $0.points.contains { $0.y == nil } }) {
            entries.append(text("× failed point", x: cursor, y: y, anchor: "start", fill: Self.failedColor))
        }
        return entries
    }

    private func yAxis(_ scale: PlotScale, side: Side) -> [String] {
        let (left, right, top, bottom) = frame
        let edge = side == .left ? left : right
        let outward = side == .left ? -1.0 : 1.0
        var parts: [String] = []
        for tick in scale.ticks {
            guard let py = scale.position(tick) else { continue }
            if side == .left { parts.append(line(left, py, right, py, stroke: "#e5e5e5")) }
            parts.append(line(edge, py, edge + 5 * outward, py, stroke: "black"))
            parts.append(text(compactLabel(tick), x: edge + 8 * outward, y: py + 4, anchor: side == .left ? "end" : "start"))
        }
        let names = series.enumerated().filter { $0.element.side == side }
        let label = names.map(\.element.name).joined(separator: ", ")
        let color = names.count == 1 && series.count > 1 ? Self.colors[names[0].offset % Self.colors.count] : "black"
        let labelX = edge + 62 * outward
        parts.append(
            #"<text x="\#(number(labelX))" y="\#(number((top + bottom) / 2))" text-anchor="middle" font-size="13" fill="\#(color)" transform="rotate(-90 \#(number(labelX)) \#(number((top + bottom) / 2)))">\#(escaped(label))</text>"#
        )
        return parts
    }

    private func draw(_ series: Series, color: String, square: Bool, x: PlotScale, y: PlotScale, axisY: Double) -> [String] {
        let sorted = series.points.sorted { $0.x < $1.x }
        let pixels: [(x: Double, y: Double)?] = sorted.map { point in
            guard let value = point.y, let px = x.position(point.x), let py = y.position(value) else { return nil }
            return (px, py)
        }
        var parts = [#"<path d="\#(Self.pathData(through: pixels))" fill="none" stroke="\#(color)" stroke-width="2"/>"#]
        for (point, pixel) in zip(sorted, pixels) {
            let note = point.note.map { ": " + $0 } ?? ""
            if let pixel, let value = point.y {
                parts.append(
                    marker(x: pixel.x, y: pixel.y, color: color, square: square, data: (point.x, value),
                        title: "\(series.name) at \(compactLabel(point.x)): \(compactLabel(value))\(note)"))
            } else if let px = x.position(point.x) {
                parts.append(
                    #"<text class="failed" data-x="\#(point.x)" x="\#(number(px))" y="\#(number(axisY - 4))" text-anchor="middle" font-size="16" fill="\#(Self.failedColor)">×<title>\#(escaped("\(series.name) at \(compactLabel(point.x)): failed\(note)"))</title></text>"#
                )
            }
        }
        return parts
    }

    private func marker(x: Double, y: Double, color: String, square: Bool, data: (x: Double, y: Double)? = nil, title: String? = nil) -> String {
        let attributes = data.map { #" class="point" data-x="\#($0.x)" data-y="\#($0.y)""# } ?? ""
        let content = title.map { "<title>\(escaped($0))</title>" } ?? ""
        let shape =
            square
            ? #"<rect\#(attributes) x="\#(number(x - 3.5))" y="\#(number(y - 3.5))" width="7" height="7" fill="\#(color)""#
            : #"<circle\#(attributes) cx="\#(number(x))" cy="\#(number(y))" r="3.5" fill="\#(color)""#
        return content.isEmpty ? shape + "/>" : shape + ">" + content + (square ? "</rect>" : "</circle>")
    }

    private func line(_ x1: Double, _ y1: Double, _ x2: Double, _ y2: Double, stroke: String) -> String {
        #"<line x1="\#(number(x1))" y1="\#(number(y1))" x2="\#(number(x2))" y2="\#(number(y2))" stroke="\#(stroke)"/>"#
    }

    private func text(_ content: String, x: Double, y: Double, anchor: String, size: Double = 12, fill: String = "black") -> String {
        #"<text x="\#(number(x))" y="\#(number(y))" text-anchor="\#(anchor)" font-size="\#(number(size))" fill="\#(fill)">\#(escaped(content))</text>"#
    }
}

/// A coordinate with one decimal, enough for a screen and stable across runs.
func number(_ value: Double) -> String { String(format: "%.1f", value) }

/// Text safe inside an XML element or a double-quoted attribute; control characters XML does not
/// allow (a failure message may carry one) are left out.
public func escaped(_ text: String) -> String {
    var result = ""
    result.reserveCapacity(text.count)
    for character in text {
        switch character {
        case "\t", "\n": result.append(character)
        case _ where character.unicodeScalars.contains { $0.value < 0x20 || (0xFFFE...0xFFFF).contains($0.value) }: continue
        case "&": result += "&amp;"
        case "<": result += "&lt;"
        case ">": result += "&gt;"
        case "\"": result += "&quot;"
        default: result.append(character)
        }
    }
    return result
}
