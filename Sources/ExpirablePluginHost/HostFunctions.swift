import ExpirableABI
import ExpirableConfig
import ExpirableCore
#if canImport(Glibc)
import Glibc
#endif

/// The `expirable_host` table handed to every plugin call. Its functions are C entry points that find the
/// call's `CallResult` through the opaque pointer the plugin passes back, except `now_ms`, which gets no
/// context: it reads the clock of the host whose call runs on the calling thread (`calling(on:_:)`).
enum HostFunctions {
    nonisolated(unsafe) static let table: UnsafePointer<expirable_host> = {
        let table = UnsafeMutablePointer<expirable_host>.allocate(capacity: 1)
        table.initialize(to: expirable_host(
            size: UInt32(MemoryLayout<expirable_host>.size),
            reserved: 0,
            // Lengths arrive as `size_t`, seen here as Int: a C `ssize_t` of -1 (a failed read()) passed as one is
            // negative. CallResult checks every length before it makes a buffer of it.
            set_value: { result, pointer, length, expiresAt in
                guard let result else { return }
                HostFunctions.callResult(result).setValue(pointer, count: length, expiresAt: expiresAt)
            },
            set_error: { result, pointer, length in
                guard let result else { return }
                HostFunctions.callResult(result).setError(pointer, count: length)
            },
            parse_duration_ms: { pointer, length, out in
                // No duration is longer; a longer text (or a negative length) is not read at all.
                guard let pointer, let out, length >= 0, length <= HostFunctions.maxDurationText else { return -1 }
                let text = String(decoding: UnsafeRawBufferPointer(start: pointer, count: length), as: UTF8.self)
                guard let ms = DurationParser.milliseconds(text) else { return -1 }
                out.pointee = ms
                return 0
            },
            now_ms: { HostFunctions.clock.unixMillis },
            classify_error: { result, errorClass, retryAfter in
                guard let result else { return }
                HostFunctions.callResult(result).classify(errorClass, retryAfter: retryAfter)
            },
            set_state: { result, pointer, length in
                guard let result else { return }
                HostFunctions.callResult(result).setState(pointer, count: length)
            }
        ))
        return UnsafePointer(table)
    }()

    /// The longest text `parse_duration_ms` reads: far more than any duration ("9223372036854775807ms").
    static let maxDurationText = 256

    /// A host's clock, as a call's thread holds it for `now_ms`; one per plugin instance.
    final class Clock: Sendable {
        let clock: any EngineClock
        init(_ clock: any EngineClock) { self.clock = clock }
    }

    /// Runs `body`, a call into a plugin on the current thread, with `now_ms` reading `clock` on that thread
    /// until it returns. Two hosts in one process (tests give each its own `ManualClock`) are told apart by the
    /// thread their call runs on; `clock` is kept alive by the caller.
    static func calling<R>(on clock: Clock, _ body: () -> R) -> R {
        let previous = pthread_getspecific(clockKey)
        pthread_setspecific(clockKey, Unmanaged.passUnretained(clock).toOpaque())
        defer { pthread_setspecific(clockKey, previous) }
        return body()
    }

    /// The clock `now_ms` reads: that of the call running on this thread, else (a plugin asking from a thread of
    /// its own, outside a call) the machine's.
    static var clock: any EngineClock {
        guard let clock = pthread_getspecific(clockKey) else { return SystemClock() }
        return Unmanaged<Clock>.fromOpaque(clock).takeUnretainedValue().clock
    }

    private static let clockKey: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key, nil)
        return key
    }()

    static func opaque(_ result: CallResult) -> OpaquePointer {
        OpaquePointer(Unmanaged.passUnretained(result).toOpaque())
    }

    static func callResult(_ pointer: OpaquePointer) -> CallResult {
        Unmanaged<CallResult>.fromOpaque(UnsafeRawPointer(pointer)).takeUnretainedValue()
    }
}
