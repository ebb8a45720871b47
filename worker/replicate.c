/* Geo copies (worker/jobs.h, issue 8): the replicate job copies one backup from a peer's
 * store into this worker's, the replicate-wal job a list of WAL files.
 *
 * replicate: a view of the peer's store (store.conf, data keys, the manifest; peer.c), whose
 * id key must be this store's (stores made under one master key share it), then the manifest
 * is walked in windows of REP_WINDOW chunk ids; each window's ids that this store lacks
 * (store_import_have) are fetched by REP_STREAMS threads, each with its own client of the
 * peer's data port (pipelined requests: peer.c's flow control), checked on arrival with a
 * reader of the view (AEAD tag under the data key the body names, decompression, re-hash to
 * the id), and appended still sealed (store_import_chunk, indexed in small batches). A body
 * that fails its check is asked for again, at most REP_REFETCH times. The manifest is written
 * last (store_import_commit, which checks every chunk it names is there). An interrupted copy
 * (link cut, either worker restarted) leaves what it imported indexed: the next attempt finds
 * it with store_import_have and fetches only the rest. */
#include "jobs.h"
#include "peer.h"
#include "wal.h"

#include "clock.h"
#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define COMP "replicate"
#define REP_WINDOW 16384  /* chunk ids compared with the store at once */
#define REP_STREAMS 4     /* parallel streams from the peer */
#define REP_WINDOW_REQS 16 /* requests of 32 chunks in flight per stream (~2 MB: a WAN's RTT) */
#define REP_SLICE 1024    /* ids a stream takes at once (32 requests: the window fills) */
#define REP_REFETCH 3     /* times a damaged body is asked for again */
#define REP_BURST_NS 100000000LL /* the bandwidth limit's bucket: 100 ms of bytes */

/* A bandwidth limit shared by a job's streams: a byte clock. */
typedef struct {
    pthread_mutex_t mu;
    uint64_t rate;  /* bytes/s; 0 = none */
    int64_t next_ns; /* when the bytes taken so far may have arrived */
} bw_t;

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Account n bytes received; sleep while the job runs ahead of its rate. */
static void bw_take(bw_t *b, size_t n)
{
    if (!b->rate)
        return;
    pthread_mutex_lock(&b->mu);
    int64_t now = mono_ns();
    if (b->next_ns < now - REP_BURST_NS)
        b->next_ns = now - REP_BURST_NS;
    b->next_ns += (int64_t)((double)n * 1e9 / (double)b->rate);
    int64_t wait = b->next_ns - now;
    pthread_mutex_unlock(&b->mu);
    if (wait > 0) {
        struct timespec ts = {wait / 1000000000LL, wait % 1000000000LL};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        }
    }
}

typedef struct rep rep_t;

typedef struct {
    rep_t *r;
    pthread_t thread;
    int started;
    peer_client_t *pc, *pcb;  /* chunks; the bases of deltas this store lacks */
    store_reader_t *vrd, *ord; /* a reader of the view (checks), of this store (bases) */
    int rc;
    bq_errbuf_t err;
} stream_t;

struct rep {
    const bq_job_t *job;
    jobs_ctx_t *ctx;
    store_t *view;
    store_import_t *imp;
    char where[BQ_NAME_MAX + 16];
    bw_t bw;
    /* the window being fetched */
    uint8_t (*win)[STORE_CHUNK_ID_BYTES];
    size_t nwin;
    uint8_t (*miss)[STORE_CHUNK_ID_BYTES];
    size_t nmiss;
    atomic_size_t next;        /* the next slice of miss to hand out */
    atomic_int failed;         /* a stream failed: the others stop */
    atomic_int streams_done;
    /* figures */
    uint64_t refs, refs_seen;  /* chunk references in the manifest; walked so far */
    uint64_t total, present;
    atomic_uint_fast64_t fetched, bytes, refetched;
    int64_t last_progress;
};

