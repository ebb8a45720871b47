/* The store's WAL area (docs/store.md, "WAL area"): one sealed file per archived WAL file,
 * STORE/wal/CLUSTER/TLI/NAME, TLI being the first 8 hex digits of NAME (each cluster has its
 * own WAL names: two clusters' segment 000000010000000000000001 are different files). CLUSTER:
 * 1 to STORE_WAL_CLUSTER_MAX of [A-Za-z0-9._-], not starting with '.' (store_wal_cluster_valid;
 * every call refuses another with BQ_E_INVAL). All integers little-endian:
 *
 *     header (48 bytes): "BQWAL002" (8) ‖ content id (32) ‖ raw length u64
 *     pieces:            chunk id (32) ‖ body_len u32 ‖ sealed body (store/chunk.h)
 *
 * The plaintext is cut into pieces of STORE_WAL_PIECE bytes (the last one shorter; a file of 0
 * bytes is one empty piece), each sealed as a chunk whose id is the keyed hash of the piece
 * (store_chunk_ctx_id). The content id is the keyed hash of the whole plaintext: for a file of
 * one piece (a 16 MiB segment) the id of that piece, so archiving hashes it once. Files of the
 * first version, "BQWAL001", hold the sha256 of the plaintext there instead; they are read and
 * compared with as before, and never written again.
 *
 * Names accepted (PostgreSQL's, hex digits uppercase):
 *     segment   24 hex digits                      exactly the segment size
 *     partial   24 hex digits ".partial"           at most the segment size
 *     history   8 hex digits ".history"            at most STORE_WAL_SMALL_MAX bytes
 *     backup    24 hex ".", 8 hex ".backup"        at most STORE_WAL_SMALL_MAX bytes
 * The timeline (first 8 digits) is never 0. A segment size is a power of two from
 * STORE_WAL_SEG_MIN to STORE_WAL_SEG_MAX, PostgreSQL's wal_segment_size.
 *
 * Archive rule (PostgreSQL's archive_command; RELIABILITY.md): a name is written once. The
 * same content again is success; different content is BQ_E_EXISTS and the original is never
 * touched. A .partial follows the same rule (it is never replaced by a longer partial). */
#ifndef BQ_STORE_WAL_H
#define BQ_STORE_WAL_H

#include "chunk.h"
#include "err.h"
#include "store_keys.h"

#include <stddef.h>
#include <stdint.h>

#define STORE_WAL_MAGIC "BQWAL002"
#define STORE_WAL_MAGIC_V1 "BQWAL001"
#define STORE_WAL_HEADER_BYTES 48
#define STORE_WAL_PIECE_HEADER_BYTES 36 /* chunk id, body_len */
#define STORE_WAL_PIECE STORE_CHUNK_RAW_MAX
#define STORE_WAL_SHA256_BYTES 32
#define STORE_WAL_SEG_MIN ((size_t)1 << 20)
#define STORE_WAL_SEG_MAX ((size_t)1 << 30)
#define STORE_WAL_SMALL_MAX ((size_t)1 << 20) /* .history and .backup files */
#define STORE_WAL_NAME_MAX 72 /* longest name with its NUL, conflict files included */
#define STORE_WAL_CLUSTER_MAX 63

typedef enum {
    STORE_WAL_SEGMENT = 0,
    STORE_WAL_PARTIAL = 1,
    STORE_WAL_HISTORY = 2,
    STORE_WAL_BACKUP = 3,
} store_wal_kind_t;

/* 1 when c may name a cluster's WAL area. */
int store_wal_cluster_valid(const char *c);

/* Check a WAL file name (no length check): 0 with *kind and *tli (both may be NULL) filled, or
 * BQ_E_INVAL 'invalid WAL file name "NAME" (...)'. */
int store_wal_name_parse(const char *name, store_wal_kind_t *kind, uint32_t *tli, bq_errbuf_t *e);
/* Check a name and the length of its content for a server whose segment size is seg_size.
 * BQ_E_INVAL for a bad name, a bad seg_size, or a length its kind does not allow, naming it. */
int store_wal_check(const char *name, size_t seg_size, size_t len, bq_errbuf_t *e);

/* One piece of a WAL file as it came packed (store_wal_unpack): compressed (comp lz4, data
 * pointing into the packed bytes) or not (comp none, data: the raw piece). */
typedef struct {
    store_comp_t comp;
    const uint8_t *data;
    size_t len;
} store_wal_piece_t;

/* How many pieces a file of raw_len bytes has (1 for an empty file). */
size_t store_wal_pieces(uint64_t raw_len);

/* A WAL file packed for the wire (wal-push to a data port): piece by piece as stored, each
 * "u32 LE frame ‖ payload", bit 31 of the frame set when the payload is the piece compressed
 * with lz4 (kept only when it shrinks), the other bits the payload's length; nothing after the
 * last piece. The receiver stores the compressed pieces as they are (store_wal_put's packed),
 * so the bytes are compressed once, by the sender. A new buffer in *out (caller frees). */
int store_wal_pack(const void *data, size_t len, uint8_t **out, size_t *out_len, bq_errbuf_t *e);
/* Check packed bytes (plen, hostile) of a file of raw_len bytes and unpack them into raw
 * (raw_len bytes, at least 1), filling pieces[0..npieces) (npieces = store_wal_pieces(raw_len))
 * with what store_wal_put stores. BQ_E_INVAL "packed WAL file: ..." for any frame that does
 * not fit, does not decompress to its piece's length, or bytes left over. */
