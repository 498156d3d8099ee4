#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <grp.h>
#include <link.h>
#include <signal.h>
#include <spawn.h>
#include <stddef.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "CExpirableLinux.h"

int CExpirableLinux_symbol_is_function(const void *address) {
    Dl_info info;
    const ElfW(Sym) *symbol = NULL;
    if (dladdr1(address, &info, (void **)&symbol, RTLD_DL_SYMENT) == 0 || symbol == NULL) return -1;
    unsigned char type = ELF64_ST_TYPE(symbol->st_info);
    return type == STT_FUNC || type == STT_GNU_IFUNC;
}

int CExpirableLinux_spawn_close_from(posix_spawn_file_actions_t *actions, int from) {
    return posix_spawn_file_actions_addclosefrom_np(actions, from);
}

int CExpirableLinux_become_helper(pid_t parent) {
    /* The death signal first, then the parent check: a parent that died between fork and prctl is seen here. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) return -1;
    if (getppid() != parent) return -1;
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    /* No set-user-ID program the plugin runs (a `command` plugin's child included) gains privileges. */
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return -1;
    struct rlimit none = {0, 0};
    setrlimit(RLIMIT_CORE, &none);
    return 0;
}

int CExpirableLinux_set_not_dumpable(void) {
    return prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == 0 ? 0 : errno;
}

const char *CExpirableLinux_signal_abbreviation(int number) {
    return sigabbrev_np(number);
}

int CExpirableLinux_switch_user(long long uid, long long gid, pid_t parent, const char **step) {
    if (gid >= 0) {
        *step = "setgroups";
        if (setgroups(0, NULL) != 0) return errno;
        *step = "setresgid";
        if (setresgid((gid_t)gid, (gid_t)gid, (gid_t)gid) != 0) return errno;
    }
    if (uid >= 0) {
        *step = "setresuid";
        if (setresuid((uid_t)uid, (uid_t)uid, (uid_t)uid) != 0) return errno;
    }
    /* A change of credentials clears the parent-death signal and makes the process dumpable again (Linux's
     * commit_creds): arm both again, then check that the parent did not die in between. */
    *step = "prctl(PR_SET_PDEATHSIG)";
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) return errno;
    *step = "getppid";
    if (getppid() != parent) return ESRCH;
    *step = "prctl(PR_SET_DUMPABLE)";
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) return errno;
    return 0;
}

int CExpirableLinux_limit_data(long long bytes) {
    struct rlimit limit = {(rlim_t)bytes, (rlim_t)bytes};
    return setrlimit(RLIMIT_DATA, &limit) == 0 ? 0 : errno;
}

int CExpirableLinux_limit_cpu_from_now(long long seconds, int hard) {
    struct rusage usage;
    struct rlimit limit;
    if (getrusage(RUSAGE_SELF, &usage) != 0 || getrlimit(RLIMIT_CPU, &limit) != 0) return errno;
    rlim_t used = (rlim_t)(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec);
    limit.rlim_cur = used + (rlim_t)seconds;
    if (hard && (limit.rlim_max == RLIM_INFINITY || limit.rlim_cur + 1 <= limit.rlim_max)) limit.rlim_max = limit.rlim_cur + 1;
    if (limit.rlim_max != RLIM_INFINITY && limit.rlim_cur > limit.rlim_max) limit.rlim_cur = limit.rlim_max;
    return setrlimit(RLIMIT_CPU, &limit) == 0 ? 0 : errno;
}

int CExpirableLinux_unlimit_cpu(pid_t pid) {
    struct rlimit unlimited = {RLIM_INFINITY, RLIM_INFINITY};
    return prlimit(pid, RLIMIT_CPU, &unlimited, NULL) == 0 ? 0 : errno;
}

