/* The store's WAL area (store/wal.h): archive rules, names, damage. */
#include "fsutil.h"
#include "wal.h"

#include <lz4.h>
#include <setjmp.h>
#include <sodium.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "test_util.h"

#define MIB ((size_t)1 << 20)
#define SEG (16 * MIB)
#define SEGNAME "000000010000000000000001"

typedef struct {
    char root[256];
    uint8_t idkey[STORE_KEY_BYTES];
    store_datakey_t dk;
    store_chunk_ctx_t *ctx;
} fixture_t;

static uint64_t rng_state = 0x853c49e6748fea9bULL;
static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* WAL-like: mostly zero pages with some record-ish text. */
static void fill_text(uint8_t *p, size_t len)
{
    static const char row[] = "INSERT INTO t VALUES (1234, 'barque');";
    memset(p, 0, len);
    for (size_t i = 0; i < len / 2; i++)
        p[i] = (uint8_t)row[i % (sizeof row - 1)];
    for (size_t i = 0; i + 8 < len; i += 4093)
        p[i] = (uint8_t)rng();
}

static void fill_random(uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)rng();
}

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    if (!f || sodium_init() < 0)
        return -1;
    if (test_mkdtemp(f->root, sizeof f->root, "wal_test") != 0)
        return -1;
    randombytes_buf(f->idkey, sizeof f->idkey);
    f->dk.id = 0x2a;
    randombytes_buf(f->dk.key, sizeof f->dk.key);
    bq_errbuf_t e = {{0}};
    if (store_chunk_ctx_new(f->idkey, &f->ctx, &e) != 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    int rc = test_rmtree(f->root);
    store_chunk_ctx_destroy(&f->ctx);
    free(f);
    return rc == 0 ? 0 : -1;
}

/* Key lookup: arg is the one key it knows. */
static int lookup(void *arg, uint32_t key_id, store_datakey_t *out, bq_errbuf_t *e)
{
    const store_datakey_t *dk = arg;
    if (key_id != dk->id)
        return bq_fail(e, BQ_E_NOTFOUND, "no data key %08x", (unsigned)key_id);
    *out = *dk;
    return 0;
}

static void path_of(const fixture_t *f, const char *name, char *out, size_t cap)
{
    snprintf(out, cap, "%s/wal/db1/%.8s/%s", f->root, name, name);
}

static uint8_t *read_all(const char *path, size_t *len)
{
    char *buf = NULL;
    bq_errbuf_t e = {{0}};
    if (bq_file_read_small(path, 64 * MIB, &buf, len, &e) != 0)
        fail_msg("could not read %s: %s", path, e.msg);
    return (uint8_t *)buf;
}

static void write_all(const char *path, const void *data, size_t len)
{
    bq_errbuf_t e = {{0}};
    if (bq_file_write_durable(path, data, len, 0600, 0, &e) != 0)
        fail_msg("could not write %s: %s", path, e.msg);
}

/* The content id a BQWAL002 header holds: the keyed hash of the whole content, in hex. */
static void cid_hex(store_chunk_ctx_t *ctx, const void *data, size_t len, char out[65])
{
    uint8_t id[32];
    assert_int_equal(store_chunk_ctx_id(ctx, data, len, id), 0);
    sodium_bin2hex(out, 65, id, sizeof id);
}

static void put_ok(fixture_t *f, store_comp_t comp, size_t seg, const char *name,
                   const void *data, size_t len)
{
    bq_errbuf_t e = {{0}};
    int rc = store_wal_put(f->root, "db1", f->ctx, &f->dk, comp, 0, seg, name, data, len, NULL, &e);
    if (rc != 0)
        fail_msg("put %s: %s", name, e.msg);
}

/* Get name and compare with data. */
static void get_same(fixture_t *f, const char *name, const void *data, size_t len)
{
    bq_errbuf_t e = {{0}};
    size_t cap = len ? len : 1, got = 0;
    uint8_t *out = malloc(cap);
    assert_non_null(out);
    int rc = store_wal_get(f->root, "db1", f->ctx, lookup, &f->dk, name, out, cap, &got, &e);
    if (rc != 0)
        fail_msg("get %s: %s", name, e.msg);
    assert_int_equal(got, len);
    if (len)
        assert_true(memcmp(out, data, len) == 0);
    uint64_t slen = 0;
    uint8_t sha[32], want[32];
    int ver = 0;
    assert_int_equal(store_wal_stat(f->root, "db1", name, &slen, &ver, sha, &e), 0);
    assert_int_equal(slen, len);
    assert_int_equal(ver, 2); /* BQWAL002: the header holds the keyed content id */
    assert_int_equal(store_chunk_ctx_id(f->ctx, data, len, want), 0);
    assert_memory_equal(sha, want, 32);
    free(out);
}

static void test_segment_16m(void **state)
{
    fixture_t *f = *state;
    uint8_t *data = malloc(SEG);
    assert_non_null(data);
    char path[512];

    fill_text(data, SEG);
    put_ok(f, STORE_COMP_ZSTD, SEG, SEGNAME, data, SEG);
    get_same(f, SEGNAME, data, SEG);
    struct stat st;
    path_of(f, SEGNAME, path, sizeof path);
    assert_int_equal(stat(path, &st), 0);
    assert_true((size_t)st.st_size < SEG / 4); /* compressed */
    assert_int_equal(st.st_mode & 0777, 0600);

    fill_random(data, SEG);
    put_ok(f, STORE_COMP_LZ4, SEG, "000000010000000000000002", data, SEG);
    get_same(f, "000000010000000000000002", data, SEG);
    path_of(f, "000000010000000000000002", path, sizeof path);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal((size_t)st.st_size, STORE_WAL_HEADER_BYTES + STORE_WAL_PIECE_HEADER_BYTES +
                                             STORE_CHUNK_OVERHEAD + SEG);
    free(data);
}

/* A 64 MiB segment is sealed as 4 pieces (mostly zeros: cheap). */
static void test_segment_pieces(void **state)
{
    fixture_t *f = *state;
    size_t seg = 64 * MIB;
    uint8_t *data = calloc(1, seg);
    assert_non_null(data);
    for (size_t i = 0; i < seg; i += 8191)
        data[i] = (uint8_t)rng();
    put_ok(f, STORE_COMP_ZSTD, seg, "000000030000000A00000003", data, seg);
    get_same(f, "000000030000000A00000003", data, seg);
    /* too small a buffer */
    bq_errbuf_t e = {{0}};
    size_t got = 0;
    assert_int_equal(store_wal_get(f->root, "db1", f->ctx, lookup, &f->dk, "000000030000000A00000003",
                                   data, seg - 1, &got, &e),
                     BQ_E_TOOBIG);
    free(data);
}

