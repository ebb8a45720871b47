/* The worker's event loop: one DEALER to the coordinator and one inproc PULL on which job
 * threads report progress and results. */
#include "worker.h"

#include "clock.h"
#include "fsutil.h"
#include "jobs.h"
#include "log.h"
#include "peer.h"
#include "proto.h"
#include "store.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <limits.h>

#define COMP "worker"
#define INPROC "bq-worker-jobs"
#define SHUTDOWN_GRACE_MS 10000 /* for running jobs to stop */
#define SHUTDOWN_ACK_MS 2000    /* then for the coordinator to acknowledge their results */
#define RESULT_RESEND_MS 2000

typedef struct job_thread {
    struct job_thread *next;
    worker_t *w;
    pthread_t thread;
    bq_job_t job;
    atomic_int cancel;
    int reported;            /* its result reached the loop: join it */
} job_thread_t;

typedef struct pending {
    struct pending *next;
    bq_msg_result_t result;  /* kept until the coordinator acknowledges it */
    int64_t last_sent;
} pending_t;

struct worker {
    bq_worker_config_t cfg;
    store_t *store;             /* opened at start when store_key_file is set */
    char no_store[BQ_TEXT_MAX]; /* else why there is none */
    proto_ctx_t *ctx;
    int stopping;               /* SIGTERM came: offers are handed back */
    peer_server_t *data;        /* the data port, when data_listen is set and there is a store */
    char data_endpoint[BQ_ENDPOINT_MAX]; /* where peers reach it (told to the coordinator) */
    uint64_t peers_version;     /* of the PeerKeys the data port admits */
    proto_sock_t *coord;
    proto_sock_t *pull;
    job_thread_t *threads;
    size_t nthreads;
    pending_t *pending;
    int64_t last_hb, last_ack, interval_ms;
    int registered;
    int auth_warned;
    uint64_t seq;
};

/* Open (creating it on first start) the store with the master key of store_key_file. A
 * wrong key or a damaged store stops the worker before it takes any job. Without a key file
 * the worker runs (checks, drills) and refuses backups, saying why. */
static int worker_store_open(worker_t *w, bq_errbuf_t *e)
{
    const bq_worker_config_t *cfg = &w->cfg;
    if (!cfg->store_key_file[0]) {
        snprintf(w->no_store, sizeof w->no_store, "worker %s has no store_key_file in its [worker] "
                 "section (make one with barque keygen --store-key NAME)", cfg->name);
        return store_init(cfg->store, e);
    }
    store_master_t master;
    int rc = store_master_key_load(cfg->store_key_file, &master, e);
    if (rc != 0)
        return rc;
    char conf[PATH_MAX + 16];
    snprintf(conf, sizeof conf, "%s/store.conf", cfg->store);
    if (access(conf, F_OK) != 0) {
        rc = store_create(cfg->store, &master, NULL, e);
        if (rc == 0)
            bq_info(COMP, 0, "created store %s", cfg->store);
    }
    if (rc == 0)
        rc = store_open(cfg->store, &master, &w->store, e);
    store_master_clear(&master);
    if (rc != 0)
        return rc;
    bq_info(COMP, 0, "store %s open (chunks of %u KiB)", cfg->store,
            store_chunk_size(w->store) / 1024);
    /* Views of peers' stores are scratch of jobs that no longer run (a worker killed during a
     * restore leaves its view): remove them. */
    char views[PATH_MAX + 8];
    snprintf(views, sizeof views, "%s/views", cfg->store);
    bq_errbuf_t why;
    if (store_view_remove(views, &why) != 0)
        bq_warn(COMP, 0, "%s", why.msg);
    return 0;
}

/* The data port: peers read this store through it (restores at another worker, geo copies).
 * Peers are told data_advertise, or data_listen when it names one host. */
