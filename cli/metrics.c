/* barque metrics: the Prometheus text exposition (0.0.4) of the coordinator's view, and a
 * strict checker of that format. */
#include "metrics.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* ---- writing --------------------------------------------------------------------------- */

typedef struct {
    FILE *out;
    int failed;           /* a write failed: nothing more is written */
    const char *name;     /* the family being written */
    const char *help;
    int started;          /* its # HELP and # TYPE lines are out */
} mw_t;

static void mw_puts(mw_t *w, const char *s)
{
    if (!w->failed && fputs(s, w->out) == EOF)
        w->failed = 1;
}

/* s as a label value: backslash, double quote and newline escaped. */
static void mw_escaped(mw_t *w, const char *s)
{
    for (; *s && !w->failed; s++) {
        const char *esc = *s == '\\' ? "\\\\" : *s == '"' ? "\\\"" : *s == '\n' ? "\\n" : NULL;
        if (esc)
            mw_puts(w, esc);
        else if (fputc((unsigned char)*s, w->out) == EOF)
            w->failed = 1;
    }
}

/* Start a family; its HELP and TYPE lines are written with its first sample. help is a
 * constant with no backslash or newline. */
static void mw_family(mw_t *w, const char *name, const char *help)
{
    w->name = name;
    w->help = help;
    w->started = 0;
}

/* One sample of the current family. labels: name, value, name, value, ..., NULL (or NULL
 * alone for none). */
static void mw_sample(mw_t *w, const char *const *labels, const char *value)
{
    if (!w->started) {
        mw_puts(w, "# HELP ");
        mw_puts(w, w->name);
        mw_puts(w, " ");
        mw_puts(w, w->help);
        mw_puts(w, "\n# TYPE ");
        mw_puts(w, w->name);
        mw_puts(w, " gauge\n");
        w->started = 1;
    }
    mw_puts(w, w->name);
    if (labels && labels[0]) {
        for (size_t i = 0; labels[i]; i += 2) {
            mw_puts(w, i ? "," : "{");
            mw_puts(w, labels[i]);
            mw_puts(w, "=\"");
            mw_escaped(w, labels[i + 1]);
            mw_puts(w, "\"");
        }
        mw_puts(w, "}");
    }
    mw_puts(w, " ");
    mw_puts(w, value);
    mw_puts(w, "\n");
}

#define MW_VAL_MAX 32

static const char *mw_val_u64(char *buf, uint64_t v)
{
    snprintf(buf, MW_VAL_MAX, "%" PRIu64, v);
    return buf;
}

/* ms as seconds, exactly: "1764643200.123", "1764643200.1", "3600". */
static const char *mw_val_ms(char *buf, int64_t ms)
{
    uint64_t m = ms < 0 ? (uint64_t)0 - (uint64_t)ms : (uint64_t)ms;
    uint64_t s = m / 1000;
    unsigned f = (unsigned)(m % 1000);
    const char *sign = ms < 0 ? "-" : "";
    if (f == 0)
        snprintf(buf, MW_VAL_MAX, "%s%" PRIu64, sign, s);
    else if (f % 100 == 0)
        snprintf(buf, MW_VAL_MAX, "%s%" PRIu64 ".%u", sign, s, f / 100);
    else if (f % 10 == 0)
        snprintf(buf, MW_VAL_MAX, "%s%" PRIu64 ".%02u", sign, s, f / 10);
    else
        snprintf(buf, MW_VAL_MAX, "%s%" PRIu64 ".%03u", sign, s, f);
    return buf;
}

/* The backup states barque_backups counts, in the order it writes them. */
static const struct {
    bq_backup_state_t state;
    const char *label;
} mw_states[] = {
    {BQ_BACKUP_DONE, "done"},
    {BQ_BACKUP_FAILED, "failed"},
    {BQ_BACKUP_STARTED, "started"},
    {BQ_BACKUP_WAITING_FOR_WALS, "waiting_for_wals"},
    {BQ_BACKUP_DELETING, "deleting"},
};
#define MW_NSTATES (sizeof mw_states / sizeof mw_states[0])

/* What the cluster families show of one cluster. */
typedef struct {
    const bq_cluster_t *c;         /* NULL: its name came earlier, skipped */
    const bq_backup_t *last;       /* the newest DONE backup (NULL = none) */
    uint64_t count[MW_NSTATES];
    int has_check;
    int status;
    int64_t check_ms;
    uint64_t check_failed;
} mw_cluster_t;

/* A name and where it is in its input array. */
typedef struct {
    const char *name;
    size_t i;
} mw_key_t;

static int mw_key_cmp(const void *a, const void *b)
{
    const mw_key_t *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : (x->i > y->i) - (x->i < y->i);
}

static int mw_key_find(const void *name, const void *k)
{
    return strcmp(name, ((const mw_key_t *)k)->name);
}

