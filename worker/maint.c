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

#include <sys/stat.h>
#include <limits.h>

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

/* ---- inventory (--rebuild-catalog) ---- */

typedef struct {
    char **ids;
    size_t n, cap;
} id_list_t;

static int inv_id(const char *id, void *arg)
{
    id_list_t *l = arg;
    if (l->n == l->cap) {
        size_t ncap = l->cap ? 2 * l->cap : 64;
        char **nn = realloc(l->ids, ncap * sizeof *nn);
        if (!nn)
            return BQ_E_NOMEM;
        l->ids = nn;
        l->cap = ncap;
    }
    return (l->ids[l->n] = strdup(id)) ? (l->n++, 0) : BQ_E_NOMEM;
}

/* The facts a backup's manifest holds (authenticated), for one without its .info figures. */
typedef struct {
    bq_backup_t *b;
    uint64_t files, bytes;
} inv_walk_t;

static int inv_meta(void *arg, const char *key, const void *val, size_t len, bq_errbuf_t *e)
{
    (void)e;
    inv_walk_t *w = arg;
    if (strcmp(key, "pg.facts") != 0)
        return 0;
    const char *p = val, *end = p + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        char line[256];
        if (n < sizeof line) {
            memcpy(line, p, n);
            line[n] = '\0';
            char *eq = strchr(line, '=');
            if (eq) {
                *eq++ = '\0';
                if (strcmp(line, "cluster") == 0 && bq_name_valid(eq))
                    snprintf(w->b->cluster, sizeof w->b->cluster, "%s", eq);
                else if (strcmp(line, "system_identifier") == 0)
                    w->b->system_identifier = strtoull(eq, NULL, 10);
                else if (strcmp(line, "server_version") == 0)
                    w->b->pg_version = (uint32_t)strtoul(eq, NULL, 10);
                else if (strcmp(line, "timeline") == 0)
                    w->b->timeline = (uint32_t)strtoul(eq, NULL, 10);
                else if (strcmp(line, "wal_begin") == 0 && strlen(eq) < sizeof w->b->wal_begin)
                    snprintf(w->b->wal_begin, sizeof w->b->wal_begin, "%s", eq);
                else if (strcmp(line, "wal_end") == 0 && strlen(eq) < sizeof w->b->wal_end)
                    snprintf(w->b->wal_end, sizeof w->b->wal_end, "%s", eq);
            }
        }
        p += n + 1;
    }
    return 0;
}

static int inv_file_end(void *arg, const char *path, uint64_t size, const uint8_t sum[32],
                        bq_errbuf_t *e)
{
    (void)path, (void)sum, (void)e;
    inv_walk_t *w = arg;
    w->files++;
    w->bytes += size;
    return 0;
}

/* One backup of the store as the catalog records it: its .info figures when they are there
 * (and name the same backup), else what its manifest says. 0, 1 when the store cannot say
 * its cluster (an orphan), or an error. */
static int inv_backup(jobs_ctx_t *ctx, const char *id, bq_backup_t *b, bq_errbuf_t *e)
{
    memset(b, 0, sizeof *b);
    static _Thread_local uint8_t info[STORE_BACKUP_INFO_MAX];
    size_t len = 0;
    bq_errbuf_t ie = {{0}};
    inv_walk_t w = {.b = b};
    store_read_cb_t cb = {.meta = inv_meta, .file_end = inv_file_end};
    int rc = store_backup_walk(ctx->store, id, &cb, &w, e); /* the manifest opens: it is whole */
    if (rc)
        return rc;
    char cluster[BQ_NAME_MAX];
    snprintf(cluster, sizeof cluster, "%s", b->cluster);
    static _Thread_local bq_backup_t fig;
    if (store_backup_info_get(ctx->store, id, (char *)info, sizeof info, &len, &ie) == 0 &&
        proto_backup_decode(info, len, &fig, &ie) == 0 && strcmp(fig.id, id) == 0 &&
        (!cluster[0] || strcmp(fig.cluster, cluster) == 0)) {
        *b = fig; /* the figures the worker reported when it took it */
    } else {
        if (ie.msg[0] && !strstr(ie.msg, "has no"))
            bq_warn(COMP, 0, "backup %s: its figures (.info) are unusable (%s): using its manifest",
                    id, ie.msg);
        b->files = w.files;
        b->data_bytes = w.bytes;
        snprintf(b->id, sizeof b->id, "%s", id);
    }
    if (!b->cluster[0])
        return 1;
    b->state = BQ_BACKUP_DONE;
    b->error[0] = '\0';
    if (store_backup_keep_get(ctx->store, id, &b->keep, &ie) != 0) {
        bq_warn(COMP, 0, "backup %s: %s (taken as kept: full)", id, ie.msg);
        b->keep = 1;
    }
    b->retention[0] = '\0';
    snprintf(b->stores, sizeof b->stores, "%s", ctx->worker);
    if (!b->worker[0])
        snprintf(b->worker, sizeof b->worker, "%s", ctx->worker);
    return 0;
}

typedef struct {
    jobs_ctx_t *ctx;
    const char *cluster;
    uint64_t index, from, to;   /* WAL items [from, to) of the whole sequence go in the page */
    bq_msg_result_t *res;
    size_t cap;
    int err;
    bq_errbuf_t *e;
} inv_wal_t;

