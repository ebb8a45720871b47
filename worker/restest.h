/* The pieces of the restore-test job (worker/restest.c; the job itself is jobs_restore_test
 * in jobs.h). Exposed for tests/unit/worker/restest_test.c, which runs them on a real
 * PostgreSQL; nothing else outside restest.c should need them.
 *
 * A restore test's directory, SCRATCH/rt-JOB-ATTEMPT (mode 0711, the worker's):
 *     .lock            flock(LOCK_EX) by the job's thread for the whole job (O_CLOEXEC:
 *                      the server never holds it); jobs_restore_test_sweep skips a directory
 *                      whose lock is held and removes every other one
 *     data/            the restored data directory (the test user's)
 *     tblspc/OID/      its tablespaces ("*:DIR/tblspc" relocation; the test user's)
 *     sock/            the server's socket directory (the test user's, 0700)
 *     pg_hba.conf      "local all all trust": connections over the socket only (0600)
 *     postgres.log     the server's stdout and stderr (the test user's)
 *
 * The server runs as the test user (never root), in its own process group, with
 * PR_SET_PDEATHSIG = SIGQUIT tied to the thread that started it: that thread must stay alive
 * until rt_server_stop (the job's thread does), so a SIGKILLed worker takes its servers
 * down. The caller must not ignore SIGCHLD nor reap with waitpid(-1) (as for hooks). */
#ifndef BQ_RESTEST_H
#define BQ_RESTEST_H

#include "err.h"
#include "types.h"

#include <limits.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

#define RT_COMP "restore-test"
#define RT_WAL_ROOM (64ull << 20)   /* scratch needed beyond the data: WAL being replayed */
#define RT_POLL_MS 50               /* the server's state is looked at this often */
#define RT_STOP_GRACE_MS 60000      /* fast shutdown, then SIGQUIT and SIGKILL to its group */
#define RT_TABLES_MAX 10000         /* "databases": tables read per database, at most */
#define RT_PORT_TRIES 3             /* a port someone took between our probe and its bind */
#define RT_DEFAULT_TIMEOUT_MS (6 * 3600 * 1000LL) /* restore_test_timeout 0: its default */

/* A test server: where it lives, as whom it runs, how it is watched. Plain value; fill with
 * rt_server_init, then set the optional fields of the run. */
typedef struct {
    char dir[PATH_MAX];       /* SCRATCH/rt-JOB-ATTEMPT */
    char data[PATH_MAX];      /* DIR/data */
    char sock[PATH_MAX];      /* DIR/sock */
    char hba[PATH_MAX];       /* DIR/pg_hba.conf */
    char log[PATH_MAX];       /* DIR/postgres.log */
    char bindir[PATH_MAX];    /* PostgreSQL's binaries */
    char postgres[PATH_MAX];  /* BINDIR/postgres */
    char os_user[BQ_NAME_MAX]; /* the test user */
    uid_t uid;
    gid_t gid;
    int setid;                /* the worker is root: the child drops to uid/gid */
    /* the run: optional, set by the caller after rt_server_init */
    uint64_t job_id;          /* for logs (0 = none) */
    atomic_int *cancel;       /* nonzero: stop waiting (NULL = never) */
    void (*progress)(void *arg, const char *message); /* NULL = none */
    void *progress_arg;
    int64_t deadline_ms;      /* bq_mono_ms() instant the whole test must end by (0 = none) */
    char login_user[BQ_NAME_MAX]; /* first connection: the production user ("" = postgres) */
    char login_db[BQ_NAME_MAX];   /* and database ("" = postgres) */
    /* filled by rt_server_start / rt_server_wait */
    int port;
    pid_t pid;                /* the postmaster (0 = none running) */
    unsigned spawns;          /* starts so far (a port taken meanwhile: another one) */
    int64_t t_spawn;          /* bq_mono_ms() of the last start */
    long log_from;            /* size of postgres.log at the last start: its lines follow */
    int64_t t_consistent;     /* first connection accepted */
    int64_t t_end;            /* pg_is_in_recovery() false */
    char superuser[BQ_NAME_MAX]; /* the role of oid 10: every check connects as it */
    char conn_db[BQ_NAME_MAX];   /* the database the first connection went to */
    uint64_t replay_lsn;      /* the last pg_last_wal_replay_lsn() seen while waiting */
} rt_server_t;

/* The test user: configured ("" or NULL = default) if set; else "postgres" when the worker is
 * root; else the worker's own user. Refuses root, a user that does not exist, and a user
 * other than the worker's own when the worker is not root. worker: for messages. *setid: the
 * server must drop to uid/gid. 0, BQ_E_CONFIG, BQ_E_NOTFOUND or BQ_E_PERM. */