static int worker_data_start(worker_t *w, bq_errbuf_t *e)
{
    const bq_worker_config_t *cfg = &w->cfg;
    const char *adv = cfg->data_advertise[0] ? cfg->data_advertise : cfg->data_listen;
    if (strstr(adv, "://*") || strstr(adv, "://0.0.0.0") || strstr(adv, "://[::]"))
        return bq_fail(e, BQ_E_CONFIG, "%s: [worker] data_listen %s binds every address: set "
                       "data_advertise = tcp://HOST:PORT, where the other workers reach it",
                       cfg->path, cfg->data_listen);
    snprintf(w->data_endpoint, sizeof w->data_endpoint, "%s", adv);
    bq_errbuf_t why;
    int rc = peer_server_start(w->ctx, w->store, cfg->data_listen, &cfg->keys, &w->data, &why);
    if (rc != 0)
        return bq_fail(e, rc, "could not open the data port %s: %s", cfg->data_listen, why.msg);
    bq_info(COMP, 0, "data port listening on %s (peers reach it at %s)", cfg->data_listen, adv);
    return 0;
}

int worker_new(const bq_worker_config_t *cfg, worker_t **out, bq_errbuf_t *e)
{
    worker_t *w = calloc(1, sizeof *w);
    if (!w)
        return bq_fail(e, BQ_E_NOMEM, "out of memory");
    w->cfg = *cfg;
    w->interval_ms = cfg->heartbeat_interval_ms;
    peer_timeout_set(cfg->peer_timeout_ms);
    int rc = worker_store_open(w, e);
    if (rc == 0 && cfg->scratch[0]) { /* what restore tests of a killed worker left */
        bq_errbuf_t why;
        /* 0711: the restored servers' user passes through to its own directories */
        if (bq_mkdir_p(cfg->scratch, 0711, &why) != 0)
            bq_warn(COMP, 0, "scratch %s: %s (restore tests will fail)", cfg->scratch, why.msg);
        else if (jobs_restore_test_sweep(cfg->scratch, 0, &why) != 0)
            bq_warn(COMP, 0, "scratch %s: %s", cfg->scratch, why.msg);
    }
    if (rc == 0)
        rc = proto_ctx_new(&w->ctx, e);
    if (rc == 0)
        rc = proto_inproc_pull_new(w->ctx, INPROC, &w->pull, e);
    if (rc == 0)
        rc = proto_client_new(w->ctx, cfg->coordinator, cfg->coordinator_public_key, &cfg->keys,
                              &w->coord, e);
    if (rc == 0 && cfg->data_listen[0] && w->store)
        rc = worker_data_start(w, e);
    if (rc) {
        worker_destroy(&w);
        return rc;
    }
    *out = w;
    return 0;
}

/* ---- job threads -------------------------------------------------------------------- */

typedef struct {
    jobs_ctx_t base;
    proto_sock_t *push;
    job_thread_t *jt;
} thread_ctx_t;

static void thread_progress(jobs_ctx_t *ctx, uint64_t done, uint64_t total, const char *message)
{
    thread_ctx_t *t = (thread_ctx_t *)ctx;
    bq_msg_t m = {.type = BQ_MSG_JOB_PROGRESS};
    m.u.progress.job_id = t->jt->job.id;
    m.u.progress.attempt = t->jt->job.attempt;
    m.u.progress.done = done;
    m.u.progress.total = total;
    snprintf(m.u.progress.message, sizeof m.u.progress.message, "%s", message ? message : "");
    proto_send(t->push, NULL, &m, NULL);
}

static void thread_wal_archived(jobs_ctx_t *ctx, const char *name, uint64_t size)
{
    thread_ctx_t *t = (thread_ctx_t *)ctx;
    bq_msg_t m = {.type = BQ_MSG_JOB_PROGRESS};
    m.u.progress.job_id = t->jt->job.id;
    m.u.progress.attempt = t->jt->job.attempt;
    snprintf(m.u.progress.message, sizeof m.u.progress.message, "archived %s", name);
    snprintf(m.u.progress.wal_file, sizeof m.u.progress.wal_file, "%s", name);
    m.u.progress.wal_size = size;
    bq_errbuf_t e;
    if (proto_send(t->push, NULL, &m, &e) != 0)
        bq_warn(COMP, t->jt->job.id, "WAL file %s is archived but the coordinator will not hear "
                "of it: %s", name, e.msg);
}

