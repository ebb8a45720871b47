/* Writers, WAL puts, a reader and GC at once on one store (docs/store.md, "Concurrency"):
 * two backup writer threads (each a crew of two) keep committing backups whose chunks repeat
 * those of backups deleted a moment before, so GC keeps finding them dead in the manifests
 * while a writer relies on them; a WAL thread archives segments; a reader keeps reading a
 * backup that is never deleted while GC repacks everything it may (threshold 1, so the
 * reader's chunks keep moving). Afterwards every backup not deleted reads back
 * byte-identical, every WAL segment reads back, and the store verifies clean. Threads record
 * failures; the main thread asserts them (cmocka asserts only from the main thread). */
#include "index.h"
#include "pack.h"
#include "store.h"
#include "wal.h"

#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "test_util.h"

#define CS 8192u
#define NWRITERS 2
#define ROUNDS 60
#define FILE_BYTES (37 * CS + 1000)
#define NSEGS 6
#define SEG (1u << 20)
#define MAX_SECONDS 120

static char root[256];
static char dir[300];
static store_master_t m;
static atomic_int writers_left;

typedef struct {
    int rc;
    char msg[600];
} result_t;

static void record(result_t *r, int rc, const char *what, const bq_errbuf_t *e)
{
    if (rc != 0 && r->rc == 0) {
        r->rc = rc;
        snprintf(r->msg, sizeof r->msg, "%s: %s %s", what, bq_err_name(rc), e ? e->msg : "");
    }
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The content of writer t's file in round r: it repeats every 3 rounds, so round r's chunks
 * are those of round r - 3, which was deleted at round r - 1 (unless kept). */
static void content(int t, int r, uint8_t *buf, size_t len)
{
    uint8_t seed[randombytes_SEEDBYTES] = {0};
    seed[0] = (uint8_t)t;
    seed[1] = (uint8_t)(r % 3);
    randombytes_buf_deterministic(buf, len, seed);
}

/* The small file: 100 bytes of its own per round, so a deleted round leaves a chunk that no
 * later backup references. */
static void small(int t, int r, uint8_t out[100])
{
    uint8_t seed[randombytes_SEEDBYTES] = {0};
    seed[0] = (uint8_t)t;
    seed[1] = (uint8_t)r;
    seed[2] = 0xFF;
    randombytes_buf_deterministic(out, 100, seed);
}

static int kept(int r)
{
    return r % 4 == 0 || r >= ROUNDS - 2;
}

static void backup_id(int t, int r, char *id, size_t size)
{
    snprintf(id, size, "w%d-%03d", t, r);
}

typedef struct {
    store_t *s;
    int t;
    result_t res;
} writer_t;

static void *writer_main(void *arg)
{
    writer_t *w = arg;
    uint8_t *buf = malloc(FILE_BYTES);
    bq_errbuf_t e = {{0}};
    for (int r = 0; buf && r < ROUNDS && w->res.rc == 0; r++) {
        char id[64], path[64];
        backup_id(w->t, r, id, sizeof id);
        content(w->t, r, buf, FILE_BYTES);
        store_backup_t *bw = NULL;
        int rc = store_backup_begin(w->s, id, &bw, &e);
        for (int f = 0; rc == 0 && f < 3; f++) {
            snprintf(path, sizeof path, "base/%d/%d", w->t, f);
            uint8_t sm[100];
            small(w->t, r, sm);
            /* the same data in two files, and a small one */
            if ((rc = store_backup_file_begin(bw, path, 0100600, 1700000000, &e)) == 0 &&
                (rc = f == 2 ? store_backup_file_write(bw, sm, sizeof sm, &e)
                             : store_backup_file_write(bw, buf, FILE_BYTES, &e)) == 0)
                rc = store_backup_file_end(bw, &e);
            if (rc == 0 && f == 0)
                rc = store_backup_meta(bw, "mid", "1", 1, &e); /* runs a batch mid-backup */
        }
        if (rc == 0)
            rc = store_backup_commit(&bw, NULL, &e);
        store_backup_abort(&bw);
        record(&w->res, rc, id, &e);
        if (rc == 0 && r >= 2 && !kept(r - 2)) { /* retention: drop the backup of r - 2 */
            char mp[512];
            backup_id(w->t, r - 2, id, sizeof id);
            snprintf(mp, sizeof mp, "%s/backups/%s.manifest", dir, id);
            if (unlink(mp) != 0)
                record(&w->res, BQ_E_IO, mp, NULL);
        }
    }
    if (!buf)
        record(&w->res, BQ_E_NOMEM, "writer buffer", NULL);
    free(buf);
    atomic_fetch_sub(&writers_left, 1);
    return NULL;
}

static void seg_name(int i, char *name)
{
    sprintf(name, "0000000100000000000000%02X", i + 1);
}

static void seg_content(int i, uint8_t *buf)
{
    uint8_t seed[randombytes_SEEDBYTES] = {0};
    seed[0] = 0xA0;
    seed[1] = (uint8_t)i;
    randombytes_buf_deterministic(buf, SEG, seed);
}

typedef struct {
    store_t *s;
    result_t res;
} side_t;

static void *wal_main(void *arg)
{
    side_t *w = arg;
    bq_errbuf_t e = {{0}};
    store_chunk_ctx_t *ctx = NULL;
    store_datakey_t dk;
    uint8_t *buf = malloc(SEG);
    int rc = buf ? store_chunk_ctx_for(w->s, &ctx, &e) : BQ_E_NOMEM;
    if (rc == 0)
        rc = store_datakey_new(dir, &m, &dk, &e);
    for (int i = 0; rc == 0 && i < NSEGS; i++) {
        char name[32];
        seg_name(i, name);
        seg_content(i, buf);
        rc = store_wal_put(dir, "db1", ctx, &dk, STORE_COMP_ZSTD, 1, SEG, name, buf, SEG, NULL, &e);
        if (rc == 0) /* the same again: success */
            rc = store_wal_put(dir, "db1", ctx, &dk, STORE_COMP_ZSTD, 1, SEG, name, buf, SEG, NULL, &e);
    }
    record(&w->res, rc, "wal put", &e);
    if (rc == 0 || ctx)
        store_datakey_clear(&dk);
    store_chunk_ctx_destroy(&ctx);
    free(buf);
    return NULL;
}

/* ---- reading back ---- */

typedef struct {
    int t, r; /* whose content: writer t, round r */
    size_t off, want;
    int nfiles;
    uint8_t *expect, *cur;
    uint8_t small[100];
    int mismatch;
} cmp_t;

static int cmp_begin(void *arg, const char *path, uint32_t mode, int64_t mtime, bq_errbuf_t *e)
{
    (void)mode, (void)mtime, (void)e;
    cmp_t *c = arg;
    c->off = 0;
    size_t n = strlen(path);
    c->want = path[n - 1] == '2' ? 100 : FILE_BYTES;
    c->cur = path[n - 1] == '2' ? c->small : c->expect;
    return 0;
}

static int cmp_data(void *arg, const void *buf, size_t len, bq_errbuf_t *e)
{
    (void)e;
    cmp_t *c = arg;
    if (c->off + len > c->want || memcmp(buf, c->cur + c->off, len) != 0)
        c->mismatch++;
    c->off += len;
    return 0;
}

static int cmp_end(void *arg, const char *path, uint64_t size, const uint8_t sha256[32],
                   bq_errbuf_t *e)
{
    (void)path, (void)sha256, (void)e;
    cmp_t *c = arg;
    if (size != c->want || c->off != c->want)
        c->mismatch++;
    c->nfiles++;
    return 0;
}

/* Read backup (t, r) and compare it with what was written: 0, or an error / BQ_E_IO. */
static int read_back(store_t *s, int t, int r, uint8_t *expect, bq_errbuf_t *e)
{
    char id[64];
    backup_id(t, r, id, sizeof id);
    content(t, r, expect, FILE_BYTES);
    cmp_t c = {.t = t, .r = r, .expect = expect};
    small(t, r, c.small);
    store_read_cb_t cb = {.file_begin = cmp_begin, .data = cmp_data, .file_end = cmp_end};
    int rc = store_backup_read(s, id, &cb, &c, e);
    if (rc == 0 && (c.mismatch || c.nfiles != 3))
        rc = bq_fail(e, BQ_E_IO, "backup %s read back different (%d mismatches, %d files)", id,
                     c.mismatch, c.nfiles);
    return rc;
}

static void *reader_main(void *arg)
{
    side_t *rd = arg;
    bq_errbuf_t e = {{0}};
    uint8_t *expect = malloc(FILE_BYTES);
    int reads = 0;
    while (expect && rd->res.rc == 0 && atomic_load(&writers_left) > 0 && reads < 100000) {
        int rc = read_back(rd->s, 0, 0, expect, &e); /* w0-000: kept, never deleted */
        if (rc == BQ_E_NOTFOUND && reads == 0)
            continue; /* not committed yet */
        record(&rd->res, rc, "reader", &e);
        reads++;
    }
    free(expect);
    return NULL;
}

static int setup(void **state)
{
    (void)state;
    if (sodium_init() < 0)
        return -1;
    if (test_mkdtemp(root, sizeof root, "concurrency_test") != 0)
        return -1;
    randombytes_buf(m.key, sizeof m.key);
    snprintf(m.path, sizeof m.path, "%s/m.storekey", root);
    snprintf(dir, sizeof dir, "%s/store", root);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    return test_rmtree(root) == 0 ? 0 : -1;
}

static int wal_key(void *arg, uint32_t key_id, store_datakey_t *out, bq_errbuf_t *e)
{
    return store_datakey_get(arg, key_id, out, e);
}

static void verify_clean(store_t *s)
{
    bq_errbuf_t e = {{0}};
    store_verify_stats_t vs;
    OK(store_verify(s, NULL, NULL, &vs, &e));
    assert_int_equal(vs.problems, 0);
}

static void test_writers_wal_reader_and_gc(void **state)
{
    (void)state;
    bq_errbuf_t e = {{0}};
    store_opts_t o = {CS, STORE_COMP_ZSTD, 1};
    OK(store_create(dir, &m, &o, &e));
    store_t *s = NULL;
    OK(store_open(dir, &m, &s, &e));
    store_set_threads(s, 2);

    atomic_store(&writers_left, NWRITERS);
    writer_t w[NWRITERS];
    pthread_t th[NWRITERS + 2];
    for (int i = 0; i < NWRITERS; i++) {
        w[i] = (writer_t){.s = s, .t = i};
        assert_int_equal(pthread_create(&th[i], NULL, writer_main, &w[i]), 0);
    }
    side_t wal = {.s = s}, rd = {.s = s};
    assert_int_equal(pthread_create(&th[NWRITERS], NULL, wal_main, &wal), 0);
    assert_int_equal(pthread_create(&th[NWRITERS + 1], NULL, reader_main, &rd), 0);

    /* GC in this thread, again and again while the writers run. */
    store_gc_opts_t all = {1};
    uint64_t gcs = 0, removed = 0, repacked = 0, live_seen = 0;
    double t0 = now_s();
    int gc_rc = 0;
    while (atomic_load(&writers_left) > 0 && now_s() - t0 < MAX_SECONDS && gcs < 100000) {
        store_gc_stats_t st;
        gc_rc = store_gc_run(s, &all, &st, &e);
        if (gc_rc != 0)
            break;
        gcs++;
        removed += st.chunks_removed;
        repacked += st.packs_repacked;
        live_seen += st.sessions_live;
    }
    for (int i = 0; i < NWRITERS + 2; i++)
        pthread_join(th[i], NULL);
    print_message("%" PRIu64 " GC runs beside the writers: %" PRIu64 " chunks removed, %" PRIu64
                  " packs repacked, %" PRIu64 " live writer sessions seen\n",
                  gcs, removed, repacked, live_seen);
    if (gc_rc != 0)
        fail_msg("GC: %s %s", bq_err_name(gc_rc), e.msg);
    for (int i = 0; i < NWRITERS; i++)
        if (w[i].res.rc != 0)
            fail_msg("writer %d: %s", i, w[i].res.msg);
    if (wal.res.rc != 0)
        fail_msg("%s", wal.res.msg);
    if (rd.res.rc != 0)
        fail_msg("%s", rd.res.msg);
    assert_true(now_s() - t0 < MAX_SECONDS);
    assert_true(gcs >= 2);
    assert_true(live_seen > 0); /* it ran while writers were at work */

    /* Everything kept reads back; then one more GC with nothing running, and again. */
    uint8_t *expect = malloc(FILE_BYTES);
    assert_non_null(expect);
    for (int pass = 0; pass < 2; pass++) {
        for (int t = 0; t < NWRITERS; t++)
            for (int r = 0; r < ROUNDS; r++)
                if (kept(r))
                    OK(read_back(s, t, r, expect, &e));
        uint8_t *seg = malloc(SEG), *want = malloc(SEG);
        assert_true(seg && want);
        store_chunk_ctx_t *ctx = NULL;
        OK(store_chunk_ctx_for(s, &ctx, &e));
        for (int i = 0; i < NSEGS; i++) {
            char name[32];
            size_t len = 0;
            seg_name(i, name);
            seg_content(i, want);
            OK(store_wal_get(dir, "db1", ctx, wal_key, s, name, seg, SEG, &len, &e));
            assert_int_equal(len, SEG);
            assert_memory_equal(seg, want, SEG);
        }
        store_chunk_ctx_destroy(&ctx);
        free(seg);
        free(want);
        verify_clean(s);
        if (pass == 0) {
            store_gc_stats_t st;
            OK(store_gc_run(s, NULL, &st, &e));
            assert_int_equal(st.sessions_live, 0);
            removed += st.chunks_removed;
            /* Each deleted round left its small file's chunk dead: collected by now. */
            uint64_t deleted = 0;
            for (int r = 0; r < ROUNDS - 2; r++)
                deleted += !kept(r);
            assert_true(removed >= NWRITERS * deleted);
            /* Nothing is left but what the kept backups use: per writer, the three contents
             * (37 whole chunks and a partial one each) and one small chunk per kept round. */
            uint64_t n = 0, nkept = 0;
            for (int r = 0; r < ROUNDS; r++)
                nkept += kept(r);
            OK(store_index_count(store_index_handle(s), &n, &e));
            assert_int_equal(n, NWRITERS * (3 * (FILE_BYTES / CS + 1) + nkept));

        }
    }
    free(expect);
    store_close(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_writers_wal_reader_and_gc),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
