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
    BQ_JOB_BACKUP = 3,  /* a base backup of job.cluster into the worker's store (issue 4) */
    BQ_JOB_RESTORE = 4, /* a restore of job.backup_id to job.dest (issue 4) */
    BQ_JOB_LIST_FILES = 5, /* one page of the files of job.backup_id, from job.offset */
    BQ_JOB_DELETE = 6,     /* delete job.backup_id from the worker's store, then GC it */
    BQ_JOB_WAL_STREAM = 7, /* long-running: the cluster's WAL into the worker's store */
    BQ_JOB_SWITCH_WAL = 8, /* pg_switch_wal() on the cluster (CHECKPOINT first with force) */
    BQ_JOB_WAL_PRUNE = 9,  /* retention: the cluster's WAL before job.wal_keep_from, from the store */
    BQ_JOB_INVENTORY = 10, /* --rebuild-catalog: a page of what the store holds, from job.offset */
    BQ_JOB_KEEP = 11,      /* barque keep: the keep mark of job.backup_id in the store */
    BQ_JOB_RESTORE_TEST = 12, /* restore job.backup_id into scratch, start, replay, check, measure */
    BQ_JOB_REPLICATE = 13,     /* geo copy of job.backup_id from job.peer_worker's store */
    BQ_JOB_REPLICATE_WAL = 14, /* geo copy of the WAL files job.wal_names from job.peer_worker */
} bq_job_type_t;

/* States of a backup in the catalog (issue 4; WAITING_FOR_WALS comes with issue 5). */
typedef enum {
    BQ_BACKUP_NONE = 0,
    BQ_BACKUP_STARTED = 1,
    BQ_BACKUP_DONE = 2,
    BQ_BACKUP_FAILED = 3,
    BQ_BACKUP_WAITING_FOR_WALS = 4,
    BQ_BACKUP_DELETING = 5, /* delete jobs are removing it from its stores */
} bq_backup_state_t;

const char *bq_backup_state_name(bq_backup_state_t s); /* "STARTED", "DONE", ... "?" */

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
#define BQ_CHECK_ITEMS_MAX 32
#define BQ_SLOTS_MAX 512

/* Severity of a check item and of a whole check, as Nagios plugins exit. */
enum { BQ_SEV_OK = 0, BQ_SEV_WARNING = 1, BQ_SEV_CRITICAL = 2, BQ_SEV_UNKNOWN = 3 };
const char *bq_severity_name(int sev); /* "OK", "WARNING", "CRITICAL", "UNKNOWN" */

typedef struct {
    char name[BQ_NAME_MAX];
    int ok;                         /* severity == BQ_SEV_OK */
    char detail[BQ_DETAIL_MAX];
    int severity;                   /* BQ_SEV_* */
} bq_check_item_t;

typedef struct {
    char server_version[BQ_NAME_MAX];
    uint64_t system_identifier;
    char wal_level[32];
    char archive_mode[32];
    int max_wal_senders;
    char slots[BQ_SLOTS_MAX];   /* slot names joined by ',' */
    int can_replicate;
    int64_t receiver_lag;       /* bytes the receiver's flush is behind (-1 or 0 with no
                                   receiver checked: see receiver_lag_known) */
    int receiver_lag_known;
    size_t nitems;
    bq_check_item_t items[BQ_CHECK_ITEMS_MAX];
} bq_check_result_t;

#define BQ_BACKUP_ID_MAX 32  /* "YYYYMMDDTHHMMSS" and room; ids sort by time */

/* Nonzero when id is a backup id: exactly YYYYMMDDTHHMMSS (15 characters, digits around a
 * 'T', month 01-12, day 01-31, hour 00-23, minute and second 00-59). */
int bq_backup_id_valid(const char *id);
#define BQ_WAL_NAME_MAX 32   /* 24 hex digits and room */
#define BQ_WAL_FILE_MAX 40   /* a WAL file name with its suffix: 24 hex digits ".partial" */
#define BQ_STORES_MAX 256    /* worker names joined by ',' */
#define BQ_DEST_MAX 1024     /* a restore's target directory */

