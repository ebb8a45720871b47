/* INI configuration of the coordinator, the worker and the CLI.
 *
 * libinih splits lines into "key = value"; everything else is driven by one schema per
 * config kind: a table of section kinds, each with a table of keys (type, range, default,
 * required flag, offset of the field it fills). One loader walks any schema, so the three
 * configs share every check and every message.
 *
 * Debian's libinih gives the handler no line number, so inih reads through cfg_reader(),
 * which counts lines, refuses lines inih would split (too long) and recognises section
 * headers itself: inih only reports keys, but empty sections ([site east]) matter here and
 * "missing key" errors point at the header line.
 *
 * libinih's options are process-wide globals: loading configs from two threads at once is
 * not supported (the daemons and the CLI load theirs in main before starting threads). */
#include "config.h"

#include "clock.h"
#include "policy.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CFG_LINE_MAX 4096              /* longest line, without its newline */
#define CFG_LINE_BUF (CFG_LINE_MAX + 2) /* inih's line buffer: line, '\n', NUL */
#define CFG_KEYS_MAX 32                /* keys of one section kind */
#define CFG_SECTIONS_MAX 100000        /* sections in one file */

/* ---- schema ---------------------------------------------------------------------------- */

typedef enum {
    CFG_STRING,          /* char[size], copied as is */
    CFG_PATH,            /* char[size], relative to the config file's directory */
    CFG_ENDPOINT,        /* char[size], tcp://HOST:PORT */
    CFG_NAME,            /* char[size], bq_name_valid */
    CFG_INT,             /* int, min..max */
    CFG_DURATION,        /* int64_t milliseconds, min..max */
    CFG_SIZE,            /* uint64_t bytes, min..max ("64MiB", "2GiB", "1048576") */
    CFG_LOG_LEVEL,       /* bq_log_level_t */
    CFG_PUBLIC_KEY_FILE, /* CFG_PATH, and the key it holds goes to char[41] at key_off */
    CFG_SECRET_KEY_FILE, /* CFG_PATH, and the key pair it holds goes to bq_keypair_t at key_off */
    CFG_CHOICE,          /* int: the index of the value in choices ("stream|archive") */
    CFG_BOOL,            /* int 0/1: on|off, true|false, yes|no, 1|0 */
} cfg_type_t;

typedef struct {
    const char *key;
    cfg_type_t type;
    bool required;
    size_t off;       /* the field in the section's struct */
    size_t size;      /* its size, for text fields */
    size_t key_off;   /* key files: where the key read from the file goes */
    int64_t min, max; /* CFG_INT, CFG_DURATION (ms), CFG_SIZE (bytes) */
    const char *def;  /* default, parsed like a value from the file; NULL: none */
    const char *ref;  /* CFG_NAME: must name a [ref NAME] section of the same file
                       * (at most one such key per section kind) */
    bool unique;      /* CFG_PUBLIC_KEY_FILE: no two sections of the file may hold the same key */
    const char *choices; /* CFG_CHOICE: "a|b|c" */
    /* CFG_STRING: checks the value's grammar (0, or -1 with why); NULL: any text */
    int (*check)(const char *v, char *why, size_t len);
    /* KEY@SITE overrides (issue 8): at_n_off != 0 when the key takes them; each goes to the
     * next bq_cfg_at_t of the array at at_off (its text for strings, its size for sizes) */
    size_t at_off, at_n_off;
} cfg_key_t;

typedef struct {
    const char *kind;  /* "coordinator" in [coordinator], "worker" in [worker w1] */
    bool named;        /* the header is [kind NAME]; NAME goes to char[BQ_NAME_MAX] at name_off */
    bool required;     /* the file must have it (unnamed sections appear at most once) */
    size_t name_off;
    const cfg_key_t *keys;
    size_t nkeys;
    void *(*add)(void *cfg); /* append a zeroed element, return it (NULL: out of memory);
                              * NULL: the section fills the config struct itself */
    /* checks that span keys, when the section ends: 0, or -1 with why and the key it is
     * about (its line is reported; NULL: the header's); NULL: none */
    int (*close)(const void *obj, const char **key, char *why, size_t len);
} cfg_section_t;

typedef struct {
    const cfg_section_t *sections;
    size_t nsections;
    size_t size;                 /* of the config struct */
    size_t path_off;             /* its char[PATH_MAX] path */
    void (*release)(void *cfg);  /* frees what add() allocated; NULL: nothing to free */
} cfg_schema_t;

#define FIELD_SIZE(T, f) sizeof(((T *)0)->f)
#define KEY_TEXT(T, k, ty, req, f)                                                          \
    { .key = (k), .type = (ty), .required = (req), .off = offsetof(T, f),                   \
      .size = FIELD_SIZE(T, f) }
#define KEY_REF(T, k, req, f, r)                                                            \
    { .key = (k), .type = CFG_NAME, .required = (req), .off = offsetof(T, f),               \
      .size = FIELD_SIZE(T, f), .ref = (r) }
#define KEY_PUBLIC(T, k, f, kf, uniq)                                                       \
    { .key = (k), .type = CFG_PUBLIC_KEY_FILE, .required = true, .off = offsetof(T, f),     \
      .size = FIELD_SIZE(T, f), .key_off = offsetof(T, kf), .unique = (uniq) }
#define KEY_SECRET(T, k, f, kf)                                                             \
    { .key = (k), .type = CFG_SECRET_KEY_FILE, .required = true, .off = offsetof(T, f),     \
      .size = FIELD_SIZE(T, f), .key_off = offsetof(T, kf) }
#define KEY_NUM(T, k, ty, f, lo, hi, d)                                                     \
    { .key = (k), .type = (ty), .off = offsetof(T, f), .min = (lo), .max = (hi), .def = (d) }
#define KEY_LEVEL(T, k, f) { .key = (k), .type = CFG_LOG_LEVEL, .off = offsetof(T, f), .def = "info" }
#define KEY_CHOICE(T, k, f, ch, d) { .key = (k), .type = CFG_CHOICE, .off = offsetof(T, f), .choices = (ch), .def = (d) }
#define KEY_BOOL(T, k, f, d) { .key = (k), .type = CFG_BOOL, .off = offsetof(T, f), .def = (d) }
#define KEY_CHECKED(T, k, f, fn)                                                            \
    { .key = (k), .type = CFG_STRING, .off = offsetof(T, f), .size = FIELD_SIZE(T, f),      \
      .check = (fn) }
#define KEY_AT(T, arr, n) .at_off = offsetof(T, arr), .at_n_off = offsetof(T, n)
#define NKEYS(a) (sizeof(a) / sizeof((a)[0]))

#define MS_HOUR (3600LL * 1000)
#define MS_DAY (24 * MS_HOUR)
#define MIB (1LL << 20)
#define TIB (1LL << 40)

