/* coordinator/schedule.c: the grammar of backup_schedule, backup_jitter and durations (good
 * and bad specs with their exact messages), formats, the cluster offsets (bounds, spread,
 * stability), slots across a year boundary and a leap day, and the due decision driven by a
 * simulated clock, with this file playing the coordinator: it persists last_slot_ms when a
 * slot fires or is adopted and holds the cluster active while its backup "runs". Schedules
 * fire on time for ten days, an outage runs once, an active backup makes the slot wait, a
 * cluster seen first is backed up or adopts its slot, a clock that moves back refires nothing. */
#include "schedule.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SEC  INT64_C(1000)
#define MIN  (60 * SEC)
#define HOUR (60 * MIN)
#define DAY  (24 * HOUR)

/* Midnights UTC, from `date -u -d 2026-12-01 +%s` (not from the code under test). */
#define T_2026_12_01 (INT64_C(1796083200) * SEC)
#define T_2026_12_31 (INT64_C(1798675200) * SEC)
#define T_2027_01_01 (INT64_C(1798761600) * SEC)
#define T_2028_02_29 (INT64_C(1835395200) * SEC)
#define T_2000_02_29 (INT64_C(951782400) * SEC)
#define T_2100_03_01 (INT64_C(4107542400) * SEC)

static schedule_t parse_ok(const char *spec, const char *jitter)
{
    schedule_t s;
    char why[256] = "";
    if (schedule_parse(spec, jitter, &s, why, sizeof why) != 0)
        fail_msg("schedule_parse(\"%s\", \"%s\"): %s", spec, jitter, why);
    return s;
}

static const char *tfmt(int64_t ms)
{
    static char buf[4][40];
    static int k;
    k = (k + 1) % 4;
    schedule_time_format(ms, buf[k], sizeof buf[k]);
    return buf[k];
}

/* ---- grammar ----------------------------------------------------------------------------- */

static void test_duration_parse(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        int64_t ms;
    } good[] = {
        {"0", 0},
        {"0s", 0},
        {"0w", 0},
        {"1s", SEC},
        {"90s", 90 * SEC},
        {"30m", 30 * MIN},
        {"6h", 6 * HOUR},
        {"1d", DAY},
        {"1w", 7 * DAY},
        {"2w", 14 * DAY},
        {"007m", 7 * MIN},
        {"9223372036854775s", INT64_C(9223372036854775) * SEC},
        {"15250284452w", INT64_C(15250284452) * 7 * DAY},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        int64_t ms = -1;
        char why[160] = "";
        if (schedule_duration_parse(good[i].in, &ms, why, sizeof why) != 0)
            fail_msg("row %zu \"%s\": refused: %s", i, good[i].in, why);
        if (ms != good[i].ms)
            fail_msg("row %zu \"%s\": %" PRId64 " ms, want %" PRId64, i, good[i].in, ms,
                     good[i].ms);
    }

#define NOT_DUR "is not a duration (a number and a unit s, m, h, d or w, as in 30m)"
    static const struct {
        const char *in, *why;
    } bad[] = {
        {"", "\"\" " NOT_DUR},
        {NULL, "\"\" " NOT_DUR},
        {"s", "\"s\" " NOT_DUR},
        {"-5s", "\"-5s\" " NOT_DUR},
        {"+5s", "\"+5s\" " NOT_DUR},
        {" 5s", "\" 5s\" " NOT_DUR},
        {"5 s", "\"5 s\" " NOT_DUR},
        {"1.5h", "\"1.5h\" " NOT_DUR},
        {"5s ", "\"5s \" " NOT_DUR},
        {"5", "\"5\" has no unit (s, m, h, d or w)"},
        {"90", "\"90\" has no unit (s, m, h, d or w)"},
        {"5ms", "\"5ms\" has an unknown unit \"ms\" (s, m, h, d or w)"},
        {"6hours", "\"6hours\" has an unknown unit \"hours\" (s, m, h, d or w)"},
        {"5S", "\"5S\" has an unknown unit \"S\" (s, m, h, d or w)"},
        {"3y", "\"3y\" has an unknown unit \"y\" (s, m, h, d or w)"},
        {"9223372036854775808", "\"9223372036854775808\" is too large"},
        {"99999999999999999999d", "\"99999999999999999999d\" is too large"},
        {"9223372036854776s", "\"9223372036854776s\" is too large"},
        {"15250284453w", "\"15250284453w\" is too large"},
        {"1234567890123456789012345678901234567890123", /* quoted cut at 40 */
         "\"1234567890123456789012345678901234567890\" is too large"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t ms = 4242;
        char why[160] = "";
        int rc = schedule_duration_parse(bad[i].in, &ms, why, sizeof why);
        if (rc != -1)
            fail_msg("row %zu \"%s\": rc %d, want -1 (BQ_E_INVAL)", i,
                     bad[i].in ? bad[i].in : "NULL", rc);
        if (strcmp(why, bad[i].why) != 0)
            fail_msg("row %zu \"%s\": why \"%s\", want \"%s\"", i, bad[i].in ? bad[i].in : "NULL",
                     why, bad[i].why);
        if (ms != 4242)
            fail_msg("row %zu \"%s\": *ms changed on failure", i, bad[i].in ? bad[i].in : "NULL");
        /* why may be NULL */
        assert_int_equal(schedule_duration_parse(bad[i].in, &ms, NULL, 0), -1);
    }
}

static void test_duration_format(void **state)
{
    (void)state;
    static const struct {
        int64_t ms;
        const char *out;
    } rows[] = {
        {0, "0"},          {SEC, "1s"},        {90 * SEC, "90s"},   {120 * SEC, "2m"},
        {HOUR, "1h"},      {36 * HOUR, "36h"}, {DAY, "1d"},         {8 * DAY, "8d"},
        {7 * DAY, "1w"},   {14 * DAY, "2w"},   {366 * DAY, "366d"}, {1500, "1500ms"},
        {-SEC, "-1000ms"},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        char buf[32];
        schedule_duration_format(rows[i].ms, buf, sizeof buf);
        if (strcmp(buf, rows[i].out) != 0)
            fail_msg("row %zu (%" PRId64 " ms): \"%s\", want \"%s\"", i, rows[i].ms, buf,
                     rows[i].out);
    }
}

#define HOURLY24                                                                                   \
    "00:00,01:00,02:00,03:00,04:00,05:00,06:00,07:00,08:00,09:00,10:00,11:00,12:00,13:00,14:00,"   \
    "15:00,16:00,17:00,18:00,19:00,20:00,21:00,22:00,23:00"