/* Nonzero when name is the name of a WAL file a wal-stream job archives: a segment (24
 * uppercase hex digits), a segment cut short by the end of its timeline (the same and
 * ".partial") or a timeline history file (8 uppercase hex digits and ".history"); the
 * timeline (the first 8 digits) is never 0. store/wal.h accepts more (.backup files). */
int bq_wal_name_valid(const char *name);
/* A segment's name (24 uppercase hex digits, timeline not 0): 0 and its timeline and the two
 * halves of its number ("hi", "lo"), else -1. */
int bq_wal_segment_parse(const char *name, uint32_t *tli, uint32_t *hi, uint32_t *lo);

/* One archived WAL file in the coordinator's WAL index (catalog db "wal"). */
typedef struct {
    char cluster[BQ_NAME_MAX];
    char name[BQ_WAL_FILE_MAX];     /* bq_wal_name_valid */
    uint64_t size;                  /* bytes as archived (uncompressed) */
    char stores[BQ_STORES_MAX];     /* workers whose store holds it, joined by ',' */
    int64_t archived_ms;            /* when the coordinator first heard of it (wall clock) */
} bq_wal_file_t;

/* One timeline of a cluster's WAL index, as list-wal shows it (coordinator/wal_summary.h). */
#define BQ_WAL_GAPS_MAX 33      /* 32 ranges, then "... N more missing segments" */
#define BQ_WAL_GAP_MAX 64       /* "FIRST-LAST" (49 characters) or that last line */
#define BQ_WAL_PARTIALS_MAX 33  /* 32 names, then "... N more partials" */
typedef struct {
    uint32_t tli;
    char first[BQ_WAL_FILE_MAX];    /* first and last complete segment ("" = none) */
    char last[BQ_WAL_FILE_MAX];
    uint64_t segments;              /* complete segments */
    uint64_t bytes;                 /* their bytes */
    size_t ngaps;
    char gaps[BQ_WAL_GAPS_MAX][BQ_WAL_GAP_MAX]; /* missing between first and last: "A-B", "A" */
    int history;                    /* TLI.history is recorded */
    size_t npartials;
    char partials[BQ_WAL_PARTIALS_MAX][BQ_WAL_FILE_MAX]; /* NAME.partial files */
} bq_wal_timeline_t;

/* Point-in-time recovery settings of a restore (barque recover --target-*, issue 5). */
#define BQ_TARGET_VALUE_MAX 128
typedef struct {
    int enabled;                    /* write recovery.signal/standby.signal and the settings */
    char kind[12];                  /* "", "time", "xid", "lsn", "name", "immediate" */
    char value[BQ_TARGET_VALUE_MAX]; /* recovery_target_<kind>'s value, as written */
    int64_t time_ms;                /* time: ms since the epoch */
    uint64_t lsn;                   /* lsn */
    char tli[16];                   /* "", "current", "latest" or a decimal timeline */
    char action[12];                /* "", "pause", "promote", "shutdown" */
    int exclusive;                  /* recovery_target_inclusive = off */
    int standby;                    /* standby.signal */
} bq_recovery_t;

/* 0 when r is well formed (known kind, action and timeline; a value with no quote, backslash
 * or control character, so it can be written between single quotes), else -1 with why. */
int bq_recovery_valid(const bq_recovery_t *r, char *why, size_t whylen);

