/* Internal to store/: what the backup writer (store.c) and the importer (import.c) share, so
 * that chunks reach packs and the index by one path whoever brings them. Not for callers
 * outside store/ (they use store.h). */
#ifndef BQ_STORE_INT_H
#define BQ_STORE_INT_H

#include "index.h"
#include "manifest.h"
#include "pack.h"
#include "session.h"
#include "store.h"

#include <stddef.h>
#include <stdint.h>

/* ---- the appender: sealed bodies into packs, index entries once the packs are synced ---- */

/* Index entries a backup writer keeps pending across packs before it indexes them: one LMDB
 * transaction copies every leaf page its random ids touch (the whole tree, for a batch of
 * thousands), so a backup indexed in one transaction instead of one per pack grows the index
 * file about half as much (docs/measurements.md, runs E-I). 65,536 entries: ~6 MiB with the
 * dedup set, 4 GiB of 64 KiB chunks. */
#define STORE_PEND_MAX 65536

/* An appender owns the open pack (fresh random id, noted in the session before it is
 * created), and the entries of the records appended since its last index put, with a set to
 * find them by id. A pack is sealed (synced, closed) past STORE_PACK_TARGET; the pending
 * entries are put (store_index_put_new: an id already indexed keeps its entry) after the
 * open pack is synced, once flush_entries of them wait or their records hold flush_bytes
 * (0: no bound), and at store_appender_flush. One thread at a time. Zero it, then set s, ss
 * (borrowed: the owner's session), what ("backup B": messages) and the bounds. */
typedef struct {
    store_t *s;
    store_session_t *ss;
    char what[96];
    size_t flush_entries;
    uint64_t flush_bytes;
    store_pack_writer_t *pack;  /* the open pack, or NULL */
    store_index_entry_t *pend;  /* entries not indexed yet */
    size_t npend, pend_cap;
    uint32_t *set;              /* indexes into pend + 1 (0: empty), open addressing */
    size_t set_cap;             /* a power of two, at least 2 * pend_cap */
    uint64_t pend_bytes;        /* record bytes of the pending entries */
    uint64_t flushes;           /* index puts done */
} store_appender_t;

/* The pending entry of id (appended, not indexed yet), or NULL. */
const store_index_entry_t *store_appender_find(const store_appender_t *a,
                                               const uint8_t id[STORE_CHUNK_ID_BYTES]);
/* Append sealed body (len bytes) of chunk id (raw_len bytes of plaintext; base: the id of
 * its base when it is a delta, else NULL) to the open pack (a new one when there is none);
 * its entry becomes pending. Then the pack is sealed or the entries put as the bounds say.
 * *rec_len (may be NULL) gets the record's length. BQ_E_IO, BQ_E_NOMEM, BQ_E_MAPFULL: the
 * appender is then unusable but for store_appender_free. */
int store_appender_append(store_appender_t *a, const uint8_t id[STORE_CHUNK_ID_BYTES],
                          uint32_t raw_len, const uint8_t *base, const void *body, size_t len,
                          uint32_t *rec_len, bq_errbuf_t *e);
/* Sync the open pack and put every pending entry (of it and of the packs sealed since the
 * last put, all synced); close the pack too when close_it. */
int store_appender_flush(store_appender_t *a, int close_it, bq_errbuf_t *e);
/* Close the open pack without syncing (its records, never indexed, are garbage for GC) and
 * free what the appender holds; it may be set up again. */
void store_appender_free(store_appender_t *a);

/* ---- keys and manifests ---- */

/* The master key s was opened with (borrowed; it wraps s's data keys). */
const store_master_t *store_master_of(const store_t *s);
/* Open the manifest file at path (anywhere: a temp copy, a view) with the data keys of s
 * (keys/K.datakey under s's master key): store_manifest_open's errors (BQ_E_NOTFOUND,
 * BQ_E_KEY, BQ_E_IO damage). */
int store_manifest_open_keys(store_t *s, const char *path, store_manifest_reader_t **out,
                             bq_errbuf_t *e);

#endif
