/* The wal-stream job (docs/architecture.md, "WAL streaming"): a long-running receiver of one
 * cluster's WAL on the permanent slot barque_<cluster> (pg_wal_stream), as application_name
 * barque_<cluster>. The segment being received is STORE/spool/CLUSTER/NAME.partial, full size
 * (zeros beyond what came, as pg_receivewal makes it: usable as the segment by a recovery),
 * written in place and fdatasync'ed before the server is told the flush position; a complete
 * segment is renamed NAME, archived into the store's WAL area (store_wal_archive, durable) and
 * removed from the spool. Complete segments left in the spool by an earlier attempt (killed
 * between rename and archive) are archived first. Each file archived (segment, NAME.partial,
 * TLI.history) is reported to the coordinator's WAL index (ctx->wal_archived) once durable.
 * The job ends only when cancelled (success) or on an error (retryable: the coordinator runs
 * it again, from the slot). */
#include "jobs.h"

#include "basebackup.h"
#include "pg_check.h"
#include "walfile.h"
#include "wal.h"
#include "clock.h"
#include "fsutil.h"
#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define COMP "wal-stream"
#define ARCH_QUEUE 64 /* complete segments waiting for the archiver, at most */
#define ARCH_POLL_MS 50 /* an idle stream looks this often whether the archiver is done */

typedef struct {
    const bq_job_t *job;
    jobs_ctx_t *ctx;
    char spool[PATH_MAX];
    pg_wal_spool_t sp; /* the segment being received (pg/walfile.h) */
    uint32_t seg_size;
    uint64_t archived, flushed;
    uint32_t tli;
    int64_t last_progress;
    int got_data;      /* a segment began in this stream */
    bq_errbuf_t err;
    /* the archiver: complete segments go into the store on a thread of their own, so that
     * receiving (and the flush a synchronous primary waits for) never waits for a store */
    pthread_t arch;
    int arch_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char queue[ARCH_QUEUE][STORE_WAL_NAME_MAX]; /* to archive, in order */
    size_t qhead, qlen;
    int arch_busy, arch_stop, arch_rc;
    bq_errbuf_t arch_err;
    struct { char name[STORE_WAL_NAME_MAX]; uint64_t len; } done[ARCH_QUEUE];
    size_t ndone;       /* archived, not yet reported */
} ws_t;

static int io_fail(bq_errbuf_t *e, const char *what, const char *path)
{
    return bq_fail(e, BQ_E_IO, "could not %s %s: %s", what, path, strerror(errno));
}

/* Store spool file NAME (complete segment, or a history file) and remove it; *len_out its
 * size. Thread-safe (the store's WAL put is). */
static int store_file(ws_t *w, const char *name, size_t *len_out, bq_errbuf_t *e)
{
    char path[PATH_MAX + 80];
    snprintf(path, sizeof path, "%s/%s", w->spool, name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return io_fail(e, "open", path);
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        close(fd);
        return io_fail(e, "stat", path);
    }
    size_t len = (size_t)sb.st_size;
    void *map = len ? mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0) : NULL;
    close(fd);
    if (len && map == MAP_FAILED)
        return io_fail(e, "map", path);
    static const uint8_t empty[1];
    int rc = store_wal_archive(w->ctx->store, w->job->cluster, w->seg_size, name,
                               len ? map : empty, len, NULL, e);
    if (len)
        munmap(map, len);
    if (rc)
        return rc;
    /* a complete segment's file becomes the next .prealloc when there is none */
    if (len == w->seg_size)
        rc = pg_wal_spool_recycle(w->spool, path, w->seg_size, e);
    else if (unlink(path) != 0 && errno != ENOENT)
        rc = io_fail(e, "remove", path);
    if (rc)
        return rc;
    if (len_out)
        *len_out = len;
    return 0;
}

/* Archive spool file NAME now, on this thread, and report it. */
static int archive_file(ws_t *w, const char *name, bq_errbuf_t *e)
{
    size_t len = 0;
    int rc = store_file(w, name, &len, e);
    if (rc)
        return rc;
    w->archived++;
    bq_info(COMP, w->job->id, "cluster %s: archived %s", w->job->cluster, name);
    if (w->ctx->wal_archived)
        w->ctx->wal_archived(w->ctx, name, (uint64_t)len);
    return 0;
}