static void *thread_main(void *arg)
{
    job_thread_t *jt = arg;
    thread_ctx_t t = {.jt = jt};
    t.base.cancel = &jt->cancel;
    t.base.progress = thread_progress;
    t.base.wal_archived = thread_wal_archived;
    t.base.worker = jt->w->cfg.name;
    t.base.store = jt->w->store;
    t.base.no_store = jt->w->no_store;
    t.base.zctx = jt->w->ctx;
    t.base.keys = &jt->w->cfg.keys;
    t.base.store_key_file = jt->w->cfg.store_key_file;
    t.base.cli_command = jt->w->cfg.cli_command;
    t.base.site = jt->w->cfg.site;
    t.base.scratch = jt->w->cfg.scratch;
    t.base.restore_test_user = jt->w->cfg.restore_test_user;
    t.base.pg_bindir = jt->w->cfg.pg_bindir;
    bq_errbuf_t e;
    bq_msg_t m = {.type = BQ_MSG_JOB_RESULT};
    bq_msg_result_t *res = calloc(1, sizeof *res);
    if (!res) {
        bq_error(COMP, jt->job.id, "out of memory starting the job; its lease will expire");
        return NULL;
    }
    if (proto_inproc_push_new(jt->w->ctx, INPROC, &t.push, &e) != 0) {
        bq_error(COMP, jt->job.id, "job thread cannot reach the loop: %s", e.msg);
        free(res);
        return NULL;
    }
    jobs_run(&jt->job, &t.base, res);
    /* stopped by the worker's shutdown: hand it back (a wal-stream job that stops when told
     * says ok, but it is to go on elsewhere, not to be counted as finished) */
    if (atomic_load(&jt->cancel) == 2 && (!res->ok || jt->job.type == BQ_JOB_WAL_STREAM)) {
        res->ok = 0;
        res->retryable = 1;
        snprintf(res->error, sizeof res->error, "worker %s is shutting down", jt->w->cfg.name);
    }
    m.u.result = res;
    if (proto_send(t.push, NULL, &m, &e) != 0)
        bq_error(COMP, jt->job.id, "could not hand the result to the loop: %s", e.msg);
    proto_sock_destroy(&t.push);
    proto_result_clear(res); /* the loop receives its own decoded copy */
    free(res);
    return NULL;
}

static int running_count(worker_t *w)
{
    int n = 0;
    for (job_thread_t *t = w->threads; t; t = t->next)
        if (!t->reported)
            n++;
    return n;
}

static job_thread_t *thread_find(worker_t *w, uint64_t id, uint32_t attempt)
{
    for (job_thread_t *t = w->threads; t; t = t->next)
        if (t->job.id == id && t->job.attempt == attempt)
            return t;
    return NULL;
}

/* ---- talking to the coordinator ----------------------------------------------------- */

static void send_coord(worker_t *w, bq_msg_t *m)
{
    bq_errbuf_t e;
    m->seq = ++w->seq;
    if (proto_send(w->coord, NULL, m, &e) != 0)
        bq_debug(COMP, 0, "not sent (coordinator unreachable?): %s", e.msg);
}

static void send_hello(worker_t *w, bq_msg_type_t type)
{
    bq_msg_t m = {.type = type};
    bq_msg_hello_t *h = &m.u.hello;
    snprintf(h->worker.name, sizeof h->worker.name, "%s", w->cfg.name);
    snprintf(h->worker.site, sizeof h->worker.site, "%s", w->cfg.site);
    snprintf(h->worker.version, sizeof h->worker.version, "%s", BQ_VERSION_STRING);
    if (w->store) /* a worker without a usable store says so: 0 bytes (no WAL, no backups) */
        store_space(w->cfg.store, &h->worker.store_free, &h->worker.store_total, NULL);
    if (w->cfg.scratch[0]) /* restore tests run where there is scratch space */
        store_space(w->cfg.scratch, &h->worker.scratch_free, &h->worker.scratch_total, NULL);
    h->worker.max_jobs = (uint32_t)w->cfg.max_jobs;
    snprintf(h->worker.data_endpoint, sizeof h->worker.data_endpoint, "%s", w->data_endpoint);
    h->peers_version = w->peers_version;
    size_t n = (size_t)running_count(w);
    h->running = calloc(n ? n : 1, sizeof *h->running);
    for (job_thread_t *t = w->threads; t && h->running; t = t->next) {
        if (t->reported)
            continue;
        h->running[h->nrunning].job_id = t->job.id;
        h->running[h->nrunning].attempt = t->job.attempt;
        h->nrunning++;
    }
    h->worker.running = (uint32_t)h->nrunning;
    send_coord(w, &m);
    proto_msg_clear(&m);
    w->last_hb = bq_mono_ms();
}

