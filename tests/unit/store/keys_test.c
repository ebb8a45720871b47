/* The store's keys: master key files, wrapping, data key files and rotation (store/keys.h). */
#include "store_keys.h"
#include "fsutil.h"

#include <dirent.h>
#include <setjmp.h>
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

typedef struct {
    char root[256];
    char store[300];
    char m1[300], m2[300], m3[300];
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    if (test_mkdtemp(f->root, sizeof f->root, "keys_test") != 0) {
        free(f);
        return -1;
    }
    snprintf(f->store, sizeof f->store, "%s/store", f->root);
    snprintf(f->m1, sizeof f->m1, "%s/one.storekey", f->root);
    snprintf(f->m2, sizeof f->m2, "%s/two.storekey", f->root);
    snprintf(f->m3, sizeof f->m3, "%s/three.storekey", f->root);
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

static void write_bytes(const char *path, const void *data, size_t len, mode_t mode)
{
    bq_errbuf_t e = {{0}};
    if (bq_file_write_durable(path, data, len, mode, 0, &e) != 0)
        fail_msg("could not write %s: %s", path, e.msg);
}

static size_t read_bytes(const char *path, uint8_t *buf, size_t cap)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        fail_msg("could not open %s", path);
    size_t n = fread(buf, 1, cap, fp);
    fclose(fp);
    return n;
}

static void gen(const char *path, store_master_t *m)
{
    bq_errbuf_t e = {{0}};
    if (store_master_key_generate(path, m, &e) != 0)
        fail_msg("could not generate %s: %s", path, e.msg);
}

/* Names in dir/keys other than K.datakey files (temp files left behind, ...). */
static int stray_files(const char *store)
{
    char kdir[400];
    snprintf(kdir, sizeof kdir, "%s/keys", store);
    DIR *d = opendir(kdir);
    if (!d)
        return 0;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t len = strlen(de->d_name);
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (len != 16 || strcmp(de->d_name + 8, ".datakey") != 0)
            n++;
    }
    closedir(d);
    return n;
}

