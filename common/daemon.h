/* What barque-coordinator and barque-worker share at startup: the command line
 * (-c/--config FILE, --check-config, -h/--help, --version) and the signal setup. */
#ifndef BQ_DAEMON_H
#define BQ_DAEMON_H

#include <signal.h>

typedef struct {
    const char *config; /* the -c argument (borrowed from argv) */
    int check_only;     /* --check-config was given */
    int rebuild;        /* coordinator: --rebuild-catalog */
    long rebuild_timeout_s; /* coordinator: --rebuild-timeout SEC (0 = not given) */
} bq_daemon_args_t;

/* Parse argv for the daemon prog. --help prints usage_text to stdout, --version prints
 * "prog version", both to be followed by exit status 0; a bad option, a missing -c or an
 * extra argument prints usage_text to stderr, exit status 2. Returns -1 when the daemon
 * should go on with *out filled in, else the exit status. */
int bq_daemon_args(int argc, char **argv, const char *prog, const char *version,
                   const char *usage_text, bq_daemon_args_t *out);

/* SIGTERM and SIGINT set *stop, SIGHUP sets *reload (both to 1), SIGPIPE is ignored.
 * The flags must outlive the process's handling of signals (static storage). */
void bq_daemon_signals(volatile sig_atomic_t *stop, volatile sig_atomic_t *reload);

#endif
