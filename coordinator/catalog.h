/* The coordinator's catalog: an LMDB environment with named databases
 *   meta      "schema_version" -> u32 BE, "next_job_id" -> u64 BE
 *   sites     name -> name (raw bytes)
 *   clusters  name -> Cluster
 *   workers   name -> Worker
 *   jobs      u64 BE job id -> Job            (key order = creation order)
 *   backups   cluster name, NUL, backup id -> Backup (key order = per cluster, by time)
 *   wal       cluster name, NUL, WAL file name -> WalFile (key order = per cluster, timeline,
 *             segment)
 * and room for later ones (maxdbs 32). Values are encoded with barque.proto (proto/).
 * One writer: the coordinator's event loop. Transactions are short; values are copied out.
 * mdb_reader_check runs on open. MDB_MAP_FULL aborts the transaction and is reported as
 * BQ_E_MAPFULL naming the catalog and its size; the map is grown (doubled, up to the
 * configured maximum) when no transaction is open, and the write may then be retried. */
#ifndef BQ_CATALOG_H
#define BQ_CATALOG_H

#include "err.h"
#include "types.h"

#include <stddef.h>
#include <stdint.h>

typedef struct catalog catalog_t;
typedef struct catalog_txn catalog_txn_t;

/* Open (creating the directory and environment if needed) the catalog at dir.
 * map_max is the largest the map may grow to (bytes, at least 1 MiB, else BQ_E_INVAL); the
 * initial map is min(64 MiB, map_max), or the existing file's size when bigger (never shrunk).
 * An LMDB environment that is not a Barque catalog, or of an unknown schema, is refused. */
int catalog_open(const char *dir, uint64_t map_max, catalog_t **out, bq_errbuf_t *e);
void catalog_destroy(catalog_t **self_p);

/* Transactions. write=1 for the (single) write transaction. commit makes it durable
 * (fsync) before returning 0; abort discards. Both free the txn and null the pointer.
 * A failed put/delete (other than BQ_E_NOTFOUND) kills the transaction: later calls on it
 * return that error, and the caller must still commit or abort it to free it.
 * BQ_E_STATE: a second write transaction, or use in a forked child. */
int catalog_txn_begin(catalog_t *c, int write, catalog_txn_t **out, bq_errbuf_t *e);
int catalog_txn_commit(catalog_txn_t **txn_p, bq_errbuf_t *e);
void catalog_txn_abort(catalog_txn_t **txn_p);

/* Try to grow the map after a BQ_E_MAPFULL (no transaction may be open).
 * BQ_E_MAPFULL when already at map_max: "catalog DIR is full (N MiB of N MiB): raise catalog_max_size". */
int catalog_grow(catalog_t *c, bq_errbuf_t *e);

/* Jobs. catalog_job_new assigns j->id from next_job_id (1, 2, ...) and stores j. */
int catalog_job_new(catalog_txn_t *t, bq_job_t *j, bq_errbuf_t *e);
/* Refuses id 0 and ids never handed out by catalog_job_new (BQ_E_INVAL). */
int catalog_job_put(catalog_txn_t *t, const bq_job_t *j, bq_errbuf_t *e);
int catalog_job_get(catalog_txn_t *t, uint64_t id, bq_job_t *out, bq_errbuf_t *e); /* BQ_E_NOTFOUND */
/* Remove one job's record (the coordinator's job_history); BQ_E_NOTFOUND (transaction still
 * usable) when absent. Ids are never handed out again (next_job_id stays). */
int catalog_job_del(catalog_txn_t *t, uint64_t id, bq_errbuf_t *e);
/* The id the next catalog_job_new hands out (ids below it were handed out). */
int catalog_job_next_id(catalog_txn_t *t, uint64_t *next, bq_errbuf_t *e);
/* Call fn for every job in id order (oldest first); fn returns a positive value to stop
 * early (that value is returned; negative values are taken as BQ_E_* errors). The bq_job_t passed to fn is a copy valid during the call. */
typedef int (*catalog_job_fn)(const bq_job_t *j, void *arg);
int catalog_job_each(catalog_txn_t *t, catalog_job_fn fn, void *arg, bq_errbuf_t *e);

/* Workers, clusters, sites: put replaces, get copies out, each iterates in name order. */
int catalog_worker_put(catalog_txn_t *t, const bq_worker_t *w, bq_errbuf_t *e);
int catalog_worker_get(catalog_txn_t *t, const char *name, bq_worker_t *out, bq_errbuf_t *e);
typedef int (*catalog_worker_fn)(const bq_worker_t *w, void *arg);
int catalog_worker_each(catalog_txn_t *t, catalog_worker_fn fn, void *arg, bq_errbuf_t *e);

int catalog_cluster_put(catalog_txn_t *t, const bq_cluster_t *c, bq_errbuf_t *e);
int catalog_cluster_get(catalog_txn_t *t, const char *name, bq_cluster_t *out, bq_errbuf_t *e);
/* BQ_E_NOTFOUND (transaction still usable) when absent. */
int catalog_cluster_del(catalog_txn_t *t, const char *name, bq_errbuf_t *e);
typedef int (*catalog_cluster_fn)(const bq_cluster_t *c, void *arg);
int catalog_cluster_each(catalog_txn_t *t, catalog_cluster_fn fn, void *arg, bq_errbuf_t *e);

