import BenchPlot
import Foundation

/// When, where and on what code a sweep ran: every point's JSON line and each plot's caption say it.
struct ScaleContext {
    let date: Date
    let host: String
    let commit: String
    let cores: Int

    static func current() -> ScaleContext {
        ScaleContext(
            date: Date(), host: ProcessInfo.processInfo.hostName, commit: gitDescription() ?? "unknown commit",
            cores: ProcessInfo.processInfo.activeProcessorCount)
    }

    var dateText: String { ISO8601DateFormatter().string(from: date) }

    /// `git describe --always --dirty` in the working directory: the commit measured, and
    /// whether the tree had changes; nil outside a repository or without git.
    private static func gitDescription() -> String? {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["git", "describe", "--always", "--dirty"]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        do { try process.run() } catch { return nil }
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return process.terminationStatus == 0 && !text.isEmpty ? text : nil
    }
}

/// One measured point of a curve, or one that failed (`error` set; figures may be missing).
struct ScalePoint {
    let x: Int
    /// The scenario's command line after `ferry-bench`.
    let arguments: [String]
    let seconds: Double
    let figures: [String: Double]
    /// The scenario's own JSON object; nil when it did not finish.
    let result: [String: Any]?
    let error: String?

    var ok: Bool { error == nil }

    func json(curve: ScaleCurve, context: ScaleContext) -> [String: Any] {
        var object: [String: Any] = [
            "curve": curve.rawValue, "x": x, "ok": ok, "command": (["ferry-bench"] + arguments).joined(separator: " "),
            "seconds": (seconds * 1000).rounded() / 1000, "y": figures.filter { $0.value.isFinite },
            "date": context.dateText, "host": context.host, "commit": context.commit, "cores": context.cores,
        ]
        object["result"] = result.map(Self.finite)
        object["error"] = error
        return object
    }

    /// `value` with every number JSON cannot hold (NaN from a process that was gone, say) as null.
    private static func finite(_ value: Any) -> Any {
        switch value {
        case let number as Double: number.isFinite ? number : NSNull()
        case let object as [String: Any]: object.mapValues(finite)
        case let array as [Any]: array.map(finite)
        default: value
        }
    }

    /// The point's line in the sweep's output.
    func line(_ curve: ScaleCurve) -> String {
        let head = "  \(curve.rawValue) \(x): "
        let time = String(format: " (%.1f s)", seconds)
        guard let error else { return head + curve.summary(figures) + time }
        return head + "FAILED: " + error + time
    }
}

/// A curve's two files: the points as JSON lines, appended as each is measured, and the plot,
/// written again after each, so an interrupted sweep leaves what it measured.
struct ScaleLog {
    let curve: ScaleCurve
    let context: ScaleContext
    let jsonl: URL
    let svg: URL
    private(set) var points: [ScalePoint] = []

    /// Starts both files afresh.
    init(curve: ScaleCurve, folder: URL, context: ScaleContext) throws {
        self.curve = curve
        self.context = context
        jsonl = folder.appendingPathComponent("\(curve.rawValue).jsonl")
        svg = folder.appendingPathComponent("\(curve.rawValue).svg")
        try Data().write(to: jsonl)
        try plot.svg().write(to: svg, atomically: true, encoding: .utf8)
    }

    mutating func append(_ point: ScalePoint) throws {
        points.append(point)
        var line = try JSONSerialization.data(withJSONObject: point.json(curve: curve, context: context), options: [.sortedKeys])
        line.append(UInt8(ascii: "\n"))
        let handle = try FileHandle(forWritingTo: jsonl)
        defer { try? handle.close() }
        try handle.seekToEnd()
        try handle.write(contentsOf: line)
        try plot.svg().write(to: svg, atomically: true, encoding: .utf8)
    }

    /// The plot of the points so far; a failed point is missing from every series.
    var plot: Plot {
        let xs = points.map { Double($0.x) }
        var plot = Plot(
            title: curve.title, xLabel: curve.xLabel, xLogarithmic: PlotScale.suitsLogarithmic(xs),
            caption: [
                "\(context.dateText) · \(context.host) · \(context.commit) · \(context.cores) cores · FERRY_SYNC=full, 100-byte payloads",
                "ferry-bench scale \(curve.rawValue); first point: ferry-bench \(points.first.map { $0.arguments.joined(separator: " ") } ?? curve.rawValue)",
            ])
        plot.series = curve.figures.map { figure in
            Plot.Series(
                name: figure.name, side: figure.side, yLogarithmic: figure.logarithmic,
                points: points.map { point in
                    Plot.Point(x: Double(point.x), y: point.ok ? point.figures[figure.key] : nil, note: point.error)
                })
        }
        return plot
    }
}