/* Sort keys[0..n) by name then index, and keep the first of each name; returns how many. */
static size_t mw_keys_unique(mw_key_t *keys, size_t n)
{
    if (n == 0)
        return 0;
    qsort(keys, n, sizeof *keys, mw_key_cmp);
    size_t u = 1;
    for (size_t i = 1; i < n; i++)
        if (strcmp(keys[i].name, keys[u - 1].name) != 0)
            keys[u++] = keys[i];
    return u;
}

/* The index in in->clusters of the cluster called name (its first), or -1. */
static long mw_cluster_find(const mw_key_t *keys, size_t n, const char *name)
{
    const mw_key_t *k = n ? bsearch(name, keys, n, sizeof *keys, mw_key_find) : NULL;
    return k ? (long)k->i : -1;
}

/* Fill sum[0..nclusters) from in; wfirst[i] is set for each worker whose name is the first
 * of its kind. -1 when memory runs out. */
static int mw_summarize(const metrics_input_t *in, mw_cluster_t *sum, unsigned char *wfirst)
{
    size_t nk = in->nclusters > in->nworkers ? in->nclusters : in->nworkers;
    mw_key_t *keys = malloc((nk ? nk : 1) * sizeof *keys);
    if (!keys)
        return -1;

    for (size_t i = 0; i < in->nworkers; i++)
        keys[i] = (mw_key_t){in->workers[i].name, i};
    size_t nw = mw_keys_unique(keys, in->nworkers);
    for (size_t i = 0; i < nw; i++)
        wfirst[keys[i].i] = 1;

    for (size_t i = 0; i < in->nclusters; i++)
        keys[i] = (mw_key_t){in->clusters[i].name, i};
    size_t nc = mw_keys_unique(keys, in->nclusters);
    for (size_t i = 0; i < nc; i++) {
        mw_cluster_t *s = &sum[keys[i].i];
        s->c = &in->clusters[keys[i].i];
        if (s->c->check_ms != 0) {
            s->has_check = 1;
            s->status = s->c->check_status;
            s->check_ms = s->c->check_ms;
            s->check_failed = s->c->check_failed;
        }
    }

    for (size_t i = 0; i < in->nbackups; i++) {
        const bq_backup_t *b = &in->backups[i];
        long ci = mw_cluster_find(keys, nc, b->cluster);
        if (ci < 0)
            continue;
        mw_cluster_t *s = &sum[ci];
        for (size_t k = 0; k < MW_NSTATES; k++)
            if (b->state == mw_states[k].state)
                s->count[k]++;
        if (b->state == BQ_BACKUP_DONE &&
            (!s->last || b->stop_ms > s->last->stop_ms ||
             (b->stop_ms == s->last->stop_ms && strcmp(b->id, s->last->id) > 0)))
            s->last = b;
    }

    for (size_t i = 0; i < in->nchecks; i++) {
        const metrics_check_t *ch = &in->checks[i];
        long ci = mw_cluster_find(keys, nc, ch->cluster);
        if (ci < 0)
            continue;
        mw_cluster_t *s = &sum[ci];
        if (s->has_check && ch->time_ms < s->check_ms)
            continue;
        s->has_check = 1;
        s->status = ch->status;
        s->check_ms = ch->time_ms;
        s->check_failed = ch->nfailed;
    }
    free(keys);
    return 0;
}

