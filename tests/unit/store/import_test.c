/* Copies of backups between stores (store/import.c): stores made under one master key share
 * their id key; a backup of store A is imported into store B as a worker would do it (a view
 * of A from A's exported files, the chunks B lacks read sealed from A, checked on the view,
 * put as they are), and reads back byte-identical from B, which verifies clean. A second
 * backup appends only what changed (deltas included); an import ended half way is resumed
 * without appending anything twice; fetch threads share one importer; refusals (a key of
 * another master key, a missing chunk, another manifest under the id, a delta on a delta)
 * leave B as it was; a GC beside an import keeps what the import relies on. Real stores in a
 * scratch directory, no mocks. */
#include "fsutil.h"
#include "index.h"
#include "pack.h"
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
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

#define CS 8192u

/* The call fails with code and a message holding want. */
#define FAILS(call, code, want)                                                                    \
    do {                                                                                           \
        memset(&e, 0, sizeof e);                                                                   \
        int rc_ = (call);                                                                          \
        if (rc_ != (code) || !strstr(e.msg, (want)))                                               \
            fail_msg("%s: got %s \"%s\", want %s \"...%s...\"", #call, bq_err_name(rc_), e.msg,   \
                     bq_err_name(code), (want));                                                   \
    } while (0)

static char root[256];
static store_master_t m, m2; /* the deployment's key; another deployment's */
static int nstores;

static int group_setup(void **state)
{
    (void)state;
    if (sodium_init() < 0)
        return -1;
    if (test_mkdtemp(root, sizeof root, "import_test") != 0)
        return -1;
    randombytes_buf(m.key, sizeof m.key);
    randombytes_buf(m2.key, sizeof m2.key);
    snprintf(m.path, sizeof m.path, "%s/m.storekey", root);
    snprintf(m2.path, sizeof m2.path, "%s/m2.storekey", root);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    return test_rmtree(root) == 0 ? 0 : -1;
}

/* A new store under master key mk (zstd: deltas are made); its directory in dir. */
static store_t *new_store(const store_master_t *mk, char *dir, size_t cap)
{
    bq_errbuf_t e = {{0}};
    snprintf(dir, cap, "%s/s%d", root, nstores++);
    store_opts_t o = {CS, STORE_COMP_ZSTD, 3};
    OK(store_create(dir, mk, &o, &e));
    store_t *s = NULL;
    OK(store_open(dir, mk, &s, &e));
    store_set_threads(s, 2);
    return s;
}

/* Each test's stores: A (the peer's) and B (this worker's), both under m. */
typedef struct {
    char da[300], db[300];
    store_t *a, *b;
} pair_t;

static int pair_setup(void **state)
{
    pair_t *p = calloc(1, sizeof *p);
    if (!p)
        return -1;
    p->a = new_store(&m, p->da, sizeof p->da);
    p->b = new_store(&m, p->db, sizeof p->db);
    *state = p;
    return 0;
}

static int pair_teardown(void **state)
{
    pair_t *p = *state;
    store_close(&p->a);
    store_close(&p->b);
    free(p);
    return 0;
}

/* ---- files ---- */

typedef struct {
    const char *path;
    uint8_t *data;
    size_t len;
} tfile_t;

static uint8_t *random_bytes(size_t n)
{
    uint8_t *p = malloc(n ? n : 1);
    assert_non_null(p);
    randombytes_buf(p, n);
    return p;
}

/* 0 bytes; 5 chunks and a part; 3 chunks of which two are alike (dedup inside a file) */
static void make_tree(tfile_t t[3])
{
    t[0] = (tfile_t){"base/1/empty", random_bytes(0), 0};
    t[1] = (tfile_t){"base/1/16384", random_bytes(5 * CS + 777), 5 * CS + 777};
    t[2] = (tfile_t){"global/1262", random_bytes(3 * CS), 3 * CS};
    memcpy(t[2].data + 2 * CS, t[2].data, CS);
}

static void free_tree(tfile_t *t, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(t[i].data);
}

static void backup(store_t *s, const char *id, const char *base, const tfile_t *t, size_t n,
                   store_backup_stats_t *st)
{
    bq_errbuf_t e = {{0}};
    store_backup_t *bw = NULL;
    OK(store_backup_begin(s, id, &bw, &e));
    if (base)
        OK(store_backup_set_base(bw, base, &e));
    OK(store_backup_meta(bw, "pg.version", "15", 2, &e));
    for (size_t i = 0; i < n; i++) {
        OK(store_backup_file_begin(bw, t[i].path, 0100600, 1700000000, &e));
        OK(store_backup_file_write(bw, t[i].data, t[i].len, &e));
        OK(store_backup_file_end(bw, &e));
    }
    OK(store_backup_commit(&bw, st, &e));
}

/* What a read of backup id gives back equals t[n]. */
typedef struct {
    const tfile_t *t;
    size_t n, cur, off, done;
} rcheck_t;

static int r_begin(void *arg, const char *path, uint32_t mode, int64_t mtime, bq_errbuf_t *e)
{
    (void)mode, (void)mtime, (void)e;
    rcheck_t *r = arg;
    assert_true(r->done < r->n);
    r->cur = r->done;
    assert_string_equal(path, r->t[r->cur].path);
    r->off = 0;
    return 0;
}

