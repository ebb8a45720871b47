/* The chunk index (store/index.h): value encoding, put/get/each/del, map growth from a small
 * map, threads, rebuild from packs, and the damaged or lost index that must be refused. */
#include "index.h"
#include "pack.h"

#include <lmdb.h>

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "test_util.h"

#define HINT "rebuild it with barque store verify --rebuild-index"
#define GIB (1ull << 30)

typedef struct {
    char root[256];
    char store[300];
    char dir[320];      /* STORE/index */
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    if (test_mkdtemp(f->root, sizeof f->root, "index_test") != 0) {
        free(f);
        return -1;
    }
    snprintf(f->store, sizeof f->store, "%s/store", f->root);
    snprintf(f->dir, sizeof f->dir, "%s/index", f->store);
    if (mkdir(f->store, 0700) != 0) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    int rc = test_rmtree(f->root);
    free(f);
    return rc == 0 ? 0 : -1;
}

/* ---- helpers -------------------------------------------------------------------------- */

static void make_id(uint64_t n, uint8_t id[STORE_CHUNK_ID_BYTES])
{
    uint64_t x = n * 0x9e3779b97f4a7c15ULL + 12345;
    for (size_t i = 0; i < STORE_CHUNK_ID_BYTES; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        id[i] = (uint8_t)x;
    }
}

static store_index_loc_t make_loc(uint64_t n)
{
    return (store_index_loc_t){
        .pack = n / 1000 + 1,
        .offset = STORE_PACK_HEADER_LEN + (n % 1000) * 4096,
        .rec_len = (uint32_t)(STORE_PACK_RECORD_OVERHEAD + n % 5000),
        .raw_len = (uint32_t)(n * 3),
        .flags = (uint32_t)(n & 6), /* bit 0 is STORE_INDEX_F_DELTA */
    };
}

static void make_entry(uint64_t n, store_index_entry_t *en)
{
    make_id(n, en->id);
    en->loc = make_loc(n);
}