int metrics_write(FILE *out, const metrics_input_t *in)
{
    mw_t w = {.out = out};
    char v[MW_VAL_MAX];

    mw_family(&w, "barque_up", "Whether the coordinator answered (1) or not (0).");
    mw_sample(&w, NULL, in ? "1" : "0");
    if (!in)
        return fflush(out) == 0 && !w.failed && !ferror(out) ? 0 : -1;

    size_t nc = in->nclusters, nwk = in->nworkers;
    mw_cluster_t *sum = calloc(nc ? nc : 1, sizeof *sum);
    unsigned char *wfirst = calloc(nwk ? nwk : 1, 1);
    if (!sum || !wfirst || mw_summarize(in, sum, wfirst) != 0) {
        free(sum);
        free(wfirst);
        return -1;
    }

/* the labels of cluster s, of worker wk */
#define CL(s) ((const char *const[]){"cluster", (s)->c->name, NULL})
#define WK(wk) ((const char *const[]){"worker", (wk)->name, "site", (wk)->site, NULL})

    mw_family(&w, "barque_cluster_info",
              "A cluster in the coordinator's configuration, with its site and WAL mode.");
    for (size_t i = 0; i < nc; i++) {
        const bq_cluster_t *c = sum[i].c;
        if (c)
            mw_sample(&w, (const char *const[]){"cluster", c->name, "site", c->site,
                                                "wal_mode", c->wal_mode, NULL}, "1");
    }

    mw_family(&w, "barque_backup_last_success_timestamp_seconds",
              "When the cluster's newest successful backup ended, seconds since the epoch.");
    for (size_t i = 0; i < nc; i++)
        if (sum[i].c && sum[i].last)
            mw_sample(&w, CL(&sum[i]), mw_val_ms(v, sum[i].last->stop_ms));
    mw_family(&w, "barque_backup_last_duration_seconds",
              "How long the cluster's newest successful backup took.");
    for (size_t i = 0; i < nc; i++)
        if (sum[i].c && sum[i].last)
            mw_sample(&w, CL(&sum[i]), mw_val_ms(v, sum[i].last->duration_ms));
    mw_family(&w, "barque_backup_last_size_bytes",
              "Bytes of data in the cluster's newest successful backup.");
    for (size_t i = 0; i < nc; i++)
        if (sum[i].c && sum[i].last)
            mw_sample(&w, CL(&sum[i]), mw_val_u64(v, sum[i].last->data_bytes));
    mw_family(&w, "barque_backup_last_stored_bytes",
              "Bytes the cluster's newest successful backup added to its store.");
    for (size_t i = 0; i < nc; i++)
        if (sum[i].c && sum[i].last)
            mw_sample(&w, CL(&sum[i]), mw_val_u64(v, sum[i].last->stored_bytes));

    mw_family(&w, "barque_backups", "Backups of the cluster in the catalog, by state.");
    for (size_t i = 0; i < nc; i++)
        for (size_t k = 0; sum[i].c && k < MW_NSTATES; k++)
            mw_sample(&w, (const char *const[]){"cluster", sum[i].c->name,
                                                "state", mw_states[k].label, NULL},
                      mw_val_u64(v, sum[i].count[k]));

    mw_family(&w, "barque_backup_age_seconds",
              "Seconds since the cluster's newest successful backup ended.");
    for (size_t i = 0; i < nc; i++) {
        if (!sum[i].c || !sum[i].last)
            continue;
        int64_t age = in->now_ms - sum[i].last->stop_ms;
        mw_sample(&w, CL(&sum[i]), mw_val_ms(v, age > 0 ? age : 0));
    }

    mw_family(&w, "barque_wal_last_archived_timestamp_seconds",
              "When the newest WAL file of the cluster was archived, seconds since the epoch.");
    for (size_t i = 0; i < nc; i++)
        if (sum[i].c && sum[i].c->wal_last_ms != 0)
            mw_sample(&w, CL(&sum[i]), mw_val_ms(v, sum[i].c->wal_last_ms));
    mw_family(&w, "barque_wal_archive_gaps",
              "Ranges of WAL segments missing from the cluster's archive.");
    for (size_t i = 0; i < nc; i++)
        if (sum[i].c)
            mw_sample(&w, CL(&sum[i]), mw_val_u64(v, sum[i].c->wal_gaps));
    mw_family(&w, "barque_wal_stream_lag_bytes",
              "WAL bytes the cluster's wal-stream job received but has not made durable yet.");
    for (size_t i = 0; i < nc; i++) {
        const bq_cluster_t *c = sum[i].c;
        if (c && c->stream_state[0])
            mw_sample(&w, CL(&sum[i]),
                      mw_val_u64(v, c->stream_received > c->stream_flushed
                                     ? c->stream_received - c->stream_flushed : 0));
    }

    mw_family(&w, "barque_check_status",
              "The cluster's last check: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.");
    for (size_t i = 0; i < nc; i++) {
        if (!sum[i].c)
            continue;
        int st = sum[i].has_check ? sum[i].status : BQ_SEV_UNKNOWN;
        if (st < BQ_SEV_OK || st > BQ_SEV_UNKNOWN)
            st = BQ_SEV_UNKNOWN;
        mw_sample(&w, CL(&sum[i]), mw_val_u64(v, (uint64_t)st));
    }
    mw_family(&w, "barque_check_timestamp_seconds",
              "When the cluster's last check ran, seconds since the epoch.");
    for (size_t i = 0; i < nc; i++)
        if (sum[i].c && sum[i].has_check && sum[i].check_ms != 0)
            mw_sample(&w, CL(&sum[i]), mw_val_ms(v, sum[i].check_ms));
    mw_family(&w, "barque_check_failed_items",
              "Items of the cluster's last check that were not OK.");
    for (size_t i = 0; i < nc; i++)
        if (sum[i].c && sum[i].has_check)
            mw_sample(&w, CL(&sum[i]), mw_val_u64(v, sum[i].check_failed));

    /* restore tests: from the cluster's rt_* fields; a cluster never tested has only the
     * predicted RTO (it needs no test of its own) and the status of its check item (which
     * says, for one, that a scheduled test never ran) */
    mw_family(&w, "barque_restore_test_last_timestamp_seconds",
              "When the cluster's last restore test ended, seconds since the epoch.");
    for (size_t i = 0; i < nc; i++)
        if (sum[i].c && sum[i].c->rt_last_ms)
            mw_sample(&w, CL(&sum[i]), mw_val_ms(v, sum[i].c->rt_last_ms));
    mw_family(&w, "barque_restore_test_last_success",
              "Whether the cluster's last restore test passed (1) or failed (0).");
    for (size_t i = 0; i < nc; i++)
        if (sum[i].c && sum[i].c->rt_last_ms)
            mw_sample(&w, CL(&sum[i]), sum[i].c->rt_last_ok ? "1" : "0");
    mw_family(&w, "barque_restore_test_last_success_timestamp_seconds",
              "When the cluster's last passed restore test ended, seconds since the epoch.");
    for (size_t i = 0; i < nc; i++)
        if (sum[i].c && sum[i].c->rt_last_ms && sum[i].c->rt_ok_ms)
            mw_sample(&w, CL(&sum[i]), mw_val_ms(v, sum[i].c->rt_ok_ms));
    mw_family(&w, "barque_restore_test_rto_seconds",
              "Recovery time measured by the cluster's last passed restore test.");
    for (size_t i = 0; i < nc; i++)
        if (sum[i].c && sum[i].c->rt_last_ms && sum[i].c->rt_ok_ms)
            mw_sample(&w, CL(&sum[i]),
                      mw_val_ms(v, sum[i].c->rt_ok_rto_ms > 0 ? sum[i].c->rt_ok_rto_ms : 0));
    mw_family(&w, "barque_restore_test_predicted_rto_seconds",
              "Recovery time the coordinator predicts for a restore of the cluster now.");
    for (size_t i = 0; i < nc; i++)
        if (sum[i].c && sum[i].c->rt_predicted_ms > 0)
            mw_sample(&w, CL(&sum[i]), mw_val_ms(v, sum[i].c->rt_predicted_ms));
    mw_family(&w, "barque_restore_test_status",
              "The cluster's restore test check: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.");
    for (size_t i = 0; i < nc; i++) {
        if (!sum[i].c)
            continue;
        int st = sum[i].c->rt_severity;
        if (st < BQ_SEV_OK || st > BQ_SEV_UNKNOWN)
            st = BQ_SEV_UNKNOWN;
        mw_sample(&w, CL(&sum[i]), mw_val_u64(v, (uint64_t)st));
    }

    /* geo copies (issue 8): per cluster and replicate_to site */
#define CLS(s, r) ((const char *const[]){"cluster", (s)->c->name, "site", (r)->site, NULL})
#define REPLICA_FAMILY(NAME, HELP, EXPR, COND)                                              \
    mw_family(&w, NAME, HELP);                                                              \
    for (size_t i = 0; i < nc; i++)                                                         \
        for (size_t k = 0; sum[i].c && k < sum[i].c->nreplicas; k++) {                      \
            const bq_replica_status_t *r_ = &sum[i].c->replicas[k];                         \
            if (COND)                                                                       \
                mw_sample(&w, CLS(&sum[i], r_), EXPR);                                      \
        }
    REPLICA_FAMILY("barque_replica_copies_done", "DONE backups of the cluster with a DONE copy at the site.",
                   mw_val_u64(v, r_->copies_done), 1)
    REPLICA_FAMILY("barque_replica_copies_behind",
                   "DONE backups of the cluster without a copy at the site yet.",
                   mw_val_u64(v, r_->copies_behind), 1)
    REPLICA_FAMILY("barque_replica_copies_failed", "Copies of the cluster's backups to the site that FAILED.",
                   mw_val_u64(v, r_->copies_failed), 1)
    REPLICA_FAMILY("barque_replica_wal_missing_files",
                   "WAL files of the cluster's archive not in a store at the site yet.",
                   mw_val_u64(v, r_->wal_missing), 1)
    REPLICA_FAMILY("barque_replica_wal_lag_bytes",
                   "Bytes of the cluster's WAL files not in a store at the site yet.",
                   mw_val_u64(v, r_->wal_lag_bytes), 1)
    REPLICA_FAMILY("barque_replica_last_copy_timestamp_seconds",
                   "When the last copy of a backup of the cluster became DONE at the site.",
                   mw_val_ms(v, r_->last_copy_ms), r_->last_copy_ms != 0)
#undef REPLICA_FAMILY
#undef CLS

    mw_family(&w, "barque_worker_online",
              "Whether the worker is connected to the coordinator (1) or not (0).");
    for (size_t i = 0; i < nwk; i++)
        if (wfirst[i])
            mw_sample(&w, WK(&in->workers[i]), in->workers[i].online ? "1" : "0");
    mw_family(&w, "barque_worker_store_free_bytes", "Free bytes of the worker's store.");
    for (size_t i = 0; i < nwk; i++)
        if (wfirst[i])
            mw_sample(&w, WK(&in->workers[i]), mw_val_u64(v, in->workers[i].store_free));
    mw_family(&w, "barque_worker_store_size_bytes", "Total bytes of the worker's store.");
    for (size_t i = 0; i < nwk; i++)
        if (wfirst[i])
            mw_sample(&w, WK(&in->workers[i]), mw_val_u64(v, in->workers[i].store_total));
    mw_family(&w, "barque_worker_jobs_running", "Jobs the worker is running.");
    for (size_t i = 0; i < nwk; i++)
        if (wfirst[i])
            mw_sample(&w, WK(&in->workers[i]), mw_val_u64(v, in->workers[i].running));
    mw_family(&w, "barque_worker_jobs_max", "Jobs the worker runs at most at once.");
    for (size_t i = 0; i < nwk; i++)
        if (wfirst[i])
            mw_sample(&w, WK(&in->workers[i]), mw_val_u64(v, in->workers[i].max_jobs));
    mw_family(&w, "barque_worker_last_seen_timestamp_seconds",
              "When the coordinator last heard from the worker, seconds since the epoch.");
    for (size_t i = 0; i < nwk; i++)
        if (wfirst[i] && in->workers[i].last_seen_ms != 0)
            mw_sample(&w, WK(&in->workers[i]), mw_val_ms(v, in->workers[i].last_seen_ms));
#undef CL
#undef WK

    free(sum);
    free(wfirst);
    return fflush(out) == 0 && !w.failed && !ferror(out) ? 0 : -1;
}

