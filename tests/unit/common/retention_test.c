/* coordinator/retention.c: Barman's retention semantics replayed on tables of backup dates
 * (REDUNDANCY with fewer, as many and more backups, non-DONE and kept backups, REDUNDANCY
 * raised to minimum_redundancy; RECOVERY WINDOW OF n DAYS|WEEKS|MONTHS at the point of
 * recoverability exactly, 1 ms before and 1 ms after, a month of 31 days, minimum_redundancy
 * past the window, kept backups in and out of it), the delete guard, the policy grammar with
 * its refusals, the window in ms, and which WAL files may be pruned. Each table row that
 * fails prints its label; all rows run before the test fails. */
#include "retention.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <time.h>

#define MS_DAY INT64_C(86400000)
#define ROW_BACKUPS 8

static const char EXPECTED[] = "expected REDUNDANCY n or RECOVERY WINDOW OF n DAYS|WEEKS|MONTHS";

/* "YYYY-MM-DD HH:MM" (UTC) in ms since the epoch. */
static int64_t ms_of(const char *s)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    if (sscanf(s, "%d-%d-%d %d:%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min) != 5)
        fail_msg("bad date in the table: %s", s);
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (int64_t)timegm(&tm) * 1000;
}

/* One backup of a row: its end date (and ms added to it), DONE or not, its keep. */
typedef struct {
    const char *end;
    int64_t adj_ms;
    int done;
    int keep;
} bk_t;

#define D(t) {t, 0, 1, RETENTION_KEEP_NONE}           /* DONE */
#define DA(t, ms) {t, ms, 1, RETENTION_KEEP_NONE}     /* DONE, ending at t + ms */
#define ND(t) {t, 0, 0, RETENTION_KEEP_NONE}          /* not DONE (STARTED, FAILED, ...) */
#define NDK(t) {t, 0, 0, RETENTION_KEEP_FULL}         /* not DONE, with a keep */
#define KF(t) {t, 0, 1, RETENTION_KEEP_FULL}          /* DONE, KEEP:FULL */
#define KS(t) {t, 0, 1, RETENTION_KEEP_STANDALONE}    /* DONE, KEEP:STANDALONE */

typedef struct {
    const char *label;
    const char *policy; /* parsed with retention_policy_parse */
    uint32_t minimum_redundancy;
    const char *now;
    bk_t b[ROW_BACKUPS]; /* oldest first, up to the first with no end */
    const char *expect;  /* statuses, oldest first, joined by ',' */
} classify_row_t;

/* now = 2026-11-01 02:00 unless the row says otherwise.
 *   7 DAYS:   point of recoverability 2026-10-25 02:00
 *   2 WEEKS:  2026-10-18 02:00
 *   1 MONTH:  31 days, 2026-10-01 02:00
 *   3 MONTHS: 93 days, 2026-07-31 02:00 */
#define NOW "2026-11-01 02:00"

static const classify_row_t redundancy_rows[] = {
    {"R1 one backup", "REDUNDANCY 1", 0, NOW, {D("2026-10-01 02:00")}, "VALID"},
    {"R1 three backups", "REDUNDANCY 1", 0, NOW,
     {D("2026-10-01 02:00"), D("2026-10-02 02:00"), D("2026-10-03 02:00")}, "OBSOLETE,OBSOLETE,VALID"},
    {"R2 fewer backups", "REDUNDANCY 2", 0, NOW, {D("2026-10-01 02:00")}, "VALID"},
    {"R2 as many backups", "REDUNDANCY 2", 0, NOW, {D("2026-10-01 02:00"), D("2026-10-02 02:00")},
     "VALID,VALID"},
    {"R2 four backups", "REDUNDANCY 2", 0, NOW,
     {D("2026-10-01 02:00"), D("2026-10-02 02:00"), D("2026-10-03 02:00"), D("2026-10-04 02:00")},
     "OBSOLETE,OBSOLETE,VALID,VALID"},
    {"R3 fewer backups", "REDUNDANCY 3", 0, NOW, {D("2026-10-01 02:00"), D("2026-10-02 02:00")},
     "VALID,VALID"},
    {"R3 as many backups", "REDUNDANCY 3", 0, NOW,
     {D("2026-10-01 02:00"), D("2026-10-02 02:00"), D("2026-10-03 02:00")}, "VALID,VALID,VALID"},
    {"R3 five backups", "REDUNDANCY 3", 0, NOW,
     {D("2026-10-01 02:00"), D("2026-10-02 02:00"), D("2026-10-03 02:00"), D("2026-10-04 02:00"),
      D("2026-10-05 02:00")},
     "OBSOLETE,OBSOLETE,VALID,VALID,VALID"},
    {"R2 non-DONE between, not counted", "REDUNDANCY 2", 0, NOW,
     {D("2026-10-01 02:00"), D("2026-10-02 02:00"), ND("2026-10-03 02:00"), D("2026-10-04 02:00"),
      ND("2026-10-05 02:00")},
     "OBSOLETE,VALID,-,VALID,-"},
    {"R1 newest not DONE", "REDUNDANCY 1", 0, NOW,
     {D("2026-10-01 02:00"), D("2026-10-02 02:00"), ND("2026-10-03 02:00")}, "OBSOLETE,VALID,-"},
    {"R1 none DONE", "REDUNDANCY 1", 0, NOW, {ND("2026-10-01 02:00"), ND("2026-10-02 02:00")}, "-,-"},
    {"R1 no backups", "REDUNDANCY 1", 0, NOW, {{0}}, ""},
    {"R2 KEEP:FULL newest takes a place", "REDUNDANCY 2", 0, NOW,
     {D("2026-10-01 02:00"), D("2026-10-02 02:00"), KF("2026-10-03 02:00")}, "OBSOLETE,VALID,KEEP:FULL"},
    {"R1 old KEEP:STANDALONE never obsolete", "REDUNDANCY 1", 0, NOW,
     {KS("2026-10-01 02:00"), D("2026-10-02 02:00"), D("2026-10-03 02:00")},
     "KEEP:STANDALONE,OBSOLETE,VALID"},
    {"R2 kept ones fill the count", "REDUNDANCY 2", 0, NOW,
     {D("2026-10-01 02:00"), KF("2026-10-02 02:00"), KS("2026-10-03 02:00")},
     "OBSOLETE,KEEP:FULL,KEEP:STANDALONE"},
    {"R1 old KEEP:FULL among obsolete", "REDUNDANCY 1", 0, NOW,
     {D("2026-10-01 02:00"), KF("2026-10-02 02:00"), D("2026-10-03 02:00"), D("2026-10-04 02:00")},
     "OBSOLETE,KEEP:FULL,OBSOLETE,VALID"},
    {"R2 keep on a non-DONE backup: NONE", "REDUNDANCY 2", 0, NOW,
     {D("2026-10-01 02:00"), NDK("2026-10-02 02:00"), D("2026-10-03 02:00"), D("2026-10-04 02:00")},
     "OBSOLETE,-,VALID,VALID"},
    {"R1 raised to minimum_redundancy 3", "REDUNDANCY 1", 3, NOW,
     {D("2026-10-01 02:00"), D("2026-10-02 02:00"), D("2026-10-03 02:00"), D("2026-10-04 02:00")},
     "OBSOLETE,VALID,VALID,VALID"},
    {"R2 raised to minimum_redundancy 5, fewer backups", "REDUNDANCY 2", 5, NOW,
     {D("2026-10-01 02:00"), D("2026-10-02 02:00"), D("2026-10-03 02:00")}, "VALID,VALID,VALID"},
    {"R3 not lowered by minimum_redundancy 1", "REDUNDANCY 3", 1, NOW,
     {D("2026-10-01 02:00"), D("2026-10-02 02:00"), D("2026-10-03 02:00"), D("2026-10-04 02:00")},
     "OBSOLETE,VALID,VALID,VALID"},
    {"R1 raised to 2, a kept one takes a place", "REDUNDANCY 1", 2, NOW,
     {D("2026-10-01 02:00"), D("2026-10-02 02:00"), KS("2026-10-03 02:00")},
     "OBSOLETE,VALID,KEEP:STANDALONE"},
    {"no policy: all DONE valid", "", 0, NOW,
     {D("2026-01-01 02:00"), ND("2026-02-01 02:00"), KF("2026-03-01 02:00"), KS("2026-04-01 02:00"),
      D("2026-10-01 02:00")},
     "VALID,-,KEEP:FULL,KEEP:STANDALONE,VALID"},
    {"no policy, minimum_redundancy changes nothing", "", 3, NOW,
     {D("2026-01-01 02:00"), D("2026-02-01 02:00")}, "VALID,VALID"},
};

/* Barman's RecoveryWindowRetentionPolicy._backup_report, newest first: a DONE backup is VALID
 * and counted while `found` is false, and only then is `end_time < point_of_recoverability`
 * tested, strictly. So the newest backup that ends before the point stays VALID (it is the
 * base for a recovery to that point), a backup ending exactly at the point does not close the
 * window (the next older one is still VALID), and 1 ms before the point does. */
static const classify_row_t window_rows[] = {
    {"7 DAYS: one at the point exactly", "RECOVERY WINDOW OF 7 DAYS", 0, NOW,
     {D("2026-10-15 02:00"), D("2026-10-20 02:00"), D("2026-10-25 02:00"), D("2026-10-30 02:00")},
     "OBSOLETE,VALID,VALID,VALID"},
    {"7 DAYS: one 1 ms before the point", "RECOVERY WINDOW OF 7 DAYS", 0, NOW,
     {D("2026-10-15 02:00"), D("2026-10-20 02:00"), DA("2026-10-25 02:00", -1), D("2026-10-30 02:00")},
     "OBSOLETE,OBSOLETE,VALID,VALID"},
    {"7 DAYS: one 1 ms after the point", "RECOVERY WINDOW OF 7 DAYS", 0, NOW,
     {D("2026-10-15 02:00"), D("2026-10-20 02:00"), DA("2026-10-25 02:00", 1), D("2026-10-30 02:00")},
     "OBSOLETE,VALID,VALID,VALID"},
    {"1 DAY: singular", "recovery window of 1 day", 0, NOW,
     {D("2026-10-29 02:00"), D("2026-10-30 02:00"), DA("2026-10-31 02:00", -1), D("2026-11-01 01:00")},
     "OBSOLETE,OBSOLETE,VALID,VALID"},
    {"2 WEEKS: oldest ones go", "RECOVERY WINDOW OF 2 WEEKS", 0, NOW,
     {D("2026-10-01 02:00"), D("2026-10-10 02:00"), D("2026-10-17 02:00"), D("2026-10-20 02:00"),
      D("2026-10-31 02:00")},
     "OBSOLETE,OBSOLETE,VALID,VALID,VALID"},
    {"2 WEEKS: one at the point exactly", "RECOVERY WINDOW OF 2 WEEKS", 0, NOW,
     {D("2026-10-01 02:00"), D("2026-10-10 02:00"), D("2026-10-18 02:00"), D("2026-10-25 02:00")},
     "OBSOLETE,VALID,VALID,VALID"},
    {"2 WEEKS: one 1 ms before the point", "RECOVERY WINDOW OF 2 WEEKS", 0, NOW,
     {D("2026-10-01 02:00"), D("2026-10-10 02:00"), DA("2026-10-18 02:00", -1), D("2026-10-25 02:00")},
     "OBSOLETE,OBSOLETE,VALID,VALID"},
    {"2 WEEKS: one 1 ms after the point", "RECOVERY WINDOW OF 2 WEEKS", 0, NOW,
     {D("2026-10-01 02:00"), D("2026-10-10 02:00"), DA("2026-10-18 02:00", 1), D("2026-10-25 02:00")},
     "OBSOLETE,VALID,VALID,VALID"},
    {"1 MONTH: 30 days old is inside (a month is 31 days)", "RECOVERY WINDOW OF 1 MONTH", 0, NOW,
     {D("2026-09-10 02:00"), D("2026-09-20 02:00"), D("2026-10-02 02:00")}, "OBSOLETE,VALID,VALID"},
    {"1 MONTH: 31 days + 1 ms old closes the window", "RECOVERY WINDOW OF 1 MONTH", 0, NOW,
     {D("2026-09-20 02:00"), DA("2026-10-01 02:00", -1), D("2026-10-15 02:00")}, "OBSOLETE,VALID,VALID"},
    {"1 MONTH: 31 days old exactly", "RECOVERY WINDOW OF 1 MONTH", 0, NOW,
     {D("2026-09-10 02:00"), D("2026-09-20 02:00"), D("2026-10-01 02:00"), D("2026-10-15 02:00")},
     "OBSOLETE,VALID,VALID,VALID"},
    {"1 MONTH: 31 days - 1 ms old", "RECOVERY WINDOW OF 1 MONTH", 0, NOW,
     {D("2026-09-10 02:00"), D("2026-09-20 02:00"), DA("2026-10-01 02:00", 1), D("2026-10-15 02:00")},
     "OBSOLETE,VALID,VALID,VALID"},
    {"3 MONTHS: 93 days", "RECOVERY WINDOW OF 3 MONTHS", 0, NOW,
     {D("2026-07-20 02:00"), DA("2026-07-31 02:00", -1), D("2026-08-05 02:00")}, "OBSOLETE,VALID,VALID"},
    {"3 MONTHS: not 3 calendar months (Aug 1 is 92 days back)", "RECOVERY WINDOW OF 3 MONTHS", 0, NOW,
     {D("2026-07-20 02:00"), DA("2026-08-01 02:00", -1), D("2026-08-05 02:00")}, "VALID,VALID,VALID"},
    {"7 DAYS: all inside the window", "RECOVERY WINDOW OF 7 DAYS", 0, NOW,
     {D("2026-10-28 02:00"), D("2026-10-29 02:00"), D("2026-10-30 02:00")}, "VALID,VALID,VALID"},
    {"7 DAYS: all older, the newest stays", "RECOVERY WINDOW OF 7 DAYS", 0, NOW,
     {D("2026-09-01 02:00"), D("2026-09-10 02:00"), D("2026-09-20 02:00")}, "OBSOLETE,OBSOLETE,VALID"},
    {"7 DAYS: all older, minimum_redundancy 2", "RECOVERY WINDOW OF 7 DAYS", 2, NOW,
     {D("2026-09-01 02:00"), D("2026-09-10 02:00"), D("2026-09-20 02:00")}, "OBSOLETE,VALID,VALID"},
    {"7 DAYS: all older, minimum_redundancy 3", "RECOVERY WINDOW OF 7 DAYS", 3, NOW,
     {D("2026-08-01 02:00"), D("2026-09-01 02:00"), D("2026-09-10 02:00"), D("2026-09-20 02:00")},
     "OBSOLETE,VALID,VALID,VALID"},
    {"7 DAYS: minimum_redundancy 5, more than there are", "RECOVERY WINDOW OF 7 DAYS", 5, NOW,
     {D("2026-09-01 02:00"), D("2026-09-10 02:00"), D("2026-09-20 02:00")}, "VALID,VALID,VALID"},
    {"7 DAYS: minimum_redundancy 2 met inside the window", "RECOVERY WINDOW OF 7 DAYS", 2, NOW,
     {D("2026-09-01 02:00"), D("2026-09-10 02:00"), D("2026-10-20 02:00"), D("2026-10-30 02:00")},
     "OBSOLETE,OBSOLETE,VALID,VALID"},
    {"7 DAYS: minimum_redundancy 3 reaches past the window", "RECOVERY WINDOW OF 7 DAYS", 3, NOW,
     {D("2026-09-01 02:00"), D("2026-09-10 02:00"), D("2026-10-20 02:00"), D("2026-10-30 02:00")},
     "OBSOLETE,VALID,VALID,VALID"},
    {"7 DAYS: non-DONE not counted", "RECOVERY WINDOW OF 7 DAYS", 0, NOW,
     {D("2026-09-01 02:00"), ND("2026-09-10 02:00"), D("2026-09-20 02:00"), ND("2026-10-30 02:00")},
     "OBSOLETE,-,VALID,-"},
    {"7 DAYS: a non-DONE backup does not close the window", "RECOVERY WINDOW OF 7 DAYS", 0, NOW,
     {D("2026-09-01 02:00"), D("2026-09-10 02:00"), ND("2026-09-20 02:00")}, "OBSOLETE,VALID,-"},
    {"7 DAYS: non-DONE not counted for minimum_redundancy", "RECOVERY WINDOW OF 7 DAYS", 2, NOW,
     {D("2026-09-01 02:00"), ND("2026-09-05 02:00"), D("2026-09-10 02:00"), D("2026-09-20 02:00")},
     "OBSOLETE,-,VALID,VALID"},
    {"7 DAYS: KEEP:FULL inside the window", "RECOVERY WINDOW OF 7 DAYS", 0, NOW,
     {D("2026-09-01 02:00"), D("2026-09-20 02:00"), KF("2026-10-30 02:00")}, "OBSOLETE,VALID,KEEP:FULL"},
    {"7 DAYS: a KEEP:FULL backup closes the window", "RECOVERY WINDOW OF 7 DAYS", 0, NOW,
     {D("2026-09-01 02:00"), D("2026-09-10 02:00"), KF("2026-09-20 02:00"), D("2026-10-30 02:00")},
     "OBSOLETE,OBSOLETE,KEEP:FULL,VALID"},
    {"7 DAYS: KEEP:STANDALONE outside the window", "RECOVERY WINDOW OF 7 DAYS", 0, NOW,
     {KS("2026-09-01 02:00"), D("2026-09-10 02:00"), D("2026-09-20 02:00"), D("2026-10-30 02:00")},
     "KEEP:STANDALONE,OBSOLETE,VALID,VALID"},
    {"7 DAYS: KEEP:FULL outside counts for minimum_redundancy", "RECOVERY WINDOW OF 7 DAYS", 3, NOW,
     {D("2026-09-01 02:00"), D("2026-09-05 02:00"), KF("2026-09-10 02:00"), D("2026-09-20 02:00"),
      D("2026-10-30 02:00")},
     "OBSOLETE,OBSOLETE,KEEP:FULL,VALID,VALID"},
    {"7 DAYS: kept ones past minimum_redundancy stay kept", "RECOVERY WINDOW OF 7 DAYS", 1, NOW,
     {KS("2026-08-01 02:00"), KF("2026-09-01 02:00"), D("2026-09-10 02:00"), D("2026-09-20 02:00")},
     "KEEP:STANDALONE,KEEP:FULL,OBSOLETE,VALID"},
    {"7 DAYS: another now", "RECOVERY WINDOW OF 7 DAYS", 0, "2026-10-21 00:00",
     {D("2026-10-10 02:00"), D("2026-10-13 02:00"), DA("2026-10-14 00:00", -1), D("2026-10-20 02:00")},
     "OBSOLETE,OBSOLETE,VALID,VALID"},
};

static size_t backups_of(const classify_row_t *r, retention_backup_t *out)
{
    size_t n = 0;
    for (; n < ROW_BACKUPS && r->b[n].end; n++) {
        out[n].done = r->b[n].done;
        out[n].keep = r->b[n].keep;
        out[n].end_ms = ms_of(r->b[n].end) + r->b[n].adj_ms;
    }
    return n;
}

static int classify_rows(const classify_row_t *rows, size_t nrows)
{
    int failed = 0;
    for (size_t i = 0; i < nrows; i++) {
        const classify_row_t *r = &rows[i];
        retention_policy_t p;
        char why[128] = "";
        if (retention_policy_parse(r->policy, &p, why, sizeof why) != 0) {
            print_error("row \"%s\": policy \"%s\": %s\n", r->label, r->policy, why);
            failed++;
            continue;
        }
        retention_backup_t b[ROW_BACKUPS];
        retention_status_t st[ROW_BACKUPS];
        size_t n = backups_of(r, b);
        retention_classify(&p, r->minimum_redundancy, ms_of(r->now), b, n, st);
        char got[256] = "";
        for (size_t k = 0; k < n; k++) {
            if (k)
                strcat(got, ",");
            strcat(got, retention_status_name(st[k]));
        }
        if (strcmp(got, r->expect) != 0) {
            print_error("row \"%s\": got %s, expected %s\n", r->label, got, r->expect);
            failed++;
        }
    }
    return failed;
}

static void test_redundancy(void **state)
{
    (void)state;
    int failed = classify_rows(redundancy_rows, sizeof redundancy_rows / sizeof redundancy_rows[0]);
    if (failed)
        fail_msg("%d redundancy rows failed", failed);
}

static void test_window(void **state)
{
    (void)state;
    int failed = classify_rows(window_rows, sizeof window_rows / sizeof window_rows[0]);
    if (failed)
        fail_msg("%d window rows failed", failed);
}

static void test_may_delete(void **state)
{
    (void)state;
    static const struct {
        const char *label;
        size_t done;
        uint32_t minimum;
        int expect;
    } rows[] = {
        {"nothing, no minimum", 0, 0, 0}, {"one, no minimum", 1, 0, 1},
        {"one, minimum 1", 1, 1, 0},      {"two, minimum 1", 2, 1, 1},
        {"three, minimum 3", 3, 3, 0},    {"four, minimum 3", 4, 3, 1},
        {"two, minimum 5", 2, 5, 0},
    };
    int failed = 0;
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        int got = retention_may_delete(rows[i].done, rows[i].minimum);
        if (got != rows[i].expect) {
            print_error("row \"%s\": got %d, expected %d\n", rows[i].label, got, rows[i].expect);
            failed++;
        }
    }
    if (failed)
        fail_msg("%d may_delete rows failed", failed);
}

