/* The coordinator's catalog on a real LMDB environment in a temporary directory. */
#include "catalog.h"

#include <lmdb.h>

#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <setjmp.h>
#include <cmocka.h>

#define MIB (1ull << 20)

typedef struct {
    char dir[PATH_MAX];
} fixture_t;

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/bq-catalog-test-XXXXXX");
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
    /* the catalog itself lives one level down, so catalog_open creates its directory */
    strncat(f->dir, "/catalog", sizeof f->dir - strlen(f->dir) - 1);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    char *slash = strrchr(f->dir, '/');
    *slash = '\0';
    int rc = nftw(f->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return rc;
}

static catalog_t *open_ok(const char *dir, uint64_t map_max)
{
    catalog_t *c = NULL;
    bq_errbuf_t e = {{0}};
    int rc = catalog_open(dir, map_max, &c, &e);
    if (rc)
        fail_msg("catalog_open(%s): %s: %s", dir, bq_err_name(rc), e.msg);
    assert_non_null(c);
    return c;
}

static catalog_txn_t *begin_ok(catalog_t *c, int write)
{
    catalog_txn_t *t = NULL;
    bq_errbuf_t e = {{0}};
    int rc = catalog_txn_begin(c, write, &t, &e);
    if (rc)
        fail_msg("catalog_txn_begin: %s: %s", bq_err_name(rc), e.msg);
    return t;
}

static void commit_ok(catalog_txn_t **t)
{
    bq_errbuf_t e = {{0}};
    int rc = catalog_txn_commit(t, &e);
    if (rc)
        fail_msg("catalog_txn_commit: %s: %s", bq_err_name(rc), e.msg);
    assert_null(*t);
}

#define assert_contains(s, sub)                                                           \
    do {                                                                                  \
        if (!strstr((s), (sub)))                                                          \
            fail_msg("\"%s\" does not contain \"%s\"", (s), (sub));                       \
    } while (0)

static void job_fill(bq_job_t *j, const char *cluster, size_t error_len)
{
    memset(j, 0, sizeof *j);
    j->type = BQ_JOB_CHECK;
    j->state = BQ_JOB_QUEUED;
    snprintf(j->cluster, sizeof j->cluster, "%s", cluster);
    snprintf(j->site, sizeof j->site, "east");
    snprintf(j->conninfo, sizeof j->conninfo,
             "host=db1.example.com port=5432 user=barque dbname=postgres");
    j->max_attempts = 3;
    j->created_ms = 1700000000000;
    j->updated_ms = 1700000000000;
    if (error_len >= sizeof j->error)
        error_len = sizeof j->error - 1;
    memset(j->error, 'x', error_len);
}

/* ---- jobs ----------------------------------------------------------------------------- */

typedef struct {
    uint64_t ids[64];
    size_t n;
    size_t stop_after; /* 0: never */
} collect_t;

static int collect_job(const bq_job_t *j, void *arg)
{
    collect_t *x = arg;
    if (x->n < 64)
        x->ids[x->n] = j->id;
    x->n++;
    return x->stop_after && x->n == x->stop_after ? 42 : 0;
}

static void test_jobs(void **state)
{
    fixture_t *f = *state;
    catalog_t *c = open_ok(f->dir, 16 * MIB);
    bq_errbuf_t e = {{0}};

    catalog_txn_t *t = begin_ok(c, 1);
    for (uint64_t i = 1; i <= 5; i++) {
        bq_job_t j;
        job_fill(&j, i % 2 ? "odd" : "even", 0);
        j.id = 777; /* overwritten */
        assert_int_equal(catalog_job_new(t, &j, &e), 0);
        assert_int_equal(j.id, i);
    }
    commit_ok(&t);

    bq_job_t *j = malloc(sizeof *j);
    assert_non_null(j);
    t = begin_ok(c, 0);
    assert_int_equal(catalog_job_get(t, 3, j, &e), 0);
    assert_int_equal(j->id, 3);
    assert_string_equal(j->cluster, "odd");
    assert_string_equal(j->site, "east");
    assert_int_equal(j->state, BQ_JOB_QUEUED);
    assert_int_equal(j->type, BQ_JOB_CHECK);
    assert_int_equal(j->max_attempts, 3);
    assert_int_equal(j->created_ms, 1700000000000);

    assert_int_equal(catalog_job_get(t, 99, j, &e), BQ_E_NOTFOUND);
    assert_contains(e.msg, "job 99");
    assert_contains(e.msg, "db jobs");
    assert_contains(e.msg, f->dir);
    assert_contains(e.msg, "MDB_NOTFOUND");

    collect_t all = {0};
    assert_int_equal(catalog_job_each(t, collect_job, &all, &e), 0);
    assert_int_equal(all.n, 5);
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(all.ids[i], i + 1);

    collect_t some = {.stop_after = 2};
    assert_int_equal(catalog_job_each(t, collect_job, &some, &e), 42);
    assert_int_equal(some.n, 2);

    /* a read transaction refuses writes, and stays usable */
    assert_int_equal(catalog_job_put(t, j, &e), BQ_E_STATE);
    assert_int_equal(catalog_job_get(t, 1, j, &e), 0);
    catalog_txn_abort(&t);
    assert_null(t);

    /* put replaces; only assigned ids */
    t = begin_ok(c, 1);
    assert_int_equal(catalog_job_get(t, 3, j, &e), 0);
    j->state = BQ_JOB_FAILED;
    j->attempt = 2;
    snprintf(j->error, sizeof j->error, "connection refused");
    assert_int_equal(catalog_job_put(t, j, &e), 0);
    j->id = 0;
    assert_int_equal(catalog_job_put(t, j, &e), BQ_E_INVAL);
    j->id = 6;
    assert_int_equal(catalog_job_put(t, j, &e), BQ_E_INVAL);
    assert_contains(e.msg, "job 6");
    commit_ok(&t);

    t = begin_ok(c, 0);
    assert_int_equal(catalog_job_get(t, 3, j, &e), 0);
    assert_int_equal(j->state, BQ_JOB_FAILED);
    assert_int_equal(j->attempt, 2);
    assert_string_equal(j->error, "connection refused");
    catalog_txn_abort(&t);

    /* ids persist across close and reopen */
    catalog_destroy(&c);
    assert_null(c);
    catalog_destroy(&c);
    c = open_ok(f->dir, 16 * MIB);
    t = begin_ok(c, 1);
    job_fill(j, "again", 0);
    assert_int_equal(catalog_job_new(t, j, &e), 0);
    assert_int_equal(j->id, 6);
    commit_ok(&t);
    t = begin_ok(c, 0);
    collect_t again = {0};
    assert_int_equal(catalog_job_each(t, collect_job, &again, &e), 0);
    assert_int_equal(again.n, 6);
    for (size_t i = 0; i < 6; i++)
        assert_int_equal(again.ids[i], i + 1);
    assert_int_equal(catalog_job_get(t, 3, j, &e), 0);
    assert_string_equal(j->error, "connection refused");
    catalog_txn_abort(&t);

    catalog_stats_t st;
    assert_int_equal(catalog_stats(c, &st, &e), 0);
    assert_int_equal(st.njobs, 6);
    assert_int_equal(st.map_size, 16 * MIB);
    assert_true(st.used_bytes > 0 && st.used_bytes < st.map_size);

    /* del (job_history): gone for get and each, absent twice is NOTFOUND and the transaction
     * still works; a read transaction refuses it; ids are not handed out again, even when
     * every job is gone */
    t = begin_ok(c, 0);
    assert_int_equal(catalog_job_del(t, 1, &e), BQ_E_STATE);
    uint64_t next = 0;
    assert_int_equal(catalog_job_next_id(t, &next, &e), 0);
    assert_int_equal(next, 7);
    catalog_txn_abort(&t);
    t = begin_ok(c, 1);
    assert_int_equal(catalog_job_del(t, 2, &e), 0);
    assert_int_equal(catalog_job_del(t, 2, &e), BQ_E_NOTFOUND);
    assert_contains(e.msg, "job 2");
    assert_int_equal(catalog_job_get(t, 2, j, &e), BQ_E_NOTFOUND);
    assert_int_equal(catalog_job_get(t, 3, j, &e), 0);
    commit_ok(&t);
    t = begin_ok(c, 0);
    collect_t left = {0};
    assert_int_equal(catalog_job_each(t, collect_job, &left, &e), 0);
    assert_int_equal(left.n, 5);
    assert_int_equal(left.ids[0], 1);
    assert_int_equal(left.ids[1], 3);
    catalog_txn_abort(&t);
    t = begin_ok(c, 1);
    for (uint64_t i = 1; i <= 6; i++)
        if (i != 2)
            assert_int_equal(catalog_job_del(t, i, &e), 0);
    job_fill(j, "after", 0);
    assert_int_equal(catalog_job_new(t, j, &e), 0);
    assert_int_equal(j->id, 7);
    commit_ok(&t);
    assert_int_equal(catalog_stats(c, &st, &e), 0);
    assert_int_equal(st.njobs, 1);
    free(j);
    catalog_destroy(&c);
}

