/* A worker's store at its site (docs/store.md): the directory, its configuration and lock, and
 * the backup writer and reader that tie chunks, packs, the index and manifests together.
 * Knows nothing of ZeroMQ or PostgreSQL.
 *
 * Threads: one store_t may be shared by the threads of a process (the index is thread-safe and
 * the rest of store_t is read-only after store_open). A backup writer, a read and a stats walk
 * are each owned by one thread. Not usable after fork. */
#ifndef BQ_STORE_H
#define BQ_STORE_H

#include "chunk.h"
#include "err.h"
#include "store_keys.h"
#include "wal.h"

#include <stddef.h>
#include <stdint.h>

#define BQ_STORE_FORMAT 1

#define STORE_CHUNK_SIZE_DEFAULT 65536u     /* a multiple of 8 KiB: chunks are page-aligned */
#define STORE_CHUNK_SIZE_ALIGN 8192u
#define STORE_PACK_TARGET ((uint64_t)64 << 20) /* a pack is synced and sealed past this size */
#define STORE_LEVEL_DEFAULT 3

/* Create dir (0700) and its format marker if absent; refuse a directory whose marker names
 * another format or is damaged. */
int store_init(const char *dir, bq_errbuf_t *e);
/* Free and total bytes of the filesystem holding the store. */
int store_space(const char *dir, uint64_t *free_bytes, uint64_t *total_bytes, bq_errbuf_t *e);

/* ---- the store ---------------------------------------------------------------------------- */

/* What store_create writes into store.conf. */
typedef struct {
    uint32_t chunk_size; /* 8 KiB .. 16 MiB, a multiple of 8 KiB; 0: 64 KiB */
    store_comp_t comp;   /* compression of new chunks */
    int level;           /* zstd level (ZSTD_minCLevel..ZSTD_maxCLevel, 0: 3), lz4
                            acceleration (0..65537, 0: default); 0 for none */
} store_opts_t;

typedef struct store store_t;

/* Make a new store in dir: store_init (marker), keys/, backups/, an empty lock file, the index
 * (opened once, so that it exists before the first pack), and last store.conf, durably:
 *     format=1 / chunk_size=N / compression=NAME / level=N / id_key=HEX(72 wrapped bytes)
 * with the id key wrapped under master. The id key is derived from master (keyed BLAKE2b of
 * "barque id key 1"), so every store made under one master key has the same one: their chunk
 * ids agree and backups copied between them dedup (store_id_key_same). store.conf is written
 * last, so a store whose creation was interrupted can be created again. opts may be NULL
 * (64 KiB chunks, zstd level 3). BQ_E_EXISTS when dir already has store.conf, BQ_E_INVAL for bad opts, the errors
 * of store_init, BQ_E_IO. */
int store_create(const char *dir, const store_master_t *master, const store_opts_t *opts,
                 bq_errbuf_t *e);

/* Open the store in dir (once per process: its threads share the store_t; LMDB must not
 * open the index twice in one process): checks the marker, takes a shared flock on DIR/lock (BQ_E_STATE when
 * it is held exclusively: GC, delete and rotate-key take it exclusive; taken first, so that
 * store.conf is read under it), checks store.conf (BQ_E_NOTFOUND when the marker or it is
 * absent, BQ_E_STATE "store config DIR/store.conf is damaged: line N: WHY", BQ_E_VERSION),
 * unwraps the id key (BQ_E_KEY "wrong store key for DIR (the key in M does not open the id key
 * in store.conf)" — refused before any byte is written), and opens the index (its errors: a damaged or lost index is BQ_E_IO). master is copied (to open
 * data keys), wiped at close. *out is the caller's: store_close. */
int store_open(const char *dir, const store_master_t *master, store_t **out, bq_errbuf_t *e);
/* Close the index, release the lock, wipe the keys, free. Accepts NULL and *s_p == NULL; nulls
 * *s_p. No backup writer or read of this store may be running. */
void store_close(store_t **s_p);
/* The store's directory and chunk size (borrowed / plain). */
const char *store_dir(const store_t *s);
uint32_t store_chunk_size(const store_t *s);

/* Threads a backup writer of s uses for hashing and sealing (store/crew.h), counting the
 * caller: 0 (the default) means one per online CPU, at most 16. Set it before writers start. */
void store_set_threads(store_t *s, unsigned n);

/* ---- writing a backup --------------------------------------------------------------------- */

typedef struct store_backup store_backup_t;

