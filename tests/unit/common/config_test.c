/* common/config: the three config kinds, their defaults, relative paths, the CLI's search
 * order, and a table of bad configs with the exact error each must produce. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "config.h"
#include "err.h"
#include "fsutil.h"
#include "keys.h"
#include "log.h"

#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[PATH_MAX]; /* realpath of the test's temp dir */

/* snprintf into an array, failing the test on truncation */
#define FMT(buf, ...) assert_true(snprintf((buf), sizeof(buf), __VA_ARGS__) < (int)sizeof(buf))
static bq_keypair_t kp_coord, kp_w1, kp_w2, kp_op, kp_cli;

/* ---- helpers --------------------------------------------------------------------------- */

static void keypair_make(const char *subdir, const char *name, bq_keypair_t *kp)
{
    char d[PATH_MAX];
    bq_errbuf_t e;
    FMT(d, "%s%s%s", dir, subdir ? "/" : "", subdir ? subdir : "");
    assert_int_equal(bq_keypair_generate(kp), 0);
    int rc = bq_keypair_write(d, name, kp, &e);
    if (rc)
        print_error("bq_keypair_write: %s\n", e.msg);
    assert_int_equal(rc, 0);
}

/* Write DIR/name with len bytes of text; the full path goes to path. */
static void file_write(const char *name, const char *text, size_t len, char *path)
{
    assert_true(snprintf(path, PATH_MAX, "%s/%s", dir, name) < PATH_MAX);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static void conf_write(const char *name, const char *text, char *path)
{
    file_write(name, text, strlen(text), path);
}

/* s with every "@D" replaced by the temp dir. */
static void expand_dir(const char *s, char *out, size_t len)
{
    size_t n = 0;
    while (*s && n + 1 < len) {
        if (s[0] == '@' && s[1] == 'D') {
            n += (size_t)snprintf(out + n, len - n, "%s", dir);
            s += 2;
        } else {
            out[n++] = *s++;
        }
    }
    out[n < len ? n : len - 1] = '\0';
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int group_setup(void **state)
{
    (void)state;
    char tmpl[] = "/tmp/bq_config_test.XXXXXX";
    if (!mkdtemp(tmpl) || !realpath(tmpl, dir))
        return -1;
    keypair_make(NULL, "coord", &kp_coord);
    keypair_make(NULL, "w1", &kp_w1);
    keypair_make(NULL, "w2", &kp_w2);
    keypair_make(NULL, "op", &kp_op);
    keypair_make(NULL, "cli", &kp_cli);
    bq_keypair_t loose;
    keypair_make(NULL, "loose", &loose);
    char path[PATH_MAX];
    FMT(path, "%s/loose.key", dir);
    if (chmod(path, 0644) != 0)
        return -1;
    conf_write("garbage.pub", "this is not a key\n", path);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    return nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- good configs ---------------------------------------------------------------------- */

static void test_coord_good(void **state)
{
    (void)state;
    char path[PATH_MAX], want[PATH_MAX];
    conf_write("coord_good.conf",
               "; barque coordinator\n"
               "[coordinator]\n"
               "listen = tcp://0.0.0.0:7400\n"
               "catalog = catalog\n"
               "secret_key_file = coord.key\n"
               "log_level = warning\n"
               "heartbeat_interval = 250ms\n"
               "worker_timeout = 5s\n"
               "job_lease = 1m\n"
               "job_max_attempts = 5\n"
               "job_retry_backoff = 10   ; seconds\n"
               "catalog_max_size = 64MiB\n"
               "\n"
               "# sites may be empty\n"
               "[site east]\n"
               "[site west]\r\n"
               "bandwidth_limit = 100MiB\n"
               "bandwidth_limit@east = 10MiB\n"
               "  [worker w1]\n"
               "  public_key_file = w1.pub\n"
               "  site = east\n"
               "  max_jobs = 2\n"
               "[worker w2]\n"
               "site: west\n"
               "public_key_file = w2.pub\n"
               "[operator alice]\n"
               "public_key_file = op.pub\n"
               "[cluster main]\n"
               "conninfo = host=db1 port=5432 dbname=postgres user=barque\n"
               "site = east\n"
               "replicate_to = west\n"
               "retention_policy = REDUNDANCY 3\n"
               "retention_policy@west = RECOVERY WINDOW OF 2 WEEKS\n"
               "[cluster pg.2]\n"
               "conninfo = postgresql://barque@db2:5432/postgres?sslmode=require\n"
               "site = west\n"
               "wal = archive\n"
               "synchronous = on\n",
               path);
    bq_coord_config_t cfg;
    bq_errbuf_t e = {{0}};
    int rc = bq_coord_config_load(path, &cfg, &e);
    if (rc)
        print_error("%s\n", e.msg);
    assert_int_equal(rc, 0);

    assert_string_equal(cfg.path, path);
    assert_string_equal(cfg.listen, "tcp://0.0.0.0:7400");
    FMT(want, "%s/catalog", dir);
    assert_string_equal(cfg.catalog, want);
    FMT(want, "%s/coord.key", dir);
    assert_string_equal(cfg.secret_key_file, want);
    assert_string_equal(cfg.keys.secret_z85, kp_coord.secret_z85);
    assert_string_equal(cfg.keys.public_z85, kp_coord.public_z85);
    assert_int_equal(cfg.log_level, BQ_LOG_WARNING);
    assert_int_equal(cfg.heartbeat_interval_ms, 250);
    assert_int_equal(cfg.worker_timeout_ms, 5000);
    assert_int_equal(cfg.job_lease_ms, 60000);
    assert_int_equal(cfg.job_max_attempts, 5);
    assert_int_equal(cfg.job_retry_backoff_ms, 10000);
    assert_int_equal(cfg.catalog_max_size, 64ULL << 20);

    assert_int_equal(cfg.nsites, 2);
    assert_string_equal(cfg.sites[0].name, "east");
    assert_string_equal(cfg.sites[1].name, "west");

    assert_int_equal(cfg.nworkers, 2);
    assert_string_equal(cfg.workers[0].name, "w1");
    assert_string_equal(cfg.workers[0].site, "east");
    assert_int_equal(cfg.workers[0].max_jobs, 2);
    FMT(want, "%s/w1.pub", dir);
    assert_string_equal(cfg.workers[0].public_key_file, want);
    assert_string_equal(cfg.workers[0].public_key, kp_w1.public_z85);
    assert_string_equal(cfg.workers[1].name, "w2");
    assert_string_equal(cfg.workers[1].site, "west");
    assert_int_equal(cfg.workers[1].max_jobs, 4);
    assert_string_equal(cfg.workers[1].public_key, kp_w2.public_z85);

    assert_int_equal(cfg.noperators, 1);
    assert_string_equal(cfg.operators[0].name, "alice");
    assert_string_equal(cfg.operators[0].public_key, kp_op.public_z85);

    assert_int_equal(cfg.nclusters, 2);
    assert_string_equal(cfg.clusters[0].name, "main");
    assert_string_equal(cfg.clusters[0].conninfo, "host=db1 port=5432 dbname=postgres user=barque");
    assert_string_equal(cfg.clusters[0].site, "east");
    assert_int_equal(cfg.clusters[0].wal, BQ_WAL_STREAM); /* the defaults */
    assert_int_equal(cfg.clusters[0].synchronous, 0);
    assert_int_equal(cfg.clusters[1].wal, BQ_WAL_ARCHIVE);
    assert_int_equal(cfg.clusters[1].synchronous, 1);
    assert_string_equal(cfg.clusters[1].name, "pg.2");
    assert_string_equal(cfg.clusters[1].conninfo,
                        "postgresql://barque@db2:5432/postgres?sslmode=require");

    assert_ptr_equal(bq_coord_config_cluster(&cfg, "pg.2"), &cfg.clusters[1]);
    assert_null(bq_coord_config_cluster(&cfg, "nope"));
    /* geo copies (issue 8) */
    assert_true(bq_cluster_replicates_to(&cfg.clusters[0], "west"));
    assert_false(bq_cluster_replicates_to(&cfg.clusters[0], "wes"));
    assert_false(bq_cluster_replicates_to(&cfg.clusters[1], "east"));
    assert_string_equal(bq_cluster_retention_at(&cfg.clusters[0], "west"), "RECOVERY WINDOW OF 2 WEEKS");
    assert_string_equal(bq_cluster_retention_at(&cfg.clusters[0], "east"), "REDUNDANCY 3");
    assert_int_equal(bq_site_bandwidth(&cfg, "west", "east"), 10u << 20);
    assert_int_equal(bq_site_bandwidth(&cfg, "west", "north"), 100u << 20);
    assert_int_equal(bq_site_bandwidth(&cfg, "east", "west"), 0);
    assert_ptr_equal(bq_coord_config_worker(&cfg, "w2"), &cfg.workers[1]);
    assert_null(bq_coord_config_worker(&cfg, "w3"));

    bq_coord_config_free(&cfg);
    assert_null(cfg.sites);
    assert_null(cfg.workers);
    assert_null(cfg.operators);
    assert_null(cfg.clusters);
    assert_int_equal(cfg.nsites + cfg.nworkers + cfg.noperators + cfg.nclusters, 0);
    bq_coord_config_free(&cfg); /* twice is harmless */
    bq_coord_config_free(NULL);
}

static void test_coord_defaults(void **state)
{
    (void)state;
    char path[PATH_MAX];
    conf_write("coord_min.conf",
               "[coordinator]\n"
               "listen = tcp://*:7400\n"
               "catalog = /var/lib/barque/catalog\n"
               "secret_key_file = coord.key\n",
               path);
    bq_coord_config_t cfg;
    bq_errbuf_t e = {{0}};
    int rc = bq_coord_config_load(path, &cfg, &e);
    if (rc)
        print_error("%s\n", e.msg);
    assert_int_equal(rc, 0);
    assert_string_equal(cfg.catalog, "/var/lib/barque/catalog"); /* absolute stays */
    assert_int_equal(cfg.log_level, BQ_LOG_INFO);
    assert_int_equal(cfg.heartbeat_interval_ms, 1000);
    assert_int_equal(cfg.worker_timeout_ms, 10000);
    assert_int_equal(cfg.job_lease_ms, 30000);
    assert_int_equal(cfg.job_max_attempts, 3);
    assert_int_equal(cfg.job_retry_backoff_ms, 5000);
    assert_int_equal(cfg.catalog_max_size, 1ULL << 30);
    assert_int_equal(cfg.nsites + cfg.nworkers + cfg.noperators + cfg.nclusters, 0);
    assert_null(cfg.sites);
    assert_null(cfg.workers);
    bq_coord_config_free(&cfg);
}

static void test_coord_many_sections(void **state)
{
    (void)state;
    /* arrays grow past several powers of two; every element stays intact */
    size_t cap = 64 * 1024, n = 0;
    char *text = malloc(cap);
    assert_non_null(text);
    n += (size_t)snprintf(text + n, cap - n,
                          "[coordinator]\nlisten = tcp://h:1\ncatalog = c\nsecret_key_file = coord.key\n");
    for (int i = 0; i < 100; i++)
        n += (size_t)snprintf(text + n, cap - n, "[site s%d]\n[cluster c%d]\nconninfo = dbname=d%d\nsite = s%d\n",
                              i, i, i, i);
    char path[PATH_MAX];
    file_write("coord_many.conf", text, n, path);
    free(text);
    bq_coord_config_t cfg;
    bq_errbuf_t e = {{0}};
    int rc = bq_coord_config_load(path, &cfg, &e);
    if (rc)
        print_error("%s\n", e.msg);
    assert_int_equal(rc, 0);
    assert_int_equal(cfg.nsites, 100);
    assert_int_equal(cfg.nclusters, 100);
    for (int i = 0; i < 100; i++) {
        char name[32], conninfo[32];
        FMT(name, "c%d", i);
        FMT(conninfo, "dbname=d%d", i);
        const bq_cfg_cluster_t *cl = bq_coord_config_cluster(&cfg, name);
        assert_non_null(cl);
        assert_string_equal(cl->conninfo, conninfo);
    }
    bq_coord_config_free(&cfg);
}

static void test_worker_good(void **state)
{
    (void)state;
    char path[PATH_MAX], want[PATH_MAX];
    conf_write("worker_good.conf",
               "[worker]\n"
               "name = w1\n"
               "site = east\n"
               "coordinator = tcp://coord.example.net:7400\n"
               "coordinator_public_key_file = coord.pub\n"
               "secret_key_file = w1.key\n"
               "store = /srv/barque/store\n"
               "data_listen = tcp://[::1]:7401\n"
               "scratch = scratch\n"
               "store_key_file = store.key\n"
               "log_level = debug\n"
               "max_jobs = 8\n"
               "heartbeat_interval = 500ms\n"
               "peer_timeout = 2m\n",
               path);
    bq_worker_config_t cfg;
    bq_errbuf_t e = {{0}};
    int rc = bq_worker_config_load(path, &cfg, &e);
    if (rc)
        print_error("%s\n", e.msg);
    assert_int_equal(rc, 0);
    assert_string_equal(cfg.path, path);
    assert_string_equal(cfg.name, "w1");
    assert_string_equal(cfg.site, "east");
    assert_string_equal(cfg.coordinator, "tcp://coord.example.net:7400");
    FMT(want, "%s/coord.pub", dir);
    assert_string_equal(cfg.coordinator_public_key_file, want);
    assert_string_equal(cfg.coordinator_public_key, kp_coord.public_z85);
    FMT(want, "%s/w1.key", dir);
    assert_string_equal(cfg.secret_key_file, want);
    assert_string_equal(cfg.keys.secret_z85, kp_w1.secret_z85);
    assert_string_equal(cfg.keys.public_z85, kp_w1.public_z85);
    assert_string_equal(cfg.store, "/srv/barque/store");
    assert_string_equal(cfg.data_listen, "tcp://[::1]:7401");
    FMT(want, "%s/scratch", dir);
    assert_string_equal(cfg.scratch, want);
    FMT(want, "%s/store.key", dir); /* path only: not read here */
    assert_string_equal(cfg.store_key_file, want);
    assert_int_equal(cfg.log_level, BQ_LOG_DEBUG);
    assert_int_equal(cfg.max_jobs, 8);
    assert_int_equal(cfg.heartbeat_interval_ms, 500);
    assert_int_equal(cfg.peer_timeout_ms, 120000);
}

static void test_worker_defaults(void **state)
{
    (void)state;
    char path[PATH_MAX], want[PATH_MAX];
    conf_write("worker_min.conf",
               "[worker]\n"
               "name = w2\n"
               "site = west\n"
               "coordinator = tcp://10.0.0.1:7400\n"
               "coordinator_public_key_file = coord.pub\n"
               "secret_key_file = w2.key\n"
               "store = store\n",
               path);
    bq_worker_config_t cfg;
    bq_errbuf_t e = {{0}};
    int rc = bq_worker_config_load(path, &cfg, &e);
    if (rc)
        print_error("%s\n", e.msg);
    assert_int_equal(rc, 0);
    FMT(want, "%s/store", dir);
    assert_string_equal(cfg.store, want);
    assert_string_equal(cfg.data_listen, "");
    assert_string_equal(cfg.scratch, "");
    assert_string_equal(cfg.store_key_file, "");
    assert_int_equal(cfg.log_level, BQ_LOG_INFO);
    assert_int_equal(cfg.max_jobs, 4);
    assert_int_equal(cfg.heartbeat_interval_ms, 1000);
    assert_int_equal(cfg.peer_timeout_ms, 30000);
    assert_string_equal(cfg.keys.public_z85, kp_w2.public_z85);
}

static void test_cli_good_and_defaults(void **state)
{
    (void)state;
    char path[PATH_MAX];
    conf_write("cli_good.conf",
               "[cli]\n"
               "coordinator = tcp://localhost:7400\n"
               "coordinator_public_key_file = coord.pub\n"
               "secret_key_file = cli.key\n"
               "timeout = 2m\n",
               path);
    bq_cli_config_t cfg;
    bq_errbuf_t e = {{0}};
    int rc = bq_cli_config_load(path, &cfg, &e);
    if (rc)
        print_error("%s\n", e.msg);
    assert_int_equal(rc, 0);
    assert_string_equal(cfg.path, path);
    assert_string_equal(cfg.coordinator, "tcp://localhost:7400");
    assert_string_equal(cfg.coordinator_public_key, kp_coord.public_z85);
    assert_string_equal(cfg.keys.secret_z85, kp_cli.secret_z85);
    assert_string_equal(cfg.keys.public_z85, kp_cli.public_z85);
    assert_int_equal(cfg.timeout_ms, 120000);

    conf_write("cli_min.conf",
               "[cli]\n"
               "coordinator = tcp://localhost:7400\n"
               "coordinator_public_key_file = coord.pub\n"
               "secret_key_file = cli.key\n",
               path);
    rc = bq_cli_config_load(path, &cfg, &e);
    if (rc)
        print_error("%s\n", e.msg);
    assert_int_equal(rc, 0);
    assert_int_equal(cfg.timeout_ms, 10000);
}

/* Relative paths resolve against the config file's directory, made absolute even when the
 * config file itself was named by a relative path. */
static void test_relative_paths(void **state)
{
    (void)state;
    char sub[PATH_MAX], path[PATH_MAX], want[PATH_MAX], cwd[PATH_MAX];
    bq_keypair_t kp_sub;
    keypair_make("etc/keys", "coord", &kp_sub);
    FMT(sub, "%s/etc", dir);
    char text[2 * PATH_MAX];
    snprintf(text, sizeof text,
             "[cli]\n"
             "coordinator = tcp://localhost:7400\n"
             "coordinator_public_key_file = keys/coord.pub\n"
             "secret_key_file = %s/cli.key\n",
             dir);
    conf_write("etc/barque.conf", text, path);

    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(dir), 0);
    bq_cli_config_t cfg;
    bq_errbuf_t e = {{0}};
    int rc = bq_cli_config_load("etc/barque.conf", &cfg, &e);
    assert_int_equal(chdir(cwd), 0);
    if (rc)
        print_error("%s\n", e.msg);
    assert_int_equal(rc, 0);
    assert_string_equal(cfg.path, "etc/barque.conf");
    FMT(want, "%s/keys/coord.pub", sub);
    assert_string_equal(cfg.coordinator_public_key_file, want);
    assert_string_equal(cfg.coordinator_public_key, kp_sub.public_z85);
    FMT(want, "%s/cli.key", dir);
    assert_string_equal(cfg.secret_key_file, want);
    assert_string_equal(cfg.keys.public_z85, kp_cli.public_z85);
}

/* ---- bad configs ----------------------------------------------------------------------- */

typedef enum { COORD, WORKER, CLI } conf_kind_t;

typedef struct {
    const char *what;
    conf_kind_t kind;
    const char *text;
    int code;
    const char *msg; /* what follows the config file's path; @D is the temp dir */
} bad_case_t;

#define COORD_HEAD                                                                          \
    "[coordinator]\n"                                                                       \
    "listen = tcp://127.0.0.1:7400\n"                                                       \
    "catalog = catalog\n"                                                                   \
    "secret_key_file = coord.key\n"
#define WORKER_W1 "[site east]\n[worker w1]\npublic_key_file = w1.pub\nsite = east\n"
#define GEO_CLUSTER "[site east]\n[site west]\n[cluster db1]\nconninfo = host=h\nsite = east\n"
#define NAME_RULE "(use 1 to 63 of A-Z a-z 0-9 _ . -, not starting with . or -)"

static const bad_case_t bad_cases[] = {
    {"unknown section", COORD, COORD_HEAD "[bogus x]\n", BQ_E_CONFIG,
     ":5: [bogus x]: unknown section (expected [coordinator], [site NAME], [worker NAME], "
     "[operator NAME] or [cluster NAME])"},
    {"unknown section in worker file", WORKER, "[coordinator]\n", BQ_E_CONFIG,
     ":1: [coordinator]: unknown section (expected [worker])"},
    {"unknown key", COORD, COORD_HEAD "lisen = tcp://h:1\n", BQ_E_CONFIG,
     ":5: [coordinator] lisen: unknown key (known keys: listen, catalog, secret_key_file, "
     "log_level, heartbeat_interval, worker_timeout, job_lease, job_max_attempts, "
     "job_retry_backoff, catalog_max_size, retention_interval, job_history, wal_restart_interval, "
     "store_free_warning, "
     "store_free_critical, store_full_warning)"},
    {"unknown key in cli file", CLI, "[cli]\ncoordinater = tcp://h:1\n", BQ_E_CONFIG,
     ":2: [cli] coordinater: unknown key (known keys: coordinator, coordinator_public_key_file, "
     "secret_key_file, timeout)"},
    {"key in [site]", COORD, COORD_HEAD "[site east]\nregion = eu\n", BQ_E_CONFIG,
     ":6: [site east] region: unknown key (known keys: max_concurrent_backups, bandwidth_limit)"},
    /* geo copies (issue 8) */
    {"replicate_to an unknown site", COORD, COORD_HEAD GEO_CLUSTER "replicate_to = north\n",
     BQ_E_CONFIG, ": [cluster db1] replicate_to: no [site north] in the file"},
    {"replicate_to its own site", COORD, COORD_HEAD GEO_CLUSTER "replicate_to = west, east\n",
     BQ_E_CONFIG, ": [cluster db1] replicate_to: east is the cluster's own site"},
    {"replicate_to grammar", COORD, COORD_HEAD GEO_CLUSTER "replicate_to = west,,east\n",
     BQ_E_CONFIG, ":10: [cluster db1] replicate_to: expected site names separated by commas, as "
     "replicate_to = west, north"},
    {"replicate_to twice the same site", COORD, COORD_HEAD GEO_CLUSTER "replicate_to = west, west\n",
     BQ_E_CONFIG, ":10: [cluster db1] replicate_to: site west is named twice"},
    {"retention_policy@ an unknown site", COORD,
     COORD_HEAD GEO_CLUSTER "retention_policy@north = REDUNDANCY 2\n", BQ_E_CONFIG,
     ":10: [cluster db1] retention_policy@north: no [site north] in the file"},
    {"retention_policy@SITE twice", COORD,
     COORD_HEAD GEO_CLUSTER "retention_policy@west = REDUNDANCY 2\nretention_policy@west = REDUNDANCY 3\n",
     BQ_E_CONFIG, ":11: [cluster db1] retention_policy@west: duplicate key (first at line 10)"},
    {"KEY@SITE of a key without overrides", COORD, COORD_HEAD GEO_CLUSTER "conninfo@west = x\n",
     BQ_E_CONFIG, ":10: [cluster db1] conninfo@west: unknown key (KEY@SITE is known for "
     "retention_policy in [cluster] and bandwidth_limit in [site])"},
    {"KEY@ not a site name", COORD, COORD_HEAD GEO_CLUSTER "retention_policy@-x = REDUNDANCY 1\n",
     BQ_E_CONFIG, ":10: [cluster db1] retention_policy@-x: '-x' is not a site name"},
    {"bandwidth_limit@ an unknown site", COORD,
     COORD_HEAD "[site east]\nbandwidth_limit@north = 10MiB\n", BQ_E_CONFIG,
     ":6: [site east] bandwidth_limit@north: no [site north] in the file"},
    {"missing required key", COORD, COORD_HEAD "[site east]\n[worker w1]\nsite = east\n",
     BQ_E_CONFIG, ":6: [worker w1] public_key_file: required key is missing"},
    {"missing required key, not last section", COORD,
     "[coordinator]\nlisten = tcp://h:1\nsecret_key_file = coord.key\n[site east]\n", BQ_E_CONFIG,
     ":1: [coordinator] catalog: required key is missing"},
    {"missing required key in worker file", WORKER,
     "[worker]\nsite = east\ncoordinator = tcp://h:1\n", BQ_E_CONFIG,
     ":1: [worker] name: required key is missing"},
    {"missing required section", COORD, "[site east]\n", BQ_E_CONFIG,
     ": [coordinator]: required section is missing"},
    {"missing required section in cli file", CLI, "; nothing\n", BQ_E_CONFIG,
     ": [cli]: required section is missing"},
    {"bad int", COORD, COORD_HEAD "job_max_attempts = many\n", BQ_E_CONFIG,
     ":5: [coordinator] job_max_attempts: \"many\" is not an integer"},
    {"int with trailing text", COORD, COORD_HEAD "job_max_attempts = 3x\n", BQ_E_CONFIG,
     ":5: [coordinator] job_max_attempts: \"3x\" is not an integer"},
    {"out-of-range int", COORD, COORD_HEAD WORKER_W1 "max_jobs = 0\n", BQ_E_CONFIG,
     ":9: [worker w1] max_jobs: 0 is out of range (1..1024)"},
    {"huge int", COORD, COORD_HEAD "job_max_attempts = 99999999999999999999\n", BQ_E_CONFIG,
     ":5: [coordinator] job_max_attempts: 99999999999999999999 is out of range (1..100)"},
    {"bad duration", COORD, COORD_HEAD "heartbeat_interval = fast\n", BQ_E_CONFIG,
     ":5: [coordinator] heartbeat_interval: \"fast\" is not a duration "
     "(use e.g. 250ms, 5s, 2m, 1h, 1d)"},
    {"out-of-range duration", COORD, COORD_HEAD "heartbeat_interval = 2h\n", BQ_E_CONFIG,
     ":5: [coordinator] heartbeat_interval: 2h is out of range (1ms..1h)"},
    {"zero cli timeout", CLI, "[cli]\ntimeout = 0\n", BQ_E_CONFIG,
     ":2: [cli] timeout: 0 is out of range (1ms..1d)"},
    {"bad size", COORD, COORD_HEAD "catalog_max_size = 1GB\n", BQ_E_CONFIG,
     ":5: [coordinator] catalog_max_size: \"1GB\" is not a size (use bytes or e.g. 64MiB, 2GiB)"},
    {"out-of-range size", COORD, COORD_HEAD "catalog_max_size = 1KiB\n", BQ_E_CONFIG,
     ":5: [coordinator] catalog_max_size: 1KiB is out of range (1MiB..64TiB)"},
    {"bad wal", COORD, COORD_HEAD "[site east]\n[cluster c]\nsite = east\nconninfo = x=1\nwal = both\n",
     BQ_E_CONFIG, ":9: [cluster c] wal: \"both\" is not one of stream|archive"},
    {"bad synchronous", COORD, COORD_HEAD "[site east]\n[cluster c]\nsite = east\nconninfo = x=1\n"
     "synchronous = maybe\n", BQ_E_CONFIG, ":9: [cluster c] synchronous: \"maybe\" is not on or off"},
#define CLUSTER_C COORD_HEAD "[site east]\n[cluster c]\nsite = east\nconninfo = x=1\n"
    {"bad retention_policy", COORD, CLUSTER_C "retention_policy = KEEP 3\n", BQ_E_CONFIG,
     ":9: [cluster c] retention_policy: expected REDUNDANCY n or RECOVERY WINDOW OF n DAYS|WEEKS|MONTHS"},
    {"retention_policy of 0", COORD, CLUSTER_C "retention_policy = REDUNDANCY 0\n", BQ_E_CONFIG,
     ":9: [cluster c] retention_policy: n must be at least 1"},
    {"bad retention", COORD, CLUSTER_C "retention = sometimes\n", BQ_E_CONFIG,
     ":9: [cluster c] retention: \"sometimes\" is not one of auto|report"},
    {"bad backup_schedule", COORD, CLUSTER_C "backup_schedule = 24:00\n", BQ_E_CONFIG,
     ":9: [cluster c] backup_schedule: \"24:00\" is not a time of day (HH:MM from 00:00 to 23:59, UTC)"},
    {"backup_jitter longer than the period", COORD, CLUSTER_C "backup_schedule = 1h\nbackup_jitter = 2h\n",
     BQ_E_CONFIG, ":10: [cluster c] backup_jitter: \"2h\" is not shorter than the interval (1h)"},
    {"bad max_concurrent_backups", COORD, COORD_HEAD "[site east]\nmax_concurrent_backups = -1\n",
     BQ_E_CONFIG, ":6: [site east] max_concurrent_backups: -1 is out of range (0..100000)"},
    {"bad restore_test_schedule", COORD, CLUSTER_C "restore_test_schedule = 5s\n", BQ_E_CONFIG,
     ":9: [cluster c] restore_test_schedule: \"5s\" is shorter than 10s"},
    {"restore_test_timeout too short", COORD, CLUSTER_C "restore_test_timeout = 30s\n", BQ_E_CONFIG,
     ":9: [cluster c] restore_test_timeout: 30s is out of range (1m..7d)"},
    {"bad restore_test_amcheck", COORD, CLUSTER_C "restore_test_amcheck = maybe\n", BQ_E_CONFIG,
     ":9: [cluster c] restore_test_amcheck: \"maybe\" is not on or off"},
    {"bad restore_test_user", WORKER, "[worker]\nrestore_test_user = no body\n", BQ_E_CONFIG,
     ":2: [worker] restore_test_user: \"no body\" is not a valid name (use 1 to 63 of A-Z a-z 0-9 _ . -, not starting with . or -)"},
    {"bad hook_timeout", COORD, CLUSTER_C "hook_timeout = forever\n", BQ_E_CONFIG,
     ":9: [cluster c] hook_timeout: \"forever\" is not a duration (use e.g. 250ms, 5s, 2m, 1h, 1d)"},
    {"bad log level", COORD, COORD_HEAD "log_level = loud\n", BQ_E_CONFIG,
     ":5: [coordinator] log_level: \"loud\" is not a log level (use debug, info, warning or error)"},
    {"empty value", COORD, COORD_HEAD "log_level =\n", BQ_E_CONFIG,
     ":5: [coordinator] log_level: value is empty"},
    {"bad endpoint", COORD, "[coordinator]\nlisten = http://127.0.0.1:7400\n", BQ_E_CONFIG,
     ":2: [coordinator] listen: \"http://127.0.0.1:7400\" is not an endpoint of the form "
     "tcp://HOST:PORT"},
    {"peer_timeout too short", WORKER, "[worker]\npeer_timeout = 100ms\n", BQ_E_CONFIG,
     ":2: [worker] peer_timeout: 100ms is out of range (1s..1h)"},
    {"endpoint without port", WORKER, "[worker]\ncoordinator = tcp://coord\n", BQ_E_CONFIG,
     ":2: [worker] coordinator: \"tcp://coord\" is not an endpoint of the form tcp://HOST:PORT"},
    {"endpoint port out of range", CLI, "[cli]\ncoordinator = tcp://coord:65536\n", BQ_E_CONFIG,
     ":2: [cli] coordinator: port 65536 of \"tcp://coord:65536\" is out of range (1..65535)"},
    {"endpoint port zero", COORD, "[coordinator]\nlisten = tcp://*:0\n", BQ_E_CONFIG,
     ":2: [coordinator] listen: port 0 of \"tcp://*:0\" is out of range (1..65535)"},
    {"bad section name", COORD, COORD_HEAD "[worker w/1]\n", BQ_E_CONFIG,
     ":5: [worker w/1]: \"w/1\" is not a valid name " NAME_RULE},
    {"section name starting with a dot", COORD, COORD_HEAD "[site .hidden]\n", BQ_E_CONFIG,
     ":5: [site .hidden]: \".hidden\" is not a valid name " NAME_RULE},
    {"section name with a space", COORD, COORD_HEAD "[cluster main db]\n", BQ_E_CONFIG,
     ":5: [cluster main db]: \"main db\" is not a valid name " NAME_RULE},
    {"bad name value", WORKER, "[worker]\nname = -w1\n", BQ_E_CONFIG,
     ":2: [worker] name: \"-w1\" is not a valid name " NAME_RULE},
    {"section without its name", COORD, COORD_HEAD "[worker]\n", BQ_E_CONFIG,
     ":5: [worker]: section needs a name: [worker NAME]"},
    {"section with a name it does not take", WORKER, "[worker w1]\n", BQ_E_CONFIG,
     ":1: [worker w1]: section takes no name: [worker]"},
    {"worker site naming no [site]", COORD,
     COORD_HEAD "[site east]\n[worker w1]\npublic_key_file = w1.pub\nsite = west\n", BQ_E_CONFIG,
     ":8: [worker w1] site: no [site west] section"},
    {"cluster site naming no [site]", COORD,
     COORD_HEAD "[cluster main]\nsite = east\nconninfo = dbname=postgres\n", BQ_E_CONFIG,
     ":6: [cluster main] site: no [site east] section"},
    {"duplicate key", COORD, COORD_HEAD "listen = tcp://127.0.0.1:7401\n", BQ_E_CONFIG,
     ":5: [coordinator] listen: duplicate key (first at line 2)"},
    {"duplicate key through ':'", COORD, COORD_HEAD WORKER_W1 "site: east\n", BQ_E_CONFIG,
     ":9: [worker w1] site: duplicate key (first at line 8)"},
    {"duplicate named section", COORD, COORD_HEAD "[site east]\n[site west]\n[site east]\n",
     BQ_E_CONFIG, ":7: [site east]: duplicate section (first at line 5)"},
    {"duplicate [coordinator]", COORD, COORD_HEAD COORD_HEAD, BQ_E_CONFIG,
     ":5: [coordinator]: duplicate section (first at line 1)"},
    {"duplicate public key", COORD,
     COORD_HEAD WORKER_W1 "[operator alice]\npublic_key_file = w1.pub\n", BQ_E_CONFIG,
     ":10: [operator alice] public_key_file: same public key as [worker w1] (line 7): "
     "each needs its own key pair"},
    {"secret key file with mode 0644", COORD,
     "[coordinator]\nlisten = tcp://h:1\ncatalog = c\nsecret_key_file = loose.key\n", BQ_E_PERM,
     ":4: [coordinator] secret_key_file: secret key file @D/loose.key has mode 0644: it must not "
     "be accessible by group or others (run: chmod 600 @D/loose.key)"},
    {"missing secret key file", CLI, "[cli]\nsecret_key_file = nothere.key\n", BQ_E_NOTFOUND,
     ":2: [cli] secret_key_file: could not open secret key file @D/nothere.key: "
     "No such file or directory"},
    {"missing public key file", COORD,
     COORD_HEAD "[site east]\n[worker w1]\npublic_key_file = /nonexistent/w1.pub\n", BQ_E_NOTFOUND,
     ":7: [worker w1] public_key_file: could not open /nonexistent/w1.pub: "
     "No such file or directory"},
    {"garbage public key file", WORKER, "[worker]\ncoordinator_public_key_file = garbage.pub\n",
     BQ_E_KEY,
     ":2: [worker] coordinator_public_key_file: key file @D/garbage.pub does not hold a public "
     "key (expected 40 Z85 characters)"},
    {"public key file given as secret key", CLI, "[cli]\nsecret_key_file = w1.pub\n", BQ_E_PERM,
     ":2: [cli] secret_key_file: secret key file @D/w1.pub has mode 0644: it must not be "
     "accessible by group or others (run: chmod 600 @D/w1.pub)"},
    {"syntax error", COORD, COORD_HEAD "\nthis is not ini\n", BQ_E_CONFIG,
     ":6: syntax error: expected \"key = value\", \"[section]\" or a comment"},
    {"section header without ']'", COORD, COORD_HEAD "[site east\n", BQ_E_CONFIG,
     ":5: syntax error: section header has no closing ']'"},
    {"text after section header", COORD, COORD_HEAD "[site east] west\n", BQ_E_CONFIG,
     ":5: syntax error: unexpected text after ']'"},
    {"empty section header", CLI, "[ ]\n", BQ_E_CONFIG, ":1: syntax error: empty section header"},
    {"empty key name", CLI, "[cli]\n= tcp://h:1\n", BQ_E_CONFIG,
     ":2: syntax error: key name is empty"},
    {"key outside any section", COORD, "listen = tcp://h:1\n" COORD_HEAD, BQ_E_CONFIG,
     ":1: listen: key is outside of any [section]"},
};

static int load_kind(conf_kind_t kind, const char *path, bq_errbuf_t *e)
{
    int rc;
    if (kind == COORD) {
        bq_coord_config_t cfg;
        rc = bq_coord_config_load(path, &cfg, e);
        assert_null(cfg.sites); /* nothing left allocated after a failure */
        assert_null(cfg.workers);
        assert_int_equal(cfg.nworkers, 0);
        bq_coord_config_free(&cfg);
    } else if (kind == WORKER) {
        bq_worker_config_t cfg;
        rc = bq_worker_config_load(path, &cfg, e);
        assert_string_equal(cfg.keys.secret_z85, "");
    } else {
        bq_cli_config_t cfg;
        rc = bq_cli_config_load(path, &cfg, e);
        assert_string_equal(cfg.keys.secret_z85, "");
    }
    return rc;
}

static void test_bad_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        const bad_case_t *bc = &bad_cases[i];
        char path[PATH_MAX], want[2 * BQ_ERRMSG_MAX], tail[BQ_ERRMSG_MAX];
        conf_write("bad.conf", bc->text, path);
        expand_dir(bc->msg, tail, sizeof tail);
        FMT(want, "%s%s", path, tail);
        bq_errbuf_t e = {{0}};
        int rc = load_kind(bc->kind, path, &e);
        if (rc != bc->code || strcmp(e.msg, want) != 0)
            print_error("case \"%s\":\n  got  %s (%s)\n  want %s (%s)\n", bc->what, e.msg,
                        bq_err_name(rc), want, bq_err_name(bc->code));
        assert_int_equal(rc, bc->code);
        assert_string_equal(e.msg, want);
        /* secret key contents never appear in a message */
        assert_null(strstr(e.msg, kp_coord.secret_z85));
        assert_null(strstr(e.msg, kp_cli.secret_z85));
    }
}

