/* Backup manifests (store/manifest.h, docs/store.md "Manifests"): round trips, bounded memory,
 * durability of the temp file, and tables of damaged inputs, sealed and plaintext, each with
 * the exact error it must produce. The envelope and the record stream are also built and
 * opened here independently of manifest.c, from the format as docs/store.md gives it. */
#include "manifest.h"

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <sodium.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "test_util.h"


#define KEY_A 0x2au
#define KEY_B 0x2bu
#define BLOCK 65536
#define ABYTES 17
#define ENV_LEN 52
#define HEAP_BOUND ((size_t)512 << 10) /* the reader's and writer's memory, whatever the size */

typedef struct {
    char dir[64];
    char path[128]; /* dir/b1.manifest */
    uint8_t key_a[32], key_b[32];
} fixture_t;

/* Key lookup: KEY_A and KEY_B known; with swap, KEY_A is answered with key B. */
typedef struct {
    fixture_t *f;
    int swap;
} keyring_t;

static int lookup(void *arg, uint32_t id, uint8_t key[32], bq_errbuf_t *e)
{
    keyring_t *k = arg;
    if (id == KEY_A) {
        memcpy(key, k->swap ? k->f->key_b : k->f->key_a, 32);
        return 0;
    }
    if (id == KEY_B) {
        memcpy(key, k->f->key_b, 32);
        return 0;
    }
    return bq_fail(e, BQ_E_NOTFOUND, "no data key %08x", id);
}

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    if (!f || sodium_init() < 0)
        return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/bq_manifest_test_XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->path, sizeof f->path, "%s/b1.manifest", f->dir);
    randombytes_buf(f->key_a, 32);
    randombytes_buf(f->key_b, 32);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    if (test_rmtree(f->dir) != 0)
        return -1;
    free(f);
    return 0;
}

/* ---- deterministic test data ---- */

static uint64_t splitmix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static void chunk_id(uint64_t file, uint64_t n, uint8_t id[32])
{
    for (int i = 0; i < 4; i++) {
        uint64_t v = splitmix((file << 32) ^ (n << 2) ^ (uint64_t)i);
        for (int k = 0; k < 8; k++)
            id[i * 8 + k] = (uint8_t)(v >> (8 * k));
    }
}

static void file_sha(uint64_t file, uint8_t sha[32])
{
    uint8_t in[8];
    for (int k = 0; k < 8; k++)
        in[k] = (uint8_t)(file >> (8 * k));
    crypto_hash_sha256(sha, in, sizeof in);
}

static int exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static void tmp_name(const fixture_t *f, char *out, size_t cap)
{
    snprintf(out, cap, "%s.tmp.%ld", f->path, (long)getpid());
}

#define OK_E(call)                                                                 \
    do {                                                                           \
        bq_errbuf_t e_ = {{0}};                                                    \
        int rc_ = (call);                                                          \
        if (rc_ != 0)                                                              \
            fail_msg("%s -> %s: %s", #call, bq_err_name(rc_), e_.msg);             \
    } while (0)
#define E (&e_)

/* ---- a generic manifest: nfiles files, file i with nchunks(i) chunks ---- */

static uint64_t chunks_of(uint64_t i)
{
    return i % 5;
}

static void write_files(fixture_t *f, uint64_t nfiles, uint64_t (*nchunks)(uint64_t))
{
    store_manifest_writer_t *w = NULL;
    OK_E(store_manifest_create(f->path, "b1", 1700000000123, 1 << 20, KEY_A, f->key_a, &w, E));
    OK_E(store_manifest_meta(w, "pg.version", "15.4", 4, E));
    char path[64];
    for (uint64_t i = 0; i < nfiles; i++) {
        snprintf(path, sizeof path, "base/%llu/%llu", (unsigned long long)(i % 7),
                 (unsigned long long)i);
        store_manifest_file_t fi = {path, 0100600, (int64_t)(1600000000 + i)};
        OK_E(store_manifest_file_begin(w, &fi, E));
        for (uint64_t j = 0; j < nchunks(i); j++) {
            uint8_t id[32];
            chunk_id(i, j, id);
            OK_E(store_manifest_file_chunk(w, id, E));
        }
        uint8_t sha[32];
        file_sha(i, sha);
        OK_E(store_manifest_file_end(w, sha, i * 1000, E));
    }
    OK_E(store_manifest_meta(w, "backup.stop_lsn", "0/2000100", 9, E));
    OK_E(store_manifest_commit(&w, E));
    assert_null(w);
}

/* Read every item and check it against what write_files wrote. */
static void check_files(store_manifest_reader_t *r, uint64_t nfiles, uint64_t (*nchunks)(uint64_t))
{
    const store_manifest_header_t *h = store_manifest_header(r);
    assert_string_equal(h->backup_id, "b1");
    assert_int_equal(h->created_ms, 1700000000123);
    assert_int_equal(h->chunk_size, 1 << 20);
    assert_int_equal(h->key_id, KEY_A);

    store_manifest_item_t it;
    OK_E(store_manifest_next(r, &it, E));
    assert_int_equal(it.kind, STORE_MANIFEST_META);
    assert_string_equal(it.meta.key, "pg.version");
    assert_int_equal(it.meta.len, 4);
    assert_memory_equal(it.meta.value, "15.4", 4);
    uint64_t total = 0;
    char path[64];
    for (uint64_t i = 0; i < nfiles; i++) {
        OK_E(store_manifest_next(r, &it, E));
        assert_int_equal(it.kind, STORE_MANIFEST_FILE);
        snprintf(path, sizeof path, "base/%llu/%llu", (unsigned long long)(i % 7),
                 (unsigned long long)i);
        assert_string_equal(it.file.path, path);
        assert_int_equal(it.file.mode, 0100600);
        assert_int_equal(it.file.mtime, 1600000000 + (int64_t)i);
        uint64_t j = 0;
        for (;;) {
            OK_E(store_manifest_next(r, &it, E));
            if (it.kind != STORE_MANIFEST_CHUNKS)
                break;
            assert_true(it.chunks.n >= 1 && it.chunks.n <= STORE_MANIFEST_CHUNKS_PER_RECORD);
            for (size_t k = 0; k < it.chunks.n; k++, j++) {
                uint8_t id[32];
                chunk_id(i, j, id);
                assert_memory_equal(it.chunks.ids + 32 * k, id, 32);
            }
        }
        assert_int_equal(it.kind, STORE_MANIFEST_FILE_END);
        assert_string_equal(it.file_end.path, path);
        assert_int_equal(j, nchunks(i));
        assert_int_equal(it.file_end.nchunks, nchunks(i));
        assert_int_equal(it.file_end.size, i * 1000);
        uint8_t sha[32];
        file_sha(i, sha);
        assert_memory_equal(it.file_end.sha256, sha, 32);
        total += j;
    }
    OK_E(store_manifest_next(r, &it, E));
    assert_int_equal(it.kind, STORE_MANIFEST_META);
    assert_string_equal(it.meta.key, "backup.stop_lsn");
    assert_memory_equal(it.meta.value, "0/2000100", 9);
    OK_E(store_manifest_next(r, &it, E));
    assert_int_equal(it.kind, STORE_MANIFEST_END);
    assert_int_equal(it.end.nfiles, nfiles);
    assert_int_equal(it.end.nchunks, total);
    OK_E(store_manifest_next(r, &it, E)); /* END again */
    assert_int_equal(it.kind, STORE_MANIFEST_END);
}

/* ---- the format, rebuilt here from docs/store.md ---- */

typedef struct {
    uint8_t *p;
    size_t len, cap;
} buf_t;

static void b_put(buf_t *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    if (n)
        memcpy(b->p + b->len, p, n);
    b->len += n;
}

static void le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static void b_int(buf_t *b, uint64_t v, int n)
{
    uint8_t t[8];
    le(t, v, n);
    b_put(b, t, (size_t)n);
}

/* A record header; returns its offset. */
static size_t b_rec(buf_t *b, uint8_t type, uint32_t len)
{
    size_t at = b->len;
    b_int(b, type, 1);
    b_int(b, len, 4);
    return at;
}

static size_t b_start_id(buf_t *b, const char *id, uint32_t chunk_size, uint32_t key_id)
{
    b_put(b, "BQMANIF1", 8);
    size_t at = b_rec(b, 1, (uint32_t)(1 + strlen(id) + 16));
    b_int(b, strlen(id), 1);
    b_put(b, id, strlen(id));
    b_int(b, 1700000000123, 8);
    b_int(b, chunk_size, 4);
    b_int(b, key_id, 4);
    return at;
}

static void b_start(buf_t *b)
{
    b_start_id(b, "b1", 1 << 20, KEY_A);
}

static size_t b_meta(buf_t *b, const char *key, size_t klen, const void *v, size_t vlen)
{
    size_t at = b_rec(b, 2, (uint32_t)(2 + klen + vlen));
    b_int(b, klen, 2);
    b_put(b, key, klen);
    b_put(b, v, vlen);
    return at;
}

static size_t b_file(buf_t *b, const char *path, size_t plen)
{
    size_t at = b_rec(b, 3, (uint32_t)(2 + plen + 12));
    b_int(b, plen, 2);
    b_put(b, path, plen);
    b_int(b, 0100644, 4);
    b_int(b, 1600000000, 8);
    return at;
}

static size_t b_chunks(buf_t *b, size_t n)
{
    size_t at = b_rec(b, 4, (uint32_t)(32 * n));
    for (size_t i = 0; i < n; i++) {
        uint8_t id[32];
        chunk_id(99, i, id);
        b_put(b, id, 32);
    }
    return at;
}

static size_t b_file_end(buf_t *b, uint64_t nchunks, uint64_t size)
{
    size_t at = b_rec(b, 6, 48);
    b_int(b, nchunks, 8);
    b_int(b, size, 8);
    uint8_t sha[32];
    file_sha(size, sha);
    b_put(b, sha, 32);
    return at;
}

static size_t b_end_sha(buf_t *b, uint64_t nfiles, uint64_t nchunks, const uint8_t sha[32])
{
    size_t at = b_rec(b, 5, 48);
    b_int(b, nfiles, 8);
    b_int(b, nchunks, 8);
    b_put(b, sha, 32);
    return at;
}

static size_t b_end(buf_t *b, uint64_t nfiles, uint64_t nchunks)
{
    uint8_t sha[32];
    crypto_hash_sha256(sha, b->p, b->len);
    return b_end_sha(b, nfiles, nchunks, sha);
}

/* Seal plaintext into a manifest file as docs/store.md says; with no_final, every message is
 * tagged MESSAGE. */
static void seal_file(const char *path, uint32_t key_id, const uint8_t key[32], const uint8_t *plain,
                      size_t len, int no_final)
{
    buf_t out = {0};
    uint8_t env[ENV_LEN];
    memcpy(env, "BQMANENC", 8);
    le(env + 8, key_id, 4);
    uint8_t msg[25 + 4];
    memcpy(msg, "barque manifest key check", 25);
    le(msg + 25, key_id, 4);
    crypto_generichash(env + 12, 16, msg, sizeof msg, key, 32);
    crypto_secretstream_xchacha20poly1305_state st;
    crypto_secretstream_xchacha20poly1305_init_push(&st, env + 28, key);
    b_put(&out, env, sizeof env);
    static uint8_t c[BLOCK + ABYTES];
    size_t off = 0;
    do {
        size_t n = len - off > BLOCK ? BLOCK : len - off;
        int last = off + n == len;
        unsigned long long clen;
        crypto_secretstream_xchacha20poly1305_push(
            &st, c, &clen, plain + off, n, env, 28,
            last && !no_final ? crypto_secretstream_xchacha20poly1305_TAG_FINAL
                              : crypto_secretstream_xchacha20poly1305_TAG_MESSAGE);
        b_int(&out, clen, 4);
        b_put(&out, c, (size_t)clen);
        off += n;
    } while (off < len);
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(out.p, 1, out.len, fp), out.len);
    assert_int_equal(fclose(fp), 0);
    free(out.p);
}

