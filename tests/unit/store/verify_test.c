/* store_verify (store/store.h): a clean store with two backups and WAL verifies clean with the
 * right figures; then each kind of damage, on a fresh copy of that store, is found and names
 * every backup and file that depends on it, and a read of a damaged backup fails too. */
#include "index.h"
#include "pack.h"
#include "store.h"
#include "wal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
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

#define CS 65536u
#define SEG ((size_t)1 << 20)
#define WAL_SEG "000000010000000000000001"
#define WAL_HIST "00000002.history"

/* The files of the two backups: b1 has all three, b2 has 100 and x (the same bytes: deduped)
 * and 300 of its own. */
typedef struct {
    const char *path;
    size_t len;
    uint8_t *data;
} tfile_t;

static tfile_t files[] = {
    {"base/1/100", 3 * CS, NULL},      /* b1, b2 */
    {"base/1/200", CS + 100, NULL},    /* b1 */
    {"global/x", 5000, NULL},          /* b1, b2 */
    {"base/1/300", 2 * CS, NULL},      /* b2 */
};

typedef struct {
    char root[256];
    char base[300];
    char store[300]; /* the copy a test works on */
    char pack1[600]; /* b1's pack, relative to a store */
    char pack2[600]; /* b2's pack */
    store_master_t m;
    int ncopy;
} fixture_t;

static fixture_t fx;

/* ---- events ---- */

typedef struct {
    store_verify_kind_t kind;
    char chunk[STORE_CHUNK_ID_HEX];
    char backup[80];
    char path[256];
    char wal[80];
    char msg[2048];
} ev_t;

typedef struct {
    ev_t *ev;
    size_t n, cap;
} events_t;

static int collect(const store_verify_event_t *ev, void *arg)
{
    events_t *c = arg;
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 16;
        c->ev = realloc(c->ev, c->cap * sizeof *c->ev);
        assert_non_null(c->ev);
    }
    ev_t *x = &c->ev[c->n++];
    memset(x, 0, sizeof *x);
    x->kind = ev->kind;
    assert_non_null(ev->message);
    snprintf(x->chunk, sizeof x->chunk, "%s", ev->chunk ? ev->chunk : "");
    snprintf(x->backup, sizeof x->backup, "%s", ev->backup_id ? ev->backup_id : "");
    snprintf(x->path, sizeof x->path, "%s", ev->path ? ev->path : "");
    snprintf(x->wal, sizeof x->wal, "%s", ev->wal ? ev->wal : "");
    snprintf(x->msg, sizeof x->msg, "%s", ev->message);
    return 0;
}

/* Events of kind (0: any) matching each non-NULL field. */
static size_t count_ev(const events_t *c, int kind, const char *chunk, const char *backup,
                       const char *path)
{
    size_t n = 0;
    for (size_t i = 0; i < c->n; i++) {
        const ev_t *x = &c->ev[i];
        if ((kind == 0 || (int)x->kind == kind) && (!chunk || strcmp(x->chunk, chunk) == 0) &&
            (!backup || strcmp(x->backup, backup) == 0) && (!path || strcmp(x->path, path) == 0))
            n++;
    }
    return n;
}

static void dump(const events_t *c)
{
    for (size_t i = 0; i < c->n; i++)
        print_message("  [%s] chunk=%s backup=%s path=%s wal=%s: %s\n",
                      store_verify_kind_name(c->ev[i].kind), c->ev[i].chunk, c->ev[i].backup,
                      c->ev[i].path, c->ev[i].wal, c->ev[i].msg);
}

static void expect_n(const events_t *c, size_t want, int kind, const char *chunk,
                     const char *backup, const char *path, int line)
{
    size_t got = count_ev(c, kind, chunk, backup, path);
    if (got != want) {
        dump(c);
        fail_msg("line %d: want %zu events [%s] chunk=%s backup=%s path=%s, got %zu", line, want,
                 kind ? store_verify_kind_name((store_verify_kind_t)kind) : "any",
                 chunk ? chunk : "*", backup ? backup : "*", path ? path : "*", got);
    }
}

#define EXPECT(c, n_, kind, chunk, backup, path)                                                   \
    expect_n((c), (size_t)(n_), (kind), (chunk), (backup), (path), __LINE__)