static void test_abort_discards(void **state)
{
    fixture_t *f = *state;
    catalog_t *c = open_ok(f->dir, 16 * MIB);
    bq_errbuf_t e = {{0}};
    bq_job_t *j = malloc(sizeof *j);
    assert_non_null(j);

    catalog_txn_t *t = begin_ok(c, 1);
    job_fill(j, "main", 0);
    assert_int_equal(catalog_job_new(t, j, &e), 0);
    assert_int_equal(j->id, 1);
    bq_worker_t w = {.name = "w1", .site = "east"};
    assert_int_equal(catalog_worker_put(t, &w, &e), 0);
    assert_int_equal(catalog_site_put(t, "east", &e), 0);
    catalog_txn_abort(&t);
    assert_null(t);
    catalog_txn_abort(&t);   /* NULL is fine */
    catalog_txn_abort(NULL);
    assert_int_equal(catalog_txn_commit(&t, &e), BQ_E_INVAL);

    t = begin_ok(c, 0);
    assert_int_equal(catalog_job_get(t, 1, j, &e), BQ_E_NOTFOUND);
    assert_int_equal(catalog_worker_get(t, "w1", &w, &e), BQ_E_NOTFOUND);
    assert_contains(e.msg, "worker \"w1\"");
    assert_contains(e.msg, "db workers");
    catalog_txn_abort(&t);

    /* the aborted id is not lost for good: nothing was committed, so 1 again */
    t = begin_ok(c, 1);
    assert_int_equal(catalog_job_new(t, j, &e), 0);
    assert_int_equal(j->id, 1);
    /* one writer: a second write transaction is refused, not deadlocked */
    catalog_txn_t *t2 = NULL;
    assert_int_equal(catalog_txn_begin(c, 1, &t2, &e), BQ_E_STATE);
    assert_null(t2);
    /* a read transaction alongside sees the last commit */
    t2 = begin_ok(c, 0);
    assert_int_equal(catalog_job_get(t2, 1, j, &e), BQ_E_NOTFOUND);
    catalog_txn_abort(&t2);
    commit_ok(&t);

    catalog_stats_t st;
    assert_int_equal(catalog_stats(c, &st, &e), 0);
    assert_int_equal(st.njobs, 1);
    assert_int_equal(st.nworkers, 0);
    assert_int_equal(st.nsites, 0);
    free(j);
    catalog_destroy(&c);
}

/* ---- workers, clusters, sites ----------------------------------------------------------- */

typedef struct {
    char names[8][BQ_NAME_MAX];
    size_t n;
    size_t stop_after;
} names_t;

static int names_add(names_t *x, const char *name)
{
    if (x->n < 8)
        snprintf(x->names[x->n], BQ_NAME_MAX, "%s", name);
    x->n++;
    return x->stop_after && x->n == x->stop_after ? -7 : 0;
}

static int collect_worker(const bq_worker_t *w, void *arg) { return names_add(arg, w->name); }
static int collect_cluster(const bq_cluster_t *c, void *arg) { return names_add(arg, c->name); }
static int collect_site(const char *name, void *arg) { return names_add(arg, name); }

static void test_workers_clusters_sites(void **state)
{
    fixture_t *f = *state;
    catalog_t *c = open_ok(f->dir, 16 * MIB);
    bq_errbuf_t e = {{0}};

    catalog_txn_t *t = begin_ok(c, 1);
    const char *wnames[] = {"w2", "w1", "w3"};
    for (size_t i = 0; i < 3; i++) {
        bq_worker_t w = {.site = "east", .version = "0.1.0", .max_jobs = 4, .online = 1,
                         .store_free = 1000 + i, .store_total = 5000, .last_seen_ms = 17};
        snprintf(w.name, sizeof w.name, "%s", wnames[i]);
        assert_int_equal(catalog_worker_put(t, &w, &e), 0);
    }
    bq_cluster_t cl = {.name = "main", .site = "east", .conninfo = "host=db1 user=barque",
                       .system_identifier = 7301234567890123456ull};
    assert_int_equal(catalog_cluster_put(t, &cl, &e), 0);
    snprintf(cl.name, sizeof cl.name, "analytics");
    cl.system_identifier = 42;
    assert_int_equal(catalog_cluster_put(t, &cl, &e), 0);
    snprintf(cl.name, sizeof cl.name, "old");
    assert_int_equal(catalog_cluster_put(t, &cl, &e), 0);
    assert_int_equal(catalog_site_put(t, "west", &e), 0);
    assert_int_equal(catalog_site_put(t, "east", &e), 0);
    assert_int_equal(catalog_site_put(t, "east", &e), 0); /* again: same record */
    /* bad names are refused without harming the transaction */
    assert_int_equal(catalog_site_put(t, "", &e), BQ_E_INVAL);
    char longname[BQ_NAME_MAX + 8];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    assert_int_equal(catalog_site_put(t, longname, &e), BQ_E_INVAL);
    commit_ok(&t);

    t = begin_ok(c, 1);
    bq_worker_t w;
    assert_int_equal(catalog_worker_get(t, "w1", &w, &e), 0);
    assert_string_equal(w.name, "w1");
    assert_string_equal(w.site, "east");
    assert_string_equal(w.version, "0.1.0");
    assert_int_equal(w.store_free, 1001);
    assert_int_equal(w.max_jobs, 4);
    w.running = 3;
    w.online = 0;
    assert_int_equal(catalog_worker_put(t, &w, &e), 0); /* replaces */
    assert_int_equal(catalog_cluster_del(t, "old", &e), 0);
    assert_int_equal(catalog_cluster_del(t, "old", &e), BQ_E_NOTFOUND);
    assert_contains(e.msg, "cluster \"old\"");
    assert_contains(e.msg, "db clusters");
    /* a NOTFOUND delete leaves the transaction usable */
    assert_int_equal(catalog_site_put(t, "north", &e), 0);
    commit_ok(&t);

    t = begin_ok(c, 0);
    assert_int_equal(catalog_worker_get(t, "w1", &w, &e), 0);
    assert_int_equal(w.running, 3);
    assert_int_equal(w.online, 0);
    assert_int_equal(catalog_worker_get(t, "w9", &w, &e), BQ_E_NOTFOUND);

    assert_int_equal(catalog_cluster_get(t, "main", &cl, &e), 0);
    assert_string_equal(cl.site, "east");
    assert_string_equal(cl.conninfo, "host=db1 user=barque");
    assert_int_equal(cl.system_identifier, 7301234567890123456ull);
    assert_int_equal(catalog_cluster_get(t, "old", &cl, &e), BQ_E_NOTFOUND);

    names_t ws = {0};
    assert_int_equal(catalog_worker_each(t, collect_worker, &ws, &e), 0);
    assert_int_equal(ws.n, 3);
    assert_string_equal(ws.names[0], "w1");
    assert_string_equal(ws.names[1], "w2");
    assert_string_equal(ws.names[2], "w3");
    names_t ws2 = {.stop_after = 1};
    assert_int_equal(catalog_worker_each(t, collect_worker, &ws2, &e), -7);
    assert_int_equal(ws2.n, 1);

    names_t cs = {0};
    assert_int_equal(catalog_cluster_each(t, collect_cluster, &cs, &e), 0);
    assert_int_equal(cs.n, 2);
    assert_string_equal(cs.names[0], "analytics");
    assert_string_equal(cs.names[1], "main");
    names_t cs2 = {.stop_after = 1};
    assert_int_equal(catalog_cluster_each(t, collect_cluster, &cs2, &e), -7);
    assert_int_equal(cs2.n, 1);

    names_t ss = {0};
    assert_int_equal(catalog_site_each(t, collect_site, &ss, &e), 0);
    assert_int_equal(ss.n, 3);
    assert_string_equal(ss.names[0], "east");
    assert_string_equal(ss.names[1], "north");
    assert_string_equal(ss.names[2], "west");
    names_t ss2 = {.stop_after = 2};
    assert_int_equal(catalog_site_each(t, collect_site, &ss2, &e), -7);
    assert_int_equal(ss2.n, 2);

    /* writes in a read transaction */
    assert_int_equal(catalog_site_put(t, "south", &e), BQ_E_STATE);
    assert_int_equal(catalog_cluster_del(t, "main", &e), BQ_E_STATE);
    catalog_txn_abort(&t);

    catalog_stats_t st;
    assert_int_equal(catalog_stats(c, &st, &e), 0);
    assert_int_equal(st.nworkers, 3);
    assert_int_equal(st.nclusters, 2);
    assert_int_equal(st.nsites, 3);
    assert_int_equal(st.njobs, 0);
    catalog_destroy(&c);
}

