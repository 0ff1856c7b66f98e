/// Strings: skipped (validated) while scanning, decoded when a field is read.
extension JSONScanner {
    /// Skips a string, checking escapes and that it is valid UTF-8 without control characters.
    mutating func skipString() throws(SyntaxError) {
        index += 1  // opening quote
        while index < bytes.count {
            skipPlainRun()
            guard index < bytes.count else { break }
            let byte = bytes[index]
            switch byte {
            case UInt8(ascii: "\""):
                index += 1
                return
            case UInt8(ascii: "\\"):
                index += 1
                sawEscape = true
                guard let escaped = peek else { throw error("unexpected end") }
                switch escaped {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"),
                    UInt8(ascii: "f"), UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                    index += 1
                case UInt8(ascii: "u"):
                    index += 1
                    _ = try hex4()
                default:
                    throw error("invalid escape")
                }
            default:
                try skipUnescapedByte(byte)
            }
        }
        throw error("unterminated string")
    }

    /// Steps over one byte of a string that is neither its end nor an escape: printable ASCII,
    /// or the start of a UTF-8 sequence, which is checked whole.
    @inline(__always)
    private mutating func skipUnescapedByte(_ byte: UInt8) throws(SyntaxError) {
        switch byte {
        case 0x00..<0x20:
            throw error("control character in string")
        case 0x20..<0x80:
            index += 1
        default:
            try skipUTF8Sequence()
        }
    }

    /// Skips printable ASCII other than `"` and `\\`, the bulk of most strings, 8 bytes at a
    /// time while no byte of the word stops it, then byte by byte (a local index, no bounds check
    /// per byte).
    private mutating func skipPlainRun() {
        index = bytes.withUnsafeBytes { buffer in
            var position = index
            while position + 8 <= buffer.count {
                let word = buffer.loadUnaligned(fromByteOffset: position, as: UInt64.self)
                guard !Self.mayStopRun(word) else { break }
                position += 8
            }
            while position < buffer.count {
                let byte = buffer[position]
                guard byte >= 0x20, byte < 0x80, byte != UInt8(ascii: "\""), byte != UInt8(ascii: "\\") else { break }
                position += 1
            }
            return position
        }
    }

    /// Whether a byte of `word` is a control character, non-ASCII, `"` or `\\` (bit tricks that
    /// may flag a plain word after a flagged byte, never miss one: the byte loop decides).
    private static func mayStopRun(_ word: UInt64) -> Bool {
        let ones: UInt64 = 0x0101_0101_0101_0101
        let highs: UInt64 = 0x8080_8080_8080_8080
        func hasZeroByte(_ value: UInt64) -> Bool { (value &- ones) & ~value & highs != 0 }
        let belowSpace = (word &- ones &* 0x20) & ~word & highs != 0
        return belowSpace || word & highs != 0 || hasZeroByte(word ^ (ones &* 0x22)) || hasZeroByte(word ^ (ones &* 0x5C))
    }

    /// Validates one multi-byte UTF-8 sequence (RFC 3629: no overlongs, no surrogates).
    private mutating func skipUTF8Sequence() throws(SyntaxError) {
        let lead = bytes[index]
        let length: Int
        var lower: UInt8 = 0x80
        var upper: UInt8 = 0xBF
        switch lead {
        case 0xC2...0xDF: length = 2
        case 0xE0: length = 3; lower = 0xA0
        case 0xE1...0xEC, 0xEE...0xEF: length = 3
        case 0xED: length = 3; upper = 0x9F
        case 0xF0: length = 4; lower = 0x90
        case 0xF1...0xF3: length = 4
        case 0xF4: length = 4; upper = 0x8F
        default: throw error("invalid UTF-8")
        }
        guard index + length <= bytes.count else { throw error("invalid UTF-8") }
        let second = bytes[index + 1]
        guard second >= lower, second <= upper else { throw error("invalid UTF-8") }
        for offset in 2..<max(length, 2) where bytes[index + offset] & 0xC0 != 0x80 {
            throw error("invalid UTF-8")
        }
        index += length
    }

    private mutating func hex4() throws(SyntaxError) -> UInt16 {
        guard index + 4 <= bytes.count else { throw error("unexpected end") }
        var value: UInt16 = 0
        for _ in 0..<4 {
            let byte = bytes[index]
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: throw error("invalid \\u escape")
            }
            value = value << 4 | UInt16(digit)
            index += 1
        }
        return value
    }

    /// Decodes a string at `index` (validated as it goes).
    mutating func scanString() throws(SyntaxError) -> String {
        let start = index + 1
        var plain = true
        var probe = start
        // Fast path: no escapes, so the bytes between the quotes are the string.
        while probe < bytes.count, bytes[probe] != UInt8(ascii: "\"") {
            if bytes[probe] == UInt8(ascii: "\\") {
                plain = false
                break
            }
            probe += 1
        }
        if plain {
            try skipString()
            return String(decoding: bytes[start..<(index - 1)], as: UTF8.self)
        }
        var scalars = String.UnicodeScalarView()
        index = start
        var runStart = index
        func flushRun(_ end: Int) {
            scalars.append(contentsOf: String(decoding: bytes[runStart..<end], as: UTF8.self).unicodeScalars)
        }
        while index < bytes.count {
            let byte = bytes[index]
            switch byte {
            case UInt8(ascii: "\""):
                flushRun(index)
                index += 1
                return String(scalars)
            case UInt8(ascii: "\\"):
                flushRun(index)
                index += 1
                guard let escaped = peek else { throw error("unexpected end") }
                index += 1
                switch escaped {
                case UInt8(ascii: "\""): scalars.append("\"")
                case UInt8(ascii: "\\"): scalars.append("\\")
                case UInt8(ascii: "/"): scalars.append("/")
                case UInt8(ascii: "b"): scalars.append("\u{08}")
                case UInt8(ascii: "f"): scalars.append("\u{0C}")
                case UInt8(ascii: "n"): scalars.append("\n")
                case UInt8(ascii: "r"): scalars.append("\r")
                case UInt8(ascii: "t"): scalars.append("\t")
                case UInt8(ascii: "u"):
                    scalars.append(try unicodeEscape())
                default:
                    throw error("invalid escape")
                }
                runStart = index
            default:
                try skipUnescapedByte(byte)
            }
        }
        throw error("unterminated string")
    }

    /// The scalar of a `\uXXXX` escape (after the `u`), joining surrogate pairs.
    /// A lone surrogate becomes U+FFFD, as most JSON parsers do.
    private mutating func unicodeEscape() throws(SyntaxError) -> Unicode.Scalar {
        let high = try hex4()
        if (0xD800...0xDBFF).contains(high),
            index + 6 <= bytes.count, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u")
        {
            let saved = index
            index += 2
            let low = try hex4()
            if (0xDC00...0xDFFF).contains(low) {
                let value = 0x10000 + ((UInt32(high) - 0xD800) << 10) + (UInt32(low) - 0xDC00)
                return Unicode.Scalar(value) ?? "\u{FFFD}"
            }
            index = saved
        }
        return Unicode.Scalar(UInt32(high)) ?? "\u{FFFD}"
    }
}
