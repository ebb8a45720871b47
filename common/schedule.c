/* Backup schedules: grammar, slots, the due decision (schedule.h). */
#include "schedule.h"

#include "err.h"

#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define UNITS          "s, m, h, d or w"
#define NOT_A_DURATION "is not a duration (a number and a unit " UNITS ", as in 30m)"
#define NOT_A_TIME     "is not a time of day (HH:MM from 00:00 to 23:59, UTC)"

static void say(char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void say(char *why, size_t whylen, const char *fmt, ...)
{
    if (!why || !whylen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
}

/* Floor division for b > 0 (C's / truncates toward zero). */
static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && a < 0) ? q - 1 : q;
}

static int64_t unit_ms(char u)
{
    switch (u) {
    case 's': return INT64_C(1000);
    case 'm': return INT64_C(60000);
    case 'h': return INT64_C(3600000);
    case 'd': return SCHEDULE_DAY_MS;
    case 'w': return 7 * SCHEDULE_DAY_MS;
    default: return 0;
    }
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

int schedule_duration_parse(const char *s, int64_t *ms, char *why, size_t whylen)
{
    if (!s)
        s = "";
    if (!is_digit(s[0])) {
        say(why, whylen, "\"%.40s\" " NOT_A_DURATION, s);
        return BQ_E_INVAL;
    }
    int64_t v = 0;
    size_t i = 0;
    for (; is_digit(s[i]); i++) {
        int dig = s[i] - '0';
        if (v > (INT64_MAX - dig) / 10) {
            say(why, whylen, "\"%.40s\" is too large", s);
            return BQ_E_INVAL;
        }
        v = v * 10 + dig;
    }
    const char *unit = s + i;
    if (!*unit) {
        if (v != 0) {
            say(why, whylen, "\"%.40s\" has no unit (" UNITS ")", s);
            return BQ_E_INVAL;
        }
        *ms = 0;
        return 0;
    }
    int64_t mult = unit[1] == '\0' ? unit_ms(unit[0]) : 0;
    if (!mult) {
        size_t k = 0;
        while (is_alpha(unit[k]))
            k++;
        if (unit[k] == '\0')
            say(why, whylen, "\"%.40s\" has an unknown unit \"%.40s\" (" UNITS ")", s, unit);
        else
            say(why, whylen, "\"%.40s\" " NOT_A_DURATION, s);
        return BQ_E_INVAL;
    }
    if (v > INT64_MAX / mult) {
        say(why, whylen, "\"%.40s\" is too large", s);
        return BQ_E_INVAL;
    }
    *ms = v * mult;
    return 0;
}

void schedule_duration_format(int64_t ms, char *buf, size_t len)
{
    static const char units[] = "wdhms";
    if (ms == 0) {
        snprintf(buf, len, "0");
        return;
    }
    if (ms > 0 && ms % 1000 == 0) {
        for (const char *u = units; *u; u++) {
            int64_t m = unit_ms(*u);
            if (ms % m == 0) {
                snprintf(buf, len, "%" PRId64 "%c", ms / m, *u);
                return;
            }
        }
    }
    snprintf(buf, len, "%" PRId64 "ms", ms);
}

static int is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* A DAILY list into t; 0 or BQ_E_INVAL with why. */
static int parse_daily(const char *spec, schedule_t *t, char *why, size_t whylen)
{
    const char *p = spec;
    for (;;) {
        const char *comma = strchr(p, ',');
        const char *b = p, *e = comma ? comma : p + strlen(p);
        while (b < e && is_blank(*b))
            b++;
        while (e > b && is_blank(e[-1]))
            e--;
        if (b == e) {
            say(why, whylen, "backup_schedule: \"%.60s\" has an empty time", spec);
            return BQ_E_INVAL;
        }
        int n = (int)(e - b);
        if (n != 5 || !is_digit(b[0]) || !is_digit(b[1]) || b[2] != ':' || !is_digit(b[3]) ||
            !is_digit(b[4]) || (b[0] - '0') * 10 + (b[1] - '0') > 23 || b[3] > '5') {
            say(why, whylen, "backup_schedule: \"%.*s\" " NOT_A_TIME, n > 40 ? 40 : n, b);
            return BQ_E_INVAL;
        }
        if (t->ntimes == SCHEDULE_TIMES_MAX) {
            say(why, whylen, "backup_schedule: more than %d times of day", SCHEDULE_TIMES_MAX);
            return BQ_E_INVAL;
        }
        int minute = ((b[0] - '0') * 10 + (b[1] - '0')) * 60 + (b[3] - '0') * 10 + (b[4] - '0');
        /* insert in order */
        int i = t->ntimes;
        while (i > 0 && t->minutes[i - 1] > minute) {
            t->minutes[i] = t->minutes[i - 1];
            i--;
        }
        if (i > 0 && t->minutes[i - 1] == minute) {
            say(why, whylen, "backup_schedule: %02d:%02d is listed twice", minute / 60,
                minute % 60);
            return BQ_E_INVAL;
        }
        t->minutes[i] = minute;
        t->ntimes++;
        if (!comma)
            return 0;
        p = comma + 1;
    }
}

int schedule_parse(const char *spec, const char *jitter, schedule_t *s, char *why, size_t whylen)
{
    char msg[128];
    schedule_t t;
    memset(&t, 0, sizeof t);
    if (!spec)
        spec = "";
    if (!*spec) {
        t.kind = SCHEDULE_NONE;
    } else if (strpbrk(spec, ":,")) {
        t.kind = SCHEDULE_DAILY;
        if (parse_daily(spec, &t, why, whylen) != 0)
            return BQ_E_INVAL;
    } else {
        t.kind = SCHEDULE_INTERVAL;
        if (schedule_duration_parse(spec, &t.interval_ms, msg, sizeof msg) != 0) {
            say(why, whylen, "backup_schedule: %s", msg);
            return BQ_E_INVAL;
        }
        if (t.interval_ms == 0) {
            say(why, whylen,
                "backup_schedule: \"%.40s\" is not an interval (leave it empty for no schedule)",
                spec);
            return BQ_E_INVAL;
        }
        if (t.interval_ms < SCHEDULE_INTERVAL_MIN_MS) {
            say(why, whylen, "backup_schedule: \"%.40s\" is shorter than 10s", spec);
            return BQ_E_INVAL;
        }
        if (t.interval_ms > SCHEDULE_INTERVAL_MAX_MS) {
            say(why, whylen, "backup_schedule: \"%.40s\" is longer than 366d", spec);
            return BQ_E_INVAL;
        }
    }

    int64_t period = t.kind == SCHEDULE_INTERVAL ? t.interval_ms : SCHEDULE_DAY_MS;
    if (jitter && *jitter) {
        if (schedule_duration_parse(jitter, &t.jitter_ms, msg, sizeof msg) != 0) {
            say(why, whylen, "backup_jitter: %s", msg);
            return BQ_E_INVAL;
        }
        if (t.kind != SCHEDULE_NONE && t.jitter_ms >= period) {
            if (t.kind == SCHEDULE_INTERVAL) {
                char p[32];
                schedule_duration_format(period, p, sizeof p);
                say(why, whylen, "backup_jitter: \"%.40s\" is not shorter than the interval (%s)",
                    jitter, p);
            } else {
                say(why, whylen, "backup_jitter: \"%.40s\" is not shorter than a day", jitter);
            }
            return BQ_E_INVAL;
        }
    } else {
        t.jitter_ms = period / 10 < SCHEDULE_JITTER_CAP_MS ? period / 10 : SCHEDULE_JITTER_CAP_MS;
    }
    if (t.kind == SCHEDULE_NONE)
        t.jitter_ms = 0;
    *s = t;
    return 0;
}

/* A schedule this module could have made (the others have no slots). */
static int well_formed(const schedule_t *s)
{
    if (!s)
        return 0;
    if (s->kind == SCHEDULE_INTERVAL)
        return s->interval_ms > 0;
    if (s->kind != SCHEDULE_DAILY || s->ntimes < 1 || s->ntimes > SCHEDULE_TIMES_MAX)
        return 0;
    for (int i = 0; i < s->ntimes; i++)
        if (s->minutes[i] < 0 || s->minutes[i] >= 1440 || (i && s->minutes[i] <= s->minutes[i - 1]))
            return 0;
    return 1;
}

void schedule_format(const schedule_t *s, char *buf, size_t len)
{
    if (!len)
        return;
    if (!well_formed(s)) {
        snprintf(buf, len, "none");
        return;
    }
    if (s->kind == SCHEDULE_INTERVAL) {
        char d[32];
        schedule_duration_format(s->interval_ms, d, sizeof d);
        snprintf(buf, len, "every %s", d);
        return;
    }
    char out[24 * 6 + 32] = "daily at ";
    size_t n = strlen(out);
    for (int i = 0; i < s->ntimes; i++)
        n += (size_t)snprintf(out + n, sizeof out - n, "%s%02d:%02d", i ? "," : "",
                              s->minutes[i] / 60, s->minutes[i] % 60);
    snprintf(out + n, sizeof out - n, " UTC");
    snprintf(buf, len, "%s", out);
}

int64_t schedule_offset(const schedule_t *s, const char *cluster)
{
    if (!s || s->kind == SCHEDULE_NONE || s->jitter_ms <= 0)
        return 0;
    uint64_t h = UINT64_C(0xcbf29ce484222325); /* FNV-1a 64 */
    for (const unsigned char *p = (const unsigned char *)(cluster ? cluster : ""); *p; p++) {
        h ^= *p;
        h *= UINT64_C(0x100000001b3);
    }
    h ^= h >> 33; /* fmix64: FNV-1a's low bits alone spread similar names poorly */
    h *= UINT64_C(0xff51afd7ed558ccd);
    h ^= h >> 33;
    h *= UINT64_C(0xc4ceb9fe1a85ec53);
    h ^= h >> 33;
    return (int64_t)(h % (uint64_t)s->jitter_ms);
}

/* Slots are numbered: slot_index(t) is the number of the newest slot <= t, slot_time(j) the
 * time of slot j; so the slots in (a, b] are slot_index(b) - slot_index(a). */
static int64_t slot_index(const schedule_t *s, int64_t offset, int64_t t)
{
    if (s->kind == SCHEDULE_INTERVAL)
        return floor_div(t - offset, s->interval_ms);
    int64_t x = t - offset;
    int64_t day = floor_div(x, SCHEDULE_DAY_MS);
    int64_t r = x - day * SCHEDULE_DAY_MS;
    int c = 0;
    while (c < s->ntimes && s->minutes[c] * INT64_C(60000) <= r)
        c++;
    return day * s->ntimes + c - 1;
}

static int64_t slot_time(const schedule_t *s, int64_t offset, int64_t j)
{
    if (s->kind == SCHEDULE_INTERVAL)
        return j * s->interval_ms + offset;
    int64_t day = floor_div(j, s->ntimes);
    int i = (int)(j - day * s->ntimes);
    return day * SCHEDULE_DAY_MS + s->minutes[i] * INT64_C(60000) + offset;
}

int64_t schedule_slot_at_or_before(const schedule_t *s, int64_t offset, int64_t now_ms)
{
    if (!well_formed(s))
        return INT64_MIN;
    return slot_time(s, offset, slot_index(s, offset, now_ms));
}

int64_t schedule_slot_after(const schedule_t *s, int64_t offset, int64_t now_ms)
{
    if (!well_formed(s))
        return INT64_MAX;
    return slot_time(s, offset, slot_index(s, offset, now_ms) + 1);
}

/* Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's civil_from_days). */
static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = floor_div(z, 146097);
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

void schedule_time_format(int64_t ms, char *buf, size_t len)
{
    if (ms == INT64_MIN || ms == INT64_MAX) {
        snprintf(buf, len, "never");
        return;
    }
    int64_t secs = floor_div(ms, 1000);
    int64_t days = floor_div(secs, 86400);
    int64_t sod = secs - days * 86400;
    int64_t y;
    int m, d;
    civil_from_days(days, &y, &m, &d);
    snprintf(buf, len, "%04" PRId64 "-%02d-%02d %02d:%02d:%02d UTC", y, m, d, (int)(sod / 3600),
             (int)(sod / 60 % 60), (int)(sod % 60));
}

void schedule_decide(const schedule_t *s, int64_t offset, const schedule_state_t *st,
                     int64_t now_ms, schedule_decision_t *d)
{
    memset(d, 0, sizeof *d);
    d->next_ms = INT64_MAX;
    if (!well_formed(s)) {
        snprintf(d->why, sizeof d->why, "no backup_schedule");
        return;
    }
    int64_t cur_i = slot_index(s, offset, now_ms);
    int64_t cur = slot_time(s, offset, cur_i);
    int64_t next = slot_time(s, offset, cur_i + 1);
    int64_t last = st->last_slot_ms;
    int first = last == 0 || last > next;
    char t1[32], t2[32];

    if (st->active) {
        d->next_ms = first || last <= now_ms ? next : schedule_slot_after(s, offset, last);
        if (!first && cur > last) {
            d->slot_ms = cur;
            schedule_time_format(cur, t1, sizeof t1);
            snprintf(d->why, sizeof d->why,
                     "a backup is already queued or running; slot %s waits for it", t1);
        } else {
            snprintf(d->why, sizeof d->why, "a backup is already queued or running");
        }
        return;
    }

    if (first) {
        char pre[80] = "";
        if (last != 0) {
            schedule_time_format(last, t1, sizeof t1);
            snprintf(pre, sizeof pre, "last slot %s is ahead of the clock: ", t1);
        }
        int64_t prev = slot_time(s, offset, cur_i - 1);
        d->slot_ms = cur;
        d->next_ms = next;
        if (st->newest_backup_ms == 0) {
            d->due = 1;
            snprintf(d->why, sizeof d->why, "%snever backed up: running now", pre);
        } else if (st->newest_backup_ms < prev) {
            d->due = 1;
            schedule_time_format(st->newest_backup_ms, t1, sizeof t1);
            schedule_time_format(prev, t2, sizeof t2);
            snprintf(d->why, sizeof d->why, "%snewest backup %s predates slot %s: running now", pre,
                     t1, t2);
        } else {
            d->adopt = 1;
            schedule_time_format(st->newest_backup_ms, t1, sizeof t1);
            schedule_time_format(next, t2, sizeof t2);
            snprintf(d->why, sizeof d->why, "%sbackup of %s is recent: next slot %s", pre, t1, t2);
        }
        return;
    }

    if (cur > last) {
        int64_t missed = cur_i - slot_index(s, offset, last) - 1;
        d->due = 1;
        d->slot_ms = cur;
        d->next_ms = next;
        d->missed = missed < 0 ? 0 : missed > INT_MAX ? INT_MAX : (int)missed;
        schedule_time_format(cur, t1, sizeof t1);
        if (d->missed)
            snprintf(d->why, sizeof d->why, "%d slot%s missed (outage?): running once for slot %s",
                     d->missed, d->missed == 1 ? "" : "s", t1);
        else
            snprintf(d->why, sizeof d->why, "slot %s is due", t1);
        return;
    }
    d->next_ms = last <= now_ms ? next : schedule_slot_after(s, offset, last);
    schedule_time_format(d->next_ms, t1, sizeof t1);
    snprintf(d->why, sizeof d->why, "next slot %s", t1);
}