/* Geo copies (issue 8). */
#define BQ_COPIES_MAX 4        /* copies of one backup at other sites (BQ_REPLICA_SITES_MAX) */
#define BQ_WAL_NAMES_MAX 128   /* WAL files in one replicate-wal job */
#define BQ_WAL_LIST_MAX (BQ_WAL_NAMES_MAX * (BQ_WAL_FILE_MAX - 15))
typedef enum {
    BQ_COPY_NONE = 0,
    BQ_COPY_QUEUED = 1,
    BQ_COPY_COPYING = 2,
    BQ_COPY_WAITING_FOR_WALS = 3,
    BQ_COPY_DONE = 4,
    BQ_COPY_FAILED = 5,
    BQ_COPY_DELETED = 6, /* removed from the site's stores by its retention: not copied again */
} bq_copy_state_t;
const char *bq_copy_state_name(bq_copy_state_t s); /* "QUEUED", ... "?" */
/* What a replicate or replicate-wal job did (one attempt). */
typedef struct {
    char peer_worker[BQ_NAME_MAX];
    uint64_t chunks_total, chunks_present, chunks_fetched, bytes_fetched, chunks_refetched;
    uint64_t file_bytes;
    int64_t duration_ms;
    uint32_t streams;
    uint64_t wal_files, wal_bytes, wal_missing;
} bq_replicate_result_t;
/* A backup's copy at another site (Backup.copies). */
typedef struct {
    char site[BQ_NAME_MAX];
    bq_copy_state_t state;
    char worker[BQ_NAME_MAX];       /* whose store holds (takes) it */
    char source[BQ_NAME_MAX];       /* the worker it is copied from */
    uint64_t job_id;
    int64_t queued_ms, done_ms, duration_ms;
    uint64_t chunks_total, chunks_present, chunks_fetched, bytes_fetched, chunks_refetched;
    uint32_t attempts;
    uint64_t counted;               /* bit N-1: attempt N's figures are in the sums */
    char error[BQ_DETAIL_MAX];
} bq_copy_t;
/* Per cluster and replicate_to site (status, check, metrics). */
typedef struct {
    char site[BQ_NAME_MAX];
    uint32_t copies_done, copies_behind, copies_failed;
    uint64_t wal_missing, wal_lag_bytes;
    char wal_last[BQ_WAL_FILE_MAX];
    int64_t wal_last_ms, last_copy_ms;
    char last_copy_backup[BQ_BACKUP_ID_MAX];
    char error[BQ_DETAIL_MAX];
} bq_replica_status_t;

/* What the catalog keeps per backup (issue 4). Sizes in bytes, times in ms since the epoch
 * (wall clock), LSNs as 64-bit integers (print as X/X). */
typedef struct {
    char id[BQ_BACKUP_ID_MAX];      /* YYYYMMDDTHHMMSS (UTC) */
    char cluster[BQ_NAME_MAX];
    bq_backup_state_t state;
    uint64_t job_id;                /* the job (and attempt) that took it */
    uint32_t attempt;
    char worker[BQ_NAME_MAX];       /* the worker that took it */
    char site[BQ_NAME_MAX];
    char stores[BQ_STORES_MAX];     /* workers whose store holds it, joined by ',' */
    uint64_t system_identifier;
    uint32_t pg_version;            /* server_version_num, e.g. 150004 */
    uint32_t timeline;
    uint64_t start_lsn, stop_lsn;
    int64_t start_ms, stop_ms;      /* the backup's start and end (its job's run) */
    char wal_begin[BQ_WAL_NAME_MAX];  /* first and last WAL segment it needs */
    char wal_end[BQ_WAL_NAME_MAX];
    uint64_t data_bytes;            /* logical bytes of the files (and WAL) backed up */
    uint64_t stored_bytes;          /* pack bytes this backup added to the store */
    uint64_t dedup_bytes;           /* plaintext bytes found already stored */
    uint64_t files;
    int64_t duration_ms;
    uint64_t checksum_failures;     /* page checksum failures the server reported */
    char checksum_detail[BQ_DETAIL_MAX]; /* the first few: "base/5/16384 block 3, ..." */
    char error[BQ_TEXT_MAX];        /* FAILED: why */
    char delta_from[BQ_BACKUP_ID_MAX]; /* the base of its deltas ("" = none) */
    uint64_t delta_bytes;           /* of stored_bytes: pack bytes of chunks stored as deltas */
    uint64_t delta_chunks;          /* chunks stored as deltas */
    int keep;                       /* barque keep: 0 none, 1 full, 2 standalone */
    char retention[20];             /* replies only: VALID, OBSOLETE, KEEP:FULL, ... or "-" */
    size_t ncopies;                 /* copies at other sites (issue 8) */
    bq_copy_t copies[BQ_COPIES_MAX];
} bq_backup_t;

