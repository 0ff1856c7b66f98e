import Foundation

/// A JSON object as `JSONSerialization` gives it.
package typealias JSON = [String: Any]

/// Typed reads of a JSON object: each is nil when the key is missing or of another type.
extension Dictionary where Key == String, Value == Any {
    package func string(_ key: String) -> String? { self[key] as? String }
    package func int(_ key: String) -> Int? { isBoolean(key) ? nil : self[key] as? Int }
    package func double(_ key: String) -> Double? { isBoolean(key) ? nil : self[key] as? Double }
    package func bool(_ key: String) -> Bool? { isBoolean(key) ? self[key] as? Bool : nil }
    package func object(_ key: String) -> JSON? { self[key] as? JSON }
    package func objects(_ key: String) -> [JSON]? { self[key] as? [JSON] }
    package func isNull(_ key: String) -> Bool { self[key] is NSNull }

    /// JSONSerialization gives numbers and booleans as NSNumber, which bridge to each other:
    /// a boolean is the one whose type code is "c", so `1` is never `true` and `true` never `1`.
    private func isBoolean(_ key: String) -> Bool {
        guard let number = self[key] as? NSNumber else { return false }
        return String(cString: number.objCType) == "c"
    }

    /// Compact JSON text of this object (keys sorted, so it is stable in messages).
    package var text: String { jsonText(self) }
}

extension Array where Element == JSON {
    /// The `version` of each element, in order (-1 where one has none, so a mismatch shows).
    package var versions: [Int] { map { $0.int("version") ?? -1 } }

    /// The versions of the `msg` frames of `topic` among these frames, in order.
    package func versions(of topic: String) -> [Int] {
        filter { $0.string("op") == "msg" && $0.string("topic") == topic }.versions
    }
}

/// Compact JSON text of any JSON value, for frames built by hand.
package func jsonText(_ value: Any) -> String {
    let options: JSONSerialization.WritingOptions = [.fragmentsAllowed, .sortedKeys, .withoutEscapingSlashes]
    guard let data = try? JSONSerialization.data(withJSONObject: value, options: options) else {
        return "<not JSON: \(value)>"
    }
    return String(decoding: data, as: UTF8.self)
}

/// Parses JSON text into an object, or nil when it is not a JSON object.
package func parseJSONObject(_ text: String) -> JSON? {
    (try? JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed])) as? JSON
}
