/* The coordinator's event loop.
 *
 * Every loop turn: wait for messages (or the next timer), handle up to a batch of them in
 * ONE catalog write transaction, run timers (worker timeouts, lease expiry, dispatch),
 * commit, and only then send the replies and offers the batch produced. A reply therefore
 * never announces a state that is not durable, and a burst of messages costs one fsync.
 * If the commit fails (map full, I/O), the batch's replies are replaced by errors and the
 * in-memory index is rebuilt from the catalog: workers resend results until acknowledged. */
#include "coord.h"

#include "catalog.h"
#include "clock.h"
#include "log.h"
#include "proto.h"
#include "wal_summary.h"
#include "pitr.h"
#include "retention.h"
#include "schedule.h"
#include "fsutil.h"
#include "rtest.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define COMP "coordinator"
#define BATCH_MAX 512
#define TICK_MS 100
#define PERSIST_SEEN_MS 10000
#define READER_CHECK_MS 60000
#define JOBS_LIST_MAX 1000 /* jobs --all: the newest this many */
#define JOBS_CREATE_MAX 100000
#define BACKUPS_LIST_MAX 1000 /* list-backups: the newest this many */
#define LISTINGS_MAX 16       /* list-files pages held until the CLI fetches them */
#define LISTING_TTL_MS 600000 /* ... or for this long */

#define STORE_SAMPLES 120        /* store free space samples kept per worker (2 hours) */
#define STORE_SAMPLE_MS 60000
#define STORE_TREND_MIN_MS 3600000 /* the shortest span a days-until-full figure is drawn from */

typedef struct {
    bq_worker_t rec;          /* as last persisted or reported */
    bq_peer_t peer;           /* where to reach it now */
    int64_t last_seen_mono;
    uint32_t assigned;        /* active jobs the coordinator gave it */
    uint32_t cap;             /* max concurrent jobs */
    int config_cap;           /* [worker NAME] max_jobs */
    int dirty;                /* record differs from the catalog */
    /* store free space samples (check's trend): one per STORE_SAMPLE_MS, a ring */
    int64_t sample_ms[STORE_SAMPLES];
    uint64_t sample_free[STORE_SAMPLES];
    size_t nsamples, sample_next;
} worker_state_t;

typedef struct {
    uint64_t id;
    bq_job_type_t type;
    bq_job_state_t state;
    char cluster[BQ_NAME_MAX];
    char backup_id[BQ_BACKUP_ID_MAX]; /* backup, restore, list-files, delete: the backup */
    char site[BQ_NAME_MAX];
    char pin[BQ_NAME_MAX];    /* only this worker may run it ("" = any of the site) */
    int worker;               /* index into workers, -1 when none */
    uint32_t attempt;
    int64_t lease_deadline;   /* monotonic */
    int64_t next_attempt;     /* monotonic */
    int64_t queued_mono;      /* when it last became QUEUED (assign latency) */
    int cancel_requested;
} job_state_t;

typedef struct {
    bq_peer_t to;
    bq_msg_t msg;
    int cli;                  /* a CLI reply: turned into an error if the batch fails */
} out_msg_t;

/* One page of a list-files job's result, held (in memory only, never in the catalog) until
 * the CLI fetches it with list-files-page, for at most LISTING_TTL_MS. */
typedef struct {
    uint64_t job_id;
    uint64_t offset, total;
    size_t nfiles;
    bq_file_entry_t *files;   /* owned */
    int64_t expires_mono;
} listing_t;

struct coord {
    bq_coord_config_t cfg;
    catalog_t *cat;
    proto_ctx_t *ctx;
    proto_zap_t *zap;
    proto_sock_t *sock;

    worker_state_t *workers;
    size_t nworkers, workers_cap;
    job_state_t *jobs;        /* active (non-terminal) jobs, ascending id */
    size_t njobs, jobs_cap;

    catalog_txn_t *wtxn;      /* the batch's write transaction, opened lazily */
    int batch_failed;
    bq_errbuf_t batch_err;
    out_msg_t *out;
    size_t nout, out_cap;

    listing_t listings[LISTINGS_MAX];
    size_t nlistings;

    uint64_t peers_version;   /* of the worker keys in cfg, as PeerKeys (never 0) */
    int dispatch_dirty;
    int64_t last_persist_mono;
    int64_t last_reader_check_mono;
    int64_t last_wal_check_mono;
    int64_t last_schedule_mono;
    int64_t last_sample_mono;
    int64_t last_retention_mono;
    int64_t last_job_prune_mono;
    char (*ret_due)[BQ_NAME_MAX]; /* clusters whose retention runs at the next turn: a job
                                   * of theirs ended (a backup may be obsolete now, or what
                                   * held retention back is over) */
    size_t nret_due, ret_due_cap;
    /* --rebuild-catalog: each configured worker's inventory (no scheduler, retention or
     * wal-stream jobs meanwhile) */
    int rebuild;
    int rebuild_over;         /* every worker answered, or the deadline passed */
    int64_t rebuild_deadline_mono;
    struct rebuild_worker {
        int state;            /* 0 not asked, 1 a page is queued or running, 2 done, 3 failed */
        char error[BQ_DETAIL_MAX];
        uint64_t backups, wal, orphans;
    } *rb;                    /* one per c->cfg.workers[] */
    uint64_t rb_backups_new, rb_wal_new;
    struct wal_seen {
        char cluster[BQ_NAME_MAX];
        int64_t created_mono; /* a wal-stream job was last queued */
        int64_t active_mono;  /* ... last seen queued or running */
    } *wal_seen;
    size_t nwal_seen;
    /* geo copies (issue 8): per cluster and replicate_to site */
    struct geo_pair {
        char cluster[BQ_NAME_MAX];
        char site[BQ_NAME_MAX];
        int wal_dirty;          /* the WAL index changed since the last look */
        int64_t wal_scan_mono;  /* the last look */
        int64_t wal_idle_until; /* no look before (the source lacked files) */
    } *geo;
    size_t ngeo, geo_cap;
    int geo_dirty;            /* a backup or copy ended: look for copies to queue now */
    int64_t last_geo_mono;
    uint64_t seq;
};

/* ---- small helpers ------------------------------------------------------------------ */

/* The next name of a list (worker or site names joined by ',', spaces allowed around them)
 * into out (cap bytes); *p advanced. 0 at the end. */
static int names_next(const char **p, char *out, size_t cap)
{
    *p += strspn(*p, ", \t");
    size_t w = strcspn(*p, ", \t");
    if (!w)
        return 0;
    snprintf(out, cap, "%.*s", (int)(w < cap ? w : cap - 1), *p);
    *p += w;
    return 1;
}

/* Attempts a job of type t gets: job_max_attempts, but geo copies (whose retries resume
 * where they stopped, across partitions that may last) get at least GEO_ATTEMPTS. */
#define GEO_ATTEMPTS 50
static uint32_t job_attempts_max(const coord_t *c, bq_job_type_t t)
{
    uint32_t n = (uint32_t)c->cfg.job_max_attempts;
    if ((t == BQ_JOB_REPLICATE || t == BQ_JOB_REPLICATE_WAL) && n < GEO_ATTEMPTS)
        n = GEO_ATTEMPTS;
    return n;
}

static int user_is(const bq_peer_t *p, const char *kind, char *name, size_t len)
{
    size_t k = strlen(kind);
    if (strncmp(p->user_id, kind, k) != 0 || p->user_id[k] != ':')
        return 0;
    if (name)
        snprintf(name, len, "%s", p->user_id + k + 1);
    return 1;
}

static int worker_find(coord_t *c, const char *name)
{
    for (size_t i = 0; i < c->nworkers; i++)
        if (strcmp(c->workers[i].rec.name, name) == 0)
            return (int)i;
    return -1;
}

static job_state_t *job_find(coord_t *c, uint64_t id)
{
    size_t lo = 0, hi = c->njobs;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (c->jobs[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return (lo < c->njobs && c->jobs[lo].id == id) ? &c->jobs[lo] : NULL;
}

static int grow(void **arr, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap * 2 : 64;
    while (n < need)
        n *= 2;
    void *p = realloc(*arr, n * elem);
    if (!p)
        return BQ_E_NOMEM;
    *arr = p;
    *cap = n;
    return 0;
}

static int job_index_add(coord_t *c, const bq_job_t *j)
{
    if (grow((void **)&c->jobs, &c->jobs_cap, c->njobs + 1, sizeof *c->jobs))
        return BQ_E_NOMEM;
    /* ids ascend, so appending keeps the order; a reload may add out of order */
    size_t pos = c->njobs;
    while (pos > 0 && c->jobs[pos - 1].id > j->id)
        pos--;
    memmove(&c->jobs[pos + 1], &c->jobs[pos], (c->njobs - pos) * sizeof *c->jobs);
    c->njobs++;
    job_state_t *s = &c->jobs[pos];
    memset(s, 0, sizeof *s);
    s->id = j->id;
    s->type = j->type;
    s->state = j->state;
    snprintf(s->cluster, sizeof s->cluster, "%s", j->cluster);
    snprintf(s->backup_id, sizeof s->backup_id, "%s", j->backup_id);
    snprintf(s->site, sizeof s->site, "%s", j->site);
    snprintf(s->pin, sizeof s->pin, "%s", j->pin_worker);
    s->worker = j->worker[0] ? worker_find(c, j->worker) : -1;
    s->attempt = j->attempt;
    s->cancel_requested = j->cancel_requested;
    int64_t now = bq_mono_ms();
    s->queued_mono = now;
    s->lease_deadline = now + c->cfg.job_lease_ms;
    int64_t wait = j->next_attempt_ms - bq_wall_ms();
    s->next_attempt = now + (wait > 0 ? wait : 0);
    if (s->worker >= 0 && (s->state == BQ_JOB_ASSIGNED || s->state == BQ_JOB_RUNNING))
        c->workers[s->worker].assigned++;
    return 0;
}

static void job_index_compact(coord_t *c)
{
    size_t w = 0;
    for (size_t r = 0; r < c->njobs; r++)
        if (!bq_job_state_terminal(c->jobs[r].state))
            c->jobs[w++] = c->jobs[r];
    c->njobs = w;
}

/* Queue a message to send after the batch commits. Takes ownership of m's contents. */
static void out_push(coord_t *c, const bq_peer_t *to, bq_msg_t *m, int cli)
{
    if (grow((void **)&c->out, &c->out_cap, c->nout + 1, sizeof *c->out)) {
        bq_error(COMP, 0, "out of memory queueing a reply; dropped");
        proto_msg_clear(m);
        return;
    }
    out_msg_t *o = &c->out[c->nout++];
    o->to = *to;
    o->msg = *m;
    o->cli = cli;
    memset(m, 0, sizeof *m);
}

static void out_error(coord_t *c, const bq_peer_t *to, uint64_t seq, int code, const char *text)
{
    bq_msg_t m;
    proto_msg_error(&m, seq, code, "%s", text);
    out_push(c, to, &m, 0);
}

static void cli_reply_error(coord_t *c, const bq_peer_t *to, uint64_t seq, int code,
                            const char *text)
{
    bq_msg_t m = {.type = BQ_MSG_CLI_REPLY, .seq = seq};
    m.u.cli_reply.code = code;
    snprintf(m.u.cli_reply.error, sizeof m.u.cli_reply.error, "%s", text);
    out_push(c, to, &m, 1);
}

/* The batch's write transaction; NULL once the batch has failed. */
static catalog_txn_t *wtxn(coord_t *c)
{
    if (c->batch_failed)
        return NULL;
    if (!c->wtxn) {
        int rc = catalog_txn_begin(c->cat, 1, &c->wtxn, &c->batch_err);
        if (rc) {
            c->batch_failed = rc;
            return NULL;
        }
    }
    return c->wtxn;
}

static void batch_fail(coord_t *c, int rc, const bq_errbuf_t *e)
{
    if (!c->batch_failed) {
        c->batch_failed = rc;
        c->batch_err = *e;
    }
}

/* Read-modify-write one job in the batch. fn edits the record; returns 0 or an error. */
typedef void (*job_edit_fn)(bq_job_t *j, void *arg);
static int job_edit(coord_t *c, uint64_t id, job_edit_fn fn, void *arg, bq_job_t *out)
{
    catalog_txn_t *t = wtxn(c);
    if (!t)
        return c->batch_failed;
    static bq_job_t j; /* large: keep it off the stack; the loop is single-threaded */
    bq_errbuf_t e;
    int rc = catalog_job_get(t, id, &j, &e);
    if (rc == 0) {
        fn(&j, arg);
        j.updated_ms = bq_wall_ms();
        rc = catalog_job_put(t, &j, &e);
    }
    if (rc && rc != BQ_E_NOTFOUND)
        batch_fail(c, rc, &e);
    if (rc == 0 && out)
        *out = j;
    return rc;
}

/* ---- job state transitions ---------------------------------------------------------- */

typedef struct {
    bq_job_state_t state;
    const char *worker;
    uint32_t attempt;
    const char *error;
    int64_t next_attempt_ms;
    const bq_msg_result_t *result;
    int progress;
    uint64_t done, total;
    const char *message;      /* with progress: the report's message (NULL: kept) */
    int cancel;
} job_change_t;

static void job_apply(bq_job_t *j, void *arg)
{
    const job_change_t *ch = arg;
    int64_t now = bq_wall_ms();
    if (ch->progress) {
        j->progress_done = ch->done;
        j->progress_total = ch->total;
        if (ch->message)
            snprintf(j->progress_message, sizeof j->progress_message, "%s", ch->message);
    }
    if (ch->cancel)
        j->cancel_requested = 1;
    if (!ch->state)
        return;
    j->state = ch->state;
    if (ch->worker)
        snprintf(j->worker, sizeof j->worker, "%s", ch->worker);
    if (ch->attempt)
        j->attempt = ch->attempt;
    if (ch->error)
        snprintf(j->error, sizeof j->error, "%s", ch->error);
    j->next_attempt_ms = ch->next_attempt_ms;
    if (ch->state == BQ_JOB_RUNNING && !j->started_ms)
        j->started_ms = now;
    if (bq_job_state_terminal(ch->state))
        j->finished_ms = now;
    if (ch->result && ch->result->has_check) {
        j->has_check = 1;
        j->check = ch->result->check;
    }
    if (ch->result && ch->result->has_restore) {
        char failed[BQ_NAME_MAX]; /* a store that failed an earlier attempt stays named */
        snprintf(failed, sizeof failed, "%s", j->has_restore ? j->restore.source_failed : "");
        j->has_restore = 1;
        j->restore = ch->result->restore;
        if (!j->restore.source_failed[0])
            snprintf(j->restore.source_failed, sizeof j->restore.source_failed, "%s", failed);
    }
    if (ch->result && ch->result->has_delete) {
        j->has_delete = 1;
        j->del = ch->result->del;
    }
    if (ch->result && ch->result->wal_file[0])
        snprintf(j->wal_file, sizeof j->wal_file, "%s", ch->result->wal_file);
    if (ch->result && ch->result->hook_note[0])
        snprintf(j->hook_note, sizeof j->hook_note, "%s", ch->result->hook_note);
    if (ch->result && ch->result->has_prune) {
        j->has_prune = 1;
        j->prune = ch->result->prune;
    }
}

/* Take a job away from its worker's capacity count. */
static void job_release(coord_t *c, job_state_t *s)
{
    if (s->worker >= 0 && c->workers[s->worker].assigned > 0)
        c->workers[s->worker].assigned--;
    s->worker = -1;
    c->dispatch_dirty = 1;
}

/* ---- backups in the catalog ---------------------------------------------------------- */

static int name_in_list(const char *list, const char *name);

typedef struct {
    const char *worker;            /* whose store must hold it */
    char id[BQ_BACKUP_ID_MAX];     /* the newest so far ("" = none) */
} delta_base_t;

static int delta_base_visit(const bq_backup_t *b, void *arg)
{
    delta_base_t *d = arg;
    if ((b->state == BQ_BACKUP_DONE || b->state == BQ_BACKUP_WAITING_FOR_WALS) &&
        name_in_list(b->stores, d->worker) &&
        strcmp(b->id, d->id) > 0)
        snprintf(d->id, sizeof d->id, "%s", b->id);
    return 0;
}

/* j->delta_from for the attempt being offered: the newest (by id, = by time) DONE backup of
 * j->cluster whose stores include j->worker, else "". A catalog that cannot be read for it
 * leaves it "" with a warning: the backup goes on without a base. */
static void delta_base_pick(catalog_txn_t *t, bq_job_t *j)
{
    j->delta_from[0] = '\0';
    delta_base_t d = {.worker = j->worker};
    bq_errbuf_t e;
    int rc = catalog_backup_each(t, j->cluster, delta_base_visit, &d, &e);
    if (rc < 0) {
        bq_warn(COMP, j->id, "backup of cluster %s: could not look for a base for deltas in the "
                "catalog, going on without one: %s", j->cluster, e.msg);
        return;
    }
    snprintf(j->delta_from, sizeof j->delta_from, "%s", d.id);
}

/* A backup job is being offered (job j, already ASSIGNED in this batch): give this attempt a
 * new backup id and a base for deltas (delta_from, "" = none), record Backup{STARTED} and
 * both in the job, all in the batch. On failure e says why; the batch itself has failed only
 * when c->batch_failed is set. */
static int backup_begin(coord_t *c, bq_job_t *j, bq_errbuf_t *e)
{
    catalog_txn_t *t = wtxn(c);
    if (!t)
        return bq_fail(e, c->batch_failed, "%s", c->batch_err.msg);
    j->delta_from[0] = '\0'; /* each attempt picks its own (the last one's may be gone) */
    static bq_backup_t b; /* ~2 KiB: off the stack; the loop is single-threaded */
    memset(&b, 0, sizeof b);
    int64_t now = bq_wall_ms();
    int rc = catalog_backup_id_new(t, j->cluster, now, b.id, e);
    if (rc == 0)
        delta_base_pick(t, j);
    if (rc == 0) {
        b.state = BQ_BACKUP_STARTED;
        snprintf(b.cluster, sizeof b.cluster, "%s", j->cluster);
        b.job_id = j->id;
        b.attempt = j->attempt;
        snprintf(b.worker, sizeof b.worker, "%s", j->worker);
        snprintf(b.site, sizeof b.site, "%s", j->site);
        b.start_ms = now;
        rc = catalog_backup_put(t, &b, e);
    }
    if (rc == 0) {
        snprintf(j->backup_id, sizeof j->backup_id, "%s", b.id);
        rc = catalog_job_put(t, j, e);
    }
    if (rc && rc != BQ_E_INVAL && rc != BQ_E_TOOBIG && rc != BQ_E_NOTFOUND)
        batch_fail(c, rc, e); /* the transaction is gone (map full, I/O) */
    return rc;
}

/* ---- backups waiting for their WAL ---- */

/* The first segment from wal_begin to wal_end (names of one timeline) that the WAL index of
 * cluster lacks, into missing (""): 0 when all are there. The segment size is the archived
 * size of wal_begin (complete segments are exactly wal_segment_size). BQ_E_INVAL for names
 * that are not two segments of one timeline in order. */
static int stores_list_at(const coord_t *c, const char *stores, const char *site);
static bq_copy_t *copy_get(bq_backup_t *b, const char *site);

static int wal_range_missing(const coord_t *c, catalog_txn_t *t, const char *cluster,
                             const char *wal_begin, const char *wal_end, const char *site,
                             char *missing, size_t cap, bq_errbuf_t *e)
{
    uint32_t t1, h1, l1, t2, h2, l2;
    missing[0] = '\0';
    if (bq_wal_segment_parse(wal_begin, &t1, &h1, &l1) != 0 ||
        bq_wal_segment_parse(wal_end, &t2, &h2, &l2) != 0 || t1 != t2 ||
        strcmp(wal_begin, wal_end) > 0)
        return bq_fail(e, BQ_E_INVAL, "WAL range %s..%s is not one timeline's", wal_begin,
                       wal_end);
    bq_wal_file_t w;
    bq_errbuf_t ge;
    if (catalog_wal_get(t, cluster, wal_begin, &w, &ge) != 0 ||
        (site && !stores_list_at(c, w.stores, site))) {
        snprintf(missing, cap, "%s", wal_begin);
        return 0;
    }
    uint64_t seg = w.size, per = seg && (seg & (seg - 1)) == 0 && seg >= (1u << 20) &&
                                         seg <= (1u << 30) ? 0x100000000ull / seg : 256;
    uint64_t a = (uint64_t)h1 * per + l1, b = (uint64_t)h2 * per + l2;
    for (uint64_t n = a + 1; n <= b && n - a < 1000000; n++) {
        char name[32];
        snprintf(name, sizeof name, "%08X%08X%08X", (unsigned)t1, (unsigned)(n / per),
                 (unsigned)(n % per));
        if (catalog_wal_get(t, cluster, name, &w, &ge) != 0 ||
            (site && !stores_list_at(c, w.stores, site))) {
            snprintf(missing, cap, "%s", name);
            return 0;
        }
    }
    return 0;
}

/* Whether a DONE backup of cluster must wait for the archive: its cluster streams WAL (the
 * archive should have every segment) and some segment from its start to its stop is not in
 * the index yet (missing says which). */
static int backup_needs_wal(coord_t *c, catalog_txn_t *t, const bq_backup_t *b, const char *site,
                            char *missing, size_t cap)
{
    const bq_cfg_cluster_t *cl = bq_coord_config_cluster(&c->cfg, b->cluster);
    missing[0] = '\0';
    if (!cl || cl->wal != BQ_WAL_STREAM || !b->wal_begin[0] || !b->wal_end[0])
        return 0;
    bq_errbuf_t e;
    if (wal_range_missing(c, t, b->cluster, b->wal_begin, b->wal_end, site, missing, cap, &e) !=
        0) {
        bq_warn(COMP, b->job_id, "backup %s of cluster %s: %s; not waiting for it", b->id,
                b->cluster, e.msg);
        return 0;
    }
    return missing[0] != '\0';
}

typedef struct {
    coord_t *c;
    catalog_txn_t *t;
} wal_wait_t;

static int copies_wal_check(coord_t *c, catalog_txn_t *t, bq_backup_t *b);

static int wal_wait_visit(const bq_backup_t *b, void *arg)
{
    wal_wait_t *x = arg;
    if (b->state != BQ_BACKUP_WAITING_FOR_WALS) {
        static bq_backup_t cb;
        cb = *b;
        return copies_wal_check(x->c, x->t, &cb);
    }
    static bq_backup_t nb;
    nb = *b;
    char missing[64];
    if (backup_needs_wal(x->c, x->t, &nb, NULL, missing, sizeof missing)) {
        snprintf(nb.error, sizeof nb.error, "waiting for WAL %s", missing);
        if (strcmp(nb.error, b->error) == 0)
            return 0;
    } else {
        nb.state = BQ_BACKUP_DONE;
        nb.error[0] = '\0';
    }
    bq_errbuf_t e;
    int rc = catalog_backup_put(x->t, &nb, &e);
    if (rc) {
        batch_fail(x->c, rc, &e);
        return 1;
    }
    if (nb.state == BQ_BACKUP_DONE)
        bq_info(COMP, nb.job_id, "backup %s of cluster %s is DONE: its WAL is archived", nb.id,
                nb.cluster);
    return 0;
}

/* A WAL file of cluster was archived: the backups waiting for it may be DONE now. */
static void wal_waiters_check(coord_t *c, const char *cluster)
{
    catalog_txn_t *t = wtxn(c);
    if (!t)
        return;
    wal_wait_t x = {c, t};
    bq_errbuf_t e;
    if (catalog_backup_each(t, cluster, wal_wait_visit, &x, &e) < 0)
        bq_warn(COMP, 0, "cluster %s: could not look at the backups waiting for WAL: %s",
                cluster, e.msg);
}

/* The attempt (job j, attempt) that took backup j->backup_id ended: the backup becomes
 * state (DONE or FAILED). figures: what the worker reported (DONE), else NULL. error: why
 * it failed; or, when lost is given, "worker W was lost (LOST)". A backup that is not this
 * attempt's, or has already ended, is left as it is. */
static void backup_end(coord_t *c, const bq_job_t *j, uint32_t attempt, bq_backup_state_t state,
                       const bq_backup_t *figures, const char *error, const char *lost)
{
    if (!j->backup_id[0])
        return;
    catalog_txn_t *t = wtxn(c);
    if (!t)
        return;
    static bq_backup_t b;
    bq_errbuf_t e;
    int rc = catalog_backup_get(t, j->cluster, j->backup_id, &b, &e);
    if (rc) {
        bq_error(COMP, j->id, "could not record the end of backup %s of cluster %s: %s",
                 j->backup_id, j->cluster, e.msg);
        return;
    }
    if (b.job_id != j->id || b.attempt != attempt || b.state != BQ_BACKUP_STARTED) {
        bq_warn(COMP, j->id, "backup %s of cluster %s is %s for job %llu attempt %u: not ending "
                "it for attempt %u", b.id, b.cluster, bq_backup_state_name(b.state),
                (unsigned long long)b.job_id, b.attempt, attempt);
        return;
    }
    int64_t now = bq_wall_ms();
    if (figures) {
        b.system_identifier = figures->system_identifier;
        b.pg_version = figures->pg_version;
        b.timeline = figures->timeline;
        b.start_lsn = figures->start_lsn;
        b.stop_lsn = figures->stop_lsn;
        if (figures->start_ms)
            b.start_ms = figures->start_ms;
        b.stop_ms = figures->stop_ms;
        memcpy(b.wal_begin, figures->wal_begin, sizeof b.wal_begin);
        memcpy(b.wal_end, figures->wal_end, sizeof b.wal_end);
        b.data_bytes = figures->data_bytes;
        b.stored_bytes = figures->stored_bytes;
        b.dedup_bytes = figures->dedup_bytes;
        b.files = figures->files;
        b.duration_ms = figures->duration_ms;
        b.checksum_failures = figures->checksum_failures;
        memcpy(b.checksum_detail, figures->checksum_detail, sizeof b.checksum_detail);
        memcpy(b.delta_from, figures->delta_from, sizeof b.delta_from);
        b.delta_bytes = figures->delta_bytes;
        b.delta_chunks = figures->delta_chunks;
    }
    if (!b.stop_ms)
        b.stop_ms = now;
    if (!b.duration_ms && b.stop_ms > b.start_ms)
        b.duration_ms = b.stop_ms - b.start_ms;
    b.state = state;
    char missing[64];
    if (state == BQ_BACKUP_DONE) {
        /* the store that holds it: the worker that took it, as the coordinator knows it */
        snprintf(b.stores, sizeof b.stores, "%s", b.worker);
        b.error[0] = '\0';
        if (backup_needs_wal(c, t, &b, NULL, missing, sizeof missing)) {
            b.state = BQ_BACKUP_WAITING_FOR_WALS;
            snprintf(b.error, sizeof b.error, "waiting for WAL %s", missing);
        }
    } else if (lost) {
        snprintf(b.error, sizeof b.error, "worker %s was lost (%s)", b.worker, lost);
    } else {
        /* the worker's "backup ID of cluster C: why" says again what the record says */
        char prefix[BQ_NAME_MAX + BQ_BACKUP_ID_MAX + 32];
        int n = snprintf(prefix, sizeof prefix, "backup %s of cluster %s: ", b.id, b.cluster);
        if (error && n > 0 && strncmp(error, prefix, (size_t)n) == 0 && error[n])
            error += n;
        snprintf(b.error, sizeof b.error, "%s", error && error[0] ? error : "failed");
    }
    rc = catalog_backup_put(t, &b, &e);
    if (rc == 0)
        bq_log(state == BQ_BACKUP_DONE ? BQ_LOG_INFO : BQ_LOG_WARNING, COMP, j->id,
               "backup %s of cluster %s is %s%s%s", b.id, b.cluster,
               bq_backup_state_name(b.state), b.error[0] ? ": " : "", b.error);
    else if (rc == BQ_E_INVAL || rc == BQ_E_TOOBIG)
        bq_error(COMP, j->id, "%s", e.msg);
    else
        batch_fail(c, rc, &e);
}

/* Remove name from list (names joined by ','), in place. */
static void name_list_remove(char *list, const char *name)
{
    size_t n = strlen(name);
    char *p = list;
    while (*p) {
        char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == n && strncmp(p, name, n) == 0) {
            if (comma)
                memmove(p, comma + 1, strlen(comma + 1) + 1);
            else if (p > list)
                p[-1] = '\0'; /* the last one: drop its leading comma */
            else
                *p = '\0';
            return;
        }
        p += len + (comma ? 1 : 0);
    }
}

/* Delete job j (record as just edited) ended: ok, the store of its worker no longer holds
 * the backup, which leaves Backup.stores, and the catalog record goes with the last store;
 * else the backup stays DELETING with error as its reason (delete may be run again). */
static void delete_end(coord_t *c, const bq_job_t *j, int ok, const char *error)
{
    catalog_txn_t *t = wtxn(c);
    if (!t)
        return;
    static bq_backup_t b;
    bq_errbuf_t e;
    int rc = catalog_backup_get(t, j->cluster, j->backup_id, &b, &e);
    if (rc == BQ_E_NOTFOUND) {
        bq_info(COMP, j->id, "backup %s of cluster %s is already gone from the catalog",
                j->backup_id, j->cluster);
        return;
    }
    if (rc) {
        batch_fail(c, rc, &e);
        return;
    }
    int site_only = b.state == BQ_BACKUP_DONE || b.state == BQ_BACKUP_WAITING_FOR_WALS;
    if (b.state != BQ_BACKUP_DELETING && !site_only) {
        bq_warn(COMP, j->id, "backup %s of cluster %s is %s: not ending its delete", b.id,
                b.cluster, bq_backup_state_name(b.state));
        return;
    }
    if (site_only && ok) { /* a site's retention removed its copy; the others stay */
        name_list_remove(b.stores, j->pin_worker);
        if (!stores_list_at(c, b.stores, j->site)) {
            bq_copy_t *cp = copy_get(&b, j->site);
            if (cp) {
                cp->state = BQ_COPY_DELETED;
                cp->error[0] = '\0';
            }
        }
        bq_info(COMP, j->id, "backup %s of cluster %s deleted at site %s (worker %s) by its "
                "retention; still in: %s", b.id, b.cluster, j->site, j->pin_worker,
                b.stores[0] ? b.stores : "-");
        if (!b.stores[0]) {
            rc = catalog_backup_del(t, b.cluster, b.id, &e);
            if (rc && rc != BQ_E_NOTFOUND)
                batch_fail(c, rc, &e);
            return;
        }
    } else if (site_only) {
        bq_warn(COMP, j->id, "delete of backup %s of cluster %s at site %s (worker %s) failed: %s",
                b.id, b.cluster, j->site, j->pin_worker, error && error[0] ? error : "?");
        return;
    } else
    if (ok) {
        name_list_remove(b.stores, j->pin_worker);
        if (!b.stores[0]) {
            rc = catalog_backup_del(t, b.cluster, b.id, &e);
            if (rc && rc != BQ_E_NOTFOUND)
                batch_fail(c, rc, &e);
            else
                bq_info(COMP, j->id, "backup %s of cluster %s deleted: no store holds it, its "
                        "catalog record is removed", b.id, b.cluster);
            return;
        }
        bq_info(COMP, j->id, "backup %s of cluster %s deleted from the store of worker %s; "
                "still in: %s", b.id, b.cluster, j->pin_worker, b.stores);
    } else {
        snprintf(b.error, sizeof b.error, "delete on worker %s failed: %s", j->pin_worker,
                 error && error[0] ? error : "?");
        bq_warn(COMP, j->id, "backup %s of cluster %s stays DELETING: %s", b.id, b.cluster,
                b.error);
    }
    rc = catalog_backup_put(t, &b, &e);
    if (rc)
        batch_fail(c, rc, &e);
}

/* ---- list-files pages held for the CLI ------------------------------------------------- */

static listing_t *listing_find(coord_t *c, uint64_t job_id)
{
    for (size_t i = 0; i < c->nlistings; i++)
        if (c->listings[i].job_id == job_id)
            return &c->listings[i];
    return NULL;
}

static void listing_drop(coord_t *c, listing_t *l)
{
    bq_files_free(l->files, l->nfiles);
    *l = c->listings[--c->nlistings];
}

/* Hold the page of result r (list-files job job_id at offset): takes r's files. A full table
 * drops the page that would expire first. */
static void listing_put(coord_t *c, uint64_t job_id, uint64_t offset, bq_msg_result_t *r)
{
    listing_t *l = listing_find(c, job_id);
    if (l) {
        listing_drop(c, l);
    } else if (c->nlistings == LISTINGS_MAX) {
        listing_t *old = &c->listings[0];
        for (size_t i = 1; i < c->nlistings; i++)
            if (c->listings[i].expires_mono < old->expires_mono)
                old = &c->listings[i];
        bq_warn(COMP, old->job_id, "dropping its unfetched file list: %d newer ones wait",
                LISTINGS_MAX);
        listing_drop(c, old);
    }
    l = &c->listings[c->nlistings++];
    l->job_id = job_id;
    l->offset = offset;
    l->total = r->files_total;
    l->nfiles = r->nfiles;
    l->files = r->files;
    l->expires_mono = bq_mono_ms() + LISTING_TTL_MS;
    r->files = NULL;
    r->nfiles = 0;
}

static void listings_expire(coord_t *c)
{
    int64_t now = bq_mono_ms();
    for (size_t i = c->nlistings; i-- > 0;)
        if (c->listings[i].expires_mono < now) {
            bq_info(COMP, c->listings[i].job_id, "its file list was not fetched within %d s: "
                    "dropped", LISTING_TTL_MS / 1000);
            listing_drop(c, &c->listings[i]);
        }
}

/* The attempt ended without a result (worker gone, lease expired): queue it again, or
 * end it when it is out of attempts or was being cancelled. lost says what happened to the
 * worker, for the backup the attempt was taking. */
static void rtest_record(coord_t *c, const bq_job_t *j, const bq_msg_result_t *r,
                         const char *error);
static void geo_copy_end(coord_t *c, const bq_job_t *j, const bq_msg_result_t *r,
                         bq_job_state_t state, const char *error);
static void geo_wal_end(coord_t *c, const bq_job_t *j, const bq_msg_result_t *r);
static void geo_copy_figures(coord_t *c, const bq_msg_result_t *r);
static int copy_count(bq_copy_t *cp, const bq_msg_result_t *r);
static void geo_wal_changed(coord_t *c, const char *cluster);
static void cluster_geo_status(coord_t *c, catalog_txn_t *t, bq_cluster_t *cl);

static void job_requeue_lost(coord_t *c, job_state_t *s, const char *why, const char *lost)
{
    bq_job_t j;
    char msg[BQ_TEXT_MAX];
    snprintf(msg, sizeof msg, "attempt %u lost: %s", s->attempt, why);
    job_change_t ch = {.state = BQ_JOB_QUEUED, .error = msg};
    if (s->cancel_requested) {
        ch.state = BQ_JOB_CANCELLED;
        ch.error = "cancelled (its worker was lost before it confirmed)";
    } else if (s->attempt >= job_attempts_max(c, s->type)) {
        ch.state = BQ_JOB_FAILED;
    }
    ch.worker = ch.state == BQ_JOB_QUEUED ? "" : NULL;
    if (job_edit(c, s->id, job_apply, &ch, &j) != 0)
        return;
    bq_warn(COMP, s->id, "%s; job is now %s", msg, bq_job_state_name(ch.state));
    if (j.type == BQ_JOB_BACKUP) /* the retry, if any, takes a new backup */
        backup_end(c, &j, s->attempt, BQ_BACKUP_FAILED, NULL, "cancelled",
                   s->cancel_requested ? NULL : lost);
    if (j.type == BQ_JOB_DELETE && bq_job_state_terminal(ch.state))
        delete_end(c, &j, 0, ch.error);
    if (j.type == BQ_JOB_RESTORE_TEST && bq_job_state_terminal(ch.state))
        rtest_record(c, &j, NULL, ch.error);
    if (j.type == BQ_JOB_REPLICATE)
        geo_copy_end(c, &j, NULL, ch.state, ch.error);
    job_release(c, s);
    s->state = ch.state;
    s->queued_mono = bq_mono_ms();
    s->next_attempt = s->queued_mono;
}

static int restore_peer(coord_t *c, bq_job_t *j, bq_errbuf_t *e);
static int rtest_offer(coord_t *c, bq_job_t *j, bq_errbuf_t *e);
static int geo_offer(coord_t *c, bq_job_t *j, bq_errbuf_t *e);
static int geo_wal_offer(coord_t *c, bq_job_t *j, bq_errbuf_t *e);

static void job_offer(coord_t *c, job_state_t *s, int wi)
{
    worker_state_t *w = &c->workers[wi];
    bq_job_t *j = malloc(sizeof *j);
    if (!j)
        return;
    job_change_t ch = {.state = BQ_JOB_ASSIGNED, .worker = w->rec.name, .attempt = s->attempt + 1};
    if (job_edit(c, s->id, job_apply, &ch, j) != 0) {
        free(j);
        return;
    }
    /* what some jobs need at each offer: a backup id, a source, a copy's record */
    int rc = 0;
    bq_errbuf_t oe;
    char what[96];
    switch (j->type) {
    case BQ_JOB_BACKUP: rc = backup_begin(c, j, &oe); snprintf(what, sizeof what, "a backup"); break;
    case BQ_JOB_RESTORE: rc = restore_peer(c, j, &oe); snprintf(what, sizeof what, "a restore"); break;
    case BQ_JOB_RESTORE_TEST: rc = rtest_offer(c, j, &oe); snprintf(what, sizeof what, "a restore test"); break;
    case BQ_JOB_REPLICATE:
    case BQ_JOB_REPLICATE_WAL:
        rc = j->type == BQ_JOB_REPLICATE ? geo_offer(c, j, &oe) : geo_wal_offer(c, j, &oe);
        snprintf(what, sizeof what, "a copy to site %s", j->site);
        break;
    default: break;
    }
    if (rc != 0) {
        char msg[BQ_TEXT_MAX];
        snprintf(msg, sizeof msg, "could not start %s of cluster %s: %s", what, j->cluster, oe.msg);
        bq_job_type_t type = j->type;
        free(j);
        if (c->batch_failed)
            return;
        /* nothing to offer: end the job (its record says why) */
        job_change_t fail = {.state = BQ_JOB_FAILED, .worker = "", .error = msg};
        static bq_job_t failed;
        if (job_edit(c, s->id, job_apply, &fail, &failed) == 0) {
            bq_error(COMP, s->id, "%s", msg);
            s->state = BQ_JOB_FAILED;
            if (type == BQ_JOB_RESTORE_TEST)
                rtest_record(c, &failed, NULL, msg);
            if (type == BQ_JOB_REPLICATE)
                geo_copy_end(c, &failed, NULL, BQ_JOB_FAILED, msg);
        }
        return;
    }
    if (j->type == BQ_JOB_BACKUP)
        snprintf(s->backup_id, sizeof s->backup_id, "%s", j->backup_id);
    if (j->type == BQ_JOB_REPLICATE) /* its retries resume in the same store */
        snprintf(s->pin, sizeof s->pin, "%s", j->pin_worker);
    const bq_cfg_cluster_t *cl = bq_coord_config_cluster(&c->cfg, j->cluster);
    if (cl)
        snprintf(j->conninfo, sizeof j->conninfo, "%s", cl->conninfo);
    if (cl && j->type == BQ_JOB_WAL_STREAM)
        j->synchronous = cl->synchronous;
    if (cl && j->type == BQ_JOB_CHECK)
        j->wal_stream = cl->wal == BQ_WAL_STREAM;
    if (cl && (j->type == BQ_JOB_BACKUP || j->type == BQ_JOB_RESTORE || j->type == BQ_JOB_WAL_STREAM)) {
        const char *pre = j->type == BQ_JOB_BACKUP    ? cl->pre_backup_script
                          : j->type == BQ_JOB_RESTORE ? cl->pre_recover_script
                                                      : "";
        const char *post = j->type == BQ_JOB_BACKUP    ? cl->post_backup_script
                           : j->type == BQ_JOB_RESTORE ? cl->post_recover_script
                                                       : cl->post_wal_script;
        snprintf(j->pre_script, sizeof j->pre_script, "%s", pre);
        snprintf(j->post_script, sizeof j->post_script, "%s", post);
        j->hook_timeout_ms = cl->hook_timeout_ms;
        j->hook_retries = (uint32_t)cl->hook_retries;
        j->hook_retry_sleep_ms = cl->hook_retry_sleep_ms;
    }
    s->state = BQ_JOB_ASSIGNED;
    s->attempt = j->attempt;
    s->worker = wi;
    s->lease_deadline = bq_mono_ms() + c->cfg.job_lease_ms;
    w->assigned++;
    int base = j->type == BQ_JOB_BACKUP && j->delta_from[0];
    bq_info(COMP, s->id, "assigned %s job (attempt %u%s%s%s%s) to worker %s after %lld ms queued",
            bq_job_type_name(j->type), j->attempt, j->type == BQ_JOB_BACKUP ? ", backup " : "",
            j->type == BQ_JOB_BACKUP ? j->backup_id : "", base ? ", deltas against " : "",
            base ? j->delta_from : "", w->rec.name, (long long)(bq_mono_ms() - s->queued_mono));
    bq_msg_t m = {.type = BQ_MSG_JOB_OFFER, .seq = ++c->seq};
    m.u.job = j;
    out_push(c, &w->peer, &m, 0);
}

static void backups_running(const coord_t *c, const char *site, int wi, uint32_t *at_site,
                            uint32_t *on_worker);
static void rebuild_tick(coord_t *c);
static void rebuild_result(coord_t *c, const bq_job_t *j, const bq_msg_result_t *r, int ok);
static void rebuild_states(coord_t *c);
static int site_backup_max(const coord_t *c, const char *site);

/* Give every due QUEUED job to the online worker of its site with the most free slots.
 * A backup job also waits while its site runs max_concurrent_backups backups ([site]) and
 * takes only a worker below its own max_concurrent_backups ([worker NAME]). */
static void dispatch(coord_t *c)
{
    int64_t now = bq_mono_ms();
    int64_t online_after = now - c->cfg.worker_timeout_ms;
    c->dispatch_dirty = 0;
    char full_site[BQ_NAME_MAX] = "";
    for (size_t i = 0; i < c->njobs && !c->batch_failed; i++) {
        job_state_t *s = &c->jobs[i];
        if (s->state != BQ_JOB_QUEUED || (c->rebuild && s->type != BQ_JOB_INVENTORY))
            continue;
        if (s->next_attempt > now) {
            c->dispatch_dirty = 1; /* look again when it is due */
            continue;
        }
        if (!s->pin[0] && strcmp(s->site, full_site) == 0)
            continue;
        uint32_t site_running = 0, worker_running = 0;
        int site_max = 0;
        if (s->type == BQ_JOB_BACKUP) {
            site_max = site_backup_max(c, s->site);
            backups_running(c, s->site, -1, &site_running, &worker_running);
            if (site_max > 0 && site_running >= (uint32_t)site_max)
                continue; /* waits for a backup of its site to end */
        }
        int best = -1;
        uint32_t best_free = 0;
        for (size_t k = 0; k < c->nworkers; k++) {
            worker_state_t *w = &c->workers[k];
            if (!w->rec.online || w->last_seen_mono < online_after || w->assigned >= w->cap ||
                strcmp(w->rec.site, s->site) != 0 || (s->pin[0] && strcmp(w->rec.name, s->pin) != 0))
                continue;
            if (s->type == BQ_JOB_RESTORE_TEST && w->rec.scratch_total == 0)
                continue; /* restore tests run in a worker's scratch directory */
            if ((s->type == BQ_JOB_REPLICATE || s->type == BQ_JOB_REPLICATE_WAL) &&
                w->rec.store_total == 0)
                continue; /* copies go into a worker's store */
            if (s->type == BQ_JOB_BACKUP) {
                const bq_cfg_worker_ref_t *ref = bq_coord_config_worker(&c->cfg, w->rec.name);
                backups_running(c, s->site, (int)k, &site_running, &worker_running);
                if (ref && ref->max_concurrent_backups > 0 &&
                    worker_running >= (uint32_t)ref->max_concurrent_backups)
                    continue;
            }
            uint32_t free_slots = w->cap - w->assigned;
            if (best < 0 || free_slots > best_free ||
                (free_slots == best_free && w->rec.store_free > c->workers[best].rec.store_free)) {
                best = (int)k;
                best_free = free_slots;
            }
        }
        if (best < 0) {
            if (!s->pin[0]) /* a pinned job says nothing of the site's other workers */
                snprintf(full_site, sizeof full_site, "%s", s->site);
            continue;
        }
        job_offer(c, s, best);
    }
}

/* ---- workers ------------------------------------------------------------------------ */

static void worker_persist(coord_t *c, worker_state_t *w)
{
    catalog_txn_t *t = wtxn(c);
    if (!t)
        return;
    bq_errbuf_t e;
    int rc = catalog_worker_put(t, &w->rec, &e);
    if (rc)
        batch_fail(c, rc, &e);
    else
        w->dirty = 0;
}

static void worker_offline(coord_t *c, size_t wi, const char *why)
{
    worker_state_t *w = &c->workers[wi];
    w->rec.online = 0;
    worker_persist(c, w);
    bq_warn(COMP, 0, "worker %s (site %s) is offline: %s", w->rec.name, w->rec.site, why);
    for (size_t i = 0; i < c->njobs; i++) {
        job_state_t *s = &c->jobs[i];
        if (s->worker == (int)wi && (s->state == BQ_JOB_ASSIGNED || s->state == BQ_JOB_RUNNING)) {
            char msg[BQ_DETAIL_MAX], lost[BQ_DETAIL_MAX];
            snprintf(msg, sizeof msg, "worker %s went offline (%s)", w->rec.name, why);
            snprintf(lost, sizeof lost, "went offline: %s", why);
            job_requeue_lost(c, s, msg, lost);
        }
    }
}

static void peer_keys_send(coord_t *c, const bq_peer_t *to, const char *name);

static void on_hello(coord_t *c, const bq_peer_t *from, bq_msg_t *m)
{
    char name[BQ_NAME_MAX];
    const bq_msg_hello_t *h = &m->u.hello;
    if (!user_is(from, "worker", name, sizeof name)) {
        out_error(c, from, m->seq, BQ_E_AUTH, "only worker keys may register as workers");
        return;
    }
    if (strcmp(name, h->worker.name) != 0) {
        char msg[BQ_TEXT_MAX];
        snprintf(msg, sizeof msg, "key of worker %s may not register as worker %s", name,
                 h->worker.name);
        bq_warn(COMP, 0, "%s", msg);
        out_error(c, from, m->seq, BQ_E_AUTH, msg);
        return;
    }
    const bq_cfg_worker_ref_t *ref = bq_coord_config_worker(&c->cfg, name);
    if (!ref || strcmp(ref->site, h->worker.site) != 0) {
        char msg[BQ_TEXT_MAX];
        snprintf(msg, sizeof msg, "worker %s says it is at site %s but the coordinator's config "
                 "puts it at site %s", name, h->worker.site, ref ? ref->site : "(none)");
        bq_warn(COMP, 0, "%s", msg);
        out_error(c, from, m->seq, BQ_E_CONFIG, msg);
        return;
    }
    int wi = worker_find(c, name);
    if (wi < 0) {
        if (grow((void **)&c->workers, &c->workers_cap, c->nworkers + 1, sizeof *c->workers))
            return;
        wi = (int)c->nworkers++;
        memset(&c->workers[wi], 0, sizeof c->workers[wi]);
        c->workers[wi].rec.registered_ms = bq_wall_ms();
    }
    worker_state_t *w = &c->workers[wi];
    int was_online = w->rec.online && w->last_seen_mono >= bq_mono_ms() - c->cfg.worker_timeout_ms;
    int64_t registered = w->rec.registered_ms;
    w->rec = h->worker;
    w->rec.registered_ms = registered ? registered : bq_wall_ms();
    if (m->type == BQ_MSG_REGISTER)
        w->rec.registered_ms = bq_wall_ms();
    w->rec.last_seen_ms = bq_wall_ms();
    w->rec.online = 1;
    w->peer = *from;
    w->last_seen_mono = bq_mono_ms();
    uint32_t cap = h->worker.max_jobs ? h->worker.max_jobs : 1;
    if (ref->max_jobs > 0 && (uint32_t)ref->max_jobs < cap)
        cap = (uint32_t)ref->max_jobs;
    w->cap = cap;
    if (!was_online || m->type == BQ_MSG_REGISTER) {
        bq_info(COMP, 0, "worker %s (site %s, version %s, %u slots, %u running) is online",
                name, w->rec.site, w->rec.version, cap, (unsigned)h->nrunning);
        worker_persist(c, w);
        c->dispatch_dirty = 1;
    } else {
        w->dirty = 1;
    }

    /* Renew the leases the worker still holds; cancel attempts it should not be running. */
    int64_t now = bq_mono_ms();
    for (size_t i = 0; i < h->nrunning; i++) {
        job_state_t *s = job_find(c, h->running[i].job_id);
        if (s && s->worker == wi && s->attempt == h->running[i].attempt &&
            (s->state == BQ_JOB_ASSIGNED || s->state == BQ_JOB_RUNNING)) {
            s->lease_deadline = now + c->cfg.job_lease_ms;
            continue;
        }
        if (s && s->worker < 0 && s->attempt == h->running[i].attempt &&
            s->state == BQ_JOB_QUEUED) {
            /* never happens in one coordinator's life; after a restart the catalog wins */
        }
        bq_msg_t cm = {.type = BQ_MSG_JOB_CANCEL, .seq = ++c->seq};
        cm.u.ref = h->running[i];
        bq_info(COMP, h->running[i].job_id,
                "worker %s runs attempt %u which is not current: cancelling it", name,
                h->running[i].attempt);
        out_push(c, from, &cm, 0);
    }
    bq_msg_t ack = {.type = BQ_MSG_HEARTBEAT_ACK, .seq = m->seq};
    ack.u.hb_ack.heartbeat_interval_ms = c->cfg.heartbeat_interval_ms;
    ack.u.hb_ack.lease_ms = c->cfg.job_lease_ms;
    ack.u.hb_ack.peers_version = c->peers_version;
    out_push(c, from, &ack, 0);
    /* A worker with a data port admits the fleet's worker keys: send them until it says it
     * has this version. */
    if (h->worker.data_endpoint[0] && h->peers_version != c->peers_version)
        peer_keys_send(c, from, name);
}

/* The PeerKeys version of the worker and operator keys in the config: a hash of names and
 * keys. */
static uint64_t peers_version_of(const bq_coord_config_t *cfg)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < cfg->nworkers; i++) {
        for (const char *p = cfg->workers[i].name; *p; p++)
            h = (h ^ (uint8_t)*p) * 1099511628211ull;
        h = (h ^ 0xff) * 1099511628211ull;
        for (const char *p = cfg->workers[i].public_key; *p; p++)
            h = (h ^ (uint8_t)*p) * 1099511628211ull;
        h = (h ^ 0xfe) * 1099511628211ull;
    }
    for (size_t i = 0; i < cfg->noperators; i++) {
        h = (h ^ 0xfd) * 1099511628211ull;
        for (const char *p = cfg->operators[i].name; *p; p++)
            h = (h ^ (uint8_t)*p) * 1099511628211ull;
        h = (h ^ 0xfc) * 1099511628211ull;
        for (const char *p = cfg->operators[i].public_key; *p; p++)
            h = (h ^ (uint8_t)*p) * 1099511628211ull;
    }
    return h ? h : 1;
}

