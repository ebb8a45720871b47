/* Barque's domain values (jobs, workers, clusters, check results): plain C structs with
 * bounded strings, shared by the catalog, the wire codec (proto/) and the job runners.
 * No pointers inside, so they copy with '='. */
#ifndef BQ_TYPES_H
#define BQ_TYPES_H

#include "config.h"

#include <stddef.h>
#include <stdint.h>

typedef enum {
    BQ_JOB_TYPE_NONE = 0,
    BQ_JOB_CHECK = 1,
    BQ_JOB_SLEEP = 2,
} bq_job_type_t;

typedef enum {
    BQ_JOB_NONE = 0,
    BQ_JOB_QUEUED = 1,
    BQ_JOB_ASSIGNED = 2,
    BQ_JOB_RUNNING = 3,
    BQ_JOB_SUCCEEDED = 4,
    BQ_JOB_FAILED = 5,
    BQ_JOB_CANCELLED = 6,
} bq_job_state_t;

const char *bq_job_type_name(bq_job_type_t t);    /* "check", "sleep", "?" */
const char *bq_job_state_name(bq_job_state_t s);  /* "QUEUED", ... */
int bq_job_state_terminal(bq_job_state_t s);      /* SUCCEEDED, FAILED, CANCELLED */

#define BQ_DETAIL_MAX 256
#define BQ_TEXT_MAX 1024
#define BQ_CHECK_ITEMS_MAX 24
#define BQ_SLOTS_MAX 512

typedef struct {
    char name[BQ_NAME_MAX];
    int ok;
    char detail[BQ_DETAIL_MAX];
} bq_check_item_t;

typedef struct {
    char server_version[BQ_NAME_MAX];
    uint64_t system_identifier;
    char wal_level[32];
    char archive_mode[32];
    int max_wal_senders;
    char slots[BQ_SLOTS_MAX];   /* slot names joined by ',' */
    int can_replicate;
    size_t nitems;
    bq_check_item_t items[BQ_CHECK_ITEMS_MAX];
} bq_check_result_t;

typedef struct {
    uint64_t id;
    bq_job_type_t type;
    bq_job_state_t state;
    char cluster[BQ_NAME_MAX];
    char site[BQ_NAME_MAX];
    char worker[BQ_NAME_MAX];
    uint32_t attempt;
    uint32_t max_attempts;
    int64_t created_ms, updated_ms, started_ms, finished_ms; /* wall clock */
    int64_t next_attempt_ms;                                 /* wall clock; 0 = now */
    uint64_t progress_done, progress_total;
    char error[BQ_TEXT_MAX];
    char conninfo[BQ_CONNINFO_MAX];
    int64_t sleep_ms;
    int has_check;
    bq_check_result_t check;
    int cancel_requested;
} bq_job_t;

typedef struct {
    char name[BQ_NAME_MAX];
    char site[BQ_NAME_MAX];
    char version[32];
    uint64_t store_free, store_total;
    uint32_t running, max_jobs;
    int64_t registered_ms, last_seen_ms;
    int online;
} bq_worker_t;

typedef struct {
    char name[BQ_NAME_MAX];
    char site[BQ_NAME_MAX];
    char conninfo[BQ_CONNINFO_MAX];
    uint64_t system_identifier;
} bq_cluster_t;

typedef struct {
    uint64_t job_id;
    uint32_t attempt;
} bq_job_ref_t;

#endif
