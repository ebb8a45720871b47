/* The barque command: parses arguments, talks to the coordinator, prints text or JSON.
 * Exit status: 0 success, 1 failure, 2 usage error. */
#include "cli.h"

#include "clock.h"
#include "config.h"
#include "fsutil.h"
#include "keys.h"
#include "metrics.h"
#include "output.h"
#include "proto.h"
#include "store_cmd.h"
#include "store_keys.h"
#include "wal_cmd.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum {
    OPT_JSON = 1 << 0,
    OPT_ALL = 1 << 1,
    OPT_DIR = 1 << 2,
    OPT_WAIT_TIMEOUT = 1 << 3,
    OPT_WAIT = 1 << 4,
    OPT_COUNT = 1 << 5,
    OPT_STORE_KEY = 1 << 6,
    OPT_KEY = 1 << 7,
    OPT_COMPRESSION = 1 << 8,
    OPT_LEVEL = 1 << 9,
    OPT_CHUNK_SIZE = 1 << 10,
    OPT_NEW_KEY = 1 << 11,
    OPT_SPREAD = 1 << 12,
    OPT_WORKER = 1 << 13,
    OPT_TABLESPACE = 1 << 14,
    OPT_DELTA = 1 << 15,
    OPT_OWNER = 1 << 16,
    OPT_FORCE = 1 << 17,
    OPT_ARCHIVE = 1 << 18,
    OPT_SPOOL = 1 << 19,
    OPT_PREFETCH = 1 << 20,
    OPT_TARGET = 1 << 21,    /* recover's --target-*, --exclusive, --standby */
    OPT_NAGIOS = 1 << 22,    /* check --nagios */
    OPT_KEEP = 1 << 23,      /* keep --target full|standalone, --release, --status */
    OPT_FROM_SITE = 1 << 24, /* restore-test, drill, recover, wal-get: --from-site SITE */
    OPT_PREFER_SITE = 1 << 25, /* wal-get: --prefer-site SITE */
    OPT_TO = 1 << 26,          /* replicate: --to SITE */
};

#define CLI_TABLESPACES_MAX 64

enum {
    VERB_OFFLINE = 1 << 0, /* runs without the coordinator (no config, no connection) */
};

typedef struct {
    const char *config;
    int json;
    int all;
    int wait;
    const char *dir;
    int64_t timeout_ms;      /* coordinator must answer within; 0 = config's */
    int64_t wait_timeout_ms; /* a job must finish within */
    uint32_t count;          /* jobs to create at once */
    int store_key;           /* keygen: a store master key instead of a CURVE pair */
    const char *key;         /* store verbs: --key FILE */
    const char *new_key;     /* store rotate-key: --new-key FILE */
    const char *compression; /* store init */
    const char *level;       /* store init */
    const char *chunk_size;  /* store init */
    int spread;              /* backup: spread checkpoint */
    const char *worker;      /* recover: --worker */
    const char *tablespaces[CLI_TABLESPACES_MAX]; /* recover: --tablespace NAME:PATH */
    int ntablespaces;
    int delta;               /* recover: --delta */
    const char *owner;       /* recover: --owner */
    int force;               /* switch-wal: --force */
    int archive;             /* switch-wal: --archive */
    const char *spool;       /* wal-push, wal-get: --spool DIR */
    int prefetch;            /* wal-get: --prefetch N */
    long prefetch_only;      /* wal-get: internal, the background prefetcher (segment size) */
    int spool_pusher;        /* wal-push: internal, the pusher of --spool DIR */
    const char *target_kind; /* recover: --target-time|xid|lsn|name|immediate */
    const char *target_value;
    int ntargets;
    const char *target_tli;  /* recover: --target-tli */
    const char *target_action; /* recover: --target-action */
    int exclusive, standby;  /* recover: --exclusive, --standby */
    int nagios;              /* check: --nagios */
    const char *keep_target; /* keep: --target full|standalone */
    int keep_release, keep_status; /* keep: --release, --status */
    const char *from_site;   /* restore-test, drill, recover, wal-get: --from-site */
    const char *prefer_site; /* wal-get: --prefer-site */
    const char *to_site;     /* replicate: --to */
    int help;
    int nargs;
    const char *args[8];
} cli_opts_t;

typedef struct verb verb_t;

typedef struct {
    cli_opts_t *o;
    const verb_t *verb;
    bq_cli_config_t cfg;
    proto_ctx_t *ctx;
    proto_sock_t *sock;
    uint64_t seq;
    char config_path[PATH_MAX]; /* the config file loaded */
} cli_t;

struct verb {
    const char *name;     /* "job show" for two-word verbs */
    int min_args, max_args;
    unsigned opts;
    int (*run)(cli_t *c);
    const char *usage;
    const char *help;
    unsigned flags;       /* VERB_* */
    store_cmd_fn store;   /* run by verb_store: offline verbs on a store directory */
};

static int err_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int err_usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "barque: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    return 2;
}

static int fail(int code, const char *msg)
{
    fprintf(stderr, "barque: %s\n", msg);
    return bq_err_exit_status(code) ? bq_err_exit_status(code) : 1;
}

/* ---- talking to the coordinator ----------------------------------------------------- */

static int cli_connect(cli_t *c, bq_errbuf_t *e)
{
    char *path = c->config_path;
    int rc = bq_cli_config_find(c->o->config, path, sizeof c->config_path, e);
    if (rc == 0)
        rc = bq_cli_config_load(path, &c->cfg, e);
    if (rc == 0 && c->o->timeout_ms)
        c->cfg.timeout_ms = c->o->timeout_ms;
    if (rc == 0)
        rc = proto_ctx_new(&c->ctx, e);
    return rc;
}

/* The coordinator's socket, made at the first request: a call that needs none (wal-push
 * finding its file archived by the pusher) starts no handshake. */
static int cli_sock(cli_t *c, bq_errbuf_t *e)
{
    if (c->sock)
        return 0;
    return proto_client_new(c->ctx, c->cfg.coordinator, c->cfg.coordinator_public_key,
                            &c->cfg.keys, &c->sock, e);
}

/* Send one request and wait for its reply (matching seq), within the timeout. */
static int cli_call(cli_t *c, bq_msg_cli_request_t *req, bq_msg_t *reply, bq_errbuf_t *e)
{
    int src = cli_sock(c, e);
    if (src)
        return src;
    bq_msg_t m = {.type = BQ_MSG_CLI_REQUEST, .seq = ++c->seq};
    m.u.cli_req = *req;
    int64_t deadline = bq_mono_ms() + c->cfg.timeout_ms;
    int sent = 0;
    for (;;) {
        int64_t left = deadline - bq_mono_ms();
        if (left <= 0)
            break;
        int rc;
        if (!sent) {
            /* ZMQ_IMMEDIATE: the send waits for a completed handshake */
            rc = proto_send(c->sock, NULL, &m, e);
            if (rc == 0)
                sent = 1;
            else if (proto_client_handshake_state(c->sock, e) == BQ_E_AUTH)
                return BQ_E_AUTH;
            else {
                struct timespec ts = {0, 20 * 1000000L};
                nanosleep(&ts, NULL);
            }
            continue;
        }
        rc = proto_recv(c->sock, NULL, reply, (int)(left < 200 ? left : 200), e);
        if (rc == BQ_E_TIMEOUT)
            continue;
        if (rc)
            return rc;
        if (reply->seq != m.seq) {
            proto_msg_clear(reply);
            continue;
        }
        if (reply->type == BQ_MSG_ERROR) {
            int code = reply->u.error.code ? reply->u.error.code : BQ_E_PROTO;
            bq_fail(e, code, "coordinator: %s", reply->u.error.message);
            proto_msg_clear(reply);
            return code;
        }
        if (reply->type != BQ_MSG_CLI_REPLY) {
            proto_msg_clear(reply);
            return bq_fail(e, BQ_E_PROTO, "coordinator answered with message type %d", reply->type);
        }
        if (reply->u.cli_reply.code) {
            int code = reply->u.cli_reply.code;
            bq_fail(e, code, "%s", reply->u.cli_reply.error);
            proto_msg_clear(reply);
            return code;
        }
        return 0;
    }
    if (proto_client_handshake_state(c->sock, e) == BQ_E_AUTH)
        return BQ_E_AUTH;
    return bq_fail(e, BQ_E_TIMEOUT,
                   "the coordinator at %s did not answer within %lld s (is barque-coordinator "
                   "running there? is this host allowed to reach it?)",
                   c->cfg.coordinator, (long long)(c->cfg.timeout_ms / 1000));
}

static int call_simple(cli_t *c, const char *verb, bq_msg_t *reply)
{
    bq_errbuf_t e;
    bq_msg_cli_request_t req;
    memset(&req, 0, sizeof req);
    snprintf(req.verb, sizeof req.verb, "%s", verb);
    req.all = c->o->all;
    int rc = cli_call(c, &req, reply, &e);
    return rc ? fail(rc, e.msg) : 0;
}

/* ---- verbs -------------------------------------------------------------------------- */

static int verb_keygen(cli_t *c)
{
    const char *name = c->o->args[0];
    const char *dir = c->o->dir ? c->o->dir : ".";
    if (!bq_name_valid(name))
        return err_usage("keygen: %s is not a valid name (1-63 of A-Z a-z 0-9 _ . -)", name);
    bq_errbuf_t e;
    if (c->o->store_key) {
        char path[PATH_MAX + 80];
        snprintf(path, sizeof path, "%s/%s.storekey", dir, name);
        int rc = bq_mkdir_p(dir, 0700, &e);
        if (rc == 0)
            rc = store_master_key_generate(path, NULL, &e);
        if (rc)
            return fail(rc, e.msg);
        if (c->o->json)
            out_json_print(stdout, json_pack("{s:s}", "store_key_file", path));
        else
            printf("wrote %s (store master key, mode 0600): name it in store_key_file = of each "
                   "worker's [worker] section; keep a copy somewhere safe: without it no backup "
                   "can be read\n", path);
        return 0;
    }
    bq_keypair_t kp;
    if (bq_keypair_generate(&kp) != 0)
        return fail(BQ_E_KEY, "keygen: could not generate a key pair");
    int rc = bq_keypair_write(dir, name, &kp, &e);
    memset(kp.secret_z85, 0, sizeof kp.secret_z85);
    if (rc)
        return fail(rc, e.msg);
    char sec[PATH_MAX + 80], pub[PATH_MAX + 80];
    snprintf(sec, sizeof sec, "%s/%s.key", dir, name);
    snprintf(pub, sizeof pub, "%s/%s.pub", dir, name);
    if (c->o->json)
        out_json_print(stdout, json_pack("{s:s, s:s, s:s}", "secret_key_file", sec,
                                         "public_key_file", pub, "public_key", kp.public_z85));
    else
        printf("wrote %s (secret, mode 0600) and %s (public key %s)\n", sec, pub, kp.public_z85);
    return 0;
}

static int verb_list(cli_t *c, const char *verb)
{
    bq_msg_t r;
    int rc = call_simple(c, verb, &r);
    if (rc)
        return rc;
    const bq_msg_cli_reply_t *p = &r.u.cli_reply;
    if (c->o->json) {
        json_t *a = json_array();
        if (strcmp(verb, "workers") == 0)
            for (size_t i = 0; i < p->nworkers; i++)
                json_array_append_new(a, out_worker_json(&p->workers[i]));
        else if (strcmp(verb, "clusters") == 0)
            for (size_t i = 0; i < p->nclusters; i++)
                json_array_append_new(a, out_cluster_json(&p->clusters[i]));
        else
            for (size_t i = 0; i < p->njobs; i++)
                json_array_append_new(a, out_job_json(&p->jobs[i]));
        out_json_print(stdout, a);
    } else if (strcmp(verb, "workers") == 0) {
        out_workers_text(stdout, p);
    } else if (strcmp(verb, "clusters") == 0) {
        out_clusters_text(stdout, p);
    } else {
        out_jobs_text(stdout, p);
    }
    proto_msg_clear(&r);
    return 0;
}

static int verb_status(cli_t *c)
{
    bq_msg_t r;
    int rc = call_simple(c, "status", &r);
    if (rc)
        return rc;
    if (c->o->json)
        out_json_print(stdout, out_status_json(c->cfg.coordinator, &r.u.cli_reply));
    else
        out_status_text(stdout, c->cfg.coordinator, &r.u.cli_reply);
    proto_msg_clear(&r);
    return 0;
}

static int verb_workers(cli_t *c) { return verb_list(c, "workers"); }
static int verb_clusters(cli_t *c) { return verb_list(c, "clusters"); }
static int verb_jobs(cli_t *c) { return verb_list(c, "jobs"); }

static int parse_job_id(const char *s, uint64_t *id)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || v == 0 || s[0] == '-')
        return err_usage("%s is not a job id (a positive number)", s);
    *id = v;
    return 0;
}

static int job_get(cli_t *c, uint64_t id, bq_job_t *out, bq_errbuf_t *e)
{
    bq_msg_cli_request_t req;
    memset(&req, 0, sizeof req);
    snprintf(req.verb, sizeof req.verb, "job-show");
    req.job_id = id;
    bq_msg_t r;
    int rc = cli_call(c, &req, &r, e);
    if (rc)
        return rc;
    if (r.u.cli_reply.njobs != 1) {
        proto_msg_clear(&r);
        return bq_fail(e, BQ_E_PROTO, "coordinator sent no job in its reply");
    }
    *out = r.u.cli_reply.jobs[0];
    proto_msg_clear(&r);
    return 0;
}

static int verb_job_show(cli_t *c)
{
    uint64_t id;
    if (parse_job_id(c->o->args[0], &id))
        return 2;
    static bq_job_t j;
    bq_errbuf_t e;
    int rc = job_get(c, id, &j, &e);
    if (rc)
        return fail(rc, e.msg);
    if (c->o->json)
        out_json_print(stdout, out_job_json(&j));
    else
        out_job_text(stdout, &j);
    return 0;
}

static int verb_job_cancel(cli_t *c)
{
    uint64_t id;
    if (parse_job_id(c->o->args[0], &id))
        return 2;
    bq_msg_cli_request_t req;
    memset(&req, 0, sizeof req);
    snprintf(req.verb, sizeof req.verb, "job-cancel");
    req.job_id = id;
    bq_msg_t r;
    bq_errbuf_t e;
    int rc = cli_call(c, &req, &r, &e);
    if (rc)
        return fail(rc, e.msg);
    proto_msg_clear(&r);
    static bq_job_t j;
    rc = job_get(c, id, &j, &e);
    if (rc)
        return fail(rc, e.msg);
    if (c->o->json)
        out_json_print(stdout, out_job_json(&j));
    else if (j.state == BQ_JOB_CANCELLED)
        printf("job %" PRIu64 " cancelled\n", id);
    else
        printf("job %" PRIu64 " is %s: cancel requested from worker %s\n", id,
               bq_job_state_name(j.state), j.worker);
    return 0;
}

