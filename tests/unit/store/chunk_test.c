/* Chunk ids and sealed chunk bodies (store/chunk.h). */
#include "chunk.h"

#include <lz4.h>
#include <setjmp.h>
#include <sodium.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include <cmocka.h>

typedef struct {
    uint8_t idkey[STORE_KEY_BYTES];
    store_datakey_t dk;
    store_chunk_ctx_t *ctx;
    uint8_t *data;  /* 1 MiB + 1 */
    uint8_t *body;  /* its seal bound */
    uint8_t *out;   /* STORE_CHUNK_RAW_MAX + 1 */
} fixture_t;

#define BIG ((size_t)1 << 20)

static uint64_t rng_state = 0x853c49e6748fea9bULL;
static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* Compressible: text-like rows with some variation. */
static void fill_text(uint8_t *p, size_t len)
{
    static const char row[] = "| 1234 | 1 | 0 |                                                 |\n";
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)row[i % (sizeof row - 1)];
    for (size_t i = 0; i + 8 < len; i += 97)
        p[i] = (uint8_t)('0' + rng() % 10);
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
    randombytes_buf(f->idkey, sizeof f->idkey);
    f->dk.id = 0x2a;
    randombytes_buf(f->dk.key, sizeof f->dk.key);
    bq_errbuf_t e = {{0}};
    if (store_chunk_ctx_new(f->idkey, &f->ctx, &e) != 0)
        return -1;
    f->data = malloc(BIG + 1);
    f->body = malloc(store_chunk_seal_bound(BIG + 1));
    f->out = malloc(STORE_CHUNK_RAW_MAX + 1);
    if (!f->data || !f->body || !f->out)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    store_chunk_ctx_destroy(&f->ctx);
    assert_null(f->ctx);
    store_chunk_ctx_destroy(&f->ctx);
    store_chunk_ctx_destroy(NULL);
    free(f->data);
    free(f->body);
    free(f->out);
    free(f);
    return 0;
}

/* Seal data[0..len) with its id; returns the body length. */
static size_t seal(fixture_t *f, store_comp_t comp, int level, size_t len, uint8_t id[32])
{
    bq_errbuf_t e = {{0}};
    size_t blen = 0;
    assert_int_equal(store_chunk_ctx_id(f->ctx, f->data, len, id), 0);
    if (store_chunk_seal(f->ctx, id, &f->dk, comp, level, f->data, len, f->body,
                         store_chunk_seal_bound(len), &blen, &e) != 0)
        fail_msg("seal of %zu bytes failed: %s", len, e.msg);
    assert_true(blen <= store_chunk_seal_bound(len));
    return blen;
}

static void test_id_is_hmac_sha256(void **state)
{
    fixture_t *f = *state;
    static const size_t lens[] = {0, 1, 55, 56, 63, 64, 65, 8192, 65536 + 3, BIG};
    fill_random(f->data, BIG);
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        uint8_t a[32], b[32], ref[crypto_auth_hmacsha256_BYTES];
        assert_int_equal(store_chunk_id(f->idkey, f->data, lens[i], a), 0);
        assert_int_equal(store_chunk_ctx_id(f->ctx, f->data, lens[i], b), 0);
        crypto_auth_hmacsha256(ref, f->data, lens[i], f->idkey); /* libsodium's own HMAC */
        assert_memory_equal(a, ref, 32);
        assert_memory_equal(b, ref, 32);
    }
    /* A known answer, from another tool: printf abc | openssl dgst -sha256 -mac HMAC
     *     -macopt hexkey:000102...1f */
    uint8_t key[32], a[32], want[32];
    for (int i = 0; i < 32; i++)
        key[i] = (uint8_t)i;
    assert_int_equal(
        store_id_parse("f0133729c4163dede81e21cd47839256da58171238c8a0d874397c73b14e1e47", want), 0);
    assert_int_equal(store_chunk_id(key, "abc", 3, a), 0);
    assert_memory_equal(a, want, 32);
    store_chunk_ctx_t *kctx = NULL;
    bq_errbuf_t e = {{0}};
    assert_int_equal(store_chunk_ctx_new(key, &kctx, &e), 0);
    assert_int_equal(store_chunk_ctx_id(kctx, "abc", 3, a), 0);
    assert_memory_equal(a, want, 32);
    store_chunk_ctx_destroy(&kctx);
    assert_int_equal(store_chunk_id(f->idkey, NULL, 0, a), 0);
}