/* ---- the base store ---- */

static void find_pack(const char *store, const char *not_this, char *out, size_t cap)
{
    char cmd[700];
    snprintf(cmd, sizeof cmd, "cd '%s' && find packs -name '*.pack' | sort", store);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char line[600];
    out[0] = '\0';
    while (fgets(line, sizeof line, p)) {
        line[strcspn(line, "\n")] = '\0';
        if (strcmp(line, not_this) != 0) {
            assert_string_equal(out, ""); /* exactly one new pack */
            snprintf(out, cap, "%s", line);
        }
    }
    pclose(p);
    assert_string_not_equal(out, "");
}

static void backup(store_t *s, const char *id, const int *which, size_t n)
{
    bq_errbuf_t e = {{0}};
    store_backup_t *bw = NULL;
    OK(store_backup_begin(s, id, &bw, &e));
    for (size_t i = 0; i < n; i++) {
        const tfile_t *t = &files[which[i]];
        OK(store_backup_file_begin(bw, t->path, 0100600, 1700000000, &e));
        OK(store_backup_file_write(bw, t->data, t->len, &e));
        OK(store_backup_file_end(bw, &e));
    }
    OK(store_backup_commit(&bw, NULL, &e));
}

static int group_setup(void **state)
{
    (void)state;
    if (sodium_init() < 0)
        return -1;
    if (test_mkdtemp(fx.root, sizeof fx.root, "verify_test") != 0)
        return -1;
    snprintf(fx.base, sizeof fx.base, "%s/base", fx.root);
    randombytes_buf(fx.m.key, sizeof fx.m.key);
    snprintf(fx.m.path, sizeof fx.m.path, "%s/m.storekey", fx.root);
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        files[i].data = malloc(files[i].len);
        if (!files[i].data)
            return -1;
        randombytes_buf(files[i].data, files[i].len);
    }
    bq_errbuf_t e = {{0}};
    store_opts_t o = {CS, STORE_COMP_NONE, 0};
    OK(store_create(fx.base, &fx.m, &o, &e));
    store_t *s = NULL;
    OK(store_open(fx.base, &fx.m, &s, &e));
    backup(s, "b1", (const int[]){0, 1, 2}, 3);
    find_pack(fx.base, "", fx.pack1, sizeof fx.pack1);
    backup(s, "b2", (const int[]){0, 2, 3}, 3);
    find_pack(fx.base, fx.pack1, fx.pack2, sizeof fx.pack2);

    store_chunk_ctx_t *ctx = NULL;
    OK(store_chunk_ctx_for(s, &ctx, &e));
    store_datakey_t dk;
    OK(store_datakey_new(fx.base, &fx.m, &dk, &e));
    uint8_t *seg = malloc(SEG);
    assert_non_null(seg);
    randombytes_buf(seg, SEG);
    OK(store_wal_put(fx.base, "db1", ctx, &dk, STORE_COMP_ZSTD, 0, SEG, WAL_SEG, seg, SEG, NULL, &e));
    static const char hist[] = "1\t0/3000000\tno recovery target specified\n";
    OK(store_wal_put(fx.base, "db1", ctx, &dk, STORE_COMP_ZSTD, 0, SEG, WAL_HIST, hist, sizeof hist - 1,
                     NULL, &e));
    free(seg);
    store_datakey_clear(&dk);
    store_chunk_ctx_destroy(&ctx);
    store_close(&s);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    int rc = test_rmtree(fx.root);
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        free(files[i].data);
    return rc == 0 ? 0 : -1;
}

/* A fresh copy of the base store in fx.store. */
static void copy_base(void)
{
    snprintf(fx.store, sizeof fx.store, "%s/copy%d", fx.root, fx.ncopy++);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "cp -a '%s' '%s'", fx.base, fx.store);
    assert_int_equal(system(cmd), 0);
}

static store_t *open_copy(void)
{
    bq_errbuf_t e = {{0}};
    store_t *s = NULL;
    OK(store_open(fx.store, &fx.m, &s, &e));
    return s;
}

static void store_file(const char *rel, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s", fx.store, rel);
}

