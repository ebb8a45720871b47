/* Hook scripts (Barman's hook scripts, for Barque): the commands a cluster's configuration
 * gives as pre_backup_script, post_backup_script, pre_recover_script, post_recover_script and
 * post_wal_script. The coordinator sends the command line with each job; the worker runs it
 * in the job's thread with /bin/sh -c COMMAND.
 *
 * Pre hooks follow Barman's "retry" convention: the script runs again until it exits
 *     0   SUCCESS         the operation goes on
 *     62  ABORT_CONTINUE  the operation goes on, with a warning
 *     63  ABORT_STOP      the operation is aborted
 * Any other status (or a timed-out attempt) means "try again". Barman retries forever;
 * Barque runs at most `retries` further attempts, `retry_sleep_ms` apart, then aborts the
 * operation saying the hook kept failing. Post hooks run once: what they did is reported
 * (a warning) and never changes the operation's result.
 *
 * The hook's process: its own process group (so a timeout or a cancel kills the whole tree),
 * stdin from /dev/null, stdout and stderr into one pipe the worker reads (the first 511 bytes
 * kept, the rest read and discarded, so a chatty hook never blocks), no other file descriptor
 * (all closed in the child, whatever their O_CLOEXEC), an empty signal mask and default signal
 * dispositions, the worker's working directory, and the worker's environment plus the
 * variables below (one given here replaces the worker's variable of the same name).
 *
 * Environment of a hook (the caller adds them with hook_env_add, but BARQUE_ATTEMPT):
 *     BARQUE_HOOK       the hook: pre_backup, post_backup, pre_recover, post_recover, post_wal
 *     BARQUE_PHASE      pre | post
 *     BARQUE_CLUSTER    the cluster's name
 *     BARQUE_SITE       the site of the worker
 *     BARQUE_WORKER     the worker's name
 *     BARQUE_JOB_ID     the job's id
 *     BARQUE_BACKUP_ID  the backup's id (backup and recover hooks)
 *     BARQUE_STATUS     post: DONE | FAILED for backups, OK | FAILED for recover
 *     BARQUE_ERROR      post: the failure's message, "" on success
 *     BARQUE_RETRY      1 for pre hooks (retried), 0 for post hooks (run once)
 *     BARQUE_ATTEMPT    1, 2, ...: the attempt, set by hook_run itself
 *     BARQUE_DEST       recover: the destination directory
 *     BARQUE_WAL_NAME   post_wal: the WAL file's name
 *     BARQUE_WAL_SIZE   post_wal: its size in bytes
 *     BARQUE_VERSION    Barque's version
 *
 * Thread safety: any number of threads may run hooks at once. hook_run changes no global
 * state (no signal handler, no environment variable, no working directory) and reaps only
 * its own child (waitpid on its pid). So the process must neither ignore SIGCHLD nor reap
 * with waitpid(-1), and no thread may change the environment (setenv) while hooks run. */
#ifndef BQ_HOOKS_H
#define BQ_HOOKS_H

#include <stddef.h>
#include <stdint.h>

#define HOOK_EXIT_ABORT_CONTINUE 62
#define HOOK_EXIT_ABORT_STOP 63

#define HOOK_KILL_GRACE_MS 5000 /* SIGTERM to the hook's group, then SIGKILL this much later */
#define HOOK_OUTPUT_MAX 512     /* hook_result_t.output, NUL included */
#define HOOK_MESSAGE_MAX 256    /* hook_result_t.message, NUL included */
#define HOOK_ENV_BUF 4096       /* hook_env_t: bytes of "KEY=VALUE\0" strings */
#define HOOK_ENV_SLOTS 24       /* hook_env_t: variables, the NULL terminator included */

typedef enum { HOOK_PRE = 0, HOOK_POST = 1 } hook_phase_t;