static int r_data(void *arg, const void *buf, size_t len, bq_errbuf_t *e)
{
    (void)e;
    rcheck_t *r = arg;
    assert_true(r->off + len <= r->t[r->cur].len);
    assert_memory_equal(buf, r->t[r->cur].data + r->off, len);
    r->off += len;
    return 0;
}

static int r_end(void *arg, const char *path, uint64_t size, const uint8_t sha[32],
                 bq_errbuf_t *e)
{
    (void)path, (void)sha, (void)e;
    rcheck_t *r = arg;
    assert_int_equal(size, r->t[r->cur].len);
    assert_int_equal(r->off, r->t[r->cur].len);
    r->done++;
    return 0;
}

static void read_check(store_t *s, const char *id, const tfile_t *t, size_t n)
{
    bq_errbuf_t e = {{0}};
    static const store_read_cb_t cb = {.file_begin = r_begin, .data = r_data, .file_end = r_end};
    rcheck_t r = {.t = t, .n = n};
    OK(store_backup_read(s, id, &cb, &r, &e));
    assert_int_equal(r.done, n);
}

static void verify_clean(store_t *s)
{
    bq_errbuf_t e = {{0}};
    store_verify_stats_t vs;
    OK(store_verify(s, NULL, NULL, &vs, &e));
    assert_int_equal(vs.problems, 0);
    assert_int_equal(vs.warnings, 0);
}

/* Records in every pack of dir, and the index entries of s: a chunk appended twice would
 * leave more records than entries. */
typedef struct {
    const char *dir;
    uint64_t records;
} recs_t;

static int rec_one(const uint8_t id[STORE_CHUNK_ID_BYTES], uint64_t offset, uint32_t rec_len,
                   const void *body, size_t body_len, void *arg)
{
    (void)id, (void)offset, (void)rec_len, (void)body, (void)body_len;
    ((recs_t *)arg)->records++;
    return 0;
}

static int pack_one(uint64_t pack, void *arg)
{
    recs_t *r = arg;
    bq_errbuf_t e = {{0}};
    OK(store_pack_scan(r->dir, pack, rec_one, r, NULL, &e));
    return 0;
}

static void records_and_entries(store_t *s, uint64_t *records, uint64_t *entries)
{
    bq_errbuf_t e = {{0}};
    recs_t r = {store_dir(s), 0};
    OK(store_pack_list(store_dir(s), pack_one, &r, &e));
    *records = r.records;
    OK(store_index_count(store_index_handle(s), entries, &e));
}

/* ---- the peer's side, as the worker sees it: a view and the sealed bodies ---- */

/* Export name from store s into view dir (store_export_read, then store_view_put). */
static void view_copy(store_t *s, const char *view, const char *name)
{
    bq_errbuf_t e = {{0}};
    uint8_t buf[4096];
    uint64_t off = 0, total = 0;
    do {
        size_t n = 0;
        OK(store_export_read(s, name, off, buf, sizeof buf, &n, &total, &e));
        OK(store_view_put(view, name, off, buf, n, &e));
        off += n;
    } while (off < total);
}

/* A view in a fresh directory of backup id of src: its store.conf, every data key file, the
 * manifest. Opened with master key mk into *v. */
static void view_make(store_t *src, const char *id, const store_master_t *mk, char *view,
                      size_t cap, store_t **v)
{
    bq_errbuf_t e = {{0}};
    snprintf(view, cap, "%s/view%d", root, nstores++);
    uint8_t conf[4096];
    size_t n = 0;
    uint64_t total = 0;
    OK(store_export_read(src, "store.conf", 0, conf, sizeof conf, &n, &total, &e));
    OK(store_view_create(view, conf, n, &e));
    uint32_t *ids = NULL;
    size_t nids = 0;
    OK(store_datakey_list(store_dir(src), &ids, &nids, &e));
    for (size_t i = 0; i < nids; i++) {
        char name[64];
        snprintf(name, sizeof name, "keys/%08" PRIx32 ".datakey", ids[i]);
        view_copy(src, view, name);
    }
    free(ids);
    char name[128];
    snprintf(name, sizeof name, "backups/%s.manifest", id);
    view_copy(src, view, name);
    OK(store_open(view, mk, v, &e));
}

/* Every data key file of src into dst (store_import_datakey). */
static void import_keys(store_t *src, store_t *dst)
{
    bq_errbuf_t e = {{0}};
    uint32_t *ids = NULL;
    size_t nids = 0;
    OK(store_datakey_list(store_dir(src), &ids, &nids, &e));
    for (size_t i = 0; i < nids; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/keys/%08" PRIx32 ".datakey", store_dir(src), ids[i]);
        char *w = NULL;
        size_t len = 0;
        OK(bq_file_read_small(path, 4096, &w, &len, &e));
        OK(store_import_datakey(dst, ids[i], (const uint8_t *)w, len, &e));
        free(w);
    }
    free(ids);
}

/* The chunk ids of a manifest, as a walk lists them (repeats included). */
typedef struct {
    uint8_t *ids;
    size_t n, cap;
} idlist_t;