static void send_result(worker_t *w, pending_t *p)
{
    bq_msg_t m = {.type = BQ_MSG_JOB_RESULT};
    m.u.result = &p->result;
    send_coord(w, &m); /* not cleared: the pending entry owns the result */
    p->last_sent = bq_mono_ms();
}

static void on_offer(worker_t *w, bq_msg_t *m)
{
    bq_job_t *job = m->u.job;
    if (thread_find(w, job->id, job->attempt)) {
        bq_msg_t a = {.type = BQ_MSG_JOB_ACCEPT};
        a.u.ref.job_id = job->id;
        a.u.ref.attempt = job->attempt;
        send_coord(w, &a);
        return;
    }
    if (running_count(w) >= w->cfg.max_jobs || w->stopping) {
        pending_t *p = calloc(1, sizeof *p);
        if (!p)
            return;
        p->result.job_id = job->id;
        p->result.attempt = job->attempt;
        p->result.retryable = 1;
        if (w->stopping)
            snprintf(p->result.error, sizeof p->result.error, "worker %s is shutting down",
                     w->cfg.name);
        else
            snprintf(p->result.error, sizeof p->result.error,
                     "worker %s has no free slot (%d running)", w->cfg.name, running_count(w));
        p->next = w->pending;
        w->pending = p;
        send_result(w, p);
        return;
    }
    job_thread_t *t = calloc(1, sizeof *t);
    if (!t)
        return;
    t->w = w;
    t->job = *job;
    if (pthread_create(&t->thread, NULL, thread_main, t) != 0) {
        bq_error(COMP, job->id, "could not start a thread for the job");
        free(t);
        return;
    }
    t->next = w->threads;
    w->threads = t;
    w->nthreads++;
    bq_info(COMP, job->id, "running %s job (attempt %u)%s%s", bq_job_type_name(job->type),
            job->attempt, job->cluster[0] ? " for cluster " : "", job->cluster);
    bq_msg_t a = {.type = BQ_MSG_JOB_ACCEPT};
    a.u.ref.job_id = job->id;
    a.u.ref.attempt = job->attempt;
    send_coord(w, &a);
}

static void on_cancel(worker_t *w, const bq_job_ref_t *ref)
{
    job_thread_t *t = thread_find(w, ref->job_id, ref->attempt);
    if (t && !t->reported) {
        bq_info(COMP, ref->job_id, "cancelling attempt %u at the coordinator's request",
                ref->attempt);
        atomic_store(&t->cancel, 1);
    }
}

static void pending_drop(worker_t *w, uint64_t id, uint32_t attempt)
{
    for (pending_t **pp = &w->pending; *pp; pp = &(*pp)->next) {
        if ((*pp)->result.job_id == id && (*pp)->result.attempt == attempt) {
            pending_t *p = *pp;
            *pp = p->next;
            proto_result_clear(&p->result);
            free(p);
            return;
        }
    }
}

