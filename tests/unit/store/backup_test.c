/* The store as a whole (store/store.h): create and open, store.conf damage, a wrong master
 * key, backup round trips for each compression, dedup, abort, existing ids, a damaged pack,
 * the lock, and the store's figures. */
#include "fsutil.h"
#include "index.h"
#include "pack.h"
#include "store.h"

#include <dirent.h>
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
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "test_util.h"


#define CS 65536u
#define MIB (1u << 20)

typedef struct {
    char root[256];
    char store[300];
    store_master_t ma, mb;
} fixture_t;

static int setup(void **state)
{
    if (sodium_init() < 0)
        return -1;
    fixture_t *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    if (test_mkdtemp(f->root, sizeof f->root, "backup_test") != 0) {
        free(f);
        return -1;
    }
    snprintf(f->store, sizeof f->store, "%s/store", f->root);
    randombytes_buf(f->ma.key, sizeof f->ma.key);
    randombytes_buf(f->mb.key, sizeof f->mb.key);
    snprintf(f->ma.path, sizeof f->ma.path, "%s/a.storekey", f->root);
    snprintf(f->mb.path, sizeof f->mb.path, "%s/b.storekey", f->root);
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

static store_t *open_store(fixture_t *f, const store_opts_t *o)
{
    bq_errbuf_t e = {{0}};
    OK(store_create(f->store, &f->ma, o, &e));
    store_t *s = NULL;
    OK(store_open(f->store, &f->ma, &s, &e));
    return s;
}

/* ---- a tree of files in memory ---- */

typedef struct {
    const char *path;
    uint8_t *data;
    size_t len;
} tfile_t;

static void write_file(store_backup_t *bw, const tfile_t *t, size_t step)
{
    bq_errbuf_t e = {{0}};
    OK(store_backup_file_begin(bw, t->path, 0100600, 1700000000, &e));
    for (size_t off = 0; off < t->len;) {
        size_t n = t->len - off < step ? t->len - off : step;
        OK(store_backup_file_write(bw, t->data + off, n, &e));
        off += n;
    }
    OK(store_backup_file_end(bw, &e));
}

static void backup_tree(store_t *s, const char *id, const tfile_t *t, size_t n, size_t step,
                        store_backup_stats_t *st)
{
    bq_errbuf_t e = {{0}};
    store_backup_t *bw = NULL;
    OK(store_backup_begin(s, id, &bw, &e));
    OK(store_backup_meta(bw, "pg.version", "15", 2, &e));
    for (size_t i = 0; i < n; i++)
        write_file(bw, &t[i], step);
    OK(store_backup_commit(&bw, st, &e));
    assert_null(bw);
}

/* What a read gives back. */
typedef struct {
    const tfile_t *want;
    size_t n;
    size_t cur;        /* index into want of the open file */
    size_t off;        /* bytes of it received */
    size_t files_done;
    size_t blocks;
    int meta_seen;
    store_t *s;        /* the store read: its id key gives the expected checksums */
} collect_t;

static int c_meta(void *arg, const char *key, const void *val, size_t len, bq_errbuf_t *e)
{
    (void)e;
    collect_t *c = arg;
    if (strcmp(key, "pg.version") == 0 && len == 2 && memcmp(val, "15", 2) == 0)
        c->meta_seen = 1;
    return 0;
}

static int c_begin(void *arg, const char *path, uint32_t mode, int64_t mtime, bq_errbuf_t *e)
{
    (void)e;
    collect_t *c = arg;
    assert_true(c->files_done < c->n);
    c->cur = c->files_done;
    assert_string_equal(path, c->want[c->cur].path);
    assert_int_equal(mode, 0100600);
    assert_int_equal(mtime, 1700000000);
    c->off = 0;
    return 0;
}

static int c_data(void *arg, const void *buf, size_t len, bq_errbuf_t *e)
{
    (void)e;
    collect_t *c = arg;
    const tfile_t *t = &c->want[c->cur];
    assert_true(len <= CS);
    assert_true(c->off + len <= t->len);
    assert_memory_equal(buf, t->data + c->off, len);
    c->off += len;
    c->blocks++;
    return 0;
}

static int c_end(void *arg, const char *path, uint64_t size, const uint8_t sha[32],
                 bq_errbuf_t *e)
{
    (void)e;
    collect_t *c = arg;
    const tfile_t *t = &c->want[c->cur];
    assert_string_equal(path, t->path);
    assert_int_equal(size, t->len);
    assert_int_equal(c->off, t->len);
    /* The checksum: sha256 of the file's chunk ids in order (docs/store.md, "Manifests"). */
    bq_errbuf_t e2 = {{0}};
    store_chunk_ctx_t *ctx = NULL;
    assert_int_equal(store_chunk_ctx_for(c->s, &ctx, &e2), 0);
    crypto_hash_sha256_state st;
    crypto_hash_sha256_init(&st);
    size_t cs = store_chunk_size(c->s);
    for (size_t off = 0; off < t->len; off += cs) {
        uint8_t id[STORE_CHUNK_ID_BYTES];
        size_t n = t->len - off < cs ? t->len - off : cs;
        assert_int_equal(store_chunk_ctx_id(ctx, t->data + off, n, id), 0);
        crypto_hash_sha256_update(&st, id, sizeof id);
    }
    store_chunk_ctx_destroy(&ctx);
    uint8_t want[32];
    crypto_hash_sha256_final(&st, want);
    assert_memory_equal(sha, want, 32);
    c->files_done++;
    return 0;
}

static const store_read_cb_t collect_cb = {.meta = c_meta, .file_begin = c_begin, .data = c_data,
                                           .file_end = c_end};

/* Heap high-water mark of a read, seen from its data callback. */
typedef struct {
    size_t base, peak;
    uint64_t bytes;
} heap_watch_t;

static int h_data(void *arg, const void *buf, size_t len, bq_errbuf_t *e)
{
    (void)buf;
    (void)e;
    heap_watch_t *h = arg;
    size_t now = heap_in_use();
    if (now > h->peak)
        h->peak = now;
    h->bytes += len;
    return 0;
}

static void read_check(store_t *s, const char *id, const tfile_t *t, size_t n)
{
    bq_errbuf_t e = {{0}};
    collect_t c = {.want = t, .n = n, .s = s};
    OK(store_backup_read(s, id, &collect_cb, &c, &e));
    assert_int_equal(c.files_done, n);
    assert_true(c.meta_seen);
}

static uint8_t *random_bytes(size_t n)
{
    uint8_t *p = malloc(n ? n : 1);
    assert_non_null(p);
    randombytes_buf(p, n);
    return p;
}

/* empty, 1 byte, 3 chunks and a partial one (compressible), 1 MiB random */
static void make_tree(tfile_t t[4])
{
    t[0] = (tfile_t){"base/1/empty", random_bytes(0), 0};
    t[1] = (tfile_t){"base/1/one", random_bytes(1), 1};
    size_t n = 3 * CS + 1234;
    uint8_t *p = malloc(n);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)("barque page "[i % 12] + (i / 8192));
    t[2] = (tfile_t){"base/1/16384", p, n};
    t[3] = (tfile_t){"global/pg_control.big", random_bytes(MIB), MIB};
}

