/* The PostgreSQL side of a base backup: a BASE_BACKUP client and a WAL fetcher over libpq's
 * replication protocol. Knows nothing of ZeroMQ or the store: what arrives goes to callbacks,
 * as it arrives, so memory stays bounded whatever the size of the cluster.
 *
 * Protocol (PostgreSQL 15, "Streaming Replication Protocol", BASE_BACKUP)
 * ----------------------------------------------------------------------
 * pg_basebackup_run connects with replication=database (the keyword is added to libpq's keyword
 * arrays after the caller's conninfo, which libpq expands: no string concatenation), refuses a
 * server older than 15, runs IDENTIFY_SYSTEM and SHOW wal_segment_size, then
 *
 *   BASE_BACKUP (LABEL '...', PROGRESS, CHECKPOINT 'fast'|'spread', WAIT false,
 *                MANIFEST 'yes', MANIFEST_CHECKSUMS 'CRC32C', TARGET 'client'
 *                [, TABLESPACE_MAP] [, VERIFY_CHECKSUMS false] [, MAX_RATE n])
 *
 * TARGET 'client' selects the single-COPY protocol of 15 (without it a 15 server still uses the
 * old one COPY-per-tablespace protocol). The server answers with
 *   1. a result set of one row: start LSN, timeline;
 *   2. a result set of one row per tablespace: oid, location, size in kB (PROGRESS); the main
 *      data directory is the row with NULL oid and location;
 *   3. one CopyOutResponse whose CopyData messages start with a type byte:
 *        'n' name\0 location\0   a new archive ("base.tar", location "", or "OID.tar")
 *        'd' bytes               data of the current archive, or of the manifest after 'm'
 *        'p' int64               progress: archive bytes the server has sent so far
 *        'm'                     the backup_manifest follows (after the last archive)
 *      Each archive is a tar stream that 15 ends with its two zero blocks (pg/tar.h parses it);
 *   4. a result set of one row: stop LSN, timeline;
 *   5. when the server found page checksum failures, an ERROR with SQLSTATE XX001 after (4).
 * Other type bytes, archives the tablespace list did not announce, a second archive for the same
 * tablespace, data outside an archive or manifest, and results of an unexpected shape are refused
 * (BQ_E_PROTO). The decoder of step 3 is pg_bb_stream_*, usable (and fuzzed) without a server.
 *
 * Page checksum failures: the server reports each (up to 5 per file) as a WARNING notice
 * "checksum verification failed in file "F", block B: calculated X but expected Y", then a total
 * per file and overall, and ends the backup with the XX001 error. A notice receiver counts and
 * lists them (at most PG_BB_FAILURES_MAX); end->checksum_failures is the larger of the blocks
 * listed and the server's total (at least 1 after XX001, even if the messages were translated).
 * Such a backup is complete (the end callback runs) but pg_basebackup_run returns BQ_E_PG.
 *
 * WAL
 * ---
 * A base backup is only restorable with the WAL from its start to its stop LSN. The backup does
 * not carry it (no WAL option: the WAL goes through the same path as all other WAL, as segments).
 * pg_wal_open opens a second, physical replication connection and creates a TEMPORARY physical
 * slot with RESERVE_WAL on it. RESERVE_WAL of a physical slot starts at the redo pointer of the
 * last checkpoint, which is at or before the start LSN of any backup that starts afterwards, so:
 *
 *     pg_wal_open(conninfo, &opts, &w, e);           -- slot created: WAL kept from here on
 *     pg_basebackup_run(conninfo, ...);              -- on its own connection; note start/stop
 *     pg_wal_fetch_range(w, start, stop, tli, ...);  -- START_REPLICATION SLOT s PHYSICAL ...
 *     pg_wal_close(&w);                              -- the slot goes with the connection
 *
 * keeps every segment the backup needs on the server until it has been fetched. A temporary slot
 * lives as long as its connection: if the process dies, the server drops it (nothing leaks), and
 * the WAL connection must stay open for the whole backup. While it is open the server keeps WAL
 * (pg_wal grows by the WAL written during the backup; max_slot_wal_keep_size can invalidate the
 * slot, which pg_wal_fetch_range then reports). pg_wal_fetch_range streams from the start of the
 * segment holding start_lsn through the end of the segment holding stop_lsn and hands each
 * complete segment (name, then its bytes in pieces, then its end) to the callbacks; on a primary
 * the server switches segments at the end of the backup, so the last one completes at once. It
 * sends standby status updates (flush = end of the last segment the callbacks accepted) so the
 * slot advances. A backup taken from a standby may wait for its last segment until the stall
 * timeout (BQ_E_TIMEOUT): not supported yet. pg_basebackup's -X stream does the same in parallel;
 * doing it afterwards keeps one connection busy at a time at the cost of WAL kept on the server.
 *
 * Limits and time
 * ---------------
 * Every wait is bounded: connect_timeout (libpq, added when the conninfo has none), start_timeout
 * for the checkpoint before the first result, stall_timeout between two messages of the COPY
 * stream (WAL: between two WAL bytes, keepalives do not count), and should_stop is polled at
 * least once a second (BQ_E_CANCELLED). At most PG_BB_TABLESPACES_MAX tablespaces, locations of
 * fewer than PG_BB_LOCATION_MAX bytes, one CopyData message is what libpq holds (the server sends
 * at most 32 KiB; WAL messages at most 128 KiB).
 *
 * Errors: BQ_E_INVAL (bad conninfo or options), BQ_E_PERM (role without REPLICATION, the
 * server's message kept), BQ_E_AUTH (authentication refused), BQ_E_PG (server unreachable or any
 * other server error, naming host:port), BQ_E_VERSION (server older than 15), BQ_E_TIMEOUT,
 * BQ_E_CANCELLED, BQ_E_PROTO (the server sent something malformed), BQ_E_NOMEM; or what a
 * callback returned. */