static void on_coord_msg(worker_t *w, bq_msg_t *m)
{
    switch (m->type) {
    case BQ_MSG_HEARTBEAT_ACK:
        if (!w->registered)
            bq_info(COMP, 0, "registered with the coordinator at %s as %s (site %s)",
                    w->cfg.coordinator, w->cfg.name, w->cfg.site);
        w->registered = 1;
        w->auth_warned = 0;
        w->last_ack = bq_mono_ms();
        if (m->u.hb_ack.heartbeat_interval_ms > 0)
            w->interval_ms = m->u.hb_ack.heartbeat_interval_ms;
        break;
    case BQ_MSG_PEER_KEYS:
        if (!w->data)
            break;
        if (peer_server_allow(w->data, &m->u.peer_keys) != 0) {
            bq_error(COMP, 0, "could not update the keys the data port admits");
            break;
        }
        if (w->peers_version != m->u.peer_keys.version)
            bq_info(COMP, 0, "data port admits %zu worker key(s) (version %" PRIu64 ")",
                    m->u.peer_keys.nkeys, m->u.peer_keys.version);
        w->peers_version = m->u.peer_keys.version;
        break;
    case BQ_MSG_JOB_OFFER: on_offer(w, m); break;
    case BQ_MSG_JOB_CANCEL: on_cancel(w, &m->u.ref); break;
    case BQ_MSG_RESULT_ACK:
        if (!m->u.result_ack.accepted)
            bq_warn(COMP, m->u.result_ack.job_id, "coordinator refused the result of attempt %u: %s",
                    m->u.result_ack.attempt, m->u.result_ack.reason);
        pending_drop(w, m->u.result_ack.job_id, m->u.result_ack.attempt);
        break;
    case BQ_MSG_ERROR:
        bq_error(COMP, 0, "coordinator: %s", m->u.error.message);
        break;
    default:
        bq_warn(COMP, 0, "ignored message type %d from the coordinator", m->type);
    }
}

static void on_thread_msg(worker_t *w, bq_msg_t *m)
{
    if (m->type == BQ_MSG_JOB_PROGRESS && m->u.progress.wal_file[0]) {
        /* a WAL file for the index: not dropped without a word, unlike plain progress */
        bq_errbuf_t e;
        m->seq = ++w->seq;
        if (proto_send(w->coord, NULL, m, &e) != 0)
            bq_warn(COMP, m->u.progress.job_id, "WAL file %s is archived but the coordinator's "
                    "WAL index will lack it: %s", m->u.progress.wal_file, e.msg);
        return;
    }
    if (m->type == BQ_MSG_JOB_PROGRESS) {
        send_coord(w, m);
        return;
    }
    if (m->type != BQ_MSG_JOB_RESULT)
        return;
    bq_msg_result_t *r = m->u.result;
    job_thread_t *t = thread_find(w, r->job_id, r->attempt);
    if (t) {
        t->reported = 1;
        pthread_join(t->thread, NULL);
    }
    bq_log(r->ok ? BQ_LOG_INFO : BQ_LOG_WARNING, COMP, r->job_id, "attempt %u finished: %s%s",
           r->attempt, r->ok ? "ok" : "failed: ", r->ok ? "" : r->error);
    pending_t *p = calloc(1, sizeof *p);
    if (p) {
        proto_result_move(&p->result, r); /* the message must not free what it owned */
        p->next = w->pending;
        w->pending = p;
        send_result(w, p);
    }
    /* forget finished threads */
    for (job_thread_t **tp = &w->threads; *tp;) {
        if ((*tp)->reported) {
            job_thread_t *dead = *tp;
            *tp = dead->next;
            free(dead);
            w->nthreads--;
        } else {
            tp = &(*tp)->next;
        }
    }
}

static void worker_reload(worker_t *w)
{
    bq_worker_config_t nc;
    bq_errbuf_t e;
    memset(&nc, 0, sizeof nc);
    if (bq_worker_config_load(w->cfg.path, &nc, &e) != 0) {
        bq_error(COMP, 0, "reload refused, keeping the running config: %s", e.msg);
        return;
    }
    bq_log_set_level(nc.log_level);
    w->cfg.log_level = nc.log_level;
    w->cfg.max_jobs = nc.max_jobs;
    bq_info(COMP, 0, "config reloaded from %s (log_level %s, max_jobs %d; other keys need a "
            "restart)", w->cfg.path, bq_log_level_name(nc.log_level), nc.max_jobs);
}