static uint8_t *read_whole(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    buf_t b = {0};
    uint8_t t[65536];
    size_t n;
    while ((n = fread(t, 1, sizeof t, fp)) > 0)
        b_put(&b, t, n);
    fclose(fp);
    *len = b.len;
    return b.p ? b.p : calloc(1, 1);
}

static void write_whole(const char *path, const uint8_t *p, size_t len)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(p, 1, len, fp), len);
    assert_int_equal(fclose(fp), 0);
}

/* Open a sealed manifest as docs/store.md says, checking its framing (every message but the
 * last holds 64 KiB, the last one is FINAL); returns its plaintext (caller frees). */
static uint8_t *unseal_file(const char *path, const uint8_t key[32], size_t *plen)
{
    size_t len;
    uint8_t *f = read_whole(path, &len);
    assert_true(len >= ENV_LEN);
    assert_memory_equal(f, "BQMANENC", 8);
    assert_int_equal(get_le(f + 8, 4), KEY_A);
    crypto_secretstream_xchacha20poly1305_state st;
    assert_int_equal(crypto_secretstream_xchacha20poly1305_init_pull(&st, f + 28, key), 0);
    buf_t out = {0};
    static uint8_t m[BLOCK];
    size_t off = ENV_LEN;
    unsigned char tag = 0;
    while (off < len) {
        assert_int_equal(tag, 0);
        assert_true(len - off >= 4);
        size_t clen = (size_t)get_le(f + off, 4);
        assert_true(clen >= ABYTES && clen <= BLOCK + ABYTES && len - off - 4 >= clen);
        unsigned long long mlen;
        assert_int_equal(crypto_secretstream_xchacha20poly1305_pull(&st, m, &mlen, &tag,
                                                                    f + off + 4, clen, f, 28),
                         0);
        off += 4 + clen;
        if (tag == 0)
            assert_int_equal(mlen, BLOCK);
        b_put(&out, m, (size_t)mlen);
    }
    assert_int_equal(tag, crypto_secretstream_xchacha20poly1305_TAG_FINAL);
    free(f);
    *plen = out.len;
    return out.p;
}

/* Read a reader to its END; the first error (or 0). */
static int drain(store_manifest_reader_t *r, uint64_t *nitems, bq_errbuf_t *e)
{
    store_manifest_item_t it;
    uint64_t n = 0;
    int rc;
    do {
        rc = store_manifest_next(r, &it, e);
        n++;
    } while (rc == 0 && it.kind != STORE_MANIFEST_END);
    if (nitems)
        *nitems = n;
    return rc;
}

static int read_sealed(const char *path, keyring_t *k, bq_errbuf_t *e)
{
    store_manifest_reader_t *r = NULL;
    int rc = store_manifest_open(path, lookup, k, &r, e);
    if (rc == 0) {
        rc = drain(r, NULL, e);
        store_manifest_close(&r);
        assert_null(r);
    } else {
        assert_null(r);
    }
    return rc;
}

