import Glibc

/// Starts `body` on a new detached thread named `name` (cut to the 15 bytes Linux keeps); false if the system
/// has no thread to give. Plugin calls run on threads of their own so that a plugin that blocks holds its own
/// thread, never one the daemon serves with.
func startPluginThread(name: String, _ body: @escaping @Sendable () -> Void) -> Bool {
    final class Box {
        let body: @Sendable () -> Void
        let name: String
        init(_ body: @escaping @Sendable () -> Void, _ name: String) { self.body = body; self.name = name }
    }
    let box = Unmanaged.passRetained(Box(body, name)).toOpaque()
    var attributes = pthread_attr_t()
    pthread_attr_init(&attributes)
    defer { pthread_attr_destroy(&attributes) }
    pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
    var thread = pthread_t()
    let started = pthread_create(&thread, &attributes, { context in
        let box = Unmanaged<Box>.fromOpaque(context!).takeRetainedValue()
        // pthread_setname_np is not imported without _GNU_SOURCE; the kernel takes the name from comm as well.
        let comm = open("/proc/thread-self/comm", O_WRONLY)
        if comm >= 0 {
            let bytes = Array(box.name.utf8.prefix(15))
            _ = bytes.withUnsafeBytes { write(comm, $0.baseAddress, $0.count) }
            close(comm)
        }
        box.body()
        return nil
    }, box)
    if started != 0 { Unmanaged<Box>.fromOpaque(box).release() }
    return started == 0
}
