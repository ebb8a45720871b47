/* INI configuration of the three programs (libinih), validated against a schema.
 * Unknown sections or keys, missing required keys and bad values are errors that
 * name the file, the line and the key:  "FILE:LINE: [section] key: reason".
 * Keys named *_key_file are read and checked at load time (a secret key file with
 * group/other permissions is refused). Config structs are plain values. */
#ifndef BQ_CONFIG_H
#define BQ_CONFIG_H

#include "err.h"
#include "keys.h"
#include "log.h"

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#define BQ_NAME_MAX 64       /* names of sites, workers, operators, clusters: [A-Za-z0-9_.-]{1,63} */
#define BQ_ENDPOINT_MAX 256  /* a ZeroMQ endpoint: tcp://HOST:PORT */
#define BQ_CONNINFO_MAX 1024
#define BQ_HOOK_MAX 512      /* a hook's command line */

/* A per-site override, KEY@SITE = VALUE (issue 8): retention_policy@west in [cluster],
 * bandwidth_limit@east in [site]. */
#define BQ_CFG_AT_MAX 8
typedef struct {
    char site[BQ_NAME_MAX];                   /* a [site] of the same file */
    char text[64];                            /* text values (retention_policy@SITE) */
    uint64_t size;                            /* size values (bandwidth_limit@SITE) */
    int line;                                 /* where it was set */
} bq_cfg_at_t;

typedef struct {
    char name[BQ_NAME_MAX];
    int max_concurrent_backups;               /* optional, 0 = no limit: backups running at once */
    uint64_t bandwidth_limit;                 /* bytes/s of copies into this site (0 = none) */
    bq_cfg_at_t bandwidth_at[BQ_CFG_AT_MAX];  /* bandwidth_limit@SOURCE: copies from SOURCE */
    size_t nbandwidth_at;
} bq_cfg_site_t;

typedef struct {
    char name[BQ_NAME_MAX];
    char site[BQ_NAME_MAX];                   /* required; must name a [site] */
    char public_key_file[PATH_MAX];           /* required */
    char public_key[BQ_Z85_KEY_LEN + 1];      /* read from public_key_file */
    int max_jobs;                             /* optional, default 4, 1..1024 */
    int max_concurrent_backups;               /* optional, 0 = no limit (max_jobs) */
} bq_cfg_worker_ref_t;

typedef struct {
    char name[BQ_NAME_MAX];
    char public_key_file[PATH_MAX];           /* required */
    char public_key[BQ_Z85_KEY_LEN + 1];
} bq_cfg_operator_t;

typedef struct {
    char name[BQ_NAME_MAX];
    char conninfo[BQ_CONNINFO_MAX];           /* required, libpq conninfo string or URI */
    char site[BQ_NAME_MAX];                   /* required; must name a [site] */
    int wal;                                  /* BQ_WAL_STREAM (default) or BQ_WAL_ARCHIVE */
    int synchronous;                          /* wal = stream: a synchronous standby */
    /* issue 6 (grammars in common/policy.h) */
    char backup_schedule[64];                 /* "" = none, "6h", "1d", "02:30", "02:30,14:30" */
    char backup_jitter[32];                   /* "" = default (10% of the period, <= 15 min) */
    int64_t backup_max_age_ms;                /* check: newest DONE backup older = CRITICAL;
                                                 0 = twice the schedule's period (none: off) */
    char retention_policy[64];                /* "" = none, "REDUNDANCY n", "RECOVERY WINDOW OF n DAYS" */
    int minimum_redundancy;                   /* default 0 */
    int retention;                            /* BQ_RETENTION_AUTO (default) or _REPORT */
    int64_t wal_max_age_ms;                   /* check: newest archived WAL older = WARNING; 0 = off */
    uint64_t wal_max_lag;                     /* check: the receiver further behind = CRITICAL; 0 = off */
    char pre_backup_script[BQ_HOOK_MAX];      /* hooks, run on the worker by /bin/sh -c */
    char post_backup_script[BQ_HOOK_MAX];
    char pre_recover_script[BQ_HOOK_MAX];
    char post_recover_script[BQ_HOOK_MAX];
    char post_wal_script[BQ_HOOK_MAX];
    int64_t hook_timeout_ms;                  /* per run, default 60s */
    int hook_retries;                         /* pre hooks: further runs, default 5 */
    int64_t hook_retry_sleep_ms;              /* default 10s */
    /* restore tests (issue 7) */
    char restore_test_schedule[64];           /* "" = none; backup_schedule's grammar */
    int64_t restore_test_max_age_ms;          /* check: last good test older = CRITICAL; 0 =
                                                 two periods of restore_test_schedule */
    int restore_test_amcheck;                 /* pg_amcheck every database */
    char restore_test_sql[PATH_MAX];          /* a file of SQL whose result must be true */
    int64_t restore_test_timeout_ms;          /* default 6h */
    /* geo copies (issue 8) */
    char replicate_to[256];                   /* "" = none; other sites, joined by ',' */
    bq_cfg_at_t retention_at[BQ_CFG_AT_MAX];  /* retention_policy@SITE: that site's policy */
    size_t nretention_at;
} bq_cfg_cluster_t;

