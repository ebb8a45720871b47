/* Fuzz target: arbitrary bytes as a backup manifest (store/manifest.h).
 *
 * Mainly the plaintext record stream ("BQMANIF1" ‖ records), read with
 * store_manifest_open_plain: the same record decoder and checks as the real reader. The seeds in
 * corpus/fuzz_manifest/ are valid plaintext manifests, so mutations reach every record check.
 * What the reader accepts must be canonical: re-encoding the items it returned gives back the
 * input byte for byte, every path passes the path check, and the counts agree. What it refuses
 * is BQ_E_IO "manifest <fuzz> is damaged: ...", nothing else.
 *
 * Secondarily, an input that starts with "BQMANENC" is a sealed manifest file, read with
 * store_manifest_open under a fixed data key (id 0x2a, bytes 0x80..0x9f; the seed "sealed" is
 * valid under it): the envelope, framing and tag handling must never crash, and every refusal is
 * BQ_E_IO, BQ_E_KEY or BQ_E_NOTFOUND (another key id). */
#include "manifest.h"

#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define KEY_ID 0x2au
#define NAME "<fuzz>"

static int memfd = -1;
static char memfd_path[64];

static int lookup(void *arg, uint32_t id, uint8_t key[32], bq_errbuf_t *e)
{
    (void)arg;
    if (id != KEY_ID)
        return bq_fail(e, BQ_E_NOTFOUND, "no data key %08x", id);
    for (int i = 0; i < 32; i++)
        key[i] = (uint8_t)(0x80 + i);
    return 0;
}

/* ---- re-encoding of what the reader returned (docs/store.md, "Manifests") ---- */

typedef struct {
    uint8_t *p;
    size_t len, cap;
    int oom;
} buf_t;

static void put(buf_t *b, const void *p, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n > b->cap) {
        size_t cap = (b->len + n) * 2;
        uint8_t *q = realloc(b->p, cap);
        if (!q) {
            b->oom = 1;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->len, p, n);
    b->len += n;
}

static void put_int(buf_t *b, uint64_t v, int n)
{
    uint8_t t[8];
    for (int i = 0; i < n; i++)
        t[i] = (uint8_t)(v >> (8 * i));
    put(b, t, (size_t)n);
}

static void put_rec(buf_t *b, uint8_t type, size_t len)
{
    put_int(b, type, 1);
    put_int(b, len, 4);
}