/* ---- backups -------------------------------------------------------------------------- */

static void backup_fill(bq_backup_t *b, const char *cluster, const char *id, bq_backup_state_t st)
{
    memset(b, 0, sizeof *b);
    snprintf(b->cluster, sizeof b->cluster, "%s", cluster);
    snprintf(b->id, sizeof b->id, "%s", id);
    b->state = st;
    b->job_id = 7;
    b->attempt = 1;
    snprintf(b->worker, sizeof b->worker, "east-1");
    snprintf(b->site, sizeof b->site, "east");
    b->start_ms = 1700000000000;
    if (st == BQ_BACKUP_DONE) {
        snprintf(b->stores, sizeof b->stores, "east-1");
        b->system_identifier = 7301234567890123456ull;
        b->pg_version = 150004;
        b->timeline = 1;
        b->start_lsn = 0x2000028;
        b->stop_lsn = 0x2000100;
        b->stop_ms = 1700000060000;
        snprintf(b->wal_begin, sizeof b->wal_begin, "000000010000000000000002");
        snprintf(b->wal_end, sizeof b->wal_end, "000000010000000000000002");
        b->data_bytes = 31234567;
        b->stored_bytes = 4123456;
        b->files = 970;
        b->duration_ms = 60000;
    } else if (st == BQ_BACKUP_FAILED) {
        snprintf(b->error, sizeof b->error, "worker east-1 was lost (lease expired)");
    }
}

typedef struct {
    char ids[16][48]; /* "cluster/id" */
    size_t n;
    size_t stop_after;
} backup_names_t;

static int collect_backup(const bq_backup_t *b, void *arg)
{
    backup_names_t *x = arg;
    if (x->n < 16)
        snprintf(x->ids[x->n], sizeof x->ids[0], "%s/%s", b->cluster, b->id);
    x->n++;
    return x->stop_after && x->n == x->stop_after ? 1 : 0;
}

static void id_new_is(catalog_txn_t *t, const char *cluster, int64_t now_ms, const char *want)
{
    char id[BQ_BACKUP_ID_MAX];
    bq_errbuf_t e = {{0}};
    int rc = catalog_backup_id_new(t, cluster, now_ms, id, &e);
    if (rc)
        fail_msg("catalog_backup_id_new(%s): %s", cluster, e.msg);
    if (strcmp(id, want) != 0)
        fail_msg("catalog_backup_id_new(%s, %lld): got %s, want %s", cluster, (long long)now_ms,
                 id, want);
}