/* Inputs a C string literal cannot hold, or that are too long to write out in the table. */
static void test_bad_bytes(void **state)
{
    (void)state;
    char path[PATH_MAX], want[BQ_ERRMSG_MAX];
    bq_errbuf_t e;

    static const char nul[] = "[cli]\ntimeout = 1\0s\n";
    file_write("nul.conf", nul, sizeof nul - 1, path);
    assert_int_equal(bq_cli_config_load(path, &(bq_cli_config_t){0}, &e), BQ_E_CONFIG);
    FMT(want, "%s:2: syntax error: line contains a NUL byte", path);
    assert_string_equal(e.msg, want);

    /* a line inih would split is refused, not read as two lines */
    size_t n = 0, cap = 8192;
    char *text = malloc(cap);
    assert_non_null(text);
    n += (size_t)snprintf(text, cap, COORD_HEAD "[cluster big]\nconninfo = ");
    while (n < 5000)
        text[n++] = 'x';
    text[n++] = '\n';
    file_write("long.conf", text, n, path);
    assert_int_equal(bq_coord_config_load(path, &(bq_coord_config_t){0}, &e), BQ_E_CONFIG);
    FMT(want, "%s:6: syntax error: line is longer than 4096 characters", path);
    assert_string_equal(e.msg, want);

    /* a line that fits inih but not the field */
    n = (size_t)snprintf(text, cap, COORD_HEAD "[site east]\n[cluster big]\nsite = east\nconninfo = ");
    while (n < 2000)
        text[n++] = 'x';
    text[n++] = '\n';
    file_write("long.conf", text, n, path);
    assert_int_equal(bq_coord_config_load(path, &(bq_coord_config_t){0}, &e), BQ_E_CONFIG);
    FMT(want, "%s:8: [cluster big] conninfo: value is longer than 1023 characters",
             path);
    assert_string_equal(e.msg, want);

    /* a line of exactly 4096 characters is accepted (then refused by the field) */
    n = (size_t)snprintf(text, cap, "[worker]\nstore = d"); /* relative: dir/ makes it too long */
    size_t line_start = strlen("[worker]\n");
    while (n - line_start < 4096)
        text[n++] = 'd';
    text[n++] = '\n';
    file_write("long.conf", text, n, path);
    assert_int_equal(bq_worker_config_load(path, &(bq_worker_config_t){0}, &e), BQ_E_CONFIG);
    FMT(want, "%s:2: [worker] store: path is longer than %d characters", path,
             PATH_MAX - 1);
    assert_string_equal(e.msg, want);
    free(text);

    /* a file that is not there */
    FMT(path, "%s/none.conf", dir);
    assert_int_equal(bq_cli_config_load(path, &(bq_cli_config_t){0}, &e), BQ_E_NOTFOUND);
    FMT(want, "could not open config file %s: No such file or directory", path);
    assert_string_equal(e.msg, want);
}