/* What a restore did (issue 4): the figures its result carries. */
typedef struct {
    uint64_t files_written;   /* files written (all of them, or under --delta those that differed) */
    uint64_t files_unchanged; /* --delta: files already right, not rewritten */
    uint64_t files_removed;   /* --delta: files and directories the backup does not have */
    uint64_t bytes;           /* bytes of the files in the backup (written or found right) */
    int64_t duration_ms;
    char peer_worker[BQ_NAME_MAX]; /* the worker whose store it was read from ("" = its own) */
    uint64_t peer_bytes;      /* bytes received from that worker (sealed chunks and files) */
    char source_failed[BQ_NAME_MAX]; /* a failed attempt: the worker whose store could not give
                                        what it needed (a damaged or unreadable chunk, its data
                                        port gone); the next attempt reads another store */
} bq_restore_result_t;

/* One file of a backup, as list-files shows it. path is owned by the list it is in: free a
 * list with bq_files_free. */
typedef struct {
    char *path;      /* relative to the restored data directory (PG_VERSION, pg_wal/NAME) */
    uint32_t mode;   /* type and permission bits: S_IFREG | 0600, S_IFDIR | 0700, ... */
    uint64_t size;
    int64_t mtime;   /* seconds since the epoch */
} bq_file_entry_t;

#define BQ_FILE_PATH_MAX 4352          /* a file's path, bytes with the NUL */
#define BQ_FILES_PAGE_MAX 5000          /* list-files: files per page, at most */
#define BQ_FILES_PAGE_BYTES (2u << 20)  /* and path bytes per page, at most (the wire's
                                           limit is 4 MiB) */

/* Free n entries' paths and the array. Accepts NULL. */
void bq_files_free(bq_file_entry_t *files, size_t n);

/* What a wal-prune job removed from its worker's store. */
typedef struct {
    uint64_t files_removed;
    uint64_t bytes_removed;
} bq_prune_result_t;

/* What a delete job did on its worker's store. */
typedef struct {
    int was_absent;                 /* the store no longer had the backup */
    int gc_run;                     /* GC ran after the delete */
    char gc_note[BQ_DETAIL_MAX];    /* why GC did not run, or failed ("" when it ran) */
    uint64_t chunks_removed;
    uint64_t bytes_reclaimed;
} bq_delete_result_t;

/* restore-test (issue 7): what the worker checks, and the backup's figures (set at offer). */
#define BQ_RT_SQL_MAX 4096
typedef struct {
    char kind[12];                  /* "scheduled", "manual", "drill" */
    int amcheck;                    /* pg_amcheck (heap and btree) on every database */
    char sql[BQ_RT_SQL_MAX];        /* restore_test_sql's text ("" = none): must return true */
    char sql_file[BQ_DEST_MAX];     /* its file, for messages */
    int64_t timeout_ms;             /* restore_test_timeout */
    char wal_end[BQ_WAL_NAME_MAX];  /* the newest complete segment in the WAL index ("" = none):
                                       with no target, replay must reach it */
    uint64_t system_identifier;     /* the backup's */
    uint64_t start_lsn, stop_lsn;   /* the backup's */
    uint64_t data_bytes;            /* the backup's logical bytes: the space it needs */
    uint32_t pg_version;            /* server_version_num (which binaries start it) */
    char dbname[BQ_NAME_MAX];       /* the database of the cluster's conninfo ("" = postgres) */
    char from_site[BQ_NAME_MAX];    /* --from-site: read the backup from a store at this site */
    int64_t predicted_ms;           /* status's prediction for this test at offer (0 = none) */
} bq_rt_spec_t;

/* A restore test: what a restore-test job measured (its result; the catalog's restore_tests
 * record, key cluster NUL job id; restore-tests rows). Times in ms (wall clock for _ms
 * instants, durations otherwise). */