static void test_parse_good(void **state)
{
    (void)state;
    static const struct {
        const char *spec, *jitter;
        int kind;
        int64_t interval_ms;
        const char *format;
        int64_t jitter_ms;
    } rows[] = {
        {"", "", SCHEDULE_NONE, 0, "none", 0},
        {NULL, NULL, SCHEDULE_NONE, 0, "none", 0},
        {"", "5m", SCHEDULE_NONE, 0, "none", 0}, /* jitter checked, then ignored */
        {"10s", "", SCHEDULE_INTERVAL, 10 * SEC, "every 10s", SEC},
        {"90s", "", SCHEDULE_INTERVAL, 90 * SEC, "every 90s", 9 * SEC},
        {"120s", "", SCHEDULE_INTERVAL, 2 * MIN, "every 2m", 12 * SEC},
        {"15s", NULL, SCHEDULE_INTERVAL, 15 * SEC, "every 15s", 1500},
        {"30m", "", SCHEDULE_INTERVAL, 30 * MIN, "every 30m", 3 * MIN},
        {"1h", "", SCHEDULE_INTERVAL, HOUR, "every 1h", 6 * MIN},
        {"6h", "", SCHEDULE_INTERVAL, 6 * HOUR, "every 6h", 15 * MIN},
        {"6h", "0", SCHEDULE_INTERVAL, 6 * HOUR, "every 6h", 0},
        {"6h", "1h", SCHEDULE_INTERVAL, 6 * HOUR, "every 6h", HOUR},
        {"6h", "21599s", SCHEDULE_INTERVAL, 6 * HOUR, "every 6h", 21599 * SEC},
        {"150m", "", SCHEDULE_INTERVAL, 150 * MIN, "every 150m", 15 * MIN},
        {"1d", "", SCHEDULE_INTERVAL, DAY, "every 1d", 15 * MIN},
        {"1d", "86399s", SCHEDULE_INTERVAL, DAY, "every 1d", 86399 * SEC},
        {"7d", "", SCHEDULE_INTERVAL, 7 * DAY, "every 1w", 15 * MIN},
        {"1w", "1d", SCHEDULE_INTERVAL, 7 * DAY, "every 1w", DAY},
        {"52w", "", SCHEDULE_INTERVAL, 364 * DAY, "every 52w", 15 * MIN},
        {"366d", "", SCHEDULE_INTERVAL, 366 * DAY, "every 366d", 15 * MIN},
        {"02:30", "", SCHEDULE_DAILY, 0, "daily at 02:30 UTC", 15 * MIN},
        {"00:00", "0", SCHEDULE_DAILY, 0, "daily at 00:00 UTC", 0},
        {"23:59", "23h", SCHEDULE_DAILY, 0, "daily at 23:59 UTC", 23 * HOUR},
        {"02:30,14:30", "", SCHEDULE_DAILY, 0, "daily at 02:30,14:30 UTC", 15 * MIN},
        {"14:30,02:30", "", SCHEDULE_DAILY, 0, "daily at 02:30,14:30 UTC", 15 * MIN},
        {"02:30, 14:30 ,\t18:05", "", SCHEDULE_DAILY, 0, "daily at 02:30,14:30,18:05 UTC",
         15 * MIN},
        {"02:30", "86399s", SCHEDULE_DAILY, 0, "daily at 02:30 UTC", 86399 * SEC},
        {HOURLY24, "", SCHEDULE_DAILY, 0, "daily at " HOURLY24 " UTC", 15 * MIN},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        schedule_t s;
        char why[256] = "";
        const char *spec = rows[i].spec ? rows[i].spec : "NULL";
        if (schedule_parse(rows[i].spec, rows[i].jitter, &s, why, sizeof why) != 0)
            fail_msg("row %zu \"%s\" jitter \"%s\": refused: %s", i, spec, rows[i].jitter, why);
        if (s.kind != rows[i].kind)
            fail_msg("row %zu \"%s\": kind %d, want %d", i, spec, s.kind, rows[i].kind);
        if (s.kind == SCHEDULE_INTERVAL && s.interval_ms != rows[i].interval_ms)
            fail_msg("row %zu \"%s\": interval %" PRId64 " ms, want %" PRId64, i, spec,
                     s.interval_ms, rows[i].interval_ms);
        if (s.jitter_ms != rows[i].jitter_ms)
            fail_msg("row %zu \"%s\" jitter \"%s\": jitter %" PRId64 " ms, want %" PRId64, i, spec,
                     rows[i].jitter, s.jitter_ms, rows[i].jitter_ms);
        char buf[256];
        schedule_format(&s, buf, sizeof buf);
        if (strcmp(buf, rows[i].format) != 0)
            fail_msg("row %zu \"%s\": formats as \"%s\", want \"%s\"", i, spec, buf,
                     rows[i].format);
        for (int k = 1; s.kind == SCHEDULE_DAILY && k < s.ntimes; k++)
            if (s.minutes[k] <= s.minutes[k - 1])
                fail_msg("row %zu \"%s\": minutes not ascending at %d", i, spec, k);
    }
    schedule_t s = parse_ok(HOURLY24, "");
    assert_int_equal(s.ntimes, 24);
    assert_int_equal(s.minutes[0], 0);
    assert_int_equal(s.minutes[23], 23 * 60);
    s = parse_ok("14:30,02:30", "");
    assert_int_equal(s.ntimes, 2);
    assert_int_equal(s.minutes[0], 150);
    assert_int_equal(s.minutes[1], 870);

    /* a format into a short buffer is cut, never overrun */
    char small[8];
    schedule_format(&s, small, sizeof small);
    assert_string_equal(small, "daily a");
    schedule_format(NULL, small, sizeof small);
    assert_string_equal(small, "none");
}

