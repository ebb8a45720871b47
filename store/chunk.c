#include "chunk.h"

#include <lz4.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>
#include <zstd_errors.h>

#define AD_BYTES (STORE_CHUNK_ID_BYTES + 4)
#define AD_DELTA_BYTES (AD_BYTES + STORE_CHUNK_ID_BYTES)
#define NONCE_OFF 9
#define SCRATCH_MIN (256u << 10)

struct store_chunk_ctx {
    uint8_t idkey[STORE_KEY_BYTES];
    EVP_MAC_CTX *mac; /* HMAC-SHA-256 keyed with idkey; restarted for each chunk */
    ZSTD_CCtx *zc;
    ZSTD_DCtx *zd;
    void *lz4;        /* LZ4_sizeofState() bytes */
    uint8_t *scratch; /* decrypted compressed payload while opening */
    size_t scratch_cap;
};

static void put32le(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static uint32_t get32le(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

char *store_id_hex(const uint8_t id[STORE_CHUNK_ID_BYTES], char out[STORE_CHUNK_ID_HEX])
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < STORE_CHUNK_ID_BYTES; i++) {
        out[2 * i] = digits[id[i] >> 4];
        out[2 * i + 1] = digits[id[i] & 15];
    }
    out[2 * STORE_CHUNK_ID_BYTES] = '\0';
    return out;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int store_id_parse(const char *hex, uint8_t id[STORE_CHUNK_ID_BYTES])
{
    if (!hex || strlen(hex) != 2 * STORE_CHUNK_ID_BYTES)
        return BQ_E_INVAL;
    for (size_t i = 0; i < STORE_CHUNK_ID_BYTES; i++) {
        int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return BQ_E_INVAL;
        id[i] = (uint8_t)((hi << 4) | lo);
    }
    return 0;
}

const char *store_comp_name(store_comp_t comp)
{
    switch (comp) {
    case STORE_COMP_NONE:
        return "none";
    case STORE_COMP_ZSTD:
        return "zstd";
    case STORE_COMP_LZ4:
        return "lz4";
    case STORE_COMP_ZSTD_DELTA:
        return "zstd-delta";
    }
    return "unknown";
}

int store_comp_parse(const char *name, store_comp_t *out)
{
    static const store_comp_t all[] = {STORE_COMP_NONE, STORE_COMP_ZSTD, STORE_COMP_LZ4};
    for (size_t i = 0; name && i < sizeof all / sizeof all[0]; i++) {
        if (strcmp(name, store_comp_name(all[i])) == 0) {
            *out = all[i];
            return 0;
        }
    }
    return BQ_E_INVAL;
}

/* ---- ids ---- */

int store_chunk_id(const uint8_t idkey[STORE_KEY_BYTES], const void *data, size_t len,
                   uint8_t id_out[STORE_CHUNK_ID_BYTES])
{
    static const uint8_t empty[1] = {0};
    unsigned int mdlen = 0;
    if (!HMAC(EVP_sha256(), idkey, STORE_KEY_BYTES, len ? data : empty, len, id_out, &mdlen) ||
        mdlen != STORE_CHUNK_ID_BYTES)
        return BQ_E_NOMEM;
    return 0;
}

int store_chunk_ctx_id(store_chunk_ctx_t *ctx, const void *data, size_t len,
                       uint8_t id_out[STORE_CHUNK_ID_BYTES])
{
    static const uint8_t empty[1] = {0};
    size_t mdlen = 0;
    /* A NULL key restarts HMAC from the key given at store_chunk_ctx_new: no re-keying. */
    if (!EVP_MAC_init(ctx->mac, NULL, 0, NULL) ||
        !EVP_MAC_update(ctx->mac, len ? data : empty, len) ||
        !EVP_MAC_final(ctx->mac, id_out, &mdlen, STORE_CHUNK_ID_BYTES) ||
        mdlen != STORE_CHUNK_ID_BYTES)
        return BQ_E_NOMEM;
    return 0;
}

/* ---- context ---- */

int store_chunk_ctx_new(const uint8_t idkey[STORE_KEY_BYTES], store_chunk_ctx_t **out,
                        bq_errbuf_t *e)
{
    *out = NULL;
    if (sodium_init() < 0)
        return bq_fail(e, BQ_E_KEY, "could not initialise libsodium");
    store_chunk_ctx_t *ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        return bq_fail(e, BQ_E_NOMEM, "out of memory for a chunk context");
    memcpy(ctx->idkey, idkey, STORE_KEY_BYTES);

    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    ctx->mac = mac ? EVP_MAC_CTX_new(mac) : NULL;
    EVP_MAC_free(mac); /* the context holds its own reference */
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                           OSSL_PARAM_construct_end()};
    if (!ctx->mac || !EVP_MAC_init(ctx->mac, ctx->idkey, STORE_KEY_BYTES, params)) {
        store_chunk_ctx_destroy(&ctx);
        return bq_fail(e, BQ_E_KEY, "could not set up HMAC-SHA-256 in libcrypto");
    }
    ctx->zc = ZSTD_createCCtx();
    ctx->zd = ZSTD_createDCtx();
    ctx->lz4 = malloc((size_t)LZ4_sizeofState());
    if (!ctx->zc || !ctx->zd || !ctx->lz4) {
        store_chunk_ctx_destroy(&ctx);
        return bq_fail(e, BQ_E_NOMEM, "out of memory for a chunk context");
    }
    *out = ctx;
    return 0;
}