/* ---- checking -------------------------------------------------------------------------- */

static const char *const pc_types[] = {"counter", "gauge", "histogram", "summary", "untyped"};
enum { PC_COUNTER, PC_GAUGE, PC_HISTOGRAM, PC_SUMMARY, PC_UNTYPED, PC_NTYPES };

typedef struct {
    char *name;
    int type;             /* PC_*, -1 = no TYPE line */
    size_t help_line;     /* 0 = none */
    size_t type_line;
    size_t first_line;    /* its first HELP or TYPE line */
    int has_samples;
} pc_family_t;

typedef struct {
    const char *name;     /* label name and raw (escaped) value, spans of the line */
    size_t nlen;
    const char *val;
    size_t vlen;
} pc_label_t;

typedef struct {
    char *why;
    size_t whylen;
    size_t line;              /* the line being read, from 1 */
    pc_family_t *fam;
    size_t nfam, capfam;
    long cur;                 /* the family of the last HELP, TYPE or sample line (-1 = none) */
    char **keys;              /* the series seen: an open-addressing set, capkeys a power of 2 */
    size_t *key_lines;
    size_t nkeys, capkeys;
    pc_label_t *labels;       /* the labels of the sample being read */
    size_t nlabels, caplabels;
} pc_t;

static int pc_fail_at(pc_t *p, size_t line, const char *fmt, ...)
{
    int n = snprintf(p->why, p->whylen, "line %zu: ", line);
    if (n >= 0 && (size_t)n < p->whylen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(p->why + n, p->whylen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return -1;
}
#define pc_fail(p, ...) pc_fail_at((p), (p)->line, __VA_ARGS__)

static int pc_blank(char c) { return c == ' ' || c == '\t'; }
static int pc_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static int pc_digit(char c) { return c >= '0' && c <= '9'; }

static const char *pc_skip_blanks(const char *s, const char *end)
{
    while (s < end && pc_blank(*s))
        s++;
    return s;
}

/* The length of the metric name at s ([a-zA-Z_:][a-zA-Z0-9_:]*), 0 when there is none. */
static size_t pc_metric_name(const char *s, const char *end)
{
    size_t n = 0;
    while (s + n < end && (pc_alpha(s[n]) || s[n] == ':' || (n && pc_digit(s[n]))))
        n++;
    return n;
}

/* The length of the label name at s ([a-zA-Z_][a-zA-Z0-9_]*). */
static size_t pc_label_name(const char *s, const char *end)
{
    size_t n = 0;
    while (s + n < end && (pc_alpha(s[n]) || (n && pc_digit(s[n]))))
        n++;
    return n;
}

static long pc_family_find(const pc_t *p, const char *name, size_t len)
{
    for (size_t i = 0; i < p->nfam; i++)
        if (strlen(p->fam[i].name) == len && memcmp(p->fam[i].name, name, len) == 0)
            return (long)i;
    return -1;
}

static long pc_family_add(pc_t *p, const char *name, size_t len)
{
    if (p->nfam == p->capfam) {
        size_t cap = p->capfam ? 2 * p->capfam : 16;
        pc_family_t *f = realloc(p->fam, cap * sizeof *f);
        if (!f)
            return -1;
        p->fam = f;
        p->capfam = cap;
    }
    char *n = strndup(name, len);
    if (!n)
        return -1;
    p->fam[p->nfam] = (pc_family_t){.name = n, .type = -1};
    return (long)p->nfam++;
}

/* Make family f the current one; the one it follows ends, and must have had samples. */
static int pc_enter(pc_t *p, long f)
{
    if (p->cur >= 0 && p->cur != f && !p->fam[p->cur].has_samples)
        return pc_fail_at(p, p->fam[p->cur].first_line, "HELP or TYPE of %s with no samples",
                          p->fam[p->cur].name);
    p->cur = f;
    return 0;
}

/* # HELP name text, # TYPE name type; s is past "HELP" or "TYPE". */
static int pc_meta(pc_t *p, int is_type, const char *s, const char *end)
{
    const char *what = is_type ? "TYPE" : "HELP";
    const char *name = pc_skip_blanks(s, end);
    if (name == end)
        return pc_fail(p, "%s with no metric name", what);
    size_t nlen = pc_metric_name(name, end);
    if (nlen == 0 || (name + nlen < end && !pc_blank(name[nlen])))
        return pc_fail(p, "bad metric name in %s", what);
    s = pc_skip_blanks(name + nlen, end);

    int type = -1;
    if (!is_type) {
        for (const char *t = s; t < end; t++) {
            if (*t != '\\')
                continue;
            if (t + 1 == end || (t[1] != '\\' && t[1] != 'n'))
                return pc_fail(p, "bad escape in the help of %.*s", (int)nlen, name);
            t++;
        }
        if (s == end)
            return pc_fail(p, "HELP for %.*s with no text", (int)nlen, name);
    } else {
        const char *t = s;
        while (t < end && !pc_blank(*t))
            t++;
        for (int i = 0; i < PC_NTYPES; i++)
            if (strlen(pc_types[i]) == (size_t)(t - s) &&
                memcmp(pc_types[i], s, (size_t)(t - s)) == 0)
                type = i;
        if (type < 0)
            return pc_fail(p, "unknown type \"%.*s\" for %.*s", (int)(t - s), s, (int)nlen,
                           name);
        if (pc_skip_blanks(t, end) != end)
            return pc_fail(p, "text after the type of %.*s", (int)nlen, name);
    }

    /* A family with samples has both lines already: a second one is "twice". */
    long f = pc_family_find(p, name, nlen);
    if (f >= 0 && (is_type ? p->fam[f].type_line : p->fam[f].help_line))
        return pc_fail(p, "%s for %.*s twice (first at line %zu)", what, (int)nlen, name,
                       is_type ? p->fam[f].type_line : p->fam[f].help_line);
    if (f < 0 && (f = pc_family_add(p, name, nlen)) < 0)
        return pc_fail(p, "out of memory");
    if (pc_enter(p, f) != 0)
        return -1;
    pc_family_t *fam = &p->fam[f];
    if (!fam->first_line)
        fam->first_line = p->line;
    if (is_type) {
        fam->type = type;
        fam->type_line = p->line;
    } else {
        fam->help_line = p->line;
    }
    return 0;
}

/* Whether a sample called name (len) is one of family f's. */
static int pc_family_has(const pc_family_t *f, const char *name, size_t len)
{
    size_t fl = strlen(f->name);
    if (len < fl || memcmp(f->name, name, fl) != 0)
        return 0;
    const char *suffix = name + fl;
    size_t sl = len - fl;
#define PC_IS(sfx) (sl == sizeof(sfx) - 1 && memcmp(suffix, sfx, sl) == 0)
    switch (f->type) {
    case PC_HISTOGRAM:
        return PC_IS("_bucket") || PC_IS("_sum") || PC_IS("_count");
    case PC_SUMMARY:
        return sl == 0 || PC_IS("_sum") || PC_IS("_count");
    default:
        return sl == 0;
    }
#undef PC_IS
}

/* The family a sample called name belongs to, or -1. */
static long pc_family_of(const pc_t *p, const char *name, size_t len)
{
    if (p->cur >= 0 && pc_family_has(&p->fam[p->cur], name, len))
        return p->cur;
    for (size_t i = 0; i < p->nfam; i++)
        if (pc_family_has(&p->fam[i], name, len))
            return (long)i;
    return pc_family_find(p, name, len);
}

/* A float as Go's ParseFloat takes it, without hexadecimal: [+-]digits[.digits][e[+-]digits],
 * NaN, Inf, +Inf, -Inf. */
static int pc_float(const char *s, size_t len)
{
    if ((len == 3 && memcmp(s, "NaN", 3) == 0) || (len == 3 && memcmp(s, "Inf", 3) == 0) ||
        (len == 4 && (memcmp(s, "+Inf", 4) == 0 || memcmp(s, "-Inf", 4) == 0)))
        return 1;
    size_t i = 0, digits = 0;
    if (i < len && (s[i] == '+' || s[i] == '-'))
        i++;
    for (; i < len && pc_digit(s[i]); i++)
        digits++;
    if (i < len && s[i] == '.')
        for (i++; i < len && pc_digit(s[i]); i++)
            digits++;
    if (digits == 0)
        return 0;
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < len && (s[i] == '+' || s[i] == '-'))
            i++;
        size_t ed = 0;
        for (; i < len && pc_digit(s[i]); i++)
            ed++;
        if (ed == 0)
            return 0;
    }
    return i == len;
}