static int read_plain(const buf_t *b, bq_errbuf_t *e)
{
    store_manifest_reader_t *r = NULL;
    int rc = store_manifest_open_plain(b->p, b->len, "t", &r, e);
    if (rc == 0) {
        rc = drain(r, NULL, e);
        if (rc) { /* errors are sticky */
            bq_errbuf_t e2 = {{0}};
            store_manifest_item_t it;
            assert_int_equal(store_manifest_next(r, &it, &e2), rc);
            assert_string_equal(e2.msg, e->msg);
        }
        store_manifest_close(&r);
    } else {
        assert_null(r);
    }
    return rc;
}

/* ======================================================================================== */

static void test_empty(void **state)
{
    fixture_t *f = *state;
    store_manifest_writer_t *w = NULL;
    OK_E(store_manifest_create(f->path, "20240101T000000-1", -5, 4096, KEY_A, f->key_a, &w, E));
    OK_E(store_manifest_commit(&w, E));
    keyring_t k = {f, 0};
    store_manifest_reader_t *r = NULL;
    OK_E(store_manifest_open(f->path, lookup, &k, &r, E));
    const store_manifest_header_t *h = store_manifest_header(r);
    assert_string_equal(h->backup_id, "20240101T000000-1");
    assert_int_equal(h->created_ms, -5);
    assert_int_equal(h->chunk_size, 4096);
    assert_int_equal(h->key_id, KEY_A);
    store_manifest_item_t it;
    OK_E(store_manifest_next(r, &it, E));
    assert_int_equal(it.kind, STORE_MANIFEST_END);
    assert_int_equal(it.end.nfiles, 0);
    assert_int_equal(it.end.nchunks, 0);
    store_manifest_close(&r);
    store_manifest_close(&r);
    store_manifest_close(NULL);

    /* the plaintext, opened independently: magic, HEADER, END */
    size_t plen;
    uint8_t *plain = unseal_file(f->path, f->key_a, &plen);
    assert_int_equal(plen, 8 + 5 + 1 + 17 + 16 + 5 + 48);
    assert_memory_equal(plain, "BQMANIF1", 8);
    OK_E(store_manifest_open_plain(plain, plen, NULL, &r, E));
    OK_E(store_manifest_next(r, &it, E));
    assert_int_equal(it.kind, STORE_MANIFEST_END);
    store_manifest_close(&r);
    free(plain);
}

static uint64_t no_chunks(uint64_t i)
{
    (void)i;
    return 0;
}

static void test_one_file_no_chunks(void **state)
{
    fixture_t *f = *state;
    write_files(f, 1, no_chunks);
    keyring_t k = {f, 0};
    store_manifest_reader_t *r = NULL;
    OK_E(store_manifest_open(f->path, lookup, &k, &r, E));
    check_files(r, 1, no_chunks);
    store_manifest_close(&r);
}

static void test_10000_files(void **state)
{
    fixture_t *f = *state;
    write_files(f, 10000, chunks_of);
    keyring_t k = {f, 0};
    store_manifest_reader_t *r = NULL;
    OK_E(store_manifest_open(f->path, lookup, &k, &r, E));
    check_files(r, 10000, chunks_of);
    store_manifest_close(&r);

    /* The same through the plaintext reader, after opening the file independently (which also
     * checks the framing: full 64 KiB messages, then one FINAL). */
    size_t plen;
    uint8_t *plain = unseal_file(f->path, f->key_a, &plen);
    assert_true(plen > 4 * BLOCK);
    OK_E(store_manifest_open_plain(plain, plen, "plain", &r, E));
    check_files(r, 10000, chunks_of);
    store_manifest_close(&r);
    free(plain);
}

static void test_200000_chunks_bounded_memory(void **state)
{
    fixture_t *f = *state;
    const uint64_t n = 200000;
    size_t base = heap_in_use(), peak = 0;
    store_manifest_writer_t *w = NULL;
    OK_E(store_manifest_create(f->path, "big", 1, 8192, KEY_A, f->key_a, &w, E));
    store_manifest_file_t fi = {"base/1/16384", 0100600, 1};
    OK_E(store_manifest_file_begin(w, &fi, E));
    for (uint64_t j = 0; j < n; j++) {
        uint8_t id[32];
        chunk_id(7, j, id);
        OK_E(store_manifest_file_chunk(w, id, E));
        if (j % 1000 == 0 && heap_in_use() - base > peak)
            peak = heap_in_use() - base;
    }
    uint8_t sha[32];
    file_sha(7, sha);
    OK_E(store_manifest_file_end(w, sha, n * 8192, E));
    OK_E(store_manifest_commit(&w, E));
    print_message("writer: %zu bytes of heap at most for %llu chunk ids\n", peak,
                  (unsigned long long)n);
    assert_true(peak < HEAP_BOUND);

    struct stat st;
    assert_int_equal(stat(f->path, &st), 0);
    assert_true(st.st_size > (off_t)(n * 32)); /* the file is far larger than the bound */

    keyring_t k = {f, 0};
    base = heap_in_use();
    peak = 0;
    store_manifest_reader_t *r = NULL;
    OK_E(store_manifest_open(f->path, lookup, &k, &r, E));
    store_manifest_item_t it;
    OK_E(store_manifest_next(r, &it, E));
    assert_int_equal(it.kind, STORE_MANIFEST_FILE);
    assert_string_equal(it.file.path, "base/1/16384");
    uint64_t j = 0, batches = 0;
    for (;;) {
        OK_E(store_manifest_next(r, &it, E));
        if (heap_in_use() - base > peak)
            peak = heap_in_use() - base;
        if (it.kind != STORE_MANIFEST_CHUNKS)
            break;
        batches++;
        for (size_t x = 0; x < it.chunks.n; x++, j++) {
            uint8_t id[32];
            chunk_id(7, j, id);
            assert_memory_equal(it.chunks.ids + 32 * x, id, 32);
        }
    }
    assert_int_equal(j, n);
    assert_int_equal(batches, (n + 1023) / 1024);
    assert_int_equal(it.kind, STORE_MANIFEST_FILE_END);
    assert_int_equal(it.file_end.nchunks, n);
    assert_int_equal(it.file_end.size, n * 8192);
    OK_E(store_manifest_next(r, &it, E));
    assert_int_equal(it.kind, STORE_MANIFEST_END);
    assert_int_equal(it.end.nfiles, 1);
    assert_int_equal(it.end.nchunks, n);
    store_manifest_close(&r);
    print_message("reader: %zu bytes of heap at most for a %lld-byte manifest\n", peak,
                  (long long)st.st_size);
    assert_true(peak < HEAP_BOUND);
}