static void hex(const uint8_t *id, char out[65])
{
    for (size_t i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", id[i]);
}

static void assert_loc_equal(const store_index_loc_t *a, const store_index_loc_t *b)
{
    assert_int_equal(a->pack, b->pack);
    assert_int_equal(a->offset, b->offset);
    assert_int_equal(a->rec_len, b->rec_len);
    assert_int_equal(a->raw_len, b->raw_len);
    assert_int_equal(a->flags, b->flags);
    if (a->flags & STORE_INDEX_F_DELTA)
        assert_memory_equal(a->base, b->base, STORE_CHUNK_ID_BYTES);
}

static store_index_t *open_ok(const fixture_t *f, uint64_t initial, uint64_t max, unsigned flags)
{
    bq_errbuf_t e = {{0}};
    store_index_t *idx = NULL;
    int rc = store_index_open(f->store, initial, max, flags, &idx, &e);
    if (rc)
        fail_msg("store_index_open: %d %s", rc, e.msg);
    assert_non_null(idx);
    return idx;
}

static uint64_t count(store_index_t *idx)
{
    bq_errbuf_t e = {{0}};
    uint64_t n = 99;
    assert_int_equal(store_index_count(idx, &n, &e), 0);
    return n;
}

static void put_range(store_index_t *idx, uint64_t from, uint64_t to, size_t batch)
{
    store_index_entry_t *en = malloc(batch * sizeof *en);
    assert_non_null(en);
    bq_errbuf_t e = {{0}};
    for (uint64_t i = from; i < to;) {
        size_t n = 0;
        for (; n < batch && i < to; n++, i++)
            make_entry(i, &en[n]);
        int rc = store_index_put_batch(idx, en, n, &e);
        if (rc)
            fail_msg("put_batch at %llu: %d %s", (unsigned long long)i, rc, e.msg);
    }
    free(en);
}

/* ---- values --------------------------------------------------------------------------- */

static void test_value_codec(void **state)
{
    (void)state;
    store_index_loc_t loc = {0x0102030405060708ULL, 0x1112131415161718ULL, 0x21222324u,
                             0x31323334u, 0x41424344u, {0}};
    uint8_t v[STORE_INDEX_VALUE_LEN];
    assert_int_equal(store_index_loc_encode(&loc, v), STORE_INDEX_VALUE_LEN);
    static const uint8_t want[STORE_INDEX_VALUE_LEN] = {
        0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, 0x18, 0x17, 0x16, 0x15, 0x14, 0x13,
        0x12, 0x11, 0x24, 0x23, 0x22, 0x21, 0x34, 0x33, 0x32, 0x31, 0x44, 0x43, 0x42, 0x41};
    /* rec_len 0x21222324 is not a possible record: decode refuses it */
    assert_memory_equal(v, want, sizeof want);
    bq_errbuf_t e = {{0}};
    store_index_loc_t got;
    assert_int_equal(store_index_loc_decode(v, sizeof v, &got, &e), BQ_E_IO);
    assert_string_equal(e.msg, "index value names an impossible record: record length 555885348 "
                        "out of range (44 to 16781356)");

    loc.rec_len = 1000;
    store_index_loc_encode(&loc, v);
    assert_int_equal(store_index_loc_decode(v, sizeof v, &got, &e), 0);
    assert_loc_equal(&got, &loc);

    /* A delta: 60 bytes, the base after the flags; the flag and the length must agree. */
    store_index_loc_t d = loc;
    d.flags = STORE_INDEX_F_DELTA;
    for (size_t i = 0; i < STORE_CHUNK_ID_BYTES; i++)
        d.base[i] = (uint8_t)(0xa0 + i);
    uint8_t dv[STORE_INDEX_VALUE_MAX];
    assert_int_equal(store_index_loc_encode(&d, dv), STORE_INDEX_VALUE_DELTA_LEN);
    assert_memory_equal(dv + STORE_INDEX_VALUE_LEN, d.base, STORE_CHUNK_ID_BYTES);
    assert_int_equal(store_index_loc_decode(dv, sizeof dv, &got, &e), 0);
    assert_loc_equal(&got, &d);
    assert_int_equal(store_index_loc_decode(dv, STORE_INDEX_VALUE_LEN, &got, &e), BQ_E_IO);
    assert_string_equal(e.msg, "index value of 28 bytes with the delta flag");
    memcpy(dv, v, STORE_INDEX_VALUE_LEN); /* no flag, 60 bytes */
    assert_int_equal(store_index_loc_decode(dv, sizeof dv, &got, &e), BQ_E_IO);
    assert_string_equal(e.msg, "index value of 60 bytes without the delta flag");

    static const struct {
        size_t len;
        uint64_t offset;
        uint32_t rec_len;
        const char *msg;
    } bad[] = {
        {0, 32, 44, "index value of 0 bytes, expected 28 or 60"},
        {27, 32, 44, "index value of 27 bytes, expected 28 or 60"},
        {29, 32, 44, "index value of 29 bytes, expected 28 or 60"},
        {28, 31, 44, "index value names an impossible record: offset 31 is inside the pack "
                     "header"},
        {28, 32, 43, "index value names an impossible record: record length 43 out of range "
                     "(44 to 16781356)"},
        {28, 32, 16781357, "index value names an impossible record: record length 16781357 out "
                           "of range (44 to 16781356)"},
        {28, UINT64_MAX - 50, 100, "index value names an impossible record: offset "
                                   "18446744073709551565 plus length 100 overflows"},
    };
    uint8_t buf[64] = {0};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        store_index_loc_t l = {.pack = 1, .offset = bad[i].offset, .rec_len = bad[i].rec_len};
        store_index_loc_encode(&l, buf);
        memset(&e, 0, sizeof e);
        assert_int_equal(store_index_loc_decode(buf, bad[i].len, &got, &e), BQ_E_IO);
        assert_string_equal(e.msg, bad[i].msg);
    }
}

/* ---- put / get / each / del ----------------------------------------------------------- */

typedef struct {
    store_index_entry_t *seen;
    size_t n, cap;
    store_index_t *del_from;   /* delete each entry from this index as it is seen */
    size_t stop_after;
} walk_t;