static int cancelled(const rep_t *r)
{
    return r->ctx->cancel && atomic_load(r->ctx->cancel);
}

/* The base of a delta body: from this store when it has it, else from the peer (checked and
 * imported too, so the copy is whole). *bb, *bl: its sealed body. */
static int base_get(stream_t *st, const uint8_t base[STORE_CHUNK_ID_BYTES], const uint8_t **bb,
                    size_t *bl, bq_errbuf_t *e)
{
    rep_t *r = st->r;
    uint8_t have = 0;
    int rc = store_import_have(r->imp, base, 1, &have, e);
    if (rc == 0 && have) {
        rc = store_reader_sealed(st->ord, base, bb, bl, e);
        if (rc == BQ_E_IO) { /* imported by this job, not indexed yet */
            if ((rc = store_import_flush(r->imp, e)) == 0)
                rc = store_reader_sealed(st->ord, base, bb, bl, e);
        }
        return rc;
    }
    if (rc != 0)
        return rc;
    const bq_job_t *job = r->job;
    if (!st->pcb)
        rc = peer_client_new(r->ctx->zctx, job->peer_worker, job->peer_endpoint,
                             job->peer_public_key, r->ctx->keys, &st->pcb, e);
    if (rc == 0)
        rc = peer_chunks_want(st->pcb, base, 1, e);
    if (rc == 0)
        rc = peer_chunk_next(st->pcb, base, bb, bl, e);
    if (rc != 0)
        return rc;
    bw_take(&r->bw, *bl);
    const uint8_t *plain = NULL;
    size_t plen = 0;
    if ((rc = store_reader_open(st->vrd, base, *bb, *bl, NULL, 0, r->where, &plain, &plen, e)) ==
            0 &&
        (rc = store_import_chunk(r->imp, base, *bb, *bl, e)) == 0) {
        atomic_fetch_add(&r->fetched, 1);
        atomic_fetch_add(&r->bytes, *bl);
    }
    return rc;
}

/* Check a body that came from the peer and store it. BQ_E_IO: it is damaged. */
static int chunk_land(stream_t *st, const uint8_t id[STORE_CHUNK_ID_BYTES], const uint8_t *body,
                      size_t len, bq_errbuf_t *e)
{
    rep_t *r = st->r;
    uint8_t base[STORE_CHUNK_ID_BYTES];
    const uint8_t *bb = NULL;
    size_t bl = 0;
    int rc = 0;
    if (store_chunk_body_base(body, len, base))
        rc = base_get(st, base, &bb, &bl, e);
    const uint8_t *plain = NULL;
    size_t plen = 0;
    if (rc == 0)
        rc = store_reader_open(st->vrd, id, body, len, bb, bl, r->where, &plain, &plen, e);
    if (rc == 0)
        rc = store_import_chunk(r->imp, id, body, len, e);
    return rc;
}

/* Fetch n ids of the window (a slice, or the ones to ask for again) and land them; those
 * that arrive damaged go to redo (*nredo). */
static int slice_fetch(stream_t *st, const uint8_t (*ids)[STORE_CHUNK_ID_BYTES], size_t n,
                       uint8_t (*redo)[STORE_CHUNK_ID_BYTES], size_t *nredo, bq_errbuf_t *e)
{
    rep_t *r = st->r;
    *nredo = 0;
    int rc = peer_chunks_want(st->pc, ids[0], n, e);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (cancelled(r) || atomic_load(&r->failed))
            return bq_fail(e, BQ_E_SHUTDOWN, "cancelled");
        const uint8_t *body = NULL;
        size_t len = 0;
        if ((rc = peer_chunk_next(st->pc, ids[i], &body, &len, e)) != 0)
            break;
        bw_take(&r->bw, len);
        bq_errbuf_t why;
        int lr = chunk_land(st, ids[i], body, len, &why);
        if (lr == BQ_E_IO) {
            bq_warn(COMP, r->job->id, "%s: asking for it again", why.msg);
            memcpy(redo[(*nredo)++], ids[i], STORE_CHUNK_ID_BYTES);
            atomic_fetch_add(&r->refetched, 1);
            *e = why;
            continue;
        }
        if (lr != 0) {
            *e = why;
            rc = lr;
            break;
        }
        atomic_fetch_add(&r->fetched, 1);
        atomic_fetch_add(&r->bytes, len);
    }
    return rc;
}