static void test_meta(void **state)
{
    fixture_t *f = *state;
    size_t big = (size_t)1 << 20;
    uint8_t *v = malloc(big);
    assert_non_null(v);
    randombytes_buf(v, big);
    char key255[256];
    memset(key255, 'k', 255);
    key255[255] = '\0';

    store_manifest_writer_t *w = NULL;
    OK_E(store_manifest_create(f->path, "m", 1, 1 << 20, KEY_A, f->key_a, &w, E));
    OK_E(store_manifest_meta(w, "empty", NULL, 0, E));
    OK_E(store_manifest_meta(w, "backup_manifest", v, big, E));
    store_manifest_file_t fi = {"PG_VERSION", 0100600, 0};
    OK_E(store_manifest_file_begin(w, &fi, E));
    OK_E(store_manifest_file_end(w, v, 3, E));
    OK_E(store_manifest_meta(w, key255, "x", 1, E));

    /* refusals leave the writer usable */
    bq_errbuf_t e = {{0}};
    char key256[257];
    memset(key256, 'k', 256);
    key256[256] = '\0';
    assert_int_equal(store_manifest_meta(w, key256, "x", 1, &e), BQ_E_INVAL);
    assert_int_equal(store_manifest_meta(w, "", "x", 1, &e), BQ_E_INVAL);
    assert_int_equal(store_manifest_meta(w, "huge", v, STORE_MANIFEST_VALUE_MAX + 1, &e),
                     BQ_E_TOOBIG);
    char want[512];
    snprintf(want, sizeof want,
             "could not add meta huge to manifest %s: value of 67108865 bytes is above 64 MiB",
             f->path);
    assert_string_equal(e.msg, want);
    OK_E(store_manifest_commit(&w, E));

    keyring_t k = {f, 0};
    store_manifest_reader_t *r = NULL;
    OK_E(store_manifest_open(f->path, lookup, &k, &r, E));
    store_manifest_item_t it;
    OK_E(store_manifest_next(r, &it, E));
    assert_int_equal(it.kind, STORE_MANIFEST_META);
    assert_string_equal(it.meta.key, "empty");
    assert_int_equal(it.meta.len, 0);
    assert_non_null(it.meta.value);
    OK_E(store_manifest_next(r, &it, E));
    assert_int_equal(it.kind, STORE_MANIFEST_META);
    assert_string_equal(it.meta.key, "backup_manifest");
    assert_int_equal(it.meta.len, big);
    assert_memory_equal(it.meta.value, v, big);
    OK_E(store_manifest_next(r, &it, E));
    assert_int_equal(it.kind, STORE_MANIFEST_FILE);
    OK_E(store_manifest_next(r, &it, E));
    assert_int_equal(it.kind, STORE_MANIFEST_FILE_END);
    assert_int_equal(it.file_end.size, 3);
    assert_memory_equal(it.file_end.sha256, v, 32);
    OK_E(store_manifest_next(r, &it, E));
    assert_int_equal(it.kind, STORE_MANIFEST_META);
    assert_string_equal(it.meta.key, key255);
    assert_memory_equal(it.meta.value, "x", 1);
    OK_E(store_manifest_next(r, &it, E));
    assert_int_equal(it.kind, STORE_MANIFEST_END);
    assert_int_equal(it.end.nfiles, 1);
    store_manifest_close(&r);
    free(v);
}

static void test_temp_file_and_abort(void **state)
{
    fixture_t *f = *state;
    char tmp[256];
    tmp_name(f, tmp, sizeof tmp);
    bq_errbuf_t e = {{0}};

    /* abort: nothing under either name */
    store_manifest_writer_t *w = NULL;
    OK_E(store_manifest_create(f->path, "b1", 1, 4096, KEY_A, f->key_a, &w, E));
    assert_true(exists(tmp));
    assert_false(exists(f->path));
    store_manifest_file_t fi = {"a", 0100600, 0};
    OK_E(store_manifest_file_begin(w, &fi, E));
    assert_false(exists(f->path));
    store_manifest_abort(&w);
    assert_null(w);
    store_manifest_abort(&w);
    store_manifest_abort(NULL);
    assert_false(exists(tmp));
    assert_false(exists(f->path));

    /* commit with a file still open: refused, and nothing left behind */
    OK_E(store_manifest_create(f->path, "b1", 1, 4096, KEY_A, f->key_a, &w, E));
    OK_E(store_manifest_file_begin(w, &fi, E));
    assert_int_equal(store_manifest_commit(&w, &e), BQ_E_STATE);
    assert_null(w);
    assert_false(exists(tmp));
    assert_false(exists(f->path));

    /* commit: the final name appears, the temp name is gone (mode 0600) */
    OK_E(store_manifest_create(f->path, "b1", 1, 4096, KEY_A, f->key_a, &w, E));
    assert_false(exists(f->path));
    OK_E(store_manifest_commit(&w, E));
    assert_false(exists(tmp));
    struct stat st;
    assert_int_equal(stat(f->path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);

    /* a manifest is written once: a second one under the same name is refused */
    assert_int_equal(store_manifest_create(f->path, "b1", 1, 4096, KEY_A, f->key_a, &w, &e),
                     BQ_E_EXISTS);
    assert_null(w);
    char want[512];
    snprintf(want, sizeof want, "could not create manifest %s: file exists", f->path);
    assert_string_equal(e.msg, want);
    /* ... also when it appears while the second one is being written */
    char other[160];
    snprintf(other, sizeof other, "%s/b2.manifest", f->dir);
    OK_E(store_manifest_create(other, "b2", 1, 4096, KEY_A, f->key_a, &w, E));
    assert_int_equal(link(f->path, other), 0);
    assert_int_equal(store_manifest_commit(&w, &e), BQ_E_EXISTS);
    snprintf(want, sizeof want, "could not commit manifest %s: file exists", other);
    assert_string_equal(e.msg, want);
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", other, (long)getpid());
    assert_false(exists(tmp));
    keyring_t k = {f, 0};
    OK_E(read_sealed(other, &k, E)); /* the one that was there is untouched */
}

static void test_writer_refusals(void **state)
{
    fixture_t *f = *state;
    bq_errbuf_t e = {{0}};
    store_manifest_writer_t *w = NULL;
    static const char *bad_ids[] = {"", ".hidden", "a/b", "a b", "..",
                                    "01234567890123456789012345678901234567890123456789012345678901234"};
    for (size_t i = 0; i < sizeof bad_ids / sizeof bad_ids[0]; i++) {
        assert_int_equal(store_manifest_create(f->path, bad_ids[i], 1, 4096, KEY_A, f->key_a, &w, &e),
                         BQ_E_INVAL);
        assert_null(w);
    }
    assert_int_equal(store_manifest_create(f->path, "b1", 1, 0, KEY_A, f->key_a, &w, &e),
                     BQ_E_INVAL);
    assert_int_equal(store_manifest_create(f->path, "b1", 1, (16u << 20) + 1, KEY_A, f->key_a, &w,
                                           &e),
                     BQ_E_INVAL);
    char nodir[160];
    snprintf(nodir, sizeof nodir, "%s/missing/b1.manifest", f->dir);
    assert_int_equal(store_manifest_create(nodir, "b1", 1, 4096, KEY_A, f->key_a, &w, &e),
                     BQ_E_IO);
    assert_false(exists(f->path));

    OK_E(store_manifest_create(f->path, "b1", 1, 4096, KEY_A, f->key_a, &w, E));
    uint8_t id[32] = {0}, sha[32] = {0};
    assert_int_equal(store_manifest_file_chunk(w, id, &e), BQ_E_STATE);
    assert_int_equal(store_manifest_file_end(w, sha, 0, &e), BQ_E_STATE);

    char longp[4097];
    memset(longp, 'p', 4096);
    longp[4096] = '\0';
    static const struct {
        const char *path, *why;
    } bad_paths[] = {
        {"", "is empty"},
        {"/etc/passwd", "is absolute"},
        {"base/../../etc/passwd", "has a '..' component"},
        {"..", "has a '..' component"},
        {"a/..", "has a '..' component"},
        {"./a", "has a '.' component"},
        {"a//b", "has an empty component"},
        {"a/", "has an empty component"},
        {NULL, "is longer than 4095 bytes"},
    };
    for (size_t i = 0; i < sizeof bad_paths / sizeof bad_paths[0]; i++) {
        store_manifest_file_t fi = {bad_paths[i].path ? bad_paths[i].path : longp, 0100600, 0};
        assert_int_equal(store_manifest_file_begin(w, &fi, &e), BQ_E_INVAL);
        assert_non_null(strstr(e.msg, bad_paths[i].why));
    }
    assert_string_equal(e.msg + strlen(e.msg) - strlen("...\" is longer than 4095 bytes"),
                        "...\" is longer than 4095 bytes");
    longp[4095] = '\0'; /* 4095 bytes is fine */
    store_manifest_file_t fi = {longp, 0100600, 0};
    OK_E(store_manifest_file_begin(w, &fi, E));
    assert_int_equal(store_manifest_file_begin(w, &fi, &e), BQ_E_STATE);
    assert_int_equal(store_manifest_meta(w, "k", "v", 1, &e), BQ_E_STATE);
    OK_E(store_manifest_file_chunk(w, id, E));
    OK_E(store_manifest_file_end(w, sha, 1, E));
    store_manifest_file_t dots = {"..a/b..c/.d/...", 040700, 0}; /* only whole '.'/'..' are bad */
    OK_E(store_manifest_file_begin(w, &dots, E));
    OK_E(store_manifest_file_end(w, sha, 0, E));
    OK_E(store_manifest_commit(&w, E));

    keyring_t k = {f, 0};
    store_manifest_reader_t *r = NULL;
    OK_E(store_manifest_open(f->path, lookup, &k, &r, E));
    store_manifest_item_t it;
    OK_E(store_manifest_next(r, &it, E));
    assert_int_equal(it.kind, STORE_MANIFEST_FILE);
    assert_int_equal(strlen(it.file.path), 4095);
    uint64_t n;
    OK_E(drain(r, &n, E));
    assert_int_equal(n, 5); /* CHUNKS, FILE_END, FILE, FILE_END, END */
    store_manifest_close(&r);
}

/* A full disk mid-write (RLIMIT_FSIZE stands in for ENOSPC): the call fails with BQ_E_IO and
 * the reason, every later call is refused, and nothing appears under the final name. */
static void test_write_failure(void **state)
{
    fixture_t *f = *state;
    char tmp[256];
    tmp_name(f, tmp, sizeof tmp);
    bq_errbuf_t e = {{0}};
    store_manifest_writer_t *w = NULL;
    OK_E(store_manifest_create(f->path, "b1", 1, 4096, KEY_A, f->key_a, &w, E));
    store_manifest_file_t fi = {"base/1/1", 0100600, 0};
    OK_E(store_manifest_file_begin(w, &fi, E));

    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = 100000;
    void (*oldsig)(int) = signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    int rc = 0;
    uint8_t id[32] = {1};
    for (int j = 0; j < 10000 && rc == 0; j++)
        rc = store_manifest_file_chunk(w, id, &e);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, oldsig);

    assert_int_equal(rc, BQ_E_IO);
    char want[512];
    snprintf(want, sizeof want, "could not write manifest %s: %s", tmp, strerror(EFBIG));
    assert_string_equal(e.msg, want);
    assert_int_equal(store_manifest_file_chunk(w, id, &e), BQ_E_STATE);
    snprintf(want, sizeof want, "manifest writer for %s failed earlier", f->path);
    assert_string_equal(e.msg, want);
    assert_int_equal(store_manifest_commit(&w, &e), BQ_E_STATE);
    assert_null(w);
    assert_false(exists(tmp));
    assert_false(exists(f->path));
}