#ifndef BQ_PG_BASEBACKUP_H
#define BQ_PG_BASEBACKUP_H

#include "err.h"
#include "tar.h"

#include <stddef.h>
#include <stdint.h>

#define PG_BB_TABLESPACES_MAX 256
#define PG_BB_LOCATION_MAX 1024
#define PG_BB_FAILURES_MAX 32
#define PG_BB_LABEL_MAX 255
#define PG_WAL_NAME_LEN 24 /* "000000010000000000000001" */

/* ---- LSNs and WAL file names ---- */

/* Parse "16/B374D848" (1-8 hex digits each side); 0 or BQ_E_INVAL. */
int pg_lsn_parse(const char *s, uint64_t *out);
/* Format as "16/B374D848" into buf (at least 18 bytes); returns buf. */
char *pg_lsn_format(uint64_t lsn, char *buf, size_t size);
/* The WAL file name of segment segno on timeline tli: "TTTTTTTTXXXXXXXXYYYYYYYY" into buf
 * (at least 25 bytes). seg_size must be a power of two from 1 MiB to 1 GiB. */
void pg_wal_file_name(uint32_t tli, uint64_t segno, uint32_t seg_size, char *buf, size_t size);
/* Parse SHOW wal_segment_size's value ("16MB", "1GB", "1048576kB"); 0 or BQ_E_PROTO. */
int pg_wal_seg_size_parse(const char *s, uint32_t *out);

/* ---- Base backup ---- */

typedef struct {
    uint32_t oid;                        /* 0 for the main data directory */
    char location[PG_BB_LOCATION_MAX];   /* "" for the main data directory */
    int64_t size_estimate;               /* bytes; -1 when the server gave none */
} pg_bb_tablespace_t;

typedef struct {
    uint64_t start_lsn;
    uint32_t timeline;
    uint64_t system_identifier;
    int server_version;                  /* PQserverVersion() form: 150004 */
    uint32_t wal_segment_size;
    size_t ntablespaces;                 /* the main data directory included, last */
    const pg_bb_tablespace_t *tablespaces;
    int64_t total_estimate;              /* bytes; -1 when unknown */
} pg_bb_start_t;

typedef struct {
    char file[256];                      /* as the server names it ("./base/5/16384"), cut */
    uint32_t block;
} pg_bb_failure_t;

typedef struct {
    uint64_t stop_lsn;
    uint32_t timeline;
    uint64_t archive_bytes;              /* tar bytes received, all archives */
    uint64_t manifest_bytes;
    uint64_t checksum_failures;          /* 0 for a clean backup */
    size_t nfailures;                    /* listed below, at most PG_BB_FAILURES_MAX */
    pg_bb_failure_t failures[PG_BB_FAILURES_MAX];
} pg_bb_end_t;

/* Every callback may be NULL; each returns 0 or a negative BQ_E_* code (with e filled), which
 * stops the backup (the connection is closed, so the server aborts it) and is returned. Pointers
 * passed in are valid during the call only. */
