/* Pack files (docs/store.md, "Packs"): append-only files of records, each record one chunk
 * id and an opaque body. This module knows nothing of encryption or compression.
 *
 *   STORE/packs/XX/P.pack   P = pack id, 16 lowercase hex digits; XX = its low byte
 *
 * All integers little-endian.
 *   header (32): "BQPACK\0\0" ‖ format u32 (=1) ‖ flags u32 (=0) ‖ pack id u64 ‖
 *                crc32c of the previous 24 bytes u32 ‖ reserved u32 (=0)
 *   record:      magic u32 0x52514233 ‖ body_len u32 ‖ chunk id (32) ‖ body ‖
 *                crc32c u32 of (body_len ‖ id ‖ body)
 * A record's location is (pack id, offset of its magic, total length = 44 + body_len).
 *
 * Error messages about a pack start with "pack packs/XX/P.pack: " (the path relative to the
 * store, so callers add the store) and name the offset of the record at fault. Damage (bad magic,
 * length, crc, id, a truncated file, a missing pack) is BQ_E_IO.
 *
 * Writers are owned by one thread at a time; readers and scans are stateless and
 * thread-safe (each opens the pack, uses pread, closes it). */
#ifndef BQ_STORE_PACK_H
#define BQ_STORE_PACK_H

#include "err.h"

#include <stddef.h>
#include <stdint.h>

#ifndef STORE_CHUNK_ID_BYTES
#define STORE_CHUNK_ID_BYTES 32
#endif

#define STORE_PACK_FORMAT 1u
#define STORE_PACK_HEADER_LEN 32u
#define STORE_PACK_RECORD_MAGIC 0x52514233u     /* "3BQR" on disk */
#define STORE_PACK_RECORD_PREFIX 40u            /* magic ‖ body_len ‖ id */
#define STORE_PACK_RECORD_OVERHEAD 44u          /* prefix ‖ crc */
#define STORE_PACK_BODY_MAX ((16u << 20) + 4096u) /* a sealed chunk of up to 16 MiB plaintext */
#define STORE_PACK_REC_MAX (STORE_PACK_BODY_MAX + STORE_PACK_RECORD_OVERHEAD)
#define STORE_PACK_PATH_REL_MAX 32              /* "packs/XX/" 16 hex ".pack" + NUL */

/* crc32c (Castagnoli, reflected, as iSCSI/ext4): continue crc over data; start with 0.
 * Uses SSE4.2 when the CPU has it, a table otherwise. */
uint32_t store_pack_crc32c(uint32_t crc, const void *data, size_t len);

/* Path of pack id: "STORE/packs/XX/P.pack", or "packs/XX/P.pack" when store_dir is NULL.
 * Returns 0, or BQ_E_INVAL when it does not fit in len bytes (buf then holds ""). */
int store_pack_path(const char *store_dir, uint64_t pack_id, char *buf, size_t len);

/* ---- writing -------------------------------------------------------------------------- */

typedef struct store_pack_writer store_pack_writer_t;

/* Create pack pack_id (mkdir packs/XX as needed, 0700; the file 0600, O_EXCL) and write its
 * header. *out is the caller's; end it with store_pack_close. BQ_E_EXISTS if the pack
 * exists (a pack is never rewritten), BQ_E_IO, BQ_E_NOMEM, BQ_E_INVAL. */
int store_pack_create(const char *store_dir, uint64_t pack_id, store_pack_writer_t **out,
                      bq_errbuf_t *e);

/* Append one record (bytes may stay buffered in memory until the next sync or close).
 * *offset and *rec_len (either may be NULL) get the record's location. body may be NULL when
 * len is 0. BQ_E_INVAL for len > STORE_PACK_BODY_MAX; BQ_E_IO when a write fails, after
 * which the writer is unusable (every later call returns BQ_E_IO). */
int store_pack_append(store_pack_writer_t *w, const uint8_t id[STORE_CHUNK_ID_BYTES],
                      const void *body, size_t len, uint64_t *offset, uint32_t *rec_len,
                      bq_errbuf_t *e);

/* Bytes in the pack so far, header and buffered records included. */
uint64_t store_pack_size(const store_pack_writer_t *w);

/* Id of the pack being written. */
uint64_t store_pack_id(const store_pack_writer_t *w);

