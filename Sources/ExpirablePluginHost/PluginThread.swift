import Dispatch
import Glibc
import Synchronization

/// The thread an expirable's plugin calls run on, one per plugin instance, so a plugin that blocks holds its
/// own thread and never one the daemon serves with. The thread is made once and sleeps between calls: making
/// one per call cost a thread creation each time, and on a busy 2-core machine such a thread started the
/// plugin 1 to 4 ms after the request (Linux queues a new thread behind the running ones; measured with
/// Benchmarks/burst while 1,000 callers arrive).
final class PluginThread: Sendable {
    private enum Job {
        case call(@Sendable () -> Void)
        case stop
    }

    private let jobs = Mutex<[Job]>([])
    private let wake = DispatchSemaphore(value: 0)

    /// Starts the thread, named `name` (cut to the 15 bytes Linux keeps); nil if the system has no thread to give.
    init?(name: String) {
        final class Start {
            let thread: PluginThread
            let name: String
            init(_ thread: PluginThread, _ name: String) { self.thread = thread; self.name = name }
        }
        let start = Unmanaged.passRetained(Start(self, name)).toOpaque()
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
        var thread = pthread_t()
        let created = pthread_create(&thread, &attributes, { context in
            let start = Unmanaged<Start>.fromOpaque(context!).takeRetainedValue()
            PluginThread.setName(start.name)
            start.thread.loop()
            return nil
        }, start)
        guard created == 0 else {
            Unmanaged<Start>.fromOpaque(start).release()
            return nil
        }
    }

    /// Runs `body` on the thread, after the calls given before it.
    func run(_ body: @escaping @Sendable () -> Void) {
        jobs.withLock { $0.append(.call(body)) }
        wake.signal()
    }

    /// Runs `body` on the thread, after the calls given before it, and waits for its result.
    func runAndWait<T: Sendable>(_ body: @escaping @Sendable () -> T) -> T {
        let result = Mutex<T?>(nil)
        let done = DispatchSemaphore(value: 0)
        run {
            let value = body()
            result.withLock { $0 = value }
            done.signal()
        }
        done.wait()
        return result.withLock { $0! }
    }

    /// Ends the thread once the calls given before have returned.
    func stop() {
        jobs.withLock { $0.append(.stop) }
        wake.signal()
    }

    private func loop() {
        while true {
            wake.wait()
            switch jobs.withLock({ $0.removeFirst() }) {
            case .call(let body): body()
            case .stop: return
            }
        }
    }

    /// pthread_setname_np is not imported without _GNU_SOURCE; the kernel takes the name from comm as well.
    private static func setName(_ name: String) {
        let comm = open("/proc/thread-self/comm", O_WRONLY | O_CLOEXEC)
        guard comm >= 0 else { return }
        let bytes = Array(name.utf8.prefix(15))
        _ = bytes.withUnsafeBytes { write(comm, $0.baseAddress, $0.count) }
        close(comm)
    }
}