static void test_small_files(void **state)
{
    fixture_t *f = *state;
    uint8_t *data = malloc(SEG);
    assert_non_null(data);
    fill_text(data, 123457);
    put_ok(f, STORE_COMP_ZSTD, SEG, SEGNAME ".partial", data, 123457);
    get_same(f, SEGNAME ".partial", data, 123457);
    put_ok(f, STORE_COMP_NONE, SEG, "000000010000000000000009.partial", data, 0);
    get_same(f, "000000010000000000000009.partial", data, 0);

    const char *hist = "1\t0/3000000\tno recovery target specified\n";
    put_ok(f, STORE_COMP_ZSTD, SEG, "00000002.history", hist, strlen(hist));
    get_same(f, "00000002.history", hist, strlen(hist));

    const char *label = "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n"
                        "STOP WAL LOCATION: 0/2000100 (file 000000010000000000000002)\n";
    put_ok(f, STORE_COMP_LZ4, SEG, "000000010000000000000002.00000028.backup", label,
           strlen(label));
    get_same(f, "000000010000000000000002.00000028.backup", label, strlen(label));

    /* the smallest segment size */
    fill_random(data, MIB);
    put_ok(f, STORE_COMP_ZSTD, MIB, "0000000100000000000003FF", data, MIB);
    get_same(f, "0000000100000000000003FF", data, MIB);
    free(data);
}

static void test_same_twice(void **state)
{
    fixture_t *f = *state;
    size_t len = 200000;
    uint8_t *data = malloc(len);
    assert_non_null(data);
    fill_text(data, len);
    const char *name = "00000001000000000000000A.partial";
    put_ok(f, STORE_COMP_ZSTD, SEG, name, data, len);
    char path[512];
    path_of(f, name, path, sizeof path);
    struct stat st1, st2;
    size_t n1, n2;
    assert_int_equal(stat(path, &st1), 0);
    uint8_t *b1 = read_all(path, &n1);

    put_ok(f, STORE_COMP_ZSTD, SEG, name, data, len); /* the nonce would differ if rewritten */
    assert_int_equal(stat(path, &st2), 0);
    uint8_t *b2 = read_all(path, &n2);
    assert_int_equal(st1.st_ino, st2.st_ino);
    assert_int_equal(n1, n2);
    assert_memory_equal(b1, b2, n1);
    get_same(f, name, data, len);
    free(b1);
    free(b2);
    free(data);
}

typedef struct {
    uint32_t tli;
    char name[STORE_WAL_NAME_MAX];
} seen_t;

typedef struct {
    seen_t v[32];
    size_t n;
} seen_list_t;

static int collect(uint32_t tli, const char *name, void *arg)
{
    seen_list_t *s = arg;
    if (s->n < 32) {
        s->v[s->n].tli = tli;
        snprintf(s->v[s->n].name, sizeof s->v[s->n].name, "%s", name);
    }
    s->n++;
    return 0;
}

static void test_conflict(void **state)
{
    fixture_t *f = *state;
    size_t len = 100000;
    uint8_t *a = malloc(len), *b = malloc(len);
    assert_non_null(a);
    assert_non_null(b);
    fill_text(a, len);
    memcpy(b, a, len);
    b[len / 2] ^= 1;
    const char *name = "000000010000000000000005.partial";
    put_ok(f, STORE_COMP_ZSTD, SEG, name, a, len);
    char path[512];
    path_of(f, name, path, sizeof path);
    size_t n1, n2;
    uint8_t *before = read_all(path, &n1);

    char ha[65], hb[65];
    cid_hex(f->ctx, a, len, ha);
    cid_hex(f->ctx, b, len, hb);
    char cpath[600], want[1024];
    snprintf(cpath, sizeof cpath, "%s.conflict-%.16s", path, hb);
    snprintf(want, sizeof want,
             "could not archive WAL file %s: %s holds other content (stored content id %s, "
             "new content id %s); the new content is kept in %s",
             name, path, ha, hb, cpath);
    for (int round = 0; round < 2; round++) { /* archive_command retries */
        bq_errbuf_t e = {{0}};
        assert_int_equal(store_wal_put(f->root, "db1", f->ctx, &f->dk, STORE_COMP_ZSTD, 0, SEG, name, b,
                                       len, NULL, &e),
                         BQ_E_EXISTS);
        assert_string_equal(e.msg, want);
        uint8_t *after = read_all(path, &n2);
        assert_int_equal(n1, n2);
        assert_memory_equal(before, after, n1);
        free(after);
        assert_int_equal(access(cpath, F_OK), 0);
    }
    get_same(f, name, a, len);

    /* listed as a conflict, not as a WAL file */
    seen_list_t s = {0};
    bq_errbuf_t e = {{0}};
    assert_int_equal(store_wal_list(f->root, "db1", collect, &s, &e), 0);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.v[0].name, name);
    memset(&s, 0, sizeof s);
    assert_int_equal(store_wal_conflicts(f->root, "db1", collect, &s, &e), 0);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.v[0].name, strrchr(cpath, '/') + 1);
    assert_int_equal(s.v[0].tli, 1);
    free(before);
    free(a);
    free(b);
}

typedef struct {
    const char *name;
    size_t seg;
    size_t len;
    const char *msg;
} bad_case_t;

