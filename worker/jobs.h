/* Job runners: the code that does a job's work, in a worker thread, knowing nothing of
 * the event loop. A runner reports progress through ctx and checks ctx->cancel often. */
#ifndef BQ_JOBS_H
#define BQ_JOBS_H

#include "proto.h"
#include "store.h"

#include <stdatomic.h>

typedef struct jobs_ctx jobs_ctx_t;
struct jobs_ctx {
    atomic_int *cancel;                       /* nonzero: stop as soon as possible */
    void (*progress)(jobs_ctx_t *ctx, uint64_t done, uint64_t total, const char *message);
    /* WAL file name (size bytes) is now durable in the store: the coordinator records it in
     * its WAL index. Never throttled; a report that cannot be sent is logged as a warning. */
    void (*wal_archived)(jobs_ctx_t *ctx, const char *name, uint64_t size);
    void *arg;
    const char *worker;                       /* this worker's name */
    const char *site;                         /* and site ("" = unknown) */
    store_t *store;                           /* its store; NULL when it has none */
    const char *no_store;                     /* why not, for messages */
    proto_ctx_t *zctx;                        /* for sockets of the job's own (peers) */
    const bq_keypair_t *keys;                 /* this worker's CURVE keys */
    const char *store_key_file;               /* the master key ("" = none) */
    const char *cli_command;                  /* [worker] cli_command ("" = "barque") */
    const char *scratch;                      /* [worker] scratch ("" = none) */
    const char *restore_test_user;            /* [worker] restore_test_user ("" = default) */
    const char *pg_bindir;                    /* [worker] pg_bindir ("" = by the backup's version) */
    int64_t deadline_ms;                      /* bq_mono_ms() a runner that honours it stops at
                                                 (BQ_E_TIMEOUT); 0 = none */
};

/* Run job and fill res (ok, retryable, error, check, backup). Never returns without filling
 * res. */
void jobs_run(const bq_job_t *job, jobs_ctx_t *ctx, bq_msg_result_t *res);

/* The backup job (worker/backup.c): a base backup of job->cluster at job->conninfo into
 * ctx->store as backup job->backup_id, with the WAL from its start to its stop LSN, so that
 * it restores with no archive. Fills res->backup. */
void jobs_backup(const bq_job_t *job, jobs_ctx_t *ctx, bq_msg_result_t *res);

/* The restore job (worker/restore.c): backup job->backup_id of this worker's store written
 * to job->dest as a data directory that starts (tablespaces relocated per job->tablespaces,
 * files owned by job->owner or DEST's parent's owner, --delta rewriting only what differs).
 * Fills res->restore. A cancel or ctx->deadline_ms stops it between files and pieces of
 * files (BQ_E_CANCELLED, BQ_E_TIMEOUT in the error): what it wrote stays, with its marker. */
void jobs_restore(const bq_job_t *job, jobs_ctx_t *ctx, bq_msg_result_t *res);

/* The restore-test job (worker/restest.c): backup job->backup_id restored into
 * ctx->scratch/rt-JOB-ATTEMPT/data (jobs_restore, with job->recovery written as for
 * recover), PostgreSQL started there as ctx->restore_test_user on a free 127.0.0.1 port with
 * archive_mode = off, replayed to the target, checked (system identifier, every database,
 * pg_amcheck with job->rt.amcheck, job->rt.sql), stopped, and the copy removed. Fills
 * res->rtest (also when it fails). Leftovers of earlier attempts in the scratch directory (a
 * killed worker's server and files) are stopped and removed first. */
void jobs_restore_test(const bq_job_t *job, jobs_ctx_t *ctx, bq_msg_result_t *res);
/* Remove what restore tests left in scratch (servers stopped, rt-* directories removed),
 * except the directory of job keep_job (0 = none). Logs what it removed; 0 or an error. */
int jobs_restore_test_sweep(const char *scratch, uint64_t keep_job, bq_errbuf_t *e);

/* The maintenance jobs (worker/maint.c). list-files: one page of the files of backup
 * job->backup_id from the manifest alone (no chunk read), from file job->offset: at most
 * BQ_FILES_PAGE_MAX files and BQ_FILES_PAGE_BYTES of paths in res->files, with the backup's
 * file count in res->files_total; paths as the restore writes them (PATH, pg_tblspc/OID/PATH,
 * pg_wal/NAME). delete: the backup's manifest removed durably from the store (already gone is
 * success), then GC; a GC that cannot run (another GC or a verify) or fails leaves the delete
 * a success and says why in res->del.gc_note. */
void jobs_list_files(const bq_job_t *job, jobs_ctx_t *ctx, bq_msg_result_t *res);
void jobs_delete(const bq_job_t *job, jobs_ctx_t *ctx, bq_msg_result_t *res);
/* wal-prune (retention): the WAL files of job->cluster in the store that
 * retention_wal_prunable(name, job->wal_keep_from, job->wal_keep_ranges) allows, removed;
 * counts in res->prune. Already absent files are skipped. */
void jobs_wal_prune(const bq_job_t *job, jobs_ctx_t *ctx, bq_msg_result_t *res);
/* inventory (--rebuild-catalog): one page of what the store holds, from item job->offset:
 * its backups (those whose manifest names their cluster; with the figures of their .info),
 * then its WAL files (bq_wal_name_valid ones, with sizes and file times), at most
 * BQ_INVENTORY_PAGE items, and res->inv_total. */
void jobs_inventory(const bq_job_t *job, jobs_ctx_t *ctx, bq_msg_result_t *res);
/* keep: the keep mark of job->backup_id in the store (store_backup_keep_set, job->keep). */
void jobs_keep(const bq_job_t *job, jobs_ctx_t *ctx, bq_msg_result_t *res);

/* The wal-stream job (worker/walstream.c): job->cluster's WAL streamed on the permanent slot
 * barque_<cluster> into STORE/spool/CLUSTER, each complete segment archived into the store's
 * WAL area and reported through ctx->wal_archived; until cancelled (ok) or an error
 * (retryable but for configuration). */
void jobs_wal_stream(const bq_job_t *job, jobs_ctx_t *ctx, bq_msg_result_t *res);

/* Geo copies (worker/replicate.c, issue 8). replicate: backup job->backup_id copied from the
 * store of job->peer_worker (its data port) into ctx->store: the chunks this store lacks,
 * each checked on arrival, the manifest last; resumable (what an interrupted attempt stored
 * is not fetched again). replicate-wal: the WAL files job->wal_names of job->cluster copied
 * from job->peer_worker, each reported through ctx->wal_archived. Both fill res->rep (also
 * when they fail), at most job->bandwidth_limit bytes/s. */
void jobs_replicate(const bq_job_t *job, jobs_ctx_t *ctx, bq_msg_result_t *res);
void jobs_replicate_wal(const bq_job_t *job, jobs_ctx_t *ctx, bq_msg_result_t *res);

#endif