static void test_backups(void **state)
{
    fixture_t *f = *state;
    catalog_t *c = open_ok(f->dir, 16 * MIB);
    bq_errbuf_t e = {{0}};
    static bq_backup_t b, b2;

    /* 2023-11-14T22:13:20Z = 1700000000 s */
    catalog_txn_t *t = begin_ok(c, 1);
    id_new_is(t, "db1", 1700000000123, "20231114T221320"); /* nothing yet: the time */
    const struct {
        const char *cluster, *id;
        bq_backup_state_t st;
    } rows[] = {
        {"db1", "20231114T221320", BQ_BACKUP_DONE},   {"db1", "20231101T000000", BQ_BACKUP_FAILED},
        {"db1", "20231120T080000", BQ_BACKUP_STARTED}, {"db", "20990101T000000", BQ_BACKUP_DONE},
        {"db10", "20231114T000000", BQ_BACKUP_DONE},  {"db1-x", "20991231T235959", BQ_BACKUP_DONE},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        backup_fill(&b, rows[i].cluster, rows[i].id, rows[i].st);
        assert_int_equal(catalog_backup_put(t, &b, &e), 0);
    }
    /* bad keys are refused without harming the transaction */
    backup_fill(&b, "db1", "2023-11-14", BQ_BACKUP_DONE);
    assert_int_equal(catalog_backup_put(t, &b, &e), BQ_E_INVAL);
    assert_contains(e.msg, "invalid backup id \"2023-11-14\" of cluster db1");
    backup_fill(&b, "db1", "20231314T000000", BQ_BACKUP_DONE); /* month 13 */
    assert_int_equal(catalog_backup_put(t, &b, &e), BQ_E_INVAL);
    backup_fill(&b, "", "20231114T000000", BQ_BACKUP_DONE);
    assert_int_equal(catalog_backup_put(t, &b, &e), BQ_E_INVAL);
    assert_contains(e.msg, "invalid cluster name");
    assert_int_equal(catalog_backup_get(t, "db1", "latest", &b, &e), BQ_E_INVAL);
    commit_ok(&t);

    t = begin_ok(c, 1);
    /* one cluster's backups in id order; "db" and "db1-x", "db10" are other clusters */
    backup_names_t x = {0};
    assert_int_equal(catalog_backup_each(t, "db1", collect_backup, &x, &e), 0);
    assert_int_equal(x.n, 3);
    assert_string_equal(x.ids[0], "db1/20231101T000000");
    assert_string_equal(x.ids[1], "db1/20231114T221320");
    assert_string_equal(x.ids[2], "db1/20231120T080000");
    backup_names_t all = {0};
    assert_int_equal(catalog_backup_each(t, NULL, collect_backup, &all, &e), 0);
    assert_int_equal(all.n, 6);
    assert_string_equal(all.ids[0], "db/20990101T000000");
    assert_string_equal(all.ids[1], "db1/20231101T000000");
    assert_string_equal(all.ids[4], "db1-x/20991231T235959");
    assert_string_equal(all.ids[5], "db10/20231114T000000");
    backup_names_t none = {0};
    assert_int_equal(catalog_backup_each(t, "db2", collect_backup, &none, &e), 0);
    assert_int_equal(none.n, 0);
    backup_names_t stop = {.stop_after = 2};
    assert_int_equal(catalog_backup_each(t, "db1", collect_backup, &stop, &e), 1);
    assert_int_equal(stop.n, 2);

    /* get copies everything out; put replaces */
    assert_int_equal(catalog_backup_get(t, "db1", "20231114T221320", &b, &e), 0);
    backup_fill(&b2, "db1", "20231114T221320", BQ_BACKUP_DONE);
    assert_memory_equal(&b, &b2, sizeof b);
    assert_int_equal(catalog_backup_get(t, "db1", "20231120T080000", &b, &e), 0);
    assert_int_equal(b.state, BQ_BACKUP_STARTED);
    b.state = BQ_BACKUP_FAILED;
    snprintf(b.error, sizeof b.error, "cancelled");
    assert_int_equal(catalog_backup_put(t, &b, &e), 0);
    assert_int_equal(catalog_backup_get(t, "db1", "20231120T080000", &b2, &e), 0);
    assert_int_equal(b2.state, BQ_BACKUP_FAILED);
    assert_string_equal(b2.error, "cancelled");
    assert_int_equal(catalog_backup_get(t, "db1", "20231120T080001", &b2, &e), BQ_E_NOTFOUND);
    assert_contains(e.msg, "backup 20231120T080001 of cluster \"db1\"");
    assert_contains(e.msg, "db backups");
    assert_int_equal(catalog_backup_get(t, "db2", "20231120T080000", &b2, &e), BQ_E_NOTFOUND);

    /* new ids: the time, or the cluster's last id + 1 s when that is not earlier */
    id_new_is(t, "db1", 1700000000123, "20231120T080001");       /* last is later */
    id_new_is(t, "db1", 1700467200000, "20231120T080001");       /* == last: + 1 s */
    id_new_is(t, "db1", 1700467205999, "20231120T080005");       /* after last: the time */
    id_new_is(t, "db", 1700000000000, "20990101T000001");        /* its next key is db1's */
    /* ids are unique across clusters: db1 has 20231114T221320, so the time + 1 s */
    id_new_is(t, "db10", 1700000000000, "20231114T221321");      /* the db's last key */
    id_new_is(t, "db1-", 1700000000000, "20231114T221321");      /* none of its own */
    id_new_is(t, "zz", 1700000000000, "20231114T221321");        /* past every key */
    id_new_is(t, "zz", 1700000001000, "20231114T221321");        /* the time: free */
    id_new_is(t, "db10", 4102444799000, "21000101T000000");      /* db1-x has the time */
    backup_fill(&b, "db3", "21000101T000000", BQ_BACKUP_DONE);
    assert_int_equal(catalog_backup_put(t, &b, &e), 0);
    id_new_is(t, "db2", 4102444799000, "21000101T000001");       /* db1-x, then db3 */
    assert_int_equal(catalog_backup_del(t, "db3", "21000101T000000", &e), 0);
    char id[BQ_BACKUP_ID_MAX];
    assert_int_equal(catalog_backup_id_new(t, "", 1700000000000, id, &e), BQ_E_INVAL);

    /* del */
    assert_int_equal(catalog_backup_del(t, "db10", "20231114T000000", &e), 0);
    assert_int_equal(catalog_backup_del(t, "db10", "20231114T000000", &e), BQ_E_NOTFOUND);
    assert_contains(e.msg, "backup 20231114T000000 of cluster \"db10\"");
    /* a NOTFOUND delete leaves the transaction usable */
    backup_fill(&b, "db10", "20231115T000000", BQ_BACKUP_DONE);
    assert_int_equal(catalog_backup_put(t, &b, &e), 0);
    commit_ok(&t);

    /* writes in a read transaction */
    t = begin_ok(c, 0);
    assert_int_equal(catalog_backup_put(t, &b, &e), BQ_E_STATE);
    assert_int_equal(catalog_backup_del(t, "db10", "20231115T000000", &e), BQ_E_STATE);
    assert_int_equal(catalog_backup_get(t, "db10", "20231115T000000", &b2, &e), 0);
    assert_memory_equal(&b, &b2, sizeof b);
    catalog_txn_abort(&t);

    catalog_stats_t st;
    assert_int_equal(catalog_stats(c, &st, &e), 0);
    assert_int_equal(st.nbackups, 6);
    catalog_destroy(&c);
}

