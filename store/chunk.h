/* Chunks (docs/store.md, "Chunks"): the chunk id, and sealing/opening of chunk bodies.
 *
 * Id: HMAC-SHA-256 of the plaintext under the store's id key (32 bytes), chosen by measurement
 * (docs/measurements.md). Ids print as 64 lowercase hex digits.
 *
 * Sealed body, all integers little-endian:
 *     comp(u8) ‖ key_id(u32) ‖ raw_len(u32) ‖ nonce(24) ‖ ciphertext ‖ tag(16)
 * comp: 0 none, 1 zstd, 2 lz4. The plaintext of the AEAD (XChaCha20-Poly1305 under the data
 * key, associated data = id(32) ‖ key_id(u32 LE)) is the compressed chunk, or the chunk itself
 * when comp is none; compression is kept only when it makes the chunk smaller. A chunk holds
 * at most STORE_CHUNK_RAW_MAX bytes.
 *
 * A delta body (comp 3, zstd-delta) is a chunk compressed against another chunk, its base
 * (in practice: the same 64 KiB of the same file in an earlier backup), with the base's
 * plaintext as a zstd prefix:
 *     3 ‖ key_id(u32) ‖ raw_len(u32) ‖ nonce(24) ‖ base id(32) ‖ ciphertext ‖ tag(16)
 * associated data = id(32) ‖ key_id(u32 LE) ‖ base id(32). The base is in the clear so that
 * GC, verify and a peer can find it without a key; it is never itself a delta (one level:
 * reading a chunk costs at most two records), and never the chunk itself.
 *
 * A store_chunk_ctx_t carries the id key and the reusable state (HMAC, zstd contexts, lz4
 * state, a scratch buffer): one per thread, never shared. */
#ifndef BQ_STORE_CHUNK_H
#define BQ_STORE_CHUNK_H

#include "err.h"
#include "store_keys.h"

#include <stddef.h>
#include <stdint.h>

#define STORE_CHUNK_ID_BYTES 32
#define STORE_CHUNK_ID_HEX 65 /* 64 hex digits and the NUL */
#define STORE_CHUNK_RAW_MAX (16u << 20)
#define STORE_CHUNK_HEADER_BYTES 33 /* comp, key_id, raw_len, nonce */
#define STORE_CHUNK_TAG_BYTES 16
#define STORE_CHUNK_OVERHEAD (STORE_CHUNK_HEADER_BYTES + STORE_CHUNK_TAG_BYTES) /* 49 */
#define STORE_CHUNK_DELTA_HEADER_BYTES (STORE_CHUNK_HEADER_BYTES + STORE_CHUNK_ID_BYTES) /* 65 */
#define STORE_CHUNK_DELTA_OVERHEAD (STORE_CHUNK_DELTA_HEADER_BYTES + STORE_CHUNK_TAG_BYTES)

typedef enum {
    STORE_COMP_NONE = 0,
    STORE_COMP_ZSTD = 1,
    STORE_COMP_LZ4 = 2,
    STORE_COMP_ZSTD_DELTA = 3, /* a body's, never a store's setting */
} store_comp_t;

typedef struct store_chunk_ctx store_chunk_ctx_t;

/* The fields of a sealed body's header, as read (not yet authenticated). */
typedef struct {
    store_comp_t comp;
    uint32_t key_id;
    uint32_t raw_len;
    int delta;                          /* comp is STORE_COMP_ZSTD_DELTA: base is set */
    uint8_t base[STORE_CHUNK_ID_BYTES]; /* the base chunk's id */
} store_chunk_head_t;

/* Lowercase hex of an id into out (65 bytes); returns out. */
char *store_id_hex(const uint8_t id[STORE_CHUNK_ID_BYTES], char out[STORE_CHUNK_ID_HEX]);
/* Parse 64 hex digits (either case) into id. BQ_E_INVAL otherwise. */
int store_id_parse(const char *hex, uint8_t id[STORE_CHUNK_ID_BYTES]);
/* "none", "zstd", "lz4" ("zstd-delta"); and the reverse for a store's setting (BQ_E_INVAL
 * for another name, zstd-delta included). */
const char *store_comp_name(store_comp_t comp);
int store_comp_parse(const char *name, store_comp_t *out);

/* The id of len bytes of plaintext under idkey (one-shot; store_chunk_ctx_id is faster for
 * many chunks). BQ_E_NOMEM when libcrypto cannot allocate. */
int store_chunk_id(const uint8_t idkey[STORE_KEY_BYTES], const void *data, size_t len,
                   uint8_t id_out[STORE_CHUNK_ID_BYTES]);

/* A new context for the store whose id key is idkey (copied). *out owned by the caller:
 * free it with store_chunk_ctx_destroy. BQ_E_NOMEM, or BQ_E_KEY when a library cannot start. */
int store_chunk_ctx_new(const uint8_t idkey[STORE_KEY_BYTES], store_chunk_ctx_t **out,
                        bq_errbuf_t *e);
/* Free a context and wipe its key; accepts NULL and nulls the caller's pointer. */
void store_chunk_ctx_destroy(store_chunk_ctx_t **self_p);
/* The id of len bytes of plaintext under the context's id key. */
int store_chunk_ctx_id(store_chunk_ctx_t *ctx, const void *data, size_t len,
                       uint8_t id_out[STORE_CHUNK_ID_BYTES]);

