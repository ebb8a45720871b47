/* When the coordinator starts a cluster's scheduled backup: the grammar of backup_schedule and
 * backup_jitter, the cluster's slots in time, and the due decision with its catch-up rule.
 *
 * Pure: no catalog, no I/O, no clock. Every time is wall-clock ms since the epoch, UTC, passed
 * in by the caller (now_ms), so the scheduler's tests run on a simulated clock.
 *
 * Slots. A schedule has base times; a cluster's slots are its base times + its offset, a fixed
 * value in [0, jitter_ms) that hashes its name (schedule_offset), so that many clusters on one
 * schedule spread out, and each keeps its own times across restarts.
 *   INTERVAL  base times are k * interval_ms from the epoch (1970-01-01 00:00 UTC, a Thursday):
 *             "1d" is 00:00 UTC each day, "6h" 00:00, 06:00, 12:00, 18:00 UTC, "1w" Thursdays
 *             00:00 UTC, "90s" every 90 s from the epoch.
 *   DAILY     base times are each day's times of day, UTC (no time zones, no DST).
 *
 * The due decision (schedule_decide) fires each slot once, when it is the newest slot <= now:
 * slots missed while the coordinator was down collapse into one run ("missed" counts the
 * others); a backup of the cluster that is queued or running makes the slot wait (no second
 * job); a cluster the scheduler never fired for (last_slot_ms 0) is backed up now unless it
 * has a recent backup, in which case its current slot is adopted without a run. The caller
 * persists last_slot_ms. Manual backups consume no slot. */
#ifndef BQ_SCHEDULE_H
#define BQ_SCHEDULE_H

#include <stddef.h>
#include <stdint.h>

enum { SCHEDULE_NONE = 0, SCHEDULE_INTERVAL = 1, SCHEDULE_DAILY = 2 };

#define SCHEDULE_TIMES_MAX       24                        /* times of day in a DAILY list */
#define SCHEDULE_INTERVAL_MIN_MS INT64_C(10000)            /* 10s (integration tests use it) */
#define SCHEDULE_INTERVAL_MAX_MS (INT64_C(366) * 86400000) /* 366d */
#define SCHEDULE_JITTER_CAP_MS   INT64_C(900000)           /* the default jitter: at most 15m */
#define SCHEDULE_DAY_MS          INT64_C(86400000)

/* A parsed backup_schedule + backup_jitter (a plain value). */
typedef struct {
    int kind;                        /* SCHEDULE_NONE, SCHEDULE_INTERVAL, SCHEDULE_DAILY */
    int64_t interval_ms;             /* INTERVAL */
    int ntimes;                      /* DAILY: 1 to SCHEDULE_TIMES_MAX */
    int minutes[SCHEDULE_TIMES_MAX]; /* DAILY: minutes after 00:00 UTC, strictly ascending */
    int64_t jitter_ms;               /* the bound: each cluster's offset is in [0, jitter_ms);
                                        0 for NONE */
} schedule_t;

/* A duration: decimal digits and one unit, s, m, h, d or w (a week is 7 days): "90s", "30m",
 * "6h", "1d", "1w"; "0" needs no unit. No sign, blanks or fractions. Used for backup_jitter and
 * backup_max_age. 0 with *ms set, or BQ_E_INVAL (-1) with *ms unchanged and why (may be NULL;
 * the value is quoted, cut at 40 bytes) one of:
 *   "\"\" is not a duration (a number and a unit s, m, h, d or w, as in 30m)"
 *   "\"1.5h\" is not a duration (a number and a unit s, m, h, d or w, as in 30m)"
 *   "\"90\" has no unit (s, m, h, d or w)"
 *   "\"6hours\" has an unknown unit \"hours\" (s, m, h, d or w)"
 *   "\"99999999999999999999d\" is too large" */
int schedule_duration_parse(const char *s, int64_t *ms, char *why, size_t whylen);

/* ms as the largest unit that divides it: "6h", "90s", "2w", "0"; "1500ms" when it is no
 * whole number of seconds. */
void schedule_duration_format(int64_t ms, char *buf, size_t len);

