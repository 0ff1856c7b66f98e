import FerryTestSupport
import Foundation

/// The web console in headless Chromium: opening it signed in, and looking at its screenshots.
extension Ferryd {
    /// A fresh Chromium on this broker's console, signed in with the admin token and showing
    /// the dashboard's first refresh.
    func openConsole() throws -> (Chromium, DevTools) {
        guard let url = URL(string: "http://127.0.0.1:\(port)/console") else { throw TestFailure("no console URL") }
        let browser = try Chromium(url: url, directory: directory)
        let page = try browser.devTools()
        try page.waitUntil("document.getElementById('login')?.hidden === false", browser.logTail())
        try page.evaluate(
            """
            document.getElementById('login-token').value = '\(testAdminToken)';
            document.getElementById('login-form').requestSubmit();
            """)
        try page.waitUntil("document.getElementById('status').textContent.startsWith('updated')", browser.logTail())
        return (browser, page)
    }
}

extension DevTools {
    /// A PNG of the part of the page that the element `selector` covers.
    func screenshot(of selector: String) throws -> Data {
        let box = try evaluate(
            """
            (() => {
              const rect = document.querySelector('\(selector)').getBoundingClientRect();
              return { x: rect.x + scrollX, y: rect.y + scrollY, width: rect.width, height: rect.height, scale: 1 };
            })()
            """) as? JSON
        guard let box else { throw TestFailure("no element \(selector) to capture") }
        let result = try call("Page.captureScreenshot", ["format": "png", "clip": box, "captureBeyondViewport": true], timeout: 60)
        guard let png = result.string("data").flatMap({ Data(base64Encoded: $0) }) else {
            throw TestFailure("Page.captureScreenshot gave no data")
        }
        return png
    }

    /// Leaves the console for a blank page, where screenshots can be decoded: the console's
    /// Content-Security-Policy refuses `data:` images.
    func openBlankPage() throws {
        try call("Page.navigate", ["url": "about:blank"])
        try waitUntil("location.href === 'about:blank' && document.readyState === 'complete'")
    }

    /// A PNG's size from its IHDR, and its distinct colours as the browser decodes it (on a
    /// blank page: ``openBlankPage()``).
    func imageFacts(_ png: Data) throws -> (width: Int, height: Int, colours: Int) {
        let bytes = [UInt8](png)
        guard bytes.count > 24, bytes.starts(with: [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]),
            bytes[12..<16].elementsEqual(Array("IHDR".utf8))
        else { throw TestFailure("not a PNG: \(bytes.prefix(16))") }
        let width = bytes[16..<20].reduce(0) { $0 << 8 | Int($1) }
        let height = bytes[20..<24].reduce(0) { $0 << 8 | Int($1) }
        let colours = try evaluate("(async () => new Set(await \(Self.pixels(png))).size)()", timeout: 60) as? Int
        guard let colours else { throw TestFailure("the browser could not decode the screenshot") }
        return (width, height, colours)
    }

    /// How many pixels differ between two PNGs of the same size (on a blank page).
    func differingPixels(_ first: Data, _ second: Data) throws -> Int {
        let count = try evaluate(
            """
            (async () => {
              const [a, b] = [await \(Self.pixels(first)), await \(Self.pixels(second))];
              if (a.length !== b.length) return -1;
              return a.reduce((count, pixel, index) => count + (pixel !== b[index] ? 1 : 0), 0);
            })()
            """, timeout: 60) as? Int
        guard let count, count >= 0 else { throw TestFailure("the screenshots differ in size or could not be decoded") }
        return count
    }

    /// A JavaScript promise of a PNG's pixels as a Uint32Array.
    private static func pixels(_ png: Data) -> String {
        """
        (async () => {
          const image = new Image();
          image.src = "data:image/png;base64,\(png.base64EncodedString())";
          await image.decode();
          const canvas = Object.assign(document.createElement("canvas"), { width: image.width, height: image.height });
          const context = canvas.getContext("2d");
          context.drawImage(image, 0, 0);
          return new Uint32Array(context.getImageData(0, 0, image.width, image.height).data.buffer);
        })()
        """
    }
}