typedef struct {
    uint64_t files;         /* files written */
    uint64_t logical_bytes; /* bytes of those files */
    uint64_t chunks;        /* chunk references (all files) */
    uint64_t new_chunks;    /* chunks sealed and appended to a pack by this backup */
    uint64_t new_bytes;     /* pack bytes of those records */
    uint64_t dedup_chunks;  /* references to chunks already stored (or written earlier by
                               this backup): no compression or encryption work */
    uint64_t dedup_bytes;   /* plaintext bytes of those references */
    uint64_t delta_chunks;  /* of new_chunks: sealed as deltas against the base backup's */
    uint64_t delta_bytes;   /* pack bytes of those records */
    uint64_t base_errors;   /* base chunks that could not be read (those chunks stored whole) */
} store_backup_stats_t;

/* Start backup backup_id (1..64 of [A-Za-z0-9._-], not starting with '.'): a new data key
 * (keys/K.datakey), a session (store/session.h: what GC must not remove), its crew of
 * threads, and the temp manifest; its pack (fresh random id) is created with its first new
 * chunk. BQ_E_INVAL for a bad id, BQ_E_EXISTS when the backup already has a manifest,
 * BQ_E_IO, BQ_E_NOMEM. *out is the caller's: end it with store_backup_commit or
 * store_backup_abort. s must outlive it.
 *
 * Data is gathered into batches of about 4 MiB of chunks, processed when full (and at a
 * META, at commit): the crew hashes the chunks (ids);
 * each id is looked up among the batch, the chunks this writer appended since its last pack
 * sync, and the index: a known chunk is only referenced (no compression or encryption work).
 * New chunks are sealed by the crew and appended in order; their index entries are put only
 * after store_pack_sync returned 0 (when the pack passes STORE_PACK_TARGET, and at commit).
 * So an error may surface at a later call than the data that caused it. Any failure leaves
 * the writer unusable (every later call is BQ_E_STATE) and only store_backup_abort
 * remains. Memory: two buffers of chunk size per batch slot (about 8 MiB at 64 KiB chunks). */
int store_backup_begin(store_t *s, const char *backup_id, store_backup_t **out, bq_errbuf_t *e);
/* Start a file (path as store/manifest.h requires: relative, canonical; BQ_E_INVAL otherwise,
 * the writer stays usable). BQ_E_STATE when a file is open. */
int store_backup_file_begin(store_backup_t *bw, const char *path, uint32_t mode, int64_t mtime,
                            bq_errbuf_t *e);
/* Let new chunks be stored as deltas (docs/store.md, "Deltas") against the chunks of
 * backup base_id of this store: a new chunk at the same place (path, chunk number) as a
 * chunk of the base is compressed against it (or against that chunk's own base), and kept
 * as a delta when that is at least 1/8 smaller. Call it before the first file. Memory: 16
 * bytes per file of the base. BQ_E_NOTFOUND when the store has no such backup; BQ_E_IO,
 * BQ_E_KEY when its manifest cannot be read (the writer goes on without a base after any
 * error); BQ_E_STATE after the first file. */
int store_backup_set_base(store_backup_t *bw, const char *base_id, bq_errbuf_t *e);
/* Stream len bytes of the open file (any len; cut into chunk_size chunks, so relation files
 * stay page-aligned; the file's checksum is the sha256 of its chunk ids). data is
 * borrowed for the call. BQ_E_STATE outside a file, BQ_E_IO, BQ_E_MAPFULL, BQ_E_NOMEM. */
int store_backup_file_write(store_backup_t *bw, const void *data, size_t len, bq_errbuf_t *e);
/* End the open file: its last partial chunk, then size and checksum into the manifest. */
int store_backup_file_end(store_backup_t *bw, bq_errbuf_t *e);
/* Opaque metadata key (1..255 bytes, no NUL) -> len bytes (at most 64 MiB), outside a file. */
int store_backup_meta(store_backup_t *bw, const char *key, const void *val, size_t len,
                      bq_errbuf_t *e);
/* Finish, in this order: pack sync, index put of the new chunks, manifest commit (last: a
 * backup exists only once its manifest does). Takes *bw in every case and nulls it; stats
 * (may be NULL) are filled on success. On failure no manifest appears; chunks already in
 * packs are orphans that GC reclaims. BQ_E_STATE when a file is still open or the writer
 * failed earlier, BQ_E_EXISTS when another writer committed the same id first, BQ_E_IO. */
int store_backup_commit(store_backup_t **bw, store_backup_stats_t *stats, bq_errbuf_t *e);
/* Abandon: the temp manifest is removed, the pack closed without sync; its chunks (and the
 * data key file) are orphans for GC. Accepts NULL and *bw == NULL; nulls *bw. */
void store_backup_abort(store_backup_t **bw);

/* ---- reading ------------------------------------------------------------------------------ */

/* Called with each backup id, ascending (strcmp); non-zero stops the listing and is returned. */
typedef int (*store_backup_list_fn)(const char *backup_id, void *arg);
/* Every backup that has a manifest (temp manifests are not backups). */
int store_backup_list(store_t *s, store_backup_list_fn fn, void *arg, bq_errbuf_t *e);

