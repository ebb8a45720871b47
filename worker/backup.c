/* The backup job (worker/jobs.h, docs/architecture.md "Backup"): BASE_BACKUP streamed into the
 * worker's store as it arrives, then the WAL from the backup's start to its stop LSN, in the
 * same store backup, so it restores with no archive.
 *
 * Layout of a backup in the store (paths of its manifest; mode carries the file type):
 *     data/PATH                 the main data directory (files, directories, symlinks)
 *     data/backup_manifest      the server's backup_manifest, as pg_verifybackup reads it
 *     tablespaces/OID/PATH      each other tablespace
 *     wal/NAME                  the WAL segments from the start to the stop LSN
 * and one META record "pg.facts": key=value lines (system_identifier, server_version,
 * timeline, start_lsn, stop_lsn, wal_segment_size, wal_begin, wal_end, checksum_failures,
 * checksum_failure lines, tablespace lines "OID LOCATION" and tablespace_name lines "OID NAME"). */
#include "jobs.h"

#include "basebackup.h"
#include "clock.h"
#include "log.h"
#include "pg_check.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define COMP "backup"
#define PROGRESS_EVERY_MS 1000
#define FACTS_MAX (64 * 1024)

typedef struct {
    const bq_job_t *job;
    jobs_ctx_t *ctx;
    store_backup_t *bw;
    char prefix[64];      /* "data/" or "tablespaces/OID/": the archive being received */
    int manifest_open;
    int started, ended;
    pg_bb_end_t end;
    uint64_t system_identifier;
    int server_version;
    uint32_t timeline, seg_size;
    uint64_t start_lsn;
    int64_t total;        /* the server's estimate of the data, bytes; -1 unknown */
    uint64_t done;        /* bytes received (data, then WAL) */
    int64_t last_progress;
    const char *phase;
    char wal_begin[BQ_WAL_NAME_MAX], wal_end[BQ_WAL_NAME_MAX];
    char *facts;          /* FACTS_MAX bytes */
    size_t facts_len;
} bk_t;

static void facts_add(bk_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void facts_add(bk_t *b, const char *fmt, ...)
{
    if (b->facts_len >= FACTS_MAX)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->facts + b->facts_len, FACTS_MAX - b->facts_len, fmt, ap);
    va_end(ap);
    if (n > 0)
        b->facts_len += (size_t)n < FACTS_MAX - b->facts_len ? (size_t)n : FACTS_MAX - b->facts_len - 1;
}

static void progress(bk_t *b, int force)
{
    int64_t now = bq_mono_ms();
    if (!force && now - b->last_progress < PROGRESS_EVERY_MS)
        return;
    b->last_progress = now;
    uint64_t total = b->total > 0 ? (uint64_t)b->total : 0;
    if (total < b->done)
        total = b->done;
    b->ctx->progress(b->ctx, b->done, total, b->phase);
}

static int should_stop(void *arg)
{
    bk_t *b = arg;
    return atomic_load(b->ctx->cancel) != 0;
}

static int on_start(void *arg, const pg_bb_start_t *st, bq_errbuf_t *e)
{
    (void)e;
    bk_t *b = arg;
    b->started = 1;
    b->system_identifier = st->system_identifier;
    b->server_version = st->server_version;
    b->timeline = st->timeline;
    b->start_lsn = st->start_lsn;
    b->seg_size = st->wal_segment_size;
    b->total = st->total_estimate;
    for (size_t i = 0; i < st->ntablespaces; i++)
        if (st->tablespaces[i].oid != 0)
            facts_add(b, "tablespace=%u %s\n", st->tablespaces[i].oid,
                      st->tablespaces[i].location);
    bq_info(COMP, b->job->id, "backup %s of %s: started at %" PRIX64 "/%08" PRIX64 " on timeline %u, "
            "about %" PRId64 " MB", b->job->backup_id, b->job->cluster, b->start_lsn >> 32,
            b->start_lsn & 0xffffffffu, b->timeline, b->total > 0 ? b->total / 1000000 : 0);
    progress(b, 1);
    return 0;
}

static int on_archive_begin(void *arg, const pg_bb_tablespace_t *ts, const char *name,
                            bq_errbuf_t *e)
{
    (void)name, (void)e;
    bk_t *b = arg;
    if (ts->oid == 0)
        snprintf(b->prefix, sizeof b->prefix, "data/");
    else
        snprintf(b->prefix, sizeof b->prefix, "tablespaces/%u/", ts->oid);
    return 0;
}

