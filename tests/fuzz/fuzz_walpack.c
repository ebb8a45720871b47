/* Fuzz target: arbitrary bytes as a WAL file packed for the wire (store_wal_unpack, store/wal.h),
 * what a data port receives from a hostile or broken wal-push. The first 4 bytes of the input,
 * a little-endian u32 modulo 2 * STORE_WAL_PIECE + 1, are the raw length the request claims (so
 * 0 to 32 MiB: one or two pieces); the rest is the packed bytes (a copy of exactly that many, so
 * ASan sees any read past them). The raw buffer is exactly raw_len bytes (1 for an empty file):
 * the end of a buffer of the largest size, so that a write past raw_len is a heap overflow.
 * Inputs shorter than 4 bytes are skipped. The seeds of corpus/fuzz_walpack/ are valid packed
 * files made by store_wal_pack (valid_*: empty, one byte, compressible, incompressible, two
 * pieces) and broken ones (bad_*: cut, running past the end, trailing bytes, raw frames of the
 * wrong length, lz4 frames that do not give their piece or do not shrink it, a large claim).
 *
 * store_wal_unpack must never crash, read out of bounds or write past raw_len;
 *   - a refusal is BQ_E_INVAL with a message containing "packed WAL file";
 *   - on success, every piece agrees with the raw bytes: comp none, len is the piece's raw
 *     length and data holds exactly that piece; comp lz4, data lies inside the packed bytes, is
 *     shorter than the piece (and not empty) and LZ4_decompress_safe of it gives exactly the
 *     piece; no other comp;
 *   - store_wal_pack of the raw bytes is accepted by store_wal_unpack again and gives the same
 *     raw bytes (what the sender makes, the receiver takes).
 * Any violation aborts. Memory: two raw buffers of 32 MiB and one piece, made once. */
#include "wal.h"

#include <lz4.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define RAW_MOD ((uint64_t)STORE_WAL_PIECE * 2 + 1)
#define RAW_CAP ((size_t)40 << 20) /* memory bound, above anything RAW_MOD gives */
#define RAW_MAX ((size_t)(RAW_MOD - 1))
#define MAX_PIECES 3

static uint8_t *raw_a;   /* RAW_MAX bytes: the input's unpacking, at its end */
static uint8_t *raw_b;   /* RAW_MAX bytes: the re-packed input's unpacking, at its end */
static uint8_t *scratch; /* one piece: an lz4 piece decompressed here */

static void fuzz_init(void)
{
    raw_a = malloc(RAW_MAX);
    raw_b = malloc(RAW_MAX);
    scratch = malloc(STORE_WAL_PIECE);
    if (!raw_a || !raw_b || !scratch)
        abort(); /* cannot fuzz at all: say so loudly */
}

static size_t piece_raw_len(uint64_t raw_len, size_t i)
{
    uint64_t pos = (uint64_t)i * STORE_WAL_PIECE;
    return raw_len - pos < STORE_WAL_PIECE ? (size_t)(raw_len - pos) : STORE_WAL_PIECE;
}

/* Every piece of a successful unpack agrees with raw (raw_len bytes) and lies where it must. */
static void check_pieces(const uint8_t *packed, size_t plen, uint64_t raw_len,
                         const uint8_t *raw, const store_wal_piece_t *pieces, size_t npieces)
{
    for (size_t i = 0; i < npieces; i++) {
        size_t n = piece_raw_len(raw_len, i);
        const uint8_t *want = raw + i * STORE_WAL_PIECE;
        const store_wal_piece_t *p = &pieces[i];
        if (p->comp == STORE_COMP_NONE) {
            if (p->len != n || (n && (!p->data || memcmp(p->data, want, n) != 0)))
                abort();
        } else if (p->comp == STORE_COMP_LZ4) {
            /* inside the packed bytes, and worth keeping (store_chunk_seal_packed needs it) */
            uintptr_t at = (uintptr_t)p->data, lo = (uintptr_t)packed;
            if (!p->data || p->len == 0 || p->len >= n || at < lo || at - lo > plen ||
                p->len > plen - (at - lo))
                abort();
            int r = LZ4_decompress_safe((const char *)p->data, (char *)scratch, (int)p->len,
                                        (int)n);
            if (r < 0 || (size_t)r != n || memcmp(scratch, want, n) != 0)
                abort();
        } else {
            abort();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!raw_a)
        fuzz_init();
    if (size < 4)
        return 0;
    uint32_t claim = (uint32_t)data[0] | ((uint32_t)data[1] << 8) | ((uint32_t)data[2] << 16) |
                     ((uint32_t)data[3] << 24);
    uint64_t raw_len = claim % RAW_MOD;
    if (raw_len > RAW_CAP)
        return 0;
    size_t plen = size - 4;
    uint8_t *packed = malloc(plen ? plen : 1); /* exactly plen bytes */
    if (!packed)
        return 0;
    if (plen)
        memcpy(packed, data + 4, plen);
    size_t rsize = raw_len ? (size_t)raw_len : 1;
    uint8_t *raw = raw_a + RAW_MAX - rsize; /* a write past raw_len leaves the buffer */

    size_t npieces = store_wal_pieces(raw_len);
    if (npieces < 1 || npieces > MAX_PIECES - 1)
        abort(); /* 0 to 32 MiB: one or two pieces */
    store_wal_piece_t pieces[MAX_PIECES];
    memset(pieces, 0, sizeof pieces);
    bq_errbuf_t e = {{0}};
    int rc = store_wal_unpack(packed, plen, raw_len, raw, pieces, npieces, &e);
    if (rc != 0) {
        if (rc != BQ_E_INVAL || !e.msg[0] || !strstr(e.msg, "packed WAL file"))
            abort();
        free(packed);
        return 0;
    }
    if (pieces[npieces].comp != 0 || pieces[npieces].data || pieces[npieces].len)
        abort(); /* wrote past the pieces it was given */
    check_pieces(packed, plen, raw_len, raw, pieces, npieces);

    /* the sender's packing of the same bytes unpacks to them again */
    uint8_t *again = NULL;
    size_t alen = 0;
    if (store_wal_pack(raw, (size_t)raw_len, &again, &alen, &e) != 0)
        abort();
    uint8_t *raw2 = raw_b + RAW_MAX - rsize;
    store_wal_piece_t pieces2[MAX_PIECES];
    memset(pieces2, 0, sizeof pieces2);
    if (store_wal_unpack(again, alen, raw_len, raw2, pieces2, npieces, &e) != 0)
        abort();
    if (raw_len && memcmp(raw, raw2, (size_t)raw_len) != 0)
        abort();
    check_pieces(again, alen, raw_len, raw2, pieces2, npieces);
    free(again);
    free(packed);
    return 0;
}