static void free_tree(tfile_t *t, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(t[i].data);
}

/* ---- snapshot of a directory tree: names, sizes, mtimes ---- */

static void snapshot(const char *dir, char *out, size_t cap)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "cd '%s' && find . -printf '%%p %%s %%T@ %%m\\n' | sort", dir);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    pclose(p);
}

/* ---- tests ---- */

static void test_create_open(void **state)
{
    fixture_t *f = *state;
    bq_errbuf_t e = {{0}};
    store_opts_t o = {131072, STORE_COMP_LZ4, 0};
    OK(store_create(f->store, &f->ma, &o, &e));
    assert_int_equal(store_create(f->store, &f->ma, &o, &e), BQ_E_EXISTS);
    assert_non_null(strstr(e.msg, "already has store.conf"));

    char path[400];
    snprintf(path, sizeof path, "%s/store.conf", f->store);
    char *text = NULL;
    OK(bq_file_read_small(path, 4096, &text, NULL, &e));
    assert_non_null(strstr(text, "format=1\nchunk_size=131072\ncompression=lz4\nlevel=0\nid_key="));
    assert_int_equal(strlen(strstr(text, "id_key=")), strlen("id_key=") + 144 + 1);
    free(text);
    static const char *const must[] = {"BARQUE_STORE", "keys", "backups", "lock", "index"};
    for (size_t i = 0; i < sizeof must / sizeof must[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", f->store, must[i]);
        assert_int_equal(access(path, F_OK), 0);
    }

    store_t *s = NULL;
    OK(store_open(f->store, &f->ma, &s, &e));
    assert_int_equal(store_chunk_size(s), 131072);
    assert_string_equal(store_dir(s), f->store);
    store_close(&s);
    assert_null(s);
    store_close(&s);
    store_close(NULL);

    /* not a store */
    snprintf(path, sizeof path, "%s/nothing", f->root);
    assert_int_equal(store_open(path, &f->ma, &s, &e), BQ_E_NOTFOUND);
    assert_null(s);
}

static void test_bad_opts(void **state)
{
    fixture_t *f = *state;
    static const struct {
        store_opts_t o;
        const char *msg;
    } cases[] = {
        {{10000, STORE_COMP_ZSTD, 3}, "chunk size 10000 is not a multiple of 8 KiB"},
        {{4096, STORE_COMP_ZSTD, 3}, "chunk size 4096 is not a multiple of 8 KiB"},
        {{(16u << 20) + 8192, STORE_COMP_ZSTD, 3}, "chunk size 16785408 is not"},
        {{CS, STORE_COMP_NONE, 2}, "compression none takes no level (got 2)"},
        {{CS, STORE_COMP_ZSTD, 99}, "zstd level 99 is not in"},
        {{CS, STORE_COMP_LZ4, -1}, "lz4 acceleration -1 is not in 0..65537"},
        {{CS, (store_comp_t)7, 0}, "unknown compression 7"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bq_errbuf_t e = {{0}};
        assert_int_equal(store_create(f->store, &f->ma, &cases[i].o, &e), BQ_E_INVAL);
        if (!strstr(e.msg, cases[i].msg))
            fail_msg("case %zu: got \"%s\", want \"%s\"", i, e.msg, cases[i].msg);
        assert_int_not_equal(access(f->store, F_OK), 0); /* nothing made */
    }
}

static void test_conf_damaged(void **state)
{
    fixture_t *f = *state;
    bq_errbuf_t e = {{0}};
    OK(store_create(f->store, &f->ma, NULL, &e));
    char path[400];
    snprintf(path, sizeof path, "%s/store.conf", f->store);
    char *good = NULL;
    OK(bq_file_read_small(path, 4096, &good, NULL, &e));
    const char *key = strstr(good, "id_key=");
    char keyline[200];
    snprintf(keyline, sizeof keyline, "%s", key); /* "id_key=...\n" */

    static const struct {
        const char *head; /* before the id_key line */
        int code;
        const char *msg;  /* after "store config PATH " */
    } cases[] = {
        {"format=1\nchunk_size=65536\ncompression=zstd\nlevel=3\n", 0, NULL},
        {"format=2\nchunk_size=65536\ncompression=zstd\nlevel=3\n", BQ_E_VERSION,
         "has format 2; this barque supports format 1"},
        {"format=1\nchunk_size=65536\ncompression=brotli\nlevel=3\n", BQ_E_STATE,
         "is damaged: line 3: unknown compression \"brotli\""},
        {"format=1\nchunk_size=x\ncompression=zstd\nlevel=3\n", BQ_E_STATE,
         "is damaged: line 2: chunk_size is not a number"},
        {"format=1\nchunk_size=65536\ncompression=zstd\n", BQ_E_STATE,
         "is damaged: line 5: level is missing"},
        {"format=1\nchunk_size=65536\ncompression=zstd\nlevel=3\nlevel=3\n", BQ_E_STATE,
         "is damaged: line 5: level given twice"},
        {"format=1\nchunk_size=65536\ncompression=zstd\nlevel=3\ncolour=blue\n", BQ_E_STATE,
         "is damaged: line 5: unknown key \"colour\""},
        {"format=1\nchunk_size\ncompression=zstd\nlevel=3\n", BQ_E_STATE,
         "is damaged: line 2: not key=value"},
        {"format=1\nchunk_size=1000\ncompression=zstd\nlevel=3\n", BQ_E_STATE,
         "is damaged: chunk size 1000 is not a multiple of 8 KiB between 8 KiB and 16 MiB"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[600];
        snprintf(text, sizeof text, "%s%s", cases[i].head, keyline);
        OK(bq_file_write_durable(path, text, strlen(text), 0600, 0, &e));
        store_t *s = NULL;
        memset(&e, 0, sizeof e);
        int rc = store_open(f->store, &f->ma, &s, &e);
        if (cases[i].code == 0) {
            if (rc != 0)
                fail_msg("case %zu: %s", i, e.msg);
            store_close(&s);
            continue;
        }
        char want[700];
        snprintf(want, sizeof want, "store config %s %s", path, cases[i].msg);
        if (rc != cases[i].code || strcmp(e.msg, want) != 0)
            fail_msg("case %zu: got %s \"%s\", want %s \"%s\"", i, bq_err_name(rc), e.msg,
                     bq_err_name(cases[i].code), want);
        assert_null(s);
    }
    /* a damaged id key line, and a file without its last newline */
    const char *bad[] = {"format=1\nchunk_size=65536\ncompression=zstd\nlevel=3\nid_key=zz\n",
                         "format=1\nchunk_size=65536\ncompression=zstd\nlevel=3",
                         "format=1\n\0chunk_size=65536\n"};
    const size_t blen[] = {strlen(bad[0]), strlen(bad[1]), 27};
    const char *why[] = {"line 5: id_key is not 144 hex digits", "line 4: no newline at the end",
                         "is damaged: it holds a NUL byte"};
    for (size_t i = 0; i < 3; i++) {
        OK(bq_file_write_durable(path, bad[i], blen[i], 0600, 0, &e));
        store_t *s = NULL;
        assert_int_equal(store_open(f->store, &f->ma, &s, &e), BQ_E_STATE);
        assert_non_null(strstr(e.msg, why[i]));
    }
    /* a store whose creation stopped before store.conf */
    assert_int_equal(unlink(path), 0);
    store_t *s = NULL;
    assert_int_equal(store_open(f->store, &f->ma, &s, &e), BQ_E_NOTFOUND);
    assert_non_null(strstr(e.msg, "has no store.conf"));
    OK(store_create(f->store, &f->ma, NULL, &e));
    OK(store_open(f->store, &f->ma, &s, &e));
    store_close(&s);
    free(good);
}

static void test_wrong_master(void **state)
{
    fixture_t *f = *state;
    bq_errbuf_t e = {{0}};
    store_t *s = open_store(f, NULL);
    tfile_t t = {"f", random_bytes(1000), 1000};
    backup_tree(s, "b1", &t, 1, 1000, NULL);
    store_close(&s);

    static char before[1 << 16], after[1 << 16];
    snapshot(f->store, before, sizeof before);
    assert_int_equal(store_open(f->store, &f->mb, &s, &e), BQ_E_KEY);
    assert_null(s);
    char want[700];
    snprintf(want, sizeof want, "wrong store key for %s (the key in %s does not open the id key "
             "in store.conf)", f->store, f->mb.path);
    assert_string_equal(e.msg, want);
    snapshot(f->store, after, sizeof after);
    assert_string_equal(before, after);

    OK(store_open(f->store, &f->ma, &s, &e));
    read_check(s, "b1", &t, 1);
    store_close(&s);
    free(t.data);
}

static void round_trip(fixture_t *f, store_comp_t comp, int level)
{
    store_opts_t o = {CS, comp, level};
    store_t *s = open_store(f, &o);
    tfile_t t[4];
    make_tree(t);
    store_backup_stats_t st;
    backup_tree(s, "b1", t, 4, 10007, &st); /* writes that cross chunk boundaries */
    assert_int_equal(st.files, 4);
    assert_int_equal(st.logical_bytes, 1 + 3 * CS + 1234 + MIB);
    assert_int_equal(st.chunks, 0 + 1 + 4 + 16);
    assert_int_equal(st.new_chunks + st.dedup_chunks, st.chunks);
    read_check(s, "b1", t, 4);
    /* one big write of each file */
    backup_tree(s, "b2", t, 4, 4 * MIB, &st);
    assert_int_equal(st.new_chunks, 0);
    assert_int_equal(st.dedup_chunks, 21);
    read_check(s, "b2", t, 4);
    store_close(&s);
    /* reopened */
    bq_errbuf_t e = {{0}};
    OK(store_open(f->store, &f->ma, &s, &e));
    read_check(s, "b1", t, 4);
    store_close(&s);
    free_tree(t, 4);
}

static void test_round_trip_zstd(void **state)
{
    round_trip(*state, STORE_COMP_ZSTD, 3);
}

static void test_round_trip_lz4(void **state)
{
    round_trip(*state, STORE_COMP_LZ4, 0);
}

static void test_round_trip_none(void **state)
{
    round_trip(*state, STORE_COMP_NONE, 0);
}

static void test_dedup(void **state)
{
    fixture_t *f = *state;
    store_t *s = open_store(f, NULL);
    tfile_t t = {"base/5/1259", random_bytes(MIB), MIB};
    store_backup_stats_t st;
    backup_tree(s, "b1", &t, 1, MIB, &st);
    assert_int_equal(st.new_chunks, 16);
    assert_int_equal(st.dedup_chunks, 0);
    backup_tree(s, "b2", &t, 1, 8192, &st);
    assert_int_equal(st.new_chunks, 0);
    assert_int_equal(st.new_bytes, 0);
    assert_int_equal(st.dedup_chunks, 16);
    assert_int_equal(st.dedup_bytes, MIB);
    /* one 8 KiB page changed */
    randombytes_buf(t.data + 5 * 8192, 8192);
    backup_tree(s, "b3", &t, 1, 8192, &st);
    assert_int_equal(st.new_chunks, 1);
    assert_int_equal(st.dedup_chunks, 15);
    read_check(s, "b3", &t, 1);

    /* the same chunk twice in one backup, before any pack sync: sealed once */
    uint8_t *rep = malloc(4 * CS);
    assert_non_null(rep);
    randombytes_buf(rep, CS);
    for (int i = 1; i < 4; i++)
        memcpy(rep + (size_t)i * CS, rep, CS);
    tfile_t r = {"rep", rep, 4 * CS};
    backup_tree(s, "b4", &r, 1, CS, &st);
    assert_int_equal(st.new_chunks, 1);
    assert_int_equal(st.dedup_chunks, 3);
    read_check(s, "b4", &r, 1);
    store_close(&s);
    free(rep);
    free(t.data);
}

static int count_backups(const char *id, void *arg)
{
    (void)id;
    (*(int *)arg)++;
    return 0;
}

static void test_abort(void **state)
{
    fixture_t *f = *state;
    bq_errbuf_t e = {{0}};
    store_t *s = open_store(f, NULL);
    tfile_t t = {"f", random_bytes(3 * CS), 3 * CS};
    store_backup_t *bw = NULL;
    OK(store_backup_begin(s, "b1", &bw, &e));
    write_file(bw, &t, CS);
    store_backup_abort(&bw);
    assert_null(bw);
    store_backup_abort(&bw);
    store_backup_abort(NULL);
    char path[400];
    snprintf(path, sizeof path, "%s/backups", f->store);
    DIR *d = opendir(path);
    assert_non_null(d);
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (de->d_name[0] != '.')
            fail_msg("backups/ holds %s after abort", de->d_name);
    closedir(d);
    int n = 0;
    OK(store_backup_list(s, count_backups, &n, &e));
    assert_int_equal(n, 0);
    assert_int_equal(store_backup_read(s, "b1", NULL, NULL, &e), BQ_E_NOTFOUND);

    /* the next backup works (same id) */
    store_backup_stats_t st;
    backup_tree(s, "b1", &t, 1, 777, &st);
    read_check(s, "b1", &t, 1);
    OK(store_backup_list(s, count_backups, &n, &e));
    assert_int_equal(n, 1);

    /* a file left open refuses the commit; the writer is gone and no manifest appears */
    OK(store_backup_begin(s, "b2", &bw, &e));
    OK(store_backup_file_begin(bw, "x", 0100600, 0, &e));
    assert_int_equal(store_backup_commit(&bw, NULL, &e), BQ_E_STATE);
    assert_null(bw);
    assert_int_equal(store_backup_read(s, "b2", NULL, NULL, &e), BQ_E_NOTFOUND);
    store_close(&s);
    free(t.data);
}

static void test_bad_calls(void **state)
{
    fixture_t *f = *state;
    bq_errbuf_t e = {{0}};
    store_t *s = open_store(f, NULL);
    tfile_t t = {"f", random_bytes(10), 10};
    backup_tree(s, "b1", &t, 1, 10, NULL);
    store_backup_t *bw = NULL;
    assert_int_equal(store_backup_begin(s, "b1", &bw, &e), BQ_E_EXISTS);
    char want[600];
    snprintf(want, sizeof want, "backup b1 already exists in store %s", f->store);
    assert_string_equal(e.msg, want);
    assert_null(bw);
    static const char *const bad_ids[] = {
        "", ".hidden", "../x", "a/b", "a b",
        "01234567890123456789012345678901234567890123456789012345678901234", /* 65 */
    };
    for (size_t i = 0; i < sizeof bad_ids / sizeof bad_ids[0]; i++) {
        assert_int_equal(store_backup_begin(s, bad_ids[i], &bw, &e), BQ_E_INVAL);
        assert_null(bw);
    }
    OK(store_backup_begin(s, "b2", &bw, &e));
    assert_int_equal(store_backup_file_write(bw, "x", 1, &e), BQ_E_STATE);
    assert_int_equal(store_backup_file_end(bw, &e), BQ_E_STATE);
    assert_int_equal(store_backup_file_begin(bw, "/abs", 0, 0, &e), BQ_E_INVAL);
    assert_int_equal(store_backup_file_begin(bw, "a/../b", 0, 0, &e), BQ_E_INVAL);
    OK(store_backup_file_begin(bw, "ok", 0100600, 1700000000, &e)); /* still usable */
    assert_int_equal(store_backup_file_begin(bw, "ok2", 0, 0, &e), BQ_E_STATE);
    assert_int_equal(store_backup_meta(bw, "k", "v", 1, &e), BQ_E_STATE);
    OK(store_backup_file_end(bw, &e));
    OK(store_backup_commit(&bw, NULL, &e));
    tfile_t empty = {"ok", NULL, 0};
    collect_t c = {.want = &empty, .n = 1, .s = s};
    OK(store_backup_read(s, "b2", &collect_cb, &c, &e));
    assert_int_equal(c.files_done, 1);
    assert_int_equal(store_backup_read(s, "nope", NULL, NULL, &e), BQ_E_NOTFOUND);
    store_close(&s);
    free(t.data);
}

/* The path of the only pack of the store. */
static void only_pack(const char *store, char *out, size_t cap)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "find '%s/packs' -name '*.pack'", store);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    assert_non_null(fgets(out, (int)cap, p));
    out[strcspn(out, "\n")] = '\0';
    char more[8];
    assert_null(fgets(more, sizeof more, p));
    pclose(p);
}

static void test_flipped_byte(void **state)
{
    fixture_t *f = *state;
    bq_errbuf_t e = {{0}};
    store_opts_t o = {CS, STORE_COMP_NONE, 0};
    store_t *s = open_store(f, &o);
    tfile_t t = {"base/1/2619", random_bytes(2 * CS), 2 * CS};
    backup_tree(s, "b1", &t, 1, CS, NULL);
    char pack[512];
    only_pack(f->store, pack, sizeof pack);
    int fd = open(pack, O_RDWR);
    assert_true(fd >= 0);
    /* the first record: magic(4) len(4) id(32) at offset 32; flip a byte of its body */
    uint8_t id[32], b;
    assert_int_equal(pread(fd, id, 32, 32 + 8), 32);
    assert_int_equal(pread(fd, &b, 1, 32 + 40 + 1000), 1);
    b ^= 0x01;
    assert_int_equal(pwrite(fd, &b, 1, 32 + 40 + 1000), 1);
    close(fd);
    char hex[STORE_CHUNK_ID_HEX];
    store_id_hex(id, hex);

    collect_t c = {.want = &t, .n = 1, .s = s};
    assert_int_equal(store_backup_read(s, "b1", &collect_cb, &c, &e), BQ_E_IO);
    char want[600];
    snprintf(want, sizeof want, "backup b1 in store %s: file base/1/2619: chunk %s: ", f->store,
             hex);
    if (strncmp(e.msg, want, strlen(want)) != 0 || !strstr(e.msg, "crc mismatch"))
        fail_msg("got \"%s\", want a message starting \"%s\" (crc)", e.msg, want);
    assert_int_equal(c.files_done, 0);

    /* the crc fixed up too: the AEAD tag still catches it */
    fd = open(pack, O_RDWR);
    assert_true(fd >= 0);
    uint8_t lenb[4];
    assert_int_equal(pread(fd, lenb, 4, 32 + 4), 4);
    uint32_t blen = (uint32_t)lenb[0] | (uint32_t)lenb[1] << 8 | (uint32_t)lenb[2] << 16 |
                    (uint32_t)lenb[3] << 24;
    uint8_t *rec = malloc(4 + 32 + blen);
    assert_non_null(rec);
    assert_int_equal(pread(fd, rec, 4 + 32 + blen, 32 + 4), (ssize_t)(4 + 32 + blen));
    uint32_t crc = store_pack_crc32c(0, rec, 4 + 32 + blen);
    uint8_t cb[4] = {(uint8_t)crc, (uint8_t)(crc >> 8), (uint8_t)(crc >> 16), (uint8_t)(crc >> 24)};
    assert_int_equal(pwrite(fd, cb, 4, 32 + 40 + blen), 4);
    close(fd);
    free(rec);
    memset(&c, 0, sizeof c);
    c.want = &t;
    c.n = 1;
    assert_int_equal(store_backup_read(s, "b1", &collect_cb, &c, &e), BQ_E_IO);
    if (strncmp(e.msg, want, strlen(want)) != 0 || !strstr(e.msg, "authentication failed"))
        fail_msg("got \"%s\", want a message starting \"%s\" (tag)", e.msg, want);
    store_close(&s);
    free(t.data);
}

static void test_missing_pack(void **state)
{
    fixture_t *f = *state;
    bq_errbuf_t e = {{0}};
    store_t *s = open_store(f, NULL);
    tfile_t t = {"f", random_bytes(CS), CS};
    backup_tree(s, "b1", &t, 1, CS, NULL);
    char pack[512];
    only_pack(f->store, pack, sizeof pack);
    assert_int_equal(unlink(pack), 0);
    assert_int_equal(store_backup_read(s, "b1", NULL, NULL, &e), BQ_E_IO);
    char want[600];
    snprintf(want, sizeof want, "backup b1 in store %s: file f: chunk ", f->store);
    assert_non_null(strstr(e.msg, want));
    assert_non_null(strstr(e.msg, ".pack"));
    store_close(&s);
    free(t.data);
}

static void test_lock(void **state)
{
    fixture_t *f = *state;
    bq_errbuf_t e = {{0}};
    store_t *s = open_store(f, NULL);
    char path[400];
    snprintf(path, sizeof path, "%s/lock", f->store);
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    assert_int_equal(flock(fd, LOCK_EX | LOCK_NB), -1); /* a reader holds it shared */
    assert_int_equal(flock(fd, LOCK_SH | LOCK_NB), 0);   /* shared with others */
    flock(fd, LOCK_UN);
    store_close(&s);
    assert_int_equal(flock(fd, LOCK_EX | LOCK_NB), 0); /* GC's turn */
    assert_int_equal(store_open(f->store, &f->ma, &s, &e), BQ_E_STATE);
    assert_non_null(strstr(e.msg, "held exclusively"));
    assert_null(s);
    close(fd);
    OK(store_open(f->store, &f->ma, &s, &e));
    store_close(&s);
}

typedef struct {
    char ids[8][16];
    int n;
} idlist_t;

static int list_ids(const char *id, void *arg)
{
    idlist_t *l = arg;
    assert_true(l->n < 8);
    snprintf(l->ids[l->n++], sizeof l->ids[0], "%s", id);
    return 0;
}

static void test_list_and_stats(void **state)
{
    fixture_t *f = *state;
    bq_errbuf_t e = {{0}};
    store_t *s = open_store(f, NULL);
    store_stats_t ss;
    OK(store_stats(s, &ss, &e));
    assert_int_equal(ss.backups, 0);
    assert_int_equal(ss.chunks, 0);
    assert_int_equal(ss.stored_bytes, 0);
    assert_true(ss.dedup_ratio == 0.0);

    tfile_t t[2] = {{"a", random_bytes(MIB), MIB}, {"b", random_bytes(100), 100}};
    store_backup_stats_t st1, st2;
    backup_tree(s, "z-last", t, 2, 65536, &st1);
    backup_tree(s, "a-first", t, 2, 4096, &st2);
    backup_tree(s, "m-middle", t, 1, 4096, NULL);
    assert_int_equal(st1.new_chunks, 17);
    assert_int_equal(st2.new_chunks, 0);

    idlist_t l = {0};
    OK(store_backup_list(s, list_ids, &l, &e));
    assert_int_equal(l.n, 3);
    assert_string_equal(l.ids[0], "a-first");
    assert_string_equal(l.ids[1], "m-middle");
    assert_string_equal(l.ids[2], "z-last");

    OK(store_stats(s, &ss, &e));
    assert_int_equal(ss.backups, 3);
    assert_int_equal(ss.chunks, 17);
    assert_int_equal(ss.logical_bytes, 3 * MIB + 2 * 100);
    /* one pack: its header and the records of b1 */
    char pack[512];
    only_pack(f->store, pack, sizeof pack);
    struct stat sb;
    assert_int_equal(stat(pack, &sb), 0);
    assert_int_equal(ss.stored_bytes, (uint64_t)sb.st_size);
    assert_int_equal(ss.stored_bytes, 32 + st1.new_bytes);
    double want = (double)ss.logical_bytes / (double)ss.stored_bytes;
    assert_true(ss.dedup_ratio > want - 1e-9 && ss.dedup_ratio < want + 1e-9);
    assert_true(ss.dedup_ratio > 2.9);
    store_close(&s);
    free_tree(t, 2);
}

/* store_backup_delete: the manifest goes (durably), reads are NOTFOUND, GC reclaims what only
 * the deleted backup referenced, and the other backup reads back whole. */
static void test_delete(void **state)
{
    fixture_t *f = *state;
    bq_errbuf_t e = {{0}};
    store_t *s = open_store(f, NULL);
    tfile_t shared[1] = {{"base/1/shared", random_bytes(MIB), MIB}};
    tfile_t own[2] = {{"base/1/shared", shared[0].data, MIB}, {"base/1/own", random_bytes(MIB), MIB}};
    backup_tree(s, "b-keep", shared, 1, 65536, NULL);
    backup_tree(s, "a-gone", own, 2, 65536, NULL);
    store_stats_t ss;
    OK(store_stats(s, &ss, &e));
    assert_int_equal(ss.backups, 2);
    assert_int_equal(ss.chunks, 32);

    OK(store_backup_delete(s, "a-gone", &e));
    char path[600];
    snprintf(path, sizeof path, "%s/backups/a-gone.manifest", f->store);
    assert_int_equal(access(path, F_OK), -1);
    collect_t c = {.want = own, .n = 2, .s = s};
    assert_int_equal(store_backup_read(s, "a-gone", &collect_cb, &c, &e), BQ_E_NOTFOUND);
    assert_non_null(strstr(e.msg, "backup a-gone does not exist"));
    assert_int_equal(store_backup_walk(s, "a-gone", NULL, NULL, &e), BQ_E_NOTFOUND);
    idlist_t l = {0};
    OK(store_backup_list(s, list_ids, &l, &e));
    assert_int_equal(l.n, 1);
    assert_string_equal(l.ids[0], "b-keep");

    /* again: NOTFOUND (a delete job takes it as done); bad ids are refused */
    assert_int_equal(store_backup_delete(s, "a-gone", &e), BQ_E_NOTFOUND);
    assert_non_null(strstr(e.msg, "does not exist in store"));
    assert_int_equal(store_backup_delete(s, "../store.conf", &e), BQ_E_INVAL);
    assert_int_equal(store_backup_delete(s, ".hidden", &e), BQ_E_INVAL);
    assert_int_equal(store_backup_delete(s, "", &e), BQ_E_INVAL);

    store_gc_stats_t gs;
    OK(store_gc_run(s, NULL, &gs, &e));
    assert_int_equal(gs.backups, 1);
    assert_int_equal(gs.chunks_removed, 16);
    OK(store_stats(s, &ss, &e));
    assert_int_equal(ss.backups, 1);
    assert_int_equal(ss.chunks, 16);
    read_check(s, "b-keep", shared, 1);
    store_verify_stats_t vs;
    OK(store_verify(s, NULL, NULL, &vs, &e));
    assert_int_equal(vs.problems, 0);

    /* the last backup too: GC leaves an empty store that verifies */
    OK(store_backup_delete(s, "b-keep", &e));
    OK(store_gc_run(s, NULL, &gs, &e));
    assert_int_equal(gs.chunks_removed, 16);
    OK(store_stats(s, &ss, &e));
    assert_int_equal(ss.backups, 0);
    assert_int_equal(ss.chunks, 0);
    OK(store_verify(s, NULL, NULL, &vs, &e));
    store_close(&s);
    free(shared[0].data);
    free(own[1].data);
}

/* ---- deltas (docs/store.md, "Deltas") ---- */

/* 8 KiB pages of compressible, distinct text (a relation file, roughly). */
static void fill_pages(uint8_t *p, size_t n, uint64_t seed)
{
    static const char words[] = "barque postgres page tuple heap index wal lsn xid ";
    uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
    for (size_t i = 0; i < n; i++) {
        if (i % 8 == 0) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
        }
        p[i] = (uint8_t)words[(x >> ((i % 8) * 5)) % (sizeof words - 1)];
    }
}