typedef struct {
    int (*start)(void *arg, const pg_bb_start_t *start, bq_errbuf_t *e);
    int (*archive_begin)(void *arg, const pg_bb_tablespace_t *ts, const char *archive_name,
                         bq_errbuf_t *e);
    /* Entries of the current archive; paths relative to its root (pg/tar.h). */
    int (*file_begin)(void *arg, const pg_tar_entry_t *entry, bq_errbuf_t *e);
    int (*file_data)(void *arg, const uint8_t *buf, size_t len, bq_errbuf_t *e);
    int (*file_end)(void *arg, bq_errbuf_t *e);
    int (*archive_end)(void *arg, const pg_bb_tablespace_t *ts, bq_errbuf_t *e);
    int (*progress)(void *arg, uint64_t done, int64_t total_estimate, bq_errbuf_t *e);
    /* The server's backup_manifest, in pieces, after the last archive. */
    int (*manifest_data)(void *arg, const uint8_t *buf, size_t len, bq_errbuf_t *e);
    int (*end)(void *arg, const pg_bb_end_t *end, bq_errbuf_t *e);
    /* Polled at least once a second while waiting; nonzero ends with BQ_E_CANCELLED. */
    int (*should_stop)(void *arg);
} pg_bb_callbacks_t;

typedef struct {
    const char *label;              /* default "barque"; printable ASCII, <= 255 bytes */
    int fast_checkpoint;            /* CHECKPOINT 'fast' (default 1) or 'spread' */
    const char *manifest_checksums; /* NONE, CRC32C (default), SHA224, SHA256, SHA384, SHA512 */
    int tablespace_map;             /* tablespace_map file instead of pg_tblspc symlinks (1) */
    int verify_checksums;           /* page checksums verified by the server (default 1) */
    int wait_for_archive;           /* WAIT true: the server waits for archive_command (0) */
    uint32_t max_rate_kb;           /* 0 (default): unlimited; else 32..1048576 kB/s */
    int connect_timeout_s;          /* default 10, used when the conninfo has none */
    int start_timeout_s;            /* until the first result (checkpoint), default 3600 */
    int stall_timeout_s;            /* between messages of the stream, default 120 */
} pg_bb_opts_t;

/* Defaults as documented above. */
void pg_bb_opts_init(pg_bb_opts_t *o);

/* Run one base backup of the cluster at conninfo (a libpq conninfo string or URI, any
 * replication keyword in it is overridden). opts may be NULL for the defaults. Calls, in order:
 * start, then per archive archive_begin, file_begin/data/end per entry, archive_end, progress
 * any time, manifest_data, and end. Returns 0 once end returned 0. */
int pg_basebackup_run(const char *conninfo, const pg_bb_opts_t *opts,
                      const pg_bb_callbacks_t *cb, void *arg, bq_errbuf_t *e);

/* The decoder of the COPY stream (step 3 above), without a connection: tablespaces as the
 * server announced them (copied), whether a manifest must follow, the callbacks (copied; start,
 * end and should_stop are not used). *out is freed by pg_bb_stream_destroy. */
typedef struct pg_bb_stream pg_bb_stream_t;
int pg_bb_stream_new(const pg_bb_tablespace_t *ts, size_t nts, int64_t total_estimate,
                     int expect_manifest, const pg_bb_callbacks_t *cb, void *arg,
                     pg_bb_stream_t **out, bq_errbuf_t *e);
/* One CopyData message. Errors: BQ_E_PROTO, what a callback or the tar parser returned. */
int pg_bb_stream_message(pg_bb_stream_t *s, const uint8_t *msg, size_t len, bq_errbuf_t *e);
/* The COPY ended: the last archive must be complete, every tablespace must have had its archive
 * and the manifest must have come when expected. Fills the byte counts of end. */
int pg_bb_stream_finish(pg_bb_stream_t *s, pg_bb_end_t *end, bq_errbuf_t *e);
void pg_bb_stream_destroy(pg_bb_stream_t **s);

/* ---- WAL ---- */

typedef struct {
    const char *slot_name;   /* NULL: "barque_<pid>_<n>"; [a-z0-9_]{1,63} */
    int create_slot;         /* 1 (default): create a TEMPORARY slot with RESERVE_WAL;
                                0: use slot_name as an existing slot (none when NULL) */
    int connect_timeout_s;   /* default 10, used when the conninfo has none */
    int stall_timeout_s;     /* without a new WAL byte, default 120 */
    int status_interval_s;   /* standby status updates, default 10 */
    int permanent;           /* with slot_name: a permanent physical slot, created with
                                RESERVE_WAL when the server has none (create_slot ignored) */
    const char *application_name; /* NULL: the conninfo's, else "barque" (a synchronous
                                standby is named by it in synchronous_standby_names) */
} pg_wal_opts_t;

void pg_wal_opts_init(pg_wal_opts_t *o);

typedef struct {
    /* A segment begins: its file name, timeline and number. */
    int (*segment_begin)(void *arg, const char *name, uint32_t tli, uint64_t segno,
                         bq_errbuf_t *e);
    /* Its bytes in order, wal_segment_size in all. */
    int (*segment_data)(void *arg, const uint8_t *buf, size_t len, bq_errbuf_t *e);
    /* It is complete; returning 0 says it is safe (the slot may move past it). */
    int (*segment_end)(void *arg, bq_errbuf_t *e);
    int (*should_stop)(void *arg);
} pg_wal_callbacks_t;