static void test_bad_names(void **state)
{
    fixture_t *f = *state;
    static const bad_case_t cases[] = {
        {"00000001000000000000000a", SEG, SEG,
         "invalid WAL file name \"00000001000000000000000a\" (not a segment, .partial, .history "
         "or .backup file name in uppercase hex)"},
        {"00000001000000000000000", SEG, SEG,
         "invalid WAL file name \"00000001000000000000000\" (not a segment, .partial, .history "
         "or .backup file name in uppercase hex)"},
        {"../x", SEG, 10,
         "invalid WAL file name \"../x\" (not a segment, .partial, .history or .backup file "
         "name in uppercase hex)"},
        {"00000001/../../../etc/x", SEG, 10,
         "invalid WAL file name \"00000001/../../../etc/x\" (not a segment, .partial, .history "
         "or .backup file name in uppercase hex)"},
        {"", SEG, 0, "invalid WAL file name \"\" (empty)"},
        {"000000010000000000000001.tmp", SEG, 10,
         "invalid WAL file name \"000000010000000000000001.tmp\" (not a segment, .partial, "
         ".history or .backup file name in uppercase hex)"},
        {"00000002.History", SEG, 10,
         "invalid WAL file name \"00000002.History\" (not a segment, .partial, .history or "
         ".backup file name in uppercase hex)"},
        {"000000000000000000000001", SEG, SEG,
         "invalid WAL file name \"000000000000000000000001\" (timeline 0)"},
        {SEGNAME, SEG, SEG - 1,
         "WAL segment 000000010000000000000001 holds 16777215 bytes, not the segment size "
         "16777216"},
        {SEGNAME, SEG, 0,
         "WAL segment 000000010000000000000001 holds 0 bytes, not the segment size 16777216"},
        {"000000010000000000000100", SEG, SEG,
         "invalid WAL file name \"000000010000000000000100\" (segment number 00000100 is above "
         "000000FF for a segment size of 16777216)"},
        {SEGNAME ".partial", SEG, SEG + 1,
         "partial WAL segment 000000010000000000000001.partial holds 16777217 bytes, more than "
         "the segment size 16777216"},
        {"00000002.history", SEG, MIB + 1,
         "timeline history file 00000002.history holds 1048577 bytes, more than the limit of "
         "1048576"},
        {"000000010000000000000002.00000028.backup", SEG, MIB + 1,
         "backup history file 000000010000000000000002.00000028.backup holds 1048577 bytes, "
         "more than the limit of 1048576"},
        {SEGNAME, 3 * MIB, 3 * MIB,
         "invalid WAL segment size 3145728 for 000000010000000000000001 (a power of two from 1 "
         "MiB to 1 GiB)"},
        {SEGNAME, 512 * 1024, 512 * 1024,
         "invalid WAL segment size 524288 for 000000010000000000000001 (a power of two from 1 "
         "MiB to 1 GiB)"},
        {SEGNAME, 2048 * MIB, 2048 * MIB,
         "invalid WAL segment size 2147483648 for 000000010000000000000001 (a power of two "
         "from 1 MiB to 1 GiB)"},
    };
    /* Lengths are only checked, never read, except for the small ones. */
    uint8_t *data = calloc(1, SEG + 1);
    assert_non_null(data);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const bad_case_t *c = &cases[i];
        bq_errbuf_t e = {{0}};
        int rc = store_wal_put(f->root, "db1", f->ctx, &f->dk, STORE_COMP_ZSTD, 0, c->seg, c->name, data,
                               c->len, NULL, &e);
        if (rc != BQ_E_INVAL || strcmp(e.msg, c->msg) != 0)
            fail_msg("case %zu (%s): rc %d, message \"%s\"", i, c->name, rc, e.msg);
    }
    free(data);
    /* nothing was written */
    char wal[400];
    snprintf(wal, sizeof wal, "%s/wal/db1/00000001", f->root);
    struct stat st;
    if (stat(wal, &st) == 0) {
        seen_list_t s = {0};
        bq_errbuf_t e = {{0}};
        assert_int_equal(store_wal_list(f->root, "db1", collect, &s, &e), 0);
        assert_int_equal(s.n, 0);
    }
    /* and get refuses bad names the same way, never with NOTFOUND */
    bq_errbuf_t e = {{0}};
    uint8_t buf[16];
    size_t got;
    assert_int_equal(store_wal_get(f->root, "db1", f->ctx, lookup, &f->dk, "../x", buf, sizeof buf, &got,
                                   &e),
                     BQ_E_INVAL);
}

static void test_missing(void **state)
{
    fixture_t *f = *state;
    bq_errbuf_t e = {{0}};
    uint8_t buf[16];
    size_t got;
    /* no wal/ at all */
    assert_int_equal(store_wal_get(f->root, "db1", f->ctx, lookup, &f->dk, SEGNAME, buf, sizeof buf,
                                   &got, &e),
                     BQ_E_NOTFOUND);
    seen_list_t s = {0};
    assert_int_equal(store_wal_list(f->root, "db1", collect, &s, &e), 0);
    assert_int_equal(s.n, 0);
    /* wal/00000001 exists, the name does not */
    put_ok(f, STORE_COMP_NONE, SEG, "00000001.history", "x", 1);
    assert_int_equal(store_wal_get(f->root, "db1", f->ctx, lookup, &f->dk, SEGNAME ".partial", buf,
                                   sizeof buf, &got, &e),
                     BQ_E_NOTFOUND);
    char path[512];
    path_of(f, SEGNAME ".partial", path, sizeof path);
    assert_non_null(strstr(e.msg, path));
    assert_int_equal(store_wal_stat(f->root, "db1", "00000002.history", NULL, NULL, NULL, &e), BQ_E_NOTFOUND);
}

/* Every byte that matters, flipped, cut or added, is BQ_E_IO naming the file. */
static void test_damage(void **state)
{
    fixture_t *f = *state;
    size_t len = 70000;
    uint8_t *data = malloc(len), *out = malloc(len);
    assert_non_null(data);
    assert_non_null(out);
    fill_text(data, len);
    const char *name = "000000020000000000000007.partial";
    put_ok(f, STORE_COMP_ZSTD, SEG, name, data, len);
    char path[512];
    path_of(f, name, path, sizeof path);
    size_t n;
    uint8_t *orig = read_all(path, &n);
    size_t offsets[] = {0, 7, 8, 39, 40, 47, 48, 48 + 31, 48 + 32, 48 + 35, 48 + 36,
                        48 + 37, 48 + 41, 48 + 45, n / 2, n - 17, n - 1};
    for (size_t i = 0; i < sizeof offsets / sizeof offsets[0]; i++) {
        uint8_t *bad = malloc(n);
        assert_non_null(bad);
        memcpy(bad, orig, n);
        bad[offsets[i]] ^= 0x10;
        write_all(path, bad, n);
        bq_errbuf_t e = {{0}};
        size_t got;
        int rc = store_wal_get(f->root, "db1", f->ctx, lookup, &f->dk, name, out, len, &got, &e);
        /* a flipped key id names a data key the store does not have: BQ_E_KEY */
        int want = offsets[i] >= 48 + 37 && offsets[i] < 48 + 41 ? BQ_E_KEY : BQ_E_IO;
        if (rc != want || !strstr(e.msg, path))
            fail_msg("flip at %zu: rc %d, message \"%s\"", offsets[i], rc, e.msg);
        free(bad);
    }
    size_t cuts[] = {0, 5, 47, 48, 60, 84, n - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        write_all(path, orig, cuts[i]);
        bq_errbuf_t e = {{0}};
        size_t got;
        int rc = store_wal_get(f->root, "db1", f->ctx, lookup, &f->dk, name, out, len, &got, &e);
        if (rc != BQ_E_IO || !strstr(e.msg, path))
            fail_msg("cut at %zu: rc %d, message \"%s\"", cuts[i], rc, e.msg);
    }
    uint8_t *longer = malloc(n + 1);
    assert_non_null(longer);
    memcpy(longer, orig, n);
    longer[n] = 0;
    write_all(path, longer, n + 1);
    bq_errbuf_t e = {{0}};
    size_t got;
    assert_int_equal(store_wal_get(f->root, "db1", f->ctx, lookup, &f->dk, name, out, len, &got, &e),
                     BQ_E_IO);
    assert_non_null(strstr(e.msg, path));
    /* a damaged stored file is never replaced by a put */
    write_all(path, orig, 10);
    assert_int_equal(store_wal_put(f->root, "db1", f->ctx, &f->dk, STORE_COMP_ZSTD, 0, SEG, name, data,
                                   len, NULL, &e),
                     BQ_E_IO);
    assert_non_null(strstr(e.msg, path));
    size_t n2;
    uint8_t *still = read_all(path, &n2);
    assert_int_equal(n2, 10);
    free(still);
    /* restored, it reads again */
    write_all(path, orig, n);
    get_same(f, name, data, len);
    free(longer);
    free(orig);
    free(data);
    free(out);
}

