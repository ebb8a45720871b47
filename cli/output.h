/* Rendering of coordinator replies for people (aligned text) and programs (JSON via jansson). */
#ifndef BQ_CLI_OUTPUT_H
#define BQ_CLI_OUTPUT_H

#include "proto.h"

#include <jansson.h>
#include <stdio.h>

/* JSON values of the domain types; the caller owns the returned reference. */
json_t *out_job_json(const bq_job_t *j);
/* What a delete job did: was_absent, gc_run, chunks_removed, bytes_reclaimed, gc_note. */
json_t *out_delete_json(const bq_delete_result_t *d);
/* One file of list-files: {path, type (file, directory, symlink, other), mode ("0600"), size,
 * mtime (epoch seconds), modified (the same as text)}; as text, an ls -l like line:
 * "-rw-------            3 2024-05-01 12:00:00 PG_VERSION". */
json_t *out_file_json(const bq_file_entry_t *f);
void out_file_text(FILE *out, const bq_file_entry_t *f);
json_t *out_worker_json(const bq_worker_t *w);
json_t *out_cluster_json(const bq_cluster_t *c);
json_t *out_check_json(const bq_check_result_t *r);
json_t *out_backup_json(const bq_backup_t *b);
/* The sites holding a verified copy of b (where it was taken, then DONE copies), joined by ','. */
const char *out_backup_sites(const bq_backup_t *b, char *buf, size_t len);

/* Print v (stolen) as indented JSON with a final newline. */
void out_json_print(FILE *f, json_t *v);
/* Print v (stolen) as one line of JSON (an event of a stream), and flush. */
void out_json_line(FILE *f, json_t *v);

/* Text renderings. */
void out_workers_text(FILE *f, const bq_msg_cli_reply_t *r);
void out_clusters_text(FILE *f, const bq_msg_cli_reply_t *r);
void out_jobs_text(FILE *f, const bq_msg_cli_reply_t *r);
void out_job_text(FILE *f, const bq_job_t *j);
/* status: per cluster a second line "    restore test: never run" | "last passed TIME (backup
 * ID, RTO D)" | "last FAILED TIME (backup ID): ERROR[; last passed ...]", then "; predicted
 * recovery now D (DETAIL)" when rt_predicted_ms > 0; --json: each cluster's "restore_test"
 * {status, severity, last {finished, finished_ms, ok, backup_id, error} | null, last_passed
 * {finished, finished_ms, backup_id, rto_ms} | null, predicted_ms, predicted_detail}. */
void out_status_text(FILE *f, const char *coordinator, const bq_msg_cli_reply_t *r);
json_t *out_status_json(const char *coordinator, const bq_msg_cli_reply_t *r);
/* One line per check item: "  connection        OK      reason". */
void out_check_text(FILE *f, const char *cluster, const bq_job_t *j);

/* list-backups: a table, newest first (r->backups is oldest first). */
void out_backups_text(FILE *f, const char *cluster, const bq_msg_cli_reply_t *r);
/* show-backup: everything the catalog holds about one backup. */
void out_backup_text(FILE *f, const bq_backup_t *b);
/* list-wal: {timeline, first, last (null when none), segments, bytes, gaps [...], history,
 * partials [...]} per timeline; as text, a table TIMELINE FIRST LAST SEGMENTS SIZE GAPS (the
 * number of missing ranges, "32+" when there are more), then one line per missing range,
 * history and partial file, or "(no WAL archived for cluster C)". */
json_t *out_wal_timeline_json(const bq_wal_timeline_t *t);
void out_wal_text(FILE *f, const char *cluster, const bq_msg_cli_reply_t *r);

/* Restore tests (issue 7). JSON: every field of the record; instants as ISO-8601 UTC strings
 * (started, finished, reached: null when 0) and as numbers (started_ms, ...); durations in
 * ms (fetch_ms, start_ms, replay_ms, rto_ms, check_ms; predicted_ms null when 0); LSNs as
 * "X/X" (reached_lsn, null when 0); result PASSED/FAILED; checks [{name, ok, status, detail}]. */
json_t *out_rtest_json(const bq_restore_test_t *t);
/* restore-tests: a table newest first (r->rtests is oldest first): JOB BACKUP KIND RESULT
 * FINISHED RTO FETCH START REPLAY WAL BYTES TARGET REACHED, a failed test's error on the line
 * after it ("    error: ..."); "(no restore tests for cluster C)" when there is none. */
void out_rtests_text(FILE *f, const char *cluster, const bq_msg_cli_reply_t *r);
/* One test in detail: a header "restore test job N of cluster C (KIND): PASSED|FAILED", then
 * each figure on a line of its own, then each check item "  OK  name: detail" or
 * "  CRITICAL name: detail". */
void out_rtest_text(FILE *f, const bq_restore_test_t *t);
/* show-backup's "Last restore test:" block (result, finished, RTO, job, error when failed);
 * t NULL: "Last restore test: never". */
void out_rtest_last_text(FILE *f, const bq_restore_test_t *t);

/* "12.3 GiB" */
char *out_bytes(uint64_t n, char *buf, size_t len);
/* An LSN as PostgreSQL writes it: "16/B374D848" (upper and lower 32 bits in hex). */
char *out_lsn(uint64_t lsn, char *buf, size_t len);
/* "4.2 s", "12m05s", "3h02m10s" */
char *out_duration(int64_t ms, char *buf, size_t len);
/* server_version_num as "15.4" ("-" for 0). */
char *out_pg_version(uint32_t v, char *buf, size_t len);

#endif