static void test_dedup_property(void **state)
{
    fixture_t *f = *state;
    fill_text(f->data, 8192);
    uint8_t a[32], b[32], c[32], d[32];
    assert_int_equal(store_chunk_ctx_id(f->ctx, f->data, 8192, a), 0);
    assert_int_equal(store_chunk_ctx_id(f->ctx, f->data, 8192, b), 0);
    assert_memory_equal(a, b, 32); /* same plaintext, same id */

    uint8_t other[STORE_KEY_BYTES];
    memcpy(other, f->idkey, sizeof other);
    other[31] ^= 0x80;
    assert_int_equal(store_chunk_id(other, f->data, 8192, c), 0);
    assert_memory_not_equal(a, c, 32); /* another id key, another id */

    f->data[4000] ^= 1;
    assert_int_equal(store_chunk_ctx_id(f->ctx, f->data, 8192, d), 0);
    assert_memory_not_equal(a, d, 32); /* one bit of content, another id */

    /* Two seals of the same chunk differ (random nonce) but both open. */
    f->data[4000] ^= 1;
    uint8_t id[32];
    size_t n1 = seal(f, STORE_COMP_ZSTD, 1, 8192, id);
    uint8_t *first = malloc(n1);
    assert_non_null(first);
    memcpy(first, f->body, n1);
    size_t n2 = seal(f, STORE_COMP_ZSTD, 1, 8192, id);
    assert_int_equal(n1, n2);
    assert_memory_not_equal(first, f->body, n1);
    size_t got = 0;
    bq_errbuf_t e = {{0}};
    assert_int_equal(store_chunk_open(f->ctx, id, &f->dk, first, n1, f->out, BIG, &got, NULL, &e), 0);
    assert_int_equal(got, 8192);
    free(first);
}

static void test_round_trip(void **state)
{
    fixture_t *f = *state;
    static const size_t sizes[] = {0, 1, 2, 8192, 65536, BIG};
    static const struct {
        store_comp_t comp;
        int level;
    } comps[] = {
        {STORE_COMP_NONE, 0}, {STORE_COMP_ZSTD, 1}, {STORE_COMP_ZSTD, 0}, {STORE_COMP_ZSTD, 19},
        {STORE_COMP_ZSTD, -5}, {STORE_COMP_LZ4, 0}, {STORE_COMP_LZ4, 8},
    };
    for (int kind = 0; kind < 2; kind++) {
        for (size_t c = 0; c < sizeof comps / sizeof comps[0]; c++) {
            for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
                size_t len = sizes[s];
                if (comps[c].level == 19 && len > 65536)
                    continue; /* slow and adds nothing */
                if (kind == 0)
                    fill_text(f->data, len);
                else
                    fill_random(f->data, len);
                uint8_t id[32];
                size_t blen = seal(f, comps[c].comp, comps[c].level, len, id);

                store_chunk_head_t h;
                bq_errbuf_t e = {{0}};
                assert_int_equal(store_chunk_head(id, f->body, blen, &h, NULL, &e), 0);
                assert_int_equal(h.key_id, 0x2a);
                assert_int_equal(h.raw_len, len);
                assert_int_equal(f->body[0], (uint8_t)h.comp);
                if (kind == 0 && len >= 8192) {
                    /* compressible: compressed with what was asked, and smaller */
                    assert_int_equal(h.comp, comps[c].comp);
                    if (comps[c].comp != STORE_COMP_NONE)
                        assert_true(blen < len / 4);
                }
                if (kind == 1 || len <= 1 || comps[c].comp == STORE_COMP_NONE) {
                    /* incompressible, tiny, or none: stored as none, exactly len + 49 */
                    assert_int_equal(h.comp, STORE_COMP_NONE);
                    assert_int_equal(blen, len + STORE_CHUNK_OVERHEAD);
                }
                /* body layout: key_id and raw_len little-endian */
                assert_int_equal(f->body[1], 0x2a);
                assert_int_equal(f->body[2] | f->body[3] | f->body[4], 0);
                assert_int_equal((uint32_t)f->body[5] | ((uint32_t)f->body[6] << 8) |
                                     ((uint32_t)f->body[7] << 16) | ((uint32_t)f->body[8] << 24),
                                 len);

                memset(f->out, 0xee, len + 1);
                size_t got = 99;
                if (store_chunk_open(f->ctx, id, &f->dk, f->body, blen, f->out, BIG + 1, &got,
                                     NULL, &e) != 0)
                    fail_msg("open of %s/%d %zu bytes (kind %d) failed: %s",
                             store_comp_name(comps[c].comp), comps[c].level, len, kind, e.msg);
                assert_int_equal(got, len);
                if (len)
                    assert_memory_equal(f->out, f->data, len);
                assert_int_equal(f->out[len], 0xee); /* nothing written past raw_len */
            }
        }
    }
    /* Empty chunk into no buffer at all. */
    uint8_t id[32];
    size_t blen = seal(f, STORE_COMP_ZSTD, 1, 0, id);
    size_t got = 99;
    bq_errbuf_t e = {{0}};
    assert_int_equal(store_chunk_open(f->ctx, id, &f->dk, f->body, blen, NULL, 0, &got, NULL, &e), 0);
    assert_int_equal(got, 0);
}

