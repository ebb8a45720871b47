/* barque wal-push and wal-get: PostgreSQL's archive_command and restore_command.
 *
 * Both ask the coordinator which workers to use (CLI_REQUEST wal-target / wal-source: the
 * workers, their data ports and the keys the coordinator vouches for), then speak to a
 * worker's data port directly (CURVE, as this operator: the coordinator sends every worker
 * the operator keys, admitted for wal-put and wal-get only). A pushed file is in the WAL
 * index (wal-pushed) before wal-push reports success.
 *
 * Exit status: wal-push 0 once the file is durable in a store and recorded, 1 otherwise (the
 * server keeps the file and calls again). wal-get 0 with the file at the destination, 1 when
 * no store holds it (every worker that could hold it answered), 2 when it could not be
 * fetched (no worker reachable, a damaged file): PostgreSQL treats both as "not there", so
 * the message on stderr (the server's log) is what tells them apart. */
#ifndef BQ_CLI_WAL_CMD_H
#define BQ_CLI_WAL_CMD_H

#include "keys.h"
#include "proto.h"

/* One request to the coordinator and its reply (cli.c's cli_call). */
typedef int (*wal_cmd_call_fn)(void *arg, bq_msg_cli_request_t *req, bq_msg_t *reply,
                               bq_errbuf_t *e);

typedef struct {
    proto_ctx_t *ctx;
    const bq_keypair_t *keys;  /* the operator's CURVE key pair */
    wal_cmd_call_fn call;
    void *call_arg;
    const char *config;        /* the CLI config file in use (for the prefetcher) */
    int json;
    const char *spool;         /* wal-push: --spool DIR; wal-get: where prefetched files wait */
    int prefetch;              /* wal-get: --prefetch N (0: none) */
    long prefetch_only;        /* wal-get: internal: be the background prefetcher; the segment size */
    int spool_pusher;          /* wal-push: internal: be the pusher of --spool DIR */
    const char *from_site;     /* wal-get: --from-site SITE: only stores at SITE (NULL: any) */
    const char *prefer_site;   /* wal-get: --prefer-site SITE: stores at SITE first */
    int nargs;
    const char *const *args;   /* push: CLUSTER PATH; get: CLUSTER NAME DEST */
} wal_cmd_opts_t;

int wal_cmd_push(const wal_cmd_opts_t *o);
int wal_cmd_get(const wal_cmd_opts_t *o);

/* The name of the segment after `name` (24 hex digits) for segments of seg_size bytes: 0,
 * else -1 (not a segment name, or a bad size). */
int wal_cmd_next_segment(const char *name, uint64_t seg_size, char out[25]);

#endif