/* coordinator.conf */
typedef bq_coord_config_t coord_t;
static const cfg_key_t coord_keys[] = {
    KEY_TEXT(coord_t, "listen", CFG_ENDPOINT, true, listen),
    KEY_TEXT(coord_t, "catalog", CFG_PATH, true, catalog),
    KEY_SECRET(coord_t, "secret_key_file", secret_key_file, keys),
    KEY_LEVEL(coord_t, "log_level", log_level),
    KEY_NUM(coord_t, "heartbeat_interval", CFG_DURATION, heartbeat_interval_ms, 1, MS_HOUR, "1s"),
    KEY_NUM(coord_t, "worker_timeout", CFG_DURATION, worker_timeout_ms, 1, 7 * MS_DAY, "10s"),
    KEY_NUM(coord_t, "job_lease", CFG_DURATION, job_lease_ms, 1, 7 * MS_DAY, "30s"),
    KEY_NUM(coord_t, "job_max_attempts", CFG_INT, job_max_attempts, 1, 100, "3"),
    KEY_NUM(coord_t, "job_retry_backoff", CFG_DURATION, job_retry_backoff_ms, 0, 7 * MS_DAY, "5s"),
    KEY_NUM(coord_t, "catalog_max_size", CFG_SIZE, catalog_max_size, MIB, 64 * TIB, "1GiB"),
    KEY_NUM(coord_t, "retention_interval", CFG_DURATION, retention_interval_ms, 1000, MS_DAY, "1m"),
    /* finished jobs' records go this long after they ended (the catalog does not grow forever) */
    KEY_NUM(coord_t, "job_history", CFG_DURATION, job_history_ms, 1000, 3660 * MS_DAY, "30d"),
    /* a cluster's ended wal-stream job is replaced this long after it ended, at most this often */
    KEY_NUM(coord_t, "wal_restart_interval", CFG_DURATION, wal_restart_interval_ms, 1000, MS_HOUR, "30s"),
    KEY_NUM(coord_t, "store_free_warning", CFG_INT, store_free_warning, 0, 100, "10"),
    KEY_NUM(coord_t, "store_free_critical", CFG_INT, store_free_critical, 0, 100, "5"),
    KEY_NUM(coord_t, "store_full_warning", CFG_DURATION, store_full_warning_ms, 0, 366 * MS_DAY, "7d"),
};
static const cfg_key_t site_keys[] = {
    KEY_NUM(bq_cfg_site_t, "max_concurrent_backups", CFG_INT, max_concurrent_backups, 0, 100000, "0"),
    { .key = "bandwidth_limit", .type = CFG_SIZE, .off = offsetof(bq_cfg_site_t, bandwidth_limit),
      .min = 0, .max = 1000 * TIB, .def = "0", KEY_AT(bq_cfg_site_t, bandwidth_at, nbandwidth_at) },
};
static const cfg_key_t worker_ref_keys[] = {
    KEY_PUBLIC(bq_cfg_worker_ref_t, "public_key_file", public_key_file, public_key, true),
    KEY_REF(bq_cfg_worker_ref_t, "site", true, site, "site"),
    KEY_NUM(bq_cfg_worker_ref_t, "max_jobs", CFG_INT, max_jobs, 1, 1024, "4"),
    KEY_NUM(bq_cfg_worker_ref_t, "max_concurrent_backups", CFG_INT, max_concurrent_backups, 0, 1024, "0"),
};
static const cfg_key_t operator_keys[] = {
    KEY_PUBLIC(bq_cfg_operator_t, "public_key_file", public_key_file, public_key, true),
};
/* replicate_to: site names joined by ',' (spaces around them allowed), each once, at most
 * BQ_REPLICA_SITES_MAX; whether each names a [site] is checked with the whole file. */
static int sites_list_check(const char *v, char *why, size_t len)
{
    char names[BQ_REPLICA_SITES_MAX][BQ_NAME_MAX];
    size_t n = 0;
    const char *p = v;
    for (;;) {
        while (*p == ' ' || *p == '\t')
            p++;
        size_t w = strcspn(p, ", \t");
        char name[BQ_NAME_MAX];
        if (w == 0 || w >= sizeof name) {
            snprintf(why, len, "expected site names separated by commas, as replicate_to = "
                     "west, north");
            return -1;
        }
        memcpy(name, p, w);
        name[w] = '\0';
        if (!bq_name_valid(name)) {
            snprintf(why, len, "'%s' is not a site name", name);
            return -1;
        }
        for (size_t i = 0; i < n; i++)
            if (strcmp(names[i], name) == 0) {
                snprintf(why, len, "site %s is named twice", name);
                return -1;
            }
        if (n == BQ_REPLICA_SITES_MAX) {
            snprintf(why, len, "at most %d sites", BQ_REPLICA_SITES_MAX);
            return -1;
        }
        memcpy(names[n++], name, w + 1);
        p += w;
        while (*p == ' ' || *p == '\t')
            p++;
        if (!*p)
            return 0;
        if (*p != ',') {
            snprintf(why, len, "expected site names separated by commas, as replicate_to = "
                     "west, north");
            return -1;
        }
        p++;
    }
}

static const cfg_key_t cluster_keys[] = {
    KEY_TEXT(bq_cfg_cluster_t, "conninfo", CFG_STRING, true, conninfo),
    KEY_REF(bq_cfg_cluster_t, "site", true, site, "site"),
    KEY_CHOICE(bq_cfg_cluster_t, "wal", wal, "stream|archive", "stream"),
    KEY_BOOL(bq_cfg_cluster_t, "synchronous", synchronous, "off"),
    /* issue 6: schedule, retention, checks, hooks */
    KEY_CHECKED(bq_cfg_cluster_t, "backup_schedule", backup_schedule, bq_schedule_check),
    KEY_CHECKED(bq_cfg_cluster_t, "backup_jitter", backup_jitter, bq_duration_check),
    KEY_NUM(bq_cfg_cluster_t, "backup_max_age", CFG_DURATION, backup_max_age_ms, 0, 3660 * MS_DAY, "0"),
    { .key = "retention_policy", .type = CFG_STRING,
      .off = offsetof(bq_cfg_cluster_t, retention_policy),
      .size = FIELD_SIZE(bq_cfg_cluster_t, retention_policy), .check = bq_retention_check,
      KEY_AT(bq_cfg_cluster_t, retention_at, nretention_at) },
    KEY_NUM(bq_cfg_cluster_t, "minimum_redundancy", CFG_INT, minimum_redundancy, 0, 100000, "0"),
    KEY_CHOICE(bq_cfg_cluster_t, "retention", retention, "auto|report", "auto"),
    KEY_NUM(bq_cfg_cluster_t, "wal_max_age", CFG_DURATION, wal_max_age_ms, 0, 366 * MS_DAY, "0"),
    KEY_NUM(bq_cfg_cluster_t, "wal_max_lag", CFG_SIZE, wal_max_lag, 0, 64 * TIB, "0"),
    KEY_TEXT(bq_cfg_cluster_t, "pre_backup_script", CFG_STRING, false, pre_backup_script),
    KEY_TEXT(bq_cfg_cluster_t, "post_backup_script", CFG_STRING, false, post_backup_script),
    KEY_TEXT(bq_cfg_cluster_t, "pre_recover_script", CFG_STRING, false, pre_recover_script),
    KEY_TEXT(bq_cfg_cluster_t, "post_recover_script", CFG_STRING, false, post_recover_script),
    KEY_TEXT(bq_cfg_cluster_t, "post_wal_script", CFG_STRING, false, post_wal_script),
    KEY_NUM(bq_cfg_cluster_t, "hook_timeout", CFG_DURATION, hook_timeout_ms, 1, MS_DAY, "60s"),
    KEY_NUM(bq_cfg_cluster_t, "hook_retries", CFG_INT, hook_retries, 0, 1000, "5"),
    KEY_NUM(bq_cfg_cluster_t, "hook_retry_sleep", CFG_DURATION, hook_retry_sleep_ms, 0, MS_HOUR, "10s"),
    /* issue 7: restore tests */
    KEY_CHECKED(bq_cfg_cluster_t, "restore_test_schedule", restore_test_schedule, bq_schedule_check),
    KEY_NUM(bq_cfg_cluster_t, "restore_test_max_age", CFG_DURATION, restore_test_max_age_ms, 0,
            3660 * MS_DAY, "0"),
    KEY_BOOL(bq_cfg_cluster_t, "restore_test_amcheck", restore_test_amcheck, "off"),
    KEY_TEXT(bq_cfg_cluster_t, "restore_test_sql", CFG_PATH, false, restore_test_sql),
    KEY_NUM(bq_cfg_cluster_t, "restore_test_timeout", CFG_DURATION, restore_test_timeout_ms,
            60000, 7 * MS_DAY, "6h"),
    KEY_CHECKED(bq_cfg_cluster_t, "replicate_to", replicate_to, sites_list_check),
};

/* backup_jitter must be shorter than the schedule's period (bq_schedule_check's grammar). */
static int cluster_close(const void *obj, const char **key, char *why, size_t len)
{
    const bq_cfg_cluster_t *cl = obj;
    *key = "backup_jitter";
    return bq_schedule_jitter_check(cl->backup_schedule, cl->backup_jitter, why, len);
}

/* Append a zeroed element to one of the coordinator config's arrays. The arrays keep no
 * capacity: they grow to twice their size whenever the count reaches a power of two. */