/* PEER_KEYS to worker `name`: every worker of the config (the coordinator vouches for them),
 * which its data port then admits, and every operator (admitted for wal-put and wal-get: an
 * archive_command's wal-push, a restore_command's wal-get). */
static void peer_keys_send(coord_t *c, const bq_peer_t *to, const char *name)
{
    bq_msg_t m = {.type = BQ_MSG_PEER_KEYS, .seq = ++c->seq};
    size_t n = c->cfg.nworkers < BQ_PEER_KEYS_MAX ? c->cfg.nworkers : BQ_PEER_KEYS_MAX;
    m.u.peer_keys.version = c->peers_version;
    m.u.peer_keys.keys = calloc(n ? n : 1, sizeof *m.u.peer_keys.keys);
    if (!m.u.peer_keys.keys)
        return;
    for (size_t i = 0; i < n; i++) {
        snprintf(m.u.peer_keys.keys[i].name, sizeof m.u.peer_keys.keys[i].name, "%s",
                 c->cfg.workers[i].name);
        snprintf(m.u.peer_keys.keys[i].public_key, sizeof m.u.peer_keys.keys[i].public_key, "%s",
                 c->cfg.workers[i].public_key);
    }
    m.u.peer_keys.nkeys = n;
    size_t no = c->cfg.noperators < BQ_PEER_KEYS_MAX ? c->cfg.noperators : BQ_PEER_KEYS_MAX;
    m.u.peer_keys.operators = calloc(no ? no : 1, sizeof *m.u.peer_keys.operators);
    if (!m.u.peer_keys.operators) {
        free(m.u.peer_keys.keys);
        return;
    }
    for (size_t i = 0; i < no; i++) {
        snprintf(m.u.peer_keys.operators[i].name, sizeof m.u.peer_keys.operators[i].name, "%s",
                 c->cfg.operators[i].name);
        snprintf(m.u.peer_keys.operators[i].public_key,
                 sizeof m.u.peer_keys.operators[i].public_key, "%s",
                 c->cfg.operators[i].public_key);
    }
    m.u.peer_keys.noperators = no;
    bq_debug(COMP, 0, "sending worker %s the %zu worker and %zu operator keys its data port "
             "admits", name, n, no);
    out_push(c, to, &m, 0);
}

/* A message about (job_id, attempt) from a worker: is it the current attempt on it? */
static job_state_t *job_of_worker(coord_t *c, const bq_peer_t *from, uint64_t id,
                                  uint32_t attempt, int *wi_out, char *why, size_t whylen)
{
    char name[BQ_NAME_MAX];
    if (!user_is(from, "worker", name, sizeof name)) {
        snprintf(why, whylen, "only workers report on jobs");
        return NULL;
    }
    int wi = worker_find(c, name);
    job_state_t *s = job_find(c, id);
    *wi_out = wi;
    if (!s) {
        static bq_job_t j;
        catalog_txn_t *t = wtxn(c);
        if (t && catalog_job_get(t, id, &j, NULL) == 0)
            snprintf(why, whylen, "attempt %u of job %llu from worker %s is superseded (job is %s "
                     "at attempt %u on %s)", attempt, (unsigned long long)id, name,
                     bq_job_state_name(j.state), j.attempt, j.worker[0] ? j.worker : "no worker");
        else
            snprintf(why, whylen, "job %llu is unknown", (unsigned long long)id);
        return NULL;
    }
    if (wi < 0 || s->worker != wi || s->attempt != attempt ||
        (s->state != BQ_JOB_ASSIGNED && s->state != BQ_JOB_RUNNING)) {
        snprintf(why, whylen, "attempt %u of job %llu from worker %s is superseded (job is %s at "
                 "attempt %u on %s)", attempt, (unsigned long long)id, name,
                 bq_job_state_name(s->state), s->attempt,
                 s->worker >= 0 ? c->workers[s->worker].rec.name : "no worker");
        return NULL;
    }
    return s;
}

static void on_accept(coord_t *c, const bq_peer_t *from, bq_msg_t *m)
{
    int wi;
    char why[BQ_DETAIL_MAX];
    job_state_t *s = job_of_worker(c, from, m->u.ref.job_id, m->u.ref.attempt, &wi, why, sizeof why);
    if (!s) {
        bq_warn(COMP, m->u.ref.job_id, "accept refused: %s", why);
        bq_msg_t cm = {.type = BQ_MSG_JOB_CANCEL, .seq = ++c->seq};
        cm.u.ref = m->u.ref;
        out_push(c, from, &cm, 0);
        return;
    }
    if (s->state == BQ_JOB_RUNNING)
        return;
    job_change_t ch = {.state = BQ_JOB_RUNNING};
    if (job_edit(c, s->id, job_apply, &ch, NULL) == 0) {
        s->state = BQ_JOB_RUNNING;
        s->lease_deadline = bq_mono_ms() + c->cfg.job_lease_ms;
    }
}

/* A wal-stream job reports a WAL file durable in its worker's store: record it in the WAL
 * index, in the batch. A record the catalog refuses (a name or stores it cannot keep) is a
 * warning; a dead transaction fails the batch. */
/* Record in this batch that WAL file name (size bytes) of cluster is durable in worker's
 * store (a wal-stream job's report, job_id, or an operator's wal-push, job_id 0). */
static int wal_record(coord_t *c, uint64_t job_id, const char *cluster, const char *worker,
                      const char *name, uint64_t size, bq_errbuf_t *e)
{
    catalog_txn_t *t = wtxn(c);
    if (!t)
        return bq_fail(e, c->batch_failed, "%s", c->batch_err.msg);
    bq_wal_file_t w;
    memset(&w, 0, sizeof w);
    snprintf(w.cluster, sizeof w.cluster, "%s", cluster);
    snprintf(w.name, sizeof w.name, "%s", name);
    w.size = size;
    snprintf(w.stores, sizeof w.stores, "%s", worker);
    w.archived_ms = bq_wall_ms();
    int rc = catalog_wal_put(t, &w, e);
    if (rc == BQ_E_INVAL || rc == BQ_E_TOOBIG)
        bq_warn(COMP, job_id, "WAL file %s of cluster %s from worker %s not recorded: %s", name,
                cluster, worker, e->msg);
    else if (rc)
        batch_fail(c, rc, e);
    else
        bq_debug(COMP, job_id, "cluster %s: WAL file %s (%llu bytes) in the store of %s",
                 cluster, name, (unsigned long long)size, worker);
    if (rc == 0) {
        wal_waiters_check(c, cluster);
        geo_wal_changed(c, cluster);
    }
    return rc;
}

static void on_progress(coord_t *c, const bq_peer_t *from, bq_msg_t *m)
{
    int wi;
    char why[BQ_DETAIL_MAX];
    const bq_msg_progress_t *p = &m->u.progress;
    job_state_t *s = job_of_worker(c, from, p->job_id, p->attempt, &wi, why, sizeof why);
    if (!s) {
        if (p->wal_file[0]) /* the file is in that worker's store, but the index never hears */
            bq_warn(COMP, p->job_id, "WAL file %s not recorded: %s", p->wal_file, why);
        return;
    }
    if (p->wal_file[0]) {
        bq_errbuf_t e;
        if (s->type == BQ_JOB_WAL_STREAM || s->type == BQ_JOB_REPLICATE_WAL)
            wal_record(c, s->id, s->cluster, c->workers[wi].rec.name, p->wal_file, p->wal_size,
                       &e);
        else
            bq_warn(COMP, s->id, "a %s job reported WAL file %s: ignored (only wal-stream and "
                    "replicate-wal jobs archive WAL)", bq_job_type_name(s->type), p->wal_file);
    }
    /* a WAL file's report carries no figures: the job's progress stays as it was */
    job_change_t ch = {.progress = !p->wal_file[0], .done = p->done, .total = p->total,
                       .message = p->message};
    if (s->state == BQ_JOB_ASSIGNED)
        ch.state = BQ_JOB_RUNNING;
    if (job_edit(c, s->id, job_apply, &ch, NULL) == 0) {
        if (ch.state)
            s->state = ch.state;
        s->lease_deadline = bq_mono_ms() + c->cfg.job_lease_ms;
    }
}

static void check_wal_items(coord_t *c, const char *cluster, bq_check_result_t *r);
static void wal_prune_end(coord_t *c, const bq_job_t *j);