int CExpirableLinux_pidfd_open(pid_t pid) {
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

int CExpirableLinux_kill_self_after(long long ms) {
    static timer_t timer;
    static int made = 0;
    if (!made) {
        struct sigevent event;
        memset(&event, 0, sizeof event);
        event.sigev_notify = SIGEV_SIGNAL;
        event.sigev_signo = SIGKILL;
        if (timer_create(CLOCK_MONOTONIC, &event, &timer) != 0) return errno;
        made = 1;
    }
    struct itimerspec when;
    memset(&when, 0, sizeof when);
    if (ms > 0) {
        when.it_value.tv_sec = ms / 1000;
        when.it_value.tv_nsec = (ms % 1000) * 1000000L;
    }
    return timer_settime(timer, 0, &when, NULL) == 0 ? 0 : errno;
}

long long CExpirableLinux_filesystem_type(const char *path) {
    struct statfs info;
    if (statfs(path, &info) != 0) return -1;
    return (long long)info.f_type;
}

long long CExpirableLinux_filesystem_type_fd(int fd) {
    struct statfs info;
    if (fstatfs(fd, &info) != 0) return -1;
    return (long long)info.f_type;
}

int CExpirableLinux_o_path(void) { return O_PATH; }

/* Closes every descriptor from `from` up but `keep` (-1: none). */
static void close_from_but(int from, int keep) {
    if (keep >= from) {
        if (keep > from && close_range((unsigned)from, (unsigned)keep - 1, 0) != 0) {
            for (int fd = from; fd < keep; fd++) close(fd);
        }
        from = keep + 1;
    }
    if (close_range((unsigned)from, ~0u, 0) != 0) {
        struct rlimit limit;
        int top = getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY && limit.rlim_cur < 1048576 ? (int)limit.rlim_cur : 1048576;
        for (int fd = from; fd < top; fd++) close(fd);
    }
}

/* Every signal at its default action (kept blocked: the caller sets the mask). */
static void default_signals(void) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++) sigaction(sig, &action, NULL);
}

int CExpirableLinux_spawn_guarded(pid_t *pid, const char *file, char *const argv[], char *const envp[], int out_fd, int err_fd) {
    int report[2];
    if (pipe2(report, O_CLOEXEC) != 0) return errno;
    /* No handler of the caller's runs in the children before they reset them: every signal blocked across fork. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid_t parent = getpid();
    pid_t guard = fork();
    if (guard == 0) {
        /* The guard: only async-signal-safe calls from here, as after any fork of a threaded process. */
        close(report[0]);
        setpgid(0, 0);
        default_signals();
        /* Told when the thread that started it ends (its helper or daemon killed, or exiting); the parent check
         * after arming catches a parent that died before. */
        int failed = prctl(PR_SET_PDEATHSIG, SIGTERM, 0, 0, 0) != 0 ? errno : 0;
        if (failed == 0 && getppid() != parent) failed = ESRCH;
        pid_t program = failed == 0 ? fork() : -1;
        if (program < 0 && failed == 0) failed = errno;
        if (program == 0) {
            /* The program: killed if its guard is (the guard kills the group on its way out otherwise). */
            prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
            int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
            if (null < 0 || dup2(null, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(err_fd, 2) < 0) {
                failed = errno;
            } else {
                /* Nothing else of the process that runs the plugin: not a helper's socket to its daemon, not an
                 * inline daemon's client connections, whether or not they are close-on-exec. */
                close_from_but(3, report[1]);
                sigset_t none;
                sigemptyset(&none);
                sigprocmask(SIG_SETMASK, &none, NULL);
                execvpe(file, argv, envp);
                failed = errno;
            }
            while (write(report[1], &failed, sizeof failed) < 0 && errno == EINTR) {}
            _exit(127);
        }
        if (failed != 0) {
            while (write(report[1], &failed, sizeof failed) < 0 && errno == EINTR) {}
            kill(0, SIGKILL);
            _exit(127);
        }
        close_from_but(3, -1);
        sigset_t waited;
        sigemptyset(&waited);
        sigaddset(&waited, SIGCHLD);
        sigaddset(&waited, SIGTERM);
        sigaddset(&waited, SIGHUP);
        sigaddset(&waited, SIGINT);
        for (;;) {
            int sig = sigwaitinfo(&waited, NULL);
            if (sig < 0) continue;
            if (sig != SIGCHLD) {
                /* The one that started it is gone (or it was told to stop): the program and all it started go too. */
                kill(0, SIGKILL);
                _exit(128 + SIGKILL);
            }
            int status;
            if (waitpid(program, &status, WNOHANG) != program) continue;
            if (WIFEXITED(status)) _exit(WEXITSTATUS(status));
            /* Ends as the program did, for its parent to see, without a core file of its own. */
            struct rlimit none = {0, 0};
            setrlimit(RLIMIT_CORE, &none);
            int ended = WTERMSIG(status);
            sigset_t just;
            sigemptyset(&just);
            sigaddset(&just, ended);
            sigprocmask(SIG_UNBLOCK, &just, NULL);
            kill(getpid(), ended);
            _exit(128 + ended);
        }
    }
    int failed = guard < 0 ? errno : 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    close(report[1]);
    if (guard > 0) {
        /* Also here, so that a kill of the group that comes at once reaches it. */
        setpgid(guard, guard);
        ssize_t n;
        while ((n = read(report[0], &failed, sizeof failed)) < 0 && errno == EINTR) {}
        if (n != (ssize_t)sizeof failed) failed = 0;
        if (failed != 0) {
            int status;
            while (waitpid(guard, &status, 0) < 0 && errno == EINTR) {}
        }
    }
    close(report[0]);
    if (failed == 0) *pid = guard;
    return failed;
}
