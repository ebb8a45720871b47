/* Restore tests' arithmetic (coordinator/rtest.c) and their catalog records (restore_tests in a
 * real LMDB catalog in a temporary directory). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "catalog.h"
#include "rtest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bq_restore_test_t passed(void)
{
    bq_restore_test_t t;
    memset(&t, 0, sizeof t);
    t.ok = 1;
    t.job_id = 7;
    snprintf(t.backup_id, sizeof t.backup_id, "20261201T100000");
    t.bytes = 100000000;   /* 100 MB in 10 s */
    t.fetch_ms = 10000;
    t.start_ms = 2000;
    t.wal_bytes = 50000000; /* 50 MB in 5 s */
    t.replay_ms = 5000;
    t.rto_ms = 17500;       /* 0.5 s other */
    t.finished_ms = 1000000;
    return t;
}

static void test_predict_scales(void **state)
{
    (void)state;
    bq_restore_test_t t = passed();
    char d[256];
    /* the same backup and WAL: the measured time */
    assert_int_equal(rtest_predict(&t, 100000000, 50000000, d, sizeof d), 17500);
    /* twice the data and three times the WAL */
    assert_int_equal(rtest_predict(&t, 200000000, 150000000, d, sizeof d),
                     20000 + 2000 + 15000 + 500);
    assert_non_null(strstr(d, "200.0 MB at 10.0 MB/s"));
    assert_non_null(strstr(d, "150.0 MB WAL at 10.0 MB/s"));
    /* no WAL after the backup */
    assert_int_equal(rtest_predict(&t, 100000000, 0, d, sizeof d), 12500);
}

static void test_predict_small_wal(void **state)
{
    (void)state;
    bq_restore_test_t t = passed();
    t.wal_bytes = 1000000; /* 1 MB: too little for a rate, its replay time stands */
    t.replay_ms = 800;
    t.rto_ms = 10000 + 2000 + 800 + 200;
    char d[256];
    assert_int_equal(rtest_predict(&t, 100000000, 40000000, d, sizeof d), 13000);
    assert_non_null(strstr(d, "as measured"));
    /* no figures: no prediction */
    bq_restore_test_t z;
    memset(&z, 0, sizeof z);
    assert_int_equal(rtest_predict(&z, 1, 1, d, sizeof d), 0);
    assert_int_equal(rtest_predict(NULL, 1, 1, d, sizeof d), 0);
}

static void test_drill_time(void **state)
{
    (void)state;
    assert_int_equal(rtest_drill_time(1000, 1000, 12345), 1000);
    assert_int_equal(rtest_drill_time(1000, 500, 12345), 1000);
    for (uint64_t r = 0; r < 5000; r += 7) {
        int64_t v = rtest_drill_time(1000, 1999, r * 2654435761u);
        assert_true(v >= 1000 && v <= 1999);
    }
    assert_int_equal(rtest_drill_time(0, 9, 19), 9);
}

static void test_item(void **state)
{
    (void)state;
    char d[256];
    bq_restore_test_t ok = passed(), bad = passed();
    bad.ok = 0;
    bad.job_id = 9;
    snprintf(bad.error, sizeof bad.error, "chunk abc damaged");
    /* never tested, no limit: no item; with a limit: CRITICAL */
    assert_int_equal(rtest_item(NULL, NULL, 0, 2000000, d, sizeof d), -1);
    assert_int_equal(rtest_item(NULL, NULL, 3600000, 2000000, d, sizeof d), BQ_SEV_CRITICAL);
    assert_non_null(strstr(d, "no restore test has passed"));
    /* the last failed: CRITICAL naming it, whatever passed before */
    assert_int_equal(rtest_item(&bad, &ok, 0, 2000000, d, sizeof d), BQ_SEV_CRITICAL);
    assert_non_null(strstr(d, "job 9"));
    assert_non_null(strstr(d, "chunk abc damaged"));
    /* passed, within the age; past it */
    assert_int_equal(rtest_item(&ok, &ok, 3600000, 1000000 + 3600000, d, sizeof d), BQ_SEV_OK);
    assert_non_null(strstr(d, "recovery time 17.5 s"));
    assert_int_equal(rtest_item(&ok, &ok, 3600000, 1000000 + 3600001, d, sizeof d),
                     BQ_SEV_CRITICAL);
    assert_non_null(strstr(d, "more than restore_test_max_age 1h00m00s"));
    assert_int_equal(rtest_item(&ok, &ok, 0, 99999999, d, sizeof d), BQ_SEV_OK);
}

typedef struct {
    uint64_t ids[8];
    int ok[8];
    size_t n;
} seen_t;

static int seen_visit(const bq_restore_test_t *t, void *arg)
{
    seen_t *s = arg;
    if (s->n < 8) {
        s->ids[s->n] = t->job_id;
        s->ok[s->n] = t->ok;
        s->n++;
    }
    return 0;
}

static void test_catalog(void **state)
{
    (void)state;
    char dir[] = "/tmp/bq-rtest-XXXXXX";
    assert_non_null(mkdtemp(dir));
    catalog_t *cat = NULL;
    bq_errbuf_t e;
    assert_int_equal(catalog_open(dir, 64u << 20, &cat, &e), 0);
    catalog_txn_t *t = NULL;
    assert_int_equal(catalog_txn_begin(cat, 1, &t, &e), 0);
    static bq_restore_test_t r;
    /* job ids out of order, two clusters; 300 > 255 checks the big-endian order */
    uint64_t ids[] = {300, 5, 256, 7};
    for (size_t i = 0; i < 4; i++) {
        r = passed();
        r.job_id = ids[i];
        r.ok = i != 1;
        snprintf(r.cluster, sizeof r.cluster, "%s", i == 3 ? "db2" : "db1");
        r.nchecks = 2;
        snprintf(r.checks[0].name, sizeof r.checks[0].name, "databases");
        r.checks[0].ok = 1;
        snprintf(r.checks[1].name, sizeof r.checks[1].name, "restore_test_sql");
        r.checks[1].severity = BQ_SEV_CRITICAL;
        assert_int_equal(catalog_rtest_put(t, &r, &e), 0);
    }
    r.nchecks = BQ_RT_CHECKS_MAX + 1; /* refused, never truncated */
    assert_int_not_equal(catalog_rtest_put(t, &r, &e), 0);
    assert_int_equal(catalog_txn_commit(&t, &e), 0);
    assert_int_equal(catalog_txn_begin(cat, 0, &t, &e), 0);
    seen_t s = {0};
    assert_int_equal(catalog_rtest_each(t, "db1", seen_visit, &s, &e), 0);
    assert_int_equal(s.n, 3);
    assert_int_equal(s.ids[0], 5);
    assert_int_equal(s.ids[1], 256);
    assert_int_equal(s.ids[2], 300);
    assert_int_equal(s.ok[0], 0);
    catalog_txn_abort(&t);
    catalog_destroy(&cat);
    char cmd[64];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_predict_scales), cmocka_unit_test(test_predict_small_wal),
        cmocka_unit_test(test_drill_time),     cmocka_unit_test(test_item),
        cmocka_unit_test(test_catalog),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