/* Write out buffered records and fsync the pack (and, the first time, packs/XX, packs/ and
 * the store directory, so the new file's name is durable too). Only after it returns 0 may
 * the caller index the records appended before it. A failed write or fsync is BQ_E_IO and
 * leaves the writer unusable: an fsync is never retried into a success (fsyncgate); the
 * caller abandons this pack and writes its chunks to a new one. */
int store_pack_sync(store_pack_writer_t *w, bq_errbuf_t *e);

/* Sync what is not yet synced (as store_pack_sync), close and free the writer, and null
 * *w_p. Accepts NULL and *w_p == NULL. Returns the sync's error, or the error that made the
 * writer unusable earlier; the writer is freed either way. The pack is never modified
 * after this. */
int store_pack_close(store_pack_writer_t **w_p, bq_errbuf_t *e);

/* Close and free without syncing (error paths: the pack is being abandoned). */
void store_pack_abandon(store_pack_writer_t **w_p);

/* ---- reading -------------------------------------------------------------------------- */

/* Read the record at (pack_id, offset, rec_len): check the pack header, the bounds (offset
 * past the header, body_len <= 16 MiB, offset + rec_len <= file size, rec_len matching the
 * stored body_len), the magic, the crc, and that the stored id equals expect_id when it is
 * not NULL. The stored id goes to id_out (may be NULL), the body to body_buf (cap bytes;
 * may be NULL when cap is 0) and its length to *body_len.
 * BQ_E_IO on damage or a missing pack, BQ_E_TOOBIG when the body does not fit cap. */
int store_pack_read(const char *store_dir, uint64_t pack_id, uint64_t offset, uint32_t rec_len,
                    const uint8_t *expect_id, uint8_t id_out[STORE_CHUNK_ID_BYTES],
                    void *body_buf, size_t cap, size_t *body_len, bq_errbuf_t *e);

/* Called for each valid record in order. id and body are borrowed for the call only.
 * Returning non-zero stops the scan, and scan returns that value. */
typedef int (*store_pack_scan_fn)(const uint8_t id[STORE_CHUNK_ID_BYTES], uint64_t offset,
                                  uint32_t rec_len, const void *body, size_t body_len,
                                  void *arg);

/* A reader's open pack, kept between store_pack_read_cached calls (one thread's). */
typedef struct {
    int fd;            /* -1: none */
    uint64_t pack_id;
    uint64_t size;     /* as last seen (re-read when a record seems to end past it) */
} store_pack_cache_t;
#define STORE_PACK_CACHE_INIT {-1, 0, 0}
/* store_pack_read, keeping the pack open in *pc for the next read of the same pack (records of
 * one backup are mostly read in pack order), and reading each record with one preadv. An error
 * closes the cached pack. pc NULL: store_pack_read. */
int store_pack_read_cached(store_pack_cache_t *pc, const char *store_dir, uint64_t pack_id,
                           uint64_t offset, uint32_t rec_len, const uint8_t *expect_id,
                           uint8_t id_out[STORE_CHUNK_ID_BYTES], void *body_buf, size_t cap,
                           size_t *body_len, bq_errbuf_t *e);
void store_pack_cache_close(store_pack_cache_t *pc);
/* Walk every record of pack_id in order, checking each as store_pack_read does. Stops at
 * the first damaged record with BQ_E_IO naming it; a file that ends inside a record (the
 * torn tail a crash leaves) is "truncated record at offset N". *good_end (may be NULL)
 * gets the offset just past the last good record: the file size when all is well,
 * STORE_PACK_HEADER_LEN when no record is good, 0 when the header itself is bad.
 * Memory: one buffer as large as the largest body seen. */
int store_pack_scan(const char *store_dir, uint64_t pack_id, store_pack_scan_fn fn, void *arg,
                    uint64_t *good_end, bq_errbuf_t *e);

/* fsync an existing pack file (index rebuild makes what it indexes durable first). */
int store_pack_file_sync(const char *store_dir, uint64_t pack_id, bq_errbuf_t *e);

/* Called for each pack id; non-zero stops the listing and is returned. */
typedef int (*store_pack_list_fn)(uint64_t pack_id, void *arg);

/* Every pack present under STORE/packs, in ascending id order (names that are not
 * packs/XX/P.pack with XX the low byte of P are ignored). No packs directory is no packs. */
int store_pack_list(const char *store_dir, store_pack_list_fn fn, void *arg, bq_errbuf_t *e);

#endif
