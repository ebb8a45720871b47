#include "daemon.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Atomic so that the handler may read them (C11 7.14.1.1); set before any handler runs. */
static volatile sig_atomic_t *_Atomic daemon_stop, *_Atomic daemon_reload;

static void daemon_on_signal(int sig)
{
    if (sig == SIGHUP)
        *daemon_reload = 1;
    else
        *daemon_stop = 1;
}

int bq_daemon_args(int argc, char **argv, const char *prog, const char *version,
                   const char *usage_text, bq_daemon_args_t *out)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"check-config", no_argument, NULL, 'C'},
        {"rebuild-catalog", no_argument, NULL, 'R'},
        {"rebuild-timeout", required_argument, NULL, 'T'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    memset(out, 0, sizeof *out);
    int o;
    while ((o = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (o) {
        case 'c': out->config = optarg; break;
        case 'C': out->check_only = 1; break;
        case 'R': out->rebuild = 1; break;
        case 'T': {
            char *end = NULL;
            out->rebuild_timeout_s = strtol(optarg, &end, 10);
            if (!end || *end || out->rebuild_timeout_s < 1 || out->rebuild_timeout_s > 86400) {
                fprintf(stderr, "%s: --rebuild-timeout wants seconds from 1 to 86400, not %s\n",
                        prog, optarg);
                return 2;
            }
            break;
        }
        case 'h': fputs(usage_text, stdout); return 0;
        case 'V': printf("%s %s\n", prog, version); return 0;
        default: fputs(usage_text, stderr); return 2;
        }
    }
    if (!out->config || optind != argc) {
        fputs(usage_text, stderr);
        return 2;
    }
    return -1;
}

void bq_daemon_signals(volatile sig_atomic_t *stop, volatile sig_atomic_t *reload)
{
    daemon_stop = stop;
    daemon_reload = reload;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = daemon_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}
