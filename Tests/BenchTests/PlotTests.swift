import BenchPlot
import Foundation
import Testing

@Suite("Plot scales")
struct PlotScaleTests {
    @Test func linearScaleStartsAtZeroAndEndsOnARoundTick() {
        let scale = PlotScale.linear(covering: [12, 143_000, 87_000], from: 400, to: 50)
        #expect(scale.domain == 0...150_000)
        #expect(scale.ticks == [0, 50_000, 100_000, 150_000])
        #expect(scale.position(0) == 400)
        #expect(scale.position(150_000) == 50)
        #expect(scale.position(75_000) == 225)
    }

    @Test func linearStepsAreOneTwoOrFiveTimesAPowerOfTen() {
        #expect(PlotScale.linear(covering: [0.9], from: 0, to: 1).ticks == [0, 0.2, 0.4, 0.6, 0.8, 1.0])
        #expect(PlotScale.linear(covering: [7], from: 0, to: 1).ticks == [0, 2, 4, 6, 8])
        #expect(PlotScale.linear(covering: [430], from: 0, to: 1).ticks == [0, 100, 200, 300, 400, 500])
    }

    @Test func aScaleWithNothingToShowStillHasAnAxis() {
        let empty = PlotScale.linear(covering: [], from: 0, to: 100)
        #expect(empty.domain == 0...1 && empty.ticks.count >= 2)
        let log = PlotScale.logarithmic(covering: [], from: 0, to: 100)
        #expect(log.domain.lowerBound > 0 && log.ticks.count >= 2)
    }

    @Test func logarithmicScaleSpansWholeDecades() {
        let scale = PlotScale.logarithmic(covering: [1000, 50_000], from: 100, to: 700)
        #expect(scale.domain == 1000...100_000)
        #expect(scale.position(10_000).map { abs($0 - 400) < 1e-9 } == true)
        // Two decades: 1, 2 and 5 of each.
        #expect(scale.ticks == [1000, 2000, 5000, 10_000, 20_000, 50_000, 100_000])
        // Zero and negatives have no place on it.
        #expect(scale.position(0) == nil && scale.position(-3) == nil)
    }

    @Test func manyDecadesGetOneTickEach() {
        let scale = PlotScale.logarithmic(covering: [1000, 10_000_000], from: 0, to: 1)
        #expect(scale.ticks == [1000, 10_000, 100_000, 1_000_000, 10_000_000])
    }

    @Test func oneValueOnALogScaleIsInsideIt() {
        let scale = PlotScale.logarithmic(covering: [100], from: 0, to: 1)
        #expect(scale.domain.lowerBound < 100 && scale.domain.upperBound > 100)
    }

    @Test func geometricSweepsGoOnALogAxis() {
        #expect(PlotScale.suitsLogarithmic([1, 10, 100, 1000]))
        #expect(PlotScale.suitsLogarithmic([1000, 2000, 5000, 10_000, 20_000, 50_000]))
        #expect(!PlotScale.suitsLogarithmic([1, 2, 3, 4]))
        #expect(!PlotScale.suitsLogarithmic([0, 10, 100]))
    }

    @Test func labelsAreShort() {
        #expect(compactLabel(0) == "0")
        #expect(compactLabel(1) == "1")
        #expect(compactLabel(2.5) == "2.5")
        #expect(compactLabel(10_000) == "10k")
        #expect(compactLabel(150_000) == "150k")
        #expect(compactLabel(1_250_000) == "1.25M")
        #expect(compactLabel(10_000_000) == "10M")
        #expect(compactLabel(0.004) == "0.004")
        #expect(compactLabel(999.9) == "1000")
    }
}

@Suite("Plot SVG")
struct PlotSVGTests {
    @Test func aFailedPointBreaksTheLine() {
        let path = Plot.pathData(through: [(10, 20), (30, 40), nil, (50, 60), (70, 80)])
        #expect(path == "M10.0 20.0 L30.0 40.0 M50.0 60.0 L70.0 80.0")
        #expect(Plot.pathData(through: [nil, nil]) == "")
    }

    @Test func theDocumentIsXMLWithEveryPointAndEveryFailure() throws {
        var plot = Plot(title: "Fan-out <1 topic> & more", xLabel: "subscribers", xLogarithmic: true, caption: ["2026-12-06 · host · abc1234"])
        plot.series = [
            Plot.Series(
                name: "deliveries/s",
                points: [.init(x: 1, y: 150_000), .init(x: 10, y: 400_000), .init(x: 100, y: nil, note: "timed out \u{1} after 600 s"), .init(x: 1000, y: 700_000)]
            ),
            Plot.Series(name: "p99 (ms)", side: .right, points: [.init(x: 1, y: 2), .init(x: 10, y: 5), .init(x: 100, y: nil), .init(x: 1000, y: 40)]),
        ]
        let document = plot.svg()
        let parsed = try SVGElements(document)
        #expect(parsed.elements.first?.name == "svg")
        let points = parsed.elements.filter { $0.attributes["class"] == "point" }
        #expect(points.compactMap { $0.attributes["data-x"].flatMap(Double.init) }.sorted() == [1, 1, 10, 10, 1000, 1000])
        #expect(Set(points.compactMap { $0.attributes["data-y"].flatMap(Double.init) }) == [150_000, 400_000, 700_000, 2, 5, 40])
        let failed = parsed.elements.filter { $0.attributes["class"] == "failed" }
        #expect(failed.count == 2 && failed.allSatisfy { $0.attributes["data-x"] == "100.0" })
        // Two pieces per series: the line does not cross the failure.
        let paths = parsed.elements.filter { $0.name == "path" }.compactMap { $0.attributes["d"] }
        #expect(paths.count == 2 && paths.allSatisfy { $0.filter { $0 == "M" }.count == 2 })
        #expect(parsed.text.contains("Fan-out <1 topic> & more") && parsed.text.contains("abc1234") && parsed.text.contains("failed point"))
        // Log x: ticks at 1, 10, 100, 1k with the axis's labels.
        for label in ["1", "10", "100", "1k", "subscribers"] { #expect(parsed.texts.contains(label), "\(label)") }
    }

    @Test func theXAxisPlacesPointsInOrderAcrossThePlot() throws {
        var plot = Plot(title: "t", xLabel: "x", xLogarithmic: false)
        plot.series = [Plot.Series(name: "y", points: [.init(x: 3, y: 1), .init(x: 1, y: 2), .init(x: 2, y: 3)])]
        let x = plot.xScale
        let positions = [1.0, 2, 3].compactMap { x.position($0) }
        #expect(positions == positions.sorted() && positions.count == 3)
        // Drawn in x order whatever order they came in.
        let path = try #require(try SVGElements(plot.svg()).elements.first { $0.name == "path" }?.attributes["d"])
        let xs = path.split(separator: " ").compactMap { Double($0.dropFirst()) }.enumerated().filter { $0.offset % 2 == 0 }.map(\.element)
        #expect(xs == xs.sorted() && xs.count == 3)
    }
}
