/* A worker's store at its site. This issue only creates and describes it; chunks, packs,
 * manifests and the WAL area come with issue 3. Knows nothing of ZeroMQ or PostgreSQL. */
#ifndef BQ_STORE_H
#define BQ_STORE_H

#include "err.h"

#include <stdint.h>

#define BQ_STORE_FORMAT 1

/* Create dir (0700) and its format marker if absent; refuse a directory whose marker names
 * another format or is damaged. */
int store_init(const char *dir, bq_errbuf_t *e);
/* Free and total bytes of the filesystem holding the store. */
int store_space(const char *dir, uint64_t *free_bytes, uint64_t *total_bytes, bq_errbuf_t *e);

#endif
