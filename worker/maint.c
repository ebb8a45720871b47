/* Maintenance jobs on the worker's store (worker/jobs.h): list-files (one page of a backup's
 * files, from its manifest alone) and delete (the backup's manifest, then GC).
 *
 * Paths of a backup's manifest (worker/backup.c) are shown as the restore writes them,
 * relative to the restored data directory:
 *     data/PATH            -> PATH               (data/backup_manifest -> backup_manifest)
 *     tablespaces/OID/PATH -> pg_tblspc/OID/PATH (the link restore makes points there)
 *     wal/NAME             -> pg_wal/NAME */
#include "jobs.h"
#include "retention.h"
#include "wal.h"

#include "clock.h"
#include "log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define COMP "maint"
#define CANCEL_EVERY 4096 /* files between looks at ctx->cancel */

/* ---- list-files ------------------------------------------------------------------------ */

typedef struct {
    const bq_job_t *job;
    jobs_ctx_t *ctx;
    bq_msg_result_t *res;
    uint64_t index;     /* files ended so far (the index of the next one) */
    size_t cap;         /* of res->files */
    size_t bytes;       /* path bytes in the page */
    int full;           /* the page is full: only count from here on */
    size_t page_max;    /* files in a page, at most */
    uint32_t mode;      /* the open file's */
    int64_t mtime;
} lf_t;

/* The path the restore writes for manifest path p, into out (cap bytes). */
static void lf_path(const char *p, char *out, size_t cap)
{
    if (strcmp(p, "data") == 0) {
        snprintf(out, cap, ".");
    } else if (strncmp(p, "data/", 5) == 0) {
        snprintf(out, cap, "%s", p + 5);
    } else if (strncmp(p, "tablespaces/", 12) == 0) {
        snprintf(out, cap, "pg_tblspc/%s", p + 12);
    } else if (strncmp(p, "wal/", 4) == 0) {
        snprintf(out, cap, "pg_wal/%s", p + 4);
    } else {
        snprintf(out, cap, "%s", p);
    }
}

static int lf_begin(void *arg, const char *path, uint32_t mode, int64_t mtime, bq_errbuf_t *e)
{
    lf_t *l = arg;
    (void)path;
    l->mode = mode;
    l->mtime = mtime;
    if (l->index % CANCEL_EVERY == 0 && atomic_load(l->ctx->cancel))
        return bq_fail(e, BQ_E_SHUTDOWN, "cancelled after %" PRIu64 " files", l->index);
    return 0;
}

static int lf_end(void *arg, const char *path, uint64_t size, const uint8_t checksum[32],
                  bq_errbuf_t *e)
{
    lf_t *l = arg;
    (void)checksum;
    uint64_t index = l->index++;
    if (index < l->job->offset || l->full)
        return 0;
    bq_msg_result_t *r = l->res;
    char shown[BQ_FILE_PATH_MAX];
    lf_path(path, shown, sizeof shown);
    size_t len = strlen(shown);
    if (r->nfiles == l->page_max || l->bytes + len > BQ_FILES_PAGE_BYTES) {
        l->full = 1;
        return 0;
    }
    if (r->nfiles == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 256;
        if (cap > BQ_FILES_PAGE_MAX)
            cap = BQ_FILES_PAGE_MAX;
        bq_file_entry_t *p = realloc(r->files, cap * sizeof *p);
        if (!p)
            return bq_fail(e, BQ_E_NOMEM, "out of memory listing the files");
        r->files = p;
        l->cap = cap;
    }
    bq_file_entry_t *f = &r->files[r->nfiles];
    if (!(f->path = strdup(shown)))
        return bq_fail(e, BQ_E_NOMEM, "out of memory listing the files");
    f->mode = l->mode;
    f->size = size;
    f->mtime = l->mtime;
    r->nfiles++;
    l->bytes += len;
    return 0;
}