/* Wait for job id to end, printing its state changes on stderr when it is a terminal. */
static int job_wait(cli_t *c, uint64_t id, bq_job_t *j, bq_errbuf_t *e)
{
    int64_t deadline = bq_mono_ms() + c->o->wait_timeout_ms;
    bq_job_state_t last = BQ_JOB_NONE;
    int tty = isatty(STDERR_FILENO) && !c->o->json;
    for (int i = 0; bq_mono_ms() < deadline && i < 100000; i++) {
        int rc = job_get(c, id, j, e);
        if (rc)
            return rc;
        if (tty && j->state != last)
            fprintf(stderr, "job %" PRIu64 ": %s%s%s\n", id, bq_job_state_name(j->state),
                    j->worker[0] ? " on " : "", j->worker);
        last = j->state;
        if (bq_job_state_terminal(j->state))
            return 0;
        struct timespec ts = {0, 100 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return bq_fail(e, BQ_E_TIMEOUT,
                   "job %" PRIu64 " is still %s after %lld s (see: barque job show %" PRIu64 ")", id,
                   bq_job_state_name(j->state), (long long)(c->o->wait_timeout_ms / 1000), id);
}

static int submit(cli_t *c, bq_msg_cli_request_t *req, uint64_t *id)
{
    bq_msg_t r;
    bq_errbuf_t e;
    int rc = cli_call(c, req, &r, &e);
    if (rc)
        return fail(rc, e.msg);
    *id = r.u.cli_reply.job_id;
    proto_msg_clear(&r);
    return 0;
}

static int cluster_arg(const char *verb, const char *arg, char *dst, size_t cap);

/* The severity of a finished check job: the worst of its items; a job that did not finish
 * or brought no items is UNKNOWN (the item says why). */
static int check_severity(const bq_job_t *j)
{
    if (!j->has_check || j->check.nitems == 0)
        return BQ_SEV_UNKNOWN;
    int sev = BQ_SEV_OK;
    for (size_t i = 0; i < j->check.nitems; i++) {
        const bq_check_item_t *it = &j->check.items[i];
        int s = it->ok ? BQ_SEV_OK : it->severity ? it->severity : BQ_SEV_CRITICAL;
        /* Nagios' order of badness: OK < WARNING < UNKNOWN < CRITICAL */
        if ((s == BQ_SEV_CRITICAL) || (s == BQ_SEV_UNKNOWN && sev != BQ_SEV_CRITICAL) ||
            (s == BQ_SEV_WARNING && sev == BQ_SEV_OK))
            sev = s;
    }
    return sev;
}

static int sev_worse(int a, int b)
{
    static const int rank[4] = {0, 1, 3, 2}; /* OK, WARNING, CRITICAL, UNKNOWN */
    return rank[b & 3] > rank[a & 3] ? b : a;
}

/* check [CLUSTER|all] [--nagios] [--json]: one check job per cluster (all of them for "all"
 * or none given), waited for together within --wait-timeout; the coordinator adds its own
 * items (backups, WAL, redundancy, failed jobs, stores) and the fleet's (workers per site,
 * catalog). Exit: 0 all OK, 1 otherwise; with --nagios 0/1/2/3 for OK/WARNING/CRITICAL/UNKNOWN. */
static int verb_check(cli_t *c)
{
    bq_msg_cli_request_t req;
    memset(&req, 0, sizeof req);
    snprintf(req.verb, sizeof req.verb, "check");
    const char *arg = c->o->nargs ? c->o->args[0] : "all";
    int all = strcmp(arg, "all") == 0;
    if (!all && cluster_arg("check", arg, req.cluster, sizeof req.cluster))
        return 2;
    bq_msg_t r;
    bq_errbuf_t e;
    int rc = cli_call(c, &req, &r, &e);
    if (rc) {
        if (c->o->nagios) {
            printf("BARQUE UNKNOWN - %s\n", e.msg);
            return 3;
        }
        return fail(rc, e.msg);
    }
    bq_msg_cli_reply_t *p = &r.u.cli_reply;
    size_t n = p->njob_ids ? p->njob_ids : (p->job_id ? 1 : 0);
    bq_job_t *jobs = calloc(n ? n : 1, sizeof *jobs);
    if (!jobs) {
        proto_msg_clear(&r);
        return fail(BQ_E_NOMEM, "out of memory");
    }
    int64_t deadline = bq_mono_ms() + c->o->wait_timeout_ms;
    for (size_t i = 0; i < n; i++) {
        uint64_t id = p->njob_ids ? p->job_ids[i] : p->job_id;
        int64_t left = deadline - bq_mono_ms();
        int64_t saved = c->o->wait_timeout_ms;
        c->o->wait_timeout_ms = left > 0 ? left : 1;
        bq_errbuf_t we;
        int wrc = job_wait(c, id, &jobs[i], &we);
        c->o->wait_timeout_ms = saved;
        if (wrc == BQ_E_TIMEOUT || (wrc == 0 && !jobs[i].has_check)) {
            /* it did not run (no worker took it) or brought no items: say why as an item */
            bq_job_t *j = &jobs[i];
            if (wrc) {
                j->id = id;
                snprintf(j->cluster, sizeof j->cluster, "%s",
                         i < p->nclusters ? p->clusters[i].name : req.cluster);
            }
            j->has_check = 1;
            j->check.nitems = 1;
            bq_check_item_t *it = &j->check.items[0];
            snprintf(it->name, sizeof it->name, "check job");
            it->ok = 0;
            it->severity = BQ_SEV_UNKNOWN;
            snprintf(it->detail, sizeof it->detail, "%s", wrc ? we.msg : j->error[0] ? j->error
                                                                        : "ended with no items");
        } else if (wrc) {
            free(jobs);
            proto_msg_clear(&r);
            return c->o->nagios ? (printf("BARQUE UNKNOWN - %s\n", we.msg), 3) : fail(wrc, we.msg);
        }
    }
    int sev = BQ_SEV_OK;
    size_t count[4] = {0, 0, 0, 0};
    for (size_t i = 0; i < n; i++) {
        int s = check_severity(&jobs[i]);
        count[s]++;
        sev = sev_worse(sev, s);
    }
    int fleet_sev = BQ_SEV_OK;
    if (p->has_fleet) {
        bq_job_t fj;
        memset(&fj, 0, sizeof fj);
        fj.has_check = 1;
        fj.check = p->fleet;
        fleet_sev = p->fleet.nitems ? check_severity(&fj) : BQ_SEV_OK;
        sev = sev_worse(sev, fleet_sev);
    }
    if (c->o->nagios) {
        /* one status line: the first problems, then perfdata */
        char msg[1024] = "";
        size_t used = 0;
        for (size_t i = 0; i < n + 1 && used < sizeof msg - 64; i++) {
            const bq_check_result_t *cr = i < n ? &jobs[i].check : (p->has_fleet ? &p->fleet : NULL);
            const char *who = i < n ? jobs[i].cluster : "fleet";
            for (size_t k = 0; cr && k < cr->nitems && used < sizeof msg - 64; k++) {
                if (cr->items[k].ok)
                    continue;
                int w = snprintf(msg + used, sizeof msg - used, "%s%s %s: %s", used ? "; " : "",
                                 who, cr->items[k].name, cr->items[k].detail);
                used += w > 0 ? (size_t)w : 0;
            }
        }
        if (used >= sizeof msg)
            used = sizeof msg - 1;
        printf("BARQUE %s - %s%s%zu of %zu clusters OK | clusters=%zu ok=%zu warning=%zu "
               "critical=%zu unknown=%zu", bq_severity_name(sev), msg, used ? "; " : "",
               count[BQ_SEV_OK], n, n, count[BQ_SEV_OK], count[BQ_SEV_WARNING],
               count[BQ_SEV_CRITICAL], count[BQ_SEV_UNKNOWN]);
        for (size_t i = 0; i < n; i++)
            printf(" '%s_status'=%d;1;2;0;3", jobs[i].cluster, check_severity(&jobs[i]));
        printf("\n");
    } else if (c->o->json) {
        json_t *arr = json_array();
        for (size_t i = 0; i < n; i++) {
            int s = check_severity(&jobs[i]);
            json_array_append_new(arr, json_pack("{s:s, s:b, s:s, s:o}", "cluster", jobs[i].cluster,
                                                 "ok", s == BQ_SEV_OK, "status", bq_severity_name(s),
                                                 "job", out_job_json(&jobs[i])));
        }
        json_t *o;
        if (!all && n == 1) { /* one cluster: its object, as before, with the fleet */
            o = json_incref(json_array_get(arr, 0));
            json_decref(arr);
        } else {
            o = json_pack("{s:s, s:b, s:o}", "status", bq_severity_name(sev), "ok", sev == BQ_SEV_OK,
                          "clusters", arr);
        }
        if (p->has_fleet)
            json_object_set_new(o, "fleet", out_check_json(&p->fleet));
        json_object_set_new(o, "overall", json_string(bq_severity_name(sev)));
        out_json_print(stdout, o);
    } else {
        for (size_t i = 0; i < n; i++)
            out_check_text(stdout, jobs[i].cluster, &jobs[i]);
        if (p->has_fleet && p->fleet.nitems) {
            printf("Fleet:\n");
            for (size_t k = 0; k < p->fleet.nitems; k++) {
                const bq_check_item_t *it = &p->fleet.items[k];
                printf("  %-20s %-7s %s\n", it->name,
                       it->ok ? "OK" : it->severity == BQ_SEV_WARNING ? "WARNING" : "FAILED",
                       it->detail);
            }
        }
        if (n != 1 || all)
            printf("check: %s (%zu of %zu clusters OK)\n", bq_severity_name(sev), count[BQ_SEV_OK], n);
    }
    free(jobs);
    proto_msg_clear(&r);
    if (c->o->nagios)
        return sev;
    return sev == BQ_SEV_OK ? 0 : 1;
}

/* metrics: the Prometheus text exposition (cli/metrics.c) of the coordinator's view. */
static int verb_metrics(cli_t *c)
{
    bq_msg_cli_request_t req;
    memset(&req, 0, sizeof req);
    snprintf(req.verb, sizeof req.verb, "metrics");
    bq_msg_t r;
    bq_errbuf_t e;
    int rc = cli_call(c, &req, &r, &e);
    if (rc) {
        /* barque_up 0 so that a scraper sees the coordinator down, not stale figures */
        printf("# HELP barque_up Whether the coordinator answered (1) or not (0).\n"
               "# TYPE barque_up gauge\nbarque_up 0\n");
        fprintf(stderr, "barque: %s\n", e.msg);
        return 1;
    }
    const bq_msg_cli_reply_t *p = &r.u.cli_reply;
    metrics_check_t *checks = calloc(p->nclusters ? p->nclusters : 1, sizeof *checks);
    size_t nchecks = 0;
    for (size_t i = 0; checks && i < p->nclusters; i++) {
        if (!p->clusters[i].check_ms)
            continue;
        snprintf(checks[nchecks].cluster, sizeof checks[nchecks].cluster, "%s", p->clusters[i].name);
        checks[nchecks].status = p->clusters[i].check_status;
        checks[nchecks].time_ms = p->clusters[i].check_ms;
        checks[nchecks].nfailed = p->clusters[i].check_failed;
        nchecks++;
    }
    metrics_input_t in = {
        .clusters = p->clusters, .nclusters = p->nclusters, .backups = p->backups,
        .nbackups = p->nbackups, .workers = p->workers, .nworkers = p->nworkers,
        .checks = checks, .nchecks = nchecks, .now_ms = bq_wall_ms(),
    };
    rc = metrics_write(stdout, &in) == 0 ? 0 : 1;
    free(checks);
    proto_msg_clear(&r);
    return rc;
}

/* keep CLUSTER ID --target full|standalone | --release | --status */
static int verb_keep(cli_t *c)
{
    bq_msg_cli_request_t req;
    memset(&req, 0, sizeof req);
    snprintf(req.verb, sizeof req.verb, "keep");
    if (cluster_arg("keep", c->o->args[0], req.cluster, sizeof req.cluster))
        return 2;
    if (!bq_backup_id_valid(c->o->args[1]))
        return err_usage("keep: %s is not a backup id (YYYYMMDDTHHMMSS)", c->o->args[1]);
    snprintf(req.backup_id, sizeof req.backup_id, "%s", c->o->args[1]);
    int modes = !!c->o->keep_target + c->o->keep_release + c->o->keep_status;
    if (modes != 1)
        return err_usage("keep: give exactly one of --target full|standalone, --release, --status");
    if (c->o->keep_target && strcmp(c->o->keep_target, "full") != 0 &&
        strcmp(c->o->keep_target, "standalone") != 0)
        return err_usage("keep: --target must be full or standalone, not %s", c->o->keep_target);
    snprintf(req.keep, sizeof req.keep, "%s",
             c->o->keep_target ? c->o->keep_target : c->o->keep_release ? "release" : "status");
    bq_msg_t r;
    bq_errbuf_t e;
    int rc = cli_call(c, &req, &r, &e);
    if (rc)
        return fail(rc, e.msg);
    const bq_backup_t *b = r.u.cli_reply.nbackups ? &r.u.cli_reply.backups[0] : NULL;
    const char *k = !b ? "?" : b->keep == 1 ? "full" : b->keep == 2 ? "standalone" : "nokeep";
    if (c->o->json)
        out_json_print(stdout, json_pack("{s:s, s:s, s:s, s:s}", "cluster", req.cluster, "backup_id",
                                         req.backup_id, "keep", k, "retention",
                                         b && b->retention[0] ? b->retention : "-"));
    else if (c->o->keep_status)
        printf("%s\n", k);
    else
        printf("backup %s of cluster %s: keep %s (retention status %s)\n", req.backup_id,
               req.cluster, k, b && b->retention[0] ? b->retention : "-");
    proto_msg_clear(&r);
    return 0;
}

static void time_utc(int64_t ms, char *buf, size_t len)
{
    if (ms <= 0) {
        snprintf(buf, len, "-");
        return;
    }
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, len, "%Y-%m-%d %H:%M:%S UTC", &tm);
}

/* schedule [CLUSTER] [--json] */
static int verb_schedule(cli_t *c)
{
    bq_msg_cli_request_t req;
    memset(&req, 0, sizeof req);
    snprintf(req.verb, sizeof req.verb, "schedule");
    if (c->o->nargs && cluster_arg("schedule", c->o->args[0], req.cluster, sizeof req.cluster))
        return 2;
    bq_msg_t r;
    bq_errbuf_t e;
    int rc = cli_call(c, &req, &r, &e);
    if (rc)
        return fail(rc, e.msg);
    const bq_msg_cli_reply_t *p = &r.u.cli_reply;
    if (c->o->json) {
        json_t *a = json_array();
        for (size_t i = 0; i < p->nschedule; i++) {
            const bq_schedule_row_t *s = &p->schedule[i];
            char last[40], next[40];
            time_utc(s->last_slot_ms, last, sizeof last);
            time_utc(s->next_ms, next, sizeof next);
            json_array_append_new(a, json_pack("{s:s, s:s, s:s, s:s, s:s, s:b, s:s, s:s, s:s}",
                                               "cluster", s->cluster, "site", s->site, "schedule",
                                               s->schedule, "last_slot", last, "next", next, "due",
                                               s->due, "why", s->why, "last_backup", s->last_backup,
                                               "retention_policy", s->retention));
        }
        out_json_print(stdout, a);
    } else {
        printf("%-20s %-10s %-28s %-24s %-24s %s\n", "CLUSTER", "SITE", "SCHEDULE", "LAST SLOT",
               "NEXT", "WHY");
        for (size_t i = 0; i < p->nschedule; i++) {
            const bq_schedule_row_t *s = &p->schedule[i];
            char last[40], next[40];
            time_utc(s->last_slot_ms, last, sizeof last);
            if (s->due)
                snprintf(next, sizeof next, "now");
            else
                time_utc(s->next_ms >= INT64_MAX / 2 ? 0 : s->next_ms, next, sizeof next);
            printf("%-20s %-10s %-28s %-24s %-24s %s\n", s->cluster, s->site, s->schedule, last,
                   next, s->why);
        }
        if (!p->nschedule)
            printf("(no clusters in the coordinator's config)\n");
    }
    proto_msg_clear(&r);
    return 0;
}

/* switch-wal CLUSTER [--force] [--archive]: close the current segment (a worker of the
 * cluster's site runs pg_switch_wal); with --archive, wait until the WAL index has it. */
static int verb_switch_wal(cli_t *c)
{
    bq_msg_cli_request_t req;
    memset(&req, 0, sizeof req);
    snprintf(req.verb, sizeof req.verb, "switch-wal");
    if (cluster_arg("switch-wal", c->o->args[0], req.cluster, sizeof req.cluster))
        return 2;
    req.force = c->o->force;
    uint64_t id = 0;
    int rc = submit(c, &req, &id);
    if (rc)
        return rc;
    static bq_job_t j;
    bq_errbuf_t e;
    if ((rc = job_wait(c, id, &j, &e)) != 0)
        return fail(rc, e.msg);
    if (j.state != BQ_JOB_SUCCEEDED || !j.wal_file[0]) {
        char msg[BQ_TEXT_MAX + 64];
        snprintf(msg, sizeof msg, "switch-wal of cluster %s: job %" PRIu64 " ended %s: %s",
                 c->o->args[0], id, bq_job_state_name(j.state), j.error);
        return fail(BQ_E_PG, msg);
    }
    int archived = -1; /* -1: not asked */
    int64_t waited = 0;
    if (c->o->archive) {
        memset(&req, 0, sizeof req);
        snprintf(req.verb, sizeof req.verb, "wal-file");
        snprintf(req.cluster, sizeof req.cluster, "%s", c->o->args[0]);
        snprintf(req.wal_file, sizeof req.wal_file, "%s", j.wal_file);
        int64_t t0 = bq_mono_ms(), deadline = t0 + c->o->wait_timeout_ms;
        for (archived = 0; !archived && bq_mono_ms() < deadline;) {
            bq_msg_t r;
            rc = cli_call(c, &req, &r, &e);
            if (rc == 0) {
                archived = 1;
                proto_msg_clear(&r);
            } else if (rc != BQ_E_NOTFOUND) {
                return fail(rc, e.msg);
            } else {
                struct timespec ts = {0, 250 * 1000000L};
                nanosleep(&ts, NULL);
            }
        }
        waited = bq_mono_ms() - t0;
    }
    if (c->o->json) {
        json_t *o = json_pack("{s:s, s:s, s:I}", "cluster", c->o->args[0], "wal_file", j.wal_file,
                              "job_id", (json_int_t)id);
        json_object_set_new(o, "archived", archived < 0 ? json_null() : json_boolean(archived));
        if (archived >= 0)
            json_object_set_new(o, "archive_wait_ms", json_integer((json_int_t)waited));
        out_json_print(stdout, o);
    } else {
        printf("switched WAL of cluster %s: %s closed", c->o->args[0], j.wal_file);
        if (archived > 0)
            printf(", archived after %.1f s", (double)waited / 1000);
        printf("\n");
    }
    if (archived == 0) {
        char msg[256];
        snprintf(msg, sizeof msg, "WAL file %s of cluster %s is not archived after %lld s",
                 j.wal_file, c->o->args[0], (long long)(c->o->wait_timeout_ms / 1000));
        return fail(BQ_E_TIMEOUT, msg);
    }
    return 0;
}

static int verb_job_sleep(cli_t *c)
{
    bq_msg_cli_request_t req;
    memset(&req, 0, sizeof req);
    snprintf(req.verb, sizeof req.verb, "sleep");
    if (snprintf(req.site, sizeof req.site, "%s", c->o->args[0]) >= (int)sizeof req.site)
        return err_usage("job sleep: site name too long");
    if (bq_duration_parse(c->o->args[1], &req.sleep_ms) != 0)
        return err_usage("job sleep: %s is not a duration (e.g. 500ms, 5s)", c->o->args[1]);
    req.count = c->o->count;
    if (req.count > 1 && c->o->wait)
        return err_usage("job sleep: --wait waits for one job; leave it out with --count");
    uint64_t id = 0;
    int rc = submit(c, &req, &id);
    if (rc)
        return rc;
    static bq_job_t j;
    if (c->o->wait) {
        bq_errbuf_t e;
        rc = job_wait(c, id, &j, &e);
        if (rc)
            return fail(rc, e.msg);
    } else {
        memset(&j, 0, sizeof j);
        j.id = id;
        j.state = BQ_JOB_QUEUED;
    }
    if (c->o->json)
        out_json_print(stdout, json_pack("{s:I, s:s}", "job_id", (json_int_t)id, "state",
                                         bq_job_state_name(j.state)));
    else
        printf("job %" PRIu64 " %s\n", id, bq_job_state_name(j.state));
    return (!c->o->wait || j.state == BQ_JOB_SUCCEEDED) ? 0 : 1;
}

/* ---- backups ------------------------------------------------------------------------ */

#define BACKUP_POLL_MS 1000
#define BACKUP_PLAIN_EVERY_MS 10000
#define BACKUP_WAIT_POLLS_MAX 100000000L /* ~3 years at one a second: no timeout of its own */

/* One backup of cluster by id ("latest", "oldest" or an id) from the coordinator; with
 * last_test, also its last restore test (*tested 0 when it has none). */
static int backup_get(cli_t *c, const char *cluster, const char *id, bq_backup_t *out,
                      bq_restore_test_t *last_test, int *tested, bq_errbuf_t *e)
{
    bq_msg_cli_request_t req;
    memset(&req, 0, sizeof req);
    snprintf(req.verb, sizeof req.verb, "show-backup");
    snprintf(req.cluster, sizeof req.cluster, "%s", cluster);
    snprintf(req.backup_id, sizeof req.backup_id, "%s", id);
    bq_msg_t r;
    int rc = cli_call(c, &req, &r, e);
    if (rc)
        return rc;
    if (r.u.cli_reply.nbackups != 1) {
        proto_msg_clear(&r);
        return bq_fail(e, BQ_E_PROTO, "coordinator sent no backup in its reply");
    }
    *out = r.u.cli_reply.backups[0];
    if (last_test) {
        *tested = r.u.cli_reply.nrtests > 0;
        if (*tested)
            *last_test = r.u.cli_reply.rtests[0];
    }
    proto_msg_clear(&r);
    return 0;
}

static int cluster_arg(const char *verb, const char *arg, char *dst, size_t cap)
{
    if (!bq_name_valid(arg))
        return err_usage("%s: %s is not a valid cluster name (1-63 of A-Z a-z 0-9 _ . -)", verb,
                         arg);
    snprintf(dst, cap, "%s", arg);
    return 0;
}

/* What --wait shows while a backup runs: rate over the current attempt's samples. */
typedef struct {
    int tty, json;
    char id[BQ_BACKUP_ID_MAX];   /* the attempt's backup id */
    int64_t t0;                  /* first sample of this attempt (monotonic) */
    uint64_t d0;
    int64_t last_plain;          /* when the last plain line was printed */
    uint64_t last_done;
    int drawn;                   /* a progress bar is on the terminal's line */
    char label[BQ_TEXT_MAX];     /* plain lines: what is watched ("" = the backup) */
    int states;                  /* job_follow: say each new state of the job */
} backup_watch_t;

static void watch_clear_line(backup_watch_t *w)
{
    if (w->drawn) {
        fputs("\r\033[K", stdout);
        fflush(stdout);
        w->drawn = 0;
    }
}

static void watch_progress(backup_watch_t *w, const char *cluster, const bq_job_t *j)
{
    int64_t now = bq_mono_ms();
    uint64_t done = j->progress_done, total = j->progress_total;
    if (!w->t0 || done < w->d0) {
        w->t0 = now;
        w->d0 = done;
    }
    double secs = (double)(now - w->t0) / 1000;
    double rate = secs >= 1 ? (double)(done - w->d0) / secs : 0; /* bytes/s */
    double pct = total ? 100.0 * (double)done / (double)total : 0;
    if (pct > 100)
        pct = 100;
    double eta = rate > 0 && total > done ? (double)(total - done) / rate : -1;
    char bd[32], bt[32], etas[32];
    out_bytes(done, bd, sizeof bd);
    out_bytes(total, bt, sizeof bt);
    if (eta >= 0)
        out_duration((int64_t)(eta * 1000), etas, sizeof etas);
    else
        snprintf(etas, sizeof etas, "?");
    if (w->json) {
        if (done == w->last_done && w->last_plain)
            return;
        w->last_done = done;
        w->last_plain = now;
        json_t *o = json_pack("{s:s, s:I, s:s, s:s, s:I, s:I}", "event", "progress", "job_id",
                              (json_int_t)j->id, "cluster", cluster, "backup_id", w->id,
                              "done_bytes", (json_int_t)done, "total_bytes", (json_int_t)total);
        json_object_set_new(o, "percent", total ? json_real(pct) : json_null());
        json_object_set_new(o, "rate_bytes_per_s", json_real(rate));
        json_object_set_new(o, "eta_s", eta >= 0 ? json_integer((json_int_t)eta) : json_null());
        out_json_line(stdout, o);
    } else if (w->tty) {
        char bar[31];
        int fill = total ? (int)(pct * 30 / 100) : 0;
        for (int i = 0; i < 30; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[30] = '\0';
        printf("\r\033[K[%s] %5.1f%%  %s of %s  %.1f MB/s  ETA %s", bar, pct, bd,
               total ? bt : "?", rate / 1e6, etas);
        fflush(stdout);
        w->drawn = 1;
    } else if (!w->last_plain || now - w->last_plain >= BACKUP_PLAIN_EVERY_MS) {
        w->last_plain = now;
        if (w->label[0])
            printf("%s: %.1f%% (%s of %s), %.1f MB/s, ETA %s\n", w->label, pct, bd,
                   total ? bt : "?", rate / 1e6, etas);
        else
            printf("backup %s of cluster %s: %.1f%% (%s of %s), %.1f MB/s, ETA %s\n", w->id,
                   cluster, pct, bd, total ? bt : "?", rate / 1e6, etas);
        fflush(stdout);
    }
}

/* The job moved on to a new attempt: say how the previous one's backup ended. */
static void watch_attempt_failed(backup_watch_t *w, const bq_backup_t *b)
{
    if (w->json) {
        out_json_line(stdout, json_pack("{s:s, s:I, s:s, s:o}", "event", "attempt_failed",
                                        "job_id", (json_int_t)b->job_id, "cluster", b->cluster,
                                        "backup", out_backup_json(b)));
        return;
    }
    watch_clear_line(w);
    printf("backup %s of cluster %s %s (attempt %u): %s\n", b->id, b->cluster,
           bq_backup_state_name(b->state), b->attempt, b->error[0] ? b->error : "-");
    fflush(stdout);
}

/* A new attempt took the job: say which backup it writes. */
static void watch_attempt(backup_watch_t *w, const char *cluster, const bq_job_t *j)
{
    int retry = w->id[0] != '\0';
    snprintf(w->id, sizeof w->id, "%s", j->backup_id);
    w->t0 = 0;
    w->last_plain = 0;
    w->last_done = 0;
    if (w->json) {
        out_json_line(stdout, json_pack("{s:s, s:I, s:s, s:s, s:i, s:s}", "event", "started",
                                        "job_id", (json_int_t)j->id, "cluster", cluster,
                                        "backup_id", w->id, "attempt", (int)j->attempt, "worker",
                                        j->worker));
        return;
    }
    watch_clear_line(w);
    printf("backup %s of cluster %s: %s on worker %s (job %" PRIu64 ", attempt %u)\n", w->id,
           cluster, retry ? "retrying" : "started", j->worker[0] ? j->worker : "-", j->id,
           j->attempt);
    fflush(stdout);
}

/* --wait: follow job_id until it ends; exit status 0 when its backup is DONE. */
/* The pause before poll i + 1 of a job being followed: 100 ms for the first 10 s, 250 ms
 * for the next 50 s, then BACKUP_POLL_MS: a short job is seen ending within 0.1 s, a long
 * one costs a request a second. (A poll is one small request; the coordinator answers
 * thousands a second.) */
#define BACKUP_WAL_WAIT_MS (10 * 60 * 1000) /* --wait: at most this long for the WAL */

static void poll_pause(long i)
{
    long ms = i < 100 ? 100 : i < 300 ? 250 : BACKUP_POLL_MS;
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int backup_wait(cli_t *c, const char *cluster, uint64_t job_id)
{
    static bq_job_t j;
    static bq_backup_t b;
    bq_errbuf_t e;
    backup_watch_t w;
    memset(&w, 0, sizeof w);
    w.json = c->o->json;
    w.tty = !w.json && isatty(STDOUT_FILENO);
    int rc = 0;
    for (long i = 0; i < BACKUP_WAIT_POLLS_MAX; i++) {
        rc = job_get(c, job_id, &j, &e);
        if (rc)
            break;
        if (j.backup_id[0] && strcmp(j.backup_id, w.id) != 0 &&
            (j.state == BQ_JOB_ASSIGNED || j.state == BQ_JOB_RUNNING ||
             bq_job_state_terminal(j.state))) {
            if (w.id[0] && backup_get(c, cluster, w.id, &b, NULL, NULL, &e) == 0)
                watch_attempt_failed(&w, &b);
            watch_attempt(&w, cluster, &j);
        }
        if (j.state == BQ_JOB_RUNNING && w.id[0] && (j.progress_done || j.progress_total))
            watch_progress(&w, cluster, &j);
        if (bq_job_state_terminal(j.state))
            break;
        poll_pause(i);
    }
    watch_clear_line(&w);
    if (rc)
        return fail(rc, e.msg);
    if (!bq_job_state_terminal(j.state))
        return fail(BQ_E_TIMEOUT, "gave up waiting for the backup job");
    if (!j.backup_id[0]) {
        char msg[BQ_TEXT_MAX + 128];
        snprintf(msg, sizeof msg, "backup job %" PRIu64 " of cluster %s ended %s before a worker "
                 "took it%s%s", job_id, cluster, bq_job_state_name(j.state),
                 j.error[0] ? ": " : "", j.error);
        if (w.json)
            out_json_line(stdout, json_pack("{s:s, s:b, s:I, s:s, s:n, s:s}", "event", "done",
                                            "ok", 0, "job_id", (json_int_t)job_id, "cluster",
                                            cluster, "backup", "error", msg));
        return fail(BQ_E_STATE, msg);
    }
    rc = backup_get(c, cluster, j.backup_id, &b, NULL, NULL, &e);
    if (rc)
        return fail(rc, e.msg);
    /* As Barman's --wait: a backup whose data is whole waits for its WAL in the archive. */
    int64_t wal_deadline = bq_mono_ms() + BACKUP_WAL_WAIT_MS;
    int said = 0;
    while (j.state == BQ_JOB_SUCCEEDED && b.state == BQ_BACKUP_WAITING_FOR_WALS &&
           bq_mono_ms() < wal_deadline) {
        if (!said && !w.json)
            fprintf(stderr, "backup %s of cluster %s: data done, %s\n", b.id, cluster, b.error);
        else if (!said)
            out_json_line(stdout, json_pack("{s:s, s:s, s:s, s:s}", "event", "waiting_for_wals",
                                            "cluster", cluster, "backup_id", b.id, "detail",
                                            b.error));
        said = 1;
        struct timespec ts = {0, 500 * 1000000L};
        nanosleep(&ts, NULL);
        if ((rc = backup_get(c, cluster, j.backup_id, &b, NULL, NULL, &e)) != 0)
            return fail(rc, e.msg);
    }
    int ok = j.state == BQ_JOB_SUCCEEDED && b.state == BQ_BACKUP_DONE;
    char msg[BQ_TEXT_MAX + 256];
    if (ok)
        msg[0] = '\0';
    else
        snprintf(msg, sizeof msg, "backup %s of cluster %s %s: %s", b.id, cluster,
                 bq_backup_state_name(b.state),
                 b.error[0] ? b.error : j.error[0] ? j.error : bq_job_state_name(j.state));
    if (w.json) {
        json_t *o = json_pack("{s:s, s:b, s:I, s:s, s:o}", "event", "done", "ok", ok, "job_id",
                              (json_int_t)job_id, "cluster", cluster, "backup",
                              out_backup_json(&b));
        json_object_set_new(o, "error", ok ? json_null() : json_string(msg));
        out_json_line(stdout, o);
    } else if (ok) {
        char size[32], stored[32], dur[32];
        printf("backup %s of cluster %s DONE: %s in %s (stored %s), WAL %s to %s, worker %s\n",
               b.id, cluster, out_bytes(b.data_bytes, size, sizeof size),
               out_duration(b.duration_ms, dur, sizeof dur),
               out_bytes(b.stored_bytes, stored, sizeof stored), b.wal_begin[0] ? b.wal_begin : "-",
               b.wal_end[0] ? b.wal_end : "-", b.worker);
    }
    return ok ? 0 : fail(BQ_E_STATE, msg);
}

static int verb_backup(cli_t *c)
{
    bq_msg_cli_request_t req;
    memset(&req, 0, sizeof req);
    snprintf(req.verb, sizeof req.verb, "backup");
    if (cluster_arg("backup", c->o->args[0], req.cluster, sizeof req.cluster))
        return 2;
    snprintf(req.checkpoint, sizeof req.checkpoint, "%s", c->o->spread ? "spread" : "fast");
    uint64_t id = 0;
    int rc = submit(c, &req, &id);
    if (rc)
        return rc;
    if (c->o->json && c->o->wait)
        out_json_line(stdout, json_pack("{s:s, s:I, s:s}", "event", "queued", "job_id",
                                        (json_int_t)id, "cluster", req.cluster));
    else if (c->o->wait)
        printf("backup job %" PRIu64 " of cluster %s queued\n", id, req.cluster);
    if (c->o->wait)
        return backup_wait(c, req.cluster, id);

    /* The backup id comes when a worker takes the job: give dispatch a moment. */
    static bq_job_t j;
    bq_errbuf_t e;
    for (int i = 0; i < 20; i++) {
        rc = job_get(c, id, &j, &e);
        if (rc)
            return fail(rc, e.msg);
        if (j.backup_id[0] || bq_job_state_terminal(j.state))
            break;
        struct timespec ts = {0, 100 * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (c->o->json) {
        json_t *o = json_pack("{s:I, s:s, s:s}", "job_id", (json_int_t)id, "cluster", req.cluster,
                              "state", bq_job_state_name(j.state));
        json_object_set_new(o, "backup_id", j.backup_id[0] ? json_string(j.backup_id) : json_null());
        json_object_set_new(o, "worker", j.worker[0] ? json_string(j.worker) : json_null());
        out_json_print(stdout, o);
    } else if (j.backup_id[0]) {
        printf("backup job %" PRIu64 " of cluster %s: backup %s on worker %s (follow it with: "
               "barque job show %" PRIu64 ")\n", id, req.cluster, j.backup_id,
               j.worker[0] ? j.worker : "-", id);
    } else {
        printf("backup job %" PRIu64 " of cluster %s queued: no worker has taken it yet, so it "
               "has no backup id (follow it with: barque job show %" PRIu64 ")\n", id,
               req.cluster, id);
    }
    return 0;
}

/* A job seen in a new state (w->states): "LABEL: RUNNING on worker W (job N, attempt A)", or
 * a JSON "state" event. */
static void watch_state(backup_watch_t *w, const bq_job_t *j)
{
    if (w->json) {
        json_t *o = json_pack("{s:s, s:I, s:s, s:i}", "event", "state", "job_id",
                              (json_int_t)j->id, "state", bq_job_state_name(j->state), "attempt",
                              (int)j->attempt);
        json_object_set_new(o, "worker", j->worker[0] ? json_string(j->worker) : json_null());
        out_json_line(stdout, o);
        return;
    }
    watch_clear_line(w);
    printf("%s: %s", w->label, bq_job_state_name(j->state));
    if (j->worker[0])
        printf(" on worker %s", j->worker);
    printf(" (job %" PRIu64 ", attempt %u)\n", j->id, j->attempt);
    fflush(stdout);
}

/* Follow job_id until it ends, drawing its progress with w (a bar on a terminal, a plain line
 * every 10 s otherwise, JSON events with --json) and, when w->states, each new state; *j is
 * the job as it ended. No time limit of its own (restores take hours), but a coordinator that
 * stops answering ends it (job_get's timeout); at most a month of 1 s polls. */
static int job_follow(cli_t *c, const char *cluster, uint64_t job_id, backup_watch_t *w,
                      bq_job_t *j, bq_errbuf_t *e)
{
    int rc = 0;
    bq_job_state_t last = BQ_JOB_NONE;
    char phase[BQ_DETAIL_MAX] = "";
    for (int i = 0; i < 31 * 86400; i++) {
        if ((rc = job_get(c, job_id, j, e)) != 0)
            break;
        if (w->states && j->state != last)
            watch_state(w, j);
        last = j->state;
        /* a restore test's phases (restoring, starting, replaying, checking) as they come */
        if (j->type == BQ_JOB_RESTORE_TEST && j->progress_message[0] &&
            strcmp(j->progress_message, phase) != 0 && !bq_job_state_terminal(j->state)) {
            snprintf(phase, sizeof phase, "%s", j->progress_message);
            watch_clear_line(w);
            if (w->json) {
                json_t *o = json_pack("{s:s, s:I, s:s}", "event", "phase", "job_id",
                                      (json_int_t)j->id, "message", phase);
                out_json_line(stdout, o); /* takes o */
            } else {
                printf("%s: %s\n", w->label[0] ? w->label : "job", phase);
                fflush(stdout);
            }
        }
        if (bq_job_state_terminal(j->state))
            break;
        if (j->state == BQ_JOB_RUNNING && j->progress_total)
            watch_progress(w, cluster, j);
        poll_pause(i);
    }
    watch_clear_line(w);
    if (rc == 0 && !bq_job_state_terminal(j->state))
        rc = bq_fail(e, BQ_E_TIMEOUT, "gave up waiting for job %" PRIu64 " (see: barque job show %"
                     PRIu64 ")", job_id, job_id);
    return rc;
}

/* recover --wait: follow the restore job to its end. */
static int recover_wait(cli_t *c, const char *cluster, const char *id, uint64_t job_id,
                        const char *dest)
{
    bq_errbuf_t e;
    static bq_job_t j;
    backup_watch_t w;
    memset(&w, 0, sizeof w);
    w.tty = isatty(STDOUT_FILENO) && !c->o->json;
    w.json = c->o->json;
    snprintf(w.id, sizeof w.id, "%s", id);
    snprintf(w.label, sizeof w.label, "restore of backup %s of cluster %s to %s", id, cluster,
             dest);
    int rc = job_follow(c, cluster, job_id, &w, &j, &e);
    if (rc != 0)
        return fail(rc, e.msg);
    const bq_restore_result_t *r = &j.restore;
    if (c->o->json) {
        json_t *o = json_pack("{s:s, s:I, s:s, s:s, s:s, s:s, s:s}", "event", "done", "job_id",
                              (json_int_t)job_id, "cluster", cluster, "backup_id", id, "dest",
                              dest, "worker", j.worker, "state", bq_job_state_name(j.state));
        if (j.state != BQ_JOB_SUCCEEDED)
            json_object_set_new(o, "error", json_string(j.error));
        if (j.has_restore)
            json_object_set_new(o, "restore", json_pack("{s:I, s:I, s:I, s:I, s:I, s:s, s:I, s:s?}",
                "files_written", (json_int_t)r->files_written, "files_unchanged",
                (json_int_t)r->files_unchanged, "files_removed", (json_int_t)r->files_removed,
                "bytes", (json_int_t)r->bytes, "duration_ms", (json_int_t)r->duration_ms,
                "read_from", r->peer_worker[0] ? r->peer_worker : j.worker,
                "peer_bytes", (json_int_t)r->peer_bytes,
                /* a store that failed an earlier attempt (the last one that failed so) */
                "source_failed", r->source_failed[0] ? r->source_failed : NULL));
        out_json_line(stdout, o);
    }
    if (j.state != BQ_JOB_SUCCEEDED) {
        char msg[BQ_TEXT_MAX + 128];
        snprintf(msg, sizeof msg, "restore job %" PRIu64 " %s: %s", job_id,
                 bq_job_state_name(j.state), j.error[0] ? j.error : "-");
        return fail(BQ_E_IO, msg);
    }
    if (!c->o->json) {
        char b[32], d[32];
        out_bytes(r->bytes, b, sizeof b);
        out_duration(r->duration_ms, d, sizeof d);
        printf("restored backup %s of cluster %s to %s on worker %s: %s in %s, %" PRIu64
               " files written, %" PRIu64 " unchanged, %" PRIu64 " removed\n", id, cluster, dest,
               j.worker, b, d, r->files_written, r->files_unchanged, r->files_removed);
        if (r->peer_worker[0]) {
            char pb[32];
            out_bytes(r->peer_bytes, pb, sizeof pb);
            printf("read from the store of worker %s over its data port: %s received\n",
                   r->peer_worker, pb);
        }
    }
    if (r->source_failed[0]) /* also under --json: "source_failed" */
        fprintf(stderr, "warning: the store of worker %s failed an earlier attempt of restore job "
                "%" PRIu64 " (its worker's and the coordinator's logs say why): check it with "
                "barque store verify\n", r->source_failed, job_id);
    return 0;
}

/* --target-time's value: "YYYY-MM-DD HH:MM:SS[.FFFFFF][Z|+HH[:MM]|-HH[:MM]]" (or a T between
 * date and time; no zone: UTC) into ms since the epoch and the value written for PostgreSQL
 * (UTC, with its zone, so the restored server's timezone does not matter). */
static int target_time_parse(const char *s, int64_t *ms, char *out, size_t cap)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    int n = 0;
    char sep = 0;
    if (sscanf(s, "%4d-%2d-%2d%c%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &sep,
               &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &n) != 7 || (sep != ' ' && sep != 'T'))
        return -1;
    const char *p = s + n;
    long usec = 0;
    if (*p == '.') {
        int digits = 0;
        for (p++; *p >= '0' && *p <= '9'; p++, digits++)
            if (digits < 6)
                usec = usec * 10 + (*p - '0');
        if (digits == 0)
            return -1;
        for (; digits < 6; digits++)
            usec *= 10;
    }
    long off = 0; /* seconds east of UTC */
    if (*p == 'Z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p == '-' ? -1 : 1, hh = 0, mm = 0, k = 0;
        if (sscanf(p + 1, "%2d%n", &hh, &k) != 1 || k != 2)
            return -1;
        p += 1 + k;
        if (*p == ':')
            p++;
        if (*p >= '0' && *p <= '9') {
            if (sscanf(p, "%2d%n", &mm, &k) != 1 || k != 2)
                return -1;
            p += k;
        }
        if (hh > 15 || mm > 59)
            return -1;
        off = sign * (hh * 3600L + mm * 60L);
    }
    if (*p || tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 || tm.tm_mday > 31 ||
        tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60 || tm.tm_year < 1970)
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
        return -1;
    t -= off;
    *ms = (int64_t)t * 1000 + usec / 1000;
    struct tm u;
    gmtime_r(&t, &u);
    snprintf(out, cap, "%04d-%02d-%02d %02d:%02d:%02d.%06ld+00", u.tm_year + 1900, u.tm_mon + 1,
             u.tm_mday, u.tm_hour, u.tm_min, u.tm_sec, usec);
    return 0;
}

/* The --target-* options into r (enabled when any is given); 2 on a bad one, said as verb's. */
static int recovery_args(const char *verb, const cli_opts_t *o, bq_recovery_t *r)
{
    memset(r, 0, sizeof *r);
    if (!o->target_kind && !o->target_tli && !o->target_action && !o->exclusive && !o->standby)
        return 0;
    r->enabled = 1;
    if (o->ntargets > 1)
        return err_usage("%s: give one of --target-time, --target-xid, --target-lsn, "
                         "--target-name, --target-immediate", verb);
    const char *k = o->target_kind ? o->target_kind : "", *v = o->target_value;
    snprintf(r->kind, sizeof r->kind, "%s", k);
    if (strcmp(k, "time") == 0) {
        if (target_time_parse(v, &r->time_ms, r->value, sizeof r->value) != 0)
            return err_usage("%s: --target-time %s is not a time like 2026-12-01 "
                             "14:30:00[.123456][+02[:00]|Z] (no zone: UTC)", verb, v);
    } else if (strcmp(k, "xid") == 0) {
        if (!*v || strspn(v, "0123456789") != strlen(v) || strlen(v) > 20)
            return err_usage("%s: --target-xid %s is not a transaction id (a number)", verb, v);
        snprintf(r->value, sizeof r->value, "%s", v);
    } else if (strcmp(k, "lsn") == 0) {
        unsigned hi, lo;
        int n = 0;
        if (sscanf(v, "%8X/%8X%n", &hi, &lo, &n) != 2 || v[n] || strchr(v, '-') || strchr(v, '+'))
            return err_usage("%s: --target-lsn %s is not an LSN (like 0/16B3748)", verb, v);
        r->lsn = ((uint64_t)hi << 32) | lo;
        snprintf(r->value, sizeof r->value, "%X/%X", hi, lo);
    } else if (strcmp(k, "name") == 0) {
        if (!*v || strlen(v) > 63)
            return err_usage("%s: --target-name must be 1 to 63 bytes (a restore point made "
                             "with pg_create_restore_point)", verb);
        snprintf(r->value, sizeof r->value, "%s", v);
    }
    if (o->target_tli)
        snprintf(r->tli, sizeof r->tli, "%s", o->target_tli);
    if (o->target_action)
        snprintf(r->action, sizeof r->action, "%s", o->target_action);
    r->exclusive = o->exclusive;
    r->standby = o->standby;
    if (r->exclusive && strcmp(k, "time") != 0 && strcmp(k, "xid") != 0 && strcmp(k, "lsn") != 0)
        return err_usage("%s: --exclusive needs --target-time, --target-xid or --target-lsn", verb);
    if (r->action[0] && !k[0])
        return err_usage("%s: --target-action needs a target (--target-time, ...)", verb);
    char why[160];
    if (bq_recovery_valid(r, why, sizeof why) != 0)
        return err_usage("%s: %s", verb, why);
    return 0;
}

static int verb_recover(cli_t *c)
{
    bq_msg_cli_request_t req;
    memset(&req, 0, sizeof req);
    snprintf(req.verb, sizeof req.verb, "recover");
    const char *id = c->o->args[1], *dest = c->o->args[2];
    if (cluster_arg("recover", c->o->args[0], req.cluster, sizeof req.cluster))
        return 2;
    if (strcmp(id, "latest") != 0 && strcmp(id, "oldest") != 0 && strcmp(id, "auto") != 0 &&
        !bq_backup_id_valid(id))
        return err_usage("recover: %s is not a backup id (YYYYMMDDTHHMMSS, latest, oldest or "
                         "auto)", id);
    if (recovery_args("recover", c->o, &req.recovery))
        return 2;
    if (strcmp(id, "auto") == 0 && !req.recovery.kind[0])
        return err_usage("recover: auto needs a target (--target-time, --target-xid, "
                         "--target-lsn, --target-name or --target-immediate)");
    if (dest[0] != '/')
        return err_usage("recover: DEST %s must be an absolute path (it is on the worker's host)",
                         dest);
    if (strlen(dest) >= sizeof req.dest)
        return err_usage("recover: DEST is longer than %zu bytes", sizeof req.dest - 1);
    if (!c->o->worker)
        return err_usage("recover needs --worker NAME: the worker that writes DEST");
    if (!bq_name_valid(c->o->worker))
        return err_usage("recover: %s is not a valid worker name", c->o->worker);
    snprintf(req.backup_id, sizeof req.backup_id, "%s", id);
    snprintf(req.dest, sizeof req.dest, "%s", dest);
    snprintf(req.worker, sizeof req.worker, "%s", c->o->worker);
    if (c->o->from_site)
        snprintf(req.from_site, sizeof req.from_site, "%s", c->o->from_site);
    if (c->o->owner)
        snprintf(req.owner, sizeof req.owner, "%s", c->o->owner);
    req.delta = c->o->delta;
    char maps[CLI_TABLESPACES_MAX][BQ_TABLESPACE_MAP_MAX];
    for (int i = 0; i < c->o->ntablespaces; i++) {
        const char *m = c->o->tablespaces[i], *colon = strchr(m, ':');
        if (!colon || colon == m || colon[1] != '/' || strlen(m) >= sizeof maps[0])
            return err_usage("recover: --tablespace %s is not NAME:/ABSOLUTE/PATH", m);
        snprintf(maps[i], sizeof maps[i], "%s", m);
    }
    req.tablespaces = maps;
    req.ntablespaces = (size_t)c->o->ntablespaces;
    bq_msg_t r;
    bq_errbuf_t e;
    int rc = cli_call(c, &req, &r, &e);
    if (rc)
        return fail(rc, e.msg);
    uint64_t job_id = r.u.cli_reply.job_id;
    char bid[BQ_BACKUP_ID_MAX];
    snprintf(bid, sizeof bid, "%s", r.u.cli_reply.nbackups ? r.u.cli_reply.backups[0].id : id);
    proto_msg_clear(&r);
    if (c->o->json && !c->o->wait) {
        out_json_line(stdout, json_pack("{s:s, s:I, s:s, s:s, s:s, s:s}", "event", "queued",
                                        "job_id", (json_int_t)job_id, "cluster", req.cluster,
                                        "backup_id", bid, "dest", dest, "worker", req.worker));
        return 0;
    }
    if (!c->o->json)
        printf("restore job %" PRIu64 ": backup %s of cluster %s to %s on worker %s queued\n",
               job_id, bid, req.cluster, dest, req.worker);
    if (!c->o->wait)
        return 0;
    return recover_wait(c, req.cluster, bid, job_id, dest);
}

/* A request of verb about the cluster named by the first argument: its reply in *r (the
 * caller clears it), or the exit code (2 for a bad name, the error printed). */
static int cluster_query(cli_t *c, const char *verb, bq_msg_t *r)
{
    bq_msg_cli_request_t req;
    memset(&req, 0, sizeof req);
    snprintf(req.verb, sizeof req.verb, "%s", verb);
    if (cluster_arg(verb, c->o->args[0], req.cluster, sizeof req.cluster))
        return 2;
    bq_errbuf_t e;
    int rc = cli_call(c, &req, r, &e);
    return rc ? fail(rc, e.msg) : 0;
}

static int verb_list_backups(cli_t *c)
{
    bq_msg_t r;
    int rc = cluster_query(c, "list-backups", &r);
    if (rc)
        return rc;
    const bq_msg_cli_reply_t *p = &r.u.cli_reply;
    if (c->o->json) {
        json_t *a = json_array();
        for (size_t i = p->nbackups; i-- > 0;) /* newest first, as the table */
            json_array_append_new(a, out_backup_json(&p->backups[i]));
        out_json_print(stdout, a);
    } else {
        out_backups_text(stdout, c->o->args[0], p);
    }
    proto_msg_clear(&r);
    return 0;
}

static int verb_list_wal(cli_t *c)
{
    bq_msg_t r;
    int rc = cluster_query(c, "list-wal", &r);
    if (rc)
        return rc;
    const bq_msg_cli_reply_t *p = &r.u.cli_reply;
    if (c->o->json) {
        json_t *a = json_array();
        for (size_t i = 0; i < p->ntimelines; i++)
            json_array_append_new(a, out_wal_timeline_json(&p->timelines[i]));
        out_json_print(stdout, a);
    } else {
        out_wal_text(stdout, c->o->args[0], p);
    }
    proto_msg_clear(&r);
    return 0;
}

static int verb_show_backup(cli_t *c)
{
    char cluster[BQ_NAME_MAX];
    if (cluster_arg("show-backup", c->o->args[0], cluster, sizeof cluster))
        return 2;
    const char *id = c->o->args[1];
    if (strcmp(id, "latest") != 0 && strcmp(id, "oldest") != 0 && !bq_backup_id_valid(id))
        return err_usage("show-backup: %s is not a backup id (YYYYMMDDTHHMMSS, latest or oldest)",
                         id);
    static bq_backup_t b;
    static bq_restore_test_t t;
    int tested = 0;
    bq_errbuf_t e;
    int rc = backup_get(c, cluster, id, &b, &t, &tested, &e);
    if (rc)
        return fail(rc, e.msg);
    if (c->o->json) {
        json_t *o = out_backup_json(&b);
        json_object_set_new(o, "last_restore_test", tested ? out_rtest_json(&t) : json_null());
        out_json_print(stdout, o);
    } else {
        out_backup_text(stdout, &b);
        out_rtest_last_text(stdout, tested ? &t : NULL);
    }
    return 0;
}

/* ---- restore tests ------------------------------------------------------------------ */

/* The record of restore test job_id of cluster (verb restore-tests with its job id). */
static int rtest_get(cli_t *c, const char *cluster, uint64_t job_id, bq_restore_test_t *out,
                     bq_errbuf_t *e)
{
    bq_msg_cli_request_t req;
    memset(&req, 0, sizeof req);
    snprintf(req.verb, sizeof req.verb, "restore-tests");
    snprintf(req.cluster, sizeof req.cluster, "%s", cluster);
    req.job_id = job_id;
    bq_msg_t r;
    int rc = cli_call(c, &req, &r, e);
    if (rc)
        return rc;
    if (r.u.cli_reply.nrtests < 1) {
        proto_msg_clear(&r);
        return bq_fail(e, BQ_E_NOTFOUND, "the coordinator has no record of restore test job %"
                       PRIu64 " of cluster %s", job_id, cluster);
    }
    *out = r.u.cli_reply.rtests[0];
    proto_msg_clear(&r);
    return 0;
}

/* restore-test and drill --wait: follow the job, then print its record; 0 when it passed. */
static int rtest_wait(cli_t *c, const bq_restore_test_t *queued)
{
    static bq_job_t j;
    static bq_restore_test_t t;
    bq_errbuf_t e;
    backup_watch_t w;
    memset(&w, 0, sizeof w);
    w.json = c->o->json;
    w.tty = !w.json && isatty(STDOUT_FILENO);
    w.states = 1;
    snprintf(w.id, sizeof w.id, "%s", queued->backup_id);
    snprintf(w.label, sizeof w.label, "restore test of backup %s of cluster %s",
             queued->backup_id, queued->cluster);
    int rc = job_follow(c, queued->cluster, queued->job_id, &w, &j, &e);
    if (rc)
        return fail(rc, e.msg);
    rc = rtest_get(c, queued->cluster, queued->job_id, &t, &e);
    char msg[BQ_TEXT_MAX + 256];
    if (rc == BQ_E_NOTFOUND) { /* it never ran (cancelled while queued, no worker took it) */
        snprintf(msg, sizeof msg, "restore test job %" PRIu64 " of cluster %s ended %s with no "
                 "result%s%s", queued->job_id, queued->cluster, bq_job_state_name(j.state),
                 j.error[0] ? ": " : "", j.error);
        if (w.json)
            out_json_line(stdout, json_pack("{s:s, s:b, s:I, s:s, s:n, s:s}", "event", "done",
                                            "ok", 0, "job_id", (json_int_t)queued->job_id,
                                            "cluster", queued->cluster, "restore_test", "error",
                                            msg));
        return fail(BQ_E_STATE, msg);
    }
    if (rc)
        return fail(rc, e.msg);
    if (!t.ok)
        snprintf(msg, sizeof msg, "restore test job %" PRIu64 " of cluster %s FAILED: %s",
                 t.job_id, t.cluster, t.error[0] ? t.error : j.error[0] ? j.error : "-");
    if (w.json) {
        json_t *o = json_pack("{s:s, s:b, s:I, s:s, s:o}", "event", "done", "ok", t.ok, "job_id",
                              (json_int_t)t.job_id, "cluster", t.cluster, "restore_test",
                              out_rtest_json(&t));
        json_object_set_new(o, "error", t.ok ? json_null() : json_string(msg));
        out_json_line(stdout, o);
    } else {
        out_rtest_text(stdout, &t);
        fflush(stdout);
    }
    if (t.ok)
        return 0;
    fprintf(stderr, "barque: %s\n", msg);
    return 1; /* the test failed: 1, whatever the error's own exit status */
}

/* restore-test CLUSTER [ID|latest] [--target-time T | --target-immediate] and drill CLUSTER:
 * queue the test (the coordinator picks the backup and, for a drill, a point in the recovery
 * window), say what was queued, and with --wait follow it to its record. */
static int rtest_submit(cli_t *c, const char *verb)
{
    bq_msg_cli_request_t req;
    memset(&req, 0, sizeof req);
    snprintf(req.verb, sizeof req.verb, "%s", verb);
    if (cluster_arg(verb, c->o->args[0], req.cluster, sizeof req.cluster))
        return 2;
    const char *id = c->o->nargs > 1 ? c->o->args[1] : "latest";
    if (strcmp(id, "latest") != 0 && !bq_backup_id_valid(id))
        return err_usage("%s: %s is not a backup id (YYYYMMDDTHHMMSS or latest)", verb, id);
    if (strcmp(verb, "drill") != 0)
        snprintf(req.backup_id, sizeof req.backup_id, "%s", id);
    const cli_opts_t *o = c->o;
    if (o->target_tli || o->target_action || o->exclusive || o->standby ||
        (o->target_kind && strcmp(o->target_kind, "time") != 0 &&
         strcmp(o->target_kind, "immediate") != 0))
        return err_usage("%s: the targets of a restore test are --target-time T and "
                         "--target-immediate (none: all the archived WAL)", verb);
    if (o->ntargets > 1)
        return err_usage("%s: give one of --target-time, --target-immediate", verb);
    if (recovery_args(verb, o, &req.recovery))
        return 2;
    if (o->from_site) {
        if (!bq_name_valid(o->from_site))
            return err_usage("%s: %s is not a valid site name", verb, o->from_site);
        snprintf(req.from_site, sizeof req.from_site, "%s", o->from_site);
    }
    bq_msg_t r;
    bq_errbuf_t e;
    int rc = cli_call(c, &req, &r, &e);
    if (rc)
        return fail(rc, e.msg);
    static bq_restore_test_t q; /* what was queued */
    memset(&q, 0, sizeof q);
    if (r.u.cli_reply.nrtests)
        q = r.u.cli_reply.rtests[0];
    if (!q.job_id)
        q.job_id = r.u.cli_reply.job_id;
    if (!q.cluster[0])
        snprintf(q.cluster, sizeof q.cluster, "%s", req.cluster);
    if (!q.backup_id[0])
        snprintf(q.backup_id, sizeof q.backup_id, "%s", strcmp(verb, "drill") ? id : "-");
    proto_msg_clear(&r);
    if (c->o->json) {
        json_t *ev = json_object();
        if (c->o->wait)
            json_object_set_new(ev, "event", json_string("queued"));
        json_object_set_new(ev, "job_id", json_integer((json_int_t)q.job_id));
        json_object_set_new(ev, "cluster", json_string(q.cluster));
        json_object_set_new(ev, "backup_id", json_string(q.backup_id));
        json_object_set_new(ev, "kind", q.kind[0] ? json_string(q.kind) : json_null());
        json_object_set_new(ev, "target", q.target[0] ? json_string(q.target) : json_null());
        if (!c->o->wait) {
            out_json_print(stdout, ev);
            return 0;
        }
        out_json_line(stdout, ev);
    } else {
        printf("restore test of backup %s of cluster %s queued as job %" PRIu64 " (target: %s)\n",
               q.backup_id, q.cluster, q.job_id, q.target[0] ? q.target : "-");
        fflush(stdout);
    }
    return c->o->wait ? rtest_wait(c, &q) : 0;
}

static int verb_restore_test(cli_t *c) { return rtest_submit(c, "restore-test"); }
static int verb_drill(cli_t *c) { return rtest_submit(c, "drill"); }

/* restore-tests CLUSTER: the cluster's restore tests, newest first as a table; as JSON in
 * the catalog's order, oldest first (so [-1] is the newest, as scripts read it). */
static int verb_restore_tests(cli_t *c)
{
    bq_msg_t r;
    int rc = cluster_query(c, "restore-tests", &r);
    if (rc)
        return rc;
    const bq_msg_cli_reply_t *p = &r.u.cli_reply;
    if (c->o->json) {
        json_t *a = json_array();
        for (size_t i = 0; i < p->nrtests; i++)
            json_array_append_new(a, out_rtest_json(&p->rtests[i]));
        out_json_print(stdout, a);
    } else {
        out_rtests_text(stdout, c->o->args[0], p);
    }
    proto_msg_clear(&r);
    return 0;
}

/* ---- list-files and delete ---------------------------------------------------------- */

#define LIST_FILES_PAGES_MAX 1000000 /* 5 billion files: a bound, not a limit */

/* One page of list-files from offset: a list-files job (the worker reads the manifest), then
 * the page it produced, fetched from the coordinator (list-files-page). req carries the
 * cluster and backup id; *id_out gets the id the coordinator resolved (latest, oldest). */
static int list_files_page(cli_t *c, bq_msg_cli_request_t *req, uint64_t offset, bq_msg_t *page,
                           char id_out[BQ_BACKUP_ID_MAX], bq_errbuf_t *e)
{
    bq_msg_t r;
    snprintf(req->verb, sizeof req->verb, "list-files");
    req->offset = offset;
    int rc = cli_call(c, req, &r, e);
    if (rc)
        return rc;
    uint64_t job_id = r.u.cli_reply.job_id;
    if (r.u.cli_reply.nbackups == 1)
        snprintf(id_out, BQ_BACKUP_ID_MAX, "%s", r.u.cli_reply.backups[0].id);
    proto_msg_clear(&r);
    static bq_job_t j;
    if ((rc = job_wait(c, job_id, &j, e)) != 0)
        return rc;
    if (j.state != BQ_JOB_SUCCEEDED)
        return bq_fail(e, BQ_E_STATE, "list-files job %" PRIu64 " %s: %s", job_id,
                       bq_job_state_name(j.state), j.error[0] ? j.error : "-");
    bq_msg_cli_request_t q;
    memset(&q, 0, sizeof q);
    snprintf(q.verb, sizeof q.verb, "list-files-page");
    q.job_id = job_id;
    return cli_call(c, &q, page, e);
}

static int verb_list_files(cli_t *c)
{
    bq_msg_cli_request_t req;
    memset(&req, 0, sizeof req);
    if (cluster_arg("list-files", c->o->args[0], req.cluster, sizeof req.cluster))
        return 2;
    const char *id = c->o->args[1];
    if (strcmp(id, "latest") != 0 && strcmp(id, "oldest") != 0 && !bq_backup_id_valid(id))
        return err_usage("list-files: %s is not a backup id (YYYYMMDDTHHMMSS, latest or oldest)",
                         id);
    snprintf(req.backup_id, sizeof req.backup_id, "%s", id);
    bq_errbuf_t e;
    int rc = 0, opened = 0;
    uint64_t offset = 0, total = 0;
    for (long page = 0; page < LIST_FILES_PAGES_MAX; page++) {
        bq_msg_t r;
        char resolved[BQ_BACKUP_ID_MAX] = "";
        if ((rc = list_files_page(c, &req, offset, &r, resolved, &e)) != 0)
            break;
        if (resolved[0]) /* later pages: the same backup, even when "latest" moves */
            snprintf(req.backup_id, sizeof req.backup_id, "%s", resolved);
        const bq_msg_cli_reply_t *p = &r.u.cli_reply;
        if (p->files_offset != offset) {
            proto_msg_clear(&r);
            rc = bq_fail(&e, BQ_E_PROTO, "the coordinator sent files from #%" PRIu64 ", not #%"
                         PRIu64, p->files_offset, offset);
            break;
        }
        if (c->o->json && !opened)
            fputs("[", stdout);
        else if (!c->o->json && !opened)
            printf("%-10s %12s %-20s %s\n", "MODE", "SIZE", "MODIFIED", "PATH");
        for (size_t i = 0; i < p->nfiles; i++) {
            if (c->o->json) {
                json_t *o = out_file_json(&p->files[i]);
                char *text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
                json_decref(o);
                if (!text) {
                    rc = bq_fail(&e, BQ_E_NOMEM, "out of memory");
                    break;
                }
                printf("%s\n%s", opened || i ? "," : "", text);
                free(text);
            } else {
                out_file_text(stdout, &p->files[i]);
            }
        }
        opened = 1;
        offset += p->nfiles;
        total = p->files_total;
        size_t n = p->nfiles;
        proto_msg_clear(&r);
        if (rc || n == 0 || offset >= total)
            break;
    }
    if (c->o->json && opened)
        fputs("]\n", stdout);
    fflush(stdout);
    if (rc)
        return fail(rc, e.msg);
    if (offset < total)
        return fail(BQ_E_STATE, "list-files stopped before the end of the backup");
    return 0;
}

/* delete --wait: follow the delete jobs to their end; 0 when every one SUCCEEDED. */
static int delete_wait(cli_t *c, const char *cluster, const char *id, const bq_job_t *jobs,
                       size_t njobs)
{
    bq_errbuf_t e;
    static bq_job_t j;
    json_t *arr = c->o->json ? json_array() : NULL;
    int failed = 0, rc = 0;
    char why[BQ_TEXT_MAX + 128] = "";
    for (size_t k = 0; k < njobs && rc == 0; k++) {
        /* GC of a large store takes a while: no time limit, but a coordinator that stops
         * answering ends it (job_get's timeout); at most a month of 500 ms polls. */
        for (long i = 0; i < 31L * 86400 * 2; i++) {
            if ((rc = job_get(c, jobs[k].id, &j, &e)) != 0 || bq_job_state_terminal(j.state))
                break;
            struct timespec ts = {0, 500 * 1000000L};
            nanosleep(&ts, NULL);
        }
        if (rc)
            break;
        if (arr)
            json_array_append_new(arr, out_job_json(&j));
        if (j.state != BQ_JOB_SUCCEEDED) {
            failed = 1;
            snprintf(why, sizeof why, "delete job %" PRIu64 " on worker %s %s: %s", j.id,
                     j.pin_worker[0] ? j.pin_worker : j.worker, bq_job_state_name(j.state),
                     j.error[0] ? j.error : "-");
        } else if (!c->o->json) {
            char b[32];
            if (j.del.gc_run)
                printf("worker %s: backup %s %s; GC removed %" PRIu64 " chunks, reclaimed %s\n",
                       j.worker, id, j.del.was_absent ? "was already gone" : "deleted",
                       j.del.chunks_removed, out_bytes(j.del.bytes_reclaimed, b, sizeof b));
            else
                printf("worker %s: backup %s %s; %s (the next GC reclaims its space)\n",
                       j.worker, id, j.del.was_absent ? "was already gone" : "deleted",
                       j.del.gc_note);
        }
    }
    if (rc) {
        json_decref(arr);
        return fail(rc, e.msg);
    }
    if (arr)
        out_json_print(stdout, json_pack("{s:s, s:s, s:s, s:o}", "cluster", cluster, "backup_id",
                                         id, "state", failed ? "DELETING" : "DELETED", "jobs",
                                         arr));
    else if (!failed)
        printf("backup %s of cluster %s deleted\n", id, cluster);
    if (failed) {
        char msg[sizeof why + 128];
        snprintf(msg, sizeof msg, "%s\nhint: the backup stays DELETING; run delete again once "
                 "the cause is fixed", why);
        return fail(BQ_E_STATE, msg);
    }
    return 0;
}

/* replicate CLUSTER [ID|latest] [--to SITE]: queue the copies, say them; with --wait follow
 * each job and print the backup's copies: 0 when every copy asked for succeeded. */
static int verb_replicate(cli_t *c)
{
    bq_msg_cli_request_t req;
    memset(&req, 0, sizeof req);
    snprintf(req.verb, sizeof req.verb, "replicate");
    if (cluster_arg("replicate", c->o->args[0], req.cluster, sizeof req.cluster))
        return 2;
    const char *id = c->o->nargs > 1 ? c->o->args[1] : "latest";
    if (strcmp(id, "latest") != 0 && !bq_backup_id_valid(id))
        return err_usage("replicate: %s is not a backup id (YYYYMMDDTHHMMSS or latest)", id);
    snprintf(req.backup_id, sizeof req.backup_id, "%s", id);
    if (c->o->to_site)
        snprintf(req.site, sizeof req.site, "%s", c->o->to_site);
    bq_msg_t r;
    bq_errbuf_t e;
    int rc = cli_call(c, &req, &r, &e);
    if (rc)
        return fail(rc, e.msg);
    const bq_msg_cli_reply_t *rep = &r.u.cli_reply;
    char bid[BQ_BACKUP_ID_MAX];
    snprintf(bid, sizeof bid, "%s", rep->nbackups ? rep->backups[0].id : id);
    size_t n = rep->njobs;
    uint64_t ids[BQ_REPLICA_SITES_MAX];
    char sites[BQ_REPLICA_SITES_MAX][BQ_NAME_MAX];
    for (size_t i = 0; i < n && i < BQ_REPLICA_SITES_MAX; i++) {
        ids[i] = rep->jobs[i].id;
        snprintf(sites[i], sizeof sites[i], "%s", rep->jobs[i].site);
        if (c->o->json) {
            json_t *ev = json_pack("{s:s, s:I, s:s, s:s, s:s}", "event", "queued", "job_id",
                                   (json_int_t)ids[i], "cluster", req.cluster, "backup_id", bid,
                                   "site", sites[i]);
            out_json_line(stdout, ev);
        } else {
            printf("copy of backup %s of cluster %s to site %s: job %" PRIu64 "\n", bid,
                   req.cluster, sites[i], ids[i]);
        }
    }
    fflush(stdout);
    proto_msg_clear(&r);
    if (!c->o->wait)
        return 0;
    int bad = 0;
    for (size_t i = 0; i < n && i < BQ_REPLICA_SITES_MAX; i++) {
        static bq_job_t j;
        backup_watch_t w;
        memset(&w, 0, sizeof w);
        w.json = c->o->json;
        w.tty = !w.json && isatty(STDOUT_FILENO);
        w.states = 1;
        snprintf(w.id, sizeof w.id, "%s", bid);
        snprintf(w.label, sizeof w.label, "copy of backup %s to site %s", bid, sites[i]);
        if ((rc = job_follow(c, req.cluster, ids[i], &w, &j, &e)) != 0)
            return fail(rc, e.msg);
        bad |= j.state != BQ_JOB_SUCCEEDED;
        if (!c->o->json && j.state != BQ_JOB_SUCCEEDED)
            fprintf(stderr, "barque: copy of backup %s to site %s %s: %s\n", bid, sites[i],
                    bq_job_state_name(j.state), j.error);
    }
    /* the backup's copies as the catalog has them now */
    bq_msg_cli_request_t sq;
    memset(&sq, 0, sizeof sq);
    snprintf(sq.verb, sizeof sq.verb, "show-backup");
    snprintf(sq.cluster, sizeof sq.cluster, "%s", req.cluster);
    snprintf(sq.backup_id, sizeof sq.backup_id, "%s", bid);
    if ((rc = cli_call(c, &sq, &r, &e)) != 0)
        return fail(rc, e.msg);
    if (r.u.cli_reply.nbackups) {
        const bq_backup_t *b = &r.u.cli_reply.backups[0];
        if (c->o->json) {
            json_t *o = json_pack("{s:s, s:b, s:s, s:s}", "event", "done", "ok", !bad, "cluster",
                                  req.cluster, "backup_id", bid);
            json_object_set_new(o, "backup", out_backup_json(b));
            out_json_line(stdout, o);
        } else {
            out_backup_text(stdout, b);
        }
    }
    proto_msg_clear(&r);
    return bad ? 1 : 0;
}

static int verb_delete(cli_t *c)
{
    bq_msg_cli_request_t req;
    memset(&req, 0, sizeof req);
    snprintf(req.verb, sizeof req.verb, "delete");
    if (cluster_arg("delete", c->o->args[0], req.cluster, sizeof req.cluster))
        return 2;
    const char *id = c->o->args[1];
    if (!bq_backup_id_valid(id))
        return err_usage("delete: %s is not a backup id (YYYYMMDDTHHMMSS; latest and oldest are "
                         "not accepted here)", id);
    snprintf(req.backup_id, sizeof req.backup_id, "%s", id);
    bq_msg_t r;
    bq_errbuf_t e;
    int rc = cli_call(c, &req, &r, &e);
    if (rc)
        return fail(rc, e.msg);
    const bq_msg_cli_reply_t *p = &r.u.cli_reply;
    static bq_backup_t b;
    if (p->nbackups != 1) {
        proto_msg_clear(&r);
        return fail(BQ_E_PROTO, "coordinator sent no backup in its reply");
    }
    b = p->backups[0];
    if (p->njobs == 0) { /* no store held it: the record is gone already */
        if (c->o->json)
            out_json_print(stdout, json_pack("{s:s, s:s, s:s, s:s, s:[]}", "cluster", req.cluster,
                                             "backup_id", id, "state", "DELETED", "was",
                                             bq_backup_state_name(b.state), "jobs"));
        else
            printf("backup %s of cluster %s (%s) deleted: no store held it, its catalog record "
                   "is removed\n", id, req.cluster, bq_backup_state_name(b.state));
        proto_msg_clear(&r);
        return 0;
    }
    size_t njobs = p->njobs;
    bq_job_t *jobs = malloc(njobs * sizeof *jobs);
    if (!jobs) {
        proto_msg_clear(&r);
        return fail(BQ_E_NOMEM, "out of memory");
    }
    memcpy(jobs, p->jobs, njobs * sizeof *jobs);
    proto_msg_clear(&r);
    if (c->o->wait) {
        if (!c->o->json)
            for (size_t k = 0; k < njobs; k++)
                printf("backup %s of cluster %s is DELETING: delete job %" PRIu64 " queued on "
                       "worker %s\n", id, req.cluster, jobs[k].id, jobs[k].pin_worker);
        fflush(stdout);
        rc = delete_wait(c, req.cluster, id, jobs, njobs);
    } else if (c->o->json) {
        json_t *a = json_array();
        for (size_t k = 0; k < njobs; k++)
            json_array_append_new(a, json_pack("{s:I, s:s}", "job_id", (json_int_t)jobs[k].id,
                                               "worker", jobs[k].pin_worker));
        out_json_print(stdout, json_pack("{s:s, s:s, s:s, s:o}", "cluster", req.cluster,
                                         "backup_id", id, "state", "DELETING", "jobs", a));
    } else {
        for (size_t k = 0; k < njobs; k++)
            printf("backup %s of cluster %s is DELETING: delete job %" PRIu64 " queued on worker "
                   "%s (follow it with: barque job show %" PRIu64 ")\n", id, req.cluster,
                   jobs[k].id, jobs[k].pin_worker, jobs[k].id);
    }
    free(jobs);
    return rc;
}

/* The store verbs: their parsed options to store_cmd.c's function of the row. */
static int wal_call(void *arg, bq_msg_cli_request_t *req, bq_msg_t *reply, bq_errbuf_t *e)
{
    return cli_call(arg, req, reply, e);
}

static void wal_opts(cli_t *c, wal_cmd_opts_t *w)
{
    memset(w, 0, sizeof *w);
    w->ctx = c->ctx;
    w->keys = &c->cfg.keys;
    w->call = wal_call;
    w->call_arg = c;
    w->config = c->config_path;
    w->json = c->o->json;
    w->spool = c->o->spool;
    w->prefetch = c->o->prefetch;
    w->prefetch_only = c->o->prefetch_only;
    w->spool_pusher = c->o->spool_pusher;
    w->from_site = c->o->from_site;
    w->prefer_site = c->o->prefer_site;
    w->nargs = c->o->nargs;
    w->args = c->o->args;
}

static int verb_wal_push(cli_t *c)
{
    wal_cmd_opts_t w;
    wal_opts(c, &w);
    return wal_cmd_push(&w);
}

static int verb_wal_get(cli_t *c)
{
    wal_cmd_opts_t w;
    wal_opts(c, &w);
    return wal_cmd_get(&w);
}

static int verb_store(cli_t *c)
{
    store_cmd_opts_t so = {.json = c->o->json,
                           .key_file = c->o->key,
                           .new_key_file = c->o->new_key,
                           .compression = c->o->compression,
                           .level = c->o->level,
                           .chunk_size = c->o->chunk_size,
                           .nargs = c->o->nargs,
                           .args = c->o->args};
    return c->verb->store(&so);
}

#define STORE_HELP_KEY                                                                          \
    "--key FILE names the store master key (barque keygen NAME --store-key); no daemon is\n"    \
    "needed: this reads the store directory directly (a shared lock: GC, delete and\n"          \
    "rotate-key hold it exclusively)."

static const verb_t verbs[] = {
    {"keygen", 1, 1, OPT_DIR | OPT_JSON | OPT_STORE_KEY, verb_keygen,
     "keygen NAME [--store-key] [--dir DIR]",
     "Write NAME.key (CURVE secret key, mode 0600) and NAME.pub (its public key, Z85) into DIR\n"
     "(default: the current directory). With --store-key, write NAME.storekey instead: the\n"
     "deployment's store master key (mode 0600), which wraps the keys that encrypt backups.\n"
     "Refuses to overwrite existing files.", VERB_OFFLINE, NULL},
    {"status", 0, 0, OPT_JSON, verb_status, "status [--json]",
     "Workers online/offline per site, clusters, queued and running jobs. Per cluster its WAL\n"
     "and its restore tests: when the last one passed (backup, measured RTO) or failed (why),\n"
     "and the recovery time the coordinator predicts for a restore now.", 0, NULL},
    {"workers", 0, 0, OPT_JSON, verb_workers, "workers [--json]",
     "Every worker the coordinator knows: site, online, jobs, store free space, last seen.", 0, NULL},
    {"clusters", 0, 0, OPT_JSON, verb_clusters, "clusters [--json]",
     "The clusters in the coordinator's config and their sites.", 0, NULL},
    {"jobs", 0, 0, OPT_JSON | OPT_ALL, verb_jobs, "jobs [--all] [--json]",
     "Queued and running jobs; with --all, finished ones too (the newest 1,000).", 0, NULL},
    {"job show", 1, 1, OPT_JSON, verb_job_show, "job show ID [--json]",
     "Everything the catalog holds about one job.", 0, NULL},
    {"job cancel", 1, 1, OPT_JSON, verb_job_cancel, "job cancel ID [--json]",
     "Cancel a queued job at once, or ask the worker running it to stop.", 0, NULL},
    {"job sleep", 2, 2, OPT_JSON | OPT_WAIT | OPT_WAIT_TIMEOUT | OPT_COUNT, verb_job_sleep,
     "job sleep SITE DURATION [--count N] [--wait] [--wait-timeout SEC] [--json]",
     "Diagnostic: queue a job that holds a worker slot at SITE for DURATION (e.g. 5s).\n"
     "Proves dispatch, leases and failover without touching a database. --count N queues\n"
     "N such jobs in one request (1..100000); the job id printed is the last one's.", 0, NULL},
    {"check", 0, 1, OPT_JSON | OPT_WAIT_TIMEOUT | OPT_NAGIOS, verb_check,
     "check [CLUSTER|all] [--nagios] [--wait-timeout SEC] [--json]",
     "Check one cluster, or every cluster of the config (all, the default). A worker at each\n"
     "cluster's site checks PostgreSQL: reachable, server version, system identifier (against\n"
     "the catalog's), wal_level, archive_mode, max_wal_senders, the slot barque_<cluster> and\n"
     "its receiver, WAL lag (wal_max_lag), whether the role may replicate. The coordinator adds: WAL archive\n"
     "gaps, last archived WAL age (wal_max_age), newest DONE backup age (backup_max_age),\n"
     "minimum_redundancy, jobs failed in the last day, restores of the last day that could not\n"
     "read a store (they read another: verify it), store space at each site and its trend\n"
     "(store_free_warning, store_free_critical, store_full_warning); and for the fleet: workers\n"
     "online per site and the catalog. Prints each item OK/WARNING/FAILED with the reason; exit\n"
     "0 when all are OK, else 1. --nagios prints one Nagios plugin line (status, message,\n"
     "perfdata) and exits 0/1/2/3 for OK/WARNING/CRITICAL/UNKNOWN.", 0, NULL},
    {"keep", 2, 2, OPT_JSON | OPT_KEEP, verb_keep,
     "keep CLUSTER ID --target full|standalone | --release | --status [--json]",
     "Keep a DONE backup out of retention (Barman's keep): --target full keeps it with all the\n"
     "WAL after it (it still counts toward the policy but is never OBSOLETE); --target\n"
     "standalone keeps only the WAL it needs to be consistent; --release lets retention judge\n"
     "it again; --status prints full, standalone or nokeep.", 0, NULL},
    {"metrics", 0, 0, 0, verb_metrics, "metrics",
     "The coordinator's view in Prometheus text exposition format, for node_exporter's\n"
     "textfile collector (barque metrics > DIR/barque.prom.tmp && mv ... barque.prom): per\n"
     "cluster the last backup's time, duration and size, backups per state, backup age, WAL\n"
     "archive gaps, last archived WAL time, receiver lag, the last check's status, the last\n"
     "restore test's time and result, the last passed one's time and RTO, the predicted RTO\n"
     "and the restore test check's status; per worker online, store free and total bytes,\n"
     "jobs. Names start with barque_; units in the names.\n"
     "When the coordinator does not answer it prints barque_up 0 and exits 1.", 0, NULL},
    {"schedule", 0, 1, OPT_JSON, verb_schedule, "schedule [CLUSTER] [--json]",
     "What the coordinator's scheduler does for each cluster (backup_schedule, backup_jitter):\n"
     "the schedule, the slot it last fired for, when it is next due and why (a backup queued or\n"
     "running, waiting for max_concurrent_backups at its site or worker, a missed slot after an\n"
     "outage, which runs once), the newest backup and the retention policy.", 0, NULL},
    {"backup", 1, 1, OPT_JSON | OPT_WAIT | OPT_SPREAD, verb_backup,
     "backup CLUSTER [--wait] [--spread] [--json]",
     "Take a base backup of CLUSTER into the store of a worker at its site (a fast checkpoint\n"
     "unless --spread). Prints the job id and, once a worker has taken it, the backup id\n"
     "(YYYYMMDDTHHMMSS, UTC). With --wait, follows it to the end: a progress bar with rate and\n"
     "ETA on a terminal, a plain line every 10 s otherwise, one JSON object per line and\n"
     "event with --json; no time limit, but gives up when the coordinator does not answer\n"
     "within the timeout. Exit 0 when the backup is DONE, 1 when it FAILED.", 0, NULL},
    {"recover", 3, 3, OPT_JSON | OPT_WAIT | OPT_WORKER | OPT_TABLESPACE | OPT_DELTA | OPT_OWNER |
     OPT_TARGET | OPT_FROM_SITE, verb_recover,
     "recover CLUSTER BACKUP_ID|latest|oldest|auto DEST --worker NAME [--tablespace NAME:PATH]...\n"
     "               [--delta] [--owner USER] [--from-site SITE] [--wait] [--json]\n"
     "               [--target-time T | --target-xid X | --target-lsn L | --target-name N |\n"
     "                --target-immediate] [--target-tli current|latest|N]\n"
     "               [--target-action pause|promote|shutdown] [--exclusive] [--standby]",
     "Restore a DONE backup of CLUSTER (latest, oldest: the newest/oldest DONE one) into DEST, an\n"
     "absolute path on the host of worker NAME, as a data directory that starts: files with\n"
     "their modes, owned by USER (default: the owner of DEST's parent), the WAL the backup needs\n"
     "in pg_wal (no archive needed), the server's backup_manifest (pg_verifybackup DEST checks\n"
     "it), and tablespaces where they were, or at PATH for each --tablespace NAME:PATH. DEST\n"
     "must be empty or absent; with --delta, only files whose content differs are rewritten and\n"
     "files the backup does not have are removed. The worker must hold the backup in its store\n"
     "(show-backup lists the stores). --wait follows it with a progress bar; exit 0 when DEST is\n"
     "restored and synced, 1 when the restore failed.\n\n"
     "Point-in-time recovery: with any --target-* option, --standby or --exclusive, the restore\n"
     "also writes recovery.signal (standby.signal with --standby) and, in postgresql.auto.conf,\n"
     "restore_command = '<cli_command> wal-get CLUSTER %f %p --prefer-site SITE' (cli_command\n"
     "from the worker's config, default barque; SITE the worker's), archive_command = false (the copy never archives into the\n"
     "cluster's archive), and recovery_target_* as asked: --target-time (no zone: UTC),\n"
     "--target-xid, --target-lsn, --target-name (a restore point), --target-immediate (the end\n"
     "of the backup), --target-tli, --target-action, --exclusive (stop just before the target).\n"
     "With only --target-tli latest, recovery replays all the archived WAL. BACKUP_ID auto picks\n"
     "the newest backup that ends before the target (for an xid or a name: the newest). The\n"
     "coordinator refuses a target the archive cannot reach, saying why: no backup ends before\n"
     "it, a segment between the backup and the target is missing from the WAL index, the target\n"
     "timeline is not in the archive, a time in the future. The backup is read from the\n"
     "worker's own store, else from the nearest store holding it (its site's first, then the\n"
     "other sites); --from-site SITE forces a store at SITE.", 0, NULL},
    {"restore-test", 1, 2, OPT_JSON | OPT_WAIT | OPT_TARGET | OPT_FROM_SITE, verb_restore_test,
     "restore-test CLUSTER [ID|latest] [--target-time T | --target-immediate]\n"
     "               [--from-site SITE] [--wait] [--json]",
     "Test that backup ID of CLUSTER (default latest, the newest DONE one) restores: a worker\n"
     "restores it into its scratch space, starts PostgreSQL on a free port, replays the WAL\n"
     "(all the archived WAL; to T with --target-time, no zone: UTC; only to consistency with\n"
     "--target-immediate), runs the checks (the server answers queries; pg_amcheck with\n"
     "restore_test_amcheck = on; the file of restore_test_sql must return true), records the\n"
     "result with the measured recovery time (RTO) and removes the copy.\n"
     "--from-site SITE reads the backup from a store at SITE. Prints the job queued; with\n"
     "--wait follows it (its state, and a progress bar while it fetches) and prints the test:\n"
     "target reached (LSN, time), WAL replayed, bytes, the time of each phase, the RTO and\n"
     "each check. Exit 0 when it passed, 1 when it failed (the error on stderr too).", 0, NULL},
    {"drill", 1, 1, OPT_JSON | OPT_WAIT | OPT_FROM_SITE, verb_drill,
     "drill CLUSTER [--from-site SITE] [--wait] [--json]",
     "A restore drill of CLUSTER: the coordinator picks a random point in the recovery window\n"
     "and the backup that reaches it, and a worker runs a restore test to that time (as\n"
     "restore-test --target-time). Prints which backup and target were picked; --wait, --json\n"
     "and the exit status as restore-test's.", 0, NULL},
    {"restore-tests", 1, 1, OPT_JSON, verb_restore_tests, "restore-tests CLUSTER [--json]",
     "The restore tests of CLUSTER in the catalog, newest first: job, backup, kind (scheduled,\n"
     "manual, drill), PASSED or FAILED, when it finished (UTC), the recovery time (RTO), its\n"
     "phases (fetch and write, server start to consistent, replay), WAL segments replayed,\n"
     "bytes restored and the target reached (LSN and time of the last transaction replayed);\n"
     "a failed test's error on the line below. --json prints one array, oldest first, of\n"
     "objects with every field (times as ISO-8601 UTC and as *_ms numbers, checks as {name,\n"
     "status, ok, detail}).",
     0, NULL},
    {"list-backups", 1, 1, OPT_JSON, verb_list_backups, "list-backups CLUSTER [--json]",
     "The backups of CLUSTER in the catalog, newest first (the newest 1,000): id, state,\n"
     "retention status (VALID, OBSOLETE, KEEP:FULL, KEEP:STANDALONE; - when not DONE), end\n"
     "time, size, stored size (what it added to the store), WAL range, and why it failed.", 0,
     NULL},
    {"list-wal", 1, 1, OPT_JSON, verb_list_wal, "list-wal CLUSTER [--json]",
     "The WAL of CLUSTER that the coordinator's WAL index holds (each file a wal-stream job\n"
     "archived into a worker's store), per timeline: the first and last complete segment, how\n"
     "many segments and their size, and the gaps: segments missing between the first and the\n"
     "last (FIRST-LAST ranges, at most 32 listed), each on a line of its own below the table,\n"
     "with the timeline's history file and its .partial files (a timeline ended inside that\n"
     "segment). Gaps are counted with the segment size of the cluster's first segment.\n"
     "--json prints one array of {timeline, first, last, segments, bytes, gaps, history,\n"
     "partials}.", 0, NULL},
    {"switch-wal", 1, 1, OPT_JSON | OPT_FORCE | OPT_ARCHIVE | OPT_WAIT_TIMEOUT, verb_switch_wal,
     "switch-wal CLUSTER [--force] [--archive] [--wait-timeout SEC] [--json]",
     "Close CLUSTER's current WAL segment now (a worker of its site runs pg_switch_wal()), so\n"
     "that it is archived without waiting for it to fill. --force runs a CHECKPOINT first, so\n"
     "that an idle server has a segment to close. --archive then waits (up to --wait-timeout,\n"
     "default 120 s) until the WAL index has the segment: exit 0 once it is archived, 1 with\n"
     "a message when it is not in time. Prints the segment closed; --json {cluster, wal_file,\n"
     "job_id, archived, archive_wait_ms}.", 0, NULL},
    {"wal-push", 2, 2, OPT_JSON | OPT_SPOOL, verb_wal_push,
     "wal-push CLUSTER PATH [--spool DIR] [--json]",
     "PostgreSQL's archive_command for a cluster with wal = archive:\n"
     "    archive_command = 'barque -c /etc/barque/barque.conf wal-push CLUSTER %p'\n"
     "Sends the WAL file at PATH (a segment, .partial, .history or .backup file) to the data\n"
     "port of a worker at the cluster's site, which checks its headers and stores it durably\n"
     "(compressed, encrypted); then the coordinator records it in the WAL index. Exit 0 only\n"
     "then. The same content pushed again is success (\"already archived\" on stderr); other\n"
     "content under an archived name is refused, exit 1, and both copies are kept (the new one\n"
     "beside the old as NAME.conflict-SHA). The file is compressed (lz4) before it is sent.\n"
     "With --spool DIR (owned by the server's user; as pgBackRest's archive-async), the call\n"
     "for a file the server marked ready starts one background pusher for DIR (if none runs)\n"
     "and waits, at most 60 s, for the file's marker DIR/NAME.ok or DIR/NAME.error. The pusher\n"
     "pushes every ready file (pg_wal/archive_status), oldest first, four at a time, records\n"
     "each in the WAL index and only then writes its marker (size, mtime, inode of the file),\n"
     "so later calls return 0 at once: nothing is reported archived that is not durable in a\n"
     "store. A failure is written to NAME.error and said by the call for that file (exit 1;\n"
     "the server retries it). The pusher logs to DIR/pusher.log and ends after 10 s idle. The\n"
     "config and its secret key must be readable by the server's OS user; its operator key is\n"
     "the one the data ports admit.", 0, NULL},
    {"wal-get", 3, 3, OPT_JSON | OPT_SPOOL | OPT_PREFETCH | OPT_FROM_SITE | OPT_PREFER_SITE,
     verb_wal_get,
     "wal-get CLUSTER NAME DEST [--prefetch N] [--spool DIR] [--from-site SITE]\n"
     "               [--prefer-site SITE] [--json]",
     "PostgreSQL's restore_command, for every cluster:\n"
     "    restore_command = 'barque -c /etc/barque/barque.conf wal-get CLUSTER %f %p'\n"
     "Fetches WAL file NAME (a segment, .history, .partial or .backup file) of CLUSTER into\n"
     "DEST from the nearest worker whose store holds it (the WAL index's holders at the\n"
     "cluster's site first, then every worker there: a segment still being streamed comes from\n"
     "the wal-stream job's spool, so a recovery replays up to the last WAL received). Exit 0\n"
     "with the file in DEST; 1 when no store has it (every worker asked said so: recovery\n"
     "ends there); 2 when it could not be fetched (no worker reachable, damage), said on\n"
     "stderr. --prefetch N: fetch the next N segments in the background into DIR (default:\n"
     "DEST's directory/.barque-prefetch), so replay finds them there; files still streaming\n"
     "are never prefetched. --from-site SITE: only stores at SITE; --prefer-site SITE: stores\n"
     "at SITE first, then the others (recover writes it with the restoring worker's site, so a\n"
     "recovery reads the nearest copy and falls back to another site when that is dark).",
     0, NULL},
    {"show-backup", 2, 2, OPT_JSON, verb_show_backup,
     "show-backup CLUSTER ID|latest|oldest [--json]",
     "Everything the catalog knows about one backup of CLUSTER: state, job and worker, stores\n"
     "holding it, system identifier, PostgreSQL version, timeline, begin/end LSN, time and WAL,\n"
     "sizes, files, duration, page checksum failures. latest and oldest mean the newest and\n"
     "oldest DONE backup. Then the backup's last restore test (PASSED or FAILED, when, its\n"
     "RTO, job and error), or \"never\". --json gives sizes in bytes, and the test as\n"
     "last_restore_test (null when none).", 0, NULL},
    {"list-files", 2, 2, OPT_JSON | OPT_WAIT_TIMEOUT, verb_list_files,
     "list-files CLUSTER ID|latest|oldest [--wait-timeout SEC] [--json]",
     "The files of a DONE backup of CLUSTER, in the backup's order: mode, size, modification\n"
     "time (UTC) and path. Paths are where `barque recover` writes each file, relative to the\n"
     "restored data directory: PG_VERSION, base/5/16384, backup_manifest, pg_tblspc/OID/... for\n"
     "other tablespaces (recover links pg_tblspc/OID to the tablespace's directory), pg_wal/NAME\n"
     "for the WAL the backup carries. Directories and symlinks are listed too, so the count is\n"
     "show-backup's files. A worker whose store holds the backup reads its manifest (no data is\n"
     "read), 5,000 files per job; each page must come within --wait-timeout (default 120 s).\n"
     "--json prints one array of {path, type, mode, size, mtime, modified}.", 0, NULL},
    {"replicate", 1, 2, OPT_JSON | OPT_WAIT | OPT_TO, verb_replicate,
     "replicate CLUSTER [ID|latest] [--to SITE] [--wait] [--json]",
     "Copy backup ID of CLUSTER (latest: the newest DONE one) to SITE, or to every site of the\n"
     "cluster's replicate_to, now (the coordinator also does it by itself for each backup that\n"
     "becomes DONE). A worker at the target site pulls from a worker holding the backup only\n"
     "the chunks its store lacks, checks each on arrival and writes the manifest last; the copy\n"
     "is DONE once the WAL the backup needs is at the site too. A FAILED copy is tried again.\n"
     "--wait follows the jobs and prints the backup's copies; exit 1 when one failed.", 0, NULL},
    {"delete", 2, 2, OPT_JSON | OPT_WAIT, verb_delete, "delete CLUSTER ID [--wait] [--json]",
     "Delete backup ID of CLUSTER (an id: latest and oldest are not accepted). Refused while the\n"
     "backup is STARTED or a restore, list-files or delete of it is queued or running. The\n"
     "backup becomes DELETING and each worker whose store holds it removes its manifest, then\n"
     "runs GC to reclaim the chunks no other backup uses (GC beside running jobs; skipped, not\n"
     "failed, when a GC or verify already runs: the next GC reclaims them). Once every store\n"
     "has it removed, the catalog record goes. A backup no store holds (FAILED) is removed at\n"
     "once. --wait follows the delete jobs; exit 1 when one failed: the backup stays DELETING\n"
     "with the reason, and delete can be run again.", 0, NULL},
    {"store init", 1, 1, OPT_JSON | OPT_KEY | OPT_COMPRESSION | OPT_LEVEL | OPT_CHUNK_SIZE,
     verb_store,
     "store init PATH --key FILE [--compression zstd|lz4|none] [--level N] [--chunk-size SIZE] [--json]",
     "Create a new, empty store in PATH (made 0700 if absent): its format marker, keys/,\n"
     "backups/, index and store.conf, with a fresh id key wrapped under the master key.\n"
     "New chunks are compressed with zstd level 3 unless --compression/--level say otherwise\n"
     "(lz4: --level is the acceleration); --chunk-size is 8K..16M in steps of 8K (default\n"
     "64K). An existing store is refused and left as it is.\n" STORE_HELP_KEY,
     VERB_OFFLINE, store_cmd_init},
    {"store ls", 1, 1, OPT_JSON | OPT_KEY, verb_store, "store ls PATH --key FILE [--json]",
     "Every backup in the store at PATH: id, creation time, files and logical size.\n"
     STORE_HELP_KEY, VERB_OFFLINE, store_cmd_ls},
    {"store show", 2, 2, OPT_JSON | OPT_KEY, verb_store, "store show PATH BACKUP_ID --key FILE [--json]",
     "One backup's manifest: creation time, chunk size, data key, totals, its meta keys with\n"
     "their sizes, and each file with its mode, size and number of chunks.\n" STORE_HELP_KEY,
     VERB_OFFLINE, store_cmd_show},
    {"store stats", 1, 1, OPT_JSON | OPT_KEY, verb_store, "store stats PATH --key FILE [--json]",
     "Figures of the whole store: backups, chunks, stored bytes (pack files), logical bytes\n"
     "(every backup's files) and the dedup ratio (logical / stored).\n" STORE_HELP_KEY,
     VERB_OFFLINE, store_cmd_stats},
    {"store verify", 1, 1, OPT_JSON | OPT_KEY, verb_store, "store verify PATH --key FILE [--json]",
     "Re-read every pack record (crc, authentication tag, chunk id), every index entry, every\n"
     "backup's manifest and every WAL file. Prints each damaged or missing chunk with every\n"
     "backup and file that depends on it; exit 1 when anything is damaged. A torn pack tail that\n"
     "nothing refers to (a killed writer's) is a warning.\n" STORE_HELP_KEY,
     VERB_OFFLINE, store_cmd_verify},
    {"store gc", 1, 1, OPT_JSON | OPT_KEY, verb_store, "store gc PATH --key FILE [--json]",
     "Reclaim the space of chunks no backup references any more (after backups were deleted):\n"
     "their index entries go, packs with nothing live are deleted, and packs less than half\n"
     "live are rewritten with only their live records (copied as they are, not re-encrypted).\n"
     "Also removes the packs and temp manifests of killed writers. Needs the store to itself\n"
     "(an exclusive lock: refused while a backup, WAL archiving or a reader runs). Data key\n"
     "files and WAL files are never removed.\n" STORE_HELP_KEY,
     VERB_OFFLINE, store_cmd_gc},
    {"store rotate-key", 1, 1, OPT_JSON | OPT_KEY | OPT_NEW_KEY, verb_store,
     "store rotate-key PATH --key OLD_FILE --new-key NEW_FILE [--json]",
     "Re-wrap every data key and the id key of the store at PATH under the master key in\n"
     "NEW_FILE (barque keygen NAME --store-key), one file at a time, durably; packs are not\n"
     "rewritten. Needs the store to itself (an exclusive lock: no backup, WAL archiving or\n"
     "reader may run). A wrong OLD_FILE changes nothing. If it is interrupted, run it again\n"
     "with the same two keys: it finishes the job (until then, reading some backups fails\n"
     "with a wrong-key error, and nothing is damaged).", VERB_OFFLINE, store_cmd_rotate_key},
};

static void usage_all(FILE *f)
{
    fprintf(f, "usage: barque [-c FILE] [--timeout SEC] VERB [ARGS] [--json] [--help]\n\n"
               "Barque: backup and recovery for fleets of PostgreSQL clusters.\n\nVerbs:\n");
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
        fprintf(f, "  barque %s\n", verbs[i].usage);
    fprintf(f, "\nThe config ([cli] coordinator, coordinator_public_key_file, secret_key_file) is\n"
               "-c FILE, else $BARQUE_CONFIG, else ~/.config/barque/barque.conf, else\n"
               "/etc/barque/barque.conf. Exit status: 0 success, 1 failure, 2 usage error.\n"
               "'barque VERB --help' describes one verb.\n");
}

static void usage_verb(FILE *f, const verb_t *v)
{
    fprintf(f, "usage: barque %s%s\n\n%s\n",
            (v->flags & VERB_OFFLINE) ? "" : "[-c FILE] [--timeout SEC] ", v->usage, v->help);
}

static int parse_seconds(const char *s, int64_t *ms)
{
    if (bq_duration_parse(s, ms) != 0 || *ms <= 0)
        return err_usage("%s is not a positive duration in seconds (e.g. 10 or 10s)", s);
    return 0;
}

int cli_main(int argc, char **argv)
{
    cli_opts_t o;
    memset(&o, 0, sizeof o);
    o.wait_timeout_ms = 120000;
    unsigned seen = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = (i + 1 < argc) ? argv[i + 1] : NULL;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            o.help = 1;
        } else if (strcmp(a, "--json") == 0) {
            o.json = 1;
            seen |= OPT_JSON;
        } else if (strcmp(a, "--all") == 0) {
            o.all = 1;
            seen |= OPT_ALL;
        } else if (strcmp(a, "--store-key") == 0) {
            o.store_key = 1;
            seen |= OPT_STORE_KEY;
        } else if (strcmp(a, "--wait") == 0) {
            o.wait = 1;
            seen |= OPT_WAIT;
        } else if (strcmp(a, "--spread") == 0) {
            o.spread = 1;
            seen |= OPT_SPREAD;
        } else if (strcmp(a, "--delta") == 0) {
            o.delta = 1;
            seen |= OPT_DELTA;
        } else if (strcmp(a, "--force") == 0) {
            o.force = 1;
            seen |= OPT_FORCE;
        } else if (strcmp(a, "--nagios") == 0) {
            o.nagios = 1;
            seen |= OPT_NAGIOS;
        } else if (strcmp(a, "--release") == 0 || strcmp(a, "--status") == 0) {
            *(a[2] == 'r' ? &o.keep_release : &o.keep_status) = 1;
            seen |= OPT_KEEP;
        } else if (strcmp(a, "--target") == 0) {
            if (!val)
                return err_usage("option %s needs a value", a);
            i++;
            o.keep_target = val;
            seen |= OPT_KEEP;
        } else if (strcmp(a, "--to") == 0) {
            if (!val)
                return err_usage("option %s needs a value", a);
            if (!bq_name_valid(val))
                return err_usage("%s: %s is not a valid site name", a, val);
            i++;
            o.to_site = val;
            seen |= OPT_TO;
        } else if (strcmp(a, "--from-site") == 0 || strcmp(a, "--prefer-site") == 0) {
            if (!val)
                return err_usage("option %s needs a value", a);
            if (!bq_name_valid(val))
                return err_usage("%s: %s is not a valid site name", a, val);
            i++;
            if (a[2] == 'f') {
                o.from_site = val;
                seen |= OPT_FROM_SITE;
            } else {
                o.prefer_site = val;
                seen |= OPT_PREFER_SITE;
            }
        } else if (strcmp(a, "--archive") == 0) {
            o.archive = 1;
            seen |= OPT_ARCHIVE;
        } else if (strcmp(a, "--worker") == 0 || strcmp(a, "--owner") == 0 ||
                   strcmp(a, "--tablespace") == 0) {
            if (!val)
                return err_usage("option %s needs a value", a);
            i++;
            if (strcmp(a, "--worker") == 0) {
                o.worker = val;
                seen |= OPT_WORKER;
            } else if (strcmp(a, "--owner") == 0) {
                o.owner = val;
                seen |= OPT_OWNER;
            } else {
                if (o.ntablespaces == CLI_TABLESPACES_MAX)
                    return err_usage("at most %d --tablespace options", CLI_TABLESPACES_MAX);
                o.tablespaces[o.ntablespaces++] = val;
                seen |= OPT_TABLESPACE;
            }
        } else if (strcmp(a, "--target-time") == 0 || strcmp(a, "--target-xid") == 0 ||
                   strcmp(a, "--target-lsn") == 0 || strcmp(a, "--target-name") == 0 ||
                   strcmp(a, "--target-tli") == 0 || strcmp(a, "--target-action") == 0) {
            if (!val)
                return err_usage("option %s needs a value", a);
            i++;
            seen |= OPT_TARGET;
            if (strcmp(a, "--target-tli") == 0) {
                o.target_tli = val;
            } else if (strcmp(a, "--target-action") == 0) {
                o.target_action = val;
            } else {
                o.target_kind = a + 9;
                o.target_value = val;
                o.ntargets++;
            }
        } else if (strcmp(a, "--target-immediate") == 0) {
            o.target_kind = "immediate";
            o.target_value = "";
            o.ntargets++;
            seen |= OPT_TARGET;
        } else if (strcmp(a, "--exclusive") == 0 || strcmp(a, "--standby") == 0) {
            if (a[2] == 'e')
                o.exclusive = 1;
            else
                o.standby = 1;
            seen |= OPT_TARGET;
        } else if (strcmp(a, "--spool-pusher") == 0) { /* internal: wal-push's own pusher */
            o.spool_pusher = 1;
            seen |= OPT_SPOOL;
        } else if (strcmp(a, "--spool") == 0) {
            if (!val)
                return err_usage("option %s needs a value", a);
            o.spool = val;
            seen |= OPT_SPOOL;
            i++;
        } else if (strcmp(a, "--prefetch") == 0 || strcmp(a, "--prefetch-only") == 0) {
            char *end;
            long v = val ? strtol(val, &end, 10) : -1;
            int only = strcmp(a, "--prefetch-only") == 0;
            if (!val || *end || v < (only ? 1 : 0) || (!only && v > 64))
                return err_usage("%s needs a number%s", a, only ? "" : " from 0 to 64");
            if (only)
                o.prefetch_only = v;
            else
                o.prefetch = (int)v;
            seen |= OPT_PREFETCH;
            i++;
        } else if (strcmp(a, "--count") == 0) {
            char *end;
            unsigned long v = val ? strtoul(val, &end, 10) : 0;
            if (!val || *end || v < 1 || v > 100000 || val[0] == '-')
                return err_usage("--count needs a number from 1 to 100000");
            o.count = (uint32_t)v;
            seen |= OPT_COUNT;
            i++;
        } else if (strcmp(a, "--key") == 0 || strcmp(a, "--compression") == 0 ||
                   strcmp(a, "--level") == 0 || strcmp(a, "--chunk-size") == 0 ||
                   strcmp(a, "--new-key") == 0) {
            if (!val)
                return err_usage("option %s needs a value", a);
            i++;
            if (strcmp(a, "--key") == 0) {
                o.key = val;
                seen |= OPT_KEY;
            } else if (strcmp(a, "--new-key") == 0) {
                o.new_key = val;
                seen |= OPT_NEW_KEY;
            } else if (strcmp(a, "--compression") == 0) {
                o.compression = val;
                seen |= OPT_COMPRESSION;
            } else if (strcmp(a, "--level") == 0) {
                o.level = val;
                seen |= OPT_LEVEL;
            } else {
                o.chunk_size = val;
                seen |= OPT_CHUNK_SIZE;
            }
        } else if (strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0 || strcmp(a, "--dir") == 0 ||
                   strcmp(a, "--timeout") == 0 || strcmp(a, "--wait-timeout") == 0) {
            if (!val)
                return err_usage("option %s needs a value", a);
            i++;
            if (a[1] == 'c' || strcmp(a, "--config") == 0) {
                o.config = val;
            } else if (strcmp(a, "--dir") == 0) {
                o.dir = val;
                seen |= OPT_DIR;
            } else if (strcmp(a, "--timeout") == 0) {
                if (parse_seconds(val, &o.timeout_ms))
                    return 2;
            } else {
                if (parse_seconds(val, &o.wait_timeout_ms))
                    return 2;
                seen |= OPT_WAIT_TIMEOUT;
            }
        } else if (a[0] == '-' && a[1] != '\0') {
            return err_usage("unknown option %s (see barque --help)", a);
        } else {
            if (o.nargs == (int)(sizeof o.args / sizeof o.args[0]))
                return err_usage("too many arguments");
            o.args[o.nargs++] = a;
        }
    }
    if (o.nargs == 0) {
        usage_all(o.help ? stdout : stderr);
        return o.help ? 0 : 2;
    }
    /* two-word verbs first ("job show"), then one-word ones */
    const verb_t *v = NULL;
    int words = 0;
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0] && !v; i++) {
        const char *sp = strchr(verbs[i].name, ' ');
        if (sp && o.nargs >= 2 && strncmp(verbs[i].name, o.args[0], (size_t)(sp - verbs[i].name)) == 0 &&
            strlen(o.args[0]) == (size_t)(sp - verbs[i].name) && strcmp(sp + 1, o.args[1]) == 0) {
            v = &verbs[i];
            words = 2;
        } else if (!sp && strcmp(verbs[i].name, o.args[0]) == 0) {
            v = &verbs[i];
            words = 1;
        }
    }
    if (!v) {
        if (strcmp(o.args[0], "job") == 0) {
            fprintf(o.help ? stdout : stderr, "usage: barque job show ID | job cancel ID | job sleep SITE DURATION\n");
            return o.help ? 0 : 2;
        }
        /* a group word alone ("store"): its verbs */
        size_t glen = strlen(o.args[0]);
        int group = 0;
        for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
            if (strncmp(verbs[i].name, o.args[0], glen) == 0 && verbs[i].name[glen] == ' ') {
                fprintf(o.help ? stdout : stderr, "%s barque %s\n", group++ ? "      " : "usage:",
                        verbs[i].usage);
            }
        if (group)
            return o.help ? 0 : 2;
        return err_usage("unknown verb %s (see barque --help)", o.args[0]);
    }
    if (o.help) {
        usage_verb(stdout, v);
        return 0;
    }
    memmove(o.args, o.args + words, sizeof(o.args[0]) * (size_t)(o.nargs - words));
    o.nargs -= words;
    if (seen & ~v->opts) {
        usage_verb(stderr, v);
        return 2;
    }
    if (o.nargs < v->min_args || o.nargs > v->max_args) {
        usage_verb(stderr, v);
        return 2;
    }
    cli_t c;
    memset(&c, 0, sizeof c);
    c.o = &o;
    c.verb = v;
    int rc;
    if (v->flags & VERB_OFFLINE) {
        rc = v->run(&c);
    } else {
        bq_errbuf_t e;
        int crc = cli_connect(&c, &e);
        rc = crc ? fail(crc, e.msg) : v->run(&c);
    }
    memset(&c.cfg.keys, 0, sizeof c.cfg.keys);
    proto_sock_destroy(&c.sock);
    proto_ctx_destroy(&c.ctx);
    return rc;
}