static int lookup_fail(void *arg, uint32_t key_id, store_datakey_t *out, bq_errbuf_t *e)
{
    (void)arg;
    (void)out;
    return bq_fail(e, BQ_E_NOTFOUND, "keys/%08x.datakey does not exist", (unsigned)key_id);
}

static void test_wrong_key(void **state)
{
    fixture_t *f = *state;
    const char *hist = "1\t0/3000000\tno recovery target specified\n";
    const char *name = "00000002.history";
    put_ok(f, STORE_COMP_ZSTD, SEG, name, hist, strlen(hist));
    char path[512];
    path_of(f, name, path, sizeof path);
    store_datakey_t other = f->dk;
    other.key[0] ^= 1;
    uint8_t out[256];
    size_t got;
    bq_errbuf_t e = {{0}};
    assert_int_equal(store_wal_get(f->root, "db1", f->ctx, lookup, &other, name, out, sizeof out, &got,
                                   &e),
                     BQ_E_IO);
    assert_non_null(strstr(e.msg, path));
    assert_non_null(strstr(e.msg, "authentication failed"));
    /* a missing data key is never BQ_E_NOTFOUND (that means "not archived") */
    assert_int_equal(store_wal_get(f->root, "db1", f->ctx, lookup_fail, NULL, name, out, sizeof out,
                                   &got, &e),
                     BQ_E_KEY);
    assert_non_null(strstr(e.msg, "keys/0000002a.datakey does not exist"));
    /* another data key id */
    other = f->dk;
    other.id = 0x2b;
    assert_int_equal(store_wal_get(f->root, "db1", f->ctx, lookup, &other, name, out, sizeof out, &got,
                                   &e),
                     BQ_E_KEY);
}

static void test_list(void **state)
{
    fixture_t *f = *state;
    const char *names[] = {
        "000000020000000000000004", "00000002.history", "000000010000000000000003.partial",
        "000000010000000000000002", "00000001000000000000000A", "000000010000000000000002.00000028.backup",
        "0000000A0000000000000001",
    };
    uint8_t *seg = calloc(1, MIB);
    assert_non_null(seg);
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        size_t len = strlen(names[i]) == 24 ? MIB : 10;
        put_ok(f, STORE_COMP_ZSTD, MIB, names[i], seg, len);
    }
    free(seg);
    /* temp files and strangers are skipped */
    char junk[512];
    snprintf(junk, sizeof junk, "%s/wal/db1/00000001/000000010000000000000009.tmp.123", f->root);
    write_all(junk, "x", 1);
    snprintf(junk, sizeof junk, "%s/wal/db1/00000001/00000002.history", f->root); /* wrong dir */
    write_all(junk, "x", 1);
    snprintf(junk, sizeof junk, "%s/wal/db1/junk", f->root);
    assert_int_equal(mkdir(junk, 0700), 0);

    seen_list_t s = {0};
    bq_errbuf_t e = {{0}};
    assert_int_equal(store_wal_list(f->root, "db1", collect, &s, &e), 0);
    static const seen_t want[] = {
        {1, "000000010000000000000002"},
        {1, "000000010000000000000002.00000028.backup"},
        {1, "000000010000000000000003.partial"},
        {1, "00000001000000000000000A"},
        {2, "00000002.history"},
        {2, "000000020000000000000004"},
        {10, "0000000A0000000000000001"},
    };
    assert_int_equal(s.n, sizeof want / sizeof want[0]);
    for (size_t i = 0; i < s.n; i++) {
        assert_int_equal(s.v[i].tli, want[i].tli);
        assert_string_equal(s.v[i].name, want[i].name);
    }
}

static int stop_at_two(uint32_t tli, const char *name, void *arg)
{
    (void)tli;
    (void)name;
    int *count = arg;
    return ++*count == 2 ? 7 : 0;
}

static void test_list_stop(void **state)
{
    fixture_t *f = *state;
    put_ok(f, STORE_COMP_NONE, SEG, "00000002.history", "a", 1);
    put_ok(f, STORE_COMP_NONE, SEG, "00000003.history", "b", 1);
    put_ok(f, STORE_COMP_NONE, SEG, "00000004.history", "c", 1);
    int count = 0;
    bq_errbuf_t e = {{0}};
    assert_int_equal(store_wal_list(f->root, "db1", stop_at_two, &count, &e), 7);
    assert_int_equal(count, 2);
}

static int collect_cluster(const char *cluster, void *arg)
{
    char *out = arg;
    strcat(out, cluster);
    strcat(out, " ");
    return 0;
}

/* Each cluster has its own WAL names: the same segment name of two clusters is two files;
 * the clusters are listed; a bad cluster name is refused before anything is written. */
static void test_clusters(void **state)
{
    fixture_t *f = *state;
    bq_errbuf_t e = {{0}};
    uint8_t *a = calloc(1, MIB), *b = calloc(1, MIB);
    assert_true(a && b);
    memset(b, 0x5a, MIB);
    static const char name[] = "000000010000000000000001";
    put_ok(f, STORE_COMP_ZSTD, MIB, name, a, MIB);
    assert_int_equal(store_wal_put(f->root, "db-2.x", f->ctx, &f->dk, STORE_COMP_ZSTD, 0, MIB,
                                   name, b, MIB, NULL, &e), 0); /* not a conflict: another cluster */
    uint8_t *got = malloc(MIB);
    size_t len = 0;
    assert_non_null(got);
    assert_int_equal(store_wal_get(f->root, "db-2.x", f->ctx, lookup, &f->dk, name, got, MIB, &len,
                                   &e), 0);
    assert_memory_equal(got, b, MIB);
    assert_int_equal(store_wal_get(f->root, "db1", f->ctx, lookup, &f->dk, name, got, MIB, &len, &e),
                     0);
    assert_memory_equal(got, a, MIB);
    assert_int_equal(store_wal_get(f->root, "db3", f->ctx, lookup, &f->dk, name, got, MIB, &len, &e),
                     BQ_E_NOTFOUND);
    char seen[256] = "";
    assert_int_equal(store_wal_clusters(f->root, collect_cluster, seen, &e), 0);
    assert_string_equal(seen, "db-2.x db1 ");
    static const char *const bad[] = {"", ".hidden", "a/b", "..", "x y",
                                      "0123456789012345678901234567890123456789012345678901234567890123"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_false(store_wal_cluster_valid(bad[i]));
        assert_int_equal(store_wal_put(f->root, bad[i], f->ctx, &f->dk, STORE_COMP_ZSTD, 0, MIB,
                                       name, a, MIB, NULL, &e), BQ_E_INVAL);
        assert_non_null(strstr(e.msg, "invalid cluster name"));
    }
    free(a);
    free(b);
    free(got);
}