/* A few tuples change in one page of every chunk, as pgbench's updates do. */
static void touch_pages(uint8_t *p, size_t n, unsigned round)
{
    for (size_t off = 0; off + CS <= n; off += CS)
        for (size_t k = 0; k < 96; k++)
            p[off + 8192 * ((off / CS + round) % 8) + 200 + k * 3] ^= (uint8_t)(0x5a + round);
}

static void index_base_of(store_t *s, const uint8_t *data, uint8_t base[STORE_CHUNK_ID_BYTES],
                          int *delta)
{
    bq_errbuf_t e = {{0}};
    store_chunk_ctx_t *ctx = NULL;
    OK(store_chunk_ctx_for(s, &ctx, &e));
    uint8_t id[STORE_CHUNK_ID_BYTES];
    assert_int_equal(store_chunk_ctx_id(ctx, data, CS, id), 0);
    store_chunk_ctx_destroy(&ctx);
    store_index_loc_t loc;
    OK(store_index_get(store_index_handle(s), id, &loc, &e));
    *delta = (loc.flags & STORE_INDEX_F_DELTA) != 0;
    memcpy(base, loc.base, STORE_CHUNK_ID_BYTES);
}

static void chunk_id_of(store_t *s, const uint8_t *data, uint8_t id[STORE_CHUNK_ID_BYTES])
{
    bq_errbuf_t e = {{0}};
    store_chunk_ctx_t *ctx = NULL;
    OK(store_chunk_ctx_for(s, &ctx, &e));
    assert_int_equal(store_chunk_ctx_id(ctx, data, CS, id), 0);
    store_chunk_ctx_destroy(&ctx);
}