#define CFG_ADDER(fn, type, arr, count)                                                     \
    static void *fn(void *cfgp)                                                             \
    {                                                                                       \
        coord_t *cfg = cfgp;                                                                \
        size_t n = cfg->count;                                                              \
        if (n == 0 || (n & (n - 1)) == 0) {                                                 \
            type *p = realloc(cfg->arr, (n ? 2 * n : 1) * sizeof *p);                       \
            if (!p)                                                                         \
                return NULL;                                                                \
            cfg->arr = p;                                                                   \
        }                                                                                   \
        memset(&cfg->arr[n], 0, sizeof cfg->arr[n]);                                        \
        cfg->count = n + 1;                                                                 \
        return &cfg->arr[n];                                                                \
    }
CFG_ADDER(coord_site_add, bq_cfg_site_t, sites, nsites)
CFG_ADDER(coord_worker_add, bq_cfg_worker_ref_t, workers, nworkers)
CFG_ADDER(coord_operator_add, bq_cfg_operator_t, operators, noperators)
CFG_ADDER(coord_cluster_add, bq_cfg_cluster_t, clusters, nclusters)

static const cfg_section_t coord_sections[] = {
    {"coordinator", false, true, 0, coord_keys, NKEYS(coord_keys), NULL, NULL},
    {"site", true, false, offsetof(bq_cfg_site_t, name), site_keys, NKEYS(site_keys), coord_site_add, NULL},
    {"worker", true, false, offsetof(bq_cfg_worker_ref_t, name), worker_ref_keys,
     NKEYS(worker_ref_keys), coord_worker_add, NULL},
    {"operator", true, false, offsetof(bq_cfg_operator_t, name), operator_keys,
     NKEYS(operator_keys), coord_operator_add, NULL},
    {"cluster", true, false, offsetof(bq_cfg_cluster_t, name), cluster_keys,
     NKEYS(cluster_keys), coord_cluster_add, cluster_close},
};

static void coord_release(void *cfg) { bq_coord_config_free(cfg); }

static const cfg_schema_t coord_schema = {
    coord_sections, NKEYS(coord_sections), sizeof(coord_t), offsetof(coord_t, path), coord_release,
};

/* worker.conf */
typedef bq_worker_config_t worker_t;
static const cfg_key_t worker_keys[] = {
    KEY_TEXT(worker_t, "name", CFG_NAME, true, name),
    KEY_TEXT(worker_t, "site", CFG_NAME, true, site),
    KEY_TEXT(worker_t, "coordinator", CFG_ENDPOINT, true, coordinator),
    KEY_PUBLIC(worker_t, "coordinator_public_key_file", coordinator_public_key_file,
               coordinator_public_key, false),
    KEY_SECRET(worker_t, "secret_key_file", secret_key_file, keys),
    KEY_TEXT(worker_t, "store", CFG_PATH, true, store),
    KEY_TEXT(worker_t, "data_listen", CFG_ENDPOINT, false, data_listen),
    KEY_TEXT(worker_t, "data_advertise", CFG_ENDPOINT, false, data_advertise),
    KEY_TEXT(worker_t, "scratch", CFG_PATH, false, scratch),
    /* the store's key (issue 3) has its own format: only the path is resolved here */
    KEY_TEXT(worker_t, "store_key_file", CFG_PATH, false, store_key_file),
    KEY_TEXT(worker_t, "cli_command", CFG_STRING, false, cli_command),
    /* restore tests (issue 7): who runs the restored server, and with which binaries */
    KEY_TEXT(worker_t, "restore_test_user", CFG_NAME, false, restore_test_user),
    KEY_TEXT(worker_t, "pg_bindir", CFG_PATH, false, pg_bindir),
    KEY_LEVEL(worker_t, "log_level", log_level),
    KEY_NUM(worker_t, "max_jobs", CFG_INT, max_jobs, 1, 1024, "4"),
    KEY_NUM(worker_t, "heartbeat_interval", CFG_DURATION, heartbeat_interval_ms, 1, MS_HOUR, "1s"),
    /* how long a copy, restore or WAL fetch waits for a silent peer's data port (issue 8) */
    KEY_NUM(worker_t, "peer_timeout", CFG_DURATION, peer_timeout_ms, 1000, MS_HOUR, "30s"),
};
static const cfg_section_t worker_sections[] = {
    {"worker", false, true, 0, worker_keys, NKEYS(worker_keys), NULL, NULL},
};
static const cfg_schema_t worker_schema = {
    worker_sections, NKEYS(worker_sections), sizeof(worker_t), offsetof(worker_t, path), NULL,
};

/* barque.conf (CLI) */
typedef bq_cli_config_t cli_t;
static const cfg_key_t cli_keys[] = {
    KEY_TEXT(cli_t, "coordinator", CFG_ENDPOINT, true, coordinator),
    KEY_PUBLIC(cli_t, "coordinator_public_key_file", coordinator_public_key_file,
               coordinator_public_key, false),
    KEY_SECRET(cli_t, "secret_key_file", secret_key_file, keys),
    KEY_NUM(cli_t, "timeout", CFG_DURATION, timeout_ms, 1, MS_DAY, "10s"),
};
static const cfg_section_t cli_sections[] = {
    {"cli", false, true, 0, cli_keys, NKEYS(cli_keys), NULL, NULL},
};
static const cfg_schema_t cli_schema = {
    cli_sections, NKEYS(cli_sections), sizeof(cli_t), offsetof(cli_t, path), NULL,
};

_Static_assert(NKEYS(coord_keys) <= CFG_KEYS_MAX, "coordinator keys");
_Static_assert(NKEYS(worker_keys) <= CFG_KEYS_MAX, "worker keys");
_Static_assert(NKEYS(cli_keys) <= CFG_KEYS_MAX, "cli keys");
_Static_assert(NKEYS(cluster_keys) <= CFG_KEYS_MAX, "cluster keys");

/* ---- load state ------------------------------------------------------------------------ */

/* One section met in the file, kept until the end of the load for the checks that span
 * sections (duplicates, references, shared keys). */
typedef struct {
    const cfg_section_t *sec;
    char name[BQ_NAME_MAX];
    int line;                           /* of the header */
    int key_line[CFG_KEYS_MAX];         /* 0: key not given */
    int ref_key;                        /* index of the key with .ref that was given, or -1 */
    char ref[BQ_NAME_MAX];              /* its value */
    int unique_key;                     /* index of the .unique key that was given, or -1 */
    char public_key[BQ_Z85_KEY_LEN + 1];
} cfg_rec_t;

/* Open-addressing index of records by a hash (sections by kind and name, keys by public
 * key), so duplicate checks stay linear for fleets with tens of thousands of sections. */
typedef struct {
    uint64_t hash;
    size_t rec1; /* record number + 1; 0 = empty slot */
} cfg_slot_t;

typedef struct {
    cfg_slot_t *slots;
    size_t cap, n;
} cfg_idx_t;

typedef struct {
    const cfg_schema_t *schema;
    void *cfg;
    cfg_idx_t sections, keys;
    const char *path;      /* as given, for messages */
    char dir[PATH_MAX];    /* absolute directory of the file, for relative paths */
    FILE *f;
    int lineno;            /* of the line inih is working on */
    cfg_rec_t *recs;
    size_t nrecs, caprecs;
    void *obj;             /* what the current section fills (recs[nrecs-1]); NULL: none */
    int rc;                /* first error; loading stops there */
    bq_errbuf_t *e;
} cfg_ctx_t;

static uint64_t cfg_hash(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ULL; /* FNV-1a */
    return h;
}

/* Call eq(rec, arg) for each record whose hash matches; return the first record number for
 * which it is true, or -1. */
static long cfg_idx_find(const cfg_idx_t *ix, uint64_t h, const cfg_rec_t *recs,
                         int (*eq)(const cfg_rec_t *r, const void *arg), const void *arg)
{
    if (!ix->cap)
        return -1;
    for (size_t i = h & (ix->cap - 1);; i = (i + 1) & (ix->cap - 1)) {
        const cfg_slot_t *sl = &ix->slots[i];
        if (!sl->rec1)
            return -1;
        if (sl->hash == h && eq(&recs[sl->rec1 - 1], arg))
            return (long)(sl->rec1 - 1);
    }
}

