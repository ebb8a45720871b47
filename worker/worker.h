/* The worker daemon: connects out to the coordinator (CURVE), registers, heartbeats, runs
 * the jobs it is offered in threads off its event loop, and keeps each result until the
 * coordinator acknowledges it (or refuses it as superseded). */
#ifndef BQ_WORKER_H
#define BQ_WORKER_H

#include "config.h"
#include "err.h"

#include <signal.h>

typedef struct worker worker_t;

/* Prepare the store and the connection. cfg is copied. */
int worker_new(const bq_worker_config_t *cfg, worker_t **out, bq_errbuf_t *e);
/* Run until *stop: then cancel running jobs, report them (retryable) and return.
 * *reload nonzero: re-read cfg->path for log_level and clear it. */
int worker_run(worker_t *w, volatile sig_atomic_t *stop, volatile sig_atomic_t *reload);
void worker_destroy(worker_t **self_p);

#endif