/* A timestamp: an integer of milliseconds that fits in 64 bits. */
static int pc_timestamp(const char *s, size_t len)
{
    char buf[32];
    size_t i = len && s[0] == '-';
    if (len >= sizeof buf || i == len)
        return 0;
    for (; i < len; i++)
        if (!pc_digit(s[i]))
            return 0;
    memcpy(buf, s, len);
    buf[len] = '\0';
    errno = 0;
    (void)strtoll(buf, NULL, 10);
    return errno == 0;
}

static int pc_label_cmp(const void *a, const void *b)
{
    const pc_label_t *x = a, *y = b;
    size_t n = x->nlen < y->nlen ? x->nlen : y->nlen;
    int c = memcmp(x->name, y->name, n);
    return c ? c : (x->nlen > y->nlen) - (x->nlen < y->nlen);
}

static uint64_t pc_hash(const char *s)
{
    uint64_t h = 1469598103934665603u; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211u;
    return h;
}

/* Add key (taken) to the set of series; 0, 1 when it is there already (then *first is the
 * line it was first seen at, and key is freed), -1 when memory runs out. */
static int pc_series_add(pc_t *p, char *key, size_t *first)
{
    if (2 * (p->nkeys + 1) > p->capkeys) {
        size_t cap = p->capkeys ? 2 * p->capkeys : 64;
        char **keys = calloc(cap, sizeof *keys);
        size_t *lines = calloc(cap, sizeof *lines);
        if (!keys || !lines) {
            free(keys);
            free(lines);
            free(key);
            return -1;
        }
        for (size_t i = 0; i < p->capkeys; i++) {
            if (!p->keys[i])
                continue;
            size_t j = pc_hash(p->keys[i]) & (cap - 1);
            while (keys[j])
                j = (j + 1) & (cap - 1);
            keys[j] = p->keys[i];
            lines[j] = p->key_lines[i];
        }
        free(p->keys);
        free(p->key_lines);
        p->keys = keys;
        p->key_lines = lines;
        p->capkeys = cap;
    }
    size_t j = pc_hash(key) & (p->capkeys - 1);
    for (; p->keys[j]; j = (j + 1) & (p->capkeys - 1)) {
        if (strcmp(p->keys[j], key) == 0) {
            *first = p->key_lines[j];
            free(key);
            return 1;
        }
    }
    p->keys[j] = key;
    p->key_lines[j] = p->line;
    p->nkeys++;
    return 0;
}