static void *stream_main(void *arg)
{
    stream_t *st = arg;
    rep_t *r = st->r;
    uint8_t(*redo)[STORE_CHUNK_ID_BYTES] = malloc(2 * REP_SLICE * STORE_CHUNK_ID_BYTES);
    uint8_t(*again)[STORE_CHUNK_ID_BYTES] = redo ? redo + REP_SLICE : NULL;
    int rc = redo ? 0 : bq_fail(&st->err, BQ_E_NOMEM, "out of memory");
    while (rc == 0 && !atomic_load(&r->failed)) {
        size_t at = atomic_fetch_add(&r->next, REP_SLICE);
        if (at >= r->nmiss)
            break;
        size_t n = r->nmiss - at < REP_SLICE ? r->nmiss - at : REP_SLICE;
        size_t nredo = 0;
        rc = slice_fetch(st, (const uint8_t(*)[STORE_CHUNK_ID_BYTES])&r->miss[at], n, redo,
                         &nredo, &st->err);
        for (int round = 0; rc == 0 && nredo > 0; round++) {
            if (round == REP_REFETCH) {
                rc = bq_fail(&st->err, BQ_E_IO, "%s (still damaged after %d tries)",
                             st->err.msg, REP_REFETCH + 1);
                break;
            }
            size_t nagain = 0;
            rc = slice_fetch(st, (const uint8_t(*)[STORE_CHUNK_ID_BYTES])redo, nredo, again,
                             &nagain, &st->err);
            memcpy(redo, again, nagain * STORE_CHUNK_ID_BYTES);
            nredo = nagain;
        }
    }
    free(redo);
    st->rc = rc;
    if (rc != 0)
        atomic_store(&r->failed, 1);
    atomic_fetch_add(&r->streams_done, 1);
    return NULL;
}

static int cmp_id(const void *a, const void *b)
{
    return memcmp(a, b, STORE_CHUNK_ID_BYTES);
}

static void progress(rep_t *r, int force)
{
    int64_t now = bq_mono_ms();
    if (!force && now - r->last_progress < 1000)
        return;
    r->last_progress = now;
    char msg[160];
    snprintf(msg, sizeof msg, "copying from %s: %" PRIu64 " of %" PRIu64 " chunk references "
             "compared, %" PRIu64 " chunks fetched (%" PRIu64 " MB)", r->job->peer_worker,
             r->refs_seen, r->refs, (uint64_t)atomic_load(&r->fetched),
             (uint64_t)atomic_load(&r->bytes) / 1000000);
    r->ctx->progress(r->ctx, r->refs_seen, r->refs, msg);
}