static void raw_drop(const char *dir, const char *db)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 32), 0);
    assert_int_equal(mdb_env_open(env, dir, MDB_NOTLS, 0600), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, db, 0, &dbi), 0);
    assert_int_equal(mdb_drop(txn, dbi, 1), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

static void raw_put(const char *dir, const char *db, const char *key, const void *val,
                    size_t len);

/* A catalog made before issue 4 has no backups db: it opens, and gets one. A key that is not
 * cluster NUL id is reported, not trusted. */
static void test_backups_old_catalog(void **state)
{
    fixture_t *f = *state;
    bq_errbuf_t e = {{0}};
    catalog_t *c = open_ok(f->dir, 16 * MIB);
    catalog_txn_t *t = begin_ok(c, 1);
    bq_job_t *j = malloc(sizeof *j);
    assert_non_null(j);
    job_fill(j, "db1", 0);
    assert_int_equal(catalog_job_new(t, j, &e), 0);
    commit_ok(&t);
    catalog_destroy(&c);
    raw_drop(f->dir, "backups");

    c = open_ok(f->dir, 16 * MIB);
    t = begin_ok(c, 1);
    assert_int_equal(catalog_job_get(t, 1, j, &e), 0);
    assert_string_equal(j->cluster, "db1");
    static bq_backup_t b;
    backup_fill(&b, "db1", "20240229T120000", BQ_BACKUP_STARTED);
    assert_int_equal(catalog_backup_put(t, &b, &e), 0);
    commit_ok(&t);
    catalog_destroy(&c);

    raw_put(f->dir, "backups", "garbage", "x", 1);
    c = open_ok(f->dir, 16 * MIB);
    t = begin_ok(c, 0);
    backup_names_t x = {0};
    assert_int_equal(catalog_backup_each(t, NULL, collect_backup, &x, &e), BQ_E_CATALOG);
    assert_contains(e.msg, "db backups has a key of 7 bytes that is not a cluster name, a NUL "
                           "and a backup id");
    x.n = 0;
    assert_int_equal(catalog_backup_each(t, "db1", collect_backup, &x, &e), 0);
    assert_int_equal(x.n, 1);
    catalog_txn_abort(&t);
    catalog_stats_t st;
    assert_int_equal(catalog_stats(c, &st, &e), 0);
    assert_int_equal(st.nbackups, 2);
    assert_int_equal(st.njobs, 1);
    free(j);
    catalog_destroy(&c);
}

/* ---- the WAL index --------------------------------------------------------------------- */

static void wal_fill(bq_wal_file_t *w, const char *cluster, const char *name, uint64_t size,
                     const char *store)
{
    memset(w, 0, sizeof *w);
    snprintf(w->cluster, sizeof w->cluster, "%s", cluster);
    snprintf(w->name, sizeof w->name, "%s", name);
    w->size = size;
    snprintf(w->stores, sizeof w->stores, "%s", store);
    w->archived_ms = 1700000000000;
}

typedef struct {
    char names[16][BQ_NAME_MAX + BQ_WAL_FILE_MAX]; /* "cluster/name" */
    size_t n;
    size_t stop_after;
} wal_names_t;

static int collect_wal(const bq_wal_file_t *w, void *arg)
{
    wal_names_t *x = arg;
    if (x->n < 16)
        snprintf(x->names[x->n], sizeof x->names[0], "%s/%s", w->cluster, w->name);
    x->n++;
    return x->stop_after && x->n == x->stop_after ? 1 : 0;
}

static void test_wal(void **state)
{
    fixture_t *f = *state;
    catalog_t *c = open_ok(f->dir, 16 * MIB);
    bq_errbuf_t e = {{0}};
    bq_wal_file_t w, w2;
    const uint64_t seg = 16u << 20;

    catalog_txn_t *t = begin_ok(c, 1);
    const struct {
        const char *cluster, *name;
        uint64_t size;
    } rows[] = {
        {"db1", "00000001000000000000000A", seg},  {"db1", "000000010000000000000009", seg},
        {"db1", "00000002.history", 41},           {"db1", "00000001000000010000000B", seg},
        {"db1", "00000001000000010000000B.partial", seg},
        {"db1", "00000002000000010000000B", seg},  {"db10", "000000010000000000000001", seg},
        {"db1-x", "000000010000000000000001", seg}, {"db", "000000010000000000000001", seg},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        wal_fill(&w, rows[i].cluster, rows[i].name, rows[i].size, "east-1");
        if (catalog_wal_put(t, &w, &e) != 0)
            fail_msg("catalog_wal_put(%s, %s): %s", rows[i].cluster, rows[i].name, e.msg);
    }
    /* what is not a WAL file name, or no cluster, is refused; the transaction goes on */
    const char *bad[] = {"", "00000001000000000000000a", "000000000000000000000001",
                         "000000010000000000000001.backup", "../00000001.history"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        wal_fill(&w, "db1", bad[i], seg, "east-1");
        assert_int_equal(catalog_wal_put(t, &w, &e), BQ_E_INVAL);
        assert_contains(e.msg, "invalid WAL file name");
    }
    wal_fill(&w, "", "000000010000000000000001", seg, "east-1");
    assert_int_equal(catalog_wal_put(t, &w, &e), BQ_E_INVAL);
    assert_contains(e.msg, "invalid cluster name for a WAL file");
    commit_ok(&t);

    t = begin_ok(c, 1);
    /* one cluster's files in name order: timeline, then segment; history first, partial after */
    wal_names_t x = {0};
    assert_int_equal(catalog_wal_each(t, "db1", collect_wal, &x, &e), 0);
    assert_int_equal(x.n, 6);
    assert_string_equal(x.names[0], "db1/000000010000000000000009");
    assert_string_equal(x.names[1], "db1/00000001000000000000000A");
    assert_string_equal(x.names[2], "db1/00000001000000010000000B");
    assert_string_equal(x.names[3], "db1/00000001000000010000000B.partial");
    assert_string_equal(x.names[4], "db1/00000002.history");
    assert_string_equal(x.names[5], "db1/00000002000000010000000B");
    wal_names_t all = {0};
    assert_int_equal(catalog_wal_each(t, NULL, collect_wal, &all, &e), 0);
    assert_int_equal(all.n, 9);
    assert_string_equal(all.names[0], "db/000000010000000000000001");
    assert_string_equal(all.names[7], "db1-x/000000010000000000000001");
    assert_string_equal(all.names[8], "db10/000000010000000000000001");
    wal_names_t none = {0};
    assert_int_equal(catalog_wal_each(t, "db2", collect_wal, &none, &e), 0);
    assert_int_equal(none.n, 0);
    wal_names_t stop = {.stop_after = 2};
    assert_int_equal(catalog_wal_each(t, "db1", collect_wal, &stop, &e), 1);
    assert_int_equal(stop.n, 2);
    assert_int_equal(catalog_wal_each(t, "", collect_wal, &none, &e), BQ_E_INVAL);

    /* get copies out */
    assert_int_equal(catalog_wal_get(t, "db1", "00000002.history", &w2, &e), 0);
    wal_fill(&w, "db1", "00000002.history", 41, "east-1");
    assert_memory_equal(&w, &w2, sizeof w);
    assert_int_equal(catalog_wal_get(t, "db1", "00000001000000000000000B", &w2, &e), BQ_E_NOTFOUND);
    assert_contains(e.msg, "WAL file 00000001000000000000000B of cluster \"db1\"");
    assert_contains(e.msg, "db wal");
    assert_int_equal(catalog_wal_get(t, "db1", "latest", &w2, &e), BQ_E_INVAL);

    /* put merges the stores: another worker's copy is added, the first size and time stay */
    wal_fill(&w, "db1", "000000010000000000000009", seg, "east-2");
    w.archived_ms = 1800000000000;
    assert_int_equal(catalog_wal_put(t, &w, &e), 0);
    assert_int_equal(catalog_wal_get(t, "db1", "000000010000000000000009", &w2, &e), 0);
    assert_string_equal(w2.stores, "east-1,east-2");
    assert_true(w2.archived_ms == 1700000000000 && w2.size == seg);
    wal_fill(&w, "db1", "000000010000000000000009", seg, "east-1"); /* again: no change */
    assert_int_equal(catalog_wal_put(t, &w, &e), 0);
    wal_fill(&w, "db1", "000000010000000000000009", 1, "east-2,west-1,east-1");
    assert_int_equal(catalog_wal_put(t, &w, &e), 0); /* a different size: kept, warned */
    assert_int_equal(catalog_wal_get(t, "db1", "000000010000000000000009", &w2, &e), 0);
    assert_string_equal(w2.stores, "east-1,east-2,west-1");
    assert_true(w2.size == seg);
    /* a record whose stores would overflow is refused, the transaction goes on */
    wal_fill(&w, "db2", "000000010000000000000001", seg, "");
    char name[BQ_NAME_MAX];
    for (int i = 0; i < 5; i++) { /* 4 names of 63 bytes and 3 commas: 255 bytes, the most */
        memset(name, 'a' + i, BQ_NAME_MAX - 1);
        name[BQ_NAME_MAX - 1] = '\0';
        snprintf(w.stores, sizeof w.stores, "%s", name);
        assert_int_equal(catalog_wal_put(t, &w, &e), i < 4 ? 0 : BQ_E_INVAL);
    }
    assert_contains(e.msg, "adding store eeee");
    assert_contains(e.msg, "would make its stores longer than 255 bytes");
    /* one it has already */
    memset(name, 'a', BQ_NAME_MAX - 1);
    snprintf(w.stores, sizeof w.stores, "%s", name);
    assert_int_equal(catalog_wal_put(t, &w, &e), 0);
    assert_int_equal(catalog_wal_get(t, "db2", "000000010000000000000001", &w2, &e), 0);
    assert_int_equal(strlen(w2.stores), BQ_STORES_MAX - 1);
    commit_ok(&t);

    /* writes in a read transaction */
    t = begin_ok(c, 0);
    assert_int_equal(catalog_wal_put(t, &w, &e), BQ_E_STATE);
    catalog_txn_abort(&t);

    catalog_stats_t st;
    assert_int_equal(catalog_stats(c, &st, &e), 0);
    assert_int_equal(st.nwal, 10);
    catalog_destroy(&c);
}

/* A catalog made before issue 5 has no wal db: it opens, and gets one. A key that is not
 * cluster NUL name is reported, not trusted. */
static void test_wal_old_catalog(void **state)
{
    fixture_t *f = *state;
    bq_errbuf_t e = {{0}};
    catalog_t *c = open_ok(f->dir, 16 * MIB);
    catalog_destroy(&c);
    raw_drop(f->dir, "wal");

    c = open_ok(f->dir, 16 * MIB);
    catalog_txn_t *t = begin_ok(c, 1);
    bq_wal_file_t w;
    wal_fill(&w, "db1", "000000010000000000000001", 16u << 20, "east-1");
    assert_int_equal(catalog_wal_put(t, &w, &e), 0);
    commit_ok(&t);
    catalog_destroy(&c);

    raw_put(f->dir, "wal", "aaaaaaa", "x", 1); /* sorts before db1's keys */
    static const char key[] = "db1\0" "000000010000000000000002.old"; /* after ...01 */
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 32), 0);
    assert_int_equal(mdb_env_open(env, f->dir, MDB_NOTLS, 0600), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "wal", 0, &dbi), 0);
    MDB_val k = {sizeof key - 1, (void *)key}, v = {0, (void *)""};
    assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);

    c = open_ok(f->dir, 16 * MIB);
    t = begin_ok(c, 0);
    wal_names_t x = {0};
    assert_int_equal(catalog_wal_each(t, NULL, collect_wal, &x, &e), BQ_E_CATALOG);
    assert_contains(e.msg, "db wal has a key of 7 bytes that is not a cluster name, a NUL and a "
                           "WAL file name");
    x.n = 0;
    assert_int_equal(catalog_wal_each(t, "db1", collect_wal, &x, &e), BQ_E_CATALOG);
    assert_contains(e.msg, "db wal has a key of cluster db1 with \"000000010000000000000002.old\", "
                           "which is not a WAL file name");
    assert_int_equal(x.n, 1);
    catalog_txn_abort(&t);
    catalog_destroy(&c);
}