/* Delete backup backup_id: unlink backups/ID.manifest and fsync backups/, so the deletion is
 * durable when this returns 0. Its chunks stay until a GC (store_gc_run) finds no other
 * manifest referencing them; its data key file is kept (docs/store.md, "GC"). A reader that
 * already opened the manifest reads on (until GC reclaims its chunks: delete only a backup
 * nothing reads); a GC marking at the same moment skips it, like a manifest removed by hand.
 * BQ_E_INVAL for a bad id, BQ_E_NOTFOUND "backup B does not exist in store DIR" when it has no
 * manifest (a temp manifest of a running writer is not a backup and is left alone), BQ_E_IO. */
int store_backup_delete(store_t *s, const char *backup_id, bq_errbuf_t *e);

/* A backup's figures as the worker that took it reported them (the worker stores its Backup
 * message: sizes, times, the job), in backups/ID.info beside its manifest (written durably after the
 * commit; removed by store_backup_delete). Not authenticated: only what the catalog shows
 * comes from it (--rebuild-catalog), never what a restore trusts. get: at most cap - 1
 * bytes (and a NUL after them); BQ_E_NOTFOUND when the backup has none. */
#define STORE_BACKUP_INFO_MAX 8192

/* barque keep, kept beside the manifest (backups/ID.keep: "full" or "standalone"), so that
 * a catalog rebuilt from the store keeps it too. set: keep 1 full, 2 standalone, 0 release
 * (durable); BQ_E_NOTFOUND when the store lacks the backup. get: *keep 0 when there is none. */
int store_backup_keep_set(store_t *s, const char *backup_id, int keep, bq_errbuf_t *e);
int store_backup_keep_get(store_t *s, const char *backup_id, int *keep, bq_errbuf_t *e);
int store_backup_info_put(store_t *s, const char *backup_id, const void *text, size_t len,
                          bq_errbuf_t *e);
int store_backup_info_get(store_t *s, const char *backup_id, char *buf, size_t cap, size_t *len,
                          bq_errbuf_t *e);

/* file_begin may return this to skip the file: its chunks are not read and its file_end is
 * not called (a delta restore skips files that are already right). */
#define STORE_READ_SKIP 1

/* Callbacks of store_backup_read; any may be NULL. Pointers are borrowed for the call. A
 * callback returning non-zero stops the read, which returns that value (a negative BQ_E code
 * with e filled, by convention). The size and checksum of a file are known only at its end
 * (manifest format), so file_end carries them, after they were checked. Data given before an
 * error is unverified: a restore that gets an error fails as a whole. */
typedef struct {
    int (*meta)(void *arg, const char *key, const void *val, size_t len, bq_errbuf_t *e);
    int (*file_begin)(void *arg, const char *path, uint32_t mode, int64_t mtime, bq_errbuf_t *e);
    int (*data)(void *arg, const void *buf, size_t len, bq_errbuf_t *e); /* one chunk */
    int (*file_end)(void *arg, const char *path, uint64_t size, const uint8_t checksum[32],
                    bq_errbuf_t *e);
    /* store_backup_walk only: the open file's chunk ids, n of them (32 bytes each), in order,
     * in one or more calls. */
    int (*chunks)(void *arg, const uint8_t *ids, size_t n, bq_errbuf_t *e);
} store_read_cb_t;

/* Read backup backup_id: each chunk is looked up in the index, read from its pack (the id
 * checked), opened with the data key its header names (loaded from keys/ and cached), and
 * given to cb->data; each file's size and checksum (sha256 of its chunk ids, each re-hashed
 * from the data) are checked at its end. Memory: one chunk
 * buffer and the key cache. BQ_E_NOTFOUND when the backup does not exist, BQ_E_KEY when a key
 * does not open, BQ_E_IO "backup B in store DIR: file F: chunk ID: WHY" (WHY from the index,
 * the pack or the chunk: it names the pack and offset) for a missing or damaged chunk, and
 * "backup B in store DIR: file F is damaged: WHY" for a size or checksum that does not match. */
int store_backup_read(store_t *s, const char *backup_id, const store_read_cb_t *cb, void *arg,
                      bq_errbuf_t *e);

/* The checksum a backup of s would record for the file open at fd (read from its current
 * offset to its end): the sha256 of its chunk ids; *size (may be NULL) gets its length. A
 * delta restore compares it with the manifest's. BQ_E_IO naming the reason, BQ_E_NOMEM. */
int store_file_checksum(store_t *s, int fd, uint64_t *size, uint8_t out[32], bq_errbuf_t *e);

/* Walk backup backup_id's manifest only: meta, file_begin, chunks (the ids) and file_end
 * (size and checksum as the manifest says them, not checked against chunks) in order; data is
 * never called and no chunk is read. For listings and for the facts a restore needs before it writes. Errors as
 * store_backup_read's manifest errors. */
