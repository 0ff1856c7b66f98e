import Foundation

#if canImport(FoundationXML)
import FoundationXML
#endif

/// Every element of an XML document with its attributes, and its text; parsing fails on text
/// that is not well-formed XML.
struct SVGElements {
    struct Element {
        let name: String
        let attributes: [String: String]
    }

    let elements: [Element]
    let texts: [String]
    var text: String { texts.joined(separator: "\n") }

    init(_ document: String) throws {
        let collector = Collector()
        let parser = XMLParser(data: Data(document.utf8))
        parser.delegate = collector
        guard parser.parse() else { throw XMLFailure(description: "\(parser.parserError.map { "\($0)" } ?? "not XML"):\n\(document)") }
        elements = collector.elements
        texts = collector.texts
    }

    struct XMLFailure: Error, CustomStringConvertible { let description: String }

    private final class Collector: NSObject, XMLParserDelegate {
        var elements: [Element] = []
        var texts: [String] = []

        /// An element's text arrives in pieces (an entity is one): joined until the next tag.
        private var pending = ""

        func parser(
            _ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?, qualifiedName: String?, attributes: [String: String]
        ) {
            endText()
            elements.append(Element(name: elementName, attributes: attributes))
        }

        func parser(_ parser: XMLParser, didEndElement elementName: String, namespaceURI: String?, qualifiedName: String?) {
            endText()
        }

        func parser(_ parser: XMLParser, foundCharacters string: String) {
            pending += string
        }

        private func endText() {
            let trimmed = pending.trimmingCharacters(in: .whitespacesAndNewlines)
            if !trimmed.isEmpty { texts.append(trimmed) }
            pending = ""
        }
    }
}
