import ExpirableABI
import ExpirableConfig
import ExpirableCore

/// The `expirable_host` table handed to every plugin call. Its functions are C entry points that find the
/// call's `CallResult` through the opaque pointer the plugin passes back.
enum HostFunctions {
    nonisolated(unsafe) static let table: UnsafePointer<expirable_host> = {
        let table = UnsafeMutablePointer<expirable_host>.allocate(capacity: 1)
        table.initialize(to: expirable_host(
            size: UInt32(MemoryLayout<expirable_host>.size),
            reserved: 0,
            set_value: { result, pointer, length, expiresAt in
                guard let result else { return }
                let bytes: UnsafeRawBufferPointer? = pointer == nil && length > 0 ? nil : UnsafeRawBufferPointer(start: pointer, count: length)
                HostFunctions.callResult(result).setValue(bytes, expiresAt: expiresAt)
            },
            set_error: { result, pointer, length in
                guard let result else { return }
                HostFunctions.callResult(result).setError(pointer == nil ? nil : UnsafeRawBufferPointer(start: pointer, count: length))
            },
            parse_duration_ms: { pointer, length, out in
                guard let pointer, let out else { return -1 }
                let text = String(decoding: UnsafeRawBufferPointer(start: pointer, count: length), as: UTF8.self)
                guard let ms = DurationParser.milliseconds(text) else { return -1 }
                out.pointee = ms
                return 0
            },
            now_ms: { SystemClock().unixMillis },
            classify_error: { result, errorClass, retryAfter in
                guard let result else { return }
                HostFunctions.callResult(result).classify(errorClass, retryAfter: retryAfter)
            },
            set_state: { result, pointer, length in
                guard let result else { return }
                let bytes: UnsafeRawBufferPointer? = pointer == nil && length > 0 ? nil : UnsafeRawBufferPointer(start: pointer, count: length)
                HostFunctions.callResult(result).setState(bytes)
            }
        ))
        return UnsafePointer(table)
    }()

    static func opaque(_ result: CallResult) -> OpaquePointer {
        OpaquePointer(Unmanaged.passUnretained(result).toOpaque())
    }

    static func callResult(_ pointer: OpaquePointer) -> CallResult {
        Unmanaged<CallResult>.fromOpaque(UnsafeRawPointer(pointer)).takeUnretainedValue()
    }
}