int store_backup_walk(store_t *s, const char *backup_id, const store_read_cb_t *cb, void *arg,
                      bq_errbuf_t *e);

/* A chunk reader for one thread (a parallel restore reads the chunks a walk listed): the
 * chunk context, the data keys it loaded (cached, bounded) and one chunk buffer. *out is the
 * caller's: store_reader_destroy. BQ_E_NOMEM. */
typedef struct store_reader store_reader_t;
int store_reader_new(store_t *s, store_reader_t **out, bq_errbuf_t *e);
void store_reader_destroy(store_reader_t **self_p);
/* Chunk id's plaintext, checked (AEAD tag, re-hashed to its id): *data is the reader's, valid
 * until its next call. BQ_E_IO "chunk ID: WHY" for a missing or damaged chunk, BQ_E_KEY for a
 * data key that does not open, BQ_E_NOMEM. A chunk a GC moved meanwhile is found again. */
int store_reader_chunk(store_reader_t *r, const uint8_t id[STORE_CHUNK_ID_BYTES],
                       const uint8_t **data, size_t *len, bq_errbuf_t *e);
/* Chunk id's sealed body as stored (still compressed and encrypted, unchecked but for its
 * pack record's crc): *body is the reader's, valid until its next call. What a peer is sent.
 * BQ_E_IO "chunk ID: not in the index" (or damaged record), BQ_E_NOMEM. */
int store_reader_sealed(store_reader_t *r, const uint8_t id[STORE_CHUNK_ID_BYTES],
                        const uint8_t **body, size_t *len, bq_errbuf_t *e);
/* Open a sealed body that came from elsewhere (a peer's store) as chunk id: the tag checked
 * under the data key it names (from this store's keys/), decompressed, re-hashed to id with
 * this store's id key. A delta body (store_chunk_body_base) needs the sealed body of its
 * base, from the same place (base_body, base_len; NULL when the body is no delta: then the
 * base is read from this store). where names its origin in messages ("from worker
 * east-1"). *data is the reader's, valid until its next call. BQ_E_IO "chunk ID: WHY",
 * BQ_E_KEY, BQ_E_NOMEM. */
int store_reader_open(store_reader_t *r, const uint8_t id[STORE_CHUNK_ID_BYTES],
                      const uint8_t *body, size_t len, const uint8_t *base_body,
                      size_t base_len, const char *where, const uint8_t **data, size_t *dlen,
                      bq_errbuf_t *e);

/* ---- a store served to peers, and a view of a peer's store (store/export.c) ------------- */

/* Whether name is a store file a peer may read: "store.conf", "keys/XXXXXXXX.datakey"
 * (8 lowercase hex digits), "backups/ID.manifest" (ID: 1..64 of [A-Za-z0-9._-], not starting
 * with '.'). */
int store_export_name_valid(const char *name);
/* Read at most cap bytes of store file name from offset: *n bytes into buf, *total the file's
 * size. BQ_E_INVAL for a name store_export_name_valid refuses, BQ_E_NOTFOUND when absent,
 * BQ_E_IO. */
int store_export_read(store_t *s, const char *name, uint64_t offset, uint8_t *buf, size_t cap,
                      size_t *n, uint64_t *total, bq_errbuf_t *e);
/* Make dir (which must not exist; its parent must) a view of a peer's store: the format
 * marker, keys/, backups/ and conf (the peer's store.conf, len bytes) so that store_open with
 * the deployment's master key opens it (its id key is the peer's). Its files come with
 * store_view_put; its chunks from the peer (store_reader_open). BQ_E_EXISTS, BQ_E_IO. */
int store_view_create(const char *dir, const void *conf, size_t len, bq_errbuf_t *e);
/* Write len bytes at offset of view file name (a name store_export_name_valid accepts but
 * store.conf); offset 0 creates the file, a later offset must be its size (pieces in order).
 * Not synced: a view is scratch. BQ_E_INVAL, BQ_E_IO. */
int store_view_put(const char *dir, const char *name, uint64_t offset, const void *data,
                   size_t len, bq_errbuf_t *e);
/* Remove view dir and everything in it (absent: success). BQ_E_IO. */
int store_view_remove(const char *dir, bq_errbuf_t *e);

typedef struct {
    uint64_t backups;       /* manifests */
    uint64_t chunks;        /* index entries */
    uint64_t stored_bytes;  /* sum of the pack file sizes */
    uint64_t logical_bytes; /* sum over every backup of its file sizes */
    double dedup_ratio;     /* logical_bytes / stored_bytes (0 when nothing is stored) */
} store_stats_t;

/* Figures of the whole store; streams every manifest (bounded memory). Errors of the index,
 * the packs' directory and the manifests (BQ_E_IO, BQ_E_KEY). */
int store_stats(store_t *s, store_stats_t *st, bq_errbuf_t *e);