/* ---- map full, grow ------------------------------------------------------------------- */

static int count_job(const bq_job_t *j, void *arg)
{
    uint64_t *n = arg;
    (*n)++;
    return j->id == *n ? 0 : -1; /* ids 1, 2, 3, ... with no hole */
}

static void test_map_full(void **state)
{
    fixture_t *f = *state;
    catalog_t *c = open_ok(f->dir, 1 * MIB);
    bq_errbuf_t e = {{0}};
    bq_job_t *j = malloc(sizeof *j);
    assert_non_null(j);
    job_fill(j, "main", 900);

    catalog_stats_t st;
    assert_int_equal(catalog_stats(c, &st, &e), 0);
    assert_int_equal(st.map_size, 1 * MIB);

    /* one transaction too big for the map: the put that does not fit fails */
    catalog_txn_t *big = begin_ok(c, 1);
    int rc = 0;
    for (int i = 0; i < 5000 && rc == 0; i++)
        rc = catalog_job_new(big, j, &e);
    assert_int_equal(rc, BQ_E_MAPFULL);
    char want[PATH_MAX + 128];
    snprintf(want, sizeof want, "catalog %s is full (map 1 MiB): could not put job ", f->dir);
    assert_contains(e.msg, want);
    assert_contains(e.msg, "in db jobs, transaction aborted");
    bq_errbuf_t e2 = {{0}};
    assert_int_equal(catalog_site_put(big, "east", &e2), BQ_E_MAPFULL);
    assert_contains(e2.msg, "aborted by an earlier error");
    assert_contains(e2.msg, "is full (map 1 MiB)");
    assert_int_equal(catalog_txn_commit(&big, &e2), BQ_E_MAPFULL);
    assert_null(big);
    assert_int_equal(catalog_stats(c, &st, &e), 0);
    assert_int_equal(st.njobs, 0);

    /* then fill it commit by commit */
    uint64_t committed = 0;
    rc = 0;
    for (int batch = 0; batch < 1000 && rc == 0; batch++) {
        catalog_txn_t *t = begin_ok(c, 1);
        uint64_t added = 0;
        for (int i = 0; i < 50 && rc == 0; i++) {
            rc = catalog_job_new(t, j, &e);
            if (rc == 0)
                added++;
        }
        if (rc == 0) {
            rc = catalog_txn_commit(&t, &e);
            if (rc == 0)
                committed += added;
        } else {
            assert_int_equal(rc, BQ_E_MAPFULL);
            assert_contains(e.msg, "could not put job");
            assert_contains(e.msg, "db jobs");
            /* the transaction is dead: everything on it fails the same way, commit too */
            assert_int_equal(catalog_job_get(t, 1, j, &e2), BQ_E_MAPFULL);
            assert_contains(e2.msg, "aborted by an earlier error");
            assert_int_equal(catalog_job_new(t, j, &e2), BQ_E_MAPFULL);
            if (batch % 2)
                catalog_txn_abort(&t);
            else
                assert_int_equal(catalog_txn_commit(&t, &e2), BQ_E_MAPFULL);
            assert_null(t);
        }
    }
    assert_int_equal(rc, BQ_E_MAPFULL);
    snprintf(want, sizeof want, "catalog %s is full (map 1 MiB)", f->dir);
    assert_contains(e.msg, want);
    print_message("map full after %" PRIu64 " jobs: %s\n", committed, e.msg);
    assert_true(committed > 100);

    /* growing with a transaction open is refused; at the maximum, it says what to raise */
    catalog_txn_t *t = begin_ok(c, 0);
    assert_int_equal(catalog_grow(c, &e), BQ_E_STATE);
    catalog_txn_abort(&t);
    assert_int_equal(catalog_grow(c, &e), BQ_E_MAPFULL);
    snprintf(want, sizeof want,
             "catalog %s is full (1 MiB of 1 MiB): raise catalog_max_size in [coordinator]",
             f->dir);
    assert_string_equal(e.msg, want);

    /* reads go on: everything committed is there */
    t = begin_ok(c, 0);
    uint64_t n = 0;
    assert_int_equal(catalog_job_each(t, count_job, &n, &e), 0);
    assert_int_equal(n, committed);
    assert_int_equal(catalog_job_get(t, committed, j, &e), 0);
    assert_int_equal(j->id, committed);
    assert_int_equal(catalog_job_get(t, committed + 1, j, &e), BQ_E_NOTFOUND);
    catalog_txn_abort(&t);
    catalog_destroy(&c);

    /* a bigger maximum: the write goes through, ids go on */
    c = open_ok(f->dir, 4 * MIB);
    assert_int_equal(catalog_stats(c, &st, &e), 0);
    assert_int_equal(st.map_size, 4 * MIB);
    assert_int_equal(st.njobs, committed);
    t = begin_ok(c, 1);
    for (int i = 0; i < 50; i++)
        assert_int_equal(catalog_job_new(t, j, &e), 0);
    assert_int_equal(j->id, committed + 50);
    commit_ok(&t);
    t = begin_ok(c, 0);
    n = 0;
    assert_int_equal(catalog_job_each(t, count_job, &n, &e), 0);
    assert_int_equal(n, committed + 50);
    catalog_txn_abort(&t);
    catalog_destroy(&c);
    free(j);
}