static void fuzz_plain(const uint8_t *data, size_t size)
{
    /* A copy of exactly size bytes, so ASan sees any read past the input. */
    uint8_t *in = malloc(size ? size : 1);
    if (!in)
        return;
    if (size)
        memcpy(in, data, size);

    bq_errbuf_t e = {{0}};
    store_manifest_reader_t *r = NULL;
    buf_t out = {0};
    int rc = store_manifest_open_plain(in, size, NAME, &r, &e);
    if (rc == 0) {
        const store_manifest_header_t *h = store_manifest_header(r);
        size_t idlen = strlen(h->backup_id);
        put(&out, "BQMANIF1", 8);
        put_rec(&out, 1, 1 + idlen + 16);
        put_int(&out, idlen, 1);
        put(&out, h->backup_id, idlen);
        put_int(&out, (uint64_t)h->created_ms, 8);
        put_int(&out, h->chunk_size, 4);
        put_int(&out, h->key_id, 4);
    }
    store_manifest_item_t it;
    uint64_t nfiles = 0, nchunks = 0, file_chunks = 0;
    int in_file = 0;
    while (rc == 0) {
        rc = store_manifest_next(r, &it, &e);
        if (rc)
            break;
        switch (it.kind) {
        case STORE_MANIFEST_META: {
            size_t klen = strlen(it.meta.key);
            if (in_file || klen == 0 || klen > STORE_MANIFEST_KEY_MAX || !it.meta.value)
                abort();
            put_rec(&out, 2, 2 + klen + it.meta.len);
            put_int(&out, klen, 2);
            put(&out, it.meta.key, klen);
            put(&out, it.meta.value, it.meta.len);
            break;
        }
        case STORE_MANIFEST_FILE: {
            size_t plen = strlen(it.file.path);
            if (in_file || store_manifest_path_problem(it.file.path, plen))
                abort();
            in_file = 1;
            file_chunks = 0;
            put_rec(&out, 3, 2 + plen + 12);
            put_int(&out, plen, 2);
            put(&out, it.file.path, plen);
            put_int(&out, it.file.mode, 4);
            put_int(&out, (uint64_t)it.file.mtime, 8);
            break;
        }
        case STORE_MANIFEST_CHUNKS:
            if (!in_file || it.chunks.n == 0 || it.chunks.n > STORE_MANIFEST_CHUNKS_PER_RECORD)
                abort();
            file_chunks += it.chunks.n;
            nchunks += it.chunks.n;
            put_rec(&out, 4, 32 * it.chunks.n);
            put(&out, it.chunks.ids, 32 * it.chunks.n);
            break;
        case STORE_MANIFEST_FILE_END:
            if (!in_file || it.file_end.nchunks != file_chunks)
                abort();
            in_file = 0;
            nfiles++;
            put_rec(&out, 6, 48);
            put_int(&out, it.file_end.nchunks, 8);
            put_int(&out, it.file_end.size, 8);
            put(&out, it.file_end.sha256, 32);
            break;
        case STORE_MANIFEST_END: {
            if (in_file || it.end.nfiles != nfiles || it.end.nchunks != nchunks)
                abort();
            uint8_t sha[32];
            crypto_hash_sha256(sha, out.p, out.len);
            put_rec(&out, 5, 48);
            put_int(&out, nfiles, 8);
            put_int(&out, nchunks, 8);
            put(&out, sha, 32);
            /* accepted: the input is exactly the encoding of what was returned */
            if (!out.oom && (out.len != size || memcmp(out.p, in, size) != 0))
                abort();
            /* and END stays END */
            if (store_manifest_next(r, &it, &e) != 0 || it.kind != STORE_MANIFEST_END)
                abort();
            rc = 1;
            break;
        }
        default:
            abort();
        }
    }
    if (rc < 0) {
        if (rc != BQ_E_IO || strncmp(e.msg, "manifest " NAME " is damaged: ",
                                     strlen("manifest " NAME " is damaged: ")) != 0)
            abort(); /* damage is BQ_E_IO and says so */
        if (r) {     /* errors are sticky */
            bq_errbuf_t e2 = {{0}};
            if (store_manifest_next(r, &it, &e2) != rc || strcmp(e2.msg, e.msg) != 0)
                abort();
        }
    }
    store_manifest_close(&r);
    free(out.p);
    free(in);
}

static void fuzz_sealed(const uint8_t *data, size_t size)
{
    if (memfd < 0) {
        memfd = memfd_create("fuzz_manifest", 0);
        if (memfd < 0)
            abort(); /* cannot fuzz at all: say so loudly */
        snprintf(memfd_path, sizeof memfd_path, "/proc/self/fd/%d", memfd);
    }
    if (ftruncate(memfd, 0) != 0 || pwrite(memfd, data, size, 0) != (ssize_t)size)
        abort();
    bq_errbuf_t e = {{0}};
    store_manifest_reader_t *r = NULL;
    int rc = store_manifest_open(memfd_path, lookup, NULL, &r, &e);
    store_manifest_item_t it;
    while (rc == 0) {
        rc = store_manifest_next(r, &it, &e);
        if (rc == 0 && it.kind == STORE_MANIFEST_END)
            break;
    }
    if (rc != 0 && rc != BQ_E_IO && rc != BQ_E_KEY && rc != BQ_E_NOTFOUND)
        abort();
    if (rc == 0 && store_manifest_header(r)->key_id != KEY_ID)
        abort();
    store_manifest_close(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size >= 8 && memcmp(data, "BQMANENC", 8) == 0)
        fuzz_sealed(data, size);
    else
        fuzz_plain(data, size);
    return 0;
}