static int cfg_idx_add(cfg_idx_t *ix, uint64_t h, size_t rec)
{
    if ((ix->n + 1) * 2 > ix->cap) {
        size_t cap = ix->cap ? ix->cap * 2 : 64;
        cfg_slot_t *slots = calloc(cap, sizeof *slots);
        if (!slots)
            return BQ_E_NOMEM;
        for (size_t i = 0; i < ix->cap; i++) {
            if (!ix->slots[i].rec1)
                continue;
            size_t k = ix->slots[i].hash & (cap - 1);
            while (slots[k].rec1)
                k = (k + 1) & (cap - 1);
            slots[k] = ix->slots[i];
        }
        free(ix->slots);
        ix->slots = slots;
        ix->cap = cap;
    }
    size_t k = h & (ix->cap - 1);
    while (ix->slots[k].rec1)
        k = (k + 1) & (ix->cap - 1);
    ix->slots[k] = (cfg_slot_t){.hash = h, .rec1 = rec + 1};
    ix->n++;
    return 0;
}

typedef struct {
    const cfg_section_t *sec;
    const char *name;
} cfg_sec_key_t;

static int cfg_rec_is_section(const cfg_rec_t *r, const void *arg)
{
    const cfg_sec_key_t *k = arg;
    return r->sec == k->sec && strcmp(r->name, k->name) == 0;
}

static int cfg_rec_has_key(const cfg_rec_t *r, const void *arg)
{
    return r->unique_key >= 0 && strcmp(r->public_key, (const char *)arg) == 0;
}

/* Record the first error as "FILE:LINE: [section] key: reason"; parts that are 0/NULL are
 * left out ("FILE: [coordinator]: reason", "FILE:LINE: reason"). */
static int cfg_fail(cfg_ctx_t *c, int code, int line, const char *section, const char *key,
                    const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static int cfg_fail(cfg_ctx_t *c, int code, int line, const char *section, const char *key,
                    const char *fmt, ...)
{
    if (c->rc)
        return c->rc;
    char where[BQ_ERRMSG_MAX], why[BQ_ERRMSG_MAX];
    int w = snprintf(where, sizeof where, "%s", c->path);
    size_t n = w < 0 ? 0 : ((size_t)w >= sizeof where ? sizeof where - 1 : (size_t)w);
    if (line > 0 && n < sizeof where) {
        w = snprintf(where + n, sizeof where - n, ":%d", line);
        n += w < 0 ? 0 : (size_t)w;
    }
    if ((section || key) && n < sizeof where) {
        w = snprintf(where + n, sizeof where - n, ": %s%s%s%s%s", section ? "[" : "",
                     section ? section : "", section ? "]" : "", section && key ? " " : "",
                     key ? key : "");
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    c->rc = code;
    bq_fail(c->e, code, "%s: %s", where, why);
    return code;
}

/* "worker w1" / "coordinator": the section as its header names it. */
static const char *cfg_rec_label(const cfg_rec_t *r, char *buf, size_t len)
{
    if (r->sec->named)
        snprintf(buf, len, "%s %s", r->sec->kind, r->name);
    else
        snprintf(buf, len, "%s", r->sec->kind);
    return buf;
}

/* ---- values ---------------------------------------------------------------------------- */

int bq_name_valid(const char *s)
{
    if (!s || !*s || s[0] == '.' || s[0] == '-')
        return 0;
    size_t n = 0;
    for (; s[n]; n++) {
        char ch = s[n];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '.' || ch == '-'))
            return 0;
    }
    return n < BQ_NAME_MAX;
}

static bool cfg_host_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '.' || ch == '-' || ch == '_';
}

/* tcp://HOST:PORT with HOST a name, an IPv4 address, [IPv6] or '*', PORT 1..65535. */
static int cfg_endpoint_check(const char *v, char *why, size_t len)
{
    if (strncmp(v, "tcp://", 6) != 0)
        goto form;
    const char *host = v + 6, *colon;
    if (*host == '[') {
        const char *rb = strchr(host, ']');
        if (!rb || rb == host + 1 || rb[1] != ':')
            goto form;
        for (const char *p = host + 1; p < rb; p++)
            if (!cfg_host_char(*p) && *p != ':' && *p != '%')
                goto form;
        colon = rb + 1;
    } else {
        colon = strrchr(host, ':');
        if (!colon || colon == host)
            goto form;
        if (!(colon == host + 1 && host[0] == '*'))
            for (const char *p = host; p < colon; p++)
                if (!cfg_host_char(*p))
                    goto form;
    }
    const char *port = colon + 1;
    size_t digits = strspn(port, "0123456789");
    if (digits == 0 || port[digits] != '\0')
        goto form;
    if (digits > 5 || atoi(port) < 1 || atoi(port) > 65535) {
        snprintf(why, len, "port %s of \"%s\" is out of range (1..65535)", port, v);
        return BQ_E_CONFIG;
    }
    return 0;
form:
    snprintf(why, len, "\"%s\" is not an endpoint of the form tcp://HOST:PORT", v);
    return BQ_E_CONFIG;
}

/* Bytes, or a number with a binary unit. Too large saturates (then fails the range check). */
static int cfg_size_parse(const char *s, uint64_t *out)
{
    static const struct {
        const char *suffix;
        int shift;
    } units[] = {{"", 0}, {"B", 0}, {"KiB", 10}, {"MiB", 20}, {"GiB", 30}, {"TiB", 40}};
    if (!isdigit((unsigned char)s[0]))
        return BQ_E_INVAL;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    bool overflow = errno == ERANGE;
    for (size_t i = 0; i < NKEYS(units); i++) {
        if (strcmp(end, units[i].suffix) == 0) {
            if (overflow || v > (UINT64_MAX >> units[i].shift))
                *out = UINT64_MAX;
            else
                *out = (uint64_t)v << units[i].shift;
            return 0;
        }
    }
    return BQ_E_INVAL;
}

static const char *cfg_duration_format(int64_t ms, char *buf, size_t len)
{
    static const struct {
        const char *unit;
        int64_t ms;
    } units[] = {{"d", MS_DAY}, {"h", MS_HOUR}, {"m", 60000}, {"s", 1000}};
    for (size_t i = 0; i < NKEYS(units); i++) {
        if (ms != 0 && ms % units[i].ms == 0) {
            snprintf(buf, len, "%lld%s", (long long)(ms / units[i].ms), units[i].unit);
            return buf;
        }
    }
    snprintf(buf, len, "%lldms", (long long)ms);
    return buf;
}

static const char *cfg_size_format(int64_t bytes, char *buf, size_t len)
{
    static const char *const units[] = {"TiB", "GiB", "MiB", "KiB"};
    for (int i = 0; i < 4; i++) {
        int shift = 40 - 10 * i;
        if (bytes != 0 && bytes % (1LL << shift) == 0) {
            snprintf(buf, len, "%lld%s", (long long)(bytes >> shift), units[i]);
            return buf;
        }
    }
    snprintf(buf, len, "%lld", (long long)bytes);
    return buf;
}

/* Copy a text value into a char[size] field. */
static int cfg_text_set(char *dst, size_t size, const char *v, char *why, size_t len)
{
    size_t n = strlen(v);
    if (n >= size) {
        snprintf(why, len, "value is longer than %zu characters", size - 1);
        return BQ_E_CONFIG;
    }
    memcpy(dst, v, n + 1);
    return 0;
}

/* Parse v as key k into the struct obj. Returns 0, or an error code with the reason in why
 * (for key files, the key loader's message and code). */
