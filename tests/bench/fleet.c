/* bench_fleet: a simulated fleet of workers and one operator against ONE real
 * barque-coordinator, to measure the control plane (registration, dispatch, assign latency,
 * completion rate, the coordinator's memory, CPU and catalog size).
 *
 *   bench_fleet --setup DIR [--workers N] [--clusters M] [--sites S] ...
 *       writes DIR/keys/ (coordinator, one key pair per worker, operator "bench") and
 *       DIR/coordinator.conf (a free loopback port, DIR/catalog); DIR must not exist yet.
 *   bench_fleet --run DIR --coordinator-pid PID [--jobs J] [--rate R] ...
 *       reads DIR/coordinator.conf, forks shards of at most --per-proc simulated workers
 *       (each proto_client_new is three ZeroMQ sockets and a context holds at most 1023),
 *       registers them all, heartbeats each every heartbeat interval, accepts every offer at
 *       once and returns an ok result after a simulated run; the parent is the operator and
 *       submits J "sleep" jobs (sleep_ms 0, one cluster after the other), then prints figures.
 *
 * Every loop is bounded in time (--max-seconds) and count. Exit status of --run: 0, or 1 when
 * --check is given and not every job was submitted, dispatched and completed, or 2 on a
 * setup/usage error. This is a benchmark that prints figures, not a timed test. */
#include "clock.h"
#include "config.h"
#include "err.h"
#include "fsutil.h"
#include "keys.h"
#include "log.h"
#include "proto.h"
#include "types.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define OPERATOR_NAME "bench"
#define SOCKETS_PER_CLIENT 3   /* DEALER + monitor PAIR + libzmq's own monitor PAIR */
#define ZMQ_SOCKETS_DEFAULT 1023
#define SIM_JOBS_MAX 64        /* per simulated worker; the coordinator gives at most max_jobs */
#define REGISTER_RETRY_US 50000
#define REGISTER_RESEND_US 3000000
#define RESULT_RESEND_US 5000000
#define RECV_PER_SOCKET_MAX 64
#define SHARDS_MAX 64

/* ---- options ------------------------------------------------------------------------- */

typedef struct {
    const char *setup_dir, *run_dir;
    long workers, clusters, sites, max_jobs;
    long heartbeat_ms, worker_timeout_s;
    const char *log_level;
    long jobs, rate, burst, window;
    long run_min_ms, run_max_ms;
    long per_proc, poll_us;
    long register_timeout_s, drain_timeout_s, max_seconds;
    long coordinator_pid;
    const char *coordinator_log;
    int check;
} opts_t;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: bench_fleet --setup DIR [--workers N] [--clusters M] [--sites S] [--max-jobs K]\n"
            "                   [--heartbeat-ms MS] [--worker-timeout-s S] [--log-level L]\n"
            "       bench_fleet --run DIR --coordinator-pid PID [--coordinator-log FILE]\n"
            "                   [--jobs J] [--rate R] [--burst B] [--window W] [--run-ms MIN-MAX]\n"
            "                   [--per-proc P] [--poll-us U] [--register-timeout-s S]\n"
            "                   [--drain-timeout-s S] [--max-seconds S] [--check]\n"
            "\n"
            "A control-plane benchmark of barque-coordinator: N simulated workers (CURVE DEALER\n"
            "sockets, in shards of at most P per process) and one operator submitting J sleep jobs.\n"
            "\n"
            "  --workers N           simulated workers (default 1000)\n"
            "  --clusters M          clusters in the config (default 10000)\n"
            "  --sites S             sites; worker i and cluster j are at site i%%S, j%%S (default 10)\n"
            "  --max-jobs K          slots per worker (default 4)\n"
            "  --heartbeat-ms MS     heartbeat interval, config and workers (default 1000)\n"
            "  --worker-timeout-s S  coordinator's worker_timeout (default 10)\n"
            "  --log-level L         coordinator's log_level (default warning)\n"
            "  --jobs J              jobs to submit (default 10000)\n"
            "  --rate R              submissions per second, 0 = as fast as the window allows\n"
            "                        (default 250)\n"
            "  --burst B             submit B jobs at once every B/R seconds (default 1: steady)\n"
            "  --window W            submissions awaiting their reply at most (default 64)\n"
            "  --run-ms MIN-MAX      simulated run time of a job (default 0-50)\n"
            "  --per-proc P          simulated workers per process, 1..334 (default 250)\n"
            "  --poll-us U           a shard sleeps at most U us when a sweep of its sockets found\n"
            "                        nothing (default 2000; bounds the measurement's resolution)\n"
            "  --register-timeout-s  (default 60)   --drain-timeout-s (default 45)\n"
            "  --max-seconds S       bound on the whole --run (default 170)\n"
            "  --check               exit 1 unless every job was submitted, offered and completed\n");
}

static int parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static int opts_parse(int argc, char **argv, opts_t *o)
{
    *o = (opts_t){.workers = 1000, .clusters = 10000, .sites = 10, .max_jobs = 4,
                  .heartbeat_ms = 1000, .worker_timeout_s = 10, .log_level = "warning",
                  .jobs = 10000, .rate = 250, .burst = 1, .window = 64,
                  .run_min_ms = 0, .run_max_ms = 50, .per_proc = 250, .poll_us = 2000,
                  .register_timeout_s = 60, .drain_timeout_s = 45, .max_seconds = 170};
    enum { O_SETUP = 256, O_RUN, O_WORKERS, O_CLUSTERS, O_SITES, O_MAXJOBS, O_HB, O_WTO,
           O_LOG, O_JOBS, O_RATE, O_BURST, O_WINDOW, O_RUNMS, O_PERPROC, O_POLL, O_REGTO,
           O_DRAINTO, O_MAXSEC, O_PID, O_CLOG, O_CHECK, O_HELP };
    static const struct option lo[] = {
        {"setup", required_argument, NULL, O_SETUP},
        {"run", required_argument, NULL, O_RUN},
        {"workers", required_argument, NULL, O_WORKERS},
        {"clusters", required_argument, NULL, O_CLUSTERS},
        {"sites", required_argument, NULL, O_SITES},
        {"max-jobs", required_argument, NULL, O_MAXJOBS},
        {"heartbeat-ms", required_argument, NULL, O_HB},
        {"worker-timeout-s", required_argument, NULL, O_WTO},
        {"log-level", required_argument, NULL, O_LOG},
        {"jobs", required_argument, NULL, O_JOBS},
        {"rate", required_argument, NULL, O_RATE},
        {"burst", required_argument, NULL, O_BURST},
        {"window", required_argument, NULL, O_WINDOW},
        {"run-ms", required_argument, NULL, O_RUNMS},
        {"per-proc", required_argument, NULL, O_PERPROC},
        {"poll-us", required_argument, NULL, O_POLL},
        {"register-timeout-s", required_argument, NULL, O_REGTO},
        {"drain-timeout-s", required_argument, NULL, O_DRAINTO},
        {"max-seconds", required_argument, NULL, O_MAXSEC},
        {"coordinator-pid", required_argument, NULL, O_PID},
        {"coordinator-log", required_argument, NULL, O_CLOG},
        {"check", no_argument, NULL, O_CHECK},
        {"help", no_argument, NULL, O_HELP},
        {NULL, 0, NULL, 0},
    };
    int c, bad = 0, li = -1;
    while ((c = getopt_long(argc, argv, "h", lo, &li)) != -1) {
        switch (c) {
        case O_SETUP: o->setup_dir = optarg; break;
        case O_RUN: o->run_dir = optarg; break;
        case O_WORKERS: bad |= parse_long(optarg, 1, 100000, &o->workers); break;
        case O_CLUSTERS: bad |= parse_long(optarg, 1, 1000000, &o->clusters); break;
        case O_SITES: bad |= parse_long(optarg, 1, 10000, &o->sites); break;
        case O_MAXJOBS: bad |= parse_long(optarg, 1, 32, &o->max_jobs); break;
        case O_HB: bad |= parse_long(optarg, 100, 60000, &o->heartbeat_ms); break;
        case O_WTO: bad |= parse_long(optarg, 1, 3600, &o->worker_timeout_s); break;
        case O_LOG: o->log_level = optarg; break;
        case O_JOBS: bad |= parse_long(optarg, 0, 10000000, &o->jobs); break;
        case O_RATE: bad |= parse_long(optarg, 0, 1000000, &o->rate); break;
        case O_BURST: bad |= parse_long(optarg, 1, 1000000, &o->burst); break;
        case O_WINDOW: bad |= parse_long(optarg, 1, 900, &o->window); break;
        case O_RUNMS: {
            char *dash = strchr(optarg, '-');
            char buf[64];
            if (!dash || strlen(optarg) >= sizeof buf) {
                bad = 1;
                break;
            }
            snprintf(buf, sizeof buf, "%.*s", (int)(dash - optarg), optarg);
            bad |= parse_long(buf, 0, 600000, &o->run_min_ms);
            bad |= parse_long(dash + 1, 0, 600000, &o->run_max_ms);
            if (o->run_max_ms < o->run_min_ms)
                bad = 1;
            break;
        }
        case O_PERPROC:
            bad |= parse_long(optarg, 1, (ZMQ_SOCKETS_DEFAULT - 20) / SOCKETS_PER_CLIENT,
                              &o->per_proc);
            break;
        case O_POLL: bad |= parse_long(optarg, 50, 100000, &o->poll_us); break;
        case O_REGTO: bad |= parse_long(optarg, 1, 3600, &o->register_timeout_s); break;
        case O_DRAINTO: bad |= parse_long(optarg, 0, 3600, &o->drain_timeout_s); break;
        case O_MAXSEC: bad |= parse_long(optarg, 5, 86400, &o->max_seconds); break;
        case O_PID: bad |= parse_long(optarg, 1, INT_MAX, &o->coordinator_pid); break;
        case O_CLOG: o->coordinator_log = optarg; break;
        case O_CHECK: o->check = 1; break;
        case O_HELP:
        case 'h': usage(stdout); exit(0);
        default: return -1;
        }
        if (bad) {
            fprintf(stderr, "bench_fleet: bad value for --%s: %s\n", li >= 0 ? lo[li].name : "?",
                    optarg ? optarg : "");
            return -1;
        }
    }
    if (optind != argc || (!o->setup_dir == !o->run_dir)) {
        fprintf(stderr, "bench_fleet: give exactly one of --setup DIR or --run DIR\n");
        return -1;
    }
    if (o->run_dir && !o->coordinator_pid) {
        fprintf(stderr, "bench_fleet: --run needs --coordinator-pid PID\n");
        return -1;
    }
    return 0;
}