void store_chunk_ctx_destroy(store_chunk_ctx_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    store_chunk_ctx_t *ctx = *self_p;
    EVP_MAC_CTX_free(ctx->mac);
    ZSTD_freeCCtx(ctx->zc);
    ZSTD_freeDCtx(ctx->zd);
    free(ctx->lz4);
    if (ctx->scratch) {
        sodium_memzero(ctx->scratch, ctx->scratch_cap);
        free(ctx->scratch);
    }
    sodium_memzero(ctx->idkey, sizeof ctx->idkey);
    free(ctx);
    *self_p = NULL;
}

/* The scratch buffer holds at least need bytes (need <= STORE_CHUNK_RAW_MAX). */
static int scratch_reserve(store_chunk_ctx_t *ctx, size_t need)
{
    if (need <= ctx->scratch_cap)
        return 0;
    size_t cap = ctx->scratch_cap ? ctx->scratch_cap : SCRATCH_MIN;
    while (cap < need)
        cap *= 2;
    if (cap > STORE_CHUNK_RAW_MAX)
        cap = STORE_CHUNK_RAW_MAX;
    if (cap < need)
        return BQ_E_NOMEM;
    uint8_t *p = malloc(cap);
    if (!p)
        return BQ_E_NOMEM;
    if (ctx->scratch) {
        sodium_memzero(ctx->scratch, ctx->scratch_cap);
        free(ctx->scratch);
    }
    ctx->scratch = p;
    ctx->scratch_cap = cap;
    return 0;
}

/* ---- seal ---- */

size_t store_chunk_seal_bound(size_t len)
{
    return len + STORE_CHUNK_OVERHEAD;
}

static void make_ad(uint8_t ad[AD_BYTES], const uint8_t id[STORE_CHUNK_ID_BYTES], uint32_t key_id)
{
    memcpy(ad, id, STORE_CHUNK_ID_BYTES);
    put32le(ad + STORE_CHUNK_ID_BYTES, key_id);
}

/* Header, nonce and AEAD of a body at o whose plaintext (plen bytes at src, which may be o's
 * payload itself: libsodium allows the ciphertext to overwrite the message) is raw_len bytes
 * compressed with used. */