/* ---- packing for the wire (store_wal_pack / store_wal_unpack) ---- */

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

static void set_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void set_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint8_t *pack(const void *data, size_t len, size_t *plen)
{
    uint8_t *p = NULL;
    bq_errbuf_t e = {{0}};
    if (store_wal_pack(data, len, &p, plen, &e) != 0)
        fail_msg("pack of %zu bytes: %s", len, e.msg);
    assert_non_null(p);
    return p;
}

/* Pack len bytes, check the frames against want (one comp per piece), unpack them again into
 * a buffer of exactly len bytes and compare. */
static void round_trip(const uint8_t *data, size_t len, const store_comp_t *want,
                       size_t npieces)
{
    assert_int_equal(store_wal_pieces(len), npieces);
    size_t plen = 0;
    uint8_t *p = pack(data, len, &plen);
    /* the frames, walked here: u32 LE (bit 31: lz4) ‖ payload, nothing after the last */
    size_t off = 0;
    for (size_t i = 0; i < npieces; i++) {
        size_t n = len - i * STORE_WAL_PIECE < STORE_WAL_PIECE ? len - i * STORE_WAL_PIECE
                                                                : STORE_WAL_PIECE;
        assert_true(plen - off >= 4);
        uint32_t fr = le32(p + off);
        size_t flen = fr & 0x7fffffffu;
        if (want[i] == STORE_COMP_LZ4) {
            assert_true(fr & 0x80000000u);
            assert_true(flen > 0 && flen < n);
        } else {
            assert_false(fr & 0x80000000u);
            assert_int_equal(flen, n);
            if (n)
                assert_memory_equal(p + off + 4, data + i * STORE_WAL_PIECE, n);
        }
        off += 4 + flen;
    }
    assert_int_equal(off, plen);

    uint8_t *raw = malloc(len ? len : 1);
    assert_non_null(raw);
    store_wal_piece_t pieces[4];
    memset(pieces, 0, sizeof pieces);
    bq_errbuf_t e = {{0}};
    if (store_wal_unpack(p, plen, len, raw, pieces, npieces, &e) != 0)
        fail_msg("unpack of %zu bytes: %s", len, e.msg);
    if (len)
        assert_memory_equal(raw, data, len);
    for (size_t i = 0; i < npieces; i++) {
        size_t n = len - i * STORE_WAL_PIECE < STORE_WAL_PIECE ? len - i * STORE_WAL_PIECE
                                                                : STORE_WAL_PIECE;
        assert_int_equal(pieces[i].comp, want[i]);
        if (want[i] == STORE_COMP_LZ4) {
            /* the compressed bytes, inside the packed buffer */
            assert_true(pieces[i].data >= p + 4 && pieces[i].data + pieces[i].len <= p + plen);
            assert_true(pieces[i].len < n);
        } else {
            assert_int_equal(pieces[i].len, n);
            if (n)
                assert_memory_equal(pieces[i].data, data + i * STORE_WAL_PIECE, n);
        }
    }
    free(raw);
    free(p);
}

static void test_pack_round_trip(void **state)
{
    (void)state;
    assert_int_equal(store_wal_pieces(0), 1);
    assert_int_equal(store_wal_pieces(1), 1);
    assert_int_equal(store_wal_pieces(STORE_WAL_PIECE), 1);
    assert_int_equal(store_wal_pieces(STORE_WAL_PIECE + 1), 2);
    assert_int_equal(store_wal_pieces(64 * MIB), 4);

    uint8_t *data = malloc(32 * MIB);
    assert_non_null(data);
    static const store_comp_t lz4[] = {STORE_COMP_LZ4}, none[] = {STORE_COMP_NONE},
                              both[] = {STORE_COMP_LZ4, STORE_COMP_NONE};
    fill_text(data, SEG); /* compressible: one lz4 piece */
    round_trip(data, SEG, lz4, 1);
    size_t plen = 0;
    uint8_t *p = pack(data, SEG, &plen);
    assert_true(plen < SEG / 4);
    free(p);

    fill_random(data, MIB); /* lz4 does not shrink it: sent as it is */
    round_trip(data, MIB, none, 1);
    p = pack(data, MIB, &plen);
    assert_int_equal(plen, 4 + MIB);
    free(p);

    round_trip(data, 0, none, 1); /* empty: one empty piece, a zero frame */
    p = pack(data, 0, &plen);
    assert_int_equal(plen, 4);
    assert_int_equal(le32(p), 0);
    free(p);
    round_trip(data, 1, none, 1); /* one byte cannot shrink */

    /* 32 MiB: two pieces, the first compressible, the second not */
    fill_text(data, SEG);
    fill_random(data + SEG, SEG);
    round_trip(data, 32 * MIB, both, 2);
    free(data);
}

/* Unpack plen bytes of p as a file of raw_len bytes (npieces pieces): BQ_E_INVAL with msg. */
static void unpack_refused(const uint8_t *p, size_t plen, uint64_t raw_len, size_t npieces,
                           const char *msg)
{
    size_t cap = raw_len && raw_len <= 64 * MIB ? (size_t)raw_len : 1;
    uint8_t *raw = malloc(cap);
    assert_non_null(raw);
    store_wal_piece_t pieces[4];
    bq_errbuf_t e = {{0}};
    int rc = store_wal_unpack(p, plen, raw_len, raw, pieces, npieces, &e);
    if (rc != BQ_E_INVAL || strcmp(e.msg, msg) != 0)
        fail_msg("unpack of %zu bytes as %llu: rc %d, message \"%s\", wanted \"%s\"", plen,
                 (unsigned long long)raw_len, rc, e.msg, msg);
    free(raw);
}