static int cfg_value_set(const cfg_ctx_t *c, const cfg_key_t *k, void *obj, const char *v,
                         char *why, size_t len)
{
    char *field = (char *)obj + k->off;
    char lo[32], hi[32];
    switch (k->type) {
    case CFG_STRING:
        if (k->check && k->check(v, why, len) != 0)
            return BQ_E_CONFIG;
        return cfg_text_set(field, k->size, v, why, len);
    case CFG_ENDPOINT: {
        int rc = cfg_endpoint_check(v, why, len);
        return rc ? rc : cfg_text_set(field, k->size, v, why, len);
    }
    case CFG_NAME:
        if (!bq_name_valid(v)) {
            snprintf(why, len,
                     "\"%s\" is not a valid name (use 1 to %d of A-Z a-z 0-9 _ . -, "
                     "not starting with . or -)",
                     v, BQ_NAME_MAX - 1);
            return BQ_E_CONFIG;
        }
        return cfg_text_set(field, k->size, v, why, len);
    case CFG_INT: {
        errno = 0;
        char *end;
        long long n = strtoll(v, &end, 10);
        if (end == v || *end != '\0' || isspace((unsigned char)v[0])) {
            snprintf(why, len, "\"%s\" is not an integer", v);
            return BQ_E_CONFIG;
        }
        if (errno == ERANGE || n < k->min || n > k->max) {
            snprintf(why, len, "%s is out of range (%lld..%lld)", v, (long long)k->min,
                     (long long)k->max);
            return BQ_E_CONFIG;
        }
        *(int *)(void *)field = (int)n;
        return 0;
    }
    case CFG_DURATION: {
        int64_t ms;
        if (bq_duration_parse(v, &ms) != 0) {
            snprintf(why, len, "\"%s\" is not a duration (use e.g. 250ms, 5s, 2m, 1h, 1d)", v);
            return BQ_E_CONFIG;
        }
        if (ms < k->min || ms > k->max) {
            snprintf(why, len, "%s is out of range (%s..%s)", v,
                     cfg_duration_format(k->min, lo, sizeof lo),
                     cfg_duration_format(k->max, hi, sizeof hi));
            return BQ_E_CONFIG;
        }
        *(int64_t *)(void *)field = ms;
        return 0;
    }
    case CFG_SIZE: {
        uint64_t bytes;
        if (cfg_size_parse(v, &bytes) != 0) {
            snprintf(why, len, "\"%s\" is not a size (use bytes or e.g. 64MiB, 2GiB)", v);
            return BQ_E_CONFIG;
        }
        if (bytes < (uint64_t)k->min || bytes > (uint64_t)k->max) {
            snprintf(why, len, "%s is out of range (%s..%s)", v,
                     cfg_size_format(k->min, lo, sizeof lo), cfg_size_format(k->max, hi, sizeof hi));
            return BQ_E_CONFIG;
        }
        *(uint64_t *)(void *)field = bytes;
        return 0;
    }
    case CFG_CHOICE: {
        size_t vl = strlen(v);
        int idx = 0;
        for (const char *p = k->choices; *p; idx++) {
            const char *bar = strchr(p, '|');
            size_t n = bar ? (size_t)(bar - p) : strlen(p);
            if (n == vl && strncmp(p, v, n) == 0) {
                *(int *)(void *)field = idx;
                return 0;
            }
            p += n + (bar ? 1 : 0);
        }
        snprintf(why, len, "\"%s\" is not one of %s", v, k->choices);
        return BQ_E_CONFIG;
    }
    case CFG_BOOL: {
        static const char *const yes[] = {"on", "true", "yes", "1"}, *const no[] = {"off", "false", "no", "0"};
        for (size_t i = 0; i < 4; i++) {
            if (strcmp(v, yes[i]) == 0 || strcmp(v, no[i]) == 0) {
                *(int *)(void *)field = strcmp(v, yes[i]) == 0;
                return 0;
            }
        }
        snprintf(why, len, "\"%s\" is not on or off", v);
        return BQ_E_CONFIG;
    }
    case CFG_LOG_LEVEL:
        if (bq_log_level_parse(v, (bq_log_level_t *)(void *)field) != 0) {
            snprintf(why, len, "\"%s\" is not a log level (use debug, info, warning or error)", v);
            return BQ_E_CONFIG;
        }
        return 0;
    case CFG_PATH:
    case CFG_PUBLIC_KEY_FILE:
    case CFG_SECRET_KEY_FILE:
        break;
    }

    /* a path, relative to the config file's directory */
    int n = v[0] == '/' ? snprintf(field, k->size, "%s", v)
                        : snprintf(field, k->size, "%s%s%s", c->dir,
                                   c->dir[strlen(c->dir) - 1] == '/' ? "" : "/", v);
    if (n < 0 || (size_t)n >= k->size) {
        field[0] = '\0';
        snprintf(why, len, "path is longer than %zu characters", k->size - 1);
        return BQ_E_CONFIG;
    }
    bq_errbuf_t ke;
    int rc = 0;
    if (k->type == CFG_PUBLIC_KEY_FILE) {
        rc = bq_key_load_public(field, (char *)obj + k->key_off, &ke);
    } else if (k->type == CFG_SECRET_KEY_FILE) {
        bq_keypair_t *kp = (bq_keypair_t *)(void *)((char *)obj + k->key_off);
        rc = bq_key_load_secret(field, kp, &ke);
        if (rc)
            sodium_memzero(kp, sizeof *kp);
    }
    if (rc)
        snprintf(why, len, "%s", ke.msg);
    return rc;
}

/* ---- sections -------------------------------------------------------------------------- */

/* The section being read ends: its required keys must have been given. */
static int cfg_section_close(cfg_ctx_t *c)
{
    if (!c->obj)
        return 0;
    const cfg_rec_t *r = &c->recs[c->nrecs - 1];
    const void *obj = c->obj;
    c->obj = NULL;
    for (size_t i = 0; i < r->sec->nkeys; i++) {
        if (r->sec->keys[i].required && !r->key_line[i]) {
            char label[2 * BQ_NAME_MAX];
            return cfg_fail(c, BQ_E_CONFIG, r->line, cfg_rec_label(r, label, sizeof label),
                            r->sec->keys[i].key, "required key is missing");
        }
    }
    const char *key = NULL;
    char why[512];
    if (r->sec->close && r->sec->close(obj, &key, why, sizeof why) != 0) {
        int line = r->line;
        for (size_t i = 0; key && i < r->sec->nkeys; i++)
            if (strcmp(r->sec->keys[i].key, key) == 0 && r->key_line[i])
                line = r->key_line[i];
        char label[2 * BQ_NAME_MAX];
        return cfg_fail(c, BQ_E_CONFIG, line, cfg_rec_label(r, label, sizeof label), key, "%s", why);
    }
    return 0;
}

/* "[coordinator], [site NAME] or [worker NAME]" */
static void cfg_sections_list(const cfg_schema_t *s, char *buf, size_t len)
{
    size_t n = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < s->nsections && n < len; i++) {
        const char *sep = i == 0 ? "" : (i + 1 == s->nsections ? " or " : ", ");
        int w = snprintf(buf + n, len - n, "%s[%s%s]", sep, s->sections[i].kind,
                         s->sections[i].named ? " NAME" : "");
        n += w < 0 ? 0 : (size_t)w;
    }
}