static void test_master_round_trip(void **state)
{
    fixture_t *f = *state;
    bq_errbuf_t e = {{0}};
    store_master_t m, loaded;
    gen(f->m1, &m);
    assert_string_equal(m.path, f->m1);

    struct stat st;
    assert_int_equal(stat(f->m1, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    char text[128] = {0};
    size_t n = read_bytes(f->m1, (uint8_t *)text, sizeof text - 1);
    assert_int_equal(n, strlen(STORE_MASTER_KEY_PREFIX) + 40 + 1);
    assert_memory_equal(text, STORE_MASTER_KEY_PREFIX, strlen(STORE_MASTER_KEY_PREFIX));
    assert_int_equal(text[n - 1], '\n');

    assert_int_equal(store_master_key_load(f->m1, &loaded, &e), 0);
    assert_memory_equal(loaded.key, m.key, STORE_KEY_BYTES);
    assert_string_equal(loaded.path, f->m1);

    /* Two keys differ; a generate without out still writes a loadable key. */
    assert_int_equal(store_master_key_generate(f->m2, NULL, &e), 0);
    assert_int_equal(store_master_key_load(f->m2, &loaded, &e), 0);
    assert_memory_not_equal(loaded.key, m.key, STORE_KEY_BYTES);

    /* "\r\n" and no line end are accepted too. */
    text[n - 1] = '\r';
    text[n] = '\n';
    write_bytes(f->m3, text, n + 1, 0600);
    assert_int_equal(store_master_key_load(f->m3, &loaded, &e), 0);
    assert_memory_equal(loaded.key, m.key, STORE_KEY_BYTES);
    write_bytes(f->m3, text, n - 1, 0600);
    assert_int_equal(store_master_key_load(f->m3, &loaded, &e), 0);
    assert_memory_equal(loaded.key, m.key, STORE_KEY_BYTES);

    store_master_clear(&loaded);
    for (size_t i = 0; i < STORE_KEY_BYTES; i++)
        assert_int_equal(loaded.key[i], 0);
    store_master_clear(NULL);
}

static void test_master_not_overwritten(void **state)
{
    fixture_t *f = *state;
    bq_errbuf_t e = {{0}};
    store_master_t m, again;
    gen(f->m1, &m);
    uint8_t before[128], after[128];
    size_t nb = read_bytes(f->m1, before, sizeof before);
    memset(&again, 0x55, sizeof again);
    assert_int_equal(store_master_key_generate(f->m1, &again, &e), BQ_E_EXISTS);
    char want[600];
    snprintf(want, sizeof want, "store key file %s already exists; not overwriting it", f->m1);
    assert_string_equal(e.msg, want);
    size_t na = read_bytes(f->m1, after, sizeof after);
    assert_int_equal(na, nb);
    assert_memory_equal(before, after, nb);
}

static void test_master_loose_mode_refused(void **state)
{
    fixture_t *f = *state;
    static const mode_t modes[] = {0640, 0604, 0660, 0644, 0666, 0610, 0601, 0700 | 0040};
    bq_errbuf_t e = {{0}};
    store_master_t m, loaded;
    gen(f->m1, &m);
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        assert_int_equal(chmod(f->m1, modes[i]), 0);
        memset(&e, 0, sizeof e);
        int rc = store_master_key_load(f->m1, &loaded, &e);
        char want[800];
        snprintf(want, sizeof want,
                 "store key file %s has mode %04o: it must not be accessible by group or others "
                 "(run: chmod 600 %s)",
                 f->m1, (unsigned)modes[i], f->m1);
        if (rc != BQ_E_PERM || strcmp(e.msg, want) != 0)
            fail_msg("mode %04o: got %s \"%s\"", (unsigned)modes[i], bq_err_name(rc), e.msg);
    }
    assert_int_equal(chmod(f->m1, 0400), 0);
    assert_int_equal(store_master_key_load(f->m1, &loaded, &e), 0);
    assert_memory_equal(loaded.key, m.key, STORE_KEY_BYTES);
}

static void test_master_bad_content_refused(void **state)
{
    fixture_t *f = *state;
    static const char z40[] = "0123456789abcdefghij0123456789abcdefghij";
    static const struct {
        const char *content;
        size_t len; /* 0: strlen */
    } cases[] = {
        {"", 0},
        {"\n", 0},
        {"barque-store-key-1:\n", 0},
        {"barque-store-key-1:0123456789abcdefghij0123456789abcdefghi\n", 0},   /* 39 */
        {"barque-store-key-1:0123456789abcdefghij0123456789abcdefghijk\n", 0}, /* 41 */
        {"barque-store-key-2:0123456789abcdefghij0123456789abcdefghij\n", 0},
        {"barque-store-key-1 0123456789abcdefghij0123456789abcdefghij\n", 0},
        {"0123456789abcdefghij0123456789abcdefghij\n", 0}, /* a CURVE key file */
        {"barque-store-key-1:0123456789abcdefghij0123456789abcdefgh\"j\n", 0},
        {"barque-store-key-1:0123456789abcdefghij0123456789abcdefghij\n\n", 0},
        {"barque-store-key-1:0123456789abcdefghij0123456789abcdefghij\nx\n", 0},
        {" barque-store-key-1:0123456789abcdefghij0123456789abcdefghij\n", 0},
        {"barque-store-key-1:#####0123456789abcdefghij0123456789abcde\n", 0}, /* > 2^32 */
        {"barque-store-key-1:0123456789abcdefghij0123456789abcdefghij\n\0", 61},
        {"barque-store-key-1:0123456789abcdefghij\0" "123456789abcdefghij\n", 60},
    };
    (void)z40;
    bq_errbuf_t e = {{0}};
    store_master_t loaded;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len = cases[i].len ? cases[i].len : strlen(cases[i].content);
        write_bytes(f->m1, cases[i].content, len, 0600);
        memset(&e, 0, sizeof e);
        int rc = store_master_key_load(f->m1, &loaded, &e);
        char want[800];
        snprintf(want, sizeof want,
                 "store key file %s does not hold a store key (expected \"barque-store-key-1:\" "
                 "and 40 Z85 characters on one line)",
                 f->m1);
        if (rc != BQ_E_KEY || strcmp(e.msg, want) != 0)
            fail_msg("case %zu: got %s \"%s\"", i, bq_err_name(rc), e.msg);
    }
    /* The valid form of the same text loads. */
    char ok[128];
    snprintf(ok, sizeof ok, "%s%s\n", STORE_MASTER_KEY_PREFIX, z40);
    write_bytes(f->m1, ok, strlen(ok), 0600);
    assert_int_equal(store_master_key_load(f->m1, &loaded, &e), 0);

    /* A large file, a directory, a missing file. */
    char big[5000];
    memset(big, 'a', sizeof big);
    write_bytes(f->m1, big, sizeof big, 0600);
    assert_int_equal(store_master_key_load(f->m1, &loaded, &e), BQ_E_KEY);
    assert_non_null(strstr(e.msg, "larger than 4096 bytes"));
    char dir[400];
    snprintf(dir, sizeof dir, "%s/adir", f->root);
    assert_int_equal(mkdir(dir, 0700), 0);
    assert_int_equal(store_master_key_load(dir, &loaded, &e), BQ_E_KEY);
    assert_non_null(strstr(e.msg, "is not a regular file"));
    assert_int_equal(store_master_key_load(f->m2, &loaded, &e), BQ_E_NOTFOUND);
    assert_non_null(strstr(e.msg, f->m2));
}

