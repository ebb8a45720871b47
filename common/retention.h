/* Retention decisions, as Barman makes them (barman/retention_policies.py, barman/backup.py):
 * the policy's grammar, the status of each backup under a policy and minimum_redundancy,
 * the guard on deleting one more backup, and which archived WAL files may go.
 *
 * Pure: no catalog, no I/O, no clock (the caller passes now). The caller runs retention as
 * Barman's cron does: classify, then delete the OBSOLETE backups oldest first while
 * retention_may_delete says yes, then prune the WAL that no backup that stays needs.
 *
 * Barman's semantics, kept here:
 *   REDUNDANCY n   the newest max(n, minimum_redundancy) DONE backups are VALID, the older
 *                  DONE ones OBSOLETE. Kept backups take a place in the count but are never
 *                  OBSOLETE (KEEP:FULL, KEEP:STANDALONE). Other states are NONE ("-"): not
 *                  counted, never deleted by retention.
 *   RECOVERY WINDOW OF n DAYS|WEEKS|MONTHS
 *                  the point of recoverability is now - window (a month is 31 days). Newest
 *                  first, DONE backups are VALID up to and including the first one that
 *                  ended strictly before that point (it is the base that reaches back to
 *                  the point); the older ones are OBSOLETE, except that while fewer than
 *                  minimum_redundancy backups are counted valid they stay VALID (Barman's
 *                  POTENTIALLY_OBSOLETE, which it never deletes either). Kept backups count
 *                  as valid and are never OBSOLETE. */
#ifndef BQ_RETENTION_H
#define BQ_RETENTION_H

#include "types.h"

#include <stddef.h>
#include <stdint.h>

#define RETENTION_N_MAX 100000u /* the largest n a policy takes */

typedef enum { RETENTION_NONE = 0, RETENTION_REDUNDANCY = 1, RETENTION_WINDOW = 2 } retention_kind_t;

/* A parsed retention_policy (a plain value). */
typedef struct {
    retention_kind_t kind;
    uint32_t value; /* REDUNDANCY n, or the window's n */
    char unit;      /* window: 'd' (DAYS), 'w' (WEEKS), 'm' (MONTHS) */
} retention_policy_t;

/* Parse a retention_policy as Barman's regular expressions do: case-insensitive, blanks
 * around and one or more between the words, the unit singular or plural:
 *   "REDUNDANCY 3", "recovery window of 2 weeks", "RECOVERY WINDOW OF 1 MONTH".
 * NULL, "" or only blanks: RETENTION_NONE. n is decimal digits, 1 to RETENTION_N_MAX.
 * 0 with *p set, or -1 with *p zeroed and why (may be NULL) one of:
 *   "expected REDUNDANCY n or RECOVERY WINDOW OF n DAYS|WEEKS|MONTHS",
 *   "n must be at least 1", "n must be at most 100000". */
int retention_policy_parse(const char *s, retention_policy_t *p, char *why, size_t whylen);
/* Back to text, as Barman prints it: "REDUNDANCY 3", "RECOVERY WINDOW OF 2 WEEKS" (the unit
 * always plural), "" for none (or a policy that is not well formed). */
void retention_policy_format(const retention_policy_t *p, char *buf, size_t len);
/* The window in ms: n days, n × 7 days, or n × 31 days (Barman: a month is 31 days). 0 for
 * a policy that is not a window. */
int64_t retention_window_ms(const retention_policy_t *p);

typedef enum {
    RETENTION_STATUS_NONE = 0, /* not DONE (Barman's NONE): never counted, never deleted by retention */
    RETENTION_STATUS_VALID,
    RETENTION_STATUS_OBSOLETE,
    RETENTION_STATUS_KEEP_FULL,
    RETENTION_STATUS_KEEP_STANDALONE,
} retention_status_t;

/* "-", "VALID", "OBSOLETE", "KEEP:FULL", "KEEP:STANDALONE"; "?" for anything else. */
const char *retention_status_name(retention_status_t s);

/* barque keep: FULL keeps the backup and the WAL to replay from it; STANDALONE keeps the
 * backup and only the WAL of its own run (wal_begin..wal_end). */
enum { RETENTION_KEEP_NONE = 0, RETENTION_KEEP_FULL = 1, RETENTION_KEEP_STANDALONE = 2 };

typedef struct {
    int done;       /* the backup is DONE (any other state: STATUS_NONE) */
    int keep;       /* RETENTION_KEEP_*; any other nonzero value is taken as FULL (Barman) */
    int64_t end_ms; /* when the backup ended (Barman's end_time), ms since the epoch */
} retention_backup_t;

/* Classify the n backups of one cluster, b[] OLDEST FIRST (ids sort by time), into out[]
 * (n entries), as Barman's _backup_report of policy p does with minimum_redundancy applied
 * (see the top of this file). now_ms: the time retention runs. RETENTION_NONE (or a window
 * with no known unit): every DONE backup VALID, kept ones KEEP:*. */
void retention_classify(const retention_policy_t *p, uint32_t minimum_redundancy, int64_t now_ms,
                        const retention_backup_t *b, size_t n, retention_status_t *out);

/* Barman's guard in delete_backup: whether one more DONE backup may be deleted when
 * done_count are DONE now (kept ones included), that is done_count > minimum_redundancy. */
int retention_may_delete(size_t done_count, uint32_t minimum_redundancy);

/* The WAL of a KEEP:STANDALONE backup: its first and last segment. */
typedef struct {
    char begin[BQ_WAL_NAME_MAX];
    char end[BQ_WAL_NAME_MAX];
} retention_wal_range_t;

/* Whether WAL file name may be deleted. name is a segment "TTTTTTTTXXXXXXXXYYYYYYYY", a
 * "SEG.partial", a "SEG.XXXXXXXX.backup" or a "TTTTTTTT.history"; keep_from is the wal_begin
 * (a segment) of the oldest backup that stays and is not KEEP:STANDALONE (retention_keep_from);
 * ranges[] are the [wal_begin, wal_end] of the KEEP:STANDALONE backups that stay.
 * 0 (kept) for: a history file; keep_from "" or not a segment (nothing to prune from); a file
 * on another timeline than keep_from's; a file whose segment (its first 24 characters) is
 * >= keep_from; a file whose segment is inside a range (begin <= seg <= end, as strings); a
 * name of none of the forms above. Otherwise 1. */
int retention_wal_prunable(const char *name, const char *keep_from, const retention_wal_range_t *ranges,
                           size_t nranges);

/* One backup that stays after retention, for retention_keep_from (strings borrowed). */
typedef struct {
    const char *wal_begin;
    const char *wal_end;
    int standalone; /* KEEP:STANDALONE */
} retention_stay_t;

/* keep_from for a cluster, into out (outlen bytes; BQ_WAL_NAME_MAX is enough), from its n
 * backups that stay, s[] oldest first: the wal_begin of the oldest one that is not
 * standalone; when all are standalone, the newest one's wal_begin; none: "". */
void retention_keep_from(const retention_stay_t *s, size_t n, char *out, size_t outlen);

#endif
