/* Restore tests' arithmetic (issue 7): the recovery time predicted from the last successful
 * test, the drill's random point, and the "restore test" check item. Pure: the coordinator
 * passes the records and the clock in. */
#ifndef BQ_RTEST_H
#define BQ_RTEST_H

#include "types.h"

#include <stddef.h>
#include <stdint.h>

/* The recovery time of a restore now, of a backup of data_bytes followed by wal_bytes of WAL
 * to replay, predicted from the measured test t (which should have passed): fetch and write
 * at t's rate (bytes / fetch_ms), t's server start, the WAL at t's replay rate (t's replay
 * time as it was when t replayed less than 4 MiB: too little to measure a rate), and t's
 * other time (rto - fetch - start - replay). ms, and how in detail ("16.3 MB at 45.2 MB/s +
 * 1.2 s start + 33.5 MB WAL at 12.1 MB/s + 0.1 s"); 0 when t has no figures. */
int64_t rtest_predict(const bq_restore_test_t *t, uint64_t data_bytes, uint64_t wal_bytes,
                      char *detail, size_t len);

/* A drill's target time: uniform in [lo_ms, hi_ms] by the random number rnd (hi < lo: lo). */
int64_t rtest_drill_time(int64_t lo_ms, int64_t hi_ms, uint64_t rnd);

/* The "restore test" check item of a cluster: its severity (BQ_SEV_*) and detail, or -1 when
 * there is no item (no test ever ran and no max age applies). last = the newest finished test
 * (NULL = none), ok = the newest that passed (NULL = none), max_age_ms 0 = no age limit:
 * CRITICAL when the last failed, or when the last success is older than max_age_ms (or there
 * is none while a limit applies); else OK. */
int rtest_item(const bq_restore_test_t *last, const bq_restore_test_t *ok, int64_t max_age_ms,
               int64_t now_ms, char *detail, size_t len);

#endif