#define BQ_REPLICA_SITES_MAX 4 /* sites in one cluster's replicate_to */

enum { BQ_RETENTION_AUTO = 0, BQ_RETENTION_REPORT = 1 }; /* [cluster] retention = auto | report */

enum { BQ_WAL_STREAM = 0, BQ_WAL_ARCHIVE = 1 }; /* [cluster] wal = stream | archive */

typedef struct {
    char path[PATH_MAX];                      /* the file this came from */
    bq_log_level_t log_level;                 /* [coordinator] log_level, default info */
    char listen[BQ_ENDPOINT_MAX];             /* required, tcp://HOST:PORT */
    char catalog[PATH_MAX];                   /* required, LMDB directory */
    char secret_key_file[PATH_MAX];           /* required */
    bq_keypair_t keys;                        /* read from secret_key_file */
    int64_t heartbeat_interval_ms;            /* optional, default 1s */
    int64_t worker_timeout_ms;                /* optional, default 10s: missed heartbeats -> offline */
    int64_t job_lease_ms;                     /* optional, default 30s */
    int job_max_attempts;                     /* optional, default 3 */
    int64_t job_retry_backoff_ms;             /* optional, default 5s (doubles per attempt) */
    uint64_t catalog_max_size;                /* optional, default 1 GiB ("64MiB", "2GiB", bytes) */
    int64_t retention_interval_ms;            /* optional, default 1m: how often retention runs */
    int64_t job_history_ms;                   /* optional, default 30d: a finished job's record is
                                                 removed from the catalog this long after it ended */
    int64_t wal_restart_interval_ms;          /* optional, default 30s: an ended wal-stream job
                                                 is replaced at most this often */
    int store_free_warning;                   /* check: percent free below which a store WARNs (10) */
    int store_free_critical;                  /* and is CRITICAL (5) */
    int64_t store_full_warning_ms;            /* WARN when the trend fills a store within (7d) */
    bq_cfg_site_t *sites;
    size_t nsites;
    bq_cfg_worker_ref_t *workers;
    size_t nworkers;
    bq_cfg_operator_t *operators;
    size_t noperators;
    bq_cfg_cluster_t *clusters;
    size_t nclusters;
} bq_coord_config_t;