/* ---- names and the CLI's search order -------------------------------------------------- */

static void test_name_valid(void **state)
{
    (void)state;
    assert_true(bq_name_valid("east"));
    assert_true(bq_name_valid("pg_15.main-2"));
    assert_true(bq_name_valid("_x"));
    assert_true(bq_name_valid("0"));
    assert_true(bq_name_valid("abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijk")); /* 63 */
    assert_false(bq_name_valid("abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijkl")); /* 64 */
    assert_false(bq_name_valid(""));
    assert_false(bq_name_valid(NULL));
    assert_false(bq_name_valid(".x"));
    assert_false(bq_name_valid("-x"));
    assert_false(bq_name_valid("a b"));
    assert_false(bq_name_valid("a/b"));
    assert_false(bq_name_valid("été"));
}

static void test_cli_config_find(void **state)
{
    (void)state;
    char home[PATH_MAX], user_conf[PATH_MAX], env_conf[PATH_MAX], explicit_conf[PATH_MAX];
    char found[PATH_MAX], want[BQ_ERRMSG_MAX], p[PATH_MAX];
    bq_errbuf_t e;
    const char *old_home = getenv("HOME"), *old_env = getenv("BARQUE_CONFIG");
    char *saved_home = old_home ? strdup(old_home) : NULL;
    char *saved_env = old_env ? strdup(old_env) : NULL;

    FMT(home, "%s/home", dir);
    FMT(user_conf, "%s/.config/barque/barque.conf", home);
    setenv("HOME", home, 1);
    unsetenv("BARQUE_CONFIG");

    /* nothing anywhere: every place is named */
    if (access("/etc/barque/barque.conf", F_OK) != 0) {
        assert_int_equal(bq_cli_config_find(NULL, found, sizeof found, &e), BQ_E_NOTFOUND);
        FMT(want,
                 "no config file found: looked at $BARQUE_CONFIG (not set), %s and "
                 "/etc/barque/barque.conf; give one with -c FILE",
                 user_conf);
        assert_string_equal(e.msg, want);
    }

    /* ~/.config/barque/barque.conf */
    FMT(p, "%s/.config/barque", home);
    assert_int_equal(bq_mkdir_p(p, 0700, &e), 0);
    conf_write("home/.config/barque/barque.conf", "[cli]\n", p);
    assert_int_equal(bq_cli_config_find(NULL, found, sizeof found, &e), 0);
    assert_string_equal(found, user_conf);

    /* $BARQUE_CONFIG before it */
    conf_write("env.conf", "[cli]\n", env_conf);
    setenv("BARQUE_CONFIG", env_conf, 1);
    assert_int_equal(bq_cli_config_find(NULL, found, sizeof found, &e), 0);
    assert_string_equal(found, env_conf);
    assert_int_equal(bq_cli_config_find("", found, sizeof found, &e), 0); /* "" = not given */
    assert_string_equal(found, env_conf);

    /* -c FILE before everything */
    conf_write("explicit.conf", "[cli]\n", explicit_conf);
    assert_int_equal(bq_cli_config_find(explicit_conf, found, sizeof found, &e), 0);
    assert_string_equal(found, explicit_conf);

    /* a path given explicitly or in the environment must exist: no falling back */
    FMT(p, "%s/missing.conf", dir);
    assert_int_equal(bq_cli_config_find(p, found, sizeof found, &e), BQ_E_NOTFOUND);
    FMT(want,
             "could not find config file %s (given with -c): No such file or directory", p);
    assert_string_equal(e.msg, want);
    setenv("BARQUE_CONFIG", p, 1);
    assert_int_equal(bq_cli_config_find(NULL, found, sizeof found, &e), BQ_E_NOTFOUND);
    FMT(want,
             "could not find config file %s (from $BARQUE_CONFIG): No such file or directory", p);
    assert_string_equal(e.msg, want);

    /* the result must fit the caller's buffer */
    char tiny[8];
    assert_int_equal(bq_cli_config_find(explicit_conf, tiny, sizeof tiny, &e), BQ_E_INVAL);

    if (saved_home)
        setenv("HOME", saved_home, 1);
    else
        unsetenv("HOME");
    if (saved_env)
        setenv("BARQUE_CONFIG", saved_env, 1);
    else
        unsetenv("BARQUE_CONFIG");
    free(saved_home);
    free(saved_env);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_coord_good),
        cmocka_unit_test(test_coord_defaults),
        cmocka_unit_test(test_coord_many_sections),
        cmocka_unit_test(test_worker_good),
        cmocka_unit_test(test_worker_defaults),
        cmocka_unit_test(test_cli_good_and_defaults),
        cmocka_unit_test(test_relative_paths),
        cmocka_unit_test(test_bad_table),
        cmocka_unit_test(test_bad_bytes),
        cmocka_unit_test(test_name_valid),
        cmocka_unit_test(test_cli_config_find),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