static void test_parse(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        retention_kind_t kind;
        uint32_t value;
        char unit;
        const char *text; /* retention_policy_format */
    } good[] = {
        {"REDUNDANCY 3", RETENTION_REDUNDANCY, 3, 0, "REDUNDANCY 3"},
        {"redundancy 1", RETENTION_REDUNDANCY, 1, 0, "REDUNDANCY 1"},
        {"  Redundancy\t 10  ", RETENTION_REDUNDANCY, 10, 0, "REDUNDANCY 10"},
        {"REDUNDANCY 007", RETENTION_REDUNDANCY, 7, 0, "REDUNDANCY 7"},
        {"REDUNDANCY 100000", RETENTION_REDUNDANCY, 100000, 0, "REDUNDANCY 100000"},
        {"RECOVERY WINDOW OF 2 WEEKS", RETENTION_WINDOW, 2, 'w', "RECOVERY WINDOW OF 2 WEEKS"},
        {"recovery window of 1 week", RETENTION_WINDOW, 1, 'w', "RECOVERY WINDOW OF 1 WEEKS"},
        {"Recovery Window Of 7 Days", RETENTION_WINDOW, 7, 'd', "RECOVERY WINDOW OF 7 DAYS"},
        {"RECOVERY WINDOW OF 1 DAY", RETENTION_WINDOW, 1, 'd', "RECOVERY WINDOW OF 1 DAYS"},
        {"RECOVERY  WINDOW\tOF 3  MONTHS\n", RETENTION_WINDOW, 3, 'm', "RECOVERY WINDOW OF 3 MONTHS"},
        {"recovery window of 1 month", RETENTION_WINDOW, 1, 'm', "RECOVERY WINDOW OF 1 MONTHS"},
        {"rEcOvErY wInDoW oF 100000 mOnThS", RETENTION_WINDOW, 100000, 'm',
         "RECOVERY WINDOW OF 100000 MONTHS"},
        {"", RETENTION_NONE, 0, 0, ""},
        {" \t ", RETENTION_NONE, 0, 0, ""},
    };
    static const struct {
        const char *in;
        const char *why;
    } bad[] = {
        {"REDUNDANCY", EXPECTED},
        {"REDUNDANCY 0", "n must be at least 1"},
        {"REDUNDANCY 000", "n must be at least 1"},
        {"REDUNDANCY 100001", "n must be at most 100000"},
        {"REDUNDANCY 99999999999999999999999", "n must be at most 100000"},
        {"REDUNDANCY -1", EXPECTED},
        {"REDUNDANCY +1", EXPECTED},
        {"REDUNDANCY 1.5", EXPECTED},
        {"REDUNDANCY 3 4", EXPECTED},
        {"REDUNDANCY3", EXPECTED},
        {"REDUNDANCY three", EXPECTED},
        {"REDUNDANT 3", EXPECTED},
        {"RECOVERY WINDOW OF 0 DAYS", "n must be at least 1"},
        {"RECOVERY WINDOW OF 100001 WEEKS", "n must be at most 100000"},
        {"RECOVERY WINDOW OF 2 YEARS", EXPECTED},
        {"RECOVERY WINDOW OF 2 D", EXPECTED},
        {"RECOVERY WINDOW OF 2DAYS", EXPECTED},
        {"RECOVERY WINDOW OF 2 DAYSS", EXPECTED},
        {"RECOVERY WINDOW 2 DAYS", EXPECTED},
        {"RECOVERY WINDOW OF DAYS", EXPECTED},
        {"RECOVERY WINDOW OF -2 DAYS", EXPECTED},
        {"RECOVERY WINDOW OF 2 WEEKS AGO", EXPECTED},
        {"WINDOW OF 2 WEEKS", EXPECTED},
        {"MAIN", EXPECTED},
        {"a b c d e f g", EXPECTED},
    };
    int failed = 0;
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        retention_policy_t p;
        char why[128] = "", text[64];
        int rc = retention_policy_parse(good[i].in, &p, why, sizeof why);
        retention_policy_format(&p, text, sizeof text);
        if (rc != 0 || p.kind != good[i].kind || p.value != good[i].value || p.unit != good[i].unit ||
            strcmp(text, good[i].text) != 0) {
            print_error("good row \"%s\": rc %d (%s), kind %d value %u unit '%c', \"%s\"\n", good[i].in, rc,
                        why, (int)p.kind, (unsigned)p.value, p.unit ? p.unit : '-', text);
            failed++;
        }
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        retention_policy_t p;
        memset(&p, 0x5a, sizeof p);
        char why[128] = "";
        int rc = retention_policy_parse(bad[i].in, &p, why, sizeof why);
        if (rc != -1 || strcmp(why, bad[i].why) != 0 || p.kind != RETENTION_NONE || p.value != 0) {
            print_error("bad row \"%s\": rc %d, why \"%s\", expected \"%s\"\n", bad[i].in, rc, why, bad[i].why);
            failed++;
        }
    }
    if (failed)
        fail_msg("%d parse rows failed", failed);

    /* NULL is no policy; why may be NULL or short */
    retention_policy_t p;
    assert_int_equal(retention_policy_parse(NULL, &p, NULL, 0), 0);
    assert_int_equal(p.kind, RETENTION_NONE);
    assert_int_equal(retention_policy_parse("REDUNDANCY 0", &p, NULL, 0), -1);
    char shortwhy[8];
    assert_int_equal(retention_policy_parse("REDUNDANCY", &p, shortwhy, sizeof shortwhy), -1);
    assert_string_equal(shortwhy, "expecte");
    /* format: truncated to the buffer, nothing for a zero length */
    retention_policy_t w = {RETENTION_WINDOW, 2, 'w'};
    char small[11] = "xxxxxxxxxx";
    retention_policy_format(&w, small, sizeof small);
    assert_string_equal(small, "RECOVERY W");
    retention_policy_format(&w, small, 0);
    assert_string_equal(small, "RECOVERY W");
    retention_policy_t odd = {RETENTION_WINDOW, 2, 'y'};
    retention_policy_format(&odd, small, sizeof small);
    assert_string_equal(small, "");
}