static int on_chunks(void *arg, const uint8_t *ids, size_t n, bq_errbuf_t *e)
{
    (void)e;
    idlist_t *l = arg;
    if (l->n + n > l->cap) {
        l->cap = (l->n + n) * 2;
        l->ids = realloc(l->ids, l->cap * STORE_CHUNK_ID_BYTES);
        assert_non_null(l->ids);
    }
    memcpy(l->ids + l->n * STORE_CHUNK_ID_BYTES, ids, n * STORE_CHUNK_ID_BYTES);
    l->n += n;
    return 0;
}

static idlist_t walk_ids(store_t *v, const char *id)
{
    bq_errbuf_t e = {{0}};
    idlist_t l = {0};
    static const store_read_cb_t cb = {.chunks = on_chunks};
    OK(store_backup_walk(v, id, &cb, &l, &e));
    return l;
}

/* The sealed body of chunk id from src, checked on the view as the worker checks it (a delta
 * with its base's body from src too). *body is the caller's (free). Returns the body's
 * length. */
static size_t fetch_checked(store_reader_t *src, store_reader_t *vr,
                            const uint8_t id[STORE_CHUNK_ID_BYTES], uint8_t **body)
{
    bq_errbuf_t e = {{0}};
    const uint8_t *p = NULL, *data = NULL;
    size_t len = 0, blen = 0, dlen = 0;
    OK(store_reader_sealed(src, id, &p, &len, &e));
    *body = malloc(len);
    assert_non_null(*body);
    memcpy(*body, p, len);
    uint8_t base[STORE_CHUNK_ID_BYTES], *bbody = NULL;
    if (store_chunk_body_base(*body, len, base)) {
        OK(store_reader_sealed(src, base, &p, &blen, &e));
        bbody = malloc(blen);
        assert_non_null(bbody);
        memcpy(bbody, p, blen);
    }
    OK(store_reader_open(vr, id, *body, len, bbody, blen, "from store A", &data, &dlen, &e));
    free(bbody);
    return len;
}

/* Fetch (from src, checked on view v) and import each chunk of l that have[] says is missing
 * (have NULL: every chunk), at most limit of them, all but the skip-th missing one (SIZE_MAX:
 * none skipped). Returns how many were missing. */
static size_t put_missing(store_import_t *imp, store_t *src, store_t *v, const idlist_t *l,
                          const uint8_t *have, size_t limit, size_t skip)
{
    bq_errbuf_t e = {{0}};
    store_reader_t *sr = NULL, *vr = NULL;
    OK(store_reader_new(src, &sr, &e));
    OK(store_reader_new(v, &vr, &e));
    size_t missing = 0, done = 0;
    for (size_t i = 0; i < l->n; i++) {
        if ((have && have[i]) || missing++ == skip || done >= limit)
            continue;
        uint8_t *body = NULL;
        size_t len = fetch_checked(sr, vr, l->ids + i * STORE_CHUNK_ID_BYTES, &body);
        OK(store_import_chunk(imp, l->ids + i * STORE_CHUNK_ID_BYTES, body, len, &e));
        free(body);
        done++;
    }
    store_reader_destroy(&sr);
    store_reader_destroy(&vr);
    return missing;
}

/* Import backup id of src into dst through a view: the chunks dst lacks, at most limit of
 * them (SIZE_MAX: all), skipping the skip-th missing one when skip is not SIZE_MAX; then
 * the data keys and the manifest when commit. The importer's figures into *st; the commit's
 * result is returned (ce holds its message); *nmissing (may be NULL) gets the number of chunk
 * references have() said B lacks. */
static int import_backup(store_t *src, store_t *dst, const char *id, size_t limit, size_t skip,
                         int commit, store_import_stats_t *st, size_t *nmissing, bq_errbuf_t *ce)
{
    bq_errbuf_t e = {{0}};
    char view[400];
    store_t *v = NULL;
    view_make(src, id, &m, view, sizeof view, &v);
    assert_true(store_id_key_same(v, dst));
    idlist_t l = walk_ids(v, id);
    uint8_t *have = calloc(l.n ? l.n : 1, 1);
    assert_non_null(have);
    store_import_t *imp = NULL;
    OK(store_import_begin(dst, &imp, &e));
    OK(store_import_have(imp, l.ids, l.n, have, &e));
    size_t missing = put_missing(imp, src, v, &l, have, limit, skip);
    if (nmissing)
        *nmissing = missing;
    int rc = 0;
    if (commit) {
        import_keys(src, dst);
        char src_path[600];
        snprintf(src_path, sizeof src_path, "%s/backups/%s.manifest", view, id);
        rc = store_import_commit(&imp, id, src_path, st, ce);
        assert_null(imp);
    } else {
        store_import_end(&imp, st);
        assert_null(imp);
    }
    store_close(&v);
    OK(store_view_remove(view, &e));
    free(have);
    free(l.ids);
    return rc;
}

static int manifest_exists(store_t *s, const char *id)
{
    char path[600];
    snprintf(path, sizeof path, "%s/backups/%s.manifest", store_dir(s), id);
    return access(path, F_OK) == 0;
}