static void flip(const char *rel, off_t off)
{
    char path[1024];
    store_file(rel, path, sizeof path);
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    uint8_t b;
    assert_int_equal(pread(fd, &b, 1, off), 1);
    b ^= 0x20;
    assert_int_equal(pwrite(fd, &b, 1, off), 1);
    close(fd);
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Offset and id (hex) of record i of a pack of fx.store. */
static uint64_t record_at(const char *rel, size_t i, char hex[STORE_CHUNK_ID_HEX])
{
    char path[1024];
    store_file(rel, path, sizeof path);
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    uint64_t off = STORE_PACK_HEADER_LEN;
    uint8_t pre[STORE_PACK_RECORD_PREFIX];
    for (size_t k = 0;; k++) {
        assert_int_equal(pread(fd, pre, sizeof pre, (off_t)off), (ssize_t)sizeof pre);
        assert_int_equal(le32(pre), STORE_PACK_RECORD_MAGIC);
        if (k == i)
            break;
        off += STORE_PACK_RECORD_OVERHEAD + le32(pre + 4);
    }
    close(fd);
    store_id_hex(pre + 8, hex);
    return off;
}

/* The read of backup id fails with BQ_E_IO and a message holding want. */
static void read_fails(store_t *s, const char *id, const char *want)
{
    bq_errbuf_t e = {{0}};
    int rc = store_backup_read(s, id, NULL, NULL, &e);
    if (rc != BQ_E_IO || !strstr(e.msg, want))
        fail_msg("read of %s: got %s \"%s\", want BQ_E_IO with \"%s\"", id, bq_err_name(rc),
                 e.msg, want);
}

static void read_ok(store_t *s, const char *id)
{
    bq_errbuf_t e = {{0}};
    OK(store_backup_read(s, id, NULL, NULL, &e));
}

/* Verify fx.store: returns the result, fills c and st. */
static int run_verify(events_t *c, store_verify_stats_t *st, bq_errbuf_t *e)
{
    store_t *s = open_copy();
    memset(c, 0, sizeof *c);
    int rc = store_verify(s, collect, c, st, e);
    store_close(&s);
    return rc;
}

static void events_free(events_t *c)
{
    free(c->ev);
    memset(c, 0, sizeof *c);
}

/* ---- tests ---- */

static void test_clean(void **state)
{
    (void)state;
    copy_base();
    events_t c;
    store_verify_stats_t st;
    bq_errbuf_t e = {{0}};
    int rc = run_verify(&c, &st, &e);
    if (rc != 0) {
        dump(&c);
        fail_msg("verify: %s %s", bq_err_name(rc), e.msg);
    }
    assert_int_equal(c.n, 0);
    /* b1: 3 + 2 + 1 chunks; b2: 2 new for base/1/300 (100 and x dedup) */
    assert_int_equal(st.packs, 2);
    assert_int_equal(st.records, 8);
    assert_int_equal(st.chunks, 8);
    assert_int_equal(st.chunk_refs, 6 + 6);
    assert_int_equal(st.backups, 2);
    assert_int_equal(st.files, 6);
    assert_int_equal(st.wal_files, 2);
    assert_int_equal(st.problems, 0);
    assert_int_equal(st.warnings, 0);

    /* a NULL callback and NULL stats are allowed */
    store_t *s = open_copy();
    OK(store_verify(s, NULL, NULL, NULL, &e));
    store_close(&s);
    events_free(&c);
}

/* The first record of b1's pack is the first chunk of base/1/100, which b2 shares. */
static void flipped_pack_byte(int fix_crc)
{
    copy_base();
    char hex[STORE_CHUNK_ID_HEX];
    uint64_t off = record_at(fx.pack1, 0, hex);
    flip(fx.pack1, (off_t)(off + STORE_PACK_RECORD_PREFIX + 1000));
    if (fix_crc) { /* the crc made right again: the AEAD tag still catches it */
        char path[1024];
        store_file(fx.pack1, path, sizeof path);
        int fd = open(path, O_RDWR);
        assert_true(fd >= 0);
        uint8_t lenb[4];
        assert_int_equal(pread(fd, lenb, 4, (off_t)off + 4), 4);
        uint32_t blen = le32(lenb);
        uint8_t *rec = malloc(4 + 32 + blen);
        assert_non_null(rec);
        assert_int_equal(pread(fd, rec, 4 + 32 + blen, (off_t)off + 4), (ssize_t)(4 + 32 + blen));
        uint32_t crc = store_pack_crc32c(0, rec, 4 + 32 + blen);
        uint8_t cb[4] = {(uint8_t)crc, (uint8_t)(crc >> 8), (uint8_t)(crc >> 16),
                         (uint8_t)(crc >> 24)};
        assert_int_equal(pwrite(fd, cb, 4, (off_t)(off + 40 + blen)), 4);
        close(fd);
        free(rec);
    }
    events_t c;
    store_verify_stats_t st;
    bq_errbuf_t e = {{0}};
    assert_int_equal(run_verify(&c, &st, &e), BQ_E_IO);
    assert_non_null(strstr(e.msg, "problems found"));
    if (fix_crc) {
        EXPECT(&c, 0, STORE_VERIFY_PACK_DAMAGED, NULL, NULL, NULL);
        EXPECT(&c, 1, STORE_VERIFY_CHUNK_DAMAGED, hex, "", ""); /* the record itself */
        assert_int_equal(st.records, 8);
    } else {
        EXPECT(&c, 1, STORE_VERIFY_PACK_DAMAGED, NULL, NULL, NULL);
        assert_non_null(strstr(c.ev[0].msg, "crc"));
    }
    /* every backup and file that needs it, once each */
    EXPECT(&c, 1, STORE_VERIFY_CHUNK_DAMAGED, hex, "b1", "base/1/100");
    EXPECT(&c, 1, STORE_VERIFY_CHUNK_DAMAGED, hex, "b2", "base/1/100");
    /* nothing else is damaged: the records after the bad one were checked one by one */
    EXPECT(&c, 0, 0, NULL, NULL, "base/1/200");
    EXPECT(&c, 0, 0, NULL, NULL, "global/x");
    EXPECT(&c, 0, STORE_VERIFY_CHUNK_MISSING, NULL, NULL, NULL);
    EXPECT(&c, 0, STORE_VERIFY_INDEX_DANGLING, NULL, NULL, NULL);
    assert_int_equal(st.problems, c.n);
    assert_int_equal(st.backups, 2);
    assert_int_equal(st.wal_files, 2);

    store_t *s = open_copy();
    char want[200];
    snprintf(want, sizeof want, "file base/1/100: chunk %s: ", hex);
    read_fails(s, "b1", want);
    read_fails(s, "b2", want);
    store_close(&s);
    events_free(&c);
}

static void test_flipped_pack_byte(void **state)
{
    (void)state;
    flipped_pack_byte(0);
}

static void test_flipped_pack_byte_crc_fixed(void **state)
{
    (void)state;
    flipped_pack_byte(1);
}

/* b1's pack cut inside its fourth record (the first chunk of base/1/200): base/1/200 and
 * global/x are lost, for b1 and (global/x) b2; base/1/100 is intact. */
static void test_truncated_pack(void **state)
{
    (void)state;
    copy_base();
    char h200a[STORE_CHUNK_ID_HEX], h200b[STORE_CHUNK_ID_HEX], hx[STORE_CHUNK_ID_HEX];
    uint64_t off = record_at(fx.pack1, 3, h200a);
    record_at(fx.pack1, 4, h200b);
    record_at(fx.pack1, 5, hx);
    char path[1024];
    store_file(fx.pack1, path, sizeof path);
    assert_int_equal(truncate(path, (off_t)(off + 100)), 0);

    events_t c;
    store_verify_stats_t st;
    bq_errbuf_t e = {{0}};
    assert_int_equal(run_verify(&c, &st, &e), BQ_E_IO);
    EXPECT(&c, 1, STORE_VERIFY_PACK_DAMAGED, NULL, NULL, NULL);
    /* pack events come after the index step (a tail nothing refers to is only a warning) */
    size_t pk = 0;
    while (pk < c.n && c.ev[pk].kind != STORE_VERIFY_PACK_DAMAGED)
        pk++;
    assert_true(pk < c.n);
    assert_non_null(strstr(c.ev[pk].msg, "truncated"));
    EXPECT(&c, 1, STORE_VERIFY_CHUNK_DAMAGED, h200a, "", "");
    EXPECT(&c, 1, STORE_VERIFY_CHUNK_DAMAGED, h200b, "", "");
    EXPECT(&c, 1, STORE_VERIFY_CHUNK_DAMAGED, hx, "", "");
    EXPECT(&c, 1, STORE_VERIFY_CHUNK_DAMAGED, h200a, "b1", "base/1/200");
    EXPECT(&c, 1, STORE_VERIFY_CHUNK_DAMAGED, h200b, "b1", "base/1/200");
    EXPECT(&c, 1, STORE_VERIFY_CHUNK_DAMAGED, hx, "b1", "global/x");
    EXPECT(&c, 1, STORE_VERIFY_CHUNK_DAMAGED, hx, "b2", "global/x");
    EXPECT(&c, 0, 0, NULL, NULL, "base/1/100");
    EXPECT(&c, 0, 0, NULL, NULL, "base/1/300");
    assert_int_equal(c.n, 8);
    assert_int_equal(st.problems, 8);
    assert_int_equal(st.records, 3 + 2);

    store_t *s = open_copy();
    char want[200];
    snprintf(want, sizeof want, "file base/1/200: chunk %s: ", h200a);
    read_fails(s, "b1", want);
    snprintf(want, sizeof want, "file global/x: chunk %s: ", hx);
    read_fails(s, "b2", want);
    store_close(&s);
    events_free(&c);
}

/* b1's pack deleted: its six chunks are missing; b2 loses base/1/100 and global/x. */
static void test_deleted_pack(void **state)
{
    (void)state;
    copy_base();
    char h[6][STORE_CHUNK_ID_HEX];
    for (size_t i = 0; i < 6; i++)
        record_at(fx.pack1, i, h[i]);
    char path[1024];
    store_file(fx.pack1, path, sizeof path);
    assert_int_equal(unlink(path), 0);

    events_t c;
    store_verify_stats_t st;
    bq_errbuf_t e = {{0}};
    assert_int_equal(run_verify(&c, &st, &e), BQ_E_IO);
    EXPECT(&c, 6, STORE_VERIFY_INDEX_DANGLING, NULL, "", "");
    for (size_t i = 0; i < 6; i++)
        EXPECT(&c, 1, STORE_VERIFY_INDEX_DANGLING, h[i], "", "");
    for (size_t i = 0; i < 3; i++) {
        EXPECT(&c, 1, STORE_VERIFY_CHUNK_MISSING, h[i], "b1", "base/1/100");
        EXPECT(&c, 1, STORE_VERIFY_CHUNK_MISSING, h[i], "b2", "base/1/100");
    }
    EXPECT(&c, 1, STORE_VERIFY_CHUNK_MISSING, h[3], "b1", "base/1/200");
    EXPECT(&c, 1, STORE_VERIFY_CHUNK_MISSING, h[4], "b1", "base/1/200");
    EXPECT(&c, 1, STORE_VERIFY_CHUNK_MISSING, h[5], "b1", "global/x");
    EXPECT(&c, 1, STORE_VERIFY_CHUNK_MISSING, h[5], "b2", "global/x");
    EXPECT(&c, 0, 0, NULL, NULL, "base/1/300");
    assert_int_equal(c.n, 6 + 6 + 4);
    assert_int_equal(st.packs, 1);
    assert_non_null(strstr(c.ev[0].msg, "which is missing"));

    store_t *s = open_copy();
    char want[200];
    snprintf(want, sizeof want, "file base/1/100: chunk %s: ", h[0]);
    read_fails(s, "b1", want);
    read_fails(s, "b2", want);
    store_close(&s);
    events_free(&c);
}

/* A damaged or lost index: the store does not open, loudly, naming the index and the fix. */
static void test_damaged_index(void **state)
{
    (void)state;
    copy_base();
    char path[1024];
    store_file("index/data.mdb", path, sizeof path);
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    uint8_t junk[8192];
    randombytes_buf(junk, sizeof junk);
    assert_int_equal(fwrite(junk, 1, sizeof junk, f), sizeof junk);
    fclose(f);
    bq_errbuf_t e = {{0}};
    store_t *s = NULL;
    assert_int_equal(store_open(fx.store, &fx.m, &s, &e), BQ_E_IO);
    assert_null(s);
    assert_non_null(strstr(e.msg, "/index is damaged"));
    assert_non_null(strstr(e.msg, "rebuild it with barque store verify --rebuild-index"));

    copy_base();
    char cmd[1200];
    store_file("index", path, sizeof path);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(store_open(fx.store, &fx.m, &s, &e), BQ_E_IO);
    assert_null(s);
    assert_non_null(strstr(e.msg, "is missing or empty but the store holds packs"));
    assert_non_null(strstr(e.msg, "rebuild it with barque store verify --rebuild-index"));
}

/* An index entry removed (the record is still in its pack): the chunk is missing for b2's
 * base/1/300, the only file that needs it. */
static void test_chunk_not_indexed(void **state)
{
    (void)state;
    copy_base();
    char hex[STORE_CHUNK_ID_HEX];
    record_at(fx.pack2, 0, hex);
    uint8_t id[1][STORE_CHUNK_ID_BYTES];
    assert_int_equal(store_id_parse(hex, id[0]), 0);
    store_t *s = open_copy();
    bq_errbuf_t e = {{0}};
    size_t deleted = 0;
    OK(store_index_del_batch(store_index_handle(s), id, 1, &deleted, &e));
    assert_int_equal(deleted, 1);
    store_close(&s);

    events_t c;
    store_verify_stats_t st;
    assert_int_equal(run_verify(&c, &st, &e), BQ_E_IO);
    EXPECT(&c, 1, STORE_VERIFY_CHUNK_MISSING, hex, "b2", "base/1/300");
    assert_int_equal(c.n, 1);
    assert_non_null(strstr(c.ev[0].msg, "not in the index"));
    assert_int_equal(st.chunks, 7);
    assert_int_equal(st.records, 8);

    s = open_copy();
    read_ok(s, "b1");
    char want[200];
    snprintf(want, sizeof want, "file base/1/300: chunk %s: not in the index", hex);
    read_fails(s, "b2", want);
    store_close(&s);
    events_free(&c);
}

/* A byte of b2's manifest flipped: b2 is named; b1 and its chunks are fine. */
static void test_flipped_manifest(void **state)
{
    (void)state;
    copy_base();
    flip("backups/b2.manifest", 100);
    events_t c;
    store_verify_stats_t st;
    bq_errbuf_t e = {{0}};
    assert_int_equal(run_verify(&c, &st, &e), BQ_E_IO);
    EXPECT(&c, 1, STORE_VERIFY_MANIFEST_DAMAGED, NULL, "b2", NULL);
    assert_int_equal(c.n, 1);
    assert_non_null(strstr(c.ev[0].msg, "backups/b2.manifest is damaged"));
    assert_non_null(strstr(e.msg, "backup b2 in store"));
    assert_int_equal(st.backups, 2);

    store_t *s = open_copy();
    read_ok(s, "b1");
    read_fails(s, "b2", "backups/b2.manifest is damaged");
    store_close(&s);
    events_free(&c);
}

static int wal_key(void *arg, uint32_t key_id, store_datakey_t *out, bq_errbuf_t *e)
{
    return store_datakey_get(arg, key_id, out, e);
}

/* A byte of the WAL segment flipped: the file is named, and reading it back fails. */
static void test_flipped_wal(void **state)
{
    (void)state;
    copy_base();
    flip("wal/db1/00000001/" WAL_SEG, 48 + 36 + 100);
    events_t c;
    store_verify_stats_t st;
    bq_errbuf_t e = {{0}};
    assert_int_equal(run_verify(&c, &st, &e), BQ_E_IO);
    assert_int_equal(c.n, 1);
    assert_int_equal(c.ev[0].kind, STORE_VERIFY_WAL_DAMAGED);
    assert_string_equal(c.ev[0].wal, WAL_SEG);
    assert_non_null(strstr(c.ev[0].msg, WAL_SEG));
    assert_int_equal(st.wal_files, 2);

    store_t *s = open_copy();
    read_ok(s, "b1");
    read_ok(s, "b2");
    store_chunk_ctx_t *ctx = NULL;
    OK(store_chunk_ctx_for(s, &ctx, &e));
    uint8_t *buf = malloc(SEG);
    assert_non_null(buf);
    size_t len = 0;
    assert_int_equal(store_wal_get(fx.store, "db1", ctx, wal_key, s, WAL_SEG, buf, SEG, &len, &e),
                     BQ_E_IO);
    assert_non_null(strstr(e.msg, WAL_SEG));
    free(buf);
    store_chunk_ctx_destroy(&ctx);
    store_close(&s);
    events_free(&c);
}

/* A WAL conflict file is a warning: verify still passes. */
static void test_wal_conflict(void **state)
{
    (void)state;
    copy_base();
    store_t *s = open_copy();
    bq_errbuf_t e = {{0}};
    store_chunk_ctx_t *ctx = NULL;
    OK(store_chunk_ctx_for(s, &ctx, &e));
    store_datakey_t dk;
    OK(store_datakey_new(fx.store, &fx.m, &dk, &e));
    static const char other[] = "1\t0/4000000\tsomething else\n";
    assert_int_equal(store_wal_put(fx.store, "db1", ctx, &dk, STORE_COMP_NONE, 0, SEG, WAL_HIST, other,
                                   sizeof other - 1, NULL, &e),
                     BQ_E_EXISTS);
    store_datakey_clear(&dk);
    store_chunk_ctx_destroy(&ctx);
    events_t c;
    memset(&c, 0, sizeof c);
    store_verify_stats_t st;
    int rc = store_verify(s, collect, &c, &st, &e);
    if (rc != 0) {
        dump(&c);
        fail_msg("verify: %s %s", bq_err_name(rc), e.msg);
    }
    assert_int_equal(c.n, 1);
    assert_int_equal(c.ev[0].kind, STORE_VERIFY_WAL_CONFLICT);
    assert_non_null(strstr(c.ev[0].wal, WAL_HIST ".conflict-"));
    assert_int_equal(st.warnings, 1);
    assert_int_equal(st.problems, 0);
    store_close(&s);
    events_free(&c);
}

/* The callback's non-zero value stops the verify and is returned. */
static int stop_at_first(const store_verify_event_t *ev, void *arg)
{
    (void)ev;
    ++*(int *)arg;
    return 7;
}

/* A killed writer's unfinished tail (a partial record after the last indexed one) is a
 * warning, not a problem: nothing refers to it and GC reclaims it. */
static void test_torn_tail_is_a_warning(void **state)
{
    (void)state;
    copy_base();
    char path[1024];
    store_file(fx.pack1, path, sizeof path);
    FILE *f = fopen(path, "ab");
    assert_non_null(f);
    static const unsigned char partial[] = {0x33, 0x42, 0x51, 0x52, 0x00, 0x10, 0x00};
    assert_int_equal(fwrite(partial, 1, sizeof partial, f), sizeof partial);
    assert_int_equal(fclose(f), 0);

    events_t c;
    store_verify_stats_t st;
    bq_errbuf_t e = {{0}};
    assert_int_equal(run_verify(&c, &st, &e), 0);
    assert_int_equal(c.n, 1);
    assert_int_equal(c.ev[0].kind, STORE_VERIFY_PACK_TORN);
    assert_non_null(strstr(c.ev[0].msg, "an unfinished write, which GC reclaims"));
    assert_int_equal(st.problems, 0);
    assert_int_equal(st.warnings, 1);
    events_free(&c);
}

static void test_callback_stops(void **state)
{
    (void)state;
    copy_base();
    char path[1024];
    store_file(fx.pack1, path, sizeof path);
    assert_int_equal(unlink(path), 0);
    store_t *s = open_copy();
    bq_errbuf_t e = {{0}};
    int calls = 0;
    assert_int_equal(store_verify(s, stop_at_first, &calls, NULL, &e), 7);
    assert_int_equal(calls, 1);
    store_close(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clean),
        cmocka_unit_test(test_flipped_pack_byte),
        cmocka_unit_test(test_flipped_pack_byte_crc_fixed),
        cmocka_unit_test(test_truncated_pack),
        cmocka_unit_test(test_torn_tail_is_a_warning),
        cmocka_unit_test(test_deleted_pack),
        cmocka_unit_test(test_damaged_index),
        cmocka_unit_test(test_chunk_not_indexed),
        cmocka_unit_test(test_flipped_manifest),
        cmocka_unit_test(test_flipped_wal),
        cmocka_unit_test(test_wal_conflict),
        cmocka_unit_test(test_callback_stops),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