/* ---- verify (store/verify.c) -------------------------------------------------------------- */

/* What a verify event is about. Every kind but STORE_VERIFY_WAL_CONFLICT and
 * STORE_VERIFY_PACK_TORN is a problem; those two are warnings: the stored WAL file is intact
 * (the other content is kept beside it), and a torn pack tail holds nothing any index entry
 * or backup refers to. */
typedef enum {
    STORE_VERIFY_PACK_DAMAGED = 1,  /* a pack's scan stopped at a bad record (crc, magic,
                                       length, truncation) or its header is bad */
    STORE_VERIFY_CHUNK_DAMAGED = 2, /* a record that does not open (tag, id, key), or an
                                       indexed record in a damaged pack that cannot be read */
    STORE_VERIFY_CHUNK_MISSING = 3, /* a chunk a backup needs that the index lacks, or whose
                                       index entry is dangling */
    STORE_VERIFY_INDEX_DANGLING = 4,    /* an index entry whose pack or record is not there */
    STORE_VERIFY_MANIFEST_DAMAGED = 5,  /* a manifest that does not open or read to its END */
    STORE_VERIFY_WAL_DAMAGED = 6,       /* a WAL file that store_wal_get refuses */
    STORE_VERIFY_WAL_CONFLICT = 7,      /* a NAME.conflict-* file (warning) */
    STORE_VERIFY_PACK_TORN = 8,         /* a pack whose unfinished tail no index entry refers
                                           to: a killed or running writer (warning; GC reclaims) */
} store_verify_kind_t;

/* One problem. Fields that do not apply are NULL (strings) or has_pack == 0. All pointers are
 * borrowed for the callback only. CHUNK_DAMAGED and CHUNK_MISSING events come once for the
 * chunk itself when the packs or the index show it (backup_id NULL), and once for every
 * (backup, file) that references it (backup_id and path set). */
typedef struct {
    store_verify_kind_t kind;
    int has_pack;            /* pack and offset are set */
    uint64_t pack;           /* pack id */
    uint64_t offset;         /* record offset in the pack (where a scan stopped) */
    const char *chunk;       /* chunk id, 64 lowercase hex digits */
    const char *backup_id;   /* the backup concerned */
    const char *path;        /* the file of that backup */
    const char *wal;         /* the WAL file name (a conflict: the conflict file's name) */
    const char *message;     /* what is wrong, as an error message says it */
} store_verify_event_t;

/* Called once per event; non-zero stops the verify, which returns that value. */
typedef int (*store_verify_fn)(const store_verify_event_t *ev, void *arg);

typedef struct {
    uint64_t packs;      /* packs scanned */
    uint64_t records;    /* pack records read (crc) and opened (tag, id) */
    uint64_t chunks;     /* index entries */
    uint64_t chunk_refs; /* chunk references in manifests, each checked against the index */
    uint64_t backups;    /* manifests read */
    uint64_t files;      /* files in those manifests */
    uint64_t wal_files;  /* WAL files read and checked */
    uint64_t problems;   /* events other than warnings */
    uint64_t warnings;   /* WAL conflict files */
} store_verify_stats_t;

/* Check the whole store s (opened, so holding the shared lock), streaming: (1) every pack:
 * every record's crc, and every record opened with its data key (tag, re-hash to its id);
 * (2) every index entry points at a good record of that id in a pack that exists; (3) every
 * manifest read to its END, and every chunk it references is in the index and good; (4)
 * every WAL file read back (store_wal_get), and WAL conflict files listed as warnings.
 * Problems go to fn (may be NULL) as they are found; a damaged or missing chunk is reported
 * with every backup and file that references it. Memory: a few chunk buffers, the largest
 * WAL file, one timeline's WAL names, and per damage found (the damaged chunks' ids, the
 * damaged packs' offsets): not the size of the store. st (may be NULL) gets the figures.
 * Returns 0 when all is well (warnings allowed), BQ_E_IO "store DIR: N problems found
 * (first: WHY)" when any problem was found; BQ_E_NOMEM, BQ_E_IO when a directory or the index
 * cannot be read; fn's non-zero value. */
int store_verify(store_t *s, store_verify_fn fn, void *arg, store_verify_stats_t *st,
                 bq_errbuf_t *e);
/* "pack damaged", "chunk damaged", ...: the kind for messages. */
const char *store_verify_kind_name(store_verify_kind_t kind);

/* Internals for the store's own modules (verify, GC): the index (borrowed from s), a chunk
 * context under the store's id key (*out the caller's: store_chunk_ctx_destroy), and data key
 * id loaded under the store's master key (wipe *out with store_datakey_clear). */
struct store_index *store_index_handle(store_t *s);
int store_chunk_ctx_for(store_t *s, store_chunk_ctx_t **out, bq_errbuf_t *e);
int store_datakey_get(store_t *s, uint32_t id, store_datakey_t *out, bq_errbuf_t *e);