static int inv_wal_file(uint32_t tli, const char *name, void *arg)
{
    (void)tli;
    inv_wal_t *w = arg;
    if (!bq_wal_name_valid(name)) /* .backup files: stored, never indexed */
        return 0;
    uint64_t i = w->index++;
    if (i < w->from || i >= w->to)
        return 0;
    bq_msg_result_t *r = w->res;
    if (r->ninv_wal == w->cap) {
        size_t ncap = w->cap ? 2 * w->cap : 256;
        bq_wal_file_t *nw = realloc(r->inv_wal, ncap * sizeof *nw);
        if (!nw) {
            w->err = BQ_E_NOMEM;
            return 1;
        }
        r->inv_wal = nw;
        w->cap = ncap;
    }
    bq_wal_file_t *f = &r->inv_wal[r->ninv_wal];
    memset(f, 0, sizeof *f);
    snprintf(f->cluster, sizeof f->cluster, "%s", w->cluster);
    snprintf(f->name, sizeof f->name, "%s", name);
    snprintf(f->stores, sizeof f->stores, "%s", w->ctx->worker);
    bq_errbuf_t se;
    if (store_wal_stat(store_dir(w->ctx->store), w->cluster, name, &f->size, NULL, NULL, &se) != 0) {
        bq_warn(COMP, 0, "WAL file %s of cluster %s: %s (not listed)", name, w->cluster, se.msg);
        return 0;
    }
    char path[PATH_MAX];
    struct stat st;
    snprintf(path, sizeof path, "%s/wal/%s/%.8s/%s", store_dir(w->ctx->store), w->cluster, name, name);
    f->archived_ms = stat(path, &st) == 0 ? (int64_t)st.st_mtime * 1000 : 0;
    r->ninv_wal++;
    return 0;
}

static int inv_wal_cluster(const char *cluster, void *arg)
{
    inv_wal_t *w = arg;
    if (!bq_name_valid(cluster))
        return 0;
    w->cluster = cluster;
    int rc = store_wal_list(store_dir(w->ctx->store), cluster, inv_wal_file, w, w->e);
    return w->err ? w->err : rc;
}

void jobs_inventory(const bq_job_t *job, jobs_ctx_t *ctx, bq_msg_result_t *res)
{
    bq_errbuf_t e = {{0}};
    id_list_t ids = {0};
    int rc = 0;
    if (!ctx->store)
        rc = bq_fail(&e, BQ_E_CONFIG, "%s", ctx->no_store ? ctx->no_store : "this worker has no store");
    else if ((rc = store_backup_list(ctx->store, inv_id, &ids, &e)) == BQ_E_NOMEM)
        bq_fail(&e, rc, "out of memory listing backups");
    uint64_t from = job->offset, to = job->offset + BQ_INVENTORY_PAGE;
    /* the backups: items 0 .. ids.n - 1 */
    if (rc == 0 && from < ids.n) {
        size_t want = (size_t)((to < ids.n ? to : ids.n) - from);
        if (!(res->inv_backups = calloc(want, sizeof *res->inv_backups)))
            rc = bq_fail(&e, BQ_E_NOMEM, "out of memory");
        for (size_t i = 0; rc == 0 && i < want; i++) {
            const char *id = ids.ids[from + i];
            int brc = inv_backup(ctx, id, &res->inv_backups[res->ninv_backups], &e);
            if (brc == 0)
                res->ninv_backups++;
            else if (brc == 1)
                res->inv_orphans++, bq_warn(COMP, job->id, "backup %s: its manifest does not name "
                                            "its cluster (taken before the cluster was recorded): "
                                            "not listed", id);
            else
                bq_warn(COMP, job->id, "backup %s: %s (not listed)", id, e.msg);
            e.msg[0] = '\0';
        }
    }
    /* then the WAL files: items ids.n ... */
    inv_wal_t w = {.ctx = ctx, .from = from > ids.n ? from - ids.n : 0,
                   .to = to > ids.n ? to - ids.n : 0, .res = res, .e = &e};
    if (rc == 0 && w.to > w.from)
        rc = store_wal_clusters(store_dir(ctx->store), inv_wal_cluster, &w, &e);
    else if (rc == 0) /* count them all the same */
        w.to = w.from = UINT64_MAX, rc = store_wal_clusters(store_dir(ctx->store), inv_wal_cluster, &w, &e);
    if (rc == 0 && w.err)
        rc = bq_fail(&e, w.err, "out of memory listing WAL");
    res->inv_total = ids.n + w.index;
    for (size_t i = 0; i < ids.n; i++)
        free(ids.ids[i]);
    free(ids.ids);
    if (rc) {
        res->ok = 0;
        res->retryable = rc == BQ_E_IO;
        snprintf(res->error, sizeof res->error, "could not list the store of worker %s: %s",
                 ctx->worker, e.msg);
        return;
    }
    bq_info(COMP, job->id, "inventory of store %s from item %" PRIu64 ": %zu backups, %zu WAL "
            "files (%" PRIu64 " items in all)", store_dir(ctx->store), job->offset,
            res->ninv_backups, res->ninv_wal, res->inv_total);
    res->ok = 1;
}

/* ---- keep ---- */

void jobs_keep(const bq_job_t *job, jobs_ctx_t *ctx, bq_msg_result_t *res)
{
    bq_errbuf_t e = {{0}};
    int rc = ctx->store ? store_backup_keep_set(ctx->store, job->backup_id, job->keep, &e)
                        : bq_fail(&e, BQ_E_CONFIG, "%s", ctx->no_store ? ctx->no_store
                                                                      : "this worker has no store");
    if (rc) {
        res->ok = 0;
        res->retryable = rc == BQ_E_IO;
        snprintf(res->error, sizeof res->error, "could not mark backup %s of cluster %s in the "
                 "store of worker %s: %s", job->backup_id, job->cluster, ctx->worker, e.msg);
        return;
    }
    bq_info(COMP, job->id, "backup %s of cluster %s: keep %s in store %s", job->backup_id,
            job->cluster, job->keep == 1 ? "full" : job->keep == 2 ? "standalone" : "released",
            store_dir(ctx->store));
    res->ok = 1;
}
