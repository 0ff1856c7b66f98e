import ArgumentParser
import BenchPlot
import Foundation

/// Sweeps one parameter per curve and writes, for each, the points as JSON lines and an SVG plot.
struct Scale: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Curves, not points: sweep subscribers, connections, topics, missed or stored messages; write JSONL and an SVG plot of each.",
        discussion: """
            Each point is one run of a scenario (pubsub, idle, resume, restart) on a broker of its own, with the options its JSON line's \
            "command" shows, so any point can be run again alone. A point that fails is recorded with its error and drawn as a red × on \
            the x axis; the run then exits with status 1 after writing everything.

            Default sweeps:
              subscribers  1 → 10,000         deliveries/s and p99 latency (pubsub, --deliveries in all per point)
              connections  1,000 → 50,000     ferryd RssAnon (idle; needs 50,256 open files: the tool raises its hard limit only with CAP_SYS_RESOURCE, else run ulimit -n first)
              topics       1 → 100,000        confirmed publishes/s, no subscriber (pubsub --topics, --messages or 10 per topic)
              missed       1,000 → 10,000,000 time to catch up (resume)
              stored       10,000 → 10,000,000 time from kill -9 to serving again (restart)
            `scale all` takes about 15-20 minutes on an idle 2-core machine (each wait of a point at most --timeout), and needs \
            about 11 GB of free disk for a 10,000,000-message point and 3 GB of memory for the 10,000-subscriber one. \
            Use --points for a quick run.
            """
    )

    enum Choice: String, ExpressibleByArgument, CaseIterable {
        case subscribers, connections, topics, missed, stored, all
    }

    @Argument(help: "The curve: subscribers, connections, topics, missed, stored, or all.") var curve: Choice
    @Option(help: "The sweep, comma-separated (k and M allowed: 1,10,1k,10k); with one curve only.") var points: String?
    @Option(help: "Where the JSONL and SVG files go (<curve>.jsonl, <curve>.svg).") var out = "bench/scale"
    @Option(help: "Give up on a point after this many seconds (each wait of its scenario).") var timeout = 900.0
    @Option(help: "subscribers: deliveries per point (messages = this / subscribers, 100 to 200,000).") var deliveries = 2_000_000
    @Option(help: "topics: messages per point (at least 10 per topic).") var messages = 200_000

    func validate() throws {
        if points != nil && curve == .all { throw ValidationError("--points goes with one curve, not all") }
        if let points { _ = try Self.sweep(points) }
        guard timeout > 0, deliveries > 0, messages > 0 else { throw ValidationError("--timeout, --deliveries and --messages must be positive") }
    }

    func run() async throws {
        let curves = curve == .all ? ScaleCurve.allCases : ScaleCurve.allCases.filter { $0.rawValue == curve.rawValue }
        let folder = URL(fileURLWithPath: out, isDirectory: true)
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let context = ScaleContext.current()
        var failed = 0
        var total = 0
        for curve in curves {
            let sweep = try points.map(Self.sweep) ?? curve.defaultPoints
            var log = try ScaleLog(curve: curve, folder: folder, context: context)
            print("scale \(curve.rawValue): \(sweep.map(String.init).joined(separator: ", ")) → \(log.jsonl.path)")
            for x in sweep {
                let point = await measure(curve, x: x)
                try log.append(point)
                print(point.line(curve))
                total += 1
                if !point.ok { failed += 1 }
            }
            print("  plot: \(log.svg.path)")
        }
        if failed > 0 { throw BenchError("\(failed) of \(total) points failed (each recorded with its error in the JSONL)") }
    }

    /// One point; a failure is a point too, never an exception that ends the sweep.
    private func measure(_ curve: ScaleCurve, x: Int) async -> ScalePoint {
        let arguments = curve.arguments(x: x, options: self)
        let started = Date()
        do {
            let measurement = try await curve.measure(arguments)
            return ScalePoint(
                x: x, arguments: arguments, seconds: Date().timeIntervalSince(started), figures: measurement.figures, result: measurement.result,
                error: measurement.problem)
        } catch {
            return ScalePoint(x: x, arguments: arguments, seconds: Date().timeIntervalSince(started), figures: [:], result: nil, error: "\(error)")
        }
    }

    /// `1,10,1k,2.5M` as integers; throws on anything else, zero and negatives included.
    static func sweep(_ text: String) throws -> [Int] {
        guard !text.trimmingCharacters(in: .whitespaces).isEmpty else { throw ValidationError("--points: give at least one") }
        return try text.split(separator: ",").map { item in
            let trimmed = item.trimmingCharacters(in: .whitespaces).lowercased().replacingOccurrences(of: "_", with: "")
            let factor: Double = trimmed.hasSuffix("k") ? 1e3 : trimmed.hasSuffix("m") ? 1e6 : 1
            guard let number = Double(factor == 1 ? trimmed : String(trimmed.dropLast())), number * factor >= 1,
                number * factor <= 1e9, (number * factor).rounded() == number * factor
            else { throw ValidationError("--points: \(item) is not a whole number from 1 to 1G (k and M allowed)") }
            return Int(number * factor)
        }
    }
}