/* ---- master key rotation (store/rotate.c) ------------------------------------------------- */

typedef struct {
    uint64_t data_keys;           /* data key files in keys/ (backups and WAL days) */
    uint64_t data_keys_rewrapped; /* of those, re-wrapped by this run (the others were already
                                     under the new key: an interrupted rotation run again) */
    int id_key_rewrapped;         /* 1 when this run rewrote the id key in store.conf */
} store_rotate_stats_t;

/* Re-wrap every key of the store in dir from master key old_m to new_m (docs/store.md, "Keys"):
 * each keys/K.datakey (store_keys_rewrap), then last the id key in store.conf (rewritten
 * durably, every other line kept byte for byte). Packs, manifests, WAL files and the index are
 * never touched: only wrapped keys change, so no chunk is rewritten.
 *
 * Takes dir/lock exclusively without waiting: BQ_E_STATE "store DIR is in use" when any
 * store_open (a backup, WAL archiving, a reader) or another GC/rotation holds it.
 *
 * Before anything is written, the id key must open under old_m or new_m, and so must every data
 * key file: otherwise BQ_E_KEY naming the file and both key files, and nothing is changed.
 * old_m and new_m holding the same key is BQ_E_INVAL.
 *
 * Interrupted (crash, kill, I/O error) part way, the store is consistent but mixed: store.conf
 * still holds the id key under old_m, some data key files are under new_m. Then store_open
 * with old_m succeeds, but reading anything sealed with an already re-wrapped data key fails
 * with BQ_E_KEY "wrong store key for DIR (the key in OLD does not open keys/K.datakey)"; new
 * backups written meanwhile get data keys under old_m, which a later run re-wraps too.
 * store_open with new_m is refused (BQ_E_KEY on the id key) before any byte is written. No
 * read or write in that state damages anything: running store_rotate_key again with the same
 * (old_m, new_m) finishes the job (files already under new_m are skipped). Running it on a
 * store that is fully rotated is a success that changes nothing.
 *
 * st (may be NULL) receives the figures. Other errors: BQ_E_NOTFOUND when dir has no
 * store.conf, BQ_E_STATE for a damaged store.conf, BQ_E_IO. */
int store_rotate_key(const char *dir, const store_master_t *old_m, const store_master_t *new_m,
                     store_rotate_stats_t *st, bq_errbuf_t *e);

/* ---- garbage collection (store/gc.c) ------------------------------------------------------ */

#define STORE_GC_REPACK_BELOW 0.5 /* default: repack a pack whose live bytes are below half */

typedef struct {
    double repack_below; /* repack a pack when live bytes / pack bytes is below this (0..1);
                            0: STORE_GC_REPACK_BELOW; a negative value: never repack */
} store_gc_opts_t;

typedef struct {
    uint64_t backups;          /* manifests read (mark) */
    uint64_t live_chunks;      /* distinct chunk ids the manifests reference, with bases */
    uint64_t bases_kept;       /* of those: bases of live deltas no manifest references */
    uint64_t chunks_removed;   /* index entries of chunks no manifest references, deleted */
    uint64_t packs;            /* packs present when the sweep started */
    uint64_t packs_deleted;    /* packs with nothing live (unreferenced, torn), removed */
    uint64_t packs_repacked;   /* sparse packs whose live records were copied, then removed */
    uint64_t packs_written;    /* new packs the repacking wrote */
    uint64_t records_moved;    /* live records copied by the repacking */
    uint64_t bytes_reclaimed;  /* bytes of the removed packs minus bytes of the new ones */
    uint64_t temp_manifests;   /* backups/ID.manifest.tmp.* files removed */
    uint64_t packs_skipped;    /* sparse packs left alone because their scan found damage */
    uint64_t sessions_live;    /* backup writers at work when the index was swept */
    uint64_t sessions_reaped;  /* notes of writers that died, removed */
} store_gc_stats_t;