/* ---- time, histograms, percentiles ------------------------------------------------------ */

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void sleep_us(int64_t us)
{
    if (us <= 0)
        return;
    struct timespec ts = {.tv_sec = us / 1000000, .tv_nsec = (us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Log-linear histogram of microseconds: exact below 64 us, then 32 buckets per power of two
 * (about 3 % resolution). Plain memory: one writer (a shard), read after it exits. */
#define HIST_N (64 + 58 * 32)
typedef struct {
    uint64_t n;
    int64_t max;
    uint32_t b[HIST_N];
} hist_t;

static int hist_idx(int64_t us)
{
    if (us < 64)
        return us < 0 ? 0 : (int)us;
    int msb = 63 - __builtin_clzll((unsigned long long)us);
    int idx = 64 + (msb - 6) * 32 + (int)((us >> (msb - 5)) - 32);
    return idx < HIST_N ? idx : HIST_N - 1;
}

static int64_t hist_value(int idx) /* middle of the bucket */
{
    if (idx < 64)
        return idx;
    int msb = (idx - 64) / 32 + 6, sub = (idx - 64) % 32;
    int64_t lo = ((int64_t)(32 + sub)) << (msb - 5);
    return lo + ((int64_t)1 << (msb - 5)) / 2;
}

static void hist_add(hist_t *h, int64_t us)
{
    h->b[hist_idx(us)]++;
    h->n++;
    if (us > h->max)
        h->max = us;
}

static void hist_merge(hist_t *into, const hist_t *h)
{
    for (int i = 0; i < HIST_N; i++)
        into->b[i] += h->b[i];
    into->n += h->n;
    if (h->max > into->max)
        into->max = h->max;
}

static int64_t hist_pct(const hist_t *h, double p)
{
    if (!h->n)
        return 0;
    uint64_t want = (uint64_t)(p / 100.0 * (double)h->n + 0.999999);
    if (want < 1)
        want = 1;
    uint64_t seen = 0;
    for (int i = 0; i < HIST_N; i++) {
        seen += h->b[i];
        if (seen >= want)
            return hist_value(i) < h->max ? hist_value(i) : h->max;
    }
    return h->max;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of sorted v[0..n). */
static int64_t pct_sorted(const int64_t *v, size_t n, double p)
{
    if (!n)
        return 0;
    size_t rank = (size_t)(p / 100.0 * (double)n + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return v[rank - 1];
}

/* ---- the fleet's names and keys --------------------------------------------------------- */

static void worker_name(long i, char *buf, size_t len) { snprintf(buf, len, "w%05ld", i); }
static void site_name(long i, char *buf, size_t len) { snprintf(buf, len, "s%02ld", i); }
static void cluster_name(long i, char *buf, size_t len) { snprintf(buf, len, "c%06ld", i); }

static int pick_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof a;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &alen) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

static int gen_key(const char *keydir, const char *name, bq_keypair_t *kp)
{
    bq_errbuf_t e;
    if (bq_keypair_generate(kp) != 0 || bq_keypair_write(keydir, name, kp, &e) != 0) {
        fprintf(stderr, "bench_fleet: could not write key %s/%s: %s\n", keydir, name,
                bq_keypair_generate(kp) ? "key generation failed" : e.msg);
        return -1;
    }
    return 0;
}

static int setup(const opts_t *o)
{
    bq_errbuf_t e;
    char dir[PATH_MAX], keydir[PATH_MAX + 16], path[PATH_MAX + 32], name[BQ_NAME_MAX];
    if (!realpath(o->setup_dir, dir)) {
        if (mkdir(o->setup_dir, 0700) != 0 || !realpath(o->setup_dir, dir)) {
            fprintf(stderr, "bench_fleet: could not create %s: %s\n", o->setup_dir, strerror(errno));
            return 2;
        }
    }
    snprintf(keydir, sizeof keydir, "%s/keys", dir);
    snprintf(path, sizeof path, "%s/coordinator.conf", dir);
    if (access(path, F_OK) == 0 || access(keydir, F_OK) == 0) {
        fprintf(stderr, "bench_fleet: %s already holds a fleet; give an empty directory\n", dir);
        return 2;
    }
    if (bq_mkdir_p(keydir, 0700, &e) != 0) {
        fprintf(stderr, "bench_fleet: %s\n", e.msg);
        return 2;
    }
    int64_t t0 = now_us();
    bq_keypair_t kp;
    if (gen_key(keydir, "coordinator", &kp) || gen_key(keydir, OPERATOR_NAME, &kp))
        return 2;
    for (long i = 0; i < o->workers; i++) {
        worker_name(i, name, sizeof name);
        if (gen_key(keydir, name, &kp))
            return 2;
    }
    int port = pick_port();
    if (port <= 0) {
        fprintf(stderr, "bench_fleet: could not find a free loopback port: %s\n", strerror(errno));
        return 2;
    }
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "bench_fleet: could not write %s: %s\n", path, strerror(errno));
        return 2;
    }
    fprintf(f, "# written by bench_fleet --setup: %ld workers, %ld clusters, %ld sites\n",
            o->workers, o->clusters, o->sites);
    fprintf(f, "[coordinator]\nlisten = tcp://127.0.0.1:%d\ncatalog = %s/catalog\n"
               "secret_key_file = %s/coordinator.key\nheartbeat_interval = %ldms\n"
               "worker_timeout = %lds\nlog_level = %s\n\n",
            port, dir, keydir, o->heartbeat_ms, o->worker_timeout_s, o->log_level);
    for (long s = 0; s < o->sites; s++) {
        site_name(s, name, sizeof name);
        fprintf(f, "[site %s]\n", name);
    }
    fprintf(f, "\n[operator %s]\npublic_key_file = %s/%s.pub\n\n", OPERATOR_NAME, keydir,
            OPERATOR_NAME);
    for (long i = 0; i < o->workers; i++) {
        char site[BQ_NAME_MAX];
        worker_name(i, name, sizeof name);
        site_name(i % o->sites, site, sizeof site);
        fprintf(f, "[worker %s]\npublic_key_file = %s/%s.pub\nsite = %s\nmax_jobs = %ld\n", name,
                keydir, name, site, o->max_jobs);
    }
    fprintf(f, "\n");
    for (long j = 0; j < o->clusters; j++) {
        char site[BQ_NAME_MAX];
        cluster_name(j, name, sizeof name);
        site_name(j % o->sites, site, sizeof site);
        /* port 1: nothing listens; sleep jobs never connect */
        /* wal = archive: no wal-stream jobs; the bench measures the operator's jobs alone */
        fprintf(f, "[cluster %s]\nconninfo = host=127.0.0.1 port=1 dbname=postgres\nsite = %s\n"
                   "wal = archive\n",
                name, site);
    }
    if (fclose(f) != 0) {
        fprintf(stderr, "bench_fleet: could not write %s: %s\n", path, strerror(errno));
        return 2;
    }
    printf("setup: %ld worker keys, 1 operator key, %ld clusters, %ld sites in %s (%.1f s); "
           "coordinator listens on tcp://127.0.0.1:%d\n",
           o->workers, o->clusters, o->sites, dir, (double)(now_us() - t0) / 1e6, port);
    return 0;
}

/* ---- shared memory between the operator (parent) and the shards ------------------------- */

typedef struct {
    _Atomic int64_t started, sockets, registered, reg_last_us;
    _Atomic int64_t hb_sent, hb_acks, hb_late_max_us;
    _Atomic int64_t offers, reoffers, accepts, results, resends, acks_ok, acks_refused;
    _Atomic int64_t cancels, errors, send_fail, auth_refused;
    _Atomic int64_t sweeps, sweep_us_total, sweep_us_max;
    _Atomic int64_t done;            /* 1 when the shard wrote its events and exited */
    _Atomic int first_error_set;
    char first_error[384];
    hist_t reg_time;                 /* us from the run's start to a worker's first ack */
    hist_t hb_rtt_reg;               /* us from a heartbeat to its ack, before the jobs */
    hist_t hb_rtt;                   /* the same while jobs are submitted and drained */
} shard_t;

typedef struct {
    _Atomic int stop;
    _Atomic int64_t jobs_from_us;    /* when the operator started submitting; 0 before */
    int64_t t0_us;
    pid_t parent;
    int nshards;
    shard_t shards[];
} shared_t;

#define ADD(sh, f, v) atomic_fetch_add_explicit(&(sh)->f, (v), memory_order_relaxed)
#define GET(sh, f) atomic_load_explicit(&(sh)->f, memory_order_relaxed)
#define SETMAX(sh, f, v)                                                                    \
    do {                                                                                    \
        int64_t cur_ = GET(sh, f);                                                          \
        while ((v) > cur_ && !atomic_compare_exchange_weak(&(sh)->f, &cur_, (v)))           \
            ;                                                                               \
    } while (0)

static void shard_error(shard_t *sh, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void shard_error(shard_t *sh, const char *fmt, ...)
{
    int expect = 0;
    if (!atomic_compare_exchange_strong(&sh->first_error_set, &expect, 1))
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sh->first_error, sizeof sh->first_error, fmt, ap);
    va_end(ap);
}

/* What the shards record, written to DIR/run/shard-K.ev when they stop. */
enum { EV_OFFER = 1, EV_DONE = 2 };
typedef struct {
    uint64_t job_id;
    int64_t t_us;
    uint32_t attempt;
    uint32_t kind;
} event_t;

typedef struct {
    event_t *v;
    size_t n, cap;
} events_t;

static void events_add(events_t *ev, int kind, uint64_t job_id, uint32_t attempt, int64_t t)
{
    if (ev->n == ev->cap) {
        size_t cap = ev->cap ? ev->cap * 2 : 4096;
        event_t *p = realloc(ev->v, cap * sizeof *p);
        if (!p)
            return; /* counted anyway; the event is lost to the latency figures */
        ev->v = p;
        ev->cap = cap;
    }
    ev->v[ev->n++] = (event_t){.job_id = job_id, .t_us = t, .attempt = attempt, .kind = (uint32_t)kind};
}

/* ---- the fleet as read from the config -------------------------------------------------- */

typedef struct {
    char name[BQ_NAME_MAX];
    char site[BQ_NAME_MAX];
    bq_keypair_t keys;
} fleet_worker_t;

typedef struct {
    char dir[PATH_MAX];
    char endpoint[BQ_ENDPOINT_MAX];
    char catalog[PATH_MAX];
    char server_public[BQ_Z85_KEY_LEN + 1];
    bq_keypair_t operator_keys;
    fleet_worker_t *workers;
    size_t nworkers;
    char (*clusters)[BQ_NAME_MAX];
    size_t nclusters, nsites;
    int max_jobs;
    int64_t heartbeat_ms, worker_timeout_ms;
} fleet_t;

static int fleet_load(const char *dirarg, fleet_t *f)
{
    bq_errbuf_t e;
    char path[PATH_MAX + 64];
    memset(f, 0, sizeof *f);
    if (!realpath(dirarg, f->dir)) {
        fprintf(stderr, "bench_fleet: %s: %s\n", dirarg, strerror(errno));
        return -1;
    }
    snprintf(path, sizeof path, "%s/coordinator.conf", f->dir);
    bq_coord_config_t *cfg = calloc(1, sizeof *cfg);
    if (!cfg)
        return -1;
    int rc = bq_coord_config_load(path, cfg, &e);
    if (rc) {
        fprintf(stderr, "bench_fleet: %s\n", e.msg);
        goto out;
    }
    snprintf(f->endpoint, sizeof f->endpoint, "%s", cfg->listen);
    snprintf(f->catalog, sizeof f->catalog, "%s", cfg->catalog);
    snprintf(f->server_public, sizeof f->server_public, "%s", cfg->keys.public_z85);
    f->heartbeat_ms = cfg->heartbeat_interval_ms;
    f->worker_timeout_ms = cfg->worker_timeout_ms;
    f->nsites = cfg->nsites;
    snprintf(path, sizeof path, "%s/keys/%s.key", f->dir, OPERATOR_NAME);
    if ((rc = bq_key_load_secret(path, &f->operator_keys, &e)) != 0) {
        fprintf(stderr, "bench_fleet: %s\n", e.msg);
        goto out;
    }
    f->workers = calloc(cfg->nworkers ? cfg->nworkers : 1, sizeof *f->workers);
    f->clusters = calloc(cfg->nclusters ? cfg->nclusters : 1, sizeof *f->clusters);
    if (!f->workers || !f->clusters) {
        rc = BQ_E_NOMEM;
        goto out;
    }
    for (size_t i = 0; i < cfg->nworkers; i++) {
        fleet_worker_t *w = &f->workers[i];
        snprintf(w->name, sizeof w->name, "%s", cfg->workers[i].name);
        snprintf(w->site, sizeof w->site, "%s", cfg->workers[i].site);
        if (cfg->workers[i].max_jobs > f->max_jobs)
            f->max_jobs = cfg->workers[i].max_jobs;
        snprintf(path, sizeof path, "%s/keys/%s.key", f->dir, w->name);
        if ((rc = bq_key_load_secret(path, &w->keys, &e)) != 0) {
            fprintf(stderr, "bench_fleet: %s\n", e.msg);
            goto out;
        }
    }
    f->nworkers = cfg->nworkers;
    for (size_t i = 0; i < cfg->nclusters; i++)
        snprintf(f->clusters[i], BQ_NAME_MAX, "%s", cfg->clusters[i].name);
    f->nclusters = cfg->nclusters;
    if (f->max_jobs <= 0)
        f->max_jobs = 4;
out:
    bq_coord_config_free(cfg);
    free(cfg);
    return rc ? -1 : 0;
}

/* ---- a shard: simulated workers --------------------------------------------------------- */

typedef struct {
    uint64_t job_id;
    uint32_t attempt;
    int result_sent;
    int64_t due_us;       /* when to send (or resend) the result */
} sim_job_t;

typedef struct {
    const fleet_worker_t *fw;
    proto_sock_t *s;
    int register_sent, registered;
    int64_t next_register_us;
    int64_t hb_due_us;
    uint64_t seq, hb_seq;
    int64_t hb_sent_us;
    size_t njobs;
    sim_job_t jobs[SIM_JOBS_MAX];
} sim_worker_t;

typedef struct {
    const opts_t *o;
    const fleet_t *f;
    shard_t *sh;
    int64_t t0;
    shared_t *shm;
    uint64_t rng;
} shard_ctx_t;

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static int sim_send(shard_ctx_t *x, sim_worker_t *w, bq_msg_t *m)
{
    bq_errbuf_t e;
    m->seq = ++w->seq;
    if (proto_send(w->s, NULL, m, &e) != 0) {
        /* before the first ack a refusal only means "not connected yet" */
        if (w->registered) {
            ADD(x->sh, send_fail, 1);
            shard_error(x->sh, "worker %s could not send: %s", w->fw->name, e.msg);
        }
        return -1;
    }
    return 0;
}

static int sim_hello(shard_ctx_t *x, sim_worker_t *w, bq_msg_type_t type)
{
    bq_job_ref_t running[SIM_JOBS_MAX];
    bq_msg_t m = {.type = type};
    bq_worker_t *r = &m.u.hello.worker;
    snprintf(r->name, sizeof r->name, "%s", w->fw->name);
    snprintf(r->site, sizeof r->site, "%s", w->fw->site);
    snprintf(r->version, sizeof r->version, "bench-fleet");
    r->max_jobs = (uint32_t)x->f->max_jobs;
    r->store_total = 1ull << 40;
    r->store_free = 1ull << 39;
    r->online = 1;
    /* as barque-worker does: a job whose result is sent is no longer running */
    size_t n = 0;
    for (size_t i = 0; i < w->njobs; i++)
        if (!w->jobs[i].result_sent)
            running[n++] = (bq_job_ref_t){w->jobs[i].job_id, w->jobs[i].attempt};
    r->running = (uint32_t)n;
    m.u.hello.nrunning = n;
    m.u.hello.running = n ? running : NULL;
    int rc = sim_send(x, w, &m);
    if (rc == 0) {
        w->hb_seq = w->seq;
        w->hb_sent_us = now_us();
    }
    return rc;
}

static sim_job_t *sim_job_find(sim_worker_t *w, uint64_t id, uint32_t attempt)
{
    for (size_t i = 0; i < w->njobs; i++)
        if (w->jobs[i].job_id == id && w->jobs[i].attempt == attempt)
            return &w->jobs[i];
    return NULL;
}

static void sim_job_drop(sim_worker_t *w, sim_job_t *j)
{
    *j = w->jobs[--w->njobs];
}

static void sim_on_msg(shard_ctx_t *x, sim_worker_t *w, bq_msg_t *m, events_t *ev)
{
    shard_t *sh = x->sh;
    int64_t t = now_us();
    switch (m->type) {
    case BQ_MSG_HEARTBEAT_ACK:
        ADD(sh, hb_acks, 1);
        if (m->seq == w->hb_seq && w->hb_sent_us) {
            int64_t from = atomic_load_explicit(&x->shm->jobs_from_us, memory_order_relaxed);
            hist_add(from && w->hb_sent_us >= from ? &sh->hb_rtt : &sh->hb_rtt_reg,
                     t - w->hb_sent_us);
            w->hb_sent_us = 0;
        }
        if (!w->registered) {
            w->registered = 1;
            ADD(sh, registered, 1);
            SETMAX(sh, reg_last_us, t - x->t0);
            hist_add(&sh->reg_time, t - x->t0);
            /* spread the fleet's heartbeats over the interval */
            w->hb_due_us = t + (int64_t)(rng_next(&x->rng) % (uint64_t)(x->f->heartbeat_ms * 1000));
        }
        break;
    case BQ_MSG_JOB_OFFER: {
        const bq_job_t *j = m->u.job;
        if (!j)
            break;
        ADD(sh, offers, 1);
        if (j->attempt > 1)
            ADD(sh, reoffers, 1);
        events_add(ev, EV_OFFER, j->id, j->attempt, t);
        bq_msg_t a = {.type = BQ_MSG_JOB_ACCEPT};
        a.u.ref = (bq_job_ref_t){j->id, j->attempt};
        if (sim_send(x, w, &a) == 0)
            ADD(sh, accepts, 1);
        if (!sim_job_find(w, j->id, j->attempt) && w->njobs < SIM_JOBS_MAX) {
            int64_t span = (x->o->run_max_ms - x->o->run_min_ms) * 1000;
            int64_t run = x->o->run_min_ms * 1000 + (span ? (int64_t)(rng_next(&x->rng) % (uint64_t)(span + 1)) : 0);
            w->jobs[w->njobs++] = (sim_job_t){.job_id = j->id, .attempt = j->attempt, .due_us = t + run};
        } else if (w->njobs >= SIM_JOBS_MAX) {
            shard_error(sh, "worker %s was offered more than %d jobs at once", w->fw->name, SIM_JOBS_MAX);
        }
        break;
    }
    case BQ_MSG_RESULT_ACK: {
        const bq_msg_result_ack_t *a = &m->u.result_ack;
        sim_job_t *j = sim_job_find(w, a->job_id, a->attempt);
        if (a->accepted) {
            ADD(sh, acks_ok, 1);
            events_add(ev, EV_DONE, a->job_id, a->attempt, t);
        } else {
            ADD(sh, acks_refused, 1);
            shard_error(sh, "result of job %" PRIu64 " attempt %u from %s refused: %s", a->job_id,
                        a->attempt, w->fw->name, a->reason);
        }
        if (j)
            sim_job_drop(w, j);
        break;
    }
    case BQ_MSG_JOB_CANCEL: {
        ADD(sh, cancels, 1);
        sim_job_t *j = sim_job_find(w, m->u.ref.job_id, m->u.ref.attempt);
        shard_error(sh, "coordinator cancelled job %" PRIu64 " attempt %u on %s", m->u.ref.job_id,
                    m->u.ref.attempt, w->fw->name);
        if (j)
            sim_job_drop(w, j);
        break;
    }
    case BQ_MSG_ERROR:
        ADD(sh, errors, 1);
        shard_error(sh, "coordinator sent %s an error: %s (%s)", w->fw->name, m->u.error.message,
                    bq_err_name(m->u.error.code));
        break;
    default:
        ADD(sh, errors, 1);
        shard_error(sh, "worker %s got unexpected message type %d", w->fw->name, (int)m->type);
    }
}

/* Timers of one simulated worker: register (retry), heartbeat, results. */
static void sim_timers(shard_ctx_t *x, sim_worker_t *w, int64_t t)
{
    shard_t *sh = x->sh;
    if (!w->registered) {
        if (t >= w->next_register_us) {
            if (sim_hello(x, w, BQ_MSG_REGISTER) == 0) {
                w->register_sent = 1;
                w->next_register_us = t + REGISTER_RESEND_US;
            } else {
                w->next_register_us = t + REGISTER_RETRY_US;
            }
        }
        return;
    }
    if (t >= w->hb_due_us) {
        int64_t late = t - w->hb_due_us;
        if (sim_hello(x, w, BQ_MSG_HEARTBEAT) == 0) {
            ADD(sh, hb_sent, 1);
            SETMAX(sh, hb_late_max_us, late);
            w->hb_due_us += x->f->heartbeat_ms * 1000;
            if (w->hb_due_us < t)
                w->hb_due_us = t + x->f->heartbeat_ms * 1000;
        } else {
            w->hb_due_us = t + 10000;
        }
    }
    for (size_t i = 0; i < w->njobs; i++) {
        sim_job_t *j = &w->jobs[i];
        if (t < j->due_us)
            continue;
        bq_msg_result_t r;
        memset(&r, 0, sizeof r);
        r.job_id = j->job_id;
        r.attempt = j->attempt;
        r.ok = 1;
        bq_msg_t m = {.type = BQ_MSG_JOB_RESULT};
        m.u.result = &r; /* borrowed: never proto_msg_clear this one */
        if (sim_send(x, w, &m) == 0) {
            ADD(sh, results, 1);
            if (j->result_sent)
                ADD(sh, resends, 1);
            j->result_sent = 1;
            j->due_us = t + RESULT_RESEND_US;
        } else {
            j->due_us = t + 10000;
        }
    }
}

static int shard_write_events(const fleet_t *f, int k, const events_t *ev)
{
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/run/shard-%d.ev", f->dir, k);
    FILE *fp = fopen(path, "wb");
    if (!fp)
        return -1;
    size_t n = ev->n ? fwrite(ev->v, sizeof *ev->v, ev->n, fp) : 0;
    int rc = fclose(fp);
    return (n == ev->n && rc == 0) ? 0 : -1;
}

static int shard_main(const opts_t *o, const fleet_t *f, shared_t *shm, int k, size_t lo, size_t hi)
{
    shard_t *sh = &shm->shards[k];
    shard_ctx_t x = {.o = o, .f = f, .sh = sh, .t0 = shm->t0_us, .shm = shm,
                     .rng = 0x9e3779b97f4a7c15ull ^ ((uint64_t)k << 32) ^ (uint64_t)getpid()};
    bq_errbuf_t e;
    events_t ev = {0};
    int rc = 0;
    size_t n = hi - lo;
    sim_worker_t *ws = calloc(n ? n : 1, sizeof *ws);
    proto_ctx_t *ctx = NULL;
    ADD(sh, started, 1);
    if (!ws || proto_ctx_new(&ctx, &e) != 0) {
        shard_error(sh, "shard %d: could not start: %s", k, ws ? e.msg : "out of memory");
        rc = 1;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        ws[i].fw = &f->workers[lo + i];
        if (proto_client_new(ctx, f->endpoint, f->server_public, &ws[i].fw->keys, &ws[i].s, &e) != 0) {
            shard_error(sh, "shard %d: socket %zu of %zu for worker %s: %s", k, i + 1, n,
                        ws[i].fw->name, e.msg);
            rc = 1;
            goto out;
        }
        ADD(sh, sockets, 1);
    }
    int64_t hard_end = shm->t0_us + (o->max_seconds + 15) * 1000000LL;
    int64_t last_auth_check = 0;
    while (!atomic_load(&shm->stop)) {
        int64_t t = now_us();
        if (t > hard_end) {
            shard_error(sh, "shard %d: stopped by its own time bound", k);
            break;
        }
        if (getppid() != shm->parent)
            break; /* the operator is gone */
        int64_t sweep_start = t;
        int did = 0;
        int64_t next_due = t + o->poll_us;
        for (size_t i = 0; i < n; i++) {
            sim_worker_t *w = &ws[i];
            for (int r = 0; r < RECV_PER_SOCKET_MAX; r++) {
                bq_msg_t m;
                int mrc = proto_recv(w->s, NULL, &m, 0, &e);
                if (mrc == BQ_E_TIMEOUT)
                    break;
                did++;
                if (mrc) {
                    ADD(sh, errors, 1);
                    shard_error(sh, "worker %s could not read a message: %s", w->fw->name, e.msg);
                    continue;
                }
                sim_on_msg(&x, w, &m, &ev);
                proto_msg_clear(&m);
            }
            int64_t tw = now_us();
            sim_timers(&x, w, tw);
            if (w->registered) {
                if (w->hb_due_us < next_due)
                    next_due = w->hb_due_us;
                for (size_t j = 0; j < w->njobs; j++)
                    if (w->jobs[j].due_us < next_due)
                        next_due = w->jobs[j].due_us;
            } else if (w->next_register_us < next_due) {
                next_due = w->next_register_us;
            }
        }
        int64_t t_end = now_us();
        ADD(sh, sweeps, 1);
        ADD(sh, sweep_us_total, t_end - sweep_start);
        SETMAX(sh, sweep_us_max, t_end - sweep_start);
        /* workers that never got an ack: did the server refuse our keys? (once per 5 s) */
        if (GET(sh, registered) < (int64_t)n && t_end - last_auth_check > 5000000 &&
            t_end - shm->t0_us > 5000000) {
            last_auth_check = t_end;
            int64_t refused = 0;
            for (size_t i = 0; i < n; i++)
                if (!ws[i].registered && proto_client_handshake_state(ws[i].s, &e) == BQ_E_AUTH) {
                    refused++;
                    shard_error(sh, "worker %s: %s", ws[i].fw->name, e.msg);
                }
            atomic_store(&sh->auth_refused, refused);
        }
        if (!did)
            sleep_us(next_due - now_us());
    }
out:
    if (shard_write_events(f, k, &ev) != 0) {
        shard_error(sh, "shard %d: could not write its events: %s", k, strerror(errno));
        rc = 1;
    }
    for (size_t i = 0; ws && i < n; i++)
        proto_sock_destroy(&ws[i].s);
    proto_ctx_destroy(&ctx);
    free(ws);
    free(ev.v);
    atomic_store(&sh->done, 1);
    return rc;
}

/* ---- the coordinator's process and catalog, from the outside --------------------------- */

typedef struct {
    double cpu_s;           /* utime + stime */
    long rss_kb, hwm_kb;
    int alive;
} proc_sample_t;

static proc_sample_t proc_sample(long pid)
{
    proc_sample_t s = {0};
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (f) {
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        buf[n] = '\0';
        fclose(f);
        char *p = strrchr(buf, ')');
        unsigned long ut = 0, st = 0;
        /* after "pid (comm)": field 3 is the state; utime and stime are fields 14 and 15 */
        if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) == 2) {
            s.cpu_s = (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
            s.alive = 1;
        }
    }
    snprintf(path, sizeof path, "/proc/%ld/status", pid);
    f = fopen(path, "r");
    if (f) {
        while (fgets(buf, sizeof buf, f)) {
            if (strncmp(buf, "VmHWM:", 6) == 0)
                s.hwm_kb = strtol(buf + 6, NULL, 10);
            else if (strncmp(buf, "VmRSS:", 6) == 0)
                s.rss_kb = strtol(buf + 6, NULL, 10);
        }
        fclose(f);
    }
    return s;
}

typedef struct {
    long long file_bytes, alloc_bytes;
    long long page_size, pages_used, pages_free; /* from mdb_stat -ef; -1 when unknown */
} catalog_sample_t;

static catalog_sample_t catalog_sample(const char *dir)
{
    catalog_sample_t c = {.file_bytes = -1, .alloc_bytes = -1, .page_size = -1,
                          .pages_used = -1, .pages_free = -1};
    char path[PATH_MAX + 64], line[512];
    struct stat st;
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    if (stat(path, &st) == 0) {
        c.file_bytes = (long long)st.st_size;
        c.alloc_bytes = (long long)st.st_blocks * 512;
    }
    /* mdb_stat (lmdb-utils) reads the environment as a reader: safe while the coordinator runs */
    if (strchr(dir, '\'') == NULL) {
        snprintf(path, sizeof path, "mdb_stat -ef '%s' 2>/dev/null", dir);
        FILE *p = popen(path, "r");
        if (p) {
            while (fgets(line, sizeof line, p)) {
                const char *s = line;
                while (*s == ' ')
                    s++;
                if (strncmp(s, "Page size:", 10) == 0)
                    c.page_size = strtoll(s + 10, NULL, 10);
                else if (strncmp(s, "Number of pages used:", 21) == 0)
                    c.pages_used = strtoll(s + 21, NULL, 10);
                else if (strncmp(s, "Free pages:", 11) == 0)
                    c.pages_free = strtoll(s + 11, NULL, 10);
            }
            pclose(p);
        }
    }
    return c;
}

/* Pages holding live data: the high-water mark minus the free list. */
static long long catalog_live_bytes(const catalog_sample_t *c)
{
    if (c->page_size <= 0 || c->pages_used < 0)
        return -1;
    return (c->pages_used - (c->pages_free > 0 ? c->pages_free : 0)) * c->page_size;
}

/* TcpExt ListenOverflows of this network namespace (/proc/net/netstat), -1 when unknown:
 * connections refused because a listen queue was full (the client retries its SYN later). */
static long long tcp_listen_overflows(void)
{
    FILE *f = fopen("/proc/net/netstat", "r");
    if (!f)
        return -1;
    char names[8192], values[8192];
    long long v = -1;
    while (v < 0 && fgets(names, sizeof names, f) && fgets(values, sizeof values, f)) {
        if (strncmp(names, "TcpExt:", 7) != 0)
            continue;
        char *sn, *sv;
        char *n = strtok_r(names, " \n", &sn), *val = strtok_r(values, " \n", &sv);
        while (n && val) {
            if (strcmp(n, "ListenOverflows") == 0) {
                v = strtoll(val, NULL, 10);
                break;
            }
            n = strtok_r(NULL, " \n", &sn);
            val = strtok_r(NULL, " \n", &sv);
        }
    }
    fclose(f);
    return v;
}

static void log_scan(const char *path, long *warnings, long *errors, char *first, size_t len)
{
    *warnings = *errors = -1;
    first[0] = '\0';
    FILE *f = path ? fopen(path, "r") : NULL;
    if (!f)
        return;
    char line[4096];
    *warnings = *errors = 0;
    while (fgets(line, sizeof line, f)) {
        int w = strstr(line, "Z warning ") != NULL, er = strstr(line, "Z error ") != NULL;
        *warnings += w;
        *errors += er;
        if ((w || er) && !first[0]) {
            line[strcspn(line, "\n")] = '\0';
            snprintf(first, len, "%s", line);
        }
    }
    fclose(f);
}

/* ---- the operator ------------------------------------------------------------------------ */

typedef struct {
    int64_t sent_us, reply_us;
    uint64_t job_id;
    int code;
} submit_t;

typedef struct {
    proto_sock_t *s;
    uint64_t seq;
    char first_error[BQ_TEXT_MAX];
    long errors;
} operator_t;

/* One request, waiting for its reply (other replies seen meanwhile are dropped). */
static int op_call(operator_t *op, const char *verb, bq_msg_t *reply, int timeout_ms)
{
    bq_errbuf_t e;
    bq_msg_t m = {.type = BQ_MSG_CLI_REQUEST, .seq = ++op->seq};
    snprintf(m.u.cli_req.verb, sizeof m.u.cli_req.verb, "%s", verb);
    int64_t end = now_us() + (int64_t)timeout_ms * 1000;
    while (proto_send(op->s, NULL, &m, &e) != 0) {
        if (now_us() > end)
            return BQ_E_TIMEOUT;
        sleep_us(20000);
    }
    for (;;) {
        int64_t left = (end - now_us()) / 1000;
        if (left <= 0)
            return BQ_E_TIMEOUT;
        int rc = proto_recv(op->s, NULL, reply, (int)left, &e);
        if (rc == BQ_E_TIMEOUT)
            return rc;
        if (rc)
            continue;
        if (reply->type == BQ_MSG_CLI_REPLY && reply->seq == m.seq)
            return reply->u.cli_reply.code;
        proto_msg_clear(reply);
    }
}

static double ms(int64_t us) { return (double)us / 1000.0; }

typedef struct {
    int64_t sockets, registered, reg_last_us, hb_sent, hb_acks, hb_late_max_us, offers, reoffers,
        accepts, results, resends, acks_ok, acks_refused, cancels, errors, send_fail,
        auth_refused, sweeps, sweep_us_total, sweep_us_max, done;
} totals_t;

static totals_t totals(shared_t *shm)
{
    totals_t t = {0};
    for (int k = 0; k < shm->nshards; k++) {
        shard_t *s = &shm->shards[k];
        t.sockets += GET(s, sockets);
        t.registered += GET(s, registered);
        t.hb_sent += GET(s, hb_sent);
        t.hb_acks += GET(s, hb_acks);
        t.offers += GET(s, offers);
        t.reoffers += GET(s, reoffers);
        t.accepts += GET(s, accepts);
        t.results += GET(s, results);
        t.resends += GET(s, resends);
        t.acks_ok += GET(s, acks_ok);
        t.acks_refused += GET(s, acks_refused);
        t.cancels += GET(s, cancels);
        t.errors += GET(s, errors);
        t.send_fail += GET(s, send_fail);
        t.auth_refused += GET(s, auth_refused);
        t.sweeps += GET(s, sweeps);
        t.sweep_us_total += GET(s, sweep_us_total);
        t.done += GET(s, done);
        int64_t v = GET(s, reg_last_us);
        if (v > t.reg_last_us)
            t.reg_last_us = v;
        v = GET(s, hb_late_max_us);
        if (v > t.hb_late_max_us)
            t.hb_late_max_us = v;
        v = GET(s, sweep_us_max);
        if (v > t.sweep_us_max)
            t.sweep_us_max = v;
    }
    return t;
}

static int cmp_event(const void *a, const void *b)
{
    const event_t *x = a, *y = b;
    if (x->job_id != y->job_id)
        return x->job_id < y->job_id ? -1 : 1;
    if (x->kind != y->kind)
        return x->kind < y->kind ? -1 : 1;
    return x->t_us < y->t_us ? -1 : x->t_us > y->t_us;
}

/* First event of kind for job id in the sorted array, or NULL. */
static const event_t *event_first(const event_t *v, size_t n, uint64_t id, uint32_t kind)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (v[mid].job_id < id || (v[mid].job_id == id && v[mid].kind < kind))
            lo = mid + 1;
        else
            hi = mid;
    }
    return (lo < n && v[lo].job_id == id && v[lo].kind == kind) ? &v[lo] : NULL;
}