/* A header line "[kind]" or "[kind NAME]" (text is what lies between the brackets). */
static int cfg_section_open(cfg_ctx_t *c, const char *text)
{
    int rc = cfg_section_close(c);
    if (rc)
        return rc;

    char label[CFG_LINE_BUF];
    while (isspace((unsigned char)*text))
        text++;
    size_t n = strlen(text);
    while (n > 0 && isspace((unsigned char)text[n - 1]))
        n--;
    if (n == 0)
        return cfg_fail(c, BQ_E_CONFIG, c->lineno, NULL, NULL, "syntax error: empty section header");
    memcpy(label, text, n);
    label[n] = '\0';

    size_t kind_len = 0;
    while (kind_len < n && !isspace((unsigned char)label[kind_len]))
        kind_len++;
    const char *name = label + kind_len;
    while (isspace((unsigned char)*name))
        name++;

    const cfg_section_t *sec = NULL;
    for (size_t i = 0; i < c->schema->nsections; i++) {
        const cfg_section_t *s = &c->schema->sections[i];
        if (strlen(s->kind) == kind_len && strncmp(s->kind, label, kind_len) == 0)
            sec = s;
    }
    if (!sec) {
        char list[512];
        cfg_sections_list(c->schema, list, sizeof list);
        return cfg_fail(c, BQ_E_CONFIG, c->lineno, label, NULL, "unknown section (expected %s)",
                        list);
    }
    if (sec->named && !*name)
        return cfg_fail(c, BQ_E_CONFIG, c->lineno, label, NULL,
                        "section needs a name: [%s NAME]", sec->kind);
    if (!sec->named && *name)
        return cfg_fail(c, BQ_E_CONFIG, c->lineno, label, NULL,
                        "section takes no name: [%s]", sec->kind);
    if (sec->named && !bq_name_valid(name))
        return cfg_fail(c, BQ_E_CONFIG, c->lineno, label, NULL,
                        "\"%s\" is not a valid name (use 1 to %d of A-Z a-z 0-9 _ . -, "
                        "not starting with . or -)",
                        name, BQ_NAME_MAX - 1);
    cfg_sec_key_t sk = {sec, name};
    uint64_t sh = cfg_hash(cfg_hash(0xcbf29ce484222325ULL, &sec, sizeof sec), name, strlen(name));
    long dup = cfg_idx_find(&c->sections, sh, c->recs, cfg_rec_is_section, &sk);
    if (dup >= 0)
        return cfg_fail(c, BQ_E_CONFIG, c->lineno, label, NULL,
                        "duplicate section (first at line %d)", c->recs[dup].line);
    if (c->nrecs >= CFG_SECTIONS_MAX)
        return cfg_fail(c, BQ_E_CONFIG, c->lineno, label, NULL,
                        "too many sections (at most %d)", CFG_SECTIONS_MAX);

    if (c->nrecs == c->caprecs) {
        size_t cap = c->caprecs ? 2 * c->caprecs : 8;
        cfg_rec_t *recs = realloc(c->recs, cap * sizeof *recs);
        if (!recs)
            return cfg_fail(c, BQ_E_NOMEM, c->lineno, label, NULL, "out of memory");
        c->recs = recs;
        c->caprecs = cap;
    }
    void *obj = sec->add ? sec->add(c->cfg) : c->cfg;
    if (!obj)
        return cfg_fail(c, BQ_E_NOMEM, c->lineno, label, NULL, "out of memory");
    if (cfg_idx_add(&c->sections, sh, c->nrecs) != 0)
        return cfg_fail(c, BQ_E_NOMEM, c->lineno, label, NULL, "out of memory");
    cfg_rec_t *r = &c->recs[c->nrecs++];
    memset(r, 0, sizeof *r);
    r->sec = sec;
    r->line = c->lineno;
    r->ref_key = -1;
    r->unique_key = -1;
    if (sec->named) {
        snprintf(r->name, sizeof r->name, "%s", name);
        snprintf((char *)obj + sec->name_off, BQ_NAME_MAX, "%s", name);
    }
    for (size_t i = 0; i < sec->nkeys; i++) {
        const cfg_key_t *k = &sec->keys[i];
        char why[BQ_ERRMSG_MAX];
        if (k->def && (rc = cfg_value_set(c, k, obj, k->def, why, sizeof why)) != 0)
            return cfg_fail(c, rc, c->lineno, label, k->key, "bad default: %s", why);
    }
    c->obj = obj;
    return 0;
}

/* ---- inih callbacks -------------------------------------------------------------------- */

/* inih's find_chars_or_comment(): the first of chars, or the start of an inline comment
 * (';' after whitespace), or the end of s. */
static const char *cfg_find(const char *s, const char *chars)
{
    bool was_space = false;
    while (*s && !strchr(chars, *s) && !(was_space && *s == ';')) {
        was_space = isspace((unsigned char)*s) != 0;
        s++;
    }
    return s;
}

/* Look at a line before inih parses it: open sections, catch what inih would refuse. */
static int cfg_line_check(cfg_ctx_t *c, const char *line)
{
    const unsigned char *u = (const unsigned char *)line;
    if (c->lineno == 1 && u[0] == 0xEF && u[1] == 0xBB && u[2] == 0xBF)
        line += 3;
    while (isspace((unsigned char)*line))
        line++;
    if (*line == '\0' || *line == ';' || *line == '#')
        return 0;
    if (*line == '[') {
        const char *end = cfg_find(line + 1, "]");
        if (*end != ']')
            return cfg_fail(c, BQ_E_CONFIG, c->lineno, NULL, NULL,
                            "syntax error: section header has no closing ']'");
        const char *rest = end + 1;
        while (isspace((unsigned char)*rest))
            rest++;
        if (*rest && *rest != ';' && *rest != '#')
            return cfg_fail(c, BQ_E_CONFIG, c->lineno, NULL, NULL,
                            "syntax error: unexpected text after ']'");
        char text[CFG_LINE_BUF];
        size_t n = (size_t)(end - (line + 1));
        memcpy(text, line + 1, n);
        text[n] = '\0';
        return cfg_section_open(c, text);
    }
    const char *eq = cfg_find(line, "=:");
    if (*eq != '=' && *eq != ':')
        return cfg_fail(c, BQ_E_CONFIG, c->lineno, NULL, NULL,
                        "syntax error: expected \"key = value\", \"[section]\" or a comment");
    return 0;
}

/* fgets() for inih that counts lines. A line inih would have to split is an error. */
static char *cfg_reader(char *str, int num, void *stream)
{
    cfg_ctx_t *c = stream;
    if (c->rc || num < 2)
        return NULL;
    int n = 0, ch = 0;
    while (n < num - 1 && (ch = getc(c->f)) != EOF) {
        if (ch == '\0') {
            cfg_fail(c, BQ_E_CONFIG, c->lineno + 1, NULL, NULL,
                     "syntax error: line contains a NUL byte");
            return NULL;
        }
        str[n++] = (char)ch;
        if (ch == '\n')
            break;
    }
    if (ferror(c->f)) {
        cfg_fail(c, BQ_E_IO, 0, NULL, NULL, "could not read config file: %s", strerror(errno));
        return NULL;
    }
    if (n == 0)
        return NULL;
    str[n] = '\0';
    c->lineno++;
    if (n == num - 1 && str[n - 1] != '\n') {
        cfg_fail(c, BQ_E_CONFIG, c->lineno, NULL, NULL,
                 "syntax error: line is longer than %d characters", num - 2);
        return NULL;
    }
    return cfg_line_check(c, str) ? NULL : str;
}

/* KEY@SITE = VALUE: the next override of KEY's array, its value parsed as KEY's. */
static int cfg_at_set(cfg_ctx_t *c, cfg_rec_t *r, const char *label, const char *name,
                      const char *at, const char *value)
{
    const cfg_key_t *k = NULL;
    size_t blen = (size_t)(at - name);
    for (size_t i = 0; i < r->sec->nkeys; i++)
        if (strlen(r->sec->keys[i].key) == blen && memcmp(r->sec->keys[i].key, name, blen) == 0)
            k = &r->sec->keys[i];
    if (!k || !k->at_n_off)
        return !cfg_fail(c, BQ_E_CONFIG, c->lineno, label, name,
                         "unknown key (KEY@SITE is known for retention_policy in [cluster] and "
                         "bandwidth_limit in [site])");
    const char *site = at + 1;
    if (!bq_name_valid(site))
        return !cfg_fail(c, BQ_E_CONFIG, c->lineno, label, name, "'%s' is not a site name", site);
    size_t *n = (size_t *)((char *)c->obj + k->at_n_off);
    bq_cfg_at_t *arr = (bq_cfg_at_t *)((char *)c->obj + k->at_off);
    for (size_t i = 0; i < *n; i++)
        if (strcmp(arr[i].site, site) == 0)
            return !cfg_fail(c, BQ_E_CONFIG, c->lineno, label, name,
                             "duplicate key (first at line %d)", arr[i].line);
    if (*n == BQ_CFG_AT_MAX)
        return !cfg_fail(c, BQ_E_CONFIG, c->lineno, label, name, "at most %d sites",
                         BQ_CFG_AT_MAX);
    if (!*value)
        return !cfg_fail(c, BQ_E_CONFIG, c->lineno, label, name, "value is empty");
    bq_cfg_at_t *a = &arr[*n];
    memset(a, 0, sizeof *a);
    cfg_key_t kk = *k;
    size_t base = k->at_off + *n * sizeof *a;
    kk.off = base + (k->type == CFG_SIZE ? offsetof(bq_cfg_at_t, size) : offsetof(bq_cfg_at_t, text));
    kk.size = sizeof a->text;
    char why[BQ_ERRMSG_MAX];
    int rc = cfg_value_set(c, &kk, c->obj, value, why, sizeof why);
    if (rc)
        return !cfg_fail(c, rc, c->lineno, label, name, "%s", why);
    snprintf(a->site, sizeof a->site, "%s", site);
    a->line = c->lineno;
    (*n)++;
    return 1;
}