#define BQ_RT_CHECKS_MAX 16
typedef struct {
    char cluster[BQ_NAME_MAX];
    uint64_t job_id;
    uint32_t attempt;
    char backup_id[BQ_BACKUP_ID_MAX];
    char kind[12];                  /* "scheduled", "manual", "drill" */
    char worker[BQ_NAME_MAX];       /* the worker that ran it */
    char site[BQ_NAME_MAX];
    char read_from[BQ_NAME_MAX];    /* the worker whose store it read ("" = its own) */
    int ok;                         /* restored, recovered, answered, every check passed */
    char error[BQ_TEXT_MAX];        /* failed: the first failure */
    char target[BQ_TARGET_VALUE_MAX + 16]; /* "latest WAL", "time ...", "immediate" */
    int64_t started_ms, finished_ms;
    uint64_t reached_lsn;           /* pg_last_wal_replay_lsn() at the end of recovery */
    int64_t reached_ms;             /* pg_last_xact_replay_timestamp() (0 = none) */
    uint64_t wal_segments;          /* segments replayed: the backup's start to reached_lsn */
    uint64_t wal_bytes;             /* WAL replayed after the backup's end */
    uint64_t bytes;                 /* bytes restored */
    int64_t fetch_ms;               /* fetch and write the data (the restore) */
    int64_t start_ms;               /* server start to consistent */
    int64_t replay_ms;              /* consistent to the end of recovery */
    int64_t rto_ms;                 /* job start to a server answering queries: measured RTO */
    int64_t check_ms;               /* the checks after that */
    size_t nchecks;
    bq_check_item_t checks[BQ_RT_CHECKS_MAX];
    int64_t predicted_ms;           /* what status predicted for it at its start (0 = none) */
} bq_restore_test_t;

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
    /* backup and restore jobs (issue 4) */
    char backup_id[BQ_BACKUP_ID_MAX]; /* backup: the id this attempt writes (set at offer);
                                         restore: the backup to restore */
    char checkpoint[8];               /* backup: "fast" or "spread" ("" = fast) */
    char dest[BQ_DEST_MAX];           /* restore: the target directory */
    char tablespaces[BQ_TEXT_MAX];    /* restore: "NAME:PATH" relocations, joined by '\n' */
    char owner[BQ_NAME_MAX];          /* restore: owner of the files ("": DEST's parent's) */
    int delta;                        /* restore: rewrite only what differs */
    char pin_worker[BQ_NAME_MAX];     /* only this worker may run it ("" = any of the site) */
    int has_restore;                  /* restore: what the last attempt wrote */
    bq_recovery_t recovery;           /* restore: point-in-time recovery (enabled = 0: none) */
    bq_restore_result_t restore;
    uint64_t offset;                  /* list-files: the first file of the page */
    int has_delete;                   /* delete: what the last attempt did */
    bq_delete_result_t del;
    /* restore from another worker's store (filled by the coordinator at each offer) */
    char peer_worker[BQ_NAME_MAX];       /* the holder ("" = the restoring worker's store) */
    char peer_endpoint[BQ_ENDPOINT_MAX]; /* its data endpoint */
    char peer_public_key[48];            /* its CURVE public key, Z85 (40 characters) */
    /* backup: a DONE backup of the same cluster that the worker's store holds; new chunks
     * may be stored as deltas against its chunks ("" = none; set by the coordinator at
     * each offer; a valid backup id when set) */
    char delta_from[BQ_BACKUP_ID_MAX];
    int synchronous; /* wal-stream: a synchronous standby (barque_<cluster>) */
    int force;       /* switch-wal: CHECKPOINT first */
    int wal_stream;  /* check: wal = stream (the receiver is checked too) */
    char wal_file[BQ_WAL_NAME_MAX]; /* switch-wal: the segment it closed ("" until it ran) */
    /* hooks (issue 6): backup pre/post_backup, restore pre/post_recover, wal-stream post_wal */
    char pre_script[BQ_HOOK_MAX];
    char post_script[BQ_HOOK_MAX];
    int64_t hook_timeout_ms;
    uint32_t hook_retries;
    int64_t hook_retry_sleep_ms;
    char hook_note[BQ_DETAIL_MAX];    /* the post hook's outcome when not 0 (from the result) */
    /* wal-prune: retention_wal_prunable's inputs */
    char wal_keep_from[BQ_WAL_NAME_MAX];
    char wal_keep_ranges[BQ_TEXT_MAX]; /* "BEGIN-END" of each standalone backup, joined by ',' */
    int has_prune;
    bq_prune_result_t prune;
    int keep;                         /* keep: 0 release, 1 full, 2 standalone */
    bq_rt_spec_t rt;                  /* restore-test: what to check (set at offer) */
    char progress_message[BQ_DETAIL_MAX]; /* the last progress report's message (its phase) */
    /* replicate, replicate-wal (issue 8) */
    uint64_t bandwidth_limit;         /* bytes/s it may receive (0 = no limit) */
    char wal_names[BQ_WAL_LIST_MAX];  /* replicate-wal: the files, joined by ',' */
    int has_replicate;
    bq_replicate_result_t rep;        /* what the last attempt did */
} bq_job_t;