static void test_grow(void **state)
{
    fixture_t *f = *state;
    bq_errbuf_t e = {{0}};
    catalog_stats_t st;

    /* below 1 MiB is not a catalog size */
    catalog_t *c = NULL;
    assert_int_equal(catalog_open(f->dir, 4096, &c, &e), BQ_E_INVAL);
    assert_null(c);

    c = open_ok(f->dir, 200 * MIB);
    assert_int_equal(catalog_stats(c, &st, &e), 0);
    assert_int_equal(st.map_size, 64 * MIB);
    assert_int_equal(catalog_grow(c, &e), 0);
    assert_int_equal(catalog_stats(c, &st, &e), 0);
    assert_int_equal(st.map_size, 128 * MIB);
    assert_int_equal(catalog_grow(c, &e), 0); /* doubling stops at the maximum */
    assert_int_equal(catalog_stats(c, &st, &e), 0);
    assert_int_equal(st.map_size, 200 * MIB);
    assert_int_equal(catalog_grow(c, &e), BQ_E_MAPFULL);
    assert_contains(e.msg, "(200 MiB of 200 MiB)");

    /* the new size is written by the next commit */
    catalog_txn_t *t = begin_ok(c, 1);
    assert_int_equal(catalog_site_put(t, "east", &e), 0);
    commit_ok(&t);
    catalog_destroy(&c);

    /* reopened: the environment's own size is kept, even above a lowered maximum */
    c = open_ok(f->dir, 2 * MIB);
    assert_int_equal(catalog_stats(c, &st, &e), 0);
    assert_int_equal(st.map_size, 200 * MIB);
    assert_int_equal(st.nsites, 1);
    assert_int_equal(catalog_grow(c, &e), BQ_E_MAPFULL);
    assert_contains(e.msg, "(200 MiB of 2 MiB)");
    catalog_destroy(&c);
}

/* ---- other processes ------------------------------------------------------------------ */

/* In a child: open the catalog with a bigger map and write about 2 MiB of jobs. */
static int child_fill(const char *dir)
{
    catalog_t *c;
    bq_errbuf_t e;
    if (catalog_open(dir, 8 * MIB, &c, &e) != 0)
        return 10;
    bq_job_t *j = malloc(sizeof *j);
    if (!j)
        return 11;
    job_fill(j, "child", 900);
    for (int batch = 0; batch < 40; batch++) {
        catalog_txn_t *t;
        if (catalog_txn_begin(c, 1, &t, &e) != 0)
            return 12;
        for (int i = 0; i < 50; i++)
            if (catalog_job_new(t, j, &e) != 0)
                return 13;
        if (catalog_txn_commit(&t, &e) != 0)
            return 14;
    }
    free(j);
    catalog_destroy(&c);
    return 0;
}

static void test_map_resized_by_other_process(void **state)
{
    fixture_t *f = *state;
    catalog_t *c = open_ok(f->dir, 1 * MIB);
    bq_errbuf_t e = {{0}};
    catalog_txn_t *t = begin_ok(c, 1);
    assert_int_equal(catalog_site_put(t, "east", &e), 0);
    commit_ok(&t);

    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(child_fill(f->dir));
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);

    /* the other process outgrew our 1 MiB map: begin adopts its size */
    catalog_stats_t st;
    assert_int_equal(catalog_stats(c, &st, &e), 0);
    assert_int_equal(st.map_size, 8 * MIB);
    assert_int_equal(st.njobs, 2000);
    assert_true(st.used_bytes > 1 * MIB);
    t = begin_ok(c, 1);
    bq_job_t *j = malloc(sizeof *j);
    assert_non_null(j);
    job_fill(j, "parent", 0);
    assert_int_equal(catalog_job_new(t, j, &e), 0);
    assert_int_equal(j->id, 2001);
    commit_ok(&t);
    free(j);
    catalog_destroy(&c);
}

static int read_byte(int fd)
{
    unsigned char b;
    ssize_t n;
    do
        n = read(fd, &b, 1);
    while (n < 0 && errno == EINTR);
    return n == 1 ? b : -1;
}

static void write_byte(int fd, unsigned char b)
{
    ssize_t n;
    do
        n = write(fd, &b, 1);
    while (n < 0 && errno == EINTR);
}

typedef struct {
    pid_t pid;
    int n;
} reader_count_t;

static int count_reader(const char *line, void *ctx)
{
    reader_count_t *x = ctx;
    long pid;
    if (sscanf(line, "%ld", &pid) == 1 && pid == (long)x->pid)
        x->n++;
    return 0;
}

/* In a child: hold the environment open with plain LMDB (so that no one opens it first and
 * resets the reader table), and on each 'l' + pid, answer how many reader slots that pid
 * holds. 'q' ends. */
static int child_holder(const char *dir, int cmd, int reply)
{
    MDB_env *env;
    if (mdb_env_create(&env) || mdb_env_set_maxdbs(env, 32) || mdb_env_set_maxreaders(env, 126) ||
        mdb_env_open(env, dir, MDB_NOTLS, 0600))
        return 20;
    write_byte(reply, 'r');
    for (;;) {
        int c = read_byte(cmd);
        if (c != 'l')
            break;
        pid_t pid;
        if (read(cmd, &pid, sizeof pid) != sizeof pid)
            return 21;
        reader_count_t x = {pid, 0};
        mdb_reader_list(env, count_reader, &x);
        write_byte(reply, (unsigned char)x.n);
    }
    mdb_env_close(env);
    return 0;
}

/* In a child: open a read transaction and wait to be killed. */
static int child_reader(const char *dir, int reply)
{
    catalog_t *c;
    catalog_txn_t *t;
    bq_errbuf_t e;
    if (catalog_open(dir, 16 * MIB, &c, &e) != 0 || catalog_txn_begin(c, 0, &t, &e) != 0)
        return 30;
    write_byte(reply, 'r');
    for (;;)
        pause();
}

static int holder_count(int cmd, int reply, pid_t pid)
{
    write_byte(cmd, 'l');
    ssize_t n = write(cmd, &pid, sizeof pid);
    assert_int_equal(n, sizeof pid);
    return read_byte(reply);
}

static void test_stale_reader_cleared(void **state)
{
    fixture_t *f = *state;
    catalog_t *c = open_ok(f->dir, 16 * MIB);
    bq_errbuf_t e = {{0}};
    catalog_txn_t *t = begin_ok(c, 1);
    assert_int_equal(catalog_site_put(t, "east", &e), 0);
    commit_ok(&t);
    catalog_destroy(&c);

    int cmd[2], reply[2];
    assert_int_equal(pipe(cmd), 0);
    assert_int_equal(pipe(reply), 0);
    pid_t holder = fork();
    assert_true(holder >= 0);
    if (holder == 0) {
        close(cmd[1]);
        close(reply[0]);
        _exit(child_holder(f->dir, cmd[0], reply[1]));
    }
    close(cmd[0]);
    close(reply[1]);
    assert_int_equal(read_byte(reply[0]), 'r');

    int rpipe[2];
    assert_int_equal(pipe(rpipe), 0);
    pid_t reader = fork();
    assert_true(reader >= 0);
    if (reader == 0) {
        close(rpipe[0]);
        _exit(child_reader(f->dir, rpipe[1]));
    }
    close(rpipe[1]);
    assert_int_equal(read_byte(rpipe[0]), 'r');
    close(rpipe[0]);
    assert_int_equal(kill(reader, SIGKILL), 0);
    int status;
    assert_int_equal(waitpid(reader, &status, 0), reader);
    assert_true(WIFSIGNALED(status));

    /* the dead reader still holds its slot (and pins its snapshot) */
    assert_int_equal(holder_count(cmd[1], reply[0], reader), 1);

    c = open_ok(f->dir, 16 * MIB);
    assert_int_equal(holder_count(cmd[1], reply[0], reader), 0);

    /* and the catalog works */
    t = begin_ok(c, 1);
    assert_int_equal(catalog_site_put(t, "west", &e), 0);
    commit_ok(&t);
    catalog_stats_t st;
    assert_int_equal(catalog_stats(c, &st, &e), 0);
    assert_int_equal(st.nsites, 2);

    write_byte(cmd[1], 'q');
    close(cmd[1]);
    assert_int_equal(waitpid(holder, &status, 0), holder);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    close(reply[0]);
    catalog_destroy(&c);
}

