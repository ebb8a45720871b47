/* store_rotate_key (store/store.h): a store with two backups and WAL is re-keyed; the new key
 * opens it and everything reads back byte-identical, the old key is refused, packs are never
 * touched; a wrong old key changes nothing; running it again is a no-op; an interrupted
 * rotation (data keys re-wrapped, store.conf not yet) is finished by running it again. */
#include "fsutil.h"
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

#define FAILS(call, code, want)                                                                    \
    do {                                                                                           \
        int rc_ = (call);                                                                          \
        if (rc_ != (code) || !strstr(e.msg, (want)))                                               \
            fail_msg("%s: got %s \"%s\", want %s with \"%s\"", #call, bq_err_name(rc_), e.msg,    \
                     #code, (want));                                                               \
    } while (0)

typedef struct {
    const char *path;
    size_t len;
    uint8_t *data;
} tfile_t;

static tfile_t files[] = {
    {"base/1/100", 3 * CS, NULL},   /* b1, b2, b3 */
    {"base/1/200", CS + 100, NULL}, /* b1 */
    {"global/x", 5000, NULL},       /* b1, b2 */
    {"base/1/300", 2 * CS, NULL},   /* b2 */
};

typedef struct {
    char root[256];
    char base[300];
    char store[300]; /* the copy a test works on */
    store_master_t old_m, new_m, wrong_m;
    uint8_t *seg;
    int ncopy;
} fixture_t;

static fixture_t fx;

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

static void master(store_master_t *m, const char *name)
{
    randombytes_buf(m->key, sizeof m->key);
    snprintf(m->path, sizeof m->path, "%s/%s.storekey", fx.root, name);
}

static int group_setup(void **state)
{
    (void)state;
    if (sodium_init() < 0)
        return -1;
    if (test_mkdtemp(fx.root, sizeof fx.root, "rotate_test") != 0)
        return -1;
    snprintf(fx.base, sizeof fx.base, "%s/base", fx.root);
    master(&fx.old_m, "old");
    master(&fx.new_m, "new");
    master(&fx.wrong_m, "wrong");
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        files[i].data = malloc(files[i].len);
        if (!files[i].data)
            return -1;
        randombytes_buf(files[i].data, files[i].len);
    }
    fx.seg = malloc(SEG);
    if (!fx.seg)
        return -1;
    randombytes_buf(fx.seg, SEG);

    bq_errbuf_t e = {{0}};
    store_opts_t o = {CS, STORE_COMP_NONE, 0};
    OK(store_create(fx.base, &fx.old_m, &o, &e));
    store_t *s = NULL;
    OK(store_open(fx.base, &fx.old_m, &s, &e));
    backup(s, "b1", (const int[]){0, 1, 2}, 3);
    backup(s, "b2", (const int[]){0, 2, 3}, 3);
    store_chunk_ctx_t *ctx = NULL;
    OK(store_chunk_ctx_for(s, &ctx, &e));
    store_datakey_t dk;
    OK(store_datakey_new(fx.base, &fx.old_m, &dk, &e));
    OK(store_wal_put(fx.base, "db1", ctx, &dk, STORE_COMP_ZSTD, 0, SEG, WAL_SEG, fx.seg, SEG, NULL, &e));
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
    free(fx.seg);
    return rc == 0 ? 0 : -1;
}

/* A fresh copy of the base store in fx.store (cp -a keeps mtimes). */
static void copy_base(void)
{
    snprintf(fx.store, sizeof fx.store, "%s/copy%d", fx.root, fx.ncopy++);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "cp -a '%s' '%s'", fx.base, fx.store);
    assert_int_equal(system(cmd), 0);
}

/* Every file under fx.store/sub (sub "." for all): name, size, mtime (ns) and sha256, sorted,
 * in a new string (caller frees). */
static char *snapshot(const char *sub)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "cd '%s' && find '%s' -type f -printf '%%p %%s %%T@ ' -exec sha256sum {} \\; | sort",
             fx.store, sub);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t cap = 1 << 16, len = 0;
    char *out = malloc(cap);
    assert_non_null(out);
    size_t got;
    while ((got = fread(out + len, 1, cap - len - 1, p)) > 0) {
        len += got;
        if (len + 1 == cap) {
            cap *= 2;
            out = realloc(out, cap);
            assert_non_null(out);
        }
    }
    out[len] = '\0';
    assert_int_equal(pclose(p), 0);
    assert_true(len > 0);
    return out;
}

