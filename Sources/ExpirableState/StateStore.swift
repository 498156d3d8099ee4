import CExpirableOpenSSL
import ExpirableCore
#if canImport(Glibc)
import Glibc
#endif

/// Plugin states on disk (SPEC §3.20, `state_dir`): one file per expirable (per key), encrypted with AES-256-GCM
/// through OpenSSL's EVP interface, so a full restart resumes with the latest rotating refresh token. A file is
/// the magic `EXPSTATE1`, a random 12-byte nonce, the ciphertext and the 16-byte tag; the name it belongs to is
/// the additional authenticated data, so a file copied over another expirable's does not decrypt. Files are
/// written whole to a temporary file (mode 0600), synced, renamed over the old one and the directory synced, so
/// a crash leaves the old state or the new, never half of one. Nothing here logs a state.
public final class StateStore: Sendable {
    public let directory: String
    private let key: Secret

    static let magic = Array("EXPSTATE1".utf8)
    static let nonceBytes = 12
    static let tagBytes = 16
    /// The systemd credential holding the key, under $CREDENTIALS_DIRECTORY (LoadCredential=/SetCredential=).
    public static let credentialName = "expirable-state-key"

    /// Opens `directory` (created 0700 if missing; refused if others may write or read it) with the 32-byte key
    /// from `keyFile`, or else from the systemd credential `expirable-state-key`.
    public init(directory: String, keyFile: String?, environment: [String: String] = StateStore.processEnvironment()) throws(StateError) {
        try StateStore.loadOpenSSL()
        self.directory = directory
        let path: String
        if let keyFile {
            path = keyFile
        } else if let credentials = environment["CREDENTIALS_DIRECTORY"], !credentials.isEmpty {
            path = credentials + "/" + StateStore.credentialName
        } else {
            throw StateError("state_dir is set but there is no key: set state_key_file in [server] (32 random bytes, mode 0600: `head -c 32 /dev/urandom > FILE; chmod 600 FILE`) or pass the systemd credential \(StateStore.credentialName)")
        }
        do throws(StateError) {
            key = try StateStore.readKey(path, fromCredential: keyFile == nil)
        } catch {
            throw StateError(error.message, aboutKey: true)
        }
        try StateStore.prepare(directory)
    }