typedef struct {
    const char *name;       /* "pre_backup", "post_backup", "pre_recover", "post_recover",
                             * "post_wal": used in messages */
    const char *command;    /* run with /bin/sh -c COMMAND; "" or NULL = no hook */
    hook_phase_t phase;     /* PRE: the retry convention; POST: run once */
    int64_t timeout_ms;     /* per attempt (<= 0: none); on expiry the hook's process group
                             * gets SIGTERM, then SIGKILL HOOK_KILL_GRACE_MS later; a timed-out
                             * attempt is a failure (PRE: retried) */
    unsigned retries;       /* PRE: further attempts after the first (0 = none) */
    int64_t retry_sleep_ms; /* PRE: pause between attempts (<= 0: none) */
    const char *const *env; /* extra "KEY=VALUE" strings, NULL-terminated (may be NULL), added
                             * to the worker's environment; a string with no '=' is ignored;
                             * of two with the same KEY the later wins */
    volatile int *cancel;   /* may be NULL: nonzero = stop now: the hook's group gets SIGTERM,
                             * then SIGKILL HOOK_KILL_GRACE_MS later; outcome CANCELLED */
} hook_t;

typedef enum {
    HOOK_RAN_NONE,       /* no hook configured */
    HOOK_OK,             /* exited 0 */
    HOOK_ABORT_CONTINUE, /* exited 62 */
    HOOK_ABORT_STOP,     /* exited 63 */
    HOOK_FAILED,         /* another status, killed by a signal, or could not be run
                          * (PRE: on every attempt) */
    HOOK_TIMEOUT,        /* the (last) attempt timed out */
    HOOK_CANCELLED       /* *cancel was set */
} hook_outcome_t;

typedef struct {
    hook_outcome_t outcome;
    int status;         /* the last attempt's exit status, -SIGNAL when a signal killed it,
                         * 127 when it could not be run; 0 when none ran */
    unsigned attempts;  /* attempts started (0: none, or cancelled before the first) */
    int64_t duration_ms; /* from the first attempt's start to the end, pauses included */
    char output[HOOK_OUTPUT_MAX]; /* the last attempt's stdout and stderr as they came, the
                         * first 511 bytes, NUL-terminated; bytes other than printable ASCII,
                         * '\n' and '\t' are '?' */
    char message[HOOK_MESSAGE_MAX]; /* one line for logs and job results, e.g.
                         * "pre_backup hook exited 63 (ABORT_STOP): <first line of output>",
                         * "post_backup hook timed out after 60 s",
                         * "pre_backup hook failed 6 times (last exit 1): <first line>";
                         * "" for RAN_NONE */
} hook_result_t;

/* Run the hook h and fill res (always, whatever the return).
 * Returns 0 when the operation may go on: no hook, OK, ABORT_CONTINUE, and for a POST hook
 * always, whatever the hook did (res says what, for a warning). For a PRE hook that says
 * stop it returns
 *     BQ_E_STATE      ABORT_STOP (63), or FAILED on every attempt
 *     BQ_E_TIMEOUT    the last attempt timed out
 *     BQ_E_CANCELLED  *h->cancel was set (before an attempt, during one, or between two)
 * and res->message says why, for the job's result. */
int hook_run(const hook_t *h, hook_result_t *res);

/* "none", "ok", "abort-continue", "abort-stop", "failed", "timeout", "cancelled". */
const char *hook_outcome_name(hook_outcome_t outcome);

/* The documented environment, built in a caller-owned value (no allocation):
 *     hook_env_t env;
 *     hook_env_init(&env);
 *     hook_env_add(&env, "BARQUE_HOOK", "pre_backup");
 *     ...
 *     hook.env = hook_env_vars(&env);
 * The strings live in env: it must outlive the hook_run that uses them. */
typedef struct {
    char buf[HOOK_ENV_BUF];
    const char *vars[HOOK_ENV_SLOTS];
    size_t n;
    size_t used;
} hook_env_t;

void hook_env_init(hook_env_t *env);
/* Add KEY=VALUE (value NULL = ""); a key added before is replaced. Returns 0, or BQ_E_INVAL
 * (-1) when it does not fit (more than HOOK_ENV_SLOTS - 1 variables or HOOK_ENV_BUF bytes)
 * or the key is empty or holds '='; env is then unchanged. */
int hook_env_add(hook_env_t *env, const char *key, const char *value);
/* The variables, NULL-terminated, for hook_t.env; borrowed from env. */
const char *const *hook_env_vars(hook_env_t *env);

#endif