static int file_open(bk_t *b, const char *path, uint32_t mode, int64_t mtime, bq_errbuf_t *e)
{
    char full[4200];
    if (snprintf(full, sizeof full, "%s%s", b->prefix, path) >= (int)sizeof full)
        return bq_fail(e, BQ_E_PROTO, "path %s%s is too long", b->prefix, path);
    return store_backup_file_begin(b->bw, full, mode, mtime, e);
}

static int on_file_begin(void *arg, const pg_tar_entry_t *en, bq_errbuf_t *e)
{
    bk_t *b = arg;
    uint32_t type;
    switch (en->type) {
    case PG_TAR_FILE: type = S_IFREG; break;
    case PG_TAR_DIR: type = S_IFDIR; break;
    case PG_TAR_SYMLINK: type = S_IFLNK; break;
    default:
        return bq_fail(e, BQ_E_PROTO, "the server sent a %s (%s), which a base backup never has",
                       pg_tar_type_name(en->type), en->path);
    }
    int rc = file_open(b, en->path, type | (en->mode & 07777), en->mtime, e);
    if (rc == 0 && en->type == PG_TAR_SYMLINK) /* a symlink's content is its target */
        rc = store_backup_file_write(b->bw, en->link, strlen(en->link), e);
    return rc;
}

static int on_file_data(void *arg, const uint8_t *buf, size_t len, bq_errbuf_t *e)
{
    bk_t *b = arg;
    int rc = store_backup_file_write(b->bw, buf, len, e);
    b->done += len;
    progress(b, 0);
    return rc;
}

static int on_file_end(void *arg, bq_errbuf_t *e)
{
    bk_t *b = arg;
    return store_backup_file_end(b->bw, e);
}

static int on_manifest(void *arg, const uint8_t *buf, size_t len, bq_errbuf_t *e)
{
    bk_t *b = arg;
    int rc = 0;
    if (!b->manifest_open) {
        snprintf(b->prefix, sizeof b->prefix, "data/");
        if ((rc = file_open(b, "backup_manifest", S_IFREG | 0600, bq_wall_ms() / 1000, e)) != 0)
            return rc;
        b->manifest_open = 1;
    }
    return store_backup_file_write(b->bw, buf, len, e);
}

static int on_end(void *arg, const pg_bb_end_t *end, bq_errbuf_t *e)
{
    bk_t *b = arg;
    b->end = *end;
    b->ended = 1;
    if (b->manifest_open) {
        b->manifest_open = 0;
        return store_backup_file_end(b->bw, e);
    }
    return 0;
}

/* ---- WAL ---- */

static int on_seg_begin(void *arg, const char *name, uint32_t tli, uint64_t segno, bq_errbuf_t *e)
{
    (void)tli, (void)segno;
    bk_t *b = arg;
    if (!b->wal_begin[0])
        snprintf(b->wal_begin, sizeof b->wal_begin, "%s", name);
    snprintf(b->wal_end, sizeof b->wal_end, "%s", name);
    snprintf(b->prefix, sizeof b->prefix, "wal/");
    return file_open(b, name, S_IFREG | 0600, bq_wall_ms() / 1000, e);
}

static int on_seg_end(void *arg, bq_errbuf_t *e)
{
    bk_t *b = arg;
    return store_backup_file_end(b->bw, e);
}

static int on_tablespace(void *arg, uint32_t oid, const char *name)
{
    facts_add(arg, "tablespace_name=%u %s\n", oid, name);
    return 0;
}

static int retryable(int rc)
{
    return rc == BQ_E_PG || rc == BQ_E_TIMEOUT || rc == BQ_E_IO || rc == BQ_E_NOMEM;
}

static void lsn_text(uint64_t lsn, char *buf, size_t size)
{
    pg_lsn_format(lsn, buf, size);
}