static int cfg_handler(void *user, const char *section, const char *name, const char *value)
{
    cfg_ctx_t *c = user;
    (void)section; /* cfg_reader() saw the header and opened the section */
    if (c->rc)
        return 0;
    if (!*name)
        return !cfg_fail(c, BQ_E_CONFIG, c->lineno, NULL, NULL, "syntax error: key name is empty");
    if (!c->obj)
        return !cfg_fail(c, BQ_E_CONFIG, c->lineno, NULL, name,
                         "key is outside of any [section]");

    cfg_rec_t *r = &c->recs[c->nrecs - 1];
    char label[2 * BQ_NAME_MAX];
    cfg_rec_label(r, label, sizeof label);
    const char *at = strchr(name, '@');
    if (at)
        return cfg_at_set(c, r, label, name, at, value);
    const cfg_key_t *k = NULL;
    size_t i;
    for (i = 0; i < r->sec->nkeys; i++) {
        if (strcmp(r->sec->keys[i].key, name) == 0) {
            k = &r->sec->keys[i];
            break;
        }
    }
    if (!k) {
        if (r->sec->nkeys == 0)
            return !cfg_fail(c, BQ_E_CONFIG, c->lineno, label, name,
                             "unknown key ([%s%s] takes no keys)", r->sec->kind,
                             r->sec->named ? " NAME" : "");
        char known[512];
        size_t n = 0;
        for (size_t j = 0; j < r->sec->nkeys && n < sizeof known; j++) {
            int w = snprintf(known + n, sizeof known - n, "%s%s", j ? ", " : "", r->sec->keys[j].key);
            n += w < 0 ? 0 : (size_t)w;
        }
        return !cfg_fail(c, BQ_E_CONFIG, c->lineno, label, name, "unknown key (known keys: %s)",
                         known);
    }
    if (r->key_line[i])
        return !cfg_fail(c, BQ_E_CONFIG, c->lineno, label, name, "duplicate key (first at line %d)",
                         r->key_line[i]);
    r->key_line[i] = c->lineno;
    if (!*value)
        return !cfg_fail(c, BQ_E_CONFIG, c->lineno, label, name, "value is empty");

    char why[BQ_ERRMSG_MAX];
    int rc = cfg_value_set(c, k, c->obj, value, why, sizeof why);
    if (rc)
        return !cfg_fail(c, rc, c->lineno, label, name, "%s", why);

    if (k->ref) {
        r->ref_key = (int)i;
        snprintf(r->ref, sizeof r->ref, "%s", value);
    }
    if (k->unique) {
        const char *pk = (const char *)c->obj + k->key_off;
        uint64_t kh = cfg_hash(0xcbf29ce484222325ULL, pk, strlen(pk));
        long j = cfg_idx_find(&c->keys, kh, c->recs, cfg_rec_has_key, pk);
        if (j >= 0) {
            const cfg_rec_t *o = &c->recs[j];
            char other[2 * BQ_NAME_MAX];
            return !cfg_fail(c, BQ_E_CONFIG, c->lineno, label, name,
                             "same public key as [%s] (line %d): each needs its own key pair",
                             cfg_rec_label(o, other, sizeof other), o->key_line[o->unique_key]);
        }
        r->unique_key = (int)i;
        snprintf(r->public_key, sizeof r->public_key, "%s", pk);
        if (cfg_idx_add(&c->keys, kh, c->nrecs - 1) != 0)
            return !cfg_fail(c, BQ_E_NOMEM, c->lineno, label, name, "out of memory");
    }
    return 1;
}

/* ---- loading --------------------------------------------------------------------------- */

/* Checks over the whole file: required sections, then references between sections. */
static int cfg_file_check(cfg_ctx_t *c)
{
    for (size_t i = 0; i < c->schema->nsections; i++) {
        const cfg_section_t *s = &c->schema->sections[i];
        size_t j = 0;
        while (j < c->nrecs && c->recs[j].sec != s)
            j++;
        if (s->required && j == c->nrecs)
            return cfg_fail(c, BQ_E_CONFIG, 0, s->kind, NULL, "required section is missing");
    }
    for (size_t i = 0; i < c->nrecs; i++) {
        const cfg_rec_t *r = &c->recs[i];
        if (r->ref_key < 0)
            continue;
        const cfg_key_t *k = &r->sec->keys[r->ref_key];
        const cfg_section_t *target = NULL;
        for (size_t t = 0; t < c->schema->nsections; t++)
            if (strcmp(c->schema->sections[t].kind, k->ref) == 0)
                target = &c->schema->sections[t];
        cfg_sec_key_t sk = {target, r->ref};
        uint64_t sh = cfg_hash(cfg_hash(0xcbf29ce484222325ULL, &target, sizeof target), r->ref,
                               strlen(r->ref));
        if (!target || cfg_idx_find(&c->sections, sh, c->recs, cfg_rec_is_section, &sk) < 0) {
            char label[2 * BQ_NAME_MAX];
            return cfg_fail(c, BQ_E_CONFIG, r->key_line[r->ref_key],
                            cfg_rec_label(r, label, sizeof label), k->key, "no [%s %s] section",
                            k->ref, r->ref);
        }
    }
    return 0;
}

/* The absolute directory holding path ("." when it cannot be resolved). */
static void cfg_dir_of(const char *path, char *dir, size_t len)
{
    char *real = realpath(path, NULL);
    const char *p = real ? real : path;
    const char *slash = strrchr(p, '/');
    if (!slash)
        snprintf(dir, len, ".");
    else if (slash == p)
        snprintf(dir, len, "/");
    else
        snprintf(dir, len, "%.*s", (int)(slash - p), p);
    free(real);
}

static int cfg_load(const cfg_schema_t *schema, const char *path, void *cfg, bq_errbuf_t *e)
{
    memset(cfg, 0, schema->size);
    if (!path || !*path)
        return bq_fail(e, BQ_E_INVAL, "could not load config: no file given");
    size_t plen = strlen(path);
    if (plen >= PATH_MAX)
        return bq_fail(e, BQ_E_INVAL, "could not load config: file name is too long");
    memcpy((char *)cfg + schema->path_off, path, plen + 1);

    cfg_ctx_t c;
    memset(&c, 0, sizeof c);
    c.schema = schema;
    c.cfg = cfg;
    c.path = path;
    c.e = e;
    c.f = fopen(path, "r");
    if (!c.f) {
        int err = errno;
        memset(cfg, 0, schema->size);
        return bq_fail(e, err == ENOENT ? BQ_E_NOTFOUND : err == EACCES ? BQ_E_PERM : BQ_E_IO,
                       "could not open config file %s: %s", path, strerror(err));
    }
    cfg_dir_of(path, c.dir, sizeof c.dir);

    /* what cfg_reader() and cfg_line_check() expect of inih */
    ini_allow_multiline = false;
    ini_allow_bom = true;
    ini_allow_inline_comments = true;
    ini_inline_comment_prefixes = (char *)";";
    ini_start_comment_prefixes = (char *)";#";
    ini_allow_no_value = false;
    ini_stop_on_first_error = true;
    ini_use_stack = false;
    ini_allow_realloc = false;
    ini_initial_alloc = CFG_LINE_BUF;
    ini_max_line = CFG_LINE_BUF;

    int rc = ini_parse_stream(cfg_reader, &c, cfg_handler, &c);
    fclose(c.f);
    if (rc == -2)
        cfg_fail(&c, BQ_E_NOMEM, 0, NULL, NULL, "out of memory");
    else if (rc > 0)
        cfg_fail(&c, BQ_E_CONFIG, rc, NULL, NULL, "syntax error");
    else if (rc < 0)
        cfg_fail(&c, BQ_E_IO, 0, NULL, NULL, "could not read config file");
    if (!c.rc)
        cfg_section_close(&c);
    if (!c.rc)
        cfg_file_check(&c);
    free(c.recs);
    free(c.sections.slots);
    free(c.keys.slots);
    if (c.rc) {
        if (schema->release)
            schema->release(cfg);
        sodium_memzero(cfg, schema->size);
    }
    return c.rc;
}