static void *archiver_main(void *arg)
{
    ws_t *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        if (!w->arch_stop) {
            /* first, each time: the next segment's zero-filled file, made ahead (a stat when
             * it is there), so the receiver never writes 16 MiB of zeros and an fsync while the
             * server waits; under a steady load the queue is never empty */
            pthread_mutex_unlock(&w->mu);
            bq_errbuf_t pe = {{0}};
            if (pg_wal_spool_prealloc(w->spool, w->seg_size, &pe) != 0)
                bq_warn(COMP, w->job->id, "cluster %s: %s", w->job->cluster, pe.msg);
            pthread_mutex_lock(&w->mu);
        }
        while (!w->qlen && !w->arch_stop)
            pthread_cond_wait(&w->cv, &w->mu);
        if (!w->qlen)
            break; /* stopping with nothing left */
        char name[STORE_WAL_NAME_MAX];
        snprintf(name, sizeof name, "%s", w->queue[w->qhead]);
        w->arch_busy = 1;
        pthread_mutex_unlock(&w->mu);
        bq_errbuf_t e = {{0}};
        size_t len = 0;
        int rc = store_file(w, name, &len, &e);
        pthread_mutex_lock(&w->mu);
        w->arch_busy = 0;
        if (rc) { /* the segment stays in the spool: the next attempt archives it */
            w->arch_rc = rc;
            w->arch_err = e;
            break;
        }
        w->qhead = (w->qhead + 1) % ARCH_QUEUE;
        w->qlen--;
        if (w->ndone < ARCH_QUEUE) {
            snprintf(w->done[w->ndone].name, sizeof w->done[0].name, "%s", name);
            w->done[w->ndone++].len = len;
        }
        pthread_cond_broadcast(&w->cv);
    }
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* Report what the archiver stored (the job's thread: its report socket); its error, if any. */
static int archiver_reports(ws_t *w, bq_errbuf_t *e)
{
    if (!w->arch_started)
        return 0;
    pthread_mutex_lock(&w->mu);
    size_t n = w->ndone;
    struct { char name[STORE_WAL_NAME_MAX]; uint64_t len; } done[ARCH_QUEUE];
    memcpy(done, w->done, n * sizeof done[0]);
    w->ndone = 0;
    int rc = w->arch_rc;
    if (rc)
        *e = w->arch_err;
    pthread_mutex_unlock(&w->mu);
    for (size_t i = 0; i < n; i++) {
        w->archived++;
        bq_info(COMP, w->job->id, "cluster %s: archived %s", w->job->cluster, done[i].name);
        if (w->ctx->wal_archived)
            w->ctx->wal_archived(w->ctx, done[i].name, done[i].len);
    }
    return rc;
}

/* Hand complete segment name to the archiver (waits while its queue is full). */
static int archiver_put(ws_t *w, const char *name, bq_errbuf_t *e)
{
    int rc = archiver_reports(w, e);
    if (rc)
        return rc;
    pthread_mutex_lock(&w->mu);
    while (w->qlen == ARCH_QUEUE && !w->arch_rc)
        pthread_cond_wait(&w->cv, &w->mu);
    if (!w->arch_rc) {
        snprintf(w->queue[(w->qhead + w->qlen) % ARCH_QUEUE], sizeof w->queue[0], "%s", name);
        w->qlen++;
        pthread_cond_broadcast(&w->cv);
    }
    pthread_mutex_unlock(&w->mu);
    return archiver_reports(w, e);
}

/* Stop the archiver once its queue is done, and report. */
static int archiver_stop(ws_t *w, bq_errbuf_t *e)
{
    if (!w->arch_started)
        return 0;
    pthread_mutex_lock(&w->mu);
    w->arch_stop = 1;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->arch, NULL);
    int rc = archiver_reports(w, e);
    w->arch_started = 0;
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    return rc;
}

static int is_segment_name(const char *n)
{
    uint32_t tli, hi, lo;
    return bq_wal_segment_parse(n, &tli, &hi, &lo) == 0;
}

