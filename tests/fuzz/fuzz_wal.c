/* Fuzz target: arbitrary bytes as a stored WAL file (store/wal.h). The input is written as
 * STORE/wal/db1/00000001/000000010000000000000001.partial and as STORE/wal/db1/00000001/00000001.history
 * in a temp store made once, and each is read back with store_wal_get under fixed keys (id key
 * bytes 0..31, data key 0x2a with bytes 0x80..0x9f, as fuzz_chunk). The seeds of
 * corpus/fuzz_wal/ are valid files under those keys, of both formats: BQWAL001
 * (history_none_random, partial_zstd_text: header digest = sha256 of the content) and BQWAL002
 * (v2_*, made by store_wal_put: header digest = the keyed content id; lz4, zstd, none, a piece
 * sealed as it came packed, an empty file).
 *
 * store_wal_get must never crash, read out of bounds or write past the length it returns;
 * the file exists, so it is never BQ_E_NOTFOUND; what it accepts has the length of its header
 * and the digest its magic says: "BQWAL001", the sha256 of the content; "BQWAL002", the
 * content id (store_chunk_ctx_id of the whole content); every refusal says which WAL file. */
#include "wal.h"

#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CAP ((size_t)2 << 20)

static store_chunk_ctx_t *ctx;
static uint8_t *out;
static store_datakey_t dk;
static char root[PATH_MAX];
static char dir[PATH_MAX];
static const char *names[] = {"000000010000000000000001.partial", "00000001.history"};

static void cleanup(void)
{
    char path[PATH_MAX + 64];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        unlink(path);
    }
    rmdir(dir);
    snprintf(path, sizeof path, "%s/wal/db1", root);
    rmdir(path);
    snprintf(path, sizeof path, "%s/wal", root);
    rmdir(path);
    rmdir(root);
}

static void fuzz_init(void)
{
    uint8_t idkey[STORE_KEY_BYTES];
    bq_errbuf_t e;
    for (int i = 0; i < STORE_KEY_BYTES; i++) {
        idkey[i] = (uint8_t)i;
        dk.key[i] = (uint8_t)(0x80 + i);
    }
    dk.id = 0x2a;
    const char *tmp = getenv("TMPDIR");
    snprintf(root, sizeof root, "%s/fuzz_wal.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    out = malloc(CAP + 1); /* one byte more, to catch a write past the length */
    if (!out || !mkdtemp(root) || sodium_init() < 0 || store_chunk_ctx_new(idkey, &ctx, &e) != 0)
        abort(); /* cannot fuzz at all: say so loudly */
    snprintf(dir, sizeof dir, "%s/wal", root);
    if (mkdir(dir, 0700) != 0)
        abort();
    snprintf(dir, sizeof dir, "%s/wal/db1", root);
    if (mkdir(dir, 0700) != 0)
        abort();
    snprintf(dir, sizeof dir, "%s/wal/db1/00000001", root);
    if (mkdir(dir, 0700) != 0)
        abort();
    atexit(cleanup);
}

static int lookup(void *arg, uint32_t key_id, store_datakey_t *key, bq_errbuf_t *e)
{
    (void)arg;
    if (key_id != dk.id)
        return bq_fail(e, BQ_E_NOTFOUND, "no data key %08x", (unsigned)key_id);
    *key = dk;
    return 0;
}

static void get_and_check(const char *name, const uint8_t *data, size_t size)
{
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        abort();
    size_t done = 0;
    while (done < size) {
        ssize_t w = write(fd, data + done, size - done);
        if (w <= 0)
            abort();
        done += (size_t)w;
    }
    close(fd);

    bq_errbuf_t e = {{0}};
    size_t got = (size_t)-1;
    out[CAP] = 0x5a;
    int rc = store_wal_get(root, "db1", ctx, lookup, NULL, name, out, CAP, &got, &e);
    if (out[CAP] != 0x5a)
        abort();
    if (rc == 0) {
        uint8_t sha[32];
        uint64_t raw = 0;
        if (size < STORE_WAL_HEADER_BYTES)
            abort(); /* accepted without a whole header */
        for (int i = 7; i >= 0; i--)
            raw = (raw << 8) | data[40 + i];
        if (got != raw)
            abort();
        if (memcmp(data, STORE_WAL_MAGIC_V1, 8) == 0)
            crypto_hash_sha256(sha, out, got);
        else if (memcmp(data, STORE_WAL_MAGIC, 8) == 0) {
            if (store_chunk_ctx_id(ctx, out, got, sha) != 0)
                abort();
        } else
            abort(); /* accepted under another magic */
        if (memcmp(sha, data + 8, 32) != 0)
            abort();
        return;
    }
    if (rc != BQ_E_IO && rc != BQ_E_KEY && rc != BQ_E_TOOBIG)
        abort(); /* in particular never BQ_E_NOTFOUND: the file exists */
    if (!strstr(e.msg, "WAL file"))
        abort(); /* every refusal says which WAL file */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!ctx)
        fuzz_init();
    if (size > CAP + 4096)
        return 0;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        get_and_check(names[i], data, size);
    return 0;
}