typedef struct {
    char path[PATH_MAX];
    bq_log_level_t log_level;
    char name[BQ_NAME_MAX];                   /* required */
    char site[BQ_NAME_MAX];                   /* required */
    char coordinator[BQ_ENDPOINT_MAX];        /* required */
    char coordinator_public_key_file[PATH_MAX]; /* required */
    char coordinator_public_key[BQ_Z85_KEY_LEN + 1];
    char secret_key_file[PATH_MAX];           /* required */
    bq_keypair_t keys;
    char store[PATH_MAX];                     /* required, directory */
    char data_listen[BQ_ENDPOINT_MAX];        /* optional, tcp://HOST:PORT: the data port */
    char data_advertise[BQ_ENDPOINT_MAX];     /* optional: where peers reach it (default
                                                 data_listen, which then names one host) */
    char scratch[PATH_MAX];                   /* optional, directory */
    char store_key_file[PATH_MAX];            /* optional (used by the store, issue 3) */
    char cli_command[PATH_MAX];               /* optional, default "barque": how a server
                                                 restored here runs the CLI (restore_command) */
    char restore_test_user[BQ_NAME_MAX];      /* optional: the OS user a restore test's server
                                                 runs as (default: postgres as root, else the
                                                 worker's own user) */
    char pg_bindir[PATH_MAX];                 /* optional: PostgreSQL's binaries (default
                                                 /usr/lib/postgresql/MAJOR/bin, MAJOR the
                                                 backup's) */
    int max_jobs;                             /* optional, default 4 */
    int64_t heartbeat_interval_ms;            /* optional, default 1s */
    int64_t peer_timeout_ms;                  /* optional, default 30s: a peer's data port
                                                 silent this long is gone */
} bq_worker_config_t;

typedef struct {
    char path[PATH_MAX];
    char coordinator[BQ_ENDPOINT_MAX];        /* required */
    char coordinator_public_key_file[PATH_MAX]; /* required */
    char coordinator_public_key[BQ_Z85_KEY_LEN + 1];
    char secret_key_file[PATH_MAX];           /* required */
    bq_keypair_t keys;
    int64_t timeout_ms;                       /* optional, default 10s */
} bq_cli_config_t;

/* Load and validate. On failure returns BQ_E_CONFIG (or BQ_E_PERM/BQ_E_KEY/BQ_E_NOTFOUND
 * for key files) with e->msg like "/etc/barque/c.conf:12: [worker w1] site: no [site east]
 * section". Relative *_file / directory paths are resolved against the config file's directory.
 * Free with the matching _free (accepts NULL members; does not free cfg itself). */
int bq_coord_config_load(const char *path, bq_coord_config_t *cfg, bq_errbuf_t *e);
void bq_coord_config_free(bq_coord_config_t *cfg);
int bq_worker_config_load(const char *path, bq_worker_config_t *cfg, bq_errbuf_t *e);
int bq_cli_config_load(const char *path, bq_cli_config_t *cfg, bq_errbuf_t *e);

/* The CLI's config path: explicit (-c FILE) if given, else $BARQUE_CONFIG, else
 * ~/.config/barque/barque.conf, else /etc/barque/barque.conf (first that exists).
 * Returns 0 with path filled, or BQ_E_NOTFOUND naming every place looked at. */
int bq_cli_config_find(const char *explicit_path, char *path, size_t len, bq_errbuf_t *e);

/* Lookups in a loaded coordinator config; NULL when absent. */
const bq_cfg_cluster_t *bq_coord_config_cluster(const bq_coord_config_t *cfg, const char *name);
/* The cluster's retention policy at site: its retention_policy@SITE, else retention_policy. */
const char *bq_cluster_retention_at(const bq_cfg_cluster_t *cl, const char *site);
/* Whether site is in the cluster's replicate_to. */
int bq_cluster_replicates_to(const bq_cfg_cluster_t *cl, const char *site);
/* Bytes/s a copy from site `from` into site `to` may use: [site TO] bandwidth_limit@FROM,
 * else its bandwidth_limit; 0 = no limit. */
uint64_t bq_site_bandwidth(const bq_coord_config_t *cfg, const char *to, const char *from);
const bq_cfg_worker_ref_t *bq_coord_config_worker(const bq_coord_config_t *cfg, const char *name);

/* A valid name: 1..63 of [A-Za-z0-9_.-], not starting with '.' or '-'. */
int bq_name_valid(const char *s);

#endif