static int walk_collect(const uint8_t id[32], const store_index_loc_t *loc, void *arg)
{
    walk_t *w = arg;
    if (w->n == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 1024;
        w->seen = realloc(w->seen, w->cap * sizeof *w->seen);
        assert_non_null(w->seen);
    }
    memcpy(w->seen[w->n].id, id, 32);
    w->seen[w->n].loc = *loc;
    w->n++;
    if (w->del_from && w->n % 500 == 0) {
        /* delete the last 500 seen, from inside the walk */
        bq_errbuf_t e = {{0}};
        uint8_t (*ids)[32] = malloc(500 * sizeof *ids);
        assert_non_null(ids);
        for (size_t i = 0; i < 500; i++)
            memcpy(ids[i], w->seen[w->n - 500 + i].id, 32);
        size_t deleted = 0;
        assert_int_equal(store_index_del_batch(w->del_from, (const uint8_t (*)[32])ids, 500,
                                               &deleted, &e), 0);
        assert_int_equal(deleted, 500);
        free(ids);
    }
    return w->stop_after && w->n == w->stop_after ? 9 : 0;
}

static int entry_cmp(const void *a, const void *b)
{
    return memcmp(((const store_index_entry_t *)a)->id, ((const store_index_entry_t *)b)->id, 32);
}

