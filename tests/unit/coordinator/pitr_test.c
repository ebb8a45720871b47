/* coordinator/pitr.c against a real LMDB catalog in a temporary directory: which backups end
 * before a target (pitr_backup_before), and whether the WAL index lets a recovery from a
 * backup reach a target (pitr_check): a contiguous index, a gap after the backup (no target,
 * LSN targets on either side of it, time targets whose segment before the gap was archived
 * before or after the target time), the end of the archive with and without a stream, a time
 * in the future, a backup that ends after its target, target timelines (unknown, older than
 * the backup's, a switch to timeline 2 followed with latest but not with current), and 1 GiB
 * segments across the hi/lo boundary. */
#include "pitr.h"

#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <setjmp.h>
#include <cmocka.h>

#define MIB (1ull << 20)
#define SEG (16ull << 20)    /* 16 MiB: 256 segments per "hi" */
#define GSEG (1ull << 30)    /* 1 GiB: 4 segments per "hi" */
#define T0 1700000000000LL   /* the backup's end (ms since the epoch) */
#define NOW (T0 + 86400000LL) /* a day later */
#define CLUSTER "db1"
#define BACKUP_ID "20231114T221320"

#define assert_contains(s, sub)                                                           \
    do {                                                                                  \
        if (!strstr((s), (sub)))                                                          \
            fail_msg("\"%s\" does not contain \"%s\"", (s), (sub));                       \
    } while (0)