/* Run the retention of cluster at the next turn (once, however often asked). */
static void retention_soon(coord_t *c, const char *cluster)
{
    if (!cluster[0])
        return;
    for (size_t i = 0; i < c->nret_due; i++)
        if (strcmp(c->ret_due[i], cluster) == 0)
            return;
    if (grow((void **)&c->ret_due, &c->ret_due_cap, c->nret_due + 1, sizeof *c->ret_due))
        return; /* the periodic run will do it */
    snprintf(c->ret_due[c->nret_due++], BQ_NAME_MAX, "%s", cluster);
}
static void check_coord_items(coord_t *c, const char *cluster, bq_check_result_t *r);
static void check_item(bq_check_result_t *r, const char *name, int ok, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void cluster_wal_status(coord_t *c, catalog_txn_t *t, bq_cluster_t *cl);

static void on_result(coord_t *c, const bq_peer_t *from, bq_msg_t *m)
{
    int wi;
    char why[BQ_DETAIL_MAX];
    const bq_msg_result_t *r = m->u.result;
    bq_msg_t ack = {.type = BQ_MSG_RESULT_ACK, .seq = m->seq};
    ack.u.result_ack.job_id = r->job_id;
    ack.u.result_ack.attempt = r->attempt;
    job_state_t *s = job_of_worker(c, from, r->job_id, r->attempt, &wi, why, sizeof why);
    if (!s) {
        /* a copy's superseded attempt (lost in a partition) still moved chunks: its figures
         * count, its outcome does not */
        if (r->has_replicate)
            geo_copy_figures(c, r);
        bq_warn(COMP, r->job_id, "result refused: %s", why);
        snprintf(ack.u.result_ack.reason, sizeof ack.u.result_ack.reason, "%s", why);
        out_push(c, from, &ack, 0);
        return;
    }
    if (s->type == BQ_JOB_CHECK && s->cluster[0]) {
        bq_check_result_t *cr = &m->u.result->check;
        if (!r->has_check) { /* the worker could not check (PostgreSQL unreachable): an item */
            memset(cr, 0, sizeof *cr);
            check_item(cr, "PostgreSQL", 0, "%s", r->error[0] ? r->error : "the check failed");
            m->u.result->has_check = 1;
        }
        check_wal_items(c, s->cluster, cr);
        check_coord_items(c, s->cluster, cr);
    }
    job_change_t ch = {.result = r};
    if (s->type == BQ_JOB_LIST_FILES && r->ok) { /* the job shows how far the listing got */
        ch.progress = 1;
        ch.done = r->nfiles;
        ch.total = r->files_total;
    }
    if (r->ok) {
        ch.state = BQ_JOB_SUCCEEDED;
        ch.error = "";
    } else if (s->cancel_requested) {
        ch.state = BQ_JOB_CANCELLED;
        ch.error = r->error;
    } else if (r->retryable && s->attempt < job_attempts_max(c, s->type)) {
        ch.state = BQ_JOB_QUEUED;
        ch.worker = "";
        ch.error = r->error;
        int64_t backoff = c->cfg.job_retry_backoff_ms << (s->attempt > 10 ? 10 : s->attempt - 1);
        ch.next_attempt_ms = bq_wall_ms() + backoff;
    } else {
        ch.state = BQ_JOB_FAILED;
        ch.error = r->error;
    }
    static bq_job_t j; /* large: off the stack */
    if (job_edit(c, s->id, job_apply, &ch, &j) != 0)
        return;
    if (j.type == BQ_JOB_BACKUP) {
        if (r->ok && r->has_backup)
            backup_end(c, &j, s->attempt, BQ_BACKUP_DONE, &r->backup, NULL, NULL);
        else if (r->ok)
            backup_end(c, &j, s->attempt, BQ_BACKUP_FAILED, NULL,
                       "the worker reported success without the backup's figures", NULL);
        else
            backup_end(c, &j, s->attempt, BQ_BACKUP_FAILED, NULL,
                       ch.state == BQ_JOB_CANCELLED ? "cancelled" : r->error, NULL);
    }
    if (j.type == BQ_JOB_DELETE && bq_job_state_terminal(ch.state))
        delete_end(c, &j, ch.state == BQ_JOB_SUCCEEDED,
                   ch.state == BQ_JOB_CANCELLED ? "cancelled" : r->error);
    if (j.type == BQ_JOB_LIST_FILES && ch.state == BQ_JOB_SUCCEEDED)
        listing_put(c, j.id, j.offset, m->u.result);
    if (j.type == BQ_JOB_WAL_PRUNE && ch.state == BQ_JOB_SUCCEEDED)
        wal_prune_end(c, &j);
    if (j.type == BQ_JOB_RESTORE_TEST && bq_job_state_terminal(ch.state))
        rtest_record(c, &j, r, ch.state == BQ_JOB_CANCELLED ? "cancelled" : r->error);
    if (j.type == BQ_JOB_REPLICATE)
        geo_copy_end(c, &j, r, ch.state, ch.state == BQ_JOB_CANCELLED ? "cancelled" : r->error);
    if (j.type == BQ_JOB_REPLICATE_WAL && bq_job_state_terminal(ch.state))
        geo_wal_end(c, &j, r);
    if (j.type == BQ_JOB_INVENTORY && c->rebuild && bq_job_state_terminal(ch.state))
        rebuild_result(c, &j, r, ch.state == BQ_JOB_SUCCEEDED);
    if ((j.type == BQ_JOB_BACKUP || j.type == BQ_JOB_DELETE || j.type == BQ_JOB_WAL_PRUNE ||
         j.type == BQ_JOB_RESTORE || j.type == BQ_JOB_LIST_FILES || j.type == BQ_JOB_KEEP ||
         j.type == BQ_JOB_RESTORE_TEST || j.type == BQ_JOB_REPLICATE) &&
        bq_job_state_terminal(ch.state))
        retention_soon(c, j.cluster);
    bq_log(r->ok ? BQ_LOG_INFO : BQ_LOG_WARNING, COMP, s->id,
           "attempt %u on worker %s ended: %s%s%s", s->attempt, c->workers[wi].rec.name,
           bq_job_state_name(ch.state), r->ok ? "" : ": ", r->ok ? "" : r->error);
    job_release(c, s);
    s->state = ch.state;
    if (ch.state == BQ_JOB_QUEUED) {
        s->queued_mono = bq_mono_ms();
        s->next_attempt = s->queued_mono + (ch.next_attempt_ms - bq_wall_ms());
    }
    ack.u.result_ack.accepted = 1;
    out_push(c, from, &ack, 0);
}

/* ---- the CLI's API ------------------------------------------------------------------ */

typedef struct {
    bq_msg_cli_reply_t *r;
    int all;
    size_t cap;
    uint64_t seen; /* jobs offered to the list: with --all, a ring of the newest kept */
    int err;
} list_ctx_t;

static int list_job(const bq_job_t *j, void *arg)
{
    list_ctx_t *l = arg;
    if (!l->all && bq_job_state_terminal(j->state))
        return 0;
    size_t slot = (size_t)(l->seen++ % JOBS_LIST_MAX);
    if (slot >= l->r->njobs) {
        if (grow((void **)&l->r->jobs, &l->cap, l->r->njobs + 1, sizeof *l->r->jobs)) {
            l->err = BQ_E_NOMEM;
            return 1;
        }
        l->r->njobs++;
    }
    l->r->jobs[slot] = *j; /* past JOBS_LIST_MAX, overwrites the oldest */
    l->r->jobs[slot].conninfo[0] = '\0'; /* may carry a password */
    return 0;
}

static void jobs_reverse(bq_job_t *a, size_t n)
{
    static bq_job_t tmp;
    for (size_t i = 0; i < n / 2; i++) {
        tmp = a[i];
        a[i] = a[n - 1 - i];
        a[n - 1 - i] = tmp;
    }
}

/* Put a full ring back in id order: the oldest sits at seen % JOBS_LIST_MAX. */
static void list_jobs_unring(list_ctx_t *l)
{
    size_t n = l->r->njobs, start = (size_t)(l->seen % JOBS_LIST_MAX);
    if (l->seen <= JOBS_LIST_MAX || start == 0)
        return;
    jobs_reverse(l->r->jobs, start);
    jobs_reverse(l->r->jobs + start, n - start);
    jobs_reverse(l->r->jobs, n);
}

static int list_cluster(const bq_cluster_t *cl, void *arg)
{
    list_ctx_t *l = arg;
    if (grow((void **)&l->r->clusters, &l->cap, l->r->nclusters + 1, sizeof *l->r->clusters)) {
        l->err = BQ_E_NOMEM;
        return 1;
    }
    l->r->clusters[l->r->nclusters] = *cl;
    l->r->clusters[l->r->nclusters].conninfo[0] = '\0';
    l->r->nclusters++;
    return 0;
}

static int list_site(const char *name, void *arg)
{
    list_ctx_t *l = arg;
    if (grow((void **)&l->r->sites, &l->cap, l->r->nsites + 1, sizeof *l->r->sites)) {
        l->err = BQ_E_NOMEM;
        return 1;
    }
    snprintf(l->r->sites[l->r->nsites++], BQ_NAME_MAX, "%s", name);
    return 0;
}

/* list-backups: a ring of the cluster's newest BACKUPS_LIST_MAX backups (oldest first once
 * unrung); show-backup latest/oldest: the newest/oldest DONE one. */
typedef struct {
    bq_msg_cli_reply_t *r;
    size_t cap;
    uint64_t seen;
    int err;
    int want_done;          /* 1: keep the oldest DONE one; 2: keep the newest DONE one;
                             * 3: the newest DONE one that ends before target */
    const bq_recovery_t *target;
    int found;
} backup_list_t;

static int list_backup(const bq_backup_t *b, void *arg)
{
    backup_list_t *l = arg;
    if (l->want_done) {
        if (b->state != BQ_BACKUP_DONE ||
            (l->want_done == 3 && !pitr_backup_before(b, l->target)))
            return 0;
        l->r->backups[0] = *b;
        l->found = 1;
        return l->want_done == 1 ? 1 : 0; /* oldest: the first one will do */
    }
    size_t slot = (size_t)(l->seen++ % BACKUPS_LIST_MAX);
    if (slot >= l->r->nbackups) {
        if (grow((void **)&l->r->backups, &l->cap, l->r->nbackups + 1, sizeof *l->r->backups)) {
            l->err = BQ_E_NOMEM;
            return 1;
        }
        l->r->nbackups++;
    }
    l->r->backups[slot] = *b; /* past BACKUPS_LIST_MAX, overwrites the oldest */
    return 0;
}

static void backups_reverse(bq_backup_t *a, size_t n)
{
    static bq_backup_t tmp;
    for (size_t i = 0; i < n / 2; i++) {
        tmp = a[i];
        a[i] = a[n - 1 - i];
        a[n - 1 - i] = tmp;
    }
}

/* Put a full ring back in id order: the oldest sits at seen % BACKUPS_LIST_MAX. */
static void list_backups_unring(backup_list_t *l)
{
    size_t n = l->r->nbackups, start = (size_t)(l->seen % BACKUPS_LIST_MAX);
    if (l->seen <= BACKUPS_LIST_MAX || start == 0)
        return;
    backups_reverse(l->r->backups, start);
    backups_reverse(l->r->backups + start, n - start);
    backups_reverse(l->r->backups, n);
}

static int first_backup(const bq_backup_t *b, void *arg)
{
    (void)b;
    *(int *)arg = 1;
    return 1;
}

static int first_wal(const bq_wal_file_t *w, void *arg)
{
    (void)w;
    *(int *)arg = 1;
    return 1;
}

/* The CLI names a cluster for its backups (or, wal set, its WAL): one in the config, or one
 * the catalog still has backups (WAL files) of. */
static int cli_cluster_known(coord_t *c, catalog_txn_t *rt, const char *verb, const char *cluster,
                             int wal, bq_errbuf_t *e)
{
    if (!cluster[0])
        return bq_fail(e, BQ_E_USAGE, "%s needs a cluster", verb);
    if (bq_coord_config_cluster(&c->cfg, cluster))
        return 0;
    int any = 0;
    int rc = wal ? catalog_wal_each(rt, cluster, first_wal, &any, e)
                 : catalog_backup_each(rt, cluster, first_backup, &any, e);
    if (rc < 0)
        return rc;
    if (!any)
        return bq_fail(e, BQ_E_NOTFOUND, "no cluster %s in the coordinator's config", cluster);
    return 0;
}

static int cli_backup_cluster(coord_t *c, catalog_txn_t *rt, const char *verb,
                              const char *cluster, bq_errbuf_t *e)
{
    return cli_cluster_known(c, rt, verb, cluster, 0, e);
}

typedef struct {
    wal_summary_t sum;
    int64_t newest_ms;        /* when the newest file was archived */
    char newest[BQ_WAL_FILE_MAX];
    int err;                  /* wal_summary_add's error, with why */
    bq_errbuf_t why;
} wal_list_t;

static int wal_list_visit(const bq_wal_file_t *w, void *arg)
{
    wal_list_t *l = arg;
    if (w->archived_ms >= l->newest_ms) {
        l->newest_ms = w->archived_ms;
        snprintf(l->newest, sizeof l->newest, "%s", w->name);
    }
    l->err = wal_summary_add(&l->sum, w->name, w->size, &l->why);
    return l->err ? 1 : 0;
}

/* A cluster's WAL index as list-wal's timelines (*tl, heap, *ntl of them; none when the index
 * cannot be read) and its newest file (name, archive time). */
static void wal_timelines(catalog_txn_t *t, const char *cluster, bq_wal_timeline_t **tl,
                          size_t *ntl, char *newest, size_t len, int64_t *newest_ms)
{
    static wal_list_t wl;
    memset(&wl, 0, sizeof wl);
    wal_summary_init(&wl.sum);
    bq_errbuf_t e;
    *tl = NULL;
    *ntl = 0;
    if (catalog_wal_each(t, cluster, wal_list_visit, &wl, &e) == 0)
        wal_summary_end(&wl.sum, tl, ntl);
    wal_summary_clear(&wl.sum);
    if (newest)
        snprintf(newest, len, "%s", wl.newest);
    if (newest_ms)
        *newest_ms = wl.newest_ms;
}

static int job_insert(coord_t *c, bq_job_t *jp, uint64_t *id, bq_errbuf_t *e);

static void check_item(bq_check_result_t *r, const char *name, int ok, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void check_item(bq_check_result_t *r, const char *name, int ok, const char *fmt, ...)
{
    if (r->nitems >= BQ_CHECK_ITEMS_MAX)
        return;
    bq_check_item_t *it = &r->items[r->nitems++];
    snprintf(it->name, sizeof it->name, "%s", name);
    it->ok = ok;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(it->detail, sizeof it->detail, fmt, ap);
    va_end(ap);
}


/* status: what the WAL index and the cluster's wal-stream job say about cluster cl. */
static void cluster_wal_status(coord_t *c, catalog_txn_t *t, bq_cluster_t *cl)
{
    const bq_cfg_cluster_t *cfg = bq_coord_config_cluster(&c->cfg, cl->name);
    snprintf(cl->wal_mode, sizeof cl->wal_mode, "%s",
             !cfg ? "" : cfg->wal == BQ_WAL_STREAM ? "stream" : "archive");
    bq_errbuf_t e;
    bq_wal_timeline_t *tl;
    size_t ntl;
    wal_timelines(t, cl->name, &tl, &ntl, cl->wal_last, sizeof cl->wal_last, &cl->wal_last_ms);
    for (size_t i = 0; i < ntl; i++)
        cl->wal_gaps += (uint32_t)tl[i].ngaps;
    free(tl);
    for (size_t i = 0; i < c->njobs; i++) {
        const job_state_t *s = &c->jobs[i];
        if (s->type != BQ_JOB_WAL_STREAM || strcmp(s->cluster, cl->name) != 0)
            continue;
        snprintf(cl->stream_state, sizeof cl->stream_state, "%s", bq_job_state_name(s->state));
        if (s->worker >= 0)
            snprintf(cl->stream_worker, sizeof cl->stream_worker, "%s",
                     c->workers[s->worker].rec.name);
        static bq_job_t j;
        if (catalog_job_get(t, s->id, &j, &e) == 0) {
            cl->stream_flushed = j.progress_done;
            cl->stream_received = j.progress_total;
        }
    }
}

/* 1 when name is one of the comma-separated names in list. */
static int name_in_list(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == n && strncmp(p, name, n) == 0)
            return 1;
        p += len + (comma ? 1 : 0);
    }
    return 0;
}

static int worker_online(coord_t *c, const char *name);

/* The worker that serves backup b to a worker whose store lacks it: the first of b's stores
 * that is online, has a data port and is in the config (whose key the coordinator vouches
 * for). 0 with *wi its index; BQ_E_NOTFOUND with why listing each store and what it lacks. */
typedef struct {
    const char *only;    /* only holders at this site (NULL: any) */
    const char *avoid;   /* never holders at this site (a copy's target) */
    const char *prefer;  /* holders at this site first: the nearest (NULL: in list order) */
    const char *skip;    /* not this worker's store (it failed the last attempt; NULL: none) */
} source_pick_t;

static int store_source(coord_t *c, const char *stores, const source_pick_t *pk, int *wi,
                        char *why, size_t whylen);

static int restore_source(coord_t *c, const bq_backup_t *b, const char *site, int *wi, char *why,
                          size_t whylen)
{
    source_pick_t pk = {site, NULL, NULL, NULL};
    return store_source(c, b->stores, &pk, wi, why, whylen);
}

/* The worker of stores (names joined by ',') that serves what they hold to another worker:
 * online, with a data port, in the config (the coordinator vouches for its key), at the site
 * pk asks for, pk->prefer's first. 0 with *wi; BQ_E_NOTFOUND with why naming each holder and
 * what it lacks. */
static int store_source(coord_t *c, const char *stores, const source_pick_t *pk, int *wi,
                        char *why, size_t whylen)
{
    char name[BQ_NAME_MAX];
    size_t off = 0;
    why[0] = '\0';
    for (int pass = pk->prefer ? 0 : 1; pass < 2; pass++) {
    for (const char *p = stores; names_next(&p, name, sizeof name);) {
        int k = worker_find(c, name);
        const bq_cfg_worker_ref_t *ref = bq_coord_config_worker(&c->cfg, name);
        if (pk->only && ref && strcmp(ref->site, pk->only) != 0)
            continue;
        if (pk->avoid && ref && strcmp(ref->site, pk->avoid) == 0)
            continue;
        if (pk->skip && strcmp(name, pk->skip) == 0)
            continue;
        if (pass == 0 && (!ref || strcmp(ref->site, pk->prefer) != 0))
            continue;
        const char *lacks = !ref                                     ? "not in the config"
                            : k < 0 || !worker_online(c, name)      ? "offline"
                            : !c->workers[k].rec.data_endpoint[0]   ? "no data_listen"
                                                                    : NULL;
        if (!lacks) {
            *wi = k;
            return 0;
        }
        if (pass == 0)
            continue; /* said in the second pass */
        int n = snprintf(why + off, whylen - off, "%s%s: %s", off ? ", " : "", name, lacks);
        if (n > 0 && (size_t)n < whylen - off)
            off += (size_t)n;
    }
    }
    if (!off)
        snprintf(why, whylen, "no store holds it");
    return BQ_E_NOTFOUND;
}

/* Append worker wi to r->workers as a wal-push/wal-get candidate, with the public key the
 * coordinator vouches for; skipped when it is offline, has no data port or is not in the
 * config, or is listed already. */
static int wal_candidate_add(coord_t *c, bq_msg_cli_reply_t *r, size_t cap, int wi)
{
    const worker_state_t *w = &c->workers[wi];
    const bq_cfg_worker_ref_t *ref = bq_coord_config_worker(&c->cfg, w->rec.name);
    if (!ref || !worker_online(c, w->rec.name) || !w->rec.data_endpoint[0] || r->nworkers >= cap)
        return 0;
    for (size_t i = 0; i < r->nworkers; i++)
        if (strcmp(r->workers[i].name, w->rec.name) == 0)
            return 0;
    r->workers[r->nworkers] = w->rec;
    r->workers[r->nworkers].online = 1;
    snprintf(r->workers[r->nworkers].public_key, sizeof r->workers[r->nworkers].public_key, "%s",
             ref->public_key);
    r->nworkers++;
    return 1;
}

/* The workers a wal-push (holders NULL) or a wal-get of cluster cl should try, best first, into
 * r->workers: for a get, the workers whose store holds the file (the index's `holders`), those
 * at the cluster's site first; then every worker at the cluster's site with a store (by name:
 * pushes go to the same one while it is up), which for a get may hold it unindexed or in its
 * stream spool. BQ_E_NOWORKER naming the site when there is none. */
static int wal_candidates(coord_t *c, const bq_cfg_cluster_t *cl, const char *holders,
                          const char *only, const char *prefer, bq_msg_cli_reply_t *r,
                          bq_errbuf_t *e)
{
    size_t cap = c->nworkers ? c->nworkers : 1;
    if (!(r->workers = calloc(cap, sizeof *r->workers)))
        return bq_fail(e, BQ_E_NOMEM, "out of memory");
    size_t *order = calloc(cap, sizeof *order);
    if (!order)
        return bq_fail(e, BQ_E_NOMEM, "out of memory");
    size_t n = 0;
    for (size_t i = 0; i < c->nworkers; i++)
        order[n++] = i;
    /* by name, so the choice is stable */
    for (size_t i = 1; i < n; i++)
        for (size_t k = i; k > 0 && strcmp(c->workers[order[k - 1]].rec.name,
                                           c->workers[order[k]].rec.name) > 0; k--) {
            size_t t = order[k];
            order[k] = order[k - 1];
            order[k - 1] = t;
        }
    /* holders at the preferred site (the nearest), at the cluster's, elsewhere; then the
     * cluster's site's workers (a segment still streaming is in one's spool) */
    const char *home = only ? only : cl->site;
    for (int pass = prefer ? 0 : 1; pass < 4; pass++)
        for (size_t i = 0; i < n; i++) {
            const worker_state_t *w = &c->workers[order[i]];
            if (only && strcmp(w->rec.site, only) != 0)
                continue;
            int here = strcmp(w->rec.site, cl->site) == 0;
            int holds = holders && name_in_list(holders, w->rec.name);
            if ((pass == 0 && holds && strcmp(w->rec.site, prefer) == 0) ||
                (pass == 1 && holds && here) || (pass == 2 && holds && !here) ||
                (pass == 3 && strcmp(w->rec.site, home) == 0 && w->rec.store_total > 0))
                wal_candidate_add(c, r, cap, (int)order[i]);
        }
    free(order);
    if (r->nworkers == 0)
        return bq_fail(e, BQ_E_NOWORKER, "no worker of site %s is online with a store and a data "
                       "port (data_listen) for the WAL of cluster %s", home, cl->name);
    return 0;
}

/* A restore or restore-test job is being offered (j, ASSIGNED in this batch): its backup into
 * *b, and when j's worker's store lacks it (or is not at site, when set), the worker that
 * serves it (peer_*: a holder, at site when set); else those are cleared. On failure e says
 * why; the batch has failed only when c->batch_failed is set. */
static int offer_source(coord_t *c, bq_job_t *j, const char *site, bq_backup_t *b,
                        bq_errbuf_t *e)
{
    catalog_txn_t *t = wtxn(c);
    if (!t)
        return bq_fail(e, c->batch_failed, "%s", c->batch_err.msg);
    int rc = catalog_backup_get(t, j->cluster, j->backup_id, b, e);
    if (rc != 0)
        return rc;
    /* the store that failed the last attempt (damaged, unreadable, unreachable) is the last
     * choice: another holder serves this one when there is one */
    const char *failed = j->has_restore && j->restore.source_failed[0] ? j->restore.source_failed
                                                                       : NULL;
    j->peer_worker[0] = j->peer_endpoint[0] = j->peer_public_key[0] = '\0';
    const int own = name_in_list(b->stores, j->worker) && (!site || strcmp(site, j->site) == 0);
    if (own && !(failed && strcmp(failed, j->worker) == 0))
        return 0;
    int wi = -1;
    char why[BQ_TEXT_MAX / 2];
    source_pick_t pk = {site, NULL, j->site, failed}; /* the nearest: the restoring worker's site first */
    rc = store_source(c, b->stores, &pk, &wi, why, sizeof why);
    if (rc != 0 && own)
        return 0; /* no other holder: its own store again */
    if (rc != 0 && failed) {
        pk.skip = NULL;
        rc = store_source(c, b->stores, &pk, &wi, why, sizeof why);
    }
    if (rc != 0)
        return bq_fail(e, BQ_E_STATE, "the store of worker %s lacks backup %s and no worker "
                       "holding it%s%s can serve it (%s)", j->worker, b->id, site ? " at site " : "",
                       site ? site : "", why);
    if (failed && strcmp(failed, c->workers[wi].rec.name) != 0)
        bq_warn(COMP, j->id, "attempt %u reads backup %s from the store of worker %s: the store "
                "of worker %s failed the last attempt", j->attempt, b->id,
                c->workers[wi].rec.name, failed);
    const worker_state_t *src = &c->workers[wi];
    const bq_cfg_worker_ref_t *ref = bq_coord_config_worker(&c->cfg, src->rec.name);
    snprintf(j->peer_worker, sizeof j->peer_worker, "%s", src->rec.name);
    snprintf(j->peer_endpoint, sizeof j->peer_endpoint, "%s", src->rec.data_endpoint);
    snprintf(j->peer_public_key, sizeof j->peer_public_key, "%s", ref->public_key);
    return 0;
}

/* The offered job j, changed at offer, into the batch's catalog transaction. */
static int offer_record(coord_t *c, const bq_job_t *j, bq_errbuf_t *e)
{
    int rc = catalog_job_put(wtxn(c), j, e);
    if (rc && rc != BQ_E_INVAL && rc != BQ_E_TOOBIG && rc != BQ_E_NOTFOUND)
        batch_fail(c, rc, e);
    return rc;
}

/* A restore job is being offered: its source (offer_source), recorded in the job. */
static int restore_peer(coord_t *c, bq_job_t *j, bq_errbuf_t *e)
{
    static bq_backup_t b;
    int rc = offer_source(c, j, j->rt.from_site[0] ? j->rt.from_site : NULL, &b, e);
    return rc ? rc : offer_record(c, j, e);
}

/* A restore job for recover: backup b (resolved by the caller) to q->dest on q->worker. */
static int coord_site_known(const coord_t *c, const char *site);

static int recover_create(coord_t *c, const bq_msg_cli_request_t *q, const bq_backup_t *b,
                          uint64_t *id, bq_errbuf_t *e)
{
    const bq_cfg_worker_ref_t *w = q->worker[0] ? bq_coord_config_worker(&c->cfg, q->worker) : NULL;
    /* WAITING_FOR_WALS: its data and its own WAL are whole (a backup carries the WAL from its
     * start to its stop), only the archive lags */
    if (b->state != BQ_BACKUP_DONE && b->state != BQ_BACKUP_WAITING_FOR_WALS)
        return bq_fail(e, BQ_E_STATE, "could not recover backup %s of cluster %s: it is %s, not "
                       "DONE", b->id, q->cluster, bq_backup_state_name(b->state));
    if (!q->worker[0])
        return bq_fail(e, BQ_E_USAGE, "recover needs --worker NAME: the worker that writes DEST");
    if (!w)
        return bq_fail(e, BQ_E_NOTFOUND, "could not recover cluster %s: no worker %s in the "
                       "coordinator's config", q->cluster, q->worker);
    if (q->dest[0] != '/')
        return bq_fail(e, BQ_E_USAGE, "could not recover cluster %s: destination \"%s\" is not an "
                       "absolute path", q->cluster, q->dest);
    const char *from = q->from_site[0] ? q->from_site : NULL;
    if (from && !coord_site_known(c, from))
        return bq_fail(e, BQ_E_NOTFOUND, "could not recover cluster %s: no site %s in the "
                       "coordinator's config", q->cluster, from);
    if (from && !stores_list_at(c, b->stores, from))
        return bq_fail(e, BQ_E_STATE, "could not recover backup %s of cluster %s from site %s: no "
                       "store there holds it (its stores: %s)", b->id, q->cluster, from,
                       b->stores[0] ? b->stores : "none");
    if (!name_in_list(b->stores, w->name) || (from && strcmp(w->site, from) != 0)) {
        int src = -1;
        char why[BQ_TEXT_MAX / 2];
        if (restore_source(c, b, from, &src, why, sizeof why) != 0)
            return bq_fail(e, BQ_E_STATE, "could not recover backup %s of cluster %s on worker %s: "
                           "its store lacks the backup and no worker holding it can serve it "
                           "(%s)\nhint: start one of them (with data_listen set), or use --worker "
                           "with one of: %s", b->id, q->cluster, w->name, why, b->stores);
    }
    static bq_job_t j; /* large: off the stack */
    memset(&j, 0, sizeof j);
    j.type = BQ_JOB_RESTORE;
    snprintf(j.cluster, sizeof j.cluster, "%s", q->cluster);
    snprintf(j.site, sizeof j.site, "%s", w->site);
    snprintf(j.pin_worker, sizeof j.pin_worker, "%s", w->name);
    snprintf(j.backup_id, sizeof j.backup_id, "%s", b->id);
    snprintf(j.dest, sizeof j.dest, "%s", q->dest);
    snprintf(j.owner, sizeof j.owner, "%s", q->owner);
    j.delta = q->delta;
    j.recovery = q->recovery;
    if (from)
        snprintf(j.rt.from_site, sizeof j.rt.from_site, "%s", from);
    size_t off = 0;
    for (size_t i = 0; i < q->ntablespaces; i++) {
        const char *m = q->tablespaces[i], *colon = strchr(m, ':');
        if (!colon || colon == m || colon[1] != '/' || strchr(m, '\n'))
            return bq_fail(e, BQ_E_USAGE, "tablespace relocation \"%s\" is not NAME:/ABSOLUTE/PATH",
                           m);
        int n = snprintf(j.tablespaces + off, sizeof j.tablespaces - off, "%s%s", off ? "\n" : "", m);
        if (n < 0 || (size_t)n >= sizeof j.tablespaces - off)
            return bq_fail(e, BQ_E_USAGE, "tablespace relocations: more than %zu bytes in all",
                           sizeof j.tablespaces - 1);
        off += (size_t)n;
    }
    return job_insert(c, &j, id, e);
}

/* Worker name is online now (its heartbeats are recent). */
static int worker_online(coord_t *c, const char *name)
{
    int wi = worker_find(c, name);
    return wi >= 0 && c->workers[wi].rec.online &&
           c->workers[wi].last_seen_mono >= bq_mono_ms() - c->cfg.worker_timeout_ms;
}

/* A list-files job for one page of backup b (resolved by the caller) from q->offset, pinned
 * to the first online worker whose store holds b. */
static int list_files_create(coord_t *c, const bq_msg_cli_request_t *q, const bq_backup_t *b,
                             uint64_t *id, bq_errbuf_t *e)
{
    if (b->state != BQ_BACKUP_DONE && b->state != BQ_BACKUP_WAITING_FOR_WALS)
        return bq_fail(e, BQ_E_STATE, "could not list the files of backup %s of cluster %s: it "
                       "is %s, not DONE", b->id, b->cluster, bq_backup_state_name(b->state));
    const bq_cfg_worker_ref_t *w = NULL;
    char name[BQ_NAME_MAX];
    for (const char *p = b->stores; *p && !w;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        snprintf(name, sizeof name, "%.*s", (int)(len < sizeof name ? len : sizeof name - 1), p);
        const bq_cfg_worker_ref_t *ref = bq_coord_config_worker(&c->cfg, name);
        if (ref && worker_online(c, name))
            w = ref;
        p += len + (comma ? 1 : 0);
    }
    if (!w)
        return bq_fail(e, BQ_E_STATE, "could not list the files of backup %s of cluster %s: no "
                       "online worker holds it (stores: %s)", b->id, b->cluster,
                       b->stores[0] ? b->stores : "none");
    static bq_job_t j; /* large: off the stack */
    memset(&j, 0, sizeof j);
    j.type = BQ_JOB_LIST_FILES;
    snprintf(j.cluster, sizeof j.cluster, "%s", b->cluster);
    snprintf(j.site, sizeof j.site, "%s", w->site);
    snprintf(j.pin_worker, sizeof j.pin_worker, "%s", w->name);
    snprintf(j.backup_id, sizeof j.backup_id, "%s", b->id);
    j.offset = q->offset;
    return job_insert(c, &j, id, e);
}

/* delete: refuse while the backup is being written, read or already deleted; else mark it
 * DELETING and queue a delete job for each store holding it (its jobs in r->jobs), or, when
 * no store holds it, remove its record at once. b: the backup as the catalog has it. */
static int delete_create(coord_t *c, const bq_backup_t *b0, bq_msg_cli_reply_t *r,
                         bq_errbuf_t *e)
{
    static bq_backup_t b;
    b = *b0;
    if (b.state == BQ_BACKUP_STARTED)
        return bq_fail(e, BQ_E_STATE, "could not delete backup %s of cluster %s: it is STARTED "
                       "(backup job %llu is writing it)\nhint: cancel it first (barque job "
                       "cancel %llu); a cancelled backup is FAILED and can be deleted", b.id,
                       b.cluster, (unsigned long long)b.job_id, (unsigned long long)b.job_id);
    for (size_t i = 0; i < c->njobs; i++) {
        const job_state_t *s = &c->jobs[i];
        if (bq_job_state_terminal(s->state) || strcmp(s->backup_id, b.id) != 0 ||
            strcmp(s->cluster, b.cluster) != 0)
            continue;
        const char *what = s->type == BQ_JOB_RESTORE      ? "a restore of it is running"
                           : s->type == BQ_JOB_LIST_FILES ? "a list-files of it is running"
                           : s->type == BQ_JOB_DELETE     ? "a delete of it is already running"
                           : s->type == BQ_JOB_RESTORE_TEST ? "a restore test of it is running"
                           : s->type == BQ_JOB_REPLICATE ? "a copy of it to another site is running"
                                                          : "a job on it is running";
        return bq_fail(e, BQ_E_STATE, "could not delete backup %s of cluster %s: %s (%s job "
                       "%llu is %s)\nhint: wait for it to end (barque job show %llu) or cancel it",
                       b.id, b.cluster, what, bq_job_type_name(s->type),
                       (unsigned long long)s->id, bq_job_state_name(s->state),
                       (unsigned long long)s->id);
    }
    size_t nstores = 0;
    char names[BQ_STORES_MAX / 2][BQ_NAME_MAX];
    const bq_cfg_worker_ref_t *refs[BQ_STORES_MAX / 2];
    for (const char *p = b.stores; *p;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (nstores == BQ_STORES_MAX / 2)
            return bq_fail(e, BQ_E_STATE, "backup %s of cluster %s: too many stores", b.id,
                           b.cluster);
        snprintf(names[nstores], BQ_NAME_MAX, "%.*s", (int)(len < BQ_NAME_MAX ? len : BQ_NAME_MAX - 1), p);
        if (!(refs[nstores] = bq_coord_config_worker(&c->cfg, names[nstores])))
            return bq_fail(e, BQ_E_STATE, "could not delete backup %s of cluster %s: worker %s, "
                           "whose store holds it, is not in the coordinator's config", b.id,
                           b.cluster, names[nstores]);
        nstores++;
        p += len + (comma ? 1 : 0);
    }
    catalog_txn_t *t = wtxn(c);
    if (!t)
        return bq_fail(e, c->batch_failed, "%s", c->batch_err.msg);
    if (!(r->backups = calloc(1, sizeof *r->backups)) ||
        (nstores && !(r->jobs = calloc(nstores, sizeof *r->jobs))))
        return bq_fail(e, BQ_E_NOMEM, "out of memory");
    int rc;
    if (!nstores) { /* nothing in any store (a FAILED backup): the record goes now */
        rc = catalog_backup_del(t, b.cluster, b.id, e);
        if (rc && rc != BQ_E_NOTFOUND) {
            batch_fail(c, rc, e);
            return rc;
        }
        r->backups[0] = b;
        r->nbackups = 1;
        return 0;
    }
    b.state = BQ_BACKUP_DELETING;
    b.error[0] = '\0';
    if ((rc = catalog_backup_put(t, &b, e)) != 0) {
        batch_fail(c, rc, e);
        return rc;
    }
    r->backups[0] = b;
    r->nbackups = 1;
    static bq_job_t j;
    for (size_t i = 0; i < nstores; i++) {
        memset(&j, 0, sizeof j);
        j.type = BQ_JOB_DELETE;
        snprintf(j.cluster, sizeof j.cluster, "%s", b.cluster);
        snprintf(j.site, sizeof j.site, "%s", refs[i]->site);
        snprintf(j.pin_worker, sizeof j.pin_worker, "%s", refs[i]->name);
        snprintf(j.backup_id, sizeof j.backup_id, "%s", b.id);
        uint64_t id;
        if ((rc = job_insert(c, &j, &id, e)) != 0)
            return rc;
        r->jobs[r->njobs] = j;
        r->jobs[r->njobs].id = id;
        r->jobs[r->njobs].state = BQ_JOB_QUEUED;
        r->njobs++;
        if (!r->job_id)
            r->job_id = id;
    }
    return 0;
}