static void test_wrong_data_key(void **state)
{
    fixture_t *f = *state;
    fill_text(f->data, 65536);
    uint8_t id[32];
    char hex[STORE_CHUNK_ID_HEX], want[600];
    size_t blen = seal(f, STORE_COMP_ZSTD, 1, 65536, id);
    store_id_hex(id, hex);
    bq_errbuf_t e = {{0}};
    size_t got = 0;

    /* Same key id, other key bytes: the tag does not verify. */
    store_datakey_t other = f->dk;
    other.key[0] ^= 1;
    assert_int_equal(store_chunk_open(f->ctx, id, &other, f->body, blen, f->out, BIG, &got,
                                      "in pack 00000000000000a1 at offset 4096", &e),
                     BQ_E_IO);
    snprintf(want, sizeof want,
             "chunk %s in pack 00000000000000a1 at offset 4096 is damaged (authentication failed "
             "with data key 0000002a)",
             hex);
    assert_string_equal(e.msg, want);

    /* Another key id: refused before decrypting. */
    other = f->dk;
    other.id = 0x2b;
    assert_int_equal(store_chunk_open(f->ctx, id, &other, f->body, blen, f->out, BIG, &got, NULL, &e),
                     BQ_E_KEY);
    snprintf(want, sizeof want, "chunk %s is sealed with data key 0000002a, not 0000002b", hex);
    assert_string_equal(e.msg, want);

    /* Another id key: opens (the tag binds the id given) but the content does not hash to it. */
    uint8_t other_idkey[32];
    memcpy(other_idkey, f->idkey, 32);
    other_idkey[0] ^= 1;
    store_chunk_ctx_t *octx = NULL;
    assert_int_equal(store_chunk_ctx_new(other_idkey, &octx, &e), 0);
    assert_int_equal(store_chunk_open(octx, id, &f->dk, f->body, blen, f->out, BIG, &got, NULL, &e),
                     BQ_E_IO);
    assert_non_null(strstr(e.msg, hex));
    assert_non_null(strstr(e.msg, "its content hashes to"));
    store_chunk_ctx_destroy(&octx);
}

/* Every single bit flipped, and every truncation, is an error naming the chunk. The buffer
 * takes any raw_len a flipped header may claim, so each flip reaches the checks of the body. */