typedef struct pg_wal_conn pg_wal_conn_t;

/* Open a physical replication connection to conninfo (server 15+) and, per opts (NULL: the
 * defaults), create the temporary slot. *out is closed by pg_wal_close. Errors as
 * pg_basebackup_run. */
int pg_wal_open(const char *conninfo, const pg_wal_opts_t *opts, pg_wal_conn_t **out,
                bq_errbuf_t *e);

/* The slot's name ("" when none), its restart LSN when created here (else 0), the server's
 * segment size, timeline and system identifier (IDENTIFY_SYSTEM at open). */
const char *pg_wal_slot(const pg_wal_conn_t *w);
uint64_t pg_wal_slot_lsn(const pg_wal_conn_t *w);
uint32_t pg_wal_seg_size(const pg_wal_conn_t *w);
uint32_t pg_wal_timeline(const pg_wal_conn_t *w);
uint64_t pg_wal_system_identifier(const pg_wal_conn_t *w);

/* Stream timeline tli from the start of the segment of start_lsn through the end of the
 * segment of stop_lsn (start_lsn <= stop_lsn) and hand over each segment. May be called again
 * on the same connection. Errors as pg_basebackup_run; BQ_E_PG when the server no longer has
 * the WAL or the timeline ends before stop_lsn. */
int pg_wal_fetch_range(pg_wal_conn_t *w, uint64_t start_lsn, uint64_t stop_lsn, uint32_t tli,
                       const pg_wal_callbacks_t *cb, void *arg, bq_errbuf_t *e);

/* 1 when pg_wal_open created the permanent slot (it did not exist). */
int pg_wal_slot_created(const pg_wal_conn_t *w);

/* ---- Continuous streaming (a synchronous standby's receiver) ---- */

typedef struct {
    /* A segment begins (offset: where in it the data starts; 0 but for the first). */
    int (*segment_begin)(void *arg, const char *name, uint32_t tli, uint64_t segno,
                         uint64_t offset, bq_errbuf_t *e);
    /* Bytes of the open segment, in order. */
    int (*data)(void *arg, const uint8_t *buf, size_t len, bq_errbuf_t *e);
    /* Make every byte given so far durable; 0 means it is (the flush position sent to the
     * server, which a synchronous primary waits for, moves only after this). */
    int (*sync)(void *arg, bq_errbuf_t *e);
    /* The open segment is complete and synced. */
    int (*segment_end)(void *arg, bq_errbuf_t *e);
    /* The timeline of the open segment ended at end_lsn inside it (a promotion): it is a
     * .partial file, synced; the new timeline's copy of the segment follows. */
    int (*timeline_end)(void *arg, uint32_t tli, uint64_t end_lsn, bq_errbuf_t *e);
    /* The history file of timeline tli (name "0000000N.history"). */
    int (*history)(void *arg, uint32_t tli, const char *name, const uint8_t *content,
                   size_t len, bq_errbuf_t *e);
    /* After each status update: received and durable positions. */
    void (*position)(void *arg, uint32_t tli, uint64_t written, uint64_t flushed);
    /* Nothing to read for now, before the stream waits: work of the caller's own (0, or an
     * error that ends the stream); *wait_ms > 0 bounds the wait before the next call (left 0:
     * the next message or status update). */
    int (*idle)(void *arg, int *wait_ms, bq_errbuf_t *e);
    int (*should_stop)(void *arg);
} pg_wal_stream_cb_t;

/* Stream WAL from the start of the segment of start_lsn on timeline tli (0: the timeline of
 * the permanent slot's restart LSN when the server knows it, else the server's) for
 * as long as the server sends it, through timeline switches (TIMELINE_HISTORY), on the
 * connection's slot. After every burst of messages the callbacks' sync runs and a status
 * update reports write = flush = what is durable; a keepalive asking for a reply is answered,
 * and one is sent every status_interval_s. Returns only on an error or a cancel
 * (should_stop: BQ_E_CANCELLED, after a last sync and status update); the connection is then
 * closed. BQ_E_TIMEOUT when nothing (not even a keepalive) came for stall_timeout_s. */
int pg_wal_stream(pg_wal_conn_t *w, uint64_t start_lsn, uint32_t tli,
                  const pg_wal_stream_cb_t *cb, void *arg, bq_errbuf_t *e);

/* Close the connection (the temporary slot goes with it). Accepts NULL; nulls *w. */
void pg_wal_close(pg_wal_conn_t **w);

#endif