/* A site's retention removes its copy of b only: a delete job pinned to each of b's stores
 * at site; b stays DONE for the other sites (delete_end takes the workers out of its stores,
 * and marks the copy there DELETED so it is not copied again). */
static int delete_at_site(coord_t *c, const bq_backup_t *b, const char *site, bq_errbuf_t *e)
{
    for (size_t i = 0; i < c->njobs; i++) {
        const job_state_t *s = &c->jobs[i];
        if (!bq_job_state_terminal(s->state) && strcmp(s->backup_id, b->id) == 0 &&
            strcmp(s->cluster, b->cluster) == 0)
            return bq_fail(e, BQ_E_STATE, "backup %s: %s job %llu is %s", b->id,
                           bq_job_type_name(s->type), (unsigned long long)s->id,
                           bq_job_state_name(s->state));
    }
    int queued = 0;
    char name[BQ_NAME_MAX];
    for (const char *p = b->stores; names_next(&p, name, sizeof name);) {
        const bq_cfg_worker_ref_t *w = bq_coord_config_worker(&c->cfg, name);
        if (!w || strcmp(w->site, site) != 0)
            continue;
        static bq_job_t j;
        memset(&j, 0, sizeof j);
        j.type = BQ_JOB_DELETE;
        snprintf(j.cluster, sizeof j.cluster, "%s", b->cluster);
        snprintf(j.site, sizeof j.site, "%s", site);
        snprintf(j.pin_worker, sizeof j.pin_worker, "%s", name);
        snprintf(j.backup_id, sizeof j.backup_id, "%s", b->id);
        uint64_t id;
        int rc = job_insert(c, &j, &id, e);
        if (rc != 0)
            return rc;
        queued++;
    }
    return queued ? 0 : bq_fail(e, BQ_E_NOTFOUND, "no store at site %s holds backup %s", site,
                                b->id);
}

static void reply_workers(coord_t *c, bq_msg_cli_reply_t *r)
{
    r->workers = calloc(c->nworkers ? c->nworkers : 1, sizeof *r->workers);
    if (!r->workers)
        return;
    int64_t online_after = bq_mono_ms() - c->cfg.worker_timeout_ms;
    for (size_t i = 0; i < c->nworkers; i++) {
        r->workers[i] = c->workers[i].rec;
        r->workers[i].online = c->workers[i].rec.online && c->workers[i].last_seen_mono >= online_after;
        r->workers[i].running = c->workers[i].assigned;
        if (!r->workers[i].max_jobs)
            r->workers[i].max_jobs = c->workers[i].cap;
    }
    r->nworkers = c->nworkers;
}

/* Queue a new job. checkpoint: backup jobs' ("fast" or "spread"), else NULL. */
/* Queue job j (type, cluster, site and the type's own fields set by the caller). */
static int job_insert(coord_t *c, bq_job_t *jp, uint64_t *id, bq_errbuf_t *e);

static int job_create(coord_t *c, bq_job_type_t type, const char *cluster, const char *site,
                      int64_t sleep_ms, const char *checkpoint, uint64_t *id, bq_errbuf_t *e)
{
    static bq_job_t j;
    memset(&j, 0, sizeof j);
    j.type = type;
    snprintf(j.cluster, sizeof j.cluster, "%s", cluster);
    snprintf(j.site, sizeof j.site, "%s", site);
    j.sleep_ms = sleep_ms;
    if (checkpoint)
        snprintf(j.checkpoint, sizeof j.checkpoint, "%s", checkpoint);
    return job_insert(c, &j, id, e);
}

static int job_insert(coord_t *c, bq_job_t *jp, uint64_t *id, bq_errbuf_t *e)
{
    catalog_txn_t *t = wtxn(c);
    if (!t)
        return bq_fail(e, c->batch_failed, "%s", c->batch_err.msg);
    static bq_job_t j; /* large: off the stack */
    j = *jp;
    bq_job_type_t type = j.type;
    const char *cluster = jp->cluster, *site = jp->site;
    j.state = BQ_JOB_QUEUED;
    j.max_attempts = job_attempts_max(c, j.type);
    j.created_ms = j.updated_ms = bq_wall_ms();
    int rc = catalog_job_new(t, &j, e);
    if (rc) {
        batch_fail(c, rc, e);
        return rc;
    }
    if (job_index_add(c, &j))
        return bq_fail(e, BQ_E_NOMEM, "out of memory indexing job");
    *id = j.id;
    c->dispatch_dirty = 1;
    bq_info(COMP, j.id, "queued %s job for %s%s at site %s", bq_job_type_name(type),
            cluster[0] ? "cluster " : "", cluster[0] ? cluster : "the fleet", site);
    return 0;
}

/* ---- retention, keep and the scheduler (issue 6) ------------------------------------ */

/* A cluster's backups, oldest first, in *out (heap, caller frees). */
typedef struct {
    bq_backup_t *b;
    size_t n, cap;
    int err;
} backup_vec_t;

static int backup_vec_add(const bq_backup_t *b, void *arg)
{
    backup_vec_t *v = arg;
    if (grow((void **)&v->b, &v->cap, v->n + 1, sizeof *v->b)) {
        v->err = BQ_E_NOMEM;
        return 1;
    }
    v->b[v->n++] = *b;
    return 0;
}

static int backups_load(catalog_txn_t *t, const char *cluster, backup_vec_t *v, bq_errbuf_t *e)
{
    memset(v, 0, sizeof *v);
    int rc = catalog_backup_each(t, cluster, backup_vec_add, v, e);
    if (rc == 0 && v->err)
        rc = bq_fail(e, v->err, "out of memory reading the backups of cluster %s", cluster);
    return rc > 0 ? 0 : rc;
}

/* How many of b's stores are workers of site; *elsewhere gets how many are not (workers of
 * another site, or no longer in the config). */
static size_t stores_at(const coord_t *c, const bq_backup_t *b, const char *site, size_t *elsewhere)
{
    size_t here = 0;
    *elsewhere = 0;
    char name[BQ_NAME_MAX];
    for (const char *p = b->stores; names_next(&p, name, sizeof name);) {
        const bq_cfg_worker_ref_t *w = bq_coord_config_worker(&c->cfg, name);
        if (w && strcmp(w->site, site) == 0)
            here++;
        else
            (*elsewhere)++;
    }
    return here;
}

/* Nonzero when every store of b is a worker of site (and it has one). */
static int backup_all_at(const coord_t *c, const bq_backup_t *b, const char *site)
{
    size_t elsewhere;
    return stores_at(c, b, site, &elsewhere) > 0 && elsewhere == 0;
}

/* Nonzero when b is held at site (one of its stores is a worker there), or, having no store
 * yet (STARTED, FAILED), was taken there. */
static int backup_at(const coord_t *c, const bq_backup_t *b, const char *site)
{
    size_t elsewhere;
    return b->stores[0] ? stores_at(c, b, site, &elsewhere) > 0 : strcmp(b->site, site) == 0;
}

/* Classify the backups b[0..n) (oldest first) that are at site (NULL: all of them) under cl's
 * policy; st[i] is RETENTION_STATUS_NONE for those not at site. 0, or -1 when cl has no
 * policy (every status NONE). */
static int retention_statuses(const coord_t *c, const bq_cfg_cluster_t *cl, const bq_backup_t *b,
                              size_t n, const char *site, int64_t now, retention_status_t *st)
{
    retention_policy_t pol;
    char why[128];
    for (size_t i = 0; i < n; i++)
        st[i] = RETENTION_STATUS_NONE;
    const char *policy = cl ? bq_cluster_retention_at(cl, site) : "";
    if (!policy[0] || retention_policy_parse(policy, &pol, why, sizeof why) != 0)
        return -1; /* no policy (at this site): nothing is obsolete, no WAL is pruned */
    retention_backup_t *rb = calloc(n ? n : 1, sizeof *rb);
    size_t *idx = calloc(n ? n : 1, sizeof *idx);
    retention_status_t *out = calloc(n ? n : 1, sizeof *out);
    if (!rb || !idx || !out) {
        free(rb), free(idx), free(out);
        return -1;
    }
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (site && !backup_at(c, &b[i], site))
            continue;
        rb[m].done = b[i].state == BQ_BACKUP_DONE;
        rb[m].keep = b[i].keep;
        rb[m].end_ms = b[i].stop_ms;
        idx[m++] = i;
    }
    retention_classify(&pol, (uint32_t)cl->minimum_redundancy, now, rb, m, out);
    for (size_t k = 0; k < m; k++)
        st[idx[k]] = out[k];
    free(rb), free(idx), free(out);
    return 0;
}

/* The retention status names of a reply's backups (list-backups, show-backup, keep). */
static void retention_fill(coord_t *c, catalog_txn_t *t, const char *cluster, bq_backup_t *rows,
                           size_t nrows)
{
    const bq_cfg_cluster_t *cl = bq_coord_config_cluster(&c->cfg, cluster);
    backup_vec_t v;
    bq_errbuf_t e;
    for (size_t i = 0; i < nrows; i++)
        snprintf(rows[i].retention, sizeof rows[i].retention, "%s",
                 rows[i].keep == RETENTION_KEEP_FULL         ? "KEEP:FULL"
                 : rows[i].keep == RETENTION_KEEP_STANDALONE ? "KEEP:STANDALONE"
                 : rows[i].state == BQ_BACKUP_DONE          ? "VALID"
                                                             : "-");
    if (!cl || !cl->retention_policy[0] || backups_load(t, cluster, &v, &e) != 0)
        return;
    retention_status_t *st = calloc(v.n ? v.n : 1, sizeof *st);
    if (st && retention_statuses(c, cl, v.b, v.n, NULL, bq_wall_ms(), st) == 0) {
        for (size_t i = 0; i < nrows; i++)
            for (size_t k = 0; k < v.n; k++)
                if (strcmp(v.b[k].id, rows[i].id) == 0)
                    snprintf(rows[i].retention, sizeof rows[i].retention, "%s",
                             retention_status_name(st[k]));
    }
    free(st);
    free(v.b);
}

/* A job of the cluster that retention must not run beside ("" = none): a backup (it may use
 * a base), a restore or list-files (they read a backup), a delete or wal-prune (retention's
 * own, still going). */
static const job_state_t *retention_blocker(const coord_t *c, const char *cluster)
{
    for (size_t i = 0; i < c->njobs; i++) {
        const job_state_t *s = &c->jobs[i];
        if (bq_job_state_terminal(s->state) || strcmp(s->cluster, cluster) != 0)
            continue;
        if (s->type == BQ_JOB_BACKUP || s->type == BQ_JOB_RESTORE || s->type == BQ_JOB_LIST_FILES ||
            s->type == BQ_JOB_DELETE || s->type == BQ_JOB_WAL_PRUNE || s->type == BQ_JOB_KEEP ||
            s->type == BQ_JOB_RESTORE_TEST || s->type == BQ_JOB_REPLICATE)
            return s;
    }
    return NULL;
}

typedef struct {
    const char *keep_from;
    const retention_wal_range_t *ranges;
    size_t nranges;
    const char *store;   /* the files this store holds */
    int collect;         /* 0: count them; 1: also collect their names */
    uint64_t n;
    char (*names)[BQ_WAL_FILE_MAX]; /* collect: heap */
    size_t nnames, cap;
    int err;
} prune_scan_t;

static int prune_visit(const bq_wal_file_t *w, void *arg)
{
    prune_scan_t *p = arg;
    if (!name_in_list(w->stores, p->store) ||
        !retention_wal_prunable(w->name, p->keep_from, p->ranges, p->nranges))
        return 0;
    p->n++;
    if (p->collect) {
        if (grow((void **)&p->names, &p->cap, p->nnames + 1, sizeof *p->names)) {
            p->err = BQ_E_NOMEM;
            return 1;
        }
        snprintf(p->names[p->nnames++], BQ_WAL_FILE_MAX, "%s", w->name);
    }
    return 0;
}

/* Parse "B-E,B-E" into ranges (at most cap); returns the count. */
static size_t prune_ranges_parse(const char *list, retention_wal_range_t *r, size_t cap)
{
    size_t n = 0;
    for (const char *p = list; *p && n < cap;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        const char *dash = memchr(p, '-', len);
        if (dash && dash - p == 24 && len == 49) {
            snprintf(r[n].begin, sizeof r[n].begin, "%.24s", p);
            snprintf(r[n].end, sizeof r[n].end, "%.24s", dash + 1);
            n++;
        }
        p += len + (comma ? 1 : 0);
    }
    return n;
}

#define PRUNE_RANGES_MAX 16 /* standalone ranges a wal-prune job carries (BQ_TEXT_MAX / 50) */

/* What the WAL rule needs of the backups b[0..n) (oldest first) that stay at site (NULL: at
 * any): keep_from ("" = prune nothing) and the standalone ranges, also as "B-E,B-E" text.
 * 0, or -1 when there are more standalone ranges than PRUNE_RANGES_MAX (prune nothing). */
static int wal_keep_of(const coord_t *c, const bq_backup_t *b, size_t n, const char *site,
                       char keep_from[BQ_WAL_NAME_MAX], retention_wal_range_t *ranges,
                       size_t *nranges_out, char *ranges_text, size_t text_cap)
{
    keep_from[0] = '\0';
    ranges_text[0] = '\0';
    *nranges_out = 0;
    retention_stay_t *stay = calloc(n ? n : 1, sizeof *stay);
    if (!stay)
        return -1;
    size_t m = 0, nranges = 0;
    for (size_t i = 0; i < n; i++) {
        if (b[i].state == BQ_BACKUP_FAILED || (site && !backup_at(c, &b[i], site)) ||
            !b[i].wal_begin[0])
            continue;
        stay[m].wal_begin = b[i].wal_begin;
        stay[m].wal_end = b[i].wal_end;
        stay[m].standalone = b[i].keep == RETENTION_KEEP_STANDALONE;
        if (stay[m].standalone && nranges < PRUNE_RANGES_MAX && b[i].wal_end[0]) {
            snprintf(ranges[nranges].begin, sizeof ranges[nranges].begin, "%s", b[i].wal_begin);
            snprintf(ranges[nranges].end, sizeof ranges[nranges].end, "%s", b[i].wal_end);
            size_t used = strlen(ranges_text);
            snprintf(ranges_text + used, text_cap - used, "%s%s-%s", used ? "," : "",
                     b[i].wal_begin, b[i].wal_end);
            nranges++;
        } else if (stay[m].standalone) {
            free(stay);
            return -1; /* more standalone backups than a job carries */
        }
        m++;
    }
    retention_keep_from(stay, m, keep_from, BQ_WAL_NAME_MAX);
    free(stay);
    *nranges_out = nranges;
    return 0;
}

/* Queue wal-prune jobs for the stores at site of cluster cl that hold WAL files before the
 * oldest backup that stays there. b: the cluster's backups, oldest first. */
static void wal_prune_plan(coord_t *c, catalog_txn_t *t, const bq_cfg_cluster_t *cl,
                           const bq_backup_t *b, size_t n, const char *site)
{
    retention_wal_range_t ranges[PRUNE_RANGES_MAX];
    size_t nranges = 0;
    char ranges_text[BQ_TEXT_MAX], keep_from[BQ_WAL_NAME_MAX];
    if (wal_keep_of(c, b, n, site, keep_from, ranges, &nranges, ranges_text,
                    sizeof ranges_text) != 0 || !keep_from[0])
        return;
    for (size_t k = 0; k < c->cfg.nworkers; k++) {
        const bq_cfg_worker_ref_t *w = &c->cfg.workers[k];
        if (strcmp(w->site, site) != 0)
            continue;
        prune_scan_t cnt = {.keep_from = keep_from, .ranges = ranges, .nranges = nranges,
                            .store = w->name};
        bq_errbuf_t e;
        int busy = 0;
        for (size_t i = 0; i < c->njobs; i++)
            busy |= c->jobs[i].type == BQ_JOB_WAL_PRUNE && !bq_job_state_terminal(c->jobs[i].state) &&
                    strcmp(c->jobs[i].cluster, cl->name) == 0 && strcmp(c->jobs[i].pin, w->name) == 0;
        if (busy || catalog_wal_each(t, cl->name, prune_visit, &cnt, &e) < 0 || cnt.n == 0)
            continue;
        static bq_job_t j;
        memset(&j, 0, sizeof j);
        j.type = BQ_JOB_WAL_PRUNE;
        snprintf(j.cluster, sizeof j.cluster, "%s", cl->name);
        snprintf(j.site, sizeof j.site, "%s", site);
        snprintf(j.pin_worker, sizeof j.pin_worker, "%s", w->name);
        snprintf(j.wal_keep_from, sizeof j.wal_keep_from, "%s", keep_from);
        snprintf(j.wal_keep_ranges, sizeof j.wal_keep_ranges, "%s", ranges_text);
        uint64_t id;
        if (job_insert(c, &j, &id, &e) == 0)
            bq_info(COMP, id, "retention of cluster %s at site %s: %" PRIu64 " WAL files before "
                    "%s to remove from the store of worker %s", cl->name, site, cnt.n, keep_from,
                    w->name);
    }
}

/* A wal-prune job succeeded: its worker's store no longer holds the files its rule names, so
 * the WAL index drops that store from them (and a record with no store left). */
static void wal_prune_end(coord_t *c, const bq_job_t *j)
{
    catalog_txn_t *t = wtxn(c);
    if (!t)
        return;
    retention_wal_range_t ranges[PRUNE_RANGES_MAX];
    size_t nranges = prune_ranges_parse(j->wal_keep_ranges, ranges, PRUNE_RANGES_MAX);
    prune_scan_t ps = {.keep_from = j->wal_keep_from, .ranges = ranges, .nranges = nranges,
                       .store = j->pin_worker, .collect = 1};
    bq_errbuf_t e;
    int rc = catalog_wal_each(t, j->cluster, prune_visit, &ps, &e);
    size_t dropped = 0;
    for (size_t i = 0; rc >= 0 && !ps.err && i < ps.nnames; i++) {
        int removed = 0;
        rc = catalog_wal_drop_store(t, j->cluster, ps.names[i], j->pin_worker, &removed, &e);
        if (rc == BQ_E_NOTFOUND)
            rc = 0;
        dropped += removed;
    }
    free(ps.names);
    if (rc < 0 && rc != BQ_E_INVAL)
        batch_fail(c, rc, &e);
    else
        bq_info(COMP, j->id, "WAL index of cluster %s: %zu files no longer in the store of %s "
                "(%zu records removed)", j->cluster, ps.nnames, j->pin_worker, dropped);
}

static int delete_create(coord_t *c, const bq_backup_t *b0, bq_msg_cli_reply_t *r,
                         bq_errbuf_t *e);

/* One cluster's retention at every site that holds its backups. */
static void retention_cluster(coord_t *c, const bq_cfg_cluster_t *cl, int64_t now)
{
    const job_state_t *busy = retention_blocker(c, cl->name);
    if (busy) {
        bq_debug(COMP, busy->id, "retention of cluster %s waits for %s job %llu", cl->name,
                 bq_job_type_name(busy->type), (unsigned long long)busy->id);
        return;
    }
    catalog_txn_t *t = wtxn(c);
    if (!t)
        return;
    backup_vec_t v;
    bq_errbuf_t e;
    if (backups_load(t, cl->name, &v, &e) != 0) {
        bq_error(COMP, 0, "retention of cluster %s: %s", cl->name, e.msg);
        return;
    }
    retention_status_t *st = calloc(v.n ? v.n : 1, sizeof *st);
    for (size_t s = 0; st && s < c->cfg.nsites && !c->batch_failed; s++) {
        const char *site = c->cfg.sites[s].name;
        if (retention_statuses(c, cl, v.b, v.n, site, now, st) != 0)
            continue; /* no policy at this site */
        size_t done = 0, deleting = 0, held = 0;
        for (size_t i = 0; i < v.n; i++) {
            if (!backup_at(c, &v.b[i], site))
                continue;
            held++;
            done += v.b[i].state == BQ_BACKUP_DONE;
            deleting += v.b[i].state == BQ_BACKUP_DELETING;
        }
        if (!held)
            continue;
        size_t queued = 0;
        for (size_t i = 0; i < v.n && !c->batch_failed; i++) {
            if (st[i] != RETENTION_STATUS_OBSOLETE)
                continue;
            if (!retention_may_delete(done, (uint32_t)cl->minimum_redundancy))
                break;
            if (cl->retention == BQ_RETENTION_REPORT) {
                bq_debug(COMP, 0, "backup %s of cluster %s is OBSOLETE at site %s (retention = "
                         "report: kept)", v.b[i].id, cl->name, site);
                continue;
            }
            if (!backup_all_at(c, &v.b[i], site)) {
                /* held at other sites too: only this site's copy goes */
                if (delete_at_site(c, &v.b[i], site, &e) == 0) {
                    bq_info(COMP, 0, "retention (%s) of cluster %s at site %s: backup %s is "
                            "OBSOLETE there, deleting it there (other sites keep theirs)",
                            bq_cluster_retention_at(cl, site), cl->name, site, v.b[i].id);
                    done--;
                    queued++;
                } else {
                    bq_warn(COMP, 0, "retention of cluster %s at site %s: %s", cl->name, site,
                            e.msg);
                }
                continue;
            }
            bq_msg_cli_reply_t scratch;
            memset(&scratch, 0, sizeof scratch);
            if (delete_create(c, &v.b[i], &scratch, &e) == 0) {
                bq_info(COMP, scratch.job_id, "retention (%s, minimum_redundancy %d) of cluster "
                        "%s at site %s: backup %s is OBSOLETE, deleting it", cl->retention_policy,
                        cl->minimum_redundancy, cl->name, site, v.b[i].id);
                done--;
                queued++;
                v.b[i].state = BQ_BACKUP_DELETING;
            } else {
                bq_warn(COMP, 0, "retention of cluster %s: %s", cl->name, e.msg);
            }
            free(scratch.backups);
            free(scratch.jobs);
        }
        /* the WAL goes once the backups are gone (the next run: nothing blocks it then) */
        if (!queued && !deleting && cl->retention == BQ_RETENTION_AUTO)
            wal_prune_plan(c, t, cl, v.b, v.n, site);
    }
    free(st);
    free(v.b);
}

static void retention_run(coord_t *c)
{
    int64_t now = bq_wall_ms();
    for (size_t i = 0; i < c->cfg.nclusters && !c->batch_failed; i++)
        if (c->cfg.clusters[i].retention_policy[0] || c->cfg.clusters[i].nretention_at)
            retention_cluster(c, &c->cfg.clusters[i], now);
}

/* keep CLUSTER ID --target full|standalone / --release / --status */
static int keep_apply(coord_t *c, const bq_msg_cli_request_t *q, bq_msg_cli_reply_t *r,
                      bq_errbuf_t *e)
{
    catalog_txn_t *t = wtxn(c);
    if (!t)
        return bq_fail(e, c->batch_failed, "%s", c->batch_err.msg);
    if (!bq_backup_id_valid(q->backup_id))
        return bq_fail(e, BQ_E_USAGE, "keep needs a backup id (YYYYMMDDTHHMMSS), not %s",
                       q->backup_id[0] ? q->backup_id : "\"\"");
    int want;
    if (strcmp(q->keep, "full") == 0)
        want = RETENTION_KEEP_FULL;
    else if (strcmp(q->keep, "standalone") == 0)
        want = RETENTION_KEEP_STANDALONE;
    else if (strcmp(q->keep, "release") == 0)
        want = RETENTION_KEEP_NONE;
    else if (strcmp(q->keep, "status") == 0)
        want = -1;
    else
        return bq_fail(e, BQ_E_USAGE, "keep: --target must be full or standalone (or use "
                       "--release, --status), not %s", q->keep);
    if (!(r->backups = calloc(1, sizeof *r->backups)))
        return bq_fail(e, BQ_E_NOMEM, "out of memory");
    bq_backup_t *b = &r->backups[0];
    int rc = catalog_backup_get(t, q->cluster, q->backup_id, b, e);
    if (rc == BQ_E_NOTFOUND)
        return bq_fail(e, rc, "no backup %s of cluster %s (see: barque list-backups %s)",
                       q->backup_id, q->cluster, q->cluster);
    if (rc)
        return rc;
    r->nbackups = 1;
    if (want < 0 || want == b->keep)
        goto out;
    if (want != RETENTION_KEEP_NONE && b->state != BQ_BACKUP_DONE)
        return bq_fail(e, BQ_E_STATE, "could not keep backup %s of cluster %s: it is %s, only a "
                       "DONE backup can be kept", b->id, b->cluster, bq_backup_state_name(b->state));
    b->keep = want;
    if ((rc = catalog_backup_put(t, b, e)) != 0) {
        batch_fail(c, rc, e);
        return rc;
    }
    /* the mark goes to every store that holds it too, for a catalog rebuilt from them */
    char name[BQ_NAME_MAX];
    for (const char *p = b->stores; names_next(&p, name, sizeof name);) {
        const bq_cfg_worker_ref_t *w = bq_coord_config_worker(&c->cfg, name);
        if (!w)
            continue;
        static bq_job_t kj;
        memset(&kj, 0, sizeof kj);
        kj.type = BQ_JOB_KEEP;
        snprintf(kj.cluster, sizeof kj.cluster, "%s", b->cluster);
        snprintf(kj.site, sizeof kj.site, "%s", w->site);
        snprintf(kj.pin_worker, sizeof kj.pin_worker, "%s", w->name);
        snprintf(kj.backup_id, sizeof kj.backup_id, "%s", b->id);
        kj.keep = want;
        uint64_t id;
        if ((rc = job_insert(c, &kj, &id, e)) != 0)
            return rc;
    }
out:
    retention_fill(c, t, q->cluster, r->backups, r->nbackups);
    return 0;
}

/* ---- the scheduler ---- */

/* Active backup jobs of a cluster (queued or running) and its newest backup's start. */
static void schedule_state_of(coord_t *c, catalog_txn_t *t, const bq_cfg_cluster_t *cl,
                              schedule_state_t *st, char *last, size_t lastlen)
{
    memset(st, 0, sizeof *st);
    bq_errbuf_t e;
    catalog_sched_get(t, "sched", cl->name, &st->last_slot_ms, &e);
    for (size_t i = 0; i < c->njobs; i++)
        if (c->jobs[i].type == BQ_JOB_BACKUP && !bq_job_state_terminal(c->jobs[i].state) &&
            strcmp(c->jobs[i].cluster, cl->name) == 0)
            st->active = 1;
    backup_vec_t v;
    if (last)
        last[0] = '\0';
    /* the newest backup matters only at first sight (or to show it): a fleet of scheduled
     * clusters is looked at every second */
    if ((!last && st->last_slot_ms) || backups_load(t, cl->name, &v, &e) != 0)
        return;
    for (size_t i = v.n; i-- > 0;) {
        if (v.b[i].state == BQ_BACKUP_FAILED)
            continue;
        st->newest_backup_ms = v.b[i].start_ms;
        break;
    }
    if (last && v.n)
        snprintf(last, lastlen, "%s %s", v.b[v.n - 1].id, bq_backup_state_name(v.b[v.n - 1].state));
    free(v.b);
}

static int schedule_of(const bq_cfg_cluster_t *cl, schedule_t *s)
{
    char why[128];
    return schedule_parse(cl->backup_schedule, cl->backup_jitter, s, why, sizeof why);
}

static void schedule_run(coord_t *c)
{
    int64_t now = bq_wall_ms();
    catalog_txn_t *t = NULL;
    for (size_t i = 0; i < c->cfg.nclusters && !c->batch_failed; i++) {
        const bq_cfg_cluster_t *cl = &c->cfg.clusters[i];
        schedule_t s;
        if (!cl->backup_schedule[0] || schedule_of(cl, &s) != 0)
            continue;
        if (!t && !(t = wtxn(c)))
            return;
        schedule_state_t st;
        schedule_state_of(c, t, cl, &st, NULL, 0);
        schedule_decision_t d;
        schedule_decide(&s, schedule_offset(&s, cl->name), &st, now, &d);
        bq_errbuf_t e;
        if (d.due) {
            uint64_t id;
            if (job_create(c, BQ_JOB_BACKUP, cl->name, cl->site, 0, "fast", &id, &e) != 0) {
                bq_error(COMP, 0, "scheduled backup of cluster %s: %s", cl->name, e.msg);
                continue;
            }
            bq_info(COMP, id, "scheduled backup of cluster %s queued: %s", cl->name, d.why);
        }
        if ((d.due || d.adopt) && catalog_sched_put(t, "sched", cl->name, d.slot_ms, &e) != 0)
            batch_fail(c, BQ_E_CATALOG, &e);
    }
}

/* barque schedule [CLUSTER] */
static int schedule_reply(coord_t *c, catalog_txn_t *t, const char *only, bq_msg_cli_reply_t *r,
                          bq_errbuf_t *e)
{
    int64_t now = bq_wall_ms();
    size_t n = 0;
    if (!(r->schedule = calloc(c->cfg.nclusters ? c->cfg.nclusters : 1, sizeof *r->schedule)))
        return bq_fail(e, BQ_E_NOMEM, "out of memory");
    for (size_t i = 0; i < c->cfg.nclusters; i++) {
        const bq_cfg_cluster_t *cl = &c->cfg.clusters[i];
        if (only && only[0] && strcmp(only, cl->name) != 0)
            continue;
        bq_schedule_row_t *row = &r->schedule[n++];
        snprintf(row->cluster, sizeof row->cluster, "%s", cl->name);
        snprintf(row->site, sizeof row->site, "%s", cl->site);
        snprintf(row->retention, sizeof row->retention, "%s", cl->retention_policy);
        schedule_t s;
        memset(&s, 0, sizeof s);
        if (cl->backup_schedule[0])
            schedule_of(cl, &s);
        schedule_format(&s, row->schedule, sizeof row->schedule);
        schedule_state_t st;
        schedule_state_of(c, t, cl, &st, row->last_backup, sizeof row->last_backup);
        schedule_decision_t d;
        schedule_decide(&s, schedule_offset(&s, cl->name), &st, now, &d);
        row->last_slot_ms = st.last_slot_ms;
        row->next_ms = d.due ? now : d.next_ms;
        row->due = d.due;
        snprintf(row->why, sizeof row->why, "%s", d.why);
        /* a queued backup that waits for a slot at its site or worker says so */
        for (size_t k = 0; k < c->njobs; k++) {
            const job_state_t *js = &c->jobs[k];
            if (js->type == BQ_JOB_BACKUP && js->state == BQ_JOB_QUEUED &&
                strcmp(js->cluster, cl->name) == 0) {
                snprintf(row->why, sizeof row->why, "backup job %llu is queued: %s",
                         (unsigned long long)js->id, d.why);
                break;
            }
        }
    }
    if (only && only[0] && !n)
        return bq_fail(e, BQ_E_NOTFOUND, "no cluster %s in the coordinator's config", only);
    r->nschedule = n;
    return 0;
}

/* max_concurrent_backups: backup jobs assigned or running at site and on worker wi. */
static void backups_running(const coord_t *c, const char *site, int wi, uint32_t *at_site,
                            uint32_t *on_worker)
{
    *at_site = *on_worker = 0;
    for (size_t i = 0; i < c->njobs; i++) {
        const job_state_t *s = &c->jobs[i];
        if (s->type != BQ_JOB_BACKUP || (s->state != BQ_JOB_ASSIGNED && s->state != BQ_JOB_RUNNING))
            continue;
        if (strcmp(s->site, site) == 0)
            (*at_site)++;
        if (wi >= 0 && s->worker == wi)
            (*on_worker)++;
    }
}

static int site_backup_max(const coord_t *c, const char *site)
{
    for (size_t i = 0; i < c->cfg.nsites; i++)
        if (strcmp(c->cfg.sites[i].name, site) == 0)
            return c->cfg.sites[i].max_concurrent_backups;
    return 0;
}