/* The window's distinct ids that the store lacks, fetched by the streams. */
static int window_run(rep_t *r, stream_t *sts, bq_errbuf_t *e)
{
    if (r->nwin == 0)
        return 0;
    qsort(r->win, r->nwin, STORE_CHUNK_ID_BYTES, cmp_id);
    size_t n = 0;
    for (size_t i = 0; i < r->nwin; i++)
        if (n == 0 || memcmp(r->win[n - 1], r->win[i], STORE_CHUNK_ID_BYTES) != 0)
            memmove(r->win[n++], r->win[i], STORE_CHUNK_ID_BYTES);
    r->nwin = 0;
    uint8_t *have = malloc(n);
    if (!have)
        return bq_fail(e, BQ_E_NOMEM, "out of memory");
    int rc = store_import_have(r->imp, r->win[0], n, have, e);
    r->nmiss = 0;
    for (size_t i = 0; rc == 0 && i < n; i++)
        if (!have[i])
            memcpy(r->miss[r->nmiss++], r->win[i], STORE_CHUNK_ID_BYTES);
    free(have);
    if (rc != 0)
        return rc;
    r->total += n;
    r->present += n - r->nmiss;
    if (r->nmiss == 0)
        return 0;
    atomic_store(&r->next, 0);
    atomic_store(&r->streams_done, 0);
    size_t nst = (r->nmiss + REP_SLICE - 1) / REP_SLICE;
    if (nst > REP_STREAMS)
        nst = REP_STREAMS;
    size_t started = 0;
    for (size_t i = 0; i < nst; i++) {
        sts[i].rc = 0;
        if (pthread_create(&sts[i].thread, NULL, stream_main, &sts[i]) != 0)
            break;
        started++;
    }
    if (started == 0)
        return bq_fail(e, BQ_E_IO, "could not start a stream thread");
    for (int i = 0; atomic_load(&r->streams_done) < (int)started && i < 1 << 30; i++) {
        bq_sleep_ms(20);
        progress(r, 0);
    }
    for (size_t i = 0; i < started; i++)
        pthread_join(sts[i].thread, NULL);
    for (size_t i = 0; i < started; i++)
        if (sts[i].rc != 0 && sts[i].rc != BQ_E_SHUTDOWN) {
            *e = sts[i].err;
            return sts[i].rc;
        }
    for (size_t i = 0; i < started; i++)
        if (sts[i].rc != 0) {
            *e = sts[i].err;
            return sts[i].rc;
        }
    return 0;
}

typedef struct {
    rep_t *r;
    stream_t *sts;
    int count_only;
} walk_t;

static int walk_chunks(void *arg, const uint8_t *ids, size_t n, bq_errbuf_t *e)
{
    walk_t *w = arg;
    rep_t *r = w->r;
    if (w->count_only) {
        r->refs += n;
        return 0;
    }
    if (cancelled(r))
        return bq_fail(e, BQ_E_SHUTDOWN, "cancelled");
    for (size_t i = 0; i < n; i++) {
        memcpy(r->win[r->nwin++], ids + i * STORE_CHUNK_ID_BYTES, STORE_CHUNK_ID_BYTES);
        r->refs_seen++;
        if (r->nwin == REP_WINDOW) {
            int rc = window_run(r, w->sts, e);
            if (rc != 0)
                return rc;
        }
    }
    progress(r, 0);
    return 0;
}

/* Copy the view's data key files this store lacks (they are wrapped by the deployment's
 * master key, so they go as they are). */
static int keys_import(rep_t *r, bq_errbuf_t *e)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/keys", store_dir(r->view));
    DIR *d = opendir(dir);
    if (!d)
        return bq_fail(e, BQ_E_IO, "could not read %s: %s", dir, strerror(errno));
    int rc = 0;
    for (struct dirent *de; rc == 0 && (de = readdir(d)) != NULL;) {
        unsigned id = 0;
        char tail[16];
        if (sscanf(de->d_name, "%8x.%15s", &id, tail) != 2 || strcmp(tail, "datakey") != 0 ||
            strlen(de->d_name) != 16)
            continue;
        char path[PATH_MAX + 32];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        uint8_t buf[128];
        FILE *f = fopen(path, "rb");
        size_t n = f ? fread(buf, 1, sizeof buf, f) : 0;
        if (f)
            fclose(f);
        if (!f)
            rc = bq_fail(e, BQ_E_IO, "could not read %s: %s", path, strerror(errno));
        else
            rc = store_import_datakey(r->ctx->store, id, buf, n, e);
    }
    closedir(d);
    return rc;
}