/* Parse a cluster's backup_schedule (spec) and backup_jitter (jitter) into *s:
 *   spec    NULL or "": NONE (jitter is still checked, and ignored).
 *           A duration (schedule_duration_parse) from 10s to 366d: INTERVAL.
 *           A time of day "HH:MM" (two digits each, 00:00 to 23:59, UTC) or a list of them
 *           separated by commas (blanks around each allowed, any order, at most 24, no
 *           repeats): DAILY, the times sorted. A spec with ':' or ',' is taken as a list.
 *   jitter  a duration, "0" for none, NULL or "" for the default: 10% of the interval (DAILY:
 *           of a day), at most 15m. It must be shorter than the interval (DAILY: a day).
 * 0 with *s set, or BQ_E_INVAL (-1) with *s unchanged and why (may be NULL) one of:
 *   "backup_schedule: " + a schedule_duration_parse message
 *   "backup_schedule: \"0\" is not an interval (leave it empty for no schedule)"
 *   "backup_schedule: \"5s\" is shorter than 10s"
 *   "backup_schedule: \"367d\" is longer than 366d"
 *   "backup_schedule: \"24:00\" is not a time of day (HH:MM from 00:00 to 23:59, UTC)"
 *   "backup_schedule: \"02:30,,14:30\" has an empty time"
 *   "backup_schedule: 02:30 is listed twice"
 *   "backup_schedule: more than 24 times of day"
 *   "backup_jitter: " + a schedule_duration_parse message
 *   "backup_jitter: \"6h\" is not shorter than the interval (6h)"
 *   "backup_jitter: \"1d\" is not shorter than a day" */
int schedule_parse(const char *spec, const char *jitter, schedule_t *s, char *why, size_t whylen);

/* "every 6h", "daily at 02:30,14:30 UTC", "none" (also for a schedule that is not well formed). */
void schedule_format(const schedule_t *s, char *buf, size_t len);

/* The cluster's offset in [0, s->jitter_ms): FNV-1a 64 of its name, mixed (MurmurHash3's
 * fmix64), modulo jitter_ms. Stable across restarts and versions (changing it would move every
 * cluster's slots); different names spread out. 0 when jitter_ms is 0 or less, or for NONE. */
int64_t schedule_offset(const schedule_t *s, const char *cluster);

/* The newest slot <= now_ms (base time + offset), INT64_MIN for NONE or a schedule that is not
 * well formed. offset must be in [0, jitter_ms) (schedule_offset); |now_ms| below 2^62. */
int64_t schedule_slot_at_or_before(const schedule_t *s, int64_t offset, int64_t now_ms);
/* The first slot > now_ms, INT64_MAX for NONE or a schedule that is not well formed. */
int64_t schedule_slot_after(const schedule_t *s, int64_t offset, int64_t now_ms);

/* What the caller knows of one cluster. */
typedef struct {
    int64_t last_slot_ms;     /* the slot the scheduler last fired for or adopted (persisted by
                                 the caller); 0 = never */
    int64_t newest_backup_ms; /* start of the cluster's newest backup that is DONE or in
                                 progress; 0 = none */
    int active;               /* a backup job of this cluster is queued or running now */
} schedule_state_t;

typedef struct {
    int due;         /* start a backup now, and persist slot_ms as last_slot_ms */
    int adopt;       /* not due: persist slot_ms as last_slot_ms without starting a backup */
    int64_t slot_ms; /* due or adopt: the slot; active: the slot that waits for the active
                        backup (0 when none waits); otherwise 0 */
    int64_t next_ms; /* when it is next due if nothing changes: the first slot after now
                        (after last_slot_ms too, when that is later); INT64_MAX for NONE */
    int missed;      /* due: the slots strictly between last_slot_ms and slot_ms, which this
                        run stands for (0 normally) */
    char why[160];   /* one line, times as schedule_time_format writes them:
                        "no backup_schedule"
                        "a backup is already queued or running"
                        "a backup is already queued or running; slot T waits for it"
                        "never backed up: running now"
                        "newest backup T predates slot T: running now"
                        "backup of T is recent: next slot T"
                        "slot T is due"
                        "13 slots missed (outage?): running once for slot T"
                        "next slot T"
                        with "last slot T is ahead of the clock: " before a first-sight
                        text when the persisted slot is past the next slot */
} schedule_decision_t;

/* Whether the cluster is due at now_ms, into *d. In order:
 *   NONE          never due.
 *   active        not due; the slot is not consumed: when active clears, the newest slot then
 *                 fires (once).
 *   first sight   last_slot_ms is 0, or past the next slot (it was recorded by a clock that ran
 *                 ahead: it is dropped). cur = the newest slot <= now, prev = the one before.
 *                 Due for cur when no backup started at or after prev (newest_backup_ms 0 or
 *                 < prev); otherwise adopt cur, so a cluster backed up recently waits for its
 *                 next slot.
 *   otherwise     due iff cur > last_slot_ms, for cur, missed = the slots strictly between.
 *                 A clock that stepped back less than a slot fires nothing twice: next_ms is
 *                 the first slot after max(now, last_slot_ms). */
void schedule_decide(const schedule_t *s, int64_t offset, const schedule_state_t *st,
                     int64_t now_ms, schedule_decision_t *d);

/* ms as "2026-12-02 02:37:12 UTC" (seconds truncated toward the past); "never" for INT64_MIN
 * and INT64_MAX. */
void schedule_time_format(int64_t ms, char *buf, size_t len);

#endif