static void backup_based(store_t *s, const char *id, const char *base, const tfile_t *t,
                         size_t n, store_backup_stats_t *st)
{
    bq_errbuf_t e = {{0}};
    store_backup_t *bw = NULL;
    OK(store_backup_begin(s, id, &bw, &e));
    OK(store_backup_set_base(bw, base, &e));
    assert_int_equal(store_backup_set_base(bw, base, &e), BQ_E_STATE); /* once */
    OK(store_backup_meta(bw, "pg.version", "15", 2, &e));
    for (size_t i = 0; i < n; i++)
        write_file(bw, &t[i], 8192);
    OK(store_backup_commit(&bw, st, &e));
}

static void test_deltas(void **state)
{
    fixture_t *f = *state;
    bq_errbuf_t e = {{0}};
    store_t *s = open_store(f, NULL);
    const size_t n = 16 * (size_t)CS;
    uint8_t *v1 = malloc(n), *v2 = malloc(n), *v3 = malloc(n);
    assert_true(v1 && v2 && v3);
    fill_pages(v1, n, 7);
    tfile_t t1[1] = {{"base/5/16384", v1, n}};
    store_backup_stats_t st1, st;
    backup_tree(s, "d1", t1, 1, 8192, &st1);
    assert_int_equal(st1.new_chunks, 16);
    assert_int_equal(st1.delta_chunks, 0);

    /* d2 against d1: every chunk changed a little (deltas); a new file and a chunk past the
     * base's end have no base (stored whole). */
    memcpy(v2, v1, n);
    touch_pages(v2, n, 1);
    uint8_t *grown = malloc(n + CS);
    assert_non_null(grown);
    memcpy(grown, v2, n);
    fill_pages(grown + n, CS, 99);
    tfile_t t2[2] = {{"base/5/16384", grown, n + CS}, {"base/5/new", random_bytes(2 * CS), 2 * CS}};
    backup_based(s, "d2", "d1", t2, 2, &st);
    assert_int_equal(st.new_chunks, 19);
    assert_int_equal(st.delta_chunks, 16);
    assert_int_equal(st.base_errors, 0);
    print_message("deltas: d1 stored %" PRIu64 " bytes; d2's 16 deltas %" PRIu64 " bytes\n",
                  st1.new_bytes, st.delta_bytes);
    assert_true(st.delta_bytes * 4 < st1.new_bytes);
    read_check(s, "d2", t2, 2);

    /* d3 against d2, whose chunks are deltas: d3's bases are d1's chunks (one level). */
    memcpy(v3, v2, n);
    touch_pages(v3, n, 2);
    tfile_t t3[1] = {{"base/5/16384", v3, n}};
    backup_based(s, "d3", "d2", t3, 1, &st);
    assert_int_equal(st.new_chunks, 16);
    assert_int_equal(st.delta_chunks, 16);
    for (size_t off = 0; off < n; off += CS) {
        uint8_t base[STORE_CHUNK_ID_BYTES], want[STORE_CHUNK_ID_BYTES];
        int delta = 0;
        index_base_of(s, v3 + off, base, &delta);
        assert_true(delta);
        chunk_id_of(s, v1 + off, want);
        assert_memory_equal(base, want, STORE_CHUNK_ID_BYTES);
    }
    read_check(s, "d3", t3, 1);

    /* Bad calls: a base the store lacks; a base after the first file. */
    store_backup_t *bw = NULL;
    OK(store_backup_begin(s, "d4", &bw, &e));
    assert_int_equal(store_backup_set_base(bw, "nope", &e), BQ_E_NOTFOUND);
    assert_non_null(strstr(e.msg, "backup nope does not exist"));
    write_file(bw, &t3[0], CS);
    assert_int_equal(store_backup_set_base(bw, "d1", &e), BQ_E_STATE);
    OK(store_backup_commit(&bw, &st, &e));
    assert_int_equal(st.delta_chunks, 0);
    OK(store_backup_delete(s, "d4", &e));

    /* With d1 and d2 gone, GC keeps d1's chunks that d3's deltas need, and d3 reads and
     * verifies clean. */
    OK(store_backup_delete(s, "d1", &e));
    OK(store_backup_delete(s, "d2", &e));
    store_gc_stats_t gs;
    OK(store_gc_run(s, NULL, &gs, &e));
    assert_int_equal(gs.bases_kept, 16);
    assert_int_equal(gs.live_chunks, 32);
    read_check(s, "d3", t3, 1);
    store_verify_stats_t vs;
    OK(store_verify(s, NULL, NULL, &vs, &e));
    assert_int_equal(vs.problems, 0);

    /* The last one gone: nothing is kept. */
    OK(store_backup_delete(s, "d3", &e));
    OK(store_gc_run(s, NULL, &gs, &e));
    assert_int_equal(gs.live_chunks, 0);
    store_stats_t ss;
    OK(store_stats(s, &ss, &e));
    assert_int_equal(ss.chunks, 0);
    store_close(&s);
    free(v1);
    free(v2);
    free(v3);
    free(grown);
    free(t2[1].data);
}