int worker_run(worker_t *w, volatile sig_atomic_t *stop, volatile sig_atomic_t *reload)
{
    proto_sock_t *socks[2] = {w->coord, w->pull};
    int ready[2];
    int64_t stop_deadline = 0;
    send_hello(w, BQ_MSG_REGISTER);
    bq_info(COMP, 0, "worker %s (site %s) started; coordinator %s; store %s", w->cfg.name,
            w->cfg.site, w->cfg.coordinator, w->cfg.store);
    for (;;) {
        int64_t now = bq_mono_ms();
        if (*stop && !stop_deadline) {
            stop_deadline = now + SHUTDOWN_GRACE_MS;
            w->stopping = 1; /* offers from now on are handed back */
            bq_info(COMP, 0, "stopping: cancelling %d running job(s)", running_count(w));
            for (job_thread_t *t = w->threads; t; t = t->next)
                atomic_store(&t->cancel, 2);
        }
        if (stop_deadline && running_count(w) == 0 &&
            (!w->pending || now > stop_deadline - SHUTDOWN_GRACE_MS + SHUTDOWN_ACK_MS)) {
            if (w->pending)
                bq_warn(COMP, 0, "stopping with unacknowledged results: the coordinator re-runs "
                        "those jobs when their leases expire");
            break;
        }
        if (stop_deadline && now > stop_deadline)
            break;
        if (*reload) {
            *reload = 0;
            worker_reload(w);
        }
        int n = proto_poll(socks, 2, ready, 100);
        for (int s = 0; n > 0 && s < 2; s++) {
            for (int i = 0; ready[s] && i < 256; i++) {
                bq_msg_t m;
                bq_errbuf_t e;
                int rc = proto_recv(socks[s], NULL, &m, 0, &e);
                if (rc == BQ_E_TIMEOUT)
                    break;
                if (rc) {
                    bq_warn(COMP, 0, "bad message from %s: %s", s ? "a job thread" : "the coordinator",
                            e.msg);
                    continue;
                }
                if (s == 0)
                    on_coord_msg(w, &m);
                else
                    on_thread_msg(w, &m);
                proto_msg_clear(&m);
            }
        }
        now = bq_mono_ms();
        if (now - w->last_hb >= w->interval_ms) {
            bq_errbuf_t e;
            if (proto_client_handshake_state(w->coord, &e) == BQ_E_AUTH && !w->auth_warned) {
                bq_error(COMP, 0, "%s", e.msg);
                w->auth_warned = 1;
            }
            if (w->registered && now - w->last_ack > 5 * w->interval_ms) {
                bq_warn(COMP, 0, "no answer from the coordinator for %lld ms; re-registering",
                        (long long)(now - w->last_ack));
                w->registered = 0;
            }
            send_hello(w, w->registered ? BQ_MSG_HEARTBEAT : BQ_MSG_REGISTER);
        }
        for (pending_t *p = w->pending; p; p = p->next)
            if (now - p->last_sent >= RESULT_RESEND_MS)
                send_result(w, p);
    }
    if (running_count(w))
        bq_warn(COMP, 0, "%d job(s) did not stop within %d ms", running_count(w), SHUTDOWN_GRACE_MS);
    bq_info(COMP, 0, "stopped");
    return 0;
}

void worker_destroy(worker_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    worker_t *w = *self_p;
    for (job_thread_t *t = w->threads; t; t = t->next)
        atomic_store(&t->cancel, 2);
    for (job_thread_t *t = w->threads, *next; t; t = next) {
        next = t->next;
        if (!t->reported)
            pthread_join(t->thread, NULL);
        free(t);
    }
    for (pending_t *p = w->pending, *next; p; p = next) {
        next = p->next;
        proto_result_clear(&p->result);
        free(p);
    }
    peer_server_stop(&w->data);
    proto_sock_destroy(&w->coord);
    proto_sock_destroy(&w->pull);
    proto_ctx_destroy(&w->ctx);
    store_close(&w->store); /* after every job thread was joined */
    free(w);
    *self_p = NULL;
}