static void test_wrap_unwrap(void **state)
{
    fixture_t *f = *state;
    bq_errbuf_t e = {{0}};
    store_master_t m1, m2;
    gen(f->m1, &m1);
    gen(f->m2, &m2);
    uint8_t key[STORE_KEY_BYTES], got[STORE_KEY_BYTES];
    uint8_t w[STORE_WRAPPED_BYTES], w2[STORE_WRAPPED_BYTES];
    for (size_t i = 0; i < sizeof key; i++)
        key[i] = (uint8_t)(i * 7 + 1);
    assert_int_equal(STORE_WRAPPED_BYTES, 72);

    assert_int_equal(store_key_wrap(&m1, STORE_LABEL_ID_KEY, key, w, &e), 0);
    assert_memory_not_equal(w + 24, key, STORE_KEY_BYTES); /* the key is not in the clear */
    assert_int_equal(store_key_unwrap(&m1, STORE_LABEL_ID_KEY, w, got, "the id key", &e), 0);
    assert_memory_equal(got, key, sizeof key);
    /* A random nonce: the same key wraps differently each time. */
    assert_int_equal(store_key_wrap(&m1, STORE_LABEL_ID_KEY, key, w2, &e), 0);
    assert_memory_not_equal(w, w2, sizeof w);

    /* Wrong master key. */
    assert_int_equal(store_key_unwrap(&m2, STORE_LABEL_ID_KEY, w, got, "the id key in S/store.conf", &e),
                     BQ_E_KEY);
    char want[800];
    snprintf(want, sizeof want, "wrong store key (the key in %s does not open the id key in S/store.conf)",
             f->m2);
    assert_string_equal(e.msg, want);

    /* Label swap: a wrapped data key cannot pass for the id key or for another data key. */
    char l1[STORE_LABEL_MAX], l2[STORE_LABEL_MAX];
    store_datakey_label(0x2a, l1);
    assert_string_equal(l1, "barque data key 0000002a");
    store_datakey_label(0x2b, l2);
    assert_int_equal(store_key_wrap(&m1, l1, key, w, &e), 0);
    assert_int_equal(store_key_unwrap(&m1, l1, w, got, NULL, &e), 0);
    assert_int_equal(store_key_unwrap(&m1, l2, w, got, NULL, &e), BQ_E_KEY);
    assert_int_equal(store_key_unwrap(&m1, STORE_LABEL_ID_KEY, w, got, NULL, &e), BQ_E_KEY);

    /* One flipped bit anywhere in the wrapped form. */
    for (size_t i = 0; i < STORE_WRAPPED_BYTES * 8; i++) {
        uint8_t bad[STORE_WRAPPED_BYTES];
        memcpy(bad, w, sizeof bad);
        bad[i / 8] ^= (uint8_t)(1u << (i % 8));
        if (store_key_unwrap(&m1, l1, bad, got, NULL, &e) != BQ_E_KEY)
            fail_msg("flipped bit %zu was not detected", i);
    }

    /* Bad labels. */
    char longl[STORE_LABEL_MAX + 2];
    memset(longl, 'x', sizeof longl - 1);
    longl[sizeof longl - 1] = '\0';
    assert_int_equal(store_key_wrap(&m1, "", key, w, &e), BQ_E_INVAL);
    assert_int_equal(store_key_wrap(&m1, longl, key, w, &e), BQ_E_INVAL);
}