/* No temp manifest, no live session left in dir. */
static void nothing_left(store_t *s)
{
    char cmd[700];
    snprintf(cmd, sizeof cmd, "(ls -1 '%s/backups'; ls -1 '%s/sessions') 2>/dev/null | "
             "grep -c 'tmp\\|refs'", store_dir(s), store_dir(s));
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char out[32] = "";
    assert_non_null(fgets(out, sizeof out, p));
    pclose(p);
    assert_string_equal(out, "0\n");
}

/* ---- tests ---- */

/* Stores made under one master key share their id key; another master key gives another; a
 * store made before, with a random id key, still opens and is told apart. */
static void test_id_keys(void **state)
{
    pair_t *p = *state;
    bq_errbuf_t e = {{0}};
    char dc[300], dd[300];
    store_t *a = p->a, *b = p->b;
    store_t *c = new_store(&m2, dc, sizeof dc), *d = new_store(&m, dd, sizeof dd);
    assert_true(store_id_key_same(a, b));
    assert_true(store_id_key_same(b, a));
    assert_false(store_id_key_same(a, c));

    /* d as an older store: a random id key wrapped in its store.conf */
    store_close(&d);
    char path[400], *text = NULL;
    snprintf(path, sizeof path, "%s/store.conf", dd);
    OK(bq_file_read_small(path, 4096, &text, NULL, &e));
    uint8_t key[STORE_KEY_BYTES], w[STORE_WRAPPED_BYTES];
    randombytes_buf(key, sizeof key);
    OK(store_key_wrap(&m, STORE_LABEL_ID_KEY, key, w, &e));
    char *line = strstr(text, "id_key=") + strlen("id_key=");
    for (size_t i = 0; i < sizeof w; i++)
        snprintf(line + 2 * i, 3, "%02x", w[i]);
    line[2 * sizeof w] = '\n';
    OK(bq_file_write_durable(path, text, strlen(text), 0600, 0, &e));
    free(text);
    OK(store_open(dd, &m, &d, &e));
    assert_false(store_id_key_same(a, d));
    tfile_t t[3];
    make_tree(t);
    backup(d, "old", NULL, t, 3, NULL);
    read_check(d, "old", t, 3);
    free_tree(t, 3);
    store_close(&c);
    store_close(&d);
}

/* A backup of A into B: B reads it back, verifies clean; importing it again changes nothing. */
static void test_import_roundtrip(void **state)
{
    pair_t *p = *state;
    bq_errbuf_t e = {{0}};
    store_t *a = p->a, *b = p->b;
    const char *da = p->da, *db = p->db;
    tfile_t t[3];
    make_tree(t);
    store_backup_stats_t bs;
    backup(a, "b1", NULL, t, 3, &bs);
    store_import_stats_t st;
    size_t missing = 0;
    OK(import_backup(a, b, "b1", SIZE_MAX, SIZE_MAX, 1, &st, &missing, &e));
    /* 9 chunk refs, one repeated: 8 distinct, all new to B */
    assert_int_equal(bs.chunks, 9);
    assert_int_equal(bs.new_chunks, 8);
    assert_int_equal(missing, 9); /* the repeat is asked for twice, appended once */
    assert_int_equal(st.chunks, 8);
    assert_int_equal(st.bytes, bs.new_bytes);
    assert_true(st.flushes >= 1);
    assert_true(manifest_exists(b, "b1"));
    read_check(b, "b1", t, 3);
    verify_clean(b);
    nothing_left(b);
    uint64_t recs = 0, ents = 0;
    records_and_entries(b, &recs, &ents);
    assert_int_equal(recs, 8);
    assert_int_equal(ents, 8);
    /* The manifest is the peer's, byte for byte. */
    char pa[600], pb[600];
    snprintf(pa, sizeof pa, "%s/backups/b1.manifest", da);
    snprintf(pb, sizeof pb, "%s/backups/b1.manifest", db);
    char *ma = NULL, *mb = NULL;
    size_t la = 0, lb = 0;
    OK(bq_file_read_small(pa, 1 << 20, &ma, &la, &e));
    OK(bq_file_read_small(pb, 1 << 20, &mb, &lb, &e));
    assert_int_equal(la, lb);
    assert_memory_equal(ma, mb, la);
    free(ma);
    free(mb);

    /* The same import again: nothing appended, success. */
    OK(import_backup(a, b, "b1", SIZE_MAX, SIZE_MAX, 1, &st, &missing, &e));
    assert_int_equal(missing, 0);
    assert_int_equal(st.chunks, 0);
    records_and_entries(b, &recs, &ents);
    assert_int_equal(recs, 8);
    read_check(b, "b1", t, 3);
    free_tree(t, 3);
}

/* A second backup of A with a small change (stored by A's writer as deltas against the
 * first) appends only the changed chunks to B; the deltas' bases are there. */