int catalog_site_put(catalog_txn_t *t, const char *name, bq_errbuf_t *e);
typedef int (*catalog_site_fn)(const char *name, void *arg);
int catalog_site_each(catalog_txn_t *t, catalog_site_fn fn, void *arg, bq_errbuf_t *e);

/* Backups, keyed by (cluster, id); ids are YYYYMMDDTHHMMSS (bq_backup_id_valid, else
 * BQ_E_INVAL). put replaces; get copies out (BQ_E_NOTFOUND when absent); del is
 * BQ_E_NOTFOUND (transaction still usable) when absent. each calls fn for one cluster's
 * backups in id order (= time order, oldest first), or for every cluster's (cluster by
 * cluster, in name order) when cluster is NULL; fn's return value works as for jobs, and
 * the bq_backup_t passed to fn is a copy valid during the call. */
int catalog_backup_put(catalog_txn_t *t, const bq_backup_t *b, bq_errbuf_t *e);
int catalog_backup_get(catalog_txn_t *t, const char *cluster, const char *id, bq_backup_t *out,
                       bq_errbuf_t *e);
int catalog_backup_del(catalog_txn_t *t, const char *cluster, const char *id, bq_errbuf_t *e);
typedef int (*catalog_backup_fn)(const bq_backup_t *b, void *arg);
int catalog_backup_each(catalog_txn_t *t, const char *cluster, catalog_backup_fn fn, void *arg,
                        bq_errbuf_t *e);
/* The id for a new backup of cluster taken at now_ms (wall clock): YYYYMMDDTHHMMSS in UTC,
 * or, when the cluster already has that id or a later one, its last id + 1 second, so ids
 * stay unique and ascending within the cluster whatever the clock does; then one second
 * later while another cluster has that id (a worker's store names backups by id alone).
 * Writes nothing. */
int catalog_backup_id_new(catalog_txn_t *t, const char *cluster, int64_t now_ms,
                          char id[BQ_BACKUP_ID_MAX], bq_errbuf_t *e);

/* The WAL index: one record per (cluster, WAL file name), the name a segment, NAME.partial
 * or TLI.history (bq_wal_name_valid; else, or for a bad cluster name, BQ_E_INVAL with the
 * transaction still usable). put records w; when the file is recorded already, the record
 * keeps its size and archived_ms (a different size is logged as a warning) and gains the
 * stores of w it lacks (nothing is written when it lacks none); stores that would no longer
 * fit BQ_STORES_MAX are BQ_E_INVAL. get copies out (BQ_E_NOTFOUND when absent). each calls fn
 * for one cluster's files in name order (timeline, then segment: TLI.history first,
 * NAME.partial right after NAME), or every cluster's when cluster is NULL; fn's return value
 * works as for jobs, and the record passed to fn is a copy valid during the call. */
int catalog_wal_put(catalog_txn_t *t, const bq_wal_file_t *w, bq_errbuf_t *e);
int catalog_wal_get(catalog_txn_t *t, const char *cluster, const char *name, bq_wal_file_t *out,
                    bq_errbuf_t *e);
typedef int (*catalog_wal_fn)(const bq_wal_file_t *w, void *arg);
int catalog_wal_each(catalog_txn_t *t, const char *cluster, catalog_wal_fn fn, void *arg,
                     bq_errbuf_t *e);

/* Retention: remove `store` from the stores of one WAL file's record; the record goes when
 * it was the last (*removed = 1). Absent: BQ_E_NOTFOUND. */
int catalog_wal_drop_store(catalog_txn_t *t, const char *cluster, const char *name,
                           const char *store, int *removed, bq_errbuf_t *e);

/* The scheduler's last fired slot of a cluster (ms since the epoch; 0 = never), kept in the
 * meta db under "KIND:CLUSTER": kind "sched" for backups, "rtsched" for restore tests. */
int catalog_sched_get(catalog_txn_t *t, const char *kind, const char *cluster,
                      int64_t *last_slot_ms, bq_errbuf_t *e);
int catalog_sched_put(catalog_txn_t *t, const char *kind, const char *cluster,
                      int64_t last_slot_ms, bq_errbuf_t *e);

/* Restore tests (issue 7), db restore_tests, key cluster NUL job id (big-endian): put
 * replaces the record of (r->cluster, r->job_id); each calls fn for one cluster's tests in job
 * order (oldest first), with a copy valid during the call; fn's return value works as for
 * jobs. */
int catalog_rtest_put(catalog_txn_t *t, const bq_restore_test_t *r, bq_errbuf_t *e);
typedef int (*catalog_rtest_fn)(const bq_restore_test_t *r, void *arg);
int catalog_rtest_each(catalog_txn_t *t, const char *cluster, catalog_rtest_fn fn, void *arg,
                       bq_errbuf_t *e);

/* Clear reader slots left by dead processes (mdb_reader_check); logs how many. Runs at open;
 * the coordinator also calls it periodically. */
int catalog_reader_check(catalog_t *c, bq_errbuf_t *e);

/* Figures for benchmarks and `status`: bytes in use (pages * page size) and entries per db. */
typedef struct {
    uint64_t map_size, used_bytes;
    uint64_t njobs, nworkers, nclusters, nsites, nbackups, nwal;
} catalog_stats_t;
int catalog_stats(catalog_t *c, catalog_stats_t *out, bq_errbuf_t *e);

#endif