/* ---- damaged sealed files ---- */

typedef enum { CUT, FLIP, SET_U32, APPEND, DUP_FIRST, WRONG_KEY } damage_t;

static void test_damaged_sealed(void **state)
{
    fixture_t *f = *state;
    /* 2 files, 3000 chunk ids: about 96 KiB of plaintext, so two messages: a full one at 52
     * (65557 bytes with its length) and the FINAL one at 65609. */
    store_manifest_writer_t *w = NULL;
    OK_E(store_manifest_create(f->path, "b1", 1, 4096, KEY_A, f->key_a, &w, E));
    for (int i = 0; i < 2; i++) {
        store_manifest_file_t fi = {i ? "base/2" : "base/1", 0100600, 0};
        OK_E(store_manifest_file_begin(w, &fi, E));
        for (int j = 0; j < 1500; j++) {
            uint8_t id[32];
            chunk_id((uint64_t)i, (uint64_t)j, id);
            OK_E(store_manifest_file_chunk(w, id, E));
        }
        uint8_t sha[32];
        file_sha((uint64_t)i, sha);
        OK_E(store_manifest_file_end(w, sha, 1500 * 4096, E));
    }
    OK_E(store_manifest_commit(&w, E));
    size_t len;
    uint8_t *good = read_whole(f->path, &len);
    const size_t m2 = 52 + 4 + BLOCK + ABYTES; /* 65609 */
    assert_true(len > m2 + 4 + ABYTES && len < m2 + 4 + BLOCK + ABYTES);
    const size_t last = len - m2 - 4; /* clen of the FINAL message */

    char dmg[160];
    snprintf(dmg, sizeof dmg, "%s/damaged.manifest", f->dir);
    struct {
        damage_t how;
        size_t at;
        uint32_t val;
        int rc;
        char why[200];
    } cases[] = {
        {FLIP, 0, 0x01, BQ_E_IO, "wrong magic (not a barque manifest)"},
        {FLIP, 7, 0x20, BQ_E_IO, "wrong magic (not a barque manifest)"},
        {CUT, 0, 0, BQ_E_IO, "truncated at byte 0 (inside the file header)"},
        {CUT, 5, 0, BQ_E_IO, "truncated at byte 5 (inside the file header)"},
        {CUT, 12, 0, BQ_E_IO, "truncated at byte 12 (inside the file header)"},
        {CUT, 51, 0, BQ_E_IO, "truncated at byte 51 (inside the file header)"},
        {CUT, 52, 0, BQ_E_IO, "it ends before its final block (truncated at byte 52)"},
        {CUT, 54, 0, BQ_E_IO, "truncated at byte 54 (inside the length of the block at offset 52)"},
        {CUT, 100, 0, BQ_E_IO, "truncated at byte 100 (the block at offset 52 needs 65553 bytes)"},
        {CUT, m2, 0, BQ_E_IO, ""},
        {CUT, m2 + 3, 0, BQ_E_IO, ""},
        {CUT, len - 1, 0, BQ_E_IO, ""},
        {FLIP, 30, 0x04, BQ_E_IO, "block at offset 52 failed authentication"}, /* stream header */
        {FLIP, 200, 0x80, BQ_E_IO, "block at offset 52 failed authentication"},
        {FLIP, 52 + 4 + BLOCK, 0x01, BQ_E_IO, "block at offset 52 failed authentication"}, /* tag */
        {FLIP, len - 20, 0x01, BQ_E_IO, ""},
        {FLIP, len - 1, 0x40, BQ_E_IO, ""},
        {SET_U32, 52, 0xffffffffu, BQ_E_IO, "block at offset 52 has an impossible length 4294967295"},
        {SET_U32, 52, 16, BQ_E_IO, "block at offset 52 has an impossible length 16"},
        {SET_U32, 52, BLOCK + ABYTES - 1, BQ_E_IO, "block at offset 52 failed authentication"},
        {APPEND, 1, 0, BQ_E_IO, ""},
        {APPEND, 5000, 0, BQ_E_IO, ""},
        {DUP_FIRST, 0, 0, BQ_E_IO, ""}, /* a replayed message */
        {FLIP, 12, 0x01, BQ_E_KEY, ""}, /* key check */
        {FLIP, 8, 0x01, BQ_E_KEY, ""},  /* names key 0x2b, which exists and does not open it */
        {FLIP, 8, 0x80, BQ_E_NOTFOUND, "no data key 000000aa"}, /* names a key that is absent */
        {WRONG_KEY, 0, 0, BQ_E_KEY, ""},
    };
    size_t ncases = sizeof cases / sizeof cases[0];
    for (size_t i = 0; i < ncases; i++) { /* expectations that depend on the file's length */
        if (cases[i].how == CUT && cases[i].at == m2)
            snprintf(cases[i].why, sizeof cases[i].why,
                     "it ends before its final block (truncated at byte %zu)", m2);
        if (cases[i].how == CUT && cases[i].at == m2 + 3)
            snprintf(cases[i].why, sizeof cases[i].why,
                     "truncated at byte %zu (inside the length of the block at offset %zu)", m2 + 3,
                     m2);
        if (cases[i].how == CUT && cases[i].at == len - 1)
            snprintf(cases[i].why, sizeof cases[i].why,
                     "truncated at byte %zu (the block at offset %zu needs %zu bytes)", len - 1, m2,
                     last);
        if (cases[i].how == FLIP && cases[i].at >= len - 20)
            snprintf(cases[i].why, sizeof cases[i].why,
                     "block at offset %zu failed authentication", m2);
        if (cases[i].how == APPEND)
            snprintf(cases[i].why, sizeof cases[i].why,
                     "trailing bytes after the final block (from byte %zu)", len);
        if (cases[i].how == DUP_FIRST)
            snprintf(cases[i].why, sizeof cases[i].why,
                     "block at offset %zu failed authentication", m2);
        if (cases[i].rc == BQ_E_KEY)
            snprintf(cases[i].why, sizeof cases[i].why,
                     "wrong data key for manifest %s (key %08x does not open it)", dmg,
                     cases[i].how == FLIP && cases[i].at == 8 ? KEY_B : KEY_A);
    }

    uint8_t *buf = malloc(len + 65536 + 5000);
    assert_non_null(buf);
    for (size_t i = 0; i < ncases; i++) {
        size_t n = len;
        memcpy(buf, good, len);
        keyring_t k = {f, 0};
        switch (cases[i].how) {
        case CUT:
            n = cases[i].at;
            break;
        case FLIP:
            buf[cases[i].at] ^= (uint8_t)cases[i].val;
            break;
        case SET_U32:
            le(buf + cases[i].at, cases[i].val, 4);
            break;
        case APPEND:
            memset(buf + len, 0, cases[i].at);
            n += cases[i].at;
            break;
        case DUP_FIRST: /* the first message again, in place of the second */
            memcpy(buf + m2, good + 52, m2 - 52);
            n = m2 + (m2 - 52);
            break;
        case WRONG_KEY:
            k.swap = 1;
            break;
        }
        write_whole(dmg, buf, n);
        bq_errbuf_t e = {{0}};
        int rc = read_sealed(dmg, &k, &e);
        char want[512];
        if (cases[i].rc == BQ_E_IO)
            snprintf(want, sizeof want, "manifest %s is damaged: %s", dmg, cases[i].why);
        else
            snprintf(want, sizeof want, "%s", cases[i].why);
        if (rc != cases[i].rc || strcmp(e.msg, want) != 0)
            fail_msg("case %zu (how %d at %zu): got %s \"%s\", want %s \"%s\"", i,
                     (int)cases[i].how, cases[i].at, bq_err_name(rc), e.msg,
                     bq_err_name(cases[i].rc), want);
    }
    /* the undamaged one still reads, and a missing one is BQ_E_NOTFOUND */
    keyring_t k = {f, 0};
    OK_E(read_sealed(f->path, &k, E));
    unlink(dmg);
    bq_errbuf_t e = {{0}};
    assert_int_equal(read_sealed(dmg, &k, &e), BQ_E_NOTFOUND);
    free(buf);
    free(good);
}