static void test_window_ms(void **state)
{
    (void)state;
    static const struct {
        retention_policy_t p;
        int64_t ms;
    } rows[] = {
        {{RETENTION_WINDOW, 1, 'd'}, MS_DAY},
        {{RETENTION_WINDOW, 7, 'd'}, 7 * MS_DAY},
        {{RETENTION_WINDOW, 2, 'w'}, 14 * MS_DAY},
        {{RETENTION_WINDOW, 1, 'm'}, 31 * MS_DAY},
        {{RETENTION_WINDOW, 3, 'm'}, 93 * MS_DAY},
        {{RETENTION_WINDOW, 100000, 'm'}, INT64_C(3100000) * MS_DAY},
        {{RETENTION_WINDOW, 2, 'y'}, 0},
        {{RETENTION_REDUNDANCY, 3, 0}, 0},
        {{RETENTION_NONE, 0, 0}, 0},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        if (retention_window_ms(&rows[i].p) != rows[i].ms)
            fail_msg("row %zu: %lld ms, expected %lld", i, (long long)retention_window_ms(&rows[i].p),
                     (long long)rows[i].ms);

    assert_string_equal(retention_status_name(RETENTION_STATUS_NONE), "-");
    assert_string_equal(retention_status_name(RETENTION_STATUS_VALID), "VALID");
    assert_string_equal(retention_status_name(RETENTION_STATUS_OBSOLETE), "OBSOLETE");
    assert_string_equal(retention_status_name(RETENTION_STATUS_KEEP_FULL), "KEEP:FULL");
    assert_string_equal(retention_status_name(RETENTION_STATUS_KEEP_STANDALONE), "KEEP:STANDALONE");
    assert_string_equal(retention_status_name((retention_status_t)99), "?");
}

/* keep_from 000000020000000000000010; standalone ranges 03..05 and 08..08 (timeline 2). */
#define KEEP "000000020000000000000010"

static void test_wal_prunable(void **state)
{
    (void)state;
    static const retention_wal_range_t ranges[] = {
        {"000000020000000000000003", "000000020000000000000005"},
        {"000000020000000000000008", "000000020000000000000008"},
    };
    static const struct {
        const char *label;
        const char *name;
        const char *keep_from;
        int with_ranges;
        int expect;
    } rows[] = {
        {"history of keep_from's timeline", "00000002.history", KEEP, 1, 0},
        {"history of an older timeline", "00000001.history", KEEP, 1, 0},
        {"older timeline", "000000010000000000000001", KEEP, 1, 0},
        {"older timeline's partial", "000000010000000000000001.partial", KEEP, 1, 0},
        {"newer timeline", "000000030000000000000001", KEEP, 1, 0},
        {"keep_from itself", KEEP, KEEP, 1, 0},
        {"after keep_from", "000000020000000000000011", KEEP, 1, 0},
        {"after keep_from, next hi", "000000020000000100000000", KEEP, 1, 0},
        {"just before keep_from", "00000002000000000000000F", KEEP, 1, 1},
        {"long before keep_from", "000000020000000000000001", KEEP, 1, 1},
        {"just before a range", "000000020000000000000002", KEEP, 1, 1},
        {"a range's begin", "000000020000000000000003", KEEP, 1, 0},
        {"inside a range", "000000020000000000000004", KEEP, 1, 0},
        {"a range's end", "000000020000000000000005", KEEP, 1, 0},
        {"just after a range", "000000020000000000000006", KEEP, 1, 1},
        {"a one-segment range", "000000020000000000000008", KEEP, 1, 0},
        {"between ranges and keep_from", "000000020000000000000009", KEEP, 1, 1},
        {"inside a range, no ranges given", "000000020000000000000004", KEEP, 0, 1},
        {"partial before keep_from", "00000002000000000000000F.partial", KEEP, 1, 1},
        {"partial of keep_from", KEEP ".partial", KEEP, 1, 0},
        {"partial inside a range", "000000020000000000000004.partial", KEEP, 1, 0},
        {"backup label before keep_from", "00000002000000000000000F.00000028.backup", KEEP, 1, 1},
        {"backup label of keep_from", KEEP ".00000028.backup", KEEP, 1, 0},
        {"backup label inside a range", "000000020000000000000005.000000D8.backup", KEEP, 1, 0},
        {"empty keep_from", "000000020000000000000001", "", 1, 0},
        {"keep_from no segment", "000000020000000000000001", "00000002000000000000001", 1, 0},
        {"keep_from lowercase", "000000020000000000000001", "00000002000000000000000a", 1, 0},
        {"empty name", "", KEEP, 1, 0},
        {"garbage name", "foo", KEEP, 1, 0},
        {"lowercase hex", "00000002000000000000000f", KEEP, 1, 0},
        {"23 digits", "00000002000000000000000", KEEP, 1, 0},
        {"timeline 0", "000000000000000000000001", KEEP, 1, 0},
        {"unknown suffix", "00000002000000000000000F.tmp", KEEP, 1, 0},
        {"partial cut short", "00000002000000000000000F.partia", KEEP, 1, 0},
        {"partial and more", "00000002000000000000000F.partial.x", KEEP, 1, 0},
        {"backup label, 7 digits", "00000002000000000000000F.0000002.backup", KEEP, 1, 0},
        {"backup label, lowercase", "00000002000000000000000F.0000002a.backup", KEEP, 1, 0},
        {"backup label, no offset", "00000002000000000000000F.backup", KEEP, 1, 0},
        {"segment history", "00000002000000000000000F.history", KEEP, 1, 0},
    };
    int failed = 0;
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        int got = retention_wal_prunable(rows[i].name, rows[i].keep_from, rows[i].with_ranges ? ranges : NULL,
                                         rows[i].with_ranges ? 2 : 0);
        if (got != rows[i].expect) {
            print_error("row \"%s\" (%s): got %d, expected %d\n", rows[i].label, rows[i].name, got,
                        rows[i].expect);
            failed++;
        }
    }
    if (failed)
        fail_msg("%d wal_prunable rows failed", failed);
    assert_int_equal(retention_wal_prunable(NULL, KEEP, NULL, 0), 0);
    assert_int_equal(retention_wal_prunable("000000020000000000000001", NULL, NULL, 0), 0);
}