static int rep_run(rep_t *r, const char *view_dir, bq_errbuf_t *e)
{
    const bq_job_t *job = r->job;
    jobs_ctx_t *ctx = r->ctx;
    peer_view_args_t va = {ctx->zctx, ctx->keys, ctx->worker, ctx->store_key_file,
                           job->peer_worker, job->peer_endpoint, job->peer_public_key};
    uint64_t got = 0;
    ctx->progress(ctx, 0, 0, "reading the manifest");
    int rc = peer_view_open(&va, job->backup_id, view_dir, &r->view, &got, e);
    atomic_fetch_add(&r->bytes, 0);
    if (rc != 0)
        return rc;
    if (!store_id_key_same(r->view, ctx->store))
        return bq_fail(e, BQ_E_KEY, "the store of worker %s has another id key than the store "
                       "of worker %s, so their chunks cannot be compared: a copy needs both "
                       "stores made under the same store master key", ctx->worker,
                       job->peer_worker);
    if ((rc = keys_import(r, e)) != 0)
        return rc;
    walk_t w = {r, NULL, 1};
    store_read_cb_t cb = {.chunks = walk_chunks};
    if ((rc = store_backup_walk(r->view, job->backup_id, &cb, &w, e)) != 0)
        return rc;
    if ((rc = store_import_begin(ctx->store, &r->imp, e)) != 0)
        return rc;
    stream_t sts[REP_STREAMS];
    memset(sts, 0, sizeof sts);
    for (size_t i = 0; rc == 0 && i < REP_STREAMS; i++) {
        sts[i].r = r;
        if ((rc = store_reader_new(r->view, &sts[i].vrd, e)) == 0 &&
            (rc = store_reader_new(ctx->store, &sts[i].ord, e)) == 0)
            rc = peer_client_new(ctx->zctx, job->peer_worker, job->peer_endpoint,
                                 job->peer_public_key, ctx->keys, &sts[i].pc, e);
        if (rc == 0)
            peer_client_window(sts[i].pc, REP_WINDOW_REQS);
    }
    if (rc == 0) {
        w.sts = sts;
        w.count_only = 0;
        rc = store_backup_walk(r->view, job->backup_id, &cb, &w, e);
    }
    if (rc == 0)
        rc = window_run(r, sts, e);
    for (size_t i = 0; i < REP_STREAMS; i++) {
        got += peer_client_bytes(sts[i].pc) + peer_client_bytes(sts[i].pcb);
        peer_client_destroy(&sts[i].pc);
        peer_client_destroy(&sts[i].pcb);
        store_reader_destroy(&sts[i].vrd);
        store_reader_destroy(&sts[i].ord);
    }
    (void)got;
    if (rc != 0)
        return rc;
    progress(r, 1);
    ctx->progress(ctx, r->refs, r->refs, "writing the manifest");
    char man[PATH_MAX];
    snprintf(man, sizeof man, "%s/backups/%s.manifest", view_dir, job->backup_id);
    store_import_stats_t ist;
    return store_import_commit(&r->imp, job->backup_id, man, &ist, e);
}