static void test_parse_bad(void **state)
{
    (void)state;
#define NOT_TIME "is not a time of day (HH:MM from 00:00 to 23:59, UTC)"
    static const struct {
        const char *spec, *jitter, *why;
    } rows[] = {
        /* intervals */
        {"90", "", "backup_schedule: \"90\" has no unit (s, m, h, d or w)"},
        {"6", "", "backup_schedule: \"6\" has no unit (s, m, h, d or w)"},
        {"6x", "", "backup_schedule: \"6x\" has an unknown unit \"x\" (s, m, h, d or w)"},
        {"6hours", "",
         "backup_schedule: \"6hours\" has an unknown unit \"hours\" (s, m, h, d or w)"},
        {"2h30m", "", "backup_schedule: \"2h30m\" " NOT_DUR},
        {"1.5h", "", "backup_schedule: \"1.5h\" " NOT_DUR},
        {"daily", "", "backup_schedule: \"daily\" " NOT_DUR},
        {"-6h", "", "backup_schedule: \"-6h\" " NOT_DUR},
        {"0", "", "backup_schedule: \"0\" is not an interval (leave it empty for no schedule)"},
        {"0s", "", "backup_schedule: \"0s\" is not an interval (leave it empty for no schedule)"},
        {"0d", "1m", "backup_schedule: \"0d\" is not an interval (leave it empty for no schedule)"},
        {"1s", "", "backup_schedule: \"1s\" is shorter than 10s"},
        {"9s", "", "backup_schedule: \"9s\" is shorter than 10s"},
        {"367d", "", "backup_schedule: \"367d\" is longer than 366d"},
        {"53w", "", "backup_schedule: \"53w\" is longer than 366d"},
        {"8785h", "", "backup_schedule: \"8785h\" is longer than 366d"},
        {"99999999999999999999d", "", "backup_schedule: \"99999999999999999999d\" is too large"},
        /* times of day */
        {"24:00", "", "backup_schedule: \"24:00\" " NOT_TIME},
        {"2:5", "", "backup_schedule: \"2:5\" " NOT_TIME},
        {"2:30", "", "backup_schedule: \"2:30\" " NOT_TIME},
        {"02:5", "", "backup_schedule: \"02:5\" " NOT_TIME},
        {"02:60", "", "backup_schedule: \"02:60\" " NOT_TIME},
        {"99:99", "", "backup_schedule: \"99:99\" " NOT_TIME},
        {"02:30:00", "", "backup_schedule: \"02:30:00\" " NOT_TIME},
        {"ab:cd", "", "backup_schedule: \"ab:cd\" " NOT_TIME},
        {"02h30", "", "backup_schedule: \"02h30\" " NOT_DUR},
        {"02:30;14:30", "", "backup_schedule: \"02:30;14:30\" " NOT_TIME},
        {"02:30 14:30", "", "backup_schedule: \"02:30 14:30\" " NOT_TIME},
        {"02:30,6h", "", "backup_schedule: \"6h\" " NOT_TIME},
        {"6h,12h", "", "backup_schedule: \"6h\" " NOT_TIME},
        {"02:30,24:00", "", "backup_schedule: \"24:00\" " NOT_TIME},
        {":", "", "backup_schedule: \":\" " NOT_TIME},
        /* lists */
        {"02:30,,14:30", "", "backup_schedule: \"02:30,,14:30\" has an empty time"},
        {"02:30,", "", "backup_schedule: \"02:30,\" has an empty time"},
        {",02:30", "", "backup_schedule: \",02:30\" has an empty time"},
        {"02:30, ,14:30", "", "backup_schedule: \"02:30, ,14:30\" has an empty time"},
        {",", "", "backup_schedule: \",\" has an empty time"},
        {"02:30,02:30", "", "backup_schedule: 02:30 is listed twice"},
        {"14:30,02:30,14:30", "", "backup_schedule: 14:30 is listed twice"},
        {HOURLY24 ",23:30", "", "backup_schedule: more than 24 times of day"},
        /* jitter */
        {"6h", "6h", "backup_jitter: \"6h\" is not shorter than the interval (6h)"},
        {"6h", "7h", "backup_jitter: \"7h\" is not shorter than the interval (6h)"},
        {"6h", "360m", "backup_jitter: \"360m\" is not shorter than the interval (6h)"},
        {"90s", "2m", "backup_jitter: \"2m\" is not shorter than the interval (90s)"},
        {"10s", "10s", "backup_jitter: \"10s\" is not shorter than the interval (10s)"},
        {"1w", "1w", "backup_jitter: \"1w\" is not shorter than the interval (1w)"},
        {"02:30", "1d", "backup_jitter: \"1d\" is not shorter than a day"},
        {"02:30,14:30", "24h", "backup_jitter: \"24h\" is not shorter than a day"},
        {"6h", "15", "backup_jitter: \"15\" has no unit (s, m, h, d or w)"},
        {"6h", "15ms", "backup_jitter: \"15ms\" has an unknown unit \"ms\" (s, m, h, d or w)"},
        {"6h", "abc", "backup_jitter: \"abc\" " NOT_DUR},
        {"", "x", "backup_jitter: \"x\" " NOT_DUR},
        {"", "9999999999999999999999s", "backup_jitter: \"9999999999999999999999s\" is too large"},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        schedule_t s, before;
        memset(&s, 0x5a, sizeof s);
        before = s;
        char why[256] = "";
        int rc = schedule_parse(rows[i].spec, rows[i].jitter, &s, why, sizeof why);
        if (rc != -1)
            fail_msg("row %zu \"%s\" jitter \"%s\": rc %d, want -1 (BQ_E_INVAL)", i, rows[i].spec,
                     rows[i].jitter, rc);
        if (strcmp(why, rows[i].why) != 0)
            fail_msg("row %zu \"%s\" jitter \"%s\":\n  why  \"%s\"\n  want \"%s\"", i, rows[i].spec,
                     rows[i].jitter, why, rows[i].why);
        if (memcmp(&s, &before, sizeof s) != 0)
            fail_msg("row %zu \"%s\": *s changed on failure", i, rows[i].spec);
        if (schedule_parse(rows[i].spec, rows[i].jitter, &s, NULL, 0) != -1)
            fail_msg("row %zu \"%s\": why NULL: not refused", i, rows[i].spec);
    }
}

/* ---- time ------------------------------------------------------------------------------- */

static void test_time_format(void **state)
{
    (void)state;
    static const struct {
        int64_t ms;
        const char *out;
    } rows[] = {
        {0, "1970-01-01 00:00:00 UTC"},
        {999, "1970-01-01 00:00:00 UTC"},
        {-1, "1969-12-31 23:59:59 UTC"},
        {-DAY, "1969-12-31 00:00:00 UTC"},
        {T_2026_12_01 + DAY + 2 * HOUR + 37 * MIN + 12 * SEC + 999, "2026-12-02 02:37:12 UTC"},
        {T_2027_01_01 - 1, "2026-12-31 23:59:59 UTC"},
        {T_2027_01_01, "2027-01-01 00:00:00 UTC"},
        {T_2028_02_29 + 12 * HOUR, "2028-02-29 12:00:00 UTC"},
        {T_2028_02_29 + DAY, "2028-03-01 00:00:00 UTC"},
        {T_2000_02_29, "2000-02-29 00:00:00 UTC"},
        {T_2100_03_01 - 1, "2100-02-28 23:59:59 UTC"}, /* 2100 is no leap year */
        {INT64_MAX, "never"},
        {INT64_MIN, "never"},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        char buf[40];
        schedule_time_format(rows[i].ms, buf, sizeof buf);
        if (strcmp(buf, rows[i].out) != 0)
            fail_msg("row %zu (%" PRId64 " ms): \"%s\", want \"%s\"", i, rows[i].ms, buf,
                     rows[i].out);
    }
    char small[11];
    schedule_time_format(T_2027_01_01, small, sizeof small);
    assert_string_equal(small, "2027-01-01");
}