static void test_second_backup_deltas(void **state)
{
    pair_t *p = *state;
    bq_errbuf_t e = {{0}};
    store_t *a = p->a, *b = p->b;
    enum { BIG = 64 };
    tfile_t t[2] = {{"base/5/2619", random_bytes(BIG * CS), BIG * CS},
                    {"base/5/2620", random_bytes(3 * CS), 3 * CS}};
    store_backup_stats_t b1s, b2s;
    backup(a, "b1", NULL, t, 2, &b1s);
    store_import_stats_t st;
    OK(import_backup(a, b, "b1", SIZE_MAX, SIZE_MAX, 1, &st, NULL, &e));
    assert_int_equal(st.chunks, BIG + 3);

    /* a few tuples change in three pages of the big file; a new file */
    tfile_t orig = {t[0].path, malloc(t[0].len), t[0].len};
    assert_non_null(orig.data);
    memcpy(orig.data, t[0].data, t[0].len);
    t[0].data[5 * CS + 100] ^= 1;
    t[0].data[17 * CS + 4000] ^= 0x55;
    memset(t[0].data + 40 * CS + 10, 0, 40);
    tfile_t t2[3] = {t[0], t[1], {"base/5/3000", random_bytes(CS + 5), CS + 5}};
    backup(a, "b2", "b1", t2, 3, &b2s);
    assert_int_equal(b2s.chunks, BIG + 3 + 2);
    assert_int_equal(b2s.new_chunks, 5);
    assert_int_equal(b2s.delta_chunks, 3);

    size_t missing = 0;
    OK(import_backup(a, b, "b2", SIZE_MAX, SIZE_MAX, 1, &st, &missing, &e));
    assert_int_equal(missing, 5);
    assert_int_equal(st.chunks, 5);
    assert_int_equal(st.bytes, b2s.new_bytes);
    print_message("second backup: %" PRIu64 " chunk refs, %" PRIu64 " chunks imported (%"
                  PRIu64 " of them deltas), %" PRIu64 " bytes appended (%" PRIu64
                  " for the first backup)\n", b2s.chunks, st.chunks, b2s.delta_chunks, st.bytes,
                  b1s.new_bytes);
    assert_true(st.bytes * 10 < b1s.new_bytes);
    /* the deltas are indexed as deltas in B, against bases B holds whole */
    idlist_t l = walk_ids(b, "b2");
    size_t deltas = 0;
    for (size_t i = 0; i < l.n; i++) {
        store_index_loc_t loc, bloc;
        OK(store_index_get(store_index_handle(b), l.ids + i * STORE_CHUNK_ID_BYTES, &loc, &e));
        if (!(loc.flags & STORE_INDEX_F_DELTA))
            continue;
        deltas++;
        OK(store_index_get(store_index_handle(b), loc.base, &bloc, &e));
        assert_int_equal(bloc.flags & STORE_INDEX_F_DELTA, 0);
    }
    free(l.ids);
    assert_int_equal(deltas, 3);
    read_check(b, "b2", t2, 3);
    tfile_t t1[2] = {orig, t[1]};
    read_check(b, "b1", t1, 2);
    verify_clean(b);
    free(orig.data);
    free_tree(t2, 3);
}

/* An import ended half way (no manifest) is resumed: the first half is found in B, nothing
 * is appended twice, and the commit works. */
static void test_resume(void **state)
{
    pair_t *p = *state;
    bq_errbuf_t e = {{0}};
    store_t *a = p->a, *b = p->b;
    tfile_t t[1] = {{"base/1/big", random_bytes(600 * CS), 600 * CS}};
    backup(a, "b1", NULL, t, 1, NULL);
    store_import_stats_t st;
    size_t missing = 0;
    OK(import_backup(a, b, "b1", 300, SIZE_MAX, 0, &st, &missing, &e));
    assert_int_equal(missing, 600);
    assert_int_equal(st.chunks, 300);
    assert_true(st.flushes >= 2); /* 256 at a time, and the rest at the end */
    assert_false(manifest_exists(b, "b1"));
    nothing_left(b);
    uint64_t recs = 0, ents = 0;
    records_and_entries(b, &recs, &ents);
    assert_int_equal(recs, 300);
    assert_int_equal(ents, 300);

    OK(import_backup(a, b, "b1", SIZE_MAX, SIZE_MAX, 1, &st, &missing, &e));
    assert_int_equal(missing, 300); /* have() found the first half */
    assert_int_equal(st.chunks, 300);
    records_and_entries(b, &recs, &ents);
    assert_int_equal(recs, 600);
    assert_int_equal(ents, 600);
    read_check(b, "b1", t, 1);
    verify_clean(b);
    nothing_left(b);
    free_tree(t, 1);
}

/* Fetch threads share one importer, each offered every chunk: each is appended once. */
typedef struct {
    store_import_t *imp;
    store_t *src, *view;
    const idlist_t *l;
    unsigned seed;
    int rc;
} fetcher_t;

static void *fetch_thread(void *arg)
{
    fetcher_t *f = arg;
    bq_errbuf_t e = {{0}};
    store_reader_t *sr = NULL, *vr = NULL;
    f->rc = store_reader_new(f->src, &sr, &e);
    if (f->rc == 0)
        f->rc = store_reader_new(f->view, &vr, &e);
    for (size_t k = 0; f->rc == 0 && k < f->l->n; k++) {
        size_t i = (k + f->seed * 37) % f->l->n; /* each thread in another order */
        const uint8_t *id = f->l->ids + i * STORE_CHUNK_ID_BYTES;
        uint8_t *body = NULL;
        size_t len = fetch_checked(sr, vr, id, &body);
        f->rc = store_import_chunk(f->imp, id, body, len, &e);
        free(body);
    }
    store_reader_destroy(&sr);
    store_reader_destroy(&vr);
    return NULL;
}