typedef struct {
    char name[BQ_NAME_MAX];
    char site[BQ_NAME_MAX];
    char version[32];
    uint64_t store_free, store_total;
    uint32_t running, max_jobs;
    int64_t registered_ms, last_seen_ms;
    int online;
    char data_endpoint[BQ_ENDPOINT_MAX]; /* where peers reach its store ("" = none) */
    char public_key[BQ_Z85_KEY_LEN + 1]; /* wal-target/wal-source replies only ("" = none) */
    uint64_t scratch_free, scratch_total; /* its scratch directory (0/0 = none) */
} bq_worker_t;

typedef struct {
    char name[BQ_NAME_MAX];
    char site[BQ_NAME_MAX];
    char conninfo[BQ_CONNINFO_MAX];
    uint64_t system_identifier;
    /* status replies only */
    char wal_mode[8];                /* "stream", "archive" */
    char wal_last[BQ_WAL_FILE_MAX];  /* the newest file in the WAL index ("" = none) */
    int64_t wal_last_ms;
    uint32_t wal_gaps;               /* ranges of segments missing in the index */
    char stream_state[16];           /* the wal-stream job's state ("" = none) */
    char stream_worker[BQ_NAME_MAX];
    uint64_t stream_flushed, stream_received;
    int check_status;                /* the last check: BQ_SEV_* (metrics) */
    int64_t check_ms;                /* when it ended (0 = never) */
    uint32_t check_failed;           /* its items not OK */
    /* restore tests (status and metrics replies) */
    int64_t rt_last_ms;              /* the last finished test's end (0 = never tested) */
    int rt_last_ok;
    char rt_last_backup[BQ_BACKUP_ID_MAX];
    char rt_last_error[BQ_DETAIL_MAX];
    int64_t rt_ok_ms;                /* the last successful test's end (0 = none) */
    char rt_ok_backup[BQ_BACKUP_ID_MAX];
    int64_t rt_ok_rto_ms;            /* its measured recovery time */
    int64_t rt_predicted_ms;         /* predicted recovery time of a restore now (0 = unknown) */
    char rt_predicted_detail[BQ_DETAIL_MAX];
    int rt_severity;                 /* the "restore test" check item's severity */
    size_t nreplicas;                /* per replicate_to site (status, metrics) */
    bq_replica_status_t replicas[BQ_COPIES_MAX];
} bq_cluster_t;

/* barque schedule: one cluster's row (the reply of "schedule"). */
typedef struct {
    char cluster[BQ_NAME_MAX];
    char site[BQ_NAME_MAX];
    char schedule[64];
    int64_t last_slot_ms, next_ms;
    int due;
    char why[BQ_DETAIL_MAX];
    char last_backup[64];
    char retention[64];
} bq_schedule_row_t;

typedef struct {
    uint64_t job_id;
    uint32_t attempt;
} bq_job_ref_t;

#endif