static void test_put_get_each_del(void **state)
{
    fixture_t *f = *state;
    bq_errbuf_t e = {{0}};
    store_index_t *idx = open_ok(f, 0, GIB, 0);
    struct stat st;
    assert_int_equal(stat(f->dir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    assert_int_equal(count(idx), 0);

    store_index_entry_t en[3];
    for (int i = 0; i < 3; i++)
        make_entry((uint64_t)i, &en[i]);
    assert_int_equal(store_index_put_batch(idx, en, 3, &e), 0);
    assert_int_equal(store_index_put_batch(idx, en, 0, &e), 0);
    assert_int_equal(count(idx), 3);
    for (int i = 0; i < 3; i++) {
        store_index_loc_t loc;
        assert_int_equal(store_index_get(idx, en[i].id, &loc, &e), 0);
        assert_loc_equal(&loc, &en[i].loc);
    }
    /* a missing id */
    uint8_t other[32];
    char h[65], want[600];
    make_id(77, other);
    hex(other, h);
    store_index_loc_t loc;
    assert_int_equal(store_index_get(idx, other, &loc, &e), BQ_E_NOTFOUND);
    snprintf(want, sizeof want, "index %s: no chunk %s", f->dir, h);
    assert_string_equal(e.msg, want);

    /* overwrite */
    en[1].loc.pack = 999;
    assert_int_equal(store_index_put_batch(idx, &en[1], 1, &e), 0);
    assert_int_equal(store_index_get(idx, en[1].id, &loc, &e), 0);
    assert_int_equal(loc.pack, 999);
    assert_int_equal(count(idx), 3);

    /* an impossible entry makes the whole batch fail, nothing written */
    store_index_entry_t bad[2];
    make_entry(10, &bad[0]);
    make_entry(11, &bad[1]);
    bad[1].loc.rec_len = 3;
    hex(bad[1].id, h);
    assert_int_equal(store_index_put_batch(idx, bad, 2, &e), BQ_E_INVAL);
    snprintf(want, sizeof want, "index %s: could not put chunk %s: record length 3 out of range "
             "(44 to 16781356)", f->dir, h);
    assert_string_equal(e.msg, want);
    assert_int_equal(count(idx), 3);
    assert_int_equal(store_index_get(idx, bad[0].id, &loc, &e), BQ_E_NOTFOUND);

    /* each: id order, copies */
    walk_t w = {0};
    assert_int_equal(store_index_each(idx, walk_collect, &w, &e), 0);
    assert_int_equal(w.n, 3);
    qsort(en, 3, sizeof en[0], entry_cmp);
    for (int i = 0; i < 3; i++) {
        assert_memory_equal(w.seen[i].id, en[i].id, 32);
        assert_loc_equal(&w.seen[i].loc, &en[i].loc);
    }
    free(w.seen);
    walk_t stop = {.stop_after = 2};
    assert_int_equal(store_index_each(idx, walk_collect, &stop, &e), 9);
    assert_int_equal(stop.n, 2);
    free(stop.seen);

    /* delete: two present, one not */
    uint8_t ids[3][32];
    memcpy(ids[0], en[0].id, 32);
    memcpy(ids[1], other, 32);
    memcpy(ids[2], en[2].id, 32);
    size_t deleted = 0;
    assert_int_equal(store_index_del_batch(idx, (const uint8_t (*)[32])ids, 3, &deleted, &e), 0);
    assert_int_equal(deleted, 2);
    assert_int_equal(count(idx), 1);
    assert_int_equal(store_index_get(idx, en[0].id, &loc, &e), BQ_E_NOTFOUND);
    assert_int_equal(store_index_get(idx, en[1].id, &loc, &e), 0);

    /* persists across close and open */
    store_index_close(&idx);
    assert_null(idx);
    store_index_close(&idx);
    store_index_close(NULL);
    idx = open_ok(f, 0, GIB, 0);
    assert_int_equal(count(idx), 1);
    assert_int_equal(store_index_get(idx, en[1].id, &loc, &e), 0);
    assert_int_equal(store_index_reader_check(idx, &e), 0);
    store_index_close(&idx);

    /* bad arguments */
    assert_int_equal(store_index_open(f->store, 0, 1000, 0, &idx, &e), BQ_E_INVAL);
    assert_null(idx);
    assert_int_equal(store_index_open("", 0, GIB, 0, &idx, &e), BQ_E_INVAL);
}

static void test_growth_100k(void **state)
{
    fixture_t *f = *state;
    bq_errbuf_t e = {{0}};
    const uint64_t n = 100000;
    /* 1 MiB holds a few thousand entries: the map must double several times */
    store_index_t *idx = open_ok(f, 1u << 20, GIB, 0);
    put_range(idx, 0, 60000, 1000);
    put_range(idx, 60000, n, 20000);
    assert_int_equal(count(idx), n);
    for (uint64_t i = 0; i < n; i += 7) {
        uint8_t id[32];
        store_index_loc_t loc, want = make_loc(i);
        make_id(i, id);
        assert_int_equal(store_index_get(idx, id, &loc, &e), 0);
        assert_loc_equal(&loc, &want);
    }
    walk_t w = {0};
    assert_int_equal(store_index_each(idx, walk_collect, &w, &e), 0);
    assert_int_equal(w.n, n);
    for (size_t i = 1; i < w.n; i++)
        assert_true(memcmp(w.seen[i - 1].id, w.seen[i].id, 32) < 0);
    free(w.seen);
    store_index_close(&idx);

    char path[400];
    struct stat st;
    snprintf(path, sizeof path, "%s/data.mdb", f->dir);
    assert_int_equal(stat(path, &st), 0);
    assert_true(st.st_size > (1 << 20));
    assert_int_equal(st.st_mode & 0777, 0600);

    /* reopened with the default map: all there; a walk that deletes as it goes */
    idx = open_ok(f, 0, GIB, 0);
    assert_int_equal(count(idx), n);
    walk_t d = {.del_from = idx};
    assert_int_equal(store_index_each(idx, walk_collect, &d, &e), 0);
    assert_int_equal(d.n, n);
    free(d.seen);
    assert_int_equal(count(idx), 0);
    store_index_close(&idx);
}

static void test_map_full(void **state)
{
    fixture_t *f = *state;
    bq_errbuf_t e = {{0}};
    store_index_t *idx = open_ok(f, 1u << 20, 2u << 20, 0);
    put_range(idx, 0, 1000, 1000);
    store_index_entry_t *en = malloc(100000 * sizeof *en);
    assert_non_null(en);
    for (uint64_t i = 0; i < 100000; i++)
        make_entry(1000 + i, &en[i]);
    assert_int_equal(store_index_put_batch(idx, en, 100000, &e), BQ_E_MAPFULL);
    char want[600];
    snprintf(want, sizeof want, "index %s is full (map 2 MiB of at most 2 MiB): could not put "
             "100000 entries; raise the index's maximum map size", f->dir);
    assert_string_equal(e.msg, want);
    /* nothing of the batch was written; reads and smaller writes go on */
    assert_int_equal(count(idx), 1000);
    store_index_loc_t loc;
    assert_int_equal(store_index_get(idx, en[0].id, &loc, &e), BQ_E_NOTFOUND);
    uint8_t id[32];
    make_id(5, id);
    assert_int_equal(store_index_get(idx, id, &loc, &e), 0);
    assert_int_equal(store_index_put_batch(idx, en, 10, &e), 0);
    assert_int_equal(count(idx), 1010);
    free(en);
    store_index_close(&idx);
}

/* ---- threads -------------------------------------------------------------------------- */

typedef struct {
    store_index_t *idx;
    uint64_t base;
    int fails;
} thread_arg_t;

static void *thread_main(void *p)
{
    thread_arg_t *a = p;
    bq_errbuf_t e;
    store_index_entry_t en[250];
    for (uint64_t i = 0; i < 20000; i += 250) {
        for (uint64_t k = 0; k < 250; k++)
            make_entry(a->base + i + k, &en[k]);
        if (store_index_put_batch(a->idx, en, 250, &e) != 0)
            a->fails++;
        for (uint64_t k = 0; k < 250; k += 17) {
            store_index_loc_t loc, want = make_loc(a->base + i + k);
            if (store_index_get(a->idx, en[k].id, &loc, &e) != 0 || loc.pack != want.pack ||
                loc.offset != want.offset)
                a->fails++;
        }
    }
    return NULL;
}

static void test_threads(void **state)
{
    fixture_t *f = *state;
    store_index_t *idx = open_ok(f, 1u << 20, GIB, 0);
    pthread_t t[4];
    thread_arg_t a[4];
    for (int i = 0; i < 4; i++) {
        a[i] = (thread_arg_t){.idx = idx, .base = (uint64_t)i * 1000000};
        assert_int_equal(pthread_create(&t[i], NULL, thread_main, &a[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(a[i].fails, 0);
    }
    assert_int_equal(count(idx), 80000);
    store_index_close(&idx);
}

static void test_fork(void **state)
{
    fixture_t *f = *state;
    store_index_t *idx = open_ok(f, 0, GIB, 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        bq_errbuf_t e = {{0}};
        uint64_t n;
        int rc = store_index_count(idx, &n, &e);
        int ok = rc == BQ_E_STATE && strstr(e.msg, "not usable after fork") != NULL;
        store_index_close(&idx); /* frees memory only */
        _exit(ok ? 0 : 1);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_int_equal(count(idx), 0);
    store_index_close(&idx);
}

/* ---- rebuild -------------------------------------------------------------------------- */

/* The test's own "sealed" body: raw_len u32 LE ‖ flags u8 ‖ filler. */
static int derive_test(const uint8_t id[32], const void *body, size_t body_len, uint32_t *raw_len,
                       uint32_t *flags, void *arg)
{
    (void)id;
    const uint8_t *b = body;
    if (arg)
        (*(int *)arg)++;
    if (body_len < 5)
        return 1; /* skip */
    *raw_len = (uint32_t)b[0] | ((uint32_t)b[1] << 8) | ((uint32_t)b[2] << 16) |
               ((uint32_t)b[3] << 24);
    *flags = b[4];
    return 0;
}

/* Write packs 1..npacks with per records each, indexing them as a backup would (after the sync,
 * first writer of an id wins). Record (p, r) holds chunk p * 100000 + r, except that the first
 * record of the last pack repeats the first chunk of pack 1 (a dedup race). */
static void write_packs(const fixture_t *f, store_index_t *idx, int npacks, int per)
{
    bq_errbuf_t e = {{0}};
    store_index_entry_t *en = malloc((size_t)per * sizeof *en);
    assert_non_null(en);
    uint8_t body[600];
    for (int p = 1; p <= npacks; p++) {
        store_pack_writer_t *w = NULL;
        assert_int_equal(store_pack_create(f->store, (uint64_t)p, &w, &e), 0);
        size_t n = 0;
        for (int r = 0; r < per; r++) {
            uint64_t chunk = (p == npacks && r == 0) ? 100000 : (uint64_t)p * 100000 + (uint64_t)r;
            size_t len = 5 + (size_t)(r * 13 % 500);
            uint32_t raw = (uint32_t)(chunk * 7);
            body[0] = (uint8_t)raw;
            body[1] = (uint8_t)(raw >> 8);
            body[2] = (uint8_t)(raw >> 16);
            body[3] = (uint8_t)(raw >> 24);
            body[4] = (uint8_t)(chunk & 6); /* not the delta flag */
            memset(body + 5, (int)chunk, len - 5);
            store_index_entry_t *x = &en[n];
            make_id(chunk, x->id);
            assert_int_equal(store_pack_append(w, x->id, body, len, &x->loc.offset,
                                               &x->loc.rec_len, &e), 0);
            x->loc.pack = (uint64_t)p;
            x->loc.raw_len = raw;
            x->loc.flags = body[4];
            store_index_loc_t have;
            if (store_index_get(idx, x->id, &have, &e) == BQ_E_NOTFOUND)
                n++; /* dedup: an id already indexed is not indexed again */
        }
        assert_int_equal(store_pack_sync(w, &e), 0);
        assert_int_equal(store_index_put_batch(idx, en, n, &e), 0);
        assert_int_equal(store_pack_close(&w, &e), 0);
    }
    free(en);
}

static walk_t snapshot(store_index_t *idx)
{
    bq_errbuf_t e = {{0}};
    walk_t w = {0};
    assert_int_equal(store_index_each(idx, walk_collect, &w, &e), 0);
    return w;
}

static void assert_same(const walk_t *a, const walk_t *b)
{
    assert_int_equal(a->n, b->n);
    for (size_t i = 0; i < a->n; i++) {
        assert_memory_equal(a->seen[i].id, b->seen[i].id, 32);
        assert_loc_equal(&a->seen[i].loc, &b->seen[i].loc);
    }
}

static void test_rebuild(void **state)
{
    fixture_t *f = *state;
    bq_errbuf_t e = {{0}};
    store_index_t *idx = open_ok(f, 0, GIB, 0);
    write_packs(f, idx, 3, 3000);
    walk_t before = snapshot(idx);
    assert_int_equal(before.n, 3 * 3000 - 1);

    /* damage the index's contents: entries lost, one pointing elsewhere, one stranger */
    uint8_t gone[2][32];
    make_id(100005, gone[0]);
    make_id(202999, gone[1]);
    assert_int_equal(store_index_del_batch(idx, (const uint8_t (*)[32])gone, 2, NULL, &e), 0);
    store_index_entry_t odd[2];
    make_entry(100006, &odd[0]);
    make_entry(555555, &odd[1]);
    assert_int_equal(store_index_put_batch(idx, odd, 2, &e), 0);

    int calls = 0;
    store_index_rebuild_stats_t st;
    assert_int_equal(store_index_rebuild(idx, f->store, derive_test, &calls, &st, &e), 0);
    assert_int_equal(st.packs, 3);
    assert_int_equal(st.records, 3 * 3000 - 1);
    assert_int_equal(st.duplicates, 1);
    assert_int_equal(st.skipped, 0);
    assert_int_equal(st.damaged_packs, 0);
    assert_int_equal(calls, 3 * 3000);
    walk_t after = snapshot(idx);
    assert_same(&before, &after);
    free(after.seen);
    store_index_close(&idx);

    /* a truncated pack: its records before the damage are indexed, the rest reported */
    char path[512];
    assert_int_equal(store_pack_path(f->store, 2, path, sizeof path), 0);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(truncate(path, sb.st_size - 3), 0);
    idx = open_ok(f, 0, GIB, 0);
    assert_int_equal(store_index_rebuild(idx, f->store, derive_test, NULL, &st, &e), 0);
    assert_int_equal(st.packs, 3);
    assert_int_equal(st.damaged_packs, 1);
    assert_int_equal(st.records, 3 * 3000 - 2);
    assert_true(st.damaged_bytes > 0 && st.damaged_bytes < 600);
    assert_int_equal(count(idx), 3 * 3000 - 2);
    /* without derive: raw_len and flags are 0 */
    assert_int_equal(store_index_rebuild(idx, f->store, NULL, NULL, NULL, &e), 0);
    uint8_t id[32];
    store_index_loc_t loc;
    make_id(100001, id);
    assert_int_equal(store_index_get(idx, id, &loc, &e), 0);
    assert_int_equal(loc.raw_len, 0);
    assert_int_equal(loc.flags, 0);
    assert_int_equal(loc.pack, 1);
    free(before.seen);
    store_index_close(&idx);
}

static int derive_fail(const uint8_t id[32], const void *body, size_t body_len,
                       uint32_t *raw_len, uint32_t *flags, void *arg)
{
    (void)id, (void)body, (void)body_len, (void)raw_len, (void)flags;
    return ++*(int *)arg == 10 ? BQ_E_NOMEM : 0;
}

static void test_rebuild_interrupted(void **state)
{
    fixture_t *f = *state;
    bq_errbuf_t e = {{0}};
    store_index_t *idx = open_ok(f, 0, GIB, 0);
    write_packs(f, idx, 2, 100);
    walk_t before = snapshot(idx);
    int calls = 0;
    assert_int_equal(store_index_rebuild(idx, f->store, derive_fail, &calls, NULL, &e),
                     BQ_E_NOMEM);
    assert_non_null(strstr(e.msg, "in pack 0000000000000001 at offset "));
    store_index_close(&idx);

    /* the half-rebuilt index is refused until a rebuild completes */
    char want[600];
    snprintf(want, sizeof want, "index %s is incomplete (a rebuild was interrupted): " HINT,
             f->dir);
    assert_int_equal(store_index_open(f->store, 0, GIB, 0, &idx, &e), BQ_E_IO);
    assert_null(idx);
    assert_string_equal(e.msg, want);
    idx = open_ok(f, 0, GIB, STORE_INDEX_OPEN_REPAIR);
    assert_int_equal(store_index_rebuild(idx, f->store, derive_test, NULL, NULL, &e), 0);
    store_index_close(&idx);
    idx = open_ok(f, 0, GIB, 0);
    walk_t after = snapshot(idx);
    assert_same(&before, &after);
    free(before.seen);
    free(after.seen);
    store_index_close(&idx);
}

static void garble(const char *path, size_t len)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    for (size_t i = 0; i < len; i++)
        fputc((int)((i * 2654435761u) >> 7) & 0xff, fp);
    assert_int_equal(fclose(fp), 0);
}

static void test_damaged_file(void **state)
{
    fixture_t *f = *state;
    bq_errbuf_t e = {{0}};
    store_index_t *idx = open_ok(f, 0, GIB, 0);
    write_packs(f, idx, 2, 500);
    walk_t before = snapshot(idx);
    store_index_close(&idx);

    char data[400], want[700];
    snprintf(data, sizeof data, "%s/data.mdb", f->dir);
    garble(data, 1u << 20);
    snprintf(want, sizeof want, "index %s is damaged (could not open: MDB_INVALID: File is not "
             "an LMDB file): " HINT, f->dir);
    assert_int_equal(store_index_open(f->store, 0, GIB, 0, &idx, &e), BQ_E_IO);
    assert_null(idx);
    assert_string_equal(e.msg, want);
    garble(data, 100);
    assert_int_equal(store_index_open(f->store, 0, GIB, 0, &idx, &e), BQ_E_IO);
    assert_string_equal(e.msg, want);

    /* the repair starts afresh, the rebuild restores everything */
    idx = open_ok(f, 0, GIB, STORE_INDEX_OPEN_REPAIR);
    assert_int_equal(count(idx), 0);
    store_index_rebuild_stats_t st;
    assert_int_equal(store_index_rebuild(idx, f->store, derive_test, NULL, &st, &e), 0);
    assert_int_equal(st.records, before.n);
    store_index_close(&idx);
    idx = open_ok(f, 0, GIB, 0);
    walk_t after = snapshot(idx);
    assert_same(&before, &after);
    free(after.seen);
    free(before.seen);
    store_index_close(&idx);
}

static void test_lost_index(void **state)
{
    fixture_t *f = *state;
    bq_errbuf_t e = {{0}};
    store_index_t *idx = open_ok(f, 0, GIB, 0);
    write_packs(f, idx, 2, 50);
    store_index_close(&idx);
    char cmd[400], want[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);

    /* a missing index in a store with packs does not pass for an empty one, twice */
    snprintf(want, sizeof want, "index %s is missing or empty but the store holds packs: " HINT,
             f->dir);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(store_index_open(f->store, 0, GIB, 0, &idx, &e), BQ_E_IO);
        assert_null(idx);
        assert_string_equal(e.msg, want);
    }
    /* nor does an emptied data.mdb */
    char data[400];
    snprintf(data, sizeof data, "%s/data.mdb", f->dir);
    garble(data, 0);
    assert_int_equal(store_index_open(f->store, 0, GIB, 0, &idx, &e), BQ_E_IO);
    assert_string_equal(e.msg, want);

    /* a repair that stops before its rebuild leaves the index refused */
    idx = open_ok(f, 0, GIB, STORE_INDEX_OPEN_REPAIR);
    store_index_close(&idx);
    snprintf(want, sizeof want, "index %s is incomplete (a rebuild was interrupted): " HINT,
             f->dir);
    assert_int_equal(store_index_open(f->store, 0, GIB, 0, &idx, &e), BQ_E_IO);
    assert_string_equal(e.msg, want);

    idx = open_ok(f, 0, GIB, STORE_INDEX_OPEN_REPAIR);
    assert_int_equal(store_index_rebuild(idx, f->store, derive_test, NULL, NULL, &e), 0);
    store_index_close(&idx);
    idx = open_ok(f, 0, GIB, 0);
    assert_int_equal(count(idx), 2 * 50 - 1);
    store_index_close(&idx);
}

/* Values of the wrong size written behind the index's back are reported as damage. */
static void test_damaged_value(void **state)
{
    fixture_t *f = *state;
    bq_errbuf_t e = {{0}};
    store_index_t *idx = open_ok(f, 0, GIB, 0);
    store_index_entry_t en;
    make_entry(1, &en);
    assert_int_equal(store_index_put_batch(idx, &en, 1, &e), 0);
    store_index_close(&idx);

    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 4), 0);
    assert_int_equal(mdb_env_open(env, f->dir, MDB_NOTLS, 0600), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "chunks", 0, &dbi), 0);
    MDB_val k = {32, en.id}, v = {27, "short value, 27 bytes long!"};
    assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);

    idx = open_ok(f, 0, GIB, 0);
    char h[65], want[700];
    hex(en.id, h);
    snprintf(want, sizeof want, "index %s is damaged (chunk %s: index value of 27 bytes, "
             "expected 28 or 60): " HINT, f->dir, h);
    store_index_loc_t loc;
    assert_int_equal(store_index_get(idx, en.id, &loc, &e), BQ_E_IO);
    assert_string_equal(e.msg, want);
    walk_t w = {0};
    assert_int_equal(store_index_each(idx, walk_collect, &w, &e), BQ_E_IO);
    assert_string_equal(e.msg, want);
    free(w.seen);
    store_index_close(&idx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_value_codec),
        cmocka_unit_test_setup_teardown(test_put_get_each_del, setup, teardown),
        cmocka_unit_test_setup_teardown(test_growth_100k, setup, teardown),
        cmocka_unit_test_setup_teardown(test_map_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fork, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rebuild, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rebuild_interrupted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lost_index, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_value, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