static void test_keep_from(void **state)
{
    (void)state;
#define N(b) {b, "E", 0}
#define S(b) {b, "E", 1}
    static const struct {
        const char *label;
        retention_stay_t s[4];
        size_t n;
        const char *expect;
    } rows[] = {
        {"none", {{0}}, 0, ""},
        {"one", {N("000000010000000000000005")}, 1, "000000010000000000000005"},
        {"oldest of several", {N("000000010000000000000005"), N("000000010000000000000009")}, 2,
         "000000010000000000000005"},
        {"standalone first", {S("000000010000000000000002"), N("000000010000000000000005"),
                              N("000000010000000000000009")}, 3, "000000010000000000000005"},
        {"standalone between", {N("000000010000000000000005"), S("000000010000000000000007"),
                                N("000000010000000000000009")}, 3, "000000010000000000000005"},
        {"only the newest not standalone", {S("000000010000000000000002"), S("000000010000000000000007"),
                                            N("000000020000000000000009")}, 3, "000000020000000000000009"},
        {"all standalone: the newest", {S("000000010000000000000002"), S("000000010000000000000007")}, 2,
         "000000010000000000000007"},
        {"one standalone", {S("000000010000000000000002")}, 1, "000000010000000000000002"},
        {"no wal_begin", {{NULL, NULL, 0}}, 1, ""},
    };
#undef N
#undef S
    int failed = 0;
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        char out[BQ_WAL_NAME_MAX] = "junk";
        retention_keep_from(rows[i].s, rows[i].n, out, sizeof out);
        if (strcmp(out, rows[i].expect) != 0) {
            print_error("row \"%s\": got \"%s\", expected \"%s\"\n", rows[i].label, out, rows[i].expect);
            failed++;
        }
    }
    if (failed)
        fail_msg("%d keep_from rows failed", failed);
    /* truncated to the buffer */
    retention_stay_t one = {"000000010000000000000005", NULL, 0};
    char small[9];
    retention_keep_from(&one, 1, small, sizeof small);
    assert_string_equal(small, "00000001");
}