static char *conf_text(void)
{
    char path[400], *text = NULL;
    size_t len = 0;
    bq_errbuf_t e = {{0}};
    snprintf(path, sizeof path, "%s/store.conf", fx.store);
    OK(bq_file_read_small(path, 4096, &text, &len, &e));
    return text;
}

/* store.conf without its id_key line. */
static void conf_without_id_key(char *text)
{
    char *k = strstr(text, "id_key=");
    assert_non_null(k);
    char *nl = strchr(k, '\n');
    assert_non_null(nl);
    memmove(k, nl + 1, strlen(nl + 1) + 1);
}

/* ---- reading back ---- */

typedef struct {
    const tfile_t *cur;
    size_t off;
    int nfiles;
} check_t;

static int cb_begin(void *arg, const char *path, uint32_t mode, int64_t mtime, bq_errbuf_t *e)
{
    (void)mode, (void)mtime, (void)e;
    check_t *c = arg;
    c->cur = NULL;
    c->off = 0;
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        if (strcmp(files[i].path, path) == 0)
            c->cur = &files[i];
    assert_non_null(c->cur);
    return 0;
}

static int cb_data(void *arg, const void *buf, size_t len, bq_errbuf_t *e)
{
    (void)e;
    check_t *c = arg;
    assert_true(c->off + len <= c->cur->len);
    assert_memory_equal(c->cur->data + c->off, buf, len);
    c->off += len;
    return 0;
}

static int cb_end(void *arg, const char *path, uint64_t size, const uint8_t sha256[32],
                  bq_errbuf_t *e)
{
    (void)path, (void)sha256, (void)e;
    check_t *c = arg;
    assert_int_equal(size, c->cur->len);
    assert_int_equal(c->off, c->cur->len);
    c->nfiles++;
    return 0;
}

static const store_read_cb_t check_cb = {.file_begin = cb_begin, .data = cb_data, .file_end = cb_end};

static int wal_key(void *arg, uint32_t key_id, store_datakey_t *out, bq_errbuf_t *e)
{
    return store_datakey_get(arg, key_id, out, e);
}

/* Open fx.store with m: every backup and the WAL segment read back byte-identical, and
 * store_verify finds nothing. */
static void all_reads_ok(const store_master_t *m, const char *const *ids, size_t nids)
{
    bq_errbuf_t e = {{0}};
    store_t *s = NULL;
    OK(store_open(fx.store, m, &s, &e));
    for (size_t i = 0; i < nids; i++) {
        check_t c = {0};
        OK(store_backup_read(s, ids[i], &check_cb, &c, &e));
        assert_int_equal(c.nfiles, 3);
    }
    store_chunk_ctx_t *ctx = NULL;
    OK(store_chunk_ctx_for(s, &ctx, &e));
    uint8_t *buf = malloc(SEG);
    assert_non_null(buf);
    size_t len = 0;
    OK(store_wal_get(fx.store, "db1", ctx, wal_key, s, WAL_SEG, buf, SEG, &len, &e));
    assert_int_equal(len, SEG);
    assert_memory_equal(buf, fx.seg, SEG);
    free(buf);
    store_chunk_ctx_destroy(&ctx);
    store_verify_stats_t st;
    OK(store_verify(s, NULL, NULL, &st, &e));
    assert_int_equal(st.problems, 0);
    assert_int_equal(st.backups, nids);
    store_close(&s);
}

static const char *const two[] = {"b1", "b2"};

/* ---- tests ---- */

