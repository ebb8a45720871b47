/* The chunk index (docs/store.md, "Index"): LMDB environment STORE/index/, db "chunks",
 * chunk id (32 bytes) -> pack id u64 ‖ offset u64 ‖ record length u32 ‖ raw length u32 ‖
 * flags u32 (28 bytes, little-endian), followed for a delta chunk (flag STORE_INDEX_F_DELTA)
 * by its base chunk's id (60 bytes). Entries are added only after the pack bytes they
 * point at are fsynced (store_pack_sync); the index can be rebuilt from the packs.
 *
 * Threads: one store_index_t is shared by the threads of a worker. Each call is its own
 * short LMDB transaction (MDB_NOTLS; none crosses a call or a thread); write transactions
 * are serialised by a mutex, and the map is grown (doubling, up to the maximum given at open)
 * inside store_index_put_batch when LMDB reports MDB_MAP_FULL, under a lock that waits for
 * this process's other transactions to end. Not usable after fork (BQ_E_STATE in the child).
 *
 * Errors: BQ_E_NOTFOUND (no such chunk), BQ_E_MAPFULL (the map reached its maximum; the batch
 * was not written, reads go on), BQ_E_IO (a damaged index, with a hint to rebuild it),
 * BQ_E_INVAL, BQ_E_NOMEM, BQ_E_STATE. Messages name the index directory. */
#ifndef BQ_STORE_INDEX_H
#define BQ_STORE_INDEX_H

#include "err.h"
#include "pack.h"

#include <stddef.h>
#include <stdint.h>

#define STORE_INDEX_VALUE_LEN 28
#define STORE_INDEX_VALUE_DELTA_LEN (STORE_INDEX_VALUE_LEN + STORE_CHUNK_ID_BYTES) /* 60 */
#define STORE_INDEX_VALUE_MAX STORE_INDEX_VALUE_DELTA_LEN
#define STORE_INDEX_F_DELTA 1u /* the record is a delta against base (store/chunk.h) */
#define STORE_INDEX_MAP_INITIAL (64ull << 20)

/* Where a chunk is: a plain value. */
typedef struct {
    uint64_t pack;      /* pack id */
    uint64_t offset;    /* offset of the record's magic in the pack */
    uint32_t rec_len;   /* whole record: 44 + body length */
    uint32_t raw_len;   /* the chunk's plaintext length */
    uint32_t flags;     /* STORE_INDEX_F_DELTA; the other bits opaque to the index */
    uint8_t base[STORE_CHUNK_ID_BYTES]; /* with STORE_INDEX_F_DELTA: the base chunk's id */
} store_index_loc_t;

typedef struct {
    uint8_t id[STORE_CHUNK_ID_BYTES];
    store_index_loc_t loc;
} store_index_entry_t;

typedef struct store_index store_index_t;

/* Encode loc as the index value into out (STORE_INDEX_VALUE_MAX bytes); returns its length:
 * 28, or 60 with STORE_INDEX_F_DELTA. */
size_t store_index_loc_encode(const store_index_loc_t *loc, uint8_t *out);

/* Decode an index value of len bytes. BQ_E_IO when len is not 28 (without the delta flag)
 * or 60 (with it), or when the location
 * cannot be a record (offset inside the pack header, record length outside 44 .. 44 + 16 MiB,
 * offset + length overflowing); the message says why (callers prefix the index and chunk). */
int store_index_loc_decode(const void *buf, size_t len, store_index_loc_t *loc, bq_errbuf_t *e);

/* store_index_open flags. REPAIR is for the rebuild verb, holding the store exclusively: an
 * environment LMDB refuses (damaged) is removed and created afresh, an interrupted rebuild
 * is accepted, and the caller must then call store_index_rebuild. */
#define STORE_INDEX_OPEN_REPAIR 1u

/* Open (creating, 0700) STORE/index. The map starts at map_initial bytes (0: 64 MiB; never
 * below what the file already holds, never above map_max) and doubles on demand up to
 * map_max (at least 1 MiB). Runs mdb_reader_check. *out is the caller's: end it with
 * store_index_close. Refused with BQ_E_IO naming the directory and ending "rebuild it with
 * barque store verify --rebuild-index": a damaged environment ("index STORE/index is damaged
 * (could not open: MDB_INVALID: File is not an LMDB file): ..."), an interrupted rebuild,
 * and a missing or empty index in a store that holds packs (so a lost index never passes
 * for an empty one). BQ_E_VERSION for an index of another format. */