static void test_unpack_refusals(void **state)
{
    (void)state;
    uint8_t *text = malloc(SEG + 10);
    assert_non_null(text);
    fill_text(text, SEG + 10);
    size_t plen = 0;
    uint8_t *p = pack(text, 4096, &plen); /* one lz4 frame */
    assert_true(le32(p) & 0x80000000u);
    size_t clen = plen - 4;
    char msg[256];

    /* cut before a frame: no room for the frame of piece 0, or of piece 1 */
    unpack_refused(p, 0, 4096, 1, "packed WAL file: cut before piece 0");
    unpack_refused(p, 3, 4096, 1, "packed WAL file: cut before piece 0");
    size_t tlen = 0;
    uint8_t *two = pack(text, SEG + 10, &tlen); /* two frames */
    size_t first = 4 + (le32(two) & 0x7fffffffu);
    assert_true(first < tlen);
    unpack_refused(two, first, SEG + 10, 2, "packed WAL file: cut before piece 1");
    unpack_refused(two, first + 2, SEG + 10, 2, "packed WAL file: cut before piece 1");
    free(two);

    /* a frame running past the end: the payload cut, or a length above what follows */
    snprintf(msg, sizeof msg, "packed WAL file: piece 0 of %zu bytes runs past the end", clen);
    unpack_refused(p, plen - 1, 4096, 1, msg);
    uint8_t *q = malloc(plen + 8);
    assert_non_null(q);
    memcpy(q, p, plen);
    set_le32(q, 0x7fffffffu); /* a raw frame of 2 GiB */
    unpack_refused(q, plen, 4096, 1,
                   "packed WAL file: piece 0 of 2147483647 bytes runs past the end");

    /* trailing bytes */
    memcpy(q, p, plen);
    memset(q + plen, 0, 3);
    unpack_refused(q, plen + 3, 4096, 1, "packed WAL file: 3 bytes after the last piece");
    uint8_t empty[5] = {0, 0, 0, 0, 0};
    unpack_refused(empty, 5, 0, 1, "packed WAL file: 1 bytes after the last piece");

    /* a raw frame of the wrong length */
    uint8_t *r = malloc(4 + 1000);
    assert_non_null(r);
    set_le32(r, 999);
    memcpy(r + 4, text, 999);
    unpack_refused(r, 4 + 999, 1000, 1, "packed WAL file: piece 0 holds 999 bytes, not 1000");
    set_le32(r, 1000);
    memcpy(r + 4, text, 1000);
    unpack_refused(r, 4 + 1000, 999, 1, "packed WAL file: piece 0 holds 1000 bytes, not 999");
    free(r);

    /* an lz4 frame whose bytes do not decompress to the piece length: a longer claimed piece,
     * a shorter one, damaged bytes */
    unpack_refused(p, plen, 4097, 1,
                   "packed WAL file: piece 0 does not decompress to 4097 bytes (lz4)");
    unpack_refused(p, plen, 4095, 1,
                   "packed WAL file: piece 0 does not decompress to 4095 bytes (lz4)");
    memcpy(q, p, plen);
    set_le32(q, 0x80000000u | (uint32_t)(clen - 3)); /* its last literals cut off */
    unpack_refused(q, plen - 3, 4096, 1,
                   "packed WAL file: piece 0 does not decompress to 4096 bytes (lz4)");
    memset(q + 4, 0, clen); /* zero tokens: one literal-free match at offset 0 */
    set_le32(q, 0x80000000u | (uint32_t)clen);
    unpack_refused(q, plen, 4096, 1,
                   "packed WAL file: piece 0 does not decompress to 4096 bytes (lz4)");

    /* a compressed frame not shorter than its piece (lz4 of 8 bytes is 9), or empty */
    uint8_t c[64];
    int cn = LZ4_compress_default((const char *)text, (char *)c + 4, 8, 60);
    assert_true(cn >= 8);
    set_le32(c, 0x80000000u | (uint32_t)cn);
    snprintf(msg, sizeof msg, "packed WAL file: piece 0 compressed to %d bytes for 8", cn);
    unpack_refused(c, 4 + (size_t)cn, 8, 1, msg);
    snprintf(msg, sizeof msg, "packed WAL file: piece 0 compressed to %d bytes for %d", cn, cn);
    unpack_refused(c, 4 + (size_t)cn, (uint64_t)cn, 1, msg); /* as long: not kept either */
    set_le32(c, 0x80000000u);
    unpack_refused(c, 4, 0, 1, "packed WAL file: piece 0 compressed to 0 bytes for 0");
    unpack_refused(c, 4, 10, 1, "packed WAL file: piece 0 compressed to 0 bytes for 10");

    /* wrong npieces, and a length no WAL file has */
    unpack_refused(p, plen, 4096, 2, "packed WAL file: 2 pieces for 4096 bytes, not 1");
    unpack_refused(p, plen, 4096, 0, "packed WAL file: 0 pieces for 4096 bytes, not 1");
    unpack_refused(p, plen, SEG + 10, 1,
                   "packed WAL file: 1 pieces for 16777226 bytes, not 2");
    unpack_refused(p, plen, STORE_WAL_SEG_MAX + 1, 65,
                   "packed WAL file: 1073741825 bytes, more than 1073741824");
    free(q);
    free(p);
    free(text);
}

/* The stored file's piece i: its body length and compression byte. */
static void piece_of(const uint8_t *file, size_t n, size_t i, uint32_t *blen, int *comp)
{
    size_t off = STORE_WAL_HEADER_BYTES;
    for (size_t k = 0;; k++) {
        assert_true(off + STORE_WAL_PIECE_HEADER_BYTES + 1 <= n);
        uint32_t b = le32(file + off + STORE_CHUNK_ID_BYTES);
        if (k == i) {
            *blen = b;
            *comp = file[off + STORE_WAL_PIECE_HEADER_BYTES];
            return;
        }
        off += STORE_WAL_PIECE_HEADER_BYTES + b;
    }
}

/* Put data with its packed pieces (comp: the store's), and check what was stored. */
static void put_packed(fixture_t *f, store_comp_t comp, size_t seg, const char *name,
                       const uint8_t *data, size_t len, uint8_t **packed_out,
                       store_wal_piece_t *pieces)
{
    size_t plen = 0;
    uint8_t *p = pack(data, len, &plen);
    uint8_t *raw = malloc(len ? len : 1);
    assert_non_null(raw);
    size_t np = store_wal_pieces(len);
    bq_errbuf_t e = {{0}};
    if (store_wal_unpack(p, plen, len, raw, pieces, np, &e) != 0)
        fail_msg("unpack: %s", e.msg);
    /* the raw buffer is what the receiver stores: data itself is not used for it */
    int rc = store_wal_put(f->root, "db1", f->ctx, &f->dk, comp, 0, seg, name, raw, len, pieces,
                           &e);
    if (rc != 0)
        fail_msg("put %s packed: %s", name, e.msg);
    free(raw);
    *packed_out = p;
}