static void seal_body(uint8_t *o, const uint8_t id[STORE_CHUNK_ID_BYTES],
                      const store_datakey_t *dk, store_comp_t used, size_t raw_len,
                      const void *src, size_t plen, size_t *out_len)
{
    static const uint8_t empty[1] = {0};
    o[0] = (uint8_t)used;
    put32le(o + 1, dk->id);
    put32le(o + 5, (uint32_t)raw_len);
    randombytes_buf(o + NONCE_OFF, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
    uint8_t ad[AD_BYTES];
    make_ad(ad, id, dk->id);
    unsigned long long clen = 0;
    crypto_aead_xchacha20poly1305_ietf_encrypt(o + STORE_CHUNK_HEADER_BYTES, &clen,
                                               plen ? src : empty, plen, ad, sizeof ad, NULL,
                                               o + NONCE_OFF, dk->key);
    *out_len = STORE_CHUNK_HEADER_BYTES + (size_t)clen;
}

int store_chunk_seal(store_chunk_ctx_t *ctx, const uint8_t id[STORE_CHUNK_ID_BYTES],
                     const store_datakey_t *dk, store_comp_t comp, int level, const void *data,
                     size_t len, void *out, size_t out_cap, size_t *out_len, bq_errbuf_t *e)
{
    char hex[STORE_CHUNK_ID_HEX];
    if (len > STORE_CHUNK_RAW_MAX)
        return bq_fail(e, BQ_E_TOOBIG, "could not seal chunk %s: %zu bytes, more than %u",
                       store_id_hex(id, hex), len, STORE_CHUNK_RAW_MAX);
    if (out_cap < store_chunk_seal_bound(len))
        return bq_fail(e, BQ_E_INVAL,
                       "could not seal chunk %s: output buffer of %zu bytes, need %zu",
                       store_id_hex(id, hex), out_cap, store_chunk_seal_bound(len));
    if (comp == STORE_COMP_ZSTD && (level < ZSTD_minCLevel() || level > ZSTD_maxCLevel()))
        return bq_fail(e, BQ_E_INVAL, "zstd level %d is out of range (%d to %d)", level,
                       ZSTD_minCLevel(), ZSTD_maxCLevel());
    if (comp == STORE_COMP_LZ4 && (level < 0 || level > 65537))
        return bq_fail(e, BQ_E_INVAL, "lz4 acceleration %d is out of range (0 to 65537)", level);
    if (comp != STORE_COMP_NONE && comp != STORE_COMP_ZSTD && comp != STORE_COMP_LZ4)
        return bq_fail(e, BQ_E_INVAL, "unknown compression %d", (int)comp);

    uint8_t *o = out;
    uint8_t *payload = o + STORE_CHUNK_HEADER_BYTES;
    size_t plen = 0;
    store_comp_t used = STORE_COMP_NONE;
    /* Compress straight into the body with room for len - 1 bytes: what does not fit did
     * not shrink, and is stored as none. */
    if (comp == STORE_COMP_ZSTD && len > 1) {
        size_t r = ZSTD_compressCCtx(ctx->zc, payload, len - 1, data, len, level);
        if (!ZSTD_isError(r)) {
            plen = r;
            used = STORE_COMP_ZSTD;
        } else if (ZSTD_getErrorCode(r) != ZSTD_error_dstSize_tooSmall) {
            return bq_fail(e, BQ_E_IO, "could not compress chunk %s: zstd: %s",
                           store_id_hex(id, hex), ZSTD_getErrorName(r));
        }
    } else if (comp == STORE_COMP_LZ4 && len > 1) {
        int r = LZ4_compress_fast_extState(ctx->lz4, data, (char *)payload, (int)len,
                                           (int)(len - 1), level > 0 ? level : 1);
        if (r > 0) {
            plen = (size_t)r;
            used = STORE_COMP_LZ4;
        }
    }

    if (used == STORE_COMP_NONE) /* from the caller's buffer */
        seal_body(o, id, dk, used, len, data, len, out_len);
    else /* in place: libsodium allows the ciphertext to overwrite the message */
        seal_body(o, id, dk, used, len, payload, plen, out_len);
    return 0;
}

int store_chunk_seal_packed(const uint8_t id[STORE_CHUNK_ID_BYTES], const store_datakey_t *dk,
                            store_comp_t comp, size_t raw_len, const void *packed, size_t plen,
                            void *out, size_t out_cap, size_t *out_len, bq_errbuf_t *e)
{
    char hex[STORE_CHUNK_ID_HEX];
    if (raw_len > STORE_CHUNK_RAW_MAX)
        return bq_fail(e, BQ_E_TOOBIG, "could not seal chunk %s: %zu bytes, more than %u",
                       store_id_hex(id, hex), raw_len, STORE_CHUNK_RAW_MAX);
    if (comp != STORE_COMP_ZSTD && comp != STORE_COMP_LZ4)
        return bq_fail(e, BQ_E_INVAL, "could not seal chunk %s: compression %d is not zstd or "
                       "lz4", store_id_hex(id, hex), (int)comp);
    if (plen >= raw_len || plen == 0) /* as store_chunk_seal: kept only when it shrinks */
        return bq_fail(e, BQ_E_INVAL, "could not seal chunk %s: %zu compressed bytes for %zu",
                       store_id_hex(id, hex), plen, raw_len);
    if (out_cap < store_chunk_seal_bound(plen))
        return bq_fail(e, BQ_E_INVAL,
                       "could not seal chunk %s: output buffer of %zu bytes, need %zu",
                       store_id_hex(id, hex), out_cap, store_chunk_seal_bound(plen));
    seal_body(out, id, dk, comp, raw_len, packed, plen, out_len);
    return 0;
}

int store_chunk_seal_delta(store_chunk_ctx_t *ctx, const uint8_t id[STORE_CHUNK_ID_BYTES],
                           const store_datakey_t *dk, int level, const void *data, size_t len,
                           const uint8_t base_id[STORE_CHUNK_ID_BYTES], const void *base,
                           size_t base_len, size_t max_body, void *out, size_t out_cap,
                           size_t *out_len, bq_errbuf_t *e)
{
    char hex[STORE_CHUNK_ID_HEX];
    if (len > STORE_CHUNK_RAW_MAX || base_len > STORE_CHUNK_RAW_MAX)
        return bq_fail(e, BQ_E_TOOBIG, "could not seal chunk %s: %zu bytes (base %zu), more "
                       "than %u", store_id_hex(id, hex), len, base_len, STORE_CHUNK_RAW_MAX);
    if (out_cap < store_chunk_seal_bound(len))
        return bq_fail(e, BQ_E_INVAL,
                       "could not seal chunk %s: output buffer of %zu bytes, need %zu",
                       store_id_hex(id, hex), out_cap, store_chunk_seal_bound(len));
    if (level < ZSTD_minCLevel() || level > ZSTD_maxCLevel())
        return bq_fail(e, BQ_E_INVAL, "zstd level %d is out of range (%d to %d)", level,
                       ZSTD_minCLevel(), ZSTD_maxCLevel());
    if (memcmp(base_id, id, STORE_CHUNK_ID_BYTES) == 0)
        return bq_fail(e, BQ_E_INVAL, "chunk %s cannot be a delta against itself",
                       store_id_hex(id, hex));
    /* Kept only when shorter than max_body, and than raw_len (as every compressed body). */
    size_t room = max_body < out_cap ? max_body : out_cap;
    if (room <= STORE_CHUNK_DELTA_OVERHEAD + 1 || len < 2)
        return 1;
    room -= STORE_CHUNK_DELTA_OVERHEAD + 1;
    if (room > len - 1)
        room = len - 1;
    uint8_t *o = out;
    uint8_t *payload = o + STORE_CHUNK_DELTA_HEADER_BYTES;
    size_t r = ZSTD_CCtx_reset(ctx->zc, ZSTD_reset_session_and_parameters);
    if (!ZSTD_isError(r))
        r = ZSTD_CCtx_setParameter(ctx->zc, ZSTD_c_compressionLevel, level);
    if (!ZSTD_isError(r) && base_len > 0)
        r = ZSTD_CCtx_refPrefix(ctx->zc, base, base_len);
    if (!ZSTD_isError(r))
        r = ZSTD_compress2(ctx->zc, payload, room, data, len);
    ZSTD_CCtx_reset(ctx->zc, ZSTD_reset_session_and_parameters); /* no prefix left behind */
    if (ZSTD_isError(r)) {
        if (ZSTD_getErrorCode(r) == ZSTD_error_dstSize_tooSmall)
            return 1;
        return bq_fail(e, BQ_E_IO, "could not compress chunk %s: zstd: %s",
                       store_id_hex(id, hex), ZSTD_getErrorName(r));
    }
    size_t plen = r;
    o[0] = (uint8_t)STORE_COMP_ZSTD_DELTA;
    put32le(o + 1, dk->id);
    put32le(o + 5, (uint32_t)len);
    randombytes_buf(o + NONCE_OFF, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
    memcpy(o + STORE_CHUNK_HEADER_BYTES, base_id, STORE_CHUNK_ID_BYTES);
    uint8_t ad[AD_DELTA_BYTES];
    make_ad(ad, id, dk->id);
    memcpy(ad + AD_BYTES, base_id, STORE_CHUNK_ID_BYTES);
    unsigned long long clen = 0;
    crypto_aead_xchacha20poly1305_ietf_encrypt(payload, &clen, payload, plen, ad, sizeof ad, NULL,
                                               o + NONCE_OFF, dk->key);
    *out_len = STORE_CHUNK_DELTA_HEADER_BYTES + (size_t)clen;
    return 0;
}

/* ---- open ---- */

static int damaged(bq_errbuf_t *e, const uint8_t id[STORE_CHUNK_ID_BYTES], const char *where,
                   const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static int damaged(bq_errbuf_t *e, const uint8_t id[STORE_CHUNK_ID_BYTES], const char *where,
                   const char *fmt, ...)
{
    char hex[STORE_CHUNK_ID_HEX], why[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    return bq_fail(e, BQ_E_IO, "chunk %s%s%s is damaged (%s)", store_id_hex(id, hex),
                   where && *where ? " " : "", where ? where : "", why);
}

int store_chunk_head(const uint8_t id[STORE_CHUNK_ID_BYTES], const void *body, size_t body_len,
                     store_chunk_head_t *head, const char *where, bq_errbuf_t *e)
{
    const uint8_t *b = body;
    if (body_len < STORE_CHUNK_OVERHEAD)
        return damaged(e, id, where, "sealed body of %zu bytes, shorter than the %d-byte minimum",
                       body_len, STORE_CHUNK_OVERHEAD);
    uint8_t comp = b[0];
    uint32_t raw_len = get32le(b + 5);
    if (comp != STORE_COMP_NONE && comp != STORE_COMP_ZSTD && comp != STORE_COMP_LZ4 &&
        comp != STORE_COMP_ZSTD_DELTA)
        return damaged(e, id, where, "unknown compression %u", (unsigned)comp);
    if (raw_len > STORE_CHUNK_RAW_MAX)
        return damaged(e, id, where, "raw length %u is above the %u-byte limit", (unsigned)raw_len,
                       STORE_CHUNK_RAW_MAX);
    size_t overhead = STORE_CHUNK_OVERHEAD;
    head->delta = comp == STORE_COMP_ZSTD_DELTA;
    if (head->delta) {
        overhead = STORE_CHUNK_DELTA_OVERHEAD;
        if (body_len < overhead)
            return damaged(e, id, where, "delta body of %zu bytes, shorter than the %d-byte "
                           "minimum", body_len, STORE_CHUNK_DELTA_OVERHEAD);
        memcpy(head->base, b + STORE_CHUNK_HEADER_BYTES, STORE_CHUNK_ID_BYTES);
        if (memcmp(head->base, id, STORE_CHUNK_ID_BYTES) == 0)
            return damaged(e, id, where, "a delta whose base is the chunk itself");
    } else {
        memset(head->base, 0, sizeof head->base);
    }
    size_t plen = body_len - overhead;
    /* none: the payload is the chunk; compressed: kept only when it shrank (1..raw_len-1). */
    if (comp == STORE_COMP_NONE ? plen != raw_len : (plen == 0 || plen >= raw_len))
        return damaged(e, id, where,
                       "sealed body of %zu bytes does not fit a %s chunk of %u bytes", body_len,
                       store_comp_name((store_comp_t)comp), (unsigned)raw_len);
    head->comp = (store_comp_t)comp;
    head->key_id = get32le(b + 1);
    head->raw_len = raw_len;
    return 0;
}

int store_chunk_body_base(const void *body, size_t body_len,
                          uint8_t base_out[STORE_CHUNK_ID_BYTES])
{
    const uint8_t *b = body;
    if (body_len < STORE_CHUNK_DELTA_OVERHEAD || b[0] != STORE_COMP_ZSTD_DELTA)
        return 0;
    memcpy(base_out, b + STORE_CHUNK_HEADER_BYTES, STORE_CHUNK_ID_BYTES);
    return 1;
}

int store_chunk_open(store_chunk_ctx_t *ctx, const uint8_t id[STORE_CHUNK_ID_BYTES],
                     const store_datakey_t *dk, const void *body, size_t body_len, void *out,
                     size_t out_cap, size_t *out_len, const char *where, bq_errbuf_t *e)
{
    return store_chunk_open_delta(ctx, id, dk, body, body_len, NULL, 0, out, out_cap, out_len,
                                  where, e);
}

int store_chunk_open_delta(store_chunk_ctx_t *ctx, const uint8_t id[STORE_CHUNK_ID_BYTES],
                           const store_datakey_t *dk, const void *body, size_t body_len,
                           const void *base, size_t base_len, void *out, size_t out_cap,
                           size_t *out_len, const char *where, bq_errbuf_t *e)
{
    char hex[STORE_CHUNK_ID_HEX];
    store_chunk_head_t h;
    int rc = store_chunk_head(id, body, body_len, &h, where, e);
    if (rc)
        return rc;
    if (h.delta && !base)
        return damaged(e, id, where, "a delta against %s, opened without that base",
                       store_id_hex(h.base, hex));
    if (h.key_id != dk->id)
        return bq_fail(e, BQ_E_KEY, "chunk %s%s%s is sealed with data key %08x, not %08x",
                       store_id_hex(id, hex), where && *where ? " " : "", where ? where : "",
                       (unsigned)h.key_id, (unsigned)dk->id);
    if (h.raw_len > out_cap)
        return bq_fail(e, BQ_E_TOOBIG, "chunk %s holds %u bytes, more than the %zu-byte buffer",
                       store_id_hex(id, hex), (unsigned)h.raw_len, out_cap);

    const uint8_t *b = body;
    const uint8_t *nonce = b + NONCE_OFF;
    size_t hlen = h.delta ? STORE_CHUNK_DELTA_HEADER_BYTES : STORE_CHUNK_HEADER_BYTES;
    const uint8_t *cipher = b + hlen;
    size_t clen = body_len - hlen; /* ciphertext and tag */
    size_t plen = clen - STORE_CHUNK_TAG_BYTES;
    uint8_t ad[AD_DELTA_BYTES];
    make_ad(ad, id, h.key_id);
    if (h.delta)
        memcpy(ad + AD_BYTES, h.base, STORE_CHUNK_ID_BYTES);
    uint8_t *plain = out; /* none: straight into the caller's buffer */
    if (h.comp != STORE_COMP_NONE) {
        if (scratch_reserve(ctx, plen) != 0)
            return bq_fail(e, BQ_E_NOMEM, "out of memory opening chunk %s", store_id_hex(id, hex));
        plain = ctx->scratch;
    }
    unsigned long long mlen = 0;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(plain, &mlen, NULL, cipher, clen, ad,
                                                   h.delta ? AD_DELTA_BYTES : AD_BYTES, nonce,
                                                   dk->key) != 0 ||
        mlen != plen)
        return damaged(e, id, where, "authentication failed with data key %08x",
                       (unsigned)dk->id);

    size_t got = plen;
    if (h.comp == STORE_COMP_ZSTD_DELTA) {
        /* The prefix serves the next frame only: set once the body has authenticated. */
        size_t r = base_len > 0 ? ZSTD_DCtx_refPrefix(ctx->zd, base, base_len) : 0;
        if (!ZSTD_isError(r))
            r = ZSTD_decompressDCtx(ctx->zd, out, h.raw_len, plain, plen);
        ZSTD_DCtx_reset(ctx->zd, ZSTD_reset_session_and_parameters);
        if (ZSTD_isError(r))
            return damaged(e, id, where, "zstd delta against %s: %s", store_id_hex(h.base, hex),
                           ZSTD_getErrorName(r));
        got = r;
    } else if (h.comp == STORE_COMP_ZSTD) {
        size_t r = ZSTD_decompressDCtx(ctx->zd, out, h.raw_len, plain, plen);
        if (ZSTD_isError(r))
            return damaged(e, id, where, "zstd: %s", ZSTD_getErrorName(r));
        got = r;
    } else if (h.comp == STORE_COMP_LZ4) {
        int r = LZ4_decompress_safe((const char *)plain, out, (int)plen, (int)h.raw_len);
        if (r < 0)
            return damaged(e, id, where, "lz4 decompression failed");
        got = (size_t)r;
    }
    if (got != h.raw_len)
        return damaged(e, id, where, "decompressed to %zu bytes, expected %u", got,
                       (unsigned)h.raw_len);

    uint8_t check[STORE_CHUNK_ID_BYTES];
    if (store_chunk_ctx_id(ctx, out, got, check) != 0)
        return bq_fail(e, BQ_E_NOMEM, "out of memory hashing chunk %s", store_id_hex(id, hex));
    if (sodium_memcmp(check, id, STORE_CHUNK_ID_BYTES) != 0) {
        char other[STORE_CHUNK_ID_HEX];
        return damaged(e, id, where, "its content hashes to %s", store_id_hex(check, other));
    }
    *out_len = got;
    return 0;
}

/* ---- sha256 ---- */

struct store_sha256 {
    EVP_MD_CTX *md;
    int failed;
};

int store_sha256_new(store_sha256_t **out, bq_errbuf_t *e)
{
    *out = NULL;
    store_sha256_t *h = calloc(1, sizeof *h);
    if (!h || !(h->md = EVP_MD_CTX_new())) {
        free(h);
        return bq_fail(e, BQ_E_NOMEM, "out of memory starting a sha256");
    }
    store_sha256_init(h);
    *out = h;
    return 0;
}

void store_sha256_destroy(store_sha256_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    EVP_MD_CTX_free((*self_p)->md);
    free(*self_p);
    *self_p = NULL;
}

void store_sha256_init(store_sha256_t *h)
{
    h->failed = EVP_DigestInit_ex(h->md, EVP_sha256(), NULL) != 1;
}

void store_sha256_update(store_sha256_t *h, const void *data, size_t len)
{
    if (len > 0 && !h->failed && EVP_DigestUpdate(h->md, data, len) != 1)
        h->failed = 1;
}

int store_sha256_final(store_sha256_t *h, uint8_t out[32])
{
    unsigned int n = 0;
    if (h->failed || EVP_DigestFinal_ex(h->md, out, &n) != 1 || n != 32) {
        h->failed = 1;
        return BQ_E_NOMEM;
    }
    return 0;
}
