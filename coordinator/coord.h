/* The coordinator daemon: one event loop serving workers and the CLI over one CURVE ROUTER
 * socket, with the catalog (LMDB) as the source of truth and an in-memory index of workers
 * and active jobs rebuilt from it at start. Never carries backup bytes. */
#ifndef BQ_COORD_H
#define BQ_COORD_H

#include "config.h"
#include "err.h"

#include <signal.h>

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

#endif
