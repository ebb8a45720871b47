/* barque-worker: runs Barque's jobs near the database hosts of one site. */
#include "config.h"
#include "log.h"
#include "proto.h"
#include "worker.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

static volatile sig_atomic_t stop_flag, reload_flag;

static void on_signal(int sig)
{
    if (sig == SIGHUP)
        reload_flag = 1;
    else
        stop_flag = 1;
}

static void usage(FILE *f)
{
    fprintf(f,
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
            "SIGHUP reloads log_level and max_jobs. Logs one line per event to stderr.\n");
}

int main(int argc, char **argv)
{
    const char *config = NULL;
    int check_only = 0;
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"check-config", no_argument, NULL, 'C'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    int o;
    while ((o = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (o) {
        case 'c': config = optarg; break;
        case 'C': check_only = 1; break;
        case 'h': usage(stdout); return 0;
        case 'V': printf("barque-worker %s\n", BQ_VERSION_STRING); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!config || optind != argc) {
        usage(stderr);
        return 2;
    }
    bq_worker_config_t cfg;
    bq_errbuf_t e;
    memset(&cfg, 0, sizeof cfg);
    if (bq_worker_config_load(config, &cfg, &e) != 0) {
        fprintf(stderr, "barque-worker: %s\n", e.msg);
        return 2;
    }
    if (check_only) {
        printf("%s: OK (worker %s at site %s)\n", config, cfg.name, cfg.site);
        return 0;
    }
    bq_log_set_level(cfg.log_level);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    worker_t *w = NULL;
    if (worker_new(&cfg, &w, &e) != 0) {
        bq_error("worker", 0, "could not start: %s", e.msg);
        return 1;
    }
    int rc = worker_run(w, &stop_flag, &reload_flag);
    worker_destroy(&w);
    return rc ? 1 : 0;
}
