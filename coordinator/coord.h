/* The coordinator daemon: one event loop serving workers and the CLI over one CURVE ROUTER
 * socket, with the catalog (LMDB) as the source of truth and an in-memory index of workers
 * and active jobs rebuilt from it at start. Never carries backup bytes. */
#ifndef BQ_COORD_H
#define BQ_COORD_H

#include "config.h"
#include "err.h"

#include <signal.h>
#include <stdio.h>

typedef struct coord coord_t;

/* Open the catalog, record the config's sites and clusters in it, load workers and active
 * jobs, start the ZAP handler (unless skip_zap: tests prove the probe then refuses), probe
 * it, and only then listen. Takes over cfg (its arrays too): the caller must not free it
 * afterwards, even on failure. */
int coord_new(const bq_coord_config_t *cfg, int skip_zap, coord_t **out, bq_errbuf_t *e);
/* Run until *stop becomes nonzero. *reload nonzero: re-read cfg->path (keys, clusters,
 * sites, log level) and clear it. Returns 0 on a clean stop. */
int coord_run(coord_t *c, volatile sig_atomic_t *stop, volatile sig_atomic_t *reload);
void coord_destroy(coord_t **self_p);

/* --rebuild-catalog: before coord_run, make it ask every configured worker, once it is
 * online, for the inventory of its store (inventory jobs, page by page) and record each
 * backup and WAL file in the catalog (an existing record gains the store); no scheduler,
 * retention or wal-stream job runs meanwhile. coord_run then returns once every worker has
 * answered or timeout_ms passed. coord_rebuild_report prints a line per worker and the
 * totals, and returns how many workers did not answer (or failed). */
int coord_rebuild(coord_t *c, int64_t timeout_ms);
int coord_rebuild_report(coord_t *c, FILE *out);

#endif