static void test_rewrap_blob(void **state)
{
    fixture_t *f = *state;
    bq_errbuf_t e = {{0}};
    store_master_t m1, m2, m3;
    gen(f->m1, &m1);
    gen(f->m2, &m2);
    gen(f->m3, &m3);
    uint8_t key[STORE_KEY_BYTES], got[STORE_KEY_BYTES];
    uint8_t w[STORE_WRAPPED_BYTES], w2[STORE_WRAPPED_BYTES], w3[STORE_WRAPPED_BYTES];
    memset(key, 0xa5, sizeof key);
    assert_int_equal(store_key_wrap(&m1, STORE_LABEL_ID_KEY, key, w, &e), 0);

    int changed = -1;
    assert_int_equal(store_key_rewrap_blob(&m1, &m2, STORE_LABEL_ID_KEY, w, w2, &changed, "id", &e), 0);
    assert_int_equal(changed, 1);
    assert_int_equal(store_key_unwrap(&m2, STORE_LABEL_ID_KEY, w2, got, NULL, &e), 0);
    assert_memory_equal(got, key, sizeof key);
    assert_int_equal(store_key_unwrap(&m1, STORE_LABEL_ID_KEY, w2, got, NULL, &e), BQ_E_KEY);

    /* Run again (an interrupted rotation): already under the new key, left as it is. */
    assert_int_equal(store_key_rewrap_blob(&m1, &m2, STORE_LABEL_ID_KEY, w2, w3, &changed, "id", &e), 0);
    assert_int_equal(changed, 0);
    assert_memory_equal(w3, w2, sizeof w2);

    /* Neither key opens it. */
    assert_int_equal(store_key_rewrap_blob(&m3, &m1, STORE_LABEL_ID_KEY, w2, w3, &changed,
                                           "the id key in S/store.conf", &e),
                     BQ_E_KEY);
    char want[1200];
    snprintf(want, sizeof want,
             "wrong store key (neither the key in %s nor the key in %s opens the id key in "
             "S/store.conf)",
             f->m3, f->m1);
    assert_string_equal(e.msg, want);
}

static void test_datakey_round_trip(void **state)
{
    fixture_t *f = *state;
    bq_errbuf_t e = {{0}};
    store_master_t m;
    gen(f->m1, &m);

    uint32_t *ids = (uint32_t *)1;
    size_t n = 99;
    assert_int_equal(store_datakey_list(f->store, &ids, &n, &e), 0); /* no keys/ yet */
    assert_int_equal(n, 0);
    assert_null(ids);

    store_datakey_t dk[5];
    for (int i = 0; i < 5; i++) {
        assert_int_equal(store_datakey_new(f->store, &m, &dk[i], &e), 0);
        assert_int_not_equal(dk[i].id, 0);
        for (int j = 0; j < i; j++) {
            assert_int_not_equal(dk[i].id, dk[j].id);
            assert_memory_not_equal(dk[i].key, dk[j].key, STORE_KEY_BYTES);
        }
        char path[400];
        snprintf(path, sizeof path, "%s/keys/%08x.datakey", f->store, (unsigned)dk[i].id);
        struct stat st;
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0600);
        assert_int_equal(st.st_size, STORE_WRAPPED_BYTES);
    }
    char kdir[400];
    snprintf(kdir, sizeof kdir, "%s/keys", f->store);
    struct stat st;
    assert_int_equal(stat(kdir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);

    for (int i = 0; i < 5; i++) {
        store_datakey_t got;
        assert_int_equal(store_datakey_load(f->store, &m, dk[i].id, &got, &e), 0);
        assert_int_equal(got.id, dk[i].id);
        assert_memory_equal(got.key, dk[i].key, STORE_KEY_BYTES);
    }

    /* The list is sorted, complete, and skips other names. */
    char junk[400];
    snprintf(junk, sizeof junk, "%s/keys/%08x.datakey.tmp.123", f->store, 7u);
    write_bytes(junk, "x", 1, 0600);
    snprintf(junk, sizeof junk, "%s/keys/0000000G.datakey", f->store);
    write_bytes(junk, "x", 1, 0600);
    snprintf(junk, sizeof junk, "%s/keys/0000000A.datakey", f->store);
    write_bytes(junk, "x", 1, 0600);
    snprintf(junk, sizeof junk, "%s/keys/00000001.datakeys", f->store);
    write_bytes(junk, "x", 1, 0600);
    assert_int_equal(store_datakey_list(f->store, &ids, &n, &e), 0);
    assert_int_equal(n, 5);
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            assert_true(ids[i - 1] < ids[i]);
        int found = 0;
        for (int j = 0; j < 5; j++)
            found |= ids[i] == dk[j].id;
        assert_true(found);
    }
    free(ids);

    store_datakey_clear(&dk[0]);
    assert_int_equal(dk[0].id, 0);
    store_datakey_clear(NULL);
}