/* A check of cluster came back: add what the coordinator knows, from the WAL index: gaps
 * (CRITICAL: a recovery cannot replay past one) and the last archived file's age. */
static void check_wal_items(coord_t *c, const char *cluster, bq_check_result_t *r)
{
    catalog_txn_t *t = wtxn(c);
    if (!t)
        return;
    static wal_list_t wl;
    memset(&wl, 0, sizeof wl);
    wal_summary_init(&wl.sum);
    bq_errbuf_t e;
    bq_wal_timeline_t *tl = NULL;
    size_t ntl = 0;
    int rc = catalog_wal_each(t, cluster, wal_list_visit, &wl, &e);
    if (rc == 0)
        wal_summary_end(&wl.sum, &tl, &ntl);
    wal_summary_clear(&wl.sum);
    if (rc != 0) {
        check_item(r, "WAL archive", 0, "could not read the WAL index: %s",
                   rc > 0 ? wl.why.msg : e.msg);
        return;
    }
    /* a gap that ends before the oldest backup retention keeps (not standalone) is WAL it
     * pruned on purpose (between a KEEP:STANDALONE backup and the next): no backup needs it */
    char keep_from[BQ_WAL_NAME_MAX] = "";
    backup_vec_t bv;
    if (backups_load(t, cluster, &bv, &e) == 0) {
        retention_wal_range_t kr[PRUNE_RANGES_MAX];
        size_t nkr;
        char krt[BQ_TEXT_MAX];
        if (wal_keep_of(c, bv.b, bv.n, NULL, keep_from, kr, &nkr, krt, sizeof krt) != 0)
            keep_from[0] = '\0';
        free(bv.b);
    }
    uint64_t missing = 0;
    char ranges[BQ_DETAIL_MAX] = "";
    size_t off = 0;
    for (size_t i = 0; i < ntl; i++)
        for (size_t g = 0; g < tl[i].ngaps; g++) {
            const char *gap = tl[i].gaps[g], *dash = strchr(gap, '-');
            const char *end = dash ? dash + 1 : gap;
            if (keep_from[0] && strlen(end) == 24 && strcmp(end, keep_from) < 0)
                continue;
            missing++;
            int n = snprintf(ranges + off, sizeof ranges - off, "%s%s", off ? ", " : "",
                             tl[i].gaps[g]);
            if (n > 0 && (size_t)n < sizeof ranges - off)
                off += (size_t)n;
        }
    if (ntl == 0)
        check_item(r, "WAL archive", 1, "no WAL archived yet");
    else if (missing)
        check_item(r, "WAL archive", 0, "CRITICAL: WAL missing from the archive (%" PRIu64
                   " gap%s: %s): no recovery can replay past a gap; take a new backup",
                   missing, missing == 1 ? "" : "s", ranges);
    else
        check_item(r, "WAL archive", 1, "timeline %u: %s to %s, %" PRIu64 " segments, no gap",
                   tl[ntl - 1].tli, tl[ntl - 1].first[0] ? tl[ntl - 1].first : "-",
                   tl[ntl - 1].last[0] ? tl[ntl - 1].last : "-", tl[ntl - 1].segments);
    const bq_cfg_cluster_t *cl = bq_coord_config_cluster(&c->cfg, cluster);
    int64_t age = bq_wall_ms() - wl.newest_ms;
    if (ntl && cl && cl->wal_max_age_ms > 0 && age > cl->wal_max_age_ms) {
        check_item(r, "last archived WAL", 0, "%s was archived %lld s ago, more than wal_max_age "
                   "(%lld s): is WAL still reaching the archive?", wl.newest,
                   (long long)(age / 1000), (long long)(cl->wal_max_age_ms / 1000));
        r->items[r->nitems - 1].severity = BQ_SEV_WARNING;
    } else if (ntl) {
        check_item(r, "last archived WAL", 1, "%s, %lld s ago", wl.newest, (long long)(age / 1000));
    }
    free(tl);
}

/* ---- job history: a finished job's record goes job_history after it ended ----------------- */

#define JOB_PRUNE_EVERY_MS 60000 /* at most this long between passes */
#define JOB_PRUNE_MAX 1000       /* records removed per pass: the write batch stays short */
#define JOB_PRUNE_RECENT 256     /* this many finished jobs in a row too young to go: the rest
                                  * are younger still (ids ascend with creation) */

typedef struct {
    coord_t *c;
    int64_t before; /* wall clock: jobs that ended before this go */
    size_t n, recent;
    uint64_t ids[JOB_PRUNE_MAX];
} job_prune_t;

static int job_prune_visit(const bq_job_t *j, void *arg)
{
    job_prune_t *p = arg;
    if (!bq_job_state_terminal(j->state) || job_find(p->c, j->id))
        return 0; /* queued or running (a wal-stream job lives for months): it stays */
    int64_t ended = j->finished_ms ? j->finished_ms : j->updated_ms;
    if (ended >= p->before) /* a long job that ended lately does not hold back those after it */
        return ++p->recent >= JOB_PRUNE_RECENT ? 1 : 0;
    p->recent = 0;
    p->ids[p->n++] = j->id;
    return p->n == JOB_PRUNE_MAX ? 1 : 0;
}

/* One pass: remove up to JOB_PRUNE_MAX finished jobs that ended more than job_history ago,
 * oldest id first (the catalog does not grow without end with replicate-wal, check and
 * switch-wal jobs). Backups, the WAL index and restore-test records are not jobs: they stay. */
static void job_prune(coord_t *c)
{
    catalog_txn_t *t = wtxn(c);
    if (!t)
        return;
    static job_prune_t p; /* 8 KiB of ids: off the stack; the loop is single-threaded */
    p.c = c;
    p.before = bq_wall_ms() - c->cfg.job_history_ms;
    p.n = p.recent = 0;
    bq_errbuf_t e;
    if (catalog_job_each(t, job_prune_visit, &p, &e) < 0) {
        bq_warn(COMP, 0, "job history: could not read the jobs: %s", e.msg);
        return;
    }
    for (size_t i = 0; i < p.n; i++) {
        int rc = catalog_job_del(t, p.ids[i], &e);
        if (rc && rc != BQ_E_NOTFOUND) {
            batch_fail(c, rc, &e);
            return;
        }
    }
    if (p.n) {
        char h[32];
        bq_info(COMP, 0, "removed %zu finished job%s (ids %" PRIu64 " to %" PRIu64 ") that ended "
                "more than job_history %s ago", p.n, p.n == 1 ? "" : "s", p.ids[0],
                p.ids[p.n - 1], bq_duration_text(c->cfg.job_history_ms, h, sizeof h));
    }
}

/* ---- check: the coordinator's items ---- */

typedef struct {
    const char *cluster;
    int64_t since;
    uint64_t n;
    char first[BQ_DETAIL_MAX];
    uint64_t nread; /* restores whose source store failed (source_failed), whatever came after */
    char read_first[BQ_DETAIL_MAX];
} failed_scan_t;

static int failed_visit(const bq_job_t *j, void *arg)
{
    failed_scan_t *f = arg;
    if (!bq_job_state_terminal(j->state) || j->finished_ms < f->since ||
        strcmp(j->cluster, f->cluster) != 0)
        return 0;
    if (j->has_restore && j->restore.source_failed[0] && !f->nread++) {
        const char *from = j->restore.peer_worker[0] ? j->restore.peer_worker : j->worker;
        snprintf(f->read_first, sizeof f->read_first, "%s job %llu could not read the store of "
                 "%s%s%s%s", bq_job_type_name(j->type), (unsigned long long)j->id,
                 j->restore.source_failed, j->state == BQ_JOB_SUCCEEDED ? " and read " : "",
                 j->state == BQ_JOB_SUCCEEDED ? from : "",
                 j->state == BQ_JOB_SUCCEEDED ? "'s instead: verify that store" : "");
    }
    if (j->state == BQ_JOB_FAILED && !f->n++)
        snprintf(f->first, sizeof f->first, "%s job %llu: %.180s", bq_job_type_name(j->type),
                 (unsigned long long)j->id, j->error);
    return 0;
}

/* One store's space item: free share against the thresholds, days until full from the
 * oldest sample kept. */
static void store_item(coord_t *c, const worker_state_t *w, bq_check_result_t *r)
{
    char name[BQ_NAME_MAX];
    snprintf(name, sizeof name, "store %.50s", w->rec.name);
    if (!w->rec.store_total) {
        check_item(r, name, 0, "worker %s reports no usable store", w->rec.name);
        return;
    }
    double pct = 100.0 * (double)w->rec.store_free / (double)w->rec.store_total;
    char trend[96] = "";
    double days = -1;
    if (w->nsamples >= 2) {
        size_t oldest = (w->sample_next + STORE_SAMPLES - w->nsamples) % STORE_SAMPLES;
        int64_t dt = bq_wall_ms() - w->sample_ms[oldest];
        double used = (double)w->sample_free[oldest] - (double)w->rec.store_free;
        /* under an hour of samples says more about a restore passing by than a trend */
        if (dt >= STORE_TREND_MIN_MS && used > 0) {
            days = (double)w->rec.store_free / (used / ((double)dt / 86400000.0));
            snprintf(trend, sizeof trend, "; full in %.1f days at the rate of the last %lld min",
                     days, (long long)(dt / 60000));
        }
    }
    int sev = pct < c->cfg.store_free_critical ? BQ_SEV_CRITICAL
              : pct < c->cfg.store_free_warning ? BQ_SEV_WARNING
              : (days >= 0 && days * 86400000.0 < (double)c->cfg.store_full_warning_ms) ? BQ_SEV_WARNING
                                                                                      : BQ_SEV_OK;
    check_item(r, name, sev == BQ_SEV_OK, "%.1f%% free (%" PRIu64 " of %" PRIu64 " MiB) at site "
               "%s%s%s", pct, w->rec.store_free >> 20, w->rec.store_total >> 20, w->rec.site, trend,
               sev == BQ_SEV_CRITICAL ? " (below store_free_critical)"
               : sev == BQ_SEV_WARNING && pct < c->cfg.store_free_warning ? " (below store_free_warning)"
               : sev == BQ_SEV_WARNING ? " (within store_full_warning)" : "");
    r->items[r->nitems - 1].severity = sev;
}

/* Backups, redundancy, failed jobs, stores and the system identifier of cluster's check. */
static void check_rt_item(coord_t *c, catalog_txn_t *t, const bq_cfg_cluster_t *cl,
                          bq_check_result_t *r);

/* Per replicate_to site: "copies SITE" (CRITICAL: a copy FAILED; WARNING: more than the
 * newest backup waits for its copy) and "WAL at SITE" (WARNING: more than one segment's worth
 * missing there; CRITICAL past wal_max_lag when it is set). */
static void check_geo_items(coord_t *c, catalog_txn_t *t, const bq_cfg_cluster_t *cl,
                            bq_check_result_t *r)
{
    static bq_cluster_t st;
    memset(&st, 0, sizeof st);
    snprintf(st.name, sizeof st.name, "%s", cl->name);
    cluster_geo_status(c, t, &st);
    for (size_t i = 0; i < st.nreplicas && r->nitems + 2 <= BQ_CHECK_ITEMS_MAX; i++) {
        const bq_replica_status_t *rs = &st.replicas[i];
        char name[BQ_NAME_MAX];
        char last[96] = "no copy yet";
        if (rs->last_copy_ms)
            snprintf(last, sizeof last, "last copy %s %lld s ago", rs->last_copy_backup,
                     (long long)((bq_wall_ms() - rs->last_copy_ms) / 1000));
        snprintf(name, sizeof name, "copies %s", rs->site);
        int sev = rs->copies_failed ? BQ_SEV_CRITICAL : rs->copies_behind > 1 ? BQ_SEV_WARNING
                                                                              : BQ_SEV_OK;
        check_item(r, name, sev == BQ_SEV_OK, "%u DONE at site %s, %u behind%s%s; %s",
                   rs->copies_done, rs->site, rs->copies_behind,
                   rs->copies_failed ? ", FAILED: " : "", rs->copies_failed ? rs->error : "", last);
        r->items[r->nitems - 1].severity = sev;
        snprintf(name, sizeof name, "WAL at %s", rs->site);
        int over = cl->wal_max_lag && rs->wal_lag_bytes > cl->wal_max_lag;
        sev = over ? BQ_SEV_CRITICAL : rs->wal_missing > 1 ? BQ_SEV_WARNING : BQ_SEV_OK;
        check_item(r, name, sev == BQ_SEV_OK, "%" PRIu64 " WAL file%s (%" PRIu64 " bytes) not at "
                   "site %s yet; newest there %s", rs->wal_missing, rs->wal_missing == 1 ? "" : "s",
                   rs->wal_lag_bytes, rs->site, rs->wal_last[0] ? rs->wal_last : "none");
        r->items[r->nitems - 1].severity = sev;
    }
}

static void check_coord_items(coord_t *c, const char *cluster, bq_check_result_t *r)
{
    catalog_txn_t *t = wtxn(c);
    const bq_cfg_cluster_t *cl = bq_coord_config_cluster(&c->cfg, cluster);
    if (!t || !cl)
        return;
    backup_vec_t v;
    bq_errbuf_t e;
    if (backups_load(t, cluster, &v, &e) != 0)
        return;
    int64_t now = bq_wall_ms();
    const bq_backup_t *newest = NULL;
    size_t done = 0;
    for (size_t i = 0; i < v.n; i++)
        if (v.b[i].state == BQ_BACKUP_DONE) {
            newest = &v.b[i];
            done++;
        }
    int64_t max_age = cl->backup_max_age_ms;
    schedule_t s;
    if (!max_age && cl->backup_schedule[0] && schedule_of(cl, &s) == 0)
        max_age = 2 * (s.kind == SCHEDULE_INTERVAL ? s.interval_ms : 86400000LL);
    if (!newest) {
        check_item(r, "backup age", max_age ? 0 : 1, "no DONE backup of cluster %s%s", cluster,
                   max_age ? "" : " (no backup_max_age)");
        if (max_age)
            r->items[r->nitems - 1].severity = BQ_SEV_CRITICAL;
    } else {
        int64_t age = now - newest->stop_ms;
        int old = max_age && age > max_age;
        check_item(r, "backup age", !old, "newest DONE backup %s ended %lld s ago%s%lld%s", newest->id,
                   (long long)(age / 1000), max_age ? " (backup_max_age " : "",
                   (long long)(max_age / 1000), max_age ? " s)" : "");
        if (!max_age) /* the %lld prints 0 with no limit: say it plainly */
            snprintf(r->items[r->nitems - 1].detail, sizeof r->items[0].detail,
                     "newest DONE backup %s ended %lld s ago", newest->id, (long long)(age / 1000));
    }
    check_item(r, "minimum redundancy", done >= (size_t)cl->minimum_redundancy,
               "%zu DONE backup%s, minimum_redundancy %d", done, done == 1 ? "" : "s",
               cl->minimum_redundancy);
    if (cl->retention_policy[0]) { /* what retention makes of the backups now */
        retention_status_t *st = calloc(v.n ? v.n : 1, sizeof *st);
        size_t count[5] = {0, 0, 0, 0, 0};
        if (st && retention_statuses(c, cl, v.b, v.n, NULL, now, st) == 0)
            for (size_t i = 0; i < v.n; i++)
                count[st[i] < 5 ? st[i] : 0]++;
        check_item(r, "retention", 1, "%s, minimum_redundancy %d: %zu VALID, %zu OBSOLETE%s, %zu kept",
                   cl->retention_policy, cl->minimum_redundancy, count[RETENTION_STATUS_VALID],
                   count[RETENTION_STATUS_OBSOLETE],
                   cl->retention == BQ_RETENTION_REPORT ? " (retention = report: not deleted)" : "",
                   count[RETENTION_STATUS_KEEP_FULL] + count[RETENTION_STATUS_KEEP_STANDALONE]);
        free(st);
    }
    /* the receiver's lag against wal_max_lag (the worker measured it) */
    if (cl->wal == BQ_WAL_STREAM && cl->wal_max_lag && r->receiver_lag_known) {
        int over = r->receiver_lag > (int64_t)cl->wal_max_lag;
        check_item(r, "WAL lag", !over, "the receiver's flush is %lld bytes behind the server "
                   "(wal_max_lag %llu)%s", (long long)r->receiver_lag,
                   (unsigned long long)cl->wal_max_lag,
                   over ? ": WAL the server wrote is not durable in the archive yet" : "");
    }
    /* the system identifier the worker read against the backups' */
    if (r->system_identifier && newest && newest->system_identifier &&
        newest->system_identifier != r->system_identifier)
        check_item(r, "system identifier", 0, "the server's system identifier %" PRIu64 " is not "
                   "that of backup %s (%" PRIu64 "): a different cluster behind this conninfo?",
                   r->system_identifier, newest->id, newest->system_identifier);
    free(v.b);
    check_rt_item(c, t, cl, r);
    check_geo_items(c, t, cl, r);
    failed_scan_t f = {.cluster = cluster, .since = now - 86400000LL};
    if (catalog_job_each(t, failed_visit, &f, &e) >= 0) {
        check_item(r, "failed jobs", f.n == 0, f.n ? "%" PRIu64 " failed in the last day; first: %s"
                                                   : "none in the last day", f.n, f.first);
        if (f.n)
            r->items[r->nitems - 1].severity = BQ_SEV_WARNING;
        /* a restore that fell back to another store succeeded, but the store it left is damaged
         * or unreachable: never silent */
        check_item(r, "store reads", f.nread == 0, f.nread ? "%" PRIu64 " restore%s in the last "
                   "day could not read a store; first: %s" : "no restore failed to read a store in "
                   "the last day", f.nread, f.nread == 1 ? "" : "s", f.read_first);
        if (f.nread)
            r->items[r->nitems - 1].severity = BQ_SEV_WARNING;
    }
    /* each store at the cluster's site (a worker with no store has nothing to measure) */
    for (size_t i = 0; i < c->nworkers && r->nitems < BQ_CHECK_ITEMS_MAX; i++)
        if (strcmp(c->workers[i].rec.site, cl->site) == 0 && c->workers[i].rec.online &&
            c->workers[i].rec.store_total)
            store_item(c, &c->workers[i], r);
}

/* metrics: each cluster's last finished check (its job), newest wins. */
typedef struct {
    bq_cluster_t *cl;
    size_t n;
} check_scan_t;

static int check_visit(const bq_job_t *j, void *arg)
{
    check_scan_t *cs = arg;
    if (j->type != BQ_JOB_CHECK || !bq_job_state_terminal(j->state) || !j->has_check)
        return 0;
    for (size_t i = 0; i < cs->n; i++) {
        bq_cluster_t *cl = &cs->cl[i];
        if (strcmp(cl->name, j->cluster) != 0 || j->finished_ms < cl->check_ms)
            continue;
        int sev = BQ_SEV_OK;
        uint32_t failed = 0;
        for (size_t k = 0; k < j->check.nitems; k++) {
            const bq_check_item_t *it = &j->check.items[k];
            if (it->ok)
                continue;
            failed++;
            int s2 = it->severity ? it->severity : BQ_SEV_CRITICAL;
            if (s2 == BQ_SEV_CRITICAL || (s2 == BQ_SEV_UNKNOWN && sev != BQ_SEV_CRITICAL) ||
                (s2 == BQ_SEV_WARNING && sev == BQ_SEV_OK))
                sev = s2;
        }
        cl->check_status = sev;
        cl->check_failed = failed;
        cl->check_ms = j->finished_ms;
    }
    return 0;
}

static int metrics_backup_visit(const bq_backup_t *b, void *arg)
{
    backup_vec_t *v = arg;
    if (v->n >= 10000) /* the reply's bound on rows */
        return 1;
    return backup_vec_add(b, v);
}

/* check: the fleet's items: workers online per site, the catalog's size. */
static void fleet_items(coord_t *c, bq_check_result_t *r)
{
    memset(r, 0, sizeof *r);
    int64_t online_after = bq_mono_ms() - c->cfg.worker_timeout_ms;
    for (size_t s = 0; s < c->cfg.nsites && r->nitems < BQ_CHECK_ITEMS_MAX - 1; s++) {
        const char *site = c->cfg.sites[s].name;
        int configured = 0, online = 0;
        char down[BQ_DETAIL_MAX / 2] = "";
        for (size_t k = 0; k < c->cfg.nworkers; k++) {
            if (strcmp(c->cfg.workers[k].site, site) != 0)
                continue;
            configured++;
            int wi = worker_find(c, c->cfg.workers[k].name);
            if (wi >= 0 && c->workers[wi].rec.online && c->workers[wi].last_seen_mono >= online_after)
                online++;
            else {
                size_t u = strlen(down);
                snprintf(down + u, sizeof down - u, "%s%s", u ? ", " : "", c->cfg.workers[k].name);
            }
        }
        if (!configured)
            continue;
        char name[BQ_NAME_MAX];
        snprintf(name, sizeof name, "workers %.50s", site);
        check_item(r, name, online == configured, "%d of %d online at site %s%s%s", online,
                   configured, site, down[0] ? "; offline: " : "", down);
        r->items[r->nitems - 1].severity = online == configured ? BQ_SEV_OK
                                           : online == 0 ? BQ_SEV_CRITICAL : BQ_SEV_WARNING;
    }
    catalog_stats_t st;
    bq_errbuf_t e;
    if (catalog_stats(c->cat, &st, &e) == 0) {
        double pct = 100.0 * (double)st.used_bytes / (double)c->cfg.catalog_max_size;
        check_item(r, "catalog", pct < 90, "%.1f%% of catalog_max_size used (%" PRIu64 " MiB of %"
                   PRIu64 " MiB), %" PRIu64 " jobs, %" PRIu64 " backups, %" PRIu64 " WAL files",
                   pct, st.used_bytes >> 20, c->cfg.catalog_max_size >> 20, st.njobs, st.nbackups,
                   st.nwal);
        if (pct >= 90)
            r->items[r->nitems - 1].severity = pct >= 98 ? BQ_SEV_CRITICAL : BQ_SEV_WARNING;
    } else {
        check_item(r, "catalog", 0, "%s", e.msg);
    }
}

static int coord_site_known(const coord_t *c, const char *site)
{
    for (size_t i = 0; i < c->cfg.nsites; i++)
        if (strcmp(c->cfg.sites[i].name, site) == 0)
            return 1;
    return 0;
}

/* ---- geo copies (issue 8) ----------------------------------------------------------- */

#define GEO_SCAN_MS 5000        /* look for backups to copy at least this often */
#define GEO_WAL_SCAN_MS 30000   /* ... and for WAL files, when nothing said to sooner */
#define GEO_WAL_IDLE_MS 15000   /* after a replicate-wal job found files missing at the source
                                 * (pruned there meanwhile: the index drops them) */

/* Nonzero when one of stores (worker names joined by ',') is a worker of site. */
static int stores_list_at(const coord_t *c, const char *stores, const char *site)
{
    char name[BQ_NAME_MAX];
    for (const char *p = stores; names_next(&p, name, sizeof name);) {
        const bq_cfg_worker_ref_t *w = bq_coord_config_worker(&c->cfg, name);
        if (w && strcmp(w->site, site) == 0)
            return 1;
    }
    return 0;
}

static bq_copy_t *copy_of(bq_backup_t *b, const char *site)
{
    for (size_t i = 0; i < b->ncopies; i++)
        if (strcmp(b->copies[i].site, site) == 0)
            return &b->copies[i];
    return NULL;
}

/* b's copy record at site, made (QUEUED) when there is none; NULL when b has BQ_COPIES_MAX. */
static bq_copy_t *copy_get(bq_backup_t *b, const char *site)
{
    bq_copy_t *cp = copy_of(b, site);
    if (cp || b->ncopies == BQ_COPIES_MAX)
        return cp;
    cp = &b->copies[b->ncopies++];
    memset(cp, 0, sizeof *cp);
    snprintf(cp->site, sizeof cp->site, "%s", site);
    cp->state = BQ_COPY_QUEUED;
    return cp;
}

/* The active job of type for cluster at site (and backup, when given), or NULL. */
static job_state_t *geo_active(coord_t *c, bq_job_type_t type, const char *cluster,
                               const char *site, const char *backup_id)
{
    for (size_t i = 0; i < c->njobs; i++) {
        job_state_t *s = &c->jobs[i];
        if (!bq_job_state_terminal(s->state) && s->type == type &&
            strcmp(s->cluster, cluster) == 0 && strcmp(s->site, site) == 0 &&
            (!backup_id || strcmp(s->backup_id, backup_id) == 0))
            return s;
    }
    return NULL;
}


/* Whether b's copy at site has the WAL it needs there (as backup_needs_wal for the backup
 * itself): the copy's state and error follow. */
static void copy_wal_state(coord_t *c, catalog_txn_t *t, bq_backup_t *b, bq_copy_t *cp)
{
    char missing[64];
    if (backup_needs_wal(c, t, b, cp->site, missing, sizeof missing)) {
        cp->state = BQ_COPY_WAITING_FOR_WALS;
        snprintf(cp->error, sizeof cp->error, "waiting for WAL %s at site %s", missing, cp->site);
        return;
    }
    cp->state = BQ_COPY_DONE;
    cp->error[0] = '\0';
    if (!cp->done_ms)
        cp->done_ms = bq_wall_ms();
}

/* A WAL file of b's cluster was recorded: copies waiting for their WAL may be DONE now. b is
 * the caller's copy of the record; written back when a copy changed. 1 when the batch
 * failed. */
static int copies_wal_check(coord_t *c, catalog_txn_t *t, bq_backup_t *b)
{
    int changed = 0;
    for (size_t i = 0; i < b->ncopies; i++) {
        bq_copy_t *cp = &b->copies[i];
        if (cp->state != BQ_COPY_WAITING_FOR_WALS)
            continue;
        char before[sizeof cp->error];
        memcpy(before, cp->error, sizeof before);
        copy_wal_state(c, t, b, cp);
        if (cp->state == BQ_COPY_DONE)
            bq_info(COMP, cp->job_id, "the copy of backup %s of cluster %s at site %s is DONE: "
                    "its WAL is there", b->id, b->cluster, cp->site);
        changed |= cp->state != BQ_COPY_WAITING_FOR_WALS || strcmp(before, cp->error) != 0;
    }
    if (!changed)
        return 0;
    bq_errbuf_t e;
    int rc = catalog_backup_put(t, b, &e);
    if (rc) {
        batch_fail(c, rc, &e);
        return 1;
    }
    return 0;
}

/* Queue the copy of cluster cl's oldest backup that site lacks, when no copy to site is
 * active: one at a time per cluster and site, oldest first (each copy dedups against the
 * ones before it). A FAILED copy is not retried by itself: `barque replicate` does. */
static void geo_copies_queue(coord_t *c, catalog_txn_t *t, const bq_cfg_cluster_t *cl,
                             const char *site, backup_vec_t *v)
{
    if (geo_active(c, BQ_JOB_REPLICATE, cl->name, site, NULL))
        return;
    for (size_t i = 0; i < v->n && !c->batch_failed; i++) {
        bq_backup_t *b = &v->b[i];
        if ((b->state != BQ_BACKUP_DONE && b->state != BQ_BACKUP_WAITING_FOR_WALS) ||
            strcmp(b->site, site) == 0 || backup_at(c, b, site))
            continue;
        bq_copy_t *cp = copy_of(b, site);
        if (cp && (cp->state == BQ_COPY_FAILED || cp->state == BQ_COPY_DONE ||
                   cp->state == BQ_COPY_WAITING_FOR_WALS || cp->state == BQ_COPY_DELETED))
            continue;
        /* a source must be up, else the job would fail at its offer */
        source_pick_t pk = {NULL, site, b->site, NULL};
        int wi;
        char why[BQ_DETAIL_MAX];
        if (store_source(c, b->stores, &pk, &wi, why, sizeof why) != 0)
            continue;
        static bq_job_t j;
        memset(&j, 0, sizeof j);
        j.type = BQ_JOB_REPLICATE;
        snprintf(j.cluster, sizeof j.cluster, "%s", cl->name);
        snprintf(j.site, sizeof j.site, "%s", site);
        snprintf(j.backup_id, sizeof j.backup_id, "%s", b->id);
        uint64_t id;
        bq_errbuf_t e;
        if (job_insert(c, &j, &id, &e) != 0) {
            bq_error(COMP, 0, "could not queue the copy of backup %s of cluster %s to site %s: "
                     "%s", b->id, cl->name, site, e.msg);
            return;
        }
        job_state_t *s = job_find(c, id);
        if (s)
            snprintf(s->backup_id, sizeof s->backup_id, "%s", b->id);
        if (!(cp = copy_get(b, site)))
            return;
        cp->state = BQ_COPY_QUEUED;
        cp->job_id = id;
        cp->queued_ms = bq_wall_ms();
        cp->error[0] = '\0';
        int rc = catalog_backup_put(t, b, &e);
        if (rc)
            batch_fail(c, rc, &e);
        return;
    }
}

typedef struct {
    const coord_t *c;
    const char *site;
    char names[BQ_WAL_LIST_MAX];
    size_t n, off;
} wal_miss_t;

static int wal_miss_visit(const bq_wal_file_t *w, void *arg)
{
    wal_miss_t *x = arg;
    if (!w->stores[0] || stores_list_at(x->c, w->stores, x->site))
        return 0;
    source_pick_t pk = {NULL, x->site, NULL, NULL};
    int wi;
    char why[BQ_DETAIL_MAX];
    if (store_source((coord_t *)x->c, w->stores, &pk, &wi, why, sizeof why) != 0)
        return 0; /* nobody up serves it now */
    int k = snprintf(x->names + x->off, sizeof x->names - x->off, "%s%s", x->n ? "," : "",
                     w->name);
    if (k < 0 || (size_t)k >= sizeof x->names - x->off)
        return 1;
    x->off += (size_t)k;
    return ++x->n == BQ_WAL_NAMES_MAX;
}

static struct geo_pair *geo_pair_of(coord_t *c, const char *cluster, const char *site)
{
    for (size_t i = 0; i < c->ngeo; i++)
        if (strcmp(c->geo[i].cluster, cluster) == 0 && strcmp(c->geo[i].site, site) == 0)
            return &c->geo[i];
    if (grow((void **)&c->geo, &c->geo_cap, c->ngeo + 1, sizeof *c->geo))
        return NULL;
    struct geo_pair *g = &c->geo[c->ngeo++];
    memset(g, 0, sizeof *g);
    snprintf(g->cluster, sizeof g->cluster, "%s", cluster);
    snprintf(g->site, sizeof g->site, "%s", site);
    g->wal_dirty = 1;
    return g;
}

/* Queue a replicate-wal job for the (at most BQ_WAL_NAMES_MAX) oldest WAL files of cl in
 * the index that no store at site holds and an online worker elsewhere serves. */
static void geo_wal_queue(coord_t *c, catalog_txn_t *t, const bq_cfg_cluster_t *cl,
                          const char *site, int64_t now)
{
    struct geo_pair *g = geo_pair_of(c, cl->name, site);
    if (!g || geo_active(c, BQ_JOB_REPLICATE_WAL, cl->name, site, NULL))
        return;
    if (now < g->wal_idle_until || (!g->wal_dirty && now - g->wal_scan_mono < GEO_WAL_SCAN_MS))
        return;
    g->wal_dirty = 0;
    g->wal_scan_mono = now;
    static wal_miss_t x;
    memset(&x, 0, sizeof x);
    x.c = c;
    x.site = site;
    bq_errbuf_t e;
    if (catalog_wal_each(t, cl->name, wal_miss_visit, &x, &e) < 0) {
        bq_warn(COMP, 0, "cluster %s: could not read the WAL index: %s", cl->name, e.msg);
        return;
    }
    if (!x.n)
        return;
    static bq_job_t j;
    memset(&j, 0, sizeof j);
    j.type = BQ_JOB_REPLICATE_WAL;
    snprintf(j.cluster, sizeof j.cluster, "%s", cl->name);
    snprintf(j.site, sizeof j.site, "%s", site);
    memcpy(j.wal_names, x.names, sizeof j.wal_names);
    uint64_t id;
    if (job_insert(c, &j, &id, &e) != 0)
        bq_error(COMP, 0, "could not queue the WAL copy of cluster %s to site %s: %s", cl->name,
                 site, e.msg);
}