/* The largest sealed body of a len-byte chunk: len + STORE_CHUNK_OVERHEAD. */
size_t store_chunk_seal_bound(size_t len);
/* Seal len bytes (at most STORE_CHUNK_RAW_MAX, else BQ_E_TOOBIG) whose id is id under data key
 * dk into out (out_cap at least store_chunk_seal_bound(len), else BQ_E_INVAL): compressed with
 * comp (level: zstd level, from ZSTD_minCLevel() to ZSTD_maxCLevel(), 0 meaning zstd's default;
 * lz4 acceleration, 0 or 1 meaning the default; ignored for none), stored as none when that
 * does not shrink it. *out_len receives the body's length. data and out must not overlap.
 * Does not allocate once the context exists. */
int store_chunk_seal(store_chunk_ctx_t *ctx, const uint8_t id[STORE_CHUNK_ID_BYTES],
                     const store_datakey_t *dk, store_comp_t comp, int level, const void *data,
                     size_t len, void *out, size_t out_cap, size_t *out_len, bq_errbuf_t *e);

/* Seal a chunk of raw_len bytes (at most STORE_CHUNK_RAW_MAX) whose plaintext arrives already
 * compressed: plen bytes of packed, compressed with comp (zstd or lz4, the body's format) and
 * shorter than raw_len, as store_chunk_seal keeps only what shrinks. The caller has checked that
 * packed decompresses to the raw_len bytes whose id is id (opening re-checks it). out_cap at
 * least store_chunk_seal_bound(plen). BQ_E_TOOBIG, BQ_E_INVAL. */
int store_chunk_seal_packed(const uint8_t id[STORE_CHUNK_ID_BYTES], const store_datakey_t *dk,
                            store_comp_t comp, size_t raw_len, const void *packed, size_t plen,
                            void *out, size_t out_cap, size_t *out_len, bq_errbuf_t *e);

/* Seal len bytes of chunk id as a delta against base (base_len bytes, the plaintext of chunk
 * base_id, which must not be id) at zstd level (0: default), when that gives a body shorter
 * than max_body bytes: 0 and *out_len, or 1 when it would not be shorter (out then holds
 * nothing of use). out_cap as for store_chunk_seal. Errors as store_chunk_seal. */
int store_chunk_seal_delta(store_chunk_ctx_t *ctx, const uint8_t id[STORE_CHUNK_ID_BYTES],
                           const store_datakey_t *dk, int level, const void *data, size_t len,
                           const uint8_t base_id[STORE_CHUNK_ID_BYTES], const void *base,
                           size_t base_len, size_t max_body, void *out, size_t out_cap,
                           size_t *out_len, bq_errbuf_t *e);

/* Read a body's header without opening it (to find which data key opens it, or how large its
 * plaintext is). BQ_E_IO naming id when the body is too short, names an unknown compression or
 * a length above STORE_CHUNK_RAW_MAX, or its length does not fit its header. where (may be
 * NULL) says where the body was read from, for messages: "in pack 00000000000000a1 at offset
 * 4096". */
int store_chunk_head(const uint8_t id[STORE_CHUNK_ID_BYTES], const void *body, size_t body_len,
                     store_chunk_head_t *head, const char *where, bq_errbuf_t *e);
/* 1 and base_out when body (body_len bytes, unchecked) is a delta, else 0. */
int store_chunk_body_base(const void *body, size_t body_len,
                          uint8_t base_out[STORE_CHUNK_ID_BYTES]);

/* Open a sealed body of the chunk id with data key dk into out (out_cap bytes): checks the
 * header (as store_chunk_head), the data key id (BQ_E_KEY when the body names another), the
 * tag, decompresses into at most raw_len bytes, checks the length, and re-hashes the plaintext
 * to check the id. Every damage is BQ_E_IO "chunk ID [where] is damaged (why)"; an out_cap
 * smaller than raw_len is BQ_E_TOOBIG. *out_len receives raw_len. body and out must not
 * overlap. The body is treated as hostile: every length in it is bounded. A delta body is
 * damage here (BQ_E_IO): open it with store_chunk_open_delta. */
int store_chunk_open(store_chunk_ctx_t *ctx, const uint8_t id[STORE_CHUNK_ID_BYTES],
                     const store_datakey_t *dk, const void *body, size_t body_len, void *out,
                     size_t out_cap, size_t *out_len, const char *where, bq_errbuf_t *e);

/* Open a body as store_chunk_open does; a delta body (head.delta) with base, the plaintext
 * of its base chunk (base_len bytes; the caller opened it, checked, from head.base). base may
 * be NULL for a body that is not a delta. */
int store_chunk_open_delta(store_chunk_ctx_t *ctx, const uint8_t id[STORE_CHUNK_ID_BYTES],
                           const store_datakey_t *dk, const void *body, size_t body_len,
                           const void *base, size_t base_len, void *out, size_t out_cap,
                           size_t *out_len, const char *where, bq_errbuf_t *e);

/* ---- sha256 of whole files (libcrypto: the CPU's SHA extensions, about 4x libsodium's
 * portable sha256 here; docs/measurements.md) ---- */

typedef struct store_sha256 store_sha256_t;

/* A new hash state, started. *out the caller's: store_sha256_destroy. BQ_E_NOMEM. */
int store_sha256_new(store_sha256_t **out, bq_errbuf_t *e);
void store_sha256_destroy(store_sha256_t **self_p);
/* Start again / add bytes / finish into out (the state must then be started again). A
 * libcrypto failure is remembered and reported by store_sha256_final (BQ_E_NOMEM). */
void store_sha256_init(store_sha256_t *h);
void store_sha256_update(store_sha256_t *h, const void *data, size_t len);
int store_sha256_final(store_sha256_t *h, uint8_t out[32]);

#endif
