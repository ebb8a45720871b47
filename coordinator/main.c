/* barque-coordinator: holds the catalog, hands jobs to workers, serves the CLI. */
#include "config.h"
#include "coord.h"
#include "daemon.h"
#include "log.h"
#include "proto.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static volatile sig_atomic_t stop_flag, reload_flag;

static const char usage_text[] =
    "usage: barque-coordinator -c FILE [--check-config | --rebuild-catalog [--rebuild-timeout SEC]]\n"
    "\n"
    "Runs Barque's coordinator: keeps the catalog (LMDB), hands jobs to workers over\n"
    "CURVE-encrypted ZeroMQ and answers the barque CLI.\n"
    "\n"
    "  -c, --config FILE   coordinator config (INI: [coordinator], [site NAME],\n"
    "                      [worker NAME], [operator NAME], [cluster NAME])\n"
    "      --check-config  validate the config (and the key files it names), then exit\n"
    "      --rebuild-catalog\n"
    "                      rebuild the catalog from the stores: every worker of the config\n"
    "                      lists its store (backups with their figures, WAL files) and each\n"
    "                      is recorded (existing records gain the store); then exit: 0 when\n"
    "                      every worker answered, 1 otherwise. Run it with the workers up and\n"
    "                      no other coordinator on the catalog.\n"
    "      --rebuild-timeout SEC\n"
    "                      how long to wait for the workers (default 300)\n"
    "  -h, --help          this help\n"
    "      --version       print the version\n"
    "\n"
    "Signals: SIGTERM/SIGINT stop cleanly, SIGHUP reloads keys, clusters and log_level.\n"
    "Logs one line per event to stderr.\n";

int main(int argc, char **argv)
{
    bq_daemon_args_t args;
    int status =
        bq_daemon_args(argc, argv, "barque-coordinator", BQ_VERSION_STRING, usage_text, &args);
    if (status >= 0)
        return status;
    bq_coord_config_t cfg;
    bq_errbuf_t e;
    memset(&cfg, 0, sizeof cfg);
    if (bq_coord_config_load(args.config, &cfg, &e) != 0) {
        fprintf(stderr, "barque-coordinator: %s\n", e.msg);
        bq_coord_config_free(&cfg);
        return 2;
    }
    if (args.check_only) {
        printf("%s: OK (%zu sites, %zu workers, %zu operators, %zu clusters)\n", args.config,
               cfg.nsites, cfg.nworkers, cfg.noperators, cfg.nclusters);
        bq_coord_config_free(&cfg);
        return 0;
    }
    bq_log_set_level(cfg.log_level);

    /* One descriptor per connected worker and CLI: lift the soft limit to the hard one. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    bq_daemon_signals(&stop_flag, &reload_flag);

    /* Test instrumentation: start without the ZAP handler, to prove the probe refuses. */
    const char *skip = getenv("BARQUE_TEST_SKIP_ZAP");
    coord_t *c = NULL;
    if (coord_new(&cfg, skip && strcmp(skip, "1") == 0, &c, &e) != 0) {
        bq_error("coordinator", 0, "could not start: %s", e.msg);
        return 1;
    }
    if (args.rebuild && coord_rebuild(c, (args.rebuild_timeout_s ? args.rebuild_timeout_s : 300) *
                                             1000LL) != 0) {
        bq_error("coordinator", 0, "could not start the rebuild: out of memory");
        coord_destroy(&c);
        return 1;
    }
    int rc = coord_run(c, &stop_flag, &reload_flag);
    int missing = args.rebuild && rc == 0 ? coord_rebuild_report(c, stdout) : 0;
    coord_destroy(&c);
    return rc || missing ? 1 : 0;
}