int store_index_open(const char *store_dir, uint64_t map_initial, uint64_t map_max,
                     unsigned flags, store_index_t **out, bq_errbuf_t *e);

/* Close and free; accepts NULL and *idx_p == NULL; nulls *idx_p. No call may be running. */
void store_index_close(store_index_t **idx_p);

/* Clear reader slots left by dead processes (done on open; a daemon calls it now and then). */
int store_index_reader_check(store_index_t *idx, bq_errbuf_t *e);

/* Where chunk id is: 0 and *loc, or BQ_E_NOTFOUND. */
int store_index_get(store_index_t *idx, const uint8_t id[STORE_CHUNK_ID_BYTES],
                    store_index_loc_t *loc, bq_errbuf_t *e);

/* Put n entries in one write transaction (all or none); an id already present is
 * overwritten. Grows the map as needed; BQ_E_MAPFULL when even map_max is too small. */
int store_index_put_batch(store_index_t *idx, const store_index_entry_t *entries, size_t n,
                          bq_errbuf_t *e);

/* The same, but an id already present keeps its entry (a backup writer's puts: a chunk that
 * another writer indexed first stays where it is, so a delta's base never changes under it;
 * the copy left unindexed is garbage for GC). */
int store_index_put_new(store_index_t *idx, const store_index_entry_t *entries, size_t n,
                        bq_errbuf_t *e);

/* Delete n ids in one write transaction; ids not present are skipped. *deleted (may be NULL)
 * gets how many were there. */
int store_index_del_batch(store_index_t *idx, const uint8_t (*ids)[STORE_CHUNK_ID_BYTES], size_t n,
                          size_t *deleted, bq_errbuf_t *e);

/* Called for each entry, in id order; id and loc are copies, valid for the call. Returning
 * non-zero stops the walk, and store_index_each returns that value. */
typedef int (*store_index_each_fn)(const uint8_t id[STORE_CHUNK_ID_BYTES],
                                   const store_index_loc_t *loc, void *arg);

/* Walk every entry. The walk reads a few thousand entries per read transaction and calls fn
 * outside any transaction, so fn may call the index (even put or delete); entries added or
 * removed during the walk may or may not be seen. */
int store_index_each(store_index_t *idx, store_index_each_fn fn, void *arg, bq_errbuf_t *e);

/* Number of entries. */
int store_index_count(store_index_t *idx, uint64_t *n, bq_errbuf_t *e);

/* Fills raw_len and flags of a record found by a rebuild from its (opaque) body: 0 to index
 * it, 1 to skip it (counted in skipped), a negative BQ_E code to stop the rebuild. The
 * rebuild itself sets STORE_INDEX_F_DELTA and the base from a delta body's header. */
typedef int (*store_index_derive_fn)(const uint8_t id[STORE_CHUNK_ID_BYTES], const void *body,
                                     size_t body_len, uint32_t *raw_len, uint32_t *flags,
                                     void *arg);

typedef struct {
    uint64_t packs;          /* packs scanned */
    uint64_t records;        /* entries put */
    uint64_t duplicates;     /* records whose id an earlier record already gave */
    uint64_t skipped;        /* records derive refused */
    uint64_t damaged_packs;  /* packs whose scan stopped at a damaged record */
    uint64_t damaged_bytes;  /* bytes of those packs past their last good record */
} store_index_rebuild_stats_t;

/* Clear the index and put every valid record of every pack of store_dir (each pack is
 * fsynced before its records are indexed). When an id is in several records, the first in
 * (pack id, offset) order wins. derive (may be NULL: raw_len and flags are then 0) supplies
 * the fields a pack record does not hold. A damaged pack is logged (warning) and counted,
 * its records before the damage indexed, and the rebuild goes on. The caller holds the store
 * exclusively (no writer appends or indexes meanwhile). The work is committed in batches; an
 * interrupted rebuild leaves a mark that makes store_index_open refuse the index until a
 * rebuild completes. stats may be NULL. */
int store_index_rebuild(store_index_t *idx, const char *store_dir, store_index_derive_fn derive,
                        void *arg, store_index_rebuild_stats_t *stats, bq_errbuf_t *e);

#endif
