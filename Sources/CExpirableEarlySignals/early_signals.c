#include <signal.h>
#include <string.h>
#include "CExpirableEarlySignals.h"

/* SIGHUP, SIGTERM and SIGINT from the first instruction of the daemon's own code: until the Swift code takes them
 * over (SIGHUP in `main`, SIGTERM and SIGINT once the services run, which may be seconds later while plugins are
 * created), their default action would end the daemon, SIGHUP with 129 although it never stops the daemon, and
 * SIGTERM with 143 and no word in the log. Here they are only noted; the daemon acts on them once it can.
 * A target of its own, linked into the daemon only: in expirablectl (which links CExpirableCloseOnExec) this
 * constructor would swallow the Ctrl-C, `kill` and `timeout` that must end a `watch` or a waiting `fetch`. */

static volatile sig_atomic_t early_hangup;
static volatile sig_atomic_t early_stop;

static void note(int number) {
    if (number == SIGHUP) {
        early_hangup = 1;
    } else if (early_stop == 0) {
        early_stop = number;
    }
}

/* Runs before Swift's runtime and `main` (an ELF constructor gets argc, argv and envp from glibc). A plugin helper
 * (the same executable, `--plugin-helper`) keeps the defaults its spawner gave it: it is stopped by signals. */
__attribute__((constructor(101))) static void note_early_signals(int argc, char **argv, char **envp) {
    (void)envp;
    if (argc > 1 && argv != NULL && argv[1] != NULL && strcmp(argv[1], "--plugin-helper") == 0) return;
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = note;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    sigaction(SIGHUP, &action, NULL);
    sigaction(SIGTERM, &action, NULL);
    sigaction(SIGINT, &action, NULL);
}

int CExpirableEarlySignals_take_early_hangup(void) {
    int noted = early_hangup;
    early_hangup = 0;
    return noted;
}

int CExpirableEarlySignals_early_stop(void) {
    return early_stop;
}