/* ---- offsets ---------------------------------------------------------------------------- */

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static void test_offsets(void **state)
{
    (void)state;
    static const char *const forms[] = {"cluster-%04d", "db%d"};
    schedule_t s = parse_ok("1d", "15m");
    assert_true(s.jitter_ms == 15 * MIN);
    for (size_t f = 0; f < 2; f++) {
        int64_t off[1000];
        int bucket[10] = {0};
        for (int i = 0; i < 1000; i++) {
            char name[32];
            snprintf(name, sizeof name, forms[f], i + 1);
            off[i] = schedule_offset(&s, name);
            if (off[i] < 0 || off[i] >= s.jitter_ms)
                fail_msg("%s: offset %" PRId64 " outside [0, %" PRId64 ")", name, off[i],
                         s.jitter_ms);
            if (schedule_offset(&s, name) != off[i])
                fail_msg("%s: offset not stable", name);
            bucket[off[i] / (s.jitter_ms / 10)]++;
        }
        qsort(off, 1000, sizeof off[0], cmp_i64);
        int distinct = 1;
        for (int i = 1; i < 1000; i++)
            distinct += off[i] != off[i - 1];
        if (distinct < 990)
            fail_msg("names \"%s\": only %d distinct offsets of 1000", forms[f], distinct);
        for (int b = 0; b < 10; b++)
            if (bucket[b] < 50 || bucket[b] > 150)
                fail_msg("names \"%s\": %d of 1000 offsets in tenth %d of the jitter (want 50-150)",
                         forms[f], bucket[b], b);
    }

    /* pinned (FNV-1a 64 + fmix64, checked by hand in Python): the hash must never change, or
     * every cluster's slots would move */
    assert_true(schedule_offset(&s, "db1") == 562389);
    assert_true(schedule_offset(&s, "") == 614342);
    assert_true(schedule_offset(&s, NULL) == 614342);
    /* the offset depends on the jitter, not on the schedule's kind or interval */
    schedule_t d = parse_ok("02:30,14:30", "15m");
    assert_true(schedule_offset(&d, "db1") == 562389);

    /* no jitter, no spread; NONE has none; a 1 ms jitter leaves only 0 */
    schedule_t z = parse_ok("1d", "0");
    schedule_t none = parse_ok("", "");
    schedule_t one = s;
    one.jitter_ms = 1;
    for (int i = 0; i < 1000; i++) {
        char name[32];
        snprintf(name, sizeof name, "db%d", i);
        if (schedule_offset(&z, name) != 0 || schedule_offset(&none, name) != 0 ||
            schedule_offset(&one, name) != 0)
            fail_msg("%s: offset not 0 with no jitter", name);
    }
    assert_true(schedule_offset(NULL, "db1") == 0);
}

/* ---- slots ------------------------------------------------------------------------------ */

static void test_slots_none(void **state)
{
    (void)state;
    schedule_t s = parse_ok("", "");
    assert_true(schedule_slot_at_or_before(&s, 0, T_2026_12_01) == INT64_MIN);
    assert_true(schedule_slot_after(&s, 0, T_2026_12_01) == INT64_MAX);
    schedule_state_t st = {T_2026_12_01, 0, 0};
    schedule_decision_t d;
    schedule_decide(&s, 0, &st, T_2026_12_01, &d);
    assert_false(d.due);
    assert_false(d.adopt);
    assert_true(d.next_ms == INT64_MAX);
    assert_string_equal(d.why, "no backup_schedule");
    st.last_slot_ms = 0;
    schedule_decide(&s, 0, &st, T_2026_12_01, &d);
    assert_false(d.due);
    assert_string_equal(d.why, "no backup_schedule");
    assert_string_equal(tfmt(d.next_ms), "never");
    /* a schedule not made by schedule_parse is NONE */
    schedule_t bogus = parse_ok("02:30,14:30", "0");
    bogus.minutes[1] = 100;
    assert_true(schedule_slot_after(&bogus, 0, T_2026_12_01) == INT64_MAX);
    schedule_decide(&bogus, 0, &st, T_2026_12_01, &d);
    assert_false(d.due);
}