void jobs_backup(const bq_job_t *job, jobs_ctx_t *ctx, bq_msg_result_t *res)
{
    bq_errbuf_t e = {{0}};
    bk_t b = {.job = job, .ctx = ctx, .total = -1, .phase = "data"};
    bq_backup_t *out = &res->backup;
    char id[BQ_BACKUP_ID_MAX];
    int64_t t0 = bq_mono_ms(), start_ms = bq_wall_ms();
    int rc = 0, based = 0;
    pg_wal_conn_t *wal = NULL;

    if (job->backup_id[0]) {
        snprintf(id, sizeof id, "%s", job->backup_id);
    } else { /* a coordinator that names none: the time, as it would */
        time_t now = time(NULL);
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(id, sizeof id, "%Y%m%dT%H%M%S", &tm);
    }
    if (!ctx->store) {
        rc = bq_fail(&e, BQ_E_CONFIG, "%s", ctx->no_store ? ctx->no_store : "this worker has no store");
        goto done;
    }
    if (!(b.facts = malloc(FACTS_MAX))) {
        rc = bq_fail(&e, BQ_E_NOMEM, "out of memory");
        goto done;
    }
    /* The WAL connection first: its temporary slot keeps every segment from here on. */
    pg_wal_opts_t wo;
    pg_wal_opts_init(&wo);
    if ((rc = pg_wal_open(job->conninfo, &wo, &wal, &e)) != 0)
        goto done;
    if ((rc = store_backup_begin(ctx->store, id, &b.bw, &e)) != 0)
        goto done;
    if (job->delta_from[0]) {
        /* A base the store cannot use costs only the deltas, never the backup; out of memory
         * fails it as elsewhere (retryable). */
        bq_errbuf_t be = {{0}};
        int brc = store_backup_set_base(b.bw, job->delta_from, &be);
        if (brc != 0 && !be.msg[0])
            snprintf(be.msg, sizeof be.msg, "%s", bq_err_text(brc));
        if (brc == BQ_E_NOMEM) {
            rc = bq_fail(&e, brc, "could not use backup %s as the base for deltas: %s",
                         job->delta_from, be.msg);
            goto done;
        }
        if (brc == BQ_E_NOTFOUND)
            bq_warn(COMP, job->id, "backup %s of %s: base backup %s is not in this worker's "
                    "store (%s); going on without deltas", id, job->cluster, job->delta_from,
                    be.msg);
        else if (brc != 0)
            bq_warn(COMP, job->id, "backup %s of %s: could not use backup %s as the base for "
                    "deltas (%s: %s); going on without deltas", id, job->cluster,
                    job->delta_from, bq_err_name(brc), be.msg);
        else
            bq_info(COMP, job->id, "backup %s of %s: new chunks may be deltas against backup %s",
                    id, job->cluster, job->delta_from);
        based = brc == 0;
    }

    pg_bb_opts_t bo;
    pg_bb_opts_init(&bo);
    char label[128];
    snprintf(label, sizeof label, "barque backup %s", id);
    bo.label = label;
    bo.fast_checkpoint = strcmp(job->checkpoint, "spread") != 0;
    /* pg_tblspc/OID symlinks in the base archive (as plain pg_basebackup has them), not a
     * tablespace_map file: a restore recreates the links where it is told, and the server's
     * backup_manifest still matches every file. */
    bo.tablespace_map = 0;
    static const pg_bb_callbacks_t cb = {
        .start = on_start, .archive_begin = on_archive_begin, .file_begin = on_file_begin,
        .file_data = on_file_data, .file_end = on_file_end, .manifest_data = on_manifest,
        .end = on_end, .should_stop = should_stop};
    /* Names of the tablespaces: a restore relocates them by name. */
    if ((rc = pg_tablespaces_list(job->conninfo, 10, on_tablespace, &b, &e)) != 0)
        goto done;
    rc = pg_basebackup_run(job->conninfo, &bo, &cb, &b, &e);
    if (rc == BQ_E_PG && b.ended && b.end.checksum_failures > 0) {
        bq_warn(COMP, job->id, "backup %s of %s: %" PRIu64 " page checksum failure(s): %s", id,
                job->cluster, b.end.checksum_failures, e.msg);
        rc = 0; /* the backup is whole: the failures are recorded and shown */
    }
    if (rc != 0)
        goto done;
    if (!b.ended) {
        rc = bq_fail(&e, BQ_E_PROTO, "the server ended the backup without its stop position");
        goto done;
    }

    b.phase = "wal";
    static const pg_wal_callbacks_t wcb = {.segment_begin = on_seg_begin,
                                           .segment_data = on_file_data,
                                           .segment_end = on_seg_end,
                                           .should_stop = should_stop};
    if ((rc = pg_wal_fetch_range(wal, b.start_lsn, b.end.stop_lsn, b.timeline, &wcb, &b, &e)) != 0)
        goto done;

    char l1[32], l2[32];
    lsn_text(b.start_lsn, l1, sizeof l1);
    lsn_text(b.end.stop_lsn, l2, sizeof l2);
    facts_add(&b, "cluster=%s\n", job->cluster);
    facts_add(&b, "system_identifier=%" PRIu64 "\nserver_version=%d\ntimeline=%u\n"
              "start_lsn=%s\nstop_lsn=%s\nwal_segment_size=%u\nwal_begin=%s\nwal_end=%s\n"
              "checksum_failures=%" PRIu64 "\n", b.system_identifier, b.server_version,
              b.timeline, l1, l2, b.seg_size, b.wal_begin, b.wal_end, b.end.checksum_failures);
    for (size_t i = 0; i < b.end.nfailures; i++)
        facts_add(&b, "checksum_failure=%s block %u\n", b.end.failures[i].file,
                  b.end.failures[i].block);
    store_backup_stats_t st;
    if ((rc = store_backup_meta(b.bw, "pg.facts", b.facts, b.facts_len, &e)) != 0 ||
        (rc = store_backup_commit(&b.bw, &st, &e)) != 0)
        goto done;

    snprintf(out->id, sizeof out->id, "%s", id);
    snprintf(out->cluster, sizeof out->cluster, "%s", job->cluster);
    out->state = BQ_BACKUP_DONE;
    out->job_id = job->id;
    out->attempt = job->attempt;
    snprintf(out->worker, sizeof out->worker, "%s", ctx->worker ? ctx->worker : "");
    snprintf(out->site, sizeof out->site, "%s", job->site);
    snprintf(out->stores, sizeof out->stores, "%s", ctx->worker ? ctx->worker : "");
    out->system_identifier = b.system_identifier;
    out->pg_version = (uint32_t)b.server_version;
    out->timeline = b.timeline;
    out->start_lsn = b.start_lsn;
    out->stop_lsn = b.end.stop_lsn;
    out->start_ms = start_ms;
    out->stop_ms = bq_wall_ms();
    snprintf(out->wal_begin, sizeof out->wal_begin, "%s", b.wal_begin);
    snprintf(out->wal_end, sizeof out->wal_end, "%s", b.wal_end);
    out->data_bytes = st.logical_bytes;
    out->stored_bytes = st.new_bytes;
    out->dedup_bytes = st.dedup_bytes;
    if (based)
        snprintf(out->delta_from, sizeof out->delta_from, "%s", job->delta_from);
    out->delta_bytes = st.delta_bytes;
    out->delta_chunks = st.delta_chunks;
    out->files = st.files;
    out->duration_ms = bq_mono_ms() - t0;
    out->checksum_failures = b.end.checksum_failures;
    size_t off = 0;
    for (size_t i = 0; i < b.end.nfailures && off + 1 < sizeof out->checksum_detail; i++) {
        int n = snprintf(out->checksum_detail + off, sizeof out->checksum_detail - off, "%s%s block %u",
                         i ? ", " : "", b.end.failures[i].file, b.end.failures[i].block);
        if (n < 0)
            break;
        off += (size_t)n;
    }
    res->has_backup = 1;
    /* the figures beside the manifest, for a catalog rebuilt from the store */
    uint8_t *info = NULL;
    size_t info_len = 0;
    bq_errbuf_t ie = {{0}};
    if (proto_backup_encode(out, &info, &info_len, &ie) != 0 ||
        store_backup_info_put(ctx->store, id, info, info_len, &ie) != 0)
        bq_warn(COMP, job->id, "backup %s of %s: its figures could not be kept beside it (a "
                "rebuilt catalog will show fewer): %s", id, job->cluster, ie.msg);
    free(info);
    b.done = b.done ? b.done : 1;
    b.total = (int64_t)b.done;
    b.phase = "done";
    progress(&b, 1);
    bq_info(COMP, job->id, "backup %s of %s: done in %.1f s, %" PRIu64 " files, %.1f MB read, "
            "%.1f MB stored (%.1f MB already there; %" PRIu64 " chunks as deltas, %.1f MB)", id,
            job->cluster, (double)out->duration_ms / 1000, out->files,
            (double)out->data_bytes / 1e6, (double)out->stored_bytes / 1e6,
            (double)out->dedup_bytes / 1e6, out->delta_chunks, (double)out->delta_bytes / 1e6);
done:
    store_backup_abort(&b.bw);
    pg_wal_close(&wal);
    free(b.facts);
    if (rc != 0) {
        res->ok = 0;
        res->retryable = retryable(rc) && rc != BQ_E_CANCELLED;
        snprintf(res->error, sizeof res->error, "backup %s of cluster %s: %s", id, job->cluster,
                 e.msg);
        return;
    }
    res->ok = 1;
}