static void test_datakey_wrong_master(void **state)
{
    fixture_t *f = *state;
    bq_errbuf_t e = {{0}};
    store_master_t m1, m2;
    gen(f->m1, &m1);
    gen(f->m2, &m2);
    store_datakey_t dk, got;
    assert_int_equal(store_datakey_new(f->store, &m1, &dk, &e), 0);
    memset(&got, 0x55, sizeof got);
    assert_int_equal(store_datakey_load(f->store, &m2, dk.id, &got, &e), BQ_E_KEY);
    char want[1200];
    snprintf(want, sizeof want,
             "wrong store key for %s (the key in %s does not open keys/%08x.datakey)", f->store,
             f->m2, (unsigned)dk.id);
    assert_string_equal(e.msg, want);
}

static void test_datakey_swapped_or_damaged(void **state)
{
    fixture_t *f = *state;
    bq_errbuf_t e = {{0}};
    store_master_t m;
    gen(f->m1, &m);
    store_datakey_t a, b, got;
    assert_int_equal(store_datakey_new(f->store, &m, &a, &e), 0);
    assert_int_equal(store_datakey_new(f->store, &m, &b, &e), 0);
    char pa[400], pb[400];
    snprintf(pa, sizeof pa, "%s/keys/%08x.datakey", f->store, (unsigned)a.id);
    snprintf(pb, sizeof pb, "%s/keys/%08x.datakey", f->store, (unsigned)b.id);
    uint8_t wa[100];
    assert_int_equal(read_bytes(pa, wa, sizeof wa), STORE_WRAPPED_BYTES);

    /* A's wrapped key copied over B's file: the label (B's id) refuses it. */
    write_bytes(pb, wa, STORE_WRAPPED_BYTES, 0600);
    assert_int_equal(store_datakey_load(f->store, &m, b.id, &got, &e), BQ_E_KEY);
    assert_non_null(strstr(e.msg, "does not open keys/"));

    /* Wrong sizes. */
    write_bytes(pb, wa, 71, 0600);
    assert_int_equal(store_datakey_load(f->store, &m, b.id, &got, &e), BQ_E_IO);
    char want[800];
    snprintf(want, sizeof want, "data key file %s is damaged: 71 bytes, expected 72", pb);
    assert_string_equal(e.msg, want);
    uint8_t longer[73] = {0};
    memcpy(longer, wa, 72);
    write_bytes(pb, longer, 73, 0600);
    assert_int_equal(store_datakey_load(f->store, &m, b.id, &got, &e), BQ_E_IO);
    snprintf(want, sizeof want, "data key file %s is damaged: larger than 72 bytes", pb);
    assert_string_equal(e.msg, want);
    write_bytes(pb, "", 0, 0600);
    assert_int_equal(store_datakey_load(f->store, &m, b.id, &got, &e), BQ_E_IO);

    /* Missing. */
    assert_int_equal(unlink(pb), 0);
    assert_int_equal(store_datakey_load(f->store, &m, b.id, &got, &e), BQ_E_NOTFOUND);
    snprintf(want, sizeof want, "data key file %s does not exist", pb);
    assert_string_equal(e.msg, want);

    /* A still opens. */
    assert_int_equal(store_datakey_load(f->store, &m, a.id, &got, &e), 0);
    assert_memory_equal(got.key, a.key, STORE_KEY_BYTES);
}

static void test_datakey_put(void **state)
{
    fixture_t *f = *state;
    bq_errbuf_t e = {{0}};
    store_master_t m1, m2;
    gen(f->m1, &m1);
    gen(f->m2, &m2);
    store_datakey_t dk = {.id = 0x2a}, got;
    memset(dk.key, 0x11, sizeof dk.key);
    assert_int_equal(store_datakey_put(f->store, &m1, &dk, &e), 0);
    assert_int_equal(store_datakey_load(f->store, &m1, 0x2a, &got, &e), 0);
    assert_memory_equal(got.key, dk.key, STORE_KEY_BYTES);
    /* The same key again: success, file untouched. */
    char path[400];
    uint8_t before[72], after[72];
    snprintf(path, sizeof path, "%s/keys/0000002a.datakey", f->store);
    read_bytes(path, before, sizeof before);
    assert_int_equal(store_datakey_put(f->store, &m1, &dk, &e), 0);
    read_bytes(path, after, sizeof after);
    assert_memory_equal(before, after, sizeof before);
    /* Another key under the same id: refused, file untouched. */
    store_datakey_t other = dk;
    other.key[0] ^= 1;
    assert_int_equal(store_datakey_put(f->store, &m1, &other, &e), BQ_E_EXISTS);
    assert_non_null(strstr(e.msg, "keys/0000002a.datakey"));
    assert_non_null(strstr(e.msg, "already holds another key"));
    /* A master key that does not open the existing file: refused. */
    assert_int_equal(store_datakey_put(f->store, &m2, &dk, &e), BQ_E_KEY);
    read_bytes(path, after, sizeof after);
    assert_memory_equal(before, after, sizeof before);
    assert_int_equal(stray_files(f->store), 0);
}