/* A catalog is bound to its process: a forked child gets BQ_E_STATE, and destroying it there
 * leaves the parent's environment alone. */
static void test_not_after_fork(void **state)
{
    fixture_t *f = *state;
    catalog_t *c = open_ok(f->dir, 16 * MIB);
    bq_errbuf_t e = {{0}};
    catalog_txn_t *t = begin_ok(c, 0);

    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        catalog_txn_t *t2 = NULL;
        int rc = catalog_txn_begin(c, 0, &t2, &e);
        int ok = rc == BQ_E_STATE && t2 == NULL && catalog_grow(c, &e) == BQ_E_STATE;
        catalog_destroy(&c);
        _exit(ok ? 0 : 1);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);

    catalog_txn_abort(&t);
    t = begin_ok(c, 1);
    assert_int_equal(catalog_site_put(t, "east", &e), 0);
    commit_ok(&t);
    catalog_destroy(&c);
}

/* ---- refusing what is not ours -------------------------------------------------------- */

static void raw_put(const char *dir, const char *db, const char *key, const void *val,
                    size_t len)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 32), 0);
    assert_int_equal(mdb_env_open(env, dir, MDB_NOTLS, 0600), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, db, MDB_CREATE, &dbi), 0);
    MDB_val k = {strlen(key), (void *)key}, v = {len, (void *)val};
    assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

static void test_schema_version_refused(void **state)
{
    fixture_t *f = *state;
    catalog_t *c = open_ok(f->dir, 16 * MIB);
    catalog_destroy(&c);

    const unsigned char v2[4] = {0, 0, 0, 2};
    raw_put(f->dir, "meta", "schema_version", v2, sizeof v2);
    bq_errbuf_t e = {{0}};
    assert_int_equal(catalog_open(f->dir, 16 * MIB, &c, &e), BQ_E_CATALOG);
    assert_null(c);
    assert_contains(e.msg, f->dir);
    assert_contains(e.msg, "has schema version 2");
    assert_contains(e.msg, "version 1 only");

    const unsigned char bad[2] = {0, 1};
    raw_put(f->dir, "meta", "schema_version", bad, sizeof bad);
    assert_int_equal(catalog_open(f->dir, 16 * MIB, &c, &e), BQ_E_CATALOG);
    assert_contains(e.msg, "meta/schema_version has 2 bytes");

    /* put back version 1: it opens again */
    const unsigned char v1[4] = {0, 0, 0, 1};
    raw_put(f->dir, "meta", "schema_version", v1, sizeof v1);
    c = open_ok(f->dir, 16 * MIB);
    catalog_destroy(&c);
}

static void test_foreign_environment_refused(void **state)
{
    fixture_t *f = *state;
    bq_errbuf_t e = {{0}};
    assert_int_equal(mkdir(f->dir, 0700), 0);
    raw_put(f->dir, NULL, "someone", "else", 4);
    catalog_t *c = NULL;
    assert_int_equal(catalog_open(f->dir, 16 * MIB, &c, &e), BQ_E_CATALOG);
    assert_null(c);
    assert_contains(e.msg, "not a barque catalog");

    /* a directory LMDB cannot use */
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/file", f->dir);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fclose(fp);
    assert_int_equal(catalog_open(path, 16 * MIB, &c, &e), BQ_E_CATALOG);
    assert_null(c);
    assert_contains(e.msg, "could not open catalog");
    assert_contains(e.msg, "Not a directory");
}

/* ---- the figure for sizing -------------------------------------------------------------- */

static void test_bytes_per_job(void **state)
{
    fixture_t *f = *state;
    catalog_t *c = open_ok(f->dir, 1024 * MIB);
    bq_errbuf_t e = {{0}};
    bq_job_t *j = malloc(sizeof *j);
    assert_non_null(j);
    const uint64_t njobs = 10000;
    for (uint64_t done = 0; done < njobs; done += 1000) {
        catalog_txn_t *t = begin_ok(c, 1);
        for (int i = 0; i < 1000; i++) {
            job_fill(j, "main", 0);
            assert_int_equal(catalog_job_new(t, j, &e), 0);
        }
        commit_ok(&t);
    }
    catalog_stats_t st;
    assert_int_equal(catalog_stats(c, &st, &e), 0);
    assert_int_equal(st.njobs, njobs);
    print_message("catalog: %" PRIu64 " queued check jobs use %" PRIu64 " bytes: %.1f bytes/job\n",
                  st.njobs, st.used_bytes, (double)st.used_bytes / (double)st.njobs);
    uint64_t queued_used = st.used_bytes;

    /* then each finishes with a check result of 8 items (the job is rewritten in place) */
    for (uint64_t done = 0; done < njobs; done += 1000) {
        catalog_txn_t *t = begin_ok(c, 1);
        for (uint64_t id = done + 1; id <= done + 1000; id++) {
            assert_int_equal(catalog_job_get(t, id, j, &e), 0);
            j->state = BQ_JOB_SUCCEEDED;
            j->attempt = 1;
            j->started_ms = j->created_ms + 100;
            j->finished_ms = j->created_ms + 900;
            j->has_check = 1;
            snprintf(j->check.server_version, sizeof j->check.server_version, "15.6");
            j->check.system_identifier = 7301234567890123456ull;
            snprintf(j->check.wal_level, sizeof j->check.wal_level, "replica");
            snprintf(j->check.archive_mode, sizeof j->check.archive_mode, "on");
            j->check.max_wal_senders = 10;
            snprintf(j->check.slots, sizeof j->check.slots, "barque_east,barque_west");
            j->check.can_replicate = 1;
            j->check.nitems = 8;
            for (size_t k = 0; k < 8; k++) {
                snprintf(j->check.items[k].name, sizeof j->check.items[k].name, "item_%zu", k);
                j->check.items[k].ok = 1;
                snprintf(j->check.items[k].detail, sizeof j->check.items[k].detail,
                         "all good on item %zu", k);
            }
            assert_int_equal(catalog_job_put(t, j, &e), 0);
        }
        commit_ok(&t);
    }
    assert_int_equal(catalog_stats(c, &st, &e), 0);
    print_message("catalog: %" PRIu64 " finished check jobs (8 items) use %" PRIu64
                  " bytes: %.1f bytes/job\n",
                  st.njobs, st.used_bytes, (double)st.used_bytes / (double)st.njobs);
    assert_true(st.used_bytes > queued_used);

    catalog_txn_t *t = begin_ok(c, 0);
    assert_int_equal(catalog_job_get(t, 5000, j, &e), 0);
    assert_int_equal(j->check.nitems, 8);
    assert_string_equal(j->check.items[7].detail, "all good on item 7");
    assert_string_equal(j->check.slots, "barque_east,barque_west");
    catalog_txn_abort(&t);
    free(j);
    catalog_destroy(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_jobs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_abort_discards, setup, teardown),
        cmocka_unit_test_setup_teardown(test_workers_clusters_sites, setup, teardown),
        cmocka_unit_test_setup_teardown(test_map_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_grow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_map_resized_by_other_process, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stale_reader_cleared, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_after_fork, setup, teardown),
        cmocka_unit_test_setup_teardown(test_schema_version_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_foreign_environment_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bytes_per_job, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backups, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backups_old_catalog, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wal_old_catalog, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
