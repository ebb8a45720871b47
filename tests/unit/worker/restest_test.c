/* The restore-test job's pieces (worker/restest.h) on a real PostgreSQL 15, no mocks: a
 * cluster made once with initdb (as postgres when root) is copied into SCRATCH/rt-J-A/data
 * for each case, started the way the job starts it (own hba file, socket directory, port,
 * dropped privileges, PDEATHSIG), waited for, checked, stopped and removed. Also: archive
 * recovery to the end of pg_wal and a recovery target that is never reached (the server's
 * FATAL line comes back), the sweep of a killed attempt's directory with its server running,
 * a locked directory left alone, symlinks never followed by the removal, the WAL item's
 * arithmetic as a table, and the job's refusals before anything is written (no scratch, not
 * enough space) and its cleanup after a failed restore.
 *
 * Every wait is bounded; every server started is stopped by pid (teardown SIGKILLs what a
 * failed assertion left). Skipped when /usr/lib/postgresql/15/bin/postgres is missing. */
#include "restest.h"

#include "basebackup.h"
#include "clock.h"
#include "err.h"
#include "jobs.h"
#include "log.h"

#include <libpq-fe.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <pwd.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#define BINDIR "/usr/lib/postgresql/15/bin"
#define WAIT_MS 60000

static int g_skip;
static char g_tmp[PATH_MAX];       /* mktemp -d under /tmp, 0711 */
static char g_scratch[PATH_MAX];   /* g_tmp/scratch */
static char g_tpl[PATH_MAX];       /* g_tmp/tpl: the template's rt-like directory */
static uint64_t g_sysid;           /* the template's system identifier */
static char g_walfile[32];         /* its current WAL segment when it was stopped */
static pid_t g_pids[16];           /* servers started: killed in teardown if still there */
static size_t g_npids;

/* ---- helpers ---- */