void jobs_list_files(const bq_job_t *job, jobs_ctx_t *ctx, bq_msg_result_t *res)
{
    bq_errbuf_t e = {{0}};
    int rc;
    lf_t l = {.job = job, .ctx = ctx, .res = res, .page_max = BQ_FILES_PAGE_MAX};
    /* tests: smaller pages, so that a small backup takes several */
    const char *env = getenv("BARQUE_TEST_FILES_PAGE");
    if (env && atoi(env) > 0 && atoi(env) < BQ_FILES_PAGE_MAX)
        l.page_max = (size_t)atoi(env);
    ctx->progress(ctx, 0, 0, "reading the manifest");
    if (!ctx->store) {
        rc = bq_fail(&e, BQ_E_CONFIG, "%s", ctx->no_store ? ctx->no_store : "this worker has no store");
    } else {
        store_read_cb_t cb = {.file_begin = lf_begin, .file_end = lf_end};
        rc = store_backup_walk(ctx->store, job->backup_id, &cb, &l, &e);
    }
    if (rc) {
        proto_result_clear(res);
        res->ok = 0;
        res->retryable = rc == BQ_E_IO || rc == BQ_E_NOMEM;
        snprintf(res->error, sizeof res->error, "could not list the files of backup %s of cluster "
                 "%s on worker %s: %s", job->backup_id, job->cluster, ctx->worker, e.msg);
        return;
    }
    res->files_total = l.index;
    res->ok = 1;
    ctx->progress(ctx, res->nfiles, l.index, "done");
    bq_debug(COMP, job->id, "backup %s: files %" PRIu64 "..%" PRIu64 " of %" PRIu64,
             job->backup_id, job->offset, job->offset + res->nfiles, l.index);
}

/* ---- delete ---------------------------------------------------------------------------- */

void jobs_delete(const bq_job_t *job, jobs_ctx_t *ctx, bq_msg_result_t *res)
{
    bq_errbuf_t e = {{0}};
    bq_delete_result_t *d = &res->del;
    int rc;
    ctx->progress(ctx, 0, 2, "deleting the manifest");
    if (!ctx->store)
        rc = bq_fail(&e, BQ_E_CONFIG, "%s", ctx->no_store ? ctx->no_store : "this worker has no store");
    else if ((rc = store_backup_delete(ctx->store, job->backup_id, &e)) == BQ_E_NOTFOUND)
        rc = 0, d->was_absent = 1; /* an earlier attempt deleted it: done */
    if (rc) {
        res->ok = 0;
        res->retryable = rc == BQ_E_IO;
        snprintf(res->error, sizeof res->error, "could not delete backup %s of cluster %s from "
                 "the store of worker %s: %s", job->backup_id, job->cluster, ctx->worker, e.msg);
        return;
    }
    bq_info(COMP, job->id, "backup %s of cluster %s %s store %s", job->backup_id, job->cluster,
            d->was_absent ? "was already gone from" : "deleted from", store_dir(ctx->store));

    /* GC beside whatever else runs; a GC or verify already running is not an error: the
     * chunks wait for the next GC. */
    ctx->progress(ctx, 1, 2, "collecting garbage");
    store_gc_stats_t st;
    memset(&st, 0, sizeof st);
    bq_errbuf_t ge = {{0}};
    rc = store_gc_run(ctx->store, NULL, &st, &ge);
    if (rc == 0) {
        d->gc_run = 1;
        d->chunks_removed = st.chunks_removed;
        d->bytes_reclaimed = st.bytes_reclaimed;
        bq_info(COMP, job->id, "GC of store %s: %" PRIu64 " chunks removed, %" PRIu64
                " bytes reclaimed", store_dir(ctx->store), st.chunks_removed, st.bytes_reclaimed);
    } else {
        snprintf(d->gc_note, sizeof d->gc_note, "GC %s: %s", rc == BQ_E_STATE ? "skipped" : "failed",
                 ge.msg);
        bq_warn(COMP, job->id, "backup %s deleted, but %s", job->backup_id, d->gc_note);
    }
    res->has_delete = 1;
    res->ok = 1;
    ctx->progress(ctx, 2, 2, "done");
}

/* ---- wal-prune (retention) ---- */

#define PRUNE_RANGES_MAX 64