static int coord_has_site(const coord_t *cfg, const char *site)
{
    for (size_t i = 0; i < cfg->nsites; i++)
        if (strcmp(cfg->sites[i].name, site) == 0)
            return 1;
    return 0;
}

/* The sites that replicate_to and KEY@SITE name must be [site] sections of the file, and a
 * cluster does not copy to its own site. */
static int coord_sites_check(const coord_t *cfg, bq_errbuf_t *e)
{
    for (size_t i = 0; i < cfg->nclusters; i++) {
        const bq_cfg_cluster_t *cl = &cfg->clusters[i];
        char list[sizeof cl->replicate_to];
        snprintf(list, sizeof list, "%s", cl->replicate_to);
        char *save = NULL;
        for (char *t = strtok_r(list, ", \t", &save); t; t = strtok_r(NULL, ", \t", &save)) {
            if (!coord_has_site(cfg, t))
                return bq_fail(e, BQ_E_CONFIG, "%s: [cluster %s] replicate_to: no [site %s] in "
                               "the file", cfg->path, cl->name, t);
            if (strcmp(t, cl->site) == 0)
                return bq_fail(e, BQ_E_CONFIG, "%s: [cluster %s] replicate_to: %s is the "
                               "cluster's own site", cfg->path, cl->name, t);
        }
        for (size_t j = 0; j < cl->nretention_at; j++)
            if (!coord_has_site(cfg, cl->retention_at[j].site))
                return bq_fail(e, BQ_E_CONFIG, "%s:%d: [cluster %s] retention_policy@%s: no "
                               "[site %s] in the file", cfg->path, cl->retention_at[j].line,
                               cl->name, cl->retention_at[j].site, cl->retention_at[j].site);
    }
    for (size_t i = 0; i < cfg->nsites; i++)
        for (size_t j = 0; j < cfg->sites[i].nbandwidth_at; j++) {
            const bq_cfg_at_t *a = &cfg->sites[i].bandwidth_at[j];
            if (!coord_has_site(cfg, a->site))
                return bq_fail(e, BQ_E_CONFIG, "%s:%d: [site %s] bandwidth_limit@%s: no [site "
                               "%s] in the file", cfg->path, a->line, cfg->sites[i].name,
                               a->site, a->site);
        }
    return 0;
}

int bq_coord_config_load(const char *path, bq_coord_config_t *cfg, bq_errbuf_t *e)
{
    int rc = cfg_load(&coord_schema, path, cfg, e);
    if (rc == 0 && (rc = coord_sites_check(cfg, e)) != 0) {
        bq_coord_config_free(cfg);
        sodium_memzero(cfg, sizeof *cfg);
    }
    return rc;
}

const char *bq_cluster_retention_at(const bq_cfg_cluster_t *cl, const char *site)
{
    for (size_t i = 0; site && i < cl->nretention_at; i++)
        if (strcmp(cl->retention_at[i].site, site) == 0)
            return cl->retention_at[i].text;
    return cl->retention_policy;
}

int bq_cluster_replicates_to(const bq_cfg_cluster_t *cl, const char *site)
{
    size_t n = strlen(site);
    for (const char *p = cl->replicate_to; *p;) {
        p += strspn(p, ", \t");
        size_t w = strcspn(p, ", \t");
        if (w == n && memcmp(p, site, n) == 0)
            return 1;
        p += w;
    }
    return 0;
}

uint64_t bq_site_bandwidth(const bq_coord_config_t *cfg, const char *to, const char *from)
{
    for (size_t i = 0; i < cfg->nsites; i++) {
        const bq_cfg_site_t *s = &cfg->sites[i];
        if (strcmp(s->name, to) != 0)
            continue;
        for (size_t j = 0; j < s->nbandwidth_at; j++)
            if (strcmp(s->bandwidth_at[j].site, from) == 0)
                return s->bandwidth_at[j].size;
        return s->bandwidth_limit;
    }
    return 0;
}

int bq_worker_config_load(const char *path, bq_worker_config_t *cfg, bq_errbuf_t *e)
{
    return cfg_load(&worker_schema, path, cfg, e);
}

int bq_cli_config_load(const char *path, bq_cli_config_t *cfg, bq_errbuf_t *e)
{
    return cfg_load(&cli_schema, path, cfg, e);
}

void bq_coord_config_free(bq_coord_config_t *cfg)
{
    if (!cfg)
        return;
    free(cfg->sites);
    free(cfg->workers);
    free(cfg->operators);
    free(cfg->clusters);
    cfg->sites = NULL;
    cfg->workers = NULL;
    cfg->operators = NULL;
    cfg->clusters = NULL;
    cfg->nsites = cfg->nworkers = cfg->noperators = cfg->nclusters = 0;
}

const bq_cfg_cluster_t *bq_coord_config_cluster(const bq_coord_config_t *cfg, const char *name)
{
    for (size_t i = 0; cfg && name && i < cfg->nclusters; i++)
        if (strcmp(cfg->clusters[i].name, name) == 0)
            return &cfg->clusters[i];
    return NULL;
}

const bq_cfg_worker_ref_t *bq_coord_config_worker(const bq_coord_config_t *cfg, const char *name)
{
    for (size_t i = 0; cfg && name && i < cfg->nworkers; i++)
        if (strcmp(cfg->workers[i].name, name) == 0)
            return &cfg->workers[i];
    return NULL;
}

/* ---- finding the CLI's file ------------------------------------------------------------ */

static int cfg_found(const char *candidate, char *path, size_t len, bq_errbuf_t *e)
{
    if (strlen(candidate) >= len)
        return bq_fail(e, BQ_E_INVAL, "config file name %s is too long", candidate);
    memcpy(path, candidate, strlen(candidate) + 1);
    return 0;
}

static bool cfg_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

int bq_cli_config_find(const char *explicit_path, char *path, size_t len, bq_errbuf_t *e)
{
    static const char system_path[] = "/etc/barque/barque.conf";
    if (explicit_path && *explicit_path) {
        if (!cfg_exists(explicit_path))
            return bq_fail(e, BQ_E_NOTFOUND, "could not find config file %s (given with -c): %s",
                           explicit_path, strerror(errno));
        return cfg_found(explicit_path, path, len, e);
    }
    const char *env = getenv("BARQUE_CONFIG");
    if (env && *env) {
        if (!cfg_exists(env))
            return bq_fail(e, BQ_E_NOTFOUND,
                           "could not find config file %s (from $BARQUE_CONFIG): %s", env,
                           strerror(errno));
        return cfg_found(env, path, len, e);
    }
    const char *home = getenv("HOME");
    char user_path[PATH_MAX];
    if (home && *home) {
        int n = snprintf(user_path, sizeof user_path, "%s/.config/barque/barque.conf", home);
        if (n > 0 && (size_t)n < sizeof user_path && cfg_exists(user_path))
            return cfg_found(user_path, path, len, e);
    } else {
        snprintf(user_path, sizeof user_path, "~/.config/barque/barque.conf ($HOME is not set)");
    }
    if (cfg_exists(system_path))
        return cfg_found(system_path, path, len, e);
    return bq_fail(e, BQ_E_NOTFOUND,
                   "no config file found: looked at $BARQUE_CONFIG (not set), %s and %s; "
                   "give one with -c FILE",
                   user_path, system_path);
}