/* Collect the garbage of the store in dir (docs/store.md, "GC"), beside running backup
 * writers, WAL puts and readers. Opens the store with master (store_open's checks and
 * errors), then takes STORE/gc.lock exclusively without waiting: BQ_E_STATE "store DIR: a GC
 * or a verify is running; GC not run" otherwise. What makes it safe beside writers is their
 * sessions (store/session.h): every chunk a writer relies on and every pack it creates is
 * noted before it relies on it, and GC reads those notes while it holds refs.lock exclusively.
 *
 * Steps, each leaving a store that verifies clean when interrupted:
 *   1. remove backups/ID.manifest.tmp.S whose session S is dead (writers that died);
 *   2. mark: read every manifest to its END; the chunk ids they reference are the live set
 *      (memory: a hash set of the 32-byte ids kept at most half full, 66..132 bytes per
 *      live chunk: about 1 GiB for 10 million chunks, 640 GB at 64 KiB; plus 32 bytes per
 *      pack holding live chunks). A manifest that does not read (damage, a missing or wrong
 *      data key) stops GC before anything is deleted;
 *   3. holding refs.lock exclusively (writers wait at their next lookup, for as long as this
 *      step takes: about a second per million index entries): list the packs; add the live
 *      sessions' noted chunks to the live set and their packs to a busy set; mark the
 *      manifests committed since step 2; add the base of every live delta (bases_kept);
 *      delete the index entries of chunks outside the live set (chunks_removed); remove the notes of dead sessions;
 *   4. sweep every pack listed in step 3 but the busy ones: a pack no index entry points into
 *      (all dead, torn by a killed writer, or left by an interrupted repack) is unlinked, then
 *      its directory fsynced; a pack whose live bytes are below repack_below of its size has
 *      its live records copied as they are (sealed bodies, no re-encryption) into a new pack,
 *      which is fsynced before the index is pointed at the copies, and only then is the old
 *      pack unlinked (a reader that finds the old pack gone looks the chunk up again). A
 *      sparse pack whose scan finds damage is left alone (verify reports it).
 * Data key files are never deleted (manifests and WAL files use them; each is 72 bytes), nor
 * is anything in the WAL area. opts may be NULL (defaults); st (may be NULL) gets the figures,
 * also those of the work done before a failure. Errors: those of store_open, BQ_E_STATE (a GC
 * or verify running), BQ_E_IO, BQ_E_KEY (a manifest's data key), BQ_E_NOMEM, BQ_E_MAPFULL. */
int store_gc(const char *dir, const store_master_t *master, const store_gc_opts_t *opts,
             store_gc_stats_t *st, bq_errbuf_t *e);
/* The same on a store this process has open (a worker: its writers and GC share the one
 * store_t, since LMDB must not open an environment twice in one process). */
int store_gc_run(store_t *s, const store_gc_opts_t *opts, store_gc_stats_t *st, bq_errbuf_t *e);

/* Internal (GC, verify): take STORE/gc.lock without waiting, exclusively (GC) or shared
 * (verify), so that GC never runs during a verify or another GC. *fd_out: close it to
 * release. BQ_E_STATE "store DIR: a GC or a verify is running; WHAT not run" / "a GC is
 * running", BQ_E_IO. */
int store_lock_gc(store_t *s, int exclusive, const char *what, int *fd_out, bq_errbuf_t *e);

/* ---- the WAL area (store/wal.h) ---- */

/* Archive WAL file name of cluster (len bytes; seg_size: the server's wal_segment_size) into
 * the store's WAL area, durably, sealed under the WAL data key of the day (made on first use
 * each UTC day) with the store's compression: as store_wal_put (the same content again is
 * success; other content BQ_E_EXISTS, kept aside). packed (may be NULL): data's pieces as
 * they came compressed (store_wal_unpack), sealed as they are. Thread-safe. */
int store_wal_archive(store_t *s, const char *cluster, size_t seg_size, const char *name,
                      const void *data, size_t len, const store_wal_piece_t *packed,
                      bq_errbuf_t *e);
/* Read WAL file name of cluster into buf (cap bytes): as store_wal_get (BQ_E_NOTFOUND exactly
 * when it is not archived), the data keys from this store. */
int store_wal_fetch(store_t *s, const char *cluster, const char *name, void *buf, size_t cap,
                    size_t *len, bq_errbuf_t *e);

/* ---- copies of backups between stores (store/import.c) ------------------------------------ */

/* 1 when stores a and b have the same id key: their chunk ids agree, so chunks can be compared
 * by id and copied between them as they are (stores created under one master key do; see
 * store_create). A copy between stores whose id keys differ would index chunks under ids this
 * store does not give them: check this before importing from a view. */
int store_id_key_same(const store_t *a, const store_t *b);

/* Importing a backup from another store (geo-replication): a worker fetches the peer's
 * store.conf, data key files and manifest into a view (store_view_create/put, store_open),
 * walks the manifest, asks store_import_have which chunks this store lacks, fetches their
 * sealed bodies, checks each with store_reader_open on a reader of the view, and puts them
 * here still sealed (store_import_chunk); then the data key files (store_import_datakey) and
 * last the manifest (store_import_commit). The caller checks store_id_key_same(view, s)
 * first. docs/store.md, "Copies between stores". */
typedef struct store_import store_import_t;

typedef struct {
    uint64_t chunks;  /* records appended to this store's packs */
    uint64_t bytes;   /* pack bytes of those records */
    uint64_t flushes; /* index puts (each after the pack bytes were synced) */
} store_import_stats_t;

/* Begin importing chunks into s: opens a writer session (store/session.h), so that a GC
 * running beside the import leaves the packs and chunks it relies on alone, exactly as a
 * backup writer's. *out is the caller's: end it with store_import_commit or store_import_end;
 * s must outlive it. BQ_E_IO, BQ_E_NOMEM. */
