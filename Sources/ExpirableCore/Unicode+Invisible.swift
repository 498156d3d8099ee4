extension Unicode.Scalar {
    /// Whether the scalar is a control (C0, DEL, C1: an 8-bit CSI among them) or an invisible formatting character
    /// that can hide or reorder text on a terminal or a screen: zero-width and direction marks and overrides
    /// (U+200B–200F, U+202A–202E, U+2066–2069), the line and paragraph separators (U+2028–2029), the byte-order mark
    /// (U+FEFF). The oauth2 plugin refuses the same set in what a server sends; log lines and the error messages
    /// of plugins show none of them raw.
    public var isControlOrInvisible: Bool {
        switch value {
        case 0..<0x20, 0x7F...0x9F, 0x200B...0x200F, 0x2028...0x202E, 0x2066...0x2069, 0xFEFF: true
        default: false
        }
    }
}