/* name{label="value",...} value [timestamp] */
static int pc_sample(pc_t *p, const char *s, const char *end)
{
    size_t nlen = pc_metric_name(s, end);
    if (nlen == 0)
        return pc_fail(p, "bad metric name");
    const char *name = s;
    s = pc_skip_blanks(s + nlen, end);
    p->nlabels = 0;

    if (s < end && *s == '{') {
        s = pc_skip_blanks(s + 1, end);
        while (s < end && *s != '}') {
            size_t ln = pc_label_name(s, end);
            if (ln == 0)
                return pc_fail(p, "bad label name in a sample of %.*s", (int)nlen, name);
            const char *lname = s;
            if (ln >= 2 && lname[0] == '_' && lname[1] == '_')
                return pc_fail(p, "label name %.*s is reserved", (int)ln, lname);
            for (size_t i = 0; i < p->nlabels; i++)
                if (p->labels[i].nlen == ln && memcmp(p->labels[i].name, lname, ln) == 0)
                    return pc_fail(p, "label %.*s twice", (int)ln, lname);
            s = pc_skip_blanks(s + ln, end);
            if (s == end || *s != '=')
                return pc_fail(p, "expected '=' after label %.*s", (int)ln, lname);
            s = pc_skip_blanks(s + 1, end);
            if (s == end || *s != '"')
                return pc_fail(p, "expected '\"' to open the value of label %.*s", (int)ln,
                               lname);
            const char *val = ++s;
            for (; s < end && *s != '"'; s++) {
                if (*s != '\\')
                    continue;
                if (s + 1 == end || (s[1] != '\\' && s[1] != '"' && s[1] != 'n'))
                    return pc_fail(p, "bad escape in the value of label %.*s", (int)ln, lname);
                s++;
            }
            if (s == end)
                return pc_fail(p, "unterminated value of label %.*s", (int)ln, lname);
            if (p->nlabels == p->caplabels) {
                size_t cap = p->caplabels ? 2 * p->caplabels : 8;
                pc_label_t *l = realloc(p->labels, cap * sizeof *l);
                if (!l)
                    return pc_fail(p, "out of memory");
                p->labels = l;
                p->caplabels = cap;
            }
            p->labels[p->nlabels++] = (pc_label_t){lname, ln, val, (size_t)(s - val)};
            s = pc_skip_blanks(s + 1, end);
            if (s < end && *s == ',')
                s = pc_skip_blanks(s + 1, end);
            else if (s == end || *s != '}')
                return pc_fail(p, "expected ',' or '}' after label %.*s", (int)ln, lname);
        }
        if (s == end)
            return pc_fail(p, "unterminated label set of %.*s", (int)nlen, name);
        s = pc_skip_blanks(s + 1, end);
    } else if (s == name + nlen && s < end) {
        return pc_fail(p, "bad metric name");
    }

    const char *val = s;
    while (s < end && !pc_blank(*s))
        s++;
    if (s == val)
        return pc_fail(p, "no value for %.*s", (int)nlen, name);
    if (!pc_float(val, (size_t)(s - val)))
        return pc_fail(p, "bad value \"%.*s\" for %.*s", (int)(s - val), val, (int)nlen, name);
    s = pc_skip_blanks(s, end);
    if (s < end) {
        const char *ts = s;
        while (s < end && !pc_blank(*s))
            s++;
        if (!pc_timestamp(ts, (size_t)(s - ts)))
            return pc_fail(p, "bad timestamp \"%.*s\" for %.*s", (int)(s - ts), ts, (int)nlen,
                           name);
        if (pc_skip_blanks(s, end) != end)
            return pc_fail(p, "text after the timestamp of %.*s", (int)nlen, name);
    }

    long f = pc_family_of(p, name, nlen);
    if (f < 0 || p->fam[f].type < 0)
        return pc_fail(p, "sample of %.*s with no TYPE", (int)nlen, name);
    if (!pc_family_has(&p->fam[f], name, nlen))
        return pc_fail(p, "%.*s is no sample name of %s family %s", (int)nlen, name,
                       pc_types[p->fam[f].type], p->fam[f].name);
    if (!p->fam[f].help_line)
        return pc_fail(p, "sample of %.*s with no HELP", (int)nlen, name);
    if (f != p->cur)
        return pc_fail(p, "samples of %s are not contiguous", p->fam[f].name);
    p->fam[f].has_samples = 1;

    /* the series: name{labels sorted by name, values as written (escapes are canonical)} */
    if (p->nlabels > 1)
        qsort(p->labels, p->nlabels, sizeof *p->labels, pc_label_cmp);
    size_t klen = nlen + 3;
    for (size_t i = 0; i < p->nlabels; i++)
        klen += p->labels[i].nlen + p->labels[i].vlen + 4;
    char *key = malloc(klen);
    if (!key)
        return pc_fail(p, "out of memory");
    size_t k = 0;
    memcpy(key + k, name, nlen);
    k += nlen;
    key[k++] = '{';
    for (size_t i = 0; i < p->nlabels; i++) {
        memcpy(key + k, p->labels[i].name, p->labels[i].nlen);
        k += p->labels[i].nlen;
        key[k++] = '=';
        key[k++] = '"';
        memcpy(key + k, p->labels[i].val, p->labels[i].vlen);
        k += p->labels[i].vlen;
        key[k++] = '"';
        key[k++] = ',';
    }
    if (p->nlabels)
        k--;
    key[k++] = '}';
    key[k] = '\0';
    size_t first = 0;
    int rc = pc_series_add(p, key, &first);
    if (rc < 0)
        return pc_fail(p, "out of memory");
    if (rc > 0) {
        /* the key is freed: print the series from the line */
        return pc_fail(p, "series of %.*s with these labels twice (first at line %zu)",
                       (int)nlen, name, first);
    }
    return 0;
}