static void check_all_damage(fixture_t *f, const uint8_t id[32], size_t blen)
{
    char hex[STORE_CHUNK_ID_HEX];
    store_id_hex(id, hex);
    uint8_t *bad = malloc(blen);
    assert_non_null(bad);
    bq_errbuf_t e = {{0}};
    size_t got = 0;
    for (size_t bit = 0; bit < blen * 8; bit++) {
        memcpy(bad, f->body, blen);
        bad[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        memset(&e, 0, sizeof e);
        int rc = store_chunk_open(f->ctx, id, &f->dk, bad, blen, f->out, STORE_CHUNK_RAW_MAX, &got, NULL, &e);
        if (rc == 0 || !strstr(e.msg, hex))
            fail_msg("flipped bit %zu of %zu-byte body: got %s \"%s\"", bit, blen,
                     bq_err_name(rc), e.msg);
        /* the key id field names another key; everything else is damage */
        if (bit / 8 >= 1 && bit / 8 < 5)
            assert_int_equal(rc, BQ_E_KEY);
        else
            assert_int_equal(rc, BQ_E_IO);
    }
    for (size_t n = 0; n < blen; n++) {
        memset(&e, 0, sizeof e);
        int rc = store_chunk_open(f->ctx, id, &f->dk, f->body, n, f->out, STORE_CHUNK_RAW_MAX, &got, NULL, &e);
        if (rc != BQ_E_IO || !strstr(e.msg, hex))
            fail_msg("body truncated to %zu of %zu bytes: got %s \"%s\"", n, blen,
                     bq_err_name(rc), e.msg);
    }
    /* One byte too many. */
    memcpy(bad, f->body, blen);
    uint8_t *longer = malloc(blen + 1);
    assert_non_null(longer);
    memcpy(longer, f->body, blen);
    longer[blen] = 0;
    assert_int_equal(store_chunk_open(f->ctx, id, &f->dk, longer, blen + 1, f->out, STORE_CHUNK_RAW_MAX, &got, NULL, &e),
                     BQ_E_IO);
    assert_non_null(strstr(e.msg, hex));
    free(longer);
    free(bad);
    /* The intact body still opens. */
    assert_int_equal(store_chunk_open(f->ctx, id, &f->dk, f->body, blen, f->out, STORE_CHUNK_RAW_MAX, &got, NULL, &e), 0);
}

static void test_flipped_bits_and_truncation(void **state)
{
    fixture_t *f = *state;
    uint8_t id[32];
    fill_text(f->data, 8192);
    check_all_damage(f, id, seal(f, STORE_COMP_ZSTD, 1, 8192, id));
    fill_text(f->data, 8192);
    check_all_damage(f, id, seal(f, STORE_COMP_LZ4, 0, 8192, id));
    fill_random(f->data, 300);
    check_all_damage(f, id, seal(f, STORE_COMP_ZSTD, 1, 300, id));
    check_all_damage(f, id, seal(f, STORE_COMP_NONE, 0, 0, id));
}

static void test_id_mismatch(void **state)
{
    fixture_t *f = *state;
    bq_errbuf_t e = {{0}};
    fill_text(f->data, 8192);
    uint8_t id[32], wrong[32], real[32];
    size_t got = 0;
    char hex[STORE_CHUNK_ID_HEX], rhex[STORE_CHUNK_ID_HEX], want[600];

    /* Sealed under an id that is not its content's (a writer bug): the tag verifies, the
     * re-hash does not. */
    assert_int_equal(store_chunk_ctx_id(f->ctx, f->data, 8192, real), 0);
    memcpy(wrong, real, 32);
    wrong[0] ^= 0xff;
    size_t blen = 0;
    assert_int_equal(store_chunk_seal(f->ctx, wrong, &f->dk, STORE_COMP_ZSTD, 1, f->data, 8192,
                                      f->body, store_chunk_seal_bound(8192), &blen, &e),
                     0);
    assert_int_equal(store_chunk_open(f->ctx, wrong, &f->dk, f->body, blen, f->out, BIG, &got,
                                      "in pack 0000000000000001 at offset 32", &e),
                     BQ_E_IO);
    snprintf(want, sizeof want,
             "chunk %s in pack 0000000000000001 at offset 32 is damaged (its content hashes to %s)",
             store_id_hex(wrong, hex), store_id_hex(real, rhex));
    assert_string_equal(e.msg, want);

    /* A body opened under another chunk's id (index points at the wrong record): the id is
     * associated data, so the tag fails. */
    blen = seal(f, STORE_COMP_ZSTD, 1, 8192, id);
    assert_int_equal(store_chunk_open(f->ctx, wrong, &f->dk, f->body, blen, f->out, BIG, &got, NULL, &e),
                     BQ_E_IO);
    snprintf(want, sizeof want, "chunk %s is damaged (authentication failed with data key 0000002a)",
             hex);
    assert_string_equal(e.msg, want);
}

/* Hand-made headers: each malformed one with the exact error. */
static void test_bad_headers(void **state)
{
    fixture_t *f = *state;
    fill_text(f->data, 8192);
    uint8_t id[32];
    char hex[STORE_CHUNK_ID_HEX];
    size_t zlen = seal(f, STORE_COMP_ZSTD, 1, 8192, id);
    store_id_hex(id, hex);
    assert_true(zlen > 49 + 1);
    static const struct {
        uint8_t comp;
        uint32_t raw_len;
        int none_body; /* body length: raw_len + 49, else the zstd body's */
        const char *why;
    } cases[] = {
        {4, 8192, 0, "unknown compression 4"},
        {255, 8192, 0, "unknown compression 255"},
        {0, (16u << 20) + 1, 0, "raw length 16777217 is above the 16777216-byte limit"},
        {1, 0xffffffffu, 0, "raw length 4294967295 is above the 16777216-byte limit"},
        {0, 8192, 0, "sealed body of %zu bytes does not fit a none chunk of 8192 bytes"},
        {1, 10, 0, "sealed body of %zu bytes does not fit a zstd chunk of 10 bytes"},
        {2, 1, 0, "sealed body of %zu bytes does not fit a lz4 chunk of 1 bytes"},
    };
    uint8_t *bad = malloc(zlen);
    assert_non_null(bad);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memcpy(bad, f->body, zlen);
        bad[0] = cases[i].comp;
        bad[5] = (uint8_t)cases[i].raw_len;
        bad[6] = (uint8_t)(cases[i].raw_len >> 8);
        bad[7] = (uint8_t)(cases[i].raw_len >> 16);
        bad[8] = (uint8_t)(cases[i].raw_len >> 24);
        char why[200], want[600];
        snprintf(why, sizeof why, cases[i].why, zlen);
        snprintf(want, sizeof want, "chunk %s at offset 7 is damaged (%s)", hex, why);
        bq_errbuf_t e = {{0}};
        store_chunk_head_t h;
        size_t got = 0;
        int rc = store_chunk_head(id, bad, zlen, &h, "at offset 7", &e);
        if (rc != BQ_E_IO || strcmp(e.msg, want) != 0)
            fail_msg("case %zu: got %s \"%s\", want \"%s\"", i, bq_err_name(rc), e.msg, want);
        memset(&e, 0, sizeof e);
        rc = store_chunk_open(f->ctx, id, &f->dk, bad, zlen, f->out, BIG, &got, "at offset 7", &e);
        if (rc != BQ_E_IO || strcmp(e.msg, want) != 0)
            fail_msg("case %zu (open): got %s \"%s\"", i, bq_err_name(rc), e.msg);
    }
    free(bad);
    bq_errbuf_t e = {{0}};
    store_chunk_head_t h;
    assert_int_equal(store_chunk_head(id, f->body, 48, &h, NULL, &e), BQ_E_IO);
    char want[600];
    snprintf(want, sizeof want,
             "chunk %s is damaged (sealed body of 48 bytes, shorter than the 49-byte minimum)", hex);
    assert_string_equal(e.msg, want);
}