static void test_rewrap(void **state)
{
    fixture_t *f = *state;
    bq_errbuf_t e = {{0}};
    store_master_t m1, m2, m3;
    gen(f->m1, &m1);
    gen(f->m2, &m2);
    gen(f->m3, &m3);
    store_datakey_t dk[4], got;
    for (int i = 0; i < 4; i++)
        assert_int_equal(store_datakey_new(f->store, &m1, &dk[i], &e), 0);

    /* An interrupted rotation: one file is already under m2. */
    char path[400], label[STORE_LABEL_MAX];
    uint8_t w[STORE_WRAPPED_BYTES], w2[STORE_WRAPPED_BYTES];
    int changed = 0;
    snprintf(path, sizeof path, "%s/keys/%08x.datakey", f->store, (unsigned)dk[1].id);
    read_bytes(path, w, sizeof w);
    store_datakey_label(dk[1].id, label);
    assert_int_equal(store_key_rewrap_blob(&m1, &m2, label, w, w2, &changed, "x", &e), 0);
    write_bytes(path, w2, sizeof w2, 0600);

    size_t count = 99;
    assert_int_equal(store_keys_rewrap(f->store, &m1, &m2, &count, &e), 0);
    assert_int_equal(count, 3);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(store_datakey_load(f->store, &m1, dk[i].id, &got, &e), BQ_E_KEY);
        assert_non_null(strstr(e.msg, "wrong store key for"));
        assert_int_equal(store_datakey_load(f->store, &m2, dk[i].id, &got, &e), 0);
        assert_memory_equal(got.key, dk[i].key, STORE_KEY_BYTES);
        snprintf(path, sizeof path, "%s/keys/%08x.datakey", f->store, (unsigned)dk[i].id);
        struct stat st;
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0600);
    }
    assert_int_equal(stray_files(f->store), 0);

    /* Again: nothing to do. */
    assert_int_equal(store_keys_rewrap(f->store, &m1, &m2, &count, &e), 0);
    assert_int_equal(count, 0);

    /* A wrong old key: refused before any file changes. */
    uint8_t before[4][72], after[72];
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/keys/%08x.datakey", f->store, (unsigned)dk[i].id);
        read_bytes(path, before[i], 72);
    }
    assert_int_equal(store_keys_rewrap(f->store, &m1, &m3, &count, &e), BQ_E_KEY);
    assert_int_equal(count, 0);
    assert_non_null(strstr(e.msg, "no key file was changed"));
    assert_non_null(strstr(e.msg, f->m1));
    assert_non_null(strstr(e.msg, f->m3));
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/keys/%08x.datakey", f->store, (unsigned)dk[i].id);
        read_bytes(path, after, 72);
        assert_memory_equal(before[i], after, 72);
    }

    /* Back again to m1, with one file no key opens: nothing changes either. */
    store_datakey_t stranger;
    assert_int_equal(store_datakey_new(f->store, &m3, &stranger, &e), 0);
    assert_int_equal(store_keys_rewrap(f->store, &m2, &m1, &count, &e), BQ_E_KEY);
    char want[80];
    snprintf(want, sizeof want, "opens keys/%08x.datakey", (unsigned)stranger.id);
    assert_non_null(strstr(e.msg, want));
    for (int i = 0; i < 4; i++)
        assert_int_equal(store_datakey_load(f->store, &m2, dk[i].id, &got, &e), 0);

    /* An empty store rotates trivially. */
    char empty[400];
    snprintf(empty, sizeof empty, "%s/empty", f->root);
    assert_int_equal(store_keys_rewrap(empty, &m1, &m2, &count, &e), 0);
    assert_int_equal(count, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_master_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_master_not_overwritten, setup, teardown),
        cmocka_unit_test_setup_teardown(test_master_loose_mode_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_master_bad_content_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrap_unwrap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rewrap_blob, setup, teardown),
        cmocka_unit_test_setup_teardown(test_datakey_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_datakey_wrong_master, setup, teardown),
        cmocka_unit_test_setup_teardown(test_datakey_swapped_or_damaged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_datakey_put, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rewrap, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