/* A backup larger than a pack: the pack is synced, indexed and closed at ~64 MiB and the
 * next chunks go to a new one; chunks of the first pack are found in the index afterwards. */
static void test_pack_rotation(void **state)
{
    fixture_t *f = *state;
    bq_errbuf_t e = {{0}};
    store_opts_t o = {CS, STORE_COMP_NONE, 0};
    store_t *s = open_store(f, &o);
    const size_t n = 65 * (size_t)MIB;
    tfile_t t = {"base/1/big", random_bytes(n), n};
    store_backup_stats_t st;
    backup_tree(s, "b1", &t, 1, 4 * MIB, &st);
    assert_int_equal(st.new_chunks, n / CS);
    read_check(s, "b1", &t, 1);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "find '%s/packs' -name '*.pack' | wc -l", f->store);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    int packs = 0;
    assert_int_equal(fscanf(p, "%d", &packs), 1);
    pclose(p);
    assert_int_equal(packs, 2);
    store_stats_t ss;
    OK(store_stats(s, &ss, &e));
    assert_int_equal(ss.chunks, n / CS);
    assert_int_equal(ss.stored_bytes, 2 * 32 + st.new_bytes);
    backup_tree(s, "b2", &t, 1, 4 * MIB, &st);
    assert_int_equal(st.new_chunks, 0);

    /* a read holds one chunk at a time, whatever the size of the backup */
    heap_watch_t h = {heap_in_use(), 0, 0};
    store_read_cb_t cb = {.data = h_data};
    OK(store_backup_read(s, "b2", &cb, &h, &e));
    assert_int_equal(h.bytes, n);
    if (h.peak > h.base + ((size_t)2 << 20))
        fail_msg("a read of %zu bytes used %zu bytes of heap", n, h.peak - h.base);
    store_close(&s);
    free(t.data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_create_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_opts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_conf_damaged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_master, setup, teardown),
        cmocka_unit_test_setup_teardown(test_round_trip_zstd, setup, teardown),
        cmocka_unit_test_setup_teardown(test_round_trip_lz4, setup, teardown),
        cmocka_unit_test_setup_teardown(test_round_trip_none, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dedup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_abort, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_calls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flipped_byte, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_pack, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lock, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_and_stats, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pack_rotation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deltas, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
