import ExpirableCore

/// A new value the daemon stored for a watched name (see ``ExpirableClient/updates(of:)``).
public struct ValueUpdate: Sendable, CustomStringConvertible {
    /// The expirable's name.
    public let name: String
    /// The new value. Wiped from memory when the last reference goes; never printed.
    public let value: Secret

    /// Makes an update; for tests and wrappers.
    public init(name: String, value: Secret) {
        self.name = name
        self.value = value
    }

    /// The name and the value's size, never its bytes.
    public var description: String { "new value of \(name): \(value)" }
}