/* Every cluster with replicate_to: its copies and its WAL at each target site. */
static void geo_run(coord_t *c)
{
    int64_t now = bq_mono_ms();
    int backups = c->geo_dirty || now - c->last_geo_mono >= GEO_SCAN_MS;
    catalog_txn_t *t = NULL;
    for (size_t i = 0; i < c->cfg.nclusters && !c->batch_failed; i++) {
        const bq_cfg_cluster_t *cl = &c->cfg.clusters[i];
        if (!cl->replicate_to[0])
            continue;
        if (!t && !(t = wtxn(c)))
            return;
        backup_vec_t v = {0};
        bq_errbuf_t e;
        if (backups && backups_load(t, cl->name, &v, &e) != 0) {
            bq_error(COMP, 0, "copies of cluster %s: %s", cl->name, e.msg);
            continue;
        }
        char site[BQ_NAME_MAX];
        for (const char *p = cl->replicate_to; names_next(&p, site, sizeof site) && !c->batch_failed;) {
            if (backups)
                geo_copies_queue(c, t, cl, site, &v);
            geo_wal_queue(c, t, cl, site, now);
        }
        free(v.b);
    }
    if (backups) {
        c->geo_dirty = 0;
        c->last_geo_mono = now;
    }
}

/* The WAL index of a cluster changed: its WAL copies are looked at again. */
static void geo_wal_changed(coord_t *c, const char *cluster)
{
    for (size_t i = 0; i < c->ngeo; i++)
        if (strcmp(c->geo[i].cluster, cluster) == 0)
            c->geo[i].wal_dirty = 1;
}

/* A replicate job is being offered: a worker holding its backup at another site (its own
 * site's first) serves it; the job is pinned to the worker it is offered to, so a retry
 * resumes in the same store; the copy is COPYING. */
static int geo_offer(coord_t *c, bq_job_t *j, bq_errbuf_t *e)
{
    catalog_txn_t *t = wtxn(c);
    if (!t)
        return bq_fail(e, c->batch_failed, "%s", c->batch_err.msg);
    static bq_backup_t b;
    int rc = catalog_backup_get(t, j->cluster, j->backup_id, &b, e);
    if (rc != 0)
        return rc;
    if (b.state != BQ_BACKUP_DONE && b.state != BQ_BACKUP_WAITING_FOR_WALS)
        return bq_fail(e, BQ_E_STATE, "backup %s is %s", b.id, bq_backup_state_name(b.state));
    source_pick_t pk = {NULL, j->site, b.site, NULL};
    int wi = -1;
    char why[BQ_TEXT_MAX / 2];
    if (store_source(c, b.stores, &pk, &wi, why, sizeof why) != 0)
        return bq_fail(e, BQ_E_STATE, "no worker outside site %s holding backup %s can serve it "
                       "(%s)", j->site, b.id, why);
    const worker_state_t *src = &c->workers[wi];
    const bq_cfg_worker_ref_t *ref = bq_coord_config_worker(&c->cfg, src->rec.name);
    snprintf(j->peer_worker, sizeof j->peer_worker, "%s", src->rec.name);
    snprintf(j->peer_endpoint, sizeof j->peer_endpoint, "%s", src->rec.data_endpoint);
    snprintf(j->peer_public_key, sizeof j->peer_public_key, "%s", ref->public_key);
    j->bandwidth_limit = bq_site_bandwidth(&c->cfg, j->site, src->rec.site);
    if (!j->pin_worker[0])
        snprintf(j->pin_worker, sizeof j->pin_worker, "%s", j->worker);
    bq_copy_t *cp = copy_get(&b, j->site);
    if (cp) {
        cp->state = BQ_COPY_COPYING;
        cp->job_id = j->id;
        snprintf(cp->worker, sizeof cp->worker, "%s", j->worker);
        snprintf(cp->source, sizeof cp->source, "%s", src->rec.name);
        cp->attempts++;
        if ((rc = catalog_backup_put(t, &b, e)) != 0) {
            batch_fail(c, rc, e);
            return rc;
        }
    }
    return offer_record(c, j, e);
}

/* A replicate-wal job is being offered: the worker serving its first file. */
static int geo_wal_offer(coord_t *c, bq_job_t *j, bq_errbuf_t *e)
{
    catalog_txn_t *t = wtxn(c);
    if (!t)
        return bq_fail(e, c->batch_failed, "%s", c->batch_err.msg);
    char first[BQ_WAL_FILE_MAX];
    snprintf(first, sizeof first, "%.*s", (int)strcspn(j->wal_names, ","), j->wal_names);
    bq_wal_file_t w;
    int rc = catalog_wal_get(t, j->cluster, first, &w, e);
    if (rc != 0)
        return rc;
    const bq_cfg_cluster_t *cl = bq_coord_config_cluster(&c->cfg, j->cluster);
    source_pick_t pk = {NULL, j->site, cl ? cl->site : NULL, NULL};
    int wi = -1;
    char why[BQ_TEXT_MAX / 2];
    if (store_source(c, w.stores, &pk, &wi, why, sizeof why) != 0)
        return bq_fail(e, BQ_E_STATE, "no worker outside site %s holding WAL file %s can serve it "
                       "(%s)", j->site, first, why);
    const worker_state_t *src = &c->workers[wi];
    const bq_cfg_worker_ref_t *ref = bq_coord_config_worker(&c->cfg, src->rec.name);
    snprintf(j->peer_worker, sizeof j->peer_worker, "%s", src->rec.name);
    snprintf(j->peer_endpoint, sizeof j->peer_endpoint, "%s", src->rec.data_endpoint);
    snprintf(j->peer_public_key, sizeof j->peer_public_key, "%s", ref->public_key);
    j->bandwidth_limit = bq_site_bandwidth(&c->cfg, j->site, src->rec.site);
    return offer_record(c, j, e);
}

/* An attempt of replicate job j ended (r: its result, NULL when the worker was lost) and the
 * job is now state: the copy's figures add up; SUCCEEDED puts the worker in the backup's
 * stores and the copy is DONE once its WAL is at the site too. */
static void geo_copy_end(coord_t *c, const bq_job_t *j, const bq_msg_result_t *r,
                         bq_job_state_t state, const char *error)
{
    catalog_txn_t *t = wtxn(c);
    if (!t)
        return;
    static bq_backup_t b;
    bq_errbuf_t e;
    if (catalog_backup_get(t, j->cluster, j->backup_id, &b, &e) != 0) {
        bq_warn(COMP, j->id, "copy of backup %s of cluster %s not recorded: %s", j->backup_id,
                j->cluster, e.msg);
        return;
    }
    bq_copy_t *cp = copy_get(&b, j->site);
    if (!cp)
        return;
    if (r && r->has_replicate)
        copy_count(cp, r);
    cp->job_id = j->id;
    if (state == BQ_JOB_SUCCEEDED) {
        if (!name_in_list(b.stores, j->worker)) {
            size_t n = strlen(b.stores);
            snprintf(b.stores + n, sizeof b.stores - n, "%s%s", n ? "," : "", j->worker);
        }
        snprintf(cp->worker, sizeof cp->worker, "%s", j->worker);
        cp->duration_ms = r && r->has_replicate ? r->rep.duration_ms : 0;
        copy_wal_state(c, t, &b, cp);
    } else if (bq_job_state_terminal(state)) {
        cp->state = BQ_COPY_FAILED;
        snprintf(cp->error, sizeof cp->error, "%s", error && error[0] ? error : "failed");
    } else {
        cp->state = BQ_COPY_QUEUED;
        snprintf(cp->error, sizeof cp->error, "%s", error ? error : "");
    }
    int rc = catalog_backup_put(t, &b, &e);
    if (rc) {
        batch_fail(c, rc, &e);
        return;
    }
    c->geo_dirty = 1;
    bq_log(cp->state == BQ_COPY_FAILED ? BQ_LOG_WARNING : BQ_LOG_INFO, COMP, j->id,
           "copy of backup %s of cluster %s at site %s is %s%s%s", b.id, b.cluster, cp->site,
           bq_copy_state_name(cp->state), cp->error[0] ? ": " : "", cp->error);
}

/* Add attempt r->attempt's figures to the copy's sums, once (0 when they are in already). The
 * chunks there already are what the earliest attempt found. */
static int copy_count(bq_copy_t *cp, const bq_msg_result_t *r)
{
    uint64_t bit = r->attempt >= 1 && r->attempt <= 64 ? 1ull << (r->attempt - 1) : 0;
    if (cp->counted & bit)
        return 0;
    cp->counted |= bit;
    if (!cp->chunks_total || r->rep.chunks_present < cp->chunks_present) {
        cp->chunks_total = r->rep.chunks_total;
        cp->chunks_present = r->rep.chunks_present;
    }
    cp->chunks_fetched += r->rep.chunks_fetched;
    cp->bytes_fetched += r->rep.bytes_fetched;
    cp->chunks_refetched += r->rep.chunks_refetched;
    return 1;
}

/* The refused result r of a superseded replicate attempt: what it fetched is added to the
 * copy's figures (the chunks are in the store; the next attempt found them there). */
static void geo_copy_figures(coord_t *c, const bq_msg_result_t *r)
{
    catalog_txn_t *t = wtxn(c);
    if (!t)
        return;
    static bq_job_t j;
    static bq_backup_t b;
    bq_errbuf_t e;
    if (catalog_job_get(t, r->job_id, &j, &e) != 0 || j.type != BQ_JOB_REPLICATE ||
        catalog_backup_get(t, j.cluster, j.backup_id, &b, &e) != 0)
        return;
    bq_copy_t *cp = copy_of(&b, j.site);
    if (!cp || !copy_count(cp, r))
        return;
    int rc = catalog_backup_put(t, &b, &e);
    if (rc)
        batch_fail(c, rc, &e);
    else
        bq_info(COMP, r->job_id, "copy of backup %s of cluster %s at site %s: attempt %u "
                "(superseded) had fetched %llu chunks", b.id, b.cluster, j.site, r->attempt,
                (unsigned long long)r->rep.chunks_fetched);
}

/* A replicate-wal job ended: the pair's next look comes at once, or after GEO_WAL_IDLE_MS
 * when the source lacked files the index says it holds (so they are not asked for in a
 * loop). */
static void geo_wal_end(coord_t *c, const bq_job_t *j, const bq_msg_result_t *r)
{
    struct geo_pair *g = geo_pair_of(c, j->cluster, j->site);
    if (!g)
        return;
    g->wal_dirty = 1;
    if (r && r->has_replicate && r->rep.wal_missing > 0) {
        g->wal_idle_until = bq_mono_ms() + GEO_WAL_IDLE_MS;
        bq_warn(COMP, j->id, "cluster %s: %llu WAL files the index places at worker %s are not "
                "in its store; copies of them to site %s wait %d s", j->cluster,
                (unsigned long long)r->rep.wal_missing, j->peer_worker, j->site,
                GEO_WAL_IDLE_MS / 1000);
    }
}

typedef struct {
    const coord_t *c;
    bq_replica_status_t *rs;
    uint64_t seg;
} geo_wal_stat_t;

static int geo_wal_stat_visit(const bq_wal_file_t *w, void *arg)
{
    geo_wal_stat_t *x = arg;
    if (stores_list_at(x->c, w->stores, x->rs->site)) {
        if (strcmp(w->name, x->rs->wal_last) > 0 && !strstr(w->name, ".history")) {
            snprintf(x->rs->wal_last, sizeof x->rs->wal_last, "%s", w->name);
            x->rs->wal_last_ms = w->archived_ms;
        }
    } else if (w->stores[0]) {
        x->rs->wal_missing++;
        x->rs->wal_lag_bytes += w->size;
    }
    return 0;
}

/* Per replicate_to site of cluster cl->name: copies done, behind and failed, the last good
 * copy, WAL files missing there (status, check, metrics). */
static void cluster_geo_status(coord_t *c, catalog_txn_t *t, bq_cluster_t *cl)
{
    const bq_cfg_cluster_t *cc = bq_coord_config_cluster(&c->cfg, cl->name);
    cl->nreplicas = 0;
    if (!cc || !cc->replicate_to[0])
        return;
    backup_vec_t v = {0};
    bq_errbuf_t e;
    if (backups_load(t, cl->name, &v, &e) != 0)
        return;
    char site[BQ_NAME_MAX];
    for (const char *p = cc->replicate_to;
         cl->nreplicas < BQ_COPIES_MAX && names_next(&p, site, sizeof site);) {
        bq_replica_status_t *rs = &cl->replicas[cl->nreplicas++];
        memset(rs, 0, sizeof *rs);
        snprintf(rs->site, sizeof rs->site, "%s", site);
        for (size_t i = 0; i < v.n; i++) {
            bq_backup_t *b = &v.b[i];
            if (b->state != BQ_BACKUP_DONE && b->state != BQ_BACKUP_WAITING_FOR_WALS)
                continue;
            bq_copy_t *cp = copy_of(b, site);
            if (cp && cp->state == BQ_COPY_DONE) {
                rs->copies_done++;
                if (cp->done_ms >= rs->last_copy_ms) {
                    rs->last_copy_ms = cp->done_ms;
                    snprintf(rs->last_copy_backup, sizeof rs->last_copy_backup, "%s", b->id);
                }
            } else if (cp && cp->state == BQ_COPY_FAILED) {
                rs->copies_failed++;
                snprintf(rs->error, sizeof rs->error, "backup %s: %s", b->id, cp->error);
            } else if (strcmp(b->site, site) != 0) {
                rs->copies_behind++;
            }
        }
        geo_wal_stat_t x = {c, rs, 0};
        if (catalog_wal_each(t, cl->name, geo_wal_stat_visit, &x, &e) < 0)
            bq_warn(COMP, 0, "cluster %s: could not read the WAL index: %s", cl->name, e.msg);
    }
    free(v.b);
}

/* barque replicate CLUSTER [ID|latest] [--to SITE]: copy backup ID (latest: the newest DONE)
 * to SITE, or to every replicate_to site, now; a FAILED copy is tried again. The reply has the
 * backup and one job per site queued (or already running). */
static int geo_replicate_create(coord_t *c, const bq_msg_cli_request_t *q, bq_msg_cli_reply_t *r,
                                bq_errbuf_t *e)
{
    const bq_cfg_cluster_t *cl = bq_coord_config_cluster(&c->cfg, q->cluster);
    if (!cl)
        return bq_fail(e, BQ_E_NOTFOUND, "no cluster %s in the coordinator's config", q->cluster);
    if (q->site[0] && !coord_site_known(c, q->site))
        return bq_fail(e, BQ_E_NOTFOUND, "no site %s in the coordinator's config", q->site);
    if (!q->site[0] && !cl->replicate_to[0])
        return bq_fail(e, BQ_E_USAGE, "cluster %s has no replicate_to: name a site with --to SITE",
                       cl->name);
    catalog_txn_t *t = wtxn(c);
    if (!t)
        return bq_fail(e, c->batch_failed, "%s", c->batch_err.msg);
    backup_vec_t v;
    int rc = backups_load(t, cl->name, &v, e);
    if (rc != 0)
        return rc;
    int latest = !q->backup_id[0] || strcmp(q->backup_id, "latest") == 0;
    bq_backup_t *b = NULL;
    for (size_t i = v.n; i-- > 0 && !b;)
        if (latest ? v.b[i].state == BQ_BACKUP_DONE : strcmp(v.b[i].id, q->backup_id) == 0)
            b = &v.b[i];
    if (!b) {
        free(v.b);
        return bq_fail(e, BQ_E_NOTFOUND, latest ? "cluster %s has no DONE backup"
                                                : "no backup %s of cluster %s", latest ? cl->name : q->backup_id,
                       cl->name);
    }
    if (b->state != BQ_BACKUP_DONE && b->state != BQ_BACKUP_WAITING_FOR_WALS) {
        rc = bq_fail(e, BQ_E_STATE, "could not copy backup %s of cluster %s: it is %s, not DONE",
                     b->id, cl->name, bq_backup_state_name(b->state));
        free(v.b);
        return rc;
    }
    if (!(r->backups = calloc(1, sizeof *r->backups)) ||
        !(r->jobs = calloc(BQ_REPLICA_SITES_MAX, sizeof *r->jobs))) {
        free(v.b);
        return bq_fail(e, BQ_E_NOMEM, "out of memory");
    }
    char site[BQ_NAME_MAX], there[BQ_TEXT_MAX / 2] = "";
    const char *p = q->site[0] ? q->site : cl->replicate_to;
    for (; rc == 0 && r->njobs < BQ_REPLICA_SITES_MAX && names_next(&p, site, sizeof site);) {
        if (strcmp(site, b->site) == 0 || backup_at(c, b, site)) {
            size_t n = strlen(there);
            snprintf(there + n, sizeof there - n, "%s%s", n ? ", " : "", site);
            continue;
        }
        job_state_t *s = geo_active(c, BQ_JOB_REPLICATE, cl->name, site, b->id);
        static bq_job_t j;
        memset(&j, 0, sizeof j);
        if (!s) {
            j.type = BQ_JOB_REPLICATE;
            snprintf(j.cluster, sizeof j.cluster, "%s", cl->name);
            snprintf(j.site, sizeof j.site, "%s", site);
            snprintf(j.backup_id, sizeof j.backup_id, "%s", b->id);
            if ((rc = job_insert(c, &j, &j.id, e)) != 0)
                break;
            bq_copy_t *cp = copy_get(b, site);
            if (cp) {
                cp->state = BQ_COPY_QUEUED;
                cp->job_id = j.id;
                cp->queued_ms = bq_wall_ms();
                cp->error[0] = '\0';
            }
            if ((rc = catalog_backup_put(t, b, e)) != 0) {
                batch_fail(c, rc, e);
                break;
            }
            j.state = BQ_JOB_QUEUED;
        } else {
            j.id = s->id;
            j.type = s->type;
            j.state = s->state;
            snprintf(j.cluster, sizeof j.cluster, "%s", cl->name);
            snprintf(j.site, sizeof j.site, "%s", site);
            snprintf(j.backup_id, sizeof j.backup_id, "%s", b->id);
        }
        r->jobs[r->njobs++] = j;
        if (!r->job_id)
            r->job_id = j.id;
    }
    if (rc == 0 && !r->njobs)
        rc = bq_fail(e, BQ_E_EXISTS, "backup %s of cluster %s is at %s already", b->id, cl->name,
                     there);
    if (rc == 0) {
        r->backups[0] = *b;
        r->nbackups = 1;
    }
    free(v.b);
    return rc;
}

/* ---- restore tests (issue 7) -------------------------------------------------------- */

#define RTESTS_LIST_MAX 1000

/* A cluster's restore tests, scanned oldest first: the newest finished and the newest passed
 * (of one backup, or one job, when asked), and with collect a ring of the newest rows. */
typedef struct {
    const char *backup_id; /* only this backup's ("" or NULL = all) */
    uint64_t job_id;       /* only this job's (0 = all) */
    int collect;
    bq_restore_test_t *last, *ok; /* heap, valid when has_* */
    int has_last, has_ok;
    bq_restore_test_t *rows;
    size_t n, cap;
    uint64_t seen;
    int err;
} rtest_scan_t;

static int rtest_scan_visit(const bq_restore_test_t *t, void *arg)
{
    rtest_scan_t *x = arg;
    if ((x->backup_id && x->backup_id[0] && strcmp(t->backup_id, x->backup_id) != 0) ||
        (x->job_id && t->job_id != x->job_id))
        return 0;
    *x->last = *t;
    x->has_last = 1;
    if (t->ok) {
        *x->ok = *t;
        x->has_ok = 1;
    }
    if (!x->collect)
        return 0;
    size_t slot = (size_t)(x->seen++ % RTESTS_LIST_MAX);
    if (slot >= x->n) {
        if (grow((void **)&x->rows, &x->cap, x->n + 1, sizeof *x->rows)) {
            x->err = BQ_E_NOMEM;
            return 1;
        }
        x->n++;
    }
    x->rows[slot] = *t;
    return 0;
}

static int rtest_scan(catalog_txn_t *t, const char *cluster, rtest_scan_t *x, bq_errbuf_t *e)
{
    x->last = calloc(1, sizeof *x->last);
    x->ok = calloc(1, sizeof *x->ok);
    if (!x->last || !x->ok)
        return bq_fail(e, BQ_E_NOMEM, "out of memory");
    int rc = catalog_rtest_each(t, cluster, rtest_scan_visit, x, e);
    if (rc > 0)
        rc = 0;
    if (rc == 0 && x->err)
        rc = bq_fail(e, x->err, "out of memory listing restore tests");
    if (rc == 0 && x->seen > x->n) { /* unring: oldest first */
        size_t start = (size_t)(x->seen % RTESTS_LIST_MAX);
        bq_restore_test_t *o = malloc(x->n * sizeof *o);
        if (!o)
            return bq_fail(e, BQ_E_NOMEM, "out of memory");
        for (size_t i = 0; i < x->n; i++)
            o[i] = x->rows[(start + i) % x->n];
        free(x->rows);
        x->rows = o;
    }
    return rc;
}

static void rtest_scan_free(rtest_scan_t *x)
{
    free(x->last);
    free(x->ok);
    free(x->rows);
}

/* restore_test_max_age, or two periods of restore_test_schedule (0: no limit). */
static int64_t rtest_max_age(const bq_cfg_cluster_t *cl)
{
    if (cl->restore_test_max_age_ms)
        return cl->restore_test_max_age_ms;
    schedule_t s;
    char why[128];
    if (cl->restore_test_schedule[0] &&
        schedule_parse(cl->restore_test_schedule, "", &s, why, sizeof why) == 0)
        return 2 * (s.kind == SCHEDULE_INTERVAL ? s.interval_ms : 86400000LL);
    return 0;
}

/* The newest complete segment of the cluster's highest timeline in the WAL index ("" = none),
 * the LSN where it ends, and when the newest file was archived. */
static void rtest_wal_tail(catalog_txn_t *t, const char *cluster, char *name, size_t len,
                           uint64_t *end_lsn, int64_t *newest_ms)
{
    bq_wal_timeline_t *tl;
    size_t ntl;
    name[0] = '\0';
    *end_lsn = 0;
    wal_timelines(t, cluster, &tl, &ntl, NULL, 0, newest_ms);
    for (size_t i = ntl; i-- > 0;) {
        uint32_t tli, hi, lo;
        if (!tl[i].last[0] || bq_wal_segment_parse(tl[i].last, &tli, &hi, &lo) != 0)
            continue;
        uint64_t seg = tl[i].segments ? tl[i].bytes / tl[i].segments : 0;
        if (seg < (1u << 20) || seg > (1u << 30) || (seg & (seg - 1)))
            seg = 16u << 20;
        uint64_t segno = (uint64_t)hi * (0x100000000ULL / seg) + lo;
        *end_lsn = (segno + 1) * seg;
        snprintf(name, len, "%s", tl[i].last);
        break;
    }
    free(tl);
}

/* The predicted recovery time of a restore of cluster now (its newest DONE backup and the WAL
 * after it), from the last passed test; 0 when unknown. */
static int64_t rtest_predict_now(coord_t *c, catalog_txn_t *t, const char *cluster,
                                 const bq_restore_test_t *ok, char *detail, size_t len)
{
    if (detail && len)
        detail[0] = '\0';
    if (!ok)
        return 0;
    backup_vec_t v;
    bq_errbuf_t e;
    if (backups_load(t, cluster, &v, &e) != 0)
        return 0;
    const bq_backup_t *b = NULL;
    for (size_t i = v.n; i-- > 0 && !b;)
        if (v.b[i].state == BQ_BACKUP_DONE)
            b = &v.b[i];
    int64_t ms = 0;
    if (b) {
        char name[BQ_WAL_FILE_MAX];
        uint64_t end = 0;
        rtest_wal_tail(t, cluster, name, sizeof name, &end, NULL);
        for (size_t i = 0; i < c->njobs; i++) /* a streaming cluster replays its spool too */
            if (c->jobs[i].type == BQ_JOB_WAL_STREAM && !bq_job_state_terminal(c->jobs[i].state) &&
                strcmp(c->jobs[i].cluster, cluster) == 0) {
                static bq_job_t j;
                if (catalog_job_get(t, c->jobs[i].id, &j, &e) == 0 && j.progress_done > end)
                    end = j.progress_done;
            }
        uint64_t wal = end > b->stop_lsn ? end - b->stop_lsn : 0;
        ms = rtest_predict(ok, b->data_bytes, wal, detail, len);
    }
    free(v.b);
    return ms;
}

/* A cluster's restore-test fields of status and metrics. */
static void cluster_rt_status(coord_t *c, catalog_txn_t *t, bq_cluster_t *cl)
{
    const bq_cfg_cluster_t *cfg = bq_coord_config_cluster(&c->cfg, cl->name);
    rtest_scan_t x = {0};
    bq_errbuf_t e;
    if (rtest_scan(t, cl->name, &x, &e) == 0) {
        if (x.has_last) {
            cl->rt_last_ms = x.last->finished_ms;
            cl->rt_last_ok = x.last->ok;
            snprintf(cl->rt_last_backup, sizeof cl->rt_last_backup, "%s", x.last->backup_id);
            snprintf(cl->rt_last_error, sizeof cl->rt_last_error, "%s", x.last->error);
        }
        if (x.has_ok) {
            cl->rt_ok_ms = x.ok->finished_ms;
            snprintf(cl->rt_ok_backup, sizeof cl->rt_ok_backup, "%s", x.ok->backup_id);
            cl->rt_ok_rto_ms = x.ok->rto_ms;
            cl->rt_predicted_ms = rtest_predict_now(c, t, cl->name, x.ok, cl->rt_predicted_detail,
                                                    sizeof cl->rt_predicted_detail);
        }
        char detail[BQ_DETAIL_MAX];
        int sev = rtest_item(x.has_last ? x.last : NULL, x.has_ok ? x.ok : NULL,
                             cfg ? rtest_max_age(cfg) : 0, bq_wall_ms(), detail, sizeof detail);
        cl->rt_severity = sev < 0 ? BQ_SEV_OK : sev;
    }
    rtest_scan_free(&x);
}

/* check's "restore test" item of a cluster (none when never tested and no age applies). */
static void check_rt_item(coord_t *c, catalog_txn_t *t, const bq_cfg_cluster_t *cl,
                          bq_check_result_t *r)
{
    rtest_scan_t x = {0};
    bq_errbuf_t e;
    if (rtest_scan(t, cl->name, &x, &e) == 0) {
        char detail[BQ_DETAIL_MAX];
        int sev = rtest_item(x.has_last ? x.last : NULL, x.has_ok ? x.ok : NULL, rtest_max_age(cl),
                             bq_wall_ms(), detail, sizeof detail);
        if (sev >= 0) {
            check_item(r, "restore test", sev == BQ_SEV_OK, "%s", detail);
            if (sev != BQ_SEV_OK)
                r->items[r->nitems - 1].severity = sev;
        }
    }
    rtest_scan_free(&x);
}

static void rtest_target_text(const bq_recovery_t *rec, char *buf, size_t len)
{
    if (!rec->kind[0])
        snprintf(buf, len, "latest WAL");
    else if (strcmp(rec->kind, "immediate") == 0)
        snprintf(buf, len, "immediate (consistency)");
    else
        snprintf(buf, len, "%s %s", rec->kind, rec->value);
}

/* A known worker of site reported a scratch directory. */
static int site_has_scratch(const coord_t *c, const char *site)
{
    for (size_t i = 0; i < c->nworkers; i++)
        if (strcmp(c->workers[i].rec.site, site) == 0 && c->workers[i].rec.scratch_total > 0)
            return 1;
    return 0;
}

/* Queue a restore test of cluster cl: backup q->backup_id ("" or latest: the newest DONE),
 * to q->recovery's target (none: the end of the archive); a drill picks a random time inside
 * the recovery window and the newest backup before it. The reply's rtests[0] says what was
 * queued. Reads and writes in the batch's transaction. */