/* The caller's whole round, as the retention pass runs it: classify, delete OBSOLETE oldest
 * first under the guard, then prune WAL below keep_from outside the standalone ranges. */
static void test_round(void **state)
{
    (void)state;
    static const struct {
        const char *begin, *end;
        retention_backup_t b;
    } cat[] = {
        {"000000010000000000000003", "000000010000000000000004", {1, RETENTION_KEEP_STANDALONE, 0}},
        {"000000010000000000000008", "000000010000000000000008", {1, RETENTION_KEEP_NONE, 0}},
        {"00000001000000000000000A", "00000001000000000000000A", {0, RETENTION_KEEP_NONE, 0}},
        {"00000001000000000000000C", "00000001000000000000000D", {1, RETENTION_KEEP_NONE, 0}},
        {"000000010000000000000010", "000000010000000000000010", {1, RETENTION_KEEP_NONE, 0}},
    };
    enum { NB = sizeof cat / sizeof cat[0] };
    retention_backup_t b[NB];
    for (size_t i = 0; i < NB; i++) {
        b[i] = cat[i].b;
        b[i].end_ms = ms_of("2026-10-01 02:00") + (int64_t)i * MS_DAY;
    }
    retention_policy_t p;
    assert_int_equal(retention_policy_parse("REDUNDANCY 1", &p, NULL, 0), 0);
    retention_status_t st[NB];
    retention_classify(&p, 1, ms_of(NOW), b, NB, st);
    assert_int_equal(st[0], RETENTION_STATUS_KEEP_STANDALONE);
    assert_int_equal(st[1], RETENTION_STATUS_OBSOLETE);
    assert_int_equal(st[2], RETENTION_STATUS_NONE);
    assert_int_equal(st[3], RETENTION_STATUS_OBSOLETE);
    assert_int_equal(st[4], RETENTION_STATUS_VALID);

    size_t done = 4;
    int gone[NB] = {0};
    for (size_t i = 0; i < NB; i++)
        if (st[i] == RETENTION_STATUS_OBSOLETE && retention_may_delete(done, 1)) {
            gone[i] = 1;
            done--;
        }
    assert_true(gone[1] && gone[3] && done == 2);

    retention_stay_t stay[NB];
    retention_wal_range_t ranges[NB];
    size_t ns = 0, nr = 0;
    for (size_t i = 0; i < NB; i++) {
        if (gone[i] || !b[i].done)
            continue;
        int standalone = st[i] == RETENTION_STATUS_KEEP_STANDALONE;
        stay[ns++] = (retention_stay_t){cat[i].begin, cat[i].end, standalone};
        if (standalone) {
            snprintf(ranges[nr].begin, sizeof ranges[nr].begin, "%s", cat[i].begin);
            snprintf(ranges[nr].end, sizeof ranges[nr].end, "%s", cat[i].end);
            nr++;
        }
    }
    char from[BQ_WAL_NAME_MAX];
    retention_keep_from(stay, ns, from, sizeof from);
    assert_string_equal(from, "000000010000000000000010");
    static const struct {
        const char *name;
        int expect;
    } wal[] = {
        {"000000010000000000000002", 1}, {"000000010000000000000003", 0}, {"000000010000000000000004", 0},
        {"000000010000000000000005", 1}, {"000000010000000000000008", 1}, {"00000001000000000000000C", 1},
        {"00000001000000000000000F", 1}, {"000000010000000000000010", 0}, {"000000010000000000000011", 0},
    };
    for (size_t i = 0; i < sizeof wal / sizeof wal[0]; i++)
        if (retention_wal_prunable(wal[i].name, from, ranges, nr) != wal[i].expect)
            fail_msg("round: %s should be %s", wal[i].name, wal[i].expect ? "pruned" : "kept");

    /* With minimum_redundancy 3 the guard stops the second deletion. */
    done = 4;
    size_t deleted = 0;
    for (size_t i = 0; i < NB; i++)
        if (st[i] == RETENTION_STATUS_OBSOLETE && retention_may_delete(done, 3)) {
            deleted++;
            done--;
        }
    assert_int_equal(deleted, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_redundancy),  cmocka_unit_test(test_window),
        cmocka_unit_test(test_may_delete),  cmocka_unit_test(test_parse),
        cmocka_unit_test(test_window_ms),   cmocka_unit_test(test_wal_prunable),
        cmocka_unit_test(test_keep_from),   cmocka_unit_test(test_round),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
