/* What Barque asks of a PostgreSQL cluster before it trusts it with a job.
 * Uses libpq only; knows nothing of ZeroMQ or the catalog. */
#ifndef BQ_PG_CHECK_H
#define BQ_PG_CHECK_H

#include "err.h"
#include "types.h"

/* Connect with conninfo (connect_timeout applied when the conninfo has none) and fill out:
 * server version, system identifier, wal_level, archive_mode, max_wal_senders, replication
 * slots, whether the role may replicate, and one item per check with OK/FAILED and a reason.
 * A server that cannot be reached is a result (item "connection" FAILED with libpq's reason),
 * not an error: returns 0. Errors (BQ_E_INVAL for a conninfo libpq cannot parse) otherwise. */
int pg_check_run(const char *conninfo, int connect_timeout_s, bq_check_result_t *out,
                 bq_errbuf_t *e);
/* The same, and when app and slot are given, the WAL receiver of the cluster: items "WAL slot"
 * (slot exists and is active) and "WAL receiver" (application_name app streams; its lag in
 * bytes). */
int pg_check_run_receiver(const char *conninfo, int connect_timeout_s, const char *app,
                          const char *slot, bq_check_result_t *out, bq_errbuf_t *e);

/* The names of cluster's WAL receiver: its slot "barque_" + the name lowercased with every
 * character but [a-z0-9_] as '_' (slot names allow no more), at most 63 bytes; and its
 * application_name "barque_" + the name as it is. */
void pg_receiver_names(const char *cluster, char *slot, size_t slot_cap, char *app,
                       size_t app_cap);

/* 1 when every item of r is OK. */
int pg_check_passed(const bq_check_result_t *r);

/* The cluster's own tablespaces (not pg_default, pg_global), oid order: fn(arg, oid, name)
 * for each; its non-zero return stops and is returned. BQ_E_PG naming the cluster's host when
 * it cannot connect or query (connect_timeout_s bounds the connection). */
typedef int (*pg_tablespace_fn)(void *arg, uint32_t oid, const char *name);
int pg_tablespaces_list(const char *conninfo, int connect_timeout_s, pg_tablespace_fn fn,
                        void *arg, bq_errbuf_t *e);

/* pg_switch_wal() on the server of conninfo (a normal connection), after CHECKPOINT when
 * force (so that an idle server has a record to close): the name of the segment it closed
 * into name (cap bytes), *switched = 0 when nothing had been written since the last switch
 * (the server closed none; name is then the last segment closed). BQ_E_PG (unreachable, a
 * failed query), BQ_E_STATE (the server is in recovery). */
int pg_switch_wal(const char *conninfo, int force, int connect_timeout_s, char *name, size_t cap,
                  int *switched, bq_errbuf_t *e);

#endif