static void test_threads(void **state)
{
    pair_t *p = *state;
    bq_errbuf_t e = {{0}};
    char view[400];
    store_t *a = p->a, *b = p->b, *v = NULL;
    tfile_t t[1] = {{"base/1/big", random_bytes(300 * CS), 300 * CS}};
    backup(a, "b1", NULL, t, 1, NULL);
    view_make(a, "b1", &m, view, sizeof view, &v);
    idlist_t l = walk_ids(v, "b1");
    store_import_t *imp = NULL;
    OK(store_import_begin(b, &imp, &e));
    enum { NT = 4 };
    pthread_t th[NT];
    fetcher_t f[NT];
    for (unsigned i = 0; i < NT; i++) {
        f[i] = (fetcher_t){imp, a, v, &l, i, 0};
        assert_int_equal(pthread_create(&th[i], NULL, fetch_thread, &f[i]), 0);
    }
    for (unsigned i = 0; i < NT; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(f[i].rc, 0);
    }
    import_keys(a, b);
    char src[600];
    snprintf(src, sizeof src, "%s/backups/b1.manifest", view);
    store_import_stats_t st;
    OK(store_import_commit(&imp, "b1", src, &st, &e));
    assert_int_equal(st.chunks, 300);
    uint64_t recs = 0, ents = 0;
    records_and_entries(b, &recs, &ents);
    assert_int_equal(recs, 300);
    assert_int_equal(ents, 300);
    read_check(b, "b1", t, 1);
    free(l.ids);
    store_close(&v);
    OK(store_view_remove(view, &e));
    free_tree(t, 1);
}

/* Data keys: another master key's is refused; the same key wrapped again (other bytes) is
 * taken; another key under the same id is refused, the file untouched. */
static void test_datakey_refusals(void **state)
{
    pair_t *p = *state;
    bq_errbuf_t e = {{0}};
    char dc[300];
    const char *db = p->db;
    store_t *b = p->b, *c = new_store(&m2, dc, sizeof dc);
    store_datakey_t dk;
    OK(store_datakey_new(dc, &m2, &dk, &e)); /* a key of store C, under the other master */
    char path[400], label[STORE_LABEL_MAX], want[64];
    snprintf(path, sizeof path, "%s/keys/%08" PRIx32 ".datakey", dc, dk.id);
    char *w = NULL;
    size_t len = 0;
    OK(bq_file_read_small(path, 4096, &w, &len, &e));
    snprintf(want, sizeof want, "data key %08" PRIx32, dk.id);
    FAILS(store_import_datakey(b, dk.id, (const uint8_t *)w, len, &e), BQ_E_KEY, want);
    assert_non_null(strstr(e.msg, "does not open it"));
    char bpath[400];
    snprintf(bpath, sizeof bpath, "%s/keys/%08" PRIx32 ".datakey", db, dk.id);
    assert_int_not_equal(access(bpath, F_OK), 0);
    FAILS(store_import_datakey(b, dk.id, (const uint8_t *)w, len - 1, &e), BQ_E_INVAL, "72 bytes");
    free(w);

    /* the same key under m, wrapped twice (two nonces) */
    store_datakey_label(dk.id, label);
    uint8_t w1[STORE_WRAPPED_BYTES], w2[STORE_WRAPPED_BYTES], w3[STORE_WRAPPED_BYTES];
    OK(store_key_wrap(&m, label, dk.key, w1, &e));
    OK(store_key_wrap(&m, label, dk.key, w2, &e));
    assert_memory_not_equal(w1, w2, sizeof w1);
    OK(store_import_datakey(b, dk.id, w1, sizeof w1, &e));
    OK(store_import_datakey(b, dk.id, w1, sizeof w1, &e));
    OK(store_import_datakey(b, dk.id, w2, sizeof w2, &e));
    char *got = NULL;
    OK(bq_file_read_small(bpath, 4096, &got, &len, &e));
    assert_int_equal(len, sizeof w1);
    assert_memory_equal(got, w1, sizeof w1); /* as it came, never replaced */
    free(got);
    store_datakey_t back;
    OK(store_datakey_get(b, dk.id, &back, &e));
    assert_memory_equal(back.key, dk.key, sizeof dk.key);
    /* another key under that id */
    uint8_t other[STORE_KEY_BYTES];
    randombytes_buf(other, sizeof other);
    OK(store_key_wrap(&m, label, other, w3, &e));
    FAILS(store_import_datakey(b, dk.id, w3, sizeof w3, &e), BQ_E_EXISTS, "holds another key");
    OK(bq_file_read_small(bpath, 4096, &got, &len, &e));
    assert_memory_equal(got, w1, sizeof w1);
    free(got);
    store_datakey_clear(&dk);
    store_datakey_clear(&back);
    store_close(&c);
}