/* 2026-12-31 → 2027-01-01, the new year's first week, and a leap day. */
static void test_slots_year_boundary(void **state)
{
    (void)state;
    schedule_t s = parse_ok("23:59", "0");
    int64_t at = T_2026_12_31 + 23 * HOUR + 59 * MIN;
    assert_string_equal(tfmt(schedule_slot_after(&s, 0, at - 1)), "2026-12-31 23:59:00 UTC");
    assert_string_equal(tfmt(schedule_slot_at_or_before(&s, 0, at)), "2026-12-31 23:59:00 UTC");
    assert_string_equal(tfmt(schedule_slot_after(&s, 0, at)), "2027-01-01 23:59:00 UTC");
    assert_string_equal(tfmt(schedule_slot_at_or_before(&s, 0, T_2027_01_01 + HOUR)),
                        "2026-12-31 23:59:00 UTC");

    /* with its offset, the cluster's 2026-12-31 slot falls in 2027 */
    s = parse_ok("23:59", "15m");
    const char *name = NULL;
    char buf[32];
    int64_t off = 0;
    for (int i = 1; i < 100 && !name; i++) {
        snprintf(buf, sizeof buf, "db%d", i);
        off = schedule_offset(&s, buf);
        if (off > 5 * MIN)
            name = buf;
    }
    assert_non_null(name);
    int64_t slot = at + off; /* 2027-01-01 00:04..00:15 */
    assert_true(slot > T_2027_01_01);
    assert_true(schedule_slot_after(&s, off, at) == slot);
    assert_true(schedule_slot_at_or_before(&s, off, T_2027_01_01 + 30 * SEC) == slot - DAY);
    assert_true(schedule_slot_at_or_before(&s, off, slot) == slot);
    assert_true(schedule_slot_after(&s, off, slot) == slot + DAY);
    assert_int_equal(strncmp(tfmt(slot), "2027-01-01 00:", 14), 0);

    /* the decision at midnight: fired for 12-30's slot, next is 12-31's, in 2027 */
    schedule_state_t st = {slot - DAY, slot - DAY, 0};
    schedule_decision_t d;
    schedule_decide(&s, off, &st, T_2027_01_01, &d);
    assert_false(d.due);
    assert_true(d.next_ms == slot);
    char want[160];
    snprintf(want, sizeof want, "next slot %s", tfmt(slot));
    assert_string_equal(d.why, want);
    schedule_decide(&s, off, &st, slot, &d);
    assert_true(d.due);
    assert_true(d.slot_ms == slot);
    assert_int_equal(d.missed, 0);
    snprintf(want, sizeof want, "slot %s is due", tfmt(slot));
    assert_string_equal(d.why, want);
    assert_true(d.next_ms == slot + DAY);

    /* "1w" is Thursdays 00:00 UTC: 2026-12-31 is one, the next 2027-01-07 */
    s = parse_ok("1w", "0");
    assert_string_equal(tfmt(schedule_slot_after(&s, 0, T_2026_12_31 - 3 * DAY)),
                        "2026-12-31 00:00:00 UTC");
    assert_string_equal(tfmt(schedule_slot_at_or_before(&s, 0, T_2027_01_01)),
                        "2026-12-31 00:00:00 UTC");
    assert_string_equal(tfmt(schedule_slot_after(&s, 0, T_2026_12_31)), "2027-01-07 00:00:00 UTC");

    /* "6h" across the year */
    s = parse_ok("6h", "0");
    assert_string_equal(tfmt(schedule_slot_after(&s, 0, T_2027_01_01 - 1)),
                        "2027-01-01 00:00:00 UTC");
    assert_string_equal(tfmt(schedule_slot_at_or_before(&s, 0, T_2027_01_01 - 1)),
                        "2026-12-31 18:00:00 UTC");

    /* a leap day is a day */
    s = parse_ok("02:30,14:30", "0");
    assert_string_equal(tfmt(schedule_slot_after(&s, 0, T_2028_02_29)), "2028-02-29 02:30:00 UTC");
    assert_string_equal(tfmt(schedule_slot_after(&s, 0, T_2028_02_29 + 15 * HOUR)),
                        "2028-03-01 02:30:00 UTC");
    assert_string_equal(tfmt(schedule_slot_at_or_before(&s, 0, T_2028_02_29 + 2 * HOUR)),
                        "2028-02-28 14:30:00 UTC");

    /* slots exactly at now: at_or_before is now, after is the next */
    assert_true(schedule_slot_at_or_before(&s, 0, T_2028_02_29 + 150 * MIN) ==
                T_2028_02_29 + 150 * MIN);
    assert_true(schedule_slot_after(&s, 0, T_2028_02_29 + 150 * MIN) == T_2028_02_29 + 870 * MIN);
    /* before the epoch */
    s = parse_ok("1d", "0");
    assert_true(schedule_slot_at_or_before(&s, 0, -1) == -DAY);
    assert_true(schedule_slot_after(&s, 0, -1) == 0);
}

/* ---- the simulated coordinator ---------------------------------------------------------- */

#define FIRES_MAX 1024

typedef struct {
    const char *spec;
    schedule_t s;
    int64_t off;
    schedule_state_t st;
    int64_t now;
    int64_t busy_ms;    /* how long a backup it starts runs */
    int64_t busy_until; /* the cluster is active while now < busy_until */
    int nfires, nadopts;
    int64_t fire_at[FIRES_MAX], fire_slot[FIRES_MAX];
    int fire_missed[FIRES_MAX];
    schedule_decision_t last; /* the last decision */
} sim_t;

static void sim_init(sim_t *m, const char *spec, const char *jitter, const char *cluster,
                     int64_t now, int64_t busy_ms)
{
    memset(m, 0, sizeof *m);
    m->spec = spec;
    m->s = parse_ok(spec, jitter);
    m->off = schedule_offset(&m->s, cluster);
    m->now = now;
    m->busy_ms = busy_ms;
}

/* One pass of the scheduler at m->now, doing what the decision says. */
static void sim_tick(sim_t *m)
{
    m->st.active = m->now < m->busy_until;
    schedule_decision_t *d = &m->last;
    schedule_decide(&m->s, m->off, &m->st, m->now, d);
    if (d->due && d->adopt)
        fail_msg("%s at %s: due and adopt", m->spec, tfmt(m->now));
    if (d->next_ms <= m->now)
        fail_msg("%s at %s: next %s is not after now", m->spec, tfmt(m->now), tfmt(d->next_ms));
    if (strlen(d->why) == 0 || strlen(d->why) >= sizeof d->why - 1)
        fail_msg("%s at %s: why \"%s\" empty or cut", m->spec, tfmt(m->now), d->why);
    if (d->due) {
        if (d->slot_ms > m->now)
            fail_msg("%s at %s: fires for slot %s in the future", m->spec, tfmt(m->now),
                     tfmt(d->slot_ms));
        if (m->nfires == FIRES_MAX)
            fail_msg("%s: more than %d fires", m->spec, FIRES_MAX);
        m->fire_at[m->nfires] = m->now;
        m->fire_slot[m->nfires] = d->slot_ms;
        m->fire_missed[m->nfires] = d->missed;
        m->nfires++;
        m->st.last_slot_ms = d->slot_ms;
        m->st.newest_backup_ms = m->now;
        m->busy_until = m->now + m->busy_ms;
    } else if (d->adopt) {
        m->nadopts++;
        m->st.last_slot_ms = d->slot_ms;
    }
}

/* Ticks every tick ms after now, up to end (inclusive); m->now is the last tick's time. */
static void sim_run(sim_t *m, int64_t end, int64_t tick)
{
    while (m->now + tick <= end) {
        m->now += tick;
        sim_tick(m);
    }
}

