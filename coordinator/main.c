/* barque-coordinator: holds the catalog, hands jobs to workers, serves the CLI. */
#include "config.h"
#include "coord.h"
#include "log.h"
#include "proto.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

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
            "usage: barque-coordinator -c FILE [--check-config]\n"
            "\n"
            "Runs Barque's coordinator: keeps the catalog (LMDB), hands jobs to workers over\n"
            "CURVE-encrypted ZeroMQ and answers the barque CLI.\n"
            "\n"
            "  -c, --config FILE   coordinator config (INI: [coordinator], [site NAME],\n"
            "                      [worker NAME], [operator NAME], [cluster NAME])\n"
            "      --check-config  validate the config (and the key files it names), then exit\n"
            "  -h, --help          this help\n"
            "      --version       print the version\n"
            "\n"
            "Signals: SIGTERM/SIGINT stop cleanly, SIGHUP reloads keys, clusters and log_level.\n"
            "Logs one line per event to stderr.\n");
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
        case 'V': printf("barque-coordinator %s\n", BQ_VERSION_STRING); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!config || optind != argc) {
        usage(stderr);
        return 2;
    }
    bq_coord_config_t cfg;
    bq_errbuf_t e;
    memset(&cfg, 0, sizeof cfg);
    if (bq_coord_config_load(config, &cfg, &e) != 0) {
        fprintf(stderr, "barque-coordinator: %s\n", e.msg);
        bq_coord_config_free(&cfg);
        return 2;
    }
    if (check_only) {
        printf("%s: OK (%zu sites, %zu workers, %zu operators, %zu clusters)\n", config, cfg.nsites,
               cfg.nworkers, cfg.noperators, cfg.nclusters);
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
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    /* Test instrumentation: start without the ZAP handler, to prove the probe refuses. */
    const char *skip = getenv("BARQUE_TEST_SKIP_ZAP");
    coord_t *c = NULL;
    if (coord_new(&cfg, skip && strcmp(skip, "1") == 0, &c, &e) != 0) {
        bq_error("coordinator", 0, "could not start: %s", e.msg);
        return 1;
    }
    int rc = coord_run(c, &stop_flag, &reload_flag);
    coord_destroy(&c);
    return rc ? 1 : 0;
}