static void test_bad_arguments(void **state)
{
    fixture_t *f = *state;
    bq_errbuf_t e = {{0}};
    uint8_t id[32];
    size_t blen = 0, got = 0;
    fill_text(f->data, 8192);
    assert_int_equal(store_chunk_ctx_id(f->ctx, f->data, 8192, id), 0);
    /* output too small for the bound */
    assert_int_equal(store_chunk_seal(f->ctx, id, &f->dk, STORE_COMP_ZSTD, 1, f->data, 8192, f->body,
                                      8192 + 48, &blen, &e),
                     BQ_E_INVAL);
    /* levels */
    assert_int_equal(store_chunk_seal(f->ctx, id, &f->dk, STORE_COMP_ZSTD, 99, f->data, 8192, f->body,
                                      BIG, &blen, &e),
                     BQ_E_INVAL);
    assert_non_null(strstr(e.msg, "zstd level 99 is out of range"));
    assert_int_equal(store_chunk_seal(f->ctx, id, &f->dk, STORE_COMP_LZ4, -1, f->data, 8192, f->body,
                                      BIG, &blen, &e),
                     BQ_E_INVAL);
    assert_int_equal(store_chunk_seal(f->ctx, id, &f->dk, (store_comp_t)7, 0, f->data, 8192, f->body,
                                      BIG, &blen, &e),
                     BQ_E_INVAL);
    /* too large a chunk */
    size_t huge = STORE_CHUNK_RAW_MAX + 1;
    uint8_t *big = calloc(1, huge);
    assert_non_null(big);
    assert_int_equal(store_chunk_seal(f->ctx, id, &f->dk, STORE_COMP_NONE, 0, big, huge, big,
                                      huge, &blen, &e),
                     BQ_E_TOOBIG);
    free(big);
    /* open into a buffer smaller than the chunk */
    blen = seal(f, STORE_COMP_ZSTD, 1, 8192, id);
    assert_int_equal(store_chunk_open(f->ctx, id, &f->dk, f->body, blen, f->out, 8191, &got, NULL, &e),
                     BQ_E_TOOBIG);
    assert_non_null(strstr(e.msg, "holds 8192 bytes, more than the 8191-byte buffer"));
}

static void test_largest_chunk(void **state)
{
    fixture_t *f = *state;
    (void)f;
    size_t len = STORE_CHUNK_RAW_MAX;
    uint8_t *data = malloc(len), *body = malloc(store_chunk_seal_bound(len)), *out = malloc(len);
    assert_non_null(data);
    assert_non_null(body);
    assert_non_null(out);
    fill_text(data, len);
    bq_errbuf_t e = {{0}};
    uint8_t id[32];
    size_t blen = 0, got = 0;
    store_comp_t comps[] = {STORE_COMP_ZSTD, STORE_COMP_LZ4, STORE_COMP_NONE};
    for (size_t c = 0; c < 3; c++) {
        assert_int_equal(store_chunk_ctx_id(f->ctx, data, len, id), 0);
        assert_int_equal(store_chunk_seal(f->ctx, id, &f->dk, comps[c], 1, data, len, body,
                                          store_chunk_seal_bound(len), &blen, &e),
                         0);
        assert_int_equal(body[0], comps[c]);
        assert_int_equal(store_chunk_open(f->ctx, id, &f->dk, body, blen, out, len, &got, NULL, &e), 0);
        assert_int_equal(got, len);
        assert_memory_equal(out, data, len);
    }
    free(data);
    free(body);
    free(out);
}

static void test_hex_and_names(void **state)
{
    (void)state;
    uint8_t id[32], back[32];
    for (int i = 0; i < 32; i++)
        id[i] = (uint8_t)(i * 9 + 0xa0);
    char hex[STORE_CHUNK_ID_HEX];
    assert_ptr_equal(store_id_hex(id, hex), hex);
    assert_int_equal(strlen(hex), 64);
    assert_memory_equal(hex, "a0a9b2bbc4cdd6dfe8f1fa030c151e27", 32);
    assert_int_equal(store_id_parse(hex, back), 0);
    assert_memory_equal(id, back, 32);
    for (char *p = hex; *p; p++)
        if (*p >= 'a' && *p <= 'f')
            *p = (char)(*p - 'a' + 'A');
    assert_int_equal(store_id_parse(hex, back), 0);
    assert_memory_equal(id, back, 32);
    hex[63] = 'g';
    assert_int_equal(store_id_parse(hex, back), BQ_E_INVAL);
    hex[63] = '\0';
    assert_int_equal(store_id_parse(hex, back), BQ_E_INVAL);
    assert_int_equal(store_id_parse(NULL, back), BQ_E_INVAL);

    store_comp_t c;
    assert_int_equal(store_comp_parse("zstd", &c), 0);
    assert_int_equal(c, STORE_COMP_ZSTD);
    assert_int_equal(store_comp_parse("lz4", &c), 0);
    assert_int_equal(c, STORE_COMP_LZ4);
    assert_int_equal(store_comp_parse("none", &c), 0);
    assert_int_equal(c, STORE_COMP_NONE);
    assert_int_equal(store_comp_parse("gzip", &c), BQ_E_INVAL);
    assert_string_equal(store_comp_name(STORE_COMP_LZ4), "lz4");
    assert_int_equal(store_chunk_seal_bound(0), 49);
}