/* Plaintext-level damage under a valid seal (sealed here, independently of manifest.c). */
static void test_sealed_plaintext_checks(void **state)
{
    fixture_t *f = *state;
    keyring_t k = {f, 0};
    char want[512];
    bq_errbuf_t e = {{0}};

    /* a valid manifest built from the documented format opens */
    buf_t b = {0};
    b_start(&b);
    b_meta(&b, "k", 1, "v", 1);
    b_file(&b, "a", 1);
    b_chunks(&b, 2);
    b_file_end(&b, 2, 10);
    b_end(&b, 1, 2);
    seal_file(f->path, KEY_A, f->key_a, b.p, b.len, 0);
    OK_E(read_sealed(f->path, &k, E));

    /* the same plaintext with no FINAL message */
    seal_file(f->path, KEY_A, f->key_a, b.p, b.len, 1);
    assert_int_equal(read_sealed(f->path, &k, &e), BQ_E_IO);
    struct stat st;
    assert_int_equal(stat(f->path, &st), 0);
    snprintf(want, sizeof want,
             "manifest %s is damaged: it ends before its final block (truncated at byte %lld)",
             f->path, (long long)st.st_size);
    assert_string_equal(e.msg, want);

    /* bytes after END inside the final message */
    size_t end_at = b.len;
    b_put(&b, "x", 1);
    seal_file(f->path, KEY_A, f->key_a, b.p, b.len, 0);
    assert_int_equal(read_sealed(f->path, &k, &e), BQ_E_IO);
    snprintf(want, sizeof want, "manifest %s is damaged: data after the END record (at offset %zu)",
             f->path, end_at);
    assert_string_equal(e.msg, want);
    free(b.p);

    /* a HEADER naming another key than the file header */
    memset(&b, 0, sizeof b);
    b_start_id(&b, "b1", 4096, KEY_B);
    b_end(&b, 0, 0);
    seal_file(f->path, KEY_A, f->key_a, b.p, b.len, 0);
    assert_int_equal(read_sealed(f->path, &k, &e), BQ_E_IO);
    snprintf(want, sizeof want,
             "manifest %s is damaged: HEADER names data key 0000002b but the file is sealed with "
             "key 0000002a",
             f->path);
    assert_string_equal(e.msg, want);
    free(b.p);

    /* a plaintext manifest stored as is (unsealed) is refused */
    memset(&b, 0, sizeof b);
    b_start(&b);
    b_end(&b, 0, 0);
    write_whole(f->path, b.p, b.len);
    assert_int_equal(read_sealed(f->path, &k, &e), BQ_E_IO);
    snprintf(want, sizeof want, "manifest %s is damaged: wrong magic (not a barque manifest)",
             f->path);
    assert_string_equal(e.msg, want);
    free(b.p);
}

/* ---- damaged plaintext: one builder per case, with the exact message ---- */

typedef void (*build_fn)(buf_t *b, char *why, size_t cap);

static void p_valid(buf_t *b, char *why, size_t cap)
{
    b_start(b);
    b_meta(b, "empty", 5, "", 0);
    b_file(b, "a", 1);
    b_file_end(b, 0, 0);
    b_file(b, "b/c", 3);
    b_chunks(b, 1024);
    b_chunks(b, 1);
    b_file_end(b, 1025, 5);
    b_end(b, 2, 1025);
    snprintf(why, cap, "%s", "");
}

