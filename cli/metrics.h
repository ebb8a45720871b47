/* barque metrics: the coordinator's view as the Prometheus text exposition format (version
 * 0.0.4), for node_exporter's textfile collector. Pure formatting from plain values; the
 * caller fetches them. metrics_parse_check is a strict checker of that format, for tests. */
#ifndef BQ_CLI_METRICS_H
#define BQ_CLI_METRICS_H

#include "types.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* The last check of one cluster. */
typedef struct {
    char cluster[BQ_NAME_MAX];
    int status;          /* 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (Nagios codes, BQ_SEV_*) */
    int64_t time_ms;     /* when it was checked, ms since the epoch (0 = never) */
    size_t nfailed;      /* items not OK */
} metrics_check_t;

/* Everything metrics_write reads; all of it borrowed for the call. */
typedef struct {
    const bq_cluster_t *clusters; size_t nclusters; /* config and status fields */
    const bq_backup_t *backups; size_t nbackups;    /* every cluster's, any order, any state */
    const bq_worker_t *workers; size_t nworkers;
    const metrics_check_t *checks; size_t nchecks;
    int64_t now_ms;                                 /* wall clock, ms since the epoch */
} metrics_input_t;

/* Write the exposition of in to out and flush it: families in a fixed order, each with one
 * # HELP and one # TYPE line before its samples (a family with no sample is left out whole),
 * label values escaped, times in seconds with millisecond precision, a final newline.
 * in NULL means the coordinator did not answer: "barque_up 0" alone.
 *
 * Families (gauges; labels in braces):
 *   barque_up                                    1
 *   barque_cluster_info{cluster,site,wal_mode}   1
 *   barque_backup_last_success_timestamp_seconds{cluster}  stop of the newest DONE backup
 *   barque_backup_last_duration_seconds{cluster}           its duration
 *   barque_backup_last_size_bytes{cluster}                 its data_bytes
 *   barque_backup_last_stored_bytes{cluster}               its stored_bytes
 *   barque_backups{cluster,state}   backups per state: done, failed, started,
 *                                   waiting_for_wals, deleting (all five, 0 included)
 *   barque_backup_age_seconds{cluster}                     now - its stop (not below 0)
 *       (barque_backup_last_* and barque_backup_age_seconds are absent for a cluster
 *        with no DONE backup)
 *   barque_wal_last_archived_timestamp_seconds{cluster}    wal_last_ms (absent when 0)
 *   barque_wal_archive_gaps{cluster}                       wal_gaps
 *   barque_wal_stream_lag_bytes{cluster}   stream_received - stream_flushed, not below 0
 *                                          (absent when the cluster has no wal-stream job)
 *   barque_check_status{cluster}              0-3 (a value outside that range is 3)
 *   barque_check_timestamp_seconds{cluster}   (absent when never checked)
 *   barque_check_failed_items{cluster}
 *       (the check of a cluster is the newest of its in->checks entries and of the
 *        cluster's own check_status/check_ms/check_failed when check_ms is not 0; a cluster
 *        with neither is status 3 alone)
 *   barque_restore_test_last_timestamp_seconds{cluster}    rt_last_ms
 *   barque_restore_test_last_success{cluster}              rt_last_ok: 1 or 0
 *   barque_restore_test_last_success_timestamp_seconds{cluster}  rt_ok_ms (absent when 0)
 *   barque_restore_test_rto_seconds{cluster}   rt_ok_rto_ms: the last passed test's measured
 *                                              recovery time (absent when rt_ok_ms is 0)
 *   barque_restore_test_predicted_rto_seconds{cluster}     rt_predicted_ms (absent unless > 0;
 *                                                          shown for untested clusters too)
 *   barque_restore_test_status{cluster}  rt_severity, the "restore test" check item's 0-3 (a
 *                                        value outside that range is 3), every cluster
 *       (the other barque_restore_test_* are absent for a cluster never tested, rt_last_ms 0;
 *        the predicted RTO needs no test)
 *   barque_worker_online{worker,site}                      0 or 1
 *   barque_worker_store_free_bytes{worker,site}
 *   barque_worker_store_size_bytes{worker,site}            store_total
 *   barque_worker_jobs_running{worker,site}
 *   barque_worker_jobs_max{worker,site}
 *   barque_worker_last_seen_timestamp_seconds{worker,site} (absent when 0)
 * Clusters and workers come in input order; a name seen again is skipped, so no series is
 * written twice. Backups and checks of a cluster not in in->clusters are not shown.
 * Returns 0, or -1 when a write to out fails or memory runs out (what was written is then
 * incomplete). */
int metrics_write(FILE *out, const metrics_input_t *in);

/* Check that text is an exposition in the text format 0.0.4, strictly: every line is blank,
 * a comment, "# HELP name text", "# TYPE name counter|gauge|histogram|summary|untyped" or a
 * sample `name{label="value",...} value [timestamp]`; names well formed, label values
 * escaped (\\, \", \n only), help texts too (\\, \n) and not empty, no label name twice or
 * starting with "__", values floats (NaN, Inf, +Inf, -Inf too; no hexadecimal), timestamps
 * 64-bit integers; text ends with a newline. Families: HELP and TYPE at most once each and
 * before the family's samples; every sample's family has both; every HELP and TYPE has
 * samples; a family's lines are contiguous; no series (name and label set) twice. Returns 0,
 * or -1 with why ("line N: what is wrong"; N the first line found wrong, from 1). */
int metrics_parse_check(const char *text, char *why, size_t whylen);

#endif