/* Commits refused: a chunk missing, another manifest under the id, a bad id, a manifest whose
 * key was not imported; none writes a manifest. */
static void test_commit_refusals(void **state)
{
    pair_t *p = *state;
    bq_errbuf_t e = {{0}};
    store_t *a = p->a, *b = p->b;
    const char *db = p->db;
    tfile_t t[3];
    make_tree(t);
    backup(a, "b1", NULL, t, 3, NULL);

    /* the third missing chunk is never fetched */
    char view[400];
    store_t *v = NULL;
    view_make(a, "b1", &m, view, sizeof view, &v);
    idlist_t l = walk_ids(v, "b1");
    store_close(&v);
    OK(store_view_remove(view, &e));
    char hex[STORE_CHUNK_ID_HEX], want[300];
    snprintf(want, sizeof want, "chunk %s of file base/1/16384 is not in store %s",
             store_id_hex(l.ids + 2 * STORE_CHUNK_ID_BYTES, hex), db);
    store_import_stats_t st;
    FAILS(import_backup(a, b, "b1", SIZE_MAX, 2, 1, &st, NULL, &e), BQ_E_IO, want);
    assert_false(manifest_exists(b, "b1"));
    nothing_left(b);
    free(l.ids);

    /* the manifest's data key not imported first */
    store_t *b2 = NULL;
    char db2[300];
    b2 = new_store(&m, db2, sizeof db2);
    {
        view_make(a, "b1", &m, view, sizeof view, &v);
        store_import_t *imp = NULL;
        OK(store_import_begin(b2, &imp, &e));
        char src[600];
        snprintf(src, sizeof src, "%s/backups/b1.manifest", view);
        memset(&e, 0, sizeof e);
        int rc = store_import_commit(&imp, "b1", src, NULL, &e);
        assert_true(rc == BQ_E_NOTFOUND || rc == BQ_E_KEY);
        assert_non_null(strstr(e.msg, "could not import backup b1 into store"));
        assert_null(imp);
        assert_false(manifest_exists(b2, "b1"));
        nothing_left(b2);
        /* a bad id */
        OK(store_import_begin(b2, &imp, &e));
        FAILS(store_import_commit(&imp, "../b1", src, NULL, &e), BQ_E_INVAL, "is not 1..64");
        assert_null(imp);
        /* the manifest of b1 under another id */
        import_keys(a, b2);
        OK(store_import_begin(b2, &imp, &e));
        FAILS(store_import_commit(&imp, "b9", src, NULL, &e), BQ_E_INVAL,
              "is of backup b1, not b9");
        assert_false(manifest_exists(b2, "b9"));
        store_close(&v);
        OK(store_view_remove(view, &e));
    }
    store_close(&b2);

    /* B holds a backup b1 of its own: another manifest, refused, untouched */
    tfile_t mine[1] = {{"base/1/mine", random_bytes(2 * CS), 2 * CS}};
    backup(b, "b1", NULL, mine, 1, NULL);
    char path[600];
    snprintf(path, sizeof path, "%s/backups/b1.manifest", db);
    char *before = NULL, *after = NULL;
    size_t lb = 0, la = 0;
    OK(bq_file_read_small(path, 1 << 20, &before, &lb, &e));
    FAILS(import_backup(a, b, "b1", SIZE_MAX, SIZE_MAX, 1, &st, NULL, &e), BQ_E_EXISTS,
          "backup b1 already exists in store");
    OK(bq_file_read_small(path, 1 << 20, &after, &la, &e));
    assert_int_equal(la, lb);
    assert_memory_equal(before, after, la);
    free(before);
    free(after);
    read_check(b, "b1", mine, 1);
    nothing_left(b);
    verify_clean(b);
    free_tree(mine, 1);
    free_tree(t, 3);
}

/* A delta whose base B holds as a delta of its own cannot be used in B (a base is never a
 * delta): refused, nothing appended, the importer still usable. */