int store_import_begin(store_t *s, store_import_t **out, bq_errbuf_t *e);

/* For each of n chunk ids (ids: n * 32 bytes), have[i] = 1 when s's index has it or this
 * importer appended it (pending or indexed), else 0. The lookups and the notes of the chunks
 * found are made in reference sections (like the backup writer's dedup lookups), so a GC
 * cannot delete a chunk the import relies on before its manifest lands. Thread-safe.
 * BQ_E_IO, BQ_E_STATE when the importer failed earlier. */
int store_import_have(store_import_t *imp, const uint8_t *ids, size_t n, uint8_t *have,
                      bq_errbuf_t *e);

/* Copy data key file keys/XXXXXXXX.datakey of another store (wrapped: the 72 bytes as it
 * stores them) into s as it is, durably (bq_file_write_durable), when s lacks it. It must open
 * under s's master key: BQ_E_KEY "could not import data key XXXXXXXX into store DIR: the key
 * in M does not open it" otherwise, and nothing is written. Already present with the same
 * bytes: success; with other bytes: success when both open to the same key, else
 * BQ_E_EXISTS (the file is never replaced). BQ_E_INVAL for a length other than 72 or key id 0,
 * BQ_E_IO. Thread-safe; needs no importer. */
int store_import_datakey(store_t *s, uint32_t key_id, const uint8_t *wrapped, size_t len,
                         bq_errbuf_t *e);

/* Append sealed body (len bytes, as store_reader_sealed gives it on the peer; the CALLER has
 * checked it with store_reader_open) as chunk id. Its head (store_chunk_head) gives the index
 * entry: raw length, and for a delta STORE_INDEX_F_DELTA and its base. A chunk already present
 * (in the index, or appended by this importer) is skipped (noted in the session as relied
 * on), never appended twice. Packs are made as the backup writer makes them (noted in the
 * session before they exist, sealed past STORE_PACK_TARGET); entries are indexed in small
 * batches, so an interrupted import loses little: when 256 chunks or 16 MiB wait, the open pack
 * is synced, then the entries put (store_index_put_new: a chunk another writer indexed first
 * keeps its entry). Thread-safe (several fetch threads: a mutex). BQ_E_IO naming the chunk for
 * a body whose head is damaged, BQ_E_INVAL for one too long, BQ_E_STATE for a delta whose base
 * s holds as a delta itself (a base is never a delta: that body cannot be used in s) — all
 * three leave the importer usable; BQ_E_IO, BQ_E_NOMEM, BQ_E_MAPFULL from the pack or the
 * index leave it failed (every later call but end is BQ_E_STATE). */
int store_import_chunk(store_import_t *imp, const uint8_t id[STORE_CHUNK_ID_BYTES],
                       const void *body, size_t len, bq_errbuf_t *e);

/* Sync the open pack and index every pending entry now. Thread-safe. */
int store_import_flush(store_import_t *imp, bq_errbuf_t *e);

/* The last act, once no other call of imp runs: flush and close the pack; copy src_path (the
 * manifest of backup_id, e.g. in the view) to backups/ID.manifest.tmp.S (S: the session, so a
 * GC leaves it alone), fsynced; read that copy to its END with s's data keys (the manifest's
 * key was imported first: BQ_E_NOTFOUND or BQ_E_KEY otherwise), check that its HEADER names
 * backup_id (BQ_E_INVAL) and that every chunk it names, and every delta base those chunks
 * name, is in s's index (BQ_E_IO "chunk ID of file F is not in store DIR"; the lookups noted
 * in the session, so GC keeps them) and that s holds the data keys of the chunks appended;
 * then, inside one reference section with ending the session, link it under
 * backups/ID.manifest (never replacing), remove the temp name and fsync backups/. When
 * backups/ID.manifest already exists with the same bytes: success (a retried import whose
 * earlier attempt got that far); with other bytes: BQ_E_EXISTS, the manifest untouched. On
 * any failure no manifest appears. backup_id: as store_export_name_valid accepts
 * "backups/ID.manifest" (BQ_E_INVAL). Takes *imp in every case and nulls it; st (may be NULL)
 * gets the figures. BQ_E_STATE when the importer failed earlier. */
int store_import_commit(store_import_t **imp, const char *backup_id, const char *src_path,
                        store_import_stats_t *st, bq_errbuf_t *e);

/* Give up, once no other call of imp runs: index what was appended (so a resumed import finds
 * it and does not fetch it again; a failure is only logged), close the pack, end the session,
 * free; st (may be NULL) gets the figures. Accepts NULL and *imp == NULL; nulls *imp. */
void store_import_end(store_import_t **imp, store_import_stats_t *st);

#endif