static void test_rotate(void **state)
{
    (void)state;
    copy_base();
    char *packs = snapshot("packs");
    char *conf_before = conf_text();
    bq_errbuf_t e = {{0}};
    store_rotate_stats_t st;
    OK(store_rotate_key(fx.store, &fx.old_m, &fx.new_m, &st, &e));
    assert_int_equal(st.data_keys, 3); /* b1, b2, the WAL's */
    assert_int_equal(st.data_keys_rewrapped, 3);
    assert_int_equal(st.id_key_rewrapped, 1);

    /* store.conf: only the id_key line changed */
    char *conf_after = conf_text();
    assert_string_not_equal(conf_before, conf_after);
    assert_int_equal(strlen(conf_before), strlen(conf_after));
    conf_without_id_key(conf_before);
    conf_without_id_key(conf_after);
    assert_string_equal(conf_before, conf_after);

    all_reads_ok(&fx.new_m, two, 2);
    store_t *s = NULL;
    FAILS(store_open(fx.store, &fx.old_m, &s, &e), BQ_E_KEY, "does not open the id key");
    assert_null(s);

    /* packs: not one byte nor mtime changed */
    char *packs_after = snapshot("packs");
    assert_string_equal(packs, packs_after);

    /* again with the same pair: success, nothing written */
    char *all = snapshot(".");
    OK(store_rotate_key(fx.store, &fx.old_m, &fx.new_m, &st, &e));
    assert_int_equal(st.data_keys, 3);
    assert_int_equal(st.data_keys_rewrapped, 0);
    assert_int_equal(st.id_key_rewrapped, 0);
    char *all_after = snapshot(".");
    assert_string_equal(all, all_after);
    all_reads_ok(&fx.new_m, two, 2);

    /* and back: the new key becomes the old one */
    OK(store_rotate_key(fx.store, &fx.new_m, &fx.old_m, &st, &e));
    assert_int_equal(st.data_keys_rewrapped, 3);
    all_reads_ok(&fx.old_m, two, 2);
    free(packs_after);
    packs_after = snapshot("packs");
    assert_string_equal(packs, packs_after);

    free(all);
    free(all_after);
    free(packs);
    free(packs_after);
    free(conf_before);
    free(conf_after);
}

/* A wrong old key, the same key twice, a busy store: refused, not one file changed. */
static void test_refused(void **state)
{
    (void)state;
    copy_base();
    char *before = snapshot(".");
    bq_errbuf_t e = {{0}};
    store_rotate_stats_t st = {1, 1, 1};
    FAILS(store_rotate_key(fx.store, &fx.wrong_m, &fx.new_m, &st, &e), BQ_E_KEY,
          "wrong.storekey");
    assert_non_null(strstr(e.msg, "nothing was changed"));
    assert_int_equal(st.data_keys_rewrapped, 0);
    FAILS(store_rotate_key(fx.store, &fx.old_m, &fx.old_m, &st, &e), BQ_E_INVAL, "same key");
    char *after = snapshot(".");
    assert_string_equal(before, after);
    free(after);

    /* the id key opens, but a data key opens under neither key */
    uint32_t *ids = NULL;
    size_t n = 0;
    OK(store_datakey_list(fx.store, &ids, &n, &e));
    assert_int_equal(n, 3);
    store_datakey_t dk;
    OK(store_datakey_load(fx.store, &fx.old_m, ids[1], &dk, &e));
    char label[STORE_LABEL_MAX], path[400], name[40];
    store_datakey_label(ids[1], label);
    uint8_t w[STORE_WRAPPED_BYTES];
    OK(store_key_wrap(&fx.wrong_m, label, dk.key, w, &e));
    store_datakey_clear(&dk);
    snprintf(name, sizeof name, "keys/%08x.datakey", (unsigned)ids[1]);
    snprintf(path, sizeof path, "%s/%s", fx.store, name);
    OK(bq_file_write_durable(path, w, sizeof w, 0600, 0, &e));
    free(before);
    before = snapshot(".");
    FAILS(store_rotate_key(fx.store, &fx.old_m, &fx.new_m, &st, &e), BQ_E_KEY, name);
    after = snapshot(".");
    assert_string_equal(before, after);
    free(after);
    free(before);
    free(ids);

    /* a store held by a reader (shared lock): refused, the keys untouched; once closed, the
     * rotation goes through */
    copy_base();
    before = snapshot("keys");
    char *conf = conf_text();
    store_t *s = NULL;
    OK(store_open(fx.store, &fx.old_m, &s, &e));
    FAILS(store_rotate_key(fx.store, &fx.old_m, &fx.new_m, &st, &e), BQ_E_STATE, "is in use");
    store_close(&s);
    after = snapshot("keys");
    assert_string_equal(before, after);
    char *conf_after = conf_text();
    assert_string_equal(conf, conf_after);
    OK(store_rotate_key(fx.store, &fx.old_m, &fx.new_m, &st, &e));
    assert_int_equal(st.data_keys_rewrapped, 3);
    free(conf);
    free(conf_after);
    free(before);
    free(after);

    /* not a store */
    FAILS(store_rotate_key("/nonexistent/store", &fx.old_m, &fx.new_m, &st, &e), BQ_E_NOTFOUND,
          "not a barque store");
}