int rt_test_user(const char *configured, const char *worker, char *name, size_t size,
                 uid_t *uid, gid_t *gid, int *setid, bq_errbuf_t *e);

/* PostgreSQL's binaries: configured if set, else /usr/lib/postgresql/MAJOR/bin with MAJOR =
 * pg_version / 10000 (15 when pg_version is 0). */
void rt_bindir(const char *configured, uint32_t pg_version, char *out, size_t size);

/* "latest WAL" (no target), "time VALUE", "immediate", "KIND VALUE" (xid, lsn, name). */
void rt_target_text(const bq_recovery_t *r, char *out, size_t size);

/* The user name of a conninfo (keywords or URI), "postgres" when it names none or does not
 * parse. */
void rt_conninfo_user(const char *conninfo, char *out, size_t size);

/* Make SCRATCH/rt-JOB-ATTEMPT (0711) and take its .lock (kept in *lock_fd, O_CLOEXEC, until
 * the caller closes it). Serialized with jobs_restore_test_sweep in this process, so a sweep
 * never sees the directory unlocked. BQ_E_EXISTS when it exists (an attempt is unique),
 * BQ_E_IO otherwise. */
int rt_dir_make(const char *scratch, uint64_t job_id, uint32_t attempt, char *dir, size_t size,
                int *lock_fd, bq_errbuf_t *e);

/* Remove path and everything under it, never following a symlink (a tablespace link is
 * removed as a link) and never crossing into another filesystem. Absent is success. 0 or
 * BQ_E_IO naming what could not be removed. */
int rt_dir_remove(const char *path, bq_errbuf_t *e);

/* Fill s for a server of directory dir (its data in dir/data) run as user (rt_test_user's
 * rules: user "" = the default) with the binaries of bindir. Checks that BINDIR/postgres can
 * be run and that the socket path fits; writes nothing. 0 or an error (BQ_E_CONFIG, ...). */
int rt_server_init(rt_server_t *s, const char *dir, const char *bindir, const char *user,
                   const char *worker, bq_errbuf_t *e);

/* Make the server's files beside its data: sock/ (0700), pg_hba.conf (0600), postgres.log,
 * all the test user's. 0 or BQ_E_IO. */
int rt_server_files(rt_server_t *s, bq_errbuf_t *e);

/* Start the postmaster on a free 127.0.0.1 port (s->port, s->pid, s->t_spawn). 0 or
 * BQ_E_IO (fork, port). */
int rt_server_start(rt_server_t *s, bq_errbuf_t *e);

/* Wait, every RT_POLL_MS, until the server accepts a connection over its socket (consistent:
 * s->t_consistent, s->superuser) and then is out of recovery (s->t_end); a server not in
 * recovery returns at once. A server that exits because its port was taken is started again
 * on another port (RT_PORT_TRIES starts in all). Errors: BQ_E_PG (the server exited: its
 * status and the last FATAL/PANIC/ERROR lines of its log), BQ_E_TIMEOUT (s->deadline_ms),
 * BQ_E_CANCELLED (*s->cancel), BQ_E_IO (could not start it again). */
int rt_server_wait(rt_server_t *s, bq_errbuf_t *e);

/* Stop the server: SIGINT (fast shutdown), up to grace_ms, then SIGQUIT and, 5 s later,
 * SIGKILL to its process group; reaped. Nothing running is fine. */
void rt_server_stop(rt_server_t *s, int64_t grace_ms);

/* The last lines of log from byte from on that hold FATAL:, PANIC: or ERROR: (the last 3 of
 * them, joined by "; "), else its last 3 lines; "" when there is nothing. */
void rt_log_tail(const char *log, long from, char *out, size_t size);

/* Segments from the backup's start to reached_lsn: (reached - 1) / seg - start / seg + 1 (0
 * when nothing was replayed). */
uint64_t rt_wal_segments(uint64_t reached_lsn, uint64_t start_lsn, uint32_t seg_size);

/* The "WAL replay" item: replay to the end of the archive must reach wal_end's segment. */
void rt_check_wal(uint64_t reached_lsn, uint64_t start_lsn, uint32_t seg_size,
                  const char *wal_end, bq_check_item_t *it);

/* Measure and check the running server s (consistent, out of recovery) as the job does:
 * rt->reached_lsn, reached_ms, wal_segments, wal_bytes, and the items "WAL replay" (when
 * target_kind is "" and spec->wal_end is set), "system identifier" (when
 * spec->system_identifier is not 0), "databases", "pg_amcheck" (spec->amcheck),
 * "restore_test_sql" (spec->sql set) appended to rt->checks; rt->ok = every item OK (an item
 * that could not be added counts as failed). Returns the number of failed items. */
int rt_checks_run(rt_server_t *s, const bq_rt_spec_t *spec, const char *target_kind,
                  bq_restore_test_t *rt);

#endif
