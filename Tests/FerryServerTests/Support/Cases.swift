import Testing

/// Runs `body` for each case and records a failure per case, so one bad case does not hide the rest.
func forEachCase<Case>(_ cases: [Case], _ body: (Case) throws -> Void) {
    for item in cases {
        do {
            try body(item)
        } catch {
            Issue.record(error, "case \(String(describing: item).prefix(120))")
        }
    }
}
