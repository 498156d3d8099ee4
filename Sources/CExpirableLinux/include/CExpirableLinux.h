#ifndef CEXPIRABLE_LINUX_H
#define CEXPIRABLE_LINUX_H

#include <spawn.h>
#include <sys/types.h>

/* Linux calls the Swift overlay does not export (they need _GNU_SOURCE or are variadic), each prefixed. */

/* Whether the symbol at `address` (as dlsym returned it) is code: 1 for a function (STT_FUNC or STT_GNU_IFUNC),
 * 0 for anything else (data, a TLS variable, ...), -1 when the dynamic symbol table cannot tell. */
int CExpirableLinux_symbol_is_function(const void *address);

/* posix_spawn_file_actions_addclosefrom_np (glibc 2.34): the child closes every descriptor from `from` up.
 * 0 on success, else an errno value. */
int CExpirableLinux_spawn_close_from(posix_spawn_file_actions_t *actions, int from);

/* Runs `file` (looked up in PATH as execvp does) with `argv` and `envp`, stdin on /dev/null, stdout on `out_fd`,
 * stderr on `err_fd`, no other descriptor, every signal at its default and unblocked, in a new process group led by a
 * guard process, whose pid goes to *pid: kill(-*pid) kills the program and whatever it started. The guard waits
 * for the program and exits as it did (its status, or its signal); when the thread that called this ends (the
 * helper or daemon that runs the plugin dies, even by SIGKILL: PR_SET_PDEATHSIG), it kills the whole group, so
 * the program cannot outlive the process that runs it. 0, or an errno value (from the exec, with nothing left
 * running). The calling thread must stay until the guard is reaped. */
int CExpirableLinux_spawn_guarded(pid_t *pid, const char *file, char *const argv[], char *const envp[], int out_fd, int err_fd);

/* Makes the calling process a plugin helper of `parent`: killed (SIGKILL) when its parent dies, not dumpable
 * (no core file, no ptrace by other users, /proc/PID/mem closed), no core dumps, no new privileges (no_new_privs:
 * set-user-ID programs it runs gain nothing). Returns 0, or -1 when the
 * parent is not `parent` any more (it died before the death signal was armed), and the caller must exit. */
int CExpirableLinux_become_helper(pid_t parent);

/* Makes the daemon itself not dumpable: no core file, no ptrace and no /proc/PID/mem for processes of its user
 * (only root with CAP_SYS_PTRACE may still read its memory), and its /proc/PID files owned by root. 0 or an errno. */
int CExpirableLinux_set_not_dumpable(void);

/* The abbreviation of signal `number` without "SIG" ("SEGV"), or NULL for a number that names no signal. */
const char *CExpirableLinux_signal_abbreviation(int number);

/* Switches a helper to `gid` (supplementary groups cleared) and `uid`, each only when >= 0, then arms the
 * parent-death signal and non-dumpable state again (a credential change clears both) and checks that the
 * parent is still `parent`. 0 on success, else an errno value with *step naming the call that failed (ESRCH
 * from "getppid": the parent died, and the caller must exit). */
int CExpirableLinux_switch_user(long long uid, long long gid, pid_t parent, const char **step);

/* RLIMIT_DATA (soft and hard) to `bytes`: private writable mappings, malloc's included. 0 or an errno value. */
int CExpirableLinux_limit_data(long long bytes);

/* The soft RLIMIT_CPU to the CPU seconds used so far plus `seconds` (SIGXCPU beyond it), and with `hard` the hard
 * limit to one second more (SIGKILL beyond it), which the process cannot raise again without CAP_SYS_RESOURCE: only
 * a parent that has it (`CExpirableLinux_unlimit_cpu`) can, before the next call. 0 or an errno value. */
int CExpirableLinux_limit_cpu_from_now(long long seconds, int hard);

/* Lifts RLIMIT_CPU of process `pid`, soft and hard, to unlimited (prlimit; needs CAP_SYS_RESOURCE): a helper's
 * limit is raised this way, by the daemon, just before the helper sets it again for its next call. 0 or an errno. */
int CExpirableLinux_unlimit_cpu(pid_t pid);

/* Arms a one-shot CLOCK_MONOTONIC timer that sends this process SIGKILL after `ms` milliseconds (0 disarms it).
 * The kernel delivers it whatever the process or its parent is doing, a stopped parent included. 0 or an errno. */
int CExpirableLinux_kill_self_after(long long ms);

/* pidfd_open(2): a descriptor that polls readable once `pid` has exited (not yet reaped); -1 and errno on failure. */
int CExpirableLinux_pidfd_open(pid_t pid);

/* statfs(2) and fstatfs(2): the type (f_type, a magic number such as TMPFS_MAGIC) of the file system holding
 * `path` or `fd`; -1 and errno on failure. Sinks are written only on a tmpfs or ramfs. */
long long CExpirableLinux_filesystem_type(const char *path);
long long CExpirableLinux_filesystem_type_fd(int fd);

/* O_PATH (a descriptor that only names a directory, for openat and friends; needs search permission only): a
 * sink's directory is walked with it, one component at a time, without following links. */
int CExpirableLinux_o_path(void);

#endif