typedef struct {
    char dir[PATH_MAX];
    catalog_t *c;
    catalog_txn_t *w; /* the write transaction filling the index (NULL once committed) */
    catalog_txn_t *r; /* the read transaction pitr_check runs in */
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
    snprintf(f->dir, sizeof f->dir, "/tmp/bq-pitr-test-XXXXXX");
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
    strncat(f->dir, "/catalog", sizeof f->dir - strlen(f->dir) - 1);
    bq_errbuf_t e = {{0}};
    if (catalog_open(f->dir, 16 * MIB, &f->c, &e) != 0 ||
        catalog_txn_begin(f->c, 1, &f->w, &e) != 0) {
        fprintf(stderr, "catalog: %s\n", e.msg);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    if (f->r)
        catalog_txn_abort(&f->r);
    if (f->w)
        catalog_txn_abort(&f->w);
    catalog_destroy(&f->c);
    char *slash = strrchr(f->dir, '/');
    *slash = '\0';
    int rc = nftw(f->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return rc;
}

/* ---- filling the index ------------------------------------------------------------------- */

static void seg_name(uint32_t tli, uint64_t segno, uint64_t seg_size, char out[BQ_WAL_NAME_MAX])
{
    uint64_t per = 0x100000000ull / seg_size;
    snprintf(out, BQ_WAL_NAME_MAX, "%08" PRIX32 "%08" PRIX32 "%08" PRIX32, tli,
             (uint32_t)(segno / per), (uint32_t)(segno % per));
}

static void put_file(fixture_t *f, const char *name, uint64_t size, int64_t archived_ms)
{
    bq_wal_file_t w;
    memset(&w, 0, sizeof w);
    snprintf(w.cluster, sizeof w.cluster, "%s", CLUSTER);
    snprintf(w.name, sizeof w.name, "%s", name);
    w.size = size;
    snprintf(w.stores, sizeof w.stores, "east-1");
    w.archived_ms = archived_ms;
    bq_errbuf_t e = {{0}};
    int rc = catalog_wal_put(f->w, &w, &e);
    if (rc)
        fail_msg("catalog_wal_put(%s): %s: %s", name, bq_err_name(rc), e.msg);
}

/* Segment segno of timeline tli (of seg_size bytes), archived at T0 + segno seconds unless
 * archived_ms is given (not 0). */
static void put_seg_sized(fixture_t *f, uint32_t tli, uint64_t segno, uint64_t seg_size,
                          int64_t archived_ms)
{
    char name[BQ_WAL_NAME_MAX];
    seg_name(tli, segno, seg_size, name);
    put_file(f, name, seg_size, archived_ms ? archived_ms : T0 + (int64_t)segno * 1000);
}

static void put_seg(fixture_t *f, uint32_t tli, uint64_t segno)
{
    put_seg_sized(f, tli, segno, SEG, 0);
}

static void put_segs(fixture_t *f, uint32_t tli, uint64_t from, uint64_t to)
{
    for (uint64_t s = from; s <= to; s++)
        put_seg(f, tli, s);
}

static void put_history(fixture_t *f, uint32_t tli)
{
    char name[BQ_WAL_NAME_MAX];
    snprintf(name, sizeof name, "%08" PRIX32 ".history", tli);
    put_file(f, name, 42, T0);
}

/* Commit the index and open the read transaction pitr_check runs in. */
static catalog_txn_t *done(fixture_t *f)
{
    bq_errbuf_t e = {{0}};
    if (catalog_txn_commit(&f->w, &e) != 0)
        fail_msg("commit: %s", e.msg);
    if (catalog_txn_begin(f->c, 0, &f->r, &e) != 0)
        fail_msg("begin: %s", e.msg);
    return f->r;
}

/* ---- backups and targets ----------------------------------------------------------------- */

/* A DONE backup on timeline tli whose WAL starts in segment segno (16 MiB), ending in that
 * segment at T0. */
static bq_backup_t backup_at(uint32_t tli, uint64_t segno)
{
    bq_backup_t b;
    memset(&b, 0, sizeof b);
    snprintf(b.id, sizeof b.id, "%s", BACKUP_ID);
    snprintf(b.cluster, sizeof b.cluster, "%s", CLUSTER);
    b.state = BQ_BACKUP_DONE;
    b.timeline = tli;
    b.start_lsn = segno * SEG + 0x28;
    b.stop_lsn = segno * SEG + 0x138;
    b.start_ms = T0 - 60000;
    b.stop_ms = T0;
    seg_name(tli, segno, SEG, b.wal_begin);
    seg_name(tli, segno, SEG, b.wal_end);
    return b;
}

static bq_recovery_t rec_none(void)
{
    bq_recovery_t r;
    memset(&r, 0, sizeof r);
    r.enabled = 1;
    return r;
}

static bq_recovery_t rec_lsn(uint64_t lsn)
{
    bq_recovery_t r = rec_none();
    snprintf(r.kind, sizeof r.kind, "lsn");
    snprintf(r.value, sizeof r.value, "%X/%X", (unsigned)(lsn >> 32), (unsigned)lsn);
    r.lsn = lsn;
    return r;
}

static bq_recovery_t rec_time(int64_t ms)
{
    bq_recovery_t r = rec_none();
    snprintf(r.kind, sizeof r.kind, "time");
    snprintf(r.value, sizeof r.value, "@%" PRId64 "ms", ms);
    r.time_ms = ms;
    return r;
}

static bq_recovery_t with_tli(bq_recovery_t r, const char *tli)
{
    snprintf(r.tli, sizeof r.tli, "%s", tli);
    return r;
}

/* pitr_check that must succeed */
static void check_ok(catalog_txn_t *t, const bq_backup_t *b, const bq_recovery_t *r,
                     int streams, int64_t now_ms)
{
    bq_errbuf_t e = {{0}};
    int rc = pitr_check(t, b, r, streams, now_ms, &e);
    if (rc != 0)
        fail_msg("pitr_check(kind \"%s\" value \"%s\" tli \"%s\" streams %d): %s: %s", r->kind,
                 r->value, r->tli, streams, bq_err_name(rc), e.msg);
}

/* pitr_check that must refuse with BQ_E_STATE and a message holding each of the substrings
 * (NULL-terminated) */
static void check_refused(catalog_txn_t *t, const bq_backup_t *b, const bq_recovery_t *r,
                          int streams, int64_t now_ms, ...)
{
    bq_errbuf_t e = {{0}};
    int rc = pitr_check(t, b, r, streams, now_ms, &e);
    if (rc != BQ_E_STATE)
        fail_msg("pitr_check(kind \"%s\" value \"%s\" tli \"%s\" streams %d): %s (%d), not "
                 "BQ_E_STATE: \"%s\"", r->kind, r->value, r->tli, streams, bq_err_name(rc), rc,
                 e.msg);
    va_list ap;
    va_start(ap, now_ms);
    for (const char *sub = va_arg(ap, const char *); sub; sub = va_arg(ap, const char *))
        assert_contains(e.msg, sub);
    va_end(ap);
}

/* ---- pitr_backup_before ------------------------------------------------------------------ */

static void test_backup_before(void **state)
{
    (void)state;
    bq_backup_t b = backup_at(1, 2);
    bq_recovery_t r = rec_time(T0);
    assert_true(pitr_backup_before(&b, &r)); /* ends at the target: before it */
    r = rec_time(T0 + 1);
    assert_true(pitr_backup_before(&b, &r));
    r = rec_time(T0 - 1);
    assert_false(pitr_backup_before(&b, &r));
    r = rec_lsn(b.stop_lsn);
    assert_true(pitr_backup_before(&b, &r));
    r = rec_lsn(b.stop_lsn + 1);
    assert_true(pitr_backup_before(&b, &r));
    r = rec_lsn(b.stop_lsn - 1);
    assert_false(pitr_backup_before(&b, &r));
    /* the other kinds: any backup */
    const char *kinds[] = {"", "xid", "name", "immediate"};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        r = rec_none();
        snprintf(r.kind, sizeof r.kind, "%s", kinds[i]);
        r.time_ms = 0; /* would be before the backup if it were looked at */
        r.lsn = 0;
        assert_true(pitr_backup_before(&b, &r));
    }
}

/* ---- pitr_check -------------------------------------------------------------------------- */

/* Segments 2..5 on timeline 1, the backup's WAL starting in 2. */
static void test_contiguous(void **state)
{
    fixture_t *f = *state;
    put_segs(f, 1, 2, 5);
    catalog_txn_t *t = done(f);
    bq_backup_t b = backup_at(1, 2);

    bq_recovery_t r = rec_none();
    check_ok(t, &b, &r, 0, NOW); /* to the end of the archive */
    r = rec_lsn(4 * SEG + 0x100);
    check_ok(t, &b, &r, 0, NOW);
    r = rec_lsn(5 * SEG + 0x4000); /* in the last segment */
    check_ok(t, &b, &r, 0, NOW);
    r = rec_time(T0 + 3500); /* between segment 3's archiving and 4's */
    check_ok(t, &b, &r, 0, NOW);
    r = rec_time(T0 + 4500); /* segment 5 was archived after it */
    check_ok(t, &b, &r, 0, NOW);
    r = with_tli(rec_lsn(4 * SEG), "1"); /* the backup's own timeline by number */
    check_ok(t, &b, &r, 0, NOW);
    r = with_tli(rec_lsn(4 * SEG), "current");
    check_ok(t, &b, &r, 0, NOW);
    /* xid and name targets, immediate: no WAL range to prove */
    r = rec_none();
    snprintf(r.kind, sizeof r.kind, "xid");
    snprintf(r.value, sizeof r.value, "12345");
    check_ok(t, &b, &r, 0, NOW);
    r = rec_none();
    snprintf(r.kind, sizeof r.kind, "immediate");
    check_ok(t, &b, &r, 0, NOW);
}

/* Segments 2, 3, 5, 6: 4 is missing. */
static void test_gap(void **state)
{
    fixture_t *f = *state;
    put_segs(f, 1, 2, 3);
    put_segs(f, 1, 5, 6);
    catalog_txn_t *t = done(f);
    bq_backup_t b = backup_at(1, 2);

    bq_recovery_t r = rec_none();
    check_refused(t, &b, &r, 0, NOW, "WAL segment 000000010000000000000004 of cluster db1",
                  "is missing from the archive", BACKUP_ID, NULL);
    r = rec_lsn(5 * SEG + 0x100); /* beyond the gap */
    check_refused(t, &b, &r, 0, NOW, "000000010000000000000004", "is missing from the archive",
                  NULL);
    /* a stream does not fill a gap in the middle of the archive */
    check_refused(t, &b, &r, 1, NOW, "000000010000000000000004", "is missing from the archive",
                  NULL);
    r = rec_lsn(4 * SEG); /* the first byte of the missing segment */
    check_refused(t, &b, &r, 0, NOW, "000000010000000000000004", "is missing from the archive",
                  NULL);
    r = rec_lsn(3 * SEG + 0x100); /* before the gap */
    check_ok(t, &b, &r, 0, NOW);
    r = rec_lsn(2 * SEG + 0x4000); /* in the backup's first segment, after its end */
    check_ok(t, &b, &r, 0, NOW);
}

/* Segment n archived at T0 + n s: 3 (the one before the gap) at T0 + 3000. */
static void test_gap_time(void **state)
{
    fixture_t *f = *state;
    put_segs(f, 1, 2, 3);
    put_segs(f, 1, 5, 6);
    catalog_txn_t *t = done(f);
    bq_backup_t b = backup_at(1, 2);

    /* segment 3 was archived before the target: its WAL may go on in 4 */
    bq_recovery_t r = rec_time(T0 + 3500);
    check_refused(t, &b, &r, 0, NOW, "000000010000000000000004", "is missing from the archive",
                  NULL);
    r = rec_time(T0 + 5500);
    check_refused(t, &b, &r, 0, NOW, "000000010000000000000004", "is missing from the archive",
                  NULL);
    /* segment 3 was archived after the target: the target is in it or before it */
    r = rec_time(T0 + 2500);
    check_ok(t, &b, &r, 0, NOW);
    r = rec_time(T0 + 3000); /* archived at the very target time */
    check_ok(t, &b, &r, 0, NOW);
}

/* Segments 2..5, the archive ends: 6 is the one being written (or streamed). */
static void test_archive_end(void **state)
{
    fixture_t *f = *state;
    put_segs(f, 1, 2, 5);
    catalog_txn_t *t = done(f);
    bq_backup_t b = backup_at(1, 2);

    bq_recovery_t r = rec_lsn(6 * SEG + 0x100);
    check_refused(t, &b, &r, 0, NOW, "the archive of cluster db1 ends before the target LSN 0/6000100",
                  "segment 000000010000000000000006 is not archived yet", NULL);
    check_ok(t, &b, &r, 1, NOW); /* the segment being streamed: wal-get serves it */

    r = rec_time(T0 + 10000); /* after segment 5 was archived (T0 + 5 s) */
    check_refused(t, &b, &r, 0, NOW, "ends before the target time",
                  "segment 000000010000000000000006 is not archived yet", NULL);
    check_ok(t, &b, &r, 1, NOW);
    /* with no target, recovery ends where the archive does */
    r = rec_none();
    check_ok(t, &b, &r, 0, NOW);
}

/* The backup's own WAL only: nothing after it in the index. */
static void test_archive_empty_after_backup(void **state)
{
    fixture_t *f = *state;
    put_seg(f, 1, 2);
    catalog_txn_t *t = done(f);
    bq_backup_t b = backup_at(1, 2);

    bq_recovery_t r = rec_lsn(3 * SEG + 8);
    check_refused(t, &b, &r, 0, NOW, "ends before the target LSN",
                  "segment 000000010000000000000003 is not archived yet", NULL);
    check_ok(t, &b, &r, 1, NOW);
    r = rec_lsn(b.stop_lsn); /* the backup's end itself */
    check_ok(t, &b, &r, 0, NOW);
}

static void test_future_time(void **state)
{
    fixture_t *f = *state;
    put_segs(f, 1, 2, 5);
    catalog_txn_t *t = done(f);
    bq_backup_t b = backup_at(1, 2);

    bq_recovery_t r = rec_time(NOW + 60000);
    check_refused(t, &b, &r, 0, NOW, "is in the future", NULL);
    check_refused(t, &b, &r, 1, NOW, "is in the future", NULL);
    /* a second of clock skew is tolerated: then it is the archive's end that counts */
    r = rec_time(NOW + 500);
    check_refused(t, &b, &r, 0, NOW, "ends before the target time", NULL);
    check_ok(t, &b, &r, 1, NOW);
}

static void test_backup_after_target(void **state)
{
    fixture_t *f = *state;
    put_segs(f, 1, 2, 5);
    catalog_txn_t *t = done(f);
    bq_backup_t b = backup_at(1, 2);

    bq_recovery_t r = rec_time(T0 - 1000);
    check_refused(t, &b, &r, 0, NOW, "backup " BACKUP_ID " of cluster db1 ends at",
                  "after the target time", NULL);
    r = rec_lsn(b.stop_lsn - 1);
    check_refused(t, &b, &r, 0, NOW, "backup " BACKUP_ID " of cluster db1 ends at LSN 0/2000138",
                  "after the target LSN", NULL);
    r = rec_lsn(b.start_lsn); /* inside the backup, before its end */
    check_refused(t, &b, &r, 1, NOW, "after the target LSN", NULL);
}

static void test_timeline_refusals(void **state)
{
    fixture_t *f = *state;
    put_segs(f, 1, 2, 5);
    put_segs(f, 2, 6, 7);
    put_history(f, 2);
    catalog_txn_t *t = done(f);
    bq_backup_t b = backup_at(1, 2);

    /* timeline 7: no 00000007.history */
    bq_recovery_t r = with_tli(rec_lsn(4 * SEG), "7");
    check_refused(t, &b, &r, 0, NOW, "target timeline 7 is not in the archive",
                  "00000007.history", NULL);
    r = with_tli(rec_none(), "7");
    check_refused(t, &b, &r, 0, NOW, "target timeline 7 is not in the archive", NULL);
    /* timeline 3: none of its files at all */
    r = with_tli(rec_none(), "3");
    check_refused(t, &b, &r, 0, NOW, "target timeline 3 is not in the archive", NULL);

    /* a backup on timeline 2, a target on timeline 1 */
    bq_backup_t b2 = backup_at(2, 6);
    r = with_tli(rec_lsn(7 * SEG), "1");
    check_refused(t, &b2, &r, 0, NOW, "target timeline 1 is older than timeline 2 of backup "
                  BACKUP_ID, NULL);
    r = with_tli(rec_lsn(7 * SEG), "2");
    check_ok(t, &b2, &r, 0, NOW);
}

/* A failover at segment 6: timeline 1 has 2..5, timeline 2 has 6..8 and its history file. */
static void test_timeline_switch(void **state)
{
    fixture_t *f = *state;
    put_segs(f, 1, 2, 5);
    put_history(f, 2);
    put_segs(f, 2, 6, 8);
    catalog_txn_t *t = done(f);
    bq_backup_t b = backup_at(1, 2);

    bq_recovery_t r = with_tli(rec_lsn(8 * SEG + 0x100), "latest");
    check_ok(t, &b, &r, 0, NOW);
    r = with_tli(rec_lsn(8 * SEG + 0x100), "2");
    check_ok(t, &b, &r, 0, NOW);
    r = with_tli(rec_lsn(8 * SEG + 0x100), ""); /* PostgreSQL's default is latest */
    check_ok(t, &b, &r, 0, NOW);
    r = with_tli(rec_none(), "latest");
    check_ok(t, &b, &r, 0, NOW);
    /* staying on timeline 1: its segment 6 was never archived */
    r = with_tli(rec_lsn(8 * SEG + 0x100), "current");
    check_refused(t, &b, &r, 0, NOW, "000000010000000000000006", NULL);
    r = with_tli(rec_lsn(8 * SEG + 0x100), "1");
    check_refused(t, &b, &r, 0, NOW, "000000010000000000000006", NULL);
    /* ... but before the switch, timeline 1 is enough */
    r = with_tli(rec_lsn(5 * SEG + 0x100), "current");
    check_ok(t, &b, &r, 0, NOW);
    /* beyond timeline 2's end */
    r = with_tli(rec_lsn(9 * SEG + 0x100), "latest");
    check_refused(t, &b, &r, 0, NOW, "ends before the target LSN",
                  "000000020000000000000009 is not archived yet", NULL);
}

/* Regressions: the streamed segment covers an LSN in it, not beyond; a replay that reached a
 * timeline never falls back to a lower one; a gap is named on the timeline replay is on. */
static void test_stream_and_timeline_regressions(void **state)
{
    fixture_t *f = *state;
    put_segs(f, 1, 2, 7); /* the old primary went on archiving 6 and 7 on timeline 1 */
    put_history(f, 2);
    put_seg(f, 2, 6);
    put_seg(f, 2, 8);
    catalog_txn_t *t = done(f);
    bq_backup_t b = backup_at(1, 2);
    bq_recovery_t r = with_tli(rec_lsn(8 * SEG + 0x100), "latest");
    check_refused(t, &b, &r, 0, NOW, "000000020000000000000007", "is missing", NULL);
    r = with_tli(rec_lsn(5 * SEG + 0x100), "current");
    check_ok(t, &b, &r, 0, NOW);
}

static void test_stream_only_next_segment(void **state)
{
    fixture_t *f = *state;
    put_segs(f, 1, 2, 5);
    catalog_txn_t *t = done(f);
    bq_backup_t b = backup_at(1, 2);
    bq_recovery_t r = rec_lsn(6 * SEG + 0x100); /* in the segment being streamed */
    check_ok(t, &b, &r, 1, NOW);
    r = rec_lsn(7 * SEG + 0x100); /* beyond it: nothing can serve 6's successor */
    check_refused(t, &b, &r, 1, NOW, "ends before the target LSN", NULL);
}

static void test_gap_named_on_its_timeline(void **state)
{
    fixture_t *f = *state;
    put_seg(f, 1, 2);
    put_seg(f, 1, 3);
    put_seg(f, 1, 5);
    put_history(f, 2);
    put_segs(f, 2, 6, 8);
    catalog_txn_t *t = done(f);
    bq_backup_t b = backup_at(1, 2);
    bq_recovery_t r = with_tli(rec_lsn(8 * SEG + 0x100), "latest");
    check_refused(t, &b, &r, 0, NOW, "000000010000000000000004", NULL);
}

/* 1 GiB segments: 4 per "hi", so ...00000003 is followed by 0000000100000001 00000000. */
static void test_gigabyte_segments(void **state)
{
    fixture_t *f = *state;
    for (uint64_t s = 2; s <= 5; s++)
        put_seg_sized(f, 1, s, GSEG, 0);
    put_seg_sized(f, 1, 7, GSEG, 0); /* 6 (000000010000000100000002) missing */
    catalog_txn_t *t = done(f);
    bq_backup_t b = backup_at(1, 0);
    snprintf(b.wal_begin, sizeof b.wal_begin, "000000010000000000000002");
    b.start_lsn = 2 * GSEG + 0x28;
    b.stop_lsn = 2 * GSEG + 0x138;

    bq_recovery_t r = rec_lsn(5 * GSEG + 0x100); /* in 000000010000000100000001 */
    check_ok(t, &b, &r, 0, NOW);
    r = rec_lsn(4 * GSEG); /* the first byte of 000000010000000100000000 */
    check_ok(t, &b, &r, 0, NOW);
    r = rec_lsn(7 * GSEG + 0x100);
    check_refused(t, &b, &r, 0, NOW, "WAL segment 000000010000000100000002 of cluster db1",
                  "is missing from the archive", NULL);
    r = rec_none();
    check_refused(t, &b, &r, 0, NOW, "000000010000000100000002", "is missing from the archive",
                  NULL);
}

/* Another cluster's WAL does not count, and history files and partials are not segments. */
static void test_other_files(void **state)
{
    fixture_t *f = *state;
    put_segs(f, 1, 2, 3);
    char name[BQ_WAL_FILE_MAX];
    seg_name(1, 4, SEG, name);
    strcat(name, ".partial");
    put_file(f, name, SEG, T0 + 4000); /* 4 only as a partial */
    put_seg(f, 1, 5);
    /* db2 has segment 4 */
    bq_wal_file_t w;
    memset(&w, 0, sizeof w);
    snprintf(w.cluster, sizeof w.cluster, "db2");
    seg_name(1, 4, SEG, w.name);
    w.size = SEG;
    snprintf(w.stores, sizeof w.stores, "east-1");
    w.archived_ms = T0 + 4000;
    bq_errbuf_t e = {{0}};
    assert_int_equal(catalog_wal_put(f->w, &w, &e), 0);
    catalog_txn_t *t = done(f);
    bq_backup_t b = backup_at(1, 2);

    bq_recovery_t r = rec_lsn(5 * SEG);
    check_refused(t, &b, &r, 0, NOW, "000000010000000000000004", "is missing from the archive",
                  NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backup_before),
        cmocka_unit_test_setup_teardown(test_contiguous, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gap_time, setup, teardown),
        cmocka_unit_test_setup_teardown(test_archive_end, setup, teardown),
        cmocka_unit_test_setup_teardown(test_archive_empty_after_backup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_future_time, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backup_after_target, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeline_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeline_switch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gigabyte_segments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_and_timeline_regressions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_only_next_segment, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gap_named_on_its_timeline, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