/* Deltas: a chunk sealed against a base opens only with that base; every flipped bit of the
 * body (the base id in its header included) is damage; one not worth keeping is refused. */
static void test_delta(void **state)
{
    fixture_t *f = *state;
    const size_t len = 65536;
    uint8_t *base = malloc(len), *other = malloc(len);
    assert_true(base && other);
    fill_text(base, len);
    /* a base that starts like a zstd dictionary is still raw content */
    base[0] = 0x37, base[1] = 0xa4, base[2] = 0x30, base[3] = 0xec;
    memcpy(f->data, base, len);
    for (size_t i = 0; i < 40; i++)
        f->data[1000 + i * 1500] ^= 0x21;
    uint8_t id[32], base_id[32];
    assert_int_equal(store_chunk_id(f->idkey, f->data, len, id), 0);
    assert_int_equal(store_chunk_id(f->idkey, base, len, base_id), 0);
    bq_errbuf_t e = {{0}};
    size_t full = 0, blen = 0, got = 0;
    assert_int_equal(store_chunk_seal(f->ctx, id, &f->dk, STORE_COMP_ZSTD, 3, f->data, len,
                                      f->body, store_chunk_seal_bound(len), &full, &e), 0);
    assert_int_equal(store_chunk_seal_delta(f->ctx, id, &f->dk, 3, f->data, len, base_id, base,
                                            len, full, f->body, store_chunk_seal_bound(len),
                                            &blen, &e), 0);
    print_message("delta: %zu bytes sealed whole, %zu as a delta\n", full, blen);
    assert_true(blen * 4 < full);
    uint8_t got_base[32];
    assert_int_equal(store_chunk_body_base(f->body, blen, got_base), 1);
    assert_memory_equal(got_base, base_id, 32);
    store_chunk_head_t h;
    assert_int_equal(store_chunk_head(id, f->body, blen, &h, NULL, &e), 0);
    assert_int_equal(h.comp, STORE_COMP_ZSTD_DELTA);
    assert_true(h.delta);
    assert_int_equal(h.raw_len, len);
    assert_int_equal(store_chunk_open_delta(f->ctx, id, &f->dk, f->body, blen, base, len, f->out,
                                            BIG, &got, NULL, &e), 0);
    assert_int_equal(got, len);
    assert_memory_equal(f->out, f->data, len);
    /* the context is clean afterwards: a plain chunk opens */
    size_t plen = 0;
    uint8_t *plain = malloc(store_chunk_seal_bound(len));
    assert_non_null(plain);
    assert_int_equal(store_chunk_seal(f->ctx, base_id, &f->dk, STORE_COMP_ZSTD, 3, base, len,
                                      plain, store_chunk_seal_bound(len), &plen, &e), 0);
    assert_int_equal(store_chunk_body_base(plain, plen, got_base), 0);
    assert_int_equal(store_chunk_open(f->ctx, base_id, &f->dk, plain, plen, f->out, BIG, &got,
                                      NULL, &e), 0);
    assert_memory_equal(f->out, base, len);

    /* without its base, or with another one: damage naming the chunk */
    char hex[STORE_CHUNK_ID_HEX];
    store_id_hex(id, hex);
    assert_int_equal(store_chunk_open(f->ctx, id, &f->dk, f->body, blen, f->out, BIG, &got, NULL,
                                      &e), BQ_E_IO);
    assert_non_null(strstr(e.msg, "opened without that base"));
    fill_text(other, len);
    assert_int_equal(store_chunk_open_delta(f->ctx, id, &f->dk, f->body, blen, other, len,
                                            f->out, BIG, &got, NULL, &e), BQ_E_IO);
    assert_non_null(strstr(e.msg, hex));
    for (size_t bit = 0; bit < blen * 8; bit += 7) {
        uint8_t *bad = malloc(blen);
        assert_non_null(bad);
        memcpy(bad, f->body, blen);
        bad[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        int rc = store_chunk_open_delta(f->ctx, id, &f->dk, bad, blen, base, len, f->out,
                                        STORE_CHUNK_RAW_MAX, &got, NULL, &e);
        if (rc == 0)
            fail_msg("flipped bit %zu of a %zu-byte delta body opened", bit, blen);
        assert_true(rc == BQ_E_IO || (rc == BQ_E_KEY && bit / 8 >= 1 && bit / 8 < 5));
        free(bad);
    }
    /* not worth it: no delta shorter than max_body */
    assert_int_equal(store_chunk_seal_delta(f->ctx, id, &f->dk, 3, f->data, len, base_id, base,
                                            len, blen, f->body, store_chunk_seal_bound(len),
                                            &blen, &e), 1);
    /* against itself: refused */
    assert_int_equal(store_chunk_seal_delta(f->ctx, id, &f->dk, 3, f->data, len, id, base, len,
                                            full, f->body, store_chunk_seal_bound(len), &blen,
                                            &e), BQ_E_INVAL);
    free(plain);
    free(base);
    free(other);
}

/* A chunk whose plaintext arrives already compressed (a packed WAL piece): sealed as it is,
 * it opens to the raw bytes under its id. */
static void test_seal_packed(void **state)
{
    fixture_t *f = *state;
    bq_errbuf_t e = {{0}};
    size_t len = 65536, blen = 0, got = 0;
    uint8_t id[32];
    char hex[STORE_CHUNK_ID_HEX];
    fill_text(f->data, len);
    assert_int_equal(store_chunk_ctx_id(f->ctx, f->data, len, id), 0);
    store_id_hex(id, hex);
    int cap = LZ4_compressBound((int)len);
    uint8_t *lz = malloc((size_t)cap);
    assert_non_null(lz);
    int plen = LZ4_compress_default((const char *)f->data, (char *)lz, (int)len, cap);
    assert_true(plen > 0 && (size_t)plen < len / 4);

    /* lz4, into a buffer of exactly the bound */
    size_t bound = store_chunk_seal_bound((size_t)plen);
    if (store_chunk_seal_packed(id, &f->dk, STORE_COMP_LZ4, len, lz, (size_t)plen, f->body, bound,
                                &blen, &e) != 0)
        fail_msg("seal packed: %s", e.msg);
    assert_int_equal(blen, (size_t)plen + STORE_CHUNK_OVERHEAD);
    store_chunk_head_t h;
    assert_int_equal(store_chunk_head(id, f->body, blen, &h, NULL, &e), 0);
    assert_int_equal(h.comp, STORE_COMP_LZ4);
    assert_int_equal(h.raw_len, len);
    assert_int_equal(h.key_id, f->dk.id);
    assert_false(h.delta);
    memset(f->out, 0, len);
    assert_int_equal(store_chunk_open(f->ctx, id, &f->dk, f->body, blen, f->out, BIG, &got, NULL,
                                      &e), 0);
    assert_int_equal(got, len);
    assert_memory_equal(f->out, f->data, len);
    /* under another data key it does not open */
    store_datakey_t other = f->dk;
    other.key[3] ^= 1;
    assert_int_equal(store_chunk_open(f->ctx, id, &other, f->body, blen, f->out, BIG, &got, NULL,
                                      &e), BQ_E_IO);

    /* zstd too */
    size_t zcap = ZSTD_compressBound(len);
    uint8_t *zs = malloc(zcap);
    assert_non_null(zs);
    size_t zlen = ZSTD_compress(zs, zcap, f->data, len, 3);
    assert_false(ZSTD_isError(zlen));
    assert_int_equal(store_chunk_seal_packed(id, &f->dk, STORE_COMP_ZSTD, len, zs, zlen, f->body,
                                             store_chunk_seal_bound(zlen), &blen, &e), 0);
    assert_int_equal(blen, zlen + STORE_CHUNK_OVERHEAD);
    assert_int_equal(store_chunk_open(f->ctx, id, &f->dk, f->body, blen, f->out, BIG, &got, NULL,
                                      &e), 0);
    assert_int_equal(got, len);
    assert_memory_equal(f->out, f->data, len);

    /* bytes that do not decompress to the chunk the id names: sealed (the caller's check),
     * but opening finds it */
    uint8_t wrong_id[32];
    memcpy(wrong_id, id, 32);
    wrong_id[0] ^= 1;
    assert_int_equal(store_chunk_seal_packed(wrong_id, &f->dk, STORE_COMP_LZ4, len, lz,
                                             (size_t)plen, f->body, bound, &blen, &e), 0);
    assert_int_equal(store_chunk_open(f->ctx, wrong_id, &f->dk, f->body, blen, f->out, BIG, &got,
                                      NULL, &e), BQ_E_IO);
    assert_int_equal(store_chunk_seal_packed(id, &f->dk, STORE_COMP_LZ4, len - 1, lz,
                                             (size_t)plen, f->body, bound, &blen, &e), 0);
    assert_int_equal(store_chunk_open(f->ctx, id, &f->dk, f->body, blen, f->out, BIG, &got, NULL,
                                      &e), BQ_E_IO);

    /* refusals: nothing written */
    static const struct {
        store_comp_t comp;
        size_t raw_len;
        size_t plen_delta; /* plen is plen + this */
        size_t cap_less;   /* out_cap is the bound minus this */
        int rc;
        const char *why;
    } cases[] = {
        {STORE_COMP_NONE, 65536, 0, 0, BQ_E_INVAL, "compression 0 is not zstd or lz4"},
        {STORE_COMP_ZSTD_DELTA, 65536, 0, 0, BQ_E_INVAL, "compression 3 is not zstd or lz4"},
        {(store_comp_t)9, 65536, 0, 0, BQ_E_INVAL, "compression 9 is not zstd or lz4"},
        {STORE_COMP_LZ4, 0, 0, 0, BQ_E_INVAL, "%zu compressed bytes for 0"},
        {STORE_COMP_LZ4, 1, 0, 0, BQ_E_INVAL, "%zu compressed bytes for 1"},
        {STORE_COMP_LZ4, 65536, 65536, 0, BQ_E_INVAL, "%zu compressed bytes for 65536"},
        {STORE_COMP_LZ4, 65536, 65537, 0, BQ_E_INVAL, "%zu compressed bytes for 65536"},
        {STORE_COMP_LZ4, STORE_CHUNK_RAW_MAX + 1, 0, 0, BQ_E_TOOBIG,
         "16777217 bytes, more than 16777216"},
        {STORE_COMP_ZSTD, (size_t)1 << 40, 0, 0, BQ_E_TOOBIG,
         "1099511627776 bytes, more than 16777216"},
        {STORE_COMP_LZ4, 65536, 0, 1, BQ_E_INVAL, "output buffer of %zu bytes, need %zu"},
        {STORE_COMP_LZ4, 65536, 0, 49, BQ_E_INVAL, "output buffer of %zu bytes, need %zu"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        /* plen_delta of 65536 and more: plen is exactly that (at or above raw_len) */
        size_t pl = cases[i].plen_delta ? cases[i].plen_delta : (size_t)plen;
        size_t need = store_chunk_seal_bound(pl);
        size_t out_cap = need - cases[i].cap_less;
        uint8_t *src = malloc(pl);
        assert_non_null(src);
        memcpy(src, lz, (size_t)plen < pl ? (size_t)plen : pl);
        memset(f->body, 0xa5, 64);
        blen = 12345;
        memset(&e, 0, sizeof e);
        int rc = store_chunk_seal_packed(id, &f->dk, cases[i].comp, cases[i].raw_len, src, pl,
                                         f->body, out_cap, &blen, &e);
        char why[200], want[400];
        if (cases[i].cap_less)
            snprintf(why, sizeof why, cases[i].why, out_cap, need);
        else
            snprintf(why, sizeof why, cases[i].why, pl);
        snprintf(want, sizeof want, "could not seal chunk %s: %s", hex, why);
        if (rc != cases[i].rc || strcmp(e.msg, want) != 0)
            fail_msg("case %zu: got %s \"%s\", want %s \"%s\"", i, bq_err_name(rc), e.msg,
                     bq_err_name(cases[i].rc), want);
        assert_int_equal(blen, 12345);
        for (size_t k = 0; k < 64; k++)
            assert_int_equal(f->body[k], 0xa5);
        free(src);
    }
    /* nothing compressed for a chunk that is not empty: nothing it could open to */
    memset(&e, 0, sizeof e);
    blen = 12345;
    assert_int_equal(store_chunk_seal_packed(id, &f->dk, STORE_COMP_LZ4, 65536, lz, 0, f->body,
                                             store_chunk_seal_bound(0), &blen, &e),
                     BQ_E_INVAL);
    assert_non_null(strstr(e.msg, "0 compressed bytes for 65536"));
    assert_int_equal(blen, 12345);
    free(zs);
    free(lz);

    /* the largest chunk, 16 MiB, arrives packed */
    size_t big = STORE_CHUNK_RAW_MAX;
    uint8_t *data = malloc(big), *out = malloc(big);
    int bcap = LZ4_compressBound((int)big);
    uint8_t *packed = malloc((size_t)bcap);
    assert_true(data && out && packed);
    fill_text(data, big);
    int bplen = LZ4_compress_default((const char *)data, (char *)packed, (int)big, bcap);
    assert_true(bplen > 0 && (size_t)bplen < big);
    uint8_t *body = malloc(store_chunk_seal_bound((size_t)bplen));
    assert_non_null(body);
    assert_int_equal(store_chunk_ctx_id(f->ctx, data, big, id), 0);
    assert_int_equal(store_chunk_seal_packed(id, &f->dk, STORE_COMP_LZ4, big, packed,
                                             (size_t)bplen, body,
                                             store_chunk_seal_bound((size_t)bplen), &blen, &e),
                     0);
    assert_int_equal(store_chunk_open(f->ctx, id, &f->dk, body, blen, out, big, &got, NULL, &e),
                     0);
    assert_int_equal(got, big);
    assert_memory_equal(out, data, big);
    free(body);
    free(packed);
    free(data);
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_id_is_hmac_sha256, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dedup_property, setup, teardown),
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delta, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_data_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flipped_bits_and_truncation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_id_mismatch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_headers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_arguments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_largest_chunk, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hex_and_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_seal_packed, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