void jobs_replicate(const bq_job_t *job, jobs_ctx_t *ctx, bq_msg_result_t *res)
{
    bq_errbuf_t e = {{0}};
    int64_t t0 = bq_mono_ms();
    rep_t r;
    memset(&r, 0, sizeof r);
    r.job = job;
    r.ctx = ctx;
    pthread_mutex_init(&r.bw.mu, NULL);
    r.bw.rate = job->bandwidth_limit;
    snprintf(r.where, sizeof r.where, "from worker %s", job->peer_worker);
    char view_dir[PATH_MAX];
    view_dir[0] = '\0';
    int rc = 0;
    if (!ctx->store)
        rc = bq_fail(&e, BQ_E_CONFIG, "%s", ctx->no_store ? ctx->no_store : "this worker has no store");
    else if (!job->peer_worker[0] || !bq_backup_id_valid(job->backup_id))
        rc = bq_fail(&e, BQ_E_INVAL, "a replicate job needs a backup id and a worker to copy from");
    if (rc == 0)
        rc = peer_view_dir(ctx->store, "replicate", job, view_dir, sizeof view_dir, &e);
    if (rc == 0) {
        r.win = malloc((size_t)REP_WINDOW * STORE_CHUNK_ID_BYTES);
        r.miss = malloc((size_t)REP_WINDOW * STORE_CHUNK_ID_BYTES);
        if (!r.win || !r.miss)
            rc = bq_fail(&e, BQ_E_NOMEM, "out of memory");
    }
    if (rc == 0) {
        bq_info(COMP, job->id, "copying backup %s of cluster %s from worker %s (%s)%s",
                job->backup_id, job->cluster, job->peer_worker, job->peer_endpoint,
                job->bandwidth_limit ? " with a bandwidth limit" : "");
        rc = rep_run(&r, view_dir, &e);
    }
    if (r.imp) {
        store_import_stats_t ist;
        store_import_end(&r.imp, &ist);
    }
    store_close(&r.view);
    bq_errbuf_t ve;
    if (view_dir[0] && store_view_remove(view_dir, &ve) != 0)
        bq_warn(COMP, job->id, "%s", ve.msg);
    free(r.win);
    free(r.miss);
    pthread_mutex_destroy(&r.bw.mu);
    res->has_replicate = 1;
    bq_replicate_result_t *rr = &res->rep;
    snprintf(rr->peer_worker, sizeof rr->peer_worker, "%s", job->peer_worker);
    rr->chunks_total = r.total;
    rr->chunks_present = r.present;
    rr->chunks_fetched = atomic_load(&r.fetched);
    rr->bytes_fetched = atomic_load(&r.bytes);
    rr->chunks_refetched = atomic_load(&r.refetched);
    rr->duration_ms = bq_mono_ms() - t0;
    rr->streams = REP_STREAMS;
    if (rc != 0) {
        res->ok = 0;
        res->retryable = rc != BQ_E_CONFIG && rc != BQ_E_KEY && rc != BQ_E_INVAL &&
                         rc != BQ_E_NOTFOUND;
        snprintf(res->error, sizeof res->error, "could not copy backup %s of cluster %s from "
                 "worker %s: %s", job->backup_id, job->cluster, job->peer_worker, e.msg);
        bq_error(COMP, job->id, "%s (%" PRIu64 " chunks fetched before)", res->error,
                 rr->chunks_fetched);
        return;
    }
    res->ok = 1;
    bq_info(COMP, job->id, "backup %s copied from worker %s: %" PRIu64 " chunks, %" PRIu64
            " already here, %" PRIu64 " fetched (%" PRIu64 " bytes, %" PRIu64 " again), %" PRId64
            " ms", job->backup_id, job->peer_worker, rr->chunks_total, rr->chunks_present,
            rr->chunks_fetched, rr->bytes_fetched, rr->chunks_refetched, rr->duration_ms);
}

/* ---- replicate-wal ------------------------------------------------------------------------ */

/* The segment size store_wal_archive checks a file against: a segment's own length; for
 * other files (history, .partial) the power of two from 1 MiB that holds them. */
static size_t wal_seg_size(const char *name, size_t len)
{
    store_wal_kind_t kind;
    bq_errbuf_t e;
    if (store_wal_name_parse(name, &kind, NULL, &e) == 0 && kind == STORE_WAL_SEGMENT)
        return len;
    size_t s = (size_t)1 << 20;
    while (s < len && s < ((size_t)1 << 30))
        s <<= 1;
    return s;
}