/* Schedules fire on time, each slot once, with a backup running for a while after each. */
static void test_fire_on_time(void **state)
{
    (void)state;
    static const struct {
        const char *spec, *jitter;
        int64_t interval_ms;  /* INTERVAL's, or 0 for DAILY */
        int minutes[4], nmin; /* DAILY's times, minutes after 00:00 */
        int64_t jitter_ms;    /* the default it must take */
        int64_t tick, length, busy;
    } rows[] = {
        {"1d", "", DAY, {0}, 0, 15 * MIN, MIN, 10 * DAY, 20 * MIN},
        {"6h", "", 6 * HOUR, {0}, 0, 15 * MIN, MIN, 10 * DAY, 20 * MIN},
        {"02:30", "", 0, {150}, 1, 15 * MIN, MIN, 10 * DAY, 20 * MIN},
        {"02:30,14:30", "", 0, {150, 870}, 2, 15 * MIN, MIN, 10 * DAY, 20 * MIN},
        {"23:59,00:01", "0", 0, {1, 1439}, 2, 0, MIN, 10 * DAY, MIN / 2},
        {"90s", "", 90 * SEC, {0}, 0, 9 * SEC, SEC, 6 * HOUR, 20 * SEC},
        {"10s", "", 10 * SEC, {0}, 0, SEC, SEC, HOUR, 3 * SEC},
    };
    static const char *const clusters[] = {"db1", "payments", "reporting-replica-7"};
    const int64_t start = T_2026_12_01 + 17 * SEC + 500; /* ticks fall between slots */
    for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
        for (size_t c = 0; c < sizeof clusters / sizeof clusters[0]; c++) {
            static sim_t m;
            sim_init(&m, rows[r].spec, rows[r].jitter, clusters[c], start, rows[r].busy);
            if (m.s.jitter_ms != rows[r].jitter_ms)
                fail_msg("row \"%s\": jitter %" PRId64 " ms, want %" PRId64, rows[r].spec,
                         m.s.jitter_ms, rows[r].jitter_ms);
            /* the cluster has a backup from a second ago: its first pass adopts the slot */
            m.st.newest_backup_ms = start - SEC;
            sim_tick(&m);
            int64_t end = start + rows[r].length;
            sim_run(&m, end, rows[r].tick);
            if (m.nadopts != 1)
                fail_msg("row \"%s\" cluster %s: %d adoptions, want 1", rows[r].spec, clusters[c],
                         m.nadopts);

            /* the slots in (start, end], computed here from the row */
            static int64_t want[FIRES_MAX];
            int n = 0;
            if (rows[r].interval_ms) {
                for (int64_t k = start / rows[r].interval_ms - 1;; k++) {
                    int64_t t = k * rows[r].interval_ms + m.off;
                    if (t > m.now)
                        break;
                    if (t > start)
                        want[n++] = t;
                }
            } else {
                for (int64_t day = start / DAY - 1; day <= m.now / DAY + 1; day++)
                    for (int i = 0; i < rows[r].nmin; i++) {
                        int64_t t = day * DAY + rows[r].minutes[i] * MIN + m.off;
                        if (t > start && t <= m.now)
                            want[n++] = t;
                    }
            }
            if (m.nfires != n)
                fail_msg("row \"%s\" cluster %s: %d fires, want %d (slots in %s..%s)", rows[r].spec,
                         clusters[c], m.nfires, n, tfmt(start), tfmt(m.now));
            for (int i = 0; i < n; i++) {
                if (m.fire_slot[i] != want[i])
                    fail_msg("row \"%s\" cluster %s: fire %d for slot %s, want %s", rows[r].spec,
                             clusters[c], i, tfmt(m.fire_slot[i]), tfmt(want[i]));
                int64_t late = m.fire_at[i] - want[i];
                if (late < 0 || late >= rows[r].tick)
                    fail_msg("row \"%s\" cluster %s: slot %s fired %" PRId64 " ms after it",
                             rows[r].spec, clusters[c], tfmt(want[i]), late);
                if (m.fire_missed[i] != 0)
                    fail_msg("row \"%s\" cluster %s: fire %d missed %d", rows[r].spec, clusters[c],
                             i, m.fire_missed[i]);
            }
        }
    }
}

/* The coordinator is down for 3.5 days: the backups it missed run once. */
static void test_outage(void **state)
{
    (void)state;
    static sim_t m;
    const int64_t start = T_2026_12_01 + 17 * SEC;
    sim_init(&m, "6h", "", "db1", start, 20 * MIN);
    /* never backed up: it runs at once, for the current slot */
    sim_tick(&m);
    assert_int_equal(m.nfires, 1);
    assert_string_equal(m.last.why, "never backed up: running now");
    assert_true(m.fire_slot[0] == schedule_slot_at_or_before(&m.s, m.off, start));
    /* the next slot fires on time */
    sim_run(&m, start + 6 * HOUR, MIN);
    assert_int_equal(m.nfires, 2);
    int64_t s1 = m.fire_slot[1];
    assert_true(s1 == m.fire_slot[0] + 6 * HOUR);

    /* down from just after s1 fired, for 3 days 12 h */
    m.now = m.fire_at[1] + 3 * DAY + 12 * HOUR;
    sim_tick(&m);
    assert_int_equal(m.nfires, 3);
    assert_true(m.fire_slot[2] == s1 + 84 * HOUR); /* 14 slots later, the newest <= now */
    assert_int_equal(m.fire_missed[2], 13);        /* the 13 between run as this one */
    char want[160];
    snprintf(want, sizeof want, "13 slots missed (outage?): running once for slot %s",
             tfmt(s1 + 84 * HOUR));
    assert_string_equal(m.last.why, want);
    assert_true(m.last.next_ms == s1 + 90 * HOUR);

    /* no second run for the same slot, then normal firing resumes at the next */
    int64_t back = m.now;
    sim_run(&m, back + 12 * HOUR, MIN);
    assert_int_equal(m.nfires, 5);
    assert_true(m.fire_slot[3] == s1 + 90 * HOUR);
    assert_true(m.fire_slot[4] == s1 + 96 * HOUR);
    assert_true(m.fire_at[3] - m.fire_slot[3] < MIN && m.fire_at[4] - m.fire_slot[4] < MIN);
    assert_int_equal(m.fire_missed[3], 0);
    assert_int_equal(m.fire_missed[4], 0);

    /* a list of daily times: 02:30 of day 1 fired, down until 03:30 of day 4 */
    sim_init(&m, "02:30,14:30", "", "db1", T_2026_12_01 + 2 * HOUR, 20 * MIN);
    m.st.newest_backup_ms = T_2026_12_01; /* recent: adopts the slot of 11-30 14:30 */
    sim_tick(&m);
    sim_run(&m, T_2026_12_01 + 3 * HOUR, MIN);
    assert_int_equal(m.nadopts, 1);
    assert_int_equal(m.nfires, 1);
    assert_true(m.fire_slot[0] == T_2026_12_01 + 150 * MIN + m.off);
    m.now = T_2026_12_01 + 3 * DAY + 3 * HOUR + 30 * MIN;
    sim_tick(&m);
    assert_int_equal(m.nfires, 2);
    assert_true(m.fire_slot[1] == T_2026_12_01 + 3 * DAY + 150 * MIN + m.off);
    assert_int_equal(m.fire_missed[1], 5); /* 12-01 14:30, 12-02 both, 12-03 both */

    /* one slot missed: singular; a shorter outage than a slot: nothing missed */
    sim_init(&m, "1d", "0", "db1", T_2026_12_01 + HOUR, 20 * MIN);
    m.st.last_slot_ms = T_2026_12_01;
    m.now = T_2026_12_01 + 2 * DAY + HOUR;
    sim_tick(&m);
    assert_int_equal(m.fire_missed[0], 1);
    assert_string_equal(m.last.why,
                        "1 slot missed (outage?): running once for slot 2026-12-03 00:00:00 UTC");
    m.now += DAY - 2 * HOUR; /* 12-03 23:00: same slot */
    sim_tick(&m);
    assert_int_equal(m.nfires, 1);
    assert_string_equal(m.last.why, "next slot 2026-12-04 00:00:00 UTC");
    m.now += 6 * HOUR; /* 12-04 05:00 */
    sim_tick(&m);
    assert_int_equal(m.nfires, 2);
    assert_int_equal(m.fire_missed[1], 0);
    assert_string_equal(m.last.why, "slot 2026-12-04 00:00:00 UTC is due");

    /* a very long outage (40 days on "1d") */
    m.now += 40 * DAY;
    sim_tick(&m);
    assert_int_equal(m.nfires, 3);
    assert_int_equal(m.fire_missed[2], 39);
}