static int run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int run(const char *fmt, ...)
{
    char cmd[4 * PATH_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* "runuser -u postgres --" as root, "" otherwise */
static const char *as_pg(void)
{
    return geteuid() == 0 ? "runuser -u postgres -- " : "";
}

static int exists(const char *path)
{
    struct stat sb;
    return lstat(path, &sb) == 0;
}

static int dir_empty(const char *path)
{
    char cmd[PATH_MAX + 64];
    snprintf(cmd, sizeof cmd, "test -z \"$(ls -A '%s')\"", path);
    return system(cmd) == 0;
}

/* Alive and not a zombie. */
static int proc_running(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    return !(p && p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X'));
}

static void track(pid_t pid)
{
    if (g_npids < sizeof g_pids / sizeof g_pids[0])
        g_pids[g_npids++] = pid;
}

static void no_progress(void *arg, const char *msg)
{
    (void)arg;
    (void)msg;
}

/* SCRATCH/NAME with a copy of the template's data directory; dir receives its path. */
static void copy_cluster(const char *name, char *dir, size_t size)
{
    snprintf(dir, size, "%s/%s", g_scratch, name);
    assert_int_equal(mkdir(dir, 0711), 0);
    assert_int_equal(chmod(dir, 0711), 0);
    assert_int_equal(run("cp -a '%s/data' '%s/data'", g_tpl, dir), 0);
}

/* init, files, start, wait on dir (its data already there). */
static void server_up(rt_server_t *s, const char *dir, atomic_int *cancel)
{
    bq_errbuf_t e = {{0}};
    int rc = rt_server_init(s, dir, BINDIR, "", "test-worker", &e);
    if (rc)
        print_error("rt_server_init: %s\n", e.msg);
    assert_int_equal(rc, 0);
    s->deadline_ms = bq_mono_ms() + WAIT_MS;
    s->cancel = cancel;
    s->progress = no_progress;
    rc = rt_server_files(s, &e);
    if (rc)
        print_error("rt_server_files: %s\n", e.msg);
    assert_int_equal(rc, 0);
    rc = rt_server_start(s, &e);
    if (rc)
        print_error("rt_server_start: %s\n", e.msg);
    assert_int_equal(rc, 0);
    track(s->pid);
    rc = rt_server_wait(s, &e);
    if (rc)
        print_error("rt_server_wait: %s\n", e.msg);
    assert_int_equal(rc, 0);
    assert_true(s->pid > 0);
    assert_string_equal(s->superuser, "postgres");
    assert_true(s->t_consistent >= s->t_spawn);
    assert_true(s->t_end >= s->t_consistent);
}

/* Stop s; the postmaster must be gone. */
static void server_down(rt_server_t *s)
{
    pid_t pid = s->pid;
    rt_server_stop(s, 30000);
    assert_int_equal(s->pid, 0);
    assert_false(proc_running(pid));
}

static PGconn *connect_to(const rt_server_t *s, const char *db)
{
    char port[16];
    snprintf(port, sizeof port, "%d", s->port);
    const char *k[] = {"host", "port", "user", "dbname", "connect_timeout", NULL};
    const char *v[] = {s->sock, port, "postgres", db, "10", NULL};
    PGconn *c = PQconnectdbParams(k, v, 0);
    if (PQstatus(c) != CONNECTION_OK)
        print_error("connect: %s\n", PQerrorMessage(c));
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    return c;
}

static void exec_ok(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        print_error("%s: %s\n", sql, PQresultErrorMessage(r));
    assert_true(st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK);
    PQclear(r);
}

static char *value_of(PGconn *c, const char *sql, char *buf, size_t size)
{
    PGresult *r = PQexec(c, sql);
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    snprintf(buf, size, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    return buf;
}

static const bq_check_item_t *item(const bq_restore_test_t *rt, const char *name)
{
    for (size_t i = 0; i < rt->nchecks; i++)
        if (strcmp(rt->checks[i].name, name) == 0)
            return &rt->checks[i];
    return NULL;
}

/* Append text to a file of the data directory (as the server's user would own it). */
static void conf_add(const char *dir, const char *file, const char *text)
{
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/data/%s", dir, file);
    FILE *f = fopen(path, "a");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
    if (geteuid() == 0) {
        struct passwd *pw = getpwnam("postgres");
        assert_non_null(pw);
        assert_int_equal(chown(path, pw->pw_uid, pw->pw_gid), 0);
    }
}

/* ---- setup: the template cluster ---- */

static int group_setup(void **state)
{
    (void)state;
    bq_log_set_level(BQ_LOG_WARNING);
    if (access(BINDIR "/postgres", X_OK) != 0) {
        g_skip = 1;
        return 0;
    }
    if (geteuid() == 0 && !getpwnam("postgres")) {
        fprintf(stderr, "restest_test: running as root without a postgres user\n");
        return -1;
    }
    snprintf(g_tmp, sizeof g_tmp, "/tmp/restest.XXXXXX");
    if (!mkdtemp(g_tmp) || chmod(g_tmp, 0711) != 0)
        return -1;
    snprintf(g_scratch, sizeof g_scratch, "%s/scratch", g_tmp);
    snprintf(g_tpl, sizeof g_tpl, "%s/tpl", g_tmp);
    if (mkdir(g_scratch, 0711) != 0 || chmod(g_scratch, 0711) != 0 || mkdir(g_tpl, 0711) != 0 ||
        chmod(g_tpl, 0711) != 0)
        return -1;
    char data[PATH_MAX + 8];
    snprintf(data, sizeof data, "%s/data", g_tpl);
    if (mkdir(data, 0700) != 0)
        return -1;
    if (geteuid() == 0 && run("chown postgres: '%s'", data) != 0)
        return -1;
    if (run("cd /tmp && %s" BINDIR "/initdb -D '%s' --auth=trust --username=postgres "
            "--encoding=UTF8 --locale=C --no-sync --no-instructions >'%s/initdb.log' 2>&1",
            as_pg(), data, g_tmp) != 0) {
        run("cat '%s/initdb.log' >&2", g_tmp);
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    for (size_t i = 0; i < g_npids; i++)
        if (proc_running(g_pids[i])) {
            kill(-g_pids[i], SIGKILL);
            kill(g_pids[i], SIGKILL);
            waitpid(g_pids[i], NULL, 0);
        }
    if (g_tmp[0]) {
        bq_errbuf_t e;
        if (rt_dir_remove(g_tmp, &e) != 0)
            fprintf(stderr, "restest_test: %s\n", e.msg);
    }
    return 0;
}

/* The template: started once with the job's own functions, given a few objects, stopped
 * cleanly. Runs first (cmocka keeps the order). */
static void test_template(void **state)
{
    (void)state;
    if (g_skip)
        skip();
    conf_add(g_tpl, "postgresql.conf", "\nfsync = off\n");
    rt_server_t *s = calloc(1, sizeof *s);
    assert_non_null(s);
    server_up(s, g_tpl, NULL);
    /* not in recovery: the end-of-recovery wait returned at once */
    assert_true(s->t_end - s->t_consistent < 1000);
    PGconn *c = connect_to(s, "postgres");
    exec_ok(c, "CREATE TABLE t (i int PRIMARY KEY, v text)");
    exec_ok(c, "INSERT INTO t SELECT g, 'row ' || g FROM generate_series(1, 1000) g");
    exec_ok(c, "CREATE TABLE empty_one (i int)");
    exec_ok(c, "CREATE MATERIALIZED VIEW mv AS SELECT i FROM t WHERE i < 10");
    exec_ok(c, "CREATE MATERIALIZED VIEW mv_unpopulated AS SELECT 1 AS x WITH NO DATA");
    exec_ok(c, "CREATE SCHEMA \"Odd Schema\"");
    exec_ok(c, "CREATE TABLE \"Odd Schema\".\"Mixed Case\" (x int)");
    exec_ok(c, "CREATE DATABASE db2");
    exec_ok(c, "CREATE DATABASE no_conn");
    exec_ok(c, "ALTER DATABASE no_conn WITH ALLOW_CONNECTIONS false");
    char buf[64];
    g_sysid = strtoull(value_of(c, "SELECT system_identifier FROM pg_control_system()", buf,
                                sizeof buf), NULL, 10);
    assert_true(g_sysid != 0);
    PQfinish(c);
    c = connect_to(s, "db2");
    exec_ok(c, "CREATE TABLE d2 (x int)");
    exec_ok(c, "INSERT INTO d2 VALUES (1)");
    PQfinish(c);
    c = connect_to(s, "postgres");
    exec_ok(c, "CHECKPOINT");
    value_of(c, "SELECT pg_walfile_name(pg_current_wal_lsn())", g_walfile, sizeof g_walfile);
    PQfinish(c);
    server_down(s);
    free(s);
}

/* ---- a plain cluster: start, wait, checks ---- */

static void *cancel_later(void *arg)
{
    struct timespec ts = {0, 700 * 1000000L};
    nanosleep(&ts, NULL);
    atomic_store((atomic_int *)arg, 1);
    return NULL;
}

static void test_plain_checks(void **state)
{
    (void)state;
    if (g_skip)
        skip();
    char dir[PATH_MAX];
    copy_cluster("rt-1-1", dir, sizeof dir);
    rt_server_t *s = calloc(1, sizeof *s);
    assert_non_null(s);
    server_up(s, dir, NULL);
    assert_true(s->t_end - s->t_consistent < 1000);
    /* the server's own files: the socket directory is the test user's and private */
    struct stat sb;
    assert_int_equal(stat(s->sock, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0700);
    assert_int_equal(sb.st_uid, s->uid);
    assert_int_equal(stat(s->hba, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);

    /* everything right */
    bq_rt_spec_t spec;
    memset(&spec, 0, sizeof spec);
    spec.system_identifier = g_sysid;
    snprintf(spec.sql, sizeof spec.sql, "SELECT 1; SELECT count(*) = 1000 FROM t");
    snprintf(spec.sql_file, sizeof spec.sql_file, "/etc/barque/check.sql");
    spec.amcheck = 1;
    bq_restore_test_t *rt = calloc(1, sizeof *rt);
    assert_non_null(rt);
    int fails = rt_checks_run(s, &spec, "", rt);
    for (size_t i = 0; i < rt->nchecks; i++)
        if (!rt->checks[i].ok)
            print_error("%s: %s\n", rt->checks[i].name, rt->checks[i].detail);
    assert_int_equal(fails, 0);
    assert_true(rt->ok);
    assert_int_equal(rt->nchecks, 4); /* no wal_end: no "WAL replay" item */
    const bq_check_item_t *it = item(rt, "system identifier");
    assert_non_null(it);
    assert_true(it->ok);
    assert_int_equal(it->severity, BQ_SEV_OK);
    it = item(rt, "databases");
    assert_non_null(it);
    assert_true(it->ok);
    /* postgres, db2, template1 (no_conn and template0 do not allow connections) */
    assert_non_null(strstr(it->detail, "3 databases, "));
    it = item(rt, "pg_amcheck");
    assert_non_null(it);
    assert_true(it->ok);
    it = item(rt, "restore_test_sql");
    assert_non_null(it);
    assert_true(it->ok);
    assert_non_null(strstr(it->detail, "/etc/barque/check.sql"));
    assert_true(rt->check_ms >= 0);
    assert_int_equal(rt->reached_lsn, 0); /* never in recovery: NULL */
    assert_int_equal(rt->wal_segments, 0);

    /* a wrong system identifier fails that item only */
    memset(rt, 0, sizeof *rt);
    spec.amcheck = 0;
    spec.system_identifier = g_sysid + 1;
    fails = rt_checks_run(s, &spec, "", rt);
    assert_int_equal(fails, 1);
    assert_false(rt->ok);
    it = item(rt, "system identifier");
    assert_non_null(it);
    assert_false(it->ok);
    assert_int_equal(it->severity, BQ_SEV_CRITICAL);
    char want[64];
    snprintf(want, sizeof want, "the backup's is %llu", (unsigned long long)(g_sysid + 1));
    assert_non_null(strstr(it->detail, want));
    assert_true(item(rt, "databases")->ok);
    assert_true(item(rt, "restore_test_sql")->ok);

    /* restore_test_sql: false, an error, no row, true */
    static const struct {
        const char *sql;
        int ok;
        const char *detail;
    } sqls[] = {
        {"SELECT false", 0, "restore_test_sql /etc/barque/check.sql returned f, not true"},
        {"SELECT NULL::bool", 0, "returned NULL, not true"},
        {"SELECT nosuchcolumn", 0, "restore_test_sql /etc/barque/check.sql failed: ERROR: "
                                   "column \"nosuchcolumn\" does not exist"},
        {"CREATE TEMP TABLE x (i int)", 0, "returned no row, not true"},
        {"SELECT true", 1, "returned true (database postgres)"},
        {"SELECT 'yes'", 0, "returned yes, not true"},
    };
    spec.system_identifier = 0;
    for (size_t i = 0; i < sizeof sqls / sizeof sqls[0]; i++) {
        memset(rt, 0, sizeof *rt);
        snprintf(spec.sql, sizeof spec.sql, "%s", sqls[i].sql);
        fails = rt_checks_run(s, &spec, "", rt);
        it = item(rt, "restore_test_sql");
        assert_non_null(it);
        if (!strstr(it->detail, sqls[i].detail) || it->ok != sqls[i].ok)
            print_error("%s -> %d %s\n", sqls[i].sql, it->ok, it->detail);
        assert_int_equal(it->ok, sqls[i].ok);
        assert_int_equal(fails, sqls[i].ok ? 0 : 1);
        assert_non_null(strstr(it->detail, sqls[i].detail));
        assert_null(item(rt, "system identifier")); /* 0: skipped */
    }

    /* the WAL item on a server that never replayed: CRITICAL */
    memset(rt, 0, sizeof *rt);
    spec.sql[0] = '\0';
    snprintf(spec.wal_end, sizeof spec.wal_end, "%s", g_walfile);
    fails = rt_checks_run(s, &spec, "", rt);
    assert_int_equal(fails, 1);
    it = item(rt, "WAL replay");
    assert_non_null(it);
    assert_false(it->ok);
    assert_non_null(strstr(it->detail, "replayed no WAL"));
    /* with a target the end of the archive does not matter */
    memset(rt, 0, sizeof *rt);
    fails = rt_checks_run(s, &spec, "time", rt);
    assert_int_equal(fails, 0);
    assert_null(item(rt, "WAL replay"));

    /* a table that cannot be read is named */
    PGconn *c = connect_to(s, "db2");
    exec_ok(c, "CREATE TABLE broken (x int)");
    char path[64];
    value_of(c, "SELECT pg_relation_filepath('broken')", path, sizeof path);
    PQfinish(c);
    char file[PATH_MAX + 64];
    snprintf(file, sizeof file, "%s/%s", s->data, path);
    assert_int_equal(unlink(file), 0);
    memset(rt, 0, sizeof *rt);
    spec.wal_end[0] = '\0';
    fails = rt_checks_run(s, &spec, "", rt);
    assert_int_equal(fails, 1);
    it = item(rt, "databases");
    assert_false(it->ok);
    assert_non_null(strstr(it->detail, "database db2: table public.broken: "));

    /* a long restore_test_sql gives up when the job is cancelled */
    atomic_int cancel = 0;
    s->cancel = &cancel;
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, cancel_later, &cancel), 0);
    memset(rt, 0, sizeof *rt);
    snprintf(spec.sql, sizeof spec.sql, "SELECT pg_sleep(30) IS NOT NULL");
    int64_t t0 = bq_mono_ms();
    fails = rt_checks_run(s, &spec, "", rt);
    assert_true(bq_mono_ms() - t0 < 8000);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_true(fails >= 1);
    it = item(rt, "restore_test_sql");
    assert_non_null(it);
    assert_false(it->ok);
    assert_non_null(strstr(it->detail, "cancelled"));
    /* and so does one that runs past the test's timeout */
    s->cancel = NULL;
    s->deadline_ms = bq_mono_ms() + 1500;
    memset(rt, 0, sizeof *rt);
    t0 = bq_mono_ms();
    fails = rt_checks_run(s, &spec, "", rt);
    assert_true(bq_mono_ms() - t0 < 8000);
    it = item(rt, "restore_test_sql");
    assert_non_null(it);
    assert_false(it->ok);
    assert_true(strstr(it->detail, "timeout") != NULL);

    server_down(s);
    bq_errbuf_t e;
    assert_int_equal(rt_dir_remove(dir, &e), 0);
    assert_false(exists(dir));
    free(rt);
    free(s);
}

/* ---- archive recovery: to the end of pg_wal, and a target never reached ---- */

static void test_recovery(void **state)
{
    (void)state;
    if (g_skip)
        skip();
    char dir[PATH_MAX];
    copy_cluster("rt-2-1", dir, sizeof dir);
    conf_add(dir, "recovery.signal", "");
    conf_add(dir, "postgresql.auto.conf", "restore_command = 'false'\n"
                                          "recovery_target_timeline = 'latest'\n"
                                          "recovery_target_action = 'promote'\n");
    rt_server_t *s = calloc(1, sizeof *s);
    bq_restore_test_t *rt = calloc(1, sizeof *rt);
    assert_non_null(s);
    assert_non_null(rt);
    server_up(s, dir, NULL);
    assert_true(s->replay_lsn != 0);
    bq_rt_spec_t spec;
    memset(&spec, 0, sizeof spec);
    spec.system_identifier = g_sysid;
    snprintf(spec.wal_end, sizeof spec.wal_end, "%s", g_walfile);
    int fails = rt_checks_run(s, &spec, "", rt);
    const bq_check_item_t *it = item(rt, "WAL replay");
    assert_non_null(it);
    if (!it->ok)
        print_error("WAL replay: %s\n", it->detail);
    assert_int_equal(fails, 0);
    assert_true(rt->reached_lsn != 0);
    assert_true(rt->wal_segments >= 1);
    assert_non_null(strstr(it->detail, "replayed to "));
    /* the archive said it went further: the next segment is missing */
    uint32_t tli, hi, lo;
    assert_int_equal(bq_wal_segment_parse(g_walfile, &tli, &hi, &lo), 0);
    snprintf(spec.wal_end, sizeof spec.wal_end, "%08X%08X%08X", tli, hi, lo + 3);
    char missing[32];
    pg_wal_file_name(tli, (uint64_t)hi * 256 + lo + 1, 16u << 20, missing, sizeof missing);
    memset(rt, 0, sizeof *rt);
    fails = rt_checks_run(s, &spec, "", rt);
    assert_int_equal(fails, 1);
    it = item(rt, "WAL replay");
    assert_false(it->ok);
    assert_non_null(strstr(it->detail, "before the end of the archive"));
    assert_non_null(strstr(it->detail, missing));
    server_down(s);
    bq_errbuf_t e;
    assert_int_equal(rt_dir_remove(dir, &e), 0);

    /* a target after the end of the WAL: the server gives up, its FATAL line comes back */
    copy_cluster("rt-3-1", dir, sizeof dir);
    conf_add(dir, "recovery.signal", "");
    conf_add(dir, "postgresql.auto.conf", "restore_command = 'false'\n"
                                          "recovery_target_time = '2199-01-01 00:00:00+00'\n"
                                          "recovery_target_action = 'promote'\n");
    memset(s, 0, sizeof *s);
    assert_int_equal(rt_server_init(s, dir, BINDIR, "", "test-worker", &e), 0);
    s->deadline_ms = bq_mono_ms() + WAIT_MS;
    assert_int_equal(rt_server_files(s, &e), 0);
    assert_int_equal(rt_server_start(s, &e), 0);
    track(s->pid);
    pid_t pid = s->pid;
    int rc = rt_server_wait(s, &e);
    assert_int_equal(rc, BQ_E_PG);
    assert_non_null(strstr(e.msg, "recovery ended before configured recovery target was reached"));
    assert_int_equal(s->pid, 0); /* reaped */
    assert_false(proc_running(pid));
    assert_int_equal(rt_dir_remove(dir, &e), 0);
    free(rt);
    free(s);
}

/* ---- cancel and timeout while waiting ---- */

static void test_wait_cancel(void **state)
{
    (void)state;
    if (g_skip)
        skip();
    char dir[PATH_MAX];
    copy_cluster("rt-4-1", dir, sizeof dir);
    /* a standby that never ends recovery */
    conf_add(dir, "standby.signal", "");
    conf_add(dir, "postgresql.auto.conf", "restore_command = 'false'\n");
    rt_server_t *s = calloc(1, sizeof *s);
    assert_non_null(s);
    bq_errbuf_t e;
    assert_int_equal(rt_server_init(s, dir, BINDIR, "", "test-worker", &e), 0);
    s->deadline_ms = bq_mono_ms() + 4000;
    assert_int_equal(rt_server_files(s, &e), 0);
    assert_int_equal(rt_server_start(s, &e), 0);
    track(s->pid);
    int64_t t0 = bq_mono_ms();
    assert_int_equal(rt_server_wait(s, &e), BQ_E_TIMEOUT);
    assert_true(bq_mono_ms() - t0 < 10000);
    assert_non_null(strstr(e.msg, "recovery did not end before the test's timeout"));
    assert_true(s->pid > 0);
    atomic_int cancel = 1;
    s->cancel = &cancel;
    s->deadline_ms = bq_mono_ms() + WAIT_MS;
    assert_int_equal(rt_server_wait(s, &e), BQ_E_CANCELLED);
    server_down(s);
    assert_int_equal(rt_dir_remove(dir, &e), 0);
    free(s);
}

/* ---- the sweep ---- */

static void test_sweep(void **state)
{
    (void)state;
    if (g_skip)
        skip();
    bq_errbuf_t e = {{0}};
    /* a killed attempt: its server still running, its lock file there but not held */
    char dir9[PATH_MAX];
    copy_cluster("rt-9-1", dir9, sizeof dir9);
    char lock[PATH_MAX + 8];
    snprintf(lock, sizeof lock, "%s/.lock", dir9);
    int fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    close(fd);
    rt_server_t *s = calloc(1, sizeof *s);
    assert_non_null(s);
    server_up(s, dir9, NULL);
    const pid_t pid = s->pid;
    assert_true(proc_running(pid));
    /* a running test's directory, lock held */
    char dir8[PATH_MAX];
    int lock8 = -1;
    assert_int_equal(rt_dir_make(g_scratch, 8, 1, dir8, sizeof dir8, &lock8, &e), 0);
    assert_true(lock8 >= 0);
    assert_int_equal(rt_dir_make(g_scratch, 8, 1, dir8, sizeof dir8, &fd, &e), BQ_E_EXISTS);
    /* leftovers with no lock file at all, one of them the job to keep */
    char dir7[PATH_MAX + 16], dir6[PATH_MAX + 16];
    snprintf(dir7, sizeof dir7, "%s/rt-7-2", g_scratch);
    snprintf(dir6, sizeof dir6, "%s/rt-6-1/data/base", g_scratch);
    assert_int_equal(mkdir(dir7, 0700), 0);
    assert_int_equal(run("mkdir -p '%s'", dir6), 0);
    snprintf(dir6, sizeof dir6, "%s/rt-6-1", g_scratch);
    char other[PATH_MAX + 16];
    snprintf(other, sizeof other, "%s/not-a-test", g_scratch);
    assert_int_equal(mkdir(other, 0700), 0);

    int64_t t0 = bq_mono_ms();
    assert_int_equal(jobs_restore_test_sweep(g_scratch, 7, &e), 0);
    assert_true(bq_mono_ms() - t0 < 15000);
    /* the server got SIGQUIT: our child, so a zombie until we reap it */
    assert_false(proc_running(pid));
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    char proc[64];
    snprintf(proc, sizeof proc, "/proc/%d", (int)pid);
    assert_false(exists(proc));
    s->pid = 0;
    assert_false(exists(dir9));
    assert_false(exists(dir6));
    assert_true(exists(dir8));  /* locked: a running test */
    assert_true(exists(dir7));  /* keep_job */
    assert_true(exists(other)); /* not ours */
    assert_int_equal(jobs_restore_test_sweep(g_scratch, 0, &e), 0);
    assert_false(exists(dir7));
    assert_true(exists(dir8));
    /* once its lock is released it is a leftover too */
    close(lock8);
    assert_int_equal(jobs_restore_test_sweep(g_scratch, 0, &e), 0);
    assert_false(exists(dir8));
    assert_int_equal(rmdir(other), 0);
    /* no scratch: nothing to do */
    char none[PATH_MAX + 16];
    snprintf(none, sizeof none, "%s/absent", g_tmp);
    assert_int_equal(jobs_restore_test_sweep(none, 0, &e), 0);
    free(s);
}

/* ---- removal never follows a symlink ---- */

static void test_remove(void **state)
{
    (void)state;
    if (g_skip)
        skip();
    char base[PATH_MAX + 16], outside[PATH_MAX + 16], path[PATH_MAX + 64];
    snprintf(base, sizeof base, "%s/rm", g_tmp);
    snprintf(outside, sizeof outside, "%s/outside", g_tmp);
    assert_int_equal(run("mkdir -p '%s/a/b/c' '%s/keep' && echo x >'%s/keep/file' && "
                         "echo y >'%s/a/b/c/f' && ln -s '%s/keep' '%s/a/link' && "
                         "ln -s '%s/keep/file' '%s/a/b/flink' && chmod 0 '%s/a/b/c'",
                         base, outside, outside, base, outside, base, outside, base, base), 0);
    bq_errbuf_t e = {{0}};
    int rc = rt_dir_remove(base, &e);
    if (geteuid() == 0) { /* root reads a mode-0 directory */
        if (rc)
            print_error("%s\n", e.msg);
        assert_int_equal(rc, 0);
        assert_false(exists(base));
    } else { /* the test user cannot: said, nothing outside touched */
        assert_int_equal(rc, BQ_E_IO);
        assert_non_null(strstr(e.msg, "/rm/a/b/c"));
        run("chmod 700 '%s/a/b/c'", base);
        assert_int_equal(rt_dir_remove(base, &e), 0);
    }
    snprintf(path, sizeof path, "%s/keep/file", outside);
    assert_true(exists(path));
    /* a symlink as the top: the link goes, not what it points to */
    assert_int_equal(symlink(outside, base), 0);
    assert_int_equal(rt_dir_remove(base, &e), 0);
    assert_false(exists(base));
    assert_true(exists(path));
    assert_int_equal(rt_dir_remove(outside, &e), 0);
    assert_false(exists(outside));
    assert_int_equal(rt_dir_remove(outside, &e), 0); /* absent */
    assert_int_equal(rt_dir_remove("/", &e), BQ_E_INVAL);
}

/* ---- the WAL item's arithmetic ---- */

static void test_wal_item(void **state)
{
    (void)state;
    static const struct {
        uint64_t reached, start;
        uint32_t seg;
        const char *end;
        int ok;
        uint64_t segments;
        const char *detail;
    } cases[] = {
        /* reached inside the last segment */
        {0x5000028, 0x2000028, 16u << 20, "000000010000000000000005", 1, 4,
         "replayed to 0/5000028 (4 segments)"},
        /* exactly at the end of the last segment: still that segment */
        {0x6000000, 0x2000028, 16u << 20, "000000010000000000000005", 1, 4,
         "replayed to 0/6000000 (4 segments)"},
        /* past it (the archive index lags) */
        {0x7000100, 0x2000028, 16u << 20, "000000010000000000000005", 1, 6, "(6 segments)"},
        /* one segment short: the next one is missing */
        {0x4000100, 0x2000028, 16u << 20, "000000010000000000000005", 0, 3,
         "recovery ended at 0/4000100 (segment 000000010000000000000004) before the end of the "
         "archive (000000010000000000000005): WAL segment 000000010000000000000005 is missing "
         "or unreadable"},
        /* across the 4 GiB boundary of the names, on timeline 3 */
        {0x1FF000010ull, 0x100000000ull, 16u << 20, "000000030000000200000003", 0, 256,
         "segment 0000000300000001000000FF) before the end of the archive (000000030000000200000003): WAL segment 000000030000000200000000 is missing"},
        {0x1FF000010ull, 0x100000000ull, 16u << 20, "000000030000000100000000", 1, 256,
         "(256 segments)"},
        /* 1 GiB segments */
        {0x80000010ull, 0x10ull, 1u << 30, "000000010000000000000003", 0, 3,
         "WAL segment 000000010000000000000003 is missing"},
        {0x80000010ull, 0x10ull, 1u << 30, "000000010000000000000002", 1, 3, "(3 segments)"},
        {0x40000010ull, 0x10ull, 1u << 30, "000000010000000000000001", 1, 2, "(2 segments)"},
        {0x20, 0x10ull, 1u << 30, "000000010000000000000000", 1, 1, "(1 segment)"},
        /* nothing replayed */
        {0, 0x2000028, 16u << 20, "000000010000000000000005", 0, 0,
         "WAL segment 000000010000000000000002 is missing"},
        /* a bad name, a bad size */
        {0x5000028, 0x2000028, 16u << 20, "00000001000000000000000g", 0, 4, "is not a WAL segment"},
        {0x5000028, 0x2000028, 12345, "000000010000000000000005", 0, 0, "not a power of two"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bq_check_item_t it;
        rt_check_wal(cases[i].reached, cases[i].start, cases[i].seg, cases[i].end, &it);
        if (it.ok != cases[i].ok || !strstr(it.detail, cases[i].detail))
            print_error("case %zu: %d %s\n", i, it.ok, it.detail);
        assert_string_equal(it.name, "WAL replay");
        assert_int_equal(it.ok, cases[i].ok);
        assert_int_equal(it.severity, cases[i].ok ? BQ_SEV_OK : BQ_SEV_CRITICAL);
        assert_non_null(strstr(it.detail, cases[i].detail));
        assert_true(strlen(it.detail) < BQ_DETAIL_MAX);
        if (cases[i].seg == (16u << 20) || cases[i].seg == (1u << 30))
            assert_int_equal(rt_wal_segments(cases[i].reached, cases[i].start, cases[i].seg),
                             cases[i].segments);
    }
}

/* ---- small pieces ---- */

static void test_pieces(void **state)
{
    (void)state;
    char buf[256];
    rt_bindir("", 150004, buf, sizeof buf);
    assert_string_equal(buf, "/usr/lib/postgresql/15/bin");
    rt_bindir(NULL, 0, buf, sizeof buf);
    assert_string_equal(buf, "/usr/lib/postgresql/15/bin");
    rt_bindir("", 160002, buf, sizeof buf);
    assert_string_equal(buf, "/usr/lib/postgresql/16/bin");
    rt_bindir("/opt/pg/bin", 150004, buf, sizeof buf);
    assert_string_equal(buf, "/opt/pg/bin");

    bq_recovery_t r;
    memset(&r, 0, sizeof r);
    r.enabled = 1;
    rt_target_text(&r, buf, sizeof buf);
    assert_string_equal(buf, "latest WAL");
    snprintf(r.kind, sizeof r.kind, "time");
    snprintf(r.value, sizeof r.value, "2026-01-02 03:04:05+00");
    rt_target_text(&r, buf, sizeof buf);
    assert_string_equal(buf, "time 2026-01-02 03:04:05+00");
    snprintf(r.kind, sizeof r.kind, "immediate");
    r.value[0] = '\0';
    rt_target_text(&r, buf, sizeof buf);
    assert_string_equal(buf, "immediate");

    rt_conninfo_user("host=db1 user=app dbname=x", buf, sizeof buf);
    assert_string_equal(buf, "app");
    rt_conninfo_user("postgresql://bob@db1:5432/x", buf, sizeof buf);
    assert_string_equal(buf, "bob");
    rt_conninfo_user("host=db1", buf, sizeof buf);
    assert_string_equal(buf, "postgres");
    rt_conninfo_user("host='unterminated", buf, sizeof buf);
    assert_string_equal(buf, "postgres");

    uid_t uid;
    gid_t gid;
    int setid;
    bq_errbuf_t e;
    assert_int_equal(rt_test_user("no_such_user_xyz", "w1", buf, sizeof buf, &uid, &gid, &setid,
                                  &e), BQ_E_NOTFOUND);
    assert_non_null(strstr(e.msg, "restore_test_user no_such_user_xyz is not a user on worker w1"));
    if (geteuid() == 0) {
        assert_int_equal(rt_test_user("root", "w1", buf, sizeof buf, &uid, &gid, &setid, &e),
                         BQ_E_CONFIG);
        assert_non_null(strstr(e.msg, "as root"));
        assert_int_equal(rt_test_user("", "w1", buf, sizeof buf, &uid, &gid, &setid, &e), 0);
        assert_string_equal(buf, "postgres");
        assert_true(setid);
    } else {
        assert_int_equal(rt_test_user("", "w1", buf, sizeof buf, &uid, &gid, &setid, &e), 0);
        assert_int_equal(uid, geteuid());
        assert_false(setid);
    }

    /* the log's last lines: severities first, from the last start on */
    char log[PATH_MAX + 16], tail[512];
    snprintf(log, sizeof log, "%s/tail.log", g_tmp[0] ? g_tmp : "/tmp");
    FILE *f = fopen(log, "w");
    assert_non_null(f);
    fputs("2026-01-01 00:00:00 UTC [9] FATAL:  an old start\n", f);
    long from = ftell(f);
    fputs("2026-01-01 00:00:01 UTC [10] LOG:  starting PostgreSQL 15\n"
          "2026-01-01 00:00:01 UTC [10] FATAL:  recovery ended before configured recovery "
          "target was reached\n"
          "2026-01-01 00:00:01 UTC [10] LOG:  startup process (PID 11) exited with exit code 1\n"
          "2026-01-01 00:00:01 UTC [10] LOG:  database system is shut down\n", f);
    assert_int_equal(fclose(f), 0);
    rt_log_tail(log, from, tail, sizeof tail);
    assert_string_equal(tail, "FATAL: recovery ended before configured recovery target was "
                              "reached");
    rt_log_tail(log, 0, tail, sizeof tail);
    assert_string_equal(tail, "FATAL: an old start; FATAL: recovery ended before configured "
                              "recovery target was reached");
    f = fopen(log, "w");
    assert_non_null(f);
    fputs("one\ntwo\n\nthree\tand\nfour\n", f);
    assert_int_equal(fclose(f), 0);
    rt_log_tail(log, 0, tail, sizeof tail);
    assert_string_equal(tail, "two; three and; four");
    rt_log_tail("/nonexistent/log", 0, tail, sizeof tail);
    assert_string_equal(tail, "");
    unlink(log);

    rt_server_t *s = calloc(1, sizeof *s);
    assert_non_null(s);
    assert_int_equal(rt_server_init(s, "/tmp/x", "/nonexistent/bin", "", "w1", &e), BQ_E_CONFIG);
    assert_non_null(strstr(e.msg, "/nonexistent/bin/postgres cannot be run on worker w1"));
    char longdir[200];
    memset(longdir, 'a', sizeof longdir - 1);
    longdir[0] = '/';
    longdir[sizeof longdir - 1] = '\0';
    assert_int_equal(rt_server_init(s, longdir, BINDIR, "", "w1", &e), BQ_E_CONFIG);
    assert_non_null(strstr(e.msg, "use a shorter [worker] scratch"));
    free(s);
}

/* ---- the job's refusals and its cleanup ---- */

static void job_progress(jobs_ctx_t *ctx, uint64_t done, uint64_t total, const char *msg)
{
    (void)ctx;
    (void)done;
    (void)total;
    (void)msg;
}

static void test_job_refusals(void **state)
{
    (void)state;
    if (g_skip)
        skip();
    char scratch[PATH_MAX + 16];
    snprintf(scratch, sizeof scratch, "%s/jobscratch", g_tmp);
    assert_int_equal(mkdir(scratch, 0711), 0);
    atomic_int cancel = 0;
    jobs_ctx_t ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.cancel = &cancel;
    ctx.progress = job_progress;
    ctx.worker = "w1";
    ctx.no_store = "worker w1 has no store";
    ctx.cli_command = "";
    ctx.scratch = "";
    ctx.restore_test_user = "";
    ctx.pg_bindir = "";
    bq_job_t *job = calloc(1, sizeof *job);
    bq_msg_result_t *res = calloc(1, sizeof *res);
    assert_non_null(job);
    assert_non_null(res);
    job->id = 5;
    job->attempt = 1;
    job->type = BQ_JOB_RESTORE_TEST;
    snprintf(job->cluster, sizeof job->cluster, "c1");
    snprintf(job->site, sizeof job->site, "east");
    snprintf(job->backup_id, sizeof job->backup_id, "20260101T000000");
    snprintf(job->rt.kind, sizeof job->rt.kind, "manual");
    job->rt.pg_version = 150004;
    job->recovery.enabled = 1;
    snprintf(job->recovery.tli, sizeof job->recovery.tli, "latest");
    snprintf(job->recovery.action, sizeof job->recovery.action, "promote");

    /* no scratch */
    jobs_restore_test(job, &ctx, res);
    assert_false(res->ok);
    assert_false(res->retryable);
    assert_true(res->has_rtest);
    assert_non_null(strstr(res->error, "restore test of backup 20260101T000000 of cluster c1: "));
    assert_non_null(strstr(res->error, "worker w1"));
    assert_non_null(strstr(res->error, "[worker] scratch"));
    assert_string_equal(res->rtest.error, res->error);
    assert_string_equal(res->rtest.cluster, "c1");
    assert_int_equal(res->rtest.job_id, 5);
    assert_string_equal(res->rtest.backup_id, "20260101T000000");
    assert_string_equal(res->rtest.kind, "manual");
    assert_string_equal(res->rtest.worker, "w1");
    assert_string_equal(res->rtest.target, "latest WAL");
    assert_true(res->rtest.started_ms > 0);
    assert_true(res->rtest.finished_ms >= res->rtest.started_ms);
    assert_false(res->rtest.ok);

    /* not enough space: refused before anything is written */
    memset(res, 0, sizeof *res);
    ctx.scratch = scratch;
    job->rt.data_bytes = 1ull << 62;
    jobs_restore_test(job, &ctx, res);
    assert_false(res->ok);
    assert_false(res->retryable);
    assert_true(res->has_rtest);
    if (!strstr(res->error, "nothing was written"))
        print_error("%s\n", res->error);
    assert_non_null(strstr(res->error, "free; the restore test of backup 20260101T000000 needs "));
    assert_non_null(strstr(res->error, "(4294967296.0 GiB of data + 64 MiB for WAL replay): "
                                       "nothing was written"));
    assert_true(dir_empty(scratch));

    /* the restore fails (this worker has no store): its message kept, the directory gone */
    memset(res, 0, sizeof *res);
    job->rt.data_bytes = 1 << 20;
    jobs_restore_test(job, &ctx, res);
    assert_false(res->ok);
    assert_true(res->has_rtest);
    assert_non_null(strstr(res->error, "restore test of backup 20260101T000000 of cluster c1: "
                                       "restore of backup 20260101T000000 of cluster c1 to "));
    assert_non_null(strstr(res->error, "rt-5-1/data: worker w1 has no store"));
    assert_true(dir_empty(scratch));

    /* a test user that cannot be: refused before anything is written */
    memset(res, 0, sizeof *res);
    ctx.restore_test_user = "no_such_user_xyz";
    jobs_restore_test(job, &ctx, res);
    assert_false(res->ok);
    assert_non_null(strstr(res->error, "restore_test_user no_such_user_xyz is not a user"));
    assert_true(dir_empty(scratch));
    ctx.restore_test_user = "";

    /* binaries that are not there */
    memset(res, 0, sizeof *res);
    ctx.pg_bindir = "/nonexistent/bin";
    jobs_restore_test(job, &ctx, res);
    assert_false(res->ok);
    assert_non_null(strstr(res->error, "/nonexistent/bin/postgres cannot be run"));
    assert_true(dir_empty(scratch));
    ctx.pg_bindir = "";

    /* cancelled before it started */
    memset(res, 0, sizeof *res);
    cancel = 1;
    jobs_restore_test(job, &ctx, res);
    assert_false(res->ok);
    assert_non_null(strstr(res->error, ": cancelled"));
    assert_true(dir_empty(scratch));

    assert_int_equal(rmdir(scratch), 0);
    free(res);
    free(job);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wal_item),
        cmocka_unit_test(test_pieces),
        cmocka_unit_test(test_template),
        cmocka_unit_test(test_plain_checks),
        cmocka_unit_test(test_recovery),
        cmocka_unit_test(test_wait_cancel),
        cmocka_unit_test(test_sweep),
        cmocka_unit_test(test_remove),
        cmocka_unit_test(test_job_refusals),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