/* Complete segments and history files an earlier attempt left in the spool. */
static int archive_leftovers(ws_t *w, bq_errbuf_t *e)
{
    DIR *d = opendir(w->spool);
    if (!d)
        return io_fail(e, "open directory", w->spool);
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        size_t n = strlen(de->d_name);
        int hist = n == 16 && strcmp(de->d_name + 8, ".history") == 0;
        if (is_segment_name(de->d_name) || hist)
            rc = archive_file(w, de->d_name, e);
    }
    closedir(d);
    return rc;
}

/* The newest files of the cluster's WAL area, reported again at start: a worker that died
 * between archiving a file and reporting it left the index without it (a false gap); the
 * index takes a report it has as a no-op. */
#define REANNOUNCE_MAX 16

typedef struct {
    char names[REANNOUNCE_MAX][STORE_WAL_NAME_MAX];
    size_t n, next;
} recent_t;

static int recent_add(uint32_t tli, const char *name, void *arg)
{
    (void)tli;
    recent_t *r = arg;
    snprintf(r->names[r->next], sizeof r->names[0], "%s", name);
    r->next = (r->next + 1) % REANNOUNCE_MAX;
    if (r->n < REANNOUNCE_MAX)
        r->n++;
    return 0;
}

static void reannounce(ws_t *w)
{
    if (!w->ctx->wal_archived)
        return;
    recent_t *rp = calloc(1, sizeof *rp);
    if (!rp)
        return;
    bq_errbuf_t e = {{0}};
    if (store_wal_list(store_dir(w->ctx->store), w->job->cluster, recent_add, rp, &e) == 0) {
        for (size_t i = 0; i < rp->n; i++) {
            const char *name = rp->names[(rp->next + REANNOUNCE_MAX - rp->n + i) % REANNOUNCE_MAX];
            uint64_t len = 0;
            if (store_wal_stat(store_dir(w->ctx->store), w->job->cluster, name, &len, NULL, NULL, &e) == 0)
                w->ctx->wal_archived(w->ctx, name, len);
        }
    } else {
        bq_warn(COMP, w->job->id, "cluster %s: could not list its WAL area: %s", w->job->cluster,
                e.msg);
    }
    free(rp);
}

static int should_stop(void *arg)
{
    ws_t *w = arg;
    return atomic_load(w->ctx->cancel) != 0;
}

static int on_begin(void *arg, const char *name, uint32_t tli, uint64_t segno, uint64_t offset,
                    bq_errbuf_t *e)
{
    (void)segno;
    ws_t *w = arg;
    w->tli = tli;
    w->got_data = 1;
    return pg_wal_spool_begin(&w->sp, name, offset, e);
}

static int on_data(void *arg, const uint8_t *buf, size_t len, bq_errbuf_t *e)
{
    return pg_wal_spool_write(&((ws_t *)arg)->sp, buf, len, e);
}

static int on_sync(void *arg, bq_errbuf_t *e)
{
    ws_t *w = arg;
    int rc = pg_wal_spool_sync(&w->sp, e);
    return rc ? rc : archiver_reports(w, e);
}

/* The stream is idle: what the archiver finished is reported now, not at the next WAL (a
 * backup waiting for its last segment is DONE as soon as it is stored); while the archiver
 * holds a segment, the stream looks again every ARCH_POLL_MS. */
static int on_idle(void *arg, int *wait_ms, bq_errbuf_t *e)
{
    ws_t *w = arg;
    if (!w->arch_started)
        return 0;
    int rc = archiver_reports(w, e);
    pthread_mutex_lock(&w->mu);
    if (w->qlen || w->arch_busy || w->ndone)
        *wait_ms = ARCH_POLL_MS;
    pthread_mutex_unlock(&w->mu);
    return rc;
}

static int on_end(void *arg, bq_errbuf_t *e)
{
    ws_t *w = arg;
    int rc = pg_wal_spool_complete(&w->sp, e);
    if (rc)
        return rc;
    return w->arch_started ? archiver_put(w, w->sp.name, e) : archive_file(w, w->sp.name, e);
}

/* A promotion ended the timeline inside the open segment: it is archived as NAME.partial
 * (PostgreSQL's name for it); the new timeline's copy of the segment follows. */