/* A queued or running backup of the cluster makes the slot wait; it fires once after. */
static void test_active(void **state)
{
    (void)state;
    schedule_t s = parse_ok("1d", "0");
    schedule_state_t st = {T_2026_12_01, T_2026_12_01, 1};
    schedule_decision_t d;
    /* the slot of 12-02 arrives while a (manual) backup runs */
    schedule_decide(&s, 0, &st, T_2026_12_01 + DAY + MIN, &d);
    assert_false(d.due);
    assert_false(d.adopt);
    assert_true(d.slot_ms == T_2026_12_01 + DAY);
    assert_true(d.next_ms == T_2026_12_01 + 2 * DAY);
    assert_string_equal(
        d.why, "a backup is already queued or running; slot 2026-12-02 00:00:00 UTC waits for it");
    /* before the slot: nothing waits */
    schedule_decide(&s, 0, &st, T_2026_12_01 + 12 * HOUR, &d);
    assert_false(d.due);
    assert_true(d.slot_ms == 0);
    assert_string_equal(d.why, "a backup is already queued or running");
    assert_true(d.next_ms == T_2026_12_01 + DAY);
    /* it ends at 00:30: the slot fires, once */
    st.active = 0;
    schedule_decide(&s, 0, &st, T_2026_12_01 + DAY + 30 * MIN, &d);
    assert_true(d.due);
    assert_true(d.slot_ms == T_2026_12_01 + DAY);
    assert_int_equal(d.missed, 0);
    assert_string_equal(d.why, "slot 2026-12-02 00:00:00 UTC is due");
    st.last_slot_ms = d.slot_ms;
    schedule_decide(&s, 0, &st, T_2026_12_01 + DAY + 31 * MIN, &d);
    assert_false(d.due);
    assert_string_equal(d.why, "next slot 2026-12-03 00:00:00 UTC");

    /* active across two slots: when it ends, one run for the newest */
    st = (schedule_state_t){T_2026_12_01, T_2026_12_01, 1};
    schedule_decide(&s, 0, &st, T_2026_12_01 + 2 * DAY + HOUR, &d);
    assert_false(d.due);
    assert_true(d.slot_ms == T_2026_12_01 + 2 * DAY);
    st.active = 0;
    schedule_decide(&s, 0, &st, T_2026_12_01 + 2 * DAY + HOUR, &d);
    assert_true(d.due);
    assert_true(d.slot_ms == T_2026_12_01 + 2 * DAY);
    assert_int_equal(d.missed, 1);

    /* simulated: backups that take 26 h on "1d" fire as each ends, once per slot, none queued
     * twice */
    static sim_t m;
    sim_init(&m, "1d", "0", "db1", T_2026_12_01 + MIN, 26 * HOUR);
    sim_tick(&m);
    sim_run(&m, T_2026_12_01 + 4 * DAY + 6 * HOUR, MIN);
    assert_int_equal(m.nfires, 4);
    assert_true(m.fire_at[0] == T_2026_12_01 + MIN && m.fire_slot[0] == T_2026_12_01);
    for (int i = 1; i < 4; i++) {
        if (m.fire_slot[i] != T_2026_12_01 + i * DAY)
            fail_msg("fire %d for %s", i, tfmt(m.fire_slot[i]));
        if (m.fire_at[i] != m.fire_at[i - 1] + 26 * HOUR) /* as the previous one ends */
            fail_msg("fire %d at %s", i, tfmt(m.fire_at[i]));
        assert_int_equal(m.fire_missed[i], 0);
    }

    /* a slot that waits for a backup started by hand, in the simulation */
    sim_init(&m, "6h", "0", "db1", T_2026_12_01 + MIN, 20 * MIN);
    sim_tick(&m); /* never backed up: slot 00:00 */
    int64_t s1 = m.fire_slot[0] + 6 * HOUR;
    m.now = s1 - 10 * MIN; /* a manual backup starts, runs 40 minutes */
    m.busy_until = s1 + 30 * MIN;
    m.st.newest_backup_ms = m.now;
    sim_run(&m, s1 + HOUR, MIN);
    assert_int_equal(m.nfires, 2);
    assert_true(m.fire_slot[1] == s1);
    assert_true(m.fire_at[1] >= s1 + 30 * MIN && m.fire_at[1] < s1 + 31 * MIN);
}