static void test_put_packed(void **state)
{
    fixture_t *f = *state;
    uint8_t *data = malloc(32 * MIB), *other = malloc(SEG);
    assert_true(data && other);
    char path[512];
    bq_errbuf_t e = {{0}};

    /* one 16 MiB piece, compressible: sealed as the lz4 bytes that came, though the store's
     * compression is zstd */
    fill_text(data, SEG);
    uint8_t *p = NULL;
    store_wal_piece_t pieces[4];
    put_packed(f, STORE_COMP_ZSTD, SEG, SEGNAME, data, SEG, &p, pieces);
    assert_int_equal(pieces[0].comp, STORE_COMP_LZ4);
    get_same(f, SEGNAME, data, SEG); /* version 2, digest = content id */
    path_of(f, SEGNAME, path, sizeof path);
    size_t n1 = 0, n2 = 0;
    uint8_t *before = read_all(path, &n1);
    assert_memory_equal(before, STORE_WAL_MAGIC, 8);
    uint8_t cid[32];
    assert_int_equal(store_chunk_ctx_id(f->ctx, data, SEG, cid), 0);
    assert_memory_equal(before + 8, cid, 32);
    assert_memory_equal(before + STORE_WAL_HEADER_BYTES, cid, 32); /* the one piece's id */
    uint32_t blen = 0;
    int comp = -1;
    piece_of(before, n1, 0, &blen, &comp);
    assert_int_equal(comp, STORE_COMP_LZ4);
    assert_int_equal(blen, pieces[0].len + STORE_CHUNK_OVERHEAD);
    assert_int_equal(n1, STORE_WAL_HEADER_BYTES + STORE_WAL_PIECE_HEADER_BYTES + blen);
    free(p);

    /* the same content again, unpacked: a duplicate, the file untouched */
    put_ok(f, STORE_COMP_ZSTD, SEG, SEGNAME, data, SEG);
    uint8_t *after = read_all(path, &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(before, after, n1);
    free(after);
    /* other content: BQ_E_EXISTS naming both content ids, the file untouched */
    memcpy(other, data, SEG);
    other[SEG / 3] ^= 1;
    char ha[65], hb[65], want[200];
    cid_hex(f->ctx, data, SEG, ha);
    cid_hex(f->ctx, other, SEG, hb);
    assert_int_equal(store_wal_put(f->root, "db1", f->ctx, &f->dk, STORE_COMP_ZSTD, 0, SEG,
                                   SEGNAME, other, SEG, NULL, &e),
                     BQ_E_EXISTS);
    snprintf(want, sizeof want, "stored content id %s, new content id %s", ha, hb);
    assert_non_null(strstr(e.msg, want));
    after = read_all(path, &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(before, after, n1);
    free(after);
    free(before);
    get_same(f, SEGNAME, data, SEG);

    /* a store without compression seals the raw bytes, whatever came */
    put_packed(f, STORE_COMP_NONE, SEG, "000000010000000000000002", data, SEG, &p, pieces);
    assert_int_equal(pieces[0].comp, STORE_COMP_LZ4);
    get_same(f, "000000010000000000000002", data, SEG);
    path_of(f, "000000010000000000000002", path, sizeof path);
    before = read_all(path, &n1);
    piece_of(before, n1, 0, &blen, &comp);
    assert_int_equal(comp, STORE_COMP_NONE);
    assert_int_equal(blen, SEG + STORE_CHUNK_OVERHEAD);
    free(before);
    free(p);

    /* a small packed .partial, and an empty one */
    put_packed(f, STORE_COMP_LZ4, SEG, SEGNAME ".partial", data, 70000, &p, pieces);
    get_same(f, SEGNAME ".partial", data, 70000);
    free(p);
    put_packed(f, STORE_COMP_LZ4, SEG, "000000010000000000000003.partial", data, 0, &p, pieces);
    assert_int_equal(pieces[0].comp, STORE_COMP_NONE);
    get_same(f, "000000010000000000000003.partial", data, 0);
    free(p);

    /* a 32 MiB segment, two pieces (lz4, then as it is): the header holds the keyed hash of
     * the whole content, not a piece's */
    fill_text(data, SEG);
    fill_random(data + SEG, SEG);
    const char *big = "000000010000000000000003";
    put_packed(f, STORE_COMP_LZ4, 32 * MIB, big, data, 32 * MIB, &p, pieces);
    assert_int_equal(pieces[0].comp, STORE_COMP_LZ4);
    assert_int_equal(pieces[1].comp, STORE_COMP_NONE);
    get_same(f, big, data, 32 * MIB);
    path_of(f, big, path, sizeof path);
    before = read_all(path, &n1);
    uint8_t id0[32];
    assert_int_equal(store_chunk_ctx_id(f->ctx, data, SEG, id0), 0);
    assert_memory_equal(before + STORE_WAL_HEADER_BYTES, id0, 32);
    assert_memory_not_equal(before + 8, id0, 32);
    piece_of(before, n1, 0, &blen, &comp);
    assert_int_equal(comp, STORE_COMP_LZ4);
    assert_int_equal(blen, pieces[0].len + STORE_CHUNK_OVERHEAD);
    free(before);
    free(p);
    put_ok(f, STORE_COMP_LZ4, 32 * MIB, big, data, 32 * MIB); /* duplicate */
    data[32 * MIB - 1] ^= 1;
    assert_int_equal(store_wal_put(f->root, "db1", f->ctx, &f->dk, STORE_COMP_LZ4, 0, 32 * MIB,
                                   big, data, 32 * MIB, NULL, &e),
                     BQ_E_EXISTS);
    assert_non_null(strstr(e.msg, "content id"));
    free(data);
    free(other);
}

/* ---- BQWAL001 files, written by an earlier version ---- */

/* A BQWAL001 file of len bytes (one piece, at most STORE_WAL_PIECE) at name's path. */
static uint8_t *make_v1(fixture_t *f, const char *name, const uint8_t *data, size_t len,
                        size_t *flen)
{
    size_t cap = STORE_WAL_HEADER_BYTES + STORE_WAL_PIECE_HEADER_BYTES +
                 store_chunk_seal_bound(len);
    uint8_t *file = malloc(cap);
    assert_non_null(file);
    memcpy(file, STORE_WAL_MAGIC_V1, 8);
    crypto_hash_sha256(file + 8, data, len);
    set_le64(file + 40, len);
    uint8_t *id = file + STORE_WAL_HEADER_BYTES;
    assert_int_equal(store_chunk_ctx_id(f->ctx, data, len, id), 0);
    size_t blen = 0;
    bq_errbuf_t e = {{0}};
    uint8_t *body = id + STORE_WAL_PIECE_HEADER_BYTES;
    if (store_chunk_seal(f->ctx, id, &f->dk, STORE_COMP_ZSTD, 0, data, len, body,
                         store_chunk_seal_bound(len), &blen, &e) != 0)
        fail_msg("seal: %s", e.msg);
    set_le32(id + STORE_CHUNK_ID_BYTES, (uint32_t)blen);
    *flen = STORE_WAL_HEADER_BYTES + STORE_WAL_PIECE_HEADER_BYTES + blen;
    char dir[512], path[512];
    snprintf(dir, sizeof dir, "%s/wal/db1/%.8s", f->root, name);
    assert_int_equal(bq_mkdir_p(dir, 0700, &e), 0);
    path_of(f, name, path, sizeof path);
    write_all(path, file, *flen);
    return file;
}

static void test_v1_files(void **state)
{
    fixture_t *f = *state;
    size_t len = 90000;
    uint8_t *data = malloc(len), *other = malloc(len), *out = malloc(len);
    assert_true(data && other && out);
    fill_text(data, len);
    memcpy(other, data, len);
    other[len - 1] ^= 0x40;
    const char *name = "000000010000000000000005.partial";
    char path[512];
    path_of(f, name, path, sizeof path);
    size_t flen = 0, n = 0;
    uint8_t *file = make_v1(f, name, data, len, &flen);

    /* read back exactly; stat says version 1 and the sha256 */
    bq_errbuf_t e = {{0}};
    size_t got = 0;
    if (store_wal_get(f->root, "db1", f->ctx, lookup, &f->dk, name, out, len, &got, &e) != 0)
        fail_msg("get v1: %s", e.msg);
    assert_int_equal(got, len);
    assert_memory_equal(out, data, len);
    uint64_t slen = 0;
    int ver = 0;
    uint8_t digest[32], sha[32];
    assert_int_equal(store_wal_stat(f->root, "db1", name, &slen, &ver, digest, &e), 0);
    assert_int_equal(slen, len);
    assert_int_equal(ver, 1);
    crypto_hash_sha256(sha, data, len);
    assert_memory_equal(digest, sha, 32);

    /* the same content again: success, the file byte-identical, never rewritten as BQWAL002 */
    for (int i = 0; i < 2; i++) {
        put_ok(f, STORE_COMP_ZSTD, SEG, name, data, len);
        uint8_t *now = read_all(path, &n);
        assert_int_equal(n, flen);
        assert_memory_equal(now, file, flen);
        free(now);
    }
    put_ok(f, STORE_COMP_LZ4, SEG, name, data, len); /* whatever the compression */

    /* other content: BQ_E_EXISTS naming both sha256s, the file byte-identical */
    char ha[65], hb[65], want[200];
    uint8_t sha_b[32];
    crypto_hash_sha256(sha_b, other, len);
    sodium_bin2hex(ha, sizeof ha, sha, 32);
    sodium_bin2hex(hb, sizeof hb, sha_b, 32);
    assert_int_equal(store_wal_put(f->root, "db1", f->ctx, &f->dk, STORE_COMP_ZSTD, 0, SEG, name,
                                   other, len, NULL, &e),
                     BQ_E_EXISTS);
    assert_non_null(strstr(e.msg, "stored sha256"));
    assert_non_null(strstr(e.msg, "new sha256"));
    snprintf(want, sizeof want, "stored sha256 %s, new sha256 %s", ha, hb);
    if (!strstr(e.msg, want))
        fail_msg("message \"%s\" lacks \"%s\"", e.msg, want);
    assert_non_null(strstr(e.msg, path));
    uint8_t *now = read_all(path, &n);
    assert_int_equal(n, flen);
    assert_memory_equal(now, file, flen);
    free(now);
    assert_int_equal(store_wal_get(f->root, "db1", f->ctx, lookup, &f->dk, name, out, len, &got,
                                   &e),
                     0);
    assert_memory_equal(out, data, len);

    /* packed other content: the same refusal */
    size_t plen = 0;
    uint8_t *p = pack(other, len, &plen);
    store_wal_piece_t pieces[1];
    uint8_t *raw = malloc(len);
    assert_non_null(raw);
    assert_int_equal(store_wal_unpack(p, plen, len, raw, pieces, 1, &e), 0);
    assert_int_equal(store_wal_put(f->root, "db1", f->ctx, &f->dk, STORE_COMP_LZ4, 0, SEG, name,
                                   raw, len, pieces, &e),
                     BQ_E_EXISTS);
    assert_non_null(strstr(e.msg, want));
    now = read_all(path, &n);
    assert_memory_equal(now, file, flen);
    free(now);
    free(raw);
    free(p);

    /* a v1 file whose header sha256 is damaged: BQ_E_IO naming it */
    uint8_t *bad = malloc(flen);
    assert_non_null(bad);
    memcpy(bad, file, flen);
    bad[8 + 5] ^= 0x01;
    write_all(path, bad, flen);
    assert_int_equal(store_wal_get(f->root, "db1", f->ctx, lookup, &f->dk, name, out, len, &got,
                                   &e),
                     BQ_E_IO);
    assert_non_null(strstr(e.msg, path));
    assert_non_null(strstr(e.msg, "sha256"));
    free(bad);

    /* an empty v1 file and a v1 history file read too */
    free(file);
    file = make_v1(f, "000000010000000000000006.partial", data, 0, &flen);
    assert_int_equal(store_wal_get(f->root, "db1", f->ctx, lookup, &f->dk,
                                   "000000010000000000000006.partial", out, len, &got, &e),
                     0);
    assert_int_equal(got, 0);
    put_ok(f, STORE_COMP_NONE, SEG, "000000010000000000000006.partial", data, 0);
    free(file);
    const char *hist = "1\t0/3000000\tno recovery target specified\n";
    file = make_v1(f, "00000002.history", (const uint8_t *)hist, strlen(hist), &flen);
    assert_int_equal(store_wal_get(f->root, "db1", f->ctx, lookup, &f->dk, "00000002.history",
                                   out, len, &got, &e),
                     0);
    assert_int_equal(got, strlen(hist));
    assert_memory_equal(out, hist, got);
    free(file);
    free(data);
    free(other);
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_segment_16m, setup, teardown),
        cmocka_unit_test_setup_teardown(test_segment_pieces, setup, teardown),
        cmocka_unit_test_setup_teardown(test_small_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_same_twice, setup, teardown),
        cmocka_unit_test_setup_teardown(test_conflict, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_stop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_clusters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pack_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unpack_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_packed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_v1_files, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