static void p_wrong_magic(buf_t *b, char *why, size_t cap)
{
    b_start(b);
    b_end(b, 0, 0);
    b->p[7] = '2';
    snprintf(why, cap, "wrong magic (not a barque manifest)");
}

static void p_empty(buf_t *b, char *why, size_t cap)
{
    b_put(b, "BQMAN", 5);
    snprintf(why, cap, "wrong magic (not a barque manifest)");
}

static void p_no_header(buf_t *b, char *why, size_t cap)
{
    b_put(b, "BQMANIF1", 8);
    b_meta(b, "k", 1, "v", 1);
    snprintf(why, cap, "first record is META, not HEADER");
}

static void p_second_header(buf_t *b, char *why, size_t cap)
{
    b_start(b);
    size_t at = b->len;
    b_start_id(b, "b1", 4096, 1);
    memmove(b->p + at, b->p + at + 8, b->len - at - 8); /* drop the second magic */
    b->len -= 8;
    b_end(b, 0, 0);
    snprintf(why, cap, "second HEADER record at offset %zu", at);
}

static void p_bad_backup_id(buf_t *b, char *why, size_t cap)
{
    b_start_id(b, "../x", 4096, KEY_A);
    b_end(b, 0, 0);
    snprintf(why, cap, "HEADER names an invalid backup id \"../x\"");
}

static void p_bad_chunk_size(buf_t *b, char *why, size_t cap)
{
    b_start_id(b, "b1", 0, KEY_A);
    b_end(b, 0, 0);
    snprintf(why, cap, "HEADER has an impossible chunk size 0");
}

static void p_unknown_type(buf_t *b, char *why, size_t cap)
{
    b_start(b);
    size_t at = b_rec(b, 9, 4);
    b_int(b, 0, 4);
    b_end(b, 0, 0);
    snprintf(why, cap, "unknown record type 9 at offset %zu", at);
}

static void p_type_zero(buf_t *b, char *why, size_t cap)
{
    b_start(b);
    size_t at = b_rec(b, 0, 0);
    b_end(b, 0, 0);
    snprintf(why, cap, "unknown record type 0 at offset %zu", at);
}

static void p_past_end(buf_t *b, char *why, size_t cap)
{
    b_start(b);
    size_t at = b_rec(b, 2, 100);
    b_int(b, 1, 2);
    b_put(b, "k", 1);
    b_put(b, "only a few", 10);
    snprintf(why, cap, "META record at offset %zu (100 bytes) runs past the end", at);
}

static void p_past_end_huge(buf_t *b, char *why, size_t cap)
{
    b_start(b);
    size_t at = b_rec(b, 2, 0x4000000u); /* 64 MiB claimed, 3 bytes there: nothing allocated */
    b_int(b, 1, 2);
    b_put(b, "k", 1);
    snprintf(why, cap, "META record at offset %zu (67108864 bytes) runs past the end", at);
}

static void p_meta_too_big(buf_t *b, char *why, size_t cap)
{
    b_start(b);
    size_t at = b_rec(b, 2, 2 + 255 + 0x4000000u + 1);
    snprintf(why, cap, "META record at offset %zu has an impossible length %u", at,
             2 + 255 + 0x4000000u + 1);
}

static void p_truncated_header(buf_t *b, char *why, size_t cap)
{
    b_start(b);
    size_t at = b->len;
    b_int(b, 3, 1);
    b_int(b, 0, 2);
    snprintf(why, cap, "truncated record header at offset %zu", at);
}

static void p_no_end(buf_t *b, char *why, size_t cap)
{
    b_start(b);
    b_file(b, "a", 1);
    b_file_end(b, 0, 0);
    snprintf(why, cap, "it ends without an END record (at offset %zu)", b->len);
}

static void p_data_after_end(buf_t *b, char *why, size_t cap)
{
    b_start(b);
    b_end(b, 0, 0);
    size_t at = b->len;
    b_end(b, 0, 0);
    snprintf(why, cap, "data after the END record (at offset %zu)", at);
}

static void p_chunks_without_file(buf_t *b, char *why, size_t cap)
{
    b_start(b);
    size_t at = b_chunks(b, 1);
    b_end(b, 0, 1);
    snprintf(why, cap, "CHUNKS record at offset %zu outside a FILE", at);
}

static void p_chunks_after_file_end(buf_t *b, char *why, size_t cap)
{
    b_start(b);
    b_file(b, "a", 1);
    b_file_end(b, 0, 0);
    size_t at = b_chunks(b, 1);
    b_end(b, 1, 1);
    snprintf(why, cap, "CHUNKS record at offset %zu outside a FILE", at);
}

static void p_chunks_empty(buf_t *b, char *why, size_t cap)
{
    b_start(b);
    b_file(b, "a", 1);
    size_t at = b_chunks(b, 0);
    snprintf(why, cap, "CHUNKS record at offset %zu has an impossible length 0", at);
}

static void p_chunks_too_many(buf_t *b, char *why, size_t cap)
{
    b_start(b);
    b_file(b, "a", 1);
    size_t at = b_chunks(b, 1025);
    snprintf(why, cap, "CHUNKS record at offset %zu has an impossible length %u", at, 1025 * 32);
}

static void p_chunks_ragged(buf_t *b, char *why, size_t cap)
{
    b_start(b);
    b_file(b, "a", 1);
    size_t at = b_rec(b, 4, 33);
    for (int i = 0; i < 33; i++)
        b_int(b, 7, 1);
    snprintf(why, cap, "CHUNKS record at offset %zu has length 33, not a multiple of 32", at);
}

static void p_file_end_without_file(buf_t *b, char *why, size_t cap)
{
    b_start(b);
    size_t at = b_file_end(b, 0, 0);
    b_end(b, 1, 0);
    snprintf(why, cap, "FILE_END record at offset %zu outside a FILE", at);
}

static void p_file_end_short(buf_t *b, char *why, size_t cap)
{
    b_start(b);
    b_file(b, "a", 1);
    size_t at = b_rec(b, 6, 47);
    for (int i = 0; i < 47; i++)
        b_int(b, 0, 1);
    snprintf(why, cap, "FILE_END record at offset %zu has an impossible length 47", at);
}

static void p_file_in_file(buf_t *b, char *why, size_t cap)
{
    b_start(b);
    b_file(b, "a", 1);
    size_t at = b_file(b, "b", 1);
    snprintf(why, cap, "FILE record at offset %zu inside file \"a\" (no FILE_END)", at);
}

static void p_meta_in_file(buf_t *b, char *why, size_t cap)
{
    b_start(b);
    b_file(b, "a/b", 3);
    size_t at = b_meta(b, "k", 1, "v", 1);
    snprintf(why, cap, "META record at offset %zu inside file \"a/b\"", at);
}

static void p_end_in_file(buf_t *b, char *why, size_t cap)
{
    b_start(b);
    b_file(b, "a", 1);
    size_t at = b_end(b, 0, 0);
    snprintf(why, cap, "END record at offset %zu inside file \"a\" (no FILE_END)", at);
}

static void p_nchunks_mismatch(buf_t *b, char *why, size_t cap)
{
    b_start(b);
    b_file(b, "a", 1);
    b_chunks(b, 2);
    b_file_end(b, 3, 0);
    b_end(b, 1, 3);
    snprintf(why, cap, "FILE_END of \"a\" says 3 chunks but 2 were listed");
}

