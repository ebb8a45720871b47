/* barque-worker: runs Barque's jobs near the database hosts of one site. */
#include "config.h"
#include "daemon.h"
#include "log.h"
#include "proto.h"
#include "worker.h"

#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

static volatile sig_atomic_t stop_flag, reload_flag;

static const char usage_text[] =
    "usage: barque-worker -c FILE [--check-config]\n"
    "\n"
    "Runs a Barque worker: connects to the coordinator (CURVE), registers, and runs the\n"
    "jobs it is given (checks now; backups, WAL streaming and restores in later releases).\n"
    "\n"
    "  -c, --config FILE   worker config (INI: [worker] name, site, coordinator,\n"
    "                      coordinator_public_key_file, secret_key_file, store, ...)\n"
    "      --check-config  validate the config (and the key files it names), then exit\n"
    "  -h, --help          this help\n"
    "      --version       print the version\n"
    "\n"
    "Signals: SIGTERM/SIGINT stop cleanly (running jobs are cancelled and handed back),\n"
    "SIGHUP reloads log_level and max_jobs. Logs one line per event to stderr.\n";

int main(int argc, char **argv)
{
    bq_daemon_args_t args;
    /* WAL files (16 MiB) come and go by the hundred: keep freed buffers in the heap instead of
     * a fresh mmap each time, whose pages the kernel zeroes on first touch */
    mallopt(M_MMAP_THRESHOLD, 64 << 20);
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
    int status = bq_daemon_args(argc, argv, "barque-worker", BQ_VERSION_STRING, usage_text, &args);
    if (status >= 0)
        return status;
    if (args.rebuild || args.rebuild_timeout_s) {
        fprintf(stderr, "barque-worker: --rebuild-catalog is an option of barque-coordinator\n");
        return 2;
    }
    bq_worker_config_t cfg;
    bq_errbuf_t e;
    memset(&cfg, 0, sizeof cfg);
    if (bq_worker_config_load(args.config, &cfg, &e) != 0) {
        fprintf(stderr, "barque-worker: %s\n", e.msg);
        return 2;
    }
    if (args.check_only) {
        printf("%s: OK (worker %s at site %s)\n", args.config, cfg.name, cfg.site);
        return 0;
    }
    bq_log_set_level(cfg.log_level);
    bq_daemon_signals(&stop_flag, &reload_flag);

    worker_t *w = NULL;
    if (worker_new(&cfg, &w, &e) != 0) {
        bq_error("worker", 0, "could not start: %s", e.msg);
        return 1;
    }
    int rc = worker_run(w, &stop_flag, &reload_flag);
    worker_destroy(&w);
    return rc ? 1 : 0;
}