static int rtest_create(coord_t *c, const bq_cfg_cluster_t *cl, const char *kind,
                        const bq_msg_cli_request_t *q, bq_msg_cli_reply_t *r, bq_errbuf_t *e)
{
    catalog_txn_t *t = wtxn(c);
    if (!t)
        return bq_fail(e, c->batch_failed, "%s", c->batch_err.msg);
    int drill = strcmp(kind, "drill") == 0;
    const char *want = q ? q->backup_id : "";
    if (!want[0])
        want = "latest";
    if (q && q->from_site[0] && !coord_site_known(c, q->from_site))
        return bq_fail(e, BQ_E_NOTFOUND, "no site %s in the coordinator's config", q->from_site);
    /* the test runs next to the store it reads: at --from-site when a worker there has
     * scratch (a copy tested at its own site), else at the cluster's site */
    const char *run_site = q && q->from_site[0] && site_has_scratch(c, q->from_site)
                               ? q->from_site : cl->site;
    if (!site_has_scratch(c, run_site))
        return bq_fail(e, BQ_E_NOWORKER, "no worker of site %s has reported a scratch directory "
                       "([worker] scratch), where restore tests of cluster %s run", run_site,
                       cl->name);
    static bq_job_t j;
    memset(&j, 0, sizeof j);
    j.recovery.enabled = 1;
    snprintf(j.recovery.tli, sizeof j.recovery.tli, "latest");
    snprintf(j.recovery.action, sizeof j.recovery.action, "promote");
    if (q && !drill && q->recovery.kind[0]) {
        if (strcmp(q->recovery.kind, "time") != 0 && strcmp(q->recovery.kind, "immediate") != 0)
            return bq_fail(e, BQ_E_USAGE, "a restore test takes --target-time or "
                           "--target-immediate, not a %s target", q->recovery.kind);
        snprintf(j.recovery.kind, sizeof j.recovery.kind, "%s", q->recovery.kind);
        snprintf(j.recovery.value, sizeof j.recovery.value, "%s", q->recovery.value);
        j.recovery.time_ms = q->recovery.time_ms;
        char why[BQ_DETAIL_MAX];
        if (bq_recovery_valid(&j.recovery, why, sizeof why) != 0)
            return bq_fail(e, BQ_E_USAGE, "%s", why);
    }
    backup_vec_t v;
    int rc = backups_load(t, cl->name, &v, e);
    if (rc)
        return rc;
    const bq_backup_t *b = NULL;
    if (drill) {
        const bq_backup_t *oldest = NULL;
        for (size_t i = 0; i < v.n && !oldest; i++)
            if (v.b[i].state == BQ_BACKUP_DONE)
                oldest = &v.b[i];
        char name[BQ_WAL_FILE_MAX];
        uint64_t end;
        int64_t newest_ms = 0;
        rtest_wal_tail(t, cl->name, name, sizeof name, &end, &newest_ms);
        int64_t now = bq_wall_ms(), lo = oldest ? oldest->stop_ms + 1000 : 0;
        int64_t hi = newest_ms < now ? newest_ms : now;
        if (!oldest || hi <= lo) {
            free(v.b);
            return bq_fail(e, BQ_E_STATE, "cluster %s has no recovery window to drill in yet: %s",
                           cl->name, !oldest ? "no DONE backup" : "no WAL archived after its "
                           "oldest DONE backup");
        }
        uint64_t rnd = 0;
        if (getrandom(&rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd)
            rnd = (uint64_t)now * 0x9E3779B97F4A7C15ULL;
        int64_t target = rtest_drill_time(lo, hi, rnd);
        time_t sec = (time_t)(target / 1000);
        struct tm tm;
        gmtime_r(&sec, &tm);
        char ts[40];
        strftime(ts, sizeof ts, "%Y-%m-%d %H:%M:%S", &tm);
        snprintf(j.recovery.kind, sizeof j.recovery.kind, "time");
        snprintf(j.recovery.value, sizeof j.recovery.value, "%s.%03d+00", ts, (int)(target % 1000));
        j.recovery.time_ms = target;
        for (size_t i = v.n; i-- > 0 && !b;)
            if (v.b[i].state == BQ_BACKUP_DONE && pitr_backup_before(&v.b[i], &j.recovery))
                b = &v.b[i];
    } else if (strcmp(want, "latest") == 0) {
        for (size_t i = v.n; i-- > 0 && !b;)
            if (v.b[i].state == BQ_BACKUP_DONE)
                b = &v.b[i];
    } else {
        for (size_t i = 0; i < v.n && !b; i++)
            if (strcmp(v.b[i].id, want) == 0)
                b = &v.b[i];
        if (!b) {
            free(v.b);
            return bq_fail(e, BQ_E_NOTFOUND, "no backup %s of cluster %s (see: barque "
                           "list-backups %s)", want, cl->name, cl->name);
        }
        if (b->state != BQ_BACKUP_DONE && b->state != BQ_BACKUP_WAITING_FOR_WALS) {
            rc = bq_fail(e, BQ_E_STATE, "could not test backup %s of cluster %s: it is %s, not "
                         "DONE", b->id, cl->name, bq_backup_state_name(b->state));
            free(v.b);
            return rc;
        }
    }
    if (!b) {
        free(v.b);
        return bq_fail(e, BQ_E_NOTFOUND, "cluster %s has no DONE backup%s to test (see: barque "
                       "list-backups %s)", cl->name, drill ? " before the drill's target" : "",
                       cl->name);
    }
    if (j.recovery.kind[0] && strcmp(j.recovery.kind, "time") == 0) {
        bq_errbuf_t pe;
        if ((rc = pitr_check(t, b, &j.recovery, cl->wal == BQ_WAL_STREAM, bq_wall_ms(), &pe)) != 0) {
            bq_fail(e, rc, "could not test cluster %s from backup %s to %s: %s", cl->name, b->id,
                    j.recovery.value, pe.msg);
            free(v.b);
            return rc;
        }
    }
    if (q && q->from_site[0]) {
        if (!stores_list_at(c, b->stores, q->from_site)) {
            rc = bq_fail(e, BQ_E_NOTFOUND, "no store at site %s holds backup %s of cluster %s "
                         "(its stores: %s)", q->from_site, b->id, cl->name,
                         b->stores[0] ? b->stores : "none");
            free(v.b);
            return rc;
        }
        snprintf(j.rt.from_site, sizeof j.rt.from_site, "%s", q->from_site);
    }
    j.type = BQ_JOB_RESTORE_TEST;
    snprintf(j.cluster, sizeof j.cluster, "%s", cl->name);
    snprintf(j.site, sizeof j.site, "%s", run_site);
    snprintf(j.backup_id, sizeof j.backup_id, "%s", b->id);
    snprintf(j.rt.kind, sizeof j.rt.kind, "%s", kind);
    free(v.b);
    uint64_t id = 0;
    if ((rc = job_insert(c, &j, &id, e)) != 0)
        return rc;
    r->job_id = id;
    if (!(r->rtests = calloc(1, sizeof *r->rtests)))
        return bq_fail(e, BQ_E_NOMEM, "out of memory");
    r->nrtests = 1;
    bq_restore_test_t *o = &r->rtests[0];
    snprintf(o->cluster, sizeof o->cluster, "%s", cl->name);
    o->job_id = id;
    snprintf(o->backup_id, sizeof o->backup_id, "%s", j.backup_id);
    snprintf(o->kind, sizeof o->kind, "%s", kind);
    snprintf(o->site, sizeof o->site, "%s", cl->site);
    rtest_target_text(&j.recovery, o->target, sizeof o->target);
    bq_info(COMP, id, "%s restore test of backup %s of cluster %s queued (target: %s)", kind,
            j.backup_id, cl->name, o->target);
    return 0;
}

/* "dbname" of a conninfo string of key=value pairs ("" = none). */
static void conninfo_dbname(const char *ci, char *out, size_t len)
{
    out[0] = '\0';
    for (const char *p = ci; p && *p;) {
        while (*p == ' ' || *p == '\t')
            p++;
        const char *eq = strchr(p, '=');
        if (!eq)
            return;
        size_t kl = (size_t)(eq - p);
        while (kl && (p[kl - 1] == ' ' || p[kl - 1] == '\t'))
            kl--;
        const char *v = eq + 1;
        while (*v == ' ')
            v++;
        size_t vl = strcspn(v, " \t");
        if (kl == 6 && strncmp(p, "dbname", 6) == 0 && *v != '\'' && vl < len) {
            memcpy(out, v, vl);
            out[vl] = '\0';
            return;
        }
        p = v + vl;
    }
}

/* A restore-test job is being offered (j, ASSIGNED in this batch): the source store (its
 * worker's own, or a holder's at rt.from_site or anywhere when it lacks the backup), and the
 * spec from the backup and the cluster's config, recorded in the job. */
static int rtest_offer(coord_t *c, bq_job_t *j, bq_errbuf_t *e)
{
    const bq_cfg_cluster_t *cl = bq_coord_config_cluster(&c->cfg, j->cluster);
    if (!cl)
        return bq_fail(e, BQ_E_NOTFOUND, "cluster %s is no longer in the config", j->cluster);
    static bq_backup_t b;
    int rc = offer_source(c, j, j->rt.from_site[0] ? j->rt.from_site : NULL, &b, e);
    if (rc != 0)
        return rc;
    catalog_txn_t *t = wtxn(c);
    bq_rt_spec_t *s = &j->rt;
    s->amcheck = cl->restore_test_amcheck;
    s->timeout_ms = cl->restore_test_timeout_ms;
    s->system_identifier = b.system_identifier;
    s->start_lsn = b.start_lsn;
    s->stop_lsn = b.stop_lsn;
    s->data_bytes = b.data_bytes;
    s->pg_version = b.pg_version;
    conninfo_dbname(cl->conninfo, s->dbname, sizeof s->dbname);
    s->sql[0] = s->sql_file[0] = '\0';
    if (cl->restore_test_sql[0]) {
        char *text = NULL;
        size_t len = 0;
        bq_errbuf_t fe;
        if (bq_file_read_small(cl->restore_test_sql, sizeof s->sql - 1, &text, &len, &fe) != 0)
            return bq_fail(e, BQ_E_CONFIG, "restore_test_sql of cluster %s: %s", cl->name, fe.msg);
        if (memchr(text, '\0', len)) {
            free(text);
            return bq_fail(e, BQ_E_CONFIG, "restore_test_sql %s of cluster %s has a NUL byte",
                           cl->restore_test_sql, cl->name);
        }
        memcpy(s->sql, text, len);
        s->sql[len] = '\0';
        free(text);
        snprintf(s->sql_file, sizeof s->sql_file, "%s", cl->restore_test_sql);
    }
    uint64_t end;
    rtest_wal_tail(t, j->cluster, s->wal_end, sizeof s->wal_end, &end, NULL);
    rtest_scan_t x = {.backup_id = NULL};
    if (rtest_scan(t, j->cluster, &x, e) == 0 && x.has_ok)
        s->predicted_ms = rtest_predict_now(c, t, j->cluster, x.ok, NULL, 0);
    rtest_scan_free(&x);
    return offer_record(c, j, e);
}

/* A restore-test job ended for good: its record in restore_tests (a lost or refused one
 * too, failed with why). */
static void rtest_record(coord_t *c, const bq_job_t *j, const bq_msg_result_t *r,
                         const char *error)
{
    catalog_txn_t *t = wtxn(c);
    if (!t)
        return;
    static bq_restore_test_t rec;
    memset(&rec, 0, sizeof rec);
    if (r && r->has_rtest)
        rec = r->rtest;
    snprintf(rec.cluster, sizeof rec.cluster, "%s", j->cluster);
    rec.job_id = j->id;
    rec.attempt = j->attempt;
    snprintf(rec.backup_id, sizeof rec.backup_id, "%s", j->backup_id);
    snprintf(rec.kind, sizeof rec.kind, "%s", j->rt.kind);
    snprintf(rec.site, sizeof rec.site, "%s", j->site);
    if (j->worker[0])
        snprintf(rec.worker, sizeof rec.worker, "%s", j->worker);
    if (!rec.target[0])
        rtest_target_text(&j->recovery, rec.target, sizeof rec.target);
    rec.ok = rec.ok && j->state == BQ_JOB_SUCCEEDED;
    if (!rec.ok && !rec.error[0])
        snprintf(rec.error, sizeof rec.error, "%s", error && error[0] ? error : "failed");
    if (!rec.started_ms)
        rec.started_ms = j->started_ms ? j->started_ms : j->created_ms;
    if (!rec.finished_ms)
        rec.finished_ms = bq_wall_ms();
    rec.predicted_ms = j->rt.predicted_ms;
    bq_errbuf_t e;
    if (catalog_rtest_put(t, &rec, &e) != 0)
        batch_fail(c, BQ_E_CATALOG, &e);
    else
        bq_log(rec.ok ? BQ_LOG_INFO : BQ_LOG_WARNING, COMP, j->id, "restore test of backup %s of "
               "cluster %s %s: RTO %.1f s (predicted %.1f s)%s%s", rec.backup_id, rec.cluster,
               rec.ok ? "PASSED" : "FAILED", (double)rec.rto_ms / 1000,
               (double)rec.predicted_ms / 1000, rec.ok ? "" : ": ", rec.ok ? "" : rec.error);
}

/* The restore-test schedule of every cluster with restore_test_schedule: due slots queue a
 * test of the newest DONE backup (a slot with no backup to test is logged and passed). */
static void rtest_schedule_run(coord_t *c)
{
    int64_t now = bq_wall_ms();
    for (size_t i = 0; i < c->cfg.nclusters && !c->batch_failed; i++) {
        const bq_cfg_cluster_t *cl = &c->cfg.clusters[i];
        schedule_t s;
        char why[128];
        if (!cl->restore_test_schedule[0] ||
            schedule_parse(cl->restore_test_schedule, "", &s, why, sizeof why) != 0)
            continue;
        catalog_txn_t *t = wtxn(c);
        if (!t)
            return;
        schedule_state_t st;
        memset(&st, 0, sizeof st);
        bq_errbuf_t e;
        catalog_sched_get(t, "rtsched", cl->name, &st.last_slot_ms, &e);
        for (size_t k = 0; k < c->njobs; k++)
            if (c->jobs[k].type == BQ_JOB_RESTORE_TEST &&
                !bq_job_state_terminal(c->jobs[k].state) && strcmp(c->jobs[k].cluster, cl->name) == 0)
                st.active = 1;
        if (!st.last_slot_ms) { /* first sight: the newest test counts as the last run */
            rtest_scan_t x = {0};
            if (rtest_scan(t, cl->name, &x, &e) == 0 && x.has_last)
                st.newest_backup_ms = x.last->started_ms;
            rtest_scan_free(&x);
        }
        schedule_decision_t d;
        schedule_decide(&s, schedule_offset(&s, cl->name), &st, now, &d);
        if (d.due) { /* nothing to test yet: due again as soon as a backup is DONE */
            backup_vec_t v;
            int done = 0;
            if (backups_load(t, cl->name, &v, &e) == 0) {
                for (size_t k = 0; k < v.n && !done; k++)
                    done = v.b[k].state == BQ_BACKUP_DONE;
                free(v.b);
            }
            if (!done)
                continue;
        }
        if (d.due) {
            bq_msg_cli_reply_t rr;
            memset(&rr, 0, sizeof rr);
            if (rtest_create(c, cl, "scheduled", NULL, &rr, &e) != 0) {
                if (c->batch_failed)
                    return;
                bq_warn(COMP, 0, "scheduled restore test of cluster %s not queued: %s", cl->name,
                        e.msg);
            }
            free(rr.rtests);
        }
        if ((d.due || d.adopt) && catalog_sched_put(t, "rtsched", cl->name, d.slot_ms, &e) != 0)
            batch_fail(c, BQ_E_CATALOG, &e);
    }
}

static void on_cli(coord_t *c, const bq_peer_t *from, bq_msg_t *m)
{
    char op[BQ_NAME_MAX];
    const bq_msg_cli_request_t *q = &m->u.cli_req;
    if (!user_is(from, "operator", op, sizeof op)) {
        cli_reply_error(c, from, m->seq, BQ_E_AUTH, "only operator keys may use the CLI");
        return;
    }
    bq_msg_t rm = {.type = BQ_MSG_CLI_REPLY, .seq = m->seq};
    bq_msg_cli_reply_t *r = &rm.u.cli_reply;
    bq_errbuf_t e = {{0}};
    int rc = 0;
    catalog_txn_t *rt = NULL;
    list_ctx_t l = {.r = r, .all = q->all};

    if (strcmp(q->verb, "status") == 0 || strcmp(q->verb, "workers") == 0 ||
        strcmp(q->verb, "clusters") == 0 || strcmp(q->verb, "jobs") == 0) {
        int status = strcmp(q->verb, "status") == 0;
        rc = catalog_txn_begin(c->cat, 0, &rt, &e);
        if (rc == 0 && (status || strcmp(q->verb, "workers") == 0))
            reply_workers(c, r);
        if (rc == 0 && (status || strcmp(q->verb, "clusters") == 0)) {
            l.cap = 0;
            rc = catalog_cluster_each(rt, list_cluster, &l, &e);
            l.cap = 0;
            if (rc == 0)
                rc = catalog_site_each(rt, list_site, &l, &e);
        }
        for (size_t i = 0; rc == 0 && status && i < r->nclusters; i++) {
            cluster_wal_status(c, rt, &r->clusters[i]);
            cluster_rt_status(c, rt, &r->clusters[i]);
            cluster_geo_status(c, rt, &r->clusters[i]);
        }
        for (size_t i = 0; i < c->njobs; i++) {
            r->jobs_queued += c->jobs[i].state == BQ_JOB_QUEUED;
            r->jobs_running += c->jobs[i].state == BQ_JOB_ASSIGNED || c->jobs[i].state == BQ_JOB_RUNNING;
        }
        if (rc == 0 && (status || strcmp(q->verb, "jobs") == 0)) {
            l.cap = 0;
            rc = catalog_job_each(rt, list_job, &l, &e);
            list_jobs_unring(&l);
        }
        if (rc == 0 && l.err)
            rc = bq_fail(&e, l.err, "out of memory listing");
    } else if (strcmp(q->verb, "job-show") == 0) {
        rc = catalog_txn_begin(c->cat, 0, &rt, &e);
        if (rc == 0) {
            r->jobs = calloc(1, sizeof *r->jobs);
            rc = r->jobs ? catalog_job_get(rt, q->job_id, &r->jobs[0], &e) : BQ_E_NOMEM;
            if (rc == 0) {
                r->njobs = 1;
                r->jobs[0].conninfo[0] = '\0';
            } else if (rc == BQ_E_NOTFOUND) {
                uint64_t next = 0;
                char h[32];
                bq_errbuf_t ne;
                if (catalog_job_next_id(rt, &next, &ne) == 0 && q->job_id && q->job_id < next)
                    bq_fail(&e, rc, "no job %llu: it ended more than job_history %s ago and "
                            "its record was removed", (unsigned long long)q->job_id,
                            bq_duration_text(c->cfg.job_history_ms, h, sizeof h));
                else
                    bq_fail(&e, rc, "no job %llu", (unsigned long long)q->job_id);
            }
        }
    } else if (strcmp(q->verb, "job-cancel") == 0) {
        job_state_t *s = job_find(c, q->job_id);
        if (!s) {
            rc = bq_fail(&e, BQ_E_STATE, "job %llu is not active (finished or unknown)",
                         (unsigned long long)q->job_id);
        } else if (s->state == BQ_JOB_QUEUED) {
            job_change_t ch = {.state = BQ_JOB_CANCELLED, .error = "cancelled by operator"};
            rc = job_edit(c, s->id, job_apply, &ch, NULL);
            if (rc == 0) {
                s->state = BQ_JOB_CANCELLED;
                bq_info(COMP, s->id, "cancelled by operator %s while queued", op);
            }
        } else {
            job_change_t ch = {.cancel = 1};
            rc = job_edit(c, s->id, job_apply, &ch, NULL);
            if (rc == 0 && s->worker >= 0) {
                s->cancel_requested = 1;
                bq_msg_t cm = {.type = BQ_MSG_JOB_CANCEL, .seq = ++c->seq};
                cm.u.ref.job_id = s->id;
                cm.u.ref.attempt = s->attempt;
                out_push(c, &c->workers[s->worker].peer, &cm, 0);
                bq_info(COMP, s->id, "cancel requested by operator %s; asked worker %s to stop",
                        op, c->workers[s->worker].rec.name);
            }
        }
        if (rc == 0)
            r->job_id = q->job_id;
    } else if (strcmp(q->verb, "backup") == 0) {
        const bq_cfg_cluster_t *cl = q->cluster[0] ? bq_coord_config_cluster(&c->cfg, q->cluster) : NULL;
        if (!q->cluster[0])
            rc = bq_fail(&e, BQ_E_USAGE, "backup needs a cluster");
        else if (!cl)
            rc = bq_fail(&e, BQ_E_NOTFOUND, "could not back up cluster %s: no cluster %s in the "
                         "coordinator's config", q->cluster, q->cluster);
        else if (q->checkpoint[0] && strcmp(q->checkpoint, "fast") != 0 &&
                 strcmp(q->checkpoint, "spread") != 0)
            rc = bq_fail(&e, BQ_E_USAGE, "could not back up cluster %s: checkpoint must be fast "
                         "or spread, not %s", cl->name, q->checkpoint);
        else if (!coord_site_known(c, cl->site))
            rc = bq_fail(&e, BQ_E_NOTFOUND, "could not back up cluster %s: no site %s in the "
                         "coordinator's config", cl->name, cl->site);
        else
            rc = job_create(c, BQ_JOB_BACKUP, cl->name, cl->site, 0,
                            q->checkpoint[0] ? q->checkpoint : "fast", &r->job_id, &e);
        if (rc == 0)
            bq_info(COMP, r->job_id, "backup of cluster %s requested by operator %s (%s "
                    "checkpoint)", cl->name, op, q->checkpoint[0] ? q->checkpoint : "fast");
    } else if (strcmp(q->verb, "list-backups") == 0) {
        backup_list_t bl = {.r = r};
        rc = catalog_txn_begin(c->cat, 0, &rt, &e);
        if (rc == 0)
            rc = cli_backup_cluster(c, rt, "list-backups", q->cluster, &e);
        if (rc == 0)
            rc = catalog_backup_each(rt, q->cluster, list_backup, &bl, &e);
        if (rc == 0 && bl.err)
            rc = bq_fail(&e, bl.err, "out of memory listing the backups of cluster %s",
                         q->cluster);
        else if (rc > 0)
            rc = 0;
        if (rc == 0)
            list_backups_unring(&bl);
        if (rc == 0)
            retention_fill(c, rt, q->cluster, r->backups, r->nbackups);
    } else if (strcmp(q->verb, "keep") == 0) {
        rc = catalog_txn_begin(c->cat, 0, &rt, &e);
        if (rc == 0)
            rc = cli_backup_cluster(c, rt, q->verb, q->cluster, &e);
        catalog_txn_abort(&rt);
        if (rc == 0)
            rc = keep_apply(c, q, r, &e);
        if (rc == 0 && strcmp(q->keep, "status") != 0)
            bq_info(COMP, 0, "keep %s of backup %s of cluster %s by operator %s", q->keep,
                    q->backup_id, q->cluster, op);
    } else if (strcmp(q->verb, "metrics") == 0) {
        rc = catalog_txn_begin(c->cat, 0, &rt, &e);
        if (rc == 0)
            reply_workers(c, r);
        if (rc == 0) {
            l.cap = 0;
            rc = catalog_cluster_each(rt, list_cluster, &l, &e);
        }
        for (size_t i = 0; rc == 0 && i < r->nclusters; i++) {
            cluster_wal_status(c, rt, &r->clusters[i]);
            cluster_rt_status(c, rt, &r->clusters[i]);
            cluster_geo_status(c, rt, &r->clusters[i]);
        }
        check_scan_t cs = {r->clusters, r->nclusters};
        if (rc == 0)
            rc = catalog_job_each(rt, check_visit, &cs, &e);
        backup_vec_t bv;
        memset(&bv, 0, sizeof bv);
        for (size_t i = 0; rc == 0 && i < r->nclusters; i++)
            if ((rc = catalog_backup_each(rt, r->clusters[i].name, metrics_backup_visit, &bv, &e)) > 0)
                rc = 0;
        if (rc == 0 && bv.err)
            rc = bq_fail(&e, bv.err, "out of memory");
        r->backups = bv.b;
        r->nbackups = bv.n;
        if (rc == 0 && l.err)
            rc = bq_fail(&e, l.err, "out of memory listing");
    } else if (strcmp(q->verb, "schedule") == 0) {
        rc = catalog_txn_begin(c->cat, 0, &rt, &e);
        if (rc == 0)
            rc = schedule_reply(c, rt, q->cluster, r, &e);
    } else if (strcmp(q->verb, "list-wal") == 0) {
        wal_list_t wl = {.err = 0};
        wal_summary_init(&wl.sum);
        rc = catalog_txn_begin(c->cat, 0, &rt, &e);
        if (rc == 0)
            rc = cli_cluster_known(c, rt, "list-wal", q->cluster, 1, &e);
        if (rc == 0 && (rc = catalog_wal_each(rt, q->cluster, wal_list_visit, &wl, &e)) > 0)
            rc = bq_fail(&e, wl.err, "could not list the WAL of cluster %s: %s", q->cluster,
                         wl.why.msg);
        if (rc == 0)
            wal_summary_end(&wl.sum, &r->timelines, &r->ntimelines);
        wal_summary_clear(&wl.sum);
    } else if (strcmp(q->verb, "list-files-page") == 0) {
        listing_t *lp = listing_find(c, q->job_id);
        if (lp) {
            r->files = lp->files;
            r->nfiles = lp->nfiles;
            r->files_total = lp->total;
            r->files_offset = lp->offset;
            lp->files = NULL;
            lp->nfiles = 0;
            listing_drop(c, lp);
        } else {
            static bq_job_t lj;
            rc = catalog_txn_begin(c->cat, 0, &rt, &e);
            if (rc == 0 && (rc = catalog_job_get(rt, q->job_id, &lj, &e)) == BQ_E_NOTFOUND)
                bq_fail(&e, rc, "no job %llu", (unsigned long long)q->job_id);
            else if (rc == 0 && lj.type != BQ_JOB_LIST_FILES)
                rc = bq_fail(&e, BQ_E_USAGE, "job %llu is a %s job, not list-files",
                             (unsigned long long)q->job_id, bq_job_type_name(lj.type));
            else if (rc == 0 && lj.state != BQ_JOB_SUCCEEDED)
                rc = bq_fail(&e, BQ_E_STATE, "list-files job %llu is %s%s%s",
                             (unsigned long long)q->job_id, bq_job_state_name(lj.state),
                             lj.error[0] ? ": " : "", lj.error);
            else if (rc == 0)
                rc = bq_fail(&e, BQ_E_NOTFOUND, "the file list of job %llu is no longer held by "
                             "the coordinator (fetched already, not fetched within %d s, or the "
                             "coordinator restarted): run list-files again",
                             (unsigned long long)q->job_id, LISTING_TTL_MS / 1000);
        }
    } else if (strcmp(q->verb, "delete") == 0) {
        static bq_backup_t db;
        rc = catalog_txn_begin(c->cat, 0, &rt, &e);
        if (rc == 0)
            rc = cli_backup_cluster(c, rt, q->verb, q->cluster, &e);
        if (rc == 0 && !bq_backup_id_valid(q->backup_id))
            rc = bq_fail(&e, BQ_E_USAGE, "delete needs a backup id (YYYYMMDDTHHMMSS), not %s",
                         q->backup_id[0] ? q->backup_id : "\"\"");
        if (rc == 0 && (rc = catalog_backup_get(rt, q->cluster, q->backup_id, &db, &e)) ==
                           BQ_E_NOTFOUND)
            bq_fail(&e, rc, "could not delete backup %s of cluster %s: there is no such backup "
                    "(see: barque list-backups %s)", q->backup_id, q->cluster, q->cluster);
        catalog_txn_abort(&rt); /* the changes are written in the batch's own transaction */
        if (rc == 0)
            rc = delete_create(c, &db, r, &e);
        if (rc == 0)
            bq_info(COMP, r->job_id, "delete of backup %s (%s) of cluster %s requested by "
                    "operator %s: %s", db.id, bq_backup_state_name(db.state), q->cluster, op,
                    r->njobs ? "delete jobs queued" : "no store holds it, record removed");
    } else if (strcmp(q->verb, "show-backup") == 0 || strcmp(q->verb, "recover") == 0 ||
               strcmp(q->verb, "list-files") == 0) {
        int recover = strcmp(q->verb, "recover") == 0;
        int list_files = strcmp(q->verb, "list-files") == 0;
        int oldest = strcmp(q->backup_id, "oldest") == 0;
        int latest = strcmp(q->backup_id, "latest") == 0;
        int autoid = recover && strcmp(q->backup_id, "auto") == 0;
        char why[BQ_TEXT_MAX / 2];
        rc = catalog_txn_begin(c->cat, 0, &rt, &e);
        if (rc == 0)
            rc = cli_backup_cluster(c, rt, q->verb, q->cluster, &e);
        if (rc == 0 && !oldest && !latest && !autoid && !bq_backup_id_valid(q->backup_id))
            rc = bq_fail(&e, BQ_E_USAGE, "%s is not a backup id (YYYYMMDDTHHMMSS, latest or "
                         "oldest)", q->backup_id[0] ? q->backup_id : "\"\"");
        if (rc == 0 && recover && q->recovery.enabled &&
            bq_recovery_valid(&q->recovery, why, sizeof why) != 0)
            rc = bq_fail(&e, BQ_E_USAGE, "%s", why);
        if (rc == 0 && autoid && !q->recovery.kind[0])
            rc = bq_fail(&e, BQ_E_USAGE, "recover auto needs a recovery target");
        if (rc == 0 && !(r->backups = calloc(1, sizeof *r->backups)))
            rc = bq_fail(&e, BQ_E_NOMEM, "out of memory");
        if (rc == 0 && (oldest || latest || autoid)) {
            backup_list_t bl = {.r = r, .want_done = oldest ? 1 : autoid ? 3 : 2,
                                .target = &q->recovery};
            rc = catalog_backup_each(rt, q->cluster, list_backup, &bl, &e);
            if (rc > 0)
                rc = 0;
            if (rc == 0 && !bl.found && autoid)
                rc = bq_fail(&e, BQ_E_NOTFOUND, "could not recover cluster %s to %s %s: no DONE "
                             "backup ends before it (see: barque list-backups %s)", q->cluster,
                             q->recovery.kind, q->recovery.value, q->cluster);
            else if (rc == 0 && !bl.found)
                rc = bq_fail(&e, BQ_E_NOTFOUND, "cluster %s has no DONE backup, so no %s one "
                             "(see: barque list-backups %s)", q->cluster, q->backup_id,
                             q->cluster);
        } else if (rc == 0) {
            rc = catalog_backup_get(rt, q->cluster, q->backup_id, &r->backups[0], &e);
            if (rc == BQ_E_NOTFOUND)
                bq_fail(&e, rc, "no backup %s of cluster %s (see: barque list-backups %s)",
                        q->backup_id, q->cluster, q->cluster);
        }
        if (rc == 0)
            r->nbackups = 1;
        if (rc == 0 && !recover && !list_files) {
            retention_fill(c, rt, q->cluster, r->backups, r->nbackups);
            rtest_scan_t x = {.backup_id = r->backups[0].id};
            if (rtest_scan(rt, q->cluster, &x, &e) == 0 && x.has_last &&
                (r->rtests = calloc(1, sizeof *r->rtests)) != NULL) {
                r->rtests[0] = *x.last;
                r->nrtests = 1;
            }
            rtest_scan_free(&x);
        }
        if (rc == 0 && recover && q->recovery.enabled) {
            const bq_cfg_cluster_t *cl = bq_coord_config_cluster(&c->cfg, q->cluster);
            bq_errbuf_t pe;
            if ((rc = pitr_check(rt, &r->backups[0], &q->recovery, cl && cl->wal == BQ_WAL_STREAM,
                                 bq_wall_ms(), &pe)) != 0)
                bq_fail(&e, rc, "could not recover cluster %s from backup %s: %s", q->cluster,
                        r->backups[0].id, pe.msg);
        }
        if (rc == 0 && recover) {
            catalog_txn_abort(&rt); /* the job is written in the batch's own transaction */
            rc = recover_create(c, q, &r->backups[0], &r->job_id, &e);
            if (rc == 0)
                bq_info(COMP, r->job_id, "restore of backup %s of cluster %s to %s on worker %s "
                        "requested by operator %s%s", r->backups[0].id, q->cluster, q->dest,
                        q->worker, op, q->delta ? " (delta)" : "");
        }
        if (rc == 0 && list_files) {
            catalog_txn_abort(&rt);
            rc = list_files_create(c, q, &r->backups[0], &r->job_id, &e);
        }
    } else if (strcmp(q->verb, "replicate") == 0) {
        rc = geo_replicate_create(c, q, r, &e);
        if (rc == 0)
            bq_info(COMP, r->job_id, "copy of backup %s of cluster %s requested by operator %s "
                    "(%zu job%s)", r->backups[0].id, q->cluster, op, r->njobs,
                    r->njobs == 1 ? "" : "s");
    } else if (strcmp(q->verb, "restore-test") == 0 || strcmp(q->verb, "drill") == 0) {
        const bq_cfg_cluster_t *cl = bq_coord_config_cluster(&c->cfg, q->cluster);
        int drill = strcmp(q->verb, "drill") == 0;
        if (!cl)
            rc = bq_fail(&e, BQ_E_NOTFOUND, "no cluster %s in the coordinator's config", q->cluster);
        else
            rc = rtest_create(c, cl, drill ? "drill" : "manual", q, r, &e);
        if (rc == 0)
            bq_info(COMP, r->job_id, "%s of cluster %s requested by operator %s", q->verb,
                    q->cluster, op);
    } else if (strcmp(q->verb, "restore-tests") == 0) {
        rc = catalog_txn_begin(c->cat, 0, &rt, &e);
        if (rc == 0)
            rc = cli_backup_cluster(c, rt, q->verb, q->cluster, &e);
        rtest_scan_t x = {.job_id = q->job_id, .collect = 1};
        if (rc == 0)
            rc = rtest_scan(rt, q->cluster, &x, &e);
        if (rc == 0 && q->job_id && !x.n)
            rc = bq_fail(&e, BQ_E_NOTFOUND, "job %" PRIu64 " has no restore test of cluster %s "
                         "recorded (yet)", q->job_id, q->cluster);
        if (rc == 0) {
            r->rtests = x.rows;
            r->nrtests = x.n;
            x.rows = NULL;
        }
        rtest_scan_free(&x);
    } else if (strcmp(q->verb, "switch-wal") == 0) {
        const bq_cfg_cluster_t *cl = bq_coord_config_cluster(&c->cfg, q->cluster);
        if (!cl) {
            rc = bq_fail(&e, BQ_E_NOTFOUND, "no cluster %s in the coordinator's config", q->cluster);
        } else {
            static bq_job_t j;
            memset(&j, 0, sizeof j);
            j.type = BQ_JOB_SWITCH_WAL;
            snprintf(j.cluster, sizeof j.cluster, "%s", cl->name);
            snprintf(j.site, sizeof j.site, "%s", cl->site);
            j.force = q->force;
            rc = job_insert(c, &j, &r->job_id, &e);
        }
    } else if (strcmp(q->verb, "wal-file") == 0) {
        /* whether WAL file q->wal_file of the cluster is in the WAL index (NOTFOUND if not) */
        if (!bq_coord_config_cluster(&c->cfg, q->cluster))
            rc = bq_fail(&e, BQ_E_NOTFOUND, "no cluster %s in the coordinator's config", q->cluster);
        else if (!bq_wal_name_valid(q->wal_file))
            rc = bq_fail(&e, BQ_E_USAGE, "\"%s\" is not a WAL file name", q->wal_file);
        else if ((rc = catalog_txn_begin(c->cat, 0, &rt, &e)) == 0) {
            bq_wal_file_t w;
            rc = catalog_wal_get(rt, q->cluster, q->wal_file, &w, &e);
        }
    } else if (strcmp(q->verb, "wal-target") == 0 || strcmp(q->verb, "wal-source") == 0 ||
               strcmp(q->verb, "wal-pushed") == 0) {
        /* wal-push and wal-get (cli/wal_cmd.c): which workers to send a WAL file to or fetch
         * it from, and the record of a pushed file in the WAL index */
        const bq_cfg_cluster_t *cl = bq_coord_config_cluster(&c->cfg, q->cluster);
        int target = strcmp(q->verb, "wal-target") == 0;
        if (!cl)
            rc = bq_fail(&e, BQ_E_NOTFOUND, "no cluster %s in the coordinator's config", q->cluster);
        else if (!target && !bq_wal_name_valid(q->wal_file))
            rc = bq_fail(&e, BQ_E_USAGE, "\"%s\" is not a WAL file name", q->wal_file);
        else if (target)
            rc = wal_candidates(c, cl, NULL, NULL, NULL, r, &e);
        else if (strcmp(q->verb, "wal-pushed") == 0) {
            if (!q->worker[0] || !bq_coord_config_worker(&c->cfg, q->worker))
                rc = bq_fail(&e, BQ_E_NOTFOUND, "no worker %s in the coordinator's config",
                             q->worker);
            else if ((rc = wal_record(c, 0, cl->name, q->worker, q->wal_file, q->wal_size, &e)) == 0)
                bq_info(COMP, 0, "cluster %s: WAL file %s pushed by operator %s into the store of "
                        "%s", cl->name, q->wal_file, op, q->worker);
        } else if ((rc = catalog_txn_begin(c->cat, 0, &rt, &e)) == 0) {
            static bq_wal_file_t w;
            rc = catalog_wal_get(rt, cl->name, q->wal_file, &w, &e);
            r->found = rc == 0;
            if (rc == BQ_E_NOTFOUND)
                rc = 0;
            if (rc == 0)
                rc = wal_candidates(c, cl, r->found ? w.stores : NULL,
                                    q->from_site[0] ? q->from_site : NULL,
                                    q->prefer_site[0] ? q->prefer_site : NULL, r, &e);
        }
    } else if (strcmp(q->verb, "check") == 0 || strcmp(q->verb, "sleep") == 0) {
        int check = strcmp(q->verb, "check") == 0;
        const bq_cfg_cluster_t *cl = q->cluster[0] ? bq_coord_config_cluster(&c->cfg, q->cluster) : NULL;
        const char *site = cl ? cl->site : q->site;
        if (q->cluster[0] && !cl)
            rc = bq_fail(&e, BQ_E_NOTFOUND, "no cluster %s in the coordinator's config", q->cluster);
        else if (check && !cl) { /* every cluster of the config */
            r->job_ids = calloc(c->cfg.nclusters ? c->cfg.nclusters : 1, sizeof *r->job_ids);
            r->clusters = calloc(c->cfg.nclusters ? c->cfg.nclusters : 1, sizeof *r->clusters);
            if (!r->job_ids || !r->clusters)
                rc = bq_fail(&e, BQ_E_NOMEM, "out of memory");
            for (size_t k = 0; rc == 0 && k < c->cfg.nclusters; k++) {
                const bq_cfg_cluster_t *ck = &c->cfg.clusters[k];
                rc = job_create(c, BQ_JOB_CHECK, ck->name, ck->site, 0, NULL, &r->job_ids[k], &e);
                snprintf(r->clusters[k].name, sizeof r->clusters[k].name, "%s", ck->name);
                snprintf(r->clusters[k].site, sizeof r->clusters[k].site, "%s", ck->site);
                r->njob_ids = r->nclusters = k + 1;
            }
            fleet_items(c, &r->fleet);
            r->has_fleet = 1;
            site = "";
        } else if (!site[0])
            rc = bq_fail(&e, BQ_E_USAGE, "a job needs a cluster or a site");
        else if (!coord_site_known(c, site))
            rc = bq_fail(&e, BQ_E_NOTFOUND, "no site %s in the coordinator's config", site);
        else if (q->sleep_ms < 0 || q->sleep_ms > 86400000)
            rc = bq_fail(&e, BQ_E_USAGE, "sleep must be 0..86400000 ms");
        else if (q->count > JOBS_CREATE_MAX || (check && q->count > 1))
            rc = bq_fail(&e, BQ_E_USAGE, "count must be 1..%d (and 1 for check)", JOBS_CREATE_MAX);
        for (uint32_t k = 0; rc == 0 && site[0] && k < (q->count ? q->count : 1); k++)
            rc = job_create(c, check ? BQ_JOB_CHECK : BQ_JOB_SLEEP, cl ? cl->name : "", site,
                            q->sleep_ms, NULL, &r->job_id, &e);
        if (rc == 0 && check && cl) {
            fleet_items(c, &r->fleet);
            r->has_fleet = 1;
        }
    } else {
        rc = bq_fail(&e, BQ_E_USAGE, "unknown request %s", q->verb);
    }
    catalog_txn_abort(&rt);
    r->code = rc;
    if (rc)
        snprintf(r->error, sizeof r->error, "%s", e.msg[0] ? e.msg : bq_err_text(rc));
    out_push(c, from, &rm, 1);
}

/* ---- the loop ----------------------------------------------------------------------- */

static void handle(coord_t *c, const bq_peer_t *from, bq_msg_t *m)
{
    switch (m->type) {
    case BQ_MSG_REGISTER:
    case BQ_MSG_HEARTBEAT: on_hello(c, from, m); break;
    case BQ_MSG_JOB_ACCEPT: on_accept(c, from, m); break;
    case BQ_MSG_JOB_PROGRESS: on_progress(c, from, m); break;
    case BQ_MSG_JOB_RESULT: on_result(c, from, m); break;
    case BQ_MSG_CLI_REQUEST: on_cli(c, from, m); break;
    case BQ_MSG_ERROR:
        bq_warn(COMP, 0, "peer %s reported an error: %s", from->user_id, m->u.error.message);
        break;
    default: {
        char msg[BQ_DETAIL_MAX];
        snprintf(msg, sizeof msg, "the coordinator does not accept message type %d", m->type);
        out_error(c, from, m->seq, BQ_E_MSGTYPE, msg);
    }
    }
}


/* ---- WAL streaming ------------------------------------------------------------------ */

#define WAL_CHECK_MS 1000
#define SCHEDULE_CHECK_MS 1000

static struct wal_seen *wal_seen_of(coord_t *c, const char *cluster)
{
    for (size_t i = 0; i < c->nwal_seen; i++)
        if (strcmp(c->wal_seen[i].cluster, cluster) == 0)
            return &c->wal_seen[i];
    struct wal_seen *p = realloc(c->wal_seen, (c->nwal_seen + 1) * sizeof *p);
    if (!p)
        return NULL;
    c->wal_seen = p;
    p = &c->wal_seen[c->nwal_seen++];
    memset(p, 0, sizeof *p);
    snprintf(p->cluster, sizeof p->cluster, "%s", cluster);
    p->created_mono = INT64_MIN / 2;
    p->active_mono = INT64_MIN / 2;
    return p;
}

/* Every cluster with wal = stream has one wal-stream job queued or running at its site, once
 * a worker there has a store (a failed one is replaced, at most every [coordinator] wal_restart_interval). */
static void wal_ensure(coord_t *c)
{
    int64_t now = bq_mono_ms(), online_after = now - c->cfg.worker_timeout_ms;
    for (size_t i = 0; i < c->cfg.nclusters && !c->batch_failed; i++) {
        const bq_cfg_cluster_t *cl = &c->cfg.clusters[i];
        if (cl->wal != BQ_WAL_STREAM)
            continue;
        int active = 0, worker = 0;
        for (size_t k = 0; k < c->njobs && !active; k++) {
            const job_state_t *s = &c->jobs[k];
            active = s->type == BQ_JOB_WAL_STREAM && !bq_job_state_terminal(s->state) &&
                     strcmp(s->cluster, cl->name) == 0;
        }
        for (size_t k = 0; k < c->nworkers && !worker; k++) {
            const worker_state_t *w = &c->workers[k];
            worker = w->rec.online && w->last_seen_mono >= online_after &&
                     w->rec.store_total > 0 && strcmp(w->rec.site, cl->site) == 0;
        }
        struct wal_seen *seen = active || worker ? wal_seen_of(c, cl->name) : NULL;
        if (active && seen)
            seen->active_mono = now;
        if (active || !worker)
            continue;
        /* a job that ended (cancelled by an operator, failed for good) is replaced once it has
         * been gone wal_restart_interval, and never more often than that */
        const int64_t restart = c->cfg.wal_restart_interval_ms;
        if (!seen || now - seen->created_mono < restart || now - seen->active_mono < restart)
            continue;
        uint64_t id = 0;
        bq_errbuf_t e = {{0}};
        if (job_create(c, BQ_JOB_WAL_STREAM, cl->name, cl->site, 0, NULL, &id, &e) == 0)
            seen->created_mono = now;
        else
            bq_error(COMP, 0, "could not queue the wal-stream job of cluster %s: %s", cl->name,
                     e.msg);
    }
}

static void timers(coord_t *c)
{
    int64_t now = bq_mono_ms();
    for (size_t i = 0; i < c->nworkers; i++) {
        worker_state_t *w = &c->workers[i];
        if (w->rec.online && w->last_seen_mono < now - c->cfg.worker_timeout_ms) {
            char why[128];
            snprintf(why, sizeof why, "no heartbeat for %lld ms",
                     (long long)(now - w->last_seen_mono));
            worker_offline(c, i, why);
        }
    }
    for (size_t i = 0; i < c->njobs; i++) {
        job_state_t *s = &c->jobs[i];
        if ((s->state == BQ_JOB_ASSIGNED || s->state == BQ_JOB_RUNNING) && s->lease_deadline < now)
            job_requeue_lost(c, s, "lease expired", "lease expired");
    }
    if (now - c->last_persist_mono >= PERSIST_SEEN_MS) {
        c->last_persist_mono = now;
        for (size_t i = 0; i < c->nworkers; i++)
            if (c->workers[i].dirty)
                worker_persist(c, &c->workers[i]);
    }
    if (now - c->last_reader_check_mono >= READER_CHECK_MS) {
        bq_errbuf_t e;
        c->last_reader_check_mono = now;
        if (catalog_reader_check(c->cat, &e) != 0)
            bq_error(COMP, 0, "%s", e.msg);
    }
    if (c->nlistings)
        listings_expire(c);
    if (c->rebuild) {
        rebuild_tick(c);
        if (c->dispatch_dirty)
            dispatch(c);
        return; /* no scheduler, retention or WAL streaming on a catalog being rebuilt */
    }
    if (now - c->last_wal_check_mono >= WAL_CHECK_MS) {
        c->last_wal_check_mono = now;
        wal_ensure(c);
        geo_run(c);
    }
    if (now - c->last_sample_mono >= STORE_SAMPLE_MS) {
        c->last_sample_mono = now;
        for (size_t i = 0; i < c->nworkers; i++) {
            worker_state_t *w = &c->workers[i];
            if (!w->rec.online || !w->rec.store_total)
                continue;
            w->sample_ms[w->sample_next] = bq_wall_ms();
            w->sample_free[w->sample_next] = w->rec.store_free;
            w->sample_next = (w->sample_next + 1) % STORE_SAMPLES;
            if (w->nsamples < STORE_SAMPLES)
                w->nsamples++;
        }
    }
    if (now - c->last_schedule_mono >= SCHEDULE_CHECK_MS) {
        c->last_schedule_mono = now;
        schedule_run(c);
        rtest_schedule_run(c);
    }
    if (now - c->last_retention_mono >= c->cfg.retention_interval_ms) {
        c->nret_due = 0;
        c->last_retention_mono = now;
        retention_run(c);
    }
    for (size_t i = 0; i < c->nret_due && !c->batch_failed; i++) {
        const bq_cfg_cluster_t *cl = bq_coord_config_cluster(&c->cfg, c->ret_due[i]);
        if (cl && (cl->retention_policy[0] || cl->nretention_at))
            retention_cluster(c, cl, bq_wall_ms());
    }
    c->nret_due = 0;
    int64_t every = c->cfg.job_history_ms / 4; /* a job goes within a quarter of its history */
    if (every > JOB_PRUNE_EVERY_MS)
        every = JOB_PRUNE_EVERY_MS;
    if (!c->last_job_prune_mono || now - c->last_job_prune_mono >= every) {
        c->last_job_prune_mono = now;
        job_prune(c);
    }
    if (c->dispatch_dirty)
        dispatch(c);
}

/* ---- --rebuild-catalog ---- */

static void rebuild_page(coord_t *c, size_t k, uint64_t offset)
{
    const bq_cfg_worker_ref_t *w = &c->cfg.workers[k];
    static bq_job_t j;
    memset(&j, 0, sizeof j);
    j.type = BQ_JOB_INVENTORY;
    snprintf(j.site, sizeof j.site, "%s", w->site);
    snprintf(j.pin_worker, sizeof j.pin_worker, "%s", w->name);
    j.offset = offset;
    uint64_t id;
    bq_errbuf_t e;
    if (job_insert(c, &j, &id, &e) == 0) {
        c->rb[k].state = 1;
        bq_info(COMP, id, "rebuild: inventory of the store of worker %s from item %" PRIu64,
                w->name, offset);
    } else {
        c->rb[k].state = 3;
        snprintf(c->rb[k].error, sizeof c->rb[k].error, "%s", e.msg);
    }
}

static void rebuild_tick(coord_t *c)
{
    int64_t online_after = bq_mono_ms() - c->cfg.worker_timeout_ms;
    size_t open = 0;
    for (size_t k = 0; k < c->cfg.nworkers && !c->batch_failed; k++) {
        if (c->rb[k].state == 0) {
            int wi = worker_find(c, c->cfg.workers[k].name);
            if (wi >= 0 && c->workers[wi].rec.online && c->workers[wi].last_seen_mono >= online_after)
                rebuild_page(c, k, 0);
        }
        open += c->rb[k].state < 2;
    }
    if (!open || bq_mono_ms() >= c->rebuild_deadline_mono)
        c->rebuild_over = 1;
}

/* An inventory page came back: the backups and WAL files it lists go into the catalog
 * (records that exist gain the store), and the next page is asked for. */
static void rebuild_result(coord_t *c, const bq_job_t *j, const bq_msg_result_t *r, int ok)
{
    size_t k = 0;
    while (k < c->cfg.nworkers && strcmp(c->cfg.workers[k].name, j->pin_worker) != 0)
        k++;
    if (k == c->cfg.nworkers)
        return;
    if (!ok) {
        c->rb[k].state = 3;
        snprintf(c->rb[k].error, sizeof c->rb[k].error, "%s", r->error);
        return;
    }
    catalog_txn_t *t = wtxn(c);
    if (!t)
        return;
    bq_errbuf_t e;
    static bq_backup_t old;
    for (size_t i = 0; i < r->ninv_backups && !c->batch_failed; i++) {
        bq_backup_t b = r->inv_backups[i];
        snprintf(b.site, sizeof b.site, "%s", c->cfg.workers[k].site);
        int rc = catalog_backup_get(t, b.cluster, b.id, &old, &e);
        c->rb[k].backups++;
        if (rc == 0) {
            if (name_in_list(old.stores, j->pin_worker))
                continue;
            size_t u = strlen(old.stores);
            snprintf(old.stores + u, sizeof old.stores - u, "%s%s", u ? "," : "", j->pin_worker);
            b = old;
        } else if (rc != BQ_E_NOTFOUND) {
            bq_warn(COMP, j->id, "rebuild: backup %s of cluster %s: %s", b.id, b.cluster, e.msg);
            continue;
        } else {
            c->rb_backups_new++;
        }
        if ((rc = catalog_backup_put(t, &b, &e)) != 0) {
            if (rc == BQ_E_INVAL || rc == BQ_E_TOOBIG)
                bq_warn(COMP, j->id, "rebuild: %s", e.msg);
            else
                batch_fail(c, rc, &e);
        }
    }
    for (size_t i = 0; i < r->ninv_wal && !c->batch_failed; i++) {
        bq_wal_file_t had;
        int rc = catalog_wal_get(t, r->inv_wal[i].cluster, r->inv_wal[i].name, &had, &e);
        c->rb_wal_new += rc == BQ_E_NOTFOUND;
        if ((rc = catalog_wal_put(t, &r->inv_wal[i], &e)) != 0) {
            if (rc == BQ_E_INVAL)
                bq_warn(COMP, j->id, "rebuild: %s", e.msg);
            else
                batch_fail(c, rc, &e);
        }
        c->rb[k].wal++;
    }
    c->rb[k].orphans += r->inv_orphans;
    uint64_t next = j->offset + BQ_INVENTORY_PAGE;
    if (next < r->inv_total)
        rebuild_page(c, k, next);
    else
        c->rb[k].state = 2;
}

/* After the last page: a backup whose WAL the index now lacks waits for it, as a new one. */
static void rebuild_states(coord_t *c)
{
    catalog_txn_t *t = wtxn(c);
    for (size_t i = 0; t && i < c->cfg.nclusters && !c->batch_failed; i++) {
        backup_vec_t v;
        bq_errbuf_t e;
        if (backups_load(t, c->cfg.clusters[i].name, &v, &e) != 0)
            continue;
        for (size_t k = 0; k < v.n; k++) {
            char missing[64];
            if (v.b[k].state != BQ_BACKUP_DONE || !backup_needs_wal(c, t, &v.b[k], NULL, missing, sizeof missing))
                continue;
            v.b[k].state = BQ_BACKUP_WAITING_FOR_WALS;
            snprintf(v.b[k].error, sizeof v.b[k].error, "waiting for WAL %s", missing);
            if (catalog_backup_put(t, &v.b[k], &e) != 0)
                bq_warn(COMP, 0, "rebuild: %s", e.msg);
        }
        free(v.b);
    }
}

int coord_rebuild(coord_t *c, int64_t timeout_ms)
{
    if (!(c->rb = calloc(c->cfg.nworkers ? c->cfg.nworkers : 1, sizeof *c->rb)))
        return BQ_E_NOMEM;
    c->rebuild = 1;
    c->rebuild_deadline_mono = bq_mono_ms() + timeout_ms;
    bq_info(COMP, 0, "rebuilding the catalog from the stores of %zu workers (at most %lld s)",
            c->cfg.nworkers, (long long)(timeout_ms / 1000));
    return 0;
}

int coord_rebuild_report(coord_t *c, FILE *out)
{
    int missing = 0;
    for (size_t k = 0; k < c->cfg.nworkers; k++) {
        const struct rebuild_worker *r = &c->rb[k];
        const char *what = r->state == 2 ? "listed" : r->state == 3 ? "FAILED" : "did not answer";
        fprintf(out, "worker %s (site %s): %s: %" PRIu64 " backups, %" PRIu64 " WAL files%s%s%s\n",
                c->cfg.workers[k].name, c->cfg.workers[k].site, what, r->backups, r->wal,
                r->orphans ? " (backups without a cluster name: " : "",
                r->orphans ? "see the log)" : "", r->state == 3 ? r->error : "");
        missing += r->state != 2;
    }
    fprintf(out, "catalog %s: %" PRIu64 " backup records and %" PRIu64 " WAL records added\n",
            c->cfg.catalog, c->rb_backups_new, c->rb_wal_new);
    return missing;
}

static int load_worker(const bq_worker_t *w, void *arg)
{
    coord_t *c = arg;
    if (grow((void **)&c->workers, &c->workers_cap, c->nworkers + 1, sizeof *c->workers))
        return BQ_E_NOMEM;
    worker_state_t *s = &c->workers[c->nworkers++];
    memset(s, 0, sizeof *s);
    s->rec = *w;
    /* Online again only when it speaks: give it worker_timeout to do so. */
    s->last_seen_mono = bq_mono_ms();
    s->cap = w->max_jobs ? w->max_jobs : 1;
    return 0;
}

static int load_job(const bq_job_t *j, void *arg)
{
    coord_t *c = arg;
    if (bq_job_state_terminal(j->state))
        return 0;
    return job_index_add(c, j);
}

/* Rebuild the in-memory index from the catalog: workers and jobs at start; after a failed
 * batch only the jobs (the workers' connections and heartbeats are still what they were). */
static int coord_load(coord_t *c, int jobs_only, bq_errbuf_t *e)
{
    catalog_txn_t *t = NULL;
    c->njobs = 0;
    for (size_t i = 0; i < c->nworkers; i++)
        c->workers[i].assigned = 0;
    int rc = catalog_txn_begin(c->cat, 0, &t, e);
    if (rc == 0 && !jobs_only) {
        c->nworkers = 0;
        rc = catalog_worker_each(t, load_worker, c, e);
    }
    for (size_t i = 0; rc == 0 && !jobs_only && i < c->nworkers; i++)
        c->workers[i].rec.online = 0;
    if (rc == 0)
        rc = catalog_job_each(t, load_job, c, e);
    catalog_txn_abort(&t);
    c->dispatch_dirty = 1;
    return rc;
}

/* Record the config's sites and clusters; forget clusters no longer configured. */
typedef struct {
    const bq_coord_config_t *cfg;
    char (*gone)[BQ_NAME_MAX];
    size_t ngone, cap;
} sync_ctx_t;

static int sync_cluster(const bq_cluster_t *cl, void *arg)
{
    sync_ctx_t *s = arg;
    if (bq_coord_config_cluster(s->cfg, cl->name))
        return 0;
    if (grow((void **)&s->gone, &s->cap, s->ngone + 1, sizeof *s->gone))
        return BQ_E_NOMEM;
    snprintf(s->gone[s->ngone++], BQ_NAME_MAX, "%s", cl->name);
    return 0;
}

static int coord_sync_config(coord_t *c, bq_errbuf_t *e)
{
    catalog_txn_t *t = NULL;
    int rc = catalog_txn_begin(c->cat, 1, &t, e);
    for (size_t i = 0; rc == 0 && i < c->cfg.nsites; i++)
        rc = catalog_site_put(t, c->cfg.sites[i].name, e);
    for (size_t i = 0; rc == 0 && i < c->cfg.nclusters; i++) {
        bq_cluster_t cl;
        memset(&cl, 0, sizeof cl);
        if (catalog_cluster_get(t, c->cfg.clusters[i].name, &cl, NULL) != 0)
            memset(&cl, 0, sizeof cl);
        snprintf(cl.name, sizeof cl.name, "%s", c->cfg.clusters[i].name);
        snprintf(cl.site, sizeof cl.site, "%s", c->cfg.clusters[i].site);
        snprintf(cl.conninfo, sizeof cl.conninfo, "%s", c->cfg.clusters[i].conninfo);
        rc = catalog_cluster_put(t, &cl, e);
    }
    sync_ctx_t s = {.cfg = &c->cfg};
    if (rc == 0)
        rc = catalog_cluster_each(t, sync_cluster, &s, e);
    for (size_t i = 0; rc == 0 && i < s.ngone; i++) {
        bq_info(COMP, 0, "cluster %s is no longer in the config: removed from the catalog",
                s.gone[i]);
        rc = catalog_cluster_del(t, s.gone[i], e);
    }
    free(s.gone);
    if (rc == 0)
        rc = catalog_txn_commit(&t, e);
    catalog_txn_abort(&t);
    return rc;
}

static int coord_zap_allow(coord_t *c)
{
    size_t n = c->cfg.nworkers + c->cfg.noperators;
    const char **keys = calloc(n ? n : 1, sizeof *keys);
    char (*ids)[BQ_USER_ID_MAX] = calloc(n ? n : 1, sizeof *ids);
    const char **idp = calloc(n ? n : 1, sizeof *idp);
    int rc = BQ_E_NOMEM;
    if (keys && ids && idp) {
        size_t k = 0;
        for (size_t i = 0; i < c->cfg.nworkers; i++, k++) {
            keys[k] = c->cfg.workers[i].public_key;
            snprintf(ids[k], BQ_USER_ID_MAX, "worker:%s", c->cfg.workers[i].name);
            idp[k] = ids[k];
        }
        for (size_t i = 0; i < c->cfg.noperators; i++, k++) {
            keys[k] = c->cfg.operators[i].public_key;
            snprintf(ids[k], BQ_USER_ID_MAX, "operator:%s", c->cfg.operators[i].name);
            idp[k] = ids[k];
        }
        rc = c->zap ? proto_zap_set(c->zap, keys, idp, n) : 0;
    }
    free(keys);
    free(ids);
    free(idp);
    return rc;
}

int coord_new(const bq_coord_config_t *cfg, int skip_zap, coord_t **out, bq_errbuf_t *e)
{
    coord_t *c = calloc(1, sizeof *c);
    if (!c)
        return bq_fail(e, BQ_E_NOMEM, "out of memory");
    c->cfg = *cfg; /* takes over the arrays: the caller must not free cfg */
    c->peers_version = peers_version_of(&c->cfg);
    int rc = catalog_open(cfg->catalog, cfg->catalog_max_size, &c->cat, e);
    if (rc == 0)
        rc = coord_sync_config(c, e);
    if (rc == 0)
        rc = coord_load(c, 0, e);
    if (rc == 0)
        rc = proto_ctx_new(&c->ctx, e);
    if (rc == 0 && !skip_zap) {
        rc = proto_zap_start(c->ctx, &c->zap, e);
        if (rc == 0)
            rc = coord_zap_allow(c);
    }
    if (rc == 0)
        rc = proto_zap_probe(c->ctx, 2000, e);
    if (rc == 0)
        rc = proto_server_new(c->ctx, cfg->listen, &cfg->keys, &c->sock, e);
    if (rc) {
        coord_destroy(&c);
        return rc;
    }
    bq_info(COMP, 0, "listening on %s (CURVE, %zu worker and %zu operator keys admitted); "
            "catalog %s holds %zu workers and %zu active jobs", cfg->listen, cfg->nworkers,
            cfg->noperators, cfg->catalog, c->nworkers, c->njobs);
    *out = c;
    return 0;
}

static void coord_reload(coord_t *c)
{
    bq_coord_config_t nc;
    bq_errbuf_t e;
    memset(&nc, 0, sizeof nc);
    if (bq_coord_config_load(c->cfg.path, &nc, &e) != 0) {
        bq_error(COMP, 0, "reload refused, keeping the running config: %s", e.msg);
        return;
    }
    if (strcmp(nc.listen, c->cfg.listen) != 0 || strcmp(nc.catalog, c->cfg.catalog) != 0 ||
        strcmp(nc.keys.public_z85, c->cfg.keys.public_z85) != 0)
        bq_warn(COMP, 0, "reload: listen, catalog and secret_key_file changes need a restart");
    snprintf(nc.listen, sizeof nc.listen, "%s", c->cfg.listen);
    snprintf(nc.catalog, sizeof nc.catalog, "%s", c->cfg.catalog);
    nc.keys = c->cfg.keys;
    bq_coord_config_free(&c->cfg);
    c->cfg = nc;
    c->peers_version = peers_version_of(&c->cfg);
    bq_log_set_level(nc.log_level);
    if (coord_zap_allow(c) != 0)
        bq_error(COMP, 0, "reload: could not update the admitted keys");
    if (coord_sync_config(c, &e) != 0)
        bq_error(COMP, 0, "reload: could not record sites and clusters: %s", e.msg);
    for (size_t i = 0; i < c->nworkers; i++) {
        const bq_cfg_worker_ref_t *ref = bq_coord_config_worker(&c->cfg, c->workers[i].rec.name);
        if (!ref && c->workers[i].rec.online)
            bq_warn(COMP, 0, "worker %s is no longer in the config: its key is refused from now on",
                    c->workers[i].rec.name);
    }
    bq_info(COMP, 0, "config reloaded from %s", c->cfg.path);
}

/* Commit the batch, then send what it produced (or errors in place of CLI replies). */
static void batch_finish(coord_t *c)
{
    bq_errbuf_t e;
    if (c->wtxn && !c->batch_failed) {
        int rc = catalog_txn_commit(&c->wtxn, &e);
        if (rc)
            batch_fail(c, rc, &e);
    }
    catalog_txn_abort(&c->wtxn);
    if (c->batch_failed) {
        bq_error(COMP, 0, "catalog write failed, nothing of the last %zu replies was recorded: %s",
                 c->nout, c->batch_err.msg);
        /* Grow now (no transaction is open), and tell the requester what it means. */
        if (c->batch_failed == BQ_E_MAPFULL) {
            char why[BQ_ERRMSG_MAX];
            snprintf(why, sizeof why, "%s", c->batch_err.msg);
            if (catalog_grow(c->cat, &e) != 0) {
                bq_error(COMP, 0, "%s", e.msg);
                snprintf(c->batch_err.msg, sizeof c->batch_err.msg, "%s; %s", why, e.msg);
            } else {
                snprintf(c->batch_err.msg, sizeof c->batch_err.msg,
                         "%s; the catalog map has been grown: retry", why);
            }
        }
    }
    for (size_t i = 0; i < c->nout; i++) {
        out_msg_t *o = &c->out[i];
        if (c->batch_failed && o->cli) {
            uint64_t seq = o->msg.seq;
            proto_msg_clear(&o->msg);
            o->msg.type = BQ_MSG_CLI_REPLY;
            o->msg.seq = seq;
            o->msg.u.cli_reply.code = c->batch_failed;
            snprintf(o->msg.u.cli_reply.error, sizeof o->msg.u.cli_reply.error, "%s",
                     c->batch_err.msg);
        }
        if (c->batch_failed && o->msg.type != BQ_MSG_HEARTBEAT_ACK && o->msg.type != BQ_MSG_ERROR &&
            o->msg.type != BQ_MSG_CLI_REPLY) {
            proto_msg_clear(&o->msg); /* offers and acks of unrecorded changes */
            continue;
        }
        if (proto_send(c->sock, &o->to, &o->msg, &e) != 0)
            bq_debug(COMP, 0, "could not reply to %s: %s", o->to.user_id, e.msg);
        proto_msg_clear(&o->msg);
    }
    c->nout = 0;
    if (c->batch_failed) {
        c->batch_failed = 0;
        if (coord_load(c, 1, &e) != 0)
            bq_error(COMP, 0, "could not reload the catalog: %s", e.msg);
    } else {
        job_index_compact(c);
    }
}

int coord_run(coord_t *c, volatile sig_atomic_t *stop, volatile sig_atomic_t *reload)
{
    proto_sock_t *socks[1] = {c->sock};
    int ready[1];
    while (!*stop) {
        if (*reload) {
            *reload = 0;
            coord_reload(c);
        }
        int n = proto_poll(socks, 1, ready, TICK_MS);
        if (n == BQ_E_ZMQ) {
            bq_error(COMP, 0, "poll failed: %s", strerror(errno));
            return BQ_E_ZMQ;
        }
        for (int i = 0; n > 0 && ready[0] && i < BATCH_MAX; i++) {
            bq_peer_t from;
            bq_msg_t m;
            bq_errbuf_t e;
            int rc = proto_recv(c->sock, &from, &m, 0, &e);
            if (rc == BQ_E_TIMEOUT)
                break;
            if (rc) {
                bq_warn(COMP, 0, "bad message from %s: %s", from.user_id[0] ? from.user_id : "?",
                        e.msg);
                if (from.routing_id_len)
                    out_error(c, &from, 0, rc, e.msg);
                continue;
            }
            handle(c, &from, &m);
            proto_msg_clear(&m);
        }
        timers(c);
        batch_finish(c);
        if (c->rebuild && c->rebuild_over) {
            rebuild_states(c);
            batch_finish(c);
            bq_info(COMP, 0, "rebuild of the catalog finished");
            return c->batch_failed ? c->batch_failed : 0;
        }
    }
    bq_info(COMP, 0, "stopping");
    return 0;
}

void coord_destroy(coord_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    coord_t *c = *self_p;
    catalog_txn_abort(&c->wtxn);
    for (size_t i = 0; i < c->nout; i++)
        proto_msg_clear(&c->out[i].msg);
    proto_sock_destroy(&c->sock);
    proto_zap_stop(&c->zap);
    proto_ctx_destroy(&c->ctx);
    catalog_destroy(&c->cat);
    bq_coord_config_free(&c->cfg);
    while (c->nlistings)
        listing_drop(c, &c->listings[0]);
    free(c->workers);
    free(c->jobs);
    free(c->wal_seen);
    free(c->geo);
    free(c->rb);
    free(c->ret_due);
    free(c->out);
    free(c);
    *self_p = NULL;
}