typedef struct {
    const bq_job_t *job;
    retention_wal_range_t ranges[PRUNE_RANGES_MAX];
    size_t nranges;
    char (*names)[BQ_DATA_NAME_MAX];
    size_t n, cap;
    int err;
} prune_ctx_t;

static int prune_collect(uint32_t tli, const char *name, void *arg)
{
    (void)tli;
    prune_ctx_t *p = arg;
    if (!retention_wal_prunable(name, p->job->wal_keep_from, p->ranges, p->nranges))
        return 0;
    if (p->n == p->cap) {
        size_t ncap = p->cap ? 2 * p->cap : 256;
        void *nn = realloc(p->names, ncap * sizeof *p->names);
        if (!nn) {
            p->err = BQ_E_NOMEM;
            return 1;
        }
        p->names = nn;
        p->cap = ncap;
    }
    snprintf(p->names[p->n++], BQ_DATA_NAME_MAX, "%s", name);
    return 0;
}

void jobs_wal_prune(const bq_job_t *job, jobs_ctx_t *ctx, bq_msg_result_t *res)
{
    bq_errbuf_t e = {{0}};
    prune_ctx_t p = {.job = job};
    /* "BEGIN-END,BEGIN-END" */
    for (const char *q = job->wal_keep_ranges; *q && p.nranges < PRUNE_RANGES_MAX;) {
        const char *comma = strchr(q, ',');
        size_t len = comma ? (size_t)(comma - q) : strlen(q);
        if (len == 49 && q[24] == '-') {
            snprintf(p.ranges[p.nranges].begin, sizeof p.ranges[0].begin, "%.24s", q);
            snprintf(p.ranges[p.nranges].end, sizeof p.ranges[0].end, "%.24s", q + 25);
            p.nranges++;
        } else {
            res->ok = 0;
            snprintf(res->error, sizeof res->error, "wal-prune of cluster %s: bad WAL range "
                     "\"%.*s\"", job->cluster, (int)(len < 60 ? len : 60), q);
            return;
        }
        q += len + (comma ? 1 : 0);
    }
    int rc;
    if (!ctx->store)
        rc = bq_fail(&e, BQ_E_CONFIG, "%s", ctx->no_store ? ctx->no_store : "this worker has no store");
    else if (!job->wal_keep_from[0])
        rc = bq_fail(&e, BQ_E_INVAL, "no keep_from segment: nothing may be pruned");
    else
        rc = store_wal_list(store_dir(ctx->store), job->cluster, prune_collect, &p, &e);
    if (rc == 0 && p.err)
        rc = bq_fail(&e, p.err, "out of memory listing WAL");
    for (size_t i = 0; rc == 0 && i < p.n; i++) {
        if (atomic_load(ctx->cancel)) {
            rc = bq_fail(&e, BQ_E_STATE, "cancelled after %" PRIu64 " files",
                         res->prune.files_removed);
            break;
        }
        uint64_t bytes = 0;
        int r = store_wal_remove(store_dir(ctx->store), job->cluster, p.names[i], &bytes, &e);
        if (r == BQ_E_NOTFOUND)
            continue;
        if (r) {
            rc = r;
            break;
        }
        res->prune.files_removed++;
        res->prune.bytes_removed += bytes;
        if (i % 64 == 0)
            ctx->progress(ctx, i, p.n, "removing WAL");
    }
    free(p.names);
    res->has_prune = 1;
    if (rc) {
        res->ok = 0;
        res->retryable = rc == BQ_E_IO;
        snprintf(res->error, sizeof res->error, "could not prune the WAL of cluster %s in the "
                 "store of worker %s: %s", job->cluster, ctx->worker, e.msg);
        return;
    }
    bq_info(COMP, job->id, "WAL of cluster %s before %s: %" PRIu64 " files (%" PRIu64 " bytes) "
            "removed from store %s", job->cluster, job->wal_keep_from, res->prune.files_removed,
            res->prune.bytes_removed, store_dir(ctx->store));
    res->ok = 1;
    ctx->progress(ctx, p.n, p.n, "done");
}