void jobs_replicate_wal(const bq_job_t *job, jobs_ctx_t *ctx, bq_msg_result_t *res)
{
    bq_errbuf_t e = {{0}};
    int64_t t0 = bq_mono_ms();
    res->has_replicate = 1;
    bq_replicate_result_t *rr = &res->rep;
    snprintf(rr->peer_worker, sizeof rr->peer_worker, "%s", job->peer_worker);
    bw_t bw = {.rate = job->bandwidth_limit};
    pthread_mutex_init(&bw.mu, NULL);
    peer_client_t *pc = NULL;
    int rc = 0;
    if (!ctx->store)
        rc = bq_fail(&e, BQ_E_CONFIG, "%s", ctx->no_store ? ctx->no_store : "this worker has no store");
    else if (!job->peer_worker[0])
        rc = bq_fail(&e, BQ_E_INVAL, "a replicate-wal job needs a worker to copy from");
    size_t total = 0;
    for (const char *p = job->wal_names; *p; p++)
        total += *p == ',';
    total += job->wal_names[0] != '\0';
    size_t done = 0;
    char list[sizeof job->wal_names];
    snprintf(list, sizeof list, "%s", job->wal_names);
    char *save = NULL;
    for (char *name = strtok_r(list, ",", &save); rc == 0 && name;
         name = strtok_r(NULL, ",", &save), done++) {
        if (ctx->cancel && atomic_load(ctx->cancel)) {
            rc = bq_fail(&e, BQ_E_SHUTDOWN, "cancelled");
            break;
        }
        uint64_t have = 0;
        bq_errbuf_t se;
        if (store_wal_stat(store_dir(ctx->store), job->cluster, name, &have, NULL, NULL, &se) ==
            0) {
            if (ctx->wal_archived) /* here already: the index learns it */
                ctx->wal_archived(ctx, name, have);
            continue;
        }
        if (!pc)
            rc = peer_client_new(ctx->zctx, job->peer_worker, job->peer_endpoint,
                                 job->peer_public_key, ctx->keys, &pc, &e);
        uint8_t *buf = NULL;
        size_t len = 0;
        int partial = 0;
        uint64_t wire0 = peer_client_bytes(pc);
        if (rc == 0)
            rc = peer_wal_get(pc, job->cluster, name, &buf, &len, &partial, &e);
        uint64_t wire = peer_client_bytes(pc) - wire0; /* packed: a fraction of len */
        rr->bytes_fetched += wire;
        if (rc == BQ_E_NOTFOUND || (rc == 0 && partial)) {
            rr->wal_missing++;
            bq_warn(COMP, job->id, "WAL file %s of cluster %s is not in the store of worker %s",
                    name, job->cluster, job->peer_worker);
            free(buf);
            rc = 0;
            continue;
        }
        if (rc == 0) {
            bw_take(&bw, (size_t)wire);
            rc = store_wal_archive(ctx->store, job->cluster, wal_seg_size(name, len), name, buf,
                                   len, NULL, &e);
        }
        free(buf);
        if (rc == 0) {
            if (ctx->wal_archived)
                ctx->wal_archived(ctx, name, len);
            rr->wal_files++;
            rr->wal_bytes += len;
            char msg[96];
            snprintf(msg, sizeof msg, "copied WAL file %s from %s", name, job->peer_worker);
            ctx->progress(ctx, done + 1, total, msg);
        }
    }
    peer_client_destroy(&pc);
    pthread_mutex_destroy(&bw.mu);
    rr->duration_ms = bq_mono_ms() - t0;
    rr->streams = 1;
    if (rc != 0) {
        res->ok = 0;
        res->retryable = rc != BQ_E_CONFIG && rc != BQ_E_INVAL;
        snprintf(res->error, sizeof res->error, "could not copy the WAL of cluster %s from worker "
                 "%s: %s", job->cluster, job->peer_worker, e.msg);
        return;
    }
    res->ok = 1;
    if (rr->wal_files)
        bq_info(COMP, job->id, "copied %" PRIu64 " WAL files of cluster %s from worker %s: %" PRIu64
                " bytes, %" PRIu64 " over the wire", rr->wal_files, job->cluster, job->peer_worker,
                rr->wal_bytes, rr->bytes_fetched);
}