    /// Runs the checks `init` runs, without creating `directory`: a missing one must be creatable (its parent a
    /// writable directory). For `expirablectl check-config`.
    public static func check(directory: String, keyFile: String?, environment: [String: String] = StateStore.processEnvironment()) throws(StateError) {
        try StateStore.loadOpenSSL()
        var st = stat()
        if stat(directory, &st) != 0 && errno == ENOENT {
            let parent = directory.lastIndex(of: "/").map { $0 == directory.startIndex ? "/" : String(directory[..<$0]) } ?? "."
            guard stat(parent, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR, access(parent, W_OK | X_OK) == 0 else {
                throw StateError("cannot create state_dir \(directory): its parent \(parent) is not a directory the daemon's user can write; create \(directory) (mode 700) or fix the path")
            }
            _ = try StateStore.key(keyFile: keyFile, environment: environment)
            return
        }
        _ = try StateStore.key(keyFile: keyFile, environment: environment)
        try prepare(directory)
    }

    private static func key(keyFile: String?, environment: [String: String]) throws(StateError) -> Secret {
        let path: String
        if let keyFile {
            path = keyFile
        } else if let credentials = environment["CREDENTIALS_DIRECTORY"], !credentials.isEmpty {
            path = credentials + "/" + StateStore.credentialName
        } else {
            throw StateError("state_dir is set but there is no key: set state_key_file in [server] (32 random bytes, mode 0600: `head -c 32 /dev/urandom > FILE; chmod 600 FILE`) or pass the systemd credential \(StateStore.credentialName)", aboutKey: true)
        }
        do throws(StateError) {
            return try readKey(path, fromCredential: keyFile == nil)
        } catch {
            throw StateError(error.message, aboutKey: true)
        }
    }

    /// The file in `directory` whose lock says which daemon uses it; it holds that daemon's PID.
    public var lockPath: String { directory + "/expirabled.lock" }

    /// Takes `directory` for this process until it exits: an exclusive `flock` on `lockPath`, which the kernel
    /// releases when the process ends, however it ends. Two daemons on one state_dir would each load the other's
    /// states and spend the refresh token the other holds, and the identity provider would revoke its family; a
    /// second one is refused, naming the first by the PID it wrote. The descriptor is close-on-exec (no helper or
    /// program holds the lock after the daemon) and is never closed: it is the lock.
    public func lock() throws(StateError) {
        let path = lockPath
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0o600)
        guard fd >= 0 else { throw StateError("cannot open \(path), the lock that keeps a second daemon off state_dir: \(StateStore.reason())") }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else {
            close(fd)
            throw StateError("\(path) is not a regular file, so it cannot be state_dir's lock: remove it and start the daemon again")
        }
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            if errno == EINTR { continue }
            let busy = errno == EWOULDBLOCK
            let why = StateStore.reason()
            var bytes = [UInt8](repeating: 0, count: 32)
            let n = pread(fd, &bytes, bytes.count, 0)
            close(fd)
            guard busy else { throw StateError("cannot lock \(path), which keeps a second daemon off state_dir: \(why)") }
            let pid = n > 0 ? Int32(String(decoding: bytes[0..<n].prefix { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }, as: UTF8.self)) : nil
            let other = pid.map { "another expirabled (pid \($0), as written in \(path))" } ?? "another expirabled (it holds the lock on \(path))"
            throw StateError("state_dir \(directory) is in use by \(other): two daemons sharing one state_dir spend each other's refresh tokens; stop the other daemon, or give this one a state_dir of its own")
        }
        let text = Array("\(getpid())\n".utf8)
        if ftruncate(fd, 0) != 0 || pwrite(fd, text, text.count, 0) != text.count {
            // The lock holds without the PID; a second daemon is still refused, only without naming this one.
            _ = ftruncate(fd, 0)
        }
    }

    // MARK: Reading and writing

    /// The longest name whose file is named by its hex: 236 hex digits, `.state` and a temporary's `.tmp-PID`
    /// (a PID of up to 7 digits) stay within the 255 bytes a file name may have. Every state saved before longer
    /// names were hashed had a name this short, so their files keep their names.
    static let longestHexName = 118

    /// The file holding `name`'s state: its name hex-encoded, so any expirable name or key is a safe file name;
    /// a longer name (a keyed family's key may have 256 bytes) by `sha256-` and the hex of its SHA-256. The
    /// file's contents authenticate the name either way (`seal`), so no other name's state can pass for it.
    public func path(for name: String) -> String {
        let bytes = Array(name.utf8)
        let hex: ([UInt8]) -> String = { $0.map { String($0, radix: 16).leftPadded(to: 2) }.joined() }
        if bytes.count <= StateStore.longestHexName { return directory + "/" + hex(bytes) + ".state" }
        if let digest = StateStore.sha256(bytes) { return directory + "/sha256-" + hex(digest) + ".state" }
        // OpenSSL out of memory: a name from the first bytes and a 64-bit hash. A collision would only make one
        // name's file replace another's; its contents still name their owner.
        var fnv: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes { fnv = (fnv ^ UInt64(byte)) &* 0x0000_0100_0000_01b3 }
        return directory + "/long-" + hex(Array(bytes.prefix(64))) + "-" + String(fnv, radix: 16) + ".state"
    }

    /// SHA-256 through OpenSSL, which a store has loaded (`init`); nil if OpenSSL fails (out of memory).
    static func sha256(_ bytes: [UInt8]) -> [UInt8]? {
        var digest = [UInt8](repeating: 0, count: 32)
        guard let context = EVP_MD_CTX_new() else { return nil }
        defer { EVP_MD_CTX_free(context) }
        var length: UInt32 = 0
        guard EVP_DigestInit_ex(context, EVP_sha256(), nil) == 1,
              bytes.withUnsafeBytes({ EVP_DigestUpdate(context, $0.baseAddress, $0.count) }) == 1,
              EVP_DigestFinal_ex(context, &digest, &length) == 1, length == 32 else { return nil }
        return digest
    }

    /// Writes `state` for `name` atomically; nil removes the file. One save at a time per process (the temporary
    /// file's name is the target's and the PID): the daemon's keeper writes under a lock.
    public func save(_ state: Secret?, for name: String) throws(StateError) {
        let target = path(for: name)
        guard let state else {
            if unlink(target) != 0 && errno != ENOENT {
                throw StateError("cannot remove \(target): \(StateStore.reason())")
            }
            return
        }
        var sealed = try seal(state, name: name)
        defer { sealed.withUnsafeMutableBytes { explicit_bzero($0.baseAddress!, $0.count) } }
        let temporary = target + ".tmp-\(getpid())"
        let fd = try StateStore.createTemporary(temporary)
        var written = 0
        while written < sealed.count {
            let n = sealed.withUnsafeBytes { write(fd, $0.baseAddress! + written, $0.count - written) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                let why = StateStore.reason()
                close(fd)
                unlink(temporary)
                throw StateError("cannot write \(temporary): \(why)")
            }
            written += n
        }
        guard fsync(fd) == 0 else {
            let why = StateStore.reason()
            close(fd)
            unlink(temporary)
            throw StateError("cannot sync \(temporary): \(why)")
        }
        close(fd)
        guard rename(temporary, target) == 0 else {
            let why = StateStore.reason()
            unlink(temporary)
            throw StateError("cannot rename \(temporary) to \(target): \(why)")
        }
        let dir = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dir >= 0 {
            fsync(dir)
            close(dir)
        }
    }

    /// `name`'s state, nil when it has no file. A file that does not decrypt is an error naming it: never
    /// silently dropped, since it may hold the only copy of a refresh token.
    public func load(_ name: String) throws(StateError) -> Secret? {
        let file = path(for: name)
        // O_NONBLOCK: a FIFO at the name would otherwise block the open until a writer came, at start for ever.
        let fd = open(file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)
        if fd < 0 {
            if errno == ENOENT { return nil }
            if errno == ELOOP { throw StateError("\(file) is a symbolic link, which state_dir never follows: it cannot be a state file; remove it and restart the daemon") }
            throw StateError("cannot read \(file): \(StateStore.reason())")
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw StateError("cannot examine \(file): \(StateStore.reason())") }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw StateError("\(file) is \(StateStore.kind(st.st_mode)), not a regular file: it cannot be a state file; remove it and restart the daemon")
        }
        var bytes: [UInt8] = []
        defer { bytes.withUnsafeMutableBytes { if let base = $0.baseAddress { explicit_bzero(base, $0.count) } } }
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 { throw StateError("cannot read \(file): \(StateStore.reason())") }
            if n == 0 { break }
            bytes += chunk[0..<n]
            guard bytes.count <= 1 << 20 else { throw StateError("\(file) is over 1 MiB: not a state file; remove it and restart the daemon") }
        }
        return try unseal(bytes, name: name, file: file)
    }

    // MARK: AES-256-GCM

    func seal(_ state: Secret, name: String) throws(StateError) -> [UInt8] {
        var nonce = [UInt8](repeating: 0, count: StateStore.nonceBytes)
        guard RAND_bytes(&nonce, Int32(nonce.count)) == 1 else { throw StateError("OpenSSL could not make a random nonce") }
        guard let context = EVP_CIPHER_CTX_new() else { throw StateError("OpenSSL could not make a cipher context") }
        defer { EVP_CIPHER_CTX_free(context) }
        var ciphertext = [UInt8](repeating: 0, count: state.count + 16)
        var tag = [UInt8](repeating: 0, count: StateStore.tagBytes)
        var length: Int32 = 0
        var total = 0
        let aad = Array(name.utf8)
        let ok: Bool = key.withUnsafeBytes { keyBytes in
            state.withUnsafeBytes { plain in
                guard EVP_EncryptInit_ex(context, EVP_aes_256_gcm(), nil, keyBytes.bindMemory(to: UInt8.self).baseAddress, nonce) == 1,
                      EVP_EncryptUpdate(context, nil, &length, aad, Int32(aad.count)) == 1 else { return false }
                if plain.count > 0 {
                    guard EVP_EncryptUpdate(context, &ciphertext, &length, plain.bindMemory(to: UInt8.self).baseAddress, Int32(plain.count)) == 1 else { return false }
                    total = Int(length)
                }
                let finished = ciphertext.withUnsafeMutableBufferPointer { EVP_EncryptFinal_ex(context, $0.baseAddress! + total, &length) }
                guard finished == 1 else { return false }
                total += Int(length)
                return EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_GCM_GET_TAG, Int32(tag.count), &tag) == 1
            }
        }
        guard ok else { throw StateError("OpenSSL could not encrypt the state of \(name)") }
        return StateStore.magic + nonce + ciphertext[0..<total] + tag
    }

    func unseal(_ sealed: [UInt8], name: String, file: String) throws(StateError) -> Secret {
        let header = StateStore.magic.count + StateStore.nonceBytes
        let smallest = header + StateStore.tagBytes
        // A file that starts as a state file does (an empty one included) but ends too soon was cut short.
        guard sealed.starts(with: StateStore.magic.prefix(sealed.count)) else {
            throw StateError("\(file) is not an Expirable state file (no EXPSTATE1 header); remove it if it does not belong in state_dir, and restart the daemon \(StateStore.readAtStart)")
        }
        guard sealed.count >= smallest else {
            throw StateError("\(file) is truncated (\(sealed.count) bytes; a state file holds at least \(smallest): the EXPSTATE1 header, a \(StateStore.nonceBytes)-byte nonce, the \(StateStore.tagBytes)-byte tag): restore it from a backup, or remove it to start \(name) without its state; then restart the daemon \(StateStore.readAtStart)")
        }
        let nonce = Array(sealed[StateStore.magic.count..<header])
        let body = Array(sealed[header..<(sealed.count - StateStore.tagBytes)])
        var tag = Array(sealed[(sealed.count - StateStore.tagBytes)...])
        guard let context = EVP_CIPHER_CTX_new() else { throw StateError("OpenSSL could not make a cipher context") }
        defer { EVP_CIPHER_CTX_free(context) }
        var plain = [UInt8](repeating: 0, count: body.count + 16)
        defer { plain.withUnsafeMutableBytes { explicit_bzero($0.baseAddress!, $0.count) } }
        var length: Int32 = 0
        var total = 0
        let aad = Array(name.utf8)
        let ok: Bool = key.withUnsafeBytes { keyBytes in
            guard EVP_DecryptInit_ex(context, EVP_aes_256_gcm(), nil, keyBytes.bindMemory(to: UInt8.self).baseAddress, nonce) == 1,
                  EVP_DecryptUpdate(context, nil, &length, aad, Int32(aad.count)) == 1 else { return false }
            if !body.isEmpty {
                guard EVP_DecryptUpdate(context, &plain, &length, body, Int32(body.count)) == 1 else { return false }
                total = Int(length)
            }
            guard EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_GCM_SET_TAG, Int32(tag.count), &tag) == 1 else { return false }
            let finished = plain.withUnsafeMutableBufferPointer { EVP_DecryptFinal_ex(context, $0.baseAddress! + total, &length) }
            guard finished == 1 else { return false }
            total += Int(length)
            return true
        }
        guard ok else {
            throw StateError("\(file) does not decrypt with the configured state key (a different key, a file damaged or copied from another expirable): restore the key, or remove the file to start \(name) without its state; then restart the daemon \(StateStore.readAtStart)")
        }
        return plain[0..<total].withUnsafeBytes { Secret(copying: $0) }
    }

    // MARK: Setup

    static func readKey(_ path: String, fromCredential: Bool) throws(StateError) -> Secret {
        // O_NONBLOCK: a FIFO at the path would otherwise block the open (check-config and start) until a writer came.
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw StateError("cannot read the state key \(path): \(reason())") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw StateError("cannot examine the state key \(path): \(reason())") }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw StateError("the state key \(path) is \(kind(st.st_mode)), not a regular file: write 32 random bytes to a file: head -c 32 /dev/urandom > FILE; chmod 600 FILE")
        }
        // systemd credentials are made private by systemd itself (and may be 0400 owned by root).
        if !fromCredential {
            guard st.st_mode & 0o077 == 0 else {
                throw StateError("the state key \(path) has mode \(String(st.st_mode & 0o777, radix: 8)); its group and others must have no access to it: chmod 600 \(path)")
            }
            guard st.st_uid == geteuid() || st.st_uid == 0 else {
                throw StateError("the state key \(path) is owned by uid \(st.st_uid), not by the daemon's user (uid \(geteuid())) or root: chown it")
            }
        }
        var bytes = [UInt8](repeating: 0, count: 33)
        defer { bytes.withUnsafeMutableBytes { explicit_bzero($0.baseAddress!, $0.count) } }
        var filled = 0
        while filled < bytes.count {
            let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress! + filled, $0.count - filled) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            filled += n
        }
        guard filled == 32 else {
            throw StateError("the state key \(path) holds \(filled == 33 ? "more than 32" : String(filled)) bytes; it must be exactly 32 random bytes: head -c 32 /dev/urandom > \(path)")
        }
        return bytes[0..<32].withUnsafeBytes { Secret(copying: $0) }
    }

    /// Creates `temporary` for writing, new (O_EXCL: whatever sits at the name is never opened, so a FIFO there
    /// cannot block the write). A regular file of ours there is a temporary file an earlier write of this PID left
    /// (a crash between create and rename): it is replaced. Anything else is refused, naming it.
    static func createTemporary(_ temporary: String) throws(StateError) -> Int32 {
        for attempt in 0..<2 {
            let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0o600)
            if fd >= 0 { return fd }
            guard errno == EEXIST, attempt == 0 else { break }
            var st = stat()
            guard lstat(temporary, &st) == 0 else { continue }
            guard (st.st_mode & S_IFMT) == S_IFREG, st.st_uid == geteuid() else {
                let what = (st.st_mode & S_IFMT) == S_IFREG ? "a file owned by uid \(st.st_uid)" : kind(st.st_mode)
                throw StateError("cannot write \(temporary): it exists and is \(what), not a temporary state file; remove it")
            }
            guard unlink(temporary) == 0 || errno == ENOENT else { break }
        }
        throw StateError("cannot write \(temporary): \(reason())")
    }

    /// What a file that is not a regular file is, for messages.
    static func kind(_ mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFIFO: "a FIFO"
        case S_IFDIR: "a directory"
        case S_IFSOCK: "a socket"
        case S_IFCHR: "a character device"
        case S_IFBLK: "a block device"
        case S_IFLNK: "a symbolic link"
        case S_IFREG: "a regular file"
        default: "a file of unknown type"
        }
    }

    static func prepare(_ directory: String) throws(StateError) {
        var st = stat()
        if stat(directory, &st) != 0 {
            guard errno == ENOENT, mkdir(directory, 0o700) == 0 || errno == EEXIST else {
                throw StateError("cannot create state_dir \(directory): \(reason())")
            }
            guard stat(directory, &st) == 0 else { throw StateError("cannot examine state_dir \(directory): \(reason())") }
        }
        guard (st.st_mode & S_IFMT) == S_IFDIR else { throw StateError("state_dir \(directory) is not a directory") }
        guard st.st_mode & 0o077 == 0 else {
            throw StateError("state_dir \(directory) has mode \(String(st.st_mode & 0o777, radix: 8)); only the daemon's user may use it: chmod 700 \(directory)")
        }
        guard st.st_uid == geteuid() else {
            throw StateError("state_dir \(directory) is owned by uid \(st.st_uid), not by the daemon's user (uid \(geteuid())): chown it")
        }
    }

    /// Nothing links OpenSSL (CExpirableOpenSSL.h): a daemon with a state_dir loads it for AES-256-GCM, or says why
    /// it cannot.
    static func loadOpenSSL() throws(StateError) {
        if let failure = CExpirableOpenSSL_load() { throw StateError("plugin states are encrypted with OpenSSL: \(String(cString: failure))") }
    }

    /// Why a fix to a state file needs a restart: the daemon reads each one once, when it starts (or when a keyed
    /// family's member is made).
    static let readAtStart = "(state files are read at start)"

    static func reason() -> String { String(cString: strerror(errno)) }

    public static func processEnvironment() -> [String: String] {
        guard let value = getenv("CREDENTIALS_DIRECTORY") else { return [:] }
        return ["CREDENTIALS_DIRECTORY": String(cString: value)]
    }
}

/// Why a state could not be kept or read; the message names the file and what to do.
public struct StateError: Error, Sendable, CustomStringConvertible {
    public let message: String
    /// The failure is about the state key (state_key_file or the credential), not about state_dir.
    public let aboutKey: Bool
    public init(_ message: String, aboutKey: Bool = false) {
        self.message = message
        self.aboutKey = aboutKey
    }
    public var description: String { message }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