int store_wal_unpack(const uint8_t *packed, size_t plen, uint64_t raw_len, uint8_t *raw,
                     store_wal_piece_t *pieces, size_t npieces, bq_errbuf_t *e);

/* Archive len bytes of WAL file name of cluster into store_dir/wal/CLUSTER/TLI/NAME, sealed under data key dk with
 * compression comp at level (as store_chunk_seal), durably (the file, wal/CLUSTER/TLI/, wal/CLUSTER/, wal/ and
 * store_dir are fsynced) before returning 0. ctx is the caller's (one per thread).
 *   - name or len not valid for seg_size (store_wal_check): BQ_E_INVAL, nothing written;
 *   - the name is stored with the same content (its content id, or sha256 for a BQWAL001 file):
 *     the stored file and its directories are fsynced again and 0 is returned (PostgreSQL
 *     archiving the same segment twice);
 *   - stored with other content: the new content goes durably to
 *     wal/CLUSTER/TLI/NAME.conflict-<first 16 hex digits of its content id> (kept for the
 *     operator) and BQ_E_EXISTS names the file and both digests; the stored file is never
 *     touched;
 *   - a stored file whose header is damaged: BQ_E_IO naming it, nothing written;
 *   - BQ_E_IO for any write or fsync failure (never retried), BQ_E_NOMEM.
 * packed (may be NULL): the pieces of data as store_wal_unpack gave them; a compressed one is
 * sealed as it is (when comp is not none) instead of being compressed again. */
int store_wal_put(const char *store_dir, const char *cluster, store_chunk_ctx_t *ctx,
                  const store_datakey_t *dk, store_comp_t comp, int level, size_t seg_size,
                  const char *name, const void *data, size_t len,
                  const store_wal_piece_t *packed, bq_errbuf_t *e);

/* Give the data key whose id is key_id into *out: 0, or a negative BQ_E_ code with e filled. */
typedef int (*store_wal_key_fn)(void *arg, uint32_t key_id, store_datakey_t *out,
                                bq_errbuf_t *e);

/* Read WAL file name from store_dir into buf (cap bytes); *len receives its length. Every
 * piece is authenticated and its id re-hashed, and the sha256 of the whole checked.
 *   - BQ_E_NOTFOUND exactly when store_dir/wal/CLUSTER/TLI/NAME does not exist (restore_command's
 *     "not archived"); never for anything else;
 *   - BQ_E_INVAL for a bad name; BQ_E_TOOBIG when the file holds more than cap bytes;
 *   - BQ_E_KEY when key_lookup fails (its message; its BQ_E_NOTFOUND becomes BQ_E_KEY);
 *   - BQ_E_IO naming the file for any damage (bad magic, truncation, trailing bytes, a piece
 *     that does not open, e.g. under a wrong data key, a content id or sha256 that differs)
 *     or read error.
 * On failure buf holds nothing useful. The file is treated as hostile: every length is bounded
 * before use; memory used is one piece (16 MiB) besides buf. */
int store_wal_get(const char *store_dir, const char *cluster, store_chunk_ctx_t *ctx, store_wal_key_fn key_lookup,
                  void *arg, const char *name, void *buf, size_t cap, size_t *len,
                  bq_errbuf_t *e);

/* The length, format version (1 or 2) and digest (version 1: sha256; 2: the content id) of a
 * stored WAL file, each may be NULL, from its header only (not authenticated: store_wal_get
 * checks them). BQ_E_NOTFOUND when absent, BQ_E_IO when damaged. */
int store_wal_stat(const char *store_dir, const char *cluster, const char *name, uint64_t *len,
                   int *version, uint8_t digest[STORE_WAL_SHA256_BYTES], bq_errbuf_t *e);

/* Remove WAL file name (retention): unlinked, its timeline directory fsynced; *bytes (may be
 * NULL) gets the stored file's size. BQ_E_NOTFOUND when absent, BQ_E_INVAL for a bad name,
 * BQ_E_IO. Conflict files are never removed by it. */
int store_wal_remove(const char *store_dir, const char *cluster, const char *name,
                     uint64_t *bytes, bq_errbuf_t *e);

/* Called once per file; a non-zero return stops the listing and is returned by it. */
typedef int (*store_wal_list_fn)(uint32_t tli, const char *name, void *arg);

/* Every stored WAL file, timeline by timeline (ascending), in name order within each. Temp
 * files, conflict files and names that are not WAL file names of their timeline's directory
 * are skipped. A missing wal/ is an empty list. Memory: the names of one timeline. BQ_E_IO
 * when a directory cannot be read. */
int store_wal_list(const char *store_dir, const char *cluster, store_wal_list_fn fn, void *arg,
                   bq_errbuf_t *e);
/* The same for the conflict files only (NAME.conflict-<16 hex>), for verify and the operator:
 * name is the whole file name. */
int store_wal_conflicts(const char *store_dir, const char *cluster, store_wal_list_fn fn,
                        void *arg, bq_errbuf_t *e);

/* The clusters with a WAL area (directories of store_dir/wal/ with a valid name), in name
 * order. A non-zero return of fn stops the listing and is returned. */
typedef int (*store_wal_cluster_fn)(const char *cluster, void *arg);
int store_wal_clusters(const char *store_dir, store_wal_cluster_fn fn, void *arg, bq_errbuf_t *e);

#endif