/* A cluster the scheduler never fired for. */
static void test_first_sight(void **state)
{
    (void)state;
    schedule_t s = parse_ok("1d", "0");
    const int64_t now = T_2026_12_01 + DAY + 5 * HOUR; /* cur 12-02 00:00, prev 12-01 00:00 */
    static const struct {
        const char *name;
        schedule_state_t st;
        int due, adopt;
        int64_t slot_ms, next_ms;
        const char *why;
    } rows[] = {
        {"never backed up",
         {0, 0, 0},
         1,
         0,
         T_2026_12_01 + DAY,
         T_2026_12_01 + 2 * DAY,
         "never backed up: running now"},
        {"backup before the previous slot",
         {0, T_2026_12_01 - 1, 0},
         1,
         0,
         T_2026_12_01 + DAY,
         T_2026_12_01 + 2 * DAY,
         "newest backup 2026-11-30 23:59:59 UTC predates slot 2026-12-01 00:00:00 UTC: running "
         "now"},
        {"backup at the previous slot",
         {0, T_2026_12_01, 0},
         0,
         1,
         T_2026_12_01 + DAY,
         T_2026_12_01 + 2 * DAY,
         "backup of 2026-12-01 00:00:00 UTC is recent: next slot 2026-12-03 00:00:00 UTC"},
        {"backup after the previous slot",
         {0, T_2026_12_01 + 13 * HOUR, 0},
         0,
         1,
         T_2026_12_01 + DAY,
         T_2026_12_01 + 2 * DAY,
         "backup of 2026-12-01 13:00:00 UTC is recent: next slot 2026-12-03 00:00:00 UTC"},
        {"backup after the current slot",
         {0, T_2026_12_01 + DAY + HOUR, 0},
         0,
         1,
         T_2026_12_01 + DAY,
         T_2026_12_01 + 2 * DAY,
         "backup of 2026-12-02 01:00:00 UTC is recent: next slot 2026-12-03 00:00:00 UTC"},
        {"active, never backed up",
         {0, 0, 1},
         0,
         0,
         0,
         T_2026_12_01 + 2 * DAY,
         "a backup is already queued or running"},
        /* the persisted slot is more than a slot ahead: the clock ran ahead when it fired */
        {"slot ahead of the clock, backup then",
         {T_2027_01_01, T_2027_01_01, 0},
         0,
         1,
         T_2026_12_01 + DAY,
         T_2026_12_01 + 2 * DAY,
         "last slot 2027-01-01 00:00:00 UTC is ahead of the clock: backup of 2027-01-01 00:00:00 "
         "UTC "
         "is recent: next slot 2026-12-03 00:00:00 UTC"},
        {"slot ahead of the clock, old backup",
         {T_2027_01_01, T_2026_12_01 - DAY, 0},
         1,
         0,
         T_2026_12_01 + DAY,
         T_2026_12_01 + 2 * DAY,
         "last slot 2027-01-01 00:00:00 UTC is ahead of the clock: newest backup 2026-11-30 "
         "00:00:00 "
         "UTC predates slot 2026-12-01 00:00:00 UTC: running now"},
        {"slot ahead of the clock, active",
         {T_2027_01_01, T_2027_01_01, 1},
         0,
         0,
         0,
         T_2026_12_01 + 2 * DAY,
         "a backup is already queued or running"},
        /* a clock that stepped back within a slot: the slot it fired is not fired again */
        {"slot just ahead of the clock",
         {T_2026_12_01 + 2 * DAY, T_2026_12_01 + 2 * DAY, 0},
         0,
         0,
         0,
         T_2026_12_01 + 3 * DAY,
         "next slot 2026-12-04 00:00:00 UTC"},
        {"slot just ahead of the clock, active",
         {T_2026_12_01 + 2 * DAY, T_2026_12_01 + 2 * DAY, 1},
         0,
         0,
         0,
         T_2026_12_01 + 3 * DAY,
         "a backup is already queued or running"},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        schedule_decision_t d;
        memset(&d, 0x5a, sizeof d);
        schedule_decide(&s, 0, &rows[i].st, now, &d);
        if (d.due != rows[i].due || d.adopt != rows[i].adopt)
            fail_msg("row \"%s\": due %d adopt %d, want %d %d (%s)", rows[i].name, d.due, d.adopt,
                     rows[i].due, rows[i].adopt, d.why);
        if (d.slot_ms != rows[i].slot_ms)
            fail_msg("row \"%s\": slot %s, want %s", rows[i].name, tfmt(d.slot_ms),
                     tfmt(rows[i].slot_ms));
        if (d.next_ms != rows[i].next_ms)
            fail_msg("row \"%s\": next %s, want %s", rows[i].name, tfmt(d.next_ms),
                     tfmt(rows[i].next_ms));
        if (d.missed != 0)
            fail_msg("row \"%s\": missed %d", rows[i].name, d.missed);
        if (strcmp(d.why, rows[i].why) != 0)
            fail_msg("row \"%s\":\n  why  \"%s\"\n  want \"%s\"", rows[i].name, d.why, rows[i].why);
    }

    /* adopted, the cluster waits for its next slot and fires then */
    static sim_t m;
    sim_init(&m, "1d", "0", "db1", now, 20 * MIN);
    m.st.newest_backup_ms = T_2026_12_01 + 13 * HOUR;
    sim_tick(&m);
    assert_int_equal(m.nadopts, 1);
    assert_true(m.st.last_slot_ms == T_2026_12_01 + DAY);
    sim_run(&m, T_2026_12_01 + 3 * DAY - MIN, MIN);
    assert_int_equal(m.nfires, 1);
    assert_true(m.fire_slot[0] == T_2026_12_01 + 2 * DAY);
    assert_true(m.fire_at[0] - m.fire_slot[0] < MIN);
    assert_int_equal(m.nadopts, 1);

    /* a clock that steps back an hour after a fire runs nothing twice */
    sim_init(&m, "6h", "0", "db1", T_2026_12_01 + MIN, 20 * MIN);
    sim_tick(&m); /* never backed up: slot 00:00 */
    m.now = T_2026_12_01 + 6 * HOUR + MIN;
    sim_tick(&m); /* slot 06:00 */
    assert_int_equal(m.nfires, 2);
    m.now -= HOUR; /* 05:01 */
    sim_run(&m, T_2026_12_01 + 11 * HOUR, MIN);
    assert_int_equal(m.nfires, 2);
    assert_string_equal(m.last.why, "next slot 2026-12-01 12:00:00 UTC");
    sim_run(&m, T_2026_12_01 + 12 * HOUR + MIN, MIN);
    assert_int_equal(m.nfires, 3);
    assert_true(m.fire_slot[2] == T_2026_12_01 + 12 * HOUR);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_duration_parse), cmocka_unit_test(test_duration_format),
        cmocka_unit_test(test_parse_good),     cmocka_unit_test(test_parse_bad),
        cmocka_unit_test(test_time_format),    cmocka_unit_test(test_offsets),
        cmocka_unit_test(test_slots_none),     cmocka_unit_test(test_slots_year_boundary),
        cmocka_unit_test(test_fire_on_time),   cmocka_unit_test(test_outage),
        cmocka_unit_test(test_active),         cmocka_unit_test(test_first_sight),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
