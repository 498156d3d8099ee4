/// A plugin the host refuses to load or start, with the file, what is wrong, and what to do.
public struct PluginError: Error, Sendable, Hashable, CustomStringConvertible {
    public let message: String

    init(_ message: String) {
        self.message = message
    }

    public var description: String { message }
}