static void test_delta_on_delta(void **state)
{
    pair_t *p = *state;
    bq_errbuf_t e = {{0}};
    store_t *a = p->a, *b = p->b;
    uint8_t *x0 = random_bytes(CS), *x = malloc(CS), *d = malloc(CS);
    assert_non_null(x);
    assert_non_null(d);
    memcpy(x, x0, CS);
    x[100] ^= 1;
    memcpy(d, x, CS);
    d[5000] ^= 1;
    /* B: x0, then x as a delta against it */
    tfile_t f0 = {"base/1/f", x0, CS}, f1 = {"base/1/f", x, CS}, f2 = {"base/1/f", d, CS};
    store_backup_stats_t bs;
    backup(b, "c1", NULL, &f0, 1, NULL);
    backup(b, "c2", "c1", &f1, 1, &bs);
    assert_int_equal(bs.delta_chunks, 1);
    /* A: x whole, then d as a delta against x */
    backup(a, "b1", NULL, &f1, 1, NULL);
    backup(a, "b2", "b1", &f2, 1, &bs);
    assert_int_equal(bs.delta_chunks, 1);

    char view[400];
    store_t *v = NULL;
    view_make(a, "b2", &m, view, sizeof view, &v);
    idlist_t l = walk_ids(v, "b2");
    assert_int_equal(l.n, 1);
    store_reader_t *sr = NULL, *vr = NULL;
    OK(store_reader_new(a, &sr, &e));
    OK(store_reader_new(v, &vr, &e));
    uint8_t *body = NULL;
    size_t len = fetch_checked(sr, vr, l.ids, &body);
    store_import_t *imp = NULL;
    OK(store_import_begin(b, &imp, &e));
    FAILS(store_import_chunk(imp, l.ids, body, len, &e), BQ_E_STATE,
          "which that store holds as a delta itself");
    /* still usable: a damaged body is refused too, and the flush works */
    body[0] = 9;
    FAILS(store_import_chunk(imp, l.ids, body, len, &e), BQ_E_IO, "unknown compression 9");
    OK(store_import_flush(imp, &e));
    store_import_stats_t st;
    store_import_end(&imp, &st);
    assert_int_equal(st.chunks, 0);
    uint64_t recs = 0, ents = 0;
    records_and_entries(b, &recs, &ents);
    assert_int_equal(recs, ents);
    free(body);
    free(l.ids);
    store_reader_destroy(&sr);
    store_reader_destroy(&vr);
    store_close(&v);
    OK(store_view_remove(view, &e));
    free(x0);
    free(x);
    free(d);
}

/* A GC on B while an import has its chunks indexed but no manifest yet keeps them (the
 * session notes them), and the commit then succeeds; once an import ended without its
 * manifest, a GC reclaims what it left. */
static void test_gc_beside(void **state)
{
    pair_t *p = *state;
    bq_errbuf_t e = {{0}};
    char view[400];
    store_t *a = p->a, *b = p->b, *v = NULL;
    tfile_t t[3];
    make_tree(t);
    backup(a, "b1", NULL, t, 3, NULL);
    tfile_t u[1] = {{"base/1/other", random_bytes(4 * CS), 4 * CS}};
    backup(a, "b2", NULL, u, 1, NULL);

    /* b1: everything imported and indexed; GC runs before the commit */
    view_make(a, "b1", &m, view, sizeof view, &v);
    idlist_t l = walk_ids(v, "b1");
    uint8_t have[16];
    store_import_t *imp = NULL;
    OK(store_import_begin(b, &imp, &e));
    OK(store_import_have(imp, l.ids, l.n, have, &e));
    put_missing(imp, a, v, &l, NULL, SIZE_MAX, SIZE_MAX);
    OK(store_import_have(imp, l.ids, l.n, have, &e));
    for (size_t i = 0; i < l.n; i++)
        assert_int_equal(have[i], 1); /* pending ones count */
    OK(store_import_flush(imp, &e));
    uint64_t recs = 0, ents = 0;
    records_and_entries(b, &recs, &ents);
    assert_int_equal(ents, 8);
    store_gc_stats_t gs;
    OK(store_gc_run(b, NULL, &gs, &e));
    assert_int_equal(gs.chunks_removed, 0);
    assert_int_equal(gs.packs_deleted, 0);
    assert_int_equal(gs.sessions_live, 1);
    records_and_entries(b, &recs, &ents);
    assert_int_equal(ents, 8);
    import_keys(a, b);
    char src[600];
    snprintf(src, sizeof src, "%s/backups/b1.manifest", view);
    OK(store_import_commit(&imp, "b1", src, NULL, &e));
    store_close(&v);
    OK(store_view_remove(view, &e));
    free(l.ids);
    read_check(b, "b1", t, 3);
    verify_clean(b);

    /* b2 ended without its manifest: its chunks are indexed (a resume would find them), and
     * garbage for a GC once no session holds them */
    store_import_stats_t st;
    OK(import_backup(a, b, "b2", SIZE_MAX, SIZE_MAX, 0, &st, NULL, &e));
    assert_int_equal(st.chunks, 4);
    records_and_entries(b, &recs, &ents);
    assert_int_equal(ents, 12);
    OK(store_gc_run(b, NULL, &gs, &e));
    assert_int_equal(gs.chunks_removed, 4);
    records_and_entries(b, &recs, &ents);
    assert_int_equal(ents, 8);
    read_check(b, "b1", t, 3);
    verify_clean(b);
    free_tree(u, 1);
    free_tree(t, 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_id_keys, pair_setup, pair_teardown),
        cmocka_unit_test_setup_teardown(test_import_roundtrip, pair_setup, pair_teardown),
        cmocka_unit_test_setup_teardown(test_second_backup_deltas, pair_setup, pair_teardown),
        cmocka_unit_test_setup_teardown(test_resume, pair_setup, pair_teardown),
        cmocka_unit_test_setup_teardown(test_threads, pair_setup, pair_teardown),
        cmocka_unit_test_setup_teardown(test_datakey_refusals, pair_setup, pair_teardown),
        cmocka_unit_test_setup_teardown(test_commit_refusals, pair_setup, pair_teardown),
        cmocka_unit_test_setup_teardown(test_delta_on_delta, pair_setup, pair_teardown),
        cmocka_unit_test_setup_teardown(test_gc_beside, pair_setup, pair_teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