static int pc_line(pc_t *p, const char *s, const char *end)
{
    s = pc_skip_blanks(s, end);
    if (s == end)
        return 0;
    if (*s != '#')
        return pc_sample(p, s, end);
    s = pc_skip_blanks(s + 1, end);
    const char *tok = s;
    while (s < end && !pc_blank(*s))
        s++;
    size_t tl = (size_t)(s - tok);
    if (tl == 4 && memcmp(tok, "HELP", 4) == 0)
        return pc_meta(p, 0, s, end);
    if (tl == 4 && memcmp(tok, "TYPE", 4) == 0)
        return pc_meta(p, 1, s, end);
    return 0; /* a comment */
}

int metrics_parse_check(const char *text, char *why, size_t whylen)
{
    pc_t p = {.why = why, .whylen = whylen, .cur = -1};
    int rc = 0;
    if (whylen)
        why[0] = '\0';
    for (const char *s = text; *s && rc == 0; s++) {
        p.line++;
        const char *eol = strchr(s, '\n');
        if (!eol) {
            rc = pc_fail(&p, "no newline at the end");
            break;
        }
        rc = pc_line(&p, s, eol);
        s = eol;
    }
    if (rc == 0)
        rc = pc_enter(&p, -1);

    for (size_t i = 0; i < p.nfam; i++)
        free(p.fam[i].name);
    free(p.fam);
    for (size_t i = 0; i < p.capkeys; i++)
        free(p.keys[i]);
    free(p.keys);
    free(p.key_lines);
    free(p.labels);
    return rc;
}