/* Interrupted after every data key was re-wrapped, before store.conf: the old key opens the
 * store but reads fail naming the data key file; the new key does not open it; a new backup
 * written meanwhile under the old key is fine; running rotate again finishes the job. */
static void test_interrupted(void **state)
{
    (void)state;
    copy_base();
    char *packs = snapshot("packs");
    bq_errbuf_t e = {{0}};
    size_t count = 0;
    OK(store_keys_rewrap(fx.store, &fx.old_m, &fx.new_m, &count, &e));
    assert_int_equal(count, 3);

    store_t *s = NULL;
    FAILS(store_open(fx.store, &fx.new_m, &s, &e), BQ_E_KEY, "does not open the id key");
    OK(store_open(fx.store, &fx.old_m, &s, &e));
    check_t c = {0};
    FAILS(store_backup_read(s, "b1", &check_cb, &c, &e), BQ_E_KEY, ".datakey");
    assert_non_null(strstr(e.msg, "old.storekey"));
    backup(s, "b3", (const int[]){0, 1, 2}, 3); /* a fresh data key, under the old key */
    store_close(&s);

    store_rotate_stats_t st;
    OK(store_rotate_key(fx.store, &fx.old_m, &fx.new_m, &st, &e));
    assert_int_equal(st.data_keys, 4);
    assert_int_equal(st.data_keys_rewrapped, 1); /* b3's */
    assert_int_equal(st.id_key_rewrapped, 1);
    static const char *const three[] = {"b1", "b2", "b3"};
    all_reads_ok(&fx.new_m, three, 3);
    FAILS(store_open(fx.store, &fx.old_m, &s, &e), BQ_E_KEY, "does not open the id key");

    /* b3 deduped against b1's chunks: the packs of b1 and b2 are as they were */
    char *after = snapshot("packs");
    char *line = strtok(packs, "\n");
    for (; line; line = strtok(NULL, "\n"))
        assert_non_null(strstr(after, line));
    free(after);
    free(packs);
}

/* Interrupted after one data key of three: run again, all is under the new key. */
static void test_interrupted_one_key(void **state)
{
    (void)state;
    copy_base();
    bq_errbuf_t e = {{0}};
    uint32_t *ids = NULL;
    size_t n = 0;
    OK(store_datakey_list(fx.store, &ids, &n, &e));
    assert_int_equal(n, 3);
    store_datakey_t dk;
    OK(store_datakey_load(fx.store, &fx.old_m, ids[0], &dk, &e));
    char label[STORE_LABEL_MAX], path[400];
    store_datakey_label(ids[0], label);
    uint8_t w[STORE_WRAPPED_BYTES];
    OK(store_key_wrap(&fx.new_m, label, dk.key, w, &e));
    store_datakey_clear(&dk);
    snprintf(path, sizeof path, "%s/keys/%08x.datakey", fx.store, (unsigned)ids[0]);
    OK(bq_file_write_durable(path, w, sizeof w, 0600, 0, &e));

    /* with another new key the mixed store is refused: nothing changes */
    char *before = snapshot(".");
    store_rotate_stats_t st;
    FAILS(store_rotate_key(fx.store, &fx.old_m, &fx.wrong_m, &st, &e), BQ_E_KEY, ".datakey");
    char *after = snapshot(".");
    assert_string_equal(before, after);

    OK(store_rotate_key(fx.store, &fx.old_m, &fx.new_m, &st, &e));
    assert_int_equal(st.data_keys_rewrapped, 2);
    assert_int_equal(st.id_key_rewrapped, 1);
    all_reads_ok(&fx.new_m, two, 2);
    for (size_t i = 0; i < n; i++) {
        OK(store_datakey_load(fx.store, &fx.new_m, ids[i], &dk, &e));
        store_datakey_clear(&dk);
    }
    free(before);
    free(after);
    free(ids);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rotate),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_interrupted),
        cmocka_unit_test(test_interrupted_one_key),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