static void print_pcts(const char *key, int64_t *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_i64);
    printf("%s_p50_ms: %.1f\n%s_p90_ms: %.1f\n%s_p99_ms: %.1f\n%s_max_ms: %.1f\n", key,
           ms(pct_sorted(v, n, 50)), key, ms(pct_sorted(v, n, 90)), key,
           ms(pct_sorted(v, n, 99)), key, n ? ms(v[n - 1]) : 0.0);
}

static void progress(shared_t *shm, const char *phase, long submitted, long replied)
{
    totals_t t = totals(shm);
    printf("# [%6.1fs] %-9s registered %" PRId64 "  submitted %ld  replied %ld  offers %" PRId64
           "  completed %" PRId64 "  heartbeats %" PRId64 "\n",
           (double)(now_us() - shm->t0_us) / 1e6, phase, t.registered, submitted, replied,
           t.offers, t.acks_ok, t.hb_sent);
    fflush(stdout);
}

static int run(const opts_t *o)
{
    fleet_t f;
    if (fleet_load(o->run_dir, &f) != 0)
        return 2;
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/run", f.dir);
    if (mkdir(path, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "bench_fleet: could not create %s: %s\n", path, strerror(errno));
        return 2;
    }
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int nshards = (int)((f.nworkers + (size_t)o->per_proc - 1) / (size_t)o->per_proc);
    if (nshards < 1 || nshards > SHARDS_MAX) {
        fprintf(stderr, "bench_fleet: %zu workers need %d processes of %ld; at most %d\n",
                f.nworkers, nshards, o->per_proc, SHARDS_MAX);
        return 2;
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    getrlimit(RLIMIT_NOFILE, &rl);
    /* per simulated worker: 3 socket mailboxes (eventfds) and a TCP connection */
    if ((unsigned long long)rl.rlim_cur < (unsigned long long)o->per_proc * 4 + 64)
        fprintf(stderr, "bench_fleet: warning: RLIMIT_NOFILE %llu may be too low for %ld workers "
                "per process\n", (unsigned long long)rl.rlim_cur, o->per_proc);

    printf("# bench_fleet: control-plane benchmark of barque-coordinator\n"
           "# One real coordinator; %zu simulated workers (%d processes of <= %ld CURVE DEALER "
           "sockets), %zu clusters in %zu sites, one operator submitting %ld sleep jobs\n"
           "# (rate %ld/s%s, burst %ld, window %ld, simulated run %ld-%ld ms). Workers run no "
           "job: they accept every offer and report success.\n"
           "# No backup bytes move here, so there is no comparison with pg_basebackup or "
           "pgBackRest:\n# those tools have no coordinator. The figures are barque-coordinator's "
           "alone, on a %ld-CPU machine it shares with the simulator.\n",
           f.nworkers, nshards, o->per_proc, f.nclusters, f.nsites, o->jobs, o->rate,
           o->rate ? "" : " = unlimited", o->burst, o->window, o->run_min_ms, o->run_max_ms, cpus);
    fflush(stdout);

    size_t shm_size = sizeof(shared_t) + (size_t)nshards * sizeof(shard_t);
    shared_t *shm = mmap(NULL, shm_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shm == MAP_FAILED) {
        fprintf(stderr, "bench_fleet: mmap: %s\n", strerror(errno));
        return 2;
    }
    memset(shm, 0, shm_size);
    shm->nshards = nshards;
    proc_sample_t c_start = proc_sample(o->coordinator_pid);
    if (!c_start.alive) {
        fprintf(stderr, "bench_fleet: coordinator process %ld is not running\n", o->coordinator_pid);
        return 2;
    }
    catalog_sample_t cat_start = catalog_sample(f.catalog);
    long long overflows_start = tcp_listen_overflows();
    shm->parent = getpid();
    shm->t0_us = now_us();
    const int64_t t0 = shm->t0_us;
    const int64_t hard_end = t0 + o->max_seconds * 1000000LL;

    pid_t pids[SHARDS_MAX];
    struct rusage child_ru[SHARDS_MAX];
    memset(child_ru, 0, sizeof child_ru);
    pid_t parent = getpid();
    for (int k = 0; k < nshards; k++) {
        size_t lo = (size_t)k * f.nworkers / (size_t)nshards;
        size_t hi = (size_t)(k + 1) * f.nworkers / (size_t)nshards;
        pids[k] = fork();
        if (pids[k] < 0) {
            fprintf(stderr, "bench_fleet: fork: %s\n", strerror(errno));
            atomic_store(&shm->stop, 1);
            nshards = k;
            break;
        }
        if (pids[k] == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != parent)
                _exit(1);
            _exit(shard_main(o, &f, shm, k, lo, hi));
        }
    }
    shm->nshards = nshards;

    /* The operator: its own messaging context, made after the forks. */
    bq_errbuf_t e;
    proto_ctx_t *ctx = NULL;
    operator_t op = {.seq = 1ull << 40}; /* job submissions use seq 1..J */
    int rc = proto_ctx_new(&ctx, &e);
    if (rc == 0)
        rc = proto_client_new(ctx, f.endpoint, f.server_public, &f.operator_keys, &op.s, &e);
    if (rc) {
        fprintf(stderr, "bench_fleet: operator socket: %s\n", e.msg);
        atomic_store(&shm->stop, 1);
    }

    /* 1. registration */
    int64_t reg_deadline = t0 + o->register_timeout_s * 1000000LL;
    int64_t last_progress = now_us();
    int aborted = rc != 0;
    while (!aborted) {
        totals_t t = totals(shm);
        if (t.registered >= (int64_t)f.nworkers)
            break;
        int64_t n = now_us();
        if (n > reg_deadline || n > hard_end)
            break;
        if (t.done) {
            fprintf(stderr, "bench_fleet: a shard stopped early\n");
            aborted = 1;
            break;
        }
        if (n - last_progress > 5000000) {
            progress(shm, "register", 0, 0);
            last_progress = n;
        }
        sleep_us(20000);
    }
    totals_t after_reg = totals(shm);
    long long overflows_reg = tcp_listen_overflows();
    progress(shm, "register", 0, 0);

    /* the coordinator's own view, and a baseline before any job */
    long coord_workers = -1, coord_online = -1;
    bq_msg_t reply;
    if (!aborted && op_call(&op, "workers", &reply, 10000) == 0) {
        coord_workers = (long)reply.u.cli_reply.nworkers;
        coord_online = 0;
        for (size_t i = 0; i < reply.u.cli_reply.nworkers; i++)
            coord_online += reply.u.cli_reply.workers[i].online != 0;
        proto_msg_clear(&reply);
    } else if (!aborted) {
        fprintf(stderr, "bench_fleet: the coordinator did not answer a \"workers\" request\n");
    }
    proc_sample_t c_reg = proc_sample(o->coordinator_pid);
    catalog_sample_t cat_reg = catalog_sample(f.catalog);

    /* 2. jobs */
    long njobs = aborted ? 0 : o->jobs;
    submit_t *sub = calloc(njobs ? (size_t)njobs : 1, sizeof *sub);
    if (!sub) {
        fprintf(stderr, "bench_fleet: out of memory\n");
        return 2;
    }
    long next = 0, replied = 0, outstanding = 0, submit_ok = 0;
    int64_t jobs_t0 = now_us();
    atomic_store(&shm->jobs_from_us, jobs_t0);
    double interval_us = o->rate ? 1e6 * (double)o->burst / (double)o->rate : 0;
    while (replied < njobs && now_us() < hard_end) {
        int64_t n = now_us();
        while (next < njobs && outstanding < o->window) {
            int64_t due = jobs_t0 + (int64_t)((double)(next / o->burst) * interval_us);
            if (due > n)
                break;
            bq_msg_t m = {.type = BQ_MSG_CLI_REQUEST, .seq = (uint64_t)next + 1};
            bq_msg_cli_request_t *q = &m.u.cli_req;
            snprintf(q->verb, sizeof q->verb, "sleep");
            snprintf(q->cluster, sizeof q->cluster, "%s", f.clusters[(size_t)next % f.nclusters]);
            q->sleep_ms = 0;
            if (proto_send(op.s, NULL, &m, &e) != 0)
                break; /* queue full or not connected yet: try again shortly */
            sub[next].sent_us = now_us();
            next++;
            outstanding++;
        }
        int64_t wait_us = 100000;
        if (next < njobs && outstanding < o->window) {
            int64_t due = jobs_t0 + (int64_t)((double)(next / o->burst) * interval_us);
            wait_us = due - now_us();
            if (wait_us < 0)
                wait_us = 1000; /* a refused send: retry in a moment */
        }
        int timeout_ms = (int)((wait_us + 999) / 1000);
        bq_msg_t m;
        int mrc = proto_recv(op.s, NULL, &m, timeout_ms, &e);
        while (mrc != BQ_E_TIMEOUT) {
            int64_t tr = now_us();
            if (mrc == 0 && m.type == BQ_MSG_CLI_REPLY && m.seq >= 1 && m.seq <= (uint64_t)njobs &&
                !sub[m.seq - 1].reply_us && sub[m.seq - 1].sent_us) {
                submit_t *s = &sub[m.seq - 1];
                s->reply_us = tr;
                s->code = m.u.cli_reply.code;
                s->job_id = m.u.cli_reply.job_id;
                replied++;
                outstanding--;
                if (s->code == 0) {
                    submit_ok++;
                } else {
                    if (!op.errors++)
                        snprintf(op.first_error, sizeof op.first_error, "%s (%s)",
                                 m.u.cli_reply.error, bq_err_name(s->code));
                }
            } else if (mrc == 0) {
                if (!op.errors++)
                    snprintf(op.first_error, sizeof op.first_error,
                             "unexpected message type %d (seq %" PRIu64 ")%s%s", (int)m.type, m.seq,
                             m.type == BQ_MSG_ERROR ? ": " : "",
                             m.type == BQ_MSG_ERROR ? m.u.error.message : "");
            } else {
                if (!op.errors++)
                    snprintf(op.first_error, sizeof op.first_error, "%s", e.msg);
            }
            if (mrc == 0)
                proto_msg_clear(&m);
            mrc = proto_recv(op.s, NULL, &m, 0, &e);
        }
        if (now_us() - last_progress > 5000000) {
            progress(shm, "jobs", next, replied);
            last_progress = now_us();
        }
        totals_t t = totals(shm);
        if (t.done) {
            fprintf(stderr, "bench_fleet: a shard stopped early\n");
            break;
        }
    }
    int64_t submit_end_us = now_us();

    /* 3. drain: wait for every accepted submission to complete */
    int64_t drain_deadline = submit_end_us + o->drain_timeout_s * 1000000LL;
    if (drain_deadline > hard_end)
        drain_deadline = hard_end;
    while (now_us() < drain_deadline) {
        totals_t t = totals(shm);
        if (t.acks_ok >= submit_ok || t.done)
            break;
        if (now_us() - last_progress > 5000000) {
            progress(shm, "drain", next, replied);
            last_progress = now_us();
        }
        sleep_us(10000);
    }
    int64_t drain_end_us = now_us();
    progress(shm, "done", next, replied);

    /* the coordinator's view at the end: active jobs and online workers */
    long coord_active = -1, coord_online_end = -1;
    if (!aborted && op_call(&op, "jobs", &reply, 10000) == 0) {
        coord_active = (long)reply.u.cli_reply.njobs;
        proto_msg_clear(&reply);
    }
    if (!aborted && op_call(&op, "workers", &reply, 10000) == 0) {
        coord_online_end = 0;
        for (size_t i = 0; i < reply.u.cli_reply.nworkers; i++)
            coord_online_end += reply.u.cli_reply.workers[i].online != 0;
        proto_msg_clear(&reply);
    }
    proc_sample_t c_end = proc_sample(o->coordinator_pid);
    catalog_sample_t cat_end = catalog_sample(f.catalog);

    /* 4. stop the shards and collect what they saw */
    atomic_store(&shm->stop, 1);
    int64_t wait_end = now_us() + 20000000;
    int alive = nshards;
    int shard_fail = 0;
    int reaped[SHARDS_MAX] = {0};
    while (alive > 0) {
        for (int k = 0; k < nshards; k++) {
            if (reaped[k])
                continue;
            int status;
            pid_t p = wait4(pids[k], &status, WNOHANG, &child_ru[k]);
            if (p == pids[k]) {
                reaped[k] = 1;
                alive--;
                if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                    shard_fail++;
            }
        }
        if (alive && now_us() > wait_end) {
            for (int k = 0; k < nshards; k++)
                if (!reaped[k]) {
                    kill(pids[k], SIGKILL);
                    waitpid(pids[k], NULL, 0);
                    reaped[k] = 1;
                    shard_fail++;
                }
            break;
        }
        if (alive)
            sleep_us(10000);
    }
    proto_sock_destroy(&op.s);
    proto_ctx_destroy(&ctx);

    events_t ev = {0};
    for (int k = 0; k < nshards; k++) {
        snprintf(path, sizeof path, "%s/run/shard-%d.ev", f.dir, k);
        FILE *fp = fopen(path, "rb");
        if (!fp)
            continue;
        struct stat st;
        if (fstat(fileno(fp), &st) == 0 && st.st_size > 0) {
            size_t cnt = (size_t)st.st_size / sizeof(event_t);
            event_t *p = realloc(ev.v, (ev.n + cnt) * sizeof *p);
            if (p) {
                ev.v = p;
                ev.n += fread(ev.v + ev.n, sizeof *p, cnt, fp);
            }
        }
        fclose(fp);
    }
    qsort(ev.v, ev.n, sizeof *ev.v, cmp_event);

    /* 5. figures */
    totals_t t = totals(shm);
    static hist_t reg_h, hb_h, hbr_h; /* large: off the stack */
    for (int k = 0; k < nshards; k++) {
        hist_merge(&reg_h, &shm->shards[k].reg_time);
        hist_merge(&hb_h, &shm->shards[k].hb_rtt);
        hist_merge(&hbr_h, &shm->shards[k].hb_rtt_reg);
    }
    int64_t *lat_reply = calloc((size_t)njobs + 1, sizeof(int64_t));
    int64_t *lat_submit = calloc((size_t)njobs + 1, sizeof(int64_t));
    int64_t *lat_done = calloc((size_t)njobs + 1, sizeof(int64_t));
    int64_t *rtt = calloc((size_t)njobs + 1, sizeof(int64_t));
    size_t nlat = 0, ndone = 0, nrtt = 0;
    int64_t first_sent = INT64_MAX, last_sent = 0, last_offer = 0, last_done = 0;
    long offered_jobs = 0, completed_jobs = 0;
    for (long i = 0; i < njobs && lat_reply && lat_submit && lat_done && rtt; i++) {
        submit_t *s = &sub[i];
        if (s->sent_us) {
            if (s->sent_us < first_sent)
                first_sent = s->sent_us;
            if (s->sent_us > last_sent)
                last_sent = s->sent_us;
        }
        if (!s->reply_us || s->code != 0)
            continue;
        rtt[nrtt++] = s->reply_us - s->sent_us;
        const event_t *of = event_first(ev.v, ev.n, s->job_id, EV_OFFER);
        if (of) {
            offered_jobs++;
            lat_reply[nlat] = of->t_us - s->reply_us;
            lat_submit[nlat] = of->t_us - s->sent_us;
            nlat++;
            if (of->t_us > last_offer)
                last_offer = of->t_us;
        }
        const event_t *dn = event_first(ev.v, ev.n, s->job_id, EV_DONE);
        if (dn) {
            completed_jobs++;
            lat_done[ndone++] = dn->t_us - s->sent_us;
            if (dn->t_us > last_done)
                last_done = dn->t_us;
        }
    }
    if (first_sent == INT64_MAX)
        first_sent = jobs_t0;
    double bench_cpu = 0;
    for (int k = 0; k < nshards; k++)
        bench_cpu += (double)child_ru[k].ru_utime.tv_sec + (double)child_ru[k].ru_utime.tv_usec / 1e6 +
                     (double)child_ru[k].ru_stime.tv_sec + (double)child_ru[k].ru_stime.tv_usec / 1e6;
    struct rusage self;
    getrusage(RUSAGE_SELF, &self);
    double op_cpu = (double)self.ru_utime.tv_sec + (double)self.ru_utime.tv_usec / 1e6 +
                    (double)self.ru_stime.tv_sec + (double)self.ru_stime.tv_usec / 1e6;
    long warnings, errors;
    char first_log[1024];
    log_scan(o->coordinator_log, &warnings, &errors, first_log, sizeof first_log);

    printf("\n---- summary ----\n");
    printf("cpus: %ld\n", cpus);
    printf("workers: %zu\nclusters: %zu\nsites: %zu\nsimulator_processes: %d\n", f.nworkers,
           f.nclusters, f.nsites, nshards);
    printf("workers_sockets_opened: %" PRId64 "\n", t.sockets);
    printf("workers_registered: %" PRId64 "\n", after_reg.registered);
    printf("workers_registered_at_end: %" PRId64 "\n", t.registered);
    printf("workers_online_per_coordinator: %ld\n", coord_online);
    printf("workers_online_per_coordinator_at_end: %ld\n", coord_online_end);
    printf("workers_known_to_coordinator: %ld\n", coord_workers);
    if (t.auth_refused)
        printf("workers_refused_by_curve: %" PRId64 "\n", t.auth_refused);
    printf("register_all_s: %.2f%s\n", (double)after_reg.reg_last_us / 1e6,
           after_reg.registered >= (int64_t)f.nworkers ? "" : " (NOT all registered)");
    printf("register_p50_s: %.2f\nregister_p99_s: %.2f\n", (double)hist_pct(&reg_h, 50) / 1e6,
           (double)hist_pct(&reg_h, 99) / 1e6);
    if (overflows_start >= 0 && overflows_reg >= 0)
        printf("tcp_listen_overflows_during_register: %lld\n", overflows_reg - overflows_start);
    printf("jobs_requested: %ld\njobs_submitted: %ld\njobs_submit_replies: %ld\n"
           "jobs_submit_ok: %ld\njobs_submit_errors: %ld\n",
           njobs, next, replied, submit_ok, replied - submit_ok);
    printf("jobs_offered: %ld\njobs_completed: %ld\n", offered_jobs, completed_jobs);
    printf("offers_received: %" PRId64 "\nreoffers_received: %" PRId64 "\n", t.offers, t.reoffers);
    printf("results_sent: %" PRId64 "\nresults_resent: %" PRId64 "\nresults_acked: %" PRId64
           "\nresults_refused: %" PRId64 "\ncancels_received: %" PRId64
           "\nerrors_received: %" PRId64 "\nsends_refused_by_zmq: %" PRId64 "\n",
           t.results, t.resends, t.acks_ok, t.acks_refused, t.cancels, t.errors, t.send_fail);
    if (op.errors)
        printf("operator_errors: %ld\noperator_first_error: %s\n", op.errors, op.first_error);
    for (int k = 0; k < nshards; k++)
        if (shm->shards[k].first_error[0])
            printf("shard_%d_first_error: %s\n", k, shm->shards[k].first_error);
    double submit_s = last_sent > first_sent ? (double)(last_sent - first_sent) / 1e6 : 0;
    double offer_s = last_offer > first_sent ? (double)(last_offer - first_sent) / 1e6 : 0;
    double done_s = last_done > first_sent ? (double)(last_done - first_sent) / 1e6 : 0;
    printf("submit_rate_per_s: %.0f\n", submit_s > 0 ? (double)next / submit_s : 0);
    printf("dispatch_rate_per_s: %.0f\n", offer_s > 0 ? (double)t.offers / offer_s : 0);
    printf("completion_rate_per_s: %.0f\n", done_s > 0 ? (double)completed_jobs / done_s : 0);
    printf("job_phase_s: %.2f\n", (double)(drain_end_us - jobs_t0) / 1e6);
    print_pcts("submit_rtt", rtt, nrtt);
    print_pcts("assign_latency", lat_reply, nlat);
    print_pcts("assign_latency_from_send", lat_submit, nlat);
    print_pcts("completion_latency_from_send", lat_done, ndone);
    printf("heartbeats_sent: %" PRId64 "\nheartbeat_acks: %" PRId64 "\n", t.hb_sent, t.hb_acks);
    printf("heartbeat_rtt_register_p50_ms: %.1f\nheartbeat_rtt_register_p99_ms: %.1f\n"
           "heartbeat_rtt_register_max_ms: %.1f\n",
           ms(hist_pct(&hbr_h, 50)), ms(hist_pct(&hbr_h, 99)), ms(hbr_h.max));
    printf("heartbeat_rtt_jobs_p50_ms: %.1f\nheartbeat_rtt_jobs_p90_ms: %.1f\n"
           "heartbeat_rtt_jobs_p99_ms: %.1f\nheartbeat_rtt_jobs_max_ms: %.1f\n",
           ms(hist_pct(&hb_h, 50)), ms(hist_pct(&hb_h, 90)), ms(hist_pct(&hb_h, 99)), ms(hb_h.max));
    printf("heartbeat_send_late_max_ms: %.1f\n", ms(t.hb_late_max_us));
    printf("simulator_sweep_avg_ms: %.2f\nsimulator_sweep_max_ms: %.1f\nsimulator_poll_ms: %.1f\n",
           t.sweeps ? ms(t.sweep_us_total) / (double)t.sweeps : 0, ms(t.sweep_us_max),
           (double)o->poll_us / 1000.0);
    printf("simulator_cpu_s: %.1f\noperator_cpu_s: %.1f\n", bench_cpu, op_cpu);
    printf("coordinator_cpu_s: %.2f\ncoordinator_cpu_register_s: %.2f\ncoordinator_cpu_jobs_s: %.2f\n",
           c_end.cpu_s - c_start.cpu_s, c_reg.cpu_s - c_start.cpu_s, c_end.cpu_s - c_reg.cpu_s);
    printf("coordinator_cpu_per_job_ms: %.3f\n",
           submit_ok ? (c_end.cpu_s - c_reg.cpu_s) * 1000.0 / (double)submit_ok : 0);
    printf("coordinator_rss_after_register_kib: %ld\ncoordinator_rss_end_kib: %ld\n"
           "coordinator_vmhwm_kib: %ld\n", c_reg.rss_kb, c_end.rss_kb, c_end.hwm_kb);
    printf("catalog_data_mdb_bytes_start: %lld\ncatalog_data_mdb_bytes_before_jobs: %lld\n"
           "catalog_data_mdb_bytes_end: %lld\n", cat_start.file_bytes, cat_reg.file_bytes,
           cat_end.file_bytes);
    printf("catalog_data_mdb_bytes_per_job: %.0f\n",
           submit_ok && cat_end.file_bytes >= 0 ? (double)cat_end.file_bytes / (double)submit_ok : -1);
    printf("catalog_data_mdb_growth_per_job: %.0f\n",
           submit_ok && cat_end.file_bytes >= 0 && cat_reg.file_bytes >= 0
               ? (double)(cat_end.file_bytes - cat_reg.file_bytes) / (double)submit_ok : -1);
    long long live_reg = catalog_live_bytes(&cat_reg), live_end = catalog_live_bytes(&cat_end);
    if (cat_end.page_size > 0) {
        printf("catalog_page_size: %lld\ncatalog_pages_used_end: %lld\ncatalog_pages_free_end: %lld\n",
               cat_end.page_size, cat_end.pages_used, cat_end.pages_free);
        printf("catalog_live_bytes_before_jobs: %lld\ncatalog_live_bytes_end: %lld\n", live_reg,
               live_end);
        printf("catalog_live_bytes_per_job: %.0f\n",
               submit_ok && live_end >= 0 && live_reg >= 0
                   ? (double)(live_end - live_reg) / (double)submit_ok : -1);
    } else {
        printf("catalog_pages: unknown (mdb_stat from lmdb-utils not found)\n");
    }
    printf("coordinator_active_jobs_at_end: %ld\n", coord_active);
    if (warnings >= 0)
        printf("coordinator_log_warnings: %ld\ncoordinator_log_errors: %ld\n", warnings, errors);
    if (first_log[0])
        printf("coordinator_log_first: %s\n", first_log);
    if (shard_fail)
        printf("simulator_processes_failed: %d\n", shard_fail);

    int all_ok = njobs == o->jobs && submit_ok == njobs && offered_jobs == njobs &&
                 completed_jobs == njobs && !shard_fail && (coord_active == 0);
    int64_t p99 = nlat ? pct_sorted(lat_reply, nlat, 99) : INT64_MAX;
    int64_t p99s = nlat ? pct_sorted(lat_submit, nlat, 99) : INT64_MAX;
    printf("all_jobs_dispatched_and_completed: %s\n", all_ok ? "yes" : "NO");
    const char *verdict;
    if (f.nworkers < 1000 || f.nclusters < 10000)
        verdict = "not evaluated (needs >= 1000 workers and >= 10000 clusters)";
    else if (!all_ok || after_reg.registered < (int64_t)f.nworkers)
        verdict = "NOT MET (not every worker registered or not every job completed)";
    else if (p99 < 50000)
        verdict = "MET";
    else
        verdict = "NOT MET";
    printf("goal_p99_assign_latency_lt_50ms_at_1000_workers_10000_clusters: %s (p99 %.1f ms; "
           "from the submit's send: %.1f ms)\n", verdict, nlat ? ms(p99) : -1.0,
           nlat ? ms(p99s) : -1.0);
    fflush(stdout);

    free(lat_reply);
    free(lat_submit);
    free(lat_done);
    free(rtt);
    free(ev.v);
    free(sub);
    free(f.workers);
    free(f.clusters);
    munmap(shm, shm_size);
    if (o->check && !all_ok) {
        fprintf(stderr, "bench_fleet: --check: not every job was submitted, dispatched and "
                "completed (see the summary)\n");
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    opts_t o;
    if (opts_parse(argc, argv, &o) != 0) {
        usage(stderr);
        return 2;
    }
    bq_log_set_level(BQ_LOG_WARNING);
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    return o.setup_dir ? setup(&o) : run(&o);
}