static void p_counts_files(buf_t *b, char *why, size_t cap)
{
    b_start(b);
    b_file(b, "a", 1);
    b_file_end(b, 0, 0);
    b_end(b, 2, 0);
    snprintf(why, cap, "counts at END do not match (END says 2 files and 0 chunk refs, the "
                       "manifest lists 1 and 0)");
}

static void p_counts_chunks(buf_t *b, char *why, size_t cap)
{
    b_start(b);
    b_file(b, "a", 1);
    b_chunks(b, 5);
    b_file_end(b, 5, 0);
    b_end(b, 1, 4);
    snprintf(why, cap, "counts at END do not match (END says 1 files and 4 chunk refs, the "
                       "manifest lists 1 and 5)");
}

static void p_sha_mismatch(buf_t *b, char *why, size_t cap)
{
    b_start(b);
    b_file(b, "a", 1);
    b_file_end(b, 0, 0);
    b_end(b, 1, 0);
    b->p[b->len - 53 - 10] ^= 1; /* a byte of the FILE_END's sha256, after END was made */
    snprintf(why, cap, "sha256 at END does not match the manifest's bytes");
}

static void p_sha_zero(buf_t *b, char *why, size_t cap)
{
    static const uint8_t zero[32];
    b_start(b);
    b_end_sha(b, 0, 0, zero);
    snprintf(why, cap, "sha256 at END does not match the manifest's bytes");
}

static void p_absolute(buf_t *b, char *why, size_t cap)
{
    b_start(b);
    size_t at = b_file(b, "/etc/passwd", 11);
    snprintf(why, cap, "FILE record at offset %zu: path \"/etc/passwd\" is absolute", at);
}

static void p_dotdot(buf_t *b, char *why, size_t cap)
{
    b_start(b);
    size_t at = b_file(b, "base/../../../etc/cron.d/x", 26);
    snprintf(why, cap, "FILE record at offset %zu: path \"base/../../../etc/cron.d/x\" has a '..' "
                       "component", at);
}

static void p_nul(buf_t *b, char *why, size_t cap)
{
    b_start(b);
    size_t at = b_file(b, "a\0/b", 4);
    snprintf(why, cap, "FILE record at offset %zu: path \"a\\x00/b\" contains a NUL byte", at);
}

static void p_too_long(buf_t *b, char *why, size_t cap)
{
    char p[4096];
    memset(p, 'x', sizeof p);
    b_start(b);
    size_t at = b_file(b, p, sizeof p);
    snprintf(why, cap, "FILE record at offset %zu: path \"%.96s...\" is longer than 4095 bytes", at,
             p);
}

static void p_empty_path(buf_t *b, char *why, size_t cap)
{
    b_start(b);
    size_t at = b_file(b, "", 0);
    snprintf(why, cap, "FILE record at offset %zu: path \"\" is empty", at);
}

static void p_empty_component(buf_t *b, char *why, size_t cap)
{
    b_start(b);
    size_t at = b_file(b, "a//b", 4);
    snprintf(why, cap, "FILE record at offset %zu: path \"a//b\" has an empty component", at);
}

static void p_path_len_mismatch(buf_t *b, char *why, size_t cap)
{
    b_start(b);
    size_t at = b_file(b, "abc", 3);
    b->p[at + 5] = 2; /* path_len 2 in a record sized for 3 */
    snprintf(why, cap, "FILE record at offset %zu has length 17 for a path of 2 bytes", at);
}

static void p_meta_key_nul(buf_t *b, char *why, size_t cap)
{
    b_start(b);
    size_t at = b_meta(b, "a\0b", 3, "v", 1);
    snprintf(why, cap, "META record at offset %zu has a NUL byte in its key", at);
}

static void p_meta_key_long(buf_t *b, char *why, size_t cap)
{
    b_start(b);
    size_t at = b_meta(b, "k", 1, "vvvvvvvv", 8);
    b->p[at + 5] = 10; /* key_len 10 in an 11-byte payload: 2 + 10 > 11 */
    b->p[at + 6] = 0;
    snprintf(why, cap, "META record at offset %zu has a key of impossible length 10", at);
}

static void p_meta_key_empty(buf_t *b, char *why, size_t cap)
{
    b_start(b);
    size_t at = b_meta(b, "", 0, "v", 1);
    snprintf(why, cap, "META record at offset %zu has a key of impossible length 0", at);
}

static void test_damaged_plain(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        build_fn build;
    } cases[] = {
        {"valid", p_valid},
        {"wrong magic", p_wrong_magic},
        {"shorter than the magic", p_empty},
        {"no HEADER", p_no_header},
        {"second HEADER", p_second_header},
        {"bad backup id", p_bad_backup_id},
        {"chunk size 0", p_bad_chunk_size},
        {"unknown record type", p_unknown_type},
        {"record type 0", p_type_zero},
        {"record length past the end", p_past_end},
        {"64 MiB record length past the end", p_past_end_huge},
        {"META above its bound", p_meta_too_big},
        {"truncated record header", p_truncated_header},
        {"no END", p_no_end},
        {"data after END", p_data_after_end},
        {"CHUNKS without FILE", p_chunks_without_file},
        {"CHUNKS after FILE_END", p_chunks_after_file_end},
        {"CHUNKS with no id", p_chunks_empty},
        {"CHUNKS with 1025 ids", p_chunks_too_many},
        {"CHUNKS not a multiple of 32", p_chunks_ragged},
        {"FILE_END without FILE", p_file_end_without_file},
        {"FILE_END too short", p_file_end_short},
        {"FILE inside FILE", p_file_in_file},
        {"META inside FILE", p_meta_in_file},
        {"END inside FILE", p_end_in_file},
        {"FILE_END chunk count", p_nchunks_mismatch},
        {"counts mismatch at END (files)", p_counts_files},
        {"counts mismatch at END (chunks)", p_counts_chunks},
        {"sha256 mismatch", p_sha_mismatch},
        {"sha256 of zeros", p_sha_zero},
        {"absolute path", p_absolute},
        {"'..' path", p_dotdot},
        {"NUL in path", p_nul},
        {"path too long", p_too_long},
        {"empty path", p_empty_path},
        {"empty path component", p_empty_component},
        {"path length and record length disagree", p_path_len_mismatch},
        {"NUL in meta key", p_meta_key_nul},
        {"meta key past its record", p_meta_key_long},
        {"empty meta key", p_meta_key_empty},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        buf_t b = {0};
        char why[512], want[700];
        cases[i].build(&b, why, sizeof why);
        bq_errbuf_t e = {{0}};
        int rc = read_plain(&b, &e);
        if (!why[0]) {
            if (rc != 0)
                fail_msg("case \"%s\": got %s \"%s\", want success", cases[i].name,
                         bq_err_name(rc), e.msg);
        } else {
            snprintf(want, sizeof want, "manifest t is damaged: %s", why);
            if (rc != BQ_E_IO || strcmp(e.msg, want) != 0)
                fail_msg("case \"%s\": got %s \"%s\", want BQ_E_IO \"%s\"", cases[i].name,
                         bq_err_name(rc), e.msg, want);
        }
        free(b.p);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_empty, setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_file_no_chunks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_10000_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_200000_chunks_bounded_memory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_meta, setup, teardown),
        cmocka_unit_test_setup_teardown(test_temp_file_and_abort, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writer_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_sealed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sealed_plaintext_checks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_plain, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