static int on_tl_end(void *arg, uint32_t tli, uint64_t end_lsn, bq_errbuf_t *e)
{
    ws_t *w = arg;
    char l[24], name[80];
    pg_wal_spool_close(&w->sp);
    snprintf(name, sizeof name, "%s.partial", w->sp.name);
    bq_info(COMP, w->job->id, "cluster %s: timeline %u ended at %s in %s", w->job->cluster,
            (unsigned)tli, pg_lsn_format(end_lsn, l, sizeof l), w->sp.name);
    return archive_file(w, name, e);
}

static int on_history(void *arg, uint32_t tli, const char *name, const uint8_t *content,
                      size_t len, bq_errbuf_t *e)
{
    ws_t *w = arg;
    (void)tli;
    char path[PATH_MAX + 80];
    snprintf(path, sizeof path, "%s/%s", w->spool, name);
    int rc = bq_file_write_durable(path, content, len, 0600, 1, e);
    if (rc == BQ_E_EXISTS)
        rc = 0;
    return rc ? rc : archive_file(w, name, e);
}

static void on_position(void *arg, uint32_t tli, uint64_t written, uint64_t flushed)
{
    ws_t *w = arg;
    w->tli = tli;
    w->flushed = flushed;
    int64_t now = bq_mono_ms();
    if (now - w->last_progress < 1000)
        return;
    w->last_progress = now;
    char a[24], b[24], msg[96];
    snprintf(msg, sizeof msg, "streaming timeline %u, flushed %s, received %s", (unsigned)tli,
             pg_lsn_format(flushed, a, sizeof a), pg_lsn_format(written, b, sizeof b));
    w->ctx->progress(w->ctx, flushed, written, msg);
}

/* The newest complete segment of the cluster in the store: its timeline and number. */
typedef struct {
    uint32_t tli, hi, lo;
    int found;
} own_pos_t;

static int own_visit(uint32_t tli, const char *name, void *arg)
{
    own_pos_t *p = arg;
    uint32_t t, hi, lo;
    (void)tli;
    if (bq_wal_segment_parse(name, &t, &hi, &lo) != 0)
        return 0;
    if (!p->found || t > p->tli || (t == p->tli && (hi > p->hi || (hi == p->hi && lo > p->lo)))) {
        p->tli = t;
        p->hi = hi;
        p->lo = lo;
        p->found = 1;
    }
    return 0;
}

/* Where this worker's own archive of the cluster ends: the LSN after its newest complete
 * segment, and its timeline. 0 when it has none. */
static uint64_t own_end(ws_t *w, uint32_t *tli)
{
    own_pos_t p = {0};
    bq_errbuf_t e;
    if (store_wal_list(store_dir(w->ctx->store), w->job->cluster, own_visit, &p, &e) != 0 ||
        !p.found || !w->seg_size)
        return 0;
    uint64_t per = 0x100000000ull / w->seg_size;
    *tli = p.tli;
    return ((uint64_t)p.hi * per + p.lo + 1) * w->seg_size;
}

/* The replication connection of the job, on its permanent slot (created when absent). */
static int ws_open(const bq_job_t *job, const char *slot, const char *app, pg_wal_conn_t **c,
                   bq_errbuf_t *e)
{
    pg_wal_opts_t o;
    pg_wal_opts_init(&o);
    o.slot_name = slot;
    o.permanent = 1;
    o.application_name = app;
    o.status_interval_s = job->synchronous ? 1 : 10;
    o.stall_timeout_s = 120;
    return pg_wal_open(job->conninfo, &o, c, e);
}

