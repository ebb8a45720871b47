/* Fuzz target: arbitrary bytes as a sealed chunk read from disk. The input is the chunk id
 * (32 bytes) followed by the sealed body; shorter inputs are a body under the zero id. Keys are
 * fixed (id key bytes 0..31, data key 0x2a with bytes 0x80..0x9f).
 *
 * Each input is opened twice:
 *  1. as it is: header and length checks, then the tag (a fuzzer cannot forge one, so only
 *     the sealed_* seeds of corpus/fuzz_chunk/, valid chunks under those keys, open);
 *  2. re-sealed: comp, raw_len and the AEAD plaintext (the bytes after the 9-byte header)
 *     come from the input and the tag is made here, as a writer holding the data key could
 *     (a damaged writer, a hostile peer store): the decompressors, the length checks and the
 *     re-hash see hostile data. The plain_* seeds hold a real compressed payload there.
 * A body whose comp byte is 3 (a delta) is re-sealed with the 32 bytes after the header as
 * its base id, and every body is also opened as a delta against a fixed 64 KiB base (the
 * delta_* seeds: a zstd frame made against that base).
 * store_chunk_open must never crash, read out of bounds or write past raw_len; what it accepts
 * must agree with the header and hash to the id; every refusal names the chunk. */
#include "chunk.h"

#include <sodium.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static store_chunk_ctx_t *ctx;
static uint8_t *out;
static store_datakey_t dk;
static uint8_t *fbase; /* FBASE bytes: the base every body is also opened against */
#define FBASE 65536

static void fuzz_init(void)
{
    uint8_t idkey[STORE_KEY_BYTES];
    bq_errbuf_t e;
    for (int i = 0; i < STORE_KEY_BYTES; i++) {
        idkey[i] = (uint8_t)i;
        dk.key[i] = (uint8_t)(0x80 + i);
    }
    dk.id = 0x2a;
    /* one byte more than any chunk, to catch a write past raw_len */
    out = malloc(STORE_CHUNK_RAW_MAX + 1);
    fbase = malloc(FBASE);
    if (fbase)
        for (size_t i = 0; i < FBASE; i++)
            fbase[i] = (uint8_t)("barque fuzz base page "[i % 22] + (i >> 13));
    if (!out || !fbase || sodium_init() < 0 || store_chunk_ctx_new(idkey, &ctx, &e) != 0)
        abort(); /* cannot fuzz at all: say so loudly */
}

/* Open body (exactly size bytes) and check what came out. */
static void open_and_check(const uint8_t *id, const uint8_t *body, size_t size)
{
    bq_errbuf_t e;
    store_chunk_head_t h;
    int head_rc = store_chunk_head(id, body, size, &h, "in fuzz input", &e);

    size_t got = 0;
    out[STORE_CHUNK_RAW_MAX] = 0x5a;
    int rc = store_chunk_open(ctx, id, &dk, body, size, out, STORE_CHUNK_RAW_MAX, &got,
                              "in fuzz input", &e);
    if (out[STORE_CHUNK_RAW_MAX] != 0x5a)
        abort();
    if (rc == 0) {
        /* accepted: the header was valid, and the plaintext is what the id names */
        uint8_t check[STORE_CHUNK_ID_BYTES];
        if (head_rc != 0 || got != h.raw_len || h.key_id != dk.id ||
            store_chunk_ctx_id(ctx, out, got, check) != 0 || memcmp(check, id, sizeof check) != 0)
            abort();
    } else if (rc != BQ_E_IO && rc != BQ_E_KEY) {
        abort(); /* damage is BQ_E_IO, another data key BQ_E_KEY; nothing else */
    }
    if (rc != 0 && (!e.msg[0] || strstr(e.msg, "chunk ") != e.msg))
        abort(); /* every refusal names the chunk */

    /* the same body as a delta against fbase (a plain body ignores the base) */
    out[STORE_CHUNK_RAW_MAX] = 0x5a;
    rc = store_chunk_open_delta(ctx, id, &dk, body, size, fbase, FBASE, out,
                                STORE_CHUNK_RAW_MAX, &got, "in fuzz input", &e);
    if (out[STORE_CHUNK_RAW_MAX] != 0x5a)
        abort();
    if (rc == 0) {
        uint8_t check[STORE_CHUNK_ID_BYTES];
        if (head_rc != 0 || got != h.raw_len || h.key_id != dk.id ||
            store_chunk_ctx_id(ctx, out, got, check) != 0 || memcmp(check, id, sizeof check) != 0)
            abort();
    } else if (rc != BQ_E_IO && rc != BQ_E_KEY) {
        abort();
    }
    if (rc != 0 && (!e.msg[0] || strstr(e.msg, "chunk ") != e.msg))
        abort();
}

static void open_resealed(const uint8_t *id, const uint8_t *data, size_t size)
{
    int delta = size >= 9 + STORE_CHUNK_ID_BYTES && data[0] == STORE_COMP_ZSTD_DELTA;
    size_t hin = delta ? 9 + STORE_CHUNK_ID_BYTES : 9; /* header bytes taken from the input */
    if (size < hin)
        return;
    size_t hout = delta ? STORE_CHUNK_DELTA_HEADER_BYTES : STORE_CHUNK_HEADER_BYTES;
    size_t plen = size - hin;
    uint8_t *body = malloc(hout + plen + STORE_CHUNK_TAG_BYTES);
    if (!body)
        return;
    memcpy(body, data, 9); /* comp, key_id, raw_len as given */
    memset(body + 9, 0, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
    uint8_t ad[2 * STORE_CHUNK_ID_BYTES + 4];
    memcpy(ad, id, STORE_CHUNK_ID_BYTES);
    memcpy(ad + STORE_CHUNK_ID_BYTES, data + 1, 4); /* the key id, little-endian as stored */
    if (delta) { /* the base id, in the clear and in the associated data */
        memcpy(body + STORE_CHUNK_HEADER_BYTES, data + 9, STORE_CHUNK_ID_BYTES);
        memcpy(ad + STORE_CHUNK_ID_BYTES + 4, data + 9, STORE_CHUNK_ID_BYTES);
    }
    unsigned long long clen = 0;
    crypto_aead_xchacha20poly1305_ietf_encrypt(body + hout, &clen, data + hin, plen, ad,
                                               delta ? sizeof ad : STORE_CHUNK_ID_BYTES + 4, NULL,
                                               body + 9, dk.key);
    open_and_check(id, body, hout + (size_t)clen);
    free(body);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!ctx)
        fuzz_init();
    static const uint8_t zero_id[STORE_CHUNK_ID_BYTES];
    const uint8_t *id = zero_id;
    if (size >= STORE_CHUNK_ID_BYTES) {
        id = data;
        data += STORE_CHUNK_ID_BYTES;
        size -= STORE_CHUNK_ID_BYTES;
    }
    if (size > STORE_CHUNK_RAW_MAX + STORE_CHUNK_OVERHEAD)
        return 0;
    /* A copy of exactly size bytes, so ASan sees any read past the body. */
    uint8_t *body = malloc(size ? size : 1);
    if (!body)
        return 0;
    if (size)
        memcpy(body, data, size);
    open_and_check(id, body, size);
    open_resealed(id, body, size);
    free(body);
    return 0;
}
