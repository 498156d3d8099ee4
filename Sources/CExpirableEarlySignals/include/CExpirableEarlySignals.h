#ifndef CEXPIRABLE_EARLY_SIGNALS_H
#define CEXPIRABLE_EARLY_SIGNALS_H

/* Linked into the daemon's executable only. Its constructor (early_signals.c) notes SIGHUP, SIGTERM and SIGINT from
 * the first instruction, before the Swift code can trap them; a command-line tool must keep their default action. */

/* Whether a SIGHUP came before the daemon's own handler was installed; cleared by the call. */
int CExpirableEarlySignals_take_early_hangup(void);

/* The first SIGTERM or SIGINT that came before the daemon's services trapped them, or 0. */
int CExpirableEarlySignals_early_stop(void);

#endif