void jobs_wal_stream(const bq_job_t *job, jobs_ctx_t *ctx, bq_msg_result_t *res)
{
    ws_t w = {.job = job, .ctx = ctx, .sp = {.fd = -1}};
    bq_errbuf_t *e = &w.err;
    int rc = 0;
    char slot[64], app[BQ_NAME_MAX + 8];
    pg_receiver_names(job->cluster, slot, sizeof slot, app, sizeof app);
    if (!ctx->store)
        rc = bq_fail(e, BQ_E_CONFIG, "%s", ctx->no_store ? ctx->no_store : "no store");
    if (rc == 0 && snprintf(w.spool, sizeof w.spool, "%s/spool/%s", store_dir(ctx->store),
                            job->cluster) >= (int)sizeof w.spool)
        rc = bq_fail(e, BQ_E_INVAL, "spool path too long");
    if (rc == 0)
        rc = bq_mkdir_p(w.spool, 0700, e);
    pg_wal_conn_t *c = NULL;
    if (rc == 0)
        rc = ws_open(job, slot, app, &c, e);
    if (rc == 0) {
        w.seg_size = pg_wal_seg_size(c);
        pg_wal_spool_init(&w.sp, w.spool, w.seg_size);
        rc = archive_leftovers(&w, e);
        if (rc == 0)
            reannounce(&w);
    }
    if (rc == 0) {
        pthread_mutex_init(&w.mu, NULL);
        pthread_cond_init(&w.cv, NULL);
        int err = pthread_create(&w.arch, NULL, archiver_main, &w);
        if (err == 0) {
            w.arch_started = 1;
        } else {
            pthread_mutex_destroy(&w.mu);
            pthread_cond_destroy(&w.cv);
            bq_warn(COMP, job->id, "no archiver thread (%s): archiving as segments complete",
                    strerror(err));
        }
    }
    if (rc == 0) {
        char l[24];
        bq_info(COMP, job->id, "cluster %s: streaming on slot %s (%s) from %s as %s%s",
                job->cluster, slot, pg_wal_slot_created(c) ? "created" : "existing",
                pg_lsn_format(pg_wal_slot_lsn(c), l, sizeof l), app,
                job->synchronous ? ", synchronous" : "");
        ctx->progress(ctx, pg_wal_slot_lsn(c), pg_wal_slot_lsn(c), "streaming");
        static const pg_wal_stream_cb_t cb = {
            .segment_begin = on_begin, .data = on_data, .sync = on_sync, .idle = on_idle, .segment_end = on_end,
            .timeline_end = on_tl_end, .history = on_history, .position = on_position,
            .should_stop = should_stop};
        /* A slot made just now (a new primary after a failover, or a dropped slot) starts at
         * the server's current position: resume where this worker's archive ends instead, on
         * its timeline, so the archive has no gap while the server still has that WAL. */
        uint32_t own_tli = 0;
        uint64_t own = pg_wal_slot_created(c) ? own_end(&w, &own_tli) : 0;
        if (own && own < pg_wal_slot_lsn(c)) {
            char a[24], b[24];
            bq_info(COMP, job->id, "cluster %s: the slot is new (at %s): resuming at the end of "
                    "the archive, %s on timeline %u", job->cluster,
                    pg_lsn_format(pg_wal_slot_lsn(c), a, sizeof a),
                    pg_lsn_format(own, b, sizeof b), (unsigned)own_tli);
            rc = pg_wal_stream(c, own, own_tli, &cb, &w, e);
            if (rc == BQ_E_PG && !w.got_data) {
                bq_warn(COMP, job->id, "cluster %s: the server cannot send WAL from %s on "
                        "timeline %u (%s): streaming from the slot's position %s; the WAL "
                        "between is missing from the archive (check reports the gap)",
                        job->cluster, b, (unsigned)own_tli, e->msg, a);
                pg_wal_close(&c);
                rc = ws_open(job, slot, app, &c, e);
                if (rc == 0)
                    rc = pg_wal_stream(c, pg_wal_slot_lsn(c), 0, &cb, &w, e);
            }
        } else {
            rc = pg_wal_stream(c, pg_wal_slot_lsn(c), 0, &cb, &w, e);
        }
    }
    pg_wal_close(&c);
    pg_wal_spool_close(&w.sp);
    bq_errbuf_t ae = {{0}};
    int arc = archiver_stop(&w, &ae);
    if (arc && (rc == 0 || rc == BQ_E_CANCELLED)) {
        rc = arc;
        *e = ae;
    } else if (arc) {
        bq_warn(COMP, job->id, "cluster %s: archiving: %s", job->cluster, ae.msg);
    }
    if (rc == BQ_E_CANCELLED) {
        res->ok = 1; /* stopped as asked: the slot keeps the position */
        bq_info(COMP, job->id, "cluster %s: stopped after archiving %" PRIu64 " files",
                job->cluster, w.archived);
        return;
    }
    res->ok = 0;
    res->retryable = rc != BQ_E_CONFIG && rc != BQ_E_INVAL;
    snprintf(res->error, sizeof res->error, "WAL stream of cluster %s: %s", job->cluster, e->msg);
}
